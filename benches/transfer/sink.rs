//! The sink: this binary re-run as a child process (`BGXFER_BENCH_ROLE=sink`) that
//! serves plain HTTP and TLS on loopback, discards the bodies and answers with their
//! length; and the parent's handle on it.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::children::self_exe;
use crate::{MIB, ROLE};

pub const MAX_HEAD: usize = 64 * 1024;
/// Bounds for the sink's loops: far beyond anything a run does.
pub const MAX_CONNECTIONS: usize = 1_000_000;
pub const MAX_READS: u64 = 1 << 40;

/// HTTP/1.1 request framing over a byte stream: heads parsed, bodies counted and
/// discarded, an answer queued per request.
#[derive(Default)]
pub struct HttpSink {
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
pub fn parse_head(head: &[u8]) -> Result<(u64, bool), ()> {
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
pub const MSG_TRUNC: i32 = 0x20;

/// Plain HTTP: heads are read; bodies are discarded in the kernel with `MSG_TRUNC`, up to
/// 1 MiB per call, so the sink costs little more than the TCP receive path.
pub fn serve_plain(mut s: TcpStream) {
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
pub fn serve_tls(mut s: TcpStream, config: Arc<rustls::ServerConfig>) {
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
pub fn tls_material() -> (String, rustls::ServerConfig) {
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

pub fn accept_loop(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
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
pub fn sink_main() {
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

/// CPUs online (not this thread's affinity, which the pinning below changes).
fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Restricts every thread of process `pid` to the online CPUs `keep` accepts. Threads
/// it starts later inherit the mask of the thread that starts them.
fn set_affinity(pid: u32, keep: impl Fn(usize) -> bool) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET is only called with CPUs
    // below its capacity, and sched_setaffinity only reads the set.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let cap = 8 * std::mem::size_of::<libc::cpu_set_t>();
        for c in (0..online_cpus().min(cap)).filter(|c| keep(*c)) {
            libc::CPU_SET(c, &mut set);
        }
        set
    };
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for tid in tasks
        .flatten()
        .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
    {
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            eprintln!(
                "sched_setaffinity of thread {tid} of process {pid}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// For the throughput contests, on a machine of two CPUs or more: the sink gets the
/// last CPU to itself and this process (every contender, curl included, as its child)
/// the others. Unpinned, the kernel at times put a contender's thread on the sink's
/// CPU, where each of its sends was preempted by the sink's wake-up: thousands of
/// context switches per GiB, and up to 9 % more CPU, for whichever contender it hit.
fn split_cpus(sink: u32) {
    let n = online_cpus();
    if n >= 2 {
        set_affinity(sink, |c| c == n - 1);
        set_affinity(std::process::id(), |c| c < n - 1);
    }
}

pub struct Sink {
    pub child: Child,
    pub http: u16,
    pub https: u16,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path) -> Sink {
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
        split_cpus(child.id());
        Sink {
            child,
            http,
            https,
            ca_pem,
            ca_path,
        }
    }

    /// Lets the sink and this process run on every CPU again: for the rows where the
    /// sink does almost nothing per upload (the fixed cost, the CLI, memory), so that
    /// the contenders' threads (the crate's caller, scheduler and worker) may spread.
    pub fn share_cpus(&self) {
        set_affinity(self.child.id(), |_| true);
        set_affinity(std::process::id(), |_| true);
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
