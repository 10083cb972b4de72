//! Azure block blobs against Azurite (3.35.0, telemetry off), through SAS URLs made
//! with its development key. Blobs are read back and compared byte for byte;
//! interrupted uploads (SIGKILL, a network cut) send again only the blocks the server
//! lacks, and a SAS that expires mid-way is replaced through the provider.
//!
//! Built with `--features azure`. Without Azurite these tests print SKIPPED, except in
//! CI, where they fail. The SIGKILL test re-runs this binary as its child, with
//! `BGXFER_AZURE_CHILD` set.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use background_transfer::{
    AzureBlob, CredentialRequest, Credentials, Error, Status, UploadRequest,
};

use crate::support::child::{self, mark};
use crate::support::cloud::{unbase64, Cloud, Emulator};
use crate::support::proxy::Proxy;
use crate::support::{
    completed, ended, fast, sha256_file, sha256_hex, sparse_file, wait_for, wait_until, write_file,
    Action, Behavior, TestServer, KIB, MIB,
};

pub const CHILD_ENV: &str = "BGXFER_AZURE_CHILD";
const STORE_ENV: &str = "BGXFER_AZURE_STORE";
const FILE_ENV: &str = "BGXFER_AZURE_FILE";
const URL_ENV: &str = "BGXFER_AZURE_URL";
const RATE_ENV: &str = "BGXFER_AZURE_RATE";

/// The block the tests use.
const BLOCK: u64 = 2 * MIB;

macro_rules! azurite {
    ($test:expr) => {
        match Cloud::start($test, Emulator::Azurite) {
            Some(s) => s,
            None => return,
        }
    };
}

fn blob(url: &str) -> AzureBlob {
    AzureBlob::new(url).block_size(BLOCK)
}

fn assert_blob(cloud: &Cloud, name: &str, src: &Path) {
    let got = cloud
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not on Azurite"));
    assert_eq!(
        sha256_hex(&got),
        sha256_file(src),
        "{name} differs from {} ({} bytes back)",
        src.display(),
        got.len()
    );
}

#[test]
fn blobs_of_every_size_arrive_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure blobs of every size");
    let up = fast(&tmp.path().join("store"))
        .response_timeout(Duration::from_secs(60))
        .max_concurrent(3)
        .open()
        .unwrap();
    let sizes = [0, KIB, BLOCK - 1, BLOCK, 37 * MIB, 200 * MIB];
    let mut uploads = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let src = write_file(tmp.path(), &format!("f{i}.bin"), size, i as u64 + 1);
        let name = format!("size-{size}.bin");
        let url = cloud.blob_url(&cloud.base(), &name, 3600);
        let req = UploadRequest::azure(blob(&url).content_type("video/mp4"), &src)
            .header("x-ms-meta-device", "cam1")
            .unwrap();
        uploads.push((up.create_upload(req).unwrap(), name, src, size));
    }
    for (h, name, src, size) in &uploads {
        let info = completed(h, Duration::from_secs(300));
        assert_eq!(info.status, 201, "{name}");
        assert!(
            !info.url.contains("sig="),
            "{name}: the kept URL holds no SAS"
        );
        assert_eq!(h.progress().bytes_acknowledged, *size, "{name}");
        assert_eq!(h.progress().attempts, 0, "{name}: no retry spent");
        assert_blob(&cloud, name, src);
    }
    for name in ["size-1024.bin", &format!("size-{}.bin", 37 * MIB)] {
        assert_eq!(
            cloud.content_type(name).as_deref(),
            Some("video/mp4"),
            "{name}: the content type reached the blob (Put Blob and Put Block List)"
        );
    }
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
        .open()
        .unwrap();
    let h = match up.uploads().into_iter().next() {
        Some(h) => h,
        None => up
            .create_upload(UploadRequest::azure(blob(&env(URL_ENV)), env(FILE_ENV)))
            .unwrap(),
    };
    mark(format_args!("ID {}", h.id()));
    let _ = h.wait_timeout(Duration::from_secs(120));
    mark("DONE");
}

#[test]
fn ten_sigkills_resend_at_most_one_block_each() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure SIGKILL x10");
    let proxy = Proxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap());
    let size = 200 * MIB;
    let src = write_file(tmp.path(), "big.bin", size, 77);
    let store = tmp.path().join("store");
    let base = format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port());
    let url = cloud.blob_url(&base, "kill.bin", 3600);
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
        (BLOCK / 2, 4 * BLOCK),
        0xa2,
        Duration::from_secs(240),
        spawn,
    );
    assert_eq!(kills, 10, "the upload finished before the tenth kill");
    let up = fast(&store)
        .response_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    let h = up
        .uploads()
        .into_iter()
        .next()
        .expect("the upload survived");
    let info = completed(&h, Duration::from_secs(180));
    assert_eq!(info.status, 201);
    assert_blob(&cloud, "kill.bin", &src);
    // Block lists and the commit are small: what the proxy counted beyond the file is
    // requests' headers and XML, and blocks sent again.
    let sent = proxy.bytes_to_server();
    let resent = sent.saturating_sub(size);
    eprintln!(
        "Azure SIGKILL x{kills}: {sent} bytes reached the server for a {size}-byte blob: \
         {resent} bytes ({:.2} blocks) sent again in all, {:.2} blocks per kill",
        resent as f64 / BLOCK as f64,
        resent as f64 / BLOCK as f64 / kills as f64
    );
    assert!(
        resent <= kills as u64 * BLOCK,
        "{resent} bytes sent again: more than one block per interruption"
    );
}

