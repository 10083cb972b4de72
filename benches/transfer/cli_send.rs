//! `bgupload send` of 1 KiB to a fresh store: the whole life of a program that uses the
//! crate once (start, store creation, its socket and inbox, the upload, the stored
//! answer, shutdown), wall time next to `curl -T` of the same file in the same run, and
//! the syncs it costs (counted with strace). Needs `cargo build --release --example
//! bgupload`, which it runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::baselines::run_curl;
use crate::contest::Target;
use crate::measure::median;
use crate::report::Table;
use crate::size::build_minimal_in;
use crate::syscalls::{parse, strace_available};

const RUNS: usize = 9;
/// The bound on the whole `send`.
const TARGET_MS: f64 = 20.0;

fn bgupload() -> Result<PathBuf, String> {
    build_minimal_in("release", &["--example", "bgupload"])?
        .into_iter()
        .find(|(name, _, _)| name == "bgupload")
        .map(|(_, _, exe)| exe)
        .ok_or_else(|| "cargo built no bgupload".into())
}

fn send(exe: &Path, store: &Path, t: &Target, strace: Option<&Path>) -> f64 {
    let mut cmd = match strace {
        Some(out) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-c", "-e", "trace=fsync,fdatasync,syncfs,sync", "-o"])
                .arg(out)
                .arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg("--store")
        .arg(store)
        .args(["send", &t.url])
        .arg(t.file)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd.status().expect("run bgupload send");
    let wall = start.elapsed().as_secs_f64();
    assert!(status.success(), "bgupload send failed: {status}");
    wall
}

/// The rows for `t` (a 1 KiB file on the plain HTTP sink); `curl` when it is installed.
pub fn cli_rows(table: &mut Table, dir: &Path, t: &Target, curl: bool) {
    let exe = match bgupload() {
        Ok(exe) => exe,
        Err(e) => {
            table.info("`bgupload send` of 1 KiB", format!("not built: {e}"));
            return;
        }
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..=RUNS {
        let store = dir.join(format!("cli-store-{i}"));
        let w = send(&exe, &store, t, None);
        let c = if curl { run_curl(t).0 } else { f64::NAN };
        // The first of each is a warm-up (page cache, the binary's pages).
        if i > 0 {
            ours.push(w);
            theirs.push(c);
        }
    }
    let (ms, curl_ms) = (median(&ours) * 1e3, median(&theirs) * 1e3);
    table.max(
        "`bgupload send` of 1 KiB to a fresh store, wall (median of 9)",
        ms,
        format!("{ms:.1} ms"),
        TARGET_MS,
        "≤ 20 ms",
    );
    if curl {
        table.info(
            "`bgupload send` of 1 KiB: wall, bgupload/curl -T (a process each)",
            format!("{:.2} (curl {curl_ms:.1} ms)", ms / curl_ms),
        );
    }
    if strace_available() {
        let out = dir.join("strace-cli-send.txt");
        send(&exe, &dir.join("cli-store-strace"), t, Some(&out));
        let calls = std::fs::read_to_string(&out)
            .map(|s| parse(&s))
            .unwrap_or_default();
        let n = |name: &str| calls.get(name).copied().unwrap_or(0);
        table.info(
            "`bgupload send` of 1 KiB to a fresh store: syncs",
            format!(
                "{} fdatasync + {} fsync + {} syncfs",
                n("fdatasync"),
                n("fsync"),
                n("syncfs")
            ),
        );
    }
}
