//! tus 1.0 against the real tus server (`@tus/server` + `@tus/file-store` on Node.js,
//! `tests/tus-server/`): files arrive byte-exact, and an upload interrupted by a network
//! cut, a SIGKILLed client or a restarted server continues from the server's offset; an
//! upload the server lost starts again from 0; cancel deletes it on the server.
//!
//! Without Node.js or the installed server these tests print why and return, except in
//! CI (`CI=true`), where they fail. The SIGKILL test re-runs this binary as its child,
//! with `BGXFER_TUS_CHILD` set, filtered to its `child_process` entry point (which calls
//! [`child_process`] here).

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{Error, Event, ResponseInfo, Status, Upload, UploadRequest};

use crate::support;
use crate::support::child::{self, mark};
use crate::support::proxy::{Proxy, PROXY_BUFFER};
use crate::support::tus::{head_status, upload_id, TusOptions, TusRequest, TusServer};
use crate::support::{
    completed, fast, sha256_file, wait_for, wait_until, write_file, Action, Behavior, TestServer,
    KIB, MIB,
};

pub const CHILD_ENV: &str = "BGXFER_TUS_CHILD";
const STORE_ENV: &str = "BGXFER_TUS_STORE";
const FILE_ENV: &str = "BGXFER_TUS_FILE";
const URL_ENV: &str = "BGXFER_TUS_URL";
const RATE_ENV: &str = "BGXFER_TUS_RATE";

/// A tus server for this test, or return (skipped) when it cannot run outside CI.
macro_rules! tus_server {
    ($test:expr, $dir:expr) => {
        tus_server!($test, $dir, TusOptions::default())
    };
    ($test:expr, $dir:expr, $opts:expr) => {
        match TusServer::start_with($test, $dir, $opts) {
            Some(s) => s,
            None => return,
        }
    };
}

/// The stored file of a completed upload is the source, byte for byte. Returns its id.
fn assert_stored(tus: &TusServer, info: &ResponseInfo, src: &Path) -> String {
    let id = upload_id(&info.url).to_string();
    let data = tus.data_file(&id);
    assert!(data.is_file(), "{} is not in the tus store", data.display());
    assert_eq!(
        sha256_file(&data),
        sha256_file(src),
        "the stored {} differs from {}",
        data.display(),
        src.display()
    );
    id
}

/// The first request at or after `from` matching `pred`, with its index.
fn find(
    reqs: &[TusRequest],
    from: usize,
    pred: impl Fn(&TusRequest) -> bool,
) -> Option<(usize, &TusRequest)> {
    reqs.iter().enumerate().skip(from).find(|(_, r)| pred(r))
}

/// After request `from`: a HEAD on the upload that reported offset X, then a PATCH from
/// exactly X. Returns X.
fn assert_resumed_from_head(reqs: &[TusRequest], from: usize, id: &str) -> u64 {
    let Some((i, head)) = find(reqs, from, |r| {
        r.method == "HEAD" && r.upload_id() == Some(id) && r.status == Some(200)
    }) else {
        panic!("no successful HEAD on {id} after request {from}: {reqs:#?}");
    };
    let x = head.response_offset.expect("HEAD answers Upload-Offset");
    let Some((_, patch)) = find(reqs, i + 1, |r| {
        r.method == "PATCH" && r.upload_id() == Some(id)
    }) else {
        panic!("no PATCH on {id} after the HEAD: {reqs:#?}");
    };
    assert_eq!(
        patch.offset,
        Some(x),
        "the PATCH after the HEAD starts at the server's offset"
    );
    x
}

fn rate_limited(dir: &Path, bytes_per_sec: u64) -> background_transfer::UploaderBuilder {
    fast(dir).max_bandwidth(Some(bytes_per_sec))
}

#[test]
fn files_of_0_b_1_mib_and_100_mib_arrive_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("files arrive byte-exact", &tmp.path().join("tus"));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let mut uploads = Vec::new();
    for (i, size) in [0, MIB, 100 * MIB].into_iter().enumerate() {
        let name = format!("file-{i}.bin");
        let src = write_file(tmp.path(), &name, size, 40 + i as u64);
        let h = up
            .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(None))
            .unwrap();
        uploads.push((name, size, src, h));
    }
    for (name, size, src, h) in &uploads {
        let info = completed(h, Duration::from_secs(50));
        assert!(info.is_resumable);
        assert!(
            matches!(info.status, 200 | 204),
            "{name}: status {}",
            info.status
        );
        let id = assert_stored(&tus, &info, src);
        let p = h.progress();
        assert_eq!(p.status, Status::Completed);
        assert_eq!((p.bytes_sent, p.bytes_acknowledged), (*size, *size));
        assert!(!p.has_restarted);
        // The metadata file: the declared length and the file name.
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tus.meta_file(&id)).unwrap()).unwrap();
        assert_eq!(meta["size"], *size, "{meta}");
        assert_eq!(meta["metadata"]["filename"], name.as_str(), "{meta}");
        // HEAD first, then the whole file in one PATCH (the default chunk size). An
        // empty file gets its empty PATCH too: some servers only make the file then
        // (issue 19).
        let reqs = tus.requests_for(&id);
        let methods: Vec<&str> = reqs.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["HEAD", "PATCH"], "{reqs:#?}");
        assert_eq!(reqs[1].offset, Some(0));
        assert_eq!(reqs[1].content_length, Some(*size));
        assert_eq!(reqs[1].response_offset, Some(*size));
    }
    let posts = tus
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == Some(201))
        .count();
    assert_eq!(posts, 3, "one creation per upload");
    up.shutdown().unwrap();
}

