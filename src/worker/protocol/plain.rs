//! Plain HTTP: the whole body in one request (any method), no server-side session.
//! An interrupted attempt starts again from byte 0; whether it may (a POST) is the
//! scheduler's rule, decided from the request's persisted idempotency.

use super::UploadProtocol;
use crate::http::{self, Attempt, Sent};
use crate::worker::credentials::{self, Creds};
use crate::worker::{body_of, finish, Job, Outcome, Reporter};
use crate::worker::{classify, Class};

/// The plain protocol.
pub(crate) struct Plain;

impl UploadProtocol for Plain {
    fn attempt(&self, job: &Job) -> Outcome {
        run_plain(job)
    }

    fn abort(&self, _job: &Job) {
        // Nothing lives on the server between attempts.
    }
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
    let total = crate::multipart::total_len(&segments);
    let mut reporter = Reporter::new(job.id, job.tx.clone(), job.config.progress_interval);
    let mut creds = match Creds::new(job) {
        Ok(c) => c,
        Err(o) => return *o,
    };
    // A 401/403 asks the provider once more (refresh) and sends again: no retry spent.
    let mut refreshed = false;
    loop {
        if let Err(o) = creds.ask(refreshed) {
            return *o;
        }
        let sent = http::send(
            Attempt {
                agent: &job.agent,
                method: &job.request.method,
                url: creds.url(&job.request.url, &job.request.url),
                headers: creds.headers(headers.clone()),
                body: Some((&segments, 0, total)),
                ctl: &job.ctl,
                bandwidth: job.bandwidth.as_deref(),
                zero_copy: job.zero_copy.as_deref(),
                max_redirects: job.config.max_redirects,
                allow_downgrade: job.config.allow_https_downgrade,
                resume_incomplete: false,
            },
            &mut |pos| reporter.sent(pos),
        );
        // A 2xx completes the upload, and the completion shows every byte sent: no
        // progress message (a wake-up of the scheduler) just before it.
        if !matches!(&sent, Sent::Response { resp, .. } if resp.status().is_success()) {
            reporter.flush(0, None);
        }
        let (resp, url) = match sent {
            Sent::Stopped { body_complete, .. } => return Outcome::Stopped { body_complete },
            Sent::Failed {
                failed,
                body_complete,
                step,
            } => {
                let (error, class) = classify::failed(failed, &step);
                return Outcome::Failed {
                    error,
                    class,
                    response: None,
                    retry_after: None,
                    body_complete,
                };
            }
            Sent::Response { resp, url } => (resp, url),
        };
        if creds.active() && !refreshed && credentials::refused(resp.status().as_u16()) {
            log::info!(
                "upload {}: the server refused the credentials ({}); asking the provider again",
                job.id,
                resp.status().as_u16()
            );
            refreshed = true;
            reporter.sent = 0;
            continue;
        }
        // A presigned URL from the provider is a credential: the response records the
        // upload's own URL.
        let url = if creds.url(&job.request.url, &job.request.url) != job.request.url {
            job.request.url.clone()
        } else {
            url
        };
        return finish(job, resp, &url, &segments, &mut reporter);
    }
}
