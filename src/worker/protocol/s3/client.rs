//! One S3 request at a time: signed with the provider's keys (rusty-s3 presigns each
//! action's URL, so the body need not be hashed), sent on the crate's wire, and its
//! answer read and classified. A 401/403 (or an expired-token code) asks the provider
//! again with `refresh` and sends the request once more, without spending a retry.

use std::sync::Arc;
use std::time::Duration;

use rusty_s3::{Bucket, S3Action};

use super::super::reply::{self, read, Reply};
use super::super::{fail, sent_failure};
use crate::credentials::{CredentialProvider, CredentialRequest, Credentials, S3Keys};
use crate::http::{self, Attempt, Sent, StoredResponse};
use crate::model::{S3Target, UrlStyle};
use crate::multipart::Segment;
use crate::worker::{Class, Job, Outcome, Reporter};
use crate::Error;

/// How long a presigned URL stays valid: one request, including a slow part's body.
const SIGNED_FOR: Duration = Duration::from_secs(3600);
/// Error codes that mean "these credentials are stale": ask the provider again.
const REFRESH_CODES: &[&str] = &[
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestExpired",
];
/// Error codes that a retry can help with, whatever their status.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
];

/// An S3 action ready to sign: it is signed anew for each send.
pub(super) type Build<'b> = &'b dyn Fn(&Bucket, &rusty_s3::Credentials) -> Signed;

/// A signed request.
pub(super) struct Signed {
    pub method: &'static str,
    pub url: String,
    /// Headers to send (the signed ones among them, with the values signed).
    pub headers: Vec<(String, String)>,
}

impl Signed {
    /// Signs `action` with the extra (lower-case) headers it must carry.
    pub fn new<'a>(
        method: &'static str,
        mut action: impl S3Action<'a>,
        headers: &'a [(String, String)],
    ) -> Signed {
        for (n, v) in headers {
            action.headers_mut().insert(n.as_str(), v.as_str());
        }
        Signed {
            method,
            url: action.sign(SIGNED_FOR).to_string(),
            headers: headers.to_vec(),
        }
    }
}

/// One attempt's connection to the service: the bucket, the keys, the reporter.
pub(super) struct Client<'a> {
    pub job: &'a Job,
    pub target: &'a S3Target,
    pub bucket: Bucket,
    /// The object's URL, unsigned: what the stored response says answered.
    pub object_url: String,
    pub reporter: Reporter,
    provider: Arc<dyn CredentialProvider>,
    keys: Option<(S3Keys, rusty_s3::Credentials)>,
}

/// The bucket of a target.
pub(crate) fn bucket(t: &S3Target) -> Result<Bucket, String> {
    let endpoint = t
        .endpoint
        .parse::<url::Url>()
        .map_err(|e| format!("endpoint does not parse: {e}"))?;
    let style = match t.style {
        UrlStyle::Path => rusty_s3::UrlStyle::Path,
        UrlStyle::VirtualHost => rusty_s3::UrlStyle::VirtualHost,
    };
    Bucket::new(endpoint, style, t.bucket.clone(), t.region.clone()).map_err(|e| e.to_string())
}

