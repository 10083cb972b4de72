//! Credentials providers for plain HTTP: headers (a bearer token that expires) and
//! replacement URLs (presigned), asked before each attempt and again on a 401/403
//! without spending a retry; a provider's failure is typed (transient: retries; or
//! final); nothing a provider returns reaches the store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use background_transfer::{
    CredentialRequest, Credentials, Error, ProviderError, Status, UploadRequest,
};

use crate::support::{
    assert_no_bytes, completed, ended, fast, sha256_file, wait_for, write_file, Action, Behavior,
    TestServer,
};

/// A token names the moment it was minted; the server takes it for 2 s.
fn token_server() -> TestServer {
    TestServer::start(Behavior::handler(|head, _| {
        let fresh = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer minted-"))
            .and_then(|ms| ms.parse::<u128>().ok())
            .is_some_and(|ms| now_ms().saturating_sub(ms) < 2_000);
        if fresh {
            Action::respond(201, "stored")
        } else {
            Action::respond(401, "token expired")
        }
    }))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn an_expired_token_is_refreshed_on_401_without_a_retry_or_the_body() {
    let tmp = tempfile::tempdir().unwrap();
    let server = token_server();
    // The provider caches its token, as a device agent's token file would, and mints a
    // new one only when asked to refresh. Its first token is already stale.
    let cached = Arc::new(Mutex::new(format!("minted-{}", now_ms() - 60_000)));
    let refreshes = Arc::new(AtomicU32::new(0));
    let (c, r) = (cached.clone(), refreshes.clone());
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(16 << 20))
        .credentials("fleet-token", move |req: &CredentialRequest| {
            let mut token = c.lock().unwrap();
            if req.refresh() {
                r.fetch_add(1, Ordering::SeqCst);
                *token = format!("minted-{}", now_ms());
            }
            Ok(Credentials::Headers(vec![(
                "Authorization".into(),
                format!("Bearer {token}"),
            )]))
        })
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "v.bin", 32 << 20, 5);
    let mut handles = Vec::new();
    for i in 0..3 {
        let h = up
            .create_upload(
                UploadRequest::put(server.url(&format!("/v{i}")), &f).credentials("fleet-token"),
            )
            .unwrap();
        let info = completed(&h, Duration::from_secs(60));
        assert_eq!(info.status, 201);
        assert_eq!(h.progress().attempts, 0, "no retry spent on a refresh");
        handles.push(h);
        // Let the token go stale before the next upload.
        *cached.lock().unwrap() = format!("minted-{}", now_ms() - 60_000);
    }
    let reqs = server.requests();
    let refused: Vec<_> = reqs.iter().filter(|r| r.body_len < (32 << 20)).collect();
    eprintln!(
        "expiring token: {} refreshes, {} refused requests carrying {} body bytes",
        refreshes.load(Ordering::SeqCst),
        refused.len(),
        refused.iter().map(|r| r.body_len).sum::<u64>()
    );
    assert_eq!(
        refreshes.load(Ordering::SeqCst),
        3,
        "one refresh per stale token"
    );
    assert_eq!(refused.len(), 3);
    assert!(
        refused.iter().all(|r| r.body_len == 0),
        "a 401 costs no body (Expect)"
    );
    assert!(reqs
        .iter()
        .filter(|r| r.body_len == 32 << 20)
        .all(|r| r.sha256 == sha256_file(&f)));
    up.shutdown().unwrap();
    // The tokens never reached the store.
    assert_no_bytes(tmp.path().join("store"), b"minted-");
}

#[test]
fn a_second_refusal_in_a_row_is_final_and_its_response_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(403, "device revoked"));
    let asked = Arc::new(AtomicU32::new(0));
    let a = asked.clone();
    let up = fast(&tmp.path().join("store"))
        .credentials("p", move |_: &CredentialRequest| {
            a.fetch_add(1, Ordering::SeqCst);
            Ok(Credentials::Headers(vec![(
                "Authorization".into(),
                "Bearer revoked-token".into(),
            )]))
        })
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a.bin", 1024, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f).credentials("p"))
        .unwrap();
    let err = ended(&h, Duration::from_secs(20)).unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 403 }), "{err:?}");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        2,
        "asked, then once more with refresh"
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(h.progress().attempts, 0);
    assert_eq!(h.response_info().unwrap().status, 403);
}

