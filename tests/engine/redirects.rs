//! Redirects: 307/308 re-send the body, 301/302/303 are refused (never turned into a GET), credentials stay with their origin, loops end.

use std::sync::Arc;
use std::time::Duration;

use background_transfer::{Error, Status, UploadRequest};

use crate::support::{
    ended, fast, sha256_file, write_file, Action, Behavior, RequestHead, TestServer,
};

/// How long an upload may take to end.
const T: Duration = Duration::from_secs(20);

fn redirect(status: u16, location: impl Into<String>) -> Action {
    Action::Redirect {
        status,
        location: location.into(),
    }
}

#[test]
fn redirects_307_and_308_resend_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let final_308 = server.url("/final/308");
    server.set_handler(Arc::new(move |head: &RequestHead, _| {
        match head.path.as_str() {
            // A relative and an absolute Location.
            "/307" => redirect(307, "/final/307"),
            "/308" => redirect(308, final_308.clone()),
            _ => Action::respond(201, "stored"),
        }
    }));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 700_000, 1);
    let sha = sha256_file(&f);
    for (status, method) in [(307, "PUT"), (308, "POST")] {
        let start = format!("/{status}");
        let h = up
            .create_upload(UploadRequest::new(method, server.url(&start), &f))
            .unwrap();
        let info = ended(&h, T).expect("completed");
        assert_eq!(info.status, 201);
        assert_eq!(info.url, server.url(&format!("/final/{status}")));
        assert_eq!(h.progress().status, Status::Completed);
        let reqs: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with(&format!("/{status}")))
            .collect();
        assert_eq!(reqs.len(), 2, "{status}: original and redirected request");
        assert_eq!(reqs[0].path, start);
        assert_eq!(reqs[1].path, format!("/final/{status}"));
        for r in &reqs {
            assert_eq!(r.method, method, "{status} keeps the method");
            assert!(r.complete);
            assert_eq!(r.body_len, 700_000);
            assert_eq!(r.sha256, sha, "{status} re-sends the same body");
        }
    }
    assert_eq!(server.request_count(), 4);
    up.shutdown().unwrap();
}

#[test]
fn redirects_301_302_303_are_refused_and_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        match head.path.strip_prefix("/r") {
            Some(code) => redirect(code.parse().unwrap(), "/landing"),
            None => Action::ok(),
        }
    }));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 50_000, 2);
    for status in [301u16, 302, 303] {
        for method in ["PUT", "POST"] {
            let h = up
                .create_upload(UploadRequest::new(
                    method,
                    server.url(&format!("/r{status}")),
                    &f,
                ))
                .unwrap();
            let err = ended(&h, T).unwrap_err();
            assert!(matches!(err, Error::Protocol { .. }), "{status}: {err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&status.to_string()) && msg.contains("GET"),
                "{msg}"
            );
            assert_eq!(h.status(), Status::Error);
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 6, "exactly one request per upload: {reqs:?}");
    assert!(reqs.iter().all(|r| r.method != "GET"));
    assert!(reqs.iter().all(|r| r.path != "/landing"));
    up.shutdown().unwrap();
}

