//! Security: the store is private (0700 directories, 0600 files, whatever the umask),
//! credentials never reach the logs or a `Debug`/`Display`, and no combination of the
//! public settings makes a certificate that should fail pass.
//!
//! Memory and disk use under a hostile server are bounded: see `hostile.rs`
//! (`an_endless_body_keeps_memory_and_disk_bounded`, and the body cap in the table test).
//! Credentials not following a redirect to another origin: `redirects.rs` (another port)
//! and `hostile.rs` (another host).
//!
//! The log test installs the process's logger and reads every line logged: it runs in a
//! child process of its own (`BGXFER_SECURITY_LOG_CHILD`), where no other test logs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use background_transfer::{Error, Recovery, ResponseInfo, Status, Upload, UploadRequest};

use crate::support::child;
use crate::support::{
    closed_port, fast, wait_for, write_file, Action, Behavior, RequestHead, TestServer, TlsFlavor,
};

const BOUND: Duration = Duration::from_secs(20);

// ---- modes -----------------------------------------------------------------------------

pub const CHILD_ENV: &str = "BGXFER_SECURITY_CHILD";

/// The child: fills a store under `umask 000` (set by the parent's shell), so that any
/// file or directory the crate creates without an explicit mode shows up as world-writable.
pub fn child_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let store = dir.join("store");
    let server = TestServer::start(Behavior::handler(|head: &RequestHead, _| {
        // Answers over 4 KiB: each gets a body file (a smaller one stays in the journal).
        let page = |word: &str| word.repeat(1000);
        if head.path == "/deny" {
            Action::respond(403, page("denied"))
        } else {
            Action::respond(201, page("stored"))
        }
    }));
    let src = write_file(dir, "src", 50_000, 1);
    let up = fast(&store).open().unwrap();
    let reqs = [
        UploadRequest::put(server.url("/put"), &src),
        UploadRequest::from_reader(server.url("/spooled"), &[7u8; 40_000][..]),
        UploadRequest::multipart(server.url("/form"))
            .text("a", "b")
            .file("f", &src),
        UploadRequest::put(server.url("/deny"), &src),
    ];
    for r in reqs {
        let h = up.create_upload(r).unwrap();
        let _ = h.wait_timeout(BOUND).expect("ended");
    }
    up.shutdown().unwrap();
    // Damage the journal so that the next open keeps a copy aside.
    let mut j = fs::OpenOptions::new()
        .append(true)
        .open(store.join("journal"))
        .unwrap();
    std::io::Write::write_all(
        &mut j,
        // A whole frame (length 10) with a wrong checksum, and more after it.
        &[
            10, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
        ],
    )
    .unwrap();
    drop(j);
    let up = fast(&store).open().unwrap();
    assert!(
        matches!(up.recovery(), Recovery::Corrupt { .. }),
        "{:?}",
        up.recovery()
    );
    up.shutdown().unwrap();
    println!("\nDONE");
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_store_is_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // Directories left lax by someone else are tightened at open.
    fs::create_dir_all(store.join("bodies")).unwrap();
    fs::create_dir_all(store.join("spool")).unwrap();
    for d in [&store, &store.join("bodies"), &store.join("spool")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(child::exe());
    let out = child::command_in(sh, CHILD_ENV, tmp.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid = fs::metadata(tmp.path()).unwrap().uid();
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    let mut stack = vec![store.clone()];
    while let Some(dir) = stack.pop() {
        let m = mode(&dir);
        seen.push(format!("{:o} {}", m, dir.display()));
        if m != 0o700 {
            bad.push(format!("directory {} is {m:o}, not 700", dir.display()));
        }
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            assert_eq!(meta.uid(), uid, "{} has another owner", p.display());
            if meta.is_dir() {
                stack.push(p);
            } else {
                let m = mode(&p);
                seen.push(format!("{m:o} {}", p.display()));
                if m != 0o600 {
                    bad.push(format!("file {} is {m:o}, not 600", p.display()));
                }
            }
        }
    }
    seen.sort();
    eprintln!(
        "store after uploads under umask 000:\n  {}",
        seen.join("\n  ")
    );
    assert!(bad.is_empty(), "{bad:#?}");
    // Every kind of file was there to check.
    let names: Vec<&str> = seen.iter().filter_map(|s| s.rsplit('/').next()).collect();
    for want in ["journal", "lock", "journal.corrupt-1", "bodies", "spool"] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    assert!(fs::read_dir(store.join("bodies")).unwrap().count() >= 4);
    assert!(fs::read_dir(store.join("spool")).unwrap().count() >= 1);
}

