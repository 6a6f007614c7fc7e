//! SBOMs: one SPDX 2.3 JSON document per role bundle, listing the artifacts, OS packages and
//! images it carries as the lock pins them. The build writes them beside the bundles
//! (`<bundle id>.spdx.json` at the top of the out folder, so MANIFEST.json, SHA256SUMS,
//! `kiln verify`, `kiln push` and `kiln pull` treat them like the build's other top-level files);
//! [`out`] reads them back for `kiln sbom`.
//!
//! A document is a function of the build alone: its namespace comes from the build id and
//! its creation time from the build's source date epoch, never from the clock, so two builds
//! of the same inputs write the same bytes.

pub mod out;
mod spdx;

use kiln_image::LockedImage;
use kiln_spec::{LockedArtifact, LockedPackage, OsId, SourceKind};

use spdx::{
    purl, spdx_id, Checksum, CreationInfo, Document, ExternalRef, Package, Relationship,
    DOCUMENT_ID, NOASSERTION,
};

pub use out::{SbomError, SbomFile, SbomSummary};

/// What every SBOM file name ends with.
pub const SBOM_SUFFIX: &str = ".spdx.json";

/// The SBOM of bundle `bundle_id`, relative to the out folder.
pub fn file_name(bundle_id: &str) -> String {
    format!("{bundle_id}{SBOM_SUFFIX}")
}

/// The build a bundle belongs to.
#[derive(Debug, Clone, Copy)]
pub struct BuildRef<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// Build id (names the document).
    pub build_id: &'a str,
    /// Generation.
    pub generation: u64,
    /// The build's source date epoch (the document's creation time).
    pub source_date_epoch: u64,
}

/// One role bundle as its SBOM describes it.
#[derive(Debug, Clone)]
pub struct BundleSbom<'a> {
    /// The build.
    pub build: BuildRef<'a>,
    /// Bundle id (`<role>-<os>`).
    pub id: &'a str,
    /// Role.
    pub role: &'a str,
    /// OS of its hosts.
    pub os: OsId,
    /// The cluster's architecture.
    pub arch: &'a str,
    /// The bundle's file name (`<role>-<os>-<16hex>.tar.gz`).
    pub file_name: &'a str,
    /// The bundle's sha256.
    pub sha256: &'a str,
    /// Artifacts placed as files, sorted by name.
    pub artifacts: Vec<ArtifactItem<'a>>,
    /// OS packages, in install order.
    pub packages: &'a [LockedPackage],
    /// Images.
    pub images: Vec<ImageItem<'a>>,
}

/// An artifact and where the bundle installs it.
#[derive(Debug, Clone)]
pub struct ArtifactItem<'a> {
    /// The lock's entry.
    pub locked: &'a LockedArtifact,
    /// (path on the host, sha256 of the file as installed), sorted by path.
    pub installed: Vec<(String, String)>,
}

/// An image and whether kiln assembled it (rather than pulling it from its registry).
#[derive(Debug, Clone, Copy)]
pub struct ImageItem<'a> {
    /// The locked image (assembled images are described the same way).
    pub image: &'a LockedImage,
    /// Assembled by kiln from catalog artifacts.
    pub assembled: bool,
}

/// The SPDX 2.3 JSON document of one bundle, as bytes (pretty, newline-terminated).
pub fn document(b: &BundleSbom<'_>) -> Vec<u8> {
    let bundle_id = spdx_id("Bundle", 0, b.id);
    let mut packages = vec![bundle_package(b, &bundle_id)];
    packages.extend(
        b.artifacts
            .iter()
            .enumerate()
            .map(|(n, a)| artifact_package(n + 1, a)),
    );
    packages.extend(
        b.packages
            .iter()
            .enumerate()
            .map(|(n, p)| os_package(n + 1, p, b.os)),
    );
    packages.extend(
        b.images
            .iter()
            .enumerate()
            .map(|(n, i)| image_package(n + 1, i)),
    );
    let mut relationships = vec![Relationship {
        spdx_element_id: DOCUMENT_ID.to_owned(),
        relationship_type: "DESCRIBES",
        related_spdx_element: bundle_id.clone(),
    }];
    relationships.extend(packages[1..].iter().map(|p| Relationship {
        spdx_element_id: bundle_id.clone(),
        relationship_type: "CONTAINS",
        related_spdx_element: p.spdx_id.clone(),
    }));
    let build = b.build;
    let doc = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: DOCUMENT_ID,
        name: format!("kiln {} {}", build.cluster, b.id),
        // `.invalid` never resolves: the namespace only has to be unique, and the build id
        // makes it so.
        document_namespace: format!(
            "https://kiln.invalid/spdx/{}/{}/{}",
            build.cluster, build.build_id, b.id
        ),
        creation_info: CreationInfo {
            created: kiln_image::rfc3339(build.source_date_epoch),
            creators: vec![format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
            comment: format!(
                "Role bundle {} of cluster {}, generation {}, build {}; created at the build's source date epoch.",
                b.id, build.cluster, build.generation, build.build_id
            ),
        },
        packages,
        relationships,
    };
    kiln_bundle::json_bytes(&doc)
}

fn sha256(hex: &str) -> Checksum {
    Checksum {
        algorithm: "SHA256",
        checksum_value: hex.to_owned(),
    }
}

fn bundle_package(b: &BundleSbom<'_>, id: &str) -> Package {
    let build = b.build;
    Package {
        spdx_id: id.to_owned(),
        name: b.id.to_owned(),
        // The tag `kiln push` gives the build, without the cluster name.
        version_info: format!(
            "g{}-{}",
            build.generation,
            &build.build_id[..build.build_id.len().min(12)]
        ),
        package_file_name: Some(b.file_name.to_owned()),
        download_location: NOASSERTION.to_owned(),
        files_analyzed: false,
        checksums: vec![sha256(b.sha256)],
        source_info: None,
        primary_package_purpose: "ARCHIVE",
        external_refs: Vec::new(),
        comment: Some(format!(
            "kiln role bundle: role {}, OS {}, arch {}",
            b.role, b.os, b.arch
        )),
    }
}

