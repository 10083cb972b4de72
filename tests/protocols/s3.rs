//! S3 against two real servers: moto (the whole multipart set, no signature checks) and
//! s3rver (checks SigV4 signatures; no ListParts, no ListMultipartUploads, no Abort).
//! Objects are read back and compared byte for byte; interrupted uploads (SIGKILL, a
//! network cut, a server that lost the upload) send again only what the server lacks.
//!
//! Built with `--features s3`. Without the servers these tests print SKIPPED, except in
//! CI, where they fail. The SIGKILL test re-runs this binary as its child, with
//! `BGXFER_S3_CHILD` set.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use background_transfer::{
    Credentials, Error, ProviderError, S3Keys, S3Object, Status, Upload, UploadRequest, Uploader,
    UploaderBuilder,
};

use crate::support::child::{self, mark};
use crate::support::proxy::Proxy;
use crate::support::s3::{Kind, S3Server, BUCKET, S3S_KEY, S3S_SECRET};
use crate::support::{
    assert_no_bytes, completed, ended, fast, sha256_file, sha256_hex, wait_until, write_file,
    Action, Behavior, TestServer, KIB, MIB,
};

pub const CHILD_ENV: &str = "BGXFER_S3_CHILD";
const STORE_ENV: &str = "BGXFER_S3_STORE";
const FILE_ENV: &str = "BGXFER_S3_FILE";
const ENDPOINT_ENV: &str = "BGXFER_S3_ENDPOINT";
const RATE_ENV: &str = "BGXFER_S3_RATE";

const PART: u64 = 5 * MIB;

macro_rules! s3_server {
    ($test:expr, $kind:expr) => {
        match S3Server::start($test, $kind) {
            Some(s) => s,
            None => return,
        }
    };
}

/// A provider handing out the server's keys, counting the calls and the refreshes.
#[derive(Default)]
struct Counted {
    calls: AtomicU32,
    refreshes: AtomicU32,
}

fn keys_provider(
    server: &S3Server,
) -> (
    Arc<Counted>,
    impl Fn(&background_transfer::CredentialRequest) -> Result<Credentials, ProviderError>,
) {
    let counted = Arc::new(Counted::default());
    let c = counted.clone();
    let (key, secret) = server.keys();
    let provider = move |r: &background_transfer::CredentialRequest| {
        c.calls.fetch_add(1, Ordering::SeqCst);
        if r.refresh() {
            c.refreshes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Credentials::S3(S3Keys::new(key.clone(), secret.clone())))
    };
    (counted, provider)
}

/// A store whose uploads get the server's keys from provider `"s3"`.
fn builder(dir: &Path, server: &S3Server) -> (Arc<Counted>, UploaderBuilder) {
    let (counted, provider) = keys_provider(server);
    let b = fast(dir)
        .response_timeout(Duration::from_secs(60))
        .credentials("s3", provider);
    (counted, b)
}

fn object(endpoint: &str, key: &str) -> S3Object {
    S3Object::new(endpoint, BUCKET, key).part_size(PART)
}

fn assert_object(server: &S3Server, key: &str, src: &Path) {
    let got = server
        .get_object(key)
        .unwrap_or_else(|| panic!("{key} is not on {:?}", server.kind));
    assert_eq!(
        sha256_hex(&got),
        sha256_file(src),
        "{key} on {:?} differs from {} ({} bytes back)",
        server.kind,
        src.display(),
        got.len()
    );
}

fn every_size_arrives_byte_exact(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!(&format!("S3 objects of every size on {kind:?}"), kind);
    let (_, b) = builder(&tmp.path().join("store"), &server);
    let up = b.max_concurrent(3).open().unwrap();
    let sizes = [0, KIB, PART - 1, PART, 37 * MIB, 200 * MIB];
    let mut uploads = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let src = write_file(tmp.path(), &format!("f{i}.bin"), size, i as u64 + 1);
        let key = format!("sizes/{size}.bin");
        let h = up
            .create_upload(UploadRequest::s3(
                object(&server.endpoint(), &key).content_type("application/octet-stream"),
                &src,
            ))
            .unwrap();
        uploads.push((h, key, src, size));
    }
    for (h, key, src, size) in &uploads {
        let info = completed(h, Duration::from_secs(240));
        assert_eq!(info.status, 200, "{key}");
        assert_eq!(h.progress().bytes_acknowledged, *size, "{key}");
        assert_eq!(h.progress().attempts, 0, "{key}: no retry spent");
        assert_object(&server, key, src);
    }
}

