//! The Google Cloud Storage and Azure emulators, on free loopback ports, killed on drop:
//! - gcp-storage-emulator (PyPI, in the virtualenv `tests/gcs/venv` that
//!   `tests/setup.sh` creates), in memory: a restart forgets every session;
//! - Azurite (npm, in `tests/azurite/`), with telemetry off (the machine has no
//!   network beyond the registries), and SAS tokens made here with its well-known
//!   development account key.
//!
//! Plus a plain client to read objects back and to look behind the uploader's back.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::netns::skip;

/// The bucket (GCS) and container (Azure) every test uses.
pub const BUCKET: &str = "uploads";
/// Azurite's development account.
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (published in Azurite's README: not a secret).
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    Gcs,
    Azurite,
}

/// A running emulator.
pub struct Cloud {
    pub kind: Emulator,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.stop();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Cloud {
    /// Starts one; `None` (after SKIPPED) when it is not installed, outside CI.
    pub fn start(test: &str, kind: Emulator) -> Option<Cloud> {
        let exe = match kind {
            Emulator::Gcs => root().join("tests/gcs/venv/bin/gcp-storage-emulator"),
            Emulator::Azurite => root().join("tests/azurite/node_modules/.bin/azurite-blob"),
        };
        if !exe.exists() {
            return skip(
                test,
                &format!("{kind:?} is not installed (bash tests/setup.sh)"),
            );
        }
        let mut cloud = Cloud {
            kind,
            port: super::closed_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        cloud.run();
        if kind == Emulator::Azurite {
            let sas = cloud.sas("rwdlac", "sco", 3600);
            let url = format!("{}/{BUCKET}?restype=container&{sas}", cloud.base());
            let r = agent()
                .put(&url)
                .header("x-ms-version", "2021-08-06")
                .send_empty()
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "create the Azurite container");
        }
        Some(cloud)
    }

    fn run(&mut self) {
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Emulator::Gcs => {
                let mut c = Command::new(root().join("tests/gcs/venv/bin/gcp-storage-emulator"));
                c.args(["start", "--host", "127.0.0.1", "--port", &port])
                    .args(["--default-bucket", BUCKET, "--in-memory", "--quiet"]);
                c
            }
            Emulator::Azurite => {
                let mut c =
                    Command::new(root().join("tests/azurite/node_modules/.bin/azurite-blob"));
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port])
                    .arg("--location")
                    .arg(self.dir.path())
                    .args(["--disableTelemetry", "--skipApiVersionCheck", "--silent"]);
                c
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
        let port = self.port;
        let up = super::engine::wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{:?} did not start listening on {port}", self.kind);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the emulator and starts it again on the same port: the in-memory GCS
    /// emulator forgets every session (and object).
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `http://127.0.0.1:PORT` (GCS) or `http://127.0.0.1:PORT/devstoreaccount1` (Azure).
    pub fn base(&self) -> String {
        match self.kind {
            Emulator::Gcs => format!("http://127.0.0.1:{}", self.port),
            Emulator::Azurite => format!("http://127.0.0.1:{}/{AZ_ACCOUNT}", self.port),
        }
    }

    /// GCS: the initiation URL of object `name`, at `base` (the emulator, or a proxy).
    pub fn initiation_url(base: &str, name: &str) -> String {
        format!("{base}/upload/storage/v1/b/{BUCKET}/o?uploadType=resumable&name={name}")
    }

    /// GCS: starts a session for `name` itself (as a backend would) and returns its URI.
    pub fn gcs_session(&self, name: &str, size: u64) -> String {
        let r = agent()
            .post(&Cloud::initiation_url(&self.base(), name))
            .header("X-Upload-Content-Length", &size.to_string())
            .send_empty()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "start a GCS session");
        r.headers()["location"].to_str().unwrap().to_string()
    }

    /// An account SAS query for Azurite (version 2021-08-06), valid for `secs` seconds
    /// (negative: expired already).
    pub fn sas(&self, permissions: &str, resource_types: &str, secs: i64) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expiry = iso8601(now + secs);
        let version = "2021-08-06";
        let to_sign = format!(
            "{AZ_ACCOUNT}\n{permissions}\nb\n{resource_types}\n\n{expiry}\n\nhttp,https\n{version}\n\n"
        );
        let sig = base64(&hmac_sha256(&unbase64(AZ_KEY), to_sign.as_bytes()));
        format!(
            "sv={version}&ss=b&srt={resource_types}&sp={permissions}&se={}&spr=http,https&sig={}",
            expiry.replace(':', "%3A"),
            sig.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        )
    }

    /// Azure: the SAS URL of blob `name` at `base`, writable for `secs` seconds.
    pub fn blob_url(&self, base: &str, name: &str, secs: i64) -> String {
        format!("{base}/{BUCKET}/{name}?{}", self.sas("rcw", "o", secs))
    }

    /// The object's bytes, or `None` if it is not there.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        let url = match self.kind {
            Emulator::Gcs => format!(
                "{}/download/storage/v1/b/{BUCKET}/o/{name}?alt=media",
                self.base()
            ),
            Emulator::Azurite => self.blob_url(&self.base(), name, 600),
        };
        let r = agent().get(&url).call().unwrap();
        if r.status().as_u16() != 200 {
            return None;
        }
        Some(
            r.into_body()
                .into_with_config()
                .limit(1 << 31)
                .read_to_vec()
                .unwrap(),
        )
    }

    /// The blob's `Content-Type` (Azure) or the object's `contentType` (GCS).
    pub fn content_type(&self, name: &str) -> Option<String> {
        match self.kind {
            Emulator::Gcs => {
                let url = format!("{}/storage/v1/b/{BUCKET}/o/{name}", self.base());
                let text = agent()
                    .get(&url)
                    .call()
                    .ok()?
                    .into_body()
                    .read_to_string()
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                v["contentType"].as_str().map(str::to_string)
            }
            Emulator::Azurite => {
                let r = agent()
                    .head(&self.blob_url(&self.base(), name, 600))
                    .call()
                    .ok()?;
                r.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            }
        }
    }

    /// Azure: Put Block of `data` as block `id` (base64) to the blob at SAS `url`; the
    /// status.
    pub fn put_block(&self, url: &str, id: &str, data: &[u8]) -> u16 {
        let id = id
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        agent()
            .put(&format!("{url}&comp=block&blockid={id}"))
            .header("x-ms-version", "2021-08-06")
            .send(data)
            .unwrap()
            .status()
            .as_u16()
    }

    /// Azure: the uncommitted blocks of a blob (their IDs).
    pub fn uncommitted(&self, name: &str) -> Vec<String> {
        let url = format!(
            "{}&comp=blocklist&blocklisttype=uncommitted",
            self.blob_url(&self.base(), name, 600)
        );
        let Ok(r) = agent()
            .get(&url)
            .header("x-ms-version", "2021-08-06")
            .call()
        else {
            return vec![];
        };
        let text = r.into_body().read_to_string().unwrap_or_default();
        text.split("<Name>")
            .skip(1)
            .filter_map(|s| s.split_once("</Name>").map(|(n, _)| n.to_string()))
            .collect()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
fn iso8601(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.iter().map(|b| b ^ x).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 decoded (the test's own: no dependency for it).
pub fn unbase64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_sas_helpers_agree_with_known_values() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso8601(1_798_761_600), "2027-01-01T00:00:00Z");
    assert_eq!(unbase64(&base64(b"hello!?")), b"hello!?");
    // RFC 4231 test case 2.
    assert_eq!(
        super::hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
