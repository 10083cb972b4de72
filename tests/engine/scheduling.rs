//! What runs when, as the loopback server sees it: the concurrency limit, priority order,
//! make_current, serialized groups, the cost policy, and the bandwidth limit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use background_transfer::{CostPolicy, GroupBehavior, Priority, Status, Upload, UploadRequest};

use crate::support::{
    completed, fast, sha256_file, wait_for, write_file, Action, Behavior, Recorded, TestServer,
};

const T: Duration = Duration::from_secs(20);

/// The request the server received for `path`, whole.
fn complete_request(server: &TestServer, path: &str) -> Recorded {
    server
        .requests()
        .into_iter()
        .rfind(|r| r.path == path && r.complete)
        .unwrap_or_else(|| panic!("no complete request for {path}"))
}

/// A server that reads `/blocker` slowly and answers everything else at once.
fn server_with_blocker() -> TestServer {
    TestServer::start(Behavior::handler(|head, _| {
        if head.path == "/blocker" {
            Action::SlowRead {
                bytes_per_sec: 256 * 1024,
            }
        } else {
            Action::ok()
        }
    }))
}

/// Runs the blocker (the only slot, `max_concurrent(1)`), creates uploads of `small` to
/// `paths` with `prios` while it runs, lets `before_release` act on them, then cancels
/// the blocker and returns the order in which the server saw the others.
fn order_seen(prios: &[(&str, Priority)], before_release: impl FnOnce(&[Upload])) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with_blocker();
    let up = fast(&tmp.path().join("store"))
        .max_concurrent(1)
        .open()
        .unwrap();
    let big = write_file(tmp.path(), "big", 8 << 20, 1);
    let small = write_file(tmp.path(), "small", 1000, 2);
    let blocker = up
        .create_upload(UploadRequest::put(server.url("/blocker"), &big))
        .unwrap();
    assert!(wait_for(&blocker, T, |s| s == Status::Running));
    // Running is durable before the blocker sends; the order below needs its request
    // at the server first.
    assert!(server.wait_until(T, |r| !r.is_empty()));
    let hs: Vec<Upload> = prios
        .iter()
        .map(|(p, prio)| {
            up.create_upload(UploadRequest::put(server.url(p), &small).priority(*prio))
                .unwrap()
        })
        .collect();
    for h in &hs {
        assert_eq!(h.status(), Status::Queued);
    }
    before_release(&hs);
    blocker.cancel().unwrap();
    for h in &hs {
        completed(h, T);
    }
    up.shutdown().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs[0].path, "/blocker");
    reqs[1..].iter().map(|r| r.path.clone()).collect()
}

#[test]
fn the_concurrency_limit_is_what_the_server_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 1 << 20,
    });
    let up = fast(&tmp.path().join("store"))
        .max_concurrent(2)
        .open()
        .unwrap();
    let files: Vec<PathBuf> = (0..6)
        .map(|i| write_file(tmp.path(), &format!("f{i}"), 256 * 1024, 10 + i))
        .collect();
    let hs: Vec<Upload> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            up.create_upload(UploadRequest::put(server.url(&format!("/c/{i}")), f))
                .unwrap()
        })
        .collect();
    for h in &hs {
        completed(h, T);
    }
    assert_eq!(
        server.max_concurrent(),
        2,
        "never more, and the limit was used"
    );
    for (i, f) in files.iter().enumerate() {
        let r = complete_request(&server, &format!("/c/{i}"));
        assert_eq!(r.sha256, sha256_file(f));
    }
    assert_eq!(server.request_count(), 6);
    up.shutdown().unwrap();
}

#[test]
fn priority_order_is_the_order_the_server_sees() {
    let order = order_seen(
        &[
            ("/l1", Priority::Low),
            ("/d1", Priority::Default),
            ("/h1", Priority::High),
            ("/d2", Priority::Default),
            ("/h2", Priority::High),
            ("/l2", Priority::Low),
        ],
        |_| {},
    );
    assert_eq!(order, ["/h1", "/h2", "/d1", "/d2", "/l1", "/l2"]);
}

#[test]
fn make_current_beats_priority() {
    let order = order_seen(
        &[
            ("/h1", Priority::High),
            ("/d1", Priority::Default),
            ("/l1", Priority::Low),
            ("/l2", Priority::Low),
        ],
        |hs| {
            hs[2].make_current().unwrap();
            // The latest make_current wins.
            hs[3].make_current().unwrap();
        },
    );
    assert_eq!(order, ["/l2", "/l1", "/h1", "/d1"]);
}