fn artifact_package(n: usize, a: &ArtifactItem<'_>) -> Package {
    let e = a.locked;
    let mut checksums = Vec::new();
    if let Some(h) = &e.sha256 {
        checksums.push(sha256(h));
    }
    if let Some(h) = &e.sha512 {
        checksums.push(Checksum {
            algorithm: "SHA512",
            checksum_value: h.clone(),
        });
    }
    let url = match e.source {
        SourceKind::Https | SourceKind::Http => e.urls.first().cloned(),
        SourceKind::File | SourceKind::Apt => None,
    };
    let from = match (e.source, &e.package, &e.package_version) {
        (SourceKind::Apt, Some(p), Some(v)) => format!("Debian package {p} {v} through apt"),
        (SourceKind::File, _, _) => format!(
            "site-supplied file {} of the catalog",
            e.urls.first().map_or("", String::as_str)
        ),
        _ => format!("download {}", e.urls.first().map_or("", String::as_str)),
    };
    let source_info = match &e.member {
        Some(m) => format!("member {m} ({} archive) of the {from}", e.archive),
        None => format!("the {from}"),
    };
    let installed: Vec<String> = a
        .installed
        .iter()
        .map(|(path, sha)| format!("{path} (sha256 {sha})"))
        .collect();
    Package {
        spdx_id: spdx_id("Artifact", n, &e.name),
        name: e.name.clone(),
        version_info: e.version.clone(),
        package_file_name: None,
        download_location: url.unwrap_or_else(|| NOASSERTION.to_owned()),
        files_analyzed: false,
        // The pins of what was downloaded, as kiln.lock records them.
        checksums,
        source_info: Some(source_info),
        primary_package_purpose: "FILE",
        external_refs: Vec::new(),
        comment: Some(format!("installed as {}", installed.join(", "))),
    }
}

/// The purl type, namespace and `distro` qualifier of an OS's packages.
fn os_purl(os: OsId) -> (&'static str, &'static str, &'static str) {
    match os {
        OsId::Debian12 => ("deb", "debian", "debian-12"),
        OsId::Ubuntu2204 => ("deb", "ubuntu", "ubuntu-22.04"),
        OsId::Ubuntu2404 => ("deb", "ubuntu", "ubuntu-24.04"),
        OsId::Centos7 => ("rpm", "centos", "centos-7"),
        OsId::Rocky9 => ("rpm", "rocky", "rocky-9"),
    }
}

fn os_package(n: usize, p: &LockedPackage, os: OsId) -> Package {
    let (kind, namespace, distro) = os_purl(os);
    let locator = match (kind, p.version.split_once(':')) {
        // rpm's purl carries the epoch as a qualifier; Debian's keeps it in the version.
        ("rpm", Some((epoch, version))) => purl(
            kind,
            Some(namespace),
            &p.name,
            version,
            &[("arch", &p.arch), ("distro", distro), ("epoch", epoch)],
        ),
        _ => purl(
            kind,
            Some(namespace),
            &p.name,
            &p.version,
            &[("arch", &p.arch), ("distro", distro)],
        ),
    };
    let download = match p.source {
        SourceKind::Https | SourceKind::Http => p.urls.first().cloned(),
        SourceKind::File | SourceKind::Apt => None,
    };
    Package {
        spdx_id: spdx_id("Package", n, &p.name),
        name: p.name.clone(),
        version_info: p.version.clone(),
        package_file_name: Some(p.file_name().to_owned()),
        download_location: download.unwrap_or_else(|| NOASSERTION.to_owned()),
        files_analyzed: false,
        checksums: vec![sha256(&p.sha256)],
        source_info: (p.source == SourceKind::Apt)
            .then(|| format!("{} through apt ({} of the archive)", p.os, p.filename)),
        primary_package_purpose: "INSTALL",
        external_refs: vec![ExternalRef::purl(locator)],
        comment: Some(format!("arch {}", p.arch)),
    }
}

fn image_package(n: usize, i: &ImageItem<'_>) -> Package {
    let img = i.image;
    let r = &img.reference;
    let name = r.repository().rsplit('/').next().unwrap_or(r.repository());
    let repository_url = r.name();
    let mut qualifiers = vec![
        ("arch", img.platform.architecture.as_str()),
        ("repository_url", repository_url.as_str()),
    ];
    if let Some(tag) = r.tag() {
        qualifiers.push(("tag", tag));
    }
    let locator = purl("oci", None, name, img.manifest_digest.as_str(), &qualifiers);
    let how = if i.assembled {
        "assembled by kiln from catalog artifacts"
    } else {
        "pulled from its registry by digest"
    };
    Package {
        spdx_id: spdx_id("Image", n, &r.to_string()),
        name: r.without_digest().to_string(),
        version_info: img.manifest_digest.as_str().to_owned(),
        package_file_name: None,
        download_location: NOASSERTION.to_owned(),
        files_analyzed: false,
        checksums: vec![sha256(img.manifest_digest.hex())],
        source_info: Some(how.to_owned()),
        primary_package_purpose: "CONTAINER",
        external_refs: vec![ExternalRef::purl(locator)],
        comment: Some(format!(
            "image manifest {} for {}; config {}",
            img.manifest_digest.as_str(),
            img.platform,
            img.config_digest.as_str()
        )),
    }
}
