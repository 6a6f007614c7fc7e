//! The fuzz targets: each feeds one input to one family of kiln's parsers.

mod bundle;
mod image;
mod project;
mod selftest;
mod spec;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::mutate::Shape;

pub use project::MemFiles;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name on the command line and folder under `corpus/`.
    pub name: &'static str,
    /// One line for `kiln-fuzz list`.
    pub about: &'static str,
    /// Runs one input; a panic is a finding.
    pub run: fn(&Ctx, &[u8]),
    /// Tokens of the input format, for the token mutator.
    pub tokens: &'static [&'static [u8]],
    /// Shape of the inputs, for the format-aware mutators.
    pub shape: Shape,
    /// Largest input the mutators make.
    pub max_len: usize,
    /// Whether `scripts/fuzz` runs it (the self-test target fails on purpose).
    pub in_ci: bool,
}

/// What targets share during a run: the repository's inputs and a scratch folder.
#[derive(Debug)]
pub struct Ctx {
    root: PathBuf,
    scratch: PathBuf,
    files: OnceLock<MemFiles>,
}

impl Ctx {
    /// A context reading the project files under `root` and writing under `scratch`.
    pub fn new(root: PathBuf, scratch: PathBuf) -> Self {
        Ctx {
            root,
            scratch,
            files: OnceLock::new(),
        }
    }

    /// The repository's profiles, overlays and catalog, read once into memory.
    pub fn files(&self) -> &MemFiles {
        self.files.get_or_init(|| MemFiles::load(&self.root))
    }

    /// A folder the targets may write into.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }
}

/// TOML's punctuation and the keys kiln's files use.
const TOML_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b",",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"#",
    b".",
    b"\n",
    b"\\u0000",
    b"\\",
    b"true",
    b"false",
    b"1979-05-27T07:32:00Z",
    b"inf",
    b"nan",
    b"[[host]]\n",
    b"[paths]\n",
    b"[network]\n",
    b"[lb]\n",
    b"[api]\n",
    b"[pki]\n",
    b"[mirrors]\n",
    b"[packages]\n",
    b"[vars]\n",
    b"[versions]\n",
    b"[[artifact]]\n",
    b"[[template]]\n",
    b"[[package]]\n",
    b"[[closure]]\n",
    b"[[rpm]]\n",
    b"[os.el]\n",
    b"[os.debian]\n",
    b"[sysctl]\n",
    b"[registry-mirrors]\n",
    b"name = ",
    b"roles = [",
    b"ip = \"10.0.0.1\"",
    b"ip = \"fd00::1\"",
    b"mac = \"52:54:00:00:00:01\"",
    b"os = ",
    b"\"debian12\"",
    b"\"centos7\"",
    b"\"rocky9\"",
    b"arch = ",
    b"\"arm64\"",
    b"version = ",
    b"sha256 = ",
    b"sha512 = ",
    b"size = ",
    b"url = ",
    b"urls = [",
    b"src = ",
    b"dest = ",
    b"mode = \"0755\"",
    b"scope = \"host\"",
    b"role = ",
    b"extends = [",
    b"requires = [",
    b"units = [",
    b"modules = [",
    b"packages = [",
    b"images = [",
    b"member = ",
    b"vip = \"10.0.0.100\"",
    b"host-cidrs = [\"10.0.0.0/8\"]",
    b"/0",
    b"/33",
    b"/128",
    b"\"../../etc/passwd\"",
    b"\"/abs\"",
    b"{version}",
    b"{arch}",
    b"sha256:",
    b"sha512:",
    b"https://",
    b"file://",
    b"apt",
    b"generation = ",
    b"overlays = [",
    b"sources = [",
];

/// JSON's punctuation and the fields image documents use.
const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"false",
    b"-0",
    b"1e999",
    b"\"schemaVersion\":",
    b"\"mediaType\":",
    b"\"manifests\":",
    b"\"config\":",
    b"\"layers\":",
    b"\"digest\":",
    b"\"size\":",
    b"\"platform\":",
    b"\"architecture\":",
    b"\"os\":",
    b"\"variant\":",
    b"\"annotations\":",
    b"\"application/vnd.oci.image.index.v1+json\"",
    b"\"application/vnd.oci.image.manifest.v1+json\"",
    b"\"application/vnd.oci.image.config.v1+json\"",
    b"\"application/vnd.docker.distribution.manifest.list.v2+json\"",
    b"\"application/vnd.docker.distribution.manifest.v2+json\"",
    b"\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"",
    b"\"sha512:\"",
    b"\"sha256:\"",
    b"\"linux\"",
    b"\"amd64\"",
    b"\"arm64\"",
    b"\"v8\"",
];

/// The targets, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cluster",
        about:
            "cluster.toml parsed and validated with the repository's profiles, overlays, catalog",
        run: spec::cluster,
        tokens: TOML_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "profile",
        about: "a role's profile.toml (templates read from the repository's profiles)",
        run: spec::profile,
        tokens: TOML_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "overlay",
        about: "an overlay.toml with the site-example overlay's files/ tree",
        run: spec::overlay,
        tokens: TOML_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "catalog",
        about: "catalog.toml, pins.toml and images.toml parsers, and the checksum-table importers",
        run: spec::catalog,
        tokens: TOML_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "lock",
        about: "kiln.lock parsed, written back and parsed again",
        run: spec::lock,
        tokens: TOML_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "bundle",
        about: "verify_bundle on the raw bytes of a .tar.gz (the strict gzip reader first)",
        run: bundle::raw,
        tokens: bundle::GZIP_TOKENS,
        shape: Shape::Plain,
        max_len: 256 << 10,
        in_ci: true,
    },
    Target {
        name: "bundle-tar",
        about: "verify_bundle on a tar stream wrapped in canonical gzip members (the tar checks)",
        run: bundle::tar,
        tokens: bundle::TAR_TOKENS,
        shape: Shape::Tar,
        max_len: 256 << 10,
        in_ci: true,
    },
    Target {
        name: "contract",
        about: "MANIFEST, SHA256SUMS, BUNDLES, HOST, BUNDLE, line lists, HEALTH and MANIFEST.json",
        run: bundle::contract,
        tokens: bundle::CONTRACT_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "image",
        about: "image manifests, indexes and manifest lists, configs, references and digests",
        run: image::documents,
        tokens: JSON_TOKENS,
        shape: Shape::Plain,
        max_len: 64 << 10,
        in_ci: true,
    },
    Target {
        name: "www-auth",
        about: "the registry WWW-Authenticate challenge parser",
        run: image::www_authenticate,
        tokens: image::AUTH_TOKENS,
        shape: Shape::Plain,
        max_len: 4 << 10,
        in_ci: true,
    },
    Target {
        name: "selftest",
        about: "fails on purpose: PANIC panics, HANG loops, ALLOC asks for 1 GiB (harness tests)",
        run: selftest::run,
        tokens: &[b"PANIC", b"HANG", b"ALLOC"],
        shape: Shape::Plain,
        max_len: 64,
        in_ci: false,
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The input as text, as kiln's readers see a file: `None` when not UTF-8 (they refuse it).
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
