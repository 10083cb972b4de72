//! The bad-input matrix: sources, requests and stores that are wrong in every way we could
//! think of. Each row must end in a typed error with a clear message (or, for the few
//! inputs that are merely unusual, be accepted and work), with no panic and no hang, and
//! the store's other uploads must be kept.
//!
//! Complements `validation.rs` (CR/LF in values, bad names, reserved headers, the 8 KiB and
//! 64 KiB caps, sources that shrink, vanish or are rewritten while paused, and a sparse
//! source over 4 GiB that is canceled) and `journal_recovery.rs` (recovery at the `Store`
//! level): here every row goes through the public API (`Uploader::builder().open()`,
//! `create_upload`), the rows are the ones those files do not have, and every table checks
//! that the store's earlier uploads survive. Each test prints its rows and their count.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::{Error, Recovery, Status, UploadRequest, Uploader};

use crate::rawserver;
use crate::rawserver::RawServer;
use crate::support;
use crate::support::child::{self, mark, ChildProcess};
use crate::support::{
    ended, fast, ids, kind, paused_upload, sparse_file, write_file, Action, Behavior, RequestHead,
    TestServer, Tmpfs,
};

/// No row may take longer than this.
const BOUND: Duration = Duration::from_secs(10);

/// Collects a table's rows and prints them.
struct Matrix {
    name: &'static str,
    rows: Vec<(String, String)>,
}

impl Matrix {
    fn new(name: &'static str) -> Matrix {
        Matrix {
            name,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, input: impl Into<String>, outcome: impl Into<String>) {
        self.rows.push((input.into(), outcome.into()));
    }

    /// Checks that `e` is a `want` error whose message names `named`, and records it.
    fn error(&mut self, input: &str, e: &Error, want: &str, named: &str) {
        let msg = e.to_string();
        assert_eq!(kind(e), want, "{}: {input}: {e:?}", self.name);
        assert!(
            msg.contains(named),
            "{}: {input}: message {msg:?} does not name {named:?}",
            self.name
        );
        self.row(input, format!("{want}: {msg}"));
    }

    fn finish(self) -> usize {
        eprintln!(
            "== bad-input matrix, {}: {} inputs",
            self.name,
            self.rows.len()
        );
        for (input, outcome) in &self.rows {
            eprintln!("  {input:<55} -> {outcome}");
        }
        self.rows.len()
    }
}

fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1)) // effective uid
        .is_some_and(|uid| uid == "0")
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Opens the write end of `fifo` without blocking and closes it, so that a reader blocked
/// opening it goes on (used only after a hang was detected, to end the stuck thread).
fn release_fifo(fifo: &Path) {
    let _ = fs::OpenOptions::new()
        .write(true)
        .custom_flags(0o4000) // O_NONBLOCK (Linux x86 and ARM): fails if nobody reads
        .open(fifo);
}

/// Runs `f` on a thread and fails the test if it takes longer than `BOUND` (after calling
/// `unstick`, which should release whatever it blocks on; a thread that stays stuck is
/// left behind rather than hanging the test).
fn bounded<T: Send + 'static>(
    what: &str,
    unstick: impl FnOnce(),
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(v) => v,
        Err(_) => {
            unstick();
            panic!("{what}: hung for more than {BOUND:?}");
        }
    }
}

// ---- sources ---------------------------------------------------------------------------

