//! Debian packages through the system's own apt client: resolving pins and downloading.
//!
//! apt's configured sources are used as they are (the machine's, or those of the
//! `APT_CONFIG` file given); kiln never names a mirror here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::debversion::{compare_versions, version_matches};
use crate::error::DebError;

/// An apt package pinned to one exact build, as apt's own index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptPin {
    /// The package name.
    pub package: String,
    /// Its exact Debian version.
    pub version: String,
    /// Its architecture as apt lists it (the host's, or `all`).
    pub arch: String,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
    /// Path of the .deb in the archive's pool (`pool/main/...`).
    pub filename: String,
}

/// The architecture dpkg installs for on this machine (`amd64`, `arm64`, ...).
pub fn host_arch() -> Result<String, DebError> {
    let output = run(Command::new("dpkg").arg("--print-architecture"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Resolves `package` to the exact build apt would fetch, reading apt's own index
/// (`apt-cache show`). `version_prefix` selects the newest version starting with it
/// (at a component boundary: `3.4.23` matches `3.4.23-4+b6`); empty means apt's candidate.
/// apt runs under `config` as `APT_CONFIG` when given.
pub fn apt_resolve(
    package: &str,
    version_prefix: &str,
    arch: &str,
    config: Option<&Path>,
) -> Result<AptPin, DebError> {
    check_name("package", package)?;
    check_name("arch", arch)?;
    if !version_prefix.is_empty() {
        check_name("version", version_prefix)?;
    }
    require_host_arch(package, arch)?;
    let mut show = Command::new("apt-cache");
    show.arg("show").arg(format!("{package}:{arch}"));
    with_config(&mut show, config);
    let output = match run(&mut show) {
        Ok(output) => output,
        Err(DebError::Command { stderr, .. }) if stderr.contains("No packages found") => {
            return Err(not_found(package, arch));
        }
        Err(e) => return Err(e),
    };
    let pins = parse_pins(&String::from_utf8_lossy(&output.stdout), package, arch);
    if pins.is_empty() {
        return Err(not_found(package, arch));
    }
    if version_prefix.is_empty() {
        let candidate =
            policy_candidate(package, arch, config)?.ok_or_else(|| not_found(package, arch))?;
        return pins
            .into_iter()
            .find(|p| p.version == candidate)
            .ok_or_else(|| not_found(package, arch));
    }
    choose(pins, package, version_prefix)
}

/// Downloads `package=version` with `apt-get download` (under `config` as `APT_CONFIG`
/// when given) into the empty folder `dir`: the path of the one .deb apt left there.
/// Checking it against its pin is the caller's part.
pub fn download(
    package: &str,
    version: &str,
    arch: &str,
    config: Option<&Path>,
    dir: &Path,
) -> Result<PathBuf, DebError> {
    check_name("package", package)?;
    check_name("version", version)?;
    check_name("arch", arch)?;
    require_host_arch(package, arch)?;
    let spec = format!("{package}:{arch}={version}");
    let mut cmd = Command::new("apt-get");
    cmd.arg("download").arg(&spec).current_dir(dir);
    with_config(&mut cmd, config);
    run(&mut cmd).map_err(|e| match e {
        // apt's words when its lists hold the package but not this version.
        DebError::Command { stderr, .. }
            if stderr.contains(&format!(
                "Version '{version}' for '{package}' was not found"
            )) =>
        {
            DebError::VersionGone {
                package: package.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
            }
        }
        other => other,
    })?;
    let mut debs = list_debs(dir)?;
    match debs.len() {
        1 => Ok(debs.remove(0)),
        found => Err(DebError::DownloadCount {
            command: format!("apt-get download {spec}"),
            found,
        }),
    }
}

/// Points apt at `config` (`APT_CONFIG`) when one is given.
pub(crate) fn with_config(cmd: &mut Command, config: Option<&Path>) {
    if let Some(c) = config {
        cmd.env("APT_CONFIG", c);
    }
}

fn list_debs(dir: &Path) -> Result<Vec<PathBuf>, DebError> {
    let entries = fs::read_dir(dir).map_err(|source| DebError::ReadDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut debs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DebError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        if entry.path().extension().is_some_and(|e| e == "deb") {
            debs.push(entry.path());
        }
    }
    Ok(debs)
}

fn not_found(package: &str, arch: &str) -> DebError {
    DebError::NotFound {
        package: package.to_owned(),
        arch: arch.to_owned(),
    }
}

fn require_host_arch(package: &str, arch: &str) -> Result<(), DebError> {
    let host = host_arch()?;
    if arch == host {
        Ok(())
    } else {
        Err(DebError::Arch {
            package: package.to_owned(),
            arch: arch.to_owned(),
            host,
        })
    }
}

/// Refuses values apt could read as options or that no package name, version or
/// architecture contains.
fn check_name(field: &'static str, value: &str) -> Result<(), DebError> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'~' | b':'))
        && !(field != "version" && value.contains(':'));
    if ok {
        Ok(())
    } else {
        Err(DebError::Invalid {
            field,
            value: value.to_owned(),
        })
    }
}

/// Runs a command in the C locale, returning its output or an error with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, DebError> {
    let command = describe(cmd);
    let output = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| DebError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(DebError::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// apt's candidate version from `apt-cache policy`, `None` when it has none.
fn policy_candidate(
    package: &str,
    arch: &str,
    config: Option<&Path>,
) -> Result<Option<String>, DebError> {
    let mut policy = Command::new("apt-cache");
    policy.arg("policy").arg(format!("{package}:{arch}"));
    with_config(&mut policy, config);
    let output = run(&mut policy)?;
    Ok(parse_candidate(&String::from_utf8_lossy(&output.stdout)))
}

fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

/// The downloadable builds of `package` for `arch` (or `all`) in `apt-cache show` output,
/// in apt's order; stanzas without a sha256 (e.g. only in dpkg's status) are skipped.
fn parse_pins(text: &str, package: &str, arch: &str) -> Vec<AptPin> {
    let mut pins = Vec::new();
    for stanza in text.split("\n\n") {
        let fields = parse_stanza(stanza);
        let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        let arch_ok = get("Architecture") == arch || get("Architecture") == "all";
        let sha256 = get("SHA256").to_ascii_lowercase();
        let Ok(size) = get("Size").parse::<u64>() else {
            continue;
        };
        if get("Package") != package
            || !arch_ok
            || !crate::is_sha256(&sha256)
            || get("Filename").is_empty()
        {
            continue;
        }
        pins.push(AptPin {
            package: package.to_owned(),
            version: get("Version").to_owned(),
            arch: get("Architecture").to_owned(),
            sha256,
            size,
            filename: get("Filename").to_owned(),
        });
    }
    pins
}

/// The single-line fields of one deb822 stanza (continuation lines are skipped).
fn parse_stanza(stanza: &str) -> BTreeMap<String, String> {
    stanza
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The newest build whose version matches `prefix`; the first listed wins a tie.
fn choose(pins: Vec<AptPin>, package: &str, prefix: &str) -> Result<AptPin, DebError> {
    let mut best: Option<AptPin> = None;
    for pin in pins.iter().filter(|p| version_matches(&p.version, prefix)) {
        if best
            .as_ref()
            .is_none_or(|b| compare_versions(&pin.version, &b.version).is_gt())
        {
            best = Some(pin.clone());
        }
    }
    best.ok_or_else(|| {
        let mut available: Vec<String> = pins.into_iter().map(|p| p.version).collect();
        available.sort_by(|a, b| compare_versions(b, a));
        available.dedup();
        DebError::NoVersion {
            package: package.to_owned(),
            prefix: prefix.to_owned(),
            available,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "\
Package: etcd-server
Version: 3.4.23-4+b6
Architecture: amd64
Description: key-value store
 continuation: not a field
Filename: pool/main/e/etcd/etcd-server_3.4.23-4+b6_amd64.deb
Size: 7000000
SHA256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA

Package: etcd-server
Version: 3.4.23-4
Architecture: amd64
Filename: pool/main/e/etcd/etcd-server_3.4.23-4_amd64.deb
Size: 6900000
SHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

Package: etcd-server
Version: 3.5.1-1
Architecture: amd64
Filename: pool/main/e/etcd/etcd-server_3.5.1-1_amd64.deb
Size: 8000000
SHA256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc

Package: etcd-server
Version: 3.4.22-1
Architecture: amd64
Status: install ok installed
";

    #[test]
    fn stanzas_are_parsed_and_incomplete_ones_skipped() {
        let pins = parse_pins(SHOW, "etcd-server", "amd64");
        assert_eq!(pins.len(), 3);
        assert_eq!(pins[0].sha256, "a".repeat(64));
        assert_eq!(pins[0].size, 7_000_000);
        assert_eq!(
            pins[0].filename,
            "pool/main/e/etcd/etcd-server_3.4.23-4+b6_amd64.deb"
        );
        assert!(parse_pins(SHOW, "etcd-server", "arm64").is_empty());
    }

    #[test]
    fn the_newest_matching_version_is_chosen() {
        let pins = parse_pins(SHOW, "etcd-server", "amd64");
        assert_eq!(
            choose(pins.clone(), "etcd-server", "3.4.23")
                .unwrap()
                .version,
            "3.4.23-4+b6"
        );
        assert_eq!(
            choose(pins.clone(), "etcd-server", "3.4.23-4")
                .unwrap()
                .version,
            "3.4.23-4+b6"
        );
        assert_eq!(
            choose(pins.clone(), "etcd-server", "3").unwrap().version,
            "3.5.1-1"
        );
        let err = choose(pins, "etcd-server", "3.6").unwrap_err();
        assert!(
            err.to_string().contains("3.5.1-1, 3.4.23-4+b6, 3.4.23-4"),
            "{err}"
        );
    }

    #[test]
    fn candidate_is_read_from_policy() {
        let policy = "coreutils:\n  Installed: 9.1-1\n  Candidate: 9.1-1\n  Version table:\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("9.1-1"));
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn option_like_names_are_refused() {
        assert!(check_name("package", "-o").is_err());
        assert!(check_name("package", "a b").is_err());
        assert!(check_name("package", "foo:amd64").is_err());
        assert!(check_name("version", "1:2.3-4+b1~x").is_ok());
        assert!(check_name("package", "libstdc++6").is_ok());
    }
}
