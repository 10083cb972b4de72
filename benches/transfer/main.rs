//! Transfer benchmark (issues 8 and 20): this crate next to `curl -T` and a bare ureq
//! PUT, on loopback, in the same run. Prints one table of figures with their targets;
//! asserts nothing about time.
//!
//! Run:        `cargo bench --bench transfer` (plain HTTP and TLS at 64 MiB and 1 GiB,
//!             9 runs)
//! Quick run:  `BGXFER_BENCH_QUICK=1 cargo bench --bench transfer` (64 MiB only, 3 runs)
//! No size:    `BGXFER_BENCH_SIZE=0` skips building `examples/minimal*.rs` (the size rows).
//! No S3:      `BGXFER_BENCH_S3=0` skips the S3 rows (moto from `tests/setup.sh`).
//! Tuning:     `BGXFER_BENCH_ONLY=transfer` stops after the plain and TLS contests,
//!             `BGXFER_BENCH_ONLY=s3` runs only the S3 rows;
//!             `BGXFER_BENCH_BUFFER=<bytes>` sets the crate's `buffer_size`.
//!
//! How it measures:
//! - The sink is this binary re-executed as a child process (`BGXFER_BENCH_ROLE=sink`): a
//!   thread per connection, 1 MiB reads into a reused buffer (plain HTTP bodies are
//!   dropped in the kernel with `MSG_TRUNC`, never copied out), `200` with the byte count
//!   as the body (each contender's answer is checked against the file size). Its CPU per
//!   run is shown next to each contender: far below the wall time, it is not the limit. Plain HTTP and TLS (rustls server, a leaf signed by a throwaway rcgen CA). It
//!   lives in its own process so that its CPU is never counted as a contender's. In
//!   the throughput contests, on a machine of two CPUs or more, it runs on the last
//!   CPU and the contenders on the others: unpinned, the kernel at times put a
//!   contender's thread on the sink's CPU, where every send was preempted by the
//!   sink's wake-up (thousands of context switches per GiB, up to 9 % more CPU for
//!   whichever contender it hit, and the two bare ureq baselines 0.89–1.17 apart).
//!   From the fixed cost on, where the sink does next to nothing per upload, all run
//!   anywhere again: pinned, the crate's three threads on that path (caller,
//!   scheduler, worker) would share one core, about 0.1 ms more on the 2-core machine.
//! - Contenders alternate, rotating the order each round, after one untimed warm-up each.
//!   Every figure is the median of the timed runs; a ratio is the median over rounds of
//!   the wall-time ratio within the round (paired: load from other work drifts over
//!   seconds). A CPU ratio between in-process contenders is paired the same way; one
//!   against curl is that of the totals over all rounds (curl's CPU is in ticks).
//!   The 64 MiB contests take three times the rounds (a run is tens of milliseconds), the
//!   1 GiB ones twice: on plain HTTP every contender's time is the kernel's copies, and
//!   one round's ratio swings from 0.6 to 1.4.
//!   - `curl`: `curl -sS --fail -T <file> <url>` (`--cacert` for TLS). CPU is the
//!     children's user+sys from `/proc/self/stat` (cutime+cstime) around the wait, in
//!     10 ms ticks.
//!   - bare ureq: a fresh agent (rustls, the CA as its only root, no proxy, defaults
//!     otherwise), `agent.put(url).send(File)`, the response body read.
//!   - bare ureq on a thread (TLS only): the same, in a spawned thread, as the crate's
//!     worker runs it: its rows tell a thread's own cost from the crate's.
//!   - this crate: one `Uploader` (journal, default checkpointing, the CA added as a
//!     root), timed from `create_upload(UploadRequest::put(..))` to `wait()`; opening is
//!     timed separately.
//!   - this crate, sendfile on (plain HTTP only): a second `Uploader` with
//!     `UploaderBuilder::sendfile(true)`, timed the same way.
//!   - CPU of the in-process contenders (bare ureq, on a thread, this crate) is this
//!     process's `CLOCK_PROCESS_CPUTIME_ID` delta: nanoseconds, every thread (the
//!     crate's scheduler and prober too); the sink is another process, and nothing
//!     else runs here meanwhile.
//! - Fixed cost: 101 uploads of a 1 KiB file, this crate alternating with bare ureq (the
//!   crate's journal fsyncs, worker thread and stored response, with no bytes to hide
//!   them), after a `sync`, so that those fsyncs do not queue behind the writeback of
//!   the bench's own test files.
//!   Next to it, the disk's own price of an append and fdatasync (what the journal
//!   does twice per upload), measured in the same run.
//! - The CLI: `bgupload send` of that 1 KiB file to a fresh store, a process per run (9,
//!   after a warm-up), alternating with `curl -T`; its syncs counted by strace
//!   (`cli_send.rs`).
//! - Memory: peak RSS (`VmHWM`) of a child process (this binary again) that uploads
//!   8 files at once (8 hard links of a 256 MiB file, 64 MiB quick; plain HTTP,
//!   `max_concurrent(8)`),
//!   next to the same with 8 bare ureq threads and an idle child (the binary's floor); and
//!   of a child that opens a store of 10,000 queued uploads (`start_transfers(false)`).
//! - Journal: the 10,000-upload store is written with the journal API (as
//!   `benches/journal.rs` does); `open()` of it is the median of 5. Replay of 100,000
//!   progress records is `benches/journal.rs`'s figure, measured the same way. fsyncs,
//!   records and bytes per GiB come from the crate's own uploads above: fsyncs from the
//!   journal's process-wide counter (`journal::process_fsyncs`, doc-hidden), bytes from
//!   the journal file's growth, records by scanning what was appended.
//! - Size: `cargo build --profile minimal --example minimal --example minimal_ureq`
//!   (opt-level "z", LTO, one codegen unit, panic=abort, stripped), then the files' sizes;
//!   the same for `minimal_s3` with `--features s3`.
//! - S3: see `s3.rs` (three child processes against moto, alternating; wall ratios are
//!   paired per round, CPU is the children's user+sys).
//!
//! Profiling one contender (the binary is `target/release/deps/transfer-*`):
//! ```text
//! BGXFER_BENCH_ROLE=sink BGXFER_BENCH_DIR=/tmp/b $BIN      # prints `ports <http> <https>`
//! BGXFER_BENCH_ROLE=one BGXFER_BENCH_WHO=crate BGXFER_BENCH_URL=http://127.0.0.1:<http>/x \
//!   BGXFER_BENCH_FILES=/tmp/b/file BGXFER_BENCH_REPEAT=5 valgrind --tool=callgrind $BIN
//! ```
//! (`BGXFER_BENCH_WHO=ureq` for the bare ureq PUT, `crate-sendfile` for the crate with
//! `UploaderBuilder::sendfile` on; `BGXFER_BENCH_CA=/tmp/b/ca.pem` for TLS.)
//!
//! The code, by role: `sink.rs` (the sink process and the parent's handle on it),
//! `baselines.rs` (curl and bare ureq), `this_crate.rs` (the crate's runs), `cli_send.rs`
//! (`bgupload send`), `contest.rs`
//! (contenders alternating on one target), `measure.rs` (CPU, RSS, medians, journal
//! cost), `children.rs` (the memory and profiling child roles), `store.rs` (journal and
//! start-up), `scheduler.rs` (scheduler CPU against the store's size), `size.rs` (the
//! minimal programs), `s3.rs` (S3 multipart against boto3), `report.rs` (the table);
//! `main` runs the
//! sections in order and prints the table.

