//! The domain model: what an upload is (its request, body, sources, protocol and
//! session state, why it failed, the response kept for it), used by every module.
//!
//! These types are the crate's own and change freely. The journal persists them through
//! its own versioned records, converting at its boundary (`journal/convert.rs`): the
//! on-disk format never leaks into the wire, the scheduler or the public API.

use std::path::PathBuf;

pub use crate::progress::{CostPolicy, Priority, Status};

/// The identity of an upload inside one store. Never reused within a store.
pub type UploadId = u64;

/// The random key a client gives one submission: the store creates at most one upload
/// per key.
pub type SubmissionKey = [u8; 16];

/// A request as accepted: everything needed to send it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Target URL (for tus, the creation endpoint).
    pub url: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Request headers in order, already validated.
    pub headers: Vec<(String, String)>,
    /// What is sent.
    pub body: Body,
    /// Scheduling priority at creation.
    pub priority: Priority,
    /// Transfer group, if any.
    pub group: Option<String>,
    /// Whether the upload may run on a costed network.
    pub cost: CostPolicy,
    /// How the body reaches the server.
    pub protocol: Protocol,
    /// Re-sending this request is safe (decided once, at creation).
    pub idempotent: bool,
    /// The credentials provider asked before each request (its name: no secret).
    pub credentials: Option<String>,
    /// The registered client identity (certificate and key) its connections present,
    /// by name; `None`: the uploader's own, if it has one.
    pub client_identity: Option<String>,
    /// The key a [`crate::Client`] gave its submission, so that a submission sent twice
    /// (over the control socket, then through the inbox after the owner died mid-call)
    /// is created once; `None` for uploads the owner created itself.
    pub submission: Option<SubmissionKey>,
    /// The user (uid) of the client process that submitted it, as the kernel named it
    /// to the owner; `None` for uploads the owner created itself. A client of another
    /// user (a member of the client group) sees and controls only its own uploads.
    pub submitter: Option<u32>,
}

impl Request {
    /// The names of the credentials providers its requests need: the upload's own, and
    /// an S3 target's signer.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        let signer = match &self.protocol {
            Protocol::S3(t) => Some(t.credentials.as_str()),
            _ => None,
        };
        self.credentials.as_deref().into_iter().chain(signer)
    }
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One file, sent as the whole body.
    File(Source),
    /// A streamed multipart body.
    Multipart(Multipart),
}

/// A source file as seen when the upload was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Size in bytes at creation.
    pub size: u64,
    /// Modification time at creation, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// The file lives in the store (spooled from a reader) and goes with the upload.
    pub spooled: bool,
}

/// A multipart body: parts streamed in order between boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// The subtype (`form-data`, `mixed`, ...).
    pub subtype: String,
    /// The boundary string.
    pub boundary: String,
    /// The parts, in order.
    pub parts: Vec<Part>,
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Form field name.
    pub name: String,
    /// File name, for file parts.
    pub file_name: Option<String>,
    /// Content type of the part, if set.
    pub content_type: Option<String>,
    /// The part's content.
    pub content: PartContent,
}

/// The content of a multipart part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartContent {
    /// Inline text.
    Text(String),
    /// A file streamed from disk.
    File(Source),
}

/// The upload protocol: which module of `protocol/` drives the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// One plain HTTP request with the whole body.
    Plain,
    /// tus 1.0.0; `chunk_size` bytes per PATCH (`None`: the remainder).
    Tus {
        /// Maximum bytes per PATCH.
        chunk_size: Option<u64>,
    },
    /// An S3 object: one signed PUT, or a multipart upload.
    S3(Box<S3Target>),
    /// A Google Cloud Storage resumable upload (the request's URL is the initiation URL
    /// or the session URI, as [`GcsTarget::session_given`] says).
    Gcs(Box<GcsTarget>),
    /// An Azure block blob (the request's URL is the blob's, with its SAS).
    Azure(Box<AzureTarget>),
}

impl Protocol {
    /// Its name, as `list` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Plain => "plain",
            Protocol::Tus { .. } => "tus",
            Protocol::S3(_) => "s3",
            Protocol::Gcs(_) => "gcs",
            Protocol::Azure(_) => "azure",
        }
    }

    /// How an error names this protocol's requests (`tus PATCH https://...`); empty for a
    /// plain upload, whose one request is named by its method alone.
    pub fn label(&self) -> &'static str {
        match self {
            Protocol::Plain => "",
            Protocol::Tus { .. } => "tus",
            Protocol::S3(_) => "S3",
            Protocol::Gcs(_) => "GCS",
            Protocol::Azure(_) => "Azure",
        }
    }

    /// Whether an interrupted upload continues where the server stands.
    pub fn is_resumable(&self) -> bool {
        !matches!(self, Protocol::Plain)
    }
}

/// How an S3 endpoint names a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlStyle {
    /// `https://host/bucket/key`.
    Path,
    /// `https://bucket.host/key`.
    VirtualHost,
}

/// Where an S3 object goes and how it is sent. Holds no secret: the keys come from the
/// credentials provider named here, at each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    /// The service endpoint (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`).
    pub endpoint: String,
    /// Path-style or virtual-hosted.
    pub style: UrlStyle,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The signing region.
    pub region: String,
    /// Bytes per part, as fixed when the upload was created (a restart must cut the
    /// file the same way).
    pub part_size: u64,
    /// `x-amz-storage-class`, if set.
    pub storage_class: Option<String>,
    /// The object's `Content-Type`, if set.
    pub content_type: Option<String>,
    /// `x-amz-meta-*` metadata (names without the prefix, lower case).
    pub metadata: Vec<(String, String)>,
    /// The name of the credentials provider that signs its requests.
    pub credentials: String,
}

