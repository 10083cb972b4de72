//! What the program asks for: [`UploadRequest`], validated before anything is persisted.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::model::Protocol;
use crate::redact::{is_sensitive_header, redact_url};
use crate::{CostPolicy, Error, Priority};

/// Longest URL accepted.
const MAX_URL_LEN: usize = 8 * 1024;
/// Longest single header value accepted.
const MAX_HEADER_VALUE_LEN: usize = 8 * 1024;
/// Most bytes of all request headers together.
const MAX_HEADERS_LEN: usize = 64 * 1024;
/// Headers the crate sets itself; a request may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "tus-resumable",
    "upload-offset",
    "upload-length",
];

/// An upload to create: a URL, a method, headers and a body (a file, a multipart form, or
/// any reader). Built with a constructor and chained setters, handed to
/// [`crate::Uploader::create_upload`].
///
/// ```
/// use background_transfer::{Priority, UploadRequest};
/// let req = UploadRequest::put("https://example.com/u/a.bin", "/data/a.bin")
///     .header("X-Device", "sensor-7")?
///     .priority(Priority::High)
///     .group("photos");
/// # Ok::<(), background_transfer::Error>(())
/// ```
pub struct UploadRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: RequestBody,
    pub(crate) priority: Priority,
    pub(crate) group: Option<String>,
    pub(crate) cost: CostPolicy,
    pub(crate) idempotent: Option<bool>,
    /// The credentials provider asked before each request.
    pub(crate) credentials: Option<String>,
    /// The registered client identity its connections present.
    pub(crate) client_identity: Option<String>,
    pub(crate) protocol: Protocol,
}

pub(crate) enum RequestBody {
    File(PathBuf),
    Multipart {
        subtype: String,
        boundary: Option<String>,
        parts: Vec<Part>,
    },
    Reader(Box<dyn Read + Send>),
}

pub(crate) enum Part {
    Text {
        name: String,
        value: String,
    },
    File {
        name: String,
        path: PathBuf,
        file_name: Option<String>,
        content_type: Option<String>,
    },
}

impl UploadRequest {
    /// A `POST` of the file at `path` (WinRT's default method).
    pub fn post(url: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::new("POST", url, path)
    }

    /// A `PUT` of the file at `path`.
    pub fn put(url: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::new("PUT", url, path)
    }

    /// Any method with the file at `path` as the body.
    pub fn new(method: &str, url: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::with_body(method, url.into(), RequestBody::File(path.into()))
    }

    /// A streamed `multipart/form-data` `POST`; add parts with [`UploadRequest::text`]
    /// and [`UploadRequest::file`]. The Content-Length is computed exactly up front.
    pub fn multipart(url: impl Into<String>) -> Self {
        Self::with_body(
            "POST",
            url.into(),
            RequestBody::Multipart {
                subtype: "form-data".into(),
                boundary: None,
                parts: Vec::new(),
            },
        )
    }

    /// A `POST` of everything `reader` yields. The reader is spooled into the store when
    /// the upload is created, so the upload survives a restart like a file upload.
    pub fn from_reader(url: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        Self::with_body("POST", url.into(), RequestBody::Reader(Box::new(reader)))
    }

    fn with_body(method: &str, url: String, body: RequestBody) -> Self {
        UploadRequest {
            method: method.to_ascii_uppercase(),
            url,
            headers: Vec::new(),
            body,
            priority: Priority::Default,
            group: None,
            cost: CostPolicy::Always,
            idempotent: None,
            credentials: None,
            client_identity: None,
            protocol: Protocol::Plain,
        }
    }

    /// Sets the method (`PUT`, `POST`, `PATCH`, ...).
    pub fn method(mut self, method: &str) -> Self {
        self.method = method.to_ascii_uppercase();
        self
    }

