//! A loopback TCP proxy between a client and a server that forwards bytes, counts them,
//! cuts connections after a number of client→server bytes, and can stop listening for
//! a while (the server "goes away").
//!
//! Self-contained (std only) so that an example can include it with `#[path]`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Bytes read at once in each direction: at most this many bytes read from the client
/// are dropped when a connection is cut.
pub const PROXY_BUFFER: usize = 64 * 1024;
/// Sleep between polls of the non-blocking listener.
const TICK: Duration = Duration::from_millis(2);
/// How long a state change (refuse, accept again) or `Drop` waits.
const WAIT: Duration = Duration::from_secs(5);
/// Connect timeout towards the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Cuts {
    /// Cut the connection that brings the client→server total since arming to this
    /// many bytes (once).
    once: Option<u64>,
    /// Per new connection, in accept order: cut it after this many client→server bytes
    /// (`None`: leave it alone). Connections after the script runs out are left alone.
    script: VecDeque<Option<u64>>,
}

#[derive(Default)]
struct Shared {
    target: Mutex<Option<SocketAddr>>,
    stop: AtomicBool,
    refusing: AtomicBool,
    listening: AtomicBool,
    cuts: Mutex<Cuts>,
    from_client: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    connections: AtomicU64,
    cut_count: AtomicU64,
    /// Both sockets of each open connection, so they can be cut from anywhere.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// A pump ended; the last one of a connection forgets it.
    fn pump_ended(&self, id: u64, alive: &AtomicU64) {
        if alive.fetch_sub(1, Ordering::SeqCst) == 1 {
            lock(&self.open).remove(&id);
        }
    }

    fn cut(&self, id: u64) {
        if let Some((c, s)) = lock(&self.open).remove(&id) {
            let _ = c.shutdown(Shutdown::Both);
            let _ = s.shutdown(Shutdown::Both);
            self.cut_count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The proxy; stops (cutting every connection) on drop.
pub struct Proxy {
    shared: Arc<Shared>,
    port: u16,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free 127.0.0.1 port, forwarding to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let shared = Arc::new(Shared::default());
        *lock(&shared.target) = Some(target);
        shared.listening.store(true, Ordering::SeqCst);
        let s = shared.clone();
        let accept = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(&s, Some(listener), port))
            .expect("start the proxy thread");
        Proxy {
            shared,
            port,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://127.0.0.1:{}{slash}{path}", self.port)
    }

    /// Forwards new connections to `target` from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *lock(&self.shared.target) = Some(target);
    }

    /// Cuts (once) the connection during which the client→server bytes counted from now
    /// reach `bytes`; exactly `bytes` are forwarded before the cut.
    pub fn cut_after(&self, bytes: u64) {
        lock(&self.shared.cuts).once = Some(bytes);
    }

    /// Per connection from now on, in accept order: cut it after that many
    /// client→server bytes (`None`: leave it alone).
    pub fn script(&self, per_connection: impl IntoIterator<Item = Option<u64>>) {
        lock(&self.shared.cuts).script = per_connection.into_iter().collect();
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        let ids: Vec<u64> = lock(&self.shared.open).keys().copied().collect();
        for id in ids {
            self.shared.cut(id);
        }
    }

    /// Stops listening (new connections are refused) and cuts every open connection:
    /// the server has gone away. Returns once the port is closed.
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.cut_all();
        let deadline = Instant::now() + WAIT;
        while self.shared.listening.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(TICK);
        }
        assert!(
            !self.shared.listening.load(Ordering::SeqCst),
            "the proxy did not stop listening"
        );
    }

    /// Listens again on the same port. Returns once it does.
    pub fn accept_again(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + WAIT;
        while !self.shared.listening.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(TICK);
        }
        assert!(
            self.shared.listening.load(Ordering::SeqCst),
            "the proxy could not listen on port {} again",
            self.port
        );
    }

    /// Bytes read from clients (everything they sent that reached the proxy).
    pub fn bytes_from_client(&self) -> u64 {
        self.shared.from_client.load(Ordering::SeqCst)
    }

    /// Bytes forwarded to the server.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// Bytes forwarded to clients.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections cut so far (by a limit, `cut_all` or `refuse`).
    pub fn cuts(&self) -> u64 {
        self.shared.cut_count.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let deadline = Instant::now() + WAIT;
        let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                thread::sleep(TICK);
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, mut listener: Option<TcpListener>, port: u16) {
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.refusing.load(Ordering::SeqCst) {
            if listener.take().is_some() {
                shared.listening.store(false, Ordering::SeqCst);
            }
            thread::sleep(TICK);
            continue;
        }
        let Some(l) = &listener else {
            // std sets SO_REUSEADDR, so the port can be bound again at once.
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
                if l.set_nonblocking(true).is_ok() {
                    listener = Some(l);
                    shared.listening.store(true, Ordering::SeqCst);
                }
            }
            thread::sleep(TICK);
            continue;
        };
        match l.accept() {
            Ok((client, _)) => connect(shared, client),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(_) => thread::sleep(TICK),
        }
    }
}