#[test]
fn a_network_cut_resumes_from_the_servers_offset() {
    network_cut_resumes(false);
}

/// The same with `sendfile(2)`: the resumed PATCH sends the rest of the file from the
/// server's offset, from the page cache.
#[test]
fn a_network_cut_resumes_from_the_servers_offset_with_sendfile() {
    network_cut_resumes(true);
}

fn network_cut_resumes(sendfile: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // Relative Locations here (absolute ones everywhere else): both must work.
    let tus = tus_server!(
        "network cut",
        &tmp.path().join("tus"),
        TusOptions {
            relative: true,
            ..TusOptions::default()
        }
    );
    let proxy = Proxy::start(tus.addr());
    let size = 16 * MIB;
    let cut_at = 6 * MIB;
    let src = write_file(tmp.path(), "cut.bin", size, 7);
    proxy.cut_after(cut_at);
    let up = fast(&tmp.path().join("store"))
        .sendfile(sendfile)
        .open()
        .unwrap();
    let by_sendfile = background_transfer::sendfile_bytes();
    let h = up
        .create_upload(UploadRequest::put(proxy.url("/files/"), &src).tus(None))
        .unwrap();
    let info = completed(&h, Duration::from_secs(40));
    let by_sendfile = background_transfer::sendfile_bytes() - by_sendfile;
    let id = assert_stored(&tus, &info, &src);
    assert_eq!(proxy.cuts(), 1, "the proxy cut one connection");
    let p = h.progress();
    assert!(!p.has_restarted, "a cut resumes; it does not restart");
    assert_eq!(p.bytes_acknowledged, size);
    assert_eq!(p.attempts, 1, "the cut cost one retry");

    let reqs = tus.requests_for(&id);
    let (first, _) = find(&reqs, 0, |r| r.method == "PATCH").expect("a first PATCH");
    assert_eq!(reqs[first].offset, Some(0));
    assert!(!reqs[first].answered, "the first PATCH was cut: {reqs:#?}");
    let resumed = assert_resumed_from_head(&reqs, first + 1, &id);
    assert!(
        resumed > 0 && resumed <= cut_at,
        "resumed at {resumed}, cut after {cut_at} bytes"
    );
    if sendfile {
        // At least the resumed PATCH's bytes (no other test of this process uses
        // sendfile, so none are counted here that this one did not send).
        assert!(
            by_sendfile >= size - resumed,
            "{by_sendfile} bytes by sendfile"
        );
    }
    let sent_again = proxy.bytes_from_client().saturating_sub(size);
    let forwarded_again = proxy.bytes_to_server().saturating_sub(size);
    eprintln!(
        "network cut after {} KiB: resumed at the server's offset {} KiB; bytes sent again \
         (everything the client sent beyond the file's {} KiB, request heads included): {} \
         KiB ({sent_again} B), of which reached the server: {forwarded_again} B",
        cut_at / KIB,
        resumed / KIB,
        size / KIB,
        sent_again / KIB
    );
    assert!(
        sent_again <= MIB + PROXY_BUFFER as u64,
        "{sent_again} bytes sent again: more than a buffer"
    );
    up.shutdown().unwrap();
}

/// The body of the SIGKILL test's child process.
pub fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    assert_eq!(role, "upload", "unknown child role");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let rate: u64 = env(RATE_ENV).parse().unwrap();
    let up = rate_limited(Path::new(&env(STORE_ENV)), rate)
        .open()
        .unwrap();
    // A store that has the upload already (an earlier run was killed) continues it.
    let h = match up.uploads().into_iter().next() {
        Some(h) => h,
        None => up
            .create_upload(UploadRequest::put(env(URL_ENV), env(FILE_ENV)).tus(None))
            .unwrap(),
    };
    mark(format_args!("ID {}", h.id()));
    // The parent kills us long before this.
    let _ = h.wait_timeout(Duration::from_secs(60));
    mark("DONE");
}

