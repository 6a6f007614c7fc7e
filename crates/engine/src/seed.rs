//! cloud-init NoCloud seeds: documents per host, as a folder, a VFAT image and an ISO.

use std::path::{Path, PathBuf};

use cloud_init_config::{
    CloudConfig, Ethernet, ImageDigest, ManageEtcHosts, MetaData, Nameservers, NetworkConfig,
    RunCmd, Seed, Timestamp, WriteFile,
};
use kiln_plan::HostPlan;
use kiln_spec::BundleSource;

use crate::Error;

/// Which seed forms to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedKinds {
    /// `hosts/<host>/seed/` with the documents and a `kiln/` folder.
    pub dir: bool,
    /// `hosts/<host>/cidata.iso`.
    pub iso: bool,
    /// `hosts/<host>/cidata.img` (VFAT).
    pub vfat: bool,
}

impl SeedKinds {
    /// All three forms.
    pub const ALL: SeedKinds = SeedKinds {
        dir: true,
        iso: true,
        vfat: true,
    };

    /// Parses a list like `iso,vfat,dir` (or `none`).
    pub fn parse(s: &str) -> Result<SeedKinds, UnknownSeedForm> {
        let mut k = SeedKinds {
            dir: false,
            iso: false,
            vfat: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "dir" => k.dir = true,
                "iso" => k.iso = true,
                "vfat" => k.vfat = true,
                "none" => {}
                other => return Err(UnknownSeedForm(other.to_string())),
            }
        }
        Ok(k)
    }
}

/// A `--seed` list names a form kiln does not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown seed form {0:?}; expected iso, vfat, dir or none")]
pub struct UnknownSeedForm(pub String);

/// Where the seed's `write_files` puts the cluster's public signing key on the host: install.sh's
/// default key, which it checks every build's signatures with (runs by hand included).
pub const HOST_SIGNING_KEY: &str = "/etc/kiln/signing.pub";

/// How a seed's runcmd runs install.sh.
#[derive(Debug, Clone, Copy)]
pub struct InstallRun<'a> {
    /// install.sh's sha256, pinned in user-data.
    pub install_sha: &'a str,
    /// The host's secrets.tar.gz sha256, pinned in user-data.
    pub secrets_sha: &'a str,
    /// Where bundles (and install.sh) the seed does not carry come from.
    pub sources: &'a [BundleSource],
    /// The seed carries install.sh and the bundles.
    pub carried: bool,
    /// Test aid: run install.sh a second time (it must report `unchanged`).
    pub rerun: bool,
    /// `[seeds] health-wait-seconds`: install.sh's `KILN_HEALTH_WAIT`, if set.
    pub health_wait: Option<u64>,
}

/// The shell run by cloud-init: find the kiln folder (seed folder or the CIDATA medium), check
/// install.sh against its pinned digest, and run it with the pinned secrets digest and the
/// cluster's bundle sources (for bundles the seed does not carry) and the cluster's public
/// signing key at [`HOST_SIGNING_KEY`]. A seed that carries no
/// bundles carries no install.sh either (`carried` false): the script takes it by its digest
/// from the same sources, with install.sh's own fetch functions.
pub fn runcmd_script(run: &InstallRun<'_>) -> String {
    let InstallRun {
        install_sha,
        secrets_sha,
        sources,
        carried,
        rerun,
        health_wait,
    } = *run;
    // Validated to hold no quote, space or shell metacharacter; quoted all the same.
    let quoted: Vec<String> = sources.iter().map(|s| format!("'{s}'")).collect();
    // The key write_files placed: install.sh then refuses a build it does not verify (without
    // the flag, a host where the key is missing would take unsigned builds).
    let wait = health_wait_prefix(health_wait);
    let mut run = format!(
        "{wait}sh \"$i\" --dir \"$d\" --secrets-sha256 {secrets_sha} --signing-key {HOST_SIGNING_KEY}"
    );
    for s in &quoted {
        run.push_str(&format!(" --source {s}"));
    }
    let mut s = format!(
        "set -eu\n\
         d=/var/lib/cloud/seed/nocloud/kiln\n\
         if [ ! -f \"$d/{secrets}\" ]; then\n\
         \x20 m=/run/kiln/seed; mkdir -p \"$m\"\n\
         \x20 mountpoint -q \"$m\" || mount -o ro LABEL=CIDATA \"$m\" || mount -o ro /dev/disk/by-label/CIDATA \"$m\"\n\
         \x20 d=\"$m/kiln\"\n\
         fi\n\
         i=\"$d/install.sh\"\n",
        secrets = kiln_bundle::contract::SECRETS,
    );
    if !carried {
        let words: Vec<String> = sources.iter().map(ToString::to_string).collect();
        s.push_str(&fetch_install_sh(install_sha, &words.join(" ")));
    }
    s.push_str(&format!(
        "echo \"{install_sha}  $i\" | sha256sum -c --quiet || {{ echo 'KILN seed fail install.sh digest mismatch'; exit 1; }}\n\
         {run}\n"
    ));
    if rerun {
        // Test aid: a second run must report `unchanged`.
        s.push_str(&format!("{run}\n"));
    }
    s
}