#[test]
fn a_network_cut_during_a_block_resends_only_that_block() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure network cut");
    let proxy = Proxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap());
    let size = 37 * MIB;
    let src = write_file(tmp.path(), "cut.bin", size, 5);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    // Azurite keeps the connection alive: the cut falls in the middle of the fourth
    // block (after a Get Block List of a few hundred bytes).
    proxy.cut_after(3 * BLOCK + BLOCK / 2);
    let base = format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port());
    let h = up
        .create_upload(UploadRequest::azure(
            blob(&cloud.blob_url(&base, "cut.bin", 3600)),
            &src,
        ))
        .unwrap();
    completed(&h, Duration::from_secs(120));
    assert_eq!(proxy.cuts(), 1, "the cut happened");
    assert_blob(&cloud, "cut.bin", &src);
    let resent = proxy.bytes_to_server().saturating_sub(size);
    eprintln!("Azure network cut: {resent} bytes sent again (block size {BLOCK})");
    assert!(resent <= BLOCK, "{resent} bytes sent again for one cut");
}

#[test]
fn a_sas_that_expires_mid_way_is_refreshed_once_through_the_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = Arc::new(azurite!("Azure SAS expiry"));
    let size = 24 * MIB;
    let src = write_file(tmp.path(), "e.bin", size, 12);
    let (calls, refreshes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (c, r, cl) = (calls.clone(), refreshes.clone(), cloud.clone());
    // The first SAS lives 3 seconds (the upload takes about 6): later ones an hour.
    let provider = move |req: &CredentialRequest| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if req.refresh() {
            r.fetch_add(1, Ordering::SeqCst);
        }
        let secs = if n == 0 { 3 } else { 3600 };
        Ok(Credentials::Url(cl.blob_url(
            &cl.base(),
            "expiring.bin",
            secs,
        )))
    };
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(4 * MIB))
        .credentials("sas", provider)
        .open()
        .unwrap();
    // The URL needs no SAS: the provider gives it, and none is persisted.
    let url = format!("{}/uploads/expiring.bin", cloud.base());
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &src).credentials("sas"))
        .unwrap();
    let info = completed(&h, Duration::from_secs(60));
    assert_eq!(info.status, 201);
    assert_blob(&cloud, "expiring.bin", &src);
    assert_eq!(h.progress().attempts, 0, "a refreshed SAS spends no retry");
    eprintln!(
        "Azure SAS expiry: the provider was asked {} times, {} of them to refresh",
        calls.load(Ordering::SeqCst),
        refreshes.load(Ordering::SeqCst)
    );
    assert_eq!(refreshes.load(Ordering::SeqCst), 1, "one refresh");
}

#[test]
fn an_expired_sas_without_a_provider_is_a_final_error_that_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure SAS expired, no provider");
    let src = write_file(tmp.path(), "x.bin", 5 * MIB, 3);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let url = cloud.blob_url(&cloud.base(), "expired.bin", -60);
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &src))
        .unwrap();
    let err = ended(&h, Duration::from_secs(30)).expect_err("the SAS expired");
    assert!(
        matches!(&err, Error::Service { status: 403, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("SAS") && text.contains("expired"), "{text}");
    assert!(!text.contains("sig="), "no signature in the error: {text}");
    assert_eq!(h.status(), Status::Error);
    assert_eq!(h.progress().attempts, 0);
}

#[test]
fn blocks_another_upload_left_on_the_blob_are_not_taken_for_this_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure foreign uncommitted blocks");
    let size = 12 * MIB;
    let first = write_file(tmp.path(), "a.bin", size, 1);
    let second = write_file(tmp.path(), "b.bin", size, 2);
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(8 * MIB))
        .open()
        .unwrap();
    let url = cloud.blob_url(&cloud.base(), "shared.bin", 3600);
    // The first upload leaves blocks of the same sizes behind, uncommitted.
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &first))
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        cloud.uncommitted("shared.bin").len() >= 2
    }));
    h.cancel().unwrap();
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &second))
        .unwrap();
    completed(&h, Duration::from_secs(60));
    assert_blob(&cloud, "shared.bin", &second);

    // Another client's block with an ID of another length: Azure (and Azurite) refuse
    // every block of ours until it is gone.
    let status = cloud.put_block(&url, "QQ==", b"abc");
    assert_eq!(status, 201, "the foreign block is there");
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &first))
        .unwrap();
    completed(&h, Duration::from_secs(60));
    assert_blob(&cloud, "shared.bin", &first);
}

