//! Google Cloud Storage resumable uploads against gcp-storage-emulator (in memory; it
//! answers in HTTP/1.0, sends `Range: bytes=0-0` for an empty session, refuses an
//! overlapping chunk with 400 and cannot DELETE a session). Objects are read back and
//! compared byte for byte; interrupted uploads (SIGKILL, a network cut, a session the
//! server lost) send again only what the server lacks.
//!
//! Built with `--features gcs`. Without the emulator these tests print SKIPPED, except
//! in CI, where they fail. The SIGKILL test re-runs this binary as its child, with
//! `BGXFER_GCS_CHILD` set.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use background_transfer::{
    CredentialRequest, Credentials, Error, GcsUpload, ProviderError, Status, UploadRequest,
    UploaderBuilder,
};

use crate::support::child::{self, mark};
use crate::support::cloud::{Cloud, Emulator};
use crate::support::proxy::Proxy;
use crate::support::{
    assert_no_bytes, completed, ended, fast, sha256_file, sha256_hex, wait_for, wait_until,
    write_file, KIB, MIB,
};

pub const CHILD_ENV: &str = "BGXFER_GCS_CHILD";
const STORE_ENV: &str = "BGXFER_GCS_STORE";
const FILE_ENV: &str = "BGXFER_GCS_FILE";
const URL_ENV: &str = "BGXFER_GCS_URL";
const RATE_ENV: &str = "BGXFER_GCS_RATE";

/// The chunk the tests use: 16 × 256 KiB. (gcp-storage-emulator rewrites the whole
/// upload for every chunk it takes, so small chunks make a large upload quadratic.)
const CHUNK: u64 = 4 * MIB;

macro_rules! emulator {
    ($test:expr) => {
        match Cloud::start($test, Emulator::Gcs) {
            Some(s) => s,
            None => return,
        }
    };
}

/// A bearer-token provider, counting its calls.
fn bearer(
    calls: Arc<AtomicU32>,
) -> impl Fn(&CredentialRequest) -> Result<Credentials, ProviderError> {
    move |_: &CredentialRequest| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Ok(Credentials::Headers(vec![(
            "Authorization".into(),
            format!("Bearer ya29.gcs-token-{n:04}"),
        )]))
    }
}

fn builder(dir: &Path) -> (Arc<AtomicU32>, UploaderBuilder) {
    let calls = Arc::new(AtomicU32::new(0));
    let b = fast(dir)
        .response_timeout(Duration::from_secs(60))
        .credentials("gcs", bearer(calls.clone()));
    (calls, b)
}

fn request(url: &str, src: &Path) -> UploadRequest {
    UploadRequest::gcs(GcsUpload::initiation(url).chunk_size(CHUNK), src).credentials("gcs")
}

fn assert_object(cloud: &Cloud, name: &str, src: &Path) {
    let got = cloud
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not on the emulator"));
    assert_eq!(
        sha256_hex(&got),
        sha256_file(src),
        "{name} differs from {} ({} bytes back)",
        src.display(),
        got.len()
    );
}

#[test]
fn objects_of_every_size_arrive_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = emulator!("GCS objects of every size");
    let store = tmp.path().join("store");
    let (calls, b) = builder(&store);
    let up = b.max_concurrent(3).open().unwrap();
    let sizes = [0, KIB, CHUNK - 1, CHUNK, 37 * MIB, 200 * MIB];
    let mut uploads = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let src = write_file(tmp.path(), &format!("f{i}.bin"), size, i as u64 + 1);
        let name = format!("size-{size}.bin");
        let url = Cloud::initiation_url(&cloud.base(), &name);
        let upload = GcsUpload::initiation(url)
            .chunk_size(CHUNK)
            .content_type("video/mp4");
        let h = up
            .create_upload(UploadRequest::gcs(upload, &src).credentials("gcs"))
            .unwrap();
        uploads.push((h, name, src, size));
    }
    for (h, name, src, size) in &uploads {
        let info = completed(h, Duration::from_secs(300));
        assert_eq!(info.status, 200, "{name}");
        assert_eq!(h.progress().bytes_acknowledged, *size, "{name}");
        assert_eq!(h.progress().attempts, 0, "{name}: no retry spent");
        assert_object(&cloud, name, src);
        let mut kept = String::new();
        std::io::Read::read_to_string(&mut h.response_body().unwrap(), &mut kept).unwrap();
        assert!(
            kept.contains("storage#object"),
            "{name}: the object's metadata is kept"
        );
    }
    assert_eq!(
        cloud.content_type("size-1024.bin").as_deref(),
        Some("video/mp4"),
        "X-Upload-Content-Type reached the object"
    );
    assert!(calls.load(Ordering::SeqCst) >= sizes.len() as u32);
    up.shutdown().unwrap();
    assert_no_bytes(&store, b"gcs-token-");
}

