//! Keeping a response body in the store (capped): written to a temp file, fsynced and
//! renamed, and the rename made durable, so a crash never leaves a half body under the
//! final name, and a completed upload never lacks its body after a power cut.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::Error;

/// Why a body could not be kept.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// Reading the body from the server failed (a wire error).
    Read(io::Error),
    /// The store could not be written.
    Store(Error),
}

/// Reads `body` into `body_path` (at most `cap` bytes), calling `progress` with the
/// bytes received so far and the announced length. Returns the length kept and whether
/// the body was longer than `cap`. Either way no temp file is left behind.
pub(crate) fn save(
    body: &mut dyn Read,
    announced: Option<u64>,
    body_path: &Path,
    cap: u64,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(u64, bool), SaveError> {
    let store = |op, path: &Path, e| SaveError::Store(Error::io(op, path, e));
    let tmp = body_path.with_extension("part");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| store("create response body file", &tmp, e))?;
    // A body that fails half-way must not leave its temp file behind until the next open.
    let mut guard = RemoveOnDrop(Some(&tmp));
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0u64;
    let mut truncated = false;
    loop {
        let room = (cap - len).min(buf.len() as u64) as usize;
        if room == 0 {
            // One more byte tells a body of exactly `cap` from a longer one.
            let mut probe = [0u8; 1];
            truncated = matches!(body.read(&mut probe), Ok(n) if n > 0);
            break;
        }
        let n = match body.read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SaveError::Read(e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| store("write response body file", &tmp, e))?;
        len += n as u64;
        progress(len, announced);
    }
    file.sync_all()
        .map_err(|e| store("fsync response body file", &tmp, e))?;
    fs::rename(&tmp, body_path).map_err(|e| store("rename response body file", body_path, e))?;
    guard.0 = None;
    // The rename must be durable before the journal says Completed.
    if let Some(dir) = body_path.parent() {
        super::sync_dir(dir).map_err(SaveError::Store)?;
    }
    if truncated {
        log::warn!("response body over the {cap}-byte cap; kept the first {cap} bytes");
    }
    Ok((len, truncated))
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

/// The first `n` bytes of the body kept at `body_path` (fewer if it is shorter; none if
/// there is no body or it cannot be read: the caller only looks for words in it).
pub(crate) fn head(body_path: &Path, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(f) = fs::File::open(body_path) {
        let _ = f.take(n).read_to_end(&mut out);
    }
    out
}
