//! `bgupload demo`: the crate's main job on a fresh machine, with no network and no
//! setup, in well under 30 seconds.
//!
//! 1. a receiving HTTP server starts on loopback, in this process (`server.rs`);
//! 2. a few temporary files of different sizes are written and hashed;
//! 3. they are queued with different priorities, two of them in a serialized group,
//!    under a bandwidth cap so that progress is visible;
//! 4. progress is shown live;
//! 5. the server goes away for a few seconds: the cut transfers spend one retry
//!    (`waiting-to-retry`), then wait as `paused-no-network` without spending more, and
//!    resume when the prober sees the server back;
//! 6. the `Uploader` is dropped mid-transfer and the store opened again: the uploads
//!    come back from the journal and finish;
//! 7. a summary table compares the SHA-256 the server computed with the source's.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::{GroupBehavior, Priority, Status, Upload, UploadRequest, Uploader};
use sha2::{Digest, Sha256};

use crate::progress_view::{bytes, ProgressView, Row};
use crate::server::{hex, DemoServer, Stats};
use crate::Failure;

const MIB: u64 = 1024 * 1024;
/// All transfers together, so that a few seconds of progress are there to see.
const BANDWIDTH: u64 = 16 * MIB;
const MAX_CONCURRENT: usize = 3;
/// How long the server stays away.
const OUTAGE: Duration = Duration::from_secs(3);
/// The serialized group.
const GROUP: &str = "camera";
/// Longest the demo waits for the uploads to finish at the end.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// name, size, priority, group
const FILES: [(&str, u64, Priority, Option<&str>); 6] = [
    ("note-256K.bin", 256 * 1024, Priority::High, None),
    ("photo-3M.bin", 3 * MIB, Priority::Default, None),
    ("camera-a-6M.bin", 6 * MIB, Priority::Default, Some(GROUP)),
    ("camera-b-6M.bin", 6 * MIB, Priority::High, Some(GROUP)),
    ("logs-12M.bin", 12 * MIB, Priority::Low, None),
    ("backup-48M.bin", 48 * MIB, Priority::Low, None),
];

struct DemoFile {
    name: &'static str,
    path: PathBuf,
    size: u64,
    sha256: String,
    priority: Priority,
    group: Option<&'static str>,
    id: u64,
}

/// The demo's settings: the defaults are WinRT's minutes-long timeouts; a demo wants
/// short probe intervals and backoffs so the outage and the resume show in seconds.
fn builder(store: &Path) -> background_transfer::UploaderBuilder {
    Uploader::builder()
        .store_dir(store)
        .max_concurrent(MAX_CONCURRENT)
        .max_bandwidth(Some(BANDWIDTH))
        .retries(10)
        .backoff(Duration::from_millis(200), Duration::from_secs(1))
        .probe_backoff(Duration::from_millis(250), Duration::from_secs(1))
        .probe_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(10))
        .stall_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(2))
        .progress_interval(Duration::from_millis(100))
        .checkpoint_bytes(4 * MIB)
        // Not persisted: given at every open, in effect before the first transfer.
        .group_behavior(GROUP, GroupBehavior::Serialized)
}

/// Watches the uploads: feeds the view and notes when each one completed.
struct Watch {
    t0: Instant,
    view: ProgressView,
    done_at: HashMap<u64, Duration>,
    seen_no_network: bool,
}

