//! The host contract: names and formats of the members install.sh reads from a role bundle
//! (`BUNDLE`, `UNITS`, `IMAGES`, `IMAGE-DIGESTS`, `PACKAGES`, `HEALTH`, `install.sh`, `MANIFEST`)
//! and from a host's secrets archive (`HOST`, `BUNDLES`, `BUNDLES.sig`), with one writer and one
//! parser each, and the members of a delta bundle (`DELTA`, `REMOVED`, `NEW-MANIFEST`, `tree/`).
//!
//! `kiln build` writes bundles through [`RoleMembers::entries`] and [`HostMembers::entries`];
//! the install.sh test fixtures do too, so the installer is tested against what the build
//! writes. Changing a format here is changing install.sh's input.

use crate::{Entry, Source};

pub use crate::manifest::MANIFEST_NAME as MANIFEST;

/// Role bundle member: `KEY=VALUE` lines naming role, OS and architecture.
pub const BUNDLE: &str = "BUNDLE";
/// Role bundle member: systemd units to enable, one per line, in order.
pub const UNITS: &str = "UNITS";
/// Role bundle member: image tarballs (`images/<file>`) to import, one per line.
pub const IMAGES: &str = "IMAGES";
/// Role bundle member: `images/<file> <reference> <manifest digest>` lines containerd must show.
pub const IMAGE_DIGESTS: &str = "IMAGE-DIGESTS";
/// Role bundle member: OS packages (`packages/<file>`) in install order, one per line.
pub const PACKAGES: &str = "PACKAGES";
/// Role bundle member: the health command line (empty when the role has none).
pub const HEALTH: &str = "HEALTH";
/// Role bundle member (mode 0755) and out-folder file: the installer.
pub const INSTALL_SH: &str = "install.sh";
/// Secrets archive member: `KEY=VALUE` lines naming cluster, host and build.
pub const HOST: &str = "HOST";
/// Secrets archive member: `<sha256> <bundle file>` lines in install order.
pub const BUNDLES: &str = "BUNDLES";
/// BUNDLES line prefix of a delta: `#delta <bundle sha256> <delta sha256> <delta file> <base
/// sha256>`. The `#` makes it a comment to an install.sh that knows no deltas.
pub const DELTA_LINE: &str = "#delta";
/// Delta bundle member: `KEY=VALUE` lines naming the bundle id, the base and the bundle it makes.
pub const DELTA: &str = "DELTA";
/// Delta bundle member: paths of the base bundle that the new one no longer has, one per line.
pub const DELTA_REMOVED: &str = "REMOVED";
/// Delta bundle member: the new bundle's MANIFEST, byte for byte.
pub const DELTA_MANIFEST: &str = "NEW-MANIFEST";
/// Delta bundle folder: the new bundle's added and changed entries, at their paths under it.
pub const DELTA_TREE: &str = "tree";
/// Secrets archive member: the DER ECDSA-SHA256 signature, by the cluster's signing key, of
/// [`signed_host_text`] (HOST then BUNDLES), which install.sh checks before using either.
pub const BUNDLES_SIG: &str = "BUNDLES.sig";
/// A host's secrets archive (mode 0600) in `hosts/<host>/` and in its seed.
pub const SECRETS: &str = "secrets.tar.gz";
/// Folder of the files installed under `/` on the host, in bundles and secrets archives.
pub const ROOTFS: &str = "rootfs";
/// Mode of the metadata members.
const META_MODE: u32 = 0o644;
/// Mode of install.sh.
const INSTALL_SH_MODE: u32 = 0o755;

/// Why a contract member could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// A line is not of the member's form.
    #[error("{member} line {line}: {reason}")]
    BadLine {
        /// Member name.
        member: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A required key is absent.
    #[error("{member}: no {key}")]
    MissingKey {
        /// Member name.
        member: &'static str,
        /// The key.
        key: &'static str,
    },
    /// The text is not UTF-8.
    #[error("{member}: not UTF-8")]
    NotUtf8 {
        /// Member name.
        member: &'static str,
    },
}

