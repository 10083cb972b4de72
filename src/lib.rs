//! # background-transfer
//!
//! Queued, persisted, retried and resumable background uploads for ordinary synchronous
//! Rust programs — no async runtime. It is the Linux/Rust counterpart of WinRT's
//! `Windows.Networking.BackgroundTransfer` (`BackgroundUploader` / `UploadOperation`),
//! made for small devices on flaky links: hand it a file and a URL, and it arrives whole,
//! with the server's response kept for you, even if the process is killed mid-way, the
//! power goes or the network disappears for an hour.
//!
//! ## Quick start
//!
//! ```no_run
//! use background_transfer::{Priority, UploadRequest, Uploader};
//!
//! let uploader = Uploader::builder()
//!     .store_dir("/var/lib/myapp/uploads") // journal + response bodies live here
//!     .max_concurrent(4)
//!     .open()?; // takes the store's lock and replays its journal
//!
//! // After a restart everything that was accepted is there again, and continues.
//! for op in uploader.uploads() {
//!     println!("{} {}", op.id(), op.progress().status);
//! }
//!
//! let op = uploader.create_upload(
//!     UploadRequest::put("https://example.com/u/a.bin", "/data/a.bin")
//!         .header("X-Device", "sensor-7")?
//!         .priority(Priority::High)
//!         .group("photos"),
//! )?; // durable on disk when this returns
//! let info = op.wait()?; // or op.events(): the upload's stream of events
//! println!("HTTP {}", info.status);
//! let mut body = String::new();
//! std::io::Read::read_to_string(&mut op.response_body()?, &mut body)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What you get
//!
//! - **Requests**: PUT, POST (the default, as in WinRT) or any method, from a file
//!   ([`UploadRequest::put`], [`UploadRequest::post`], [`UploadRequest::new`]), a
//!   streamed `multipart/form-data` body with an exact Content-Length
//!   ([`UploadRequest::multipart`]), or any reader, spooled into the store first so it
//!   survives restarts ([`UploadRequest::from_reader`]). Bodies stream from disk through
//!   one fixed buffer per transfer; memory does not grow with file size.
//! - **Resumable uploads** with tus 1.0 ([`UploadRequest::tus`]): an interrupted upload
//!   continues at the server's offset instead of byte 0.
//! - **S3** and the services that speak its API, with the `s3` cargo feature
//!   (`UploadRequest::s3` and `S3Object`): multipart uploads that resume from the parts
//!   the server has, signed with keys from a [`CredentialProvider`] that are never
//!   persisted (see [`credentials`]).
//! - **Google Cloud Storage** resumable uploads (also YouTube's and Drive's), with the
//!   `gcs` feature (`UploadRequest::gcs` and `GcsUpload`): the session URI is journaled
//!   before the first chunk, and an interrupted upload continues where the server
//!   says it stopped; an expired session is started again from the initiation URL.
//! - **Azure block blobs** through a SAS URL, with the `azure` feature
//!   (`UploadRequest::azure` and `AzureBlob`): only the blocks the server lacks are
//!   sent again, and a refused SAS is replaced through the upload's URL provider.
//! - **Credentials that expire** ([`UploadRequest::credentials`]): a named provider
//!   gives headers (a bearer token) or a presigned URL before each attempt, and again
//!   after a 401/403 without spending a retry; nothing it gives is persisted.
//! - **Device certificates** ([`UploaderBuilder::client_certificate`]): mutual TLS
//!   with a PEM chain and key, re-read when the files change; or per upload, by the
//!   name of a registered identity ([`UploaderBuilder::client_identity`],
//!   [`UploadRequest::client_identity`]).
//! - **Credentials missing after a restart** wait: an upload whose provider or client
//!   identity is not registered is [`Status::PausedNoCredentials`], sends nothing, and
//!   goes on once it is registered.
//! - **Handles** ([`Upload`]): progress, status, pause, resume, cancel, remove, wait,
//!   events, the response's status, headers and final URL, and its body.
//! - **Scheduling**: a concurrency limit, priorities, [`Upload::make_current`], groups
//!   that run in parallel or one at a time ([`Uploader::set_group_behavior`]), a cost
//!   policy for metered links ([`Uploader::set_network_cost`]), and one bandwidth limit
//!   for all transfers ([`UploaderBuilder::max_bandwidth`]).
//!
//! ## Timeouts and retries (the defaults, and why)
//!
//! | what | default | why |
//! |---|---|---|
//! | connect | 5 min | WinRT's value: a cellular modem can take that long to attach |
//! | response after the body | 2 min | WinRT's value |
//! | stalled send (one socket write) | 60 s | a link that takes nothing for a minute is dead |
//! | `TCP_USER_TIMEOUT`, keepalive | 30 s, 15 s | notice a dead link in seconds, not after the kernel's ~15 min |
//! | retries | 3 (4 attempts) | WinRT's value |
//! | backoff | 2 s doubling to 5 min, 50–100 % jitter | spread retries of many devices |
//! | `Retry-After` (429, 503) | honoured up to 15 min | the server knows best, within reason |
//!
//! Transient failures — a reset, a timeout, 408, 429, 500, 502, 503, 504 — are retried.
//! Any other 4xx is final and its response is kept. A host that cannot be reached
//! (connection refused, unreachable, connect timeout, name not found) is not a failure
//! at all: the upload waits as [`Status::PausedNoNetwork`] without spending a retry, and
//! a small prober thread tries a TCP connect with backoff (2 s doubling to 60 s) until
//! the host answers; then it continues. A host that accepts the connection and then
//! fails (a 5xx, a reset) is online and spends retries. "Offline" therefore means "this
//! host's port does not take a TCP connection". On Linux the crate also listens to the
//! kernel's link, address and route changes (rtnetlink; the default `netlink` feature,
//! see [`UploaderBuilder::watch_network`]): a change that can bring the network back
//! probes at once, and one that takes it away parks the running transfers whose host no
//! longer takes a connection, at once. A program that knows more (NetworkManager, its
//! modem) calls [`Uploader::network_changed`] to probe at once.
//! When the probe and the upload disagree — the host is unreachable again right after
//! the prober saw it answer (a proxy, a redirect to another host, configured probe
//! targets, a flapping link) — that attempt does count against the retry budget, so the
//! two cannot bounce off each other forever.
//!
//! Redirects are handled here, not by the HTTP client: 307 and 308 re-send the body
//! (credentials are dropped when the origin changes); 301, 302 and 303 would turn the
//! upload into a GET that looks like success, so they end it in [`Error::Protocol`].
//!
//! ## Restarts, and what "accepted" means
//!
//! [`Uploader::create_upload`] returns only once the upload is fsynced in the store's
//! journal: from then on it survives a crash, a SIGKILL or a power cut. Opening the store
//! again lists every upload with its last state, and unfinished ones continue (unless
//! [`UploaderBuilder::start_paused`]). An attempt that was on the wire when the process
//! died starts again: a tus upload from the server's offset, an S3 multipart upload
//! from the parts the server has, a GCS upload from the server's `Range`, an Azure
//! block blob from the blocks the server holds, a PUT from byte 0
//! (`has_restarted` is set). A POST is not idempotent: one interrupted mid-request may
//! have reached the server, so it ends in [`Error::NotResumable`] unless the request
//! opted in ([`UploadRequest::idempotent`], or an `Idempotency-Key` header). The same
//! rule applies when the whole body was sent and no response came. The source file's
//! size and modification time are recorded at creation; a file that changed is never
//! sent ([`Error::SourceChanged`]).
//!
//! Completed, canceled and failed uploads stay in the store, with their responses, until
//! [`Upload::remove`] or until the retention window passes (7 days by default). A
//! response body is kept up to 1 MiB by default; past the cap the rest is not read, the
//! upload still completes, and [`ResponseInfo::body_truncated`] says so.
//!
//! ## The store and its journal
//!
//! A store is a directory (mode 0700, files 0600) locked with `fs2` for as long as it is
//! open; a second opener — another process or the same one — gets
//! [`Error::StoreLocked`]. Other processes reach the store's owner through a
//! [`Client`] instead (see "One store, many programs" below). Its `journal` is an append-only log: a header (magic bytes and
//! format version), then records framed as `len (u32 LE) | crc32 | postcard payload`,
//! each at most 1 MiB. Response bodies over 4 KiB live in `bodies/` (smaller ones in the
//! journal), spooled sources in `spool/`.
//! Files there that a whole journal does not account for are crash leftovers and are
//! deleted at open; after journal damage they are moved to `lost/` instead, and never
//! touched again.
//!
//! Opening is recovery, and it is point-in-time: records are replayed up to the first
//! one that does not check out, and the file is cut there ([`Uploader::recovery`] says
//! what was found).
//! - A partial record at the end, or a zeroed tail, is what a crash during an append
//!   leaves; it is cut off with a warning.
//! - Damage a crash does not explain (a bad checksum with data after it, an oversize
//!   length) is never spliced over: the whole file is copied to `journal.corrupt-N`, the
//!   records before the damage are kept, and the open reports it (and logs an error).
//!   Until the files of the uploads the journal no longer lists are in `lost/`, a
//!   `quarantine` marker keeps every later open from deleting them, and their ids are
//!   never handed out again.
//! - A file with foreign magic bytes or a newer version is a typed error
//!   ([`Error::JournalNotRecognized`], [`Error::JournalVersion`]) and is left untouched.
//! - A whole record (its checksum is right) that this build cannot decode, as a newer
//!   build writes before a firmware rollback, is never a reason to cut the journal:
//!   marked skippable, it is skipped and kept (and the journal is not compacted over it);
//!   not marked, the open fails with [`Error::JournalUnreadable`] and the file is left
//!   untouched. The rule for adding a record kind is in `journal::format`.
//!
//! Durability: a record the program can observe (a create, a status change, a response)
//! is fsynced before the call that wrote it returns. Progress checkpoints are written
//! every 16 MiB per transfer and fsynced within a second of being written (also while
//! transfers keep the engine busy), so an upload costs at most 64 journal fsyncs per GiB.
//! Spooled sources, response bodies and the store's directories are fsynced (with the
//! directory entries that name them) before a journal record refers to them, so a power
//! cut keeps them on ext4, XFS and btrfs alike (`tests/powercut/`). A response body of
//! at most 4 KiB ([`journal::INLINE_BODY_MAX`], most answers) gets no file at all: the
//! journal keeps its bytes in the response's own record, durable in the fsync that makes
//! the response durable, and [`Upload::response_body`] reads them from there (a
//! [`ResponseBody`] reads like a file either way). That is two fsyncs and a file
//! creation fewer per upload, and a compaction carries the bytes over. After a failed write or fsync the journal refuses
//! every later append ([`Error::JournalPoisoned`]): after a failed fsync Linux may drop
//! the dirty pages, so the only honest way on is to reopen and rescan. The operation
//! that hit the failure gets the I/O error, and the record it tried to write is cut off
//! again, so a create that failed does not turn up after a reopen. The uploader then
//! stops its transfers and starts no others, and every unfinished upload ends in
//! [`Status::Error`] with that reason — in memory only: reopening the store continues
//! them from their last recorded state. Compaction (when
//! dead records dominate) writes the live state to a temp file, fsyncs it, renames it
//! over the journal and fsyncs the directory; a crash at any step loses nothing.
//!
//! ## Threads
//!
//! One scheduler thread owns the state and is the only journal writer; one named worker
//! thread per running transfer (`bgxfer-upload-<id>`, 256 KiB stack by default; a
//! thread whose transfer ended waits up to 10 s to run the next one, renamed, rather
//! than a new thread being started); one prober thread. Handles talk to the scheduler over crossbeam channels and read
//! snapshots without touching the network. [`Uploader::shutdown`] (and `Drop`) stops
//! every transfer within one buffer, persists its progress and joins every thread.
//!
//! Inside, data flows one way: a handle sends a command to the scheduler; the
//! scheduler's state machine (one pure function from an upload's state and an event to
//! its next state and effects, table-tested) decides, and the scheduler starts a worker;
//! the worker drives the upload's protocol; the protocol talks to the wire (`http`),
//! which returns typed wire errors and knows no policy. Events come back as messages, each
//! type owned by its producer (workers, the prober). The journal is a leaf: it persists the
//! domain model through versioned records of its own, converted at its boundary.
//!
//! ## One store, many programs
//!
//! The process whose [`Uploader`] holds a store (a service such as `bgupload run`) is its
//! owner; other processes of the same machine submit and control uploads through a
//! [`Client`], which offers what the owner's handles do: create (every body and
//! protocol), list, progress, pause, resume, cancel, remove, the response and its body,
//! follow and wait. The owner serves a unix socket in the store (`control.sock`: one
//! accept thread, a thread per connection, at most 32 requests and 256 follows at once,
//! every request whole within 2 s and at most 1 MiB) and imports the store's `inbox/`,
//! where a client leaves a submission durably when no owner answers. A submission is
//! durable when the client's call returns `Ok` — fsynced into the owner's journal, or
//! into the inbox — and carries a random key the journal keeps, so that one that took
//! both ways (the owner died before it answered) is created once.
//!
//! Only processes of the store's user, and of a group the owner names
//! ([`UploaderBuilder::client_group`]), are admitted: directory permissions first (0700,
//! or 0710 with an inbox of 2730 for the group), then the socket's peer credentials
//! (`SO_PEERCRED`). Anyone else gets [`Error::PermissionDenied`] and changes nothing. A
//! group member hands over a copy of its file (spooled into the inbox), so the owner
//! never reads a file on its behalf that it could not read itself; it sees and controls
//! only its own uploads, and may not use the owner's credentials providers or client
//! identities.
//!
//! ## Upload protocols
//!
//! Each protocol (plain HTTP; tus 1.0; S3; Google Cloud Storage; Azure) is one module behind one interface that a worker
//! drives through an attempt: *start* (create the server-side session, journaled before
//! any body byte reaches it), *where* (ask the server what it has), *send* (the ranges it
//! lacks), *finish* (its answer is kept as the response), and *abort* (end the session on
//! the server after a cancel or removal). The protocol classifies every answer: done,
//! restart (the server lost the session: `has_restarted`), transient (a retry is spent),
//! unreachable or connection lost (no retry is spent), or final. Adding a protocol means a
//! module, a registration and a journal record kind for its session.
//!
//! ## HTTP and TLS
//!
//! HTTP/1.1 by `ureq` 3, TLS by rustls with the *ring* provider (no aws-lc: the crate
//! cross-compiles for ARM Linux with only a C cross compiler). Certificates are always
//! verified, against the Mozilla roots or the roots you configure
//! ([`UploaderBuilder::add_root_certificate_pem`]); there is no switch to turn
//! verification off. No proxy is used unless configured ([`UploaderBuilder::proxy`]):
//! the environment is deliberately not read.
//!
//! ## Errors
//!
//! One enum, [`Error`], with a variant per cause; each message says what happened and
//! what to do. Bad input is rejected at [`Uploader::create_upload`] with a typed error
//! and nothing persisted; uploads already in the store are never affected. Nothing a
//! program passes, a server answers or a disk holds can make the crate panic.
//!
//! ## Logging
//!
//! The crate logs with the `log` macros: `error` for damage found in a store or a failed
//! journal write, `warn` for recovered crash artifacts, failed attempts and retries,
//! `info` for opening a store and accepted, completed and removed uploads, `debug` for
//! attempts, probes and compactions. URLs are logged without userinfo or query, and the
//! values of `Authorization`, `Proxy-Authorization`, `Cookie` and similar headers are
//! never logged (nor shown by `Debug`, [`ResponseInfo`]'s and the configured proxy's
//! included).
//!
//! One exception is outside the crate's reach: the HTTP client logs each request's whole
//! URL, query included, at `debug` (target `ureq`: a presigned URL's signature, an Azure
//! SAS), and at `trace` hex-dumps every byte sent and received, headers and cookies
//! included (target `ureq_proto`). A library cannot filter another crate's log lines, so
//! keep those two targets at `info` or below wherever credentials matter (with
//! `env_logger`: `RUST_LOG=trace,ureq=info,ureq_proto=info`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg(unix)]

