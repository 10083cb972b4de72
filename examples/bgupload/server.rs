//! The demo's receiving server: HTTP/1.1 on 127.0.0.1, std only, one thread per
//! connection. It reads `Content-Length` or chunked bodies, hashes them with SHA-256 and
//! answers `201 Created` with `{"path":..,"bytes":..,"sha256":..}`.
//!
//! It can go away (stop listening and cut every open connection, like a lost link) and
//! come back on the same port; what it received survives in [`Stats`].

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// What the server received, per path, across restarts.
#[derive(Default)]
pub struct Stats {
    paths: Mutex<BTreeMap<String, PathStats>>,
}

#[derive(Debug, Clone, Default)]
pub struct PathStats {
    /// Requests whose head arrived.
    pub requests: u32,
    /// Body bytes received over all requests, complete or cut off.
    pub wire_bytes: u64,
}

impl Stats {
    /// Everything received for `path`.
    pub fn get(&self, path: &str) -> PathStats {
        lock(&self.paths).get(path).cloned().unwrap_or_default()
    }

    fn with(&self, path: &str, f: impl FnOnce(&mut PathStats)) {
        f(lock(&self.paths).entry(path.to_string()).or_default());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct State {
    stop: AtomicBool,
    stats: Arc<Stats>,
    next_conn: AtomicU64,
    /// Clones of open connections, so `stop` can cut them.
    open: Mutex<HashMap<u64, TcpStream>>,
}

/// A running server. Dropping it stops it like [`DemoServer::stop`].
pub struct DemoServer {
    port: u16,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl DemoServer {
    /// Listens on `127.0.0.1:port` (`0`: any free port). Retries the bind for up to 5
    /// seconds, so a server can come back on the port it left.
    pub fn start(port: u16, stats: Arc<Stats>) -> io::Result<DemoServer> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if port != 0 && Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        };
        let port = listener.local_addr()?.port();
        // Polled accept: `stop` needs no wake-up connection.
        listener.set_nonblocking(true)?;
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            stats,
            next_conn: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let s = Arc::clone(&state);
        let accept = thread::Builder::new()
            .name("demo-server".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(DemoServer {
            port,
            state,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening (new connections are refused) and cuts every open connection.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join(); // the listener is closed when the thread ends
        }
        for s in lock(&self.state.open).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = state.next_conn.fetch_add(1, Ordering::SeqCst);
        let setup = stream
            .set_nonblocking(false)
            .and_then(|_| stream.set_read_timeout(Some(IDLE)))
            .and_then(|_| stream.try_clone());
        let Ok(clone) = setup else { continue };
        lock(&state.open).insert(id, clone);
        let s = Arc::clone(state);
        let spawned = thread::Builder::new()
            .name(format!("demo-conn-{id}"))
            .spawn(move || {
                let _ = serve(stream, &s);
                lock(&s.open).remove(&id);
            });
        if spawned.is_err() {
            lock(&state.open).remove(&id);
        }
    }
}

/// One connection: requests until the client closes, asks to close, or breaks off.
fn serve(stream: TcpStream, state: &State) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut writer = stream;
    loop {
        let Some(head) = read_head(&mut reader)? else {
            return Ok(());
        };
        let path = head.path.clone();
        state.stats.with(&path, |p| p.requests += 1);
        if head.expect_continue {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut hasher = Sha256::new();
        let mut body_len = 0u64;
        let complete = {
            let mut sink = |buf: &[u8]| {
                hasher.update(buf);
                body_len += buf.len() as u64;
                state
                    .stats
                    .with(&path, |p| p.wire_bytes += buf.len() as u64);
            };
            if head.chunked {
                read_chunked(&mut reader, &mut sink)?
            } else {
                read_exact_len(&mut reader, head.content_length, &mut sink)?
            }
        };
        if !complete {
            return Ok(()); // the client went away mid-body
        }
        let sha = hex(&hasher.finalize());
        let body = serde_json::json!({ "path": path, "bytes": body_len, "sha256": sha })
            .to_string()
            + "\n";
        let response = format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if head.close { "Connection: close\r\n" } else { "" }
        );
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if head.close {
            return Ok(());
        }
    }
}

struct Head {
    path: String,
    content_length: u64,
    chunked: bool,
    expect_continue: bool,
    close: bool,
}

/// Reads a request head; `None` at a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue; // tolerate a stray CRLF between requests
            }
            break;
        }
        lines.push(line);
    }
    let mut parts = lines[0].split(' ');
    let (_method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return Err(io::Error::other("bad request line")),
    };
    let mut head = Head {
        path,
        content_length: 0,
        chunked: false,
        expect_continue: false,
        close: false,
    };
    for line in &lines[1..] {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length = value
                    .parse()
                    .map_err(|_| io::Error::other("bad Content-Length"))?
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Ok(Some(head))
}

/// Reads `len` body bytes into `sink`; false if the connection ended first.
fn read_exact_len(
    r: &mut impl BufRead,
    len: u64,
    sink: &mut impl FnMut(&[u8]),
) -> io::Result<bool> {
    let mut left = len;
    while left > 0 {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ok(false),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        let n = buf.len().min(left.min(usize::MAX as u64) as usize);
        sink(&buf[..n]);
        r.consume(n);
        left -= n as u64;
    }
    Ok(true)
}

/// Reads a chunked body (trailers skipped); false if the connection ended first.
fn read_chunked(r: &mut impl BufRead, sink: &mut impl FnMut(&[u8])) -> io::Result<bool> {
    loop {
        let mut line = String::new();
        if r.by_ref().take(1024).read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let size =
            u64::from_str_radix(size.trim(), 16).map_err(|_| io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if r.by_ref().take(MAX_HEAD as u64).read_line(&mut t)? == 0 {
                    return Ok(false);
                }
                if t.trim_end_matches(['\r', '\n']).is_empty() {
                    return Ok(true);
                }
            }
        }
        if !read_exact_len(r, size, sink)? {
            return Ok(false);
        }
        let mut crlf = String::new();
        if r.by_ref().take(2).read_line(&mut crlf)? == 0 {
            return Ok(false);
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
