//! Hostile and broken servers: garbage instead of HTTP, a connection closed at once, no
//! answer, header floods, trickles, bogus framing, endless and huge bodies, bad TLS
//! certificates, and a redirect to another host. Every case ends in bounded time with a
//! typed error (or, for an oversized body after a 2xx, a completed upload whose stored body
//! is cut at the cap), memory and disk stay bounded, and nothing else in the store is lost.
//!
//! Complements, does not repeat: `tls.rs` (each bad certificate on its own, with its
//! message), `timeouts.rs` (connect, response and send timeouts, their retry rules),
//! `redirects.rs` (307/308 re-send, 301-303 refused, credentials kept from another
//! *port*; here: from another *host*).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::{Error, ResponseInfo, Status, Upload, UploadRequest, Uploader};

use crate::rawserver::{Conn, RawServer};
use crate::support;
use crate::support::child::{self, mark, ChildProcess};
use crate::support::{fast, write_file, Action, Behavior, RequestHead, TestServer, TlsFlavor};

/// Stored response body cap for the table test.
const CAP: u64 = 256 * 1024;
/// Every case must end within this.
const BOUND: Duration = Duration::from_secs(20);

/// The error's variant (and phase or status), for table checks.
fn kind(e: &Error) -> String {
    match e {
        Error::Timeout { phase } => format!("Timeout({phase})"),
        Error::HttpStatus { status } => format!("HttpStatus({status})"),
        other => support::kind(other),
    }
}

/// What a case must end with.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Failed with this error kind (see [`kind`]), after this many requests reached the
    /// server (`None`: not checked).
    Err(&'static str, Option<usize>),
    /// Completed with the stored body cut at [`CAP`].
    Truncated,
    /// Completed with the whole body of this length stored.
    Whole(u64),
    /// Failed with this HTTP status, its (endless) body stored up to [`CAP`].
    StatusTruncated(u16),
}

/// Writes a response head, then repeats `chunk` until the client goes away or the server
/// stops.
fn endless(c: &mut Conn, head: &str, chunk: &[u8]) -> std::io::Result<()> {
    c.discard_body()?;
    c.send(head.as_bytes())?;
    while !c.stopped() {
        c.send(chunk)?;
    }
    Ok(())
}

/// Writes `head`, then one byte of `trickle` every 50 ms, until the client goes away.
fn trickle(c: &mut Conn, head: &str, byte: u8) -> std::io::Result<()> {
    c.discard_body()?;
    c.send(head.as_bytes())?;
    while c.sleep(Duration::from_millis(50)) {
        c.send(&[byte])?;
    }
    Ok(())
}

/// Answers with `bytes` after reading the body, then closes.
fn answer(bytes: &'static [u8]) -> impl Fn(&mut Conn) -> std::io::Result<()> {
    move |c: &mut Conn| {
        c.discard_body()?;
        c.send(bytes)
    }
}

/// Keeps a server alive for the test's duration, whatever its type.
type Keep = Box<dyn std::any::Any>;

struct Case {
    name: &'static str,
    url: String,
    method: &'static str,
    want: Want,
    /// Counts requests that reached the server.
    requests: Box<dyn Fn() -> usize>,
}

fn test_server_case(
    keep: &mut Vec<Keep>,
    name: &'static str,
    server: TestServer,
    method: &'static str,
    want: Want,
) -> Case {
    let url = server.url("/u");
    let server = Arc::new(server);
    let s = server.clone();
    keep.push(Box::new(server));
    Case {
        name,
        url,
        method,
        want,
        requests: Box::new(move || s.request_count()),
    }
}

fn raw_case(keep: &mut Vec<Keep>, name: &'static str, server: RawServer, want: Want) -> Case {
    let url = server.url("/u");
    let server = Arc::new(server);
    let s = server.clone();
    keep.push(Box::new(server));
    Case {
        name,
        url,
        method: "PUT",
        want,
        requests: Box::new(move || s.heads().len()),
    }
}