#[test]
fn bad_sources_are_refused_at_create() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let up = Arc::new(fast(&tmp.path().join("store")).open().unwrap());
    let good = write_file(tmp.path(), "good", 10_000, 1);
    let keeper = up
        .create_upload(UploadRequest::put(server.url("/keeper"), &good))
        .unwrap();
    ended(&keeper, BOUND).expect("the keeper upload completed");

    let t = tmp.path();
    let dir = t.join("a-directory");
    fs::create_dir(&dir).unwrap();
    // We run as root in CI, where mode 000 is still readable: a path whose parent is a
    // regular file (ENOTDIR) and a FIFO stand in for "unreadable" there.
    let under_file = good.join("child");
    let fifo = t.join("fifo");
    mkfifo(&fifo);
    let dangling = t.join("dangling");
    std::os::unix::fs::symlink(t.join("nowhere"), &dangling).unwrap();
    let looped = t.join("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let socket = t.join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let unreadable = write_file(t, "mode-000", 100, 2);
    fs::set_permissions(&unreadable, fs::Permissions::from_mode(0o000)).unwrap();

    let mut m = Matrix::new("sources at create");
    let mut cases: Vec<(&str, PathBuf)> = vec![
        ("nonexistent file", t.join("no-such-file")),
        ("a directory", dir.clone()),
        ("path under a regular file (ENOTDIR)", under_file),
        ("a FIFO (open would block)", fifo.clone()),
        ("/dev/zero (endless character device)", "/dev/zero".into()),
        ("dangling symlink", dangling),
        ("symlink loop", looped),
        ("a unix socket", socket),
        ("empty path", PathBuf::new()),
        ("path with a NUL byte", t.join("nul\0byte")),
    ];
    if !is_root() {
        cases.push(("file with mode 000", unreadable.clone()));
    } else {
        m.row(
            "file with mode 000",
            "skipped: root reads it anyway (ENOTDIR and FIFO rows stand in)",
        );
    }
    for (what, path) in cases {
        let shown = path.display().to_string();
        for (shape, req) in [
            ("PUT", UploadRequest::put(server.url("/x"), &path)),
            (
                "multipart",
                UploadRequest::multipart(server.url("/x")).file("f", &path),
            ),
            ("tus", UploadRequest::put(server.url("/x"), &path).tus(None)),
        ] {
            let input = format!("{what} ({shape})");
            let up2 = up.clone();
            let err = bounded(
                &input,
                || release_fifo(&fifo),
                move || up2.create_upload(req),
            )
            .expect_err(&input);
            let named = if path.as_os_str().is_empty() {
                ""
            } else {
                &shown
            };
            if shape == "multipart" && shown.contains('\0') {
                // The part's file name comes from the path: refused before the file is.
                m.error(&input, &err, "InvalidRequest", "file name");
            } else {
                m.error(&input, &err, "SourceMissing", named);
            }
            assert_eq!(ids(&up), vec![keeper.id()], "{input}: nothing persisted");
        }
    }
    m.finish();
    drop(up); // shuts down
    let up = fast(&tmp.path().join("store")).open().unwrap();
    assert_eq!(ids(&up), vec![keeper.id()]);
    assert_eq!(up.get(keeper.id()).unwrap().status(), Status::Completed);
    assert_eq!(server.request_count(), 1, "no bad source was ever sent");
    up.shutdown().unwrap();
}

#[test]
fn sources_that_go_bad_after_create_fail_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Every first attempt stalls (so the upload can be paused), every later one succeeds.
    let stall = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        if head.path == "/p" {
            Action::StallAfterBodyBytes(0)
        } else {
            Action::ok()
        }
    }));
    let slow = TestServer::start(Action::SlowRead {
        bytes_per_sec: 8 << 20,
    });
    let store = t.join("store");
    let up = fast(&store).open().unwrap();
    let good = write_file(t, "good", 10_000, 1);
    let keeper = up
        .create_upload(UploadRequest::put(stall.url("/keeper"), &good))
        .unwrap();
    ended(&keeper, BOUND).expect("keeper completed");
    let mut m = Matrix::new("sources after create");

    // While paused: replaced by a FIFO (an open would block the worker forever), by a
    // directory, or emptied.
    let to_fifo = write_file(t, "to-fifo", 50_000, 2);
    let h = paused_upload(&up, &stall, "/p", &to_fifo);
    fs::remove_file(&to_fifo).unwrap();
    mkfifo(&to_fifo);
    h.resume().unwrap();
    let h2 = h.clone();
    let r = bounded(
        "source replaced by a FIFO",
        || release_fifo(&to_fifo),
        move || ended(&h2, BOUND),
    );
    let e = r.expect_err("FIFO");
    assert!(
        matches!(kind(&e).as_str(), "SourceMissing" | "SourceChanged"),
        "{e:?}"
    );
    m.error("replaced by a FIFO while paused", &e, &kind(&e), "to-fifo");

    let to_dir = write_file(t, "to-dir", 50_000, 3);
    let h = paused_upload(&up, &stall, "/p", &to_dir);
    fs::remove_file(&to_dir).unwrap();
    fs::create_dir(&to_dir).unwrap();
    h.resume().unwrap();
    let e = ended(&h, BOUND).expect_err("dir");
    assert!(
        matches!(kind(&e).as_str(), "SourceMissing" | "SourceChanged"),
        "{e:?}"
    );
    m.error(
        "replaced by a directory while paused",
        &e,
        &kind(&e),
        "to-dir",
    );

    let emptied = write_file(t, "emptied", 50_000, 4);
    let h = paused_upload(&up, &stall, "/p", &emptied);
    fs::File::create(&emptied).unwrap();
    h.resume().unwrap();
    let e = ended(&h, BOUND).expect_err("emptied");
    m.error(
        "truncated to 0 bytes while paused",
        &e,
        "SourceChanged",
        "emptied",
    );

    // While on the wire: grows, or is overwritten in place with the same size.
    for (what, name) in [
        ("grows during the upload", "grows"),
        ("overwritten in place during the upload", "overwritten"),
    ] {
        let f = write_file(t, name, 8 << 20, 5);
        let before = slow.request_count();
        let h = up
            .create_upload(UploadRequest::put(slow.url("/w"), &f))
            .unwrap();
        assert!(slow.wait_until(BOUND, |r| r
            .get(before)
            .is_some_and(|r| r.body_len >= 1 << 20)));
        let mut file = fs::OpenOptions::new().write(true).open(&f).unwrap();
        if name == "grows" {
            file.seek_end_and_write(b"more");
        } else {
            file.write_all(b"changed!").unwrap();
            file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
                .unwrap();
        }
        drop(file);
        let e = ended(&h, BOUND).expect_err(what);
        m.error(what, &e, "SourceChanged", name);
        assert_eq!(h.status(), Status::Error);
    }
    m.finish();
    up.shutdown().unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(up.get(keeper.id()).unwrap().status(), Status::Completed);
    assert_eq!(up.uploads().len(), 6);
    up.shutdown().unwrap();
}

