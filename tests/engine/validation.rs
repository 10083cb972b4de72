//! Validation: bad requests are refused up front with a typed error that names the culprit, and sources that change, vanish or shrink fail the upload cleanly.

use std::fs::OpenOptions;
use std::time::{Duration, Instant};

use background_transfer::{Status, UploadRequest, UploaderBuilder};

use crate::support::{
    fast, ids, kind, paused_upload, sha256_file, sparse_file, wait_until, write_file, Action,
    Behavior, TestServer,
};

#[test]
fn bad_headers_are_refused_when_added() {
    let huge = "v".repeat(9 * 1024);
    // (name, value, what the message must name)
    let cases: [(&str, &str, &str); 7] = [
        ("X-Evil", "a\r\nInjected: 1", "X-Evil"),
        ("X-Lf", "a\nb", "X-Lf"),
        ("Bad Name", "v", "Bad Name"),
        ("", "v", "token"),
        ("Content-Length", "5", "Content-Length"),
        ("transfer-encoding", "chunked", "transfer-encoding"),
        ("X-Huge", huge.as_str(), "X-Huge"),
    ];
    for (name, value, named) in cases {
        let err = UploadRequest::put("http://127.0.0.1:9/u", "/nonexistent")
            .header(name, value)
            .expect_err(name);
        assert_eq!(kind(&err), "InvalidHeader", "{name:?}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(named), "{name:?}: {msg}");
        assert!(
            !msg.contains("Injected") && !msg.contains("vvvv"),
            "the value is never shown: {msg}"
        );
    }
}

#[test]
fn bad_requests_are_refused_at_create_and_the_store_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::ok());
    let good = write_file(tmp.path(), "good", 1_000, 1);
    let missing = tmp.path().join("no-such-file");
    let dir = tmp.path().join("a-directory");
    std::fs::create_dir(&dir).unwrap();

    let up = fast(&store).open().unwrap();
    let first = up
        .create_upload(UploadRequest::put(server.url("/first"), &good))
        .unwrap();
    first
        .wait_timeout(Duration::from_secs(20))
        .expect("ended in time")
        .expect("completed");

    // Many headers, each valid, together over the 64 KiB cap.
    let mut many = UploadRequest::put(server.url("/many"), &good);
    for i in 0..10 {
        many = many
            .header(&format!("X-Part-{i}"), &"h".repeat(7 * 1024))
            .unwrap();
    }
    let missing_s = missing.display().to_string();
    let dir_s = dir.display().to_string();
    let cases: Vec<(&str, UploadRequest, &str, &str)> = vec![
        (
            "not a URL",
            UploadRequest::put("not a url", &good),
            "InvalidUrl",
            "not a url",
        ),
        (
            "ftp URL",
            UploadRequest::put("ftp://127.0.0.1/x", &good),
            "InvalidUrl",
            "ftp",
        ),
        (
            "no host",
            UploadRequest::put("http:///only/a/path", &good),
            "InvalidUrl",
            "http:///only/a/path",
        ),
        (
            "relative URL",
            UploadRequest::put("/relative", &good),
            "InvalidUrl",
            "/relative",
        ),
        ("headers over 64 KiB", many, "InvalidHeader", "65536"),
        (
            "bad method",
            UploadRequest::new("BAD METHOD", server.url("/m"), &good),
            "InvalidRequest",
            "BAD METHOD",
        ),
        (
            "nonexistent source",
            UploadRequest::put(server.url("/x"), &missing),
            "SourceMissing",
            &missing_s,
        ),
        (
            "directory source",
            UploadRequest::post(server.url("/x"), &dir),
            "SourceMissing",
            &dir_s,
        ),
        (
            "multipart without parts",
            UploadRequest::multipart(server.url("/x")),
            "InvalidRequest",
            "part",
        ),
    ];
    for (what, req, want, named) in cases {
        let err = up.create_upload(req).expect_err(what);
        assert_eq!(kind(&err), want, "{what}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(named),
            "{what}: {msg:?} does not name {named:?}"
        );
        assert_eq!(ids(&up), vec![first.id()], "{what}: nothing was persisted");
    }
    assert_eq!(first.status(), Status::Completed);
    up.shutdown().unwrap();

    let up = fast(&store).open().unwrap();
    assert_eq!(ids(&up), vec![first.id()], "after reopening");
    assert_eq!(up.get(first.id()).unwrap().status(), Status::Completed);
    up.shutdown().unwrap();
    assert_eq!(server.request_count(), 1, "only the good upload was sent");
}

#[test]
fn a_source_changed_after_create_fails_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::StallAfterBodyBytes(0)]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "src", 100_000, 2);
    let h = paused_upload(&up, &server, "/u", &f);
    write_file(tmp.path(), "src", 120_000, 3);
    h.resume().unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(10))
        .expect("ended in time")
        .unwrap_err();
    assert_eq!(kind(&err), "SourceChanged", "{err:?}");
    assert!(err.to_string().contains("src"), "{err}");
    assert_eq!(h.status(), Status::Error);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.request_count(), 1, "the changed file was never sent");
    up.shutdown().unwrap();
}

