//! The journal's record types: what an upload's life looks like on disk.
//!
//! postcard is not self-describing, so these types are the on-disk format. The rules:
//! never reorder, remove or change a variant or field; a new field means a new variant
//! (for example `CreatedV2`) appended at the end of the enum, and the fold in
//! [`super::replay`] learns it. Variant order is the discriminant on disk.

use serde::{Deserialize, Serialize};

/// The identity of an upload inside one store. Never reused within a store.
pub type UploadId = u64;

/// One record of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A new upload was accepted. Written (and fsynced) before `create_upload` returns.
    Created(CreatedV1),
    /// The upload's user-visible status changed.
    State(StateV1),
    /// A progress checkpoint. Informational for plain HTTP (which restarts from 0), a hint
    /// for resumable protocols (the server's offset is authoritative).
    Progress(ProgressV1),
    /// The URL where a resumable upload lives on the server (tus `Location`). Journaled
    /// as soon as the server gives it, before the first body byte.
    ResumeUrl(ResumeUrlV1),
    /// The server's final response (status, headers, URL, stored body size).
    Response(ResponseV1),
    /// The upload and its files were removed from the store.
    Removed(UploadId),
    /// The next attempt of this upload starts again from byte 0.
    Restarted(UploadId),
    /// Settings of the upload that the program changed after creation.
    Changed(ChangedV1),
    /// An S3 multipart upload's `UploadId`, journaled before its first part is sent.
    S3Upload(S3UploadV1),
    /// A part of an S3 multipart upload that the server confirmed.
    S3Part(S3PartV1),
    /// A new upload whose requests take credentials from a provider: `Created` plus
    /// the provider's name (never a credential). Uploads without one are still written
    /// as `Created`, which older builds read.
    CreatedV2(CreatedV2),
    /// A Google Cloud Storage resumable session, journaled before its first chunk.
    GcsSession(GcsSessionV1),
    /// A new upload that presents a registered client identity by name: `CreatedV2`
    /// plus that name (never the certificate or key). Uploads without one are written as
    /// before.
    CreatedV3(CreatedV3),
    /// A new upload a client submitted: `CreatedV3` plus the key of its submission, so
    /// that a submission that reaches the owner twice is created once. Uploads the
    /// owner created itself are written as before.
    CreatedV4(CreatedV4),
    /// The server's final response with its body (at most 4 KiB), in one record so that
    /// the two reach the disk together or not at all. The body has no file in `bodies/`:
    /// this record is where it is kept and read from, and compaction carries it over.
    /// (Earlier builds also wrote the file, and rewrite a missing one from this record:
    /// one rolled back to reads the store whole.) Not skippable: an older build that ignored it would
    /// miss the response.
    ResponseWithBody(ResponseWithBodyV1),
}

/// A response and its small body, kept in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseWithBodyV1 {
    /// Everything `Response` records.
    pub response: ResponseV1,
    /// The body as stored (`response.body_len` bytes).
    pub body: Vec<u8>,
}

/// An upload accepted from a client, with the key of its submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedV4 {
    /// Everything `CreatedV3` records.
    pub created: CreatedV3,
    /// The client's key for this submission (random, not a secret).
    pub submission: [u8; 16],
    /// The uid of the client's process, as the kernel named it to the owner.
    pub submitter: Option<u32>,
}

/// An upload accepted by the store, with the client identity it presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedV3 {
    /// Everything `CreatedV2` records.
    pub created: CreatedV2,
    /// The name of the registered client identity its connections present.
    pub client_identity: Option<String>,
}

/// An upload accepted by the store, with the credentials provider it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedV2 {
    /// Everything `Created` records.
    pub created: CreatedV1,
    /// The name of the credentials provider asked before each request.
    pub credentials: Option<String>,
}

impl Record {
    /// The upload this record is about.
    pub fn id(&self) -> UploadId {
        match self {
            Record::Created(c) => c.id,
            Record::State(s) => s.id,
            Record::Progress(p) => p.id,
            Record::ResumeUrl(r) => r.id,
            Record::Response(r) => r.id,
            Record::Removed(id) | Record::Restarted(id) => *id,
            Record::Changed(c) => c.id,
            Record::S3Upload(u) => u.id,
            Record::S3Part(p) => p.id,
            Record::CreatedV2(c) => c.created.id,
            Record::GcsSession(g) => g.id,
            Record::CreatedV3(c) => c.created.created.id,
            Record::CreatedV4(c) => c.created.created.created.id,
            Record::ResponseWithBody(r) => r.response.id,
        }
    }
}

/// An upload accepted by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedV1 {
    /// Upload id.
    pub id: UploadId,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub created_ms: u64,
    /// The full request.
    pub request: RequestV1,
}