trait SeekEndWrite {
    fn seek_end_and_write(&mut self, bytes: &[u8]);
}

impl SeekEndWrite for fs::File {
    fn seek_end_and_write(&mut self, bytes: &[u8]) {
        use std::io::Seek;
        self.seek(std::io::SeekFrom::End(0)).unwrap();
        self.write_all(bytes).unwrap();
    }
}

#[test]
fn a_source_over_4_gib_resumes_past_the_4_gib_mark_with_64_bit_offsets() {
    // validation.rs checks a PUT's Content-Length for a 5 GiB sparse file and cancels.
    // Sending 4 GiB through loopback takes too long on a loaded 2-core runner, so this one
    // goes past 2^32 without sending it: a tus server (played here) reports it already
    // holds all but the last MiB, and the client must send exactly that MiB, read from
    // beyond the 4 GiB mark, with 64-bit lengths and offsets everywhere.
    const TAIL: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let len: u64 = (4 << 30) + 12_345;
    let start = len - TAIL as u64;
    let f = sparse_file(tmp.path(), "sparse", len);
    let tail = support::random_bytes(TAIL, 77);
    {
        use std::io::{Seek, SeekFrom};
        let mut file = fs::OpenOptions::new().write(true).open(&f).unwrap();
        file.seek(SeekFrom::Start(start)).unwrap();
        file.write_all(&tail).unwrap();
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let got_tail = Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let (s2, t2) = (seen.clone(), got_tail.clone());
    let tus = RawServer::start(move |c| {
        let hdr = |c: &rawserver::Conn, n: &str| c.header(n).unwrap_or_default();
        let common = "Tus-Resumable: 1.0.0\r\nConnection: close\r\n";
        let line = format!(
            "{} Upload-Length={} Upload-Offset={} Content-Length={}",
            c.method(),
            hdr(c, "upload-length"),
            hdr(c, "upload-offset"),
            hdr(c, "content-length"),
        );
        s2.lock().unwrap().push(line);
        match c.method() {
            "POST" => {
                c.discard_body()?;
                c.send(format!("HTTP/1.1 201 Created\r\nLocation: /files/big\r\n{common}Content-Length: 0\r\n\r\n").as_bytes())
            }
            "HEAD" => c.send(
                format!("HTTP/1.1 200 OK\r\nUpload-Offset: {start}\r\nUpload-Length: {len}\r\n{common}\r\n")
                    .as_bytes(),
            ),
            "PATCH" => {
                let body = c.read_body()?;
                let end = start + body.len() as u64;
                *t2.lock().unwrap() = Some(body);
                c.send(
                    format!("HTTP/1.1 204 No Content\r\nUpload-Offset: {end}\r\n{common}\r\n")
                        .as_bytes(),
                )
            }
            _ => c.send(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"),
        }
    });
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(tus.url("/files"), &f).tus(None))
        .unwrap();
    assert_eq!(h.progress().total_bytes_to_send, len);
    let info = ended(&h, BOUND).expect("completed");
    assert_eq!(info.status, 204);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            format!("POST Upload-Length={len} Upload-Offset= Content-Length=0"),
            "HEAD Upload-Length= Upload-Offset= Content-Length=".to_string(),
            format!("PATCH Upload-Length= Upload-Offset={start} Content-Length={TAIL}"),
        ]
    );
    let got = got_tail.lock().unwrap().take().expect("the PATCH body");
    assert!(got == tail, "the bytes past the 4 GiB mark are the file's");
    let p = h.progress();
    assert_eq!(
        (p.bytes_sent, p.bytes_acknowledged, p.total_bytes_to_send),
        (len, len, len)
    );
    up.shutdown().unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    let p = up.get(h.id()).unwrap().progress();
    assert_eq!(
        (p.status, p.total_bytes_to_send, p.bytes_sent),
        (Status::Completed, len, len)
    );
    up.shutdown().unwrap();
    let mut m = Matrix::new("large sources");
    m.row(
        "sparse source of 4 GiB + 12,345 bytes (tus, resumed past 2^32)",
        "accepted; PATCH at offset 4294913593 carried the file's last MiB",
    );
    m.finish();
}

