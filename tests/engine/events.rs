//! What a program observes of an upload: `events()` in order and coalesced, the final
//! event last, late subscribers, `wait_timeout`, and clones of a handle.

use std::time::{Duration, Instant};

use background_transfer::{Error, Event, Status, UploadRequest};
use background_transfer::{Events, RecvTimeoutError};

use crate::support::{fast, sha256_file, wait_for, write_file, Action, Behavior, TestServer};

const T: Duration = Duration::from_secs(20);

/// Every event until the first final `StatusChanged` (bounded in time).
fn until_final(rx: &Events) -> Vec<Event> {
    let deadline = Instant::now() + T;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no final event: {e:?}; got {out:?}"));
        let last = matches!(&ev, Event::StatusChanged(p) if p.status.is_final());
        out.push(ev);
        if last {
            return out;
        }
    }
}

fn statuses(evs: &[Event]) -> Vec<Status> {
    evs.iter()
        .filter_map(|e| match e {
            Event::StatusChanged(p) => Some(p.status),
            _ => None,
        })
        .collect()
}

#[test]
fn events_arrive_in_order_coalesced_and_the_final_one_is_last() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::handler(|head, _| {
        if head.path == "/blocker" {
            Action::SlowRead {
                bytes_per_sec: 256 * 1024,
            }
        } else {
            Action::SlowRead {
                bytes_per_sec: 8 << 20,
            }
        }
    }));
    let buffer = 16 * 1024;
    let up = fast(&tmp.path().join("store"))
        .max_concurrent(1)
        .buffer_size(buffer)
        .progress_interval(Duration::from_millis(100))
        .open()
        .unwrap();
    let total: u64 = 4 << 20;
    let big = write_file(tmp.path(), "big", 8 << 20, 1);
    let f = write_file(tmp.path(), "f", total, 2);
    let blocker = up
        .create_upload(UploadRequest::put(server.url("/blocker"), &big))
        .unwrap();
    assert!(wait_for(&blocker, T, |s| s == Status::Running));
    // Queued behind the blocker, so the subscription sees every change from here on.
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    assert_eq!(h.status(), Status::Queued);
    let rx = h.events();
    h.pause().unwrap();
    h.resume().unwrap();
    blocker.cancel().unwrap();

    let evs = until_final(&rx);
    assert_eq!(
        statuses(&evs),
        [
            Status::PausedByApplication,
            Status::Queued,
            Status::Running,
            Status::Completed
        ],
        "{evs:?}"
    );
    // Progress only while it runs, never going backwards, and coalesced: far fewer
    // events than buffers.
    let running_at = evs
        .iter()
        .position(|e| matches!(e, Event::StatusChanged(p) if p.status == Status::Running))
        .unwrap();
    let progress: Vec<u64> = evs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Progress(p) => {
                assert!(i > running_at, "progress before Running: {evs:?}");
                Some(p.bytes_sent)
            }
            _ => None,
        })
        .collect();
    assert!(!progress.is_empty());
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    let buffers = (total / buffer as u64) as usize;
    assert!(
        progress.len() <= buffers / 4,
        "{} progress events for {buffers} buffers",
        progress.len()
    );
    let last = evs.last().unwrap().progress();
    assert_eq!(last.status, Status::Completed);
    assert_eq!(last.bytes_sent, total);
    assert_eq!(*last, h.progress());

    // Nothing after the final event: the stream ends.
    match rx.recv_timeout(Duration::from_secs(2)) {
        Err(RecvTimeoutError::Disconnected) => {}
        other => panic!("an event after the final one: {other:?}"),
    }

    // A late subscriber gets the final state once.
    let late = h.events();
    match late.recv_timeout(Duration::from_secs(1)) {
        Ok(Event::StatusChanged(p)) => assert_eq!(p, h.progress()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        late.recv_timeout(Duration::from_secs(1)),
        Err(RecvTimeoutError::Disconnected)
    ));

    let r = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/u")
        .unwrap();
    assert!(r.complete);
    assert_eq!(r.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn a_failed_upload_ends_its_events_with_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(400, "bad request"));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "f", 1000, 3);
    let h = up
        .create_upload(UploadRequest::put(server.url("/bad"), &f))
        .unwrap();
    let rx = h.events();
    let evs = until_final(&rx);
    let st = statuses(&evs);
    assert_eq!(st.last(), Some(&Status::Error), "{evs:?}");
    assert!(matches!(
        h.wait_timeout(T),
        Some(Err(Error::HttpStatus { status: 400 }))
    ));
    assert!(
        matches!(
            rx.recv_timeout(Duration::from_secs(2)),
            Err(RecvTimeoutError::Disconnected)
        ),
        "no event after the final one"
    );
    assert_eq!(server.request_count(), 1);
    up.shutdown().unwrap();
}

