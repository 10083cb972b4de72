//! Producers against a killed owner: 8 producer processes add 1,000 uploads in all
//! (files of 1 KiB to 4 MiB, log-uniform) through `Client` to a tus server, while the
//! owner process runs and is SIGKILLed and restarted 10 times at random moments. Every
//! upload whose add returned `Ok` must arrive at the tus server exactly once,
//! byte-exact: one complete upload on the server per acknowledged add, none twice.
//!
//! `BGXFER_PRODUCER_UPLOADS` (default 1000) and `BGXFER_OWNER_KILLS` (default 10)
//! scale it; `BGXFER_SERVICE_SEED` repeats a run.
//!
//! Also here: the latency of an add (the client's call to the first byte at the
//! server) and of a pause from another process (the call to the server seeing the
//! transfer stop), with an idle owner in a process of its own; printed, not asserted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use background_transfer::{Client, Status, Submitted, UploadRequest, Uploader};

use crate::support::child::{self, ChildProcess};
use crate::support::tus::{self, TusServer};
use crate::support::{sha256_file, wait_until, write_file, Behavior, Rng, TestServer};

pub const OWNER_ENV: &str = "BGXFER_SERVICE_OWNER";
pub const PRODUCER_ENV: &str = "BGXFER_SERVICE_PRODUCER";
const STORE_ENV: &str = "BGXFER_SERVICE_STORE";
const FILES_ENV: &str = "BGXFER_SERVICE_FILES";
const ENDPOINT_ENV: &str = "BGXFER_SERVICE_ENDPOINT";
const COUNT_ENV: &str = "BGXFER_SERVICE_COUNT";
const SEED_ENV: &str = "BGXFER_SERVICE_SEED_CHILD";
const BANDWIDTH_ENV: &str = "BGXFER_SERVICE_BANDWIDTH";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"))
}

fn env_or(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The owner: opens the store, says `READY`, and runs until it is killed.
pub fn owner_process() {
    let mut builder = Uploader::builder();
    if let Ok(bps) = std::env::var(BANDWIDTH_ENV) {
        builder = builder.max_bandwidth(Some(bps.parse().unwrap()));
    }
    let up = builder
        .store_dir(env(STORE_ENV))
        .max_concurrent(4)
        .retries(1000)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .probe_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(2))
        .open()
        .unwrap();
    child::mark("READY");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(up);
}

/// A producer: `COUNT` files, each added as a tus upload named `<producer>-<n>` in
/// its metadata; prints `ACK <name> <sha256> <created|queued>` for an add that
/// returned `Ok` and `ERR <name> <error>` for one that did not, then `DONE`.
pub fn producer_process() {
    let me = env(PRODUCER_ENV);
    let client = Client::connect(env(STORE_ENV)).unwrap();
    let dir = PathBuf::from(env(FILES_ENV));
    let endpoint = env(ENDPOINT_ENV);
    let count: u64 = env(COUNT_ENV).parse().unwrap();
    let mut rng = Rng(env(SEED_ENV).parse().unwrap());
    for n in 0..count {
        let name = format!("{me}-{n}");
        // Log-uniform from 1 KiB to 4 MiB.
        let exp = rng.range(10_000, 22_000) as f64 / 1000.0;
        let len = 2f64.powf(exp) as u64;
        let f = write_file(&dir, &name, len, rng.next());
        let sha = sha256_file(&f);
        let req = UploadRequest::put(&endpoint, &f)
            .tus(None)
            .tus_metadata("name", &name)
            .unwrap();
        match client.create_upload(req) {
            Ok(s) => {
                let how = match s {
                    Submitted::Created { .. } => "created",
                    Submitted::Queued { .. } => "queued",
                };
                child::mark(format!("ACK {name} {sha} {how}"));
            }
            Err(e) => child::mark(format!("ERR {name} {e}")),
        }
        // Spread over the time the owner is being killed (about 12 s for 125 adds),
        // so that kills land between, during and after adds.
        std::thread::sleep(Duration::from_millis(rng.range(0, 200)));
    }
    child::mark("DONE");
}

pub fn spawn_owner(store: &Path) -> ChildProcess {
    spawn_owner_with(store, &[])
}

fn spawn_owner_with(store: &Path, envs: &[(&str, &dyn AsRef<std::ffi::OsStr>)]) -> ChildProcess {
    let mut all: Vec<(&str, &dyn AsRef<std::ffi::OsStr>)> = vec![(STORE_ENV, &store)];
    all.extend_from_slice(envs);
    let mut c = child::spawn(OWNER_ENV, "1", &all);
    c.wait_for_line("READY", Duration::from_secs(60))
        .expect("the owner did not start");
    c
}

/// The uploads the tus server holds whole: name (from the metadata) to the sha256 of
/// each complete copy.
fn complete_on_server(tus: &TusServer) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for id in tus.upload_ids() {
        let Ok(meta) = std::fs::read(tus.meta_file(&id)) else {
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&meta) else {
            continue;
        };
        let (Some(name), Some(size)) = (meta["metadata"]["name"].as_str(), meta["size"].as_u64())
        else {
            continue;
        };
        if tus.stored_len(&id) == Some(size) {
            out.entry(name.to_string())
                .or_default()
                .push(sha256_file(tus.data_file(&id)));
        }
    }
    out
}

