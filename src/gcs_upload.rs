//! The Google Cloud Storage destination of an upload: [`GcsUpload`], and
//! [`UploadRequest::gcs`].

use std::path::PathBuf;

use crate::model::{GcsTarget, Protocol};
use crate::request::{validate_header, RequestBody};
use crate::worker::protocol::gcs::CHUNK_QUANTUM;
use crate::{Error, UploadRequest};

/// The default chunk: 8 MiB, as Google's client libraries use.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 << 20;

/// A Google Cloud Storage resumable upload (the protocol YouTube and Drive uploads use
/// too), started from an initiation URL or continuing a session the program obtained.
///
/// ```
/// use background_transfer::{GcsUpload, UploadRequest};
/// let upload = GcsUpload::initiation(
///     "https://storage.googleapis.com/upload/storage/v1/b/fleet/o?uploadType=resumable&name=cam1/0001.mp4",
/// )
/// .content_type("video/mp4");
/// // The bearer token comes from the provider registered as "gcs", at each attempt.
/// let request = UploadRequest::gcs(upload, "/var/spool/cam/0001.mp4").credentials("gcs");
/// ```
///
/// The session URI is journaled before the first chunk is sent, so that an upload
/// interrupted by a crash, a network cut or a pause continues where the server says it
/// stopped. A session that expired (Google keeps one for a week) is started again from
/// the initiation URL; a session the program gave cannot be, and ends the upload in
/// [`Error::Service`] with the code `SessionExpired`.
#[derive(Debug, Clone)]
pub struct GcsUpload {
    url: String,
    target: GcsTarget,
}

impl GcsUpload {
    /// A new session, started by a `POST` to `url` (JSON API:
    /// `…/upload/storage/v1/b/BUCKET/o?uploadType=resumable&name=NAME`). Headers set on
    /// the [`UploadRequest`] go on this `POST` (`x-goog-meta-*`, `X-Goog-User-Project`,
    /// `x-goog-resumable: start` for a signed XML API URL); credentials from the
    /// upload's provider ([`UploadRequest::credentials`]) go on every request.
    pub fn initiation(url: impl Into<String>) -> Self {
        Self::with(url.into(), false)
    }

    /// A session the program started itself (a backend that hands out session URIs,
    /// or a signed URL it initiated).
    pub fn session(uri: impl Into<String>) -> Self {
        Self::with(uri.into(), true)
    }

    fn with(url: String, session_given: bool) -> Self {
        GcsUpload {
            url,
            target: GcsTarget {
                session_given,
                chunk_size: DEFAULT_CHUNK_SIZE,
                content_type: None,
            },
        }
    }

    /// Bytes per chunk: a multiple of 256 KiB; 8 MiB by default. A network cut costs
    /// at most the chunk on the wire.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.target.chunk_size = bytes;
        self
    }

    /// The object's `Content-Type` (sent as `X-Upload-Content-Type` on the initiation).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.target.content_type = Some(content_type.into());
        self
    }
}

impl UploadRequest {
    /// Uploads the file at `path` with a Google Cloud Storage resumable session. Checked
    /// at [`crate::Uploader::create_upload`].
    pub fn gcs(upload: GcsUpload, path: impl Into<PathBuf>) -> Self {
        let mut r = UploadRequest::put(upload.url, path);
        r.protocol = Protocol::Gcs(Box::new(upload.target));
        r
    }
}

/// Checks a GCS request (before anything is persisted); other requests pass.
pub(crate) fn validate_request(r: &UploadRequest) -> Result<(), Error> {
    let Protocol::Gcs(t) = &r.protocol else {
        return Ok(());
    };
    let invalid = |reason: String| Err(Error::InvalidRequest { reason });
    if !matches!(r.body, RequestBody::File(_)) || r.method != "PUT" {
        return invalid("GCS uploads send one file: build them with UploadRequest::gcs".into());
    }
    if t.chunk_size == 0 || t.chunk_size % CHUNK_QUANTUM != 0 {
        return invalid(format!(
            "the GCS chunk size {} is not a multiple of 256 KiB ({CHUNK_QUANTUM} bytes), as \
             Google Cloud Storage requires",
            t.chunk_size
        ));
    }
    if let Some(ct) = &t.content_type {
        validate_header("X-Upload-Content-Type", ct)?;
    }
    if t.session_given {
        if let Some((name, _)) = r.headers.first() {
            return Err(Error::InvalidHeader {
                name: name.clone(),
                reason: "a GCS session the program gave is started already: its headers \
                         went on its initiation"
                    .into(),
            });
        }
        if t.content_type.is_some() {
            return invalid(
                "a GCS session the program gave is started already: its content type was \
                 set by its initiation"
                    .into(),
            );
        }
    }
    Ok(())
}
