//! The `bgupload` example as scripts use it: the built binary is run against a loopback
//! `TestServer` and its stdout, stderr, exit codes and `list --json` are checked.
//!
//! - `add` prints only the id; `run --until-idle` exits 0 when every upload completed
//!   and 1 when one failed (a 400) or was canceled; `list --json` has the documented
//!   fields and status words; `send` exits by its own upload's outcome;
//! - `cancel`, `remove`, and `add` with a bad URL or a missing file (one-line error on
//!   stderr, non-zero exit, the store keeps its other uploads);
//! - while a `run` holds the store, `list`, `add`, `send`, `pause` and `resume` go to it
//!   and print what they print without it, and a second `run` is refused; SIGINT stops
//!   `run` promptly and
//!   leaves the upload queued; a SIGKILLed `run` continues when started again;
//! - `demo` exits 0 and prints a summary whose checksums match.
//!
//! The binary is `target/<profile>/examples/bgupload`, which `cargo test` builds
//! alongside the tests (with `--test cli` alone, build it first:
//! `cargo build --release --example bgupload`). Every wait is bounded.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{sha256_file, write_file, Action, Behavior, TestServer};

/// Longest any one command may take (the demo takes about 10 s).
const LIMIT: Duration = Duration::from_secs(120);

/// The example binary, next to this test's: `target/<profile>/deps/cli-*` →
/// `target/<profile>/examples/bgupload`.
fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let bin = profile_dir.join("examples").join("bgupload");
    assert!(
        bin.is_file(),
        "{} is missing: `cargo test` builds it; with `--test cli` alone run \
         `cargo build --example bgupload` (same profile) first",
        bin.display()
    );
    bin
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("--store").arg(store).args(args);
    cmd
}

/// Runs the command to completion, at most `LIMIT`.
fn run_cmd(mut cmd: Command) -> Out {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bgupload");
    wait_out(child, LIMIT)
}

/// Waits for `child` (killing it after `limit`) and collects its output.
fn wait_out(mut child: Child, limit: Duration) -> Out {
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let so = thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let se = thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for bgupload") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bgupload did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Out {
        status,
        stdout: so.join().unwrap(),
        stderr: se.join().unwrap(),
    }
}

fn bg(store: &Path, args: &[&str]) -> Out {
    run_cmd(command(store, args))
}

/// `add` → the id it printed (stdout must be exactly one line with a number).
fn add(store: &Path, args: &[&str]) -> u64 {
    let mut all = vec!["add"];
    all.extend_from_slice(args);
    let out = bg(store, &all);
    assert_eq!(out.code(), Some(0), "add {args:?}: {}", out.stderr);
    assert!(out.stderr.is_empty(), "add wrote to stderr: {}", out.stderr);
    let line = out.stdout.strip_suffix('\n').expect("one line");
    assert!(
        !line.contains('\n'),
        "add printed more than the id: {:?}",
        out.stdout
    );
    line.parse().expect("add prints the id")
}

fn list_json(store: &Path) -> Vec<Value> {
    let out = bg(store, &["list", "--json"]);
    assert_eq!(out.code(), Some(0), "list --json: {}", out.stderr);
    match serde_json::from_str(&out.stdout).expect("list --json is JSON") {
        Value::Array(items) => items,
        other => panic!("list --json is not an array: {other}"),
    }
}

