//! The journal's own error: what can go wrong with a store's lock and log. The crate's
//! [`crate::Error`] has a variant for each, converted at the journal's boundary
//! ([`super::Store`]).

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A failure of the store's lock or journal.
#[derive(Debug)]
pub enum JournalError {
    /// Another opener holds the store's lock.
    StoreLocked {
        /// The store directory.
        path: PathBuf,
    },
    /// The file does not start with the journal's magic bytes.
    JournalNotRecognized {
        /// The journal file.
        path: PathBuf,
    },
    /// A newer format version than this build reads.
    JournalVersion {
        /// The journal file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version supported.
        supported: u32,
    },
    /// A whole record this build cannot read, not marked skippable; the file is untouched.
    RecordUnreadable {
        /// The journal file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
    /// An earlier write or fsync failed; the handle refuses appends.
    JournalPoisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// A record over the size cap; nothing was written.
    RecordTooLarge {
        /// Its encoded size.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A file system operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl JournalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        JournalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<JournalError> for crate::Error {
    fn from(e: JournalError) -> crate::Error {
        use crate::Error as E;
        match e {
            JournalError::StoreLocked { path } => E::StoreLocked { path },
            JournalError::JournalNotRecognized { path } => E::JournalNotRecognized { path },
            JournalError::JournalVersion {
                path,
                found,
                supported,
            } => E::JournalVersion {
                path,
                found,
                supported,
            },
            JournalError::RecordUnreadable { path, offset } => {
                E::JournalUnreadable { path, offset }
            }
            JournalError::JournalPoisoned { path } => E::JournalPoisoned { path },
            JournalError::RecordTooLarge { len, max } => E::RecordTooLarge { len, max },
            JournalError::Io { op, path, source } => E::Io {
                op: Cow::Borrowed(op),
                path,
                source,
            },
        }
    }
}

impl fmt::Display for JournalError {
    /// Short texts: the crate's [`crate::Error`], which every caller outside the journal
    /// sees, words each with what to do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::StoreLocked { path } => write!(f, "store {} is locked", path.display()),
            JournalError::JournalNotRecognized { path } => {
                write!(f, "{} is not a journal", path.display())
            }
            JournalError::JournalVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {} has version {found} (supported: {supported})",
                path.display()
            ),
            JournalError::JournalPoisoned { path } => {
                write!(f, "journal {} failed earlier", path.display())
            }
            JournalError::RecordUnreadable { path, offset } => write!(
                f,
                "journal {} has an unreadable record at offset {offset}",
                path.display()
            ),
            JournalError::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes over the {max}-byte cap")
            }
            JournalError::Io { op, path, source } => {
                write!(f, "could not {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
