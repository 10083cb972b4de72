//! Control of one upload against the loopback server: pause stops the bytes within one
//! buffer and persists across a reopen, resume finishes it byte-exact, cancel ends the
//! request, remove deletes its files, a completed upload refuses further operations, and
//! make_current moves an upload ahead.

use std::time::Duration;

use background_transfer::{Error, Status, Upload, UploadRequest};

use crate::support;
use crate::support::{
    ended, fast, sha256_file, wait_for, write_file, Action, Behavior, TestServer,
};

const BUFFER: usize = 16 * 1024;
const T: Duration = Duration::from_secs(20);

/// Body bytes the server has received for request `index` so far.
fn server_bytes(server: &TestServer, index: usize) -> u64 {
    server.requests().get(index).map_or(0, |r| r.body_len)
}

/// Waits until the server has stopped reading request `index` and its byte count holds
/// still; returns the count.
fn server_settled(server: &TestServer, index: usize) -> u64 {
    assert!(
        server.wait_until(T, |r| r.get(index).is_some_and(|r| r.finished)),
        "the server never stopped reading request {index}"
    );
    let n = server_bytes(server, index);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server_bytes(server, index), n, "server still receiving");
    n
}

#[test]
fn pause_stops_within_one_buffer_and_resume_restarts_a_put() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 256 * 1024,
    });
    let up = fast(&tmp.path().join("store"))
        .buffer_size(BUFFER)
        .progress_interval(Duration::ZERO)
        .open()
        .unwrap();
    let total = 8u64 << 20;
    let f = write_file(tmp.path(), "big", total, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/p"), &f))
        .unwrap();
    assert!(
        server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len >= 128 * 1024)),
        "no bytes reached the server"
    );
    assert_eq!(h.status(), Status::Running);

    let before = h.progress().bytes_sent;
    h.pause().unwrap();
    assert!(wait_for(&h, T, |s| s == Status::PausedByApplication));
    let after = h.progress().bytes_sent;
    assert!(
        after >= before && after - before <= BUFFER as u64,
        "the client counted {} bytes after pause (buffer {BUFFER})",
        after - before
    );
    // Nothing moves any more: neither the client's count nor the server's.
    let got = server_settled(&server, 0);
    assert!(got <= after, "server got {got} > client counted {after}");
    let r = &server.requests()[0];
    assert!(!r.complete && got < total);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(h.progress().bytes_sent, after);
    assert_eq!(h.status(), Status::PausedByApplication);
    assert_eq!(server.request_count(), 1);
    assert_eq!(server_bytes(&server, 0), got);

    // Resume: a plain PUT starts again from byte 0 and arrives whole.
    server.set_behavior(Behavior::ok());
    h.resume().unwrap();
    let info = ended(&h, T).unwrap();
    assert_eq!(info.status, 200);
    let p = h.progress();
    assert_eq!(p.status, Status::Completed);
    assert!(p.has_restarted);
    assert_eq!(p.bytes_sent, total);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].complete);
    assert_eq!(reqs[1].body_len, total);
    assert_eq!(reqs[1].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn pause_then_resume_at_once_still_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::SlowRead {
        bytes_per_sec: 256 * 1024,
    }]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "f", 2 << 20, 2);
    let h = up
        .create_upload(UploadRequest::put(server.url("/pr"), &f))
        .unwrap();
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 0)));
    // The worker is still stopping when resume arrives: the resume must not be lost.
    h.pause().unwrap();
    h.resume().unwrap();
    ended(&h, T).unwrap();
    let reqs = server.requests();
    let last = reqs.last().unwrap();
    assert!(last.complete);
    assert_eq!(last.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn pause_persists_across_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 512 * 1024,
    });
    let total = 4u64 << 20;
    let f = write_file(tmp.path(), "f", total, 3);
    let id = {
        let up = fast(&store).open().unwrap();
        let h = up
            .create_upload(UploadRequest::put(server.url("/persist"), &f))
            .unwrap();
        assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 64 * 1024)));
        h.pause().unwrap();
        assert!(wait_for(&h, T, |s| s == Status::PausedByApplication));
        up.shutdown().unwrap();
        h.id()
    };
    server_settled(&server, 0);
    server.set_behavior(Behavior::ok());

    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the paused upload is in the store");
    assert_eq!(h.status(), Status::PausedByApplication);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.status(), Status::PausedByApplication);
    assert_eq!(server.request_count(), 1, "nothing is sent until resume");

    h.resume().unwrap();
    ended(&h, T).unwrap();
    let p = h.progress();
    assert!(p.has_restarted, "the second attempt started again from 0");
    assert_eq!(p.bytes_sent, total);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].complete);
    assert_eq!(reqs[1].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn cancel_ends_the_request_and_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 512 * 1024,
    });
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let total = 4u64 << 20;
    let f = write_file(tmp.path(), "f", total, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/c"), &f))
        .unwrap();
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 0)));
    h.cancel().unwrap();
    assert!(matches!(ended(&h, T), Err(Error::Canceled)));
    assert_eq!(h.status(), Status::Canceled);
    assert!(matches!(h.wait(), Err(Error::Canceled)));

    let got = server_settled(&server, 0);
    let r = &server.requests()[0];
    assert!(!r.complete, "the server saw an incomplete request");
    assert!(got < total);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.request_count(),
        1,
        "a canceled upload is not sent again"
    );

    // A canceled upload stays canceled.
    h.cancel().unwrap();
    assert!(matches!(h.resume(), Err(Error::InvalidRequest { .. })));
    assert!(matches!(h.pause(), Err(Error::InvalidRequest { .. })));
    assert_eq!(h.status(), Status::Canceled);
    up.shutdown().unwrap();
}