fn entry(items: &[Value], id: u64) -> &Value {
    items
        .iter()
        .find(|v| v["id"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("upload {id} not listed: {items:?}"))
}

/// stderr is one sentence on one line, prefixed with the program's name.
fn assert_one_line_error(out: &Out, mentions: &str) {
    assert_ne!(
        out.code(),
        Some(0),
        "expected a failure; stdout {:?}",
        out.stdout
    );
    let err = out.stderr.trim_end();
    assert!(!err.is_empty(), "no error on stderr");
    assert!(!err.contains('\n'), "error is not one line: {err:?}");
    assert!(err.starts_with("bgupload: "), "{err}");
    assert!(
        err.to_lowercase().contains(&mentions.to_lowercase()),
        "{err:?} does not mention {mentions:?}"
    );
}

fn server() -> TestServer {
    TestServer::start(Behavior::handler(|head, _| {
        if head.path.starts_with("/bad") {
            Action::respond(400, "no thanks")
        } else {
            Action::respond(201, "stored")
        }
    }))
}

#[test]
fn add_run_list_and_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = server();
    let a = write_file(tmp.path(), "a.bin", 1 << 20, 1);
    let b = write_file(tmp.path(), "b.bin", 300_000, 2);
    let url_a = srv.url("/ok/a");
    let id_a = add(&store, &[&url_a, a.to_str().unwrap()]);
    let id_b = add(
        &store,
        &[
            "-X",
            "POST",
            "-H",
            "X-Test: yes",
            "--priority",
            "high",
            "--group",
            "g",
            &srv.url("/ok/b"),
            b.to_str().unwrap(),
        ],
    );
    assert_ne!(id_a, id_b);

    // Accepted, not started: `add` does not transfer.
    let items = list_json(&store);
    assert_eq!(items.len(), 2);
    let ea = entry(&items, id_a);
    for field in [
        "id",
        "url",
        "method",
        "file",
        "status",
        "bytes_sent",
        "total_bytes",
        "http_status",
        "error",
    ] {
        assert!(ea.get(field).is_some(), "field {field} missing: {ea}");
    }
    assert_eq!(ea["status"], "queued");
    assert_eq!(ea["url"], url_a.as_str());
    assert_eq!(ea["method"], "PUT", "the CLI's default method");
    assert_eq!(
        ea["protocol"], "plain",
        "list shows the protocol (issue 19)"
    );
    assert_eq!(ea["file"], a.canonicalize().unwrap().to_str().unwrap());
    assert_eq!(ea["bytes_sent"], 0);
    assert_eq!(ea["total_bytes"], 1 << 20);
    assert!(ea["http_status"].is_null());
    assert!(ea["error"].is_null());
    assert_eq!(entry(&items, id_b)["method"], "POST");
    assert_eq!(srv.request_count(), 0, "add or list sent something");

    // Plain `list`: one line per upload with its status word.
    let out = bg(&store, &["list"]);
    assert_eq!(out.code(), Some(0));
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.lines().all(|l| l.contains(" queued ")),
        "{}",
        out.stdout
    );

    // Everything completes: exit 0, plain progress lines (stdout is not a terminal).
    let out = bg(&store, &["run", "--until-idle", "--retries", "0"]);
    assert_eq!(out.code(), Some(0), "run: {}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("completed"), "{}", out.stdout);
    assert!(!out.stdout.contains('\x1b'), "escape codes on a pipe");
    let items = list_json(&store);
    for (id, file, path) in [(id_a, &a, "/ok/a"), (id_b, &b, "/ok/b")] {
        let e = entry(&items, id);
        assert_eq!(e["status"], "completed", "{e}");
        assert_eq!(e["http_status"], 201);
        assert_eq!(e["bytes_sent"], e["total_bytes"]);
        assert!(e["error"].is_null());
        let got = srv
            .requests()
            .into_iter()
            .rfind(|r| r.path == path && r.complete)
            .expect("server got it");
        assert_eq!(got.sha256, sha256_file(file));
    }
    let b_req = srv
        .requests()
        .into_iter()
        .find(|r| r.path == "/ok/b")
        .unwrap();
    assert_eq!(b_req.method, "POST");
    assert_eq!(b_req.header("x-test"), Some("yes"));

    // A final 400: exit 1, the reason on stderr, the response kept.
    let id_bad = add(&store, &[&srv.url("/bad"), a.to_str().unwrap()]);
    let out = bg(&store, &["run", "--until-idle", "--retries", "0"]);
    assert_eq!(out.code(), Some(1), "run: {}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    let items = list_json(&store);
    let e = entry(&items, id_bad);
    assert_eq!(e["status"], "error");
    assert_eq!(e["http_status"], 400);
    assert!(
        e["error"].as_str().is_some_and(|s| s.contains("400")),
        "{e}"
    );
    assert_eq!(entry(&items, id_a)["status"], "completed");
    let out = bg(&store, &["list"]);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(" error ") && l.contains("400")),
        "{}",
        out.stdout
    );

    // `send` answers for its own upload, whatever else the store holds.
    let out = bg(
        &store,
        &[
            "send",
            &srv.url("/ok/sent"),
            b.to_str().unwrap(),
            "--retries",
            "0",
        ],
    );
    assert_eq!(out.code(), Some(0), "send: {}\n{}", out.stdout, out.stderr);
    let out = bg(
        &store,
        &["send", &srv.url("/bad/sent"), b.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(1), "send: {}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("400"), "{}", out.stderr);
}

#[test]
fn cancel_remove_and_bad_adds_keep_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = server();
    let f = write_file(tmp.path(), "f.bin", 4096, 3);
    let url = srv.url("/ok/f");
    let keep = add(&store, &[&url, f.to_str().unwrap()]);
    let gone = add(&store, &[&url, f.to_str().unwrap()]);

    // Bad URL, missing file, bad header, unknown option: one line each, nothing added.
    // A mistake in what was asked exits 2, like a usage mistake (issue 19).
    let out = bg(&store, &["add", "ftp://example.com/x", f.to_str().unwrap()]);
    assert_one_line_error(&out, "url");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let missing = tmp.path().join("no-such-file.bin");
    let out = bg(&store, &["add", &url, missing.to_str().unwrap()]);
    assert_one_line_error(&out, "no-such-file.bin");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let out = bg(
        &store,
        &["add", "-H", "Bad Name: x", &url, f.to_str().unwrap()],
    );
    assert_one_line_error(&out, "header");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let out = bg(
        &store,
        &["add", "-H", "Content-Length: 5", &url, f.to_str().unwrap()],
    );
    assert_one_line_error(&out, "header");
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let out = bg(&store, &["add", "--frobnicate", &url, f.to_str().unwrap()]);
    assert_one_line_error(&out, "frobnicate");
    let out = bg(&store, &["pause", "99"]);
    assert_one_line_error(&out, "99");

    let items = list_json(&store);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items.iter().all(|i| i["status"] == "queued"));

    // pause / resume / cancel / remove.
    let out = bg(&store, &["pause", &keep.to_string()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(entry(&list_json(&store), keep)["status"], "paused");
    let out = bg(&store, &["resume", &keep.to_string()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(entry(&list_json(&store), keep)["status"], "queued");
    let out = bg(&store, &["cancel", &gone.to_string()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let items = list_json(&store);
    assert_eq!(entry(&items, gone)["status"], "canceled");
    assert_eq!(entry(&items, keep)["status"], "queued");

    // A canceled upload makes `run --until-idle` exit 1; the other one still completes.
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("canceled"), "{}", out.stderr);
    assert_eq!(entry(&list_json(&store), keep)["status"], "completed");
    assert_eq!(srv.requests().len(), 1, "the canceled upload was sent");

    let out = bg(&store, &["remove", &gone.to_string()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let items = list_json(&store);
    assert_eq!(items.len(), 1);
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
}

/// Waits until the server has received at least `n` body bytes of some request.
fn wait_for_body(srv: &TestServer, n: u64) {
    assert!(
        srv.wait_until(Duration::from_secs(30), |reqs| reqs
            .iter()
            .any(|r| r.body_len >= n)),
        "the upload did not start"
    );
}

#[test]
fn locked_store_signals_and_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = server();
    let f = write_file(tmp.path(), "slow.bin", 2 << 20, 4);
    let id = add(&store, &[&srv.url("/ok/slow"), f.to_str().unwrap()]);
    let slow = ["run", "--max-bandwidth", "200000"];

    // While `run` holds the store, the other commands go to it and print what they
    // print without it; only a second `run` is refused.
    let child = command(&store, &slow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_body(&srv, 100_000);
    let out = bg(&store, &["list"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(" running "), "{}", out.stdout);
    let items = list_json(&store);
    assert_eq!(entry(&items, id)["status"], "running");
    assert!(
        entry(&items, id)["bytes_sent"].as_u64() > Some(0),
        "live progress"
    );
    let small = write_file(tmp.path(), "small.bin", 1000, 5);
    let added = add(&store, &[&srv.url("/ok/small"), small.to_str().unwrap()]);
    assert_eq!(added, id + 1);
    let out = bg(
        &store,
        &["send", &srv.url("/ok/sent"), small.to_str().unwrap()],
    );
    assert_eq!(out.code(), Some(0), "send through the run: {}", out.stderr);
    let sent = srv
        .requests()
        .into_iter()
        .find(|r| r.path == "/ok/sent" && r.complete)
        .expect("the run sent the send's upload");
    assert_eq!(sent.sha256, sha256_file(&small));
    let out = bg(&store, &["pause", &id.to_string()]);
    assert_eq!(
        out.stdout,
        format!("paused upload {id}\n"),
        "{}",
        out.stderr
    );
    assert_eq!(entry(&list_json(&store), id)["status"], "paused");
    let out = bg(&store, &["resume", &id.to_string()]);
    assert_eq!(
        out.stdout,
        format!("resumed upload {id}\n"),
        "{}",
        out.stderr
    );
    let out = bg(&store, &["run", "--until-idle"]);
    assert_one_line_error(&out, "held by another process");

    // SIGINT: stops promptly (130), and the upload waits as queued, not paused.
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let out = wait_out(child, Duration::from_secs(20));
    assert_eq!(out.code(), Some(130), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    let items = list_json(&store);
    assert_eq!(entry(&items, id)["status"], "queued");

    // SIGKILL mid-body: the next run continues (a PUT starts again) and completes it.
    let before = srv.request_count();
    let mut child = command(&store, &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        srv.wait_until(Duration::from_secs(30), |reqs| reqs.len() > before
            && reqs[before..].iter().any(|r| r.body_len >= 100_000)),
        "the second run did not start sending"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let items = list_json(&store);
    assert_eq!(entry(&items, id)["status"], "completed");
    let last = srv
        .requests()
        .into_iter()
        .rfind(|r| r.complete)
        .expect("a complete body");
    assert_eq!(last.sha256, sha256_file(&f));
}

#[test]
fn demo_exits_zero_with_matching_checksums() {
    let out = run_cmd({
        let mut c = Command::new(bin());
        c.arg("demo");
        c
    });
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("paused-no-network"), "{}", out.stdout);
    let table: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("summary"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.contains(".bin"))
        .collect();
    assert_eq!(table.len(), 6, "{}", out.stdout);
    for row in table {
        let cols: Vec<&str> = row.split_whitespace().collect();
        // ID FILE BYTES(2 words) STATUS HTTP SOURCE SERVER CHECK DONE(2 words)
        assert_eq!(cols.len(), 11, "{row}");
        assert_eq!(cols[4], "completed", "{row}");
        assert_eq!(cols[5], "201", "{row}");
        assert_eq!(cols[6], cols[7], "checksums differ: {row}");
        assert_eq!(cols[8], "match", "{row}");
    }
    assert!(!out.stdout.contains("MISMATCH"));
    assert!(
        out.stdout.contains("6 of 6 uploads arrived intact"),
        "{}",
        out.stdout
    );
}

/// `--protocol s3` against moto: the keys come from the AWS environment variables at
/// `run` (never from the store), `list --json` shows the protocol and the parts, and
/// the object arrives byte-exact. Without the keys in the environment, `run` fails the
/// upload with an error that names the variables.
#[cfg(feature = "s3")]
#[test]
fn s3_add_run_list_with_keys_from_the_environment() {
    use support::s3::{Kind, S3Server, BUCKET};
    let Some(moto) = S3Server::start("bgupload --protocol s3", Kind::Moto) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let size = 12 << 20;
    let src = write_file(tmp.path(), "obj.bin", size, 21);
    let url = format!("{}/{BUCKET}/cli/obj%20one.bin", moto.endpoint());
    let src_arg = src.to_str().unwrap();
    let id = add(
        &store,
        &["--protocol", "s3", "--part-size", "5242880", &url, src_arg],
    );
    let listed = list_json(&store);
    let e = entry(&listed, id);
    assert_eq!(e["protocol"], "s3");
    assert_eq!(e["part_size"], 5242880);
    assert_eq!(e["parts_total"], 3);
    assert_eq!(e["parts_done"], 0);

    // No keys in the environment: a clear, final error.
    let mut cmd = command(&store, &["run", "--until-idle"]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    let out = run_cmd(cmd);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let listed = list_json(&store);
    let err = entry(&listed, id)["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");

    // With them: a new upload of the same file completes.
    let id = add(&store, &["--protocol", "s3", &url, src_arg]);
    let mut cmd = command(&store, &["run", "--until-idle"]);
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDCLI")
        .env("AWS_SECRET_ACCESS_KEY", "cli-secret-value")
        .env("AWS_SESSION_TOKEN", "cli-session-token");
    let out = run_cmd(cmd);
    // The first upload stays failed, so the run exits 1; this one completed.
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let listed = list_json(&store);
    let e = entry(&listed, id);
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["parts_done"], e["parts_total"]);
    assert_eq!(e["part_size"], 8 << 20, "the default part size");
    let got = moto
        .get_object("cli/obj one.bin")
        .expect("the object is there");
    assert_eq!(support::sha256_hex(&got), sha256_file(&src));
    for secret in ["cli-secret-value", "cli-session-token"] {
        support::assert_no_bytes(&store, secret.as_bytes());
    }
}

/// `run` takes SIGUSR1 as "the network changed": an upload waiting as
/// `paused-no-network` (its server not there yet) probes at once instead of at the
/// prober's next try, and the process goes on (SIGUSR1 would otherwise end it).
#[test]
fn sigusr1_makes_run_probe_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let port = support::closed_port();
    let f = write_file(tmp.path(), "u.bin", 64 << 10, 6);
    let url = format!("http://127.0.0.1:{port}/usr1/u.bin");
    add(&store, &[&url, f.to_str().unwrap()]);
    let mut child = command(&store, &["run", "--until-idle"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Probes at 0, 2, 6 and 14 s: after 15 s the next is at 30 s.
    std::thread::sleep(Duration::from_secs(15));
    let srv = TestServer::start_on(port, Action::respond(201, "stored"));
    let kill = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let signaled = Instant::now();
    let done = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if signaled.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signaled.elapsed();
    let status = done.expect("run did not finish");
    assert_eq!(status.code(), Some(0), "SIGUSR1 must not end the process");
    assert_eq!(srv.requests().last().unwrap().sha256, sha256_file(&f));
    eprintln!(
        "SIGUSR1: the upload completed {:.2} s after the signal",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(10),
        "completed {took:?} after SIGUSR1: the prober's own next try (at 30 s) did it"
    );
}

/// `--give-up-after`: `send` to a host that never answers exits 1 after the duration,
/// naming the upload and what it waits for; the upload stays in the store, and a later
/// run finishes it. Without `--until-idle`, `run` refuses the option (2).
#[test]
fn give_up_after_ends_a_wait_for_a_script() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let port = support::closed_port();
    let f = write_file(tmp.path(), "g.bin", 64 << 10, 8);
    let url = format!("http://127.0.0.1:{port}/give/g.bin");
    let started = Instant::now();
    let out = bg(
        &store,
        &["send", "--give-up-after", "3s", &url, f.to_str().unwrap()],
    );
    let took = started.elapsed();
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("gave up after 3 s") && out.stderr.contains("paused-no-network"),
        "{}",
        out.stderr
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let items = list_json(&store);
    assert_eq!(items.len(), 1, "the upload stays in the store");
    let srv = TestServer::start_on(port, Action::respond(201, "stored"));
    let out = bg(&store, &["run", "--until-idle", "--give-up-after", "60"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(srv.requests().last().unwrap().sha256, sha256_file(&f));
    let out = bg(&store, &["run", "--give-up-after", "5m"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--until-idle"), "{}", out.stderr);
}

/// `--tus --tus-meta key=value` against @tus/server: the entries reach the server's
/// metadata beside the file name; on another protocol the option is a usage error (2).
#[test]
fn tus_meta_reaches_the_tus_server() {
    use support::tus::TusServer;
    let tmp = tempfile::tempdir().unwrap();
    let Some(tus) = TusServer::start("bgupload --tus-meta", &tmp.path().join("tus")) else {
        return;
    };
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "m.mp4", 100 << 10, 12);
    let fa = f.to_str().unwrap();
    add(
        &store,
        &[
            "--tus",
            "--tus-meta",
            "filetype=video/mp4",
            "--tus-meta",
            "k=a=b",
            &tus.endpoint(),
            fa,
        ],
    );
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let ids = tus.upload_ids();
    assert_eq!(ids.len(), 1);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(tus.meta_file(&ids[0])).unwrap()).unwrap();
    assert_eq!(meta["metadata"]["filename"], "m.mp4", "{meta}");
    assert_eq!(meta["metadata"]["filetype"], "video/mp4", "{meta}");
    assert_eq!(meta["metadata"]["k"], "a=b", "{meta}");
    assert_eq!(
        list_json(&store)[0]["bytes_acknowledged_as_of"],
        "completed"
    );
    let out = bg(&store, &["add", "--tus-meta", "a=b", &tus.endpoint(), fa]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let out = bg(
        &store,
        &["add", "--tus", "--tus-meta", "a b=c", &tus.endpoint(), fa],
    );
    assert_eq!(
        out.code(),
        Some(2),
        "a bad key is a usage error: {}",
        out.stderr
    );
}

/// `--protocol gcs` against gcp-storage-emulator: an initiation URL (the token from
/// BGUPLOAD_BEARER_TOKEN at `run`, never in the store) and a session URI started
/// beforehand both arrive byte-exact; `list --json` shows the protocol, the chunks and
/// the acknowledged bytes, and no URL query.
#[cfg(feature = "gcs")]
#[test]
fn gcs_add_run_list_with_the_token_from_the_environment() {
    use support::cloud::{Cloud, Emulator};
    let Some(cloud) = Cloud::start("bgupload --protocol gcs", Emulator::Gcs) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let size = 3 << 20;
    let src = write_file(tmp.path(), "g.bin", size, 23);
    let src_arg = src.to_str().unwrap();
    let url = Cloud::initiation_url(&cloud.base(), "cli-gcs.bin");
    let id = add(
        &store,
        &["--protocol", "gcs", "--part-size", "1048576", &url, src_arg],
    );
    let uri = cloud.gcs_session("cli-given.bin", size);
    let given = add(&store, &["--protocol", "gcs", &uri, src_arg]);
    let e = entry(&list_json(&store), given).clone();
    assert_eq!(e["protocol"], "gcs");
    assert!(!e["url"].as_str().unwrap().contains("upload_id"), "{e}");
    let mut cmd = command(&store, &["run", "--until-idle"]);
    cmd.env("BGUPLOAD_BEARER_TOKEN", "ya29.cli-bearer-token");
    let out = run_cmd(cmd);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let listed = list_json(&store);
    let e = entry(&listed, id);
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["part_size"], 1 << 20);
    assert_eq!(e["parts_total"], 3);
    assert_eq!(e["parts_done"], 3);
    assert_eq!(e["bytes_acknowledged"], size);
    assert_eq!(entry(&listed, given)["status"], "completed");
    for name in ["cli-gcs.bin", "cli-given.bin"] {
        let got = cloud.get(name).expect("the object is there");
        assert_eq!(support::sha256_hex(&got), sha256_file(&src), "{name}");
    }
    support::assert_no_bytes(&store, b"cli-bearer-token");
    let out = bg(
        &store,
        &[
            "add",
            "--protocol",
            "gcs",
            "--part-size",
            "1000",
            &url,
            src_arg,
        ],
    );
    assert_eq!(
        out.code(),
        Some(2),
        "a chunk that is not 256 KiB-aligned: {}",
        out.stderr
    );
    assert!(out.stderr.contains("256 KiB"), "{}", out.stderr);
}

/// `--protocol azure` against Azurite: the SAS URL's blob arrives byte-exact, `list`
/// never shows the SAS, and a URL without one is a usage error (2).
#[cfg(feature = "azure")]
#[test]
fn azure_add_run_list_with_a_sas_url() {
    use support::cloud::{Cloud, Emulator};
    let Some(cloud) = Cloud::start("bgupload --protocol azure", Emulator::Azurite) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let size = 5 << 20;
    let src = write_file(tmp.path(), "a.bin", size, 29);
    let src_arg = src.to_str().unwrap();
    let url = cloud.blob_url(&cloud.base(), "cli-azure.bin", 3600);
    let id = add(
        &store,
        &[
            "--protocol",
            "azure",
            "--part-size",
            "2097152",
            "-H",
            "x-ms-meta-device: cli",
            &url,
            src_arg,
        ],
    );
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let listed = list_json(&store);
    let e = entry(&listed, id);
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["protocol"], "azure");
    assert_eq!(e["parts_total"], 3);
    assert_eq!(e["bytes_acknowledged"], size);
    let text = bg(&store, &["list"]);
    assert!(!text.stdout.contains("sig=") && !format!("{listed:?}").contains("sig="));
    let got = cloud.get("cli-azure.bin").expect("the blob is there");
    assert_eq!(support::sha256_hex(&got), sha256_file(&src));
    let bare = format!("{}/uploads/no-sas.bin", cloud.base());
    let out = bg(&store, &["add", "--protocol", "azure", &bare, src_arg]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("SAS"), "{}", out.stderr);
}

/// `send --client-cert --client-key --ca-cert` against a server that requires a device
/// certificate: with it the upload completes; without it `send` exits 1 and says the
/// certificate was refused; a missing key file is a mistake in what was asked (2).
#[test]
fn send_with_a_client_certificate() {
    use support::tls::{ClientCa, TlsMaterial};
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("cli device CA");
    let srv = TestServer::start_tls_material(
        Action::respond(201, "stored"),
        TlsMaterial::requiring_client_certs(&ca),
    );
    let pem = ca.issue("cli-device", false);
    let cert = tmp.path().join("device.crt");
    let key = tmp.path().join("device.key");
    let roots = tmp.path().join("roots.pem");
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    std::fs::write(&roots, srv.ca_pem()).unwrap();
    let f = write_file(tmp.path(), "f.bin", 2 << 20, 3);
    let (cert, key, roots, f) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        roots.to_str().unwrap(),
        f.to_str().unwrap(),
    );
    let store = tmp.path().join("store");
    let url = srv.url("/device");
    let out = bg(
        &store,
        &[
            "send",
            "--client-cert",
            cert,
            "--client-key",
            key,
            "--ca-cert",
            roots,
            &url,
            f,
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        srv.requests().last().unwrap().sha256,
        sha256_file(Path::new(f))
    );
    let out = bg(&store, &["send", "--ca-cert", roots, &url, f]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("refused the client certificate"),
        "{}",
        out.stderr
    );
    let missing = tmp.path().join("missing.key");
    let out = bg(
        &store,
        &[
            "send",
            "--client-cert",
            cert,
            "--client-key",
            missing.to_str().unwrap(),
            &url,
            f,
        ],
    );
    assert_one_line_error(&out, "missing.key");
    assert_eq!(out.code(), Some(2));
}

/// `response ID`: the kept answer, status line and headers on stderr and the body on
/// stdout, byte for byte; an upload without an answer yet, or no such upload, is a
/// one-line error.
#[test]
fn response_prints_the_kept_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = TestServer::start(Action::respond_with_headers(
        201,
        &[("X-Receipt", "r-42")],
        "stored as /v/7\nline two\n",
    ));
    let f = write_file(tmp.path(), "a.bin", 4096, 1);
    let id = add(&store, &[&srv.url("/v"), f.to_str().unwrap()]);
    let out = bg(&store, &["response", &id.to_string()]);
    assert_one_line_error(&out, "no response yet");
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = bg(&store, &["response", &id.to_string()]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "stored as /v/7\nline two\n");
    assert!(out.stderr.starts_with("HTTP 201 from "), "{}", out.stderr);
    assert!(out.stderr.contains("x-receipt: r-42"), "{}", out.stderr);
    let out = bg(&store, &["response", "999"]);
    assert_one_line_error(&out, "no upload 999");
}

/// An upload whose request got no answer says which request and where, in `list`
/// (text and JSON) and in `run`'s report (issue 19).
#[test]
fn list_names_the_request_that_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "d.bin", 10_000, 4);
    let srv = TestServer::start(Action::CloseImmediately);
    let url = srv.url("/drop/d.bin");
    let id = add(&store, &[&url, f.to_str().unwrap()]);
    let out = bg(&store, &["run", "--until-idle", "--retries", "0"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let named = format!(" {url}: ");
    assert!(out.stderr.contains(&named), "{}", out.stderr);
    let items = list_json(&store);
    let err = entry(&items, id)["error"].as_str().unwrap().to_string();
    assert!(err.contains(&named), "{err}");
    let out = bg(&store, &["list"]);
    assert!(out.stdout.contains(&named), "{}", out.stdout);
}

/// `add --bearer-from-file FILE`: the token is read from FILE at each request, never
/// stored; a 401 reads it once more (a device agent rewrote it) and sends again without
/// spending a retry (issue 14).
#[test]
fn bearer_from_file_is_read_at_each_request() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let token = tmp.path().join("token");
    std::fs::write(&token, "tok-one-4711\n").unwrap();
    let f = write_file(tmp.path(), "t.bin", 30_000, 5);
    let rotate = token.clone();
    let srv = TestServer::start(Behavior::handler(move |head, _| {
        match head.header("authorization") {
            Some("Bearer tok-two-4712") => Action::respond(201, "stored"),
            Some("Bearer tok-one-4711") => {
                // The agent hands out a new token; this one is refused.
                std::fs::write(&rotate, "tok-two-4712").unwrap();
                Action::respond(401, "expired")
            }
            _ => Action::respond(400, "no token"),
        }
    }));
    let id = add(
        &store,
        &[
            "--bearer-from-file",
            token.to_str().unwrap(),
            &srv.url("/t.bin"),
            f.to_str().unwrap(),
        ],
    );
    let out = bg(&store, &["run", "--until-idle", "--retries", "0"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let got = srv.requests();
    assert_eq!(
        got.len(),
        2,
        "the refused one and the one with the new token"
    );
    assert_eq!(got[1].sha256, sha256_file(&f));
    let items = list_json(&store);
    assert_eq!(entry(&items, id)["status"], "completed");
    assert_eq!(entry(&items, id)["attempts"], 0);
    support::assert_no_bytes(&store, b"tok-one-4711");
    support::assert_no_bytes(&store, b"tok-two-4712");
    // It applies to plain and tus only: elsewhere a usage error (2), nothing added.
    let out = bg(
        &store,
        &[
            "add",
            "--protocol",
            "azure",
            "--bearer-from-file",
            token.to_str().unwrap(),
            &srv.url("/c/b?sig=x"),
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_eq!(list_json(&store).len(), 1);
}

/// `add --url-from-command 'CMD'`: each request goes to the URL CMD prints (a fresh
/// presigned URL), never stored; a command that fails is a transient error naming it.
#[test]
fn url_from_command_sends_each_request_to_the_printed_url() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "u.bin", 40_000, 6);
    let srv = TestServer::start(Action::respond(201, "stored"));
    // The command is recorded (it is no secret); the URL it prints is: here it comes
    // from a file a signing agent would write.
    let url_file = tmp.path().join("signed-url");
    std::fs::write(&url_file, srv.url("/signed/u.bin?X-Sig=sig-5150")).unwrap();
    let cmd = format!("cat '{}'", url_file.display());
    let id = add(
        &store,
        &[
            "--url-from-command",
            &cmd,
            &srv.url("/own/u.bin"),
            f.to_str().unwrap(),
        ],
    );
    let out = bg(&store, &["run", "--until-idle"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let got = srv.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/signed/u.bin?X-Sig=sig-5150");
    assert_eq!(got[0].sha256, sha256_file(&f));
    assert_eq!(entry(&list_json(&store), id)["status"], "completed");
    support::assert_no_bytes(&store, b"sig-5150");

    let bad = add(
        &store,
        &[
            "--url-from-command",
            "exit 3",
            &srv.url("/own/v.bin"),
            f.to_str().unwrap(),
        ],
    );
    let out = bg(&store, &["run", "--until-idle", "--retries", "0"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let err = entry(&list_json(&store), bad)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("URL command failed"), "{err}");
    assert_eq!(srv.requests().len(), 1, "nothing sent without a URL");
}

/// `send --sendfile`: the file goes out with sendfile(2), byte-exact.
#[test]
fn send_with_sendfile_is_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let srv = server();
    let f = write_file(tmp.path(), "f.bin", (2 << 20) + 3, 8);
    let out = bg(
        &store,
        &[
            "send",
            "--sendfile",
            &srv.url("/ok/zc"),
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code(), Some(0), "send: {}\n{}", out.stdout, out.stderr);
    let got = srv
        .requests()
        .into_iter()
        .find(|r| r.path == "/ok/zc" && r.complete)
        .expect("the upload reached the server");
    assert_eq!((got.body_len, got.sha256), ((2 << 20) + 3, sha256_file(&f)));
}
