//! Restarts with real processes: a child process uploads through an `Uploader` and is
//! SIGKILLed mid-body; the next `Uploader` on the same store finishes (or refuses) what
//! it left. Also `start_paused`, and a `shutdown()` while uploads run.
//!
//! The children are this test binary itself, re-run with `BGXFER_RESTART_CHILD` set and
//! filtered to its `child_process` entry point, which calls [`child_process`] here.

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{
    CredentialProvider, CredentialRequest, Credentials, Error, Status, UploadRequest, Uploader,
};

use crate::support::child::{self, mark, ChildProcess};
use crate::support::{
    completed, fast, sha256_file, wait_for, write_file, Action, Behavior, TestServer,
};

pub const CHILD_ENV: &str = "BGXFER_RESTART_CHILD";
const T: Duration = Duration::from_secs(25);
const BIG: u64 = 64 << 20;

/// The child processes' body (`CHILD_ENV` names the store).
///
/// Environment: the store, the URL, the file, the method, an optional
/// `Idempotency-Key` and an optional bearer token, handed out by a provider named
/// `agent`. Prints `CREATED <id>`, then waits to be killed.
pub fn child_process() {
    let Ok(store) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |n: &str| std::env::var(n).unwrap();
    let mut b = fast(Path::new(&store));
    let mut req = UploadRequest::new(&var("BGXFER_METHOD"), var("BGXFER_URL"), var("BGXFER_FILE"));
    if let Ok(key) = std::env::var("BGXFER_IDEMPOTENCY_KEY") {
        req = req.header("Idempotency-Key", &key).unwrap();
    }
    if let Ok(token) = std::env::var("BGXFER_TOKEN") {
        b = b.credentials("agent", bearer(token));
        req = req.credentials("agent");
    }
    let up = b.open().unwrap();
    let h = up.create_upload(req).unwrap();
    mark(format_args!("CREATED {}", h.id()));
    // Bounded: the parent kills us long before this.
    let _ = h.wait_timeout(Duration::from_secs(60));
    println!("ENDED {:?}", h.status());
}

/// Starts a child that uploads `file` with `method` to `url` through the store `store`,
/// and returns it with the id it created.
fn spawn(
    store: &Path,
    url: &str,
    file: &Path,
    method: &str,
    env: &[(&str, &str)],
) -> (ChildProcess, u64) {
    let mut cmd = child::command(CHILD_ENV, store);
    cmd.env("BGXFER_URL", url)
        .env("BGXFER_FILE", file)
        .env("BGXFER_METHOD", method)
        .envs(env.iter().copied());
    let mut child = ChildProcess::spawn(&mut cmd);
    let line = child
        .wait_for_line("CREATED ", T)
        .expect("the child did not create its upload"); // dropping `child` kills it
    let id = line["CREATED ".len()..].parse().unwrap();
    (child, id)
}

/// Waits until the server has received at least `bytes` of the first request, then
/// SIGKILLs the child mid-body.
fn kill_mid_body(server: &TestServer, mut child: ChildProcess, bytes: u64) {
    let seen = server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len >= bytes));
    child.kill();
    assert!(seen, "the child's upload never reached {bytes} bytes");
    assert!(
        server.wait_until(T, |r| r.first().is_some_and(|r| r.finished)),
        "the killed request never ended at the server"
    );
    let r = &server.requests()[0];
    assert!(!r.complete, "killed mid-body, yet the server got it all");
}

/// A server that reads the first request slowly (so it can be killed mid-body) and
/// answers every later one at once.
fn slow_first() -> TestServer {
    TestServer::start(Behavior::script([Action::SlowRead {
        bytes_per_sec: 8 << 20,
    }]))
}

#[test]
fn a_put_killed_mid_body_continues_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "big", BIG, 1);
    let server = slow_first();
    let (child, id) = spawn(&store, &server.url("/put"), &f, "PUT", &[]);
    kill_mid_body(&server, child, 1 << 20);

    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    completed(&h, T);
    let p = h.progress();
    assert_eq!(p.status, Status::Completed);
    assert!(p.has_restarted);
    assert_eq!(p.bytes_sent, BIG);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let last = reqs.iter().rfind(|r| r.complete).unwrap();
    assert_eq!(last.index, 1);
    assert_eq!(last.method, "PUT");
    assert_eq!(last.body_len, BIG);
    assert_eq!(last.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn a_post_killed_mid_body_is_not_resent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "big", BIG, 2);
    let server = slow_first();
    let (child, id) = spawn(&store, &server.url("/post"), &f, "POST", &[]);
    kill_mid_body(&server, child, 1 << 20);

    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    assert_eq!(h.status(), Status::Error);
    match h.wait_timeout(T) {
        Some(Err(Error::NotResumable { reason })) => {
            assert!(reason.contains("idempotent"), "{reason}")
        }
        other => panic!("expected NotResumable, got {other:?}"),
    }
    assert!(matches!(h.error(), Some(Error::NotResumable { .. })));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.request_count(), 1, "the POST was sent again");
    assert_eq!(h.status(), Status::Error);
    up.shutdown().unwrap();
}

