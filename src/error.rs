//! The crate's one error type: every failure names the thing and the fix.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `background-transfer`.
///
/// Each variant says what happened and, in its `Display` text, what to do about it.
/// The enum is `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another `Uploader` (in this process or another one) holds the store's lock.
    ///
    /// Only one opener may use a store directory at a time. Close the other one, or use
    /// a different store directory. A process that was killed releases the lock.
    StoreLocked {
        /// The store directory.
        path: PathBuf,
    },
    /// The journal file does not start with our magic bytes: it is not a journal of
    /// this crate, or its first bytes were destroyed. The file is left untouched.
    JournalNotRecognized {
        /// The journal file.
        path: PathBuf,
    },
    /// The journal was written by a newer format version than this build reads.
    /// The file is left untouched; open it with a newer build of the crate.
    JournalVersion {
        /// The journal file.
        path: PathBuf,
        /// The version found in the file header.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// A write or fsync of the journal failed earlier, so the journal handle refuses
    /// further appends: after a failed fsync, Linux may have dropped the dirty pages and
    /// nothing written since the last good fsync can be trusted. Reopen the store.
    JournalPoisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// A record is larger than the journal's hard cap (for example a request with
    /// enormous headers). Nothing was written.
    RecordTooLarge {
        /// The encoded size of the record.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// An I/O operation on a file of the store or on a source file failed.
    Io {
        /// What we were doing, for example "fsync journal".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StoreLocked { path } => write!(
                f,
                "store {} is locked by another Uploader; close it or use another store directory",
                path.display()
            ),
            Error::JournalNotRecognized { path } => write!(
                f,
                "{} is not a background-transfer journal (bad magic bytes); it was left untouched",
                path.display()
            ),
            Error::JournalVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {} has format version {found}, this build reads up to {supported}; \
                 it was left untouched, open it with a newer build",
                path.display()
            ),
            Error::JournalPoisoned { path } => write!(
                f,
                "an earlier write or fsync of journal {} failed; reopen the store",
                path.display()
            ),
            Error::RecordTooLarge { len, max } => write!(
                f,
                "journal record of {len} bytes exceeds the {max}-byte cap; make the request smaller"
            ),
            Error::Io { op, path, source } => {
                write!(f, "could not {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Results travel through channels and every call returns one: keep it compact.
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn messages_name_the_path() {
        let e = Error::StoreLocked {
            path: "/var/lib/x".into(),
        };
        assert!(e.to_string().contains("/var/lib/x"));
    }
}