mod admission;
#[cfg(feature = "azure")]
pub mod azure_blob;
mod bandwidth;
mod base64;
mod command;
mod config;
pub mod credentials;
mod error;
mod events;
mod fuzz_open;
#[cfg(feature = "gcs")]
pub mod gcs_upload;
mod http;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod model;
mod multipart;
#[cfg(all(target_os = "linux", feature = "netlink"))]
mod netwatch;
mod prober;
mod progress;
mod redact;
mod request;
mod request_info;
mod response_body;
mod route;
#[cfg(feature = "s3")]
pub mod s3_object;
mod scheduler;
mod service;
mod shared;
mod source;
mod store;
mod upload;
mod uploader;
mod worker;

#[cfg(feature = "azure")]
pub use azure_blob::AzureBlob;
pub use config::{Config, UploaderBuilder};
pub use credentials::{CredentialProvider, CredentialRequest, Credentials, ProviderError, S3Keys};
#[cfg(feature = "gcs")]
pub use gcs_upload::GcsUpload;
#[cfg(feature = "s3")]
pub use s3_object::S3Object;
/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use error::Error;
pub use events::{Events, RecvError, RecvTimeoutError, TryRecvError};
pub use journal::Recovery;
pub use model::TimeoutPhase;
pub use progress::{CostPolicy, Event, Priority, Progress, ResponseInfo, Status};
pub use request::UploadRequest;
pub use request_info::RequestInfo;
pub use response_body::ResponseBody;
pub use service::{Client, Follow, RemoteUpload, Submission, Submitted};
pub use upload::Upload;
pub use uploader::{GroupBehavior, Uploader};

/// Fuzz harnesses, shared by `fuzz/` targets and `cargo test`. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::fuzz_open::open_store;
    pub use crate::journal::fuzz::{decode_record, replay_file};
}

/// Body bytes this process has sent with `sendfile(2)` ([`UploaderBuilder::sendfile`]),
/// by every uploader: for tests and the benchmark. Not part of the API.
#[doc(hidden)]
pub fn sendfile_bytes() -> u64 {
    http::sendfile_bytes()
}
