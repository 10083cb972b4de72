//! `UploaderBuilder::sendfile`: plain-HTTP file bytes go from the page cache to the socket
//! with `sendfile(2)`, byte-exact (single files, multipart framing around files, and a
//! resumed range), with pause, the bandwidth cap and a shrinking source behaving as
//! without it; TLS bodies never use it.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use background_transfer::{sendfile_bytes, Status, UploadRequest};

use crate::support::{
    completed, fast, sha256_file, wait_for, write_file, Action, Behavior, TestServer,
};

const T: Duration = Duration::from_secs(20);

/// The tests here read the process-wide count of bytes sent with `sendfile`: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn a_put_goes_out_by_sendfile_byte_exact() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let up = fast(&tmp.path().join("store"))
        .sendfile(true)
        .open()
        .unwrap();
    let size = (3 << 20) + 12_345;
    let f = write_file(tmp.path(), "a", size, 1);
    let before = sendfile_bytes();
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    completed(&h, T);
    let r = &server.requests()[0];
    assert_eq!((r.body_len, &r.sha256), (size, &sha256_file(&f)));
    assert_eq!(h.progress().bytes_sent, size);
    assert_eq!(
        sendfile_bytes() - before,
        size,
        "every body byte by sendfile"
    );
    up.shutdown().unwrap();
}

/// Multipart: the framing is copied, the file parts are sent from their files; the bytes
/// are those of the same request sent without `sendfile`.
#[test]
fn multipart_framing_around_files_is_byte_exact() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let a = write_file(tmp.path(), "a", 300_000, 2);
    let b = write_file(tmp.path(), "b", 1_000_001, 3);
    let form = |url: String| {
        UploadRequest::multipart(url)
            .boundary("sendfile-test-boundary")
            .text("note", "before the files")
            .file("first", &a)
            .text("middle", "between")
            .file("second", &b)
    };
    let mut shas = Vec::new();
    for (i, on) in [false, true].into_iter().enumerate() {
        let up = fast(&tmp.path().join(format!("store{i}")))
            .sendfile(on)
            .open()
            .unwrap();
        let before = sendfile_bytes();
        let h = up
            .create_upload(form(server.url(&format!("/m{i}"))))
            .unwrap();
        completed(&h, T);
        let sent = sendfile_bytes() - before;
        if on {
            assert_eq!(sent, 1_300_001, "the files' bytes, and nothing else");
        } else {
            assert_eq!(sent, 0);
        }
        shas.push(server.requests()[i].sha256.clone());
        up.shutdown().unwrap();
    }
    assert_eq!(shas[0], shas[1], "the same bytes either way");
}

#[test]
fn pause_stops_within_one_buffer_and_resume_completes() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let buffer = 16 * 1024;
    let server = TestServer::start(
        Behavior::script([Action::SlowRead {
            bytes_per_sec: 256 * 1024,
        }])
        .then(Action::ok()),
    );
    let up = fast(&tmp.path().join("store"))
        .sendfile(true)
        .buffer_size(buffer)
        .progress_interval(Duration::ZERO)
        .open()
        .unwrap();
    let total = 4u64 << 20;
    let f = write_file(tmp.path(), "big", total, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/p"), &f))
        .unwrap();
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len >= 128 * 1024)));
    let before = h.progress().bytes_sent;
    h.pause().unwrap();
    assert!(wait_for(&h, T, |s| s == Status::PausedByApplication));
    let after = h.progress().bytes_sent;
    assert!(
        after >= before && after - before <= buffer as u64,
        "{} bytes after the pause (buffer {buffer})",
        after - before
    );
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.finished)));
    let got = server.requests()[0].body_len;
    assert!(got <= after, "the server got {got} > {after} counted");
    h.resume().unwrap();
    completed(&h, T);
    let last = server.requests().pop().unwrap();
    assert_eq!(
        (last.body_len, last.sha256),
        (total, sha256_file(&f)),
        "the resumed PUT, whole"
    );
    up.shutdown().unwrap();
}

#[test]
fn the_bandwidth_cap_holds() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let rate: u64 = 256 * 1024;
    let up = fast(&tmp.path().join("store"))
        .sendfile(true)
        .max_bandwidth(Some(rate))
        .open()
        .unwrap();
    let size: u64 = 512 * 1024;
    let f = write_file(tmp.path(), "a", size, 5);
    let before = sendfile_bytes();
    let start = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    completed(&h, T);
    // 512 KiB at 256 KiB/s from an empty bucket (bursts of a quarter second) take at
    // least 1.75 s: a bound we configured, not a performance claim.
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
    assert_eq!(server.requests()[0].sha256, sha256_file(&f));
    assert_eq!(sendfile_bytes() - before, size);
    up.shutdown().unwrap();
}

#[test]
fn a_source_that_shrinks_under_sendfile_is_a_changed_source() {
    let _one = serial();
    let before = sendfile_bytes();
    crate::validation::a_shrinking_source_fails_quickly(|b| b.sendfile(true));
    assert!(
        sendfile_bytes() - before >= 1 << 20,
        "the bytes before the cut by sendfile"
    );
}

#[test]
fn tls_bodies_do_not_use_it() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_tls(Behavior::ok());
    let up = fast(&tmp.path().join("store"))
        .sendfile(true)
        .add_root_certificate_pem(server.ca_pem())
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 1 << 20, 7);
    let before = sendfile_bytes();
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    completed(&h, T);
    assert_eq!(server.requests()[0].sha256, sha256_file(&f));
    assert_eq!(sendfile_bytes(), before, "TLS encrypts in this process");
    up.shutdown().unwrap();
}