fn body_file(store: &Path, id: u64) -> std::path::PathBuf {
    store.join("bodies").join(id.to_string())
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn check_completed(name: &str, store: &Path, h: &Upload, info: &ResponseInfo, want: Want) {
    let on_disk = file_len(&body_file(store, h.id()));
    match want {
        Want::Truncated => {
            assert!(info.body_truncated, "{name}: body_truncated is set");
            assert_eq!(info.body_len, CAP, "{name}: stored exactly the cap");
            assert_eq!(on_disk, CAP, "{name}: the body file holds at most the cap");
        }
        Want::Whole(len) => {
            assert!(
                !info.body_truncated,
                "{name}: a body of exactly the cap is whole"
            );
            assert_eq!(info.body_len, len, "{name}");
            assert_eq!(on_disk, len, "{name}");
        }
        other => panic!("{name}: completed ({info:?}), wanted {other:?}"),
    }
    assert_eq!(info.status, 200, "{name}");
}

#[test]
fn hostile_servers_end_typed_in_bounded_time_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let src = write_file(tmp.path(), "src", 32 * 1024, 1);
    let mut keep: Vec<Keep> = Vec::new();

    let good_server = TestServer::start(Action::respond(201, "stored-good"));
    let wrong_host = TestServer::start_tls_with(Action::ok(), TlsFlavor::WrongHost);
    let expired = TestServer::start_tls_with(Action::ok(), TlsFlavor::Expired);
    let up = fast(&store)
        .max_concurrent(64)
        .retries(2)
        .response_timeout(Duration::from_millis(800))
        .max_response_body(CAP)
        .add_root_certificate_pem(wrong_host.ca_pem())
        .add_root_certificate_pem(expired.ca_pem())
        .open()
        .unwrap();

    // An upload that completes before the hostile ones start: it must survive them.
    let good = up
        .create_upload(UploadRequest::put(good_server.url("/good"), &src))
        .unwrap();
    let good_info = good
        .wait_timeout(BOUND)
        .expect("good upload ended")
        .expect("good upload completed");
    assert_eq!(good_info.status, 201);

    let mut cases =
        vec![
        test_server_case(
            &mut keep,
            "garbage instead of HTTP (PUT, retried)",
            TestServer::start(Action::Garbage),
            "PUT",
            Want::Err("Protocol", Some(3)),
        ),
        test_server_case(
            &mut keep,
            "garbage instead of HTTP (POST, not resent)",
            TestServer::start(Action::Garbage),
            "POST",
            Want::Err("NotResumable", Some(1)),
        ),
        test_server_case(
            &mut keep,
            "closes at once",
            TestServer::start(Action::CloseImmediately),
            "PUT",
            Want::Err("Network", Some(3)),
        ),
        test_server_case(
            &mut keep,
            "never answers (1 hour delay)",
            TestServer::start(Action::DelayResponse(Duration::from_secs(3600))),
            "PUT",
            Want::Err("Timeout(response)", Some(3)),
        ),
        test_server_case(
            &mut keep,
            "never reads, never answers",
            TestServer::start(Action::StallAfterBodyBytes(0)),
            "PUT",
            Want::Err("Timeout(response)", Some(3)),
        ),
        test_server_case(
            &mut keep,
            "endless body after 200",
            TestServer::start(Action::HugeBody(u64::MAX)),
            "PUT",
            Want::Truncated,
        ),
        test_server_case(
            &mut keep,
            "huge body after 200 (64 x the cap)",
            TestServer::start(Action::HugeBody(64 * CAP)),
            "PUT",
            Want::Truncated,
        ),
        test_server_case(
            &mut keep,
            "body of exactly the cap",
            TestServer::start(Action::HugeBody(CAP)),
            "PUT",
            Want::Whole(CAP),
        ),
        raw_case(
            &mut keep,
            "endless header flood",
            RawServer::start(|c| {
                let line = format!("X-Flood: {}\r\n", "a".repeat(1000));
                endless(c, "HTTP/1.1 200 OK\r\n", line.as_bytes())
            }),
            Want::Err("Protocol", Some(3)),
        ),
        raw_case(
            &mut keep,
            "response head trickles (1 byte / 50 ms)",
            RawServer::start(|c| trickle(c, "HTTP/1.1 200 OK\r\nX-Slow: ", b'a')),
            Want::Err("Timeout(response)", Some(3)),
        ),
        raw_case(
            &mut keep,
            "endless 100 Continue",
            RawServer::start(|c| {
                c.discard_body()?;
                while c.sleep(Duration::from_millis(5)) {
                    c.send(b"HTTP/1.1 100 Continue\r\n\r\n")?;
                }
                Ok(())
            }),
            Want::Err("Timeout(response)", Some(3)),
        ),
        raw_case(
            &mut keep,
            "200, then the body trickles",
            RawServer::start(|c| {
                trickle(c, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n", b'x')
            }),
            Want::Err("Timeout(response)", Some(3)),
        ),
        raw_case(
            &mut keep,
            "endless body after 500",
            RawServer::start(|c| {
                endless(
                    c,
                    "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n",
                    &[b'e'; 16 * 1024],
                )
            }),
            Want::StatusTruncated(500),
        ),
        raw_case(
            &mut keep,
            "bogus chunk size",
            RawServer::start(answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\nhello\r\n0\r\n\r\n",
            )),
            Want::Err("Protocol", Some(3)),
        ),
        raw_case(
            &mut keep,
            "body shorter than its Content-Length",
            RawServer::start(answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nonly this",
            )),
            Want::Err("Network", Some(3)),
        ),
        raw_case(
            &mut keep,
            "two different Content-Lengths",
            RawServer::start(answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!",
            )),
            Want::Err("Protocol", Some(3)),
        ),
        raw_case(
            &mut keep,
            "status code out of range",
            RawServer::start(answer(b"HTTP/1.1 2000 Huge\r\nContent-Length: 0\r\n\r\n")),
            Want::Err("Protocol", Some(3)),
        ),
        raw_case(
            &mut keep,
            "NUL in a response header",
            RawServer::start(answer(
                b"HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 2\r\n\r\nok",
            )),
            Want::Err("Protocol", Some(3)),
        ),
        raw_case(
            &mut keep,
            "closes in the middle of the status line",
            RawServer::start(answer(b"HTT")),
            Want::Err("Network", Some(3)),
        ),
    ];
    for (name, server) in [
        ("TLS certificate for another host", wrong_host),
        ("expired TLS certificate", expired),
    ] {
        cases.push(test_server_case(
            &mut keep,
            name,
            server,
            "PUT",
            Want::Err("Tls", None),
        ));
    }

    // All at once: each must end on its own, whatever the others do.
    let started = Instant::now();
    let handles: Vec<Upload> = cases
        .iter()
        .map(|c| {
            up.create_upload(UploadRequest::new(c.method, c.url.clone(), &src))
                .unwrap_or_else(|e| panic!("{}: create: {e}", c.name))
        })
        .collect();
    let mut finals = Vec::new();
    let mut failures = Vec::new();
    for (c, h) in cases.iter().zip(&handles) {
        let left = BOUND.saturating_sub(started.elapsed());
        let Some(result) = h.wait_timeout(left) else {
            failures.push(format!(
                "{}: still {:?} after {BOUND:?}",
                c.name,
                h.status()
            ));
            continue;
        };
        let outcome = match (&result, c.want) {
            (Ok(info), want) => {
                check_completed(c.name, &store, h, info, want);
                format!("completed, {} bytes kept", info.body_len)
            }
            (Err(e), Want::Err(want, requests)) => {
                if kind(e) != want {
                    failures.push(format!("{}: got {} ({e}), want {want}", c.name, kind(e)));
                }
                assert!(!e.to_string().is_empty());
                if let Some(n) = requests {
                    let got = (c.requests)();
                    if got != n {
                        failures.push(format!("{}: {got} requests, want {n}", c.name));
                    }
                }
                format!("{} ({e})", kind(e))
            }
            (Err(e), Want::StatusTruncated(status)) => {
                assert_eq!(kind(e), format!("HttpStatus({status})"), "{}", c.name);
                let info = h.response_info().expect("the error response is kept");
                assert!(info.body_truncated, "{}", c.name);
                assert_eq!(info.body_len, CAP, "{}", c.name);
                assert_eq!(file_len(&body_file(&store, h.id())), CAP, "{}", c.name);
                format!("{} with its body cut at the cap", kind(e))
            }
            (Err(e), want) => {
                failures.push(format!("{}: failed ({e:?}), wanted {want:?}", c.name));
                continue;
            }
        };
        eprintln!("{:<45} -> {outcome}", c.name);
        finals.push((h.id(), h.status(), h.response_info()));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(started.elapsed() < BOUND);

    // The uploader still works after all that.
    let after = up
        .create_upload(UploadRequest::put(good_server.url("/after"), &src))
        .unwrap();
    after
        .wait_timeout(BOUND)
        .expect("ended")
        .expect("an upload after the hostile ones completes");

    // Disk: nothing but capped bodies, no half-written `.part` files.
    for e in std::fs::read_dir(store.join("bodies")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "leftover {name}");
        assert!(e.metadata().unwrap().len() <= CAP, "{name} exceeds the cap");
    }
    up.shutdown().unwrap();
    drop(keep);

    // Nothing lost: every upload is there after reopening, as it ended.
    let up = fast(&store).start_transfers(false).open().unwrap();
    let g = up.get(good.id()).expect("the good upload is kept");
    assert_eq!(g.status(), Status::Completed);
    assert_eq!(g.response_info().unwrap(), good_info);
    let mut body = String::new();
    std::io::Read::read_to_string(&mut g.response_body().unwrap(), &mut body).unwrap();
    assert_eq!(body, "stored-good");
    assert_eq!(up.get(after.id()).unwrap().status(), Status::Completed);
    for (id, status, info) in finals {
        let h = up.get(id).unwrap_or_else(|| panic!("upload {id} lost"));
        assert_eq!(h.status(), status, "upload {id}");
        assert_eq!(h.response_info(), info, "upload {id}");
    }
    assert_eq!(up.uploads().len(), cases.len() + 2);
    up.shutdown().unwrap();
}

