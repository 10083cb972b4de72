//! Real S3 servers for the S3 tests, on free loopback ports, killed on drop:
//! - moto (`moto_server`, PyPI, in the virtualenv `tests/moto/venv` that
//!   `tests/setup.sh` creates): the whole multipart set, no signature checks;
//! - s3rver (npm, in `tests/s3rver/`): no ListParts, no ListMultipartUploads, no Abort;
//!   it checks that the access key exists, but (3.7.1) not V4 signatures;
//! - s3s-fs (crates.io, built into `tests/s3s/` by `tests/setup.sh`): checks SigV4
//!   signatures, presigned URLs included: the test of the signer.
//!
//! Plus a small signed client (rusty-s3 presigned URLs over ureq) to read objects back
//! and to act behind the uploader's back.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::netns::skip;

/// s3rver's fixed keys.
pub const S3RVER_KEY: &str = "S3RVER";
/// The bucket every test uses.
pub const BUCKET: &str = "uploads";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    S3rver,
    S3sFs,
}

/// s3s-fs's keys (it checks them).
pub const S3S_KEY: &str = "bgxfer-test-key";
/// s3s-fs's secret.
pub const S3S_SECRET: &str = "bgxfer-test-secret";
/// The domain s3s-fs serves virtual-hosted buckets under (`BUCKET.s3.test`); the
/// names resolve nowhere: tests reach them through `support::connect_proxy::ConnectProxy`.
pub const S3S_DOMAIN: &str = "s3.test";

/// A running S3 server with bucket [`BUCKET`].
pub struct S3Server {
    pub kind: Kind,
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts one; `None` (after SKIPPED) when it is not installed, outside CI.
    pub fn start(test: &str, kind: Kind) -> Option<S3Server> {
        let dir = tempfile::tempdir().unwrap();
        let port = super::closed_port();
        let mut cmd = match kind {
            Kind::Moto => {
                let exe = root().join("tests/moto/venv/bin/moto_server");
                if !exe.exists() {
                    return skip(test, "moto is not installed (bash tests/setup.sh)");
                }
                let mut c = Command::new(exe);
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Kind::S3sFs => {
                let exe = root().join("tests/s3s/bin/s3s-fs");
                if !exe.exists() {
                    return skip(test, "s3s-fs is not installed (bash tests/setup.sh)");
                }
                let data = dir.path().join("data");
                std::fs::create_dir_all(data.join(BUCKET)).unwrap();
                let mut c = Command::new(exe);
                c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", S3S_KEY, "--secret-key", S3S_SECRET])
                    // With the port: s3s matches the whole Host header.
                    .arg("--domain")
                    .arg(format!("{S3S_DOMAIN}:{port}"))
                    .arg(&data);
                c
            }
            Kind::S3rver => {
                let exe = root().join("tests/s3rver/node_modules/.bin/s3rver");
                if !exe.exists() {
                    return skip(test, "s3rver is not installed (bash tests/setup.sh)");
                }
                let mut c = Command::new(exe);
                c.arg("-d")
                    .arg(dir.path())
                    .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                    .args(["--configure-bucket", BUCKET, "--silent"]);
                c
            }
        };
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        let server = S3Server {
            kind,
            port,
            child,
            _dir: dir,
        };
        let up = super::engine::wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "{kind:?} did not start listening on {port}");
        if kind == Kind::Moto {
            let (status, body) = server.request("PUT", &format!("/{BUCKET}"), &[]);
            assert_eq!(status, 200, "create the bucket on moto: {body}");
        }
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The keys the server accepts (moto accepts any).
    pub fn keys(&self) -> (String, String) {
        match self.kind {
            Kind::S3sFs => (S3S_KEY.into(), S3S_SECRET.into()),
            Kind::Moto | Kind::S3rver => (S3RVER_KEY.into(), S3RVER_KEY.into()),
        }
    }

    pub fn bucket(&self) -> Bucket {
        Bucket::new(
            self.endpoint().parse().unwrap(),
            UrlStyle::Path,
            BUCKET,
            "us-east-1",
        )
        .unwrap()
    }

    fn creds(&self) -> Credentials {
        let (k, s) = self.keys();
        Credentials::new(k, s)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    }

    /// An unsigned request (moto does not check signatures) to `path_and_query`.
    pub fn request(&self, method: &str, path_and_query: &str, body: &[u8]) -> (u16, String) {
        let url = format!("{}{path_and_query}", self.endpoint());
        self.send(method, &url, body)
    }

    fn send(&self, method: &str, url: &str, body: &[u8]) -> (u16, String) {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .body(body.to_vec())
            .unwrap();
        let resp = Self::agent().run(req).unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        (status, text)
    }

    /// The object's bytes (a signed GET), or `None` if it does not exist.
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let bucket = self.bucket();
        let creds = self.creds();
        let url = bucket
            .get_object(Some(&creds), key)
            .sign(Duration::from_secs(600));
        let resp = Self::agent().get(url.as_str()).call().unwrap();
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert_eq!(resp.status().as_u16(), 200, "GET {key}");
        Some(
            resp.into_body()
                .into_with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .unwrap(),
        )
    }

    /// The multipart uploads the server lists for `key` (moto: ListMultipartUploads).
    pub fn multipart_uploads(&self, key: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{BUCKET}?uploads"), &[]);
        assert_eq!(status, 200, "ListMultipartUploads: {body}");
        body.split("<Upload>")
            .skip(1)
            .filter(|u| u.contains(&format!("<Key>{key}</Key>")))
            .filter_map(|u| {
                let start = u.find("<UploadId>")? + "<UploadId>".len();
                let end = u.find("</UploadId>")?;
                Some(u[start..end].to_string())
            })
            .collect()
    }

    /// AbortMultipartUpload behind the uploader's back.
    pub fn abort(&self, key: &str, upload_id: &str) {
        let (status, body) = self.request(
            "DELETE",
            &format!("/{BUCKET}/{key}?uploadId={upload_id}"),
            &[],
        );
        assert!(status == 204 || status == 200, "abort: {status} {body}");
    }

    /// The parts the server holds for an upload (moto: ListParts).
    pub fn parts(&self, key: &str, upload_id: &str) -> usize {
        let (status, body) =
            self.request("GET", &format!("/{BUCKET}/{key}?uploadId={upload_id}"), &[]);
        assert_eq!(status, 200, "ListParts: {body}");
        body.matches("<Part>").count()
    }
}

impl S3Server {
    /// The object's headers (a signed HEAD).
    pub fn head_object(&self, key: &str) -> Vec<(String, String)> {
        let creds = self.creds();
        let url = self
            .bucket()
            .head_object(Some(&creds), key)
            .sign(Duration::from_secs(600));
        let resp = Self::agent().head(url.as_str()).call().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "HEAD {key}");
        resp.headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect()
    }
}