impl<'a> Client<'a> {
    pub fn new(job: &'a Job, target: &'a S3Target) -> Result<Client<'a>, Outcome> {
        let bucket = bucket(target).map_err(|reason| {
            fail(
                Error::InvalidRequest {
                    reason: format!("S3 bucket {:?}: {reason}", target.bucket),
                },
                Class::Final,
            )
        })?;
        let Some(provider) = job.config.providers.get(&target.credentials) else {
            return Err(fail(
                Error::Credentials {
                    provider: target.credentials.clone(),
                    message: "no provider is registered under this name (see \
                              UploaderBuilder::credentials)"
                        .into(),
                    permanent: true,
                },
                Class::Final,
            ));
        };
        Ok(Client {
            job,
            target,
            object_url: bucket.object_url(&target.key).to_string(),
            bucket,
            reporter: Reporter::new(job.id, job.tx.clone(), job.config.progress_interval),
            provider,
            keys: None,
        })
    }

    /// The keys to sign with: asked of the provider the first time, when they expired,
    /// or (`refresh`) when the server refused them.
    fn keys(&mut self, refresh: bool) -> Result<rusty_s3::Credentials, Outcome> {
        if let Some((k, creds)) = &self.keys {
            if !refresh && !k.expired() {
                return Ok(creds.clone());
            }
        }
        let refresh = refresh || self.keys.is_some();
        let asked = crate::credentials::ask(
            self.provider.as_ref(),
            &CredentialRequest {
                upload: self.job.id,
                refresh,
            },
        );
        let provider = || self.target.credentials.clone();
        match asked {
            Ok(Credentials::S3(k)) => {
                log::debug!(
                    "upload {}: credentials from provider {:?}{}",
                    self.job.id,
                    self.target.credentials,
                    if refresh { " (refreshed)" } else { "" }
                );
                let creds = match &k.session_token {
                    Some(t) => rusty_s3::Credentials::new_with_token(
                        k.access_key_id.clone(),
                        k.secret_access_key.clone(),
                        t.clone(),
                    ),
                    None => rusty_s3::Credentials::new(
                        k.access_key_id.clone(),
                        k.secret_access_key.clone(),
                    ),
                };
                self.keys = Some((k, creds.clone()));
                Ok(creds)
            }
            Ok(_) => Err(fail(
                Error::Credentials {
                    provider: provider(),
                    message: "an S3 upload needs Credentials::S3 keys from its provider".into(),
                    permanent: true,
                },
                Class::Final,
            )),
            Err(e) => {
                let class = if e.permanent {
                    Class::Final
                } else {
                    Class::Transient
                };
                Err(fail(
                    Error::Credentials {
                        provider: provider(),
                        message: e.message,
                        permanent: e.permanent,
                    },
                    class,
                ))
            }
        }
    }

    /// Sends a request (signed by `build`), asking the provider once more and sending it
    /// again if the server refuses the credentials. A request that did not get an
    /// answer ends the attempt.
    pub fn exchange(
        &mut self,
        build: Build<'_>,
        body: Option<(&[Segment], u64, u64)>,
    ) -> Result<Reply, Outcome> {
        let mut refreshed = false;
        loop {
            let creds = self.keys(refreshed)?;
            let signed = build(&self.bucket, &creds);
            let reporter = &mut self.reporter;
            let sent = http::send(
                Attempt {
                    agent: &self.job.agent,
                    method: signed.method,
                    url: signed.url,
                    headers: signed.headers,
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
            let resp = match sent {
                Sent::Response { resp, .. } => resp,
                other => return Err(sent_failure(other, "S3")),
            };
            let reply = read(resp)?;
            let stale = matches!(reply.status, 401 | 403)
                || (reply.status == 400 && REFRESH_CODES.contains(&reply.error().0.as_str()));
            if stale && !refreshed {
                let (code, _) = reply.error();
                log::info!(
                    "upload {}: the server refused the credentials ({} {code}); asking \
                     provider {:?} again",
                    self.job.id,
                    reply.status,
                    self.target.credentials
                );
                refreshed = true;
                continue;
            }
            return Ok(reply);
        }
    }

    /// Stores a reply as the upload's response (its body in the store, without what
    /// could hold a credential: see [`scrub`]).
    pub fn keep(&mut self, reply: &Reply) -> Result<StoredResponse, Outcome> {
        let body = self.scrub(&reply.body);
        reply::keep(self.job, reply, &body, &self.object_url)
    }

    /// `body` without what could hold a credential (see [`scrub`]).
    fn scrub(&self, body: &[u8]) -> Vec<u8> {
        let secrets: Vec<&str> = self
            .keys
            .iter()
            .flat_map(|(k, _)| {
                [
                    Some(k.secret_access_key.as_str()),
                    k.session_token.as_deref(),
                ]
            })
            .flatten()
            .collect();
        scrub(body, &secrets)
    }

    /// A failed answer as the attempt's outcome: the service's code in the error (read
    /// from the scrubbed answer: the error is journaled), the answer kept, transient or
    /// final by status and code.
    pub fn refused(&mut self, reply: &Reply, what: &str) -> Outcome {
        let scrubbed = Reply {
            status: reply.status,
            headers: vec![],
            body: self.scrub(&reply.body),
        };
        let (code, said) = scrubbed.error();
        let response = self.keep(reply).ok();
        reply::refusal(
            reply,
            code,
            reply::described(what, &said),
            TRANSIENT_CODES,
            response,
        )
    }
}

/// Elements of S3's error documents that echo the signed request: for a presigned URL
/// they hold its query, with the session token and the signature in it.
const ECHOES: &[&str] = &[
    "CanonicalRequest",
    "CanonicalRequestBytes",
    "StringToSign",
    "StringToSignBytes",
    "SignatureProvided",
];

/// A body fit to keep: the elements that echo the request removed, and any secret the
/// provider gave (the secret key, the session token) replaced, wherever it appears.
fn scrub(body: &[u8], secrets: &[&str]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(body) else {
        // Not text: no XML echo to remove; still no secret may stay in it.
        return redact_bytes(body, secrets);
    };
    let mut text = text.to_string();
    for name in ECHOES {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        while let Some(start) = text.find(&open) {
            let end = text[start..]
                .find(&close)
                .map_or(text.len(), |e| start + e + close.len());
            text.replace_range(start..end, "");
        }
    }
    redact_bytes(text.as_bytes(), secrets)
}

/// `s` as it appears in a URL's query (percent-encoded as SigV4 does).
fn query_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Query parameters of a presigned URL whose values are credentials (a signature is a
/// bearer credential for its request until the URL expires).
const SECRET_PARAMS: &[&[u8]] = &[b"X-Amz-Signature=", b"X-Amz-Security-Token="];

/// The shortest provider value replaced in a kept answer.
const MIN_SECRET: usize = 8;

fn redact_bytes(body: &[u8], secrets: &[&str]) -> Vec<u8> {
    let mut out = body.to_vec();
    for param in SECRET_PARAMS {
        let mut i = 0;
        while let Some(at) = out[i..].windows(param.len()).position(|w| w == *param) {
            let start = i + at + param.len();
            let end = out[start..]
                .iter()
                .position(|b| b"&<\"' \r\n\t".contains(b))
                .map_or(out.len(), |e| start + e);
            out.splice(start..end, b"<redacted>".iter().copied());
            i = start + b"<redacted>".len();
        }
    }
    let encoded: Vec<String> = secrets.iter().map(|s| query_encoded(s)).collect();
    let all = secrets
        .iter()
        .copied()
        .chain(encoded.iter().map(String::as_str));
    // A "secret" of a few characters (a test's) would take every word that holds
    // them; real ones (40-character keys, long tokens) cannot be mistaken for text.
    for s in all.filter(|s| s.len() >= MIN_SECRET) {
        let s = s.as_bytes();
        let mut i = 0;
        while i + s.len() <= out.len() {
            if &out[i..i + s.len()] == s {
                out.splice(i..i + s.len(), b"<redacted>".iter().copied());
                i += b"<redacted>".len();
            } else {
                i += 1;
            }
        }
    }
    out
}