#[test]
fn a_sigkilled_client_resumes_in_a_new_uploader() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("client SIGKILLed", &tmp.path().join("tus"));
    let proxy = Proxy::start(tus.addr());
    let size = 48 * MIB;
    let src = write_file(tmp.path(), "kill.bin", size, 9);
    let store = tmp.path().join("store");
    let mut child = child::spawn(
        CHILD_ENV,
        "upload",
        &[
            (STORE_ENV, &store),
            (FILE_ENV, &src),
            (URL_ENV, &proxy.url("/files/")),
            (RATE_ENV, &(16 * MIB).to_string()),
        ],
    );
    let id: u64 = child
        .wait_for_line("ID ", Duration::from_secs(20))
        .expect("the child never created its upload")["ID ".len()..]
        .trim()
        .parse()
        .unwrap();
    // Kill it a third of the way through.
    let Some(tus_id) = tus.wait_stored(size / 3, Duration::from_secs(20)) else {
        child.kill();
        panic!("the child's upload never got a third of the way");
    };
    child.kill();
    let stored_at_kill = tus.stored_len(&tus_id).unwrap();
    assert!(stored_at_kill < size, "the child finished before the kill");
    let requests_at_kill = tus.requests().len();

    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("the upload survived the kill");
    let info = completed(&h, Duration::from_secs(40));
    assert_eq!(
        assert_stored(&tus, &info, &src),
        tus_id,
        "the same tus upload"
    );
    assert_eq!(
        tus.upload_ids(),
        std::slice::from_ref(&tus_id),
        "no second creation"
    );
    assert!(!h.progress().has_restarted);
    let reqs = tus.requests();
    let resumed = assert_resumed_from_head(&reqs, requests_at_kill, &tus_id);
    assert!(resumed >= stored_at_kill.min(size) && resumed < size);
    let sent_again = proxy.bytes_from_client().saturating_sub(size);
    eprintln!(
        "client SIGKILLed with {} KiB of {} KiB stored: the new Uploader resumed at {} KiB; \
         bytes sent again: {} KiB ({sent_again} B)",
        stored_at_kill / KIB,
        size / KIB,
        resumed / KIB,
        sent_again / KIB
    );
    assert!(
        sent_again <= MIB + PROXY_BUFFER as u64,
        "{sent_again} bytes sent again"
    );
    up.shutdown().unwrap();
}

#[test]
fn a_restarted_server_gets_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tus = tus_server!("server restarted", &tmp.path().join("tus"));
    let size = 32 * MIB;
    let src = write_file(tmp.path(), "restart.bin", size, 11);
    let up = rate_limited(&tmp.path().join("store"), 16 * MIB)
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(None))
        .unwrap();
    let tus_id = tus
        .wait_stored(size / 4, Duration::from_secs(20))
        .expect("a quarter of the upload reached the server");
    tus.kill();
    let stored_at_kill = tus.stored_len(&tus_id).unwrap();
    assert!(stored_at_kill < size);
    let requests_at_kill = tus.requests().len();
    // Down for a moment: the client sees refused connections meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    tus.restart();
    let info = completed(&h, Duration::from_secs(40));
    assert_eq!(assert_stored(&tus, &info, &src), tus_id);
    assert!(!h.progress().has_restarted);
    let reqs = tus.requests();
    let resumed = assert_resumed_from_head(&reqs, requests_at_kill, &tus_id);
    eprintln!(
        "server SIGKILLed with {} KiB of {} KiB stored and restarted: resumed at {} KiB",
        stored_at_kill / KIB,
        size / KIB,
        resumed / KIB
    );
    assert!(resumed > 0);
    up.shutdown().unwrap();
}

/// Waits until the server has answered (or dropped) every request it got.
fn server_idle(tus: &TusServer) {
    assert!(
        wait_until(Duration::from_secs(10), || tus
            .requests()
            .iter()
            .all(|r| r.status.is_some())),
        "the server still has a request open: {:#?}",
        tus.requests()
    );
}

#[test]
fn an_upload_gone_between_attempts_restarts_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("gone between attempts", &tmp.path().join("tus"));
    let size = 8 * MIB;
    let src = write_file(tmp.path(), "gone.bin", size, 13);
    let up = rate_limited(&tmp.path().join("store"), 8 * MIB)
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(None))
        .unwrap();
    let old = tus
        .wait_stored(2 * MIB, Duration::from_secs(20))
        .expect("part of the upload reached the server");
    h.pause().unwrap();
    assert!(wait_for(&h, Duration::from_secs(10), |s| s
        == Status::PausedByApplication));
    server_idle(&tus);
    tus.delete_upload(&old);
    let before = tus.requests().len();
    h.resume().unwrap();
    let info = completed(&h, Duration::from_secs(30));
    let new = assert_stored(&tus, &info, &src);
    assert_ne!(new, old, "a new tus upload");
    let p = h.progress();
    assert!(p.has_restarted, "has_restarted is set: {p:?}");
    assert_eq!(p.bytes_acknowledged, size);
    let reqs = tus.requests();
    let (i, head) = find(&reqs, before, |r| r.method == "HEAD").expect("a HEAD");
    assert_eq!(head.upload_id(), Some(old.as_str()));
    assert!(matches!(head.status, Some(404 | 410)), "{head:?}");
    let (j, _) = find(&reqs, i, |r| r.method == "POST").expect("created again");
    let (_, patch) = find(&reqs, j, |r| r.method == "PATCH").expect("a PATCH");
    assert_eq!(patch.upload_id(), Some(new.as_str()));
    assert_eq!(patch.offset, Some(0), "from byte 0");
    up.shutdown().unwrap();
}