#[test]
fn objects_of_every_size_arrive_byte_exact_on_moto() {
    every_size_arrives_byte_exact(Kind::Moto);
}

#[test]
fn objects_of_every_size_arrive_byte_exact_on_s3rver() {
    every_size_arrives_byte_exact(Kind::S3rver);
}

#[test]
fn objects_of_every_size_arrive_byte_exact_on_s3s_with_checked_signatures() {
    every_size_arrives_byte_exact(Kind::S3sFs);
}

/// The child of the SIGKILL test: opens the store, creates the upload on its first run,
/// and uploads (throttled) until it is killed.
pub fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    assert_eq!(role, "upload", "unknown child role");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let rate: u64 = env(RATE_ENV).parse().unwrap();
    let up = fast(Path::new(&env(STORE_ENV)))
        .response_timeout(Duration::from_secs(60))
        .max_bandwidth(Some(rate))
        .credentials("s3", |_: &background_transfer::CredentialRequest| {
            Ok(Credentials::S3(S3Keys::new("S3RVER", "S3RVER")))
        })
        .open()
        .unwrap();
    let h = match up.uploads().into_iter().next() {
        Some(h) => h,
        None => up
            .create_upload(UploadRequest::s3(
                object(&env(ENDPOINT_ENV), "kill/big.bin"),
                env(FILE_ENV),
            ))
            .unwrap(),
    };
    mark(format_args!("ID {}", h.id()));
    let _ = h.wait_timeout(Duration::from_secs(120));
    mark("DONE");
}

#[test]
fn ten_sigkills_resend_at_most_one_part_each() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 SIGKILL x10", Kind::Moto);
    let proxy = Proxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap());
    let size = 200 * MIB;
    let src = write_file(tmp.path(), "big.bin", size, 77);
    let store = tmp.path().join("store");
    let endpoint = format!("http://127.0.0.1:{}", proxy.port());
    let spawn = || {
        child::spawn(
            CHILD_ENV,
            "upload",
            &[
                (STORE_ENV, &store),
                (FILE_ENV, &src),
                (ENDPOINT_ENV, &endpoint),
                (RATE_ENV, &(24 * MIB).to_string()),
            ],
        )
    };
    let kills = child::sigkill_loop(
        &proxy,
        10,
        (PART / 2, 2 * PART),
        0x53,
        Duration::from_secs(180),
        spawn,
    );
    assert_eq!(kills, 10, "the upload finished before the tenth kill");
    let (_, b) = builder(&store, &server);
    let up = b.open().unwrap();
    let h = up
        .uploads()
        .into_iter()
        .next()
        .expect("the upload survived");
    // The last run goes through the proxy too (the endpoint is persisted).
    let info = completed(&h, Duration::from_secs(120));
    assert_eq!(info.status, 200);
    assert!(!h.progress().has_restarted, "never restarted from part 1");
    assert_object(&server, "kill/big.bin", &src);
    let sent = proxy.bytes_to_server();
    let resent = sent.saturating_sub(size);
    eprintln!(
        "S3 SIGKILL x{kills}: {sent} bytes reached the server for a {size}-byte object: \
         {resent} bytes ({:.2} parts) sent again in all, {:.2} parts per kill",
        resent as f64 / PART as f64,
        resent as f64 / PART as f64 / kills as f64
    );
    assert!(
        resent <= kills as u64 * PART,
        "{resent} bytes sent again: more than one part per interruption"
    );
}

