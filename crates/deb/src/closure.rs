//! Debian package closures computed by apt itself, against a private state.
//!
//! apt runs in simulation (`apt-get -s install`) with its own `Dir::State::status` file in a
//! temporary folder, never the build machine's dpkg status: the status holds exactly what
//! the target host is assumed to have. The package lists are apt's own (those of the
//! machine's configuration, or of the `APT_CONFIG` file given), so no mirror is named here.
//! Nothing is downloaded and no cache file is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{run, with_config, AptPin};
use crate::error::DebError;
use crate::is_sha256;

/// The apt index for one architecture, read once: the candidate of every package.
pub struct AptIndex {
    arch: String,
    config: Option<PathBuf>,
    /// Candidate stanzas by package name.
    avail: BTreeMap<String, Stanza>,
    /// (Origin, codename) of every release in the index (`Debian`, `bookworm-security`).
    releases: BTreeSet<(String, String)>,
    state: tempfile::TempDir,
}

/// One candidate package as the index describes it.
struct Stanza {
    version: String,
    arch: String,
    required: bool,
    filename: String,
    size: Option<u64>,
    sha256: String,
    /// The stanza as apt printed it, for the private status file.
    text: String,
}

impl AptIndex {
    /// Reads apt's index for `arch` (under `config` as `APT_CONFIG` when given).
    pub fn load(arch: &str, config: Option<&Path>) -> Result<AptIndex, DebError> {
        let state = tempfile::Builder::new()
            .prefix("kiln-apt-")
            .tempdir()
            .map_err(|source| DebError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let status = state.path().join("status");
        fs::write(&status, "").map_err(|source| DebError::Write {
            path: status.clone(),
            source,
        })?;
        let mut index = AptIndex {
            arch: arch.to_owned(),
            config: config.map(Path::to_owned),
            avail: BTreeMap::new(),
            releases: BTreeSet::new(),
            state,
        };
        let dump = run(&mut index.command("apt-cache", &["dumpavail"]))?;
        index.avail = parse_avail(&String::from_utf8_lossy(&dump.stdout), arch);
        if index.avail.is_empty() {
            return Err(DebError::EmptyIndex {
                command: "apt-cache dumpavail".into(),
                arch: arch.to_owned(),
            });
        }
        let policy = run(&mut index.command("apt-cache", &["policy"]))?;
        index.releases = parse_releases(&String::from_utf8_lossy(&policy.stdout));
        Ok(index)
    }

    /// Whether the index holds the release `origin`/`codename` (e.g. `Debian`/`bookworm`).
    pub fn has_release(&self, origin: &str, codename: &str) -> bool {
        self.releases
            .iter()
            .any(|(o, n)| o == origin && n == codename)
    }

    /// The releases in the index, for messages (`Debian bookworm`, …).
    pub fn releases(&self) -> Vec<String> {
        self.releases
            .iter()
            .map(|(o, n)| format!("{o} {n}"))
            .collect()
    }

    /// What a minbase system has (the packages of priority required, the essential ones and
    /// apt, as `mmdebstrap --variant=minbase` installs) plus `extra`, with everything they
    /// need: the package names.
    pub fn base(&self, extra: &[String]) -> Result<Vec<String>, DebError> {
        let mut want: BTreeSet<String> = self
            .avail
            .iter()
            .filter(|(_, s)| s.required)
            .map(|(n, _)| n.clone())
            .collect();
        if self.avail.contains_key("apt") {
            want.insert("apt".into());
        }
        want.extend(extra.iter().cloned());
        let want: Vec<String> = want.into_iter().collect();
        Ok(self
            .simulate(&[], &want)?
            .into_iter()
            .map(|p| p.package)
            .collect())
    }

    /// The packages installing `request` brings onto a host that has `installed`, in the
    /// order apt would install them, each pinned by the sha256 of apt's index.
    pub fn closure(
        &self,
        installed: &[String],
        request: &[String],
    ) -> Result<Vec<AptPin>, DebError> {
        self.simulate(installed, request)
    }

    fn simulate(&self, installed: &[String], request: &[String]) -> Result<Vec<AptPin>, DebError> {
        let status = self.state.path().join("status");
        let mut text = String::new();
        for name in installed {
            let s = self.avail.get(name).ok_or_else(|| DebError::NotFound {
                package: name.clone(),
                arch: self.arch.clone(),
            })?;
            // The stanza as apt printed it, marked installed: apt then resolves against it.
            let (first, rest) = s.text.split_once('\n').unwrap_or((&s.text, ""));
            text.push_str(&format!(
                "{first}\nStatus: install ok installed\n{rest}\n\n"
            ));
        }
        fs::write(&status, text).map_err(|source| DebError::Write {
            path: status.clone(),
            source,
        })?;
        for r in request {
            if !self.avail.contains_key(r) {
                return Err(DebError::NotFound {
                    package: r.clone(),
                    arch: self.arch.clone(),
                });
            }
        }
        let mut args = vec!["-s", "-q", "install"];
        args.extend(request.iter().map(String::as_str));
        let mut cmd = self.command("apt-get", &args);
        let command = format!("apt-get -s install {}", request.join(" "));
        let out = run(&mut cmd)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut pins = Vec::new();
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("Remv ") {
                return Err(DebError::WouldRemove {
                    command,
                    package: rest.split_whitespace().next().unwrap_or(rest).to_owned(),
                });
            }
            let Some(rest) = line.strip_prefix("Inst ") else {
                continue;
            };
            let (name, version) = parse_inst(rest).ok_or_else(|| DebError::InstLine {
                command: command.clone(),
                line: line.to_owned(),
            })?;
            let s = self
                .avail
                .get(&name)
                .filter(|s| s.version == version)
                .ok_or_else(|| DebError::NotCandidate {
                    command: command.clone(),
                    package: name.clone(),
                    version: version.clone(),
                })?;
            if !is_sha256(&s.sha256) || s.filename.is_empty() {
                return Err(DebError::NoChecksum {
                    command: command.clone(),
                    package: name,
                    version,
                });
            }
            pins.push(AptPin {
                package: name,
                version,
                arch: s.arch.clone(),
                sha256: s.sha256.clone(),
                size: s.size.unwrap_or(0),
                filename: s.filename.clone(),
            });
        }
        Ok(pins)
    }

