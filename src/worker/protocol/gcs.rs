//! Google Cloud Storage resumable uploads (the protocol YouTube and Drive uploads use
//! too): an interrupted upload continues where the server says it stopped.
//!
//! Within one attempt: *start* (POST to the initiation URL; the session URI in its
//! `Location` is journaled, fsynced, before the first chunk; a session URI the program
//! gave needs no start), *where* (an empty PUT with `Content-Range: bytes */TOTAL`:
//! 308 with a `Range` says what the server has, 200/201 that it has it all, 404/410
//! that the session expired), *send* (PUT chunks with `Content-Range: bytes A-B/TOTAL`,
//! each answered 308 with the new `Range`), *finish* (the last chunk's 200/201 answer,
//! the object's metadata, kept as the upload's response).

use ureq::http::Response;
use ureq::Body;

use super::sender::{Request, Sender};
use super::{fail, journal_session, UploadProtocol};
use crate::http;
use crate::model::{Body as RequestBody, GcsTarget, Protocol, Session, Source};
use crate::multipart::Segment;
use crate::source;
use crate::worker::{finish, Class, Job, Outcome, WorkerEvent};
use crate::Error;

/// Chunks are a multiple of this (all but the last).
pub(crate) const CHUNK_QUANTUM: u64 = 256 << 10;
/// Times one attempt starts a new session after the server lost one.
const MAX_RESTARTS: u32 = 2;
/// Status queries after a refused chunk, in a row, before the attempt fails.
const MAX_RESYNCS: u32 = 3;

/// The GCS protocol.
pub(crate) struct Gcs;

impl UploadProtocol for Gcs {
    fn attempt(&self, job: &Job) -> Outcome {
        let Protocol::Gcs(target) = &job.request.protocol else {
            return protocol_error("the GCS protocol was given another protocol's upload");
        };
        run(job, target)
    }

    fn abort(&self, job: &Job) {
        let Protocol::Gcs(target) = &job.request.protocol else {
            return;
        };
        let Some(uri) = session_uri(job, target) else {
            return;
        };
        let mut s = match Sender::new(job) {
            Ok(s) => s,
            Err(o) => {
                log::warn!("upload {}: GCS session not canceled: {o:?}", job.id);
                return;
            }
        };
        let sent = s.send(Request {
            method: "DELETE",
            url: &|_| uri.clone(),
            headers: vec![],
            body: None,
        });
        match sent {
            Ok((resp, _)) => match resp.status().as_u16() {
                s @ (499 | 501) => log::info!(
                    "upload {}: the server cannot cancel a resumable session ({s}); it \
                     expires on its own",
                    job.id
                ),
                s => log::info!("upload {}: GCS session DELETE answered {s}", job.id),
            },
            Err(o) => log::warn!("upload {}: GCS session DELETE failed: {o:?}", job.id),
        }
    }
}

fn protocol_error(message: &str) -> Outcome {
    fail(
        Error::Protocol {
            message: message.into(),
        },
        Class::Final,
    )
}

/// The session to resume: the journaled one, or the one the program gave.
fn session_uri(job: &Job, target: &GcsTarget) -> Option<String> {
    match &job.session {
        Some(Session::Gcs { uri }) => Some(uri.clone()),
        _ if target.session_given => Some(job.request.url.clone()),
        _ => None,
    }
}

fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The bytes a 308's `Range` (`bytes=0-N`) says the server has: `N + 1`, or 0 without
/// one. `bytes=0-0` reads as nothing stored: gcp-storage-emulator answers it for an
/// empty session, and chunks are multiples of 256 KiB, so one stored byte cannot be.
fn stored(resp: &Response<Body>) -> Result<u64, String> {
    let Some(range) = header(resp, "range") else {
        return Ok(0);
    };
    let last = range
        .trim()
        .strip_prefix("bytes=0-")
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("308 answer with an unreadable Range {range:?}"))?;
    match last {
        0 => Ok(0),
        n => n
            .checked_add(1)
            .ok_or_else(|| format!("308 answer with an impossible Range {range:?}")),
    }
}

