//! A worker thread: one transfer, one attempt at a time, driving the upload's protocol
//! (`protocol/`) and reporting progress and the outcome to the scheduler. Mechanism
//! only: whether to retry is the scheduler's call.

pub(crate) mod classify;
pub(crate) mod credentials;
pub(crate) mod pool;
pub(crate) mod protocol;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ureq::Agent;

use crate::bandwidth::Bandwidth;
use crate::http::{self, Control, StoredResponse, WireError};
use crate::model::{Body, Request, Session, StoredPart, UploadId};
use crate::multipart::{self, Segment};
use crate::{source, store, Config, Error};
pub(crate) use classify::Class;

/// Everything a worker needs for one transfer.
pub(crate) struct Job {
    pub id: UploadId,
    pub request: Request,
    /// The protocol's session on the server, as journaled (tus: the upload URL).
    pub session: Option<Session>,
    pub config: Arc<Config>,
    pub agent: Agent,
    pub bandwidth: Option<Arc<Bandwidth>>,
    pub ctl: Receiver<Control>,
    pub tx: Sender<WorkerEvent>,
    pub body_path: PathBuf,
    /// Only end the upload on the server (after a cancel or removal): `abort`.
    pub terminate: bool,
    /// The bytes of the response body the attempt kept last, when that body has no file
    /// (at most [`crate::journal::INLINE_BODY_MAX`] bytes): they go to the scheduler with
    /// the outcome, for the journal. Set by every kept response ([`keep_body`]).
    pub small_body: std::cell::RefCell<Option<Vec<u8>>>,
    /// Shared with the agent's plain sockets when file bytes go out with `sendfile(2)`.
    pub zero_copy: Option<Arc<http::ZeroCopy>>,
}

/// How a transfer's attempt ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server accepted it (2xx); its response is stored.
    Completed(StoredResponse),
    /// It failed; `class` says whether retrying can help.
    Failed {
        error: Error,
        class: Class,
        response: Option<StoredResponse>,
        retry_after: Option<Duration>,
        body_complete: bool,
    },
    /// The scheduler stopped it.
    Stopped { body_complete: bool },
}

/// What workers report to the scheduler (the worker owns this type).
#[derive(Debug)]
pub(crate) enum WorkerEvent {
    /// Bytes moved (coalesced to `Config::progress_interval`).
    Progress {
        id: UploadId,
        sent: u64,
        acked: u64,
        received: u64,
        to_receive: Option<u64>,
    },
    /// A protocol's server-side session (or `None`: the server lost it). The scheduler
    /// journals it (fsynced) before replying, and the worker sends no body byte to the
    /// session before the reply.
    Session {
        id: UploadId,
        session: Option<Session>,
        ack: Sender<Result<(), Error>>,
    },
    /// A part the server confirmed (S3 multipart); journaled as it comes.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    Part { id: UploadId, part: StoredPart },
    /// This attempt starts again from byte 0.
    Restarted { id: UploadId },
    /// A connect of this upload has gone unanswered for a while (`true`), or that
    /// connect ended (`false`).
    Connecting { id: UploadId, waiting: bool },
    /// The attempt is over. `body`: the bytes of its response's body when that body has
    /// no file (the journal keeps them).
    Done {
        id: UploadId,
        outcome: Outcome,
        body: Option<Vec<u8>>,
    },
}

/// Reports progress at most once per interval.
pub(crate) struct Reporter {
    id: UploadId,
    tx: Sender<WorkerEvent>,
    every: Duration,
    last: Instant,
    pub sent: u64,
    pub acked: u64,
}

impl Reporter {
    pub fn new(id: UploadId, tx: Sender<WorkerEvent>, every: Duration) -> Self {
        Reporter {
            id,
            tx,
            every,
            last: Instant::now(),
            sent: 0,
            acked: 0,
        }
    }

    pub fn sent(&mut self, sent: u64) {
        self.sent = sent;
        if self.last.elapsed() >= self.every {
            self.flush(0, None);
        }
    }

    /// Response body bytes received so far, reported like the bytes sent: at most once
    /// per interval (the completion reports the whole body).
    pub fn received(&mut self, received: u64, to_receive: Option<u64>) {
        if self.last.elapsed() >= self.every {
            self.flush(received, to_receive);
        }
    }

    pub fn flush(&mut self, received: u64, to_receive: Option<u64>) {
        self.last = Instant::now();
        let _ = self.tx.send(WorkerEvent::Progress {
            id: self.id,
            sent: self.sent,
            acked: self.acked,
            received,
            to_receive,
        });
    }
}

/// The body of a worker thread.
pub(crate) fn run(job: Job) {
    // A bug must not leave the scheduler waiting for a Done that never comes.
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(&job)));
    let outcome = attempt.unwrap_or_else(|_| {
        log::error!("upload {}: the worker panicked; failing the upload", job.id);
        Outcome::Failed {
            error: Error::Protocol {
                message: "internal error in the upload worker (a bug: please report it)".into(),
            },
            class: Class::Final,
            response: None,
            retry_after: None,
            body_complete: false,
        }
    });
    log::debug!(
        "upload {} attempt ended: {}",
        job.id,
        outcome_word(&outcome)
    );
    let body = match &outcome {
        Outcome::Completed(_)
        | Outcome::Failed {
            response: Some(_), ..
        } => job.small_body.take(),
        _ => None,
    };
    let _ = job.tx.send(WorkerEvent::Done {
        id: job.id,
        outcome,
        body,
    });
}