#[test]
fn an_upload_gone_mid_way_restarts_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("gone mid-way", &tmp.path().join("tus"));
    let size = 8 * MIB;
    let src = write_file(tmp.path(), "gone-mid.bin", size, 17);
    let up = rate_limited(&tmp.path().join("store"), 8 * MIB)
        .open()
        .unwrap();
    // Chunks, so that the server answers a PATCH after the upload vanished.
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(Some(256 * KIB)))
        .unwrap();
    let old = tus
        .wait_stored(2 * MIB, Duration::from_secs(20))
        .expect("part of the upload reached the server");
    tus.delete_upload(&old);
    let info = completed(&h, Duration::from_secs(30));
    let new = assert_stored(&tus, &info, &src);
    assert_ne!(new, old, "a new tus upload");
    let p = h.progress();
    assert!(p.has_restarted, "has_restarted is set: {p:?}");
    let reqs = tus.requests_for(&new);
    let first = reqs
        .iter()
        .find(|r| r.method == "PATCH")
        .expect("PATCHes to the new upload");
    assert_eq!(first.offset, Some(0), "from byte 0");
    up.shutdown().unwrap();
}

#[test]
fn an_expired_upload_restarts_from_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let expiration = Duration::from_secs(3);
    let tus = tus_server!(
        "expired",
        &tmp.path().join("tus"),
        TusOptions {
            expiration: Some(expiration),
            ..TusOptions::default()
        }
    );
    let size = MIB;
    let src = write_file(tmp.path(), "expire.bin", size, 19);
    let up = rate_limited(&tmp.path().join("store"), MIB).open().unwrap();
    let start = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(None))
        .unwrap();
    let old = tus
        .wait_stored(128 * KIB, Duration::from_secs(10))
        .expect("part of the upload reached the server");
    h.pause().unwrap();
    assert!(wait_for(&h, Duration::from_secs(10), |s| s
        == Status::PausedByApplication));
    // Past its expiration (counted from a moment before its creation).
    std::thread::sleep(
        (start + expiration + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    let before = tus.requests().len();
    h.resume().unwrap();
    let info = completed(&h, Duration::from_secs(20));
    let new = assert_stored(&tus, &info, &src);
    assert_ne!(new, old);
    assert!(h.progress().has_restarted);
    let reqs = tus.requests();
    let (_, head) = find(&reqs, before, |r| r.method == "HEAD").expect("a HEAD");
    assert_eq!(head.upload_id(), Some(old.as_str()));
    assert_eq!(
        head.status,
        Some(410),
        "an expired upload is gone: {head:?}"
    );
    up.shutdown().unwrap();
}

/// Starts a 16 MiB tus upload at 4 MiB/s and returns once the server holds 1 MiB of it.
fn upload_part_way(
    tus: &TusServer,
    dir: &Path,
    name: &str,
    seed: u64,
) -> (background_transfer::Uploader, Upload, String) {
    let src = write_file(dir, name, 16 * MIB, seed);
    let up = rate_limited(&dir.join("store"), 4 * MIB).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(None))
        .unwrap();
    let id = tus
        .wait_stored(MIB, Duration::from_secs(20))
        .expect("part of the upload reached the server");
    (up, h, id)
}

/// Waits until the server no longer has upload `id`: a HEAD answers 404 or 410.
fn assert_ended_on_server(tus: &TusServer, id: &str) {
    let url = format!("{}{id}", tus.endpoint());
    assert!(
        wait_until(Duration::from_secs(15), || matches!(
            head_status(&url),
            404 | 410
        )),
        "the upload is still on the server: HEAD answers {}",
        head_status(&url)
    );
}

#[test]
fn cancel_terminates_the_upload_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("cancel", &tmp.path().join("tus"));
    let (up, h, id) = upload_part_way(&tus, tmp.path(), "cancel.bin", 23);
    // (No HEAD before the cancel: this server makes a HEAD wait for the running PATCH's
    // lock, and ends that PATCH after 3 s to hand the lock over.)
    assert!(tus.meta_file(&id).is_file());
    h.cancel().unwrap();
    assert!(wait_for(&h, Duration::from_secs(10), |s| s == Status::Canceled));
    assert_ended_on_server(&tus, &id);
    let reqs = tus.requests_for(&id);
    assert!(
        reqs.iter()
            .any(|r| r.method == "DELETE" && r.status == Some(204)),
        "{reqs:#?}"
    );
    assert!(!tus.data_file(&id).exists() && !tus.meta_file(&id).exists());
    up.shutdown().unwrap();
}

