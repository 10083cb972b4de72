//! Storage faults at the `Uploader` level: the journal on a full file system (a small
//! tmpfs the test mounts), write and fsync errors injected into the journal (the Nth
//! operation, once or from then on), a response body that does not fit on the disk, and
//! a start's fsync that is slow or fails (the transfer connects meanwhile, and sends
//! nothing before it).
//! In every case the operation gets a typed error, nothing acknowledged before it is
//! lost, and the store opens again once the fault is gone.
//!
//! The tmpfs tests need root (CI runs as root). When the mount fails they fail in CI
//! (`CI=true`) with the reason, and elsewhere print it and return.
//!
//! ```sh
//! cargo test --release --test reliability storage:: -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use background_transfer::journal::fault::{FailNth, FileOp};
use background_transfer::{Error, Status, UploadRequest, Uploader, UploaderBuilder};

use crate::support::{
    fast, wait_for, watchdog, write_file, Action, Behavior, TestServer, Tmpfs, EIO, ENOSPC,
};

/// What Linux says for ENOSPC.
const DISK_FULL: &str = "No space left on device";

// ---- a tmpfs of our own ---------------------------------------------------------

/// A tmpfs of `size` on `dir` (created), unmounted when dropped. `None` when it cannot
/// be mounted: in CI that fails the test with the reason; elsewhere the reason is printed
/// and the caller returns.
fn tmpfs(dir: &Path, size: &str, test: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(dir, size) {
        Ok(t) => Some(t),
        Err(why) => {
            let why = format!("{test} needs a tmpfs of its own (run as root): {why}");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("SKIPPED {why}");
            None
        }
    }
}

/// Fills the file system holding `dir` with `dir/filler` until a write fails with
/// ENOSPC. Returns the bytes written.
fn fill(dir: &Path) -> u64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("filler"))
        .unwrap();
    let mut written = 0u64;
    for size in [64 * 1024, 4096, 1] {
        let buf = vec![0xa5u8; size];
        for _ in 0..100_000 {
            match f.write(&buf) {
                Ok(n) if n > 0 => written += n as u64,
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
                Err(e) => panic!("fill {}: {e}", dir.display()),
            }
        }
    }
    assert_eq!(
        f.write(&[0]).unwrap_err().raw_os_error(),
        Some(ENOSPC),
        "the file system is full"
    );
    written
}

fn is_disk_full(e: &Error) -> bool {
    matches!(e, Error::Io { .. }) && e.to_string().contains(DISK_FULL)
}

/// An uploader that only manages the store: nothing goes on the wire.
fn manager(store: &Path) -> UploaderBuilder {
    Uploader::builder()
        .store_dir(store)
        .start_transfers(false)
        .retention(None)
}

/// A request nobody will send (the store is only managed).
fn put(i: u64, src: &Path) -> UploadRequest {
    UploadRequest::put(format!("http://127.0.0.1:9/upload/{i}"), src)
        .header("X-Test-Index", &i.to_string())
        .unwrap()
}

/// id -> (URL, status) of every upload in the store.
fn contents(up: &Uploader) -> BTreeMap<u64, (String, Status)> {
    up.uploads()
        .into_iter()
        .map(|u| (u.id(), (u.request().url.clone(), u.status())))
        .collect()
}

// ---- (a) the journal on a full file system ---------------------------------------

