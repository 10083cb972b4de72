//! Child processes: this test binary re-run on its `child_process` entry point, with its
//! stdout read as lines.
//!
//! Each test binary has exactly one entry point, at its crate root:
//!
//! ```ignore
//! #[test]
//! #[ignore = "child-process entry point: run by support::child::command()"]
//! fn child_process() {
//!     support::child::dispatch(&[(restart::CHILD_ENV, restart::child_process)]);
//! }
//! ```
//!
//! Ignored, it never runs (nor counts as a passing test) in a normal run; [`command`]
//! runs it alone ([`ARGS`]: `--exact child_process --ignored`), with the role variable
//! of one module set, and [`dispatch`] calls that module's child body.

use std::ffi::OsStr;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

/// The harness arguments that run the `child_process` entry point and nothing else: it
/// is `#[ignore]`d (so `--ignored`), one thread, its output as it comes.
pub const ARGS: [&str; 5] = [
    "--exact",
    "child_process",
    "--ignored",
    "--nocapture",
    "--test-threads=1",
];

/// What the harness prints before a test's own output, on the same line.
const HARNESS_PREFIX: &str = "test child_process ... ";

/// A child body, selected by the environment variable that names its role.
pub type Role = (&'static str, fn());

/// The body of a binary's `child_process` entry point: calls the child body whose role
/// variable is set. Outside a child run (none is set: `cargo test -- --ignored`) it does
/// nothing; two set at once is a mistake and panics.
pub fn dispatch(roles: &[Role]) {
    let set: Vec<&Role> = roles
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .collect();
    match set[..] {
        [] => {
            let vars: Vec<&str> = roles.iter().map(|(var, _)| *var).collect();
            eprintln!("child_process: not a child run (none of {vars:?} is set): nothing to do");
        }
        [(_, body)] => body(),
        _ => {
            let vars: Vec<&str> = set.iter().map(|(var, _)| *var).collect();
            panic!("child_process: more than one role set: {vars:?}");
        }
    }
}

/// Child side: prints `line` as a marker on a line of its own (after a newline, since
/// the harness printed `test child_process ... ` without one) and flushes stdout.
pub fn mark(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{line}");
    let _ = out.flush();
}

/// This test binary.
pub fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// The command that re-runs this test binary on its `child_process` entry point only,
/// with `var=role` set: stdin from /dev/null, stdout piped (read by [`ChildProcess`]),
/// stderr to /dev/null. Add environment or redirect stderr before spawning.
pub fn command(var: &str, role: impl AsRef<OsStr>) -> Command {
    command_in(Command::new(exe()), var, role)
}

/// [`command`] run through `wrapper`, a command whose last argument is this binary
/// ([`exe`]), such as `ip netns exec <ns> <exe>` or `sh -c '... exec "$0" "$@"' <exe>`:
/// adds [`ARGS`], `var=role` and the same stdio.
pub fn command_in(mut wrapper: Command, var: &str, role: impl AsRef<OsStr>) -> Command {
    wrapper
        .args(ARGS)
        .env(var, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    wrapper
}

/// Spawns [`command`]`(var, role)` with the extra environment `envs`.
pub fn spawn(
    var: &str,
    role: impl AsRef<OsStr>,
    envs: &[(&str, &dyn AsRef<OsStr>)],
) -> ChildProcess {
    let mut cmd = command(var, role);
    for (k, v) in envs {
        cmd.env(k, v.as_ref());
    }
    ChildProcess::spawn(&mut cmd)
}

/// Runs the child body of role `var` in a process of its own, to its end, for a test that
/// must be alone in its process (it counts the process's threads, or installs the
/// process's logger). Its stdout (but the harness's lines) and stderr are repeated on
/// this test's stderr; fails the test if the child failed or did not run the entry point.
pub fn run_alone(var: &str) {
    let out = command(var, "1").stderr(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines() {
        let line = line.strip_prefix(HARNESS_PREFIX).unwrap_or(line);
        let harness = line.is_empty()
            || line.starts_with("running ")
            || line.starts_with("test result: ")
            || line == "ok";
        if !harness {
            eprintln!("{line}");
        }
    }
    eprint!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the child ({var}) failed: {}",
        out.status
    );
}

/// How a wait for a line ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The line that matched.
    Matched(String),
    Timeout,
    /// The child's stdout ended.
    Eof,
}

/// A running child whose stdout lines a thread forwards. Every line is trimmed, loses
/// a leading `test child_process ... ` and, if not empty, is kept ([`Self::lines_so_far`]).
/// Dropping it SIGKILLs and reaps the child.
pub struct ChildProcess {
    child: std::process::Child,
    rx: Receiver<String>,
    lines: Vec<String>,
}

impl ChildProcess {
    /// Spawns `cmd` (whose stdout must be piped) and starts reading its stdout.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().expect("the child's stdout is piped");
        let (tx, rx) = unbounded();
        std::thread::spawn(move || {
            // Reads to the end even when nobody listens, so the child never blocks on a full pipe.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        ChildProcess {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pred` (called on every line, empty ones too), the
    /// timeout, or the end of the child's stdout.
    pub fn wait_until(&mut self, timeout: Duration, mut pred: impl FnMut(&str) -> bool) -> Waited {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(l) => {
                    let l = l.trim();
                    let l = l.strip_prefix(HARNESS_PREFIX).unwrap_or(l).to_string();
                    let hit = pred(&l);
                    if !l.is_empty() {
                        self.lines.push(l.clone());
                    }
                    if hit {
                        return Waited::Matched(l);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Waited::Timeout,
                Err(RecvTimeoutError::Disconnected) => return Waited::Eof,
            }
        }
    }

    /// The first line starting with `prefix` (see [`mark`]), or `None` after `timeout` or
    /// at the end of output.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        match self.wait_until(timeout, |l| l.starts_with(prefix)) {
            Waited::Matched(l) => Some(l),
            Waited::Timeout | Waited::Eof => None,
        }
    }

    /// Reads lines until the child's stdout ends or `timeout`; returns whether it ended.
    pub fn read_to_end(&mut self, timeout: Duration) -> bool {
        self.wait_until(timeout, |_| false) == Waited::Eof
    }

    /// Every non-empty line read so far.
    pub fn lines_so_far(&self) -> &[String] {
        &self.lines
    }

    /// SIGKILLs the child unless it has exited already, and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if self.child.try_wait().unwrap().is_none() {
            self.child.kill().unwrap(); // SIGKILL
        }
        self.child.wait().unwrap()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the child to exit (without killing it).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SIGKILL loop of the resume tests: starts a child with `spawn` (which prints
/// `ID ...` once its upload exists, and `DONE` at the end), lets it move a random
/// amount between `min` and `max` bytes through `proxy`, and SIGKILLs it; `kills`
/// times, within `limit`. Returns how many kills were made (fewer if the upload
/// finished first).
pub fn sigkill_loop(
    proxy: &super::proxy::Proxy,
    kills: u32,
    (min, max): (u64, u64),
    seed: u64,
    limit: Duration,
    spawn: impl Fn() -> ChildProcess,
) -> u32 {
    let mut rng = super::Rng(seed);
    let mut made = 0;
    let deadline = std::time::Instant::now() + limit;
    while made < kills && std::time::Instant::now() < deadline {
        let mut c = spawn();
        c.wait_for_line("ID ", Duration::from_secs(20))
            .expect("the child never opened its upload");
        let before = proxy.bytes_to_server();
        let want = rng.range(min, max);
        let moved = super::wait_until(Duration::from_secs(20), || {
            proxy.bytes_to_server() >= before + want || c.lines_so_far().iter().any(|l| l == "DONE")
        });
        if c.lines_so_far().iter().any(|l| l == "DONE") {
            break;
        }
        assert!(moved, "the child made no progress after kill {made}");
        c.kill();
        made += 1;
    }
    made
}
