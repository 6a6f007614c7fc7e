//! kiln-spec: the inputs people write (cluster.toml, profiles, overlays, catalog, kiln.lock),
//! parsed with their positions and validated into types later stages can trust.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod catalog;
pub mod cluster;
pub mod diag;
pub mod fetch;
pub mod images;
pub mod kinds;
pub mod lock;
pub mod model;
pub mod net;
pub mod pins;
pub mod profile;
pub mod project;
pub mod raw;
pub mod seeds;

pub use catalog::{Catalog, Resolved};
pub use diag::{Diagnostic, Diagnostics, NotUtf8, Severity};
pub use fetch::FetchSettings;
pub use kinds::{ImageSourceKind, KindError, Pin, SourceKind};
pub use lock::{Lock, LockedArtifact, LockedClosure, LockedPackage};
pub use model::*;
pub use profile::{ArtifactRef, FileRef, Layer, Overlay, Profile, Scope, TemplateRef};
pub use project::{Files, Project};
pub use seeds::{BundleSource, SeedSettings, BUNDLE_MEDIUM_LABEL};