// ---- redaction -------------------------------------------------------------------------

/// Every string that must never appear in a log line, a `Debug` or a `Display`.
const SECRETS: &[&str] = &[
    "SECRET123",   // Authorization: Bearer
    "SECRET456",   // Cookie
    "SECRETKEY",   // X-Api-Key
    "SECRETPW",    // password in the URL's userinfo
    "SECRETUSER",  // user name in the URL's userinfo (tokens are sent this way too)
    "SECRETQ",     // ?token= in the query (presigned URLs)
    "SECRETSC",    // Set-Cookie from the server
    "SECRETPROXY", // password of the proxy URL
    // `user:SECRETPW` as ureq sends it, in Basic authorization.
    "dXNlcjpTRUNSRVRQVw",
];

fn leaked(s: &str) -> Option<&'static str> {
    SECRETS.iter().copied().find(|x| s.contains(x))
}

struct Captured {
    thread: std::thread::ThreadId,
    level: log::Level,
    target: String,
    text: String,
}

struct Capture(Mutex<Vec<Captured>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        let text = r.args().to_string();
        self.0.lock().unwrap().push(Captured {
            thread: std::thread::current().id(),
            level: r.level(),
            target: r.target().to_string(),
            text,
        });
    }
    fn flush(&self) {}
}

/// The process's capturing logger, installed once.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        // `set_logger` with a leaked one: `set_boxed_logger` needs log's `std` feature.
        log::set_logger(c).expect("the only logger of this test binary");
        c
    })
}

/// The log lines captured since `from`, skipping this test binary's own (its loopback
/// server logs the requests it receives: that is the far end, not the client).
fn lines_since(from: usize) -> Vec<Line> {
    capture().0.lock().unwrap()[from..]
        .iter()
        .filter(|c| !c.target.starts_with(env!("CARGO_CRATE_NAME")))
        .map(|c| (c.thread, c.level, c.target.clone(), c.text.clone()))
        .collect()
}

/// A captured line: thread, level, target, text.
type Line = (std::thread::ThreadId, log::Level, String, String);

/// ureq-proto logs raw bytes at TRACE as rows of hex (`4854 5450 2f31 ...  HTTP/1...`);
/// a secret split over two rows shows only once the rows are joined again (per thread:
/// transfers run side by side).
fn hex_dump_bytes(lines: &[Line]) -> Vec<u8> {
    let mut threads: Vec<std::thread::ThreadId> = Vec::new();
    for (t, ..) in lines {
        if !threads.contains(t) {
            threads.push(*t);
        }
    }
    let mut out = Vec::new();
    for thread in threads {
        for (_, _, target, text) in lines.iter().filter(|l| l.0 == thread) {
            if !target.starts_with("ureq_proto") {
                continue;
            }
            for token in text.split(' ').take(8) {
                for pair in token.as_bytes().chunks(2) {
                    let pair = std::str::from_utf8(pair).unwrap_or("--");
                    if let Ok(b) = u8::from_str_radix(pair, 16) {
                        out.push(b);
                    }
                }
            }
        }
        out.push(0);
    }
    out
}

/// Everything one round of uploads produced that a program could print.
struct Round {
    /// `Debug` and `Display` texts of requests, handles, infos, errors, events.
    shown: Vec<String>,
}

