//! The control channel under abuse: 10,000 connections to an owner in a process of its
//! own (`BGXFER_ABUSE_CONNECTIONS` scales it), of every bad kind: garbage, a length
//! over the cap, a wrong version, a message cut off by a disconnect, a valid frame
//! that is no request, a request for what does not exist, and clients that connect and
//! never speak (or speak one byte and stall). The owner's resident memory, descriptors
//! and threads are read from `/proc` before and after; it must answer a real client
//! afterwards, and its store must hold what it held.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::{Client, UploadRequest};

use crate::support::{wait_until, write_file, Behavior, Rng, TestServer};

/// The owner's resident set (KiB), open descriptors and threads.
fn footprint(pid: u32) -> (u64, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (field("VmRSS:"), fds, field("Threads:"))
}

fn frame(payload: &[u8], version: u8) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_le_bytes().to_vec();
    out.push(version);
    out.extend_from_slice(payload);
    out
}

/// One abusive connection of kind `kind`; returns whether the owner answered it (the
/// silent kinds are only closed).
fn abuse(socket: &Path, kind: u64, rng: &mut Rng) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let garbage: Vec<u8> = (0..rng.range(1, 300)).map(|_| rng.next() as u8).collect();
    let sent = match kind {
        // Random bytes, framed.
        0 => s.write_all(&frame(&garbage, 1)),
        // A length far over the 1 MiB cap, then some bytes.
        1 => s
            .write_all(&u32::MAX.to_le_bytes())
            .and_then(|()| s.write_all(&garbage)),
        2 => s.write_all(&((2u32 << 20).to_le_bytes())),
        // Another version.
        3 => s.write_all(&frame(&[1], 9)),
        // A message cut off: a 1,000-byte frame of which 10 come, then the close.
        4 => {
            let _ = s.write_all(&1000u32.to_le_bytes());
            let _ = s.write_all(&[1; 10]);
            return false;
        }
        // Valid frames that are no request, or ask for what does not exist: a Create of
        // garbage, a Get of an id never handed out, an Op on it, a Body, a Follow.
        5 => s.write_all(&frame(&[0, 3, 1, 2, 3], 1)),
        6 => s.write_all(&frame(&[2, 0xff, 0xff, 0xff, 0xff, 0x0f], 1)),
        7 => s.write_all(&frame(&[3, 0x7f, 0], 1)),
        8 => s.write_all(&frame(&[4, 0x7f], 1)),
        9 => s.write_all(&frame(&[6, 0x7f], 1)),
        // An unknown request variant.
        10 => s.write_all(&frame(&[200, 1], 1)),
        // An empty frame.
        11 => s.write_all(&0u32.to_le_bytes()),
        _ => unreachable!(),
    };
    if sent.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    !answer.is_empty()
}

#[test]
fn ten_thousand_abusive_connections_cost_the_owner_nothing() {
    let total: u64 = std::env::var("BGXFER_ABUSE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::ok());
    let mut owner = crate::producers::spawn_owner(&store);
    let pid = owner.pid();
    let client = Client::connect(&store).unwrap();
    let f = write_file(tmp.path(), "a", 1000, 1);
    let first = client
        .create_upload(UploadRequest::put(server.url("/before"), &f))
        .unwrap()
        .id()
        .unwrap();
    client.wait(first).unwrap();
    // Warmed up: a connection thread has run once, the allocator has its arenas.
    std::thread::sleep(Duration::from_millis(300));
    let before = footprint(pid);
    let socket = store.join("control.sock");
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // Most connections from 8 threads, each kind in turn; a silent share from a ninth,
    // 40 at a time (more than the owner's 32 connection slots), each held open until
    // the owner gives up on it.
    let silent_total = (total / 50).max(1);
    let loud_total = total - silent_total;
    let mut threads = Vec::new();
    for t in 0..8u64 {
        let socket = socket.clone();
        let answered = answered.clone();
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xab05e ^ t);
            let mut n = t;
            while n < loud_total {
                if abuse(&socket, n % 12, &mut rng) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                n += 8;
            }
        }));
    }
    let silent_socket = socket.clone();
    let silent = std::thread::spawn(move || {
        let mut done = 0;
        while done < silent_total {
            let batch: Vec<UnixStream> = (0..40.min(silent_total - done))
                .filter_map(|i| {
                    let mut s = UnixStream::connect(&silent_socket).ok()?;
                    if i % 2 == 0 {
                        let _ = s.write_all(&[7]);
                    }
                    Some(s)
                })
                .collect();
            done += 40.min(silent_total - done);
            // Each is answered (busy, or timed out after its deadline) and closed.
            for mut s in batch {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
    });
    for t in threads {
        t.join().unwrap();
    }
    silent.join().unwrap();
    let took = started.elapsed();
    // The owner lets go of every connection: its counts come back.
    let settled = wait_until(Duration::from_secs(10), || {
        let now = footprint(pid);
        now.1 <= before.1 && now.2 <= before.2
    });
    let after = footprint(pid);
    eprintln!(
        "{total} abusive connections in {took:.1?} ({} answered with a typed error): owner \
         RSS {} -> {} KiB, descriptors {} -> {}, threads {} -> {}",
        answered.load(Ordering::Relaxed),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2
    );
    assert!(
        settled,
        "the owner kept descriptors or threads: {before:?} -> {after:?}"
    );
    assert!(
        after.0 < before.0 + 8 * 1024,
        "the owner's memory grew by {} KiB",
        after.0 - before.0
    );
    // It still serves, and its store holds what it held.
    let s = client
        .create_upload(UploadRequest::put(server.url("/after"), &f))
        .unwrap();
    client.wait(s.id().unwrap()).unwrap();
    let ids: Vec<u64> = client.uploads().unwrap().iter().map(|u| u.id).collect();
    assert_eq!(ids, vec![first, s.id().unwrap()]);
    assert_eq!(server.request_count(), 2);
    owner.kill();
}

/// Every request slot taken by clients that never speak: a real client's create waits
/// for a slot (the owner answers "busy", the client asks again) or goes to the inbox,
/// and is never refused for it.
#[test]
fn a_create_while_every_slot_is_taken_is_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::ok());
    let up = crate::support::fast(&store).open().unwrap();
    let socket = store.join("control.sock");
    let silent: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let client = Client::connect(&store).unwrap();
    let f = write_file(tmp.path(), "a", 1000, 1);
    let started = Instant::now();
    let s = client
        .create_upload(UploadRequest::put(server.url("/busy"), &f))
        .unwrap();
    eprintln!(
        "create with every slot taken: {s:?} after {:?}",
        started.elapsed()
    );
    let id = match s.id() {
        Some(id) => id,
        None => {
            assert!(wait_until(Duration::from_secs(10), || !up
                .uploads()
                .is_empty()));
            up.uploads()[0].id()
        }
    };
    up.get(id).unwrap().wait().unwrap();
    drop(silent);
}
