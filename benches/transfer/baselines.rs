//! The baselines: `curl -T` and a bare ureq PUT.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::contest::{check_answer, Target};
use crate::measure::{cpu_times, process_cpu};

pub fn curl_available() -> bool {
    Command::new("which")
        .arg("curl")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns (wall, cpu) in seconds.
pub fn run_curl(t: &Target) -> (f64, f64) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-T"]).arg(t.file).arg(&t.url);
    if let Some(ca) = t.cacert {
        cmd.arg("--cacert").arg(ca);
    }
    let (_, c0) = cpu_times();
    let start = Instant::now();
    let out = cmd.stderr(Stdio::inherit()).output().expect("run curl");
    let wall = start.elapsed().as_secs_f64();
    let (_, c1) = cpu_times();
    assert!(out.status.success(), "curl failed: {}", out.status);
    check_answer("curl", &String::from_utf8_lossy(&out.stdout), t.size);
    (wall, c1 - c0)
}

pub fn bare_agent(ca_pem: &str) -> ureq::Agent {
    use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};
    let certs: Vec<_> = ureq::tls::parse_pem(ca_pem.as_bytes())
        .filter_map(|i| match i {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&certs))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .build()
        .new_agent()
}

pub fn ureq_put(ca_pem: &str, url: &str, file: &Path) -> String {
    let agent = bare_agent(ca_pem);
    let f = File::open(file).expect("open file");
    let resp = agent.put(url).send(f).expect("bare ureq PUT");
    resp.into_body().read_to_string().expect("response body")
}

pub fn run_ureq(t: &Target, ca_pem: &str) -> (f64, f64) {
    let c0 = process_cpu();
    let start = Instant::now();
    let answer = ureq_put(ca_pem, &t.url, t.file);
    let wall = start.elapsed().as_secs_f64();
    let c1 = process_cpu();
    check_answer("bare ureq", &answer, t.size);
    (wall, c1 - c0)
}

/// The bare ureq PUT in a thread of its own, as the crate's worker runs it: tells what a
/// thread itself costs from what the crate costs.
pub fn run_ureq_thread(t: &Target, ca_pem: &str) -> (f64, f64) {
    let (ca, url, file) = (ca_pem.to_string(), t.url.clone(), t.file.to_path_buf());
    let c0 = process_cpu();
    let start = Instant::now();
    let answer = std::thread::spawn(move || ureq_put(&ca, &url, &file))
        .join()
        .expect("the ureq thread");
    let wall = start.elapsed().as_secs_f64();
    let c1 = process_cpu();
    check_answer("bare ureq on a thread", &answer, t.size);
    (wall, c1 - c0)
}

/// A plain HTTP PUT whose body the kernel copies from the file to the socket
/// (`sendfile(2)`, no user-space copy): a hand-written request, the answer read to the
/// end. Not a client (no pause, progress or bandwidth cap): the physical limit of the
/// plain HTTP path, to measure the crate against.
pub fn run_sendfile(t: &Target) -> (f64, f64) {
    use std::io::{Read, Write};
    let (_, rest) = t.url.split_once("://").expect("a URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let c0 = process_cpu();
    let start = Instant::now();
    let file = std::fs::File::open(t.file).expect("open the file");
    let mut sock = std::net::TcpStream::connect(host).expect("connect to the sink");
    sock.set_nodelay(true).expect("TCP_NODELAY");
    write!(
        sock,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.size
    )
    .expect("send the head");
    let mut left = t.size as usize;
    while left > 0 {
        let n =
            nix::sys::sendfile::sendfile(&sock, &file, None, left.min(1 << 30)).expect("sendfile");
        assert!(n > 0, "sendfile sent nothing with {left} bytes left");
        left -= n;
    }
    // The sink keeps the connection open: the head, then `Content-Length` bytes.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let body = loop {
        let n = sock.read(&mut buf).expect("read the answer");
        assert!(n > 0, "the sink closed before its answer was whole");
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = (head.lines())
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse().ok())
                .expect("a Content-Length");
            if body.len() >= len {
                break body.to_string();
            }
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let c1 = process_cpu();
    check_answer("sendfile", &body, t.size);
    (wall, c1 - c0)
}
