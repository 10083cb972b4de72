//! tus 1.0.0 resumable uploads (core, creation, termination, expiration): an interrupted
//! upload continues at the offset the server reports instead of byte 0.
//!
//! The creation-with-upload extension is deliberately not used: it would send body
//! bytes before the upload's URL is durable in the journal, and a crash then would
//! leave bytes on the server that no restart can find.

use std::time::{Duration, SystemTime};

use ureq::http::Response;
use ureq::Body;

use super::{fail, journal_session, sent_failure, UploadProtocol};
use crate::http::{self, date, Attempt, Sent};
use crate::model::{Body as RequestBody, Protocol, Session};
use crate::multipart::Segment;
use crate::source;
use crate::worker::credentials::{self, Creds};
use crate::worker::{classify, Class};
use crate::worker::{finish, Job, Outcome, Reporter, WorkerEvent};
use crate::Error;

const TUS_VERSION: &str = "1.0.0";
/// Re-syncs (409/423 followed by HEAD) allowed in a row before the attempt fails.
const MAX_RESYNCS: u32 = 5;
/// Times one attempt creates the upload again after the server lost it.
const MAX_RESTARTS: u32 = 2;

fn protocol(message: String) -> Outcome {
    fail(Error::Protocol { message }, Class::Final)
}

fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What a step on the server found.
enum Step {
    /// The server holds this many bytes.
    Offset(u64, Response<Body>, String),
    /// The upload is gone (404, 410, or expired): create it again.
    Gone,
    /// The attempt ends here.
    End(Outcome),
}

/// One attempt's state: the job, its progress reporter and its credentials.
struct TusAttempt<'a> {
    job: &'a Job,
    reporter: Reporter,
    creds: Creds,
}

