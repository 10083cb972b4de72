//! The bench binary re-run as a child process (`BGXFER_BENCH_ROLE`): the memory
//! children (peak RSS of uploads, of an idle binary, of a store of queued uploads) and the
//! `one` role for profiling; and the parent's side that runs them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use background_transfer::{UploadRequest, Uploader};

use crate::baselines::ureq_put;
use crate::contest::check_answer;
use crate::measure::{process_cpu, user_sys, vm_hwm_kib};
use crate::report::{fmt_mib, Table};
use crate::store::make_queued_store;
use crate::this_crate::builder;
use crate::ROLE;

pub fn self_exe() -> PathBuf {
    std::env::current_exe().expect("path of the bench binary")
}

/// Runs this binary as `role` with `envs`, and returns the `key value` lines it prints.
pub fn child_role(role: &str, envs: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut cmd = Command::new(self_exe());
    cmd.env(ROLE, role)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bench child");
    assert!(
        out.status.success(),
        "bench child {role} failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

pub fn files_from_env() -> Vec<PathBuf> {
    std::env::var("BGXFER_BENCH_FILES")
        .expect("BGXFER_BENCH_FILES")
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

pub fn mem_crate_main() {
    let url = std::env::var("BGXFER_BENCH_URL").expect("BGXFER_BENCH_URL");
    let store = std::env::var("BGXFER_BENCH_STORE").expect("BGXFER_BENCH_STORE");
    let files = files_from_env();
    let up = Uploader::builder()
        .store_dir(store)
        .max_concurrent(files.len())
        .open()
        .expect("open store");
    let ops: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            up.create_upload(UploadRequest::put(format!("{url}/mem/{i}"), f))
                .expect("create_upload")
        })
        .collect();
    for op in &ops {
        let info = op.wait().expect("upload");
        assert_eq!(info.status, 200);
    }
    println!("vmhwm {}", vm_hwm_kib());
    up.shutdown().expect("shutdown");
}

pub fn mem_ureq_main() {
    let url = std::env::var("BGXFER_BENCH_URL").expect("BGXFER_BENCH_URL");
    let files = files_from_env();
    let threads: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let url = format!("{url}/mem/{i}");
            std::thread::spawn(move || ureq_put("", &url, &f))
        })
        .collect();
    for t in threads {
        t.join().expect("ureq thread");
    }
    println!("vmhwm {}", vm_hwm_kib());
}