#[test]
fn a_serialized_group_runs_one_at_a_time_beside_other_uploads() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 1 << 20,
    });
    let up = fast(&tmp.path().join("store"))
        .max_concurrent(4)
        .open()
        .unwrap();
    up.set_group_behavior("g", GroupBehavior::Serialized);
    let f = write_file(tmp.path(), "f", 256 * 1024, 3);
    let mut hs = Vec::new();
    for i in 0..3 {
        let req = UploadRequest::put(server.url(&format!("/g/{i}")), &f).group("g");
        hs.push(up.create_upload(req).unwrap());
    }
    for i in 0..2 {
        let req = UploadRequest::put(server.url(&format!("/free/{i}")), &f);
        hs.push(up.create_upload(req).unwrap());
    }
    for h in &hs {
        completed(h, T);
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    let group: Vec<&Recorded> = reqs.iter().filter(|r| r.path.starts_with("/g/")).collect();
    let free: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/free/"))
        .collect();
    for r in &reqs {
        assert!(r.complete);
        assert_eq!(r.sha256, sha256_file(&f));
    }
    // The group's requests never overlap at the server...
    for a in &group {
        for b in &group {
            if a.index < b.index {
                assert!(
                    a.finished_at <= b.started_at,
                    "{} and {} overlapped",
                    a.path,
                    b.path
                );
            }
        }
    }
    // ...while the other uploads ran at the same time as the group.
    let overlaps =
        |a: &Recorded, b: &Recorded| a.started_at < b.finished_at && b.started_at < a.finished_at;
    assert!(
        free.iter().any(|f| group.iter().any(|g| overlaps(f, g))),
        "the other uploads did not run beside the group"
    );
    assert!(
        overlaps(free[0], free[1]),
        "the other uploads ran in parallel"
    );
    up.shutdown().unwrap();
}

#[test]
fn unrestricted_only_uploads_pause_on_a_costed_network() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 512 * 1024,
    });
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "f", 2 << 20, 4);
    let small = write_file(tmp.path(), "small", 100_000, 5);
    let metered_ok = up
        .create_upload(UploadRequest::put(server.url("/always"), &f))
        .unwrap();
    let unmetered = up
        .create_upload(
            UploadRequest::put(server.url("/unmetered"), &f)
                .cost_policy(CostPolicy::UnrestrictedOnly),
        )
        .unwrap();
    assert!(server.wait_until(T, |r| r.len() == 2 && r.iter().all(|r| r.body_len > 0)));

    up.set_network_cost(true);
    assert!(wait_for(&unmetered, T, |s| s == Status::PausedCostedNetwork));
    assert_eq!(metered_ok.status(), Status::Running);
    // A new one waits too, and the server never sees it while the network is costed.
    let later = up
        .create_upload(
            UploadRequest::put(server.url("/later"), &small)
                .cost_policy(CostPolicy::UnrestrictedOnly),
        )
        .unwrap();
    assert!(wait_for(&later, T, |s| s == Status::PausedCostedNetwork));
    let stopped = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/unmetered")
        .unwrap();
    assert!(server.wait_until(T, |r| r[stopped.index].finished));
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.requests().iter().all(|r| r.path != "/later"));
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/unmetered")
            .count(),
        1
    );
    assert_eq!(unmetered.status(), Status::PausedCostedNetwork);

    server.set_behavior(Behavior::ok());
    up.set_network_cost(false);
    for h in [&metered_ok, &unmetered, &later] {
        completed(h, T);
    }
    assert!(unmetered.progress().has_restarted);
    assert_eq!(
        complete_request(&server, "/unmetered").sha256,
        sha256_file(&f)
    );
    assert_eq!(
        complete_request(&server, "/later").sha256,
        sha256_file(&small)
    );
    assert_eq!(complete_request(&server, "/always").sha256, sha256_file(&f));
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.path == "/always")
            .count(),
        1,
        "an Always upload is not interrupted"
    );
    up.shutdown().unwrap();
}

#[test]
fn a_costed_network_that_ends_at_once_does_not_strand_an_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::script([Action::SlowRead {
        bytes_per_sec: 512 * 1024,
    }]));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "f", 2 << 20, 6);
    let h = up
        .create_upload(
            UploadRequest::put(server.url("/u"), &f).cost_policy(CostPolicy::UnrestrictedOnly),
        )
        .unwrap();
    assert!(server.wait_until(T, |r| r.first().is_some_and(|r| r.body_len > 0)));
    // Costed and back before the worker has stopped.
    up.set_network_cost(true);
    up.set_network_cost(false);
    completed(&h, T);
    assert_eq!(complete_request(&server, "/u").sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

#[test]
fn max_bandwidth_limits_the_rate_of_all_uploads_together() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let rate: u64 = 256 * 1024;
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(rate))
        .open()
        .unwrap();
    let size: u64 = 256 * 1024;
    let a = write_file(tmp.path(), "a", size, 7);
    let b = write_file(tmp.path(), "b", size, 8);
    let start = Instant::now();
    let ha = up
        .create_upload(UploadRequest::put(server.url("/a"), &a))
        .unwrap();
    let hb = up
        .create_upload(UploadRequest::put(server.url("/b"), &b))
        .unwrap();
    completed(&ha, T);
    completed(&hb, T);
    let elapsed = start.elapsed();
    // 512 KiB at 256 KiB/s from an empty bucket (bursts of a quarter second) take at
    // least 1.75 s: a bound we configured, not a performance claim.
    let bound = Duration::from_millis(1500);
    assert!(elapsed >= bound, "{elapsed:?}");
    let (ra, rb) = (
        complete_request(&server, "/a"),
        complete_request(&server, "/b"),
    );
    assert_eq!(ra.sha256, sha256_file(&a));
    assert_eq!(rb.sha256, sha256_file(&b));
    let first = ra.started_at.min(rb.started_at);
    let last = ra.finished_at.max(rb.finished_at);
    assert!(
        last - first >= bound,
        "the server got it in {:?}",
        last - first
    );
    up.shutdown().unwrap();
}
