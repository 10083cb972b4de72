//! What the journal records, in the model's terms: the engine commits entries, and
//! replay folds them. `convert.rs` maps each to its on-disk record and back.

use crate::model::{Failure, Request, Session, StoredPart, StoredResponse, UploadId};
use crate::model::{Priority, Status};

/// The largest response body the journal keeps (in its [`Entry::Response`]) instead of a
/// file of its own: two fsyncs and a file creation fewer per upload whose answer is
/// small, as most are.
pub const INLINE_BODY_MAX: u64 = 4096;

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A new upload was accepted (fsynced before `create_upload` returns).
    Created {
        /// Its id.
        id: UploadId,
        /// Milliseconds since the Unix epoch.
        created_ms: u64,
        /// The request.
        request: Request,
    },
    /// Its status changed.
    State {
        /// The upload.
        id: UploadId,
        /// The new status.
        status: Status,
        /// Attempts counted against the retry budget.
        attempts: u32,
        /// For `Error`: why.
        error: Option<Failure>,
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A progress checkpoint.
    Progress {
        /// The upload.
        id: UploadId,
        /// Body bytes sent in the current attempt.
        bytes_sent: u64,
        /// Bytes the server acknowledged.
        acked: u64,
    },
    /// The protocol's server-side session, or `None` once the server lost it.
    Session {
        /// The upload.
        id: UploadId,
        /// The session.
        session: Option<Session>,
    },
    /// A part of the session the server confirmed (S3 multipart).
    Part {
        /// The upload.
        id: UploadId,
        /// The part.
        part: StoredPart,
    },
    /// The server's final response.
    Response {
        /// The upload.
        id: UploadId,
        /// The response.
        response: StoredResponse,
        /// The body's bytes (at most [`INLINE_BODY_MAX`]) when it has no file: the
        /// journal is where it is kept. `None` for a body in a file of its own (fsynced
        /// before this record).
        body: Option<Vec<u8>>,
    },
    /// The upload and its files were removed.
    Removed(UploadId),
    /// The next attempt starts again from byte 0.
    Restarted(UploadId),
    /// Settings changed after creation.
    Changed {
        /// The upload.
        id: UploadId,
        /// New priority.
        priority: Priority,
        /// "Make current" sequence (higher first); 0 if never.
        current_seq: u64,
    },
}

impl Entry {
    /// The upload this entry is about.
    pub fn id(&self) -> UploadId {
        match self {
            Entry::Created { id, .. }
            | Entry::State { id, .. }
            | Entry::Progress { id, .. }
            | Entry::Session { id, .. }
            | Entry::Part { id, .. }
            | Entry::Response { id, .. }
            | Entry::Changed { id, .. }
            | Entry::Removed(id)
            | Entry::Restarted(id) => *id,
        }
    }
}