/// The archive path of a host file at absolute path `abs`: `rootfs/<abs without leading />`.
pub fn rootfs_path(abs: &str) -> String {
    format!("{ROOTFS}/{}", abs.trim_start_matches('/'))
}

/// Renders a list member: one item per line, each ending in a newline.
pub fn render_lines(items: &[String]) -> Vec<u8> {
    items
        .iter()
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Parses a list member written by [`render_lines`].
pub fn parse_lines(member: &'static str, bytes: &[u8]) -> Result<Vec<String>, ContractError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ContractError::NotUtf8 { member })?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Renders the HEALTH member: the command line and a newline, or nothing.
pub fn render_health(health: Option<&str>) -> Vec<u8> {
    health
        .map(|h| format!("{h}\n"))
        .unwrap_or_default()
        .into_bytes()
}

/// Parses the HEALTH member.
pub fn parse_health(bytes: &[u8]) -> Result<Option<String>, ContractError> {
    let lines = parse_lines(HEALTH, bytes)?;
    Ok(lines.into_iter().next().filter(|l| !l.is_empty()))
}

fn kv(text: &mut String, key: &str, value: impl std::fmt::Display) {
    text.push_str(&format!("{key}={value}\n"));
}

/// `KEY=VALUE` lines of an env-style member, in order.
fn parse_kv(member: &'static str, bytes: &[u8]) -> Result<Vec<(String, String)>, ContractError> {
    parse_lines(member, bytes)?
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ContractError::BadLine {
                    member,
                    line: i + 1,
                    reason: "not KEY=VALUE".into(),
                })
        })
        .collect()
}

/// Takes `key` out of parsed `KEY=VALUE` pairs.
fn take(
    member: &'static str,
    pairs: &mut Vec<(String, String)>,
    key: &'static str,
) -> Result<String, ContractError> {
    let i = pairs
        .iter()
        .position(|(k, _)| k == key)
        .ok_or(ContractError::MissingKey { member, key })?;
    Ok(pairs.remove(i).1)
}

/// The BUNDLE member: what a role bundle is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMeta {
    /// KILN_ROLE.
    pub role: String,
    /// KILN_OS, e.g. `debian12`.
    pub os: String,
    /// KILN_OS_FAMILY, e.g. `debian`.
    pub family: String,
    /// KILN_ARCH, e.g. `amd64`.
    pub arch: String,
    /// Further `KEY=VALUE` lines, after the others.
    pub extra: Vec<(String, String)>,
}

impl BundleMeta {
    /// The member's text.
    pub fn render(&self) -> String {
        let mut t = String::new();
        kv(&mut t, "KILN_ROLE", &self.role);
        kv(&mut t, "KILN_OS", &self.os);
        kv(&mut t, "KILN_OS_FAMILY", &self.family);
        kv(&mut t, "KILN_ARCH", &self.arch);
        for (k, v) in &self.extra {
            kv(&mut t, k, v);
        }
        t
    }

    /// Parses the member's text.
    pub fn parse(bytes: &[u8]) -> Result<Self, ContractError> {
        let mut p = parse_kv(BUNDLE, bytes)?;
        Ok(Self {
            role: take(BUNDLE, &mut p, "KILN_ROLE")?,
            os: take(BUNDLE, &mut p, "KILN_OS")?,
            family: take(BUNDLE, &mut p, "KILN_OS_FAMILY")?,
            arch: take(BUNDLE, &mut p, "KILN_ARCH")?,
            extra: p,
        })
    }
}

