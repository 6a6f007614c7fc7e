//! A small HTTP proxy on 127.0.0.1 in front of the registry: it logs every request and can
//! cut one response mid-body, or stall it there, or cut one request mid-body (an upload
//! whose connection resets) (one request per connection, `Connection: close`); it counts the
//! uploads in flight at once, and can hold uploads until several are.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the proxy relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    log: Mutex<Vec<Seen>>,
    /// Cut the next response whose path ends with this, after this many body bytes.
    cut: Mutex<Option<(String, usize)>>,
    /// Whether that cut stalls (keeps the connection open, sends nothing) instead of closing.
    stall: AtomicBool,
    /// Answer the next request whose path ends with this with this status, not relaying it.
    fail: Mutex<Option<(String, u16)>>,
    /// Reset the connection of a request with this method after this many body bytes,
    /// relaying nothing of it, once this many such requests have passed.
    cut_request: Mutex<Option<(String, usize, usize)>>,
    /// Uploads (a `PUT` or `PATCH` of blob bytes) in flight: now, the most at once, and how
    /// many to hold them for (0: none).
    uploads: Mutex<Uploads>,
    upload_changed: Condvar,
    stop: AtomicBool,
}

#[derive(Default)]
struct Uploads {
    now: usize,
    peak: usize,
    hold_for: usize,
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: std::net::SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (st, stop) = (state.clone(), state.clone());
        let upstream = upstream.to_owned();
        kiln_testkit::http::accept_loop(
            listener,
            move || stop.stop.load(Ordering::SeqCst),
            move |stream| {
                let _ = relay(stream, &upstream, &st);
            },
        );
        Proxy {
            url: format!("http://{addr}"),
            addr,
            state,
        }
    }

    /// Cuts the next response to a path ending with `suffix` after `bytes` body bytes.
    pub fn cut_next(&self, suffix: &str, bytes: usize) {
        *self.state.cut.lock().unwrap() = Some((suffix.to_owned(), bytes));
    }

    /// Sends the next response to a path ending with `suffix` up to `bytes` body bytes,
    /// then nothing while keeping the connection open (longer than any test waits).
    pub fn stall_next(&self, suffix: &str, bytes: usize) {
        self.state.stall.store(true, Ordering::SeqCst);
        self.cut_next(suffix, bytes);
    }

    /// Answers the next request to a path ending with `suffix` with a bodiless `status`.
    pub fn fail_next(&self, suffix: &str, status: u16) {
        *self.state.fail.lock().unwrap() = Some((suffix.to_owned(), status));
    }

    /// Lets `skip` requests with `method` pass, then reads `bytes` of the next one's body
    /// and resets its connection without relaying any of it.
    pub fn cut_request(&self, method: &str, skip: usize, bytes: usize) {
        *self.state.cut_request.lock().unwrap() = Some((method.to_owned(), skip, bytes));
    }

    /// Holds each upload (`PUT`/`PATCH` of blob bytes) before relaying it until `n` are in
    /// flight at once (then lets every one through), or 5 s pass (below the tests' idle
    /// timeout): a client that uploads one
    /// blob after the other never gets there.
    pub fn hold_uploads_until(&self, n: usize) {
        self.state.uploads.lock().unwrap().hold_for = n;
    }

    /// The most uploads that were in flight through the proxy at once.
    pub fn peak_uploads(&self) -> usize {
        self.state.uploads.lock().unwrap().peak
    }

    /// Requests with `method` seen so far (a cut one included).
    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    /// Requests relayed so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.log.lock().unwrap().clone()
    }

    /// GETs of paths ending with `suffix`.
    pub fn gets(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.ends_with(suffix))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(client: TcpStream, upstream: &str, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut head = request_line.clone();
    let mut range = None;
    let mut body_len = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("range:") {
            range = Some(v.trim().to_owned());
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            body_len = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    head.push_str("Connection: close\r\n\r\n");
    let cut_request = {
        let mut cut = state.cut_request.lock().unwrap();
        match cut.as_mut() {
            Some((m, skip, _)) if *m == method && *skip > 0 => {
                *skip -= 1;
                None
            }
            Some((m, _, n)) if *m == method => {
                let n = *n;
                *cut = None;
                Some(n)
            }
            _ => None,
        }
    };
    if let Some(n) = cut_request {
        let mut part = vec![0u8; n.min(body_len)];
        reader.read_exact(&mut part)?;
        state.log.lock().unwrap().push(Seen {
            method,
            path,
            range,
        });
        // The client sees its request break: no answer, the rest of its body refused.
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut body = vec![0u8; body_len];
    reader.read_exact(&mut body)?;
    state.log.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        range,
    });
    let fail = {
        let mut fail = state.fail.lock().unwrap();
        match fail.as_ref() {
            Some((suffix, status)) if path.ends_with(suffix.as_str()) => {
                let status = *status;
                *fail = None;
                Some(status)
            }
            _ => None,
        }
    };
    if let Some(status) = fail {
        let mut client = client;
        let head =
            format!("HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        client.write_all(head.as_bytes())?;
        return client.flush();
    }
    let cut_after = {
        let mut cut = state.cut.lock().unwrap();
        match cut.as_ref() {
            Some((suffix, n)) if path.ends_with(suffix.as_str()) => {
                let n = *n;
                *cut = None;
                Some(n)
            }
            _ => None,
        }
    };

    let upload = (method == "PUT" || method == "PATCH") && path.contains("/blobs/uploads/");
    if upload {
        upload_begins(state);
    }
    let relayed = respond(client, upstream, &head, &body, cut_after, state);
    if upload {
        state.uploads.lock().unwrap().now -= 1;
        state.upload_changed.notify_all();
    }
    relayed
}

/// Counts an upload in flight and holds it while a hold asks for more at once.
fn upload_begins(state: &State) {
    let mut u = state.uploads.lock().unwrap();
    u.now += 1;
    u.peak = u.peak.max(u.now);
    if u.hold_for > 0 && u.now >= u.hold_for {
        u.hold_for = 0;
    }
    state.upload_changed.notify_all();
    let until = Instant::now() + Duration::from_secs(5);
    while u.hold_for > 0 && Instant::now() < until {
        u = state
            .upload_changed
            .wait_timeout(u, Duration::from_millis(100))
            .unwrap()
            .0;
    }
}

/// Relays one request to `upstream` and its response back, cut after `cut_after` body bytes.
fn respond(
    client: TcpStream,
    upstream: &str,
    head: &str,
    body: &[u8],
    cut_after: Option<usize>,
    state: &State,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(body)?;
    let mut client = client;
    let mut buf = [0u8; 16 * 1024];
    let mut seen_head = Vec::new();
    let mut body_sent: Option<usize> = None;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if body_sent.is_none() {
            seen_head.extend_from_slice(chunk);
            if let Some(end) = find(&seen_head, b"\r\n\r\n") {
                let head_in_chunk = chunk.len() - (seen_head.len() - end - 4);
                client.write_all(&chunk[..head_in_chunk])?;
                chunk = &chunk[head_in_chunk..];
                body_sent = Some(0);
            } else {
                client.write_all(chunk)?;
                continue;
            }
        }
        let sent = body_sent.as_mut().unwrap();
        if let Some(limit) = cut_after {
            let room = limit.saturating_sub(*sent).min(chunk.len());
            client.write_all(&chunk[..room])?;
            *sent += room;
            if *sent >= limit {
                client.flush()?;
                if state.stall.swap(false, Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_secs(120));
                }
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
        } else {
            client.write_all(chunk)?;
            *sent += chunk.len();
        }
    }
    client.flush()?;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
