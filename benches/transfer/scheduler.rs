//! Scheduler CPU against the size of the store: a child uploads 4 files at once (held
//! to a bandwidth cap, progress every 5 ms, so messages keep coming) from a store that
//! also retains N completed uploads, and reports the scheduler thread's CPU per second.
//! The work per message must not grow with N (issue 16).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::journal::record::{StateV1, StatusV1};
use background_transfer::journal::{Durability, Record, Store};
use background_transfer::{UploadRequest, Uploader};

use crate::children::child_role;
use crate::report::Table;
use crate::store::created;

/// A store of `n` uploads to `url`, completed or left queued, written with the journal
/// API.
fn make_retained_store(dir: &Path, n: u64, src: &Path, url: &str, completed: bool) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(src).expect("source");
    let mtime_ns = meta
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec());
    let mut store = Store::open(dir).expect("open store");
    for id in 1..=n {
        let c = created(id, url, src, meta.len(), mtime_ns);
        store.commit(c, Durability::Batched).expect("append");
        if !completed {
            continue;
        }
        let done = Record::State(StateV1 {
            id,
            status: StatusV1::Completed,
            attempts: 0,
            error: None,
            at_ms: 1_700_000_000_000 + id,
        });
        store.commit(done, Durability::Batched).expect("append");
    }
    store.sync().expect("sync");
}

/// CPU seconds of this process's thread named `name`, in nanoseconds of run time
/// (`schedstat`: clock ticks are too coarse for a thread that mostly sleeps).
fn thread_cpu(name: &str) -> Option<f64> {
    for t in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let stat = fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns: f64 = stat.split(' ').next()?.parse().ok()?;
            return Some(ns / 1e9);
        }
    }
    None
}

/// The child: `BGXFER_BENCH_STORE`, `BGXFER_BENCH_URL`, `BGXFER_BENCH_FILES` (one file).
pub fn sched_main() {
    let store = std::env::var("BGXFER_BENCH_STORE").expect("BGXFER_BENCH_STORE");
    let url = std::env::var("BGXFER_BENCH_URL").expect("BGXFER_BENCH_URL");
    let file = crate::children::files_from_env().remove(0);
    let up = Uploader::builder()
        .store_dir(store)
        .max_bandwidth(Some(16 << 20))
        .progress_interval(Duration::from_millis(5))
        .open()
        .expect("open store");
    let handles: Vec<_> = (0..4)
        .map(|i| {
            up.create_upload(UploadRequest::put(format!("{url}/sched/{i}"), &file))
                .expect("create")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let name = "bgxfer-schedule"; // "bgxfer-scheduler", as the kernel cuts it to 15 bytes
    let c0 = thread_cpu(name).expect("the scheduler thread");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let c1 = thread_cpu(name).expect("the scheduler thread");
    let running = up
        .uploads()
        .iter()
        .filter(|h| h.status() == background_transfer::Status::Running)
        .count();
    println!(
        "cpu_ms_per_s {:.3}",
        (c1 - c0) * 1e3 / t0.elapsed().as_secs_f64()
    );
    println!("running {running}");
    for h in &handles {
        let _ = h.cancel();
    }
    drop(up);
}

/// 3b: the rows.
pub fn scheduler_rows(table: &mut Table, dir: &Path, file: &Path, http: u16) {
    eprintln!("scheduler CPU with retained uploads");
    let url = format!("http://127.0.0.1:{http}");
    let mut figures = Vec::new();
    for (retained, completed, what) in [
        (0u64, true, "0 retained"),
        (10_000, true, "10,000 completed retained"),
        (10_000, false, "10,000 more queued"),
    ] {
        let store = dir.join(format!("sched-{retained}-{completed}"));
        let _ = fs::remove_dir_all(&store);
        make_retained_store(&store, retained, file, &url, completed);
        let out = child_role(
            "sched",
            &[
                ("BGXFER_BENCH_STORE", store.display().to_string()),
                ("BGXFER_BENCH_URL", url.clone()),
                ("BGXFER_BENCH_FILES", file.display().to_string()),
            ],
        );
        let cpu: f64 = out
            .get("cpu_ms_per_s")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        let running = out.get("running").cloned().unwrap_or_default();
        table.info(
            &format!("scheduler CPU, 4 running, {what}"),
            format!("{cpu:.2} ms per s ({running} running when measured)"),
        );
        figures.push(cpu);
    }
    table.info(
        "scheduler CPU, 10,000 completed / none retained",
        format!("{:.2}", figures[1] / figures[0].max(0.001)),
    );
    table.info(
        "scheduler CPU, 10,000 queued / none",
        format!("{:.2}", figures[2] / figures[0].max(0.001)),
    );
}