/// The HOST member: which host and build a secrets archive is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMeta {
    /// KILN_CLUSTER.
    pub cluster: String,
    /// KILN_HOST.
    pub host: String,
    /// KILN_IP.
    pub ip: String,
    /// KILN_BUILD_ID (64 hex).
    pub build_id: String,
    /// KILN_GENERATION.
    pub generation: u64,
    /// KILN_ARCH.
    pub arch: String,
    /// KILN_OS.
    pub os: String,
    /// KILN_OS_FAMILY.
    pub family: String,
    /// KILN_NOT_AFTER: epoch seconds when the host's first certificate expires.
    pub not_after: Option<i64>,
    /// KILN_NOT_BEFORE: epoch seconds from when all the host's certificates are valid.
    pub not_before: Option<i64>,
    /// Further `KEY=VALUE` lines, after the others.
    pub extra: Vec<(String, String)>,
}

impl HostMeta {
    /// The member's text.
    pub fn render(&self) -> String {
        let mut t = String::new();
        kv(&mut t, "KILN_CLUSTER", &self.cluster);
        kv(&mut t, "KILN_HOST", &self.host);
        kv(&mut t, "KILN_IP", &self.ip);
        kv(&mut t, "KILN_BUILD_ID", &self.build_id);
        kv(&mut t, "KILN_GENERATION", self.generation);
        kv(&mut t, "KILN_ARCH", &self.arch);
        kv(&mut t, "KILN_OS", &self.os);
        kv(&mut t, "KILN_OS_FAMILY", &self.family);
        if let Some(n) = self.not_after {
            kv(&mut t, "KILN_NOT_AFTER", n);
        }
        if let Some(n) = self.not_before {
            kv(&mut t, "KILN_NOT_BEFORE", n);
        }
        for (k, v) in &self.extra {
            kv(&mut t, k, v);
        }
        t
    }

    /// Parses the member's text.
    pub fn parse(bytes: &[u8]) -> Result<Self, ContractError> {
        let mut p = parse_kv(HOST, bytes)?;
        let number = |key: &'static str, v: &str| ContractError::BadLine {
            member: HOST,
            line: 0,
            reason: format!("{key}={v:?} is not a number"),
        };
        let generation = take(HOST, &mut p, "KILN_GENERATION")?;
        let mut optional = |key: &str| p.iter().position(|(k, _)| k == key).map(|i| p.remove(i).1);
        let not_after = optional("KILN_NOT_AFTER");
        let not_before = optional("KILN_NOT_BEFORE");
        Ok(Self {
            cluster: take(HOST, &mut p, "KILN_CLUSTER")?,
            host: take(HOST, &mut p, "KILN_HOST")?,
            ip: take(HOST, &mut p, "KILN_IP")?,
            build_id: take(HOST, &mut p, "KILN_BUILD_ID")?,
            generation: generation
                .parse()
                .map_err(|_| number("KILN_GENERATION", &generation))?,
            arch: take(HOST, &mut p, "KILN_ARCH")?,
            os: take(HOST, &mut p, "KILN_OS")?,
            family: take(HOST, &mut p, "KILN_OS_FAMILY")?,
            not_after: not_after
                .map(|v| v.parse().map_err(|_| number("KILN_NOT_AFTER", &v)))
                .transpose()?,
            not_before: not_before
                .map(|v| v.parse().map_err(|_| number("KILN_NOT_BEFORE", &v)))
                .transpose()?,
            extra: p,
        })
    }
}

/// One BUNDLES line: a role bundle a host installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRef {
    /// sha256 of the bundle file.
    pub sha256: String,
    /// The bundle's file name (no folder).
    pub file: String,
}

/// One delta line of BUNDLES: a smaller way to the bundle `for_sha256` for a host holding the
/// base bundle `base_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRef {
    /// sha256 of the full bundle the delta rebuilds (a `BundleRef` of the same BUNDLES).
    pub for_sha256: String,
    /// sha256 of the delta file.
    pub sha256: String,
    /// The delta's file name (no folder).
    pub file: String,
    /// sha256 of the base bundle the delta applies to.
    pub base_sha256: String,
}

impl DeltaRef {
    fn line(&self) -> String {
        format!(
            "{DELTA_LINE} {} {} {} {}",
            self.for_sha256, self.sha256, self.file, self.base_sha256
        )
    }
}

