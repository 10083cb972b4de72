//! Uploader settings for tests (short timeouts and backoffs) and bounded waits.

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{Status, Upload, Uploader, UploaderBuilder};

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