#[test]
fn a_full_disk_is_a_typed_error_and_loses_nothing_acknowledged() {
    let _watchdog = watchdog(
        "a_full_disk_is_a_typed_error_and_loses_nothing_acknowledged",
        Duration::from_secs(120),
    );
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs_guard) = tmpfs(&tmp.path().join("mnt"), "512k", "full-disk test") else {
        return;
    };
    let store = fs_guard.dir().join("store");
    let src = write_file(tmp.path(), "src.bin", 1024, 1);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();

    let up = manager(&store).open().unwrap();
    for i in 0..5 {
        let h = up.create_upload(put(i, &src)).unwrap();
        acked.insert(h.id(), h.request().url.clone());
    }
    let filled = fill(fs_guard.dir());

    // A reader is spooled into the store before it is journaled: that write fails
    // first, cleanly, and leaves neither a spool file nor a journal record behind.
    let err = up
        .create_upload(UploadRequest::from_reader(
            "http://127.0.0.1:9/spooled",
            io::repeat(7).take(256 * 1024),
        ))
        .unwrap_err();
    assert!(is_disk_full(&err), "spooling on a full disk: {err}");
    let spool: Vec<_> = fs::read_dir(store.join("spool")).unwrap().collect();
    assert!(spool.is_empty(), "a failed spool leaves nothing: {spool:?}");

    // File uploads fit in the journal's last page for a while; then the append fails.
    let mut first_error = None;
    for i in 5..10_000 {
        match up.create_upload(put(i, &src)) {
            Ok(h) => {
                acked.insert(h.id(), h.request().url.clone());
            }
            Err(e) => {
                first_error = Some(e);
                break;
            }
        }
    }
    let err = first_error.expect("the journal never hit the full disk");
    assert!(
        is_disk_full(&err),
        "the failed create says the disk is full: {err}"
    );
    assert!(
        err.to_string().contains("journal"),
        "and names the journal: {err}"
    );
    // The journal refuses everything after a failed write: it is poisoned until reopened.
    let again = up.create_upload(put(10_000, &src)).unwrap_err();
    assert!(
        matches!(again, Error::JournalPoisoned { .. }) || is_disk_full(&again),
        "{again}"
    );
    // Nothing acknowledged is gone from the live uploader either.
    for (id, url) in &acked {
        assert_eq!(
            &up.get(*id).expect("acknowledged upload").request().url,
            url
        );
    }
    up.shutdown().unwrap();

    // A store on a full disk still opens (recovery only truncates and reads).
    let full_open = manager(&store).open().map(|u| contents(&u).len());
    eprintln!("reopened while still full: {full_open:?}");

    // Space back: every acknowledged upload is there, and nothing else.
    fs::remove_file(fs_guard.dir().join("filler")).unwrap();
    let up = manager(&store).open().unwrap();
    let found = contents(&up);
    let expected: BTreeMap<u64, (String, Status)> = acked
        .iter()
        .map(|(id, url)| (*id, (url.clone(), Status::Queued)))
        .collect();
    assert_eq!(found, expected, "the store after the disk was full");
    // And it takes new uploads again.
    let h = up.create_upload(put(20_000, &src)).unwrap();
    up.shutdown().unwrap();
    let up = manager(&store).open().unwrap();
    assert!(up.get(h.id()).is_some());
    eprintln!(
        "full disk ({filled} filler bytes): {} uploads acknowledged, the next create failed \
         with `{err}`, 0 lost after freeing space",
        acked.len()
    );
    drop(up);
}

// ---- (b) injected write and fsync errors -----------------------------------------

/// What the test does to the store, in a cycle, until an operation fails. Each step
/// acts on the `n`th upload (modulo) of those it applies to; a step with no upload to
/// act on creates one instead.
#[derive(Debug, Clone, Copy)]
enum Step {
    Create,
    Pause(usize),
    Resume(usize),
    MakeCurrent(usize),
    Cancel(usize),
    Remove(usize),
}

const SCRIPT: [Step; 12] = [
    Step::Create,
    Step::Create,
    Step::Pause(0),
    Step::Create,
    Step::MakeCurrent(1),
    Step::Cancel(1),
    Step::Resume(0),
    Step::Create,
    Step::Remove(2),
    Step::Pause(3),
    Step::Create,
    Step::Remove(1),
];

/// What the store must hold: id -> status (absent: removed or never created).
type Model = BTreeMap<u64, Status>;

/// The `n`th upload (modulo) whose status satisfies `pred`.
fn pick(model: &Model, n: usize, pred: impl Fn(Status) -> bool) -> Option<u64> {
    let ids: Vec<u64> = model
        .iter()
        .filter(|(_, s)| pred(**s))
        .map(|(id, _)| *id)
        .collect();
    (!ids.is_empty()).then(|| ids[n % ids.len()])
}