/// `BGXFER_BENCH_ROLE=one`: `BGXFER_BENCH_REPEAT` (default 1) uploads of the first of
/// `BGXFER_BENCH_FILES` to `BGXFER_BENCH_URL` by `BGXFER_BENCH_WHO` (`crate` or `ureq`),
/// trusting `BGXFER_BENCH_CA` (a PEM file) if set; prints wall, user and sys per upload.
/// For profiling one contender against a sink started by hand (see the top of `main.rs`).
pub fn one_main() {
    let url = std::env::var("BGXFER_BENCH_URL").expect("BGXFER_BENCH_URL");
    let file = files_from_env().into_iter().next().expect("a file");
    let size = fs::metadata(&file).expect("file").len();
    let ca_pem = std::env::var("BGXFER_BENCH_CA")
        .map(|p| fs::read_to_string(p).expect("CA file"))
        .unwrap_or_default();
    let repeat: usize = std::env::var("BGXFER_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // A comma-separated list alternates its contenders, one upload each in turn.
    let whos = std::env::var("BGXFER_BENCH_WHO").unwrap_or_else(|_| "crate".into());
    let whos: Vec<String> = whos.split(',').map(str::to_string).collect();
    let store = tempfile::tempdir().expect("temp dir");
    let up = builder(&store.path().join("store"), &ca_pem)
        .open()
        .expect("open store");
    // `crate-sendfile`: the same with `UploaderBuilder::sendfile` on.
    let up_sendfile = whos.iter().any(|w| w == "crate-sendfile").then(|| {
        builder(&store.path().join("store-sendfile"), &ca_pem)
            .sendfile(true)
            .open()
            .expect("open the sendfile store")
    });
    for i in 0..repeat * whos.len() {
        let who = &whos[i % whos.len()];
        let (u0, s0) = user_sys();
        let c0 = process_cpu();
        let start = Instant::now();
        let answer = if who == "ureq" {
            ureq_put(&ca_pem, &url, &file)
        } else if who == "ureq-thread" {
            let (ca, u, f) = (ca_pem.clone(), url.clone(), file.clone());
            std::thread::spawn(move || ureq_put(&ca, &u, &f))
                .join()
                .expect("ureq thread")
        } else {
            let up = match (who.as_str(), &up_sendfile) {
                ("crate-sendfile", Some(u)) => u,
                _ => &up,
            };
            let op = up
                .create_upload(UploadRequest::put(url.clone(), &file))
                .expect("create_upload");
            op.wait().expect("upload");
            let mut a = String::new();
            op.response_body()
                .expect("body")
                .read_to_string(&mut a)
                .expect("body");
            a
        };
        let wall = start.elapsed().as_secs_f64();
        let cpu = process_cpu() - c0;
        let (u1, s1) = user_sys();
        check_answer(who, &answer, size);
        println!(
            "{who}: wall {wall:.6} s, cpu {cpu:.6} s, user {:.2} s, sys {:.2} s",
            u1 - u0,
            s1 - s0
        );
    }
}

pub fn mem_queued_main() {
    let store = std::env::var("BGXFER_BENCH_STORE").expect("BGXFER_BENCH_STORE");
    let start = Instant::now();
    let up = Uploader::builder()
        .store_dir(store)
        .start_transfers(false)
        .open()
        .expect("open store");
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let n = up.uploads().len();
    println!("vmhwm {}", vm_hwm_kib());
    println!("uploads {n}");
    println!("open_ms {open_ms:.1}");
    drop(up);
}

/// 3: memory. Peak RSS of children that upload 8 hard links of `tls_file` at once (this
/// crate, bare ureq) to the sink's plain `http` port, of an idle child, and of one that
/// opens a store of `queued` uploads. Returns that store, for the journal figures.
pub fn memory_rows(
    table: &mut Table,
    dir: &Path,
    tls_file: &Path,
    tls_size: u64,
    http: u16,
    queued: u64,
) -> PathBuf {
    eprintln!("memory");
    let links: Vec<PathBuf> = (0..8)
        .map(|i| {
            let p = dir.join(format!("mem-{i}.bin"));
            let _ = fs::remove_file(&p);
            fs::hard_link(tls_file, &p).expect("hard link");
            p
        })
        .collect();
    let files = links
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let http_base = format!("http://127.0.0.1:{http}");
    let kib = |m: &BTreeMap<String, String>| -> u64 {
        m.get("vmhwm").and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let idle = kib(&child_role("mem-idle", &[]));
    let ureq8 = kib(&child_role(
        "mem-ureq",
        &[
            ("BGXFER_BENCH_URL", http_base.clone()),
            ("BGXFER_BENCH_FILES", files.clone()),
        ],
    ));
    let crate8 = kib(&child_role(
        "mem-crate",
        &[
            ("BGXFER_BENCH_URL", http_base.clone()),
            ("BGXFER_BENCH_FILES", files.clone()),
            (
                "BGXFER_BENCH_STORE",
                dir.join("mem-store").display().to_string(),
            ),
        ],
    ));
    let mib = |k: u64| k as f64 / 1024.0;
    table.max(
        &format!("peak RSS, 8 × {} at once (this crate)", fmt_mib(tls_size)),
        mib(crate8),
        format!("{:.1} MiB", mib(crate8)),
        8.0,
        "≤ 8 MiB",
    );
    table.info(
        &format!("peak RSS, 8 × {} at once (bare ureq)", fmt_mib(tls_size)),
        format!("{:.1} MiB", mib(ureq8)),
    );
    table.info(
        "peak RSS of the idle bench binary (floor of both)",
        format!("{:.1} MiB", mib(idle)),
    );
    let queued_dir = dir.join("queued-store");
    make_queued_store(&queued_dir, queued, &http_base, tls_file);
    let q = child_role(
        "mem-queued",
        &[("BGXFER_BENCH_STORE", queued_dir.display().to_string())],
    );
    assert_eq!(
        q.get("uploads").map(String::as_str),
        Some(queued.to_string().as_str())
    );
    table.max(
        "peak RSS, 10,000 queued uploads after open()",
        mib(kib(&q)),
        format!("{:.1} MiB", mib(kib(&q))),
        32.0,
        "≤ 32 MiB",
    );
    queued_dir
}
