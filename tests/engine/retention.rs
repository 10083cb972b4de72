//! Retention: ended uploads stay with their responses until removed or until the
//! retention window passes; unfinished ones are never removed by it.

use std::time::Duration;

use background_transfer::UploadRequest;

use crate::support;
use crate::support::{closed_port, fast, wait_for, write_file, Action, Behavior, TestServer};

#[test]
fn ended_uploads_are_removed_once_the_window_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::always(Action::respond(
        201,
        // Over 4 KiB: a body file of its own, which must go with the upload.
        support::random_bytes(8_000, 3),
    )));
    let f = write_file(tmp.path(), "a", 1000, 1);
    let (done, waiting) = {
        let up = fast(&store).open().unwrap();
        let done = up
            .create_upload(UploadRequest::put(server.url("/a"), &f))
            .unwrap();
        done.wait_timeout(Duration::from_secs(20)).unwrap().unwrap();
        let waiting = up
            .create_upload(UploadRequest::put(
                format!("http://127.0.0.1:{}/b", closed_port()),
                &f,
            ))
            .unwrap();
        assert!(wait_for(&waiting, Duration::from_secs(20), |s| !s
            .is_final()
            && s != background_transfer::Status::Queued));
        (done.id(), waiting.id())
    };
    let body = store.join("bodies").join(done.to_string());
    assert!(body.exists());

    // A generous window keeps it, with its response.
    let up = fast(&store)
        .retention(Some(Duration::from_secs(3600)))
        .open()
        .unwrap();
    assert!(up.get(done).unwrap().response_info().is_some());
    drop(up);

    // No window keeps it forever.
    let up = fast(&store).retention(None).open().unwrap();
    assert!(up.get(done).is_some());
    drop(up);

    // Once the window has passed it is removed with its files; the unfinished one stays.
    std::thread::sleep(Duration::from_millis(50));
    let up = fast(&store)
        .retention(Some(Duration::from_millis(10)))
        .open()
        .unwrap();
    assert!(support::wait_until(Duration::from_secs(10), || up
        .get(done)
        .is_none()));
    assert!(!body.exists(), "its response body went with it");
    assert!(
        up.get(waiting).is_some(),
        "an unfinished upload is never expired"
    );
}