#[test]
fn a_presigned_url_from_the_provider_is_used_but_never_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::handler(|head, _| {
        if head.path.contains("X-Signature=fresh") {
            Action::respond(200, "ok")
        } else {
            Action::respond(403, "signature expired")
        }
    }));
    let n = Arc::new(AtomicU32::new(0));
    let (n2, base) = (n.clone(), server.url("/obj"));
    let up = fast(&tmp.path().join("store"))
        .credentials("presign", move |req: &CredentialRequest| {
            n2.fetch_add(1, Ordering::SeqCst);
            let sig = if req.refresh() { "fresh" } else { "stale" };
            Ok(Credentials::Url(format!("{base}?X-Signature={sig}")))
        })
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "o.bin", 2 << 20, 2);
    let h = up
        .create_upload(UploadRequest::put(server.url("/obj"), &f).credentials("presign"))
        .unwrap();
    let info = completed(&h, Duration::from_secs(20));
    assert_eq!(
        info.url,
        server.url("/obj"),
        "the upload's own URL, not the presigned one"
    );
    assert_eq!(n.load(Ordering::SeqCst), 2);
    assert_eq!(h.progress().attempts, 0);
    up.shutdown().unwrap();
    assert_no_bytes(tmp.path().join("store"), b"X-Signature");
}

#[test]
fn provider_failures_are_typed_transient_or_final() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(200, "ok"));
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let up = fast(&tmp.path().join("store"))
        .retries(2)
        .credentials("flaky", move |_: &CredentialRequest| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::transient("token service unreachable"))
        })
        .credentials("gone", |_: &CredentialRequest| {
            Err(ProviderError::permanent("device deprovisioned"))
        })
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a.bin", 1024, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f).credentials("flaky"))
        .unwrap();
    let err = ended(&h, Duration::from_secs(20)).unwrap_err();
    match &err {
        Error::Credentials {
            provider,
            permanent,
            ..
        } => {
            assert_eq!(provider, "flaky");
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "asked on each of the 3 attempts"
    );
    assert_eq!(
        h.progress().attempts,
        3,
        "transient: each failed attempt counts"
    );
    let started = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(server.url("/b"), &f).credentials("gone"))
        .unwrap();
    let err = ended(&h, Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Credentials {
                permanent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("device deprovisioned"), "{err}");
    assert_eq!(h.progress().attempts, 0);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        server.requests().is_empty(),
        "nothing was sent without credentials"
    );
    // An unregistered provider is refused at create, with nothing persisted.
    let err = up
        .create_upload(UploadRequest::put(server.url("/c"), &f).credentials("nobody"))
        .unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
}

#[test]
fn a_provider_missing_after_a_restart_sends_nothing_until_it_is_registered() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Action::respond(201, "ok"));
    let f = write_file(tmp.path(), "a.bin", 1024, 1);
    let provider = |_: &CredentialRequest| {
        Ok(Credentials::Headers(vec![(
            "Authorization".into(),
            "Bearer t0ken-value".into(),
        )]))
    };
    let id = {
        let up = fast(&store)
            .start_transfers(false)
            .credentials("agent", provider)
            .open()
            .unwrap();
        let h = up
            .create_upload(UploadRequest::put(server.url("/a"), &f).credentials("agent"))
            .unwrap();
        h.id()
    };
    // Reopened without the provider: the upload waits with a clear, typed reason and
    // sends nothing; the record (and its provider's name) stays.
    let up = fast(&store).open().unwrap();
    let h = up.get(id).unwrap();
    assert!(wait_for(&h, Duration::from_secs(20), |s| {
        s == Status::PausedNoCredentials
    }));
    let err = h.error().expect("the reason it waits");
    assert!(
        matches!(
            err,
            Error::Credentials {
                permanent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("agent"), "{err}");
    assert!(
        server.requests().is_empty(),
        "nothing sent without credentials"
    );
    // Registered: it goes on by itself.
    up.register_credentials("agent", provider);
    completed(&h, Duration::from_secs(20));
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer t0ken-value")
    );
}

