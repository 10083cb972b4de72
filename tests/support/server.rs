//! `TestServer`: a loopback HTTP/1.1 (or HTTPS) server, one thread per connection.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::action::{Action, Behavior, Choice, Handler};
use super::conn::serve;
use super::http::RequestHead;
use super::record::{lock, Log, Recorded};
use super::tls::{TlsFlavor, TlsMaterial};

/// Longest sleep between checks of the stop flag.
const TICK: Duration = Duration::from_millis(10);
/// How long `Drop` waits for connection threads before detaching them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// State shared by the accept loop, the connection threads and the `TestServer` handle.
pub struct Shared {
    stop: AtomicBool,
    pub log: Log,
    behavior: Mutex<Behavior>,
    next_connection_id: AtomicU64,
    /// Clones of open connections' sockets, so `Drop` can shut them down.
    open: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records a new request and picks its action.
    pub fn begin_request(&self, head: &RequestHead, connection_id: u64) -> (usize, Action) {
        let (index, choice) = {
            // Holding the behavior lock while numbering keeps script order == request order.
            let mut behavior = lock(&self.behavior);
            let index = self.log.begin(head, connection_id);
            (index, behavior.next())
        };
        let action = match choice {
            Choice::Ready(action) => action,
            Choice::Ask(handler) => handler(head, index),
        };
        (index, action)
    }

    /// Sleeps until `deadline` (`None`: forever). Returns false if the server stopped first.
    pub fn pause_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.is_stopped() {
                return false;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => TICK,
            };
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(TICK));
        }
    }
}

/// Removes a connection from `Shared::open` when its thread ends (even by panic).
struct OpenGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.open).remove(&self.id);
    }
}

/// A loopback HTTP/1.1 server on 127.0.0.1 with programmable, fault-injecting behavior.
/// Dropping it stops the accept loop and shuts every open connection down.
pub struct TestServer {
    addr: SocketAddr,
    tls: Option<TlsMaterial>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a plain HTTP server.
    pub fn start(behavior: impl Into<Behavior>) -> TestServer {
        TestServer::launch(behavior.into(), None, 0)
    }

    /// Starts a plain HTTP server on a given port (to bring a "lost" server back where
    /// the client expects it). Retries the bind for up to 5 s (TIME_WAIT, a slow close).
    pub fn start_on(port: u16, behavior: impl Into<Behavior>) -> TestServer {
        TestServer::launch(behavior.into(), None, port)
    }

    /// Starts an HTTPS server whose certificate is valid for `localhost` and `127.0.0.1`.
    pub fn start_tls(behavior: impl Into<Behavior>) -> TestServer {
        TestServer::start_tls_with(behavior, TlsFlavor::Good)
    }

    /// Starts an HTTPS server with a good or deliberately bad certificate.
    pub fn start_tls_with(behavior: impl Into<Behavior>, flavor: TlsFlavor) -> TestServer {
        TestServer::launch(behavior.into(), Some(TlsMaterial::generate(flavor)), 0)
    }

    /// Starts an HTTPS server with this TLS material (for example one that requires
    /// client certificates: [`TlsMaterial::requiring_client_certs`]).
    pub fn start_tls_material(behavior: impl Into<Behavior>, tls: TlsMaterial) -> TestServer {
        TestServer::launch(behavior.into(), Some(tls), 0)
    }

