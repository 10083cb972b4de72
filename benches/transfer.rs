//! Transfer benchmark (issue 8): this crate next to `curl -T` and a bare ureq PUT, on
//! loopback, in the same run. Prints one table of figures with their targets; asserts
//! nothing about time.
//!
//! Run:        `cargo bench --bench transfer`
//! Quick run:  `BGXFER_BENCH_QUICK=1 cargo bench --bench transfer` (64 MiB files, 3 runs)
//! No size:    `BGXFER_BENCH_SIZE=0` skips building `examples/minimal*.rs` (the size rows).
//! Tuning:     `BGXFER_BENCH_ONLY=transfer` stops after the plain and TLS contests;
//!             `BGXFER_BENCH_BUFFER=<bytes>` sets the crate's `buffer_size`.
//!
//! How it measures:
//! - The sink is this binary re-executed as a child process (`BGXFER_BENCH_ROLE=sink`): a
//!   thread per connection, 1 MiB reads into a reused buffer (plain HTTP bodies are
//!   dropped in the kernel with `MSG_TRUNC`, never copied out), `200` with the byte count
//!   as the body (each contender's answer is checked against the file size). Its CPU per
//!   run is shown next to each contender: far below the wall time, it is not the limit. Plain HTTP and TLS (rustls server, a leaf signed by a throwaway rcgen CA). It
//!   lives in its own process so that its CPU is never counted as a contender's.
//! - Contenders alternate, rotating the order each round, after one untimed warm-up each.
//!   Every figure is the median of the timed runs; a ratio is the median over rounds of
//!   the wall-time ratio within the round (paired: load from other work drifts over
//!   seconds); a CPU ratio is that of the totals over all rounds (finer than 10 ms ticks).
//!   - `curl`: `curl -sS --fail -T <file> <url>` (`--cacert` for TLS). CPU is the
//!     children's user+sys from `/proc/self/stat` (cutime+cstime) around the wait.
//!   - bare ureq: a fresh agent (rustls, the CA as its only root, no proxy, defaults
//!     otherwise), `agent.put(url).send(File)`, the response body read.
//!   - this crate: one `Uploader` (journal, default checkpointing, the CA added as a
//!     root), timed from `create_upload(UploadRequest::put(..))` to `wait()`; opening is
//!     timed separately. CPU is this process's user+sys (utime+stime) delta: the sink is
//!     another process, and nothing else runs here meanwhile. CPU figures come from
//!     clock ticks (10 ms): read them at full size, not in quick mode.
//! - Fixed cost: 21 uploads of a 1 KiB file, this crate alternating with bare ureq (the
//!   crate's journal fsyncs, worker thread and stored response, with no bytes to hide them).
//! - Memory: peak RSS (`VmHWM`) of a child process (this binary again) that uploads
//!   8 files at once (8 hard links of the TLS-size file, plain HTTP, `max_concurrent(8)`),
//!   next to the same with 8 bare ureq threads and an idle child (the binary's floor); and
//!   of a child that opens a store of 10,000 queued uploads (`start_transfers(false)`).
//! - Journal: the 10,000-upload store is written with the journal API (as
//!   `benches/journal.rs` does); `open()` of it is the median of 5. Replay of 100,000
//!   progress records is `benches/journal.rs`'s figure, measured the same way. fsyncs,
//!   records and bytes per GiB come from the crate's own uploads above: fsyncs from the
//!   journal's process-wide counter (`journal::process_fsyncs`, doc-hidden), bytes from
//!   the journal file's growth, records by scanning what was appended.
//! - Size: `cargo build --profile minimal --example minimal --example minimal_ureq`
//!   (opt-level "z", LTO, one codegen unit, panic=abort, stripped), then the files' sizes.
//!
//! Profiling one contender (the binary is `target/release/deps/transfer-*`):
//! ```text
//! BGXFER_BENCH_ROLE=sink BGXFER_BENCH_DIR=/tmp/b $BIN      # prints `ports <http> <https>`
//! BGXFER_BENCH_ROLE=one BGXFER_BENCH_WHO=crate BGXFER_BENCH_URL=http://127.0.0.1:<http>/x \
//!   BGXFER_BENCH_FILES=/tmp/b/file BGXFER_BENCH_REPEAT=5 valgrind --tool=callgrind $BIN
//! ```
//! (`BGXFER_BENCH_WHO=ureq` for the bare ureq PUT; `BGXFER_BENCH_CA=/tmp/b/ca.pem` for TLS.)

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use background_transfer::journal::format::{scan, HEADER_LEN};
use background_transfer::journal::record::{
    BodyV1, CostPolicyV1, CreatedV1, PriorityV1, ProgressV1, ProtocolV1, RequestV1, SourceV1,
};
use background_transfer::journal::{process_fsyncs, Durability, Journal, Record, Store};
use background_transfer::{UploadRequest, Uploader};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const ROLE: &str = "BGXFER_BENCH_ROLE";
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