#[test]
fn remove_deletes_the_files_and_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // An answer over 4 KiB: kept in a file of its own (a smaller one is in the journal).
    let answer = support::random_bytes(10_000, 9);
    let server = TestServer::start(Action::respond(201, answer.clone()));
    let data = support::random_bytes(200_000, 5);
    let up = fast(&store).open().unwrap();
    let h = up
        .create_upload(UploadRequest::from_reader(
            server.url("/r"),
            std::io::Cursor::new(data.clone()),
        ))
        .unwrap();
    let id = h.id();
    let body = store.join("bodies").join(id.to_string());
    let spool = store.join("spool").join(id.to_string());
    assert!(spool.is_file(), "the reader is spooled into the store");
    assert_eq!(ended(&h, T).unwrap().status, 201);
    assert_eq!(std::fs::read(&body).unwrap(), answer);
    assert_eq!(server.requests()[0].sha256, support::sha256_hex(&data));

    let clone = h.clone();
    h.remove().unwrap();
    assert!(!body.exists(), "remove deletes the response body");
    assert!(!spool.exists(), "remove deletes the spooled source");
    assert!(up.get(id).is_none());
    assert!(up.uploads().iter().all(|u| u.id() != id));
    assert!(matches!(clone.wait(), Err(Error::NotFound { .. })));
    assert!(matches!(clone.pause(), Err(Error::NotFound { .. })));
    assert!(matches!(clone.remove(), Err(Error::NotFound { .. })));
    assert!(matches!(clone.response_body(), Err(Error::NotFound { .. })));
    up.shutdown().unwrap();

    let up = fast(&store).open().unwrap();
    assert!(up.get(id).is_none(), "removed for good");
    assert!(!body.exists() && !spool.exists());
    up.shutdown().unwrap();
}