#[test]
fn a_network_cut_during_a_part_resends_only_that_part() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 network cut", Kind::Moto);
    let proxy = Proxy::start(format!("127.0.0.1:{}", server.port).parse().unwrap());
    let size = 37 * MIB;
    let src = write_file(tmp.path(), "cut.bin", size, 5);
    let (_, b) = builder(&tmp.path().join("store"), &server);
    let up = b.open().unwrap();
    // Cut in the middle of the third part.
    proxy.cut_after(2 * PART + PART / 2);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port());
    let h = up
        .create_upload(UploadRequest::s3(object(&endpoint, "cut.bin"), &src))
        .unwrap();
    completed(&h, Duration::from_secs(120));
    assert_eq!(proxy.cuts(), 1, "the cut happened");
    assert_object(&server, "cut.bin", &src);
    let resent = proxy.bytes_to_server().saturating_sub(size);
    eprintln!("S3 network cut: {resent} bytes sent again (part size {PART})");
    assert!(resent <= PART, "{resent} bytes sent again for one cut");
}

#[test]
fn a_wrong_secret_is_a_final_403_with_the_servers_code_and_no_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 wrong secret", Kind::S3sFs);
    let src = write_file(tmp.path(), "a.bin", 12 * MIB, 3);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let up = fast(&tmp.path().join("store"))
        .credentials("s3", move |_: &background_transfer::CredentialRequest| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(Credentials::S3(S3Keys::new(S3S_KEY, "not-the-secret")))
        })
        .open()
        .unwrap();
    for (key, size) in [("small.bin", KIB), ("multi.bin", 12 * MIB)] {
        let src = if size == KIB {
            write_file(tmp.path(), "small.bin", KIB, 4)
        } else {
            src.clone()
        };
        calls.store(0, Ordering::SeqCst);
        let h = up
            .create_upload(UploadRequest::s3(object(&server.endpoint(), key), &src))
            .unwrap();
        let err = ended(&h, Duration::from_secs(30)).unwrap_err();
        match &err {
            Error::Service { status, code, .. } => {
                assert_eq!(*status, 403, "{err}");
                assert_eq!(code, "SignatureDoesNotMatch", "{err}");
            }
            other => panic!("{key}: expected a service error, got {other:?}"),
        }
        assert_eq!(h.status(), Status::Error);
        assert_eq!(h.progress().attempts, 0, "{key}: no retry spent");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "{key}: asked once, then once more with refresh"
        );
        let info = h.response_info().expect("the 403 is kept");
        assert_eq!(info.status, 403);
    }
}

#[test]
fn expired_credentials_are_asked_for_again_and_the_upload_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 expiring credentials", Kind::S3sFs);
    let size = 30 * MIB;
    let src = write_file(tmp.path(), "exp.bin", size, 8);
    // Keys that live 400 ms, and a first answer that is stale (a rotated secret): the
    // server refuses it, the provider is asked with refresh, and gives the right one.
    let calls = Arc::new(AtomicU32::new(0));
    let refreshes = Arc::new(AtomicU32::new(0));
    let (c, r) = (calls.clone(), refreshes.clone());
    let up = fast(&tmp.path().join("store"))
        .response_timeout(Duration::from_secs(60))
        .max_bandwidth(Some(10 * MIB))
        .credentials("s3", move |req: &background_transfer::CredentialRequest| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if req.refresh() {
                r.fetch_add(1, Ordering::SeqCst);
            }
            let secret = if n == 0 { "rotated-away" } else { S3S_SECRET };
            Ok(Credentials::S3(
                S3Keys::new(S3S_KEY, secret)
                    .session_token(format!("token-{n}"))
                    .expires(SystemTime::now() + Duration::from_millis(400)),
            ))
        })
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::s3(
            object(&server.endpoint(), "exp.bin"),
            &src,
        ))
        .unwrap();
    completed(&h, Duration::from_secs(60));
    assert_object(&server, "exp.bin", &src);
    let (calls, refreshes) = (
        calls.load(Ordering::SeqCst),
        refreshes.load(Ordering::SeqCst),
    );
    eprintln!("S3 expiring credentials: provider asked {calls} times, {refreshes} refreshes");
    assert!(calls >= 4, "asked again as the keys expired: {calls}");
    assert_eq!(
        refreshes,
        calls - 1,
        "every call after the first is a refresh"
    );
    assert_eq!(h.progress().attempts, 0, "no retry spent on credentials");
    up.shutdown().unwrap();
    // Nothing the provider gave, nor any signature made with it, is in the store.
    let store = tmp.path().join("store");
    for secret in [
        S3S_SECRET,
        "rotated-away",
        "token-0",
        "token-1",
        "X-Amz-Signature",
    ] {
        assert_no_bytes(&store, secret.as_bytes());
    }
}

