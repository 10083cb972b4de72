//! The real tus server (`@tus/server` with `@tus/file-store` on Node.js, installed in
//! `tests/tus-server/` by `npm ci --prefix tests/tus-server`), run for one test on a
//! loopback port, with what it stored and the requests it saw.
//!
//! Self-contained (std only) so that an example can include it with `#[path]`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the node process may take to print `READY`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts to listen again on the same port after a kill (the port may linger).
const RESTART_TRIES: u32 = 20;

/// How the server runs.
#[derive(Debug, Clone, Default)]
pub struct TusOptions {
    /// `Location` answers are relative (`/files/<id>`) instead of absolute URLs.
    pub relative: bool,
    /// Unfinished uploads expire this long after their creation (the expiration
    /// extension); `None`: never.
    pub expiration: Option<Duration>,
    /// Every request needs `Authorization: Bearer minted-<ms since the epoch>` minted
    /// less than this long ago, and is answered 401 otherwise; `None`: no check.
    pub token_ttl: Option<Duration>,
}

/// One request the server saw, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusRequest {
    /// Which server process (0 for the first; a restart adds one) saw it.
    pub generation: u32,
    pub method: String,
    pub path: String,
    /// The request's `Upload-Offset`.
    pub offset: Option<u64>,
    /// The request's `Content-Length`.
    pub content_length: Option<u64>,
    /// The answer's status, once the request has ended.
    pub status: Option<u16>,
    /// The answer's `Upload-Offset`.
    pub response_offset: Option<u64>,
    /// Whether the whole answer was sent (false: the connection ended first).
    pub answered: bool,
}

impl TusRequest {
    /// The upload id this request is about (the last path segment), if any.
    pub fn upload_id(&self) -> Option<&str> {
        let id = upload_id(&self.path);
        (!id.is_empty() && id != "files").then_some(id)
    }
}

/// The last path segment of an upload URL (absolute or relative): the file store names
/// the upload's files after it.
pub fn upload_id(url: &str) -> &str {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    url.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// The tus server's directory in this repository.
pub fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus-server")
}

/// Why the server cannot run here, if it cannot.
fn missing() -> Option<String> {
    let dir = server_dir();
    for pkg in ["@tus/server", "@tus/file-store"] {
        if !dir
            .join("node_modules")
            .join(pkg)
            .join("package.json")
            .is_file()
        {
            return Some(format!(
                "{pkg} is not installed in {} (run `npm ci --prefix tests/tus-server`)",
                dir.display()
            ));
        }
    }
    match Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("`node --version` failed ({s})")),
        Err(e) => Some(format!("Node.js (`node`) cannot be run: {e}")),
    }
}