/// Runs `step` on the store and, when it succeeds, on the model. Returns the step that
/// ran (a step without a target becomes a create).
fn apply(
    up: &Uploader,
    model: &mut Model,
    step: Step,
    src: &Path,
    created: &mut u64,
) -> (Step, Result<(), Error>) {
    let queued = |s: Status| s == Status::Queued;
    let target = match step {
        Step::Create => None,
        Step::Pause(n) | Step::Cancel(n) => pick(model, n, queued),
        Step::Resume(n) => pick(model, n, |s| s == Status::PausedByApplication),
        Step::MakeCurrent(n) | Step::Remove(n) => pick(model, n, |_| true),
    };
    let Some(id) = target else {
        *created += 1;
        let r = up.create_upload(put(*created, src)).map(|u| {
            model.insert(u.id(), Status::Queued);
        });
        return (Step::Create, r);
    };
    let u = up.get(id).expect("the model's uploads are live");
    let r = match step {
        Step::Create => unreachable!(),
        Step::Pause(_) => u.pause().map(|()| {
            model.insert(id, Status::PausedByApplication);
        }),
        Step::Resume(_) => u.resume().map(|()| {
            model.insert(id, Status::Queued);
        }),
        Step::MakeCurrent(_) => u.make_current(),
        Step::Cancel(_) => u.cancel().map(|()| {
            model.insert(id, Status::Canceled);
        }),
        Step::Remove(_) => u.remove().map(|()| {
            model.remove(&id);
        }),
    };
    (step, r)
}

#[test]
fn injected_write_and_fsync_errors_are_typed_and_lose_nothing() {
    let _watchdog = watchdog(
        "injected_write_and_fsync_errors_are_typed_and_lose_nothing",
        Duration::from_secs(300),
    );
    let tmp = tempfile::tempdir().unwrap();
    let src = write_file(tmp.path(), "src.bin", 4096, 2);
    let mut injected = 0;
    for only in [Some(FileOp::Write), Some(FileOp::Fsync), None] {
        for n in 1..=10u64 {
            for sticky in [false, true] {
                let case = format!("{only:?} #{n} sticky={sticky}");
                let errno = if n % 2 == 0 { EIO } else { ENOSPC };
                let store = tmp.path().join(format!("s-{only:?}-{n}-{sticky}"));
                let hook = Arc::new(FailNth::new(n, sticky, only, errno));
                let up = manager(&store).fault_hook(hook.clone()).open().unwrap();
                let mut model = Model::new();
                let mut created = 0;
                let mut failure = None;
                for (k, step) in SCRIPT.iter().cycle().take(60).enumerate() {
                    let before = model.clone();
                    let (ran, result) = apply(&up, &mut model, *step, &src, &mut created);
                    if let Err(e) = result {
                        assert_eq!(model, before, "{case}: a failed step changed the model");
                        failure = Some((k, ran, e));
                        break;
                    }
                }
                let (k, step, err) =
                    failure.unwrap_or_else(|| panic!("{case}: no operation failed"));
                injected += 1;
                let text = io::Error::from_raw_os_error(errno).to_string();
                assert!(
                    matches!(&err, Error::Io { op, .. } if op.contains("journal")),
                    "{case}: step {k} {step:?} failed with {err}"
                );
                assert!(err.to_string().contains(&text), "{case}: {err}");
                // The journal is poisoned: every later change is refused, typed.
                let later = up.create_upload(put(999, &src)).unwrap_err();
                assert!(
                    matches!(later, Error::JournalPoisoned { .. }),
                    "{case}: after the failure: {later}"
                );
                // The live uploader can record nothing more: every unfinished upload ends
                // (in memory) in Error with the reason, so that nobody waits forever;
                // the rest did not move.
                let live: Model = up.uploads().iter().map(|u| (u.id(), u.status())).collect();
                let shown: Model = model
                    .iter()
                    .map(|(id, s)| (*id, if s.is_final() { *s } else { Status::Error }))
                    .collect();
                assert_eq!(
                    live, shown,
                    "{case}: the live uploader after {step:?} failed"
                );
                for u in up.uploads() {
                    if !model[&u.id()].is_final() {
                        let e = u.wait_timeout(Duration::ZERO).unwrap().unwrap_err();
                        assert!(e.to_string().contains("reopen the store"), "{case}: {e}");
                    }
                }
                up.shutdown().unwrap();

                // Reopened without the fault: exactly what was acknowledged.
                let up = manager(&store).open().unwrap();
                let found: Model = up.uploads().iter().map(|u| (u.id(), u.status())).collect();
                assert_eq!(
                    found, model,
                    "{case}: the store after step {k} {step:?} failed with {err}"
                );
                // And it works again.
                let h = up.create_upload(put(1000, &src)).unwrap();
                h.pause().unwrap();
                up.shutdown().unwrap();
            }
        }
    }
    eprintln!(
        "{injected} write/fsync faults injected at the Uploader level (create, pause, \
         resume, make_current, cancel, remove); every one typed, 0 acknowledged changes lost"
    );
}