impl TusAttempt<'_> {
    fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: Vec<(String, String)>,
        body: Option<(&[Segment], u64, u64)>,
    ) -> Result<Sent, Box<Outcome>> {
        // The request's own headers (credentials, typically) go on every request of the
        // protocol, not only on the creation; a PATCH's Content-Type is the protocol's.
        // Credentials go only where the program sent them: an upload URL (the server's
        // Location) on another origin than the endpoint does not get them, as with a
        // redirect.
        let same_origin = http::same_origin(&self.job.request.url, url);
        let mut all = vec![("Tus-Resumable".to_string(), TUS_VERSION.to_string())];
        all.extend(
            self.job
                .request
                .headers
                .iter()
                .filter(|(n, _)| !(method == "PATCH" && n.eq_ignore_ascii_case("content-type")))
                // The upload's metadata belongs to its creation only.
                .filter(|(n, _)| method == "POST" || !n.eq_ignore_ascii_case("upload-metadata"))
                .filter(|(n, _)| same_origin || !crate::redact::is_sensitive_header(n))
                .cloned(),
        );
        all.extend(headers);
        // A 401/403 asks the provider once more (refresh) and sends this request again,
        // without spending a retry; a second refusal is the answer.
        let mut refreshed = false;
        loop {
            self.creds.ask(refreshed)?;
            let reporter = &mut self.reporter;
            let target = self.creds.url(url, &self.job.request.url);
            let sent = http::send(
                Attempt {
                    agent: &self.job.agent,
                    method,
                    url: target.clone(),
                    headers: if same_origin {
                        self.creds.headers(all.clone())
                    } else {
                        all.clone()
                    },
                    body,
                    ctl: &self.job.ctl,
                    bandwidth: self.job.bandwidth.as_deref(),
                    zero_copy: self.job.zero_copy.as_deref(),
                    max_redirects: self.job.config.max_redirects,
                    allow_downgrade: self.job.config.allow_https_downgrade,
                    resume_incomplete: false,
                },
                &mut |pos| reporter.sent(pos),
            );
            match sent {
                Sent::Response { resp, .. }
                    if self.creds.active()
                        && !refreshed
                        && credentials::refused(resp.status().as_u16()) =>
                {
                    log::info!(
                        "upload {}: the server refused the credentials ({} to {method}); \
                         asking the provider again",
                        self.job.id,
                        resp.status().as_u16()
                    );
                    refreshed = true;
                }
                // The provider's URL stands for the endpoint: answers name the endpoint.
                Sent::Response { resp, .. } if target != url => {
                    return Ok(Sent::Response {
                        resp,
                        url: url.to_string(),
                    });
                }
                other => return Ok(other),
            }
        }
    }

    /// Turns a non-success answer into an outcome, storing its body.
    fn bad_status(&mut self, resp: Response<Body>, url: &str) -> Outcome {
        let status = resp.status().as_u16();
        if status == 412 {
            return protocol(format!(
                "the server does not support tus {TUS_VERSION} (412 Precondition Failed)"
            ));
        }
        if (200..300).contains(&status) {
            // A success the protocol does not expect here (a 200 to the creation POST,
            // say) must never read as "uploaded": the server is not speaking tus.
            return protocol(format!(
                "the server answered {status} where tus {TUS_VERSION} expects another \
                 answer; is {url} a tus endpoint?"
            ));
        }
        finish(self.job, resp, url, &[], &mut self.reporter)
    }

    /// HEAD: where does the server stand?
    fn head(&mut self, url: &str, size: u64) -> Step {
        let (resp, url) = match self.request("HEAD", url, vec![], None) {
            Ok(Sent::Response { resp, url }) => (resp, url),
            Ok(other) => return Step::End(sent_failure(other, "tus")),
            Err(o) => return Step::End(*o),
        };
        match resp.status().as_u16() {
            200 | 204 => {}
            404 | 410 => return Step::Gone,
            _ => return Step::End(self.bad_status(resp, &url)),
        }
        if expired(&resp) {
            return Step::Gone;
        }
        let length = header(&resp, "upload-length").and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(l) = length.filter(|&l| l != size) {
            return Step::End(protocol(format!(
                "the server's upload is {l} bytes long but the file has {size}"
            )));
        }
        match header(&resp, "upload-offset").and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(o) if o <= size => Step::Offset(o, resp, url),
            Some(o) => Step::End(protocol(format!(
                "the server reports offset {o}, past the file's {size} bytes"
            ))),
            None => Step::End(protocol("HEAD answer without a valid Upload-Offset".into())),
        }
    }

    /// POST to the creation endpoint; journals the new URL before returning.
    fn create(&mut self, size: u64, file_name: &str) -> Result<String, Box<Outcome>> {
        let endpoint = self.job.request.url.clone();
        let mut headers = vec![("Upload-Length".into(), size.to_string())];
        // The program's own Upload-Metadata (UploadRequest::tus_metadata, or a header it
        // set) replaces ours; it is sent once.
        let own = self
            .job
            .request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("upload-metadata"));
        if !own {
            headers.push((
                "Upload-Metadata".into(),
                format!("filename {}", crate::base64::encode(file_name.as_bytes())),
            ));
        }
        let (resp, url) = match self.request("POST", &endpoint, headers, Some((&[], 0, 0)))? {
            Sent::Response { resp, url } => (resp, url),
            other => return Err(Box::new(sent_failure(other, "tus"))),
        };
        if resp.status().as_u16() != 201 {
            return Err(Box::new(self.bad_status(resp, &url)));
        }
        let Some(location) =
            header(&resp, "location").and_then(|l| http::resolve_location(&url, l))
        else {
            return Err(Box::new(protocol(
                "201 Created without a usable Location".into(),
            )));
        };
        if http::is_downgrade(&endpoint, &location) && !self.job.config.allow_https_downgrade {
            return Err(Box::new(protocol(format!(
                "the tus server created the upload at {}, on plain http, for an upload made \
                 over https: it would be sent in cleartext (see \
                 UploaderBuilder::allow_https_to_http)",
                crate::redact::redact_url(&location)
            ))));
        }
        self.journal_url(Some(location.clone()))?;
        log::info!("upload {}: tus upload created", self.job.id);
        Ok(location)
    }

    /// Makes the scheduler journal the URL (fsynced) and waits for it.
    fn journal_url(&mut self, url: Option<String>) -> Result<(), Box<Outcome>> {
        journal_session(self.job, url.map(|url| Session::Tus { url })).map_err(Box::new)
    }
}