#[test]
fn a_session_the_program_started_is_continued() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = emulator!("GCS session given by the program");
    let size = 5 * MIB + 3;
    let src = write_file(tmp.path(), "s.bin", size, 9);
    let uri = cloud.gcs_session("given.bin", size);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::gcs(
            GcsUpload::session(uri).chunk_size(CHUNK),
            &src,
        ))
        .unwrap();
    let info = completed(&h, Duration::from_secs(60));
    assert_eq!(info.status, 200);
    assert_object(&cloud, "given.bin", &src);
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
    let (_, b) = builder(Path::new(&env(STORE_ENV)));
    let up = b.max_bandwidth(Some(rate)).open().unwrap();
    let h = match up.uploads().into_iter().next() {
        Some(h) => h,
        None => up
            .create_upload(request(&env(URL_ENV), Path::new(&env(FILE_ENV))))
            .unwrap(),
    };
    mark(format_args!("ID {}", h.id()));
    let _ = h.wait_timeout(Duration::from_secs(120));
    mark("DONE");
}

#[test]
fn ten_sigkills_resend_at_most_one_chunk_each() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = emulator!("GCS SIGKILL x10");
    let proxy = Proxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap());
    let size = 200 * MIB;
    let src = write_file(tmp.path(), "big.bin", size, 77);
    let store = tmp.path().join("store");
    let url = Cloud::initiation_url(&format!("http://127.0.0.1:{}", proxy.port()), "kill.bin");
    let spawn = || {
        child::spawn(
            CHILD_ENV,
            "upload",
            &[
                (STORE_ENV, &store),
                (FILE_ENV, &src),
                (URL_ENV, &url),
                (RATE_ENV, &(24 * MIB).to_string()),
            ],
        )
    };
    let kills = child::sigkill_loop(
        &proxy,
        10,
        (CHUNK / 2, 3 * CHUNK),
        0x6c,
        Duration::from_secs(240),
        spawn,
    );
    assert_eq!(kills, 10, "the upload finished before the tenth kill");
    let (_, b) = builder(&store);
    let up = b.open().unwrap();
    let h = up
        .uploads()
        .into_iter()
        .next()
        .expect("the upload survived");
    let info = completed(&h, Duration::from_secs(180));
    assert_eq!(info.status, 200);
    assert!(!h.progress().has_restarted, "never started a new session");
    assert_object(&cloud, "kill.bin", &src);
    // Status queries and the initiation carry no body: what the proxy counted beyond
    // the file is headers and chunks sent again.
    let sent = proxy.bytes_to_server();
    let resent = sent.saturating_sub(size);
    eprintln!(
        "GCS SIGKILL x{kills}: {sent} bytes reached the server for a {size}-byte object: \
         {resent} bytes ({:.2} chunks) sent again in all, {:.2} chunks per kill",
        resent as f64 / CHUNK as f64,
        resent as f64 / CHUNK as f64 / kills as f64
    );
    assert!(
        resent <= kills as u64 * CHUNK,
        "{resent} bytes sent again: more than one chunk per interruption"
    );
}

#[test]
fn a_network_cut_during_a_chunk_resends_only_that_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = emulator!("GCS network cut");
    let proxy = Proxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap());
    let size = 37 * MIB;
    let src = write_file(tmp.path(), "cut.bin", size, 5);
    let (_, b) = builder(&tmp.path().join("store"));
    let up = b.open().unwrap();
    // The emulator speaks HTTP/1.0: one connection per request, so the cut falls on
    // the connection of the fourth chunk, in its middle.
    proxy.cut_after(3 * CHUNK + CHUNK / 2);
    let url = Cloud::initiation_url(&format!("http://127.0.0.1:{}", proxy.port()), "cut.bin");
    let h = up.create_upload(request(&url, &src)).unwrap();
    completed(&h, Duration::from_secs(120));
    assert!(proxy.cuts() >= 1, "the cut happened");
    assert_object(&cloud, "cut.bin", &src);
    let resent = proxy.bytes_to_server().saturating_sub(size);
    eprintln!("GCS network cut: {resent} bytes sent again (chunk size {CHUNK})");
    assert!(resent <= CHUNK, "{resent} bytes sent again for one cut");
}

