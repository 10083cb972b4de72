//! A raw loopback TCP server for hostile-server and bad-input tests: each connection runs
//! a script that writes whatever bytes it likes (not necessarily HTTP), so a test can play
//! a server that `support::TestServer` cannot (header floods, trickles, bogus framing, a
//! body sink that discards gigabytes without hashing them).
//!
//! Every loop a script runs must check [`Conn::stopped`] (or use [`Conn::sleep`]), so that
//! dropping the server ends it.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest request head read before the connection is dropped.
const MAX_HEAD: usize = 64 * 1024;
/// How long `Drop` waits for connection threads.
const DRAIN: Duration = Duration::from_secs(5);

/// What a connection's script gets: the socket, the request head, and the stop flag.
pub struct Conn {
    pub stream: TcpStream,
    /// The request head as text (request line and headers), empty if none was read.
    pub head: String,
    /// Body bytes already read together with the head.
    pending: Vec<u8>,
    stop: Arc<AtomicBool>,
    shared: Arc<Counters>,
}

/// A connection's script.
pub type Script = Arc<dyn Fn(&mut Conn) -> io::Result<()> + Send + Sync>;

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    body_bytes: AtomicU64,
    heads: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// Whether the server is being dropped.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d` in small steps; false if the server stopped meanwhile.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stopped() {
                return false;
            }
            thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
        }
        !self.stopped()
    }

    /// The request's `Content-Length`, if it has one.
    pub fn content_length(&self) -> Option<u64> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
    }

    /// The value of request header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// Reads and discards the request body (per `Content-Length`), counting it; returns
    /// `(bytes, nonzero_bytes)`.
    pub fn discard_body(&mut self) -> io::Result<(u64, u64)> {
        let want = self.content_length().unwrap_or(0);
        let mut got = 0u64;
        let mut nonzero = 0u64;
        let pending = std::mem::take(&mut self.pending);
        let take = (pending.len() as u64).min(want) as usize;
        nonzero += pending[..take].iter().filter(|&&b| b != 0).count() as u64;
        got += take as u64;
        self.shared
            .body_bytes
            .fetch_add(take as u64, Ordering::Relaxed);
        let mut buf = vec![0u8; 1 << 20];
        while got < want {
            if self.stopped() {
                return Err(io::Error::other("server stopping"));
            }
            let n = ((want - got).min(buf.len() as u64)) as usize;
            let n = match self.stream.read(&mut buf[..n]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if is_retry(&e) => continue,
                Err(e) => return Err(e),
            };
            nonzero += buf[..n].iter().filter(|&&b| b != 0).count() as u64;
            got += n as u64;
            self.shared
                .body_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok((got, nonzero))
    }

    /// Reads the whole request body (per `Content-Length`, at most 64 MiB) into memory.
    pub fn read_body(&mut self) -> io::Result<Vec<u8>> {
        let want = self.content_length().unwrap_or(0).min(64 << 20) as usize;
        let mut body = std::mem::take(&mut self.pending);
        body.truncate(want);
        let mut buf = vec![0u8; 64 * 1024];
        while body.len() < want {
            if self.stopped() {
                return Err(io::Error::other("server stopping"));
            }
            let n = (want - body.len()).min(buf.len());
            match self.stream.read(&mut buf[..n]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => body.extend_from_slice(&buf[..n]),
                Err(e) if is_retry(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        self.shared
            .body_bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }

    /// The request method.
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }
}

/// The server. Dropping it stops every script and closes every connection.
pub struct RawServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<Counters>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl RawServer {
    /// Starts a server on 127.0.0.1 that runs `script` on every connection, after reading
    /// the request head (if the client sends one within the connection's life).
    pub fn start(script: impl Fn(&mut Conn) -> io::Result<()> + Send + Sync + 'static) -> Self {
        let script: Script = Arc::new(script);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind raw server");
        let addr = listener.local_addr().expect("raw server address");
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Counters::default());
        let open = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (stop, shared, open, threads) =
                (stop.clone(), shared.clone(), open.clone(), threads.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_nodelay(true);
                    if let Ok(c) = stream.try_clone() {
                        lock(&open).push(c);
                    }
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let (stop, shared, script) = (stop.clone(), shared.clone(), script.clone());
                    let t = thread::spawn(move || {
                        let mut conn = Conn {
                            stream,
                            head: String::new(),
                            pending: Vec::new(),
                            stop,
                            shared,
                        };
                        if read_head(&mut conn).is_ok() {
                            lock(&conn.shared.heads).push(conn.head.clone());
                            let _ = script(&mut conn);
                        }
                        let _ = conn.stream.shutdown(Shutdown::Both);
                    });
                    lock(&threads).push(t);
                }
            })
        };
        RawServer {
            addr,
            stop,
            shared,
            open,
            threads,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Request body bytes read (by `discard_body`) so far.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::Relaxed)
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        lock(&self.shared.heads).clone()
    }
}

/// A read that timed out (the socket has a short timeout so loops see the stop flag).
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Reads up to the end of the request head; keeps any body bytes read with it.
fn read_head(conn: &mut Conn) -> io::Result<()> {
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if conn.stopped() {
            return Err(io::Error::other("server stopping"));
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            conn.head = String::from_utf8_lossy(&buf[..end]).into_owned();
            conn.pending = buf[end + 4..].to_vec();
            conn.stream
                .set_read_timeout(Some(Duration::from_millis(200)))?;
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        match conn.stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for s in lock(&self.open).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        let deadline = Instant::now() + DRAIN;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