/// A journal write or fsync that fails while an upload runs (its start, a progress
/// checkpoint, its response, its completion): the upload ends in bounded time with a
/// typed error, is not sent again and again, and completes after a reopen.
#[test]
fn a_journal_failure_during_a_transfer_ends_it_and_a_reopen_finishes_it() {
    let _watchdog = watchdog(
        "a_journal_failure_during_a_transfer_ends_it_and_a_reopen_finishes_it",
        Duration::from_secs(600),
    );
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::ok());
    let size = 1 << 20;
    let src = write_file(tmp.path(), "src.bin", size, 4);
    let mut injected = 0;
    let mut failed = 0;
    // The create is operations 1 to 3 (its record and, as it starts at once, its Running
    // record written, then one fsync for both); the transfer's records follow.
    for n in 4..=13u64 {
        for sticky in [false, true] {
            let case = format!("operation #{n} sticky={sticky}");
            let store = tmp.path().join(format!("t-{n}-{sticky}"));
            let hook = Arc::new(FailNth::new(n, sticky, None, EIO));
            let up = fast(&store)
                .checkpoint_bytes(64 * 1024)
                .progress_interval(Duration::from_millis(1))
                .max_bandwidth(Some(8 << 20))
                .retention(None)
                .fault_hook(hook.clone())
                .open()
                .unwrap();
            let before = server.request_count();
            let url = server.url(&format!("/t/{n}/{sticky}"));
            let h = up.create_upload(UploadRequest::put(url, &src)).unwrap();
            let result = h
                .wait_timeout(Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{case}: still {:?} after 20 s", h.progress()));
            if hook.seen() >= n {
                injected += 1;
            }
            match result {
                Ok(info) => assert_eq!(info.status, 200, "{case}"),
                Err(e) => {
                    failed += 1;
                    assert!(hook.seen() >= n, "{case}: failed without a fault: {e}");
                    assert!(
                        e.to_string().contains("journal") && e.to_string().contains("reopen"),
                        "{case}: {e}"
                    );
                    assert_eq!(h.status(), Status::Error, "{case}");
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            let sent = server.request_count() - before;
            assert!(sent <= 1, "{case}: the body was sent {sent} times");
            up.shutdown().unwrap();

            let up = fast(&store).retention(None).open().unwrap();
            let h = up.get(h.id()).expect("the upload survived");
            let info = h
                .wait_timeout(Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{case}: not finished after the reopen"))
                .unwrap_or_else(|e| panic!("{case}: failed after the reopen: {e}"));
            assert_eq!(info.status, 200);
            let last = server.requests().pop().unwrap();
            assert!(last.complete && last.body_len == size, "{case}: {last:?}");
            up.shutdown().unwrap();
        }
    }
    assert!(failed > 0, "no fault landed during a transfer");
    eprintln!(
        "{injected} journal faults injected during transfers: {failed} uploads ended in a \
         typed error, each sent at most once, all completed after a reopen"
    );
}

// ---- (c) a response body that does not fit -------------------------------------

#[test]
fn a_response_body_that_fills_the_disk_fails_the_upload_and_gives_the_space_back() {
    let _watchdog = watchdog(
        "a_response_body_that_fills_the_disk_fails_the_upload_and_gives_the_space_back",
        Duration::from_secs(180),
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    fs::create_dir_all(&store).unwrap();
    // Only the response bodies live on the small file system: the journal has room.
    let Some(bodies) = tmpfs(&store.join("bodies"), "256k", "response-body test") else {
        return;
    };
    let server = TestServer::start(Behavior::handler(|head, _| {
        if head.path.starts_with("/huge") {
            Action::HugeBody(1 << 20)
        } else {
            Action::respond(200, "stored")
        }
    }));
    let src = write_file(tmp.path(), "src.bin", 8192, 3);
    let up = fast(&store)
        .max_response_body(4 << 20)
        .retention(None)
        .open()
        .unwrap();
    let huge = up
        .create_upload(UploadRequest::put(server.url("/huge"), &src))
        .unwrap();
    assert!(
        wait_for(&huge, Duration::from_secs(30), Status::is_final),
        "{:?}",
        huge.progress()
    );
    assert_eq!(huge.status(), Status::Error, "{:?}", huge.error());
    let err = huge.error().expect("a failed upload says why");
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains(DISK_FULL),
        "the error says the disk is full: {err}"
    );
    assert!(err.to_string().contains("response body"), "{err}");
    // Nothing half-written is kept: the space is free again.
    let left: Vec<_> = fs::read_dir(bodies.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the failed body left {left:?} behind");

    // The next upload's response fits and is kept.
    let small = up
        .create_upload(UploadRequest::put(server.url("/small"), &src))
        .unwrap();
    let info = small
        .wait_timeout(Duration::from_secs(30))
        .expect("finishes")
        .unwrap();
    assert_eq!(info.status, 200);
    let (huge_id, small_id) = (huge.id(), small.id());
    up.shutdown().unwrap();

    // Reopened: the failure is kept, typed; the completed upload has its body.
    let up = fast(&store)
        .start_transfers(false)
        .retention(None)
        .open()
        .unwrap();
    let huge = up.get(huge_id).expect("the failed upload is kept");
    assert_eq!(huge.status(), Status::Error);
    assert!(huge.error().unwrap().to_string().contains(DISK_FULL));
    let small = up.get(small_id).unwrap();
    assert_eq!(small.status(), Status::Completed);
    let mut body = String::new();
    small
        .response_body()
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, "stored");
    drop(up);
    drop(bodies);
    let _ = File::open(&store); // the store directory outlives its tmpfs
}

// ---- (d) a start's fsync and its first byte ---------------------------------------

/// Holds the first journal fsync for `hold`, notes when it let it go on, and then fails
/// it with `fail` if set.
#[derive(Debug)]
struct SlowFirstFsync {
    hold: Duration,
    fail: Option<i32>,
    fsyncs: std::sync::atomic::AtomicU64,
    released: std::sync::Mutex<Option<std::time::Instant>>,
}

impl SlowFirstFsync {
    fn new(hold: Duration, fail: Option<i32>) -> Arc<Self> {
        Arc::new(SlowFirstFsync {
            hold,
            fail,
            fsyncs: Default::default(),
            released: Default::default(),
        })
    }

    /// When the held fsync was let go on.
    fn released_at(&self) -> std::time::Instant {
        self.released.lock().unwrap().expect("the first fsync ran")
    }
}

impl background_transfer::journal::fault::FaultHook for SlowFirstFsync {
    fn before(&self, op: FileOp) -> io::Result<()> {
        if op == FileOp::Fsync
            && self
                .fsyncs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                == 0
        {
            std::thread::sleep(self.hold);
            *self.released.lock().unwrap() = Some(std::time::Instant::now());
            if let Some(errno) = self.fail {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }
}

/// A store whose first journal fsync is held for 300 ms (then failed with `fail`, if
/// set), a server that answers 200, and a 1 KiB source written with `seed`. Bind
/// `_tmp` where it is taken apart: it holds the store and the source.
struct Held {
    up: Uploader,
    server: TestServer,
    src: std::path::PathBuf,
    hook: Arc<SlowFirstFsync>,
    _tmp: tempfile::TempDir,
}

fn held_first_fsync(seed: u64, fail: Option<i32>) -> Held {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::ok());
    let src = write_file(tmp.path(), "src.bin", 1024, seed);
    let hook = SlowFirstFsync::new(Duration::from_millis(300), fail);
    let up = fast(&tmp.path().join("store"))
        .fault_hook(hook.clone())
        .open()
        .unwrap();
    Held {
        up,
        server,
        src,
        hook,
        _tmp: tmp,
    }
}

/// Runs `run` while another thread polls `seen` (every 200 µs, at most 20 s): when
/// `seen` first held, or `None` if it did not hold before `run` returned, nor once
/// after.
fn first_seen_during(
    seen: impl Fn() -> bool + Sync,
    run: impl FnOnce(),
) -> Option<std::time::Instant> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let watch = s.spawn(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                // Looked at once more after `run` returned: what holds then is seen.
                let last = done.load(Ordering::SeqCst);
                if seen() {
                    return Some(std::time::Instant::now());
                }
                if last || std::time::Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        run();
        done.store(true, Ordering::SeqCst);
        watch.join().unwrap()
    })
}

/// Creates a PUT of `src` to `path` and waits (bounded) for its end.
fn put_and_wait(up: &Uploader, server: &TestServer, path: &str, src: &Path) {
    let h = up
        .create_upload(UploadRequest::put(server.url(path), src))
        .unwrap();
    h.wait_timeout(Duration::from_secs(20))
        .expect("finishes")
        .unwrap();
}

/// A transfer's worker connects while the scheduler fsyncs its start, and sends its
/// first byte only after that fsync: the connect overlaps the fsync, the request does
/// not.
#[test]
fn a_transfer_connects_during_its_starts_fsync_and_sends_only_after_it() {
    let Held {
        up,
        server,
        src,
        hook,
        _tmp,
    } = held_first_fsync(5, None);
    let t0 = std::time::Instant::now();
    let connected = first_seen_during(
        || server.connections() > 0,
        || put_and_wait(&up, &server, "/gated", &src),
    )
    .expect("the worker connected");
    let released = hook.released_at();
    assert!(
        connected < released,
        "the worker connected only {:?} after the start's fsync",
        connected - released
    );
    assert!(released >= t0 + Duration::from_millis(300));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(
        reqs[0].started_at > released,
        "the request arrived {:?} before the start's fsync ran",
        released - reqs[0].started_at
    );
    up.shutdown().unwrap();
}

/// A start whose fsync fails (after a while: its worker has connected meanwhile) never
/// reaches the wire.
#[test]
fn a_start_whose_fsync_fails_sends_nothing() {
    let Held {
        up,
        server,
        src,
        _tmp,
        ..
    } = held_first_fsync(6, Some(EIO));
    let e = up
        .create_upload(UploadRequest::put(server.url("/never"), &src))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Io { op, .. } if op.contains("journal")),
        "{e}"
    );
    assert_eq!(
        server.connections(),
        1,
        "its worker connected during the fsync"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.request_count(), 0, "a request reached the server");
    up.shutdown().unwrap();
}