mod baselines;
mod children;
mod cli_send;
mod contest;
mod measure;
mod report;
mod s3;
mod scheduler;
mod sink;
mod size;
mod store;
mod syscalls;
mod this_crate;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use baselines::{curl_available, run_ureq};
use children::{mem_crate_main, mem_queued_main, mem_ureq_main, memory_rows, one_main};
use contest::{contest, Target};
use measure::{env_on, load_average, median, vm_hwm_kib, JournalCost};
use report::{contest_rows, fmt_mib, print_header, Table};
use sink::{sink_main, Sink};
use size::size_rows;
use store::journal_rows;
use this_crate::{builder, run_crate};

/// Uploads of 1 KiB for the fixed cost, each side: one costs about a millisecond, and a
/// median over many is steadier against the disk's fsync jitter.
const TINY_RUNS: usize = 101;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const ROLE: &str = "BGXFER_BENCH_ROLE";

/// The disk's own price for what the crate's journal does twice per upload: append a
/// record and fdatasync it (a file in `dir`, the store's file system), median of 101.
fn append_fdatasync_ms(dir: &Path) -> f64 {
    let path = dir.join("fdatasync-probe");
    let mut f = File::create(&path).expect("create the fdatasync probe");
    let times: Vec<f64> = (0..101)
        .map(|_| {
            let start = Instant::now();
            f.write_all(&[7u8; 100]).expect("append");
            f.sync_data().expect("fdatasync");
            start.elapsed().as_secs_f64()
        })
        .collect();
    drop(f);
    let _ = fs::remove_file(&path);
    median(&times)
}