// ---- requests --------------------------------------------------------------------------

#[test]
fn bad_requests_are_refused_at_create() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let f = write_file(tmp.path(), "f", 10_000, 1);
    let keeper = up
        .create_upload(UploadRequest::put(server.url("/keeper"), &f))
        .unwrap();
    ended(&keeper, BOUND).expect("keeper completed");
    let mut m = Matrix::new("requests");

    let long_url = format!("http://127.0.0.1/{}", "a".repeat(9000));
    let urls: Vec<(&str, String, &str)> = vec![
        ("empty URL", String::new(), "invalid URL"),
        ("scheme only", "http://".into(), "http://"),
        ("file: URL", "file:///etc/passwd".into(), "file"),
        (
            "javascript: URL",
            "javascript:alert(1)".into(),
            "javascript",
        ),
        ("ws: URL", "ws://127.0.0.1/x".into(), "ws"),
        ("unclosed IPv6 literal", "http://[::1/x".into(), "[::1"),
        ("space in host", "http://exa mple.com/".into(), "exa mple"),
        (
            "port out of range",
            "http://127.0.0.1:99999/".into(),
            "99999",
        ),
        (
            "CR LF in URL",
            "http://h/x\r\nX-Evil: 1".into(),
            "invalid URL",
        ),
        ("NUL in URL", "http://h/x\0y".into(), "invalid URL"),
        ("URL over 8 KiB", long_url, "8 KiB"),
        (
            "non-ASCII host",
            "http://bücher.example/".into(),
            "invalid URL",
        ),
        (
            "empty host with port",
            "https://:443/x".into(),
            "invalid URL",
        ),
    ];
    for (what, url, named) in urls {
        let e = up
            .create_upload(UploadRequest::put(url, &f))
            .expect_err(what);
        m.error(what, &e, "InvalidUrl", named);
        assert!(e.to_string().len() < 400, "{what}: a short message");
    }

    // Header values: every control character but HTAB is refused (RFC 9110 field-value),
    // and the value is never echoed (it may be a credential).
    let values: Vec<(&str, String)> = vec![
        ("NUL in a header value", "a\0b".into()),
        ("lone CR in a header value", "a\rb".into()),
        ("ESC in a header value", "a\x1b[31mb".into()),
        ("DEL in a header value", "a\x7fb".into()),
        ("backspace in a header value", "a\x08b".into()),
        ("header value of 1 MiB", "v".repeat(1 << 20)),
    ];
    for (what, value) in values {
        let e = UploadRequest::put(server.url("/x"), &f)
            .header("X-Bad", &value)
            .map(|_| ())
            .expect_err(what);
        m.error(what, &e, "InvalidHeader", "X-Bad");
        assert!(!e.to_string().contains("vvvv"), "{what}: value echoed");
    }
    let names: Vec<(&str, String)> = vec![
        ("CR LF in a header name", "X-A\r\nEvil".into()),
        ("colon in a header name", "X-A:".into()),
        ("non-ASCII header name", "X-Ünicode".into()),
        ("NUL in a header name", "X\0A".into()),
        ("reserved header Host", "Host".into()),
        ("reserved header Upload-Offset", "Upload-Offset".into()),
        ("reserved header Connection", "Connection".into()),
        ("Expect other than 100-continue", "Expect".into()),
    ];
    for (what, name) in names {
        let e = UploadRequest::put(server.url("/x"), &f)
            .header(&name, "v")
            .map(|_| ())
            .expect_err(what);
        assert_eq!(kind(&e), "InvalidHeader", "{what}: {e:?}");
        m.row(what, format!("InvalidHeader: {e}"));
    }
    // The one Expect that means something is accepted (the crate sends it on large
    // bodies anyway).
    UploadRequest::put(server.url("/x"), &f)
        .header("Expect", "100-Continue")
        .expect("Expect: 100-continue is accepted");
    // Accepted one at a time, refused together at create: many small headers, and one
    // enormous name.
    let mut many = UploadRequest::put(server.url("/x"), &f);
    for i in 0..10_000 {
        many = many.header(&format!("X-{i}"), "v").unwrap();
    }
    let e = up.create_upload(many).expect_err("many headers");
    m.error("10,000 small headers", &e, "InvalidHeader", "cap");
    let huge_name = UploadRequest::put(server.url("/x"), &f)
        .header(&"N".repeat(100 * 1024), "v")
        .unwrap();
    let e = up.create_upload(huge_name).expect_err("huge name");
    m.error("header name of 100 KiB", &e, "InvalidHeader", "cap");

    // Other request shapes.
    let e = up
        .create_upload(UploadRequest::new("", server.url("/x"), &f))
        .expect_err("empty method");
    m.error("empty method", &e, "InvalidRequest", "method");
    let e = up
        .create_upload(UploadRequest::put(server.url("/x"), &f).group(""))
        .expect_err("empty group");
    m.error("empty group name", &e, "InvalidRequest", "group");
    let e = up
        .create_upload(UploadRequest::put(server.url("/x"), &f).group("g".repeat(300)))
        .expect_err("long group");
    m.error("group name of 300 bytes", &e, "InvalidRequest", "group");
    let e = up
        .create_upload(
            UploadRequest::multipart(server.url("/x"))
                .text("a", "b")
                .tus(None),
        )
        .expect_err("tus multipart");
    m.error("tus with a multipart body", &e, "InvalidRequest", "tus");
    let e = up
        .create_upload(
            UploadRequest::multipart(server.url("/x"))
                .text("a", "b")
                .boundary("bad\r\nboundary"),
        )
        .expect_err("bad boundary");
    m.error(
        "multipart boundary with CR LF",
        &e,
        "InvalidRequest",
        "boundary",
    );
    let e = up
        .create_upload(UploadRequest::multipart(server.url("/x")).text("a\r\nb", "v"))
        .expect_err("bad field name");
    m.error(
        "multipart field name with CR LF",
        &e,
        "InvalidRequest",
        "field name",
    );
    let e = up
        .create_upload(
            UploadRequest::multipart(server.url("/x"))
                .text("a", "b")
                .subtype("form data"),
        )
        .expect_err("bad subtype");
    m.error(
        "multipart subtype that is not a token",
        &e,
        "InvalidRequest",
        "subtype",
    );
    let e = up
        .create_upload(UploadRequest::multipart(server.url("/x")).text("big", "t".repeat(2 << 20)))
        .expect_err("2 MiB text part");
    m.error("multipart text part of 2 MiB", &e, "RecordTooLarge", "cap");
    let e = up
        .create_upload(UploadRequest::from_reader(
            server.url("/x"),
            FailingReader(0),
        ))
        .expect_err("failing reader");
    m.error("reader that fails after 64 KiB", &e, "Io", "spool");
    let spool = store.join("spool");
    let left: Vec<_> = fs::read_dir(&spool).unwrap().collect();
    assert!(left.is_empty(), "the failed spool was removed: {left:?}");

    assert_eq!(ids(&up), vec![keeper.id()], "nothing was persisted");
    // The store still takes uploads after all that.
    let after = up
        .create_upload(UploadRequest::put(server.url("/after"), &f))
        .unwrap();
    ended(&after, BOUND).expect("an upload after the bad ones completes");
    m.finish();
    up.shutdown().unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(ids(&up), vec![keeper.id(), after.id()]);
    up.shutdown().unwrap();
}

