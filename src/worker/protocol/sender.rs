//! One request of an upload that takes its credentials from the upload's provider, if
//! it names one (Google Cloud Storage, Azure): the provider's headers merged in, its
//! URL (a fresh SAS, a signed URL) used as the upload's own, and a 401 or 403 answered
//! by asking it once more with `refresh` and sending the request again, without
//! spending a retry.

use ureq::http::Response;
use ureq::Body;

use super::sent_failure;
use crate::http::{self, Attempt, Sent};
use crate::multipart::Segment;
use crate::worker::credentials::{self, Creds};
use crate::worker::{Job, Outcome, Reporter};

/// An attempt's requests: the job, its progress reporter and its credentials.
pub(crate) struct Sender<'a> {
    pub job: &'a Job,
    pub reporter: Reporter,
    creds: Creds,
}

/// A request to send: its URL is made from the upload's base URL (its own, or the one
/// the provider gave) at each send.
pub(crate) struct Request<'r> {
    pub method: &'static str,
    pub url: &'r dyn Fn(&str) -> String,
    pub headers: Vec<(String, String)>,
    pub body: Option<(&'r [Segment], u64, u64)>,
}

impl<'a> Sender<'a> {
    /// The attempt's sender; the upload's provider must be registered.
    pub fn new(job: &'a Job) -> Result<Sender<'a>, Outcome> {
        Ok(Sender {
            job,
            reporter: Reporter::new(job.id, job.tx.clone(), job.config.progress_interval),
            creds: Creds::new(job).map_err(|o| *o)?,
        })
    }

    /// Whether the upload takes credentials from a provider.
    #[cfg(feature = "azure")]
    pub fn has_provider(&self) -> bool {
        self.creds.active()
    }

    /// Sends `r` and returns the answer with the URL that answered. A request that got
    /// no answer ends the attempt.
    pub fn send(&mut self, r: Request<'_>) -> Result<(Response<Body>, String), Outcome> {
        let own = self.job.request.url.as_str();
        let mut refreshed = false;
        loop {
            self.creds.ask(refreshed).map_err(|o| *o)?;
            let base = self.creds.url(own, own);
            let url = (r.url)(&base);
            // The provider's headers (a bearer token) go only where the upload was
            // made for: a session URI on another origin (a server's Location) does not
            // get them, as a redirect to another origin would not.
            let trusted = http::same_origin(&url, &base) || http::same_origin(&url, own);
            let headers = if trusted {
                self.creds.headers(r.headers.clone())
            } else {
                r.headers.clone()
            };
            let reporter = &mut self.reporter;
            let sent = http::send(
                Attempt {
                    agent: &self.job.agent,
                    method: r.method,
                    url,
                    headers,
                    body: r.body,
                    ctl: &self.job.ctl,
                    bandwidth: self.job.bandwidth.as_deref(),
                    zero_copy: self.job.zero_copy.as_deref(),
                    max_redirects: self.job.config.max_redirects,
                    allow_downgrade: self.job.config.allow_https_downgrade,
                    resume_incomplete: true,
                },
                &mut |pos| reporter.sent(pos),
            );
            match sent {
                Sent::Response { resp, .. }
                    if self.creds.active()
                        && trusted
                        && !refreshed
                        && credentials::refused(resp.status().as_u16()) =>
                {
                    log::info!(
                        "upload {}: the server refused the credentials ({} to {}); asking \
                         the provider again",
                        self.job.id,
                        resp.status().as_u16(),
                        r.method
                    );
                    refreshed = true;
                }
                Sent::Response { resp, url } => return Ok((resp, url)),
                other => return Err(sent_failure(other, self.job.request.protocol.label())),
            }
        }
    }
}