/// A request as persisted: everything needed to send it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestV1 {
    /// Target URL (for tus, the creation endpoint).
    pub url: String,
    /// HTTP method, upper case (`POST`, `PUT`, ...).
    pub method: String,
    /// Request headers in order, already validated.
    pub headers: Vec<(String, String)>,
    /// What is sent.
    pub body: BodyV1,
    /// Scheduling priority.
    pub priority: PriorityV1,
    /// Transfer group, if any.
    pub group: Option<String>,
    /// Whether the upload may run on a costed (metered) network.
    pub cost: CostPolicyV1,
    /// Wire protocol.
    pub protocol: ProtocolV1,
    /// The program declared that re-sending this request is safe (for example it carries
    /// an `Idempotency-Key`), so an interrupted POST may be restarted.
    pub idempotent: bool,
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyV1 {
    /// One file, sent as the whole body.
    File(SourceV1),
    /// A streamed multipart body.
    Multipart(MultipartV1),
}

/// A source file as seen when the upload was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceV1 {
    /// The path, as raw OS bytes (Unix paths need not be UTF-8).
    pub path: Vec<u8>,
    /// Size in bytes at creation.
    pub size: u64,
    /// Modification time at creation, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// The file lives in the store (spooled from a reader) and is deleted with the upload.
    pub spooled: bool,
}

/// A multipart body: parts are streamed in order between boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartV1 {
    /// The subtype (`form-data`, `mixed`, ...).
    pub subtype: String,
    /// The boundary string.
    pub boundary: String,
    /// The parts, in order.
    pub parts: Vec<PartV1>,
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartV1 {
    /// Form field name.
    pub name: String,
    /// File name for file parts.
    pub file_name: Option<String>,
    /// Content type of the part, if set.
    pub content_type: Option<String>,
    /// The part's content.
    pub content: PartContentV1,
}

/// The content of a multipart part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartContentV1 {
    /// Inline text.
    Text(String),
    /// A file streamed from disk.
    File(SourceV1),
}

/// Scheduling priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PriorityV1 {
    /// Runs after `Default`.
    Low,
    /// The default.
    Default,
    /// Runs before `Default`.
    High,
}

/// Whether an upload may use a costed network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CostPolicyV1 {
    /// Run on any network.
    Always,
    /// Pause while the program says the network is costed.
    UnrestrictedOnly,
}

/// How the body reaches the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolV1 {
    /// One plain HTTP request with the whole body.
    Plain,
    /// tus 1.0.0 resumable upload; `chunk_size` bytes per PATCH (`None`: the remainder).
    Tus {
        /// Maximum bytes per PATCH request.
        chunk_size: Option<u64>,
    },
    /// An S3 object (boxed: the other variants are small; postcard encodes a box as
    /// its content).
    S3(Box<S3TargetV1>),
    /// A Google Cloud Storage resumable upload.
    Gcs(Box<GcsTargetV1>),
    /// An Azure block blob.
    Azure(Box<AzureTargetV1>),
}

/// How a Google Cloud Storage resumable upload is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcsTargetV1 {
    /// The request's URL is the session URI (not an initiation URL).
    pub session_given: bool,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// The object's `Content-Type`.
    pub content_type: Option<String>,
}

/// How an Azure block blob is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureTargetV1 {
    /// Bytes per block.
    pub block_size: u64,
    /// The upload's prefix of its block IDs.
    pub block_prefix: String,
    /// The blob's `Content-Type`.
    pub content_type: Option<String>,
}

/// An S3 object's destination and options (no secret: the credentials provider's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3TargetV1 {
    /// The service endpoint.
    pub endpoint: String,
    /// Virtual-hosted (`bucket.host`) rather than path-style addressing.
    pub virtual_host: bool,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// The signing region.
    pub region: String,
    /// Bytes per part.
    pub part_size: u64,
    /// `x-amz-storage-class`.
    pub storage_class: Option<String>,
    /// The object's `Content-Type`.
    pub content_type: Option<String>,
    /// `x-amz-meta-*` metadata.
    pub metadata: Vec<(String, String)>,
    /// The credentials provider's name.
    pub credentials: String,
}

/// A status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateV1 {
    /// Upload id.
    pub id: UploadId,
    /// The new status.
    pub status: StatusV1,
    /// Attempts made so far that counted against the retry budget.
    pub attempts: u32,
    /// For `Error`: why.
    pub error: Option<FailureV1>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The status of an upload, as persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusV1 {
    /// Waiting for its turn.
    Queued,
    /// On the wire (after a restart this means "was running": it runs again).
    Running,
    /// Paused by the program.
    PausedByApplication,
    /// Waiting for the network.
    PausedNoNetwork,
    /// Waiting for an unmetered network.
    PausedCostedNetwork,
    /// Waiting before the next attempt.
    WaitingToRetry,
    /// Done; the response is kept.
    Completed,
    /// Canceled by the program.
    Canceled,
    /// Failed for good; see the error.
    Error,
}