/// Yields 64 KiB, then fails.
struct FailingReader(usize);

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 >= 64 * 1024 {
            return Err(std::io::Error::other("the reader broke"));
        }
        let n = buf.len().min(64 * 1024 - self.0);
        buf[..n].fill(7);
        self.0 += n;
        Ok(n)
    }
}

// ---- stores ----------------------------------------------------------------------------

/// A store with three completed uploads, written in two sessions: the journal's first
/// `l1` bytes hold uploads `ids[0]` and `ids[1]` (a file and a spooled reader), the rest
/// up to `l2` holds `ids[2]`.
struct Base {
    _server: TestServer,
    store: PathBuf,
    ids: Vec<u64>,
    l1: usize,
    l2: usize,
}

fn journal_of(store: &Path) -> PathBuf {
    store.join("journal")
}

/// The base server's answer to `path`: `/c`'s is over 4 KiB, so it gets a body file of
/// its own (the others stay in the journal).
fn answer_of(path: &str) -> String {
    match path {
        "/c" => "resp /c ".repeat(1000),
        path => format!("resp {path}"),
    }
}

fn build_base(t: &Path) -> Base {
    let server = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        Action::respond(201, answer_of(&head.path))
    }));
    let store = t.join("base");
    let f = write_file(t, "base-src", 20_000, 9);
    let up = fast(&store).open().unwrap();
    let a = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    let b = up
        .create_upload(UploadRequest::from_reader(
            server.url("/b"),
            &[5u8; 3000][..],
        ))
        .unwrap();
    ended(&a, BOUND).unwrap();
    ended(&b, BOUND).unwrap();
    up.shutdown().unwrap();
    let first = fs::read(journal_of(&store)).unwrap();
    let up = fast(&store).open().unwrap();
    let c = up
        .create_upload(UploadRequest::put(server.url("/c"), &f))
        .unwrap();
    ended(&c, BOUND).unwrap();
    up.shutdown().unwrap();
    let all = fs::read(journal_of(&store)).unwrap();
    assert!(
        all.len() > first.len() && all[..first.len()] == first[..],
        "the second session only appended"
    );
    Base {
        _server: server,
        store,
        ids: vec![a.id(), b.id(), c.id()],
        l1: first.len(),
        l2: all.len(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Names in the store directory, sorted.
fn listing(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Opens for inspection only: nothing is sent, no status rewritten.
fn inspect(store: &Path) -> Result<Uploader, Error> {
    fast(store).start_transfers(false).open()
}

/// Checks that `ids` are in the store, completed, with their response bodies.
fn assert_kept(up: &Uploader, base: &Base, ids: &[u64], what: &str) {
    for &id in ids {
        let h = up
            .get(id)
            .unwrap_or_else(|| panic!("{what}: upload {id} lost"));
        assert_eq!(h.status(), Status::Completed, "{what}: upload {id}");
        let mut body = String::new();
        h.response_body()
            .unwrap_or_else(|e| panic!("{what}: upload {id} body: {e}"))
            .read_to_string(&mut body)
            .unwrap();
        let path = ["/a", "/b", "/c"][base.ids.iter().position(|&i| i == id).unwrap()];
        assert_eq!(body, answer_of(path), "{what}: upload {id}");
    }
}

#[test]
fn damaged_journals_are_refused_untouched_or_recovered_to_their_last_good_record() {
    let tmp = tempfile::tempdir().unwrap();
    let base = build_base(tmp.path());
    let original = fs::read(journal_of(&base.store)).unwrap();
    let (l1, l2) = (base.l1, base.l2);
    let mut m = Matrix::new("journals");
    let mut n = 0;
    let mut case = |bytes: Vec<u8>| -> PathBuf {
        n += 1;
        let dir = tmp.path().join(format!("case{n}"));
        copy_dir(&base.store, &dir);
        fs::write(journal_of(&dir), bytes).unwrap();
        dir
    };

    // Refusals: typed error, the file and the directory exactly as they were.
    let mut bad_magic = original.clone();
    bad_magic[0] ^= 0xff;
    let mut newer = original.clone();
    newer[8..12].copy_from_slice(&7u32.to_le_bytes());
    let mut zero_version = original.clone();
    zero_version[8..12].copy_from_slice(&0u32.to_le_bytes());
    let mut foreign = b"SQLite format 3\0".to_vec();
    foreign.extend_from_slice(&original[16..]);
    for (what, bytes, want) in [
        ("bad magic bytes", bad_magic, "JournalNotRecognized"),
        (
            "foreign file (SQLite header)",
            foreign,
            "JournalNotRecognized",
        ),
        ("format version 0", zero_version, "JournalNotRecognized"),
        ("newer format version (7)", newer, "JournalVersion"),
    ] {
        let dir = case(bytes.clone());
        let before = listing(&dir);
        let e = inspect(&dir).expect_err(what);
        m.error(what, &e, want, "journal");
        assert_eq!(
            fs::read(journal_of(&dir)).unwrap(),
            bytes,
            "{what}: file touched"
        );
        assert_eq!(listing(&dir), before, "{what}: files added or removed");
        if let Error::JournalVersion { found, .. } = e {
            assert_eq!(found, 7);
            assert!(e.to_string().contains("newer build"), "{e}");
        }
        // Put the original back: everything is there.
        fs::write(journal_of(&dir), &original).unwrap();
        let up = inspect(&dir).unwrap();
        assert_kept(&up, &base, &base.ids, what);
        up.shutdown().unwrap();
    }

    // Recovered: a torn tail is cut quietly; damage is kept aside and the records before
    // it are kept.
    let mut torn = original.clone();
    torn.extend_from_slice(&[0x40, 0, 0, 0, 1, 2, 3]);
    let dir = case(torn);
    let up = inspect(&dir).unwrap();
    assert_eq!(
        up.recovery(),
        &Recovery::TornTail {
            offset: l2 as u64,
            dropped: 7
        }
    );
    assert_kept(&up, &base, &base.ids, "torn tail");
    m.row(
        "torn tail (partial frame at the end)",
        format!("{:?}", up.recovery()),
    );
    up.shutdown().unwrap();

    let mut flipped = original.clone();
    flipped[l1 + (l2 - l1) / 2] ^= 0x20;
    let mut oversize = original.clone();
    oversize[l1..l1 + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut garbage = original[..l1].to_vec();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..(l2 - l1) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        garbage.push((x as u8) | 1);
    }
    for (what, bytes, reason) in [
        ("checksum flip in the middle", flipped, "checksum"),
        ("oversize length field", oversize, "exceeds"),
        ("random bytes after a good prefix", garbage, ""),
    ] {
        let dir = case(bytes.clone());
        let up = inspect(&dir).unwrap();
        let Recovery::Corrupt {
            offset,
            reason: why,
            saved_as,
            ..
        } = up.recovery().clone()
        else {
            panic!("{what}: {:?}", up.recovery());
        };
        assert!(why.contains(reason), "{what}: {why}");
        assert!(
            offset as usize >= l1 && offset as usize <= l2,
            "{what}: {offset}"
        );
        assert_eq!(
            fs::read(&saved_as).unwrap(),
            bytes,
            "{what}: the damaged file is kept"
        );
        assert_eq!(
            fs::metadata(&saved_as).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_kept(&up, &base, &base.ids[..2], what);
        m.row(
            what,
            format!("Corrupt at {offset}: {why}; kept {}", saved_as.display()),
        );
        up.shutdown().unwrap();
    }

    // Not a regular file at all: refused, without hanging or reading forever.
    let as_dir = case(Vec::new());
    fs::remove_file(journal_of(&as_dir)).unwrap();
    fs::create_dir(journal_of(&as_dir)).unwrap();
    let as_fifo = case(Vec::new());
    fs::remove_file(journal_of(&as_fifo)).unwrap();
    mkfifo(&journal_of(&as_fifo));
    let as_zero = case(Vec::new());
    fs::remove_file(journal_of(&as_zero)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", journal_of(&as_zero)).unwrap();
    for (what, dir) in [
        ("journal is a directory", as_dir),
        ("journal is a FIFO", as_fifo),
        ("journal is a symlink to /dev/zero", as_zero),
    ] {
        let d = dir.clone();
        let e = bounded(
            what,
            || release_fifo(&journal_of(&dir)),
            move || inspect(&d),
        )
        .expect_err(what);
        m.error(what, &e, "Io", "journal");
    }
    m.finish();
}

#[test]
fn broken_store_layouts_are_typed_errors_and_keep_the_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let base = build_base(tmp.path());
    let mut m = Matrix::new("store layout");
    let t = tmp.path();

    // Not writable, as root too: a store path under a regular file, or a regular file.
    let file = write_file(t, "plain-file", 10, 1);
    let e = inspect(&file.join("store")).expect_err("under a file");
    m.error("store path under a regular file", &e, "Io", "plain-file");
    let e = inspect(&file).expect_err("a file");
    m.error("store path is a regular file", &e, "Io", "plain-file");

    // Pieces of the store replaced by the wrong kind of file.
    let lock_dir = t.join("lock-dir");
    copy_dir(&base.store, &lock_dir);
    fs::remove_file(lock_dir.join("lock")).unwrap();
    fs::create_dir(lock_dir.join("lock")).unwrap();
    let e = inspect(&lock_dir).expect_err("lock dir");
    m.error("lock is a directory", &e, "Io", "lock");

    let bodies_file = t.join("bodies-file");
    copy_dir(&base.store, &bodies_file);
    fs::remove_dir_all(bodies_file.join("bodies")).unwrap();
    fs::write(bodies_file.join("bodies"), b"x").unwrap();
    let e = inspect(&bodies_file).expect_err("bodies file");
    m.error("bodies/ is a regular file", &e, "Io", "bodies");

    // A small response body has no file: the journal keeps it, and a compaction
    // carries it over.
    let compacted = t.join("body-compacted");
    copy_dir(&base.store, &compacted);
    background_transfer::journal::Store::open(&compacted)
        .and_then(|mut s| s.compact())
        .unwrap();
    let up = inspect(&compacted).unwrap();
    let mut body = String::new();
    (up.get(base.ids[0]).unwrap().response_body())
        .expect("the body is there")
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "resp /a");
    up.shutdown().unwrap();

    // A larger body's file deleted behind the store's back: that upload says so, typed.
    let no_body = t.join("no-body");
    copy_dir(&base.store, &no_body);
    let large = base.ids[2];
    fs::remove_file(no_body.join("bodies").join(large.to_string())).unwrap();
    let up = inspect(&no_body).unwrap();
    let h = up.get(large).unwrap();
    assert_eq!(h.status(), Status::Completed);
    let e = h.response_body().expect_err("deleted body");
    m.error("response body file deleted", &e, "Io", &large.to_string());
    assert_kept(&up, &base, &base.ids[..2], "body deleted");
    up.shutdown().unwrap();
    m.finish();
}

#[test]
fn a_spooled_source_deleted_before_its_upload_runs_fails_it_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        if head.path == "/stall" {
            Action::StallAfterBodyBytes(0)
        } else {
            Action::ok()
        }
    }));
    let up = fast(&store).open().unwrap();
    let keeper = up
        .create_upload(UploadRequest::from_reader(
            server.url("/ok"),
            &[1u8; 100][..],
        ))
        .unwrap();
    ended(&keeper, BOUND).unwrap();
    // Idempotent: a POST paused after its whole body was sent would end in Error instead.
    let h = up
        .create_upload(
            UploadRequest::from_reader(server.url("/stall"), &[2u8; 5000][..]).idempotent(true),
        )
        .unwrap();
    assert!(server.wait_until(BOUND, |r| r.len() == 2 && r[1].finished));
    h.pause().unwrap();
    assert!(
        support::wait_until(BOUND, || h.status() == Status::PausedByApplication),
        "{:?} {:?}",
        h.status(),
        h.error()
    );
    up.shutdown().unwrap();
    fs::remove_file(store.join("spool").join(h.id().to_string())).unwrap();
    let up = fast(&store).open().unwrap();
    let h = up.get(h.id()).unwrap();
    h.resume().unwrap();
    let e = ended(&h, BOUND).expect_err("spool gone");
    let mut m = Matrix::new("spool");
    m.error("spooled source deleted", &e, "SourceMissing", "spool");
    assert_eq!(up.get(keeper.id()).unwrap().status(), Status::Completed);
    m.finish();
    up.shutdown().unwrap();
}

