//! # background-transfer
//!
//! Queued, persisted, retried and resumable background uploads for synchronous Rust
//! programs: the Linux/Rust counterpart of WinRT's `BackgroundUploader`.
//!
//! This release contains the foundation: the crash-safe journal every upload is written
//! to before the crate says "accepted".
//!
//! ## The store and its journal
//!
//! A store is a directory (mode 0700, files 0600) locked with `fs2` for as long as it is
//! open; a second opener gets [`Error::StoreLocked`]. Its `journal` is an append-only
//! log: a header (magic bytes and format version), then records framed as
//! `len (u32 LE) | crc32 | postcard payload`, each at most 1 MiB.
//!
//! Opening is recovery, and it is point-in-time: records are replayed up to the first
//! one that does not check out, and the file is cut there.
//! - A partial record at the end, or a zeroed tail, is what a crash during an append
//!   leaves; it is cut off with a warning.
//! - Damage a crash does not explain (a bad checksum with data after it, an oversize
//!   length, a record that does not decode) is never spliced over: the whole file is
//!   copied to `journal.corrupt-N`, the records before the damage are kept, and the open
//!   reports it (and logs an error).
//! - A file with foreign magic bytes or a newer version is a typed error
//!   ([`Error::JournalNotRecognized`], [`Error::JournalVersion`]) and is left untouched.
//!
//! Durability: a record the program can observe is fsynced before the call that wrote
//! it returns. Progress checkpoints are batched: at most one fsync per second for them.
//! After a failed write or fsync the journal refuses every later append
//! ([`Error::JournalPoisoned`]): after a failed fsync Linux may drop the dirty pages, so
//! the only honest way on is to reopen and rescan. Compaction writes the live state to a
//! temp file, fsyncs it, renames it over the journal and fsyncs the directory.
//!
//! ## Logging
//! The crate logs with the `log` macros: `error` for damage found in a store, `warn` for
//! recovered crash artifacts, `info` for opening a store, `debug` for compactions.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg(unix)]

mod bandwidth;
mod config;
mod error;
mod http;
#[doc(hidden)]
pub mod journal;
mod multipart;
mod prober;
mod progress;
mod redact;
mod request;
mod scheduler;
mod shared;
mod source;
mod store_files;
mod tus;
mod upload;
mod uploader;
mod worker;

pub use config::{Config, UploaderBuilder};
pub use error::Error;
pub use progress::{CostPolicy, Event, Priority, Progress, ResponseInfo, Status};
pub use request::UploadRequest;
pub use upload::{RequestInfo, Upload};
pub use uploader::{GroupBehavior, Uploader};

/// Fuzz harnesses, shared by `fuzz/` targets and `cargo test`. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::journal::fuzz::{decode_record, replay_file};
}
