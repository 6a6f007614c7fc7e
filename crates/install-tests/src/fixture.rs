//! Builds in kiln's host contract: role bundles `<role>-<os>-<16hex>.tar.gz` written by
//! kiln_bundle (BUNDLE, UNITS, IMAGES, PACKAGES, HEALTH, install.sh, rootfs/…, images/…,
//! packages/…) and the host's secrets.tar.gz (HOST, BUNDLES, rootfs/…). The contract members
//! come from [`kiln_bundle::contract`], the writer `kiln build` uses, so install.sh is tested
//! against what the build produces.

use std::path::{Path, PathBuf};

use kiln_bundle::contract::{self, BundleMeta, BundleRef, HostMembers, HostMeta, RoleMembers};
use kiln_bundle::{BundleSpec, Entry, Source};

/// A file to install on the host: absolute path, mode, content.
#[derive(Debug, Clone)]
pub struct HostFile {
    /// Absolute path on the host.
    pub path: String,
    /// One of kiln's normalised modes.
    pub mode: u32,
    /// Content.
    pub content: Vec<u8>,
}

/// A [`HostFile`].
pub fn file(path: &str, mode: u32, content: impl AsRef<[u8]>) -> HostFile {
    HostFile {
        path: path.into(),
        mode,
        content: content.as_ref().to_vec(),
    }
}

/// One role bundle's content.
#[derive(Debug, Clone, Default)]
pub struct Role {
    /// KILN_ROLE.
    pub name: String,
    /// rootfs/ files.
    pub files: Vec<HostFile>,
    /// UNITS, in order.
    pub units: Vec<String>,
    /// `images/<name>` tarballs, listed in IMAGES.
    pub images: Vec<(String, Vec<u8>)>,
    /// IMAGE-DIGESTS lines (`images/<name> <reference> <manifest digest>`); the member is
    /// written only when there are any (install.sh then checks containerd against them).
    pub image_digests: Vec<String>,
    /// `packages/<file>` packages, listed in PACKAGES in this order.
    pub packages: Vec<(String, Vec<u8>)>,
    /// HEALTH command line (may be empty).
    pub health: String,
    /// Extra BUNDLE lines, e.g. `("KILN_NEEDS_DEFAULT_ROUTE", "1")`.
    pub bundle_extra: Vec<(String, String)>,
}