/// Starts a throttled upload, waits until the server acknowledged `bytes`, pauses it.
fn paused_after(
    up: &background_transfer::Uploader,
    req: UploadRequest,
    bytes: u64,
) -> background_transfer::Upload {
    let h = up.create_upload(req).unwrap();
    let ok = wait_until(Duration::from_secs(30), || {
        h.progress().bytes_acknowledged >= bytes
    });
    assert!(
        ok,
        "never got {bytes} bytes acknowledged: {:?}",
        h.progress()
    );
    h.pause().unwrap();
    assert!(wait_for(&h, Duration::from_secs(10), |s| {
        s == Status::PausedByApplication
    }));
    h
}

#[test]
fn a_session_the_server_lost_is_started_again_from_the_initiation_url() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cloud = emulator!("GCS session lost: new session");
    let src = write_file(tmp.path(), "l.bin", 24 * MIB, 6);
    let (_, b) = builder(&tmp.path().join("store"));
    let up = b.max_bandwidth(Some(8 * MIB)).open().unwrap();
    let url = Cloud::initiation_url(&cloud.base(), "lost.bin");
    let h = paused_after(&up, request(&url, &src), 2 * CHUNK);
    cloud.restart();
    h.resume().unwrap();
    let info = completed(&h, Duration::from_secs(60));
    assert_eq!(info.status, 200);
    assert!(h.progress().has_restarted, "has_restarted is set");
    assert_eq!(h.progress().attempts, 0, "a lost session spends no retry");
    assert_object(&cloud, "lost.bin", &src);
}

#[test]
fn a_given_session_the_server_lost_is_a_typed_final_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cloud = emulator!("GCS given session lost: error");
    let size = 24 * MIB;
    let src = write_file(tmp.path(), "g.bin", size, 8);
    let uri = cloud.gcs_session("given-lost.bin", size);
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(8 * MIB))
        .open()
        .unwrap();
    let req = UploadRequest::gcs(GcsUpload::session(uri).chunk_size(CHUNK), &src);
    let h = paused_after(&up, req, 2 * CHUNK);
    cloud.restart();
    h.resume().unwrap();
    let err = ended(&h, Duration::from_secs(30)).expect_err("the session is gone");
    match &err {
        Error::Service { status, code, .. } => {
            assert_eq!(*status, 404);
            assert_eq!(code, "SessionExpired");
        }
        other => panic!("expected Error::Service SessionExpired, got {other:?}"),
    }
    assert!(err.to_string().contains("initiation URL"), "{err}");
    assert_eq!(h.status(), Status::Error);
    assert_eq!(h.progress().attempts, 0, "a final error spends no retry");
}

#[test]
fn cancel_asks_the_server_to_end_the_session_and_a_501_is_no_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = emulator!("GCS cancel");
    let src = write_file(tmp.path(), "c.bin", 24 * MIB, 2);
    let (_, b) = builder(&tmp.path().join("store"));
    let up = b.max_bandwidth(Some(8 * MIB)).open().unwrap();
    let url = Cloud::initiation_url(&cloud.base(), "cancel.bin");
    let h = paused_after(&up, request(&url, &src), CHUNK);
    h.cancel().unwrap();
    assert_eq!(h.status(), Status::Canceled);
    assert!(
        h.error().is_none(),
        "a session the server cannot delete is no error"
    );
    assert!(cloud.get("cancel.bin").is_none());
}

#[test]
fn bad_gcs_requests_are_typed_errors_and_persist_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = write_file(tmp.path(), "x.bin", KIB, 1);
    let (_, b) = builder(&store);
    let up = b.open().unwrap();
    let url = "http://127.0.0.1:9/upload/storage/v1/b/b/o?uploadType=resumable&name=x";
    let cases: Vec<(&str, UploadRequest)> = vec![
        (
            "chunk not a multiple of 256 KiB",
            UploadRequest::gcs(GcsUpload::initiation(url).chunk_size(300 * KIB), &src),
        ),
        (
            "chunk of 0 bytes",
            UploadRequest::gcs(GcsUpload::initiation(url).chunk_size(0), &src),
        ),
        (
            "headers on a given session",
            UploadRequest::gcs(GcsUpload::session(url), &src)
                .header("x-goog-meta-a", "b")
                .unwrap(),
        ),
        (
            "a content type on a given session",
            UploadRequest::gcs(GcsUpload::session(url).content_type("a/b"), &src),
        ),
        (
            "an unregistered provider",
            UploadRequest::gcs(GcsUpload::initiation(url), &src).credentials("nobody"),
        ),
        (
            "not a URL",
            UploadRequest::gcs(GcsUpload::initiation("nope"), &src),
        ),
    ];
    for (what, req) in cases {
        let err = up.create_upload(req).expect_err(what);
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
    assert!(up.uploads().is_empty(), "nothing was created");
    up.shutdown().unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.uploads().is_empty(), "nothing was persisted");
}