fn run(job: &Job, target: &GcsTarget) -> Outcome {
    let RequestBody::File(src) = &job.request.body else {
        return protocol_error("GCS uploads send one file");
    };
    if target.chunk_size == 0 || target.chunk_size % CHUNK_QUANTUM != 0 {
        return protocol_error(&format!(
            "the journaled GCS chunk size {} is not a multiple of 256 KiB",
            target.chunk_size
        ));
    }
    if let Err(e) = source::open_unchanged(src) {
        return fail(e, Class::Final);
    }
    let mut s = match Sender::new(job) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mut uri = session_uri(job, target);
    let mut restarts = 0;
    loop {
        let gone = match upload(&mut s, target, src, uri.take()) {
            Flow::Done(o) => return o,
            Flow::Gone(status) => status,
        };
        if target.session_given {
            return fail(
                Error::Service {
                    status: gone,
                    code: "SessionExpired".into(),
                    message: format!(
                        "the resumable session is gone ({gone}): Google Cloud Storage \
                         keeps one for a week; an upload made from an initiation URL \
                         (GcsUpload::initiation) would start a new one"
                    ),
                },
                Class::Final,
            );
        }
        // Forget it first: a crash from here on must not resume it.
        if let Err(o) = journal_session(job, None) {
            return o;
        }
        if restarts == MAX_RESTARTS {
            return fail(
                Error::Protocol {
                    message: format!(
                        "the server lost the resumable session {} times in a row",
                        MAX_RESTARTS + 1
                    ),
                },
                Class::Transient,
            );
        }
        restarts += 1;
        log::warn!(
            "upload {}: the resumable session is gone ({gone}); starting a new one",
            job.id
        );
        let _ = job.tx.send(WorkerEvent::Restarted { id: job.id });
        s.reporter.acked = 0;
        s.reporter.sent = 0;
    }
}

/// How one pass over a session ended.
enum Flow {
    Done(Outcome),
    /// The session is gone (its status: 404 or 410).
    Gone(u16),
}

/// What the server said of the session.
enum Where {
    /// It has this many bytes.
    Stored(u64),
    /// It has them all: this is its answer.
    Complete(Response<Body>),
    Gone(u16),
    End(Outcome),
}

/// An answer the step did not expect, as the attempt's outcome: kept, and classified by
/// its status; a success where the protocol expects another answer never reads as
/// "uploaded".
fn refused(s: &mut Sender, resp: Response<Body>, url: &str) -> Outcome {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return protocol_error(&format!(
            "the server answered {status} where a resumable upload expects another \
             answer; is {} a Google Cloud Storage resumable upload?",
            crate::redact::redact_url(url)
        ));
    }
    finish_kept(s, resp, &[])
}

/// Keeps `resp` as the upload's answer and decides what it means. The URL kept with it
/// is the upload's own without its query: a session URI's `upload_id` and a signed
/// URL's signature are credentials, and the kept answer outlives the session.
fn finish_kept(s: &mut Sender, resp: Response<Body>, segments: &[Segment]) -> Outcome {
    let own = &s.job.request.url;
    let url = own
        .split_once('?')
        .map_or(own.as_str(), |(u, _)| u)
        .to_string();
    finish(s.job, resp, &url, segments, &mut s.reporter)
}