/// Starts a throttled multipart upload and waits until the server has `parts` parts.
fn part_way(
    up: &Uploader,
    server: &S3Server,
    key: &str,
    src: &Path,
    parts: usize,
) -> (Upload, String) {
    let h = up
        .create_upload(UploadRequest::s3(object(&server.endpoint(), key), src))
        .unwrap();
    let mut upload_id = String::new();
    let ok = wait_until(Duration::from_secs(30), || {
        if let Some(id) = server.multipart_uploads(key).first() {
            upload_id = id.clone();
            return server.parts(key, id) >= parts;
        }
        false
    });
    assert!(ok, "{key} never got {parts} parts on the server");
    (h, upload_id)
}

#[test]
fn cancel_aborts_the_multipart_upload_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 cancel", Kind::Moto);
    let src = write_file(tmp.path(), "c.bin", 40 * MIB, 2);
    let (_, b) = builder(&tmp.path().join("store"), &server);
    let up = b.max_bandwidth(Some(8 * MIB)).open().unwrap();
    let (h, _) = part_way(&up, &server, "cancel.bin", &src, 1);
    h.cancel().unwrap();
    assert_eq!(h.status(), Status::Canceled);
    let gone = wait_until(Duration::from_secs(10), || {
        server.multipart_uploads("cancel.bin").is_empty()
    });
    assert!(
        gone,
        "the server still lists the multipart upload after cancel"
    );
    assert!(server.get_object("cancel.bin").is_none());
}

#[test]
fn an_upload_the_server_lost_while_paused_restarts_from_part_one_without_a_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 upload lost while paused", Kind::Moto);
    let src = write_file(tmp.path(), "l.bin", 40 * MIB, 6);
    let (_, b) = builder(&tmp.path().join("store"), &server);
    let up = b.max_bandwidth(Some(16 * MIB)).open().unwrap();
    let (h, upload_id) = part_way(&up, &server, "lost.bin", &src, 2);
    h.pause().unwrap();
    assert!(crate::support::wait_for(&h, Duration::from_secs(10), |s| {
        s == Status::PausedByApplication
    }));
    server.abort("lost.bin", &upload_id);
    h.resume().unwrap();
    let info = completed(&h, Duration::from_secs(60));
    assert_eq!(info.status, 200);
    assert!(h.progress().has_restarted, "has_restarted is set");
    assert_eq!(h.progress().attempts, 0, "a lost upload spends no retry");
    assert_object(&server, "lost.bin", &src);
}

#[test]
fn an_upload_the_server_lost_mid_way_restarts_from_part_one() {
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 lost upload", Kind::Moto);
    let src = write_file(tmp.path(), "l.bin", 40 * MIB, 6);
    let (_, b) = builder(&tmp.path().join("store"), &server);
    // moto may not answer at all a part whose upload it aborted meanwhile: a short
    // response timeout bounds that wait (a timeout spends a retry).
    let up = b
        .max_bandwidth(Some(16 * MIB))
        .response_timeout(Duration::from_secs(5))
        .open()
        .unwrap();
    let (h, upload_id) = part_way(&up, &server, "lost.bin", &src, 2);
    server.abort("lost.bin", &upload_id);
    let info = completed(&h, Duration::from_secs(120));
    assert_eq!(info.status, 200);
    assert!(h.progress().has_restarted, "has_restarted is set");
    // moto 5.2.5 answers a part sent to an aborted upload with a 500 (a bug in its
    // UploadPart), or not at all, which spends one retry; the ListParts of the next
    // attempt then says NoSuchUpload.
    assert!(h.progress().attempts <= 1, "{:?}", h.progress());
    assert_object(&server, "lost.bin", &src);
}

