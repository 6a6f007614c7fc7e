//! The HTTP server: hyper 1 (HTTP/1.1) on tokio, routing, bodies that count what they hand to
//! the connection, and one [`Access`] record per request, given to the caller's logger.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::ipxe::Netboot;
use crate::routes;
use crate::site::{Mac, Site};
use crate::tokens::Tokens;
use crate::Error;

/// One request as the access log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The client's MAC, when the request names it or an earlier `/ipxe/<mac>` from the same
    /// address did.
    pub mac: Option<Mac>,
    /// The host the request was for, when known.
    pub host: Option<String>,
    /// `GET`, `HEAD`, ….
    pub method: String,
    /// The path, with tokens cut to their first 8 digits (the log must not hand them out).
    pub path: String,
    /// The status sent.
    pub status: u16,
    /// Body bytes handed to the connection.
    pub bytes: u64,
    /// Whether the whole body was.
    pub complete: bool,
    /// What happened, for requests worth a word (a refused secrets URL, an unknown MAC, …).
    pub note: Option<String>,
}

/// What the server shares between connections.
pub(crate) struct Shared {
    pub(crate) site: Site,
    pub(crate) tokens: Tokens,
    pub(crate) netboot: Option<Netboot>,
    pub(crate) log: Box<dyn Fn(&Access) + Send + Sync>,
    /// MACs learnt from `/ipxe/<mac>` requests, by client address, for the log.
    pub(crate) macs: Mutex<HashMap<IpAddr, Mac>>,
}

impl Shared {
    pub(crate) fn new(
        site: Site,
        tokens: Tokens,
        netboot: Option<Netboot>,
        log: Box<dyn Fn(&Access) + Send + Sync>,
    ) -> Shared {
        Shared {
            site,
            tokens,
            netboot,
            log,
            macs: Mutex::new(HashMap::new()),
        }
    }
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), Error>>,
}

impl Running {
    /// The address it listens on (the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server ended (it failed: it runs until stopped otherwise).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Serves until the process ends (or the server fails).
    pub fn wait(self) -> Result<(), Error> {
        let Running { stop, thread, .. } = self;
        let r = join(thread);
        drop(stop);
        r
    }

    /// Stops accepting and ends the server.
    pub fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        join(self.thread)
    }
}

fn join(t: std::thread::JoinHandle<Result<(), Error>>) -> Result<(), Error> {
    t.join().unwrap_or_else(|_| {
        Err(Error::Runtime {
            source: std::io::Error::other("the server thread panicked"),
        })
    })
}

/// Binds `listen` and serves `shared` on a thread of its own.
pub(crate) fn start(shared: Shared, listen: SocketAddr) -> Result<Running, Error> {
    let listen_err = |source| Error::Listen {
        addr: listen,
        source,
    };
    let listener = std::net::TcpListener::bind(listen).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    let addr = listener.local_addr().map_err(listen_err)?;
    // Two workers: the work is file reads and small scripts, and the machine is shared.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = Arc::new(shared);
    let thread = std::thread::spawn(move || {
        let r = rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(accept(listener, shared));
            let _ = stopped.await;
            Ok(())
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        r.map_err(|source| Error::Runtime { source })
    });
    Ok(Running { addr, stop, thread })
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let sh = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(sh.clone(), local, peer, req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // A client that never finishes its headers does not hold a connection forever.
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
}

/// What a body is made of.
pub(crate) enum Payload {
    Bytes(Bytes),
    File(Arc<File>, u64),
}

impl Payload {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File(_, n) => *n,
        }
    }
}

/// A response body that counts the bytes it hands to the connection and reports them (and
/// whether that was all) once, when the connection is done with it.
pub(crate) struct Counted {
    payload: Payload,
    pos: u64,
    len: u64,
    finish: Option<Box<dyn FnOnce(u64, bool) + Send>>,
}

/// Bytes read from a file per frame.
const CHUNK: u64 = 256 << 10;

impl Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.pos >= this.len {
            return Poll::Ready(None);
        }
        let chunk = match &this.payload {
            Payload::Bytes(b) => b.slice(this.pos as usize..this.len as usize),
            Payload::File(f, _) => {
                let n = CHUNK.min(this.len - this.pos);
                let mut buf = vec![0u8; n as usize];
                // A local file: a short blocking read, on a worker of the runtime.
                if let Err(e) = f.read_exact_at(&mut buf, this.pos) {
                    return Poll::Ready(Some(Err(e)));
                }
                Bytes::from(buf)
            }
        };
        this.pos += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.pos)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f(self.pos, self.pos >= self.len);
        }
    }
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The server's URL as the client reached it: the connection's own address.
fn base_url(local: SocketAddr) -> String {
    let ip = local.ip().to_canonical();
    format!("http://{}", SocketAddr::new(ip, local.port()))
}