/// Renders the BUNDLES member.
pub fn render_bundles(bundles: &[BundleRef]) -> Vec<u8> {
    render_bundles_with_deltas(bundles, &[])
}

/// Renders the BUNDLES member: the full bundles' lines, then one [`DELTA_LINE`] per delta.
pub fn render_bundles_with_deltas(bundles: &[BundleRef], deltas: &[DeltaRef]) -> Vec<u8> {
    render_lines(
        &bundles
            .iter()
            .map(|b| format!("{} {}", b.sha256, b.file))
            .chain(deltas.iter().map(DeltaRef::line))
            .collect::<Vec<_>>(),
    )
}

/// Parses the delta lines of the BUNDLES member.
pub fn parse_deltas(bytes: &[u8]) -> Result<Vec<DeltaRef>, ContractError> {
    parse_lines(BUNDLES, bytes)?
        .into_iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(&format!("{DELTA_LINE} ")))
        .map(|(i, l)| match l.split(' ').collect::<Vec<_>>()[..] {
            [_, for_sha256, sha256, file, base_sha256] => Ok(DeltaRef {
                for_sha256: for_sha256.to_owned(),
                sha256: sha256.to_owned(),
                file: file.to_owned(),
                base_sha256: base_sha256.to_owned(),
            }),
            _ => Err(ContractError::BadLine {
                member: BUNDLES,
                line: i + 1,
                reason: format!("not `{DELTA_LINE} <sha256> <delta sha256> <file> <base sha256>`"),
            }),
        })
        .collect()
}

/// Parses the full-bundle lines of the BUNDLES member (comment lines, deltas among them, are
/// skipped as install.sh skips them).
pub fn parse_bundles(bytes: &[u8]) -> Result<Vec<BundleRef>, ContractError> {
    parse_lines(BUNDLES, bytes)?
        .into_iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .map(|(i, l)| {
            l.split_once(' ')
                .map(|(sha256, file)| BundleRef {
                    sha256: sha256.to_owned(),
                    file: file.to_owned(),
                })
                .ok_or_else(|| ContractError::BadLine {
                    member: BUNDLES,
                    line: i + 1,
                    reason: "not `<sha256> <file>`".into(),
                })
        })
        .collect()
}

/// What [`BUNDLES_SIG`] signs: the HOST member's bytes followed by the BUNDLES member's, so the
/// signature covers the cluster, host, build id and generation as well as every bundle digest.
///
/// The split is unambiguous because install.sh (and `kiln verify`) accept, in a signed archive,
/// only `KILN_…=` lines in HOST and only `<sha256> <file>` lines in BUNDLES: no line can move
/// from one member to the other and leave the signed bytes the same.
pub fn signed_host_text(host: &[u8], bundles: &[u8]) -> Vec<u8> {
    [host, bundles].concat()
}

fn meta(path: &str, mode: u32, bytes: impl Into<Vec<u8>>) -> Entry {
    Entry {
        path: path.into(),
        mode,
        source: Source::Bytes(bytes.into()),
    }
}

/// The contract members of a role bundle (everything but its rootfs/, images/ and packages/
/// content and the MANIFEST the writer adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMembers<'a> {
    /// BUNDLE.
    pub meta: BundleMeta,
    /// UNITS.
    pub units: &'a [String],
    /// IMAGES: `images/<file>` paths.
    pub images: &'a [String],
    /// IMAGE-DIGESTS lines; `None` leaves the member out (install.sh then checks nothing).
    pub image_digests: Option<&'a [String]>,
    /// PACKAGES: `packages/<file>` paths in install order.
    pub packages: &'a [String],
    /// HEALTH.
    pub health: Option<&'a str>,
    /// install.sh's text.
    pub install_sh: &'a [u8],
}