#[test]
fn a_source_rewritten_in_place_with_the_same_size_fails_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::StallAfterBodyBytes(0)]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "same", 50_000, 4);
    let h = paused_upload(&up, &server, "/u", &f);
    let before = sha256_file(&f);
    write_file(tmp.path(), "same", 50_000, 5);
    // Make sure the modification time moved even on a coarse-clock file system.
    let file = OpenOptions::new().write(true).open(&f).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(file);
    assert_ne!(sha256_file(&f), before);
    h.resume().unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(10))
        .expect("ended in time")
        .unwrap_err();
    assert_eq!(kind(&err), "SourceChanged", "{err:?}");
    assert_eq!(server.request_count(), 1);
    up.shutdown().unwrap();
}

#[test]
fn a_source_deleted_after_create_fails_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::StallAfterBodyBytes(0)]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "gone", 100_000, 6);
    let h = paused_upload(&up, &server, "/u", &f);
    std::fs::remove_file(&f).unwrap();
    h.resume().unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(10))
        .expect("ended in time")
        .unwrap_err();
    assert_eq!(kind(&err), "SourceMissing", "{err:?}");
    assert!(err.to_string().contains("gone"), "{err}");
    assert_eq!(server.request_count(), 1);
    up.shutdown().unwrap();
}

#[test]
fn a_source_that_shrinks_mid_upload_fails_quickly() {
    a_shrinking_source_fails_quickly(|b| b);
}

/// A 64 MiB PUT (through an uploader `tune` sets up) whose file is cut to 512 KiB once
/// 1 MiB has reached the server: `SourceChanged` at once, final, no whole body.
pub fn a_shrinking_source_fails_quickly(tune: impl FnOnce(UploaderBuilder) -> UploaderBuilder) {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 4 << 20,
    });
    let up = tune(fast(&tmp.path().join("store"))).open().unwrap();
    // 64 MiB at 4 MiB/s would take 16 s: the file is cut long before that.
    let f = write_file(tmp.path(), "shrinks", 64 << 20, 7);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    assert!(
        server.wait_until(Duration::from_secs(10), |r| r
            .first()
            .is_some_and(|r| r.body_len >= 1 << 20)),
        "the upload got going"
    );
    let cut = Instant::now();
    OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(512 * 1024)
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(10))
        .expect("a shrunk source must not hang the upload")
        .unwrap_err();
    assert_eq!(kind(&err), "SourceChanged", "{err:?}");
    assert!(err.to_string().contains("shrinks"), "{err}");
    assert!(cut.elapsed() < Duration::from_secs(10));
    assert_eq!(h.status(), Status::Error);
    std::thread::sleep(Duration::from_millis(300));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "a changed source is final: no retry");
    assert!(!reqs[0].complete, "the server never got a whole body");
    up.shutdown().unwrap();
}

#[test]
fn a_sparse_source_over_4_gib_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let len: u64 = (5 << 30) + 12_345;
    let f = sparse_file(tmp.path(), "sparse", len);
    let server = TestServer::start(Action::StallAfterBodyBytes(0));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/big"), &f))
        .unwrap();
    assert_eq!(h.progress().total_bytes_to_send, len);
    assert!(
        server.wait_until(Duration::from_secs(10), |r| !r.is_empty()),
        "the upload started"
    );
    let r = &server.requests()[0];
    assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
    h.cancel().unwrap();
    assert!(wait_until(Duration::from_secs(10), || h.status() == Status::Canceled));
    assert_eq!(h.progress().total_bytes_to_send, len);
    up.shutdown().unwrap();
}

/// A store whose journal says every id has been handed out refuses new uploads with a
/// typed error instead of wrapping around to id 0 (whose spool would replace a live
/// upload's).
#[test]
fn a_store_out_of_ids_refuses_new_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    {
        let mut st = background_transfer::journal::Store::open(&store).unwrap();
        st.commit(
            background_transfer::journal::Record::Removed(u64::MAX - 1),
            background_transfer::journal::Durability::Sync,
        )
        .unwrap();
    }
    let up = crate::support::fast(&store)
        .start_transfers(false)
        .open()
        .unwrap();
    let reader = std::io::Cursor::new(vec![1u8; 10]);
    let err = up
        .create_upload(UploadRequest::from_reader("http://127.0.0.1:9/x", reader))
        .expect_err("no id left");
    assert!(
        matches!(&err, background_transfer::Error::InvalidRequest { reason } if reason.contains("every upload id")),
        "{err}"
    );
    assert!(up.uploads().is_empty());
    assert_eq!(std::fs::read_dir(store.join("spool")).unwrap().count(), 0);
}
