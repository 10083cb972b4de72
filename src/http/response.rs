//! Keeping the server's answer: status, headers, final URL, and the body in the store
//! (capped), written to a temp file, fsynced and renamed so that a crash never leaves a
//! half body under the final name.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ureq::http::Response;
use ureq::Body;

use crate::Error;

/// A response as kept: what the journal records, plus the body file's fate.
#[derive(Debug, Clone)]
pub(crate) struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub url: String,
    pub body_len: u64,
    pub body_truncated: bool,
}

/// The headers of a response, as strings (invalid UTF-8 replaced).
pub(crate) fn headers_of(resp: &Response<Body>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads the response body into `body_path` (at most `cap` bytes), calling `progress`
/// with the bytes received so far.
///
/// # Errors
/// [`Error::Io`] if the store cannot be written; a failure while reading the body comes
/// back classified like one of the request ([`Error::Timeout`], [`Error::Protocol`],
/// [`Error::Network`]). Either way no temp file is left behind.
pub(crate) fn read_response(
    mut resp: Response<Body>,
    url: &str,
    body_path: &Path,
    cap: u64,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<StoredResponse, Error> {
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    let announced = resp.body().content_length();
    let tmp = body_path.with_extension("part");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io("create response body file", &tmp, e))?;
    // A body that fails half-way must not leave its temp file behind until the next open.
    let mut guard = RemoveOnDrop(Some(&tmp));
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0u64;
    let mut truncated = false;
    loop {
        let room = (cap - len).min(buf.len() as u64) as usize;
        if room == 0 {
            // One more byte tells a body of exactly `cap` from a longer one.
            let mut probe = [0u8; 1];
            truncated = matches!(reader.read(&mut probe), Ok(n) if n > 0);
            break;
        }
        let n = match reader.read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ureq hands its own errors (a body timeout, bad chunked framing) back
            // wrapped in an io::Error; unwrap them so they keep their kind and phase.
            Err(e) => return Err(crate::http::classify(ureq::Error::from(e)).0),
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("write response body file", &tmp, e))?;
        len += n as u64;
        progress(len, announced);
    }
    file.sync_all()
        .map_err(|e| Error::io("fsync response body file", &tmp, e))?;
    fs::rename(&tmp, body_path)
        .map_err(|e| Error::io("rename response body file", body_path, e))?;
    guard.0 = None;
    // The rename must be durable before the journal says Completed: after a power cut
    // a completed upload must not be missing its body.
    if let Some(dir) = body_path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync response body directory", dir, e))?;
    }
    if truncated {
        log::warn!("response body over the {cap}-byte cap; kept the first {cap} bytes");
    }
    Ok(StoredResponse {
        status,
        headers,
        url: url.to_string(),
        body_len: len,
        body_truncated: truncated,
    })
}

/// Deletes a temp file when dropped, unless disarmed by setting it to `None`.
struct RemoveOnDrop<'a>(Option<&'a Path>);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = fs::remove_file(p);
        }
    }
}
