//! Routing: which path serves what, and the per-host logic behind the iPXE scripts, the
//! seeds and the one-time secrets URLs.

use std::fs::File;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use cloud_init_config::RunCmd;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::ipxe;
use crate::server::{lock, unix, Payload, Shared};
use crate::site::Mac;
use crate::tokens::Claim;
use crate::Error;

/// A response before it is sent.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) payload: Payload,
    pub(crate) content_type: &'static str,
    /// Seeds and secrets: never cached by a proxy.
    pub(crate) no_store: bool,
    pub(crate) host: Option<String>,
    pub(crate) mac: Option<Mac>,
    pub(crate) note: Option<String>,
    /// Run once the whole body went out; may add to the note.
    pub(crate) on_complete: Option<Box<dyn FnOnce() -> Option<String> + Send>>,
}

impl Reply {
    fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            payload: Payload::Bytes(body.into()),
            content_type,
            no_store: false,
            host: None,
            mac: None,
            note: None,
            on_complete: None,
        }
    }
    fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body.into())
    }
    fn not_found(note: Option<String>) -> Reply {
        Reply::text(StatusCode::NOT_FOUND, "not found\n").note(note)
    }
    fn ipxe(script: String) -> Reply {
        Reply::new(StatusCode::OK, "text/plain; charset=utf-8", script)
    }
    fn file(file: &Arc<File>, size: u64) -> Reply {
        let mut r = Reply::new(StatusCode::OK, "application/octet-stream", Bytes::new());
        r.payload = Payload::File(file.clone(), size);
        r
    }
    fn note(mut self, note: Option<String>) -> Reply {
        self.note = note;
        self
    }
    fn host(mut self, host: &str, mac: Mac) -> Reply {
        self.host = Some(host.to_owned());
        self.mac = Some(mac);
        self
    }
}

pub(crate) fn route(
    sh: &Arc<Shared>,
    base: &str,
    client: IpAddr,
    method: &Method,
    path: &str,
    now: SystemTime,
) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let site = &sh.site;
    match segs.as_slice() {
        ["boot.ipxe"] => Reply::ipxe(ipxe::boot_script(base)),
        ["ipxe", mac] => ipxe_for(sh, base, client, mac),
        ["seed", token, doc] => seed(sh, base, token, doc),
        ["secrets", token] if method == Method::GET => secrets(sh, client, token, now),
        ["secrets", _] => Reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"),
        ["blobs", "sha256", hex] => match site.blobs.get(*hex) {
            Some(b) => Reply::file(&b.file, b.size),
            None => Reply::not_found(None),
        },
        ["install.sh"] | ["bundles", _] => {
            match site
                .names
                .get(&path[1..])
                .and_then(|sha| site.blobs.get(sha))
            {
                Some(b) => Reply::file(&b.file, b.size),
                None => Reply::not_found(None),
            }
        }
        ["netboot", name] => match sh.netboot.as_ref().and_then(|n| n.files.get(*name)) {
            Some((f, size)) => Reply::file(f, *size),
            None => Reply::not_found(None),
        },
        _ => Reply::not_found(None),
    }
}

fn ipxe_for(sh: &Shared, base: &str, client: IpAddr, mac: &str) -> Reply {
    let Ok(mac) = mac.parse::<Mac>() else {
        return Reply::text(
            StatusCode::BAD_REQUEST,
            "expected /ipxe/<MAC> as six hex octets (iPXE's ${netX/mac:hexhyp})\n",
        );
    };
    lock(&sh.macs).insert(client, mac);
    let site = &sh.site;
    let cluster = &site.manifest.cluster;
    let Some(host) = site.by_mac.get(&mac).and_then(|n| site.hosts.get(n)) else {
        let mut r = Reply::ipxe(ipxe::unknown_mac_script(base, &mac, cluster)).note(Some(format!(
            "unknown MAC {}: no host of cluster {cluster} has it; sent a script that stops with a message",
            mac.hexhyp()
        )));
        r.mac = Some(mac);
        return r;
    };
    let Some((seed_token, _, served)) = sh.tokens.of(&host.name) else {
        return Reply::not_found(None);
    };
    if let Some(s) = served {
        let at = kiln_image::rfc3339(s.at);
        return Reply::ipxe(ipxe::used_script(host, &s, &at))
            .note(Some(format!(
                "{}'s one-time secrets URL was used at {at} by {}: sent a script that stops (restart with --reissue {} to provision it again)",
                host.name, s.client, host.name
            )))
            .host(&host.name, mac);
    }
    match &sh.netboot {
        Some(nb) => Reply::ipxe(ipxe::host_script(base, host, &seed_token, cluster, nb)),
        None => Reply::ipxe(ipxe::no_netboot_script(host))
            .note(Some("no --netboot: sent a script that stops".into())),
    }
    .host(&host.name, mac)
}