fn attempt(job: &Job) -> Outcome {
    let protocol = protocol::of(&job.request.protocol);
    if job.terminate {
        protocol.abort(job);
        return Outcome::Stopped {
            body_complete: false,
        };
    }
    protocol.attempt(job)
}

fn outcome_word(o: &Outcome) -> String {
    match o {
        Outcome::Completed(r) => format!("completed ({})", r.status),
        Outcome::Failed { error, class, .. } => format!("failed ({class:?}): {error}"),
        Outcome::Stopped { .. } => "stopped".into(),
    }
}

/// A body's segments and the headers it needs.
pub(crate) type BodyParts = (Vec<Segment>, Vec<(String, String)>);

/// The body of a request as segments, with the headers it needs (Content-Type for
/// multipart), after checking that every source is unchanged.
pub(crate) fn body_of(req: &Request) -> Result<BodyParts, Error> {
    let mut headers = req.headers.clone();
    let segments = match &req.body {
        Body::File(s) => vec![Segment::File(s.clone())],
        Body::Multipart(mp) => {
            headers.push(("Content-Type".into(), multipart::content_type(mp)));
            multipart::layout(mp)
        }
    };
    for s in &segments {
        if let Segment::File(src) = s {
            source::open_unchanged(src)?;
        }
    }
    Ok((segments, headers))
}

/// Re-checks the sources after the body was sent: a file modified in place while it was
/// being read is as bad as one that shrank.
fn sources_unchanged(segments: &[Segment]) -> Result<(), Error> {
    for s in segments {
        if let Segment::File(src) = s {
            source::open_unchanged(src)?;
        }
    }
    Ok(())
}

/// The server accepted the upload: completed, unless a source changed while it was
/// being read (then the answer is kept, and the upload fails for good).
pub(crate) fn accepted(stored: StoredResponse, segments: &[Segment]) -> Outcome {
    match sources_unchanged(segments) {
        Ok(()) => Outcome::Completed(stored),
        Err(error) => Outcome::Failed {
            error,
            class: Class::Final,
            response: Some(stored),
            retry_after: None,
            body_complete: true,
        },
    }
}

/// Keeps a response body (see [`store::body::save`]), and hands its bytes to the job's
/// outcome when the journal is to keep them.
pub(crate) fn keep_body(
    job: &Job,
    body: &mut dyn std::io::Read,
    announced: Option<u64>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<store::body::Saved, store::body::SaveError> {
    job.small_body.replace(None);
    let saved = store::body::save(
        body,
        announced,
        &job.body_path,
        job.config.max_response_body,
        progress,
    )?;
    job.small_body.replace(saved.small.clone());
    Ok(saved)
}

/// Stores the response and decides what it means.
pub(crate) fn finish(
    job: &Job,
    resp: ureq::http::Response<ureq::Body>,
    url: &str,
    segments: &[Segment],
    reporter: &mut Reporter,
) -> Outcome {
    let mut answer = http::answer(resp);
    let saved = keep_body(job, &mut answer.body, answer.announced, &mut |got, of| {
        reporter.received(got, of)
    });
    let refusal =
        !(200..300).contains(&answer.status) && !classify::is_transient_status(answer.status);
    let (body_len, body_truncated, small) = match saved {
        Ok(s) => (s.len, s.truncated, s.small),
        // A refusal whose page breaks off is still that refusal: nginx, refusing a
        // request before its body (Expect: 100-continue), holds the page until its
        // lingering timeout and may then reset the connection. Keep the status without
        // the page rather than read it as a network failure that spends a retry.
        Err(store::body::SaveError::Read(e)) if refusal => {
            log::info!(
                "upload {}: the body of the server's {} answer broke off: {e}",
                job.id,
                answer.status
            );
            job.small_body.replace(Some(Vec::new()));
            (0, true, None)
        }
        Err(failed) => {
            let (error, class) = match failed {
                store::body::SaveError::Store(e) => (e, Class::Final),
                // A body that fails to arrive after the server answered: the server
                // is there, so a retry is spent whatever the wire said.
                store::body::SaveError::Read(e) => {
                    (classify::wire(WireError::from(e)).0, Class::Transient)
                }
            };
            return Outcome::Failed {
                error,
                class,
                response: None,
                retry_after: None,
                body_complete: true,
            };
        }
    };
    let stored = StoredResponse {
        status: answer.status,
        headers: answer.headers,
        url: url.to_string(),
        body_len,
        body_truncated,
    };
    let status = stored.status;
    if (200..300).contains(&status) {
        let outcome = accepted(stored, segments);
        if !matches!(outcome, Outcome::Completed(_)) {
            // Not the completion that would have shown every byte sent.
            reporter.flush(body_len, answer.announced);
        }
        return outcome;
    }
    let class = if classify::is_transient_status(status) {
        Class::Transient
    } else {
        Class::Final
    };
    let retry_after = match status {
        429 | 503 => classify::retry_after(&stored.headers),
        _ => None,
    };
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let head = match small {
        _ if status != 400 || !https => Vec::new(),
        Some(bytes) => bytes,
        None => store::body::head(&job.body_path, 4096),
    };
    let error = match classify::client_cert_refusal(status, https, &head) {
        Some(message) => Error::Tls { message },
        None => Error::HttpStatus { status },
    };
    Outcome::Failed {
        error,
        class,
        response: Some(stored),
        retry_after,
        body_complete: true,
    }
}
