//! `kiln diff`: arguments, and the compact human summary of a [`kiln_engine::diff::Diff`]
//! (its JSON form is the library type serialised as is).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use kiln_engine::diff::{Change, Diff, FileChange, UnitChange, UpgradePlan};

/// `kiln diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old out folder (out/CLUSTER-NAME, from `kiln build` or `kiln pull`).
    pub old: PathBuf,
    /// The new out folder of the same cluster.
    pub new: PathBuf,
    /// Print the differences as JSON (schema `kiln-diff/1`, see README).
    #[arg(long)]
    pub json: bool,
    /// Print the upgrade plan instead: which hosts change, which units stop, start or restart
    /// in what order, and which hosts go one at a time (JSON schema `kiln-upgrade-plan/1`).
    #[arg(long)]
    pub plan: bool,
}

/// Runs `kiln diff`: exit 0 when identical, 1 when different, 2 when either folder is refused.
pub fn run(a: &DiffArgs) -> ExitCode {
    if a.plan {
        return run_plan(a);
    }
    match kiln_engine::diff::diff(&a.old, &a.new) {
        Ok(d) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&d).expect("a diff serialises")
                );
            } else {
                print!("{}", render(&d));
            }
            ExitCode::from(if d.identical { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(2)
        }
    }
}

/// `kiln diff --plan`: the same exit codes (0: nothing to do).
fn run_plan(a: &DiffArgs) -> ExitCode {
    match kiln_engine::diff::upgrade_plan(&a.old, &a.new) {
        Ok(p) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&p).expect("a plan serialises")
                );
            } else {
                print!("{}", render_plan(&p));
            }
            let nothing = p.hosts.is_empty()
                && p.removed_hosts.is_empty()
                && p.old.build_id == p.new.build_id;
            ExitCode::from(if nothing { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            ExitCode::from(2)
        }
    }
}