/// The runcmd's `KILN_HEALTH_WAIT=N ` before install.sh (nothing when not set).
fn health_wait_prefix(health_wait: Option<u64>) -> String {
    match health_wait {
        Some(n) => format!("{HEALTH_WAIT_VAR}={n} "),
        None => String::new(),
    }
}

const HEALTH_WAIT_VAR: &str = "KILN_HEALTH_WAIT";

/// install.sh's functions that take a file of an out folder by its digest from the sources,
/// in the order the seed's script defines them.
const FETCH_FUNCTIONS: [&str; 10] = [
    "sha_of",
    "last_line",
    "mkparents",
    "fetch_file",
    "get_from",
    "medium_mounted",
    "http_client",
    "http_get",
    "oci_blob",
    "challenge_param",
];

/// The part of the seed's script that takes install.sh (`$i`) from `sources` (words)
/// when the seed does not carry it: install.sh's own [`FETCH_FUNCTIONS`], so the seed tries
/// the sources exactly as install.sh does for bundles, and keeps the copy by its digest in
/// `/var/lib/kiln/downloads`, where a rerun finds it.
fn fetch_install_sh(install_sha: &str, sources: &str) -> String {
    let mut s = String::from(
        "if [ ! -f \"$i\" ]; then\n\
         # This seed carries no install.sh: take it by its digest from the sources.\n",
    );
    s.push_str(&fetch_functions());
    s.push_str(&format!(
        "fail() {{ rm -rf \"$WORK\"; echo \"KILN seed fail $*\"; exit 1; }}\n\
         umask 077\n\
         DIR=$d DOWNLOADS=/var/lib/kiln/downloads SOURCES='{sources}' FETCHED='' WORK=$(mktemp -d)\n\
         fetch_file {install_sha} install.sh {install_sha}.sh file || fail \"$WHY\"\n\
         rm -rf \"$WORK\"\n\
         i=$FOUND\n\
         fi\n"
    ));
    s
}

/// The definitions of install.sh's [`FETCH_FUNCTIONS`], copied out of install.sh.
fn fetch_functions() -> String {
    FETCH_FUNCTIONS
        .iter()
        .map(|name| {
            shell_function(crate::INSTALL_SH, name)
                .unwrap_or_else(|| panic!("install.sh has no function {name}()"))
        })
        .collect()
}

/// Where the runcmd of a network seed keeps the host's secrets archive: install.sh's `--dir`.
pub const NET_SEED_DIR: &str = "/var/lib/kiln/net-seed";

/// How the runcmd of a network seed (the user-data `kiln serve` hands a host that booted from
/// the network, which has no seed medium) takes its files and runs install.sh.
#[derive(Debug, Clone, Copy)]
pub struct NetInstallRun<'a> {
    /// install.sh's sha256.
    pub install_sha: &'a str,
    /// The host's secrets.tar.gz sha256.
    pub secrets_sha: &'a str,
    /// The base of the host's one-time secrets URL (`http://<server>/secrets`).
    pub secrets_base: &'a str,
    /// The last component of that URL: the host's one-time token.
    pub secrets_token: &'a str,
    /// The server's base URL: the one source of install.sh and the bundles.
    pub server: &'a str,
    /// install.sh's `KILN_HEALTH_WAIT` (the build's `health-wait-seconds`, as the disk seeds), if set.
    pub health_wait: Option<u64>,
}

/// The shell a network seed's runcmd runs: the secrets from their one-time URL (kept by their
/// pinned digest in [`NET_SEED_DIR`], so a rerun, which that URL refuses, finds them), then
/// install.sh by its digest from the server, both with install.sh's own fetch functions, then
/// install.sh with the server as its source and the key write_files placed.
pub fn net_runcmd_script(run: &NetInstallRun<'_>) -> String {
    let NetInstallRun {
        install_sha,
        secrets_sha,
        secrets_base,
        secrets_token,
        server,
        health_wait,
    } = *run;
    let mut s = String::from("set -eu\n");
    s.push_str(&fetch_functions());
    s.push_str(&format!(
        "fail() {{ rm -rf \"$WORK\"; echo \"KILN seed fail $*\"; exit 1; }}\n\
         umask 077\n\
         d={NET_SEED_DIR} FETCHED='' WORK=$(mktemp -d)\n\
         DIR=$d DOWNLOADS=$d SOURCES='{secrets_base}'\n\
         fetch_file {secrets_sha} '{secrets_token}' {secrets} secrets {secrets} || fail \"$WHY\"\n\
         DOWNLOADS=/var/lib/kiln/downloads SOURCES='{server}'\n\
         fetch_file {install_sha} install.sh {install_sha}.sh file || fail \"$WHY\"\n\
         rm -rf \"$WORK\"\n\
         i=$FOUND\n\
         echo \"{install_sha}  $i\" | sha256sum -c --quiet || {{ echo 'KILN seed fail install.sh digest mismatch'; exit 1; }}\n\
         {wait}sh \"$i\" --dir \"$d\" --secrets-sha256 {secrets_sha} --signing-key {HOST_SIGNING_KEY} --source '{server}'\n",
        secrets = kiln_bundle::contract::SECRETS,
        wait = health_wait_prefix(health_wait),
    ));
    s
}