/// Issue 19: an upload that fails on our side (its source changed) ends its tus upload
/// on the server too, and so does removing it afterwards: nothing is left orphaned.
#[test]
fn a_failed_upload_leaves_nothing_on_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("failed upload", &tmp.path().join("tus"));
    let (up, h, id) = upload_part_way(&tus, tmp.path(), "changing.bin", 31);
    // Rewrite the source in place: same size, new content and mtime.
    std::thread::sleep(Duration::from_millis(20));
    write_file(tmp.path(), "changing.bin", 16 * MIB, 32);
    let e = h
        .wait_timeout(Duration::from_secs(30))
        .expect("ended")
        .expect_err("failed");
    assert!(
        matches!(e, background_transfer::Error::SourceChanged { .. }),
        "{e:?}"
    );
    assert_ended_on_server(&tus, &id);
    let reqs = tus.requests_for(&id);
    assert!(
        reqs.iter().any(|r| r.method == "DELETE"),
        "a DELETE after the failure: {reqs:#?}"
    );
    // Cancel refuses (it has failed); remove removes it from the store.
    assert!(h.cancel().is_err());
    h.remove().unwrap();
    up.shutdown().unwrap();
}

#[test]
fn chunks_are_separate_patches_and_progress_reports_acknowledged_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("chunk size", &tmp.path().join("tus"));
    let chunk = 256 * KIB;
    let size = 2 * MIB + 1000;
    let src = write_file(tmp.path(), "chunks.bin", size, 29);
    let up = rate_limited(&tmp.path().join("store"), 4 * MIB)
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(tus.endpoint(), &src).tus(Some(chunk)))
        .unwrap();
    // Read while it runs: the stream keeps only the latest progress for a reader that
    // falls behind.
    let events = h.events();
    let reader = std::thread::spawn(move || events.iter().collect::<Vec<Event>>());
    let info = completed(&h, Duration::from_secs(30));
    let id = assert_stored(&tus, &info, &src);
    let patches: Vec<TusRequest> = tus
        .requests_for(&id)
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len() as u64, size.div_ceil(chunk), "{patches:#?}");
    for (i, p) in patches.iter().enumerate() {
        let from = i as u64 * chunk;
        let len = chunk.min(size - from);
        assert_eq!(
            (p.offset, p.content_length, p.status, p.response_offset),
            (Some(from), Some(len), Some(204), Some(from + len)),
            "PATCH {i}"
        );
    }
    // Progress: acknowledged bytes move chunk by chunk, never ahead of the bytes sent.
    let acked: Vec<u64> = reader
        .join()
        .unwrap()
        .into_iter()
        .map(|e: Event| e.progress().clone())
        .inspect(|p| assert!(p.bytes_acknowledged <= p.bytes_sent, "{p:?}"))
        .map(|p| p.bytes_acknowledged)
        .collect();
    assert!(acked.windows(2).all(|w| w[0] <= w[1]), "{acked:?}");
    let partial: std::collections::BTreeSet<u64> = acked
        .iter()
        .copied()
        .filter(|&a| a > 0 && a < size)
        .collect();
    assert!(partial.len() >= 3, "acknowledged steps seen: {partial:?}");
    assert!(partial.iter().all(|a| a % chunk == 0), "{partial:?}");
    assert_eq!(h.progress().bytes_acknowledged, size);
    up.shutdown().unwrap();
}

#[test]
fn remove_mid_upload_terminates_it_on_the_server_too() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("remove", &tmp.path().join("tus"));
    let (up, h, id) = upload_part_way(&tus, tmp.path(), "remove.bin", 31);
    h.remove().unwrap();
    assert!(up.get(h.id()).is_none());
    assert_ended_on_server(&tus, &id);
    up.shutdown().unwrap();
}

// ---- protocol corners, against a scripted server (no Node.js needed) ------------------

fn tus_answer(status: u16, headers: &[(&str, &str)]) -> Action {
    let mut all = vec![("Tus-Resumable", "1.0.0")];
    all.extend_from_slice(headers);
    Action::respond_with_headers(status, &all, "")
}

