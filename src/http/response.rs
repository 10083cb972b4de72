//! The server's answer as the wire gives it: status, headers, announced length and a
//! reader over the body (which the store keeps; see `store::body`).

use ureq::http::Response;
use ureq::Body;

pub(crate) use crate::model::StoredResponse;

/// The headers of a response, as strings (invalid UTF-8 replaced).
pub(crate) fn headers_of(resp: &Response<Body>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A response taken apart.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body's announced length, if any.
    pub announced: Option<u64>,
    /// The body, unlimited (the store caps what it keeps).
    pub body: ureq::BodyReader<'static>,
}

/// Takes a response apart.
pub(crate) fn answer(resp: Response<Body>) -> Answer {
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    let announced = resp.body().content_length();
    let body = resp.into_body().into_with_config().limit(u64::MAX).reader();
    Answer {
        status,
        headers,
        announced,
        body,
    }
}