// ---- small helpers ---------------------------------------------------------------

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// (this process's user+sys, its reaped children's user+sys), in seconds.
fn cpu_times() -> (f64, f64) {
    stat_cpu("/proc/self/stat")
}

/// User+sys of process `pid` (the sink), in seconds.
fn pid_cpu(pid: u32) -> f64 {
    stat_cpu(&format!("/proc/{pid}/stat")).0
}

fn stat_cpu(path: &str) -> (f64, f64) {
    let stat = fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i - 3).copied().unwrap_or(0) as f64 / TICKS;
    (at(14) + at(15), at(16) + at(17))
}

/// Peak resident set size of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `size` bytes of a fixed pseudo-random pattern (content is irrelevant: nothing
/// compresses), unless the file already has that size.
fn make_file(path: &Path, size: u64) -> io::Result<()> {
    if fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let mut chunk = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let mut f = io::BufWriter::with_capacity(MIB as usize, File::create(path)?);
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.flush()
}

fn self_exe() -> PathBuf {
    std::env::current_exe().expect("path of the bench binary")
}

/// Runs this binary as `role` with `envs`, and returns the `key value` lines it prints.
fn child_role(role: &str, envs: &[(&str, String)]) -> BTreeMap<String, String> {
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

// ---- the sink (a child process) ----------------------------------------------------

const MAX_HEAD: usize = 64 * 1024;
/// Bounds for the sink's loops: far beyond anything a run does.
const MAX_CONNECTIONS: usize = 1_000_000;
const MAX_READS: u64 = 1 << 40;

/// HTTP/1.1 request framing over a byte stream: heads parsed, bodies counted and
/// discarded, an answer queued per request.
#[derive(Default)]
struct HttpSink {
    head: Vec<u8>,
    /// `Some(left)` while a body is being read.
    body_left: Option<u64>,
    body_len: u64,
}

impl HttpSink {
    /// Consumes `data`, appending what to send back to `out`. `Err` closes the connection.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
        while !data.is_empty() {
            if let Some(left) = self.body_left {
                let take = left.min(data.len() as u64);
                data = &data[take as usize..];
                if left == take {
                    self.body_left = None;
                    self.answer(out);
                } else {
                    self.body_left = Some(left - take);
                }
                continue;
            }
            let old = self.head.len();
            let take = data.len().min(MAX_HEAD - old);
            if take == 0 {
                return Err(());
            }
            self.head.extend_from_slice(&data[..take]);
            let from = old.saturating_sub(3);
            let Some(i) = self.head[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                data = &data[take..];
                continue;
            };
            let end = from + i + 4;
            data = &data[end - old..];
            let (len, expect) = parse_head(&self.head[..end])?;
            self.head.clear();
            if expect {
                out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            self.body_len = len;
            if len == 0 {
                self.answer(out);
            } else {
                self.body_left = Some(len);
            }
        }
        Ok(())
    }

    /// `n` body bytes were discarded without being read (`MSG_TRUNC`).
    fn skip(&mut self, n: u64, out: &mut Vec<u8>) {
        if let Some(left) = self.body_left {
            let left = left.saturating_sub(n);
            self.body_left = (left > 0).then_some(left);
            if left == 0 {
                self.answer(out);
            }
        }
    }

    fn answer(&self, out: &mut Vec<u8>) {
        let body = self.body_len.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
    }
}

/// Content-Length and whether `Expect: 100-continue` was sent. Chunked bodies are not
/// supported (no contender sends one).
fn parse_head(head: &[u8]) -> Result<(u64, bool), ()> {
    let text = String::from_utf8_lossy(head);
    let (mut len, mut expect) = (0, false);
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            len = value.parse().map_err(|_| ())?;
        } else if name.eq_ignore_ascii_case("expect") {
            expect = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        }
    }
    Ok((len, expect))
}