#[test]
fn bad_s3_requests_are_typed_errors_and_persist_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = write_file(tmp.path(), "x.bin", KIB, 1);
    let up = fast(&store)
        .credentials("s3", |_: &background_transfer::CredentialRequest| {
            Ok(Credentials::S3(S3Keys::new("k", "s")))
        })
        .open()
        .unwrap();
    let ep = "http://127.0.0.1:9";
    let long_key = "k".repeat(1025);
    let cases: Vec<(&str, S3Object)> = vec![
        ("empty bucket", S3Object::new(ep, "", "k")),
        ("empty key", S3Object::new(ep, BUCKET, "")),
        (
            "key over 1,024 bytes",
            S3Object::new(ep, BUCKET, long_key.as_str()),
        ),
        (
            "part size under 5 MiB",
            object(ep, "k").part_size(5 * MIB - 1),
        ),
        (
            "part size over 5 GiB",
            object(ep, "k").part_size((5 << 30) + 1),
        ),
        (
            "unregistered provider",
            object(ep, "k").credentials("nobody"),
        ),
        ("bad metadata", object(ep, "k").metadata("a b", "v")),
        ("no endpoint host", S3Object::new("http://", BUCKET, "k")),
    ];
    for (what, obj) in cases {
        let err = up
            .create_upload(UploadRequest::s3(obj, &src))
            .expect_err(what);
        assert!(
            matches!(
                err,
                Error::InvalidRequest { .. }
                    | Error::InvalidUrl { .. }
                    | Error::InvalidHeader { .. }
                    | Error::Credentials { .. }
            ),
            "{what}: {err:?}"
        );
        eprintln!("{what}: {err}");
    }
    // A file that needs more than 10,000 parts even at 5 GiB each: 48.8 TiB, sparse, on
    // tmpfs (ext4 stops at 16 TiB).
    let huge = 10_000 * (5u64 << 30) + 1;
    let shm = tempfile::tempdir_in("/dev/shm").expect("a directory on /dev/shm (tmpfs)");
    let path = shm.path().join("huge.bin");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(huge))
        .expect("a 48.8 TiB sparse file on tmpfs");
    let err = up
        .create_upload(UploadRequest::s3(object(ep, "huge"), &path))
        .expect_err("a file too large for 10,000 parts");
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("10000 parts"), "{err}");
    assert!(up.uploads().is_empty(), "nothing was created");
    up.shutdown().unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.uploads().is_empty(), "nothing was persisted");
}

/// A scripted S3 endpoint for the answers real servers cannot be made to give: it
/// creates upload `U1`, takes every part (ETag `"eN"`), and answers Complete, a part
/// and HEAD as the test says.
struct Scripted {
    complete: Vec<Action>,
    part: Option<(u32, Action)>,
    head: Action,
}

fn scripted(s: Scripted) -> TestServer {
    let complete = std::sync::Mutex::new(std::collections::VecDeque::from(s.complete));
    TestServer::start(Behavior::handler(move |head, _| {
        let q = head.path.split_once('?').map_or("", |(_, q)| q);
        let has = |key: &str| q.split('&').any(|kv| kv.split('=').next() == Some(key));
        match head.method.as_str() {
            "POST" if has("uploads") => Action::respond(
                200,
                "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>uploads\
                 </Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>",
            ),
            "PUT" => {
                let n: u32 = q
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("partNumber="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                match &s.part {
                    Some((bad, action)) if *bad == n => action.clone(),
                    _ => Action::respond_with_headers(200, &[("ETag", &format!("\"e{n}\""))], ""),
                }
            }
            "POST" => complete
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Action::respond(200, "<CompleteMultipartUploadResult/>")),
            "HEAD" => s.head.clone(),
            _ => Action::respond(405, ""),
        }
    }))
}

fn s3_error(status: u16, code: &str) -> Action {
    Action::respond(
        status,
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>said the server</Message></Error>"),
    )
}

fn scripted_upload(dir: &Path, srv: &TestServer, size: u64) -> (Uploader, Upload) {
    let src = write_file(dir, "s.bin", size, 31);
    let up = fast(&dir.join("store"))
        .credentials("s3", |_: &background_transfer::CredentialRequest| {
            Ok(Credentials::S3(S3Keys::new("k", "s")))
        })
        .open()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", srv.port());
    let h = up
        .create_upload(UploadRequest::s3(object(&endpoint, "k"), &src))
        .unwrap();
    (up, h)
}

