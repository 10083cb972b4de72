//! A worker thread: one transfer, one attempt at a time, reporting progress and its
//! outcome to the scheduler. Mechanism only: whether to retry is the scheduler's call.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ureq::Agent;

use crate::bandwidth::Bandwidth;
use crate::http::{self, Attempt, Class, Sent, StoredResponse};
use crate::journal::record::{BodyV1, ProtocolV1, RequestV1, UploadId};
use crate::multipart::{self, Segment};
use crate::scheduler::Msg;
use crate::{source, Config, Error};

/// What the scheduler tells a running worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Stop at the next buffer; the scheduler knows why (pause, cancel, shutdown, ...).
    Stop,
}

/// Everything a worker needs for one transfer.
pub(crate) struct Job {
    pub id: UploadId,
    pub request: RequestV1,
    pub resume_url: Option<String>,
    pub config: Arc<Config>,
    pub agent: Agent,
    pub bandwidth: Option<Arc<Bandwidth>>,
    pub ctl: Receiver<Control>,
    pub tx: Sender<Msg>,
    pub body_path: PathBuf,
    /// Only end the upload on the server (tus DELETE after a cancel).
    pub terminate: bool,
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

/// What workers report to the scheduler.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    /// Bytes moved (coalesced to `Config::progress_interval`).
    Progress {
        id: UploadId,
        sent: u64,
        acked: u64,
        received: u64,
        to_receive: Option<u64>,
    },
    /// A resumable upload's URL: the scheduler journals it (fsynced) before replying,
    /// and the worker sends no body byte before the reply.
    ResumeUrl {
        id: UploadId,
        url: Option<String>,
        ack: Sender<Result<(), Error>>,
    },
    /// This attempt starts again from byte 0.
    Restarted { id: UploadId },
    /// The attempt is over.
    Done { id: UploadId, outcome: Outcome },
}

/// Reports progress at most once per interval.
pub(crate) struct Reporter {
    id: UploadId,
    tx: Sender<Msg>,
    every: Duration,
    last: Instant,
    pub sent: u64,
    pub acked: u64,
}

impl Reporter {
    pub fn new(id: UploadId, tx: Sender<Msg>, every: Duration) -> Self {
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

    pub fn flush(&mut self, received: u64, to_receive: Option<u64>) {
        self.last = Instant::now();
        let _ = self.tx.send(Msg::Worker(WorkerMsg::Progress {
            id: self.id,
            sent: self.sent,
            acked: self.acked,
            received,
            to_receive,
        }));
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
    let _ = job.tx.send(Msg::Worker(WorkerMsg::Done {
        id: job.id,
        outcome,
    }));
}

fn attempt(job: &Job) -> Outcome {
    match job.request.protocol {
        ProtocolV1::Plain if job.terminate => Outcome::Stopped {
            body_complete: false,
        },
        ProtocolV1::Plain => run_plain(job),
        ProtocolV1::Tus { chunk_size } => crate::tus::run(job, chunk_size),
    }
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
pub(crate) fn body_of(req: &RequestV1) -> Result<BodyParts, Error> {
    let mut headers = req.headers.clone();
    let segments = match &req.body {
        BodyV1::File(s) => vec![Segment::File(s.clone())],
        BodyV1::Multipart(mp) => {
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

fn run_plain(job: &Job) -> Outcome {
    let (segments, headers) = match body_of(&job.request) {
        Ok(v) => v,
        Err(error) => {
            return Outcome::Failed {
                error,
                class: Class::Final,
                response: None,
                retry_after: None,
                body_complete: false,
            }
        }
    };
    let total: u64 = segments.iter().map(Segment::len).sum();
    let mut reporter = Reporter::new(job.id, job.tx.clone(), job.config.progress_interval);
    let sent = http::send(
        Attempt {
            agent: &job.agent,
            method: &job.request.method,
            url: job.request.url.clone(),
            headers,
            body: Some((&segments, 0, total)),
            ctl: &job.ctl,
            bandwidth: job.bandwidth.as_deref(),
            max_redirects: job.config.max_redirects,
        },
        &mut |pos| reporter.sent(pos),
    );
    reporter.flush(0, None);
    let (resp, url) = match sent {
        Sent::Stopped { body_complete, .. } => return Outcome::Stopped { body_complete },
        Sent::Failed {
            error,
            class,
            body_complete,
        } => {
            return Outcome::Failed {
                error,
                class,
                response: None,
                retry_after: None,
                body_complete,
            }
        }
        Sent::Response { resp, url } => (resp, url),
    };
    finish(job, resp, &url, &segments, &mut reporter)
}

/// Stores the response and decides what it means.
pub(crate) fn finish(
    job: &Job,
    resp: ureq::http::Response<ureq::Body>,
    url: &str,
    segments: &[Segment],
    reporter: &mut Reporter,
) -> Outcome {
    let stored = match http::read_response(
        resp,
        url,
        &job.body_path,
        job.config.max_response_body,
        &mut |got, of| reporter.flush(got, of),
    ) {
        Ok(s) => s,
        Err(error) => {
            let class = if matches!(error, Error::Io { .. }) {
                Class::Final
            } else {
                Class::Transient
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
    let status = stored.status;
    if (200..300).contains(&status) {
        return match sources_unchanged(segments) {
            Ok(()) => Outcome::Completed(stored),
            Err(error) => Outcome::Failed {
                error,
                class: Class::Final,
                response: Some(stored),
                retry_after: None,
                body_complete: true,
            },
        };
    }
    let class = if http::is_transient_status(status) {
        Class::Transient
    } else {
        Class::Final
    };
    let retry_after = match status {
        429 | 503 => http::retry_after(&stored.headers),
        _ => None,
    };
    Outcome::Failed {
        error: Error::HttpStatus { status },
        class,
        response: Some(stored),
        retry_after,
        body_complete: true,
    }
}