fn expired(resp: &Response<Body>) -> bool {
    header(resp, "upload-expires")
        .and_then(date::parse)
        .is_some_and(|t| t <= SystemTime::now())
}

/// Ends a canceled upload on the server (termination extension).
fn terminate(job: &Job) {
    if let Some(Session::Tus { url }) = &job.session {
        let creds = match Creds::new(job) {
            Ok(c) => c,
            Err(o) => {
                log::warn!("upload {}: tus DELETE not sent: {o:?}", job.id);
                return;
            }
        };
        let mut t = TusAttempt {
            job,
            reporter: Reporter::new(job.id, job.tx.clone(), Duration::from_secs(3600)),
            creds,
        };
        match t.request("DELETE", url, vec![], None) {
            Ok(Sent::Response { resp, .. }) => {
                log::info!("upload {}: tus DELETE answered {}", job.id, resp.status())
            }
            Ok(Sent::Failed { failed, step, .. }) => {
                let error = classify::failed(failed, &format!("tus {step}")).0;
                log::warn!("upload {}: tus DELETE failed: {error}", job.id)
            }
            Ok(Sent::Stopped { .. }) => {}
            Err(o) => log::warn!("upload {}: tus DELETE not sent: {o:?}", job.id),
        }
    }
}

/// One attempt of a tus upload: HEAD (or create), then PATCH until the server has it all.
/// An upload the server lost (404, 410, expired) is created again and sent from byte 0,
/// at most [`MAX_RESTARTS`] times per attempt.
/// The tus protocol.
pub(crate) struct Tus;

impl UploadProtocol for Tus {
    fn attempt(&self, job: &Job) -> Outcome {
        let chunk_size = match job.request.protocol {
            Protocol::Tus { chunk_size } => chunk_size,
            _ => None,
        };
        run(job, chunk_size)
    }

    fn abort(&self, job: &Job) {
        terminate(job)
    }
}

fn run(job: &Job, chunk_size: Option<u64>) -> Outcome {
    let RequestBody::File(src) = &job.request.body else {
        return protocol("tus uploads send one file".into());
    };
    if let Err(e) = source::open_unchanged(src) {
        return fail(e, Class::Final);
    }
    let file_name = src
        .path
        .clone()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let segments = [Segment::File(src.clone())];
    let creds = match Creds::new(job) {
        Ok(c) => c,
        Err(o) => return *o,
    };
    let mut t = TusAttempt {
        job,
        reporter: Reporter::new(job.id, job.tx.clone(), job.config.progress_interval),
        creds,
    };
    let mut url = match &job.session {
        Some(Session::Tus { url }) => Some(url.clone()),
        _ => None,
    };
    let mut restarts = 0;
    loop {
        match t.upload(url.take(), src.size, chunk_size, &segments, &file_name) {
            Flow::Done(o) => return o,
            Flow::Gone if restarts < MAX_RESTARTS => {
                restarts += 1;
                log::warn!(
                    "upload {}: the server lost the tus upload; creating it again",
                    job.id
                );
                // Forget the URL first: a crash from here on must not resume it.
                if let Err(o) = t.journal_url(None) {
                    return *o;
                }
                let _ = job.tx.send(WorkerEvent::Restarted { id: job.id });
                t.reporter.acked = 0;
                t.reporter.sent = 0;
            }
            Flow::Gone => {
                if let Err(o) = t.journal_url(None) {
                    return *o;
                }
                return fail(
                    Error::Protocol {
                        message: format!(
                            "the server lost the upload {} times in a row",
                            MAX_RESTARTS + 1
                        ),
                    },
                    Class::Transient,
                );
            }
        }
    }
}

