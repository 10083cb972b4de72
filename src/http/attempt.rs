//! One request on the wire, following 307/308 redirects (which keep the method and the
//! body) and refusing the ones that would turn an upload into a GET.

use crossbeam_channel::Receiver;
use ureq::http::{Response, Uri};
use ureq::{Agent, Body, SendBody};

use super::Control;
use super::{BodyReader, WireError};
use crate::bandwidth::Bandwidth;
use crate::multipart::Segment;
use crate::redact::{is_sensitive_header, redact_url};
use crate::Error;

/// What to send.
pub(crate) struct Attempt<'a> {
    pub agent: &'a Agent,
    pub method: &'a str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// `None` for a request without a body (HEAD, DELETE).
    pub body: Option<(&'a [Segment], u64, u64)>,
    pub ctl: &'a Receiver<Control>,
    pub bandwidth: Option<&'a Bandwidth>,
    pub max_redirects: u32,
}

/// How it went.
pub(crate) enum Sent {
    /// The server answered (not with a redirect we followed).
    Response {
        resp: Response<Body>,
        /// The URL that answered.
        url: String,
    },
    /// A control message stopped it; whether every body byte had been handed over.
    Stopped { body_complete: bool },
    /// It failed.
    Failed { failed: Failed, body_complete: bool },
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// On the wire.
    Wire(WireError),
    /// The body's source (changed, shrank, unreadable).
    Source(Error),
    /// A redirect the crate does not follow.
    Redirect(String),
}

fn origin(u: &Uri) -> (Option<&str>, Option<&str>, Option<u16>) {
    (u.scheme_str(), u.host(), u.port_u16())
}

/// Whether two URLs have the same scheme, host and port. Unparsable URLs never match:
/// credentials are only ever sent where the program sent them.
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    match (a.parse::<Uri>(), b.parse::<Uri>()) {
        (Ok(a), Ok(b)) => origin(&a) == origin(&b),
        _ => false,
    }
}

/// Resolves a `Location` against the URL that sent it.
pub(crate) fn resolve(base: &str, location: &str) -> Option<String> {
    if location.contains("://") {
        return Some(location.to_string());
    }
    let uri: Uri = base.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = uri.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{scheme}://{authority}{dir}{location}"))
}

/// Sends the request, calling `progress` with the body position as bytes go out.
pub(crate) fn send(a: Attempt<'_>, progress: &mut dyn FnMut(u64)) -> Sent {
    let mut url = a.url.clone();
    let mut headers = a.headers.clone();
    let mut hops = 0;
    loop {
        let (resp, complete) = match a.body {
            Some((segments, start, end)) => {
                let mut reader =
                    BodyReader::new(segments, start, end, a.ctl, a.bandwidth, progress);
                let mut builder = ureq::http::Request::builder()
                    .method(a.method)
                    .uri(url.as_str());
                for (n, v) in &headers {
                    builder = builder.header(n.as_str(), v.as_str());
                }
                builder = builder.header("Content-Length", (end - start).to_string());
                let result = match builder.body(SendBody::from_reader(&mut reader)) {
                    Ok(req) => a.agent.run(req),
                    Err(e) => Err(ureq::Error::Http(e)),
                };
                let complete = reader.is_complete();
                if reader.stop.take().is_some() {
                    return Sent::Stopped {
                        body_complete: complete,
                    };
                }
                if let Some(error) = reader.failure.take() {
                    return Sent::Failed {
                        failed: Failed::Source(error),
                        body_complete: complete,
                    };
                }
                (result, complete)
            }
            None => {
                let mut builder = ureq::http::Request::builder()
                    .method(a.method)
                    .uri(url.as_str());
                for (n, v) in &headers {
                    builder = builder.header(n.as_str(), v.as_str());
                }
                let result = match builder.body(()) {
                    Ok(req) => a.agent.run(req),
                    Err(e) => Err(ureq::Error::Http(e)),
                };
                (result, true)
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                if a.ctl.try_recv().is_ok() {
                    return Sent::Stopped {
                        body_complete: complete,
                    };
                }
                return Sent::Failed {
                    failed: Failed::Wire(WireError::from(e)),
                    body_complete: complete,
                };
            }
        };
        let status = resp.status().as_u16();
        if !(300..400).contains(&status) || status == 304 {
            return Sent::Response { resp, url };
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| resolve(&url, l));
        let refuse = |message: String| Sent::Failed {
            failed: Failed::Redirect(message),
            body_complete: complete,
        };
        if !matches!(status, 307 | 308) {
            return refuse(format!(
                "the server redirected the {} with {status}, which would turn it into a GET; \
                 not followed (only 307 and 308 keep the method and body)",
                a.method
            ));
        }
        let Some(next) = location else {
            return refuse(format!("{status} redirect without a usable Location"));
        };
        hops += 1;
        if hops > a.max_redirects {
            return refuse(format!("more than {} redirects", a.max_redirects));
        }
        if !same_origin(&a.url, &next) {
            // Credentials are for the origin they were given to.
            headers.retain(|(n, _)| !is_sensitive_header(n));
        }
        log::info!(
            "following {status} redirect from {} to {}",
            redact_url(&url),
            redact_url(&next)
        );
        url = next;
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn locations_resolve() {
        let b = "http://h:1/a/b?q=1";
        assert_eq!(resolve(b, "/x").unwrap(), "http://h:1/x");
        assert_eq!(resolve(b, "c").unwrap(), "http://h:1/a/c");
        assert_eq!(resolve(b, "https://o/y").unwrap(), "https://o/y");
        assert_eq!(resolve(b, "//o2/z").unwrap(), "http://o2/z");
    }
}
