//! SPDX 2.3 JSON documents: the types serialised and the value rules (SPDX ids, package URLs,
//! the creation time) they need.

use serde::Serialize;

/// The SPDX id of the document itself.
pub(super) const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
/// Written where SPDX asks for a value kiln does not know (download locations it cannot name).
pub(super) const NOASSERTION: &str = "NOASSERTION";

/// A whole SPDX 2.3 document (field order is the output order, so the bytes are stable).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Document {
    pub spdx_version: &'static str,
    pub data_license: &'static str,
    #[serde(rename = "SPDXID")]
    pub spdx_id: &'static str,
    pub name: String,
    pub document_namespace: String,
    pub creation_info: CreationInfo,
    pub packages: Vec<Package>,
    pub relationships: Vec<Relationship>,
}

/// Who made the document and when.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreationInfo {
    pub created: String,
    pub creators: Vec<String>,
    pub comment: String,
}

/// One SPDX package: the bundle, an artifact, an OS package or an image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Package {
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    pub name: String,
    pub version_info: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_file_name: Option<String>,
    pub download_location: String,
    // Files are not listed one by one (SPDX would then want a SHA-1 of each).
    pub files_analyzed: bool,
    pub checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    pub primary_package_purpose: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A package checksum (`SHA256`, `SHA512`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Checksum {
    pub algorithm: &'static str,
    pub checksum_value: String,
}

/// A package URL reference.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExternalRef {
    pub reference_category: &'static str,
    pub reference_type: &'static str,
    pub reference_locator: String,
}

impl ExternalRef {
    /// The package URL `purl`.
    pub(super) fn purl(purl: String) -> ExternalRef {
        ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: purl,
        }
    }
}

/// `from <kind> to`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Relationship {
    pub spdx_element_id: String,
    pub relationship_type: &'static str,
    pub related_spdx_element: String,
}

/// `SPDXRef-<kind>-<n>-<name>`: the index keeps ids unique when two names map to the same
/// characters (SPDX ids allow only letters, digits, `.` and `-`).
pub(super) fn spdx_id(kind: &str, n: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{n}-{clean}")
}

/// Percent-encodes a package URL component: everything but unreserved characters and `extra`.
pub(super) fn purl_encode(s: &str, extra: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || extra.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A package URL `pkg:<type>/<namespace>/<name>@<version>?<qualifiers>`; the qualifiers must
/// come sorted by key, as the purl specification's canonical form has them.
pub(super) fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut s = format!("pkg:{kind}/");
    if let Some(ns) = namespace {
        s.push_str(&purl_encode(ns, b"/"));
        s.push('/');
    }
    // A colon is left as is (an epoch `1:2.2.7`, a digest `sha256:…`), as packageurl's
    // reference implementations do.
    s.push_str(&purl_encode(name, b""));
    s.push('@');
    s.push_str(&purl_encode(version, b":"));
    debug_assert!(qualifiers.windows(2).all(|w| w[0].0 < w[1].0));
    for (i, (k, v)) in qualifiers.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&purl_encode(v, b"/:"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_what_the_spec_reserves() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "keepalived",
                "1:2.2.7-1+b2",
                &[("arch", "amd64"), ("distro", "debian-12")]
            ),
            "pkg:deb/debian/keepalived@1:2.2.7-1%2Bb2?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl(
                "oci",
                None,
                "pause",
                "sha256:ab",
                &[("repository_url", "registry.k8s.io/pause"), ("tag", "3.10")]
            ),
            "pkg:oci/pause@sha256:ab?repository_url=registry.k8s.io/pause&tag=3.10"
        );
    }

    #[test]
    fn spdx_ids_keep_only_allowed_characters() {
        assert_eq!(
            spdx_id("Package", 3, "libstdc++6"),
            "SPDXRef-Package-3-libstdc--6"
        );
    }
}
