//! 6: S3 multipart to moto (the virtualenv `tests/setup.sh` creates), three programs as
//! child processes, alternating, each on a fresh store: the crate's S3 multipart upload
//! (`examples/minimal_s3`, 8 MiB parts, one part at a time), boto3's `upload_file` with
//! the same part size (its defaults otherwise: up to 10 parts at once), and the crate's
//! plain PUT of the same file (`examples/minimal`, one request; moto does not check
//! signatures). CPU is the children's user+sys.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::measure::{cpu_times, median};
use crate::report::{fmt_mib, Table};
use crate::size::build_minimal_in;

const BUCKET: &str = "bench";

/// A contender: its name, and the command for round `i` (its own object key).
type Contender<'a> = (&'static str, Box<dyn Fn(usize) -> Command + 'a>);

/// A moto server, killed on drop.
struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(exe: &Path) -> Result<Moto, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("moto_server: {e}"))?;
    let moto = Moto(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("moto did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let put = ureq::put(format!("http://127.0.0.1:{port}/{BUCKET}")).send_empty();
    put.map_err(|e| format!("create the bucket: {e}"))?;
    Ok(moto)
}

const BOTO3: &str = r#"
import sys, boto3
from boto3.s3.transfer import TransferConfig
endpoint, bucket, key, path = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
part = 8 * 1024 * 1024
s3.upload_file(path, bucket, key,
               Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part))
print("HTTP 200")
"#;

/// Runs one contender to its end: (wall seconds, CPU seconds).
fn run(cmd: &mut Command, cwd: &Path) -> Result<(f64, f64), String> {
    let _ = std::fs::remove_dir_all(cwd);
    std::fs::create_dir_all(cwd).map_err(|e| e.to_string())?;
    let (_, c0) = cpu_times();
    let start = Instant::now();
    let out = cmd
        .current_dir(cwd)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();
    let (_, c1) = cpu_times();
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !said.contains("HTTP 200") {
        return Err(format!("{cmd:?} failed ({}): {said}", out.status));
    }
    Ok((wall, c1 - c0))
}

/// The S3 rows (skipped, with the reason, when moto or the `s3` build is missing).
pub fn s3_rows(table: &mut Table, dir: &Path, file: &Path, size: u64, runs: usize) {
    let figure = format!("S3 multipart {} to moto: crate / boto3", fmt_mib(size));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("tests/moto/venv/bin");
    if !venv.join("moto_server").exists() {
        table.row(
            &figure,
            "moto not installed (bash tests/setup.sh)".into(),
            "(info)",
            "skipped",
        );
        return;
    }
    eprintln!("S3: cargo build --release --features s3 --example minimal --example minimal_s3");
    let built = build_minimal_in(
        "release",
        &[
            "--features",
            "s3",
            "--example",
            "minimal",
            "--example",
            "minimal_s3",
        ],
    );
    let exes = match built {
        Ok(e) => e,
        Err(e) => return table.row(&figure, e, "(info)", "n/a"),
    };
    let exe = |name: &str| {
        exes.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, p)| p.clone())
    };
    let (Some(minimal), Some(minimal_s3)) = (exe("minimal"), exe("minimal_s3")) else {
        return table.row(&figure, "examples not built".into(), "(info)", "n/a");
    };
    let moto = match start_moto(&venv.join("moto_server")) {
        Ok(m) => m,
        Err(e) => return table.row(&figure, e, "(info)", "n/a"),
    };
    let endpoint = format!("http://127.0.0.1:{}", moto.1);
    let script = dir.join("boto3_upload.py");
    if let Err(e) = std::fs::write(&script, BOTO3) {
        return table.row(&figure, e.to_string(), "(info)", "n/a");
    }
    let cwd = dir.join("s3-run");
    let file = file.to_path_buf();
    let contenders: [Contender; 3] = [
        (
            "crate",
            Box::new(|i| {
                let mut c = Command::new(&minimal_s3);
                c.arg(&endpoint)
                    .arg(BUCKET)
                    .arg(format!("crate-{i}"))
                    .arg(&file);
                c
            }),
        ),
        (
            "boto3",
            Box::new(|i| {
                let mut c = Command::new(venv.join("python3"));
                c.arg(&script)
                    .arg(&endpoint)
                    .arg(BUCKET)
                    .arg(format!("boto3-{i}"))
                    .arg(&file);
                c
            }),
        ),
        (
            "plain",
            Box::new(|i| {
                let mut c = Command::new(&minimal);
                c.arg(format!("{endpoint}/{BUCKET}/plain-{i}")).arg(&file);
                c
            }),
        ),
    ];
    eprintln!("S3 multipart, {}, {runs} rounds", fmt_mib(size));
    let mut wall = [vec![], vec![], vec![]];
    let mut cpu = [0.0f64; 3];
    let mut ratio_boto = vec![];
    let mut ratio_plain = vec![];
    for round in 0..=runs {
        let mut this = [0.0f64; 3];
        for k in 0..3 {
            let who = (round + k) % 3;
            let (name, make) = &contenders[who];
            match run(&mut make(round), &cwd) {
                Ok((w, c)) => {
                    this[who] = w;
                    // Round 0 is the untimed warm-up.
                    if round > 0 {
                        wall[who].push(w);
                        cpu[who] += c;
                    }
                }
                Err(e) => return table.row(&figure, format!("{name}: {e}"), "(info)", "n/a"),
            }
        }
        if round > 0 {
            ratio_boto.push(this[0] / this[1]);
            ratio_plain.push(this[0] / this[2]);
        }
    }
    drop(moto);
    let mbps = |w: f64| size as f64 / w / 1e6;
    table.info(
        &figure,
        format!(
            "wall {:.2}x (crate {:.1} MB/s, boto3 {:.1} MB/s), CPU {:.2}x ({:.2} s vs {:.2} s)",
            median(&ratio_boto),
            mbps(median(&wall[0])),
            mbps(median(&wall[1])),
            cpu[0] / cpu[1],
            cpu[0] / runs as f64,
            cpu[1] / runs as f64,
        ),
    );
    table.info(
        &format!(
            "S3 multipart {} to moto: crate / its own plain PUT",
            fmt_mib(size)
        ),
        format!(
            "wall {:.2}x (plain PUT {:.1} MB/s), CPU {:.2}x ({:.2} s for the PUT)",
            median(&ratio_plain),
            mbps(median(&wall[2])),
            cpu[0] / cpu[2],
            cpu[2] / runs as f64,
        ),
    );
}
