//! Real network faults in network namespaces (root; CI is root): no name server
//! reachable, no route, and silent blackholes (a cellular dead zone), against nginx and
//! dnsmasq running in a server namespace. The rule under test: no attempt is counted
//! while there is no connectivity.
//!
//! The upload runs in a child process inside the client namespace (this binary re-run on
//! `child_process`), which prints its status as it changes. Figures go to stderr
//! (`cargo test --release --test netfaults -- --nocapture`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{Status, UploadRequest, Uploader};
use support::child::{self, ChildProcess};
use support::dns::Dnsmasq;
use support::netns::NetPair;
use support::nginx::Nginx;
use support::{sha256_file, write_file};

const CHILD_ENV: &str = "BGXFER_NETFAULTS_CHILD";

/// Held by the test that runs eight namespace pairs at once and by the one whose
/// figure is a latency (pause and shutdown within 1 s): on a 2-core CI machine the
/// first made the second miss its bound (2.1 s) when they overlapped.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Child side: uploads `BGX_FILE` to `BGX_URL` with a PUT through the store named by
/// the role, printing `STATUS <status> <attempts>` on each change, `SENT <bytes>` every
/// half second while running, and `END <status> <attempts> <error>` at the end.
/// Default timeouts (`TCP_USER_TIMEOUT` 30 s), probes every 1–4 s. Bounded by
/// `BGX_DEADLINE` seconds.
fn upload_child() {
    let Ok(store) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |n: &str| std::env::var(n).unwrap();
    let flag = |n: &str| std::env::var(n).is_ok_and(|v| v == "1");
    let mut b = Uploader::builder()
        .store_dir(&store)
        .probe_timeout(Duration::from_secs(2))
        .progress_interval(Duration::from_millis(100))
        .watch_network(!flag("BGX_NO_WATCH"));
    // The crate's own probe schedule (2 s to 60 s) when asked: the "before" figures.
    if !flag("BGX_DEFAULT_PROBES") {
        b = b.probe_backoff(Duration::from_secs(1), Duration::from_secs(4));
    }
    let sent_every = Duration::from_millis(
        std::env::var("BGX_SENT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    );
    let up = b.open().unwrap();
    let h = up
        .create_upload(UploadRequest::put(var("BGX_URL"), var("BGX_FILE")))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(var("BGX_DEADLINE").parse().unwrap());
    let mut last = None;
    let mut last_sent = Instant::now();
    while Instant::now() < deadline {
        let p = h.progress();
        if last != Some((p.status, p.attempts)) {
            last = Some((p.status, p.attempts));
            child::mark(format_args!("STATUS {} {}", p.status.as_str(), p.attempts));
        }
        if p.status == Status::Running && last_sent.elapsed() >= sent_every {
            last_sent = Instant::now();
            child::mark(format_args!("SENT {}", p.bytes_sent));
        }
        if p.status.is_final() {
            let err = h.error().map(|e| e.to_string()).unwrap_or_default();
            child::mark(format_args!(
                "END {} {} {err}",
                p.status.as_str(),
                p.attempts
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child::mark("END deadline");
}

/// The child processes' one entry point (see `support::child`): ignored, so that it is
/// no test of its own; [`spawn_upload`] runs it with `--ignored` in the client namespace.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    child::dispatch(&[
        (CHILD_ENV, upload_child),
        (HANG_CHILD_ENV, hanging_resolver_child),
    ]);
}

/// A status of an upload still on its way to the server (`connecting` is `running`
/// whose connect waits for an answer).
fn on_the_way(status: &str) -> bool {
    matches!(status, "running" | "queued" | "connecting")
}

/// Starts the uploading child inside the client namespace.
fn spawn_upload(
    pair: &NetPair,
    store: &Path,
    url: &str,
    file: &Path,
    deadline_s: u64,
) -> ChildProcess {
    spawn_upload_with(pair, store, url, file, deadline_s, &[])
}

/// [`spawn_upload`] with extra environment for the child.
fn spawn_upload_with(
    pair: &NetPair,
    store: &Path,
    url: &str,
    file: &Path,
    deadline_s: u64,
    env: &[(&str, &str)],
) -> ChildProcess {
    let mut cmd = child::command_in(NetPair::exec(&pair.client, child::exe()), CHILD_ENV, store);
    cmd.env("BGX_URL", url)
        .env("BGX_FILE", file)
        .env("BGX_DEADLINE", deadline_s.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    ChildProcess::spawn(&mut cmd)
}

/// `(status, attempts)` of a `STATUS` line.
fn status_of(line: &str) -> Option<(String, u32)> {
    let mut f = line.strip_prefix("STATUS ")?.split(' ');
    Some((f.next()?.to_string(), f.next()?.parse().ok()?))
}

/// Reads lines until `END`, returning it; panics with the lines seen after `timeout`.
fn wait_end(child: &mut ChildProcess, timeout: Duration) -> String {
    match child.wait_for_line("END", timeout) {
        Some(l) => l,
        None => panic!("no END in time; lines: {:?}", child.lines_so_far()),
    }
}

/// Seconds from the environment variable `name`, or `default`.
fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Issue 19: a lookup that fails because no name server can be reached (the namespace
/// has no network) waits as `paused-no-network` with 0 attempts, for 60 s, then
/// completes once the namespace gets its link and a route to the server (nginx and
/// dnsmasq in a second namespace). With the network up, a name the name server says
/// does not exist is a final error naming the host, with no retry spent.
#[test]
fn failed_lookup_without_network_waits_offline_then_completes() {
    const TEST: &str = "failed_lookup_without_network_waits_offline_then_completes";
    let Some(pair) = NetPair::create(TEST, 31, true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(nginx) = Nginx::start(
        TEST,
        &dir.path().join("nginx"),
        Some(&pair.server),
        &pair.server_addr,
        8080,
        "",
    ) else {
        return;
    };
    let Some(_dns) = Dnsmasq::start(
        TEST,
        dir.path(),
        &pair.server,
        &pair.server_addr,
        &[("uploads.bgx.test", &pair.server_addr)],
        &["missing.bgx.test"],
    ) else {
        return;
    };
    pair.client_resolver(&pair.server_addr);
    let file = write_file(dir.path(), "a.bin", 4 << 20, 31);
    let offline = env_secs("BGXFER_NETNS_OFFLINE_SECS", 60);
    let mut child = spawn_upload(
        &pair,
        &dir.path().join("store"),
        "http://uploads.bgx.test:8080/dns/a.bin",
        &file,
        offline + 90,
    );
    let started = Instant::now();
    let parked = child.wait_until(Duration::from_secs(30), |l| {
        status_of(l).is_some_and(|(s, _)| s == "paused-no-network")
    });
    assert!(
        matches!(parked, child::Waited::Matched(_)),
        "not parked offline: {:?}",
        child.lines_so_far()
    );
    let noticed = started.elapsed();
    // Offline for the whole window: no other status, no attempt counted.
    let until = started + Duration::from_secs(offline);
    let changed = child.wait_until(until.saturating_duration_since(Instant::now()), |l| {
        l.starts_with("STATUS ") || l.starts_with("END")
    });
    assert!(
        !matches!(changed, child::Waited::Matched(_)),
        "left paused-no-network while offline: {:?}",
        child.lines_so_far()
    );
    pair.link_client();
    let linked = Instant::now();
    let end = wait_end(&mut child, Duration::from_secs(60));
    let back = linked.elapsed();
    assert!(
        end.starts_with("END completed 0"),
        "{end}; {:?}",
        child.lines_so_far()
    );
    assert_eq!(
        sha256_file(nginx.root().join("dns/a.bin")),
        sha256_file(&file),
        "the stored file differs"
    );
    eprintln!(
        "dns offline: parked after {:.1} s, offline {offline} s with 0 attempts, completed {:.1} s after the link came up",
        noticed.as_secs_f64(),
        back.as_secs_f64()
    );

    // Now with a network: the name server says the name does not exist.
    let mut child = spawn_upload(
        &pair,
        &dir.path().join("store2"),
        "http://missing.bgx.test:8080/dns/b.bin",
        &file,
        30,
    );
    let end = wait_end(&mut child, Duration::from_secs(30));
    assert!(end.starts_with("END error 0"), "{end}");
    assert!(
        end.contains("missing.bgx.test") && end.contains("not found"),
        "{end}"
    );
    assert!(
        !child
            .lines_so_far()
            .iter()
            .any(|l| l.contains("paused-no-network") || l.contains("waiting-to-retry")),
        "{:?}",
        child.lines_so_far()
    );
}

/// Issue 18: four 35 s silent blackholes (every packet to the server dropped: a cellular
/// dead zone) during one 16 MiB PUT over an 8 Mbit/s link. Each is noticed at
/// `TCP_USER_TIMEOUT` and parks the upload as `paused-no-network`; none spends a retry
/// (3 are allowed: four dead zones would end it in `error` if they counted), and the
/// upload completes byte-exact on nginx.
#[test]
fn four_dead_zones_spend_no_retry() {
    const TEST: &str = "four_dead_zones_spend_no_retry";
    let Some(pair) = NetPair::create(TEST, 32, false) else {
        return;
    };
    pair.shape("8mbit");
    let dir = tempfile::tempdir().unwrap();
    let Some(nginx) = Nginx::start(
        TEST,
        &dir.path().join("nginx"),
        Some(&pair.server),
        &pair.server_addr,
        8080,
        "",
    ) else {
        return;
    };
    let file = write_file(dir.path(), "a.bin", 16 << 20, 32);
    let zone = Duration::from_secs(env_secs("BGXFER_DEAD_ZONE_SECS", 35));
    let url = format!("http://{}:8080/dz/a.bin", pair.server_addr);
    let mut child = spawn_upload(
        &pair,
        &dir.path().join("store"),
        &url,
        &file,
        4 * (zone.as_secs() + 40) + 120,
    );
    for n in 1..=4 {
        // Let bytes flow for a few seconds, then cut.
        let flowing = child.wait_until(Duration::from_secs(60), |l| {
            l.strip_prefix("SENT ")
                .and_then(|b| b.parse::<u64>().ok())
                .is_some_and(|b| b > 0)
        });
        assert!(
            matches!(flowing, child::Waited::Matched(_)),
            "dead zone {n}: no bytes flowing: {:?}",
            child.lines_so_far()
        );
        std::thread::sleep(Duration::from_secs(3));
        pair.blackhole(8080, true);
        let cut = Instant::now();
        let parked = child.wait_until(zone + Duration::from_secs(10), |l| {
            status_of(l).is_some_and(|(s, _)| !on_the_way(&s))
        });
        let noticed = cut.elapsed();
        let line = match parked {
            child::Waited::Matched(l) => l,
            other => panic!("dead zone {n}: {other:?}: {:?}", child.lines_so_far()),
        };
        assert_eq!(
            status_of(&line),
            Some(("paused-no-network".into(), 0)),
            "dead zone {n}: {:?}",
            child.lines_so_far()
        );
        std::thread::sleep(zone.saturating_sub(cut.elapsed()));
        pair.blackhole(8080, false);
        let cleared = Instant::now();
        let flowing = child.wait_until(Duration::from_secs(30), |l| {
            l.strip_prefix("SENT ")
                .and_then(|b| b.parse::<u64>().ok())
                .is_some_and(|b| b > 0)
        });
        assert!(
            matches!(flowing, child::Waited::Matched(_)),
            "dead zone {n}: not resumed: {:?}",
            child.lines_so_far()
        );
        eprintln!(
            "dead zone {n} ({} s): noticed after {:.1} s (paused-no-network, 0 attempts); bytes flowing {:.1} s after it cleared",
            zone.as_secs(),
            noticed.as_secs_f64(),
            cleared.elapsed().as_secs_f64()
        );
    }
    let end = wait_end(&mut child, Duration::from_secs(120));
    assert!(
        end.starts_with("END completed 0"),
        "{end}; {:?}",
        child.lines_so_far()
    );
    assert!(
        child
            .lines_so_far()
            .iter()
            .filter_map(|l| status_of(l))
            .all(|(_, a)| a == 0),
        "an attempt was counted: {:?}",
        child.lines_so_far()
    );
    assert_eq!(
        sha256_file(nginx.root().join("dz/a.bin")),
        sha256_file(&file)
    );
}

const HANG_CHILD_ENV: &str = "BGXFER_NETFAULTS_HANG_CHILD";

/// Child side of [`a_resolver_that_never_answers_costs_neither_pause_nor_shutdown`]: a
/// name server on 127.0.0.1:53 (this namespace's resolver) that reads every query and
/// answers none. Prints `STOPPED <ms>` (pause, then shutdown, of an upload waiting for
/// its name) and `OFFLINE <ms> <attempts>` (an upload with a 2 s resolve timeout).
fn hanging_resolver_child() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:53").expect("bind 127.0.0.1:53");
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while silent.recv(&mut buf).is_ok() {}
    });
    let dir = std::path::PathBuf::from(std::env::var(HANG_CHILD_ENV).unwrap());
    let file = dir.join("f.bin");
    std::fs::write(&file, [7u8; 4096]).unwrap();

    let up = Uploader::builder().store_dir(dir.join("a")).open().unwrap();
    let h = up
        .create_upload(UploadRequest::put("http://hang.bgx.test:8080/x", &file))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.status() != Status::Running && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The worker is now inside the lookup that never ends.
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    h.pause().unwrap();
    up.shutdown().unwrap();
    child::mark(format_args!("STOPPED {}", started.elapsed().as_millis()));

    let up = Uploader::builder()
        .store_dir(dir.join("b"))
        .resolve_timeout(Duration::from_secs(2))
        .probe_backoff(Duration::from_secs(30), Duration::from_secs(60))
        .open()
        .unwrap();
    let started = Instant::now();
    let h = up
        .create_upload(UploadRequest::put("http://hang.bgx.test:8080/x", &file))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.status() != Status::PausedNoNetwork && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    child::mark(format_args!(
        "OFFLINE {} {}",
        started.elapsed().as_millis(),
        h.progress().attempts
    ));
    let started = Instant::now();
    up.shutdown().unwrap();
    child::mark(format_args!("SHUTDOWN {}", started.elapsed().as_millis()));
}

/// Issue 16: a name server that never answers (the system resolver waits 30 s a try)
/// must not hold up a pause or a shutdown, which return within 1 s; and a lookup gives
/// up at the resolve timeout as offline, with no attempt spent.
#[test]
fn a_resolver_that_never_answers_costs_neither_pause_nor_shutdown() {
    const TEST: &str = "a_resolver_that_never_answers_costs_neither_pause_nor_shutdown";
    let _heavy = heavy();
    let Some(pair) = NetPair::create(TEST, 33, true) else {
        return;
    };
    pair.client_resolver_with("127.0.0.1", "options timeout:30 attempts:2");
    let dir = tempfile::tempdir().unwrap();
    let cmd = NetPair::exec(&pair.client, child::exe());
    let mut child = ChildProcess::spawn(&mut child::command_in(cmd, HANG_CHILD_ENV, dir.path()));
    let ms = |line: Option<String>, what: &str| -> Vec<u64> {
        let line = line.unwrap_or_else(|| panic!("no {what} line"));
        line.split(' ')
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let stopped = ms(
        child.wait_for_line("STOPPED", Duration::from_secs(60)),
        "STOPPED",
    );
    let offline = ms(
        child.wait_for_line("OFFLINE", Duration::from_secs(60)),
        "OFFLINE",
    );
    let shutdown = ms(
        child.wait_for_line("SHUTDOWN", Duration::from_secs(60)),
        "SHUTDOWN",
    );
    eprintln!(
        "hanging resolver: pause + shutdown {} ms; offline after {} ms with {} attempts; shutdown {} ms",
        stopped[0], offline[0], offline[1], shutdown[0]
    );
    assert!(
        stopped[0] < 1000,
        "pause and shutdown took {} ms",
        stopped[0]
    );
    assert!(
        (1500..10_000).contains(&offline[0]) && offline[1] == 0,
        "{offline:?}"
    );
    assert!(shutdown[0] < 1000, "shutdown took {} ms", shutdown[0]);
}

/// A way to take the client's connectivity away and give it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `ip link set dev down`, then up (the address stays).
    Link,
    /// The address removed (its subnet route goes with it), then added back.
    Address,
    /// Every route to the server (the default route and its subnet's) removed, then
    /// added back; the address stays.
    Route,
    /// The server process stopped, then started again (the network stays up: what
    /// netlink cannot see, polling finds).
    Server,
    /// The server's side answers with TCP resets (nftables `reject with tcp reset`) for
    /// a second, in the middle of the body.
    Reset,
    /// Every packet to the server dropped (a silent blackhole: a cellular dead zone);
    /// the link, address and routes stay, so netlink sees nothing.
    Blackhole,
}

impl Fault {
    fn apply(self, pair: &NetPair, on: bool) {
        let c = pair.client.as_str();
        let dev = pair.client_if.as_str();
        let cidr = format!("{}/24", pair.client_addr);
        let subnet = format!(
            "{}.0/24",
            pair.server_addr.rsplit_once('.').map_or("", |(net, _)| net)
        );
        let ip = |args: &[&str]| {
            let mut all = vec!["-n", c];
            all.extend_from_slice(args);
            support::netns::run("ip", &all).unwrap_or_else(|e| panic!("{self:?}: {e}"));
        };
        match (self, on) {
            (Fault::Server, _) => unreachable!("the scenario stops and starts the server"),
            (Fault::Reset, on) => pair.reset(8080, on),
            (Fault::Blackhole, on) => pair.blackhole(8080, on),
            (Fault::Link, true) => ip(&["link", "set", dev, "down"]),
            (Fault::Link, false) => ip(&["link", "set", dev, "up"]),
            (Fault::Address, true) => ip(&["addr", "del", &cidr, "dev", dev]),
            (Fault::Address, false) => ip(&["addr", "add", &cidr, "dev", dev]),
            (Fault::Route, true) => {
                ip(&["route", "del", "default"]);
                ip(&["route", "del", &subnet, "dev", dev]);
            }
            (Fault::Route, false) => {
                ip(&[
                    "route",
                    "add",
                    &subnet,
                    "dev",
                    dev,
                    "src",
                    &pair.client_addr,
                ]);
                ip(&["route", "add", "default", "via", &pair.server_addr]);
            }
        }
    }
}

/// What one scenario measured.
struct Figures {
    /// Attempts counted when it completed.
    attempts: u32,
    /// Seconds to a status other than running (`None`: not within the outage).
    noticed: Option<f64>,
    status: String,
    back: f64,
    /// SYNs the client sent to the server during the outage (probes, connects).
    syns: u64,
}

/// One scenario: an 8 MiB PUT over an 8 Mbit/s link, the fault 2 s into the flow for
/// `outage`, then cleared; the upload must complete byte-exact with no attempt
/// counted. `watch`: the network watcher on (the crate's default) or polling only,
/// with the crate's default probe schedule (2 s doubling to 60 s).
fn connectivity_scenario(
    test: &str,
    n: u8,
    fault: Fault,
    watch: bool,
    outage: Duration,
) -> Option<Figures> {
    let pair = NetPair::create(test, n, false)?;
    pair.shape("8mbit");
    let dir = tempfile::tempdir().unwrap();
    let start_nginx = || {
        Nginx::start(
            test,
            &dir.path().join("nginx"),
            Some(&pair.server),
            &pair.server_addr,
            8080,
            "",
        )
    };
    let mut nginx = Some(start_nginx()?);
    let file = write_file(dir.path(), "a.bin", 8 << 20, u64::from(n));
    let url = format!("http://{}:8080/nc/a.bin", pair.server_addr);
    let mut env = vec![("BGX_SENT_MS", "100"), ("BGX_DEFAULT_PROBES", "1")];
    if !watch {
        env.push(("BGX_NO_WATCH", "1"));
    }
    let deadline = outage.as_secs() + 200;
    let mut child = spawn_upload_with(
        &pair,
        &dir.path().join("store"),
        &url,
        &file,
        deadline,
        &env,
    );
    let sent = |l: &str| l.strip_prefix("SENT ").and_then(|b| b.parse::<u64>().ok());
    let flowing = child.wait_until(Duration::from_secs(60), |l| sent(l).is_some_and(|b| b > 0));
    assert!(
        matches!(flowing, child::Waited::Matched(_)),
        "{fault:?}: no bytes flowing: {:?}",
        child.lines_so_far()
    );
    std::thread::sleep(Duration::from_secs(2));
    if fault == Fault::Server {
        drop(nginx.take());
    } else {
        fault.apply(&pair, true);
    }
    let cut = Instant::now();
    // The fault must take connectivity away (a route left behind would not); a reset
    // refuses new connections too.
    {
        assert!(
            !NetPair::accepts(&pair.client, &pair.server_addr, 8080),
            "{fault:?}: new connections are still made"
        );
    }
    // Counted from here: the check above sent one of its own.
    pair.count_syns(8080);
    let parked = child.wait_until(outage, |l| {
        status_of(l).is_some_and(|(s, _)| !on_the_way(&s))
    });
    let (noticed, status) = match parked {
        child::Waited::Matched(l) => (
            Some(cut.elapsed().as_secs_f64()),
            status_of(&l).map_or_else(String::new, |(s, _)| s),
        ),
        // Polling only: a stalled write is noticed at TCP_USER_TIMEOUT, which may be
        // after the outage ends (the connection then simply goes on).
        _ => (None, "running".to_string()),
    };
    std::thread::sleep(outage.saturating_sub(cut.elapsed()));
    let before_clear = child.lines_so_far().len();
    let stalled_at = child.lines_so_far().iter().rev().find_map(|l| sent(l));
    let syns = pair.syns();
    if fault == Fault::Server {
        nginx = Some(start_nginx()?);
    } else {
        fault.apply(&pair, false);
    }
    let cleared = Instant::now();
    // Bytes flowing again: a SENT line after the fault was cleared that moved past
    // where the stalled connection stood, or any bytes of a new attempt.
    let mut new_attempt = false;
    let again = child.wait_until(Duration::from_secs(120), |l| {
        if status_of(l).is_some() {
            new_attempt = true;
            return false;
        }
        match sent(l) {
            Some(b) if b > 0 => new_attempt || stalled_at.is_some_and(|p| b > p),
            _ => l.starts_with("END"),
        }
    });
    assert!(
        matches!(again, child::Waited::Matched(_)),
        "{fault:?}: not flowing after the fault cleared: {:?}",
        &child.lines_so_far()[before_clear.min(child.lines_so_far().len())..]
    );
    let back = cleared.elapsed().as_secs_f64();
    let end = wait_end(&mut child, Duration::from_secs(120));
    let attempts = end
        .strip_prefix("END completed ")
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse::<u32>().ok());
    let Some(attempts) = attempts else {
        panic!(
            "{fault:?} (watch {watch}): {end}; {:?}",
            child.lines_so_far()
        );
    };
    let nginx = nginx.expect("the server runs again");
    assert_eq!(
        sha256_file(nginx.root().join("nc/a.bin")),
        sha256_file(&file),
        "{fault:?}: the stored file differs"
    );
    Some(Figures {
        attempts,
        noticed,
        status,
        back,
        syns,
    })
}

/// Issue 18: the client's link, address or route goes for 20 s (`BGXFER_OUTAGE_SECS`)
/// during a PUT, with the network watcher and without it (polling with the default
/// schedule); the server stops for 30 s; TCP resets for 1 s; a blackhole for 40 s
/// (`BGXFER_BLACKHOLE_SECS`): all at once in namespaces of their own
/// (`BGXFER_ONLY_SCENARIO=Link-true,Link-false` picks some). With the watcher the
/// transfer is parked as `paused-no-network` as soon as the network goes and bytes
/// flow again as soon as it is back; in every case but the resets no attempt is
/// counted, and the file arrives byte-exact. The figures, with the SYNs sent during
/// each outage, go to stderr.
#[test]
fn link_address_and_route_changes_are_acted_on_at_once() {
    const TEST: &str = "link_address_and_route_changes_are_acted_on_at_once";
    let _heavy = heavy();
    let outage = Duration::from_secs(env_secs("BGXFER_OUTAGE_SECS", 20));
    let scenarios = [
        (Fault::Link, true),
        (Fault::Address, true),
        (Fault::Route, true),
        (Fault::Link, false),
        (Fault::Address, false),
        (Fault::Route, false),
        (Fault::Server, true),
        (Fault::Reset, true),
        (Fault::Blackhole, true),
    ];
    let blackhole = Duration::from_secs(env_secs("BGXFER_BLACKHOLE_SECS", 40));
    let only = std::env::var("BGXFER_ONLY_SCENARIO").ok();
    let runs: Vec<_> = scenarios
        .into_iter()
        .filter(|(f, w)| {
            only.as_ref()
                .is_none_or(|o| o.split(',').any(|o| o == format!("{f:?}-{w}")))
        })
        .enumerate()
        .map(|(i, (fault, watch))| {
            std::thread::spawn(move || {
                let n = 40 + i as u8;
                let outage = match fault {
                    Fault::Server => Duration::from_secs(30),
                    Fault::Reset => Duration::from_secs(1),
                    Fault::Blackhole => blackhole,
                    _ => outage,
                };
                (
                    fault,
                    watch,
                    outage,
                    connectivity_scenario(TEST, n, fault, watch, outage),
                )
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in runs {
        match r.join() {
            Ok(v) => results.push(v),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    for (fault, watch, outage, figures) in &results {
        let Some(f) = figures else {
            return;
        };
        eprintln!(
            "{fault:?} gone for {} s, {}: {} ({}), bytes flowing {:.2} s after it came back, {} attempts, {} SYNs sent during the outage, byte-exact",
            outage.as_secs(),
            if *watch { "netlink watcher" } else { "polling only" },
            f.noticed.map_or("not noticed within the outage".to_string(), |n| format!("noticed after {n:.2} s")),
            f.status,
            f.back,
            f.attempts,
            f.syns
        );
        match fault {
            // A server that went away mid-body reset the connection (a transient
            // failure: one retry); then it took no connection (no retry) until the
            // prober found it back, within the polling ceiling.
            Fault::Server => {
                assert!(f.attempts <= 1, "{fault:?}: {} attempts", f.attempts);
                assert!(
                    f.back < 65.0,
                    "{fault:?}: not back within the polling ceiling"
                );
                continue;
            }
            // A reset is a transient failure: it spends a retry, then the retry works
            // (a retry that meets the reset rule at connect time is refused, offline).
            Fault::Reset => {
                assert_eq!(f.attempts, 1, "{fault:?}: one retry spent");
                continue;
            }
            // Netlink sees nothing: the stalled connection is given up at
            // TCP_USER_TIMEOUT (30 s) as offline, no retry; the prober finds the host
            // back within its schedule.
            Fault::Blackhole => {
                assert_eq!(f.attempts, 0, "{fault:?}: no attempt counted");
                assert!(
                    f.noticed.is_none() || f.status == "paused-no-network",
                    "{fault:?}: {}",
                    f.status
                );
                assert!(
                    f.back < 65.0,
                    "{fault:?}: not back within the polling ceiling"
                );
                continue;
            }
            _ => assert_eq!(f.attempts, 0, "{fault:?}: no attempt counted"),
        }
        if *watch {
            assert_eq!(
                f.status, "paused-no-network",
                "{fault:?}: parked as paused-no-network"
            );
            // Generous bounds (the machine is shared); the figures are the measure.
            assert!(
                f.noticed.is_some_and(|n| n < 5.0),
                "{fault:?}: the watcher did not park it at once"
            );
            assert!(
                f.back < 5.0,
                "{fault:?}: the watcher did not resume it at once"
            );
        }
    }
}