/// `path` with the token of `/seed/<token>/…` and `/secrets/<token>` cut to 8 digits.
fn redact(path: &str) -> String {
    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    if matches!(parts.get(1).map(String::as_str), Some("seed" | "secrets")) {
        if let Some(t) = parts.get_mut(2) {
            if t.len() > 8 {
                let cut: String = t.chars().take(8).collect();
                *t = format!("{cut}…");
            }
        }
    }
    parts.join("/")
}

async fn handle(
    sh: Arc<Shared>,
    local: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Counted>, Infallible> {
    let time = SystemTime::now();
    let client = peer.ip().to_canonical();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let base = base_url(local);
    let reply = routes::route(&sh, &base, client, &method, &path, time);
    let mac = reply.mac.or_else(|| lock(&sh.macs).get(&client).copied());
    let len = reply.payload.len();
    let head = method == Method::HEAD;
    let mut record = Access {
        time,
        client,
        mac,
        host: reply.host,
        method: method.to_string(),
        path: redact(&path),
        status: reply.status.as_u16(),
        bytes: 0,
        complete: false,
        note: reply.note,
    };
    let on_complete = reply.on_complete;
    let sh2 = sh.clone();
    let finish = move |sent: u64, complete: bool| {
        if complete {
            if let Some(more) = on_complete.and_then(|f| f()) {
                record.note = Some(match record.note.take() {
                    Some(n) => format!("{n}; {more}"),
                    None => more,
                });
            }
        }
        record.bytes = sent;
        record.complete = complete;
        (sh2.log)(&record);
    };
    let body = Counted {
        payload: if head {
            Payload::Bytes(Bytes::new())
        } else {
            reply.payload
        },
        pos: 0,
        len: if head { 0 } else { len },
        finish: Some(Box::new(finish)),
    };
    let mut b = Response::builder()
        .status(reply.status)
        .header(CONTENT_TYPE, reply.content_type)
        .header(CONTENT_LENGTH, len);
    if reply.no_store {
        b = b.header(CACHE_CONTROL, "no-store");
    }
    Ok(b.body(body).expect("valid response parts"))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cut_from_logged_paths_and_nothing_else_is() {
        let t = "ab".repeat(32);
        assert_eq!(redact(&format!("/secrets/{t}")), "/secrets/abababab…");
        assert_eq!(
            redact(&format!("/seed/{t}/user-data")),
            "/seed/abababab…/user-data"
        );
        assert_eq!(
            redact(&format!("/blobs/sha256/{t}")),
            format!("/blobs/sha256/{t}")
        );
        assert_eq!(redact("/secrets/short"), "/secrets/short");
    }

    #[test]
    fn the_base_url_is_the_address_the_client_reached() {
        assert_eq!(
            base_url("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base_url("[::1]:80".parse().unwrap()), "http://[::1]:80");
        // An IPv4 client on a dual-stack socket.
        assert_eq!(
            base_url("[::ffff:10.0.0.1]:80".parse().unwrap()),
            "http://10.0.0.1:80"
        );
    }

    /// Polls `body` to its end, or for `frames` frames; returns the bytes it gave.
    fn drain(body: &mut Counted, frames: usize) -> Vec<u8> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = Vec::new();
        for _ in 0..frames {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
                Poll::Ready(None) => break,
                other => panic!("{other:?}"),
            }
        }
        out
    }

    #[test]
    fn a_body_reports_what_it_handed_out_and_whether_that_was_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..(CHUNK as usize * 2 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let report = Arc::new(Mutex::new(Vec::new()));
        let body = |report: &Arc<Mutex<Vec<(u64, bool)>>>| {
            let r = report.clone();
            Counted {
                payload: Payload::File(file.clone(), data.len() as u64),
                pos: 0,
                len: data.len() as u64,
                finish: Some(Box::new(move |n, all| lock(&r).push((n, all)))),
            }
        };
        let mut whole = body(&report);
        assert_eq!(whole.size_hint().exact(), Some(data.len() as u64));
        assert_eq!(drain(&mut whole, 10), data);
        assert!(whole.is_end_stream());
        drop(whole);
        let mut part = body(&report);
        assert_eq!(drain(&mut part, 1), data[..CHUNK as usize]);
        drop(part);
        assert_eq!(*lock(&report), [(data.len() as u64, true), (CHUNK, false)]);
    }
}