#[test]
fn a_redirect_to_another_host_carries_no_credentials() {
    // Same port, other host name: only the host differs (redirects.rs covers another port).
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let port = server.port();
    server.set_handler(Arc::new(move |head: &RequestHead, _| {
        if head.path.starts_with("/from") {
            Action::Redirect {
                status: 307,
                location: format!("http://localhost:{port}/landed"),
            }
        } else {
            Action::respond(201, "landed")
        }
    }));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let f = write_file(tmp.path(), "a", 20_000, 2);
    let with_headers = UploadRequest::put(server.url("/from-headers"), &f)
        .header("Authorization", "Bearer SECRET123")
        .unwrap()
        .header("Cookie", "session=SECRET456")
        .unwrap()
        .header("Proxy-Authorization", "Basic SECRETPA")
        .unwrap()
        .header("X-Api-Key", "SECRETKEY")
        .unwrap()
        .header("X-Trace", "kept");
    let with_userinfo = UploadRequest::put(
        format!("http://user:SECRETPW@127.0.0.1:{port}/from-userinfo"),
        &f,
    );
    for req in [with_headers.unwrap(), with_userinfo] {
        let h = up.create_upload(req).unwrap();
        let info = h.wait_timeout(BOUND).expect("ended").expect("completed");
        assert_eq!(info.status, 201);
        assert_eq!(info.url, format!("http://localhost:{port}/landed"));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    // The first request of each carried the credentials to the origin they belong to...
    assert_eq!(reqs[0].header("authorization"), Some("Bearer SECRET123"));
    assert_eq!(reqs[0].header("cookie"), Some("session=SECRET456"));
    assert!(reqs[2]
        .header("authorization")
        .is_some_and(|v| v.starts_with("Basic ")));
    // ...and the redirected ones carried none of them to the other host.
    for r in [&reqs[1], &reqs[3]] {
        assert_eq!(r.path, "/landed");
        assert_eq!(r.header("host"), Some(format!("localhost:{port}").as_str()));
        for name in [
            "authorization",
            "cookie",
            "proxy-authorization",
            "x-api-key",
        ] {
            assert_eq!(r.header(name), None, "{name} crossed hosts: {r:?}");
        }
        assert!(r.complete, "307 re-sent the body");
    }
    assert_eq!(reqs[1].header("x-trace"), Some("kept"));
    up.shutdown().unwrap();
}

// ---- memory: an endless body, measured in a child process -----------------------------

pub const CHILD_ENV: &str = "BGXFER_HOSTILE_CHILD";
const URL_ENV: &str = "BGXFER_HOSTILE_URL";
const STORE_ENV: &str = "BGXFER_HOSTILE_STORE";
/// Body cap in the child: far above the allowed growth, so a buffered body would show.
const CHILD_CAP: u64 = 48 << 20;
/// Allowed resident-memory growth while the endless body is refused.
const MAX_GROWTH_KB: u64 = 8 << 10;

fn vm_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The child: uploads to the parent's endless-body server and reports its memory.
pub fn child_process() {
    let url = std::env::var(URL_ENV).unwrap();
    let store = std::path::PathBuf::from(std::env::var(STORE_ENV).unwrap());
    let src = write_file(store.parent().unwrap(), "child-src", 64 * 1024, 3);
    let up = Uploader::builder()
        .store_dir(&store)
        .max_response_body(CHILD_CAP)
        .response_timeout(Duration::from_secs(10))
        .open()
        .unwrap();
    // Warm up: the first upload starts the threads and allocations every upload needs.
    let warm = up
        .create_upload(UploadRequest::put(format!("{url}warm"), &src))
        .unwrap();
    let warm = warm.wait_timeout(BOUND).expect("warm-up ended").unwrap();
    assert_eq!(warm.status, 200);
    let base = vm_rss_kb();
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + BOUND;
            while !done.load(Ordering::SeqCst) && Instant::now() < end {
                peak.fetch_max(vm_rss_kb(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let h = up
        .create_upload(UploadRequest::put(format!("{url}endless"), &src))
        .unwrap();
    let info = h
        .wait_timeout(BOUND)
        .expect("endless upload ended")
        .unwrap();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let on_disk = file_len(&body_file(&store, h.id()));
    mark(format_args!(
        "RESULT base_kb={base} peak_kb={} body_len={} truncated={} on_disk={on_disk}",
        peak.load(Ordering::SeqCst),
        info.body_len,
        info.body_truncated
    ));
    up.shutdown().unwrap();
}

#[test]
fn an_endless_body_keeps_memory_and_disk_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        Behavior::script([Action::HugeBody(64 * 1024)]).then(Action::HugeBody(u64::MAX)),
    );
    let mut child = ChildProcess::spawn(
        child::command(CHILD_ENV, "1")
            .env(URL_ENV, server.url("/"))
            .env(STORE_ENV, tmp.path().join("store"))
            .stderr(Stdio::inherit()),
    );
    let deadline = Instant::now() + Duration::from_secs(25);
    // The line may come after the harness's "test child_process ... ".
    let result = child
        .wait_for_line(
            "RESULT ",
            deadline.saturating_duration_since(Instant::now()),
        )
        .map(|l| l["RESULT ".len()..].to_string());
    let status = child
        .wait_exit(deadline.saturating_duration_since(Instant::now()))
        .expect("the child did not finish in time"); // dropping `child` kills it
    assert!(status.success(), "child failed: {status}");
    let result = result.expect("the child reported");
    eprintln!("endless body: {result}");
    let field = |name: &str| -> String {
        result
            .split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    };
    let num = |name: &str| field(name).parse::<u64>().unwrap();
    assert_eq!(field("truncated"), "true");
    assert_eq!(num("body_len"), CHILD_CAP);
    assert_eq!(
        num("on_disk"),
        CHILD_CAP,
        "the body file holds at most the cap"
    );
    let growth = num("peak_kb").saturating_sub(num("base_kb"));
    assert!(
        growth < MAX_GROWTH_KB,
        "resident memory grew by {growth} KiB while a {} MiB body was stored",
        CHILD_CAP >> 20
    );
}
