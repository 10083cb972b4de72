//! [`RequestInfo`]: what an upload sends, as accepted (WinRT's `RequestedUri`,
//! `Method`, ...), the public view of the model's request.

use std::fmt;
use std::path::PathBuf;

use crate::model::{Body, PartContent, Protocol, Request};
use crate::redact::{is_sensitive_header, redact_url};
use crate::{CostPolicy, Priority};

/// What an upload sends, as accepted (WinRT's `RequestedUri`, `Method`, ...).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestInfo {
    /// The method.
    pub method: String,
    /// The URL (for tus, the creation endpoint).
    pub url: String,
    /// The request headers.
    pub headers: Vec<(String, String)>,
    /// The source files, in body order.
    pub files: Vec<PathBuf>,
    /// Whether the body is multipart.
    pub multipart: bool,
    /// Whether it uses the tus resumable protocol.
    pub tus: bool,
    /// The protocol's name: `plain`, `tus`, `s3`, `gcs` or `azure`.
    pub protocol: &'static str,
    /// The bytes per piece the server confirms one by one, as fixed at creation: an
    /// S3 part, a GCS chunk, an Azure block; `None` for other protocols.
    pub part_size: Option<u64>,
    /// Priority at creation.
    pub priority: Priority,
    /// Transfer group.
    pub group: Option<String>,
    /// Cost policy.
    pub cost_policy: CostPolicy,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub created_ms: u64,
}

impl RequestInfo {
    pub(crate) fn of(r: &Request, created_ms: u64) -> RequestInfo {
        let files = match &r.body {
            Body::File(s) => vec![s.path.clone()],
            Body::Multipart(mp) => mp
                .parts
                .iter()
                .filter_map(|p| match &p.content {
                    PartContent::File(s) => Some(s.path.clone()),
                    PartContent::Text(_) => None,
                })
                .collect(),
        };
        RequestInfo {
            method: r.method.clone(),
            url: r.url.clone(),
            headers: r.headers.clone(),
            files,
            multipart: matches!(r.body, Body::Multipart(_)),
            tus: matches!(r.protocol, Protocol::Tus { .. }),
            protocol: r.protocol.name(),
            part_size: match &r.protocol {
                Protocol::S3(t) => Some(t.part_size),
                Protocol::Gcs(t) => Some(t.chunk_size),
                Protocol::Azure(t) => Some(t.block_size),
                Protocol::Plain | Protocol::Tus { .. } => None,
            },
            priority: r.priority,
            group: r.group.clone(),
            cost_policy: r.cost,
            created_ms,
        }
    }
}

impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str(),
                    if is_sensitive_header(n) {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("RequestInfo")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("files", &self.files)
            .field("protocol", &self.protocol)
            .field("priority", &self.priority)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
