//! Child processes: this test binary re-run on its `child_process` test, with its stdout read as lines.

use std::ffi::OsStr;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

/// What the harness prints before a test's own output, on the same line.
const HARNESS_PREFIX: &str = "test child_process ... ";

/// Child side: prints `line` as a marker on a line of its own (after a newline, since
/// the harness printed `test child_process ... ` without one) and flushes stdout.
pub fn mark(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n{line}");
    let _ = out.flush();
}

/// The command that re-runs this test binary on its `child_process` test only, with
/// `var=role` set: stdin from /dev/null, stdout piped (read by [`ChildProcess`]),
/// stderr to /dev/null. Add environment or redirect stderr before spawning.
pub fn command(var: &str, role: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(var, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
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
