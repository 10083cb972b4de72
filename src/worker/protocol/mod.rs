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

// Every step of a protocol returns the attempt's `Outcome` as its error: it is built
// once per attempt, so its size costs nothing.
#![allow(clippy::result_large_err)]

#[cfg(feature = "azure")]
pub(crate) mod azure;
#[cfg(any(feature = "s3", feature = "azure"))]
mod digest;
#[cfg(feature = "gcs")]
pub(crate) mod gcs;
mod plain;
#[cfg(any(feature = "s3", feature = "azure"))]
mod reply;
#[cfg(feature = "s3")]
pub(crate) mod s3;
#[cfg(any(feature = "gcs", feature = "azure"))]
mod sender;
mod tus;
#[cfg(any(feature = "s3", feature = "azure"))]
mod xml;

use crossbeam_channel::bounded;

use super::{classify, Class, Job, Outcome, WorkerEvent};
use crate::http::Sent;
use crate::model::{Protocol, Session};
use crate::Error;

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
        #[cfg(feature = "gcs")]
        Protocol::Gcs(_) => &gcs::Gcs,
        #[cfg(not(feature = "gcs"))]
        Protocol::Gcs(_) => &NotBuilt("gcs"),
        #[cfg(feature = "azure")]
        Protocol::Azure(_) => &azure::Azure,
        #[cfg(not(feature = "azure"))]
        Protocol::Azure(_) => &NotBuilt("azure"),
    }
}

/// The outcome of a step that did not produce what the protocol needs.
pub(super) fn fail(error: Error, class: Class) -> Outcome {
    Outcome::Failed {
        error,
        class,
        response: None,
        retry_after: None,
        body_complete: false,
    }
}

/// A request that got no answer as the attempt's outcome; `protocol` names the request in
/// the error (`tus` for `tus PATCH https://...`; empty for a plain upload's own request).
pub(super) fn sent_failure(s: Sent, protocol: &str) -> Outcome {
    match s {
        Sent::Stopped { body_complete } => Outcome::Stopped { body_complete },
        Sent::Failed {
            failed,
            body_complete,
            step,
        } => {
            let step = if protocol.is_empty() {
                step
            } else {
                format!("{protocol} {step}")
            };
            let (error, class) = classify::failed(failed, &step);
            Outcome::Failed {
                error,
                class,
                response: None,
                retry_after: None,
                body_complete,
            }
        }
        Sent::Response { .. } => unreachable!("responses are handled by the caller"),
    }
}

/// Makes the scheduler journal the session (fsynced; `None` forgets it) and waits for
/// it: no body byte goes to a session before this returns.
pub(super) fn journal_session(job: &Job, session: Option<Session>) -> Result<(), Outcome> {
    let (tx, rx) = bounded(1);
    let msg = WorkerEvent::Session {
        id: job.id,
        session,
        ack: tx,
    };
    let stopped = Outcome::Stopped {
        body_complete: false,
    };
    if job.tx.send(msg).is_err() {
        return Err(stopped);
    }
    match rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(fail(e, Class::Final)),
        Err(_) => Err(stopped),
    }
}

/// A protocol this build leaves out (its cargo feature is off): a store written by a
/// build that has it still opens, and its uploads fail with a clear error instead of
/// being dropped.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure")))]
struct NotBuilt(&'static str);

#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure")))]
impl UploadProtocol for NotBuilt {
    fn attempt(&self, _job: &Job) -> Outcome {
        fail(
            Error::Protocol {
                message: format!(
                    "this build of background-transfer has no {0} support (cargo feature \"{0}\")",
                    self.0
                ),
            },
            Class::Final,
        )
    }

    fn abort(&self, job: &Job) {
        log::warn!(
            "upload {}: no {} support to end it on the server",
            job.id,
            self.0
        );
    }
}