    fn launch(behavior: Behavior, tls: Option<TlsMaterial>, port: u16) -> TestServer {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if port != 0 && Instant::now() < deadline => {
                    log::debug!("bind 127.0.0.1:{port}: {e}; retrying");
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("bind test server on port {port}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("test server address");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            log: Log::default(),
            behavior: Mutex::new(behavior),
            next_connection_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let config = tls.as_ref().map(|t| Arc::clone(&t.server_config));
        let loop_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("test-server-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &loop_shared, config.as_ref()))
            .expect("spawn test server accept thread");
        TestServer {
            addr,
            tls,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// `http://127.0.0.1:PORT/path` (`https` for TLS servers).
    pub fn url(&self, path: &str) -> String {
        self.url_for_host("127.0.0.1", path)
    }

    /// Like `url`, with another host name (e.g. `localhost`) in front of the port.
    pub fn url_for_host(&self, host: &str, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{host}:{}{slash}{path}", self.addr.port())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// PEM of the CA that signed the server certificate. Panics for a plain HTTP server.
    pub fn ca_pem(&self) -> String {
        self.tls_material().ca_pem.clone()
    }

    /// DER of the CA that signed the server certificate. Panics for a plain HTTP server.
    pub fn ca_der(&self) -> Vec<u8> {
        self.tls_material().ca_der.clone()
    }

    fn tls_material(&self) -> &TlsMaterial {
        self.tls
            .as_ref()
            .expect("not a TLS server: use TestServer::start_tls")
    }

    /// Replaces script, default and handler at once.
    pub fn set_behavior(&self, behavior: impl Into<Behavior>) {
        *lock(&self.shared.behavior) = behavior.into();
    }

    /// The next requests get `actions` in order; then the handler or default applies again.
    pub fn set_script(&self, actions: Vec<Action>) {
        lock(&self.shared.behavior).set_script(actions);
    }

    /// Action for requests not covered by the script (when no handler is set).
    pub fn set_default(&self, action: Action) {
        lock(&self.shared.behavior).set_default(action);
    }

    /// Decides requests not covered by the script: `handler(head, index)`.
    pub fn set_handler(&self, handler: Handler) {
        lock(&self.shared.behavior).set_handler(Some(handler));
    }

    pub fn clear_handler(&self) {
        lock(&self.shared.behavior).set_handler(None);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.snapshot()
    }

    /// Number of requests received so far (finished or not).
    pub fn request_count(&self) -> usize {
        self.shared.log.len()
    }

    /// Number of connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.next_connection_id.load(Ordering::SeqCst)
    }

    /// Most request bodies ever being received at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.shared.log.max_active()
    }

    /// Request bodies being received right now.
    pub fn active(&self) -> usize {
        self.shared.log.active()
    }

    /// Waits until at least `n` requests are `finished` (body reading over). False on timeout.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |reqs| {
            reqs.iter().filter(|r| r.finished).count() >= n
        })
    }

    /// Waits until `done(requests)` holds, polling. False on timeout.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if done(&self.requests()) {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; if that fails the accept thread is left detached.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(accept) = self.accept_thread.take() {
            if woken || accept.is_finished() {
                let _ = accept.join();
            }
        }
        for stream in lock(&self.shared.open).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join(); // a panicked connection thread is already reported
            } else {
                log::warn!("test server: connection thread still running after drop; detached");
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, tls: Option<&Arc<ServerConfig>>) {
    for incoming in listener.incoming() {
        if shared.is_stopped() {
            return;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(e) => {
                log::debug!("test server: accept failed: {e}");
                thread::sleep(TICK);
                continue;
            }
        };
        let id = shared.next_connection_id.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        match stream.try_clone() {
            Ok(clone) => {
                lock(&shared.open).insert(id, clone);
            }
            Err(e) => {
                log::debug!("test server: connection {id}: cannot clone socket: {e}");
                continue;
            }
        }
        let conn_shared = Arc::clone(shared);
        let tls = tls.cloned();
        let spawned = thread::Builder::new()
            .name(format!("test-server-conn-{id}"))
            .spawn(move || {
                let shared = &*conn_shared;
                let _open = OpenGuard { shared, id };
                match tls {
                    None => serve(stream, id, shared),
                    Some(config) => match ServerConnection::new(config) {
                        Ok(tls) => serve(StreamOwned::new(tls, stream), id, shared),
                        Err(e) => log::debug!("test server: connection {id}: TLS setup: {e}"),
                    },
                }
            });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                log::debug!("test server: connection {id}: cannot spawn thread: {e}");
                lock(&shared.open).remove(&id);
            }
        }
    }
}
