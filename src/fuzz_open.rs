//! The whole-open fuzz harness: an arbitrary journal through everything an `open()` does
//! with it — recovery, the uploads' cells, handles and stored bodies, the first scheduling pass and the
//! transfers it starts — then a shutdown. Shared by the `open_store` cargo-fuzz target
//! and `cargo test` (over the committed seeds). Journal values reach arithmetic there
//! (part lengths summed, offsets, attempts, timestamps): none may panic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::journal::format::{check_header, header, HeaderCheck};
use crate::journal::JOURNAL_FILE;

/// Where every connection goes: the discard port on loopback, as the proxy and as the
/// only probe target, so no fuzzed host is ever contacted.
const NOWHERE: &str = "127.0.0.1:9";

fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    // A tmpfs where there is one: the store fsyncs, and a disk makes that the cost.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!(
        "bgxfer-fuzz-open-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Opens a store whose journal is `data` (given our header first if it lacks one, so
/// that most inputs reach the records), looks at every upload, lets the first
/// scheduling pass run, and shuts down. Invariants: no panic in any thread (the fuzzer
/// aborts on a panic anywhere); `open()` either succeeds or returns a typed error.
pub fn open_store(data: &[u8]) {
    let dir = scratch_dir();
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut journal = Vec::with_capacity(data.len() + 16);
    if check_header(data) != HeaderCheck::Valid {
        journal.extend_from_slice(&header());
    }
    journal.extend_from_slice(data);
    if std::fs::write(dir.join(JOURNAL_FILE), &journal).is_ok() {
        let opened = crate::Uploader::builder()
            .store_dir(&dir)
            .proxy(Some(format!("http://{NOWHERE}")))
            .probe_targets(vec![NOWHERE.to_string()])
            .watch_network(false)
            .connect_timeout(Duration::from_millis(200))
            .probe_timeout(Duration::from_millis(100))
            .backoff(Duration::from_millis(1), Duration::from_millis(5))
            .shutdown_timeout(Duration::from_millis(200))
            .open();
        if let Ok(up) = opened {
            for u in up.uploads() {
                let _ = (u.status(), u.progress(), u.error(), u.response_info());
                // A small body is read from the journal, at the offset replay found.
                if let Ok(mut body) = u.response_body() {
                    let _ = std::io::copy(&mut body, &mut std::io::sink());
                }
                let r = u.request();
                let _ = format!("{r:?}");
            }
            // The scheduling pass runs at once; give its transfers a moment to start.
            std::thread::sleep(Duration::from_millis(2));
            let _ = up.shutdown();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
