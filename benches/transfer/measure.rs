//! Measurement: CPU from `/proc/<pid>/stat`, peak RSS, the load average, medians, and
//! what the crate's uploads cost the journal (fsyncs, bytes, records).

use std::fs;

/// Whether the environment variable `name` is set to something other than `0`.
pub fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
pub const TICKS: f64 = 100.0;

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// (this process's user+sys, its reaped children's user+sys), in seconds.
pub fn cpu_times() -> (f64, f64) {
    stat_cpu("/proc/self/stat")
}

/// This process's CPU time (user+sys, every thread, those that ended too), in seconds,
/// from `CLOCK_PROCESS_CPUTIME_ID`: the scheduler's own accounting, in nanoseconds, where
/// `/proc/self/stat` counts 10 ms ticks (a 64 MiB TLS upload is a few dozen of them).
pub fn process_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// User+sys of process `pid` (the sink), in seconds.
pub fn pid_cpu(pid: u32) -> f64 {
    stat_cpu(&format!("/proc/{pid}/stat")).0
}

pub fn stat_cpu(path: &str) -> (f64, f64) {
    let stat = fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i - 3).copied().unwrap_or(0) as f64 / TICKS;
    (at(14) + at(15), at(16) + at(17))
}

/// Peak resident set size of this process, in KiB.
pub fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// This process's (user, sys) CPU seconds.
pub fn user_sys() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse::<u64>().unwrap_or(0) as f64 / TICKS)
        .collect();
    (
        f.get(11).copied().unwrap_or(0.0),
        f.get(12).copied().unwrap_or(0.0),
    )
}

pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// What the crate's uploads wrote to the journal.
#[derive(Default)]
pub struct JournalCost {
    pub bytes_uploaded: u64,
    pub fsyncs: u64,
    pub journal_bytes: u64,
    pub records: u64,
}