    /// Adds a request header.
    ///
    /// # Errors
    /// [`Error::InvalidHeader`] if the name is not an HTTP token, the value holds CR, LF
    /// or NUL or is over 8 KiB, or the crate sets that header itself (`Content-Length`,
    /// `Transfer-Encoding`, `Host`, `Connection`, ...).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, Error> {
        validate_header(name, value)?;
        if name.eq_ignore_ascii_case("upload-metadata") {
            // One Upload-Metadata only: this one replaces any before it.
            self.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("upload-metadata"));
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(self)
    }

    /// Scheduling priority. Defaults to [`Priority::Default`].
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// Puts the upload in a transfer group; see [`crate::Uploader::set_group_behavior`].
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Whether the upload may run on a costed network. Defaults to
    /// [`CostPolicy::Always`].
    pub fn cost_policy(mut self, p: CostPolicy) -> Self {
        self.cost = p;
        self
    }

    /// Declares whether sending this request twice is safe. By default `PUT` and
    /// requests with an `Idempotency-Key` header are; `POST` and others are not, so an
    /// attempt that may have reached the server (a restart mid-request, or a response
    /// that never came after the whole body was sent) ends the upload in
    /// [`Error::NotResumable`] instead of sending it again.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }

    /// Takes credentials from the provider registered under `name`
    /// ([`crate::UploaderBuilder::credentials`]): before each request the provider is
    /// asked for headers to add ([`crate::Credentials::Headers`], an `Authorization`
    /// bearer token for example) or a URL to use instead of this one
    /// ([`crate::Credentials::Url`], a presigned URL). On a 401 or 403 it is asked once
    /// more with [`crate::CredentialRequest::refresh`] set and the request is sent again,
    /// without spending a retry; a second refusal in a row is final. Only the name is
    /// persisted.
    pub fn credentials(mut self, name: impl Into<String>) -> Self {
        self.credentials = Some(name.into());
        self
    }

    /// Presents the client certificate registered under `name`
    /// ([`crate::UploaderBuilder::client_identity`]) on this upload's connections,
    /// instead of the uploader's own. Only the name is persisted.
    pub fn client_identity(mut self, name: impl Into<String>) -> Self {
        self.client_identity = Some(name.into());
        self
    }

    /// Adds a text field to a multipart request (ignored by other bodies: see
    /// [`UploadRequest::multipart`]).
    pub fn text(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let RequestBody::Multipart { parts, .. } = &mut self.body {
            parts.push(Part::Text {
                name: name.into(),
                value: value.into(),
            });
        }
        self
    }

    /// Adds a file field to a multipart request, sent with its file name and
    /// `Content-Type: application/octet-stream`.
    pub fn file(self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.file_with(name, path, None, None)
    }

    /// Adds a file field with an explicit file name and content type.
    pub fn file_with(
        mut self,
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        file_name: Option<String>,
        content_type: Option<String>,
    ) -> Self {
        if let RequestBody::Multipart { parts, .. } = &mut self.body {
            parts.push(Part::File {
                name: name.into(),
                path: path.into(),
                file_name,
                content_type,
            });
        }
        self
    }

    /// The multipart subtype (`form-data` by default, or `mixed`, `related`, ...).
    pub fn subtype(mut self, s: impl Into<String>) -> Self {
        if let RequestBody::Multipart { subtype, .. } = &mut self.body {
            *subtype = s.into();
        }
        self
    }

    /// The multipart boundary (1 to 70 characters of RFC 2046's set). Defaults to a
    /// random one.
    pub fn boundary(mut self, b: impl Into<String>) -> Self {
        if let RequestBody::Multipart { boundary, .. } = &mut self.body {
            *boundary = Some(b.into());
        }
        self
    }

    /// Sends the file with the tus 1.0 resumable protocol to the creation endpoint
    /// `url`: an interrupted upload continues from the server's offset. `chunk_size`
    /// caps the bytes per `PATCH` (`None`: the whole remainder in one).
    pub fn tus(mut self, chunk_size: Option<u64>) -> Self {
        self.protocol = Protocol::Tus {
            chunk_size: chunk_size.filter(|&c| c > 0),
        };
        self
    }

    /// Adds an entry to the tus upload's `Upload-Metadata` (sent with its creation only):
    /// `key` and `value` (base64-encoded by the crate). The first entry added also
    /// carries the `filename` the crate sends by default (unless `key` is `filename`
    /// itself). An `Upload-Metadata` header set with [`UploadRequest::header`] replaces
    /// the crate's own; it is never sent twice.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] if the key is empty or holds a space or a comma (tus
    /// 1.0), or is given twice.
    pub fn tus_metadata(mut self, key: &str, value: &str) -> Result<Self, Error> {
        if key.is_empty() || key.contains([' ', ',']) || !key.is_ascii() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "tus metadata key {key:?} is empty or holds a space, a comma or a \
                     non-ASCII character"
                ),
            });
        }
        let entry = format!("{key} {}", crate::base64::encode(value.as_bytes()));
        let at = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("upload-metadata"));
        match at {
            Some(i) => {
                let taken = self.headers[i]
                    .1
                    .split(',')
                    .any(|e| e.trim().split(' ').next() == Some(key));
                if taken {
                    return Err(Error::InvalidRequest {
                        reason: format!("tus metadata key {key:?} is given twice"),
                    });
                }
                self.headers[i].1.push(',');
                self.headers[i].1.push_str(&entry);
            }
            None => {
                let file_name = self
                    .path()
                    .and_then(Path::file_name)
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|_| key != "filename");
                let value = match file_name {
                    Some(n) => format!("filename {},{entry}", crate::base64::encode(n.as_bytes())),
                    None => entry,
                };
                self.headers.push(("Upload-Metadata".into(), value));
            }
        }
        Ok(self)
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The source file of a file upload.
    pub fn path(&self) -> Option<&Path> {
        match &self.body {
            RequestBody::File(p) => Some(p),
            _ => None,
        }
    }

    /// Whether sending the request twice is safe (see [`UploadRequest::idempotent`]).
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotent.unwrap_or_else(|| {
            matches!(self.method.as_str(), "PUT" | "DELETE")
                || self.protocol.is_resumable()
                || self
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("idempotency-key"))
        })
    }

    /// Checks everything that can be checked without touching the sources.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_url(&self.url)?;
        if !is_token(&self.method) {
            return Err(Error::InvalidRequest {
                reason: format!("method {:?} is not an HTTP token", self.method),
            });
        }
        let mut total = 0;
        for (n, v) in &self.headers {
            validate_header(n, v)?;
            total += n.len() + v.len() + 4;
        }
        if total > MAX_HEADERS_LEN {
            return Err(Error::InvalidHeader {
                name: "(all)".into(),
                reason: format!("headers total {total} bytes, over the {MAX_HEADERS_LEN}-byte cap"),
            });
        }
        if let RequestBody::Multipart { .. } = self.body {
            if self
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                return Err(Error::InvalidHeader {
                    name: "Content-Type".into(),
                    reason: "a multipart request sets its own Content-Type; use subtype()".into(),
                });
            }
        }
        if matches!(self.protocol, Protocol::Tus { .. })
            && !matches!(self.body, RequestBody::File(_))
        {
            return Err(Error::InvalidRequest {
                reason: "tus uploads send one file: build them with UploadRequest::new/put/post"
                    .into(),
            });
        }
        if let Some(name) = &self.credentials {
            if name.is_empty() {
                return Err(Error::InvalidRequest {
                    reason: "the credentials provider name is empty".into(),
                });
            }
            if matches!(self.protocol, Protocol::S3(_)) {
                return Err(Error::InvalidRequest {
                    reason: "an S3 upload names its provider on the S3Object \
                             (S3Object::credentials)"
                        .into(),
                });
            }
        }
        if self.client_identity.as_deref() == Some("") {
            return Err(Error::InvalidRequest {
                reason: "the client identity name is empty".into(),
            });
        }
        if let Some(g) = &self.group {
            if g.is_empty() || g.len() > 256 {
                return Err(Error::InvalidRequest {
                    reason: "a group name is 1 to 256 bytes".into(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for UploadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if is_sensitive_header(n) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("UploadRequest")
            .field("method", &self.method)
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("priority", &self.priority)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// Whether `s` is a non-empty RFC 9110 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn validate_header(name: &str, value: &str) -> Result<(), Error> {
    let err = |reason: &str| Error::InvalidHeader {
        name: name.chars().take(64).collect(),
        reason: reason.to_string(),
    };
    if !is_token(name) {
        return Err(err("the name is not an HTTP token"));
    }
    // RFC 9110 field values: visible characters, space, HTAB and obs-text. CR, LF and NUL
    // would inject headers; the other controls would be refused by the HTTP layer only
    // when sent, failing the upload late instead of here.
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(err(
            "the value contains CR, LF, NUL or another control character",
        ));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(err("the value is over 8 KiB"));
    }
    if name.eq_ignore_ascii_case("expect") && !value.trim().eq_ignore_ascii_case("100-continue") {
        return Err(err(
            "only `Expect: 100-continue` is defined (RFC 9110); the crate sends it itself \
             on bodies of 1 MiB or more",
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(err("the crate sets this header itself"));
    }
    Ok(())
}

pub(crate) fn validate_url(url: &str) -> Result<ureq::http::Uri, Error> {
    let err = |reason: &str| Error::InvalidUrl {
        // Enough to recognise it; an 8 KiB URL in a message helps nobody.
        url: {
            let mut u = redact_url(url);
            if u.len() > 200 {
                let cut = (0..=200)
                    .rev()
                    .find(|&i| u.is_char_boundary(i))
                    .unwrap_or(0);
                u.truncate(cut);
                u.push('…');
            }
            u
        },
        reason: reason.to_string(),
    };
    if url.len() > MAX_URL_LEN {
        return Err(err("longer than 8 KiB"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| err(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => return Err(err(&format!("scheme {other:?} is not http or https"))),
        None => return Err(err("no scheme (expected http:// or https://)")),
    }
    // `Uri` takes any digits after the colon; a port to connect to is 1 to 65535.
    let authority = uri.authority().map_or("", |a| a.as_str());
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some((_, port)) = host_port.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
        if !port.is_empty() && !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(err("the port is not a number from 1 to 65535"));
        }
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(uri),
        _ => Err(err("no host")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_validation() {
        assert!(validate_header("X-Ok", "fine value").is_ok());
        assert!(validate_header("Bad Name", "v").is_err());
        assert!(validate_header("X-Inject", "a\r\nEvil: 1").is_err());
        assert!(validate_header("Content-Length", "5").is_err());
        assert!(validate_header("X-Big", &"a".repeat(9000)).is_err());
        assert!(validate_header("X-Esc", "a\x1bb").is_err());
        assert!(validate_header("X-Del", "a\x7fb").is_err());
        assert!(validate_header("X-Tab", "a\tb é").is_ok());
        let e = validate_header("Authorization", "secret\n").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }

    #[test]
    fn url_validation() {
        assert!(validate_url("http://127.0.0.1:8080/x").is_ok());
        assert!(validate_url("https://example.com").is_ok());
        assert!(validate_url("ftp://example.com/x").is_err());
        assert!(validate_url("not a url").is_err());
        assert!(validate_url("/relative").is_err());
        assert!(validate_url("http://h:99999/x").is_err());
        assert!(validate_url("http://h:0/x").is_err());
        assert!(validate_url("http://u:p@h:65535/x").is_ok());
        assert!(validate_url("http://[::1]/x").is_ok());
        assert!(validate_url("http://[::1]:8080/x").is_ok());
        let e = validate_url("ftp://user:pw@example.com/x").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn idempotency_defaults() {
        assert!(UploadRequest::put("http://h/x", "/f").is_idempotent());
        assert!(!UploadRequest::post("http://h/x", "/f").is_idempotent());
        assert!(UploadRequest::post("http://h/x", "/f")
            .header("Idempotency-Key", "k")
            .unwrap()
            .is_idempotent());
        assert!(UploadRequest::post("http://h/x", "/f")
            .idempotent(true)
            .is_idempotent());
    }
}