/// How a Google Cloud Storage resumable upload is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsTarget {
    /// The request's URL is a session URI the program obtained itself (no initiation
    /// URL is known: a lost session is a final error).
    pub session_given: bool,
    /// Bytes per chunk: a multiple of 256 KiB (the last chunk may be shorter).
    pub chunk_size: u64,
    /// The object's `Content-Type` (`X-Upload-Content-Type` of the initiation).
    pub content_type: Option<String>,
}

/// How an Azure block blob is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    /// Bytes per block (the last may be shorter), as fixed when the upload was created.
    pub block_size: u64,
    /// The upload's own prefix of its block IDs: blocks another upload left on the same
    /// blob are never mistaken for this one's.
    pub block_prefix: String,
    /// The blob's `Content-Type`, if set.
    pub content_type: Option<String>,
}

/// A protocol's server-side session, journaled before any body byte is sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// tus: the upload resource's URL (the creation's `Location`).
    Tus {
        /// Absolute URL of the upload on the server.
        url: String,
    },
    /// S3: a multipart upload and the parts the server confirmed.
    S3 {
        /// The server's `UploadId`.
        upload_id: String,
        /// Confirmed parts, in the order they were confirmed. The journal stores them
        /// as records of their own ([`StoredPart`]), one per part.
        parts: Vec<StoredPart>,
    },
    /// Google Cloud Storage: the resumable session's URI.
    Gcs {
        /// The session URI (the initiation's `Location`).
        uri: String,
    },
}

/// A part the server confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    /// Its number, from 1.
    pub number: u32,
    /// The `ETag` the server gave it.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// Connecting (TCP, TLS or proxy handshake).
    Connect,
    /// Sending: a write that made no progress.
    Send,
    /// Waiting for, or reading, the response.
    Response,
}

impl TimeoutPhase {
    /// `connect`, `send` or `response`.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Send => "send",
            TimeoutPhase::Response => "response",
        }
    }
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for TimeoutPhase {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A response as kept: status, headers, the URL that answered, the stored body's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers in order.
    pub headers: Vec<(String, String)>,
    /// The URL that answered (after redirects).
    pub url: String,
    /// Bytes of the body stored in the store.
    pub body_len: u64,
    /// The body was longer than the cap and was cut.
    pub body_truncated: bool,
}

/// Why an upload failed: a `Clone` copy of an [`crate::Error`], variant for variant, that
/// the journal persists and that comes back as the same error with the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// [`crate::Error::StoreLocked`].
    StoreLocked {
        /// The store directory.
        path: PathBuf,
    },
    /// [`crate::Error::JournalUnreadable`].
    JournalUnreadable {
        /// The journal file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
    /// [`crate::Error::JournalNotRecognized`].
    JournalNotRecognized {
        /// The journal file.
        path: PathBuf,
    },
    /// [`crate::Error::JournalVersion`].
    JournalVersion {
        /// The journal file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version supported.
        supported: u32,
    },
    /// [`crate::Error::JournalPoisoned`].
    JournalPoisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// [`crate::Error::RecordTooLarge`].
    RecordTooLarge {
        /// The encoded size.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// [`crate::Error::InvalidUrl`].
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::Error::InvalidHeader`].
    InvalidHeader {
        /// The header name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::Error::InvalidRequest`].
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// [`crate::Error::InvalidCertificate`].
    InvalidCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// [`crate::Error::SourceMissing`].
    SourceMissing {
        /// The source file.
        path: PathBuf,
    },
    /// [`crate::Error::SourceChanged`].
    SourceChanged {
        /// The source file.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// [`crate::Error::HttpStatus`].
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// [`crate::Error::Timeout`].
    Timeout {
        /// Which timeout.
        phase: TimeoutPhase,
    },
    /// [`crate::Error::Tls`].
    Tls {
        /// The TLS error.
        message: String,
    },
    /// [`crate::Error::Network`].
    Network {
        /// The network error.
        message: String,
    },
    /// [`crate::Error::NotResumable`].
    NotResumable {
        /// Why.
        reason: String,
    },
    /// [`crate::Error::Protocol`].
    Protocol {
        /// What went wrong.
        message: String,
    },
    /// [`crate::Error::Canceled`].
    Canceled,
    /// [`crate::Error::NotFound`].
    NotFound {
        /// The id.
        id: u64,
    },
    /// [`crate::Error::NoResponse`].
    NoResponse {
        /// The id.
        id: u64,
    },
    /// [`crate::Error::ShutDown`].
    ShutDown,
    /// [`crate::Error::PermissionDenied`].
    PermissionDenied {
        /// The store directory.
        path: PathBuf,
    },
    /// [`crate::Error::NoOwner`].
    NoOwner {
        /// The store directory.
        path: PathBuf,
    },
    /// [`crate::Error::Service`].
    Service {
        /// The HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message, or what the crate knows of the error.
        message: String,
    },
    /// [`crate::Error::Credentials`].
    Credentials {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        message: String,
        /// The provider said retrying cannot help.
        permanent: bool,
    },
    /// [`crate::Error::Io`].
    Io {
        /// What was being done.
        op: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error code, when the error came from the OS: it restores the same
        /// kind and text.
        os_code: Option<i32>,
        /// The error's text otherwise.
        message: String,
    },
}