/// The definition of function `name` in the shell script `script`: from its `name() {` line
/// through the `}` that closes it (the line itself for a one-line function), without its
/// comment lines other than shellcheck's directives.
fn shell_function(script: &str, name: &str) -> Option<String> {
    let head = format!("{name}() {{");
    let mut lines = script.lines().skip_while(|l| !l.starts_with(&head));
    let first = lines.next()?;
    let mut out = format!("{first}\n");
    if first.trim_end().ends_with('}') {
        return Some(out);
    }
    for line in lines {
        let t = line.trim_start();
        if t.starts_with('#') && !t.starts_with("# shellcheck") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "}" {
            return Some(out);
        }
    }
    None
}

/// The seed documents of one host, from its plan and how its runcmd runs install.sh; `signing_pub`: the cluster's public signing key
/// (PEM), placed at [`HOST_SIGNING_KEY`] by user-data's `write_files` (user-data carries it, so
/// the seed is its only authority) and required by the runcmd's install.sh.
pub fn seed_for(host: &HostPlan, build_id: &str, run: &InstallRun<'_>, signing_pub: &[u8]) -> Seed {
    let net = &host.network;
    let mut eth = Ethernet::static_by_mac(
        host.mac.as_str(),
        &net.interface,
        [host.address()],
        net.gateway.map(|g| g.to_string()).as_deref(),
    );
    if !net.nameservers.is_empty() {
        eth.nameservers = Some(Nameservers {
            addresses: net.nameservers.iter().map(|n| n.to_string()).collect(),
            search: Vec::new(),
        });
    }
    let mut ethernets = std::collections::BTreeMap::new();
    ethernets.insert(net.interface.clone(), eth);
    let user_data = CloudConfig {
        hostname: Some(host.name.clone()),
        manage_etc_hosts: Some(ManageEtcHosts::Disabled),
        ssh_authorized_keys: host.ssh_authorized_keys.clone(),
        write_files: vec![WriteFile::new(HOST_SIGNING_KEY, signing_pub)
            .with_mode(0o644)
            .with_owner("root:root")],
        runcmd: vec![RunCmd::argv(["sh", "-c", &runcmd_script(run)])],
        final_message: Some(format!(
            "KILN cloud-init final {} after $UPTIME seconds",
            host.name
        )),
        ..CloudConfig::default()
    };
    Seed {
        user_data,
        meta_data: MetaData {
            instance_id: cloud_init_config::instance_id(&host.name, build_id),
            local_hostname: Some(host.name.clone()),
        },
        network_config: Some(NetworkConfig { ethernets }),
    }
}

/// Writes the requested seed forms into `host_dir`; `carry` are (name in `kiln/`, source) files.
/// Returns the written files (relative to `host_dir`), each image with the digest its writer
/// took while writing it (the seed folder's files are links or a few bytes: hashed later).
pub fn write_seeds(
    host_dir: &Path,
    seed: &Seed,
    carry: &[(String, PathBuf)],
    kinds: SeedKinds,
    time: u64,
) -> Result<Vec<(String, Option<ImageDigest>)>, Error> {
    let mut out = Vec::new();
    let extra: Vec<(String, PathBuf)> = carry
        .iter()
        .map(|(n, p)| (format!("kiln/{n}"), p.clone()))
        .collect();
    let ts = Timestamp::from_unix(time.max(315_532_800) as i64).map_err(Error::Seed)?;
    if kinds.dir {
        let dir = host_dir.join("seed");
        cloud_init_config::write_seed_dir(&dir, seed).map_err(Error::Seed)?;
        for f in cloud_init_config::Seed::render(seed).map_err(Error::Seed)? {
            out.push((format!("seed/{}", f.name), None));
        }
        let kdir = dir.join("kiln");
        std::fs::create_dir_all(&kdir).map_err(crate::io_err(&kdir))?;
        for (name, src) in carry {
            let dest = kdir.join(name);
            // Hard links: the seed folder costs no space beside bundles/.
            if std::fs::hard_link(src, &dest).is_err() {
                std::fs::copy(src, &dest).map_err(crate::io_err(&dest))?;
            }
            out.push((format!("seed/kiln/{name}"), None));
        }
    }
    if kinds.iso {
        let d = cloud_init_config::write_iso(&host_dir.join("cidata.iso"), seed, &extra, ts)
            .map_err(Error::Seed)?;
        out.push(("cidata.iso".into(), Some(d)));
    }
    if kinds.vfat {
        let d = cloud_init_config::write_vfat(&host_dir.join("cidata.img"), seed, &extra, ts)
            .map_err(Error::Seed)?;
        out.push(("cidata.img".into(), Some(d)));
    }
    Ok(out)
}
