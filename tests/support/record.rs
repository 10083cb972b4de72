//! What the server saw: one `Recorded` per request, and body-concurrency counters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::files::hex;
use super::http::RequestHead;

/// One request as received by the server.
///
/// An entry appears as soon as the request head is parsed. `body_len` grows while the body
/// is read; `sha256`, `complete` and `finished_at` are final once `finished` is set, which
/// happens when the server stops reading the body and always before it answers or closes.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 0-based position among all requests the server received.
    pub index: usize,
    /// Which connection carried the request (connections are numbered from 0).
    pub connection_id: u64,
    pub method: String,
    /// Request target as sent, query included.
    pub path: String,
    /// Headers in the order and case they were sent.
    pub headers: Vec<(String, String)>,
    /// Body bytes received so far (decoded, for chunked bodies).
    pub body_len: u64,
    /// Lowercase hex SHA-256 of the received body bytes; empty until `finished`.
    pub sha256: String,
    /// The whole body arrived (per `Content-Length` or the chunked terminator).
    pub complete: bool,
    /// The server has stopped reading this request's body.
    pub finished: bool,
    pub started_at: Instant,
    /// When the server stopped reading the body (`started_at` until then).
    pub finished_at: Instant,
}

impl Recorded {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        super::http::find_header(&self.headers, name)
    }
}

/// Locks a mutex, ignoring poisoning (a panicking server thread must not break the test).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every request received, plus how many bodies are being read at once.
#[derive(Default)]
pub struct Log {
    entries: Mutex<Vec<Recorded>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl Log {
    /// Adds an entry for a freshly parsed head and returns its index.
    pub fn begin(&self, head: &RequestHead, connection_id: u64) -> usize {
        let mut entries = lock(&self.entries);
        let now = Instant::now();
        let index = entries.len();
        entries.push(Recorded {
            index,
            connection_id,
            method: head.method.clone(),
            path: head.path.clone(),
            headers: head.headers.clone(),
            body_len: 0,
            sha256: String::new(),
            complete: false,
            finished: false,
            started_at: now,
            finished_at: now,
        });
        index
    }

    pub fn snapshot(&self) -> Vec<Recorded> {
        lock(&self.entries).clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Recorded)) {
        if let Some(entry) = lock(&self.entries).get_mut(index) {
            f(entry);
        }
    }
}

/// Body-reading state of one request. Counts as active from `start` until dropped; on drop
/// it writes the final length, hash and completeness into the log.
pub struct BodyProgress<'a> {
    log: &'a Log,
    index: usize,
    hasher: Sha256,
    len: u64,
    complete: bool,
}

impl<'a> BodyProgress<'a> {
    pub fn start(log: &'a Log, index: usize, complete: bool) -> BodyProgress<'a> {
        let now = log.active.fetch_add(1, Ordering::SeqCst) + 1;
        log.max_active.fetch_max(now, Ordering::SeqCst);
        BodyProgress {
            log,
            index,
            hasher: Sha256::new(),
            len: 0,
            complete,
        }
    }

    pub fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        let len = self.len;
        self.log.update(self.index, |r| r.body_len = len);
    }

    pub fn mark_complete(&mut self) {
        self.complete = true;
    }
}

impl Drop for BodyProgress<'_> {
    fn drop(&mut self) {
        let sha256 = hex(&self.hasher.finalize_reset());
        let (len, complete) = (self.len, self.complete);
        self.log.update(self.index, |r| {
            r.body_len = len;
            r.sha256 = sha256;
            r.complete = complete;
            r.finished = true;
            r.finished_at = Instant::now();
        });
        self.log.active.fetch_sub(1, Ordering::SeqCst);
    }
}