#[test]
fn a_complete_answered_no_such_upload_checks_the_object_before_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 11 * MIB;
    // The object is there with its size: an earlier Complete worked.
    let srv = scripted(Scripted {
        complete: vec![s3_error(404, "NoSuchUpload")],
        part: None,
        head: Action::respond_with_headers(200, &[("Content-Length", &size.to_string())], ""),
    });
    let (_up, h) = scripted_upload(tmp.path(), &srv, size);
    let info = completed(&h, Duration::from_secs(30));
    assert_eq!(info.status, 200);
    assert!(!h.progress().has_restarted);
    let methods: Vec<String> = srv.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        methods.last().map(String::as_str),
        Some("HEAD"),
        "{methods:?}"
    );

    // Not there (or not whole): the upload starts again from part 1.
    let tmp = tempfile::tempdir().unwrap();
    let srv = scripted(Scripted {
        complete: vec![s3_error(404, "NoSuchUpload")],
        part: None,
        head: Action::respond(404, ""),
    });
    let (_up, h) = scripted_upload(tmp.path(), &srv, size);
    completed(&h, Duration::from_secs(30));
    assert!(h.progress().has_restarted, "started again from part 1");
    let creates = srv
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("uploads="))
        .count();
    assert_eq!(creates, 2, "a new multipart upload");
}

#[test]
fn a_damaged_part_is_a_final_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = scripted(Scripted {
        complete: vec![],
        part: Some((2, s3_error(400, "BadDigest"))),
        head: Action::respond(404, ""),
    });
    let (_up, h) = scripted_upload(tmp.path(), &srv, 11 * MIB);
    let err = ended(&h, Duration::from_secs(30)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Service { status: 400, .. }), "{err:?}");
    assert!(
        text.contains("BadDigest") && text.contains("part 2"),
        "{text}"
    );
    assert_eq!(h.progress().attempts, 0, "a damaged part is not retried");
    // Each part carried its MD5.
    let parts: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(parts.iter().all(|r| r.header("content-md5").is_some()));
}

#[test]
fn slow_down_and_a_200_error_document_are_retried_and_entity_too_small_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = scripted(Scripted {
        complete: vec![
            Action::respond_with_headers(
                503,
                &[("Retry-After", "1")],
                "<Error><Code>SlowDown</Code><Message>Reduce your request rate</Message></Error>",
            ),
            // S3 may fail a Complete after its 200 headers went out.
            s3_error(200, "InternalError"),
        ],
        part: None,
        head: Action::respond(404, ""),
    });
    let started = Instant::now();
    let (_up, h) = scripted_upload(tmp.path(), &srv, 11 * MIB);
    completed(&h, Duration::from_secs(30));
    assert_eq!(h.progress().attempts, 2, "two retries spent");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let lists = srv.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(lists, 2, "each retry asked ListParts first");
    // This server has no ListParts (405): the retries trust the journaled parts, so no
    // part went twice.
    let puts = srv.requests().iter().filter(|r| r.method == "PUT").count();
    assert_eq!(puts, 3, "11 MiB in 5 MiB parts, each sent once");

    let tmp = tempfile::tempdir().unwrap();
    let srv = scripted(Scripted {
        complete: vec![s3_error(400, "EntityTooSmall")],
        part: None,
        head: Action::respond(404, ""),
    });
    let (_up, h) = scripted_upload(tmp.path(), &srv, 11 * MIB);
    let err = ended(&h, Duration::from_secs(30)).unwrap_err();
    assert!(
        err.to_string().contains(&format!("parts of {PART} bytes")),
        "{err}"
    );
}

#[test]
fn virtual_hosted_buckets_are_signed_and_stored_on_s3s() {
    use crate::support::connect_proxy::ConnectProxy;
    use crate::support::s3::S3S_DOMAIN;
    let tmp = tempfile::tempdir().unwrap();
    let server = s3_server!("S3 virtual-hosted", Kind::S3sFs);
    let proxy = ConnectProxy::start();
    let (_, b) = builder(&tmp.path().join("store"), &server);
    let up = b.proxy(Some(proxy.url())).open().unwrap();
    // `uploads.s3.test:PORT`: the bucket in the host name, which the signature covers.
    let endpoint = format!("http://{S3S_DOMAIN}:{}", server.port);
    for (key, size) in [("vhost/small.bin", KIB), ("vhost/multi.bin", 12 * MIB)] {
        let src = write_file(tmp.path(), &key.replace('/', "-"), size, size);
        let obj = object(&endpoint, key).virtual_hosted(true);
        let expected = format!("http://{BUCKET}.{S3S_DOMAIN}:{}/{key}", server.port);
        assert_eq!(obj.url().unwrap(), expected);
        let h = up.create_upload(UploadRequest::s3(obj, &src)).unwrap();
        let info = completed(&h, Duration::from_secs(60));
        assert_eq!(
            info.url, expected,
            "the response names the object's URL, unsigned"
        );
        assert_object(&server, key, &src);
    }
}