impl Role {
    /// An empty role called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The host a build is for (its HOST member and own files).
#[derive(Debug, Clone)]
pub struct Host {
    /// KILN_HOST.
    pub name: String,
    /// KILN_BUILD_ID (64 hex).
    pub build_id: String,
    /// KILN_GENERATION.
    pub generation: u32,
    /// KILN_OS, KILN_OS_FAMILY, KILN_ARCH (also written into each bundle's BUNDLE).
    pub os: String,
    /// See `os`.
    pub family: String,
    /// See `os`.
    pub arch: String,
    /// The host's own rootfs/ files (certificates, keys, host.env).
    pub files: Vec<HostFile>,
    /// KILN_NOT_AFTER (epoch seconds).
    pub not_after: Option<i64>,
    /// KILN_NOT_BEFORE (epoch seconds).
    pub not_before: Option<i64>,
    /// Extra HOST lines, e.g. `("KILN_NEEDS_X", "1")`.
    pub extra: Vec<(String, String)>,
}

impl Host {
    /// Host `name` of a Debian 12 build of `generation` on this machine's architecture.
    pub fn new(name: &str, generation: u32) -> Self {
        Self {
            name: name.into(),
            build_id: crate::sha256_hex(format!("build {generation}").as_bytes()),
            generation,
            os: "debian12".into(),
            family: "debian".into(),
            arch: machine_arch().into(),
            files: vec![file(
                "/etc/kiln/host.env",
                0o644,
                format!("KILN_HOST={name}\n"),
            )],
            not_after: None,
            not_before: None,
            extra: Vec::new(),
        }
    }
}

/// kiln's name for this machine's architecture.
pub fn machine_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A written build: the folder install.sh gets as --dir.
#[derive(Debug, Clone)]
pub struct Build {
    /// Folder with secrets.tar.gz and the bundles.
    pub dir: PathBuf,
    /// --secrets-sha256.
    pub secrets_sha256: String,
    /// (file name, sha256) of each bundle, in BUNDLES order.
    pub bundles: Vec<(String, String)>,
}

/// An archive entry before writing: (path, mode, content).
pub type Plain = (String, u32, Vec<u8>);

/// A contract member as a plain entry (the contract writes only in-memory members).
fn plain(e: Entry) -> Plain {
    match e.source {
        Source::Bytes(b) => (e.path, e.mode, b),
        Source::File { .. } => unreachable!("contract members are in memory"),
    }
}

/// The BUNDLE member of `role`'s bundle for `host`.
pub fn bundle_meta(role: &Role, host: &Host) -> BundleMeta {
    BundleMeta {
        role: role.name.clone(),
        os: host.os.clone(),
        family: host.family.clone(),
        arch: host.arch.clone(),
        extra: role.bundle_extra.clone(),
    }
}

/// The HOST member of `host`'s secrets archive (cluster `lab`, address 10.77.0.11).
pub fn host_meta(host: &Host) -> HostMeta {
    HostMeta {
        cluster: "lab".into(),
        host: host.name.clone(),
        ip: "10.77.0.11".into(),
        build_id: host.build_id.clone(),
        generation: host.generation.into(),
        arch: host.arch.clone(),
        os: host.os.clone(),
        family: host.family.clone(),
        not_after: host.not_after,
        not_before: host.not_before,
        extra: host.extra.clone(),
    }
}

/// Every entry of `role`'s bundle except MANIFEST.
pub fn role_entries(role: &Role, host: &Host) -> Vec<Plain> {
    let images: Vec<String> = role
        .images
        .iter()
        .map(|i| format!("images/{}", i.0))
        .collect();
    let packages: Vec<String> = role
        .packages
        .iter()
        .map(|p| format!("packages/{}", p.0))
        .collect();
    let install_sh = std::fs::read(crate::install_sh()).expect("read install.sh");
    let members = RoleMembers {
        meta: bundle_meta(role, host),
        units: &role.units,
        images: &images,
        image_digests: (!role.image_digests.is_empty()).then_some(role.image_digests.as_slice()),
        packages: &packages,
        health: (!role.health.is_empty()).then_some(role.health.as_str()),
        install_sh: &install_sh,
    };
    let mut e: Vec<Plain> = members.entries().into_iter().map(plain).collect();
    e.extend(
        role.images
            .iter()
            .zip(&images)
            .map(|((_, c), path)| (path.clone(), 0o644, c.clone())),
    );
    e.extend(
        role.packages
            .iter()
            .zip(&packages)
            .map(|((_, c), path)| (path.clone(), 0o644, c.clone())),
    );
    e.extend(rootfs(&role.files));
    e
}

/// BUNDLES lines of `bundles`, (file name, sha256) pairs.
pub fn bundle_refs(bundles: &[(String, String)]) -> Vec<BundleRef> {
    bundles
        .iter()
        .map(|(file, sha256)| BundleRef {
            sha256: sha256.clone(),
            file: file.clone(),
        })
        .collect()
}

/// Every entry of `host`'s secrets.tar.gz except MANIFEST; `bundles` are (file name, sha256).
pub fn secrets_entries(host: &Host, bundles: &[(String, String)]) -> Vec<Plain> {
    secrets_entries_with_deltas(host, bundles, &[])
}

/// [`secrets_entries`] whose BUNDLES also has `deltas`' lines.
pub fn secrets_entries_with_deltas(
    host: &Host,
    bundles: &[(String, String)],
    deltas: &[contract::DeltaRef],
) -> Vec<Plain> {
    let refs = bundle_refs(bundles);
    let members = HostMembers {
        meta: host_meta(host),
        bundles: &refs,
        deltas,
    };
    let mut e: Vec<Plain> = members.entries().into_iter().map(plain).collect();
    e.extend(rootfs(&host.files));
    e
}

fn rootfs(files: &[HostFile]) -> impl Iterator<Item = Plain> + '_ {
    files
        .iter()
        .map(|f| (contract::rootfs_path(&f.path), f.mode, f.content.clone()))
}

fn spec(entries: Vec<Plain>) -> BundleSpec {
    BundleSpec {
        entries: entries
            .into_iter()
            .map(|(path, mode, content)| Entry {
                path,
                mode,
                source: Source::Bytes(content),
            })
            .collect(),
        mtime: 0,
    }
}

/// Writes `role`'s bundle into `dir` with kiln's writer; returns (file name, sha256).
pub fn write_role(dir: &Path, role: &Role, host: &Host) -> (String, String) {
    let stem = format!("{}-{}", role.name, host.os);
    let w = kiln_bundle::write_bundle(dir, &stem, &spec(role_entries(role, host)))
        .expect("write bundle");
    (w.file_name, w.sha256)
}

/// Writes `dir`/secrets.tar.gz (mode 0600) naming `bundles`; returns its sha256.
pub fn write_secrets(dir: &Path, host: &Host, bundles: &[(String, String)]) -> String {
    let spec = spec(secrets_entries(host, bundles));
    kiln_bundle::write_archive(&dir.join(contract::SECRETS), 0o600, &spec, true)
        .expect("write secrets")
        .sha256
}

/// Writes a complete build for `host` with `roles` (BUNDLES in this order) into `dir`.
pub fn write_build(dir: &Path, host: &Host, roles: &[Role]) -> Build {
    std::fs::create_dir_all(dir).expect("create build dir");
    let bundles: Vec<_> = roles.iter().map(|r| write_role(dir, r, host)).collect();
    let secrets_sha256 = write_secrets(dir, host, &bundles);
    Build {
        dir: dir.to_owned(),
        secrets_sha256,
        bundles,
    }
}