/// Connects an accepted client to the server and starts the two pumps.
fn connect(shared: &Arc<Shared>, client: TcpStream) {
    let id = shared.connections.fetch_add(1, Ordering::SeqCst);
    let limit = lock(&shared.cuts).script.pop_front().flatten();
    let Some(target) = *lock(&shared.target) else {
        return;
    };
    let Ok(server) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        // The server is down: the client sees its connection closed.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    lock(&shared.open).insert(id, (c3, s3));
    let alive = Arc::new(AtomicU64::new(2));
    let up = {
        let (shared, alive) = (shared.clone(), alive.clone());
        thread::Builder::new()
            .name(format!("proxy-up-{id}"))
            .spawn(move || {
                pump_up(&shared, id, client, server, limit);
                shared.pump_ended(id, &alive);
            })
    };
    let down = {
        let (shared, alive) = (shared.clone(), alive.clone());
        thread::Builder::new()
            .name(format!("proxy-down-{id}"))
            .spawn(move || {
                pump_down(&shared, s2, c2);
                shared.pump_ended(id, &alive);
            })
    };
    if up.is_err() || down.is_err() {
        shared.cut(id);
    }
    let mut threads = lock(&shared.threads);
    threads.retain(|t| !t.is_finished());
    threads.extend(up.ok());
    threads.extend(down.ok());
}

/// Client → server, applying the cut limits.
fn pump_up(
    shared: &Shared,
    id: u64,
    mut client: TcpStream,
    mut server: TcpStream,
    limit: Option<u64>,
) {
    let mut buf = vec![0u8; PROXY_BUFFER];
    let mut sent_here = 0u64;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        shared.from_client.fetch_add(n as u64, Ordering::SeqCst);
        // How much of it may pass before a cut.
        let mut allowed = n as u64;
        let mut cut = false;
        if let Some(l) = limit {
            if sent_here + allowed >= l {
                allowed = l.saturating_sub(sent_here);
                cut = true;
            }
        }
        {
            let mut cuts = lock(&shared.cuts);
            if let Some(left) = cuts.once {
                if allowed >= left {
                    allowed = left;
                    cut = true;
                    cuts.once = None;
                } else {
                    cuts.once = Some(left - allowed);
                }
            }
        }
        let chunk = &buf[..allowed as usize];
        if server.write_all(chunk).is_err() {
            break;
        }
        sent_here += allowed;
        shared.to_server.fetch_add(allowed, Ordering::SeqCst);
        if cut {
            let _ = server.flush();
            shared.cut(id);
            return;
        }
    }
    // The client finished sending (or its side broke): pass the end on.
    let _ = server.shutdown(Shutdown::Write);
}

/// Server → client.
fn pump_down(shared: &Shared, mut server: TcpStream, mut client: TcpStream) {
    let mut buf = vec![0u8; PROXY_BUFFER];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        shared.to_client.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = client.shutdown(Shutdown::Write);
}
