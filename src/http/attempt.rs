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
    /// Shared with the agent's plain sockets when file bytes go out with `sendfile(2)`.
    pub zero_copy: Option<&'a super::ZeroCopy>,
    pub max_redirects: u32,
    /// Follow a redirect from `https` to `http` (off unless the program opted in).
    pub allow_downgrade: bool,
    /// A 308 without a `Location` is the answer, not a redirect: Google Cloud Storage's
    /// "308 Resume Incomplete".
    pub resume_incomplete: bool,
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
    Failed {
        failed: Failed,
        body_complete: bool,
        /// The request that failed, for the error text: method and redacted URL.
        step: String,
    },
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

/// Whether going from `from` to `to` leaves TLS (`https` to anything else).
pub(crate) fn is_downgrade(from: &str, to: &str) -> bool {
    let scheme = |u: &str| u.split(':').next().unwrap_or("").to_ascii_lowercase();
    scheme(from) == "https" && scheme(to) != "https"
}

/// Resolves a `Location` against the URL that sent it, per RFC 3986 §5.2 (the
/// fragment is dropped: it is never sent). `None` if the base is not an absolute URL.
pub(crate) fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.split('#').next().unwrap_or("");
    let uri: Uri = base.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    // A scheme: letters, digits, `+`, `-`, `.`, starting with a letter, before any of
    // `/ ? #` (so `/next?u=http://x` is a path, not an absolute URL).
    let has_scheme = location.find(':').is_some_and(|i| {
        let s = &location[..i];
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if has_scheme {
        let (s, rest) = location.split_once(':')?;
        return Some(match rest.strip_prefix("//") {
            Some(r) => {
                let (auth, path, query) = split_authority(r);
                format!("{s}://{auth}{}{query}", remove_dot_segments(path))
            }
            None => {
                let (path, query) = split_query(rest);
                format!("{s}:{}{query}", remove_dot_segments(path))
            }
        });
    }
    if let Some(r) = location.strip_prefix("//") {
        let (auth, path, query) = split_authority(r);
        return Some(format!(
            "{scheme}://{auth}{}{query}",
            remove_dot_segments(path)
        ));
    }
    let (ref_path, ref_query) = split_query(location);
    let (path, query) = if ref_path.is_empty() {
        let base_query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let query = if ref_query.is_empty() {
            base_query
        } else {
            ref_query.to_string()
        };
        (uri.path().to_string(), query)
    } else if ref_path.starts_with('/') {
        (remove_dot_segments(ref_path), ref_query.to_string())
    } else {
        // Merge: the base path up to its last `/`, then the reference.
        let base_path = uri.path();
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        (
            remove_dot_segments(&format!("{dir}{ref_path}")),
            ref_query.to_string(),
        )
    };
    Some(format!("{scheme}://{authority}{path}{query}"))
}

/// `authority`, `path` and `?query` of what follows `//`.
fn split_authority(r: &str) -> (&str, &str, &str) {
    let end = r.find(['/', '?']).unwrap_or(r.len());
    let (auth, rest) = r.split_at(end);
    let (path, query) = split_query(rest);
    (auth, path, query)
}

/// A path and its `?query` (with the `?`).
fn split_query(r: &str) -> (&str, &str) {
    match r.find('?') {
        Some(i) => r.split_at(i),
        None => (r, ""),
    }
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out: Vec<&str> = Vec::new();
    // Each output segment keeps its leading `/`.
    while !input.is_empty() {
        if let Some(r) = input.strip_prefix("../") {
            input = r;
        } else if let Some(r) = input.strip_prefix("./") {
            input = r;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            out.pop();
        } else if input == "/.." {
            input = "/";
            out.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push(&input[..end]);
            input = &input[end..];
        }
    }
    out.concat()
}

/// Sends the request, calling `progress` with the body position as bytes go out.
/// Bodies from this size on are sent with `Expect: 100-continue` (curl's threshold):
/// the server can refuse them (401, 403, 413, a TLS alert about the client
/// certificate) before a byte of the body is sent. A server that says nothing goes on
/// after ureq's one-second wait.
const EXPECT_CONTINUE_FROM: u64 = 1 << 20;

/// How a failed request is named in its error: `PATCH https://host/files/x` (redacted).
fn step(method: &str, url: &str) -> String {
    format!("{method} {}", redact_url(url))
}

pub(crate) fn send(a: Attempt<'_>, progress: &mut dyn FnMut(u64)) -> Sent {
    let mut url = a.url.clone();
    let mut headers = a.headers.clone();
    let large = a
        .body
        .is_some_and(|(_, start, end)| end - start >= EXPECT_CONTINUE_FROM);
    if large
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("expect"))
    {
        headers.push(("Expect".into(), "100-continue".into()));
    }
    let mut hops = 0;
    loop {
        let (resp, complete) = match a.body {
            Some((segments, start, end)) => {
                let mut reader = BodyReader::new(
                    segments,
                    start,
                    end,
                    a.ctl,
                    a.bandwidth,
                    progress,
                    a.zero_copy,
                );
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
                // A source that shrank under `sendfile` is found by the transmit.
                let sent_from_file = a.zero_copy.and_then(|zc| zc.take_failure());
                if let Some(error) = reader.failure.take().or(sent_from_file) {
                    return Sent::Failed {
                        failed: Failed::Source(error),
                        body_complete: complete,
                        step: step(a.method, &url),
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
                    step: step(a.method, &url),
                };
            }
        };
        let status = resp.status().as_u16();
        let resume_incomplete =
            a.resume_incomplete && status == 308 && !resp.headers().contains_key("location");
        if !(300..400).contains(&status) || status == 304 || resume_incomplete {
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
            step: step(a.method, &url),
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
        if is_downgrade(&url, &next) && !a.allow_downgrade {
            return refuse(format!(
                "the server redirected the {} from https to {}, which would send it in \
                 cleartext; not followed (see UploaderBuilder::allow_https_to_http)",
                a.method,
                redact_url(&next)
            ));
        }
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
        // A query that holds `://` is still a path reference (issue 16).
        assert_eq!(
            resolve(b, "/next?u=http://x").unwrap(),
            "http://h:1/next?u=http://x"
        );
    }

    /// RFC 3986 §5.4.1 and §5.4.2, the examples an HTTP `Location` can be (fragments
    /// are dropped: they are never sent).
    #[test]
    fn rfc_3986_reference_resolution_examples() {
        let base = "http://a/b/c/d;p?q";
        for (reference, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("http:g", "http:g"),
        ] {
            assert_eq!(
                resolve(base, reference).as_deref(),
                Some(want),
                "{reference:?}"
            );
        }
    }
}