#[test]
fn a_post_with_an_idempotency_key_is_resent_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "big", BIG, 3);
    let server = slow_first();
    let (child, id) = spawn(
        &store,
        &server.url("/post"),
        &f,
        "POST",
        &[("BGXFER_IDEMPOTENCY_KEY", "k-123")],
    );
    kill_mid_body(&server, child, 1 << 20);

    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    completed(&h, T);
    assert!(h.progress().has_restarted);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let last = &reqs[1];
    assert!(last.complete);
    assert_eq!(last.method, "POST");
    assert_eq!(last.header("idempotency-key"), Some("k-123"));
    assert_eq!(last.sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn start_paused_leaves_a_killed_upload_paused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "big", BIG, 4);
    let server = slow_first();
    let (child, id) = spawn(&store, &server.url("/put"), &f, "PUT", &[]);
    kill_mid_body(&server, child, 1 << 20);

    let up = fast(&store).start_paused(true).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    assert_eq!(h.status(), Status::PausedByApplication);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(h.status(), Status::PausedByApplication);
    assert_eq!(server.request_count(), 1, "nothing is sent while paused");
    h.resume().unwrap();
    completed(&h, T);
    assert!(h.progress().has_restarted);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

/// A provider that hands out `Authorization: Bearer <token>`.
fn bearer(token: String) -> impl CredentialProvider {
    move |_: &CredentialRequest| {
        Ok(Credentials::Headers(vec![(
            "Authorization".into(),
            format!("Bearer {token}"),
        )]))
    }
}

#[test]
fn a_killed_upload_whose_provider_is_not_registered_waits_sending_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "big", BIG, 5);
    let server = slow_first();
    let token = "device-t0ken-8c1f";
    let (child, id) = spawn(
        &store,
        &server.url("/put"),
        &f,
        "PUT",
        &[("BGXFER_TOKEN", token)],
    );
    kill_mid_body(&server, child, 1 << 20);
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );

    // Reopened without the provider: the upload waits, visibly, with its reason, and
    // sends nothing; no retry is spent.
    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    assert!(
        wait_for(&h, T, |s| s == Status::PausedNoCredentials),
        "{:?}",
        h.progress()
    );
    match h.error() {
        Some(Error::Credentials {
            provider,
            permanent: false,
            ..
        }) => assert_eq!(provider, "agent"),
        other => panic!("the reason it waits: {other:?}"),
    }
    h.resume().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        h.status(),
        Status::PausedNoCredentials,
        "resume alone sends nothing"
    );
    assert_eq!(
        server.request_count(),
        1,
        "nothing sent without its credentials"
    );
    assert_eq!(h.progress().attempts, 0);

    // Registered: it goes on by itself and completes byte-exact, with its credentials.
    up.register_credentials("agent", bearer(token.to_string()));
    completed(&h, T);
    assert!(h.progress().has_restarted);
    assert_eq!(h.progress().attempts, 0);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].sha256, sha256_file(&f));
    assert_eq!(
        reqs[1].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    up.shutdown().unwrap();
    // Reopened without the provider once more: a completed upload needs none.
    let up = fast(&store).open().unwrap();
    assert_eq!(up.get(id).unwrap().status(), Status::Completed);
    up.shutdown().unwrap();
    crate::support::assert_no_bytes(&store, token.as_bytes());
}

#[test]
fn shutdown_while_uploads_run_is_bounded_and_the_next_open_continues_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 1 << 20,
    });
    let files: Vec<_> = (0..2)
        .map(|i| write_file(tmp.path(), &format!("f{i}"), 8 << 20, 10 + i))
        .collect();
    let timeout = Duration::from_secs(2);
    let up = fast(&store).shutdown_timeout(timeout).open().unwrap();
    let ids: Vec<u64> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            up.create_upload(UploadRequest::put(server.url(&format!("/s/{i}")), f))
                .unwrap()
                .id()
        })
        .collect();
    assert!(server.wait_until(T, |r| r.len() == 2 && r.iter().all(|r| r.body_len > 0)));
    let started = Instant::now();
    up.shutdown().unwrap();
    let took = started.elapsed();
    assert!(
        took <= timeout + Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    assert!(server.wait_until(T, |r| r.iter().all(|r| r.finished)));
    assert!(server.requests().iter().all(|r| !r.complete));

    server.set_behavior(Behavior::ok());
    let up: Uploader = fast(&store).open().unwrap();
    for (id, f) in ids.iter().zip(&files) {
        let h = up.get(*id).expect("persisted");
        assert!(
            wait_for(&h, T, |s| s == Status::Completed),
            "upload {id}: {:?}",
            h.status()
        );
        assert!(h.progress().has_restarted);
        let path = format!("/s/{}", id - ids[0]);
        let r = server
            .requests()
            .into_iter()
            .rfind(|r| r.path == path && r.complete)
            .expect("a complete request");
        assert_eq!(r.sha256, sha256_file(f));
    }
    assert_eq!(server.request_count(), 4);
    up.shutdown().unwrap();
}