#[test]
fn a_read_only_store_is_a_typed_error_and_loses_nothing() {
    // As root a read-only directory is writable, so this needs a read-only file system: a
    // tmpfs the test mounts. Where mount is not allowed the test says so (and fails in CI).
    let tmp = tempfile::tempdir().unwrap();
    let base = build_base(tmp.path());
    let mnt = match Tmpfs::mount(&tmp.path().join("mnt"), "16m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("cannot mount a tmpfs ({why}); the read-only store rows did not run");
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must be able to mount: {why}"
            );
            return;
        }
    };
    let store = mnt.dir().join("store");
    copy_dir(&base.store, &store);
    let journal = fs::read(journal_of(&store)).unwrap();
    mnt.remount("ro");
    let mut m = Matrix::new("read-only store");
    let e = inspect(&store).expect_err("read-only store");
    m.error(
        "existing store on a read-only file system",
        &e,
        "Io",
        "store",
    );
    let e = inspect(&mnt.dir().join("fresh")).expect_err("fresh");
    m.error("new store on a read-only file system", &e, "Io", "fresh");
    mnt.remount("rw");
    assert_eq!(fs::read(journal_of(&store)).unwrap(), journal, "untouched");
    let up = inspect(&store).unwrap();
    assert_eq!(up.recovery(), &Recovery::Clean);
    assert_kept(&up, &base, &base.ids, "after remounting rw");
    up.shutdown().unwrap();
    m.finish();
}