/// A scripted GCS endpoint for answers the emulator cannot be made to give: it keeps
/// only half of the last chunk (308 with the shorter `Range`), then holds every byte
/// without finalizing (308 with `Range: bytes=0-(TOTAL-1)`) until the client sends the
/// empty `bytes */TOTAL` that finalizes. Its session URI names the server as
/// `session_host` (`localhost` makes it another origin than the upload's 127.0.0.1).
fn scripted(size: u64, session_host: &'static str) -> crate::support::TestServer {
    use crate::support::{Action, Behavior, TestServer};
    let stored = Arc::new(std::sync::Mutex::new(0u64));
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let p = port.clone();
    let srv = TestServer::start(Behavior::handler(move |head, _| {
        let mut have = stored.lock().unwrap();
        let range = |n: u64| format!("bytes=0-{}", n.saturating_sub(1));
        match head.method.as_str() {
            "POST" => {
                let loc = format!(
                    "http://{session_host}:{}/session/1?upload_id=u1",
                    p.get().copied().unwrap_or(0)
                );
                Action::respond_with_headers(200, &[("Location", &loc)], "")
            }
            "PUT" => {
                let cr = head.header("content-range").unwrap_or("");
                if cr == format!("bytes */{size}") && *have == size {
                    return Action::respond(200, format!("{{\"size\": \"{size}\"}}"));
                }
                if let Some((a, b)) = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('/'))
                    .and_then(|(ab, _)| ab.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
                {
                    let end = b + 1;
                    // The last chunk: keep half of it the first time.
                    *have = if end == size && *have < a + (end - a) / 2 && a > 0 {
                        a + (end - a) / 2
                    } else {
                        end
                    };
                }
                Action::respond_with_headers(308, &[("Range", &range(*have))], "")
            }
            _ => Action::respond(405, ""),
        }
    }));
    let _ = port.set(srv.port());
    srv
}

#[test]
fn a_partly_kept_last_chunk_is_sent_on_and_a_full_unfinalized_upload_is_finalized() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 3 * CHUNK + 5;
    let srv = scripted(size, "127.0.0.1");
    let src = write_file(tmp.path(), "p.bin", size, 3);
    let (_, b) = builder(&tmp.path().join("store"));
    let up = b.open().unwrap();
    let h = up
        .create_upload(request(
            &srv.url("/upload?uploadType=resumable&name=p"),
            &src,
        ))
        .unwrap();
    let info = completed(&h, Duration::from_secs(30));
    assert_eq!(info.status, 200);
    assert_eq!(h.progress().attempts, 0);
    assert_eq!(h.progress().bytes_acknowledged, size);
    assert!(
        !info.url.contains("upload_id"),
        "no session id kept: {}",
        info.url
    );
    let ranges: Vec<String> = srv
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(|r| r.header("content-range").map(str::to_string))
        .collect();
    assert_eq!(
        ranges.last().map(String::as_str),
        Some(format!("bytes */{size}").as_str()),
        "the finalizing request: {ranges:?}"
    );
    // The last chunk was sent again from where the server stopped keeping it.
    let half = 3 * CHUNK + 2;
    assert!(
        ranges.contains(&format!("bytes {half}-{}/{size}", size - 1)),
        "{ranges:?}"
    );
}

#[test]
fn the_bearer_token_goes_only_to_the_origin_the_upload_was_made_for() {
    let tmp = tempfile::tempdir().unwrap();
    let size = CHUNK + 1;
    // The initiation on 127.0.0.1 answers with a session URI on `localhost`: another
    // origin (the same server, so the test can see what it was sent).
    let srv = scripted(size, "localhost");
    let src = write_file(tmp.path(), "t.bin", size, 4);
    let (_, b) = builder(&tmp.path().join("store"));
    let up = b.open().unwrap();
    let h = up
        .create_upload(request(
            &srv.url("/upload?uploadType=resumable&name=t"),
            &src,
        ))
        .unwrap();
    completed(&h, Duration::from_secs(30));
    let reqs = srv.requests();
    let post = reqs.iter().find(|r| r.method == "POST").unwrap();
    assert!(
        post.header("authorization").is_some(),
        "the initiation has it"
    );
    for r in reqs.iter().filter(|r| r.method == "PUT") {
        assert!(
            r.header("authorization").is_none(),
            "a request to the session on another origin carried the token"
        );
    }
}
