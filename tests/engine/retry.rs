//! Retries: transient statuses are retried up to the budget, final ones are not, `Retry-After` is honoured, and the last response is kept.

use std::io::Read;
use std::time::{Duration, Instant};

use background_transfer::{Error, Status, Upload, UploadRequest};

use crate::support::{ended, fast, sha256_file, write_file, Action, Behavior, TestServer};

/// Longest any upload here may take to end.
const END: Duration = Duration::from_secs(20);

/// The upload's outcome, failing the test if it has not ended within `END`.
fn body_of(h: &Upload) -> String {
    let mut s = String::new();
    h.response_body()
        .expect("response body kept")
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// Waits a little past the longest configured backoff and checks the server saw no more.
fn assert_no_more_requests(server: &TestServer, n: usize) {
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(server.request_count(), n, "no request after the final one");
}

#[test]
fn persistent_503_makes_four_attempts_and_keeps_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(503, "down for maintenance"));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    assert_eq!(up.uploads().len(), 0);
    let f = write_file(tmp.path(), "a", 100_000, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let err = ended(&h, END).unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 503 }), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
    let p = h.progress();
    assert_eq!(p.status, Status::Error);
    assert_eq!(p.attempts, 4, "1 attempt + 3 retries (the default)");
    assert!(matches!(h.error(), Some(Error::HttpStatus { status: 503 })));
    let info = h.response_info().expect("response kept");
    assert_eq!(info.status, 503);
    assert_eq!(info.body_len, "down for maintenance".len() as u64);
    assert_eq!(body_of(&h), "down for maintenance");

    assert_no_more_requests(&server, 4);
    let sha = sha256_file(&f);
    for r in server.requests() {
        assert_eq!(r.method, "PUT");
        assert!(r.complete);
        assert_eq!(r.body_len, 100_000);
        assert_eq!(r.sha256, sha);
    }
    up.shutdown().unwrap();
}

#[test]
fn a_400_is_final_after_one_attempt_and_keeps_the_response() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(400, "bad field: name"));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 5_000, 2);
    let h = up
        .create_upload(UploadRequest::post(server.url("/u"), &f))
        .unwrap();
    let err = ended(&h, END).unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 400 }), "{err:?}");
    assert_eq!(h.status(), Status::Error);
    let info = h.response_info().expect("response kept");
    assert_eq!(info.status, 400);
    assert_eq!(body_of(&h), "bad field: name");
    assert_no_more_requests(&server, 1);
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn a_500_then_200_completes_on_the_second_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        Behavior::script([Action::respond(500, "oops")]).then(Action::respond(201, "stored")),
    );
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 300_000, 3);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let info = ended(&h, END).expect("completed");
    assert_eq!(info.status, 201);
    let p = h.progress();
    assert_eq!(p.status, Status::Completed);
    assert_eq!(
        p.attempts, 1,
        "one failed attempt counted against the budget"
    );
    assert!(
        p.has_restarted,
        "the second attempt started again from byte 0"
    );
    assert!(p.has_response_changed, "the 201 replaced the kept 500");
    assert_eq!(p.bytes_sent, 300_000);
    assert!(h.error().is_none(), "{:?}", h.error());
    assert_eq!(body_of(&h), "stored");
    assert_no_more_requests(&server, 2);
    let sha = sha256_file(&f);
    for r in server.requests() {
        assert_eq!(r.body_len, 300_000);
        assert_eq!(r.sha256, sha);
    }
    up.shutdown().unwrap();
}

/// `Retry-After: 1` on `status` delays the retry by about a second although the
/// configured backoff is at most 200 ms.
fn retry_after_is_honoured(status: u16) {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::RetryAfter {
        status,
        seconds: 1,
    }]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 10_000, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let info = ended(&h, END).expect("completed");
    assert_eq!(info.status, 200);
    assert_eq!(h.progress().attempts, 1);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].started_at.duration_since(reqs[0].finished_at);
    assert!(
        gap >= Duration::from_millis(950),
        "retry after {gap:?}, Retry-After asked for 1 s"
    );
    assert_eq!(reqs[1].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn retry_after_on_503_is_honoured() {
    retry_after_is_honoured(503);
}

#[test]
fn retry_after_on_429_is_honoured() {
    retry_after_is_honoured(429);
}

#[test]
fn the_retry_budget_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(503, "no"));
    let f = write_file(tmp.path(), "a", 1_000, 5);
    {
        let up = fast(&tmp.path().join("s0")).retries(0).open().unwrap();
        let h = up
            .create_upload(UploadRequest::put(server.url("/zero"), &f))
            .unwrap();
        let err = ended(&h, END).unwrap_err();
        assert!(matches!(err, Error::HttpStatus { status: 503 }), "{err:?}");
        assert_eq!(h.progress().attempts, 1);
        assert_no_more_requests(&server, 1);
        up.shutdown().unwrap();
    }
    let up = fast(&tmp.path().join("s1")).retries(1).open().unwrap();
    let started = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(server.url("/one"), &f))
        .unwrap();
    let err = ended(&h, END).unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 503 }), "{err:?}");
    assert_eq!(h.progress().attempts, 2);
    assert_no_more_requests(&server, 3);
    let one: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/one")
        .collect();
    assert_eq!(one.len(), 2, "retries(1): two attempts");
    assert!(started.elapsed() < END);
    up.shutdown().unwrap();
}

/// An error says which request failed and where (issue 19): the method, for tus the
/// protocol's step, and the URL with its credentials redacted.
#[test]
fn a_failed_request_is_named_in_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write_file(tmp.path(), "f", 20_000, 1);
    let server = TestServer::start(Behavior::handler(|head, _| match head.method.as_str() {
        "POST" => Action::respond_with_headers(
            201,
            &[("Tus-Resumable", "1.0.0"), ("Location", "/files/77")],
            "",
        ),
        _ => Action::CloseImmediately,
    }));
    let up = fast(&tmp.path().join("store")).retries(0).open().unwrap();
    let put = up
        .create_upload(UploadRequest::put(server.url("/named?token=s3cr3t"), &f))
        .unwrap();
    let tus = up
        .create_upload(UploadRequest::post(server.url("/files/"), &f).tus(None))
        .unwrap();
    let port = server.port();
    for (h, wants) in [
        (&put, vec![format!("PUT http://127.0.0.1:{port}/named")]),
        // The PATCH was dropped; the HEAD that asks where the server stands was too.
        (
            &tus,
            vec![
                format!("tus PATCH http://127.0.0.1:{port}/files/77"),
                format!("tus HEAD http://127.0.0.1:{port}/files/77"),
            ],
        ),
    ] {
        let e = ended(h, END).expect_err("the connection was dropped");
        let text = e.to_string();
        let want = wants.iter().find(|w| text.contains(w.as_str()));
        let want = want.unwrap_or_else(|| panic!("{text:?} names none of {wants:?}"));
        assert!(!text.contains("s3cr3t"), "{text:?} shows the query token");
        // What the journal keeps says it too (the handle reads it back from there).
        assert!(h.error().unwrap().to_string().contains(want.as_str()));
    }
}
