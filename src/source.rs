//! Source files: recorded (size, mtime) when an upload is created, checked before and
//! after every attempt, so a file that changed is never sent.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::model::Source;
use crate::Error;

/// Records the source at `path` as it is now.
///
/// # Errors
/// [`Error::SourceMissing`] if it does not exist, is not a regular file, or cannot be
/// opened for reading.
pub(crate) fn record(path: &Path, spooled: bool) -> Result<Source, Error> {
    let missing = || Error::SourceMissing {
        path: path.to_path_buf(),
    };
    let file = open_regular(path).map_err(|_| missing())?;
    let meta = file.metadata().map_err(|_| missing())?;
    if !meta.is_file() {
        return Err(missing());
    }
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Source {
        path,
        size: meta.len(),
        mtime_ns: mtime_ns(&meta),
        spooled,
    })
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Opens a recorded source and checks that it is unchanged.
///
/// # Errors
/// [`Error::SourceMissing`] or [`Error::SourceChanged`].
pub(crate) fn open_unchanged(s: &Source) -> Result<File, Error> {
    let path = s.path.clone();
    let file = open_regular(&path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => Error::SourceChanged {
            path: path.clone(),
            what: "it is no longer a regular file".into(),
        },
        _ => Error::SourceMissing { path: path.clone() },
    })?;
    check(s, &file)?;
    Ok(file)
}

/// Opens `path` for reading if it is a regular file (`InvalidInput` if it is not). Checked
/// before the open, because opening a FIFO blocks until a writer comes and a device may
/// never end, and again after it, in case the path was swapped in between.
fn open_regular(path: &Path) -> io::Result<File> {
    let not_regular = || io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
    if !fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Checks an open source against its record.
pub(crate) fn check(s: &Source, file: &File) -> Result<(), Error> {
    let path = s.path.clone();
    let meta = file
        .metadata()
        .map_err(|_| Error::SourceMissing { path: path.clone() })?;
    if meta.len() != s.size {
        return Err(Error::SourceChanged {
            path,
            what: format!("size {} bytes, was {}", meta.len(), s.size),
        });
    }
    if mtime_ns(&meta) != s.mtime_ns {
        return Err(Error::SourceChanged {
            path,
            what: "modification time changed".into(),
        });
    }
    Ok(())
}
