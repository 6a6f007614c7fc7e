//! catalog/images.toml: where each container image comes from (a registry, or assembled
//! from catalog artifacts), in the cluster's order of preference.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::diag::{from_toml_error_keyed, Diagnostic};
use crate::kinds::ImageSourceKind;
use crate::model::parse_mode;

/// catalog/images.toml as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageCatalog {
    /// Images by normalised repository name (`registry.k8s.io/pause`, `docker.io/flannel/flannel`).
    #[serde(default)]
    pub image: BTreeMap<String, CatalogImage>,
}

/// One image repository and its sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogImage {
    /// What it is.
    pub description: Option<String>,
    /// Sources, tried in the cluster's `image-sources` order.
    #[serde(rename = "source")]
    pub sources: Vec<ImageSource>,
}

/// How an image is obtained.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSource {
    /// `registry` (pull by digest) or `assemble` (built from artifacts).
    pub kind: ImageSourceKind,
    /// assemble: files of the single layer.
    #[serde(default, rename = "file")]
    pub files: Vec<AssembleFile>,
    /// assemble: entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// assemble: user.
    pub user: Option<String>,
    /// assemble: labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A file of an assembled image, taken from a catalog artifact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssembleFile {
    /// Catalog artifact name.
    pub artifact: String,
    /// Path inside the image.
    pub path: String,
    /// Mode (default 0755).
    pub mode: Option<String>,
}

impl AssembleFile {
    /// The file mode.
    pub fn mode(&self) -> u32 {
        self.mode
            .as_deref()
            .and_then(|m| parse_mode(m).ok())
            .unwrap_or(0o755)
    }
}

/// Parses catalog/images.toml.
pub fn parse(file: &Path, text: &str) -> Result<ImageCatalog, Diagnostic> {
    let cat: ImageCatalog =
        toml::from_str(text).map_err(|e| from_toml_error_keyed(file, text, &e))?;
    for (name, img) in &cat.image {
        for (i, s) in img.sources.iter().enumerate() {
            let err = |m: String| {
                Diagnostic::error(file, text, None)
                    .key(format!("image.\"{name}\".source[{i}]"))
                    .msg(m)
            };
            if s.kind == ImageSourceKind::Assemble && s.files.is_empty() {
                return Err(err(
                    "an assemble source needs at least one [[…file]] with artifact and path".into(),
                ));
            }
            for f in &s.files {
                if let Some(m) = &f.mode {
                    parse_mode(m).map_err(|e| err(e.to_string()))?;
                }
                if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                    return Err(err(format!(
                        "file path {:?} must be absolute inside the image, without '..'",
                        f.path
                    )));
                }
            }
        }
    }
    Ok(cat)
}

impl ImageCatalog {
    /// The source to use for repository `name` given the cluster's preference; `registry` when the
    /// catalog does not list the image. `None` when the catalog lists it but with no allowed kind.
    pub fn choose(&self, name: &str, prefs: &[ImageSourceKind]) -> Option<ImageSource> {
        match self.image.get(name) {
            None => prefs
                .contains(&ImageSourceKind::Registry)
                .then(|| ImageSource {
                    kind: ImageSourceKind::Registry,
                    files: Vec::new(),
                    entrypoint: Vec::new(),
                    user: None,
                    labels: BTreeMap::new(),
                }),
            Some(img) => prefs
                .iter()
                .find_map(|p| img.sources.iter().find(|s| s.kind == *p))
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGES: &str = "[image.\"registry.k8s.io/pause\"]\n[[image.\"registry.k8s.io/pause\".source]]\nkind = \"registry\"\n";

    #[test]
    fn sources_are_chosen_in_the_clusters_order() {
        let cat = parse(Path::new("images.toml"), IMAGES).unwrap();
        let reg = [ImageSourceKind::Registry];
        let pause = cat.choose("registry.k8s.io/pause", &reg).unwrap();
        assert_eq!(pause.kind, ImageSourceKind::Registry);
        assert!(cat
            .choose("registry.k8s.io/pause", &[ImageSourceKind::Assemble])
            .is_none());
        // Not listed: a registry pull, when registries are allowed.
        assert_eq!(
            cat.choose("docker.io/x/y", &reg).unwrap().kind,
            ImageSourceKind::Registry
        );
    }

    #[test]
    fn an_unknown_image_source_kind_is_refused_at_its_key() {
        let text = IMAGES.replace("kind = \"registry\"", "kind = \"oci\"");
        let err = parse(Path::new("images.toml"), &text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "images.toml:3:8: error: `image.\"registry.k8s.io/pause\".source[0].kind`: unknown image source kind \"oci\"; expected registry or assemble"
        );
    }
}