// ---- a store locked by another process -------------------------------------------------

pub const CHILD_ENV: &str = "BGXFER_BAD_INPUT_CHILD";

/// The child: holds the store open until killed.
pub fn child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let up = inspect(Path::new(&dir)).unwrap();
    mark(format_args!("READY {}", up.uploads().len()));
    std::thread::sleep(Duration::from_secs(20));
}

fn spawn_holder(dir: &Path) -> ChildProcess {
    child::spawn(CHILD_ENV, dir, &[])
}

#[test]
fn a_store_locked_by_another_process_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let base = build_base(tmp.path());
    let mut child = spawn_holder(&base.store);
    let ready = child
        .wait_for_line("READY", Duration::from_secs(20))
        .expect("the holder got ready");
    assert_eq!(ready, "READY 3");
    let mut m = Matrix::new("locked store");
    let started = Instant::now();
    let e = inspect(&base.store).expect_err("locked");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, no waiting"
    );
    m.error(
        "store held by another process",
        &e,
        "StoreLocked",
        &base.store.display().to_string(),
    );
    assert!(e.to_string().contains("locked"), "{e}");
    child.kill();
    let up = inspect(&base.store).expect("the lock passes on when the holder dies");
    assert_kept(&up, &base, &base.ids, "after the holder died");
    up.shutdown().unwrap();
    m.finish();
}
