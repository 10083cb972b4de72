//! Uploader settings for tests (short timeouts and backoffs), bounded waits, and what
//! tests read off uploads and errors.

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{
    Error, ResponseInfo, Status, Upload, UploadRequest, Uploader, UploaderBuilder,
};

use super::TestServer;

/// A builder for a store in `dir` with test-sized timeouts: backoff 20–200 ms, probes
/// every 50–200 ms, connect 2 s, response and stall 5 s.
pub fn fast(dir: &Path) -> UploaderBuilder {
    Uploader::builder()
        .store_dir(dir)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .probe_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(5))
        .stall_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(3))
        .progress_interval(Duration::from_millis(20))
}

/// Waits (at most `timeout`) until `pred` holds for the upload's status.
pub fn wait_for(up: &Upload, timeout: Duration, pred: impl Fn(Status) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred(up.status()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pred(up.status())
}

/// Waits (at most `timeout`) until `pred` holds.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pred()
}

/// The upload's outcome; fails the test if it did not end within `timeout`.
pub fn ended(h: &Upload, timeout: Duration) -> Result<ResponseInfo, Error> {
    h.wait_timeout(timeout).unwrap_or_else(|| {
        panic!(
            "upload {} did not end within {timeout:?}: {:?}",
            h.id(),
            h.progress()
        )
    })
}

/// Waits for the upload to complete; panics with its state otherwise.
pub fn completed(h: &Upload, timeout: Duration) -> ResponseInfo {
    match h.wait_timeout(timeout) {
        Some(Ok(info)) => info,
        Some(Err(e)) => panic!("upload {} failed: {e}; {:?}", h.id(), h.progress()),
        None => panic!(
            "upload {} did not finish within {timeout:?}: {:?}, error {:?}",
            h.id(),
            h.progress(),
            h.error()
        ),
    }
}

/// The ids of the store's uploads, in the order `uploads()` lists them.
pub fn ids(up: &Uploader) -> Vec<u64> {
    up.uploads().iter().map(Upload::id).collect()
}

/// The error's variant, by name (`"InvalidHeader"`, `"SourceMissing"`, ...), for table
/// checks.
pub fn kind(e: &Error) -> String {
    // `Error` derives `Debug`: its text starts with the variant's name.
    let debug = format!("{e:?}");
    let end = debug
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(debug.len());
    debug[..end].to_string()
}

/// Creates a PUT of `file` to `path` on `server`, whose first attempt must hang there,
/// waits for that attempt, then pauses the upload, so that the test can change the
/// source before the next attempt. Returns the handle.
pub fn paused_upload(up: &Uploader, server: &TestServer, path: &str, file: &Path) -> Upload {
    let before = server.request_count();
    let h = up
        .create_upload(UploadRequest::put(server.url(path), file))
        .unwrap();
    assert!(
        server.wait_until(Duration::from_secs(10), |r| r.len() > before
            && r[before].finished),
        "the first attempt reached the server"
    );
    h.pause().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || h.status()
            == Status::PausedByApplication),
        "{:?}",
        h.status()
    );
    h
}
