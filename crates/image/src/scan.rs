//! Finding image references in rendered files: containerd `sandbox_image`, kubelet
//! `--pod-infra-container-image`, and `image:` fields of Kubernetes manifests.

use std::fs;
use std::path::Path;

use crate::error::ImageError;
use crate::reference::Reference;
use crate::resolve::LockedImage;

/// Which kind of setting named the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MentionKind {
    /// containerd's `sandbox_image = "…"` (or `sandbox = "…"` under `pinned_images`).
    SandboxImage,
    /// kubelet's `--pod-infra-container-image`.
    PodInfraContainerImage,
    /// An `image:` field (YAML) or `"image": …` (JSON) of a pod template or static pod.
    ImageField,
}

/// One image reference found in a text, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMention {
    /// 1-based line number.
    pub line: usize,
    /// What named it.
    pub kind: MentionKind,
    /// The reference as written.
    pub text: String,
}

impl ImageMention {
    /// The mention parsed and normalised.
    pub fn reference(&self) -> Result<Reference, ImageError> {
        Reference::parse(&self.text)
    }
}

/// Finds image references in `text`. Commented lines and templated values (`{{`, `${`,
/// `$(`) are skipped.
pub fn scan_text(text: &str) -> Vec<ImageMention> {
    let mut out = Vec::new();
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let mut push = |kind, value: &str| {
            let value = value.trim();
            if !value.is_empty() && !["{{", "${", "$("].iter().any(|t| value.contains(t)) {
                out.push(ImageMention {
                    line: i + 1,
                    kind,
                    text: value.to_owned(),
                });
            }
        };
        if line.starts_with('[') && !line.starts_with("[\"") {
            table = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        if let Some(v) = toml_string(line, "sandbox_image") {
            push(MentionKind::SandboxImage, &v);
        } else if table.ends_with("pinned_images") {
            if let Some(v) = toml_string(line, "sandbox") {
                push(MentionKind::SandboxImage, &v);
            }
        }
        if let Some(v) = flag_value(line, "--pod-infra-container-image") {
            push(MentionKind::PodInfraContainerImage, &v);
        }
        if let Some(v) = image_field(line) {
            push(MentionKind::ImageField, &v);
        }
    }
    out
}

/// [`scan_text`] of a file; a file that is not UTF-8 (a binary) has no mentions.
pub fn scan_file(path: &Path) -> Result<Vec<ImageMention>, ImageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(match String::from_utf8(bytes) {
            Ok(text) => scan_text(&text),
            Err(_) => Vec::new(),
        }),
        Err(source) => Err(ImageError::File(kiln_fsio::Error::on(
            "read",
            path.to_owned(),
        )(source))),
    }
}

/// The mentions no image of `available` satisfies (same name and tag, or same digest),
/// including mentions that are not valid references.
pub fn missing_images<'a>(
    mentions: &'a [ImageMention],
    available: &[LockedImage],
) -> Vec<&'a ImageMention> {
    missing_by(mentions, |r| {
        available.iter().any(|img| img.pinned().matches(r))
    })
}

/// The mentions `has` does not accept, including mentions that are not valid references.
pub fn missing_by(
    mentions: &[ImageMention],
    has: impl Fn(&Reference) -> bool,
) -> Vec<&ImageMention> {
    mentions
        .iter()
        .filter(|m| match m.reference() {
            Ok(r) => !has(&r),
            Err(_) => true,
        })
        .collect()
}

/// `key = "value"` (or single quotes) at the start of a TOML line.
fn toml_string(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    Some(body[..body.find(quote)?].to_owned())
}

/// The value of `--flag=value` or `--flag value` anywhere in the line.
fn flag_value(line: &str, flag: &str) -> Option<String> {
    let at = line.find(flag)?;
    let rest = &line[at + flag.len()..];
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(' '))?
        .trim_start();
    let rest = rest.trim_start_matches(['"', '\'']);
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
        .unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// The value of a YAML `image:` field (optionally a list item) or a JSON `"image": "…"`.
fn image_field(line: &str) -> Option<String> {
    let line = line.strip_prefix("- ").map_or(line, str::trim_start);
    let rest = if let Some(rest) = line.strip_prefix("image:") {
        rest
    } else {
        let rest = line.strip_prefix("\"image\"")?.trim_start();
        rest.strip_prefix(':')?
    };
    let rest = rest.trim();
    let value = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let body = &rest[1..];
            &body[..body.find(q)?]
        }
        _ => {
            let end = rest.find(" #").unwrap_or(rest.len());
            rest[..end].trim_end_matches(',').trim()
        }
    };
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_three_kinds_and_skips_comments_and_templates() {
        let text = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
# sandbox_image = "old/pause:1"
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = 'registry.k8s.io/pause:3.10'
ExecStart=/usr/bin/kubelet --pod-infra-container-image=registry.k8s.io/pause:3.9 \
  --v=2
KUBELET_ARGS="--pod-infra-container-image registry.example/pause:1"
spec:
  containers:
  - name: kube-flannel
    image: docker.io/flannel/flannel:v0.26.1   # pinned
    imagePullPolicy: IfNotPresent
  initContainers:
    - image: "docker.io/flannel/flannel-cni-plugin:v1.6.0-flannel1"
      name: cni
    - image: {{ .Values.image }}
"#;
        let found = scan_text(text);
        let got: Vec<(usize, MentionKind, &str)> = found
            .iter()
            .map(|m| (m.line, m.kind, m.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, MentionKind::SandboxImage, "registry.k8s.io/pause:3.10.1"),
                (7, MentionKind::SandboxImage, "registry.k8s.io/pause:3.10"),
                (
                    8,
                    MentionKind::PodInfraContainerImage,
                    "registry.k8s.io/pause:3.9"
                ),
                (
                    10,
                    MentionKind::PodInfraContainerImage,
                    "registry.example/pause:1"
                ),
                (
                    14,
                    MentionKind::ImageField,
                    "docker.io/flannel/flannel:v0.26.1"
                ),
                (
                    17,
                    MentionKind::ImageField,
                    "docker.io/flannel/flannel-cni-plugin:v1.6.0-flannel1"
                ),
            ]
        );
    }

    #[test]
    fn json_image_fields_on_their_own_line() {
        let got = scan_text("  \"image\": \"quay.io/coreos/etcd:v3.5.16\",\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "quay.io/coreos/etcd:v3.5.16");
    }
}
