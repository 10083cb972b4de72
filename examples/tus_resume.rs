//! The figure of issue 5: the bytes a 256 MiB upload sends when its connection is cut at
//! 90 %, as a plain PUT (the retry starts again from byte 0) and with tus (the retry
//! continues at the offset the server reports).
//!
//! Run by hand, with Node.js and the test server installed:
//!
//! ```text
//! npm ci --prefix tests/tus-server
//! cargo run --release --example tus_resume            # 256 MiB
//! cargo run --release --example tus_resume -- 64      # another size, in MiB
//! ```
//!
//! Both uploads go through the tests' loopback proxy, which cuts the connection once the
//! client has sent 90 % of the file and counts every byte the client sends. The PUT goes
//! to a small sink server started here; the tus upload goes to the real tus server
//! (`@tus/server`, tests/tus-server/), and the stored file is checked against the source.

#[allow(dead_code)]
#[path = "../tests/support/files.rs"]
mod files;
#[allow(dead_code)]
#[path = "../tests/support/proxy.rs"]
mod proxy;
#[allow(dead_code)]
#[path = "../tests/support/tus.rs"]
mod tus;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{UploadRequest, Uploader};

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("the size in MiB"))
        .unwrap_or(256);
    let size = mib << 20;
    let cut = size / 10 * 9;
    let tmp = tempfile::tempdir().expect("temp dir");
    let src = files::write_file(tmp.path(), "source.bin", size, 1);

    let Some(tus) = tus::TusServer::start("tus_resume", &tmp.path().join("tus-store")) else {
        std::process::exit(1);
    };
    let sink = start_sink();

    println!(
        "{mib} MiB upload over loopback, connection cut once after {:.1} MiB (90 %):",
        cut as f64 / MIB
    );
    let put = run(
        "plain PUT",
        &tmp.path().join("store-put"),
        sink,
        cut,
        |url| UploadRequest::put(url, &src),
        "/sink",
    );
    let tus_run = run(
        "tus",
        &tmp.path().join("store-tus"),
        tus.addr(),
        cut,
        |url| UploadRequest::put(url, &src).tus(None),
        "/files/",
    );
    let stored = tus.data_file(tus::upload_id(&tus_run.url));
    assert_eq!(
        files::sha256_file(&stored),
        files::sha256_file(&src),
        "the tus server's copy differs from the source"
    );
    for r in [&put, &tus_run] {
        println!(
            "  {:<9}  sent {:>7.1} MiB in all, {:>7.1} MiB sent again ({} B), has_restarted {}, {:.1} s",
            r.name,
            r.sent as f64 / MIB,
            r.sent.saturating_sub(size) as f64 / MIB,
            r.sent.saturating_sub(size),
            r.restarted,
            r.took.as_secs_f64()
        );
    }
    println!(
        "  (\"sent again\": every byte the client sent beyond the file's {mib} MiB, request \
         heads included; the tus copy on the server matches the source's SHA-256)"
    );
}

struct Run {
    name: &'static str,
    sent: u64,
    restarted: bool,
    took: Duration,
    url: String,
}

fn run(
    name: &'static str,
    store: &Path,
    target: SocketAddr,
    cut: u64,
    request: impl Fn(String) -> UploadRequest,
    path: &str,
) -> Run {
    let proxy = proxy::Proxy::start(target);
    proxy.cut_after(cut);
    let up = Uploader::builder()
        .store_dir(store)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .probe_backoff(Duration::from_millis(50), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
        .open()
        .expect("open the store");
    let start = Instant::now();
    let h = up
        .create_upload(request(proxy.url(path)))
        .expect("create the upload");
    let info = match h.wait_timeout(Duration::from_secs(600)) {
        Some(Ok(info)) => info,
        Some(Err(e)) => panic!("{name}: the upload failed: {e}"),
        None => panic!("{name}: not done after 10 minutes: {:?}", h.progress()),
    };
    let took = start.elapsed();
    assert_eq!(proxy.cuts(), 1, "{name}: the proxy cut one connection");
    let r = Run {
        name,
        sent: proxy.bytes_from_client(),
        restarted: h.progress().has_restarted,
        took,
        url: info.url,
    };
    up.shutdown().expect("shut down");
    r
}

/// A minimal HTTP/1.1 server that reads and discards request bodies and answers
/// `200` with an empty body. Its threads end with the process.
fn start_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let addr = listener.local_addr().expect("sink address");
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let _ = sink_connection(conn);
            });
        }
    });
    addr
}

fn sink_connection(conn: TcpStream) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::with_capacity(1 << 16, conn);
    loop {
        let mut length = 0u64;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let got = std::io::copy(&mut (&mut r).take(length), &mut std::io::sink())?;
        if got < length {
            return Ok(());
        }
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}