/// `recv(2)` flag: on TCP, drop the bytes in the kernel instead of copying them out.
const MSG_TRUNC: i32 = 0x20;

/// Plain HTTP: heads are read; bodies are discarded in the kernel with `MSG_TRUNC`, up to
/// 1 MiB per call, so the sink costs little more than the TCP receive path.
fn serve_plain(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; MIB as usize];
    // Never written: with MSG_TRUNC the kernel only takes its length.
    let mut discard = vec![std::mem::MaybeUninit::<u8>::uninit(); MIB as usize];
    let (mut sink, mut out) = (HttpSink::default(), Vec::new());
    for _ in 0..MAX_READS {
        if let Some(left) = sink.body_left {
            let want = left.min(MIB) as usize;
            match socket2::SockRef::from(&s).recv_with_flags(&mut discard[..want], MSG_TRUNC) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink.skip(n as u64, &mut out),
            }
        } else {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if sink.feed(&buf[..n], &mut out).is_err() {
                return;
            }
        }
        if !out.is_empty() {
            if s.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
    }
}

/// TLS: socket reads of 1 MiB fed to rustls from memory (rustls' own reads are 4 KiB).
fn serve_tls(mut s: TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = s.set_nodelay(true);
    let Ok(mut conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    for _ in 0..1000 {
        if !conn.is_handshaking() {
            break;
        }
        if conn.complete_io(&mut s).is_err() {
            return;
        }
    }
    let mut raw = vec![0u8; MIB as usize];
    let mut plain = vec![0u8; 256 * 1024];
    let (mut sink, mut out) = (HttpSink::default(), Vec::new());
    for _ in 0..MAX_READS {
        // Plaintext rustls already holds (from the handshake's reads, or below).
        for _ in 0..MAX_READS {
            match conn.reader().read(&mut plain) {
                Ok(0) => return, // close_notify
                Ok(n) => {
                    if sink.feed(&plain[..n], &mut out).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() {
            if conn.writer().write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        for _ in 0..1000 {
            if !conn.wants_write() {
                break;
            }
            if conn.write_tls(&mut s).is_err() {
                return;
            }
        }
        let n = match s.read(&mut raw) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut slice = &raw[..n];
        for _ in 0..MAX_READS {
            if slice.is_empty() {
                break;
            }
            if conn.read_tls(&mut slice).is_err() || conn.process_new_packets().is_err() {
                let _ = conn.write_tls(&mut s);
                return;
            }
            // Drain now: rustls refuses more input while its plaintext buffer is full.
            for _ in 0..MAX_READS {
                match conn.reader().read(&mut plain) {
                    Ok(0) => return,
                    Ok(n) => {
                        if sink.feed(&plain[..n], &mut out).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// A throwaway CA and a leaf for 127.0.0.1 and localhost signed by it (webpki refuses a
/// self-signed certificate used directly as the server's). Returns the CA's PEM.
fn tls_material() -> (String, rustls::ServerConfig) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "bgxfer bench CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
    .expect("server certificate");
    (ca_cert.pem(), config)
}

fn accept_loop(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    for stream in listener.incoming().take(MAX_CONNECTIONS) {
        let Ok(stream) = stream else { continue };
        let tls = tls.clone();
        let _ = std::thread::Builder::new()
            .name("sink-conn".into())
            .spawn(move || match tls {
                None => serve_plain(stream),
                Some(c) => serve_tls(stream, c),
            });
    }
}

/// The sink process: writes `ca.pem` to `BGXFER_BENCH_DIR`, prints `ports <http> <https>`,
/// serves until its stdin closes.
fn sink_main() {
    let dir = PathBuf::from(std::env::var("BGXFER_BENCH_DIR").expect("BGXFER_BENCH_DIR"));
    let (ca_pem, config) = tls_material();
    fs::write(dir.join("ca.pem"), ca_pem).expect("write ca.pem");
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls = TcpListener::bind("127.0.0.1:0").expect("bind");
    let ports = (
        plain.local_addr().expect("addr").port(),
        tls.local_addr().expect("addr").port(),
    );
    std::thread::spawn(move || accept_loop(plain, None));
    let config = Arc::new(config);
    std::thread::spawn(move || accept_loop(tls, Some(config)));
    println!("ports {} {}", ports.0, ports.1);
    let _ = io::stdout().flush();
    let mut buf = [0u8; 64];
    for _ in 0..1_000_000 {
        match io::stdin().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

struct Sink {
    child: Child,
    http: u16,
    https: u16,
    ca_pem: String,
    ca_path: PathBuf,
}

impl Sink {
    fn start(dir: &Path) -> Sink {
        let mut child = Command::new(self_exe())
            .env(ROLE, "sink")
            .env("BGXFER_BENCH_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the sink");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("sink stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sink ports");
        let mut it = line.split_whitespace().skip(1).map(|p| p.parse::<u16>());
        let (Some(Ok(http)), Some(Ok(https))) = (it.next(), it.next()) else {
            panic!("sink said {line:?}");
        };
        let ca_path = dir.join("ca.pem");
        let ca_pem = fs::read_to_string(&ca_path).expect("ca.pem");
        Sink {
            child,
            http,
            https,
            ca_pem,
            ca_path,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // the sink exits when its stdin closes
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the contenders ------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Curl,
    Ureq,
    Crate,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Curl => "curl",
            Who::Ureq => "bare ureq",
            Who::Crate => "this crate",
        }
    }
}

#[derive(Default)]
struct Samples {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    /// The sink's CPU during the run: near the wall time means the sink is the limit.
    sink: Vec<f64>,
}

/// What the crate's uploads wrote to the journal.
#[derive(Default)]
struct JournalCost {
    bytes_uploaded: u64,
    fsyncs: u64,
    journal_bytes: u64,
    records: u64,
}

struct Target<'a> {
    url: String,
    file: &'a Path,
    size: u64,
    cacert: Option<&'a Path>,
}

fn curl_available() -> bool {
    Command::new("which")
        .arg("curl")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns (wall, cpu) in seconds.
fn run_curl(t: &Target) -> (f64, f64) {
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

fn bare_agent(ca_pem: &str) -> ureq::Agent {
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

fn ureq_put(ca_pem: &str, url: &str, file: &Path) -> String {
    let agent = bare_agent(ca_pem);
    let f = File::open(file).expect("open file");
    let resp = agent.put(url).send(f).expect("bare ureq PUT");
    resp.into_body().read_to_string().expect("response body")
}

fn run_ureq(t: &Target, ca_pem: &str) -> (f64, f64) {
    let (c0, _) = cpu_times();
    let start = Instant::now();
    let answer = ureq_put(ca_pem, &t.url, t.file);
    let wall = start.elapsed().as_secs_f64();
    let (c1, _) = cpu_times();
    check_answer("bare ureq", &answer, t.size);
    (wall, c1 - c0)
}

fn journal_path(up: &Uploader) -> PathBuf {
    up.store_dir().join("journal")
}

fn run_crate(t: &Target, up: &Uploader, cost: &mut JournalCost) -> (f64, f64) {
    let journal = journal_path(up);
    let len0 = fs::metadata(&journal).map_or(0, |m| m.len());
    let f0 = process_fsyncs();
    let (c0, _) = cpu_times();
    let start = Instant::now();
    let op = up
        .create_upload(UploadRequest::put(t.url.clone(), t.file))
        .expect("create_upload");
    let info = op.wait().expect("upload");
    let wall = start.elapsed().as_secs_f64();
    let (c1, _) = cpu_times();
    let f1 = process_fsyncs();
    assert_eq!(info.status, 200, "crate upload answered {}", info.status);
    let mut answer = String::new();
    op.response_body()
        .expect("response body")
        .read_to_string(&mut answer)
        .expect("read response body");
    check_answer("this crate", &answer, t.size);
    // Everything the upload wrote is on disk: `Completed` is an fsynced record.
    let bytes = fs::read(&journal).unwrap_or_default();
    cost.bytes_uploaded += t.size;
    cost.fsyncs += f1 - f0;
    cost.journal_bytes += (bytes.len() as u64).saturating_sub(len0);
    let from = (len0 as usize).clamp(HEADER_LEN, bytes.len());
    cost.records += scan(&bytes[from..]).records.len() as u64;
    (wall, c1 - c0)
}

fn check_answer(who: &str, answer: &str, size: u64) {
    assert_eq!(
        answer.trim(),
        size.to_string(),
        "{who}: the sink did not receive the whole file"
    );
}

/// One untimed warm-up each, then `runs` rounds, rotating who goes first.
fn contest(
    t: &Target,
    runs: usize,
    curl: bool,
    sink: &Sink,
    up: &Uploader,
    cost: &mut JournalCost,
) -> BTreeMap<&'static str, Samples> {
    let ca_pem = &sink.ca_pem;
    let mut who = vec![Who::Ureq, Who::Crate];
    if curl {
        who.insert(0, Who::Curl);
    }
    let mut scratch = JournalCost::default();
    for w in &who {
        match w {
            Who::Curl => drop(run_curl(t)),
            Who::Ureq => drop(run_ureq(t, ca_pem)),
            Who::Crate => drop(run_crate(t, up, &mut scratch)),
        }
    }
    let mut out: BTreeMap<&'static str, Samples> = BTreeMap::new();
    for round in 0..runs {
        for i in 0..who.len() {
            let w = who[(round + i) % who.len()];
            let sink0 = pid_cpu(sink.child.id());
            let (wall, cpu) = match w {
                Who::Curl => run_curl(t),
                Who::Ureq => run_ureq(t, ca_pem),
                Who::Crate => run_crate(t, up, cost),
            };
            let s = out.entry(w.name()).or_default();
            s.wall.push(wall);
            s.cpu.push(cpu);
            s.sink.push(pid_cpu(sink.child.id()) - sink0);
        }
        eprintln!("  {} round {}/{runs} done", t.url, round + 1);
    }
    out
}

// ---- memory children ----------------------------------------------------------------

fn files_from_env() -> Vec<PathBuf> {
    std::env::var("BGXFER_BENCH_FILES")
        .expect("BGXFER_BENCH_FILES")
        .split('\n')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn mem_crate_main() {
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

fn mem_ureq_main() {
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
/// For profiling one contender against a sink started by hand (see the top of the file).
fn one_main() {
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
    let who = std::env::var("BGXFER_BENCH_WHO").unwrap_or_else(|_| "crate".into());
    let store = tempfile::tempdir().expect("temp dir");
    let mut builder = Uploader::builder().store_dir(store.path().join("store"));
    if !ca_pem.is_empty() {
        builder = builder.add_root_certificate_pem(ca_pem.clone());
    }
    if let Some(b) = std::env::var("BGXFER_BENCH_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.buffer_size(b);
    }
    let up = builder.open().expect("open store");
    for _ in 0..repeat {
        let (u0, s0) = user_sys();
        let start = Instant::now();
        let answer = if who == "ureq" {
            ureq_put(&ca_pem, &url, &file)
        } else {
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
        let (u1, s1) = user_sys();
        check_answer(&who, &answer, size);
        println!(
            "{who}: wall {wall:.3} s, user {:.2} s, sys {:.2} s",
            u1 - u0,
            s1 - s0
        );
    }
}

/// This process's (user, sys) CPU seconds.
fn user_sys() -> (f64, f64) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse::<u64>().unwrap_or(0) as f64 / TICKS)
        .collect();
    (
        f.get(11).copied().unwrap_or(0.0),
        f.get(12).copied().unwrap_or(0.0),
    )
}

fn mem_queued_main() {
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

// ---- journal and start-up ------------------------------------------------------------

fn created(id: u64, url: &str, src: &Path, size: u64, mtime_ns: i64) -> Record {
    Record::Created(CreatedV1 {
        id,
        created_ms: 1_700_000_000_000 + id,
        request: RequestV1 {
            url: format!("{url}/queued/{id}"),
            method: "PUT".into(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: BodyV1::File(SourceV1 {
                path: src.as_os_str().as_encoded_bytes().to_vec(),
                size,
                mtime_ns,
                spooled: false,
            }),
            priority: PriorityV1::Default,
            group: None,
            cost: CostPolicyV1::Always,
            protocol: ProtocolV1::Plain,
            idempotent: false,
        },
    })
}

/// A store of `n` queued uploads, written with the journal API (one fsync at the end).
fn make_queued_store(dir: &Path, n: u64, url: &str, src: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(src).expect("source");
    // As the crate records it (`source.rs`).
    let mtime_ns = meta
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec());
    let mut store = Store::open(dir).expect("open store");
    for id in 1..=n {
        store
            .commit(
                created(id, url, src, meta.len(), mtime_ns),
                Durability::Batched,
            )
            .expect("append");
    }
    store.sync().expect("sync");
}

/// Median time of `Store::open` over a journal of one upload and 100,000 progress
/// records (the approach of `benches/journal.rs`).
fn replay_100k(dir: &Path) -> (f64, u64) {
    fs::create_dir_all(dir).expect("dir");
    {
        let (mut j, _, _) = Journal::open(dir).expect("journal");
        j.append(
            &created(0, "http://127.0.0.1:9", Path::new("/x"), 1, 0),
            Durability::Sync,
        )
        .expect("append");
        for n in 0..100_000u64 {
            let rec = Record::Progress(ProgressV1 {
                id: 0,
                bytes_sent: n * 65_536,
                acked: 0,
            });
            j.append(&rec, Durability::Batched).expect("append");
        }
        j.sync().expect("sync");
    }
    let bytes = fs::metadata(dir.join("journal")).map_or(0, |m| m.len());
    let times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(dir).expect("open");
            let e = t.elapsed().as_secs_f64();
            assert_eq!(s.state().uploads.len(), 1);
            e
        })
        .collect();
    (median(&times), bytes)
}

// ---- size ---------------------------------------------------------------------------

/// Builds the minimal examples with the `minimal` profile; returns (name, bytes).
fn build_minimal() -> Result<Vec<(String, u64)>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--profile",
            "minimal",
            "--example",
            "minimal",
            "--example",
            "minimal_ureq",
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = child.stdout.take().ok_or("no cargo stdout")?;
    let mut found = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            let len = fs::metadata(exe).map_err(|e| format!("{exe}: {e}"))?.len();
            found.push((name.to_string(), len));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo build --profile minimal failed: {status}"));
    }
    Ok(found)
}

// ---- the table ----------------------------------------------------------------------

struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, figure: &str, value: String, target: &str, verdict: &str) {
        self.rows.push([
            figure.to_string(),
            value,
            target.to_string(),
            verdict.to_string(),
        ]);
    }
    /// A figure with an upper bound.
    fn max(&mut self, figure: &str, value: f64, shown: String, bound: f64, target: &str) {
        let verdict = if value.is_nan() {
            "n/a"
        } else if value <= bound {
            "pass"
        } else {
            "MISS"
        };
        self.row(figure, shown, target, verdict);
    }
    fn info(&mut self, figure: &str, value: String) {
        self.row(figure, value, "", "info");
    }
    fn print(&self) {
        println!("| figure | value | target | result |");
        println!("|---|---|---|---|");
        for r in &self.rows {
            println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
        }
    }
}

fn fmt_mib(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// Rows for one protocol: each contender, then the ratios against the targets.
fn contest_rows(
    table: &mut Table,
    label: &str,
    size: u64,
    s: &BTreeMap<&'static str, Samples>,
    crate_vs_curl_wall: (f64, &str),
) {
    for who in ["curl", "bare ureq", "this crate"] {
        let Some(x) = s.get(who) else {
            table.row(
                &format!("{label}: {who}"),
                "curl not installed".into(),
                "",
                "skipped",
            );
            continue;
        };
        let wall = median(&x.wall);
        let cpu = median(&x.cpu);
        table.info(
            &format!("{label}: {who}"),
            format!(
                "wall {:.3} s, CPU {:.2} s, {:.0} MiB/s (sink CPU {:.2} s)",
                wall,
                cpu,
                size as f64 / MIB as f64 / wall,
                median(&x.sink)
            ),
        );
    }
    // Paired: the median over rounds of the ratio within each round, so that load from
    // other work on the machine, which drifts over seconds, hits both sides alike.
    let paired = |a: &str, b: &str, f: fn(&Samples) -> &[f64]| match (s.get(a), s.get(b)) {
        (Some(a), Some(b)) => median(
            &f(a)
                .iter()
                .zip(f(b))
                .map(|(x, y)| x / y)
                .collect::<Vec<_>>(),
        ),
        _ => f64::NAN,
    };
    let wall = |a: &str, b: &str| paired(a, b, |x| &x.wall);
    // CPU is counted in 10 ms ticks: the ratio of the totals over all rounds is finer.
    let cpu = |a: &str, b: &str| match (s.get(a), s.get(b)) {
        (Some(a), Some(b)) => a.cpu.iter().sum::<f64>() / b.cpu.iter().sum::<f64>(),
        _ => f64::NAN,
    };
    let r = wall("this crate", "bare ureq");
    table.max(
        &format!("{label}: wall, crate/bare ureq"),
        r,
        format!("{r:.2}"),
        1.05,
        "≤ 1.05",
    );
    let r = wall("this crate", "curl");
    table.max(
        &format!("{label}: wall, crate/curl"),
        r,
        format!("{r:.2}"),
        crate_vs_curl_wall.0,
        crate_vs_curl_wall.1,
    );
    let r = cpu("this crate", "curl");
    table.max(
        &format!("{label}: CPU, crate/curl"),
        r,
        format!("{r:.2}"),
        1.00,
        "≤ 1.00",
    );
    let r = cpu("this crate", "bare ureq");
    table.info(&format!("{label}: CPU, crate/bare ureq"), format!("{r:.2}"));
    let r = wall("bare ureq", "curl");
    table.info(
        &format!("{label}: wall, bare ureq/curl (anchor)"),
        format!("{r:.2}"),
    );
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("sink") => return sink_main(),
        Ok("mem-crate") => return mem_crate_main(),
        Ok("mem-ureq") => return mem_ureq_main(),
        Ok("mem-idle") => {
            println!("vmhwm {}", vm_hwm_kib());
            return;
        }
        Ok("mem-queued") => return mem_queued_main(),
        Ok("one") => return one_main(),
        _ => {}
    }
    let quick = env_on("BGXFER_BENCH_QUICK");
    let (plain_size, tls_size, runs) = if quick {
        (64 * MIB, 64 * MIB, 3)
    } else {
        (GIB, 256 * MIB, 9)
    };
    let queued = 10_000u64;
    let load_at_start = load_average();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    eprintln!(
        "transfer benchmark in {} ({}; {runs} runs)",
        dir.display(),
        if quick { "quick" } else { "full" }
    );
    let plain_file = dir.join("plain.bin");
    let tls_file = dir.join("tls.bin");
    make_file(&plain_file, plain_size).expect("write plain file");
    make_file(&tls_file, tls_size).expect("write tls file");
    let sink = Sink::start(dir);
    let curl = curl_available();
    if !curl {
        println!("curl not installed: its column is skipped");
    }
    let mut table = Table { rows: Vec::new() };

    // 1 and 2: plain HTTP and TLS.
    let store = dir.join("store");
    let t = Instant::now();
    let mut builder = Uploader::builder()
        .store_dir(&store)
        .add_root_certificate_pem(sink.ca_pem.clone());
    if let Some(b) = std::env::var("BGXFER_BENCH_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.buffer_size(b);
    }
    let up = builder.open().expect("open store");
    let open_empty = t.elapsed().as_secs_f64();
    let mut cost = JournalCost::default();
    eprintln!("plain HTTP, {}", fmt_mib(plain_size));
    let plain = contest(
        &Target {
            url: format!("http://127.0.0.1:{}/upload/plain", sink.http),
            file: &plain_file,
            size: plain_size,
            cacert: None,
        },
        runs,
        curl,
        &sink,
        &up,
        &mut cost,
    );
    eprintln!("TLS, {}", fmt_mib(tls_size));
    let tls = contest(
        &Target {
            url: format!("https://127.0.0.1:{}/upload/tls", sink.https),
            file: &tls_file,
            size: tls_size,
            cacert: Some(&sink.ca_path),
        },
        runs,
        curl,
        &sink,
        &up,
        &mut cost,
    );
    // The fixed cost of an upload (journal fsyncs, a worker thread, the stored response):
    // a 1 KiB file, alternating with bare ureq.
    let tiny_file = dir.join("tiny.bin");
    make_file(&tiny_file, 1024).expect("write tiny file");
    let tiny = Target {
        url: format!("http://127.0.0.1:{}/upload/tiny", sink.http),
        file: &tiny_file,
        size: 1024,
        cacert: None,
    };
    let (mut tiny_crate, mut tiny_ureq) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        tiny_ureq.push(run_ureq(&tiny, &sink.ca_pem).0);
        tiny_crate.push(run_crate(&tiny, &up, &mut JournalCost::default()).0);
    }
    up.shutdown().expect("shutdown");
    contest_rows(
        &mut table,
        &format!("plain HTTP {}", fmt_mib(plain_size)),
        plain_size,
        &plain,
        (0.75, "≤ 0.75"),
    );
    contest_rows(
        &mut table,
        &format!("TLS {}", fmt_mib(tls_size)),
        tls_size,
        &tls,
        (0.95, "≤ 0.95"),
    );
    table.info(
        "one 1 KiB upload, plain HTTP (fixed cost)",
        format!(
            "this crate {:.1} ms, bare ureq {:.1} ms",
            median(&tiny_crate) * 1e3,
            median(&tiny_ureq) * 1e3
        ),
    );
    if std::env::var("BGXFER_BENCH_ONLY").as_deref() == Ok("transfer") {
        drop(sink);
        print_header(quick, runs, &load_at_start);
        table.print();
        return;
    }

    // 3: memory.
    eprintln!("memory");
    let links: Vec<PathBuf> = (0..8)
        .map(|i| {
            let p = dir.join(format!("mem-{i}.bin"));
            let _ = fs::remove_file(&p);
            fs::hard_link(&tls_file, &p).expect("hard link");
            p
        })
        .collect();
    let files = links
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let http_base = format!("http://127.0.0.1:{}", sink.http);
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
    make_queued_store(&queued_dir, queued, &http_base, &tls_file);
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

    // 4: journal and start-up.
    eprintln!("journal");
    let opens: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let up = Uploader::builder()
                .store_dir(&queued_dir)
                .start_transfers(false)
                .open()
                .expect("open");
            let e = t.elapsed().as_secs_f64();
            drop(up);
            e
        })
        .collect();
    let open_ms = median(&opens) * 1e3;
    table.max(
        "open() with 10,000 uploads",
        open_ms,
        format!("{open_ms:.1} ms"),
        100.0,
        "≤ 100 ms",
    );
    table.info(
        "open() of a new store",
        format!("{:.1} ms", open_empty * 1e3),
    );
    let (replay, replay_bytes) = replay_100k(&dir.join("replay"));
    table.max(
        &format!(
            "replay 100,000 progress records ({:.1} MiB)",
            replay_bytes as f64 / MIB as f64
        ),
        replay * 1e3,
        format!("{:.1} ms", replay * 1e3),
        50.0,
        "≤ 50 ms (benches/journal.rs)",
    );
    let per_gib = |x: u64| x as f64 * GIB as f64 / cost.bytes_uploaded.max(1) as f64;
    table.max(
        "journal fsyncs per GiB uploaded",
        per_gib(cost.fsyncs),
        format!(
            "{:.1} ({} over {})",
            per_gib(cost.fsyncs),
            cost.fsyncs,
            fmt_mib(cost.bytes_uploaded)
        ),
        64.0,
        "≤ 64",
    );
    table.info(
        "journal bytes per GiB uploaded",
        format!("{:.0} B", per_gib(cost.journal_bytes)),
    );
    table.info(
        "journal records per GiB uploaded",
        format!("{:.1}", per_gib(cost.records)),
    );

    // 5: size.
    if std::env::var("BGXFER_BENCH_SIZE").as_deref() == Ok("0") {
        table.row(
            "minimal program, stripped",
            "not built".into(),
            "≤ 2 MiB",
            "skipped",
        );
    } else {
        eprintln!("size: cargo build --profile minimal --example minimal --example minimal_ureq");
        match build_minimal() {
            Ok(found) => {
                let get = |n: &str| found.iter().find(|(name, _)| name == n).map(|x| x.1);
                match get("minimal") {
                    Some(b) => table.max(
                        "minimal program using the crate, stripped (z, LTO)",
                        b as f64,
                        format!("{:.2} MiB", b as f64 / MIB as f64),
                        2.0 * MIB as f64,
                        "≤ 2 MiB",
                    ),
                    None => table.row(
                        "minimal program, stripped",
                        "not found".into(),
                        "≤ 2 MiB",
                        "n/a",
                    ),
                }
                if let Some(b) = get("minimal_ureq") {
                    table.info(
                        "minimal bare ureq PUT program, stripped (anchor)",
                        format!("{:.2} MiB", b as f64 / MIB as f64),
                    );
                }
            }
            Err(e) => table.row("minimal program, stripped", e, "≤ 2 MiB", "n/a"),
        }
    }
    drop(sink);

    println!();
    print_header(quick, runs, &load_at_start);
    table.print();
}

/// The 1-minute load average, from `/proc/loadavg`.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// What the figures were measured on: mode, CPU, and how busy the machine was.
fn print_header(quick: bool, runs: usize, load_at_start: &str) {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!(
        "transfer benchmark ({}, {runs} runs each, medians): {} × {cpu}; load average {} \
         at start, {} at end",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_at_start,
        load_average()
    );
}