#[test]
fn a_patch_answered_404_creates_again_and_a_409_resyncs_with_head() {
    let tmp = tempfile::tempdir().unwrap();
    let data = support::random_bytes(1000, 5);
    let src = tmp.path().join("small.bin");
    std::fs::write(&src, &data).unwrap();
    let server = TestServer::start(Behavior::script([
        tus_answer(201, &[("Location", "/t/a")]),
        tus_answer(200, &[("Upload-Offset", "0"), ("Upload-Length", "1000")]),
        tus_answer(404, &[]),
        tus_answer(201, &[("Location", "/t/b")]),
        tus_answer(200, &[("Upload-Offset", "0"), ("Upload-Length", "1000")]),
        tus_answer(409, &[]),
        tus_answer(200, &[("Upload-Offset", "400"), ("Upload-Length", "1000")]),
        tus_answer(204, &[("Upload-Offset", "1000")]),
    ]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(
            UploadRequest::post(server.url("/t/"), &src)
                .header("X-Api-Key", "k1")
                .unwrap()
                .tus(None),
        )
        .unwrap();
    let info = completed(&h, Duration::from_secs(20));
    assert_eq!(info.status, 204);
    assert!(info.url.ends_with("/t/b"), "{}", info.url);
    let p = h.progress();
    assert!(p.has_restarted, "{p:?}");
    assert_eq!(p.attempts, 0, "both were handled within the attempt");
    let reqs = server.requests();
    let seen: Vec<(&str, &str, Option<&str>)> = reqs
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.header("upload-offset"),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/t/", None),
            ("HEAD", "/t/a", None),
            ("PATCH", "/t/a", Some("0")),
            ("POST", "/t/", None),
            ("HEAD", "/t/b", None),
            ("PATCH", "/t/b", Some("0")),
            ("HEAD", "/t/b", None),
            ("PATCH", "/t/b", Some("400")),
        ]
    );
    for r in &reqs {
        assert_eq!(
            r.header("tus-resumable"),
            Some("1.0.0"),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(
            r.header("x-api-key"),
            Some("k1"),
            "the request's headers go on every request: {} {}",
            r.method,
            r.path
        );
    }
    let last = &reqs[7];
    assert_eq!(
        last.header("content-type"),
        Some("application/offset+octet-stream")
    );
    assert_eq!(last.body_len, 600);
    assert_eq!(last.sha256, support::sha256_hex(&data[400..]));
    assert_eq!(reqs[0].header("upload-length"), Some("1000"));
    up.shutdown().unwrap();
}

#[test]
fn a_server_that_keeps_losing_the_upload_is_not_fed_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_file(tmp.path(), "lost.bin", 1000, 3);
    let server = TestServer::start(Behavior::handler(|head, _| {
        if head.method == "POST" {
            tus_answer(201, &[("Location", "/t/x")])
        } else {
            tus_answer(404, &[])
        }
    }));
    let up = fast(&tmp.path().join("store")).retries(0).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/t/"), &src).tus(None))
        .unwrap();
    assert!(wait_for(&h, Duration::from_secs(20), |s| s == Status::Error));
    let posts = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 3, "created at most three times in one attempt");
    up.shutdown().unwrap();
}

#[test]
fn a_server_without_tus_1_0_0_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_file(tmp.path(), "v.bin", 10, 3);
    let server = TestServer::start(Behavior::always(tus_answer(
        412,
        &[("Tus-Version", "0.2.2")],
    )));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/t/"), &src).tus(None))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(20))
        .expect("ended")
        .unwrap_err();
    assert!(
        err.to_string().contains("does not support tus 1.0.0"),
        "{err}"
    );
    assert_eq!(server.request_count(), 1, "a 412 is final");
    up.shutdown().unwrap();
}

#[test]
fn a_2xx_where_tus_expects_another_answer_is_never_taken_as_done() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_file(tmp.path(), "n.bin", 5000, 4);
    // Not a tus server: it answers 200 to everything.
    let server = TestServer::start(Behavior::ok());
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/not-tus/"), &src).tus(None))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(20))
        .expect("ended")
        .unwrap_err();
    assert!(
        matches!(err, background_transfer::Error::Protocol { .. }),
        "{err}"
    );
    assert_eq!(h.status(), Status::Error);
    up.shutdown().unwrap();
}

#[test]
fn remove_right_after_cancel_removes_while_the_delete_is_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_file(tmp.path(), "c.bin", 4 * MIB, 6);
    let server = TestServer::start(Behavior::handler(|head, _| match head.method.as_str() {
        "POST" => tus_answer(201, &[("Location", "/files/abc")]),
        "HEAD" => tus_answer(200, &[("Upload-Offset", "0"), ("Upload-Length", "4194304")]),
        "PATCH" => Action::SlowRead {
            bytes_per_sec: 256 * 1024,
        },
        // The termination takes a while: the DELETE worker is still running.
        _ => Action::DelayResponse(Duration::from_secs(2)),
    }));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/files/"), &src).tus(None))
        .unwrap();
    assert!(server.wait_until(Duration::from_secs(20), |r| r
        .iter()
        .any(|r| r.method == "PATCH" && r.body_len > 0)));
    h.cancel().unwrap();
    assert!(server.wait_until(Duration::from_secs(20), |r| r
        .iter()
        .any(|r| r.method == "DELETE")));
    h.remove().unwrap();
    assert!(up.get(h.id()).is_none(), "removed, not left Canceled");
    drop(up);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    assert!(up.uploads().is_empty(), "and the removal was journaled");
}

