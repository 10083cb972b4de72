//! Timeouts: connect (the host counts as offline), response (retried for a PUT, final for a POST) and a stalled send.

use std::time::{Duration, Instant};

use background_transfer::{Error, Status, UploadRequest};

use crate::support::{
    fast, sha256_file, wait_for, write_file, Action, HangingListener, TestServer,
};

fn phase_of(e: &Error) -> Option<&str> {
    match e {
        Error::Timeout { phase } => Some(phase.as_str()),
        _ => None,
    }
}

#[test]
fn connect_timeout_pauses_for_the_network_without_spending_a_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let hanging = HangingListener::new();
    let connect_timeout = Duration::from_millis(700);
    let up = fast(&tmp.path().join("store"))
        .connect_timeout(connect_timeout)
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 10_000, 1);
    let started = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(hanging.url("/u"), &f))
        .unwrap();
    assert!(
        wait_for(&h, connect_timeout + Duration::from_secs(5), |s| {
            s == Status::PausedNoNetwork
        }),
        "status {:?}",
        h.status()
    );
    let took = started.elapsed();
    assert!(
        took >= connect_timeout - Duration::from_millis(50),
        "gave up after {took:?}, before the connect timeout"
    );
    let err = h.error().expect("the connect error is reported");
    assert_eq!(phase_of(&err), Some("connect"), "{err:?}");
    let p = h.progress();
    assert_eq!(p.attempts, 0, "an unreachable host spends no retry");
    assert_eq!(p.bytes_sent, 0);
    // It keeps waiting (the prober cannot reach the host either), it does not fail.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.status(), Status::PausedNoNetwork);
    assert_eq!(h.progress().attempts, 0);
    up.shutdown().unwrap();
}

#[test]
fn response_timeout_is_retried_for_a_put() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::DelayResponse(Duration::from_secs(3)));
    let up = fast(&tmp.path().join("store"))
        .response_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 200_000, 2);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(20))
        .expect("ended in time")
        .unwrap_err();
    assert_eq!(phase_of(&err), Some("response"), "{err:?}");
    assert_eq!(h.status(), Status::Error);
    assert_eq!(h.progress().attempts, 4);
    assert!(h.response_info().is_none());
    std::thread::sleep(Duration::from_millis(400));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "1 attempt + 3 retries");
    let sha = sha256_file(&f);
    for r in &reqs {
        assert_eq!(r.method, "PUT");
        assert!(r.complete, "the whole body was sent each time");
        assert_eq!(r.sha256, sha);
    }
    up.shutdown().unwrap();
}

#[test]
fn response_timeout_ends_a_post_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::DelayResponse(Duration::from_secs(3)));
    let up = fast(&tmp.path().join("store"))
        .response_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 200_000, 3);
    let h = up
        .create_upload(UploadRequest::post(server.url("/u"), &f))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(10))
        .expect("ended in time")
        .unwrap_err();
    assert!(matches!(err, Error::NotResumable { .. }), "{err:?}");
    assert!(err.to_string().contains("idempotent"), "{err}");
    assert_eq!(h.status(), Status::Error);
    std::thread::sleep(Duration::from_millis(400));
    let reqs = server.requests();
    assert_eq!(
        reqs.len(),
        1,
        "a POST that may have been processed is not resent"
    );
    assert_eq!(reqs[0].method, "POST");
    assert!(reqs[0].complete);
    assert_eq!(reqs[0].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn a_stalled_send_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    const STALL_AT: u64 = 1 << 20;
    let server = TestServer::start(Action::StallAfterBodyBytes(STALL_AT));
    let up = fast(&tmp.path().join("store"))
        .stall_timeout(Duration::from_millis(800))
        .retries(1)
        .open()
        .unwrap();
    // Larger than what the kernel's socket buffers absorb on loopback.
    let f = write_file(tmp.path(), "big", 64 << 20, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(25))
        .expect("ended in time")
        .unwrap_err();
    assert_eq!(phase_of(&err), Some("send"), "{err:?}");
    assert_eq!(h.status(), Status::Error);
    assert_eq!(h.progress().attempts, 2);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "retries(1): two attempts");
    for r in &reqs {
        assert_eq!(r.body_len, STALL_AT, "the server read only this much");
        assert!(!r.complete);
    }
    up.shutdown().unwrap();
}
