//! The protocol seam: one module per upload protocol, behind one interface that the
//! worker drives. Each protocol owns its flow on the wire, its server-side session (a
//! [`Session`] variant, journaled through [`WorkerEvent::Session`] before any body byte
//! reaches it, and persisted as a record kind of its own), and the classification of its
//! server's answers into an [`Outcome`]: done, restart (the session is gone: `start`
//! again, with `has_restarted`), transient (spend a retry), unreachable or lost (no
//! retry), or final.
//!
//! A resumable protocol answers, within one attempt and in this order: *start* (create
//! the session if the upload has none), *where* (ask the server what it has), *send*
//! (the ranges it lacks, reporting acknowledged bytes), *finish* (the answer kept as
//! the response). *abort* ends the session on the server after a cancel or removal.
//!
//! Adding a protocol means: a variant of [`crate::model::Protocol`] (and of
//! [`Session`] if it has server-side state), one module here implementing
//! [`UploadProtocol`], one arm in [`of`], and one record kind in `journal/` for its
//! session.
//!
//! [`Session`]: crate::model::Session
//! [`WorkerEvent::Session`]: super::WorkerEvent::Session

mod plain;
mod tus;

use super::{Job, Outcome};
use crate::model::Protocol;

/// One upload protocol, driven by a worker thread.
pub(crate) trait UploadProtocol: Sync {
    /// One attempt: start, where, send and finish, as far as the server lets it go.
    /// Never panics on what the server says; the outcome carries its classification.
    fn attempt(&self, job: &Job) -> Outcome;

    /// Ends the upload's session on the server after a cancel or removal. Best effort:
    /// a failure is logged, never an error.
    fn abort(&self, job: &Job);
}

/// The registry: the module that speaks `protocol`.
pub(crate) fn of(protocol: Protocol) -> &'static dyn UploadProtocol {
    match protocol {
        Protocol::Plain => &plain::Plain,
        Protocol::Tus { .. } => &tus::Tus,
    }
}