    /// apt with the private state: status, extended states and no cache files.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let dir = self.state.path();
        let mut cmd = Command::new(program);
        with_config(&mut cmd, self.config.as_deref());
        for (k, v) in [
            (
                "Dir::State::status",
                dir.join("status").display().to_string(),
            ),
            (
                "Dir::State::extended_states",
                dir.join("extended_states").display().to_string(),
            ),
            // Empty: apt builds its cache in memory and never rewrites the machine's.
            ("Dir::Cache::pkgcache", String::new()),
            ("Dir::Cache::srcpkgcache", String::new()),
            ("APT::Architecture", self.arch.clone()),
            ("APT::Architectures", self.arch.clone()),
            // Hosts get what packages depend on, not what they merely recommend.
            ("APT::Install-Recommends", "false".into()),
            ("APT::Install-Suggests", "false".into()),
            // A simulation against a private status needs none of the machine's locks.
            ("Debug::NoLocking", "true".into()),
        ] {
            cmd.arg("-o").arg(format!("{k}={v}"));
        }
        cmd.args(args);
        cmd
    }
}

/// The candidate stanzas of `apt-cache dumpavail` for `arch` (or `all`).
fn parse_avail(text: &str, arch: &str) -> BTreeMap<String, Stanza> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let stanza = stanza.trim_matches('\n');
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for l in stanza.lines().filter(|l| !l.starts_with([' ', '\t'])) {
            if let Some((k, v)) = l.split_once(':') {
                fields.insert(k.trim(), v.trim());
            }
        }
        let get = |k: &str| fields.get(k).copied().unwrap_or("");
        let (name, a) = (get("Package"), get("Architecture"));
        if name.is_empty() || !(a == arch || a == "all") || !stanza.starts_with("Package:") {
            continue;
        }
        out.insert(
            name.to_owned(),
            Stanza {
                version: get("Version").to_owned(),
                arch: a.to_owned(),
                required: get("Priority") == "required" || get("Essential") == "yes",
                filename: get("Filename").to_owned(),
                size: get("Size").parse().ok(),
                sha256: get("SHA256").to_ascii_lowercase(),
                text: stanza.to_owned(),
            },
        );
    }
    out
}

/// (Origin, codename) of each `release` line of `apt-cache policy`.
fn parse_releases(policy: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for l in policy.lines() {
        let Some(rest) = l.trim().strip_prefix("release ") else {
            continue;
        };
        let fields: BTreeMap<&str, &str> = rest
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        if let (Some(o), Some(n)) = (fields.get("o"), fields.get("n")) {
            out.insert((o.to_string(), n.to_string()));
        }
    }
    out
}

/// Name and version of an `Inst` line: `name [old] (version release [arch])`.
fn parse_inst(rest: &str) -> Option<(String, String)> {
    let name = rest.split_whitespace().next()?;
    let name = name.split(':').next()?.to_owned();
    let version = rest
        .split_once('(')?
        .1
        .split_whitespace()
        .next()?
        .to_owned();
    Some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inst_lines_are_read() {
        assert_eq!(
            parse_inst("libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []"),
            Some(("libc6".into(), "2.36-9+deb12u14".into()))
        );
        assert_eq!(
            parse_inst("keepalived [1:2.2.7-1] (1:2.2.7-1+b2 Debian:12.15/oldstable [amd64])"),
            Some(("keepalived".into(), "1:2.2.7-1+b2".into()))
        );
        assert_eq!(parse_inst("x"), None);
    }

    #[test]
    fn releases_come_from_policy() {
        let p = " 500 file:/x bookworm/main amd64 Packages\n     release v=12.15,o=Debian,a=oldstable,n=bookworm,l=Debian,c=main,b=amd64\n     origin x\n";
        assert!(parse_releases(p).contains(&("Debian".into(), "bookworm".into())));
    }

    #[test]
    fn avail_keeps_this_arch_and_marks_required_and_essential() {
        let t = "Package: a\nVersion: 1\nArchitecture: amd64\nPriority: required\nFilename: pool/a.deb\nSize: 3\nSHA256: AB\n\nPackage: b\nVersion: 2\nArchitecture: arm64\n\nPackage: c\nVersion: 3\nArchitecture: all\nEssential: yes\nPriority: optional\nDescription: x\n more\n";
        let m = parse_avail(t, "amd64");
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["a", "c"]);
        assert!(m["a"].required && m["c"].required);
        assert_eq!(m["a"].sha256, "ab");
        assert!(m["c"].text.ends_with(" more"));
    }
}