/// Issue 19: `tus_metadata` entries reach the server's metadata beside the file name,
/// once (a program's own `Upload-Metadata` replaces the crate's, never doubled), and
/// never ride on the PATCH or HEAD; bad keys are typed errors.
#[test]
fn tus_metadata_reaches_the_server_once() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("tus metadata", &tmp.path().join("tus"));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let src = write_file(tmp.path(), "clip.mp4", 300 * 1024, 61);
    let req = UploadRequest::put(tus.endpoint(), &src)
        .tus(Some(128 * 1024))
        .tus_metadata("filetype", "video/mp4")
        .unwrap()
        .tus_metadata("device", "cam 1, north")
        .unwrap();
    let h = up.create_upload(req).unwrap();
    let info = completed(&h, Duration::from_secs(30));
    let id = assert_stored(&tus, &info, &src);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tus.meta_file(&id)).unwrap()).unwrap();
    assert_eq!(meta["metadata"]["filename"], "clip.mp4", "{meta}");
    assert_eq!(meta["metadata"]["filetype"], "video/mp4", "{meta}");
    assert_eq!(meta["metadata"]["device"], "cam 1, north", "{meta}");

    // A header the program set replaces the crate's entry: no filename then.
    let src2 = write_file(tmp.path(), "b.bin", 1024, 62);
    let req = UploadRequest::put(tus.endpoint(), &src2)
        .tus(None)
        .header("Upload-Metadata", "owner YWxpY2U=")
        .unwrap();
    let h = up.create_upload(req).unwrap();
    let info = completed(&h, Duration::from_secs(30));
    let id = assert_stored(&tus, &info, &src2);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tus.meta_file(&id)).unwrap()).unwrap();
    assert_eq!(meta["metadata"]["owner"], "alice", "{meta}");
    assert!(meta["metadata"].get("filename").is_none(), "{meta}");

    for (key, what) in [("", "empty"), ("a b", "space"), ("a,b", "comma")] {
        let err = UploadRequest::put(tus.endpoint(), &src)
            .tus(None)
            .tus_metadata(key, "v")
            .expect_err(what);
        assert!(
            matches!(err, Error::InvalidRequest { .. }),
            "{what}: {err:?}"
        );
    }
    let twice = UploadRequest::put(tus.endpoint(), &src)
        .tus(None)
        .tus_metadata("k", "1")
        .unwrap()
        .tus_metadata("k", "2");
    assert!(twice.is_err(), "a key given twice");
}

/// Issue 19: a tus server answering `423 Locked` to a PATCH (it is still finishing the
/// previous, killed one) is heard before the body is sent (`Expect: 100-continue`),
/// and leads to HEAD and a resume at the server's offset, without spending a retry.
/// The crate's own loopback server plays the server: real ones lock only for a moment.
#[test]
fn a_423_locked_patch_re_reads_the_offset_and_spends_no_retry() {
    use crate::support::{Action, Behavior, TestServer};
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let size = 3 * MIB;
    let stored = Arc::new(Mutex::new(0u64));
    let locked = Arc::new(Mutex::new(1u32));
    let (st, lk) = (stored.clone(), locked.clone());
    let srv = TestServer::start(Behavior::handler(move |head, _| {
        let tus = ("Tus-Resumable", "1.0.0");
        let mut have = st.lock().unwrap();
        match head.method.as_str() {
            "POST" => Action::respond_with_headers(201, &[tus, ("Location", "/files/1")], ""),
            "HEAD" => Action::respond_with_headers(
                200,
                &[
                    tus,
                    ("Upload-Offset", &have.to_string()),
                    ("Upload-Length", &size.to_string()),
                ],
                "",
            ),
            "PATCH" => {
                let mut lock = lk.lock().unwrap();
                if *lock > 0 {
                    *lock -= 1;
                    return Action::respond_with_headers(423, &[tus], "locked");
                }
                let len: u64 = head
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                *have += len;
                Action::respond_with_headers(204, &[tus, ("Upload-Offset", &have.to_string())], "")
            }
            _ => Action::respond(405, ""),
        }
    }));
    let src = write_file(tmp.path(), "l.bin", size, 71);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(srv.url("/files/"), &src).tus(None))
        .unwrap();
    let info = completed(&h, Duration::from_secs(30));
    assert_eq!(info.status, 204);
    assert_eq!(h.progress().attempts, 0, "a 423 spends no retry");
    assert_eq!(*stored.lock().unwrap(), size);
    let methods: Vec<String> = srv.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        methods,
        ["POST", "HEAD", "PATCH", "HEAD", "PATCH"],
        "{methods:?}"
    );
    let reqs = srv.requests();
    assert!(
        reqs[2].body_len < MIB,
        "the locked PATCH sent {} bytes of its body",
        reqs[2].body_len
    );
}