/// How [`Tus::upload`] ended.
enum Flow {
    /// The attempt is over.
    Done(Outcome),
    /// The server does not have the upload (any more): create it again.
    Gone,
}

impl TusAttempt<'_> {
    /// Creates the upload if `url` is `None`, finds the server's offset with HEAD, and
    /// PATCHes the rest.
    fn upload(
        &mut self,
        url: Option<String>,
        size: u64,
        chunk_size: Option<u64>,
        segments: &[Segment],
        file_name: &str,
    ) -> Flow {
        let url = match url {
            Some(u) => u,
            None => match self.create(size, file_name) {
                Ok(u) => u,
                Err(o) => return Flow::Done(*o),
            },
        };
        // Where the server stands, and its last answer (kept as the upload's response).
        let (mut offset, mut last, mut last_url) = match self.head(&url, size) {
            Step::Offset(o, resp, rurl) => (o, resp, rurl),
            Step::Gone => return Flow::Gone,
            Step::End(o) => return Flow::Done(o),
        };
        self.reporter.acked = offset;
        self.reporter.sent(offset);
        let mut resyncs = 0;
        // An empty upload still gets its one (empty) PATCH: some servers only make the
        // file once a PATCH arrives, and a GET of it would otherwise answer 404.
        let mut empty_patch = size == 0 && offset == 0;
        while offset < size || std::mem::take(&mut empty_patch) {
            let end = chunk_size.map_or(size, |c| size.min(offset.saturating_add(c)));
            let headers = vec![
                ("Upload-Offset".into(), offset.to_string()),
                (
                    "Content-Type".into(),
                    "application/offset+octet-stream".into(),
                ),
            ];
            let (resp, rurl) =
                match self.request("PATCH", &url, headers, Some((segments, offset, end))) {
                    Ok(Sent::Response { resp, url }) => (resp, url),
                    Ok(other) => return Flow::Done(sent_failure(other, "tus")),
                    Err(o) => return Flow::Done(*o),
                };
            match resp.status().as_u16() {
                200 | 204 => {}
                409 | 423 if resyncs < MAX_RESYNCS => {
                    resyncs += 1;
                    match self.head(&url, size) {
                        Step::Offset(o, _, _) => {
                            offset = o;
                            self.reporter.acked = o;
                            continue;
                        }
                        Step::Gone => return Flow::Gone,
                        Step::End(o) => return Flow::Done(o),
                    }
                }
                404 | 410 => return Flow::Gone,
                _ => return Flow::Done(self.bad_status(resp, &rurl)),
            }
            resyncs = 0;
            let new = header(&resp, "upload-offset").and_then(|v| v.trim().parse::<u64>().ok());
            match new {
                Some(o) if o > offset && o <= end => offset = o,
                Some(0) if size == 0 => {}
                // The server took nothing (it may have cut the request short): the next
                // attempt asks it with HEAD where it stands.
                Some(o) if o == offset => {
                    return Flow::Done(fail(
                        Error::Protocol {
                            message: format!("PATCH at offset {offset} stored no byte"),
                        },
                        Class::Transient,
                    ))
                }
                Some(o) => {
                    return Flow::Done(protocol(format!(
                        "PATCH to offset {offset}..{end} answered Upload-Offset {o}"
                    )))
                }
                None => {
                    return Flow::Done(protocol(
                        "PATCH answer without a valid Upload-Offset".into(),
                    ))
                }
            }
            self.reporter.acked = offset;
            self.reporter.sent(offset);
            self.reporter.flush(0, None);
            last = resp;
            last_url = rurl;
        }
        // The server has every byte: keep its last answer as the response.
        Flow::Done(finish(
            self.job,
            last,
            &last_url,
            segments,
            &mut self.reporter,
        ))
    }
}