#[test]
fn wait_timeout_is_none_until_the_end_and_clones_see_the_same_state() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 2 << 20,
    });
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let total: u64 = 2 << 20;
    let f = write_file(tmp.path(), "f", total, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/w"), &f))
        .unwrap();
    let clone = h.clone();
    let looked_up = up.get(h.id()).unwrap();
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 0)));

    let started = Instant::now();
    assert!(h.wait_timeout(Duration::from_millis(100)).is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(!h.status().is_final());

    // A clone waits in another thread; every handle ends with the same response.
    let waiter = std::thread::spawn(move || clone.wait_timeout(T));
    let info = h.wait_timeout(T).expect("ended").unwrap();
    let other = waiter
        .join()
        .unwrap()
        .expect("the clone saw the end")
        .unwrap();
    assert_eq!(info, other);
    assert_eq!(info.status, 200);
    assert_eq!(h.wait_timeout(Duration::ZERO).unwrap().unwrap(), info);

    let all = up.uploads();
    let listed = all.iter().find(|u| u.id() == h.id()).unwrap();
    for handle in [&looked_up, listed, &h.clone()] {
        assert_eq!(handle.progress(), h.progress());
        assert_eq!(handle.response_info(), h.response_info());
        assert_eq!(handle.status(), Status::Completed);
    }
    assert_eq!(h.progress().bytes_sent, total);
    let r = &server.requests()[0];
    assert!(r.complete);
    assert_eq!(r.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

/// Role of the child that measures an unread receiver's memory alone in its process.
pub const UNREAD_CHILD_ENV: &str = "BGXFER_EVENTS_UNREAD_CHILD";

/// Issue 16: an `events()` receiver that is held but never read stays bounded: progress
/// is coalesced into the latest, status changes are kept. A 1 GiB upload with progress
/// reported at every buffer grows the process by under 1 MiB.
#[test]
fn an_unread_receiver_stays_bounded() {
    crate::support::child::run_alone(UNREAD_CHILD_ENV);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The child's body for [`an_unread_receiver_stays_bounded`].
pub fn unread_child_process() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::ok());
    let up = fast(&tmp.path().join("store"))
        .progress_interval(Duration::ZERO)
        .buffer_size(64 * 1024)
        .open()
        .unwrap();
    let f = crate::support::sparse_file(tmp.path(), "big", 1 << 30);
    // Warm up: one small upload, so that the first-use allocations are behind us.
    let small = write_file(tmp.path(), "small", 1 << 20, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/warm"), &small))
        .unwrap();
    h.wait_timeout(T).unwrap().unwrap();
    let before = rss_kib();
    let h = up
        .create_upload(UploadRequest::put(server.url("/big"), &f))
        .unwrap();
    let unread = h.events();
    h.wait_timeout(Duration::from_secs(120)).unwrap().unwrap();
    let after = rss_kib();
    let queued = unread.try_iter().count();
    eprintln!(
        "unread receiver over 1 GiB: RSS {before} KiB -> {after} KiB (+{} KiB), {queued} events queued",
        after.saturating_sub(before)
    );
    assert!(
        after.saturating_sub(before) < 1024,
        "RSS grew {} KiB",
        after - before
    );
    assert!(queued < 64, "{queued} events were kept");
    up.shutdown().unwrap();
}