#[test]
fn a_kept_error_answer_never_holds_the_credentials_it_echoes() {
    let tmp = tempfile::tempdir().unwrap();
    let token = "tok/en+secret=";
    let secret = "very-secret-key";
    // Like AWS's SignatureDoesNotMatch: the error echoes the signed request (whose query
    // holds the session token and the signature), and this one repeats it in its
    // message too.
    let srv = TestServer::start(Behavior::handler(|head, _| {
        Action::respond(
            403,
            format!(
                "<Error><Code>SignatureDoesNotMatch</Code><Message>for {}</Message>\
                 <CanonicalRequest>PUT\n{}</CanonicalRequest></Error>",
                head.path, head.path
            ),
        )
    }));
    let src = write_file(tmp.path(), "t.bin", KIB, 2);
    let store = tmp.path().join("store");
    let up = fast(&store)
        .credentials("s3", move |_: &background_transfer::CredentialRequest| {
            Ok(Credentials::S3(
                S3Keys::new("AKID", secret).session_token(token),
            ))
        })
        .open()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{}", srv.port());
    let h = up
        .create_upload(UploadRequest::s3(object(&endpoint, "k"), &src))
        .unwrap();
    let err = ended(&h, Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, Error::Service { status: 403, .. }), "{err:?}");
    let seen = srv.requests();
    assert!(
        seen[0]
            .path
            .contains("X-Amz-Security-Token=tok%2Fen%2Bsecret%3D"),
        "the request carried the token: {}",
        seen[0].path
    );
    let signature = seen[0]
        .path
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Signature="))
        .expect("a presigned URL")
        .to_string();
    let mut body = String::new();
    std::io::Read::read_to_string(&mut h.response_body().unwrap(), &mut body).unwrap();
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");
    assert!(body.contains("X-Amz-Signature=<redacted>"), "{body}");
    up.shutdown().unwrap();
    for needle in [token, "tok%2Fen%2Bsecret%3D", secret, signature.as_str()] {
        assert_no_bytes(&store, needle.as_bytes());
    }
}

#[test]
fn content_type_metadata_and_storage_class_reach_the_object_and_are_signed() {
    let tmp = tempfile::tempdir().unwrap();
    // moto keeps them (read back with HEAD); s3s-fs checks that the signature covers them.
    for kind in [Kind::Moto, Kind::S3sFs] {
        let server = s3_server!("S3 object options", kind);
        let (_, b) = builder(&tmp.path().join(format!("store-{kind:?}")), &server);
        let up = b.open().unwrap();
        for (key, size) in [("opts/small.bin", KIB), ("opts/multi.bin", 12 * MIB)] {
            let src = write_file(tmp.path(), &key.replace('/', "-"), size, 12);
            let mut obj = object(&server.endpoint(), key)
                .content_type("video/mp4")
                .metadata("Device", "cam1");
            if kind == Kind::Moto {
                obj = obj.storage_class("STANDARD_IA");
            }
            let h = up.create_upload(UploadRequest::s3(obj, &src)).unwrap();
            completed(&h, Duration::from_secs(60));
            assert_object(&server, key, &src);
            if kind == Kind::Moto {
                let headers = server.head_object(key);
                let get = |n: &str| {
                    headers
                        .iter()
                        .find(|(h, _)| h.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(get("content-type"), Some("video/mp4"), "{key}: {headers:?}");
                assert_eq!(get("x-amz-meta-device"), Some("cam1"), "{key}: {headers:?}");
                assert_eq!(get("x-amz-storage-class"), Some("STANDARD_IA"), "{key}");
            }
        }
    }
}
