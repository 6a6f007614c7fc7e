//! Real components run by the tests: a registry, containerd, and images built with umoci.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{payload, run, sha};

/// A child process killed (and reaped) when dropped, even when a test panics.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let out = fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (for daemons that cannot be given port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the registry authenticates.
pub enum RegistryAuth {
    /// Anyone may pull and push.
    None,
    /// Basic auth against an htpasswd file.
    Htpasswd(PathBuf),
    /// Bearer tokens from a token service.
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

/// Debian's docker-registry on 127.0.0.1 with storage in a temp folder.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Storage root.
    pub storage: PathBuf,
    _proc: Proc,
}

impl Registry {
    /// Starts a registry in `dir` (config, storage and log live there).
    pub fn start(dir: &Path, auth: RegistryAuth) -> Registry {
        fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let auth_yaml = match &auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Htpasswd(path) => format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                path.display()
            ),
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                rootcertbundle.display()
            ),
        };
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_yaml}",
                    storage.display()
                ),
            )
            .unwrap();
            let log = dir.join("registry.log");
            let mut proc = Proc::spawn(
                Command::new("docker-registry").arg("serve").arg(&config),
                &log,
            );
            if wait_http(&format!("http://{addr}/v2/"), &mut proc) {
                return Registry {
                    addr,
                    storage,
                    _proc: proc,
                };
            }
        }
        panic!(
            "docker-registry did not start:\n{}",
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// Polls `url` until it answers (any status) or the process dies.
fn wait_http(url: &str, proc: &mut Proc) -> bool {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if proc.exited() {
            return false;
        }
        if client.get(url).send().is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Test images in an OCI layout, built with umoci, and their digests (`b` is `a` plus a
/// layer; it is pushed as Docker schema 2, so its digest is read from the registry).
pub struct Images {
    /// The OCI layout folder.
    pub layout: PathBuf,
    /// `a`: linux/amd64, layers [big, hello].
    pub a: String,
    /// `a` re-configured as linux/amd64 and linux/arm64 (same layers).
    pub a_amd64: String,
    /// See `a_amd64`.
    pub a_arm64: String,
    /// The index of `multi` (amd64 + arm64).
    pub multi: String,
    /// The big layer every image shares.
    pub big_layer: String,
    /// Its size.
    pub big_layer_size: u64,
}

/// Builds the test images with umoci in `dir`.
pub fn build_images(dir: &Path) -> Images {
    let files = dir.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::write(files.join("big"), payload(400_000, 7)).unwrap();
    fs::write(files.join("hello"), "hello\n").unwrap();
    fs::write(files.join("other"), "other\n").unwrap();
    let layout = dir.join("layout");
    let umoci = |args: &[&str]| run(Command::new("umoci").args(args));
    let img = |tag: &str| format!("{}:{tag}", layout.display());
    let file = |name: &str| files.join(name).display().to_string();
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &img("a")]);
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &img("a"),
        &file("big"),
        "/big",
    ]);
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &img("a"),
        &file("hello"),
        "/hello",
    ]);
    umoci(&[
        "insert",
        "--rootless",
        "--image",
        &img("a"),
        "--tag",
        "b",
        &file("other"),
        "/other",
    ]);
    umoci(&[
        "config",
        "--image",
        &img("a"),
        "--tag",
        "a-amd64",
        "--architecture",
        "amd64",
    ]);
    umoci(&[
        "config",
        "--image",
        &img("a"),
        "--tag",
        "a-arm64",
        "--architecture",
        "arm64",
    ]);

    // The multi-platform index, written like any other blob of the layout.
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_str(&fs::read_to_string(&index_path).unwrap()).unwrap();
    let by_tag = |index: &Value, tag: &str| -> Value {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in the layout"))
            .clone()
    };
    let entry = |tag: &str, arch: &str| {
        let m = by_tag(&index, tag);
        serde_json::json!({
            "mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("a-amd64", "amd64"), entry("a-arm64", "arm64")]
    });
    let multi_bytes = serde_json::to_vec(&multi).unwrap();
    let multi_hex = sha(&multi_bytes);
    fs::write(layout.join("blobs/sha256").join(&multi_hex), &multi_bytes).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{multi_hex}"),
            "size": multi_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let digest = |tag: &str| by_tag(&index, tag)["digest"].as_str().unwrap().to_owned();
    let a = digest("a");
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(&a["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    let big = &manifest["layers"][0];
    Images {
        a,
        a_amd64: digest("a-amd64"),
        a_arm64: digest("a-arm64"),
        multi: format!("sha256:{multi_hex}"),
        big_layer: big["digest"].as_str().unwrap().to_owned(),
        big_layer_size: big["size"].as_u64().unwrap(),
        layout,
    }
}

/// `skopeo copy` from the layout to the registry (`--all` for an index); `extra` are
/// more skopeo options (e.g. `--format v2s2`, `--dest-creds u:p`).
pub fn push(images: &Images, tag: &str, dest: &str, extra: &[&str]) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .args(extra)
        .arg(format!("oci:{}:{tag}", images.layout.display()))
        .arg(format!("docker://{dest}")));
}

/// The digest of the manifest a registry serves for `reference` (sha256 of its raw bytes).
pub fn remote_digest(reference: &str) -> String {
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    format!("sha256:{}", sha(&raw.stdout))
}

/// containerd run as a test process with its own root, state and socket.
pub struct Containerd {
    /// The gRPC socket.
    pub sock: PathBuf,
    _proc: Proc,
}

impl Containerd {
    /// Starts containerd in `dir` (native snapshotter, no CRI).
    pub fn start(dir: &Path) -> Containerd {
        fs::create_dir_all(dir).unwrap();
        let sock = dir.join("c.sock");
        let config = dir.join("config.toml");
        // `containerd config default`, reduced to what a test needs: own paths, no CRI,
        // no snapshotters that need kernel support.
        fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.overlayfs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = sock.display()
            ),
        )
        .unwrap();
        let log = dir.join("containerd.log");
        let mut proc = Proc::spawn(
            Command::new("containerd").arg("--config").arg(&config),
            &log,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if sock.exists()
                && Command::new("ctr")
                    .arg("-a")
                    .arg(&sock)
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            {
                break;
            }
            assert!(
                !proc.exited() && Instant::now() < deadline,
                "containerd did not start:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        Containerd { sock, _proc: proc }
    }

    /// `ctr -n k8s.io images import --snapshotter native TAR`.
    pub fn import(&self, tar: &Path) -> String {
        run(Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args([
                "-n",
                "k8s.io",
                "images",
                "import",
                "--snapshotter",
                "native",
            ])
            .arg(tar))
    }

    /// `(name, digest)` of every image in the k8s.io namespace.
    pub fn images(&self) -> Vec<(String, String)> {
        let out = run(Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(["-n", "k8s.io", "images", "ls"]));
        let mut v: Vec<(String, String)> = out
            .lines()
            .skip(1)
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols.len() >= 3).then(|| (cols[0].to_owned(), cols[2].to_owned()))
            })
            .collect();
        v.sort();
        v
    }
}
