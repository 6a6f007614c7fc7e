//! `kiln serve`: a built out folder over HTTP for network boot; the status and the access log
//! on stdout, as text or JSON lines.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kiln_engine::signatures::{KeySource, Signatures};
use kiln_serve::{Access, Issued};
use serde_json::json;

/// `kiln serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The out folder to serve (out/CLUSTER-NAME), verified first as `kiln verify` does.
    pub dir: PathBuf,
    /// Address and port to listen on; port 0 lets the OS choose (the bound address is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Print the status and the access log as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// A netboot set to serve under /netboot/: vmlinuz and initrd.img, booted by the hosts'
    /// iPXE scripts (without it, a known host's script stops with a message).
    #[arg(long, value_name = "DIR")]
    pub netboot: Option<PathBuf>,
    /// An extra kernel argument for the hosts' iPXE scripts (repeatable); `{url}` stands for this
    /// server's URL, e.g. `root=live:{url}/netboot/root.squashfs`.
    #[arg(long = "kernel-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kernel_args: Vec<String>,
    /// Where the hosts' URL tokens and the used secrets URLs are kept across restarts
    /// [default: .kiln-serve-CLUSTER-NAME beside the out folder].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The public key the build must be signed by (PEM, the cluster's pki/signing.pub); without
    /// it the folder's own signing.pub is used, as `kiln verify` does.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// Give these hosts new seed and secrets URLs, forgetting that their secrets URL was used:
    /// to provision them again (comma-separated).
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub reissue: Vec<String>,
}

/// Verifies, listens and serves until the process is stopped.
pub fn run(a: &ServeArgs) -> Result<()> {
    let opts = kiln_serve::ServeOptions {
        dir: a.dir.clone(),
        key: a.key.clone(),
        state_dir: a
            .state
            .clone()
            .unwrap_or_else(|| kiln_serve::default_state_dir(&a.dir)),
        netboot: a.netboot.clone(),
        kernel_args: a.kernel_args.clone(),
        reissue: a.reissue.clone(),
    };
    let p = kiln_serve::prepare(&opts)?;
    let m = &p.site.manifest;
    let hosts: Vec<&String> = m.hosts.keys().collect();
    let blobs = p.site.blobs.len();
    let (new, reissued): (Vec<&Issued>, Vec<&Issued>) =
        p.issued.iter().partition(|i| matches!(i, Issued::New(_)));
    let names = |v: &[&Issued]| -> Vec<String> {
        v.iter()
            .map(|i| match i {
                Issued::New(h) | Issued::Reissued(h) => h.clone(),
            })
            .collect()
    };
    let signatures = match &p.site.signatures {
        Signatures::Unsigned => "not signed".to_string(),
        Signatures::Verified {
            key: KeySource::Given(k),
            fingerprint,
            ..
        } => format!("signed by {} (sha256 {fingerprint})", k.display()),
        Signatures::Verified { fingerprint, .. } => format!(
            "signatures match the folder's own signing.pub (sha256 {fingerprint}; pass --key to prove who built it)"
        ),
    };
    let status = json!({
        "event": "listening",
        "dir": a.dir,
        "cluster": m.cluster,
        "build-id": m.build_id,
        "generation": m.generation,
        "hosts": hosts,
        "blobs": blobs,
        "signatures": signatures,
        "state": p.tokens.file(),
        "new-urls": names(&new),
        "reissued-urls": names(&reissued),
        "netboot": a.netboot,
    });
    let text_status = format!(
        "kiln serve: {} (cluster {}, build {}, generation {}): {} hosts, {blobs} files by digest; {signatures}\n\
         kiln serve: state in {} (new URLs: {}; reissued: {})",
        a.dir.display(),
        m.cluster,
        &m.build_id[..16.min(m.build_id.len())],
        m.generation,
        hosts.len(),
        p.tokens.file().display(),
        list(&names(&new)),
        list(&names(&reissued)),
    );
    let json_out = a.json;
    let running = p.start(a.listen, move |acc| print_access(acc, json_out))?;
    let url = format!("http://{}", running.local_addr());
    if a.json {
        let mut status = status;
        status["address"] = json!(running.local_addr().to_string());
        status["url"] = json!(url);
        println!("{status}");
    } else {
        println!("{text_status}\nkiln serve: listening on {url} (iPXE: chain {url}/boot.ipxe)");
    }
    running.wait()?;
    Ok(())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// One access log line.
fn print_access(a: &Access, json_out: bool) {
    let secs = a
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let time = kiln_image::rfc3339(secs);
    let mac = a.mac.map(|m| m.hexhyp());
    if json_out {
        println!(
            "{}",
            json!({
                "event": "access",
                "time": time,
                "client": a.client.to_string(),
                "mac": mac,
                "host": a.host,
                "method": a.method,
                "path": a.path,
                "status": a.status,
                "bytes": a.bytes,
                "complete": a.complete,
                "note": a.note,
            })
        );
    } else {
        let mut line = format!(
            "{time} {} {} {} {} {} {}",
            a.client,
            mac.as_deref().unwrap_or("-"),
            a.method,
            a.path,
            a.status,
            a.bytes
        );
        if let Some(h) = &a.host {
            line.push_str(&format!(" host={h}"));
        }
        if !a.complete {
            line.push_str(" incomplete");
        }
        if let Some(n) = &a.note {
            line.push_str(&format!(" ({n})"));
        }
        println!("{line}");
    }
}