impl RoleMembers<'_> {
    /// The members as archive entries.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = vec![
            meta(BUNDLE, META_MODE, self.meta.render()),
            meta(UNITS, META_MODE, render_lines(self.units)),
            meta(IMAGES, META_MODE, render_lines(self.images)),
        ];
        if let Some(d) = self.image_digests {
            out.push(meta(IMAGE_DIGESTS, META_MODE, render_lines(d)));
        }
        out.push(meta(PACKAGES, META_MODE, render_lines(self.packages)));
        out.push(meta(HEALTH, META_MODE, render_health(self.health)));
        out.push(meta(INSTALL_SH, INSTALL_SH_MODE, self.install_sh));
        out
    }
}

/// The contract members of a host's secrets archive (everything but its rootfs/ files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMembers<'a> {
    /// HOST.
    pub meta: HostMeta,
    /// BUNDLES, in install order.
    pub bundles: &'a [BundleRef],
    /// BUNDLES' delta lines (after the bundles).
    pub deltas: &'a [DeltaRef],
}

impl HostMembers<'_> {
    /// The members as archive entries.
    pub fn entries(&self) -> Vec<Entry> {
        vec![
            meta(HOST, META_MODE, self.meta.render()),
            meta(
                BUNDLES,
                META_MODE,
                render_bundles_with_deltas(self.bundles, self.deltas),
            ),
        ]
    }

    /// The bytes [`BUNDLES_SIG`] signs for these members.
    pub fn signed_text(&self) -> Vec<u8> {
        signed_host_text(
            self.meta.render().as_bytes(),
            &render_bundles_with_deltas(self.bundles, self.deltas),
        )
    }

    /// The BUNDLES.sig entry for a signature over [`HostMembers::signed_text`].
    pub fn signature_entry(signature: Vec<u8>) -> Entry {
        meta(BUNDLES_SIG, META_MODE, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_meta() -> BundleMeta {
        BundleMeta {
            role: "etcd".into(),
            os: "debian12".into(),
            family: "debian".into(),
            arch: "amd64".into(),
            extra: vec![("KILN_NEEDS_DEFAULT_ROUTE".into(), "1".into())],
        }
    }

    fn host_meta(not_after: Option<i64>) -> HostMeta {
        HostMeta {
            cluster: "lab".into(),
            host: "etcd1".into(),
            ip: "10.77.0.11".into(),
            build_id: "ab".repeat(32),
            generation: 3,
            arch: "amd64".into(),
            os: "debian12".into(),
            family: "debian".into(),
            not_after,
            not_before: not_after.map(|n| n - 1_000),
            extra: vec![],
        }
    }

    #[test]
    fn bundle_meta_text_is_install_sh_env_lines() {
        let m = bundle_meta();
        assert_eq!(
            m.render(),
            "KILN_ROLE=etcd\nKILN_OS=debian12\nKILN_OS_FAMILY=debian\nKILN_ARCH=amd64\nKILN_NEEDS_DEFAULT_ROUTE=1\n"
        );
        assert_eq!(BundleMeta::parse(m.render().as_bytes()).unwrap(), m);
    }

    #[test]
    fn host_meta_round_trips_with_and_without_not_after() {
        for m in [host_meta(None), host_meta(Some(1_900_000_000))] {
            assert_eq!(HostMeta::parse(m.render().as_bytes()).unwrap(), m);
        }
        let text = host_meta(Some(5)).render();
        assert!(text.starts_with("KILN_CLUSTER=lab\nKILN_HOST=etcd1\nKILN_IP=10.77.0.11\n"));
        assert!(text.ends_with("KILN_OS_FAMILY=debian\nKILN_NOT_AFTER=5\nKILN_NOT_BEFORE=-995\n"));
    }

    #[test]
    fn host_meta_names_a_missing_key_and_a_bad_number() {
        assert_eq!(
            HostMeta::parse(b"KILN_GENERATION=1\n").unwrap_err(),
            ContractError::MissingKey {
                member: HOST,
                key: "KILN_CLUSTER"
            }
        );
        let bad = host_meta(None)
            .render()
            .replace("KILN_GENERATION=3", "KILN_GENERATION=x");
        assert!(HostMeta::parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("KILN_GENERATION=\"x\" is not a number"));
        assert!(matches!(
            BundleMeta::parse(b"KILN_ROLE\n"),
            Err(ContractError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn bundles_and_lists_round_trip() {
        let b = vec![
            BundleRef {
                sha256: "a".repeat(64),
                file: "common-debian12-0123456789abcdef.tar.gz".into(),
            },
            BundleRef {
                sha256: "b".repeat(64),
                file: "etcd-debian12-fedcba9876543210.tar.gz".into(),
            },
        ];
        let text = render_bundles(&b);
        assert!(text.starts_with(format!("{} common-", "a".repeat(64)).as_bytes()));
        assert_eq!(parse_bundles(&text).unwrap(), b);
        assert!(parse_bundles(b"nospace\n").is_err());
        let units = vec!["kubelet.service".to_string(), "chrony.service".into()];
        assert_eq!(parse_lines(UNITS, &render_lines(&units)).unwrap(), units);
        assert_eq!(render_lines(&[]), b"");
        assert_eq!(parse_lines(UNITS, b"").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn delta_lines_are_comments_to_the_full_bundle_parser() {
        let b = vec![BundleRef {
            sha256: "a".repeat(64),
            file: "etcd-debian12-aaaaaaaaaaaaaaaa.tar.gz".into(),
        }];
        let d = vec![DeltaRef {
            for_sha256: "a".repeat(64),
            sha256: "d".repeat(64),
            file: "etcd-debian12-delta-dddddddddddddddd.tar.gz".into(),
            base_sha256: "c".repeat(64),
        }];
        let text = render_bundles_with_deltas(&b, &d);
        let second = String::from_utf8(text.clone()).unwrap();
        assert_eq!(
            second.lines().nth(1).unwrap(),
            format!(
                "#delta {} {} etcd-debian12-delta-dddddddddddddddd.tar.gz {}",
                "a".repeat(64),
                "d".repeat(64),
                "c".repeat(64)
            )
        );
        assert_eq!(parse_bundles(&text).unwrap(), b);
        assert_eq!(parse_deltas(&text).unwrap(), d);
        assert_eq!(render_bundles_with_deltas(&b, &[]), render_bundles(&b));
        assert!(matches!(
            parse_deltas(b"#delta a b\n"),
            Err(ContractError::BadLine { line: 1, .. })
        ));
    }

    #[test]
    fn health_is_one_line_or_empty() {
        assert_eq!(render_health(None), b"");
        assert_eq!(parse_health(b"").unwrap(), None);
        let h = "curl -fsS http://127.0.0.1:2381/health";
        assert_eq!(
            parse_health(&render_health(Some(h))).unwrap().as_deref(),
            Some(h)
        );
    }

    #[test]
    fn role_members_leave_image_digests_out_only_when_asked() {
        let units = vec!["a.service".to_string()];
        let mut r = RoleMembers {
            meta: bundle_meta(),
            units: &units,
            images: &[],
            image_digests: Some(&[]),
            packages: &[],
            health: None,
            install_sh: b"#!/bin/sh\n",
        };
        let names = |r: &RoleMembers| r.entries().into_iter().map(|e| e.path).collect::<Vec<_>>();
        assert_eq!(
            names(&r),
            [
                BUNDLE,
                UNITS,
                IMAGES,
                IMAGE_DIGESTS,
                PACKAGES,
                HEALTH,
                INSTALL_SH
            ]
        );
        r.image_digests = None;
        assert!(!names(&r).contains(&IMAGE_DIGESTS.to_string()));
        let sh = r
            .entries()
            .into_iter()
            .find(|e| e.path == INSTALL_SH)
            .unwrap();
        assert_eq!(sh.mode, 0o755);
    }

    #[test]
    fn rootfs_paths_drop_the_leading_slash() {
        assert_eq!(
            rootfs_path("/etc/kiln/host.env"),
            "rootfs/etc/kiln/host.env"
        );
    }
}