/// Writes `size` bytes of a fixed pseudo-random pattern (content is irrelevant: nothing
/// compresses), unless the file already has that size.
fn make_file(path: &Path, size: u64) -> io::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut chunk = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let mut f = io::BufWriter::with_capacity(MIB as usize, File::create(path)?);
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.flush()
}

fn s3_section(table: &mut Table, dir: &Path, quick: bool) {
    let size = if quick { 64 * MIB } else { 256 * MIB };
    let file = dir.join("s3.bin");
    make_file(&file, size).expect("write S3 file");
    s3::s3_rows(table, dir, &file, size, if quick { 2 } else { 5 });
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sink") => return sink_main(),
        Ok("mem-crate") => return mem_crate_main(),
        Ok("mem-ureq") => return mem_ureq_main(),
        Ok("mem-idle") => {
            println!("vmhwm {}", vm_hwm_kib());
            return;
        }
        Ok("mem-queued") => return mem_queued_main(),
        Ok("one") => return one_main(),
        Ok("sched") => return scheduler::sched_main(),
        _ => {}
    }
    let quick = env_on("BGXFER_BENCH_QUICK");
    // `mem_size`: the file the memory rows upload 8 times at once.
    let (plain_size, mem_size, runs) = if quick {
        (64 * MIB, 64 * MIB, 3)
    } else {
        (GIB, 256 * MIB, 9)
    };
    let queued = 10_000u64;
    let load_at_start = load_average();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    eprintln!(
        "transfer benchmark in {} ({}; {runs} runs)",
        dir.display(),
        if quick { "quick" } else { "full" }
    );
    let plain_file = dir.join("plain.bin");
    let mem_file = dir.join("mem.bin");
    make_file(&plain_file, plain_size).expect("write plain file");
    make_file(&mem_file, mem_size).expect("write the memory rows' file");
    let sink = Sink::start(dir);
    let curl = curl_available();
    if !curl {
        println!("curl not installed: its column is skipped");
    }
    let mut table = Table::default();
    if std::env::var("BGXFER_BENCH_ONLY").as_deref() == Ok("s3") {
        // The S3 rows (moto and boto3 are children of this process) run unpinned.
        sink.share_cpus();
        drop(sink);
        s3_section(&mut table, dir, quick);
        print_header(quick, runs, &load_at_start);
        table.print();
        return;
    }

    // 1 and 2: plain HTTP and TLS.
    let store = dir.join("store");
    let t = Instant::now();
    let up = builder(&store, &sink.ca_pem).open().expect("open store");
    let open_empty = t.elapsed().as_secs_f64();
    // The same with `UploaderBuilder::sendfile` on: a contender of the plain contests.
    let up_sendfile = builder(&dir.join("store-sendfile"), &sink.ca_pem)
        .sendfile(true)
        .open()
        .expect("open the sendfile store");
    let mut cost = JournalCost::default();
    // Plain HTTP and TLS at 64 MiB, and in a full run at 1 GiB too (the 1 GiB file serves
    // both: its content is irrelevant).
    let small_file = dir.join("small.bin");
    let sizes: Vec<(u64, &Path)> = if quick {
        vec![(plain_size, &plain_file)]
    } else {
        make_file(&small_file, 64 * MIB).expect("write 64 MiB file");
        vec![(64 * MIB, &small_file), (plain_size, &plain_file)]
    };
    let mut contests = Vec::new();
    for (scheme, port, cacert) in [
        ("http", sink.http, None),
        ("https", sink.https, Some(sink.ca_path.as_path())),
    ] {
        for &(size, file) in &sizes {
            let label = format!(
                "{} {}",
                if cacert.is_some() {
                    "TLS"
                } else {
                    "plain HTTP"
                },
                fmt_mib(size)
            );
            eprintln!("{label}");
            let samples = contest(
                &Target {
                    url: format!("{scheme}://127.0.0.1:{port}/upload/{scheme}"),
                    file,
                    size,
                    cacert,
                },
                if size <= 64 * MIB { 3 * runs } else { 2 * runs },
                curl,
                &sink,
                (&up, &up_sendfile),
                &mut cost,
            );
            contests.push((label, size, cacert.is_some(), samples));
        }
    }
    // The fixed cost of an upload (journal fsyncs, a worker thread, the stored response):
    // a 1 KiB file, alternating with bare ureq.
    let tiny_file = dir.join("tiny.bin");
    make_file(&tiny_file, 1024).expect("write tiny file");
    let tiny = Target {
        url: format!("http://127.0.0.1:{}/upload/tiny", sink.http),
        file: &tiny_file,
        size: 1024,
        cacert: None,
    };
    // The crate's fsyncs must not queue behind the writeback of this bench's own test
    // files (GiBs written at the start): that is the disk's backlog, not the crate's cost.
    let _ = std::process::Command::new("sync").status();
    sink.share_cpus();
    let (mut tiny_crate, mut tiny_ureq) = (Vec::new(), Vec::new());
    for _ in 0..TINY_RUNS {
        tiny_ureq.push(run_ureq(&tiny, &sink.ca_pem).0);
        tiny_crate.push(run_crate(&tiny, &up, &mut JournalCost::default()).0);
    }
    up.shutdown().expect("shutdown");
    let fsync_ms = append_fdatasync_ms(dir) * 1e3;
    for (label, size, tls, samples) in &contests {
        let vs_curl = if *tls {
            (0.95, "≤ 0.95")
        } else {
            (0.75, "≤ 0.75")
        };
        contest_rows(&mut table, label, *size, samples, vs_curl);
    }
    let (ours, bare) = (median(&tiny_crate) * 1e3, median(&tiny_ureq) * 1e3);
    table.info(
        "one 1 KiB upload, plain HTTP (fixed cost)",
        format!("this crate {ours:.1} ms, bare ureq {bare:.1} ms"),
    );
    table.row(
        "one 1 KiB upload: this crate's cost over bare ureq",
        format!("{:.2} ms", ours - bare),
        "≤ 0.5 ms",
        if ours - bare <= 0.5 { "pass" } else { "MISS" },
    );
    table.info(
        "one 1 KiB upload: fdatasync of a 100-byte append on this disk (median of 101); \
         the crate's cost over bare ureq less its 2",
        format!("{fsync_ms:.2} ms; {:.2} ms", ours - bare - 2.0 * fsync_ms),
    );
    syscalls::syscall_rows(
        &mut table,
        dir,
        (
            &format!("http://127.0.0.1:{}/upload/plain", sink.http),
            &plain_file,
            plain_size,
        ),
        (&tiny.url, &tiny_file),
    );
    cli_send::cli_rows(&mut table, dir, &tiny, curl);
    if std::env::var("BGXFER_BENCH_ONLY").as_deref() == Ok("transfer") {
        drop(sink);
        print_header(quick, runs, &load_at_start);
        table.print();
        return;
    }

    // 3: memory.
    let queued_dir = memory_rows(&mut table, dir, &mem_file, mem_size, sink.http, queued);

    // 3b: scheduler CPU against the store's size.
    scheduler::scheduler_rows(&mut table, dir, &plain_file, sink.http);

    // 4: journal and start-up.
    journal_rows(&mut table, dir, &queued_dir, open_empty, &cost);

    // 5: size.
    size_rows(&mut table);
    drop(sink);

    // 6: S3 multipart next to boto3 and the crate's plain PUT (moto, child processes).
    if std::env::var("BGXFER_BENCH_S3").as_deref() != Ok("0") {
        s3_section(&mut table, dir, quick);
    }

    println!();
    print_header(quick, runs, &load_at_start);
    table.print();
}