/// Whether the real server can run. In CI (`CI=true`) a missing server panics: the tus
/// tests must fail there, never skip. Elsewhere it prints why the test is skipped.
pub fn available(test: &str) -> bool {
    let Some(why) = missing() else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the tus test server is required in CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A running `@tus/server`; killed on drop.
pub struct TusServer {
    port: u16,
    dir: PathBuf,
    opts: TusOptions,
    generation: u32,
    proc: Option<Proc>,
    log: Arc<Mutex<Vec<TusRequest>>>,
}

struct Proc {
    child: Child,
    /// The server exits when this closes (our process died without dropping us).
    _stdin: ChildStdin,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TusServer {
    /// Starts a server with absolute `Location`s and no expiration, storing uploads in
    /// `dir`. `None` (after printing why) when Node.js or the installed server is
    /// missing outside CI: the test returns early.
    pub fn start(test: &str, dir: &Path) -> Option<TusServer> {
        Self::start_with(test, dir, TusOptions::default())
    }

    /// Like [`TusServer::start`] with options.
    pub fn start_with(test: &str, dir: &Path, opts: TusOptions) -> Option<TusServer> {
        if !available(test) {
            return None;
        }
        let mut s = TusServer {
            port: 0,
            dir: dir.to_path_buf(),
            opts,
            generation: 0,
            proc: None,
            log: Arc::default(),
        };
        s.spawn(0)
            .unwrap_or_else(|e| panic!("start the tus server: {e}"));
        Some(s)
    }

    /// Starts node on `port` (0: any) and waits for `READY <port>`.
    fn spawn(&mut self, port: u16) -> Result<(), String> {
        let mut cmd = Command::new("node");
        cmd.arg(server_dir().join("server.mjs"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(server_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.opts.relative {
            cmd.arg("--relative");
        }
        if let Some(e) = self.opts.expiration {
            cmd.arg("--expiration-ms").arg(e.as_millis().to_string());
        }
        if let Some(t) = self.opts.token_ttl {
            cmd.arg("--token-ttl-ms").arg(t.as_millis().to_string());
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn node: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = self.log.clone();
        let generation = self.generation;
        std::thread::Builder::new()
            .name("tus-server-stdout".into())
            .spawn(move || read_lines(stdout, generation, &log, ready_tx))
            .map_err(|e| format!("start the stdout reader: {e}"))?;
        let got = wait_ready(&ready_rx, &mut child);
        match got {
            Ok(p) => {
                self.port = p;
                self.proc = Some(Proc {
                    child,
                    _stdin: stdin,
                });
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The creation endpoint, `http://127.0.0.1:PORT/files/`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/files/", self.port)
    }

    /// The file store's directory.
    pub fn store_dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILLs the server (a crash: nothing is flushed or closed gracefully).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Starts it again on the same port and store (after [`TusServer::kill`], or kills
    /// it first). Panics if it cannot listen there within a few seconds.
    pub fn restart(&mut self) {
        self.kill();
        self.generation += 1;
        let mut last = String::new();
        for _ in 0..RESTART_TRIES {
            match self.spawn(self.port) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("restart the tus server on port {}: {last}", self.port);
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<TusRequest> {
        lock(&self.log).clone()
    }

    /// The requests about one upload (id or URL).
    pub fn requests_for(&self, upload: &str) -> Vec<TusRequest> {
        let id = upload_id(upload);
        self.requests()
            .into_iter()
            .filter(|r| r.upload_id() == Some(id))
            .collect()
    }

    /// The ids of the uploads in the store (those with a metadata file), sorted.
    pub fn upload_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().into_string().ok()?;
                        name.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The file holding an upload's bytes (id or URL).
    pub fn data_file(&self, upload: &str) -> PathBuf {
        self.dir.join(upload_id(upload))
    }

    /// The upload's metadata file (`<id>.json`).
    pub fn meta_file(&self, upload: &str) -> PathBuf {
        self.dir.join(format!("{}.json", upload_id(upload)))
    }

    /// Bytes the server has stored for the upload, if it has its data file.
    pub fn stored_len(&self, upload: &str) -> Option<u64> {
        std::fs::metadata(self.data_file(upload))
            .ok()
            .map(|m| m.len())
    }

    /// Deletes the upload from the store behind the server's back (data and metadata).
    pub fn delete_upload(&self, upload: &str) {
        for f in [self.data_file(upload), self.meta_file(upload)] {
            std::fs::remove_file(&f).unwrap_or_else(|e| panic!("delete {}: {e}", f.display()));
        }
    }

    /// Waits (at most `timeout`) until the store holds exactly one upload with at least
    /// `bytes` stored, and returns its id.
    pub fn wait_stored(&self, bytes: u64, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let [id] = self.upload_ids().as_slice() {
                if self.stored_len(id).is_some_and(|n| n >= bytes) {
                    return Some(id.clone());
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TusServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_ready(rx: &Receiver<Result<u16, String>>, child: &mut Child) -> Result<u16, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => return r,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!("node exited before it was ready ({status})"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("node exited before it was ready ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!("node did not print READY within {START_TIMEOUT:?}"));
        }
    }
}

/// Reads the server's stdout: `READY`, then the request log, until it exits.
fn read_lines(
    out: impl Read,
    generation: u32,
    log: &Mutex<Vec<TusRequest>>,
    ready: mpsc::Sender<Result<u16, String>>,
) {
    // Request number (per process) -> index in the log.
    let mut index: HashMap<u64, usize> = HashMap::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match f.first().copied() {
            Some("READY") => {
                let r = num(1)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| format!("bad READY line {line:?}"));
                let _ = ready.send(r);
            }
            Some("REQ") if f.len() == 6 => {
                let mut log = lock(log);
                if let Some(n) = num(1) {
                    index.insert(n, log.len());
                }
                log.push(TusRequest {
                    generation,
                    method: f[2].to_string(),
                    path: f[3].to_string(),
                    offset: num(4),
                    content_length: num(5),
                    status: None,
                    response_offset: None,
                    answered: false,
                });
            }
            Some("END") if f.len() == 5 => {
                let mut log = lock(log);
                if let Some(r) = num(1)
                    .and_then(|n| index.get(&n))
                    .and_then(|&i| log.get_mut(i))
                {
                    r.status = num(2).and_then(|s| u16::try_from(s).ok());
                    r.response_offset = num(3);
                    r.answered = f[4] == "1";
                }
            }
            _ => {}
        }
    }
}

/// The status of a `HEAD` on a tus upload URL (absolute), over a raw socket.
pub fn head_status(url: &str) -> u16 {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority}: {e}"));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = if path.is_empty() { "/" } else { path };
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line.split(' ')
        .nth(1)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
}