/// Starts a session at the initiation URL; journals its URI before returning it.
fn initiate(s: &mut Sender, target: &GcsTarget, size: u64) -> Result<String, Outcome> {
    let mut headers = s.job.request.headers.clone();
    headers.push(("X-Upload-Content-Length".into(), size.to_string()));
    if let Some(ct) = &target.content_type {
        headers.push(("X-Upload-Content-Type".into(), ct.clone()));
    }
    let (resp, url) = s.send(Request {
        method: "POST",
        url: &|base| base.to_string(),
        headers,
        body: Some((&[], 0, 0)),
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(refused(s, resp, &url));
    }
    let Some(uri) = header(&resp, "location").and_then(|l| http::resolve_location(&url, l)) else {
        return Err(protocol_error(&format!(
            "the initiation answered {status} without a usable Location: is {} a \
             resumable upload initiation URL (uploadType=resumable)?",
            crate::redact::redact_url(&url)
        )));
    };
    if http::is_downgrade(&url, &uri) && !s.job.config.allow_https_downgrade {
        return Err(protocol_error(&format!(
            "the server put the session at {}, on plain http, for an upload started over \
             https: it would be sent in cleartext (see UploaderBuilder::allow_https_to_http)",
            crate::redact::redact_url(&uri)
        )));
    }
    journal_session(s.job, Some(Session::Gcs { uri: uri.clone() }))?;
    log::info!("upload {}: GCS resumable session started", s.job.id);
    Ok(uri)
}

/// An empty PUT with `Content-Range: bytes */TOTAL`: where does the server stand?
fn query(s: &mut Sender, uri: &str, size: u64) -> Where {
    let sent = s.send(Request {
        method: "PUT",
        url: &|_| uri.to_string(),
        headers: vec![("Content-Range".into(), format!("bytes */{size}"))],
        body: Some((&[], 0, 0)),
    });
    let (resp, url) = match sent {
        Ok(v) => v,
        Err(o) => return Where::End(o),
    };
    match resp.status().as_u16() {
        308 => match stored(&resp) {
            Ok(n) if n <= size => Where::Stored(n),
            Ok(n) => Where::End(protocol_error(&format!(
                "the server says it has {n} bytes of a {size}-byte file"
            ))),
            Err(m) => Where::End(protocol_error(&m)),
        },
        200 | 201 => Where::Complete(resp),
        st @ (404 | 410) => Where::Gone(st),
        _ => Where::End(refused(s, resp, &url)),
    }
}

/// Finds or starts the session and sends the chunks the server lacks.
fn upload(s: &mut Sender, target: &GcsTarget, src: &Source, uri: Option<String>) -> Flow {
    let size = src.size;
    let segments = [Segment::File(src.clone())];
    let (uri, mut offset) = match uri {
        Some(uri) => match query(s, &uri, size) {
            Where::Stored(n) => (uri, n),
            Where::Complete(resp) => {
                s.reporter.acked = size;
                return Flow::Done(finish_kept(s, resp, &segments));
            }
            Where::Gone(st) => return Flow::Gone(st),
            Where::End(o) => return Flow::Done(o),
        },
        None => match initiate(s, target, size) {
            Ok(uri) => (uri, 0),
            Err(o) => return Flow::Done(o),
        },
    };
    s.reporter.acked = offset;
    s.reporter.sent(offset);
    s.reporter.flush(0, None);
    let mut resyncs = 0;
    loop {
        let end = size.min(offset.saturating_add(target.chunk_size));
        // With every byte on the server (an empty file, or a server that kept the last
        // chunk without finalizing), an empty PUT of `bytes */TOTAL` finalizes it.
        let range = if offset == size {
            format!("bytes */{size}")
        } else {
            format!("bytes {offset}-{}/{size}", end - 1)
        };
        let sent = s.send(Request {
            method: "PUT",
            url: &|_| uri.clone(),
            headers: vec![("Content-Range".into(), range)],
            body: Some((&segments, offset, end)),
        });
        let (resp, url) = match sent {
            Ok(v) => v,
            Err(o) => return Flow::Done(o),
        };
        let status = resp.status().as_u16();
        match status {
            200 | 201 => {
                s.reporter.acked = size;
                return Flow::Done(finish_kept(s, resp, &segments));
            }
            308 => {}
            404 | 410 => return Flow::Gone(status),
            // The server expected another offset (gcp-storage-emulator refuses an
            // overlapping chunk with 400): ask it where it stands and go on from there.
            400 | 416 if resyncs < MAX_RESYNCS => {
                resyncs += 1;
                log::info!(
                    "upload {}: the server refused the chunk at {offset} ({status}); asking \
                     where it stands",
                    s.job.id
                );
                match query(s, &uri, size) {
                    Where::Stored(n) if n != offset => {
                        offset = n;
                        s.reporter.acked = n;
                        continue;
                    }
                    Where::Stored(_) => return Flow::Done(refused(s, resp, &url)),
                    Where::Complete(resp) => {
                        s.reporter.acked = size;
                        return Flow::Done(finish_kept(s, resp, &segments));
                    }
                    Where::Gone(st) => return Flow::Gone(st),
                    Where::End(o) => return Flow::Done(o),
                }
            }
            _ => return Flow::Done(refused(s, resp, &url)),
        }
        let now = match stored(&resp) {
            Ok(n) => n,
            Err(m) => return Flow::Done(protocol_error(&m)),
        };
        if now > end {
            return Flow::Done(protocol_error(&format!(
                "the server says it has {now} bytes after a chunk that ended at {end}"
            )));
        }
        if offset == size {
            return Flow::Done(fail(
                Error::Protocol {
                    message: format!(
                        "the server holds all {size} bytes but answered 308 to the request \
                         that finalizes the upload"
                    ),
                },
                Class::Transient,
            ));
        }
        if now <= offset {
            // Nothing stored (the request may have been cut short): the next attempt
            // asks the server where it stands.
            return Flow::Done(fail(
                Error::Protocol {
                    message: format!("the chunk at {offset} stored no byte"),
                },
                Class::Transient,
            ));
        }
        // The server may keep less than a chunk (the last one too): go on from there.
        resyncs = 0;
        offset = now;
        s.reporter.acked = offset;
        s.reporter.sent(offset);
        s.reporter.flush(0, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(range: Option<&str>) -> Response<Body> {
        let mut b = Response::builder().status(308);
        if let Some(r) = range {
            b = b.header("Range", r);
        }
        b.body(Body::builder().data("")).unwrap()
    }

    #[test]
    fn a_308_range_says_what_the_server_has() {
        assert_eq!(stored(&with_range(None)), Ok(0));
        assert_eq!(stored(&with_range(Some("bytes=0-0"))), Ok(0));
        assert_eq!(stored(&with_range(Some("bytes=0-262143"))), Ok(262_144));
        assert!(stored(&with_range(Some("bytes=5-9"))).is_err());
        assert!(stored(&with_range(Some("items=0-9"))).is_err());
    }
}