/// A start is shown (`Running`) only once its record is durable: a handle looking while
/// the start's fsync is held never sees the upload `Running`.
#[test]
fn running_is_shown_only_once_the_start_is_durable() {
    let Held {
        up,
        server,
        src,
        hook,
        _tmp,
    } = held_first_fsync(7, None);
    let shown = first_seen_during(
        || up.uploads().iter().any(|u| u.status() == Status::Running),
        || put_and_wait(&up, &server, "/shown", &src),
    );
    let released = hook.released_at();
    if let Some(at) = shown {
        assert!(
            at >= released,
            "Running was shown {:?} before the start's fsync ended",
            released - at
        );
    }
    up.shutdown().unwrap();
}

/// A new upload is listed (`uploads()`, `get`) only once its creation is durable: a
/// handle looking while the create's fsync is held does not see it, since a power cut
/// then would take it back.
#[test]
fn an_upload_is_listed_only_once_its_create_is_durable() {
    let Held {
        up,
        server,
        src,
        hook,
        _tmp,
    } = held_first_fsync(8, None);
    let listed = first_seen_during(
        || !up.uploads().is_empty() || up.get(1).is_some(),
        || put_and_wait(&up, &server, "/listed", &src),
    );
    let released = hook.released_at();
    let at = listed.expect("the upload is listed once it is created");
    assert!(
        at >= released,
        "the upload was listed {:?} before its create's fsync ended",
        released - at
    );
    up.shutdown().unwrap();
}
