//! Threads: every thread the crate starts is named and is joined by shutdown, even while
//! a transfer runs and a host is unreachable. (The test runs in a child process of its
//! own, so that no other test's threads are in the process.)

use std::time::Duration;

use background_transfer::{Status, UploadRequest};

use crate::support::child;
use crate::support::{closed_port, fast, wait_for, write_file, Action, Behavior, TestServer};

/// Role of the child process that runs the test alone.
pub const CHILD_ENV: &str = "BGXFER_THREADS_CHILD";

/// Names of this process's threads that belong to the crate.
fn crate_threads() -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(t.path().join("comm")) {
            if name.starts_with("bgxfer-") {
                out.push(name.trim().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_thread_is_named_and_joined_on_shutdown_and_drop() {
    child::run_alone(CHILD_ENV);
}

/// The test, in the child process: no other test runs there.
pub fn child_process() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = TestServer::start(Behavior::always(Action::SlowRead {
        bytes_per_sec: 1 << 20,
    }));
    let offline = closed_port();
    let file = write_file(tmp.path(), "a", 32 << 20, 1);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    // A finished transfer's thread is kept a while for the next one: shutdown must end
    // it too.
    let quick = TestServer::start(Behavior::ok());
    let small = write_file(tmp.path(), "small", 1024, 2);
    up.create_upload(UploadRequest::put(quick.url("/done"), &small))
        .unwrap()
        .wait_timeout(Duration::from_secs(10))
        .expect("the small upload ends")
        .expect("and completes");
    let running = up
        .create_upload(UploadRequest::put(slow.url("/a"), &file))
        .unwrap();
    let waiting = up
        .create_upload(UploadRequest::put(
            format!("http://127.0.0.1:{offline}/b"),
            &file,
        ))
        .unwrap();
    assert!(wait_for(&running, Duration::from_secs(10), |s| s == Status::Running));
    assert!(wait_for(&waiting, Duration::from_secs(10), |s| s
        == Status::PausedNoNetwork));
    let names = crate_threads();
    assert!(names.contains(&"bgxfer-schedule".to_string()), "{names:?}"); // comm is 15 bytes
    assert!(names.contains(&"bgxfer-prober".to_string()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("bgxfer-upload-")),
        "{names:?}"
    );
    up.shutdown().unwrap();
    assert!(
        crate_threads().is_empty(),
        "left after shutdown: {:?}",
        crate_threads()
    );

    // Drop does the same.
    let up = fast(&tmp.path().join("store")).open().unwrap();
    assert!(!crate_threads().is_empty());
    drop(up);
    assert!(
        crate_threads().is_empty(),
        "left after drop: {:?}",
        crate_threads()
    );
}
