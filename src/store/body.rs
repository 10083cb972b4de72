//! Keeping a response body in the store (capped). A body of at most [`INLINE_BODY_MAX`]
//! bytes (most answers) gets no file at all: the journal keeps its bytes, in the
//! response's own record ([`Entry::Response`]), fsynced with the completion, and reads
//! come from there. A larger one is written to a temp file and renamed, so a crash never
//! leaves a half body under the final name, and is fsynced with its rename before the
//! journal names it.
//!
//! [`Entry::Response`]: crate::journal::Entry::Response

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::journal::INLINE_BODY_MAX;
use crate::Error;

/// Why a body could not be kept.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// Reading the body from the server failed (a wire error).
    Read(io::Error),
    /// The store could not be written.
    Store(Error),
}

/// A response body's temp file (`<body>.part`). Removed when dropped, unless [`save`]
/// renamed it into place.
struct BodyFile {
    file: fs::File,
    tmp: PathBuf,
    kept: bool,
}

impl BodyFile {
    /// Creates (or empties) the temp file of the body kept at `body_path`.
    ///
    /// # Errors
    /// The file cannot be created.
    fn create(body_path: &Path) -> Result<BodyFile, Error> {
        let tmp = body_path.with_extension("part");
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("create response body file", &tmp, e))?;
        Ok(BodyFile {
            file,
            tmp,
            kept: false,
        })
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        // A body that fails half-way (or never comes) must not leave its temp file
        // behind until the next open.
        if !self.kept {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// What [`save`] kept of a body.
#[derive(Debug)]
pub(crate) struct Saved {
    /// Bytes kept.
    pub len: u64,
    /// The body was longer than the cap and was cut.
    pub truncated: bool,
    /// The body's bytes, when it has no file (at most [`INLINE_BODY_MAX`]): the journal
    /// is to keep them.
    pub small: Option<Vec<u8>>,
}

/// Reads `body` (at most `cap` bytes), calling `progress` with the bytes received so
/// far and the announced length. A body that ends within [`INLINE_BODY_MAX`] bytes stays
/// in memory and gets no file (`small`); a longer one is written to `body_path` and made
/// durable there. Either way no temp file is left behind.
pub(crate) fn save(
    body: &mut dyn Read,
    announced: Option<u64>,
    body_path: &Path,
    cap: u64,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Saved, SaveError> {
    let store = |op, path: &Path, e| SaveError::Store(Error::io(op, path, e));
    let mut small = Vec::new();
    let mut part: Option<BodyFile> = None;
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
        len += n as u64;
        match &mut part {
            None if len <= INLINE_BODY_MAX => small.extend_from_slice(&buf[..n]),
            None => {
                // Too long for the journal: into a file, with what came before.
                let mut f = BodyFile::create(body_path).map_err(SaveError::Store)?;
                f.file
                    .write_all(&small)
                    .and_then(|()| f.file.write_all(&buf[..n]))
                    .map_err(|e| store("write response body file", &f.tmp, e))?;
                small = Vec::new();
                part = Some(f);
            }
            Some(f) => f
                .file
                .write_all(&buf[..n])
                .map_err(|e| store("write response body file", &f.tmp, e))?,
        }
        progress(len, announced);
    }
    if truncated {
        log::warn!("response body over the {cap}-byte cap; kept the first {cap} bytes");
    }
    let Some(mut part) = part else {
        return Ok(Saved {
            len,
            truncated,
            small: Some(small),
        });
    };
    part.file
        .sync_all()
        .map_err(|e| store("fsync response body file", &part.tmp, e))?;
    fs::rename(&part.tmp, body_path)
        .map_err(|e| store("rename response body file", body_path, e))?;
    part.kept = true;
    // The rename must be durable before the journal says Completed.
    if let Some(dir) = body_path.parent() {
        super::sync_dir(dir).map_err(SaveError::Store)?;
    }
    Ok(Saved {
        len,
        truncated,
        small: None,
    })
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