/// Runs uploads carrying every kind of credential, successful and failing ones.
fn round(tmp: &Path, tag: &str) -> Round {
    let server = TestServer::start(Behavior::ok());
    let port = server.port();
    server.set_handler(Arc::new(move |head: &RequestHead, _| {
        let path = head.path.split('?').next().unwrap_or("");
        match path {
            "/ok" => Action::respond_with_headers(
                201,
                &[("Set-Cookie", "sid=SECRETSC; HttpOnly")],
                "done",
            ),
            "/redirect" => Action::Redirect {
                status: 307,
                location: format!("http://localhost:{port}/ok?token=SECRETQ"),
            },
            "/deny" => Action::respond(401, "no"),
            "/garbage" => Action::Garbage,
            _ => Action::respond(404, "?"),
        }
    }));
    let f = write_file(tmp, &format!("src-{tag}"), 1000, 4);
    let store = tmp.join(format!("store-{tag}"));
    let up = fast(&store).retries(1).open().unwrap();
    let mut shown = vec![format!("{up:?}")];
    let with_secrets = |r: UploadRequest| {
        r.header("Authorization", "Bearer SECRET123")
            .unwrap()
            .header("Cookie", "session=SECRET456")
            .unwrap()
            .header("X-Api-Key", "SECRETKEY")
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let userinfo = format!("http://user:SECRETPW@127.0.0.1:{port}");
    let user_only = format!("http://SECRETUSER@127.0.0.1:{port}");
    let offline = format!("http://user:SECRETPW@127.0.0.1:{}", closed_port());
    let requests = vec![
        UploadRequest::put(format!("{base}/ok?token=SECRETQ"), &f),
        UploadRequest::put(format!("{userinfo}/ok?token=SECRETQ"), &f),
        UploadRequest::put(format!("{user_only}/ok"), &f),
        UploadRequest::put(format!("{base}/redirect?token=SECRETQ"), &f),
        UploadRequest::put(format!("{base}/deny?token=SECRETQ"), &f),
        UploadRequest::put(format!("{base}/garbage?token=SECRETQ"), &f),
        UploadRequest::from_reader(format!("{userinfo}/ok?token=SECRETQ"), &[1u8; 500][..]),
        UploadRequest::multipart(format!("{base}/ok?token=SECRETQ"))
            .text("t", "v")
            .file("f", &f),
        UploadRequest::put(format!("{offline}/x?token=SECRETQ"), &f),
    ];
    let mut handles: Vec<Upload> = Vec::new();
    for r in requests {
        let r = with_secrets(r);
        shown.push(format!("{r:?}"));
        let h = up.create_upload(r).unwrap();
        shown.push(format!("{h:?}"));
        shown.push(format!("{:?}", h.request()));
        handles.push(h);
    }
    let events = handles[0].events();
    for h in &handles[..handles.len() - 1] {
        match h.wait_timeout(BOUND).expect("ended") {
            Ok(info) => shown.push(format!("{info:?}")),
            Err(e) => shown.extend([format!("{e:?}"), e.to_string()]),
        }
        if let Some(info) = h.response_info() {
            shown.push(format!("{info:?}"));
        }
        shown.push(format!("{:?}", h.progress()));
    }
    shown.extend(events.try_iter().map(|e| format!("{e:?}")));
    // The unreachable one waits for the network (and logs why); then it is canceled.
    let offline = handles.last().unwrap();
    assert!(wait_for(offline, BOUND, |s| s == Status::PausedNoNetwork));
    if let Some(e) = offline.error() {
        shown.extend([format!("{e:?}"), e.to_string()]);
    }
    offline.cancel().unwrap();
    let infos: Vec<Option<ResponseInfo>> = handles.iter().map(Upload::response_info).collect();
    assert_eq!(infos[0].as_ref().unwrap().status, 201);
    assert!(
        infos[0].as_ref().unwrap().header("set-cookie").is_some(),
        "the program can still read its cookie"
    );
    assert_eq!(
        infos[3].as_ref().unwrap().status,
        201,
        "redirect followed: {:?}",
        server
            .requests()
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(handles[4].status(), Status::Error);

    // Refused at once: the error must not repeat the secret it refused.
    let refusals: Vec<Result<UploadRequest, Error>> = vec![
        UploadRequest::put(server.url("/ok"), &f).header("Authorization", "Bearer SECRET123\r\n"),
        UploadRequest::put(server.url("/ok"), &f).header("Cookie", "session=SECRET456\0"),
        Ok(UploadRequest::put(
            "ftp://user:SECRETPW@127.0.0.1/x?token=SECRETQ",
            &f,
        )),
        Ok(UploadRequest::put(
            "http://user:SECRETPW@127.0.0.1:99999/x?token=SECRETQ",
            &f,
        )),
        // URLs that do not parse, with `/`, `?` or `#` inside the userinfo: nothing of
        // the password may show (issue 16).
        Ok(UploadRequest::put(
            "http://user:pa/SECRETPW@127.0.0.1/x",
            &f,
        )),
        Ok(UploadRequest::put(
            "http://user:pa?SECRETPW@127.0.0.1/x",
            &f,
        )),
        Ok(UploadRequest::put(
            "http://user:pa#SECRETPW@127.0.0.1/x",
            &f,
        )),
        Ok(UploadRequest::put("http://SECRETUSER:x@[::1/x", &f)),
    ];
    for r in refusals {
        let e = match r {
            Ok(r) => up.create_upload(r).expect_err("refused"),
            Err(e) => e,
        };
        shown.extend([format!("{e:?}"), e.to_string()]);
    }
    // A builder with a proxy that has a password.
    let b = fast(&store).proxy(Some("http://puser:SECRETPROXY@127.0.0.1:9".into()));
    shown.push(format!("{b:?}"));
    shown.push(format!("{:?}", b.config()));
    up.shutdown().unwrap();
    Round { shown }
}

/// Role of the child process that runs the log test alone.
pub const LOG_CHILD_ENV: &str = "BGXFER_SECURITY_LOG_CHILD";

#[test]
fn credentials_never_reach_logs_debug_or_messages() {
    child::run_alone(LOG_CHILD_ENV);
}

/// The log test, in the child process: its logger sees no other test's lines.
pub fn credentials_child_process() {
    let tmp = tempfile::tempdir().unwrap();
    capture();

    // DEBUG: nothing at all may carry a secret, from this crate or its dependencies.
    log::set_max_level(log::LevelFilter::Debug);
    let from = capture().0.lock().unwrap().len();
    let r = round(tmp.path(), "debug");
    let lines = lines_since(from);
    assert!(
        lines
            .iter()
            .any(|(_, _, t, _)| t.starts_with("background_transfer")),
        "the crate's own lines were captured"
    );
    assert!(
        lines.iter().any(|(_, _, t, _)| t.starts_with("ureq")),
        "ureq's lines were captured"
    );
    let mut found = Vec::new();
    for (_, level, target, text) in &lines {
        if let Some(s) = leaked(text) {
            found.push(format!("{level} {target}: {s} in {text}"));
        }
    }
    for text in &r.shown {
        if let Some(s) = leaked(text) {
            found.push(format!("Debug/Display: {s} in {text}"));
        }
    }
    assert!(found.is_empty(), "{found:#?}");
    eprintln!(
        "debug round: {} log lines and {} Debug/Display texts, no secret",
        lines.len(),
        r.shown.len()
    );

    // TRACE: the crate's own lines still carry no secret. ureq and ureq-proto do: at TRACE
    // ureq-proto dumps every byte of the request in hex (credentials, cookies, the query)
    // and ureq prints the path with its query. That is upstream behaviour no library can
    // filter (the logger is the program's); the crate documentation says so and tells
    // programs to keep the `ureq` targets below TRACE. Any other source of a leak fails.
    log::set_max_level(log::LevelFilter::Trace);
    let from = capture().0.lock().unwrap().len();
    let r = round(tmp.path(), "trace");
    let lines = lines_since(from);
    log::set_max_level(log::LevelFilter::Debug);
    let mut ours = Vec::new();
    let mut upstream: Vec<String> = Vec::new();
    for (_, level, target, text) in &lines {
        if let Some(s) = leaked(text) {
            if target.starts_with("ureq") {
                upstream.push(format!("{level} {target}"));
            } else {
                ours.push(format!("{level} {target}: {s} in {text}"));
            }
        }
    }
    for text in &r.shown {
        if let Some(s) = leaked(text) {
            ours.push(format!("Debug/Display: {s} in {text}"));
        }
    }
    assert!(ours.is_empty(), "{ours:#?}");
    let dump = String::from_utf8_lossy(&hex_dump_bytes(&lines)).into_owned();
    let in_dump: Vec<&str> = SECRETS
        .iter()
        .copied()
        .filter(|s| dump.contains(s))
        .collect();
    upstream.sort();
    upstream.dedup();
    eprintln!(
        "trace round: {} log lines; none of this crate's lines leaks. Upstream at TRACE: \
         lines from {upstream:?} carry secrets, and ureq-proto's hex dumps hold {in_dump:?}",
        lines.len()
    );
}

// ---- TLS -------------------------------------------------------------------------------

#[test]
fn no_public_setting_lets_a_bad_certificate_through() {
    // There is no switch to turn certificate verification off (no `danger_*` method on
    // the builder): this test uses only the public API and tries every setting that
    // touches trust. Each of these must fail with `Error::Tls` and send no body byte.
    let tmp = tempfile::tempdir().unwrap();
    let untrusted = TestServer::start_tls(Action::ok());
    let wrong_host = TestServer::start_tls_with(Action::ok(), TlsFlavor::WrongHost);
    let expired = TestServer::start_tls_with(Action::ok(), TlsFlavor::Expired);
    let unrelated = TestServer::start_tls(Action::ok()); // another CA, trusted below
    let good = TestServer::start_tls(Action::respond(201, "ok"));
    let wrong_url = wrong_host.url("/u");
    let plain = TestServer::start(Action::Redirect {
        status: 307,
        location: wrong_url,
    });
    let f = write_file(tmp.path(), "src", 30_000, 5);
    type Setup =
        fn(background_transfer::UploaderBuilder, &[String]) -> background_transfer::UploaderBuilder;
    let cases: Vec<(&str, Setup, &TestServer, String)> = vec![
        (
            "default roots, private CA",
            |b, _| b,
            &untrusted,
            untrusted.url("/u"),
        ),
        (
            "no roots at all",
            |b, _| b.webpki_roots(false),
            &untrusted,
            untrusted.url("/u"),
        ),
        (
            "another CA trusted",
            |b, p| b.add_root_certificate_pem(p[0].clone()),
            &untrusted,
            untrusted.url("/u"),
        ),
        (
            "another CA trusted, no webpki roots",
            |b, p| b.webpki_roots(false).add_root_certificate_pem(p[0].clone()),
            &untrusted,
            untrusted.url("/u"),
        ),
        (
            "its CA trusted, certificate for another host",
            |b, p| b.add_root_certificate_pem(p[1].clone()),
            &wrong_host,
            wrong_host.url("/u"),
        ),
        (
            "its CA trusted, certificate expired",
            |b, p| b.add_root_certificate_pem(p[2].clone()),
            &expired,
            expired.url("/u"),
        ),
        (
            "reached through a 307 from plain HTTP",
            |b, p| b.add_root_certificate_pem(p[1].clone()),
            &wrong_host,
            plain.url("/start"),
        ),
        (
            "tus, certificate for another host",
            |b, p| b.add_root_certificate_pem(p[1].clone()),
            &wrong_host,
            wrong_host.url("/files"),
        ),
    ];
    let pems = [unrelated.ca_pem(), wrong_host.ca_pem(), expired.ca_pem()];
    let mut running = Vec::new();
    for (i, (what, setup, _, url)) in cases.iter().enumerate() {
        let b = setup(fast(&tmp.path().join(format!("s{i}"))), &pems);
        let up = b.open().unwrap();
        let mut req = UploadRequest::put(url.clone(), &f);
        if what.starts_with("tus") {
            req = req.tus(None);
        }
        let h = up.create_upload(req).unwrap();
        running.push((up, h));
    }
    let started = Instant::now();
    for ((what, _, server, _), (up, h)) in cases.iter().zip(running) {
        let e = h
            .wait_timeout(BOUND)
            .unwrap_or_else(|| panic!("{what}: did not end"))
            .expect_err(what);
        assert!(matches!(e, Error::Tls { .. }), "{what}: {e:?}");
        assert!(
            server.requests().iter().all(|r| r.body_len == 0),
            "{what}: a body byte reached the server"
        );
        eprintln!("{what:<48} -> {e}");
        up.shutdown().unwrap();
    }
    assert!(started.elapsed() < BOUND);
    // The control: the same code path does work when the certificate is right.
    let up = fast(&tmp.path().join("good"))
        .add_root_certificate_pem(good.ca_pem())
        .open()
        .unwrap();
    let h = up
        .create_upload(UploadRequest::put(good.url("/u"), &f))
        .unwrap();
    let info = h
        .wait_timeout(BOUND)
        .expect("ended")
        .expect("a good certificate works");
    assert_eq!(info.status, 201);
    up.shutdown().unwrap();
    drop(plain);
}