#[test]
fn a_provider_that_panics_is_its_own_failure_not_the_crates() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::respond(200, "ok"));
    let up = fast(&tmp.path().join("store"))
        .credentials(
            "buggy",
            |_: &CredentialRequest| -> Result<Credentials, ProviderError> {
                panic!("the program's provider has a bug")
            },
        )
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a.bin", 1024, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f).credentials("buggy"))
        .unwrap();
    let err = ended(&h, Duration::from_secs(20)).unwrap_err();
    match &err {
        Error::Credentials {
            provider,
            message,
            permanent,
        } => {
            assert_eq!(provider, "buggy");
            assert!(message.contains("panicked"), "{message}");
            assert!(permanent);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.progress().attempts, 0);
    assert!(
        server.requests().is_empty(),
        "nothing sent without credentials"
    );
    // The uploader is still there for the next upload.
    let h = up
        .create_upload(UploadRequest::put(server.url("/b"), &f))
        .unwrap();
    completed(&h, Duration::from_secs(20));
}

/// A presigned URL valid for 2 s goes stale while the server is away for 5 s: the next
/// attempt's URL is refused (403), the provider is asked with `refresh`, and its fresh
/// URL takes the upload to the end. The signature never reaches the store.
#[test]
fn a_presigned_url_that_expired_during_an_outage_is_replaced_by_a_fresh_one() {
    fn expires_ms(path: &str) -> Option<u128> {
        path.split_once("X-Expires=")?
            .1
            .split('&')
            .next()?
            .parse()
            .ok()
    }
    let handler = || {
        Behavior::handler(|head, _| match expires_ms(&head.path) {
            Some(t) if t > now_ms() => Action::respond(201, "stored"),
            _ => Action::respond(403, "Request has expired"),
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(handler());
    let port = server.port();
    let base = server.url("/obj");
    let minted = Arc::new(Mutex::new(Vec::<String>::new()));
    let m = minted.clone();
    let provider = move |req: &CredentialRequest| {
        let mut m = m.lock().unwrap();
        if req.refresh() || m.is_empty() {
            let n = m.len();
            m.push(format!(
                "{base}?X-Expires={}&X-Signature=sig-{n}",
                now_ms() + 2_000
            ));
        }
        Ok(Credentials::Url(m.last().unwrap().clone()))
    };
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(2 << 20))
        .credentials("presign", provider)
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "o.bin", 8 << 20, 6);
    let h = up
        .create_upload(UploadRequest::put(server.url("/obj"), &f).credentials("presign"))
        .unwrap();
    assert!(
        server.wait_until(Duration::from_secs(20), |r| r
            .first()
            .is_some_and(|r| r.body_len >= 1 << 20)),
        "the first attempt never got going"
    );
    // The server goes away for 5 s; the URL expires meanwhile.
    drop(server);
    std::thread::sleep(Duration::from_secs(5));
    let server = TestServer::start_on(port, handler());
    let info = completed(&h, Duration::from_secs(60));
    assert_eq!(info.status, 201);
    assert_eq!(
        info.url,
        format!("http://127.0.0.1:{port}/obj"),
        "its own URL"
    );
    let reqs = server.requests();
    let minted = minted.lock().unwrap().clone();
    eprintln!(
        "presigned URL through a 5 s outage: {} URLs minted, {} requests after it, \
         {} retries spent",
        minted.len(),
        reqs.len(),
        h.progress().attempts
    );
    assert_eq!(minted.len(), 2, "one URL, then one fresh one after the 403");
    assert_eq!(reqs.len(), 2, "the stale URL, refused; then the fresh one");
    assert!(reqs[0].path.contains("sig-0"), "{}", reqs[0].path);
    assert!(reqs[1].path.contains("sig-1"), "{}", reqs[1].path);
    assert_eq!(reqs[1].sha256, sha256_file(&f), "byte-exact");
    assert!(h.progress().attempts <= 1, "{:?}", h.progress());
    up.shutdown().unwrap();
    assert_no_bytes(tmp.path().join("store"), b"X-Signature");
    assert_no_bytes(tmp.path().join("store"), b"X-Expires");
}
