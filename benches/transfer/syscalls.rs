//! System calls, counted with `strace -f -c` around a child process (this binary in its
//! `one` role): per MiB sent for a plain HTTP PUT, this crate against bare ureq, and the
//! fsyncs of one 1 KiB upload in-process. Counts, not times: strace slows the child
//! down, but not the number of calls it makes. Skipped without strace.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::children::self_exe;
use crate::report::Table;
use crate::ROLE;

/// Whether strace can run here.
pub fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Calls per system call name for `repeat` uploads of `file` to `url` by `who`.
fn count(dir: &Path, who: &str, url: &str, file: &Path, repeat: usize) -> BTreeMap<String, u64> {
    let out = dir.join(format!("strace-{who}-{repeat}.txt"));
    let status = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .arg(self_exe())
        .env(ROLE, "one")
        .env("BGXFER_BENCH_WHO", who)
        .env("BGXFER_BENCH_URL", url)
        .env("BGXFER_BENCH_FILES", file)
        .env("BGXFER_BENCH_REPEAT", repeat.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run strace");
    assert!(
        status.success(),
        "strace of the {who} child failed: {status}"
    );
    let text = std::fs::read_to_string(&out).expect("strace summary");
    parse(&text)
}

/// `strace -c`'s table: `% time  seconds  usecs/call  calls  [errors]  syscall`.
pub fn parse(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(n)) = (f.last(), f.get(3).and_then(|n| n.parse::<u64>().ok())) else {
            continue;
        };
        if f.len() >= 5 && f[0].parse::<f64>().is_ok() {
            calls.insert((*name).to_string(), n);
        }
    }
    calls
}

fn get(c: &BTreeMap<String, u64>, name: &str) -> u64 {
    c.get(name).copied().unwrap_or(0)
}

/// The rows: per MiB of a `size`-byte plain PUT (`file` to `url`), and the fsyncs of a
/// 1 KiB upload (`tiny` to `tiny_url`) beyond the store's open.
pub fn syscall_rows(
    table: &mut Table,
    dir: &Path,
    (url, file, size): (&str, &Path, u64),
    (tiny_url, tiny): (&str, &Path),
) {
    if !strace_available() {
        table.info("syscalls", "strace not installed: skipped".into());
        return;
    }
    let mib = size as f64 / (1 << 20) as f64;
    let ureq = count(dir, "ureq", url, file, 1);
    let ours = count(dir, "crate", url, file, 1);
    let zero_copy = count(dir, "crate-sendfile", url, file, 1);
    // The crate reads its sources at explicit offsets (`pread64`), as sendfile does.
    let rows: [(&str, &[&str]); 6] = [
        ("`read`/`pread64`", &["read", "pread64"]),
        ("`sendto`", &["sendto"]),
        ("`sendfile`", &["sendfile", "sendfile64"]),
        ("`write`", &["write"]),
        ("`futex`", &["futex"]),
        ("`clock_nanosleep`", &["clock_nanosleep"]),
    ];
    for (label, names) in rows {
        let per_mib =
            |c: &BTreeMap<String, u64>| names.iter().map(|n| get(c, n)).sum::<u64>() as f64 / mib;
        table.info(
            &format!(
                "{label} calls per MiB sent, plain HTTP (this crate / with sendfile on / bare ureq)"
            ),
            format!(
                "{:.1} / {:.1} / {:.1}",
                per_mib(&ours),
                per_mib(&zero_copy),
                per_mib(&ureq)
            ),
        );
    }
    let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>() as f64 / mib;
    table.info(
        "all system calls per MiB sent, plain HTTP (this crate / with sendfile on / bare ureq)",
        format!(
            "{:.1} / {:.1} / {:.1} (the crate's include opening its store)",
            total(&ours),
            total(&zero_copy),
            total(&ureq)
        ),
    );
    // Per upload: 11 uploads less 1, over 10, so that the store's open drops out.
    let one = count(dir, "crate", tiny_url, tiny, 1);
    let eleven = count(dir, "crate", tiny_url, tiny, 11);
    let per = |name: &str| (get(&eleven, name).saturating_sub(get(&one, name))) as f64 / 10.0;
    table.info(
        "fsyncs of one 1 KiB upload in-process (fdatasync journal; fsync of a response body over 4 KiB and its directory)",
        format!(
            "{:.1} fdatasync + {:.1} fsync; threads started {:.1}",
            per("fdatasync"),
            per("fsync"),
            per("clone3") + per("clone")
        ),
    );
}
