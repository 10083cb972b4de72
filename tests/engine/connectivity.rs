//! Connectivity: an unreachable host pauses uploads as `PausedNoNetwork` without
//! spending retries, the prober brings them back, and a host that answers but fails
//! spends retries as usual.

use std::time::{Duration, Instant};

use background_transfer::{Error, Event, Status, UploadRequest};

use crate::support::{
    closed_port, fast, sha256_file, wait_for, write_file, Action, Behavior, HangingListener,
    TestServer,
};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn refused_connections_pause_for_the_network_and_spend_no_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let port = closed_port();
    let file = write_file(tmp.path(), "a", 2 << 20, 1);
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(
            format!("http://127.0.0.1:{port}/a"),
            &file,
        ))
        .unwrap();
    let events = h.events();
    assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
    assert!(
        matches!(h.error(), Some(Error::Network { .. })),
        "{:?}",
        h.error()
    );
    // The prober keeps probing (backoff 50–200 ms) without spending attempts.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(h.status(), Status::PausedNoNetwork);
    assert_eq!(h.progress().attempts, 0);

    let server = TestServer::start_on(port, Behavior::ok());
    let info = h
        .wait_timeout(LONG)
        .expect("completes once the port is open")
        .unwrap();
    assert_eq!(info.status, 200);
    assert_eq!(h.progress().attempts, 0, "the retry budget is untouched");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].sha256, sha256_file(&file));

    let statuses: Vec<Status> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::StatusChanged(p) => Some(p.status),
            _ => None,
        })
        .collect();
    let paused = statuses.iter().position(|s| *s == Status::PausedNoNetwork);
    let resumed = statuses.iter().rposition(|s| *s == Status::Running);
    assert!(
        paused.is_some() && resumed > paused,
        "events tell when it paused for the network and when it resumed: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&Status::Completed));
}

#[test]
fn a_hanging_connect_is_unreachable_within_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let hang = HangingListener::new();
    let file = write_file(tmp.path(), "a", 1000, 2);
    let up = fast(&tmp.path().join("store"))
        .connect_timeout(Duration::from_millis(700))
        .probe_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    let start = Instant::now();
    let h = up
        .create_upload(UploadRequest::put(hang.url("/a"), &file))
        .unwrap();
    assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
    eprintln!(
        "hanging connect reported unreachable after {:?}",
        start.elapsed()
    );
    assert!(
        matches!(h.error(), Some(Error::Timeout { ref phase }) if phase == "connect"),
        "{:?}",
        h.error()
    );
    assert_eq!(h.progress().attempts, 0);
    // Probes of the hanging host time out too: it stays paused.
    up.network_changed();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.status(), Status::PausedNoNetwork);
    let t = Instant::now();
    up.shutdown().unwrap();
    eprintln!("shutdown with a hanging probe took {:?}", t.elapsed());
}

#[test]
fn a_server_that_answers_503_spends_retries_and_is_never_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::always(Action::respond(503, "busy")));
    let file = write_file(tmp.path(), "a", 5000, 3);
    let up = fast(&tmp.path().join("store")).retries(2).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &file))
        .unwrap();
    let events = h.events();
    let err = h.wait_timeout(LONG).unwrap().unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 503 }), "{err}");
    assert_eq!(server.request_count(), 3);
    assert_eq!(h.progress().attempts, 3);
    let statuses: Vec<Status> = events.try_iter().map(|e| e.progress().status).collect();
    assert!(!statuses.contains(&Status::PausedNoNetwork), "{statuses:?}");
    assert!(statuses.contains(&Status::WaitingToRetry), "{statuses:?}");
}

#[test]
fn the_server_goes_down_mid_upload_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 8u64 << 20;
    let file = write_file(tmp.path(), "a", size, 4);
    let server = TestServer::start(Behavior::always(Action::SlowRead {
        bytes_per_sec: 4 << 20,
    }));
    let port = server.port();
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &file))
        .unwrap();
    assert!(server.wait_until(LONG, |r| r.iter().any(|r| r.body_len > 0)));
    std::thread::sleep(Duration::from_millis(300));
    let first = server.requests();
    drop(server); // the server goes away mid-upload
    assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
    std::thread::sleep(Duration::from_millis(500));
    let server = TestServer::start_on(port, Behavior::ok());
    h.wait_timeout(LONG).expect("finished").unwrap();
    let second = server.requests();
    let sent: u64 = first.iter().chain(&second).map(|r| r.body_len).sum();
    let attempts = first.len() + second.len();
    eprintln!(
        "server down mid-upload: {attempts} requests, {sent} body bytes received for a \
         {size}-byte file ({:.2}x), {} attempts counted",
        sent as f64 / size as f64,
        h.progress().attempts
    );
    let last = second.last().unwrap();
    assert!(last.complete);
    assert_eq!(last.sha256, sha256_file(&file));
    assert!(h.progress().has_restarted);
}

