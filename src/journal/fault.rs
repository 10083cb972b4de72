//! Fault injection for the journal's writes and fsyncs, so tests can prove that a failed
//! write or fsync gets a typed error and loses nothing acknowledged before it. Not part
//! of the API: reachable through `#[doc(hidden)]` items only.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// A file operation the journal is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// Appending a record.
    Write,
    /// fsyncing appended records.
    Fsync,
    /// Writing or fsyncing a compacted journal.
    Compact,
}

/// Decides whether an operation fails. Called before the operation; an `Err` is
/// returned to the journal as if the operating system had failed it.
pub trait FaultHook: Send + Sync + fmt::Debug {
    /// `Ok(())` lets the operation run.
    fn before(&self, op: FileOp) -> io::Result<()>;
}

/// Fails the `n`th operation (counting from 1) of the matching kinds, and, with
/// `sticky`, every one after it.
#[derive(Debug)]
pub struct FailNth {
    /// Which operation fails.
    pub n: u64,
    /// Whether every later one fails too.
    pub sticky: bool,
    /// Which kinds count (`None`: all).
    pub only: Option<FileOp>,
    /// The error's raw OS code (for example `libc::EIO` = 5, `ENOSPC` = 28).
    pub errno: i32,
    seen: AtomicU64,
}

impl FailNth {
    /// A hook failing operation `n` (once, or from then on with `sticky`).
    pub fn new(n: u64, sticky: bool, only: Option<FileOp>, errno: i32) -> FailNth {
        FailNth {
            n,
            sticky,
            only,
            errno,
            seen: AtomicU64::new(0),
        }
    }

    /// Operations seen so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl FaultHook for FailNth {
    fn before(&self, op: FileOp) -> io::Result<()> {
        if self.only.is_some_and(|o| o != op) {
            return Ok(());
        }
        let k = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if k == self.n || (self.sticky && k > self.n) {
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        Ok(())
    }
}