impl Watch {
    /// Polls until `until(uploads)` holds or `timeout` passes; true if it held.
    fn until(
        &mut self,
        up: &Uploader,
        timeout: Duration,
        mut until: impl FnMut(&[Upload]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let uploads = up.uploads();
            let rows: Vec<Row> = uploads.iter().map(Row::of).collect();
            for r in &rows {
                if r.status == Status::Completed {
                    self.done_at
                        .entry(r.id)
                        .or_insert_with(|| self.t0.elapsed());
                }
                if r.status == Status::PausedNoNetwork {
                    self.seen_no_network = true;
                }
            }
            self.view.update(&rows);
            if until(&uploads) {
                self.view.flush(&rows);
                return true;
            }
            if Instant::now() >= deadline {
                self.view.flush(&rows);
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn note(&mut self, text: &str) {
        self.view.note(text);
    }
}

fn io_fail(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::new(format!("demo: could not {what}: {e}"))
}

/// Writes `size` pseudo-random bytes (xorshift) to `path` and returns their SHA-256.
fn make_file(path: &Path, size: u64, seed: u64) -> std::io::Result<String> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut hasher = Sha256::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(MIB) as usize;
        out.write_all(&buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex(&hasher.finalize()))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn all_final(uploads: &[Upload]) -> bool {
    uploads.iter().all(|u| u.status().is_final())
}

pub fn demo() -> Result<u8, Failure> {
    let t0 = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut w = Watch {
        t0,
        view: ProgressView::new(tty),
        done_at: HashMap::new(),
        seen_no_network: false,
    };
    let tmp = tempfile::Builder::new()
        .prefix("bgupload-demo-")
        .tempdir()
        .map_err(io_fail("create a temporary directory"))?;
    let stats = Arc::new(Stats::default());
    let server = DemoServer::start(0, Arc::clone(&stats)).map_err(io_fail("start the server"))?;
    let port = server.port();
    let total: u64 = FILES.iter().map(|f| f.1).sum();
    w.note(&format!(
        "bgupload demo: {} files ({}) to a receiving server inside this process,\n\
         http://127.0.0.1:{port}/, {MAX_CONCURRENT} uploads at a time, {}/s in all",
        FILES.len(),
        bytes(total),
        bytes(BANDWIDTH)
    ));

    // 2. Files.
    let mut files = Vec::new();
    for (i, (name, size, priority, group)) in FILES.iter().enumerate() {
        let path = tmp.path().join(name);
        let sha256 = make_file(&path, *size, i as u64 + 1).map_err(io_fail("write a demo file"))?;
        files.push(DemoFile {
            name,
            path,
            size: *size,
            sha256,
            priority: *priority,
            group: *group,
            id: 0,
        });
    }

    // 3. Queue them. They are accepted (fsynced in the journal) by an Uploader that
    // starts no transfer, so the scheduler then sees them all and starts them in
    // priority order, as it would after a reboot.
    let store = tmp.path().join("store");
    let queue = builder(&store).start_transfers(false).open()?;
    let mut queued = String::new();
    for f in &mut files {
        let url = format!("http://127.0.0.1:{port}/demo/{}", f.name);
        let mut req = UploadRequest::put(url, &f.path).priority(f.priority);
        if let Some(g) = f.group {
            req = req.group(g);
        }
        f.id = queue.create_upload(req)?.id();
        let line = format!(
            "\n    {:>2} {:<16} {:>9}  priority {:<9}{}",
            f.id,
            f.name,
            bytes(f.size),
            priority_word(f.priority),
            f.group
                .map_or(String::new(), |g| format!("group {g} (serialized)"))
        );
        queued.push_str(line.trim_end());
    }
    queue.shutdown()?;
    w.note(&format!(
        "[{}] 1. queued {} PUT uploads, each fsynced before create_upload returned:\
         {queued}",
        secs(t0.elapsed()),
        files.len()
    ));
    let up = builder(&store).open()?;

    // 4. Live progress until the big ones are well under way.
    let backup = files[5].id;
    w.until(&up, Duration::from_secs(10), |ups| {
        let done = ups
            .iter()
            .filter(|u| u.status() == Status::Completed)
            .count();
        let big = ups
            .iter()
            .find(|u| u.id() == backup)
            .is_some_and(|u| u.progress().bytes_sent >= 6 * MIB);
        done >= 3 && big
    });

    // 5. The server goes away, then comes back on the same port.
    w.note(&format!(
        "[{}] 2. the server goes away for {} s (stops listening, cuts its connections)",
        secs(t0.elapsed()),
        OUTAGE.as_secs()
    ));
    let outage = Instant::now();
    server.stop();
    w.until(&up, OUTAGE + Duration::from_secs(7), |ups| {
        outage.elapsed() >= OUTAGE && ups.iter().any(|u| u.status() == Status::PausedNoNetwork)
    });
    let server =
        DemoServer::start(port, Arc::clone(&stats)).map_err(io_fail("restart the server"))?;
    w.note(&format!(
        "[{}]    the server is back on port {port}: the prober sees it, uploads resume",
        secs(t0.elapsed())
    ));
    let resumed = w.until(&up, Duration::from_secs(10), |ups| {
        !ups.iter()
            .any(|u| matches!(u.status(), Status::PausedNoNetwork | Status::WaitingToRetry))
            && ups
                .iter()
                .any(|u| u.status() == Status::Running && u.progress().bytes_sent > 0)
            || all_final(ups)
    });
    if !resumed {
        w.note("         (the uploads have not resumed yet; carrying on)");
    }

    // 6. Drop the Uploader mid-transfer, then open the store again.
    w.until(&up, Duration::from_secs(8), |ups| {
        ups.iter().any(|u| {
            let p = u.progress();
            p.status == Status::Running && p.bytes_sent >= 2 * MIB
        }) || all_final(ups)
    });
    let running: Vec<String> = up
        .uploads()
        .iter()
        .filter(|u| u.status() == Status::Running)
        .map(|u| format!("{} ({})", u.id(), bytes(u.progress().bytes_sent)))
        .collect();
    let dropping = Instant::now();
    drop(up);
    let dropped_in = dropping.elapsed();
    w.view.finish();
    w.note(&format!(
        "[{}] 3. dropped the Uploader mid-transfer (stopped, persisted in {} ms);\n         \
         it was sending: {}",
        secs(t0.elapsed()),
        dropped_in.as_millis(),
        if running.is_empty() {
            "none".to_string()
        } else {
            running.join(", ")
        }
    ));
    let up = builder(&store).open()?;
    let back = up.uploads();
    let unfinished = back.iter().filter(|u| !u.status().is_final()).count();
    w.note(&format!(
        "[{}]    opened the store again: {} uploads came back, {unfinished} unfinished\n         \
         (a plain PUT starts again from byte 0; tus would continue)",
        secs(t0.elapsed()),
        back.len()
    ));
    let finished = w.until(&up, FINISH_TIMEOUT, all_final);
    w.view.finish();
    if !finished {
        w.note(&format!(
            "         the uploads did not all finish within {} s",
            FINISH_TIMEOUT.as_secs()
        ));
    }

    // 7. Summary.
    let row = |c: [&str; 9]| {
        format!(
            "{:>2} {:<15} {:>9}  {:<9} {:>4}  {:<8} {:<8} {:<8} {:>6}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        )
    };
    let mut out = format!("\n[{}] 4. summary\n", secs(t0.elapsed()));
    out.push_str(&row([
        "ID", "FILE", "BYTES", "STATUS", "HTTP", "SOURCE", "SERVER", "SHA-256", "DONE",
    ]));
    let mut good = 0;
    for f in &files {
        let handle = up.get(f.id);
        let status = handle.as_ref().map_or("missing", |u| u.status().as_str());
        let http = handle
            .as_ref()
            .and_then(|u| u.response_info())
            .map_or("-".to_string(), |r| r.status.to_string());
        // The server's own account of what arrived, from the response the store kept.
        let (server_sha, server_bytes) = handle
            .as_ref()
            .and_then(server_report)
            .unwrap_or_else(|| ("-".to_string(), 0));
        let ok = status == "completed" && server_sha == f.sha256 && server_bytes == f.size;
        good += usize::from(ok);
        out.push_str(&row([
            &f.id.to_string(),
            f.name,
            &bytes(f.size),
            status,
            &http,
            &f.sha256[..8],
            server_sha.get(..8).unwrap_or(&server_sha),
            if ok { "match" } else { "MISMATCH" },
            &w.done_at.get(&f.id).map_or("-".to_string(), |d| secs(*d)),
        ]));
    }
    let (wire_total, requests) = files
        .iter()
        .map(|f| stats.get(&format!("/demo/{}", f.name)))
        .fold((0, 0), |(b, n), p| (b + p.wire_bytes, n + p.requests));
    out.push_str(&format!(
        "SOURCE, SERVER: SHA-256 (first digits) of the file and of what the server got.\n\
         \n{good} of {} uploads arrived intact: the server's SHA-256 is the source's.\n\
         The server received {} in {requests} requests for {} of files: after\n\
         the outage and the reopen plain PUTs start again from byte 0.\n\
         DONE: seconds from the start. paused-no-network seen: {}. Total {}.\n",
        files.len(),
        bytes(wire_total),
        bytes(total),
        if w.seen_no_network { "yes" } else { "no" },
        secs(t0.elapsed())
    ));
    up.shutdown()?;
    server.stop();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush());
    drop(stdout);
    if good == files.len() {
        Ok(0)
    } else {
        Err(Failure::new(format!(
            "demo: {} of {} uploads did not arrive intact",
            files.len() - good,
            files.len()
        )))
    }
}

fn priority_word(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Low => "low",
        _ => "default",
    }
}

/// `(sha256, bytes)` from the server's JSON response kept in the store.
fn server_report(u: &Upload) -> Option<(String, u64)> {
    let mut body = String::new();
    u.response_body().ok()?.read_to_string(&mut body).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some((v["sha256"].as_str()?.to_string(), v["bytes"].as_u64()?))
}