#[test]
fn network_changed_probes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let port = closed_port();
    let file = write_file(tmp.path(), "a", 1000, 5);
    let up = fast(&tmp.path().join("store"))
        .probe_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(
            format!("http://127.0.0.1:{port}/a"),
            &file,
        ))
        .unwrap();
    assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
    // The first probe goes out at once; after it the next is a minute away.
    std::thread::sleep(Duration::from_millis(300));
    let _server = TestServer::start_on(port, Behavior::ok());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        h.status(),
        Status::PausedNoNetwork,
        "no probe before a minute"
    );
    up.network_changed();
    h.wait_timeout(Duration::from_secs(10))
        .expect("network_changed() probes now")
        .unwrap();
}

#[test]
fn shutdown_while_offline_is_prompt_and_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let port = closed_port();
    let file = write_file(tmp.path(), "a", 1000, 6);
    let id = {
        let up = fast(&store).open().unwrap();
        let h = up
            .create_upload(UploadRequest::put(
                format!("http://127.0.0.1:{port}/a"),
                &file,
            ))
            .unwrap();
        assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
        let t = Instant::now();
        up.shutdown().unwrap();
        eprintln!("shutdown while offline took {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        h.id()
    };
    let server = TestServer::start_on(port, Behavior::ok());
    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("persisted across the shutdown");
    h.wait_timeout(LONG).expect("finished").unwrap();
    assert_eq!(server.requests()[0].sha256, sha256_file(&file));
}

#[test]
fn a_host_that_stays_unreachable_while_the_probe_says_online_spends_retries() {
    // The configured probe target answers, the upload's host does not: without a bound
    // the upload would bounce between PausedNoNetwork and Running forever.
    let tmp = tempfile::tempdir().unwrap();
    let probe = TestServer::start(Behavior::ok());
    let port = closed_port();
    let file = write_file(tmp.path(), "a", 1000, 7);
    let up = fast(&tmp.path().join("store"))
        .retries(2)
        .probe_targets(vec![format!("127.0.0.1:{}", probe.port())])
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(
            format!("http://127.0.0.1:{port}/a"),
            &file,
        ))
        .unwrap();
    let err = h
        .wait_timeout(LONG)
        .expect("ends instead of bouncing forever")
        .unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert_eq!(h.progress().attempts, 3);
}

#[test]
fn a_connect_in_progress_does_not_hold_up_pause_or_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let hang = HangingListener::new();
    let file = write_file(tmp.path(), "a", 1000, 8);
    let up = fast(&tmp.path().join("store"))
        .connect_timeout(Duration::from_secs(60))
        .open()
        .unwrap();
    let a = up
        .create_upload(UploadRequest::put(hang.url("/a"), &file))
        .unwrap();
    let b = up
        .create_upload(UploadRequest::put(hang.url("/b"), &file))
        .unwrap();
    assert!(wait_for(&a, LONG, |s| s == Status::Running));
    assert!(wait_for(&b, LONG, |s| s == Status::Running));
    std::thread::sleep(Duration::from_millis(200)); // both are inside their connect
    a.pause().unwrap();
    assert_eq!(a.status(), Status::PausedByApplication);
    let t = Instant::now();
    up.shutdown().unwrap();
    // Without giving up the connect, the worker would hold shutdown for 60 s.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    eprintln!(
        "shutdown with two connects in progress took {:?}",
        t.elapsed()
    );
}

/// A connect that goes unanswered shows as `connecting`, not `running`: after about a
/// second, until the connect timeout ends it (then `paused-no-network`, no retry).
#[test]
fn an_unanswered_connect_shows_connecting_not_running() {
    let tmp = tempfile::tempdir().unwrap();
    let hang = HangingListener::new();
    let file = write_file(tmp.path(), "a", 1000, 2);
    let up = fast(&tmp.path().join("store"))
        .connect_timeout(Duration::from_secs(3))
        .probe_timeout(Duration::from_millis(300))
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(hang.url("/a"), &file))
        .unwrap();
    let events = h.events();
    let start = Instant::now();
    assert!(
        wait_for(&h, LONG, |s| s == Status::Connecting),
        "{:?}",
        h.progress()
    );
    let shown = start.elapsed();
    assert!(wait_for(&h, LONG, |s| s == Status::PausedNoNetwork));
    eprintln!(
        "unanswered connect: connecting after {shown:?}, paused-no-network after {:?}",
        start.elapsed()
    );
    assert!(
        shown < Duration::from_secs(3),
        "shown while the connect waits"
    );
    assert_eq!(h.progress().attempts, 0);
    let statuses: Vec<Status> = events
        .try_iter()
        .filter_map(|e| match e {
            Event::StatusChanged(p) => Some(p.status),
            _ => None,
        })
        .collect();
    let connecting = statuses.iter().position(|s| *s == Status::Connecting);
    let paused = statuses.iter().position(|s| *s == Status::PausedNoNetwork);
    assert!(
        connecting.is_some() && paused > connecting,
        "events say it: {statuses:?}"
    );
    up.shutdown().unwrap();
}