/// The upgrade plan for people: the steps in order, each host's unit actions in order.
pub fn render_plan(p: &UpgradePlan) -> String {
    let mut s = String::new();
    let generation = if p.old.generation == p.new.generation {
        format!("generation {}", p.new.generation)
    } else {
        format!("generation {} → {}", p.old.generation, p.new.generation)
    };
    let total = p.hosts.len() + p.unchanged_hosts.len();
    let _ = writeln!(
        s,
        "{}: upgrade to {generation}, build {} → {}: {} of {total} host(s) change",
        p.cluster,
        short(&p.old.build_id),
        short(&p.new.build_id),
        p.hosts.len()
    );
    let by_name: std::collections::BTreeMap<&str, &kiln_engine::diff::HostUpgrade> =
        p.hosts.iter().map(|h| (h.host.as_str(), h)).collect();
    for step in &p.steps {
        let how = match &step.one_at_a_time {
            Some(role) => format!("{role}, one at a time"),
            None => "together".to_owned(),
        };
        let _ = writeln!(
            s,
            "
step {}: {} ({how})",
            step.number,
            step.hosts.join(", ")
        );
        for name in &step.hosts {
            let Some(h) = by_name.get(name.as_str()) else {
                continue;
            };
            let mut parts = Vec::new();
            if h.change == Change::Added {
                parts.push("new host".to_owned());
            } else {
                if !h.bundles.is_empty() {
                    parts.push(format!("bundles {}", h.bundles.join(", ")));
                }
                if !h.files.is_empty() {
                    parts.push(format!("{} own file(s)", h.files.len()));
                }
            }
            let what = parts.join(", ");
            if h.units.is_empty() {
                let _ = writeln!(s, "  {name}: {what}; no unit restarts");
                continue;
            }
            let _ = writeln!(s, "  {name}: {what}");
            let mut lines = String::new();
            units(&mut lines, &h.units);
            for l in lines.lines() {
                let _ = writeln!(s, "  {}", l.trim_start().strip_prefix("unit ").unwrap_or(l));
            }
        }
    }
    if !p.removed_hosts.is_empty() {
        let _ = writeln!(
            s,
            "
removed (retire, not upgraded): {}",
            p.removed_hosts.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "
unchanged: {} host(s)",
        p.unchanged_hosts.len()
    );
    s
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn sign(c: Change) -> char {
    match c {
        Change::Added => '+',
        Change::Removed => '-',
        Change::Changed => '~',
    }
}

fn word(c: Change) -> &'static str {
    match c {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

fn count<T>(items: &[T], what: impl Fn(&T) -> Change) -> (usize, usize, usize) {
    let n = |c| items.iter().filter(|i| what(i) == c).count();
    (n(Change::Changed), n(Change::Added), n(Change::Removed))
}

/// The human summary: a header, per bundle then per host what differs, one line per item,
/// and the unchanged ones counted in one line. Sorted, so two runs print the same text.
pub fn render(d: &Diff) -> String {
    let mut s = String::new();
    let (o, n) = (&d.old, &d.new);
    if d.identical {
        let _ = writeln!(
            s,
            "{}: no differences (build {}, generation {})",
            d.cluster,
            short(&n.build_id),
            n.generation
        );
        return s;
    }
    let generation = if o.generation == n.generation {
        format!("generation {}", n.generation)
    } else {
        format!("generation {} → {}", o.generation, n.generation)
    };
    let _ = writeln!(
        s,
        "{}: {generation}, build {} → {}",
        d.cluster,
        short(&o.build_id),
        short(&n.build_id)
    );
    let (c, a, r) = count(&d.bundles, |b| b.change);
    let _ = writeln!(
        s,
        "bundles: {c} changed, {a} added, {r} removed, {} unchanged",
        d.unchanged_bundles.len()
    );
    let (c, a, r) = count(&d.hosts, |h| h.change);
    let _ = writeln!(
        s,
        "hosts: {c} changed, {a} added, {r} removed, {} unchanged",
        d.unchanged_hosts.len()
    );
    if o.pulled || n.pulled {
        let _ = writeln!(
            s,
            "(a pulled folder has no hosts/: host files and certificates are not compared)"
        );
    }
    if d.bundles.is_empty() && d.hosts.is_empty() {
        let _ = writeln!(s, "no bundle or host differs");
    }
    for b in &d.bundles {
        let _ = writeln!(
            s,
            "\nbundle {} ({}; role {} on {})",
            b.id,
            word(b.change),
            b.role,
            if b.hosts.is_empty() {
                "no host".to_owned()
            } else {
                b.hosts.join(", ")
            }
        );
        if let (Some(o), Some(n)) = (&b.old, &b.new) {
            let _ = writeln!(s, "  {} → {}", o.file, n.file);
        }
        files(&mut s, &b.files);
        for p in &b.packages {
            let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
            let version = match p.change {
                Change::Added => v(&p.new_version),
                Change::Removed => v(&p.old_version),
                Change::Changed => format!("{} → {}", v(&p.old_version), v(&p.new_version)),
            };
            let _ = writeln!(
                s,
                "  package {} {} {} {version}",
                sign(p.change),
                p.name,
                p.arch
            );
        }
        for i in &b.images {
            let v = |v: &Option<String>| v.clone().unwrap_or_default();
            let digest = match i.change {
                Change::Added => v(&i.new_digest),
                Change::Removed => v(&i.old_digest),
                Change::Changed => format!("{} → {}", v(&i.old_digest), v(&i.new_digest)),
            };
            let _ = writeln!(s, "  image {} {} {digest}", sign(i.change), i.reference);
        }
        units(&mut s, &b.units);
    }
    for h in &d.hosts {
        let _ = writeln!(
            s,
            "\nhost {} ({}; {})",
            h.host,
            word(h.change),
            h.roles.join(", ")
        );
        if let Some(ip) = &h.ip {
            let _ = writeln!(s, "  address {} → {}", ip.old, ip.new);
        }
        for b in &h.bundles {
            let _ = writeln!(s, "  bundle {} {}", sign(b.change), b.id);
        }
        files(&mut s, &h.files);
        for c in &h.certificates {
            let id = |i: &Option<kiln_engine::diff::CertIdentity>| {
                i.as_ref().map(|i| i.serial.clone()).unwrap_or_default()
            };
            let (what, ids) = match c.change {
                Change::Added => ("added", id(&c.new)),
                Change::Removed => ("removed", id(&c.old)),
                Change::Changed => ("reissued", format!("{} → {}", id(&c.old), id(&c.new))),
            };
            let subject = c
                .new
                .as_ref()
                .or(c.old.as_ref())
                .map(|i| i.subject.as_str());
            let _ = writeln!(
                s,
                "  certificate {what} {} ({}): serial {ids}",
                c.path,
                subject.unwrap_or_default()
            );
        }
        units(&mut s, &h.units);
    }
    let _ = writeln!(
        s,
        "\nunchanged: {} bundle(s), {} host(s)",
        d.unchanged_bundles.len(),
        d.unchanged_hosts.len()
    );
    s
}

fn files(s: &mut String, files: &[FileChange]) {
    for f in files {
        let detail = match (&f.old, &f.new) {
            (Some(o), Some(n)) => {
                let mut parts = Vec::new();
                if o.sha256 != n.sha256 {
                    parts.push(if o.size == n.size {
                        format!("{} bytes, content", n.size)
                    } else {
                        format!("{} → {} bytes", o.size, n.size)
                    });
                }
                if o.mode != n.mode {
                    parts.push(format!("mode {} → {}", o.mode, n.mode));
                }
                parts.join(", ")
            }
            (None, Some(x)) | (Some(x), None) => format!("{} bytes, mode {}", x.size, x.mode),
            (None, None) => String::new(),
        };
        let _ = writeln!(s, "  {} {}  {detail}", sign(f.change), f.path);
    }
}

fn units(s: &mut String, units: &[UnitChange]) {
    for u in units {
        let action = serde_json::to_value(u.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let because: Vec<&str> = u.because.iter().map(|r| r.what.as_str()).collect();
        if because.is_empty() {
            let _ = writeln!(s, "  unit {action} {}", u.unit);
        } else {
            let _ = writeln!(s, "  unit {action} {}: {}", u.unit, because.join(", "));
        }
    }
}
