//! Answers read whole: the storage APIs (S3, Azure) answer with small XML documents
//! that the protocol reads before it decides, and keeps as the upload's response.

use std::io::Cursor;

use ureq::http::Response;
use ureq::Body;

use super::fail;
use super::xml::tag;
use crate::http::{self, StoredResponse, WireError};
use crate::worker::{classify, Class, Job, Outcome};
use crate::{store, Error};

/// The largest answer body read into memory (XML answers are a few KiB; a ListParts
/// page of 1,000 parts is about 250 KiB, a block list of 50,000 blocks about 4 MiB).
const MAX_ANSWER: u64 = 8 << 20;

/// An answer read whole.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The service's error code and message, from an `<Error>` body or Azure's
    /// `x-ms-error-code` (or the status).
    pub fn error(&self) -> (String, String) {
        let text = self.text();
        let code = tag(&text, "Code")
            .or_else(|| self.header("x-ms-error-code").map(str::to_string))
            .unwrap_or_else(|| match self.status {
                404 => "NoSuchKey".into(),
                403 => "AccessDenied".into(),
                s => format!("HTTP{s}"),
            });
        let message = tag(&text, "Message").unwrap_or_default();
        // Azure ends its messages with lines of request ids and times: noise in an error.
        let message = message
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        (code, message)
    }

    #[cfg(feature = "s3")]
    /// Whether a 2xx answer is really an error: S3 may answer a CompleteMultipartUpload
    /// with 200 and an `<Error>` body when it fails after the headers were sent.
    pub fn is_error_document(&self) -> bool {
        let text = self.text();
        let start = text.trim_start();
        let start = match start.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or("", |(_, r)| r).trim_start(),
            None => start,
        };
        start.starts_with("<Error>") || start.starts_with("<Error ")
    }
}

/// Reads an answer whole (bounded).
pub(crate) fn read(resp: Response<Body>) -> Result<Reply, Outcome> {
    let status = resp.status().as_u16();
    let headers = http::headers_of(&resp);
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_ANSWER)
        .read_to_vec();
    match body {
        Ok(body) => Ok(Reply {
            status,
            headers,
            body,
        }),
        // The server is there: a body that fails to arrive spends a retry.
        Err(e) => Err(fail(classify::wire(WireError::from(e)).0, Class::Transient)),
    }
}

/// Stores an answer as the upload's response: `body` (already fit to keep) in the
/// store, the status and headers in the journal, `url` as what answered.
pub(crate) fn keep(
    job: &Job,
    reply: &Reply,
    body: &[u8],
    url: &str,
) -> Result<StoredResponse, Outcome> {
    let saved = crate::worker::keep_body(
        job,
        &mut Cursor::new(body),
        Some(body.len() as u64),
        &mut |_, _| {},
    );
    let (body_len, body_truncated) = match saved {
        Ok(s) => (s.len, s.truncated),
        Err(store::body::SaveError::Store(e)) => return Err(fail(e, Class::Final)),
        // An in-memory body cannot fail to read.
        Err(store::body::SaveError::Read(e)) => {
            return Err(fail(
                Error::io("read the kept answer", &job.body_path, e),
                Class::Final,
            ))
        }
    };
    Ok(StoredResponse {
        status: reply.status,
        headers: reply.headers.clone(),
        url: url.to_string(),
        body_len,
        body_truncated,
    })
}

/// A service's refusal as the attempt's outcome: `Error::Service` with the service's
/// `code` and `message` (what the step was, then what the service said), transient by
/// status or by one of `transient_codes`, `Retry-After` honoured for 429 and 503, and
/// the answer kept as `response`.
pub(crate) fn refusal(
    reply: &Reply,
    code: String,
    message: String,
    transient_codes: &[&str],
    response: Option<StoredResponse>,
) -> Outcome {
    let transient =
        classify::is_transient_status(reply.status) || transient_codes.contains(&code.as_str());
    let retry_after = match reply.status {
        429 | 503 => classify::retry_after(&reply.headers),
        _ => None,
    };
    Outcome::Failed {
        error: Error::Service {
            status: reply.status,
            code,
            message,
        },
        class: if transient {
            Class::Transient
        } else {
            Class::Final
        },
        response,
        retry_after,
        body_complete: true,
    }
}

/// `what` the step was, and what the service said of it (if anything).
pub(crate) fn described(what: &str, said: &str) -> String {
    if said.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {said}")
    }
}
