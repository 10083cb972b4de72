//! Keeping a response body in the store (capped): written to a temp file and renamed,
//! so a crash never leaves a half body under the final name. A completed upload never
//! lacks its body after a power cut: a body of more than [`INLINE_BODY_MAX`] bytes is
//! fsynced with its rename before the journal names it; a smaller one (most answers) is
//! not, and the journal keeps its bytes instead, in the response's own record
//! ([`Entry::Response`]), from which recovery rewrites a file the cut lost.
//!
//! [`Entry::Response`]: crate::journal::Entry::Response

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::journal::INLINE_BODY_MAX;
use crate::model::UploadId;
use crate::Error;

/// Why a body could not be kept.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// Reading the body from the server failed (a wire error).
    Read(io::Error),
    /// The store could not be written.
    Store(Error),
}

/// A response body's temp file (`<body>.part`), made before the answer comes: creating
/// a file is a directory update (tens of µs on ext4), which then overlaps the start's
/// fsync instead of sitting between the answer and the completion. Removed when dropped,
/// unless [`save`] renamed it into place.
pub(crate) struct BodyFile {
    file: fs::File,
    tmp: PathBuf,
    kept: bool,
}

impl BodyFile {
    /// Creates (or empties) the temp file of the body kept at `body_path`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub(crate) fn create(body_path: &Path) -> Result<BodyFile, Error> {
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

/// Reads `body` into `body_path` (at most `cap` bytes), through `early` if the caller
/// made its temp file already (else one made here), calling `progress` with the bytes
/// received so far and the announced length. Returns the length kept and whether the
/// body was longer than `cap`. Either way no temp file is left behind. A kept body of
/// at most [`INLINE_BODY_MAX`] bytes is not fsynced: the journal takes its bytes.
pub(crate) fn save(
    body: &mut dyn Read,
    announced: Option<u64>,
    body_path: &Path,
    early: Option<BodyFile>,
    cap: u64,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<(u64, bool), SaveError> {
    let store = |op, path: &Path, e| SaveError::Store(Error::io(op, path, e));
    let mut part = match early {
        Some(f) if f.tmp == body_path.with_extension("part") => f,
        _ => BodyFile::create(body_path).map_err(SaveError::Store)?,
    };
    let tmp = part.tmp.clone();
    let file = &mut part.file;
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
    let durable_here = len > INLINE_BODY_MAX;
    if durable_here {
        file.sync_all()
            .map_err(|e| store("fsync response body file", &tmp, e))?;
    }
    fs::rename(&tmp, body_path).map_err(|e| store("rename response body file", body_path, e))?;
    part.kept = true;
    // The rename must be durable before the journal says Completed.
    if let (true, Some(dir)) = (durable_here, body_path.parent()) {
        super::sync_dir(dir).map_err(SaveError::Store)?;
    }
    if truncated {
        log::warn!("response body over the {cap}-byte cap; kept the first {cap} bytes");
    }
    Ok((len, truncated))
}

/// The kept body of `len` bytes (at most [`INLINE_BODY_MAX`]) at `body_path`, for the
/// journal; `None` for a body of no bytes that has no file (an answer whose page broke
/// off).
///
/// # Errors
/// The file cannot be read, or is not `len` bytes long.
pub(crate) fn read_small(body_path: &Path, len: u64) -> Result<Option<Vec<u8>>, Error> {
    let read = |e| Error::io("read response body file", body_path, e);
    let f = match fs::File::open(body_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let mut out = Vec::with_capacity(len as usize);
    f.take(INLINE_BODY_MAX + 1)
        .read_to_end(&mut out)
        .map_err(read)?;
    if out.len() as u64 != len {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes where the response kept {len}", out.len()),
        );
        return Err(read(e));
    }
    Ok(Some(out))
}

/// Makes a kept body durable on its own (fsync of the file and of its directory): for
/// a small body whose bytes could not go into the journal.
pub(crate) fn make_durable(body_path: &Path) -> Result<(), Error> {
    fs::File::open(body_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync response body file", body_path, e))?;
    match body_path.parent() {
        Some(dir) => super::sync_dir(dir),
        None => Ok(()),
    }
}

/// Recovery: makes every body file of `bodies` (the journal's bytes, by upload) hold
/// those bytes, rewriting (durably) one that a power cut lost, cut or left stale. A
/// file that cannot be rewritten is logged and left (the journal still holds its bytes
/// for the next open).
pub(crate) fn restore_small(store: &Path, bodies: impl IntoIterator<Item = (UploadId, Vec<u8>)>) {
    let mut rewritten = 0;
    for (id, bytes) in bodies {
        let path = super::body_path(store, id);
        let mut now = Vec::new();
        let same = fs::File::open(&path)
            .and_then(|f| f.take(bytes.len() as u64 + 1).read_to_end(&mut now))
            .is_ok_and(|_| now == bytes);
        if same {
            continue;
        }
        let written = BodyFile::create(&path).and_then(|mut part| {
            let io = |e| Error::io("restore response body file", &part.tmp, e);
            part.file.write_all(&bytes).map_err(io)?;
            part.file.sync_all().map_err(io)?;
            fs::rename(&part.tmp, &path).map_err(io)?;
            part.kept = true;
            Ok(())
        });
        match written {
            Ok(()) => {
                log::warn!(
                    "upload {id}: its response body was lost or cut (a power cut); \
                     restored its {} bytes from the journal",
                    bytes.len()
                );
                rewritten += 1;
            }
            Err(e) => {
                log::error!("upload {id}: could not restore its response body: {e}");
            }
        }
    }
    if rewritten > 0 {
        if let Err(e) = super::sync_dir(&store.join(super::BODIES)) {
            log::error!("{e}");
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