#[test]
fn every_acknowledged_add_arrives_once_while_the_owner_is_killed() {
    if !tus::available("every_acknowledged_add_arrives_once_while_the_owner_is_killed") {
        return;
    }
    let total = env_or("BGXFER_PRODUCER_UPLOADS", 1000);
    let kills = env_or("BGXFER_OWNER_KILLS", 10);
    let seed = env_or("BGXFER_SERVICE_SEED", 0x5eed_0017);
    eprintln!("{total} uploads, {kills} owner kills, seed {seed} (BGXFER_SERVICE_SEED)");
    let tmp = tempfile::tempdir().unwrap();
    let tus = TusServer::start("producers", &tmp.path().join("tus")).unwrap();
    let store = tmp.path().join("store");
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut owner = spawn_owner(&store);
    let producers = 8;
    let endpoint = tus.endpoint();
    let mut children: Vec<ChildProcess> = (0..producers)
        .map(|p| {
            let count = total / producers + u64::from(p < total % producers);
            child::spawn(
                PRODUCER_ENV,
                format!("p{p}"),
                &[
                    (STORE_ENV, &store),
                    (FILES_ENV, &files),
                    (ENDPOINT_ENV, &endpoint),
                    (COUNT_ENV, &count.to_string()),
                    (SEED_ENV, &(seed ^ ((p + 1) * 0x9e37_79b9)).to_string()),
                ],
            )
        })
        .collect();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut made = 0;
    while made < kills && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(rng.range(200, 1500)));
        owner.kill();
        made += 1;
        // Sometimes no owner runs for a while: adds then go to the inbox.
        std::thread::sleep(Duration::from_millis(rng.range(0, 400)));
        owner = spawn_owner(&store);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for (p, c) in children.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            c.wait_for_line("DONE", left).is_some(),
            "producer {p} did not finish; its last lines: {:?}",
            c.lines_so_far().iter().rev().take(3).collect::<Vec<_>>()
        );
    }
    let mut acked: HashMap<String, String> = HashMap::new();
    let (mut created, mut queued, mut errors) = (0, 0, Vec::new());
    for c in &mut children {
        for l in c.lines_so_far() {
            let w: Vec<&str> = l.split(' ').collect();
            match w.first() {
                Some(&"ACK") => {
                    acked.insert(w[1].to_string(), w[2].to_string());
                    if w[3] == "created" {
                        created += 1;
                    } else {
                        queued += 1;
                    }
                }
                Some(&"ERR") => errors.push(l.clone()),
                _ => {}
            }
        }
    }
    // Everything acknowledged arrives (the last owner runs undisturbed).
    let arrived = wait_until(Duration::from_secs(900), || {
        let on = complete_on_server(&tus);
        acked.keys().all(|k| on.contains_key(k))
    });
    let on = complete_on_server(&tus);
    owner.kill();
    let lost: Vec<&String> = acked.keys().filter(|k| !on.contains_key(*k)).collect();
    let duplicates: Vec<(&String, usize)> = on
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k, v.len()))
        .collect();
    let corrupt: Vec<&String> = acked
        .iter()
        .filter(|(k, sha)| on.get(*k).is_some_and(|v| v.iter().any(|s| s != *sha)))
        .map(|(k, _)| k)
        .collect();
    eprintln!(
        "producers against a killed owner: {made} kills; {} adds acknowledged ({created} by \
         the owner, {queued} through the inbox), {} refused; {} uploads complete on the \
         server; duplicates {}, lost {}, corrupt {}",
        acked.len(),
        errors.len(),
        on.values().map(Vec::len).sum::<usize>(),
        duplicates.len(),
        lost.len(),
        corrupt.len()
    );
    assert!(errors.is_empty(), "adds failed: {errors:#?}");
    assert_eq!(acked.len() as u64, total);
    assert!(arrived && lost.is_empty(), "lost: {lost:?}");
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert!(corrupt.is_empty(), "corrupt: {corrupt:?}");
    assert_eq!(made, kills);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn latency_of_an_add_and_a_pause_from_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::ok());
    // The owner sends at 2 MiB/s and the server reads as fast as bytes come: the
    // server sees the connection end when the owner ends it, not after it has drained
    // its socket buffers.
    let mut owner = spawn_owner_with(&store, &[(BANDWIDTH_ENV, &"2097152")]);
    let client = Client::connect(&store).unwrap();
    let f = write_file(tmp.path(), "small", 1024, 1);
    let mut adds = Vec::new();
    for i in 0..100 {
        let t0 = Instant::now();
        let id = client
            .create_upload(UploadRequest::put(server.url(&format!("/l{i}")), &f))
            .unwrap()
            .id()
            .unwrap();
        assert!(wait_until(Duration::from_secs(20), || server
            .request_count()
            > i));
        let first = server.requests()[i].started_at;
        adds.push(first.saturating_duration_since(t0));
        client.wait(id).unwrap();
    }
    let big = write_file(tmp.path(), "big", 64 << 20, 2);
    let mut pauses = Vec::new();
    for i in 0..30 {
        let before = server.request_count();
        let id = client
            .create_upload(UploadRequest::put(server.url(&format!("/p{i}")), &big))
            .unwrap()
            .id()
            .unwrap();
        assert!(wait_until(Duration::from_secs(20), || server
            .requests()
            .get(before)
            .is_some_and(|r| r.body_len > 64 * 1024)));
        let t0 = Instant::now();
        client.pause(id).unwrap();
        assert_eq!(
            client.get(id).unwrap().progress.status,
            Status::PausedByApplication
        );
        assert!(wait_until(Duration::from_secs(20), || server.requests()
            [before]
            .finished));
        pauses.push(
            server.requests()[before]
                .finished_at
                .saturating_duration_since(t0),
        );
        client.remove(id).unwrap();
    }
    owner.kill();
    adds.sort();
    pauses.sort();
    eprintln!(
        "idle owner in another process: add -> first byte at the server median {:?}, p99 \
         {:?} ({} adds); pause -> transfer stopped median {:?}, p99 {:?} ({} pauses)",
        percentile(&adds, 0.5),
        percentile(&adds, 0.99),
        adds.len(),
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        pauses.len()
    );
}