#[test]
fn a_paused_upload_resumes_from_the_servers_block_list() {
    let tmp = tempfile::tempdir().unwrap();
    let cloud = azurite!("Azure pause and resume");
    let proxy = Proxy::start(format!("127.0.0.1:{}", cloud.port).parse().unwrap());
    let size = 16 * MIB;
    let src = write_file(tmp.path(), "p.bin", size, 4);
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(8 * MIB))
        .open()
        .unwrap();
    let base = format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port());
    let h = up
        .create_upload(UploadRequest::azure(
            blob(&cloud.blob_url(&base, "paused.bin", 3600)),
            &src,
        ))
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || {
        h.progress().bytes_acknowledged >= 3 * BLOCK
    }));
    h.pause().unwrap();
    assert!(wait_for(&h, Duration::from_secs(10), |s| s
        == Status::PausedByApplication));
    let acked = h.progress().bytes_acknowledged;
    h.resume().unwrap();
    completed(&h, Duration::from_secs(60));
    assert_blob(&cloud, "paused.bin", &src);
    let resent = proxy.bytes_to_server().saturating_sub(size);
    eprintln!("Azure pause at {acked} acknowledged bytes: {resent} bytes sent again");
    assert!(resent <= BLOCK, "{resent} bytes sent again for one pause");
}

#[test]
fn a_damaged_block_is_a_final_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Azurite cannot be made to receive a damaged block: a scripted endpoint answers
    // block 1 as Azure answers a Content-MD5 mismatch.
    let srv = TestServer::start(Behavior::handler(move |head, _| {
        let q = head.path.split_once('?').map_or("", |(_, q)| q);
        if head.method == "GET" {
            return Action::respond_with_headers(404, &[("x-ms-error-code", "BlobNotFound")], "");
        }
        let id = q
            .split('&')
            .find_map(|kv| kv.strip_prefix("blockid="))
            .unwrap_or("");
        let id = id
            .replace("%3D", "=")
            .replace("%2B", "+")
            .replace("%2F", "/");
        if unbase64(&id).ends_with(b"-000001") {
            return Action::respond_with_headers(
                400,
                &[("x-ms-error-code", "Md5Mismatch")],
                "<?xml version=\"1.0\"?><Error><Code>Md5Mismatch</Code><Message>The MD5 value \
                 specified in the request did not match with the MD5 value calculated by the \
                 server.\nRequestId:1</Message></Error>",
            );
        }
        Action::respond(201, "")
    }));
    let src = write_file(tmp.path(), "d.bin", 3 * BLOCK, 31);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let url = format!("http://127.0.0.1:{}/acct/c/d.bin?sv=1&sig=x", srv.port());
    let h = up
        .create_upload(UploadRequest::azure(blob(&url), &src))
        .unwrap();
    let err = ended(&h, Duration::from_secs(30)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Service { status: 400, .. }), "{err:?}");
    assert!(
        text.contains("Md5Mismatch") && text.contains("block 1"),
        "{text}"
    );
    assert_eq!(h.progress().attempts, 0, "a damaged block is not retried");
    let puts: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(!puts.is_empty());
    assert!(puts.iter().all(|r| r.header("content-md5").is_some()));
    assert!(srv
        .requests()
        .iter()
        .all(|r| r.header("x-ms-version").is_some()));
}

#[test]
fn bad_azure_requests_are_typed_errors_and_persist_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = write_file(tmp.path(), "x.bin", KIB, 1);
    let up = fast(&store).open().unwrap();
    let sas = "http://127.0.0.1:9/acct/c/b?sv=2021-08-06&se=2027-01-01&sig=abc";
    let cases: Vec<(&str, UploadRequest)> = vec![
        (
            "a block over 4000 MiB",
            UploadRequest::azure(AzureBlob::new(sas).block_size((4000 << 20) + 1), &src),
        ),
        (
            "a block of 0 bytes",
            UploadRequest::azure(AzureBlob::new(sas).block_size(0), &src),
        ),
        (
            "no SAS query",
            UploadRequest::azure(AzureBlob::new("http://127.0.0.1:9/acct/c/b"), &src),
        ),
        (
            "a query without a signature",
            UploadRequest::azure(AzureBlob::new("http://127.0.0.1:9/acct/c/b?sv=1"), &src),
        ),
        (
            "no container",
            UploadRequest::azure(AzureBlob::new("http://127.0.0.1:9/b?sig=x"), &src),
        ),
        (
            "an unregistered provider",
            UploadRequest::azure(AzureBlob::new(sas), &src).credentials("nobody"),
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
        assert!(!err.to_string().contains("sig=abc"), "{what}: {err}");
    }
    // A file that needs more than 50,000 blocks: 50,001 KiB, sparse, in 1 KiB blocks.
    let big = sparse_file(tmp.path(), "big.bin", 50_001 * KIB);
    let err = up
        .create_upload(UploadRequest::azure(
            AzureBlob::new(sas).block_size(KIB),
            &big,
        ))
        .expect_err("more than 50,000 blocks");
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    assert!(err.to_string().contains("50000"), "{err}");
    assert!(up.uploads().is_empty(), "nothing was created");
    up.shutdown().unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.uploads().is_empty(), "nothing was persisted");
}
