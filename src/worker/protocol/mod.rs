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
#[cfg(feature = "s3")]
pub(crate) mod s3;
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
pub(crate) fn of(protocol: &Protocol) -> &'static dyn UploadProtocol {
    match protocol {
        Protocol::Plain => &plain::Plain,
        Protocol::Tus { .. } => &tus::Tus,
        #[cfg(feature = "s3")]
        Protocol::S3(_) => &s3::S3,
        #[cfg(not(feature = "s3"))]
        Protocol::S3(_) => &NotBuilt("s3"),
    }
}

/// A protocol this build leaves out (its cargo feature is off): a store written by a
/// build that has it still opens, and its uploads fail with a clear error instead of
/// being dropped.
#[cfg(not(feature = "s3"))]
struct NotBuilt(&'static str);

#[cfg(not(feature = "s3"))]
impl UploadProtocol for NotBuilt {
    fn attempt(&self, _job: &Job) -> Outcome {
        Outcome::Failed {
            error: crate::Error::Protocol {
                message: format!(
                    "this build of background-transfer has no {0} support (cargo feature \"{0}\")",
                    self.0
                ),
            },
            class: super::Class::Final,
            response: None,
            retry_after: None,
            body_complete: false,
        }
    }

    fn abort(&self, job: &Job) {
        log::warn!(
            "upload {}: no {} support to end it on the server",
            job.id,
            self.0
        );
    }
}