#[test]
fn remove_while_running_stops_the_request_and_deletes_the_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 512 * 1024,
    });
    let data = support::random_bytes(4 << 20, 6);
    let up = fast(&store).open().unwrap();
    let h = up
        .create_upload(UploadRequest::from_reader(
            server.url("/rr"),
            std::io::Cursor::new(data),
        ))
        .unwrap();
    let id = h.id();
    let spool = store.join("spool").join(id.to_string());
    assert!(spool.is_file());
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 0)));
    h.remove().unwrap();
    assert!(up.get(id).is_none());
    assert!(!spool.exists());
    assert!(!store.join("bodies").join(id.to_string()).exists());
    server_settled(&server, 0);
    assert!(!server.requests()[0].complete);
    up.shutdown().unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.get(id).is_none());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_completed_upload_refuses_operations_with_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "f", 10_000, 7);
    let h = up
        .create_upload(UploadRequest::put(server.url("/done"), &f))
        .unwrap();
    ended(&h, T).unwrap();
    for (what, r) in [
        ("pause", h.pause()),
        ("resume", h.resume()),
        ("cancel", h.cancel()),
    ] {
        match r {
            Err(Error::InvalidRequest { reason }) => {
                assert!(reason.contains("completed"), "{what}: {reason}")
            }
            other => panic!("{what} on a completed upload: {other:?}"),
        }
    }
    assert_eq!(h.status(), Status::Completed);
    assert_eq!(server.request_count(), 1);
    up.shutdown().unwrap();
}

#[test]
fn make_current_moves_an_upload_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::handler(|head, _| {
        if head.path == "/blocker" {
            Action::SlowRead {
                bytes_per_sec: 64 * 1024,
            }
        } else {
            Action::ok()
        }
    }));
    let up = fast(&tmp.path().join("store"))
        .max_concurrent(1)
        .open()
        .unwrap();
    let big = write_file(tmp.path(), "big", 4 << 20, 8);
    let small = write_file(tmp.path(), "small", 1000, 9);
    let blocker = up
        .create_upload(UploadRequest::put(server.url("/blocker"), &big))
        .unwrap();
    assert!(wait_for(&blocker, T, |s| s == Status::Running));
    // Running is durable before the blocker sends; the order below needs its request
    // at the server first.
    assert!(server.wait_until(T, |r| !r.is_empty()));
    let hs: Vec<Upload> = ["/a", "/b", "/c"]
        .iter()
        .map(|p| {
            up.create_upload(UploadRequest::put(server.url(p), &small))
                .unwrap()
        })
        .collect();
    for h in &hs {
        assert_eq!(h.status(), Status::Queued);
    }
    hs[2].make_current().unwrap();
    blocker.cancel().unwrap();
    for h in &hs {
        ended(h, T).unwrap();
    }
    // Every completed upload's request was read whole before it was answered (the
    // canceled blocker's may still be draining at the server).
    let order: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(order, ["/blocker", "/c", "/a", "/b"]);
    up.shutdown().unwrap();
}

#[test]
fn pausing_a_post_after_its_whole_body_was_sent_ends_it_rather_than_resending() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::always(Action::DelayResponse(
        Duration::from_secs(10),
    )));
    let f = write_file(tmp.path(), "a", 4096, 9);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::post(server.url("/p"), &f))
        .unwrap();
    // The whole (small) body is on the server, which sits on its answer.
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.complete)));
    h.pause().unwrap();
    assert!(wait_for(&h, T, |s| s.is_final()));
    assert_eq!(h.status(), Status::Error);
    assert!(
        matches!(h.error(), Some(Error::NotResumable { .. })),
        "{:?}",
        h.error()
    );
    // Nothing was sent again behind the program's back.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_response_body_before_any_answer_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write_file(tmp.path(), "a", 100, 3);
    let up = fast(&tmp.path().join("store"))
        .start_transfers(false)
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put("http://127.0.0.1:9/a", &f))
        .unwrap();
    let e = h.response_body().unwrap_err();
    assert!(matches!(e, Error::NoResponse { .. }), "{e}");
    assert!(e.to_string().contains("no response yet"), "{e}");
}
