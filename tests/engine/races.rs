//! The races the state machine answers (`src/scheduler/state.rs`), against a real
//! loopback server: cancel against a completion already on the wire, pause against a
//! completion, and shutdown during each. (Remove during a tus DELETE is in
//! `protocols::tus::remove_right_after_cancel_removes_while_the_delete_is_in_flight`.)
//!
//! "A completion on the wire" is made by a server that reads the whole body, answers
//! `200` at once and then trickles its response body: the upload's answer has arrived
//! but its worker has not reported it yet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::{Status, Upload, UploadRequest, Uploader};

use crate::support::{fast, wait_for, wait_until, write_file};

const T: Duration = Duration::from_secs(20);

/// A server that answers every request `200` as soon as its body is read, then sends
/// its `len`-byte response body one byte every 10 ms (bounded: at most 30 s a request).
struct Trickle {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Trickle {
    fn start(len: usize) -> Trickle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if l.is_empty() {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut w = conn;
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
                    if w.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let started = Instant::now();
                    for _ in 0..len {
                        if flag.load(Ordering::SeqCst)
                            || started.elapsed() > Duration::from_secs(30)
                            || w.write_all(b"x").is_err()
                        {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
            }
        });
        Trickle { port, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn uploader(dir: &Path) -> Uploader {
    fast(dir).progress_interval(Duration::ZERO).open().unwrap()
}

/// Starts a 64 KiB PUT to `server` and waits until its answer is on the wire (the
/// response body has started to arrive).
fn on_the_wire(up: &Uploader, server: &Trickle, dir: &Path, name: &str) -> Upload {
    let f = write_file(dir, name, 64 * 1024, 3);
    let h = up
        .create_upload(UploadRequest::put(server.url("/r"), &f))
        .unwrap();
    assert!(
        wait_until(T, || h.progress().bytes_received > 0),
        "the answer never started: {:?}",
        h.progress()
    );
    assert_eq!(
        h.status(),
        Status::Running,
        "the worker has not reported yet"
    );
    h
}

/// Cancel against a completion already on the wire: the cancel was acknowledged, so the
/// upload stays canceled, now and after a reopen.
#[test]
fn cancel_against_a_completion_on_the_wire_stays_canceled() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Trickle::start(200);
    let store = tmp.path().join("store");
    let up = uploader(&store);
    let h = on_the_wire(&up, &server, tmp.path(), "a.bin");
    h.cancel().unwrap();
    assert_eq!(h.status(), Status::Canceled);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.status(), Status::Canceled, "{:?}", h.progress());
    assert!(h.pause().is_err() && h.resume().is_err());
    let id = h.id();
    up.shutdown().unwrap();
    let up = uploader(&store);
    assert_eq!(up.get(id).unwrap().status(), Status::Canceled);
}

/// Pause against a completion: the pause stops the worker before it reports, and the
/// upload waits paused (a PUT may be sent again); resumed, it completes.
#[test]
fn pause_against_a_completion_on_the_wire_then_resume_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Trickle::start(20);
    let up = uploader(&tmp.path().join("store"));
    let h = on_the_wire(&up, &server, tmp.path(), "a.bin");
    h.pause().unwrap();
    assert!(wait_for(&h, T, |s| s == Status::PausedByApplication));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.status(), Status::PausedByApplication);
    h.resume().unwrap();
    let info = h.wait_timeout(T).expect("ended").expect("completed");
    assert_eq!(info.status, 200);
    assert_eq!(info.body_len, 20);
}

/// Shutdown during a cancel and during a pause of transfers whose answers are on the
/// wire: after the reopen, each is as the program left it.
#[test]
fn shutdown_during_a_cancel_and_a_pause_keeps_what_was_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Trickle::start(200);
    let store = tmp.path().join("store");
    let up = uploader(&store);
    let canceled = on_the_wire(&up, &server, tmp.path(), "a.bin");
    let paused = on_the_wire(&up, &server, tmp.path(), "b.bin");
    canceled.cancel().unwrap();
    paused.pause().unwrap();
    up.shutdown().unwrap();
    let up = uploader(&store);
    assert_eq!(up.get(canceled.id()).unwrap().status(), Status::Canceled);
    assert_eq!(
        up.get(paused.id()).unwrap().status(),
        Status::PausedByApplication
    );
}

/// Shutdown with a completion on the wire: the transfer is stopped before it reports,
/// so it goes back to the queue and completes after the reopen.
#[test]
fn shutdown_against_a_completion_on_the_wire_completes_after_the_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Trickle::start(20);
    let store = tmp.path().join("store");
    let up = uploader(&store);
    let h = on_the_wire(&up, &server, tmp.path(), "a.bin");
    let id = h.id();
    up.shutdown().unwrap();
    let up = uploader(&store);
    let h = up.get(id).unwrap();
    let info = h.wait_timeout(T).expect("ended").expect("completed");
    assert_eq!(info.status, 200);
}
