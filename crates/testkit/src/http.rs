//! A small scriptable HTTP/1.1 server on 127.0.0.1 (port chosen by the OS) for fault injection.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with the body, or 206 for a `Range: bytes=N-` request (416 past the end).
    Serve(Vec<u8>),
    /// Like `Serve` but without a Content-Length: the body ends when the connection closes.
    NoLength(Vec<u8>),
    /// 200 with the whole body even when a range was asked.
    IgnoreRange(Vec<u8>),
    /// 206 from the given byte (and saying so in Content-Range), whatever was asked.
    WrongRangeStart(Vec<u8>, usize),
    /// Announces the (ranged) body but closes the connection after `n` body bytes.
    CutAfter(Vec<u8>, usize),
    /// The (ranged) body, `chunk` bytes at a time with `pause` between chunks.
    Trickle {
        /// The body.
        body: Vec<u8>,
        /// Bytes per write.
        chunk: usize,
        /// Pause between writes.
        pause: Duration,
    },
    /// Sends `first` bytes of the (ranged) body, then stalls for `stall` and closes.
    Stall {
        /// The body.
        body: Vec<u8>,
        /// Bytes sent before the stall.
        first: usize,
        /// How long it stalls before closing.
        stall: Duration,
    },
    /// A bodiless status.
    Status(u16),
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target.
    pub path: String,
    /// The `Range` header, when sent.
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    queued: Mutex<HashMap<String, VecDeque<Reply>>>,
    always: Mutex<HashMap<String, Reply>>,
    log: Mutex<Vec<Request>>,
    body_bytes_sent: AtomicU64,
    stop: AtomicBool,
}

/// A running server; stops accepting when dropped.
pub struct Server {
    addr: std::net::SocketAddr,
    state: Arc<State>,
}

impl Server {
    /// Starts a server on a port the OS chooses.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (st, stop) = (state.clone(), state.clone());
        accept_loop(
            listener,
            move || stop.stop.load(Ordering::SeqCst),
            move |stream| handle(stream, &st),
        );
        Server { addr, state }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replies used once each, in order, for `path`.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .queued
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// The reply for `path` once its script is used up (404 when none).
    pub fn always(&self, path: &str, reply: Reply) {
        self.state
            .always
            .lock()
            .unwrap()
            .insert(path.to_owned(), reply);
    }

    /// Requests seen for `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.all_requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Every request seen, in order.
    pub fn all_requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    /// Body bytes written to clients so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.state.body_bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Accepts connections on `listener` until `stopped()` says so (checked at each connection),
/// each handled on a thread of its own; for servers and proxies that tests start.
pub fn accept_loop(
    listener: TcpListener,
    stopped: impl Fn() -> bool + Send + 'static,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped() {
                break;
            }
            let Ok(stream) = stream else { continue };
            let handle = handle.clone();
            thread::spawn(move || handle(stream));
        }
    });
}

fn handle(mut stream: TcpStream, st: &State) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_owned());
            }
        }
    }
    st.log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
    });
    let reply = st
        .queued
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .or_else(|| st.always.lock().unwrap().get(&path).cloned())
        .unwrap_or(Reply::Status(404));
    let head_only = method == "HEAD";
    let offset = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let _ = respond(&mut stream, st, reply, offset, head_only);
    let _ = stream.flush();
}

/// The status, extra headers and body for a possibly ranged request.
fn ranged(body: &[u8], offset: Option<usize>) -> (u16, String, Vec<u8>) {
    match offset {
        Some(n) if n >= body.len() => (
            416,
            format!("Content-Range: bytes */{}\r\n", body.len()),
            Vec::new(),
        ),
        Some(n) => (
            206,
            format!(
                "Content-Range: bytes {n}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
            body[n..].to_vec(),
        ),
        None => (200, String::new(), body.to_vec()),
    }
}

fn respond(
    stream: &mut TcpStream,
    st: &State,
    reply: Reply,
    offset: Option<usize>,
    head_only: bool,
) -> std::io::Result<()> {
    let (status, extra, body, send, pace): (
        u16,
        String,
        Vec<u8>,
        usize,
        Option<(usize, Duration)>,
    ) = match reply {
        Reply::Status(code) => (code, String::new(), Vec::new(), 0, None),
        Reply::Serve(body) => {
            let (s, e, b) = ranged(&body, offset);
            let n = b.len();
            (s, e, b, n, None)
        }
        Reply::NoLength(body) => {
            write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            if !head_only {
                send_body(stream, st, &body, None)?;
            }
            return Ok(());
        }
        Reply::IgnoreRange(body) => {
            let n = body.len();
            (200, String::new(), body, n, None)
        }
        Reply::WrongRangeStart(body, start) => {
            let extra = format!(
                "Content-Range: bytes {start}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            );
            let b = body[start..].to_vec();
            let n = b.len();
            (206, extra, b, n, None)
        }
        Reply::CutAfter(body, cut) => {
            let (s, e, b) = ranged(&body, offset);
            let n = cut.min(b.len());
            (s, e, b, n, None)
        }
        Reply::Trickle { body, chunk, pause } => {
            let (s, e, b) = ranged(&body, offset);
            let n = b.len();
            (s, e, b, n, Some((chunk, pause)))
        }
        Reply::Stall { body, first, stall } => {
            let (s, e, b) = ranged(&body, offset);
            write!(
                stream,
                "HTTP/1.1 {s} X\r\n{e}Content-Length: {}\r\nConnection: close\r\n\r\n",
                b.len()
            )?;
            send_body(stream, st, &b[..first.min(b.len())], None)?;
            thread::sleep(stall);
            return Ok(());
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head_only {
        send_body(stream, st, &body[..send], pace)?;
    }
    Ok(())
}

fn send_body(
    stream: &mut TcpStream,
    st: &State,
    body: &[u8],
    pace: Option<(usize, Duration)>,
) -> std::io::Result<()> {
    let (chunk, pause) = pace.unwrap_or((body.len().max(1), Duration::ZERO));
    for piece in body.chunks(chunk) {
        stream.write_all(piece)?;
        stream.flush()?;
        st.body_bytes_sent
            .fetch_add(piece.len() as u64, Ordering::SeqCst);
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    Ok(())
}