/// Issue 19: ten SIGKILLs of a throttled 256 MiB tus upload to @tus/server. Each new
/// run meets the server still finishing the killed PATCH (`423 Locked`, or an offset
/// that moves under it): it re-reads the offset and goes on, spending no retry, and the
/// file arrives byte-exact in the one tus upload created at the start.
#[test]
fn ten_sigkills_resume_at_the_servers_offset_without_spending_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!("tus SIGKILL x10", &tmp.path().join("tus"));
    let proxy = Proxy::start(tus.addr());
    let size = 256 * MIB;
    let src = write_file(tmp.path(), "k10.bin", size, 91);
    let store = tmp.path().join("store");
    let url = proxy.url("/files/");
    let spawn = || {
        child::spawn(
            CHILD_ENV,
            "upload",
            &[
                (STORE_ENV, &store),
                (FILE_ENV, &src),
                (URL_ENV, &url),
                (RATE_ENV, &(32 * MIB).to_string()),
            ],
        )
    };
    let kills = child::sigkill_loop(
        &proxy,
        10,
        (4 * MIB, 16 * MIB),
        0x7a5,
        Duration::from_secs(240),
        spawn,
    );
    assert_eq!(kills, 10, "the upload finished before the tenth kill");
    let up = fast(&store).open().unwrap();
    let h = up
        .uploads()
        .into_iter()
        .next()
        .expect("the upload survived");
    let info = completed(&h, Duration::from_secs(120));
    let id = assert_stored(&tus, &info, &src);
    assert_eq!(
        tus.upload_ids(),
        std::slice::from_ref(&id),
        "one tus upload, never created again"
    );
    let p = h.progress();
    assert!(!p.has_restarted, "never started again from byte 0");
    let locked = tus
        .requests()
        .iter()
        .filter(|r| r.status == Some(423))
        .count();
    let resent = proxy.bytes_from_client().saturating_sub(size);
    eprintln!(
        "tus SIGKILL x{kills} of a {} MiB upload: {locked} answers 423 Locked, {} retries \
         spent, {} KiB sent again in all",
        size / MIB,
        p.attempts,
        resent / KIB
    );
    assert_eq!(p.attempts, 0, "no retry spent: {p:?}");
}

/// Per-chunk refresh: the server takes a bearer token for 2 s, and the upload's 16
/// PATCHes of 4 MiB (64 MiB) are throttled to take 10 s. Each PATCH after the token expired is answered 401
/// before its body (no 100 Continue); the provider is asked again with `refresh`, mints
/// a new token, and the same PATCH goes again: no retry spent, the file stored
/// byte-exact, no token in the store.
#[test]
fn a_token_that_expires_mid_upload_is_refreshed_before_the_next_chunk() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let tus = tus_server!(
        "expiring tokens",
        &tmp.path().join("tus"),
        TusOptions {
            token_ttl: Some(Duration::from_secs(2)),
            ..TusOptions::default()
        }
    );
    let (asked, refreshed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (a, r) = (asked.clone(), refreshed.clone());
    let provider = move |req: &background_transfer::CredentialRequest| {
        a.fetch_add(1, Ordering::SeqCst);
        if req.refresh() {
            r.fetch_add(1, Ordering::SeqCst);
        }
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Ok(background_transfer::Credentials::Headers(vec![(
            "Authorization".into(),
            format!("Bearer minted-{ms}"),
        )]))
    };
    let size = 64 * MIB;
    let src = write_file(tmp.path(), "tokens.bin", size, 41);
    let store = tmp.path().join("store");
    let up = rate_limited(&store, size / 10)
        .retries(0)
        .credentials("agent", provider)
        .open()
        .unwrap();
    let h = up
        .create_upload(
            UploadRequest::put(tus.endpoint(), &src)
                .tus(Some(4 * MIB))
                .credentials("agent"),
        )
        .unwrap();
    let info = completed(&h, Duration::from_secs(60));
    let id = assert_stored(&tus, &info, &src);
    let reqs = tus.requests();
    let refused: Vec<&TusRequest> = reqs.iter().filter(|r| r.status == Some(401)).collect();
    let (asked, refreshed) = (
        asked.load(Ordering::SeqCst),
        refreshed.load(Ordering::SeqCst),
    );
    eprintln!(
        "tus expiring tokens: {} requests, {} refused 401, provider asked {asked} times \
         ({refreshed} refreshes), {} retries spent",
        reqs.len(),
        refused.len(),
        h.progress().attempts
    );
    assert_eq!(h.progress().attempts, 0, "no retry spent");
    assert!(
        refreshed >= 3,
        "the token expired several times: {refreshed}"
    );
    assert_eq!(refreshed as usize, refused.len(), "one refresh per refusal");
    assert_eq!(asked, refreshed + 1, "asked once, then only to refresh");
    // Each refused PATCH is sent again at once, from the same offset, and taken.
    for (i, r) in reqs.iter().enumerate() {
        if r.status != Some(401) {
            continue;
        }
        let next = &reqs[i + 1];
        assert_eq!(
            (next.method.as_str(), next.offset, next.status),
            (
                r.method.as_str(),
                r.offset,
                Some(if r.method == "PATCH" { 204 } else { 201 })
            ),
            "after the refusal of request {i}: {reqs:#?}"
        );
    }
    let patches = tus
        .requests_for(&id)
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.status == Some(204))
        .count();
    assert_eq!(patches, 16, "one accepted PATCH per chunk");
    up.shutdown().unwrap();
    support::assert_no_bytes(&store, b"minted-");
}