fn seed(sh: &Shared, base: &str, token: &str, doc: &str) -> Reply {
    let Some(host) = sh
        .tokens
        .seed_host(token)
        .and_then(|n| sh.site.hosts.get(n))
    else {
        return Reply::not_found(Some("no host has this seed token".into()));
    };
    let ok = |bytes: Vec<u8>| Reply::new(StatusCode::OK, "text/plain; charset=utf-8", bytes);
    let mut r = match doc {
        cloud_init_config::META_DATA => ok(host.meta_data.clone()),
        cloud_init_config::NETWORK_CONFIG => match &host.network_config {
            Some(nc) => ok(nc.clone()),
            None => Reply::not_found(None),
        },
        cloud_init_config::USER_DATA => match net_user_data(sh, base, &host.name) {
            Ok(bytes) => ok(bytes),
            Err(e) => Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render user-data\n",
            )
            .note(Some(e.to_string())),
        },
        // cloud-init asks for it too; kiln has none.
        "vendor-data" => ok(Vec::new()),
        _ => Reply::not_found(None),
    };
    r.no_store = true;
    r.host(&host.name, host.mac)
}

/// The user-data a network-booted host gets: the disk seed's, with a runcmd that takes the
/// secrets from the host's one-time URL and install.sh and the bundles from this server.
fn net_user_data(sh: &Shared, base: &str, host: &str) -> Result<Vec<u8>, Error> {
    let h = &sh.site.hosts[host];
    let (_, secrets_token, _) = sh.tokens.of(host).unwrap_or_default();
    let secrets_base = format!("{base}/secrets");
    let script = kiln_engine::seed::net_runcmd_script(&kiln_engine::seed::NetInstallRun {
        install_sha: &sh.site.install_sha,
        secrets_sha: &h.secrets_sha,
        secrets_base: &secrets_base,
        secrets_token: &secrets_token,
        server: base,
        health_wait: sh.site.manifest.health_wait_seconds,
    });
    let mut ud = h.user_data.clone();
    ud.runcmd = vec![RunCmd::argv(["sh", "-c", &script])];
    cloud_init_config::render_user_data(&ud).map_err(|source| Error::Render {
        host: host.to_owned(),
        source: Box::new(source),
    })
}

fn secrets(sh: &Arc<Shared>, client: IpAddr, token: &str, now: SystemTime) -> Reply {
    let Some(host) = sh
        .tokens
        .secrets_host(token)
        .and_then(|n| sh.site.hosts.get(n))
    else {
        return Reply::not_found(Some(
            "no host has this secrets token (a guessed or stale URL): nothing sent".into(),
        ));
    };
    let fail = |e: Error| {
        Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "secrets unavailable\n")
            .note(Some(e.to_string()))
            .host(&host.name, host.mac)
    };
    // Read and checked before the URL is used, so a failure here does not burn it.
    let (file, size) = &host.secrets_file;
    let mut bytes = vec![0u8; *size as usize];
    match std::os::unix::fs::FileExt::read_exact_at(&**file, &mut bytes, 0) {
        Ok(()) => {}
        Err(source) => {
            return fail(Error::Read {
                file: host.secrets.clone(),
                source,
            })
        }
    }
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != host.secrets_sha {
        return fail(Error::Changed {
            file: host.secrets.clone(),
            expected: host.secrets_sha.clone(),
            actual,
        });
    }
    match sh.tokens.claim(&host.name, client, unix(now)) {
        Err(e) => fail(e),
        Ok(Claim::Used(s)) => Reply::text(StatusCode::GONE, "this one-time URL was used\n")
            .note(Some(format!(
                "refused: {}'s one-time secrets URL was already used at {} by {}",
                host.name,
                kiln_image::rfc3339(s.at),
                s.client
            )))
            .host(&host.name, host.mac),
        Ok(Claim::Granted) => {
            let mut r =
                Reply::new(StatusCode::OK, "application/gzip", bytes).host(&host.name, host.mac);
            r.no_store = true;
            r.note = Some(format!(
                "{}'s one-time secrets URL used: refused from now on",
                host.name
            ));
            let (sh, name) = (sh.clone(), host.name.clone());
            r.on_complete = Some(Box::new(move || {
                sh.tokens
                    .completed(&name)
                    .err()
                    .map(|e| format!("the complete download could not be recorded: {e}"))
            }));
            r
        }
    }
}