impl StatusV1 {
    /// Whether the upload has ended (completed, canceled or failed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StatusV1::Completed | StatusV1::Canceled | StatusV1::Error
        )
    }
}

/// Why an upload failed, as persisted. Mirrors the failure variants of `crate::Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureV1 {
    /// The server answered with a final (or, after the retries, transient) error status.
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// The source file was missing when the upload ran.
    SourceMissing {
        /// The path, raw OS bytes.
        path: Vec<u8>,
    },
    /// The source file changed after the upload was created.
    SourceChanged {
        /// The path, raw OS bytes.
        path: Vec<u8>,
        /// What changed.
        what: String,
    },
    /// A timeout fired.
    Timeout {
        /// The phase: `connect`, `send`, `response`.
        phase: String,
    },
    /// TLS failed (certificate, handshake).
    Tls {
        /// The TLS error.
        message: String,
    },
    /// The network failed (refused, reset, unreachable) and the retries ran out.
    Network {
        /// The network error.
        message: String,
    },
    /// The upload cannot safely be continued or sent again.
    NotResumable {
        /// Why.
        message: String,
    },
    /// The server broke the protocol (a redirect we refuse, a malformed tus answer, ...).
    Protocol {
        /// What went wrong.
        message: String,
    },
    /// A local I/O failure, as older builds wrote it: only its text survives.
    Io {
        /// What went wrong.
        message: String,
    },
    /// A local I/O failure with what was being done, the file and the OS error code.
    IoDetailed {
        /// What was being done ("fsync journal").
        op: String,
        /// The file or directory, raw OS bytes.
        path: Vec<u8>,
        /// The OS error code, if the error came from the OS.
        os_code: Option<i32>,
        /// The error's text.
        message: String,
    },
    /// The journal could not be written (see `Error::JournalPoisoned`).
    JournalPoisoned {
        /// The journal file, raw OS bytes.
        path: Vec<u8>,
    },
    /// A record over the journal's size cap.
    RecordTooLarge {
        /// Its encoded size.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// A URL that cannot be used.
    InvalidUrl {
        /// The redacted URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A header that cannot be sent.
    InvalidHeader {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A request that cannot be sent as built.
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// A certificate that does not parse.
    InvalidCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// A storage service's own error.
    Service {
        /// The HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// A credentials provider failed.
    Credentials {
        /// The provider's name.
        provider: String,
        /// What went wrong.
        message: String,
        /// Retrying cannot help.
        permanent: bool,
    },
    /// Any other error of the crate, by its variant's name and fields.
    Other {
        /// The variant (`StoreLocked`, `Canceled`, `ShutDown`, ...).
        variant: String,
        /// A path, raw OS bytes (empty if none).
        path: Vec<u8>,
        /// Numbers the variant carries (ids, versions), in order.
        numbers: Vec<u64>,
    },
}

/// A progress checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressV1 {
    /// Upload id.
    pub id: UploadId,
    /// Body bytes sent in the current attempt.
    pub bytes_sent: u64,
    /// Bytes the server has acknowledged (tus offset); 0 for plain HTTP.
    pub acked: u64,
}

/// Where a resumable upload lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeUrlV1 {
    /// Upload id.
    pub id: UploadId,
    /// Absolute URL of the upload resource; `None` forgets it (the server lost it).
    pub url: Option<String>,
}

/// The server's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseV1 {
    /// Upload id.
    pub id: UploadId,
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

/// Settings changed after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedV1 {
    /// Upload id.
    pub id: UploadId,
    /// New priority.
    pub priority: PriorityV1,
    /// Sequence number for "make current" ordering (higher runs first); 0 if never.
    pub current_seq: u64,
}

/// An S3 multipart upload's identity on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3UploadV1 {
    /// Upload id.
    pub id: UploadId,
    /// The server's `UploadId`; `None` forgets it (and its parts): the server lost it.
    pub upload_id: Option<String>,
}

/// A confirmed part of an S3 multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3PartV1 {
    /// Upload id.
    pub id: UploadId,
    /// The part number, from 1.
    pub number: u32,
    /// The server's `ETag` for it.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A Google Cloud Storage resumable session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcsSessionV1 {
    /// Upload id.
    pub id: UploadId,
    /// The session URI; `None` forgets it: the server lost it.
    pub uri: Option<String>,
}