#[test]
fn credentials_follow_only_a_same_origin_redirect() {
    let tmp = tempfile::tempdir().unwrap();
    let other = TestServer::start(Action::respond(201, "other"));
    let other_url = other.url("/elsewhere");
    let server = TestServer::start(Behavior::handler(move |head: &RequestHead, _| {
        match head.path.as_str() {
            "/cross" => redirect(307, other_url.clone()),
            "/same" => redirect(307, "/here"),
            _ => Action::respond(201, "here"),
        }
    }));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 10_000, 3);
    let sha = sha256_file(&f);
    let req = |path: &str| {
        UploadRequest::put(server.url(path), &f)
            .header("Authorization", "Bearer s3cret")
            .unwrap()
            .header("Cookie", "session=abc")
            .unwrap()
            .header("X-Trace", "t-1")
            .unwrap()
    };

    let h = up.create_upload(req("/cross")).unwrap();
    let info = ended(&h, T).expect("completed");
    assert_eq!(info.url, other.url("/elsewhere"));
    let first = &server.requests()[0];
    assert_eq!(first.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(first.header("cookie"), Some("session=abc"));
    let there = other.requests();
    assert_eq!(there.len(), 1);
    assert_eq!(there[0].sha256, sha);
    assert_eq!(there[0].header("authorization"), None, "{:?}", there[0]);
    assert_eq!(there[0].header("cookie"), None, "{:?}", there[0]);
    assert_eq!(there[0].header("x-trace"), Some("t-1"));

    let h = up.create_upload(req("/same")).unwrap();
    let info = ended(&h, T).expect("completed");
    assert_eq!(info.url, server.url("/here"));
    let reqs = server.requests();
    let here = reqs.iter().find(|r| r.path == "/here").expect("followed");
    assert_eq!(here.sha256, sha);
    assert_eq!(here.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(here.header("cookie"), Some("session=abc"));
    assert_eq!(here.header("x-trace"), Some("t-1"));
    up.shutdown().unwrap();
}

#[test]
fn redirect_loops_stop_at_max_redirects() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        let p = if head.path == "/a" { "/b" } else { "/a" };
        redirect(307, p)
    }));
    let up = fast(&tmp.path().join("store"))
        .max_redirects(3)
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 20_000, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    let err = ended(&h, T).unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("redirects"), "{err}");
    std::thread::sleep(Duration::from_millis(400));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "the request and 3 redirects, no retry");
    let sha = sha256_file(&f);
    assert!(reqs.iter().all(|r| r.method == "PUT" && r.sha256 == sha));
    up.shutdown().unwrap();
}

/// Issue 16: a 307/308 from `https` to `http`, and a tus upload URL on `http` for an
/// upload made over `https`, would send the file in cleartext: refused with a final
/// error, and nothing reaches the plain server, unless the program opted in.
#[test]
fn no_cleartext_after_tls_unless_opted_in() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = TestServer::start(Action::respond(201, "stored in cleartext"));
    let tls = TestServer::start_tls(redirect(307, plain.url("/landed")));
    let f = write_file(tmp.path(), "a", 100_000, 2);
    let up = fast(&tmp.path().join("store"))
        .add_root_certificate_pem(tls.ca_pem())
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(tls.url("/start"), &f))
        .unwrap();
    let e = ended(&h, T).expect_err("refused");
    assert!(
        matches!(&e, Error::Protocol { message } if message.contains("cleartext")),
        "{e:?}"
    );
    assert_eq!(h.progress().attempts, 0, "final: no retry spent");
    assert_eq!(plain.request_count(), 0, "nothing went out in cleartext");

    // A tus creation over https whose upload URL is on http.
    tls.set_behavior(Action::Respond {
        status: 201,
        headers: vec![
            ("Location".into(), plain.url("/files/1")),
            ("Tus-Resumable".into(), "1.0.0".into()),
        ],
        body: Vec::new(),
    });
    let h = up
        .create_upload(UploadRequest::put(tls.url("/files"), &f).tus(None))
        .unwrap();
    let e = ended(&h, T).expect_err("refused");
    assert!(
        matches!(&e, Error::Protocol { message } if message.contains("cleartext")),
        "{e:?}"
    );
    assert_eq!(plain.request_count(), 0, "no PATCH or HEAD in cleartext");
    up.shutdown().unwrap();

    // Opted in (documented as dangerous): the redirect is followed.
    tls.set_behavior(redirect(307, plain.url("/landed")));
    let up = fast(&tmp.path().join("store2"))
        .add_root_certificate_pem(tls.ca_pem())
        .allow_https_to_http(true)
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(tls.url("/start"), &f))
        .unwrap();
    let info = ended(&h, T).expect("followed");
    assert_eq!(info.status, 201);
    assert_eq!(plain.request_count(), 1);
}
