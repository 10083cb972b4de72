//! The S3 destination of an upload: [`S3Object`], and [`UploadRequest::s3`].

use std::path::PathBuf;

use crate::model::{Protocol, S3Target, UrlStyle};
use crate::request::{is_token, validate_header, validate_url, RequestBody};
use crate::worker::protocol::s3::{self, MAX_PART, MIN_PART};
use crate::{Error, UploadRequest};

/// The default part size: 8 MiB, as the AWS CLI uses.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// The provider name an [`S3Object`] uses unless told otherwise.
pub const DEFAULT_CREDENTIALS: &str = "s3";
/// S3's longest key, in bytes.
const MAX_KEY: usize = 1024;

/// An object in an S3 bucket (AWS, or a service that speaks its API: MinIO, R2, B2,
/// Ceph, SeaweedFS, ...), and how to send it.
///
/// ```
/// use background_transfer::{S3Object, UploadRequest};
/// let object = S3Object::new("https://s3.eu-west-1.amazonaws.com", "fleet-videos", "cam1/0001.mp4")
///     .region("eu-west-1")
///     .content_type("video/mp4")
///     .metadata("device", "cam1");
/// let request = UploadRequest::s3(object, "/var/spool/cam/0001.mp4");
/// ```
///
/// The keys come from the credentials provider registered under
/// [`S3Object::credentials`]'s name (`"s3"` by default), asked at each attempt; they
/// are never persisted.
#[derive(Debug, Clone)]
pub struct S3Object {
    target: S3Target,
}

impl S3Object {
    /// The object `key` in `bucket` at `endpoint` (`https://host[:port]`), path-style
    /// (`https://host/bucket/key`). Region `us-east-1`, 8 MiB parts.
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        S3Object {
            target: S3Target {
                endpoint: endpoint.into(),
                style: UrlStyle::Path,
                bucket: bucket.into(),
                key: key.into(),
                region: "us-east-1".into(),
                part_size: DEFAULT_PART_SIZE,
                storage_class: None,
                content_type: None,
                metadata: Vec::new(),
                credentials: DEFAULT_CREDENTIALS.into(),
            },
        }
    }

    /// Virtual-hosted addressing (`https://bucket.host/key`), which AWS prefers.
    pub fn virtual_hosted(mut self, on: bool) -> Self {
        self.target.style = if on {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        self
    }

    /// The signing region. Defaults to `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.target.region = region.into();
        self
    }

    /// Bytes per part of a multipart upload: at least 5 MiB, at most 5 GiB; 8 MiB by
    /// default. It grows (to whole MiB) when the file would need more than 10,000
    /// parts. A file smaller than one part is sent in one PUT.
    pub fn part_size(mut self, bytes: u64) -> Self {
        self.target.part_size = bytes;
        self
    }

    /// `x-amz-storage-class` (`STANDARD_IA`, `GLACIER_IR`, ...).
    pub fn storage_class(mut self, class: impl Into<String>) -> Self {
        self.target.storage_class = Some(class.into());
        self
    }

    /// The object's `Content-Type`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.target.content_type = Some(content_type.into());
        self
    }

    /// User metadata, sent as `x-amz-meta-NAME` (the name is lower-cased, as S3 does).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.target
            .metadata
            .push((name.into().to_ascii_lowercase(), value.into()));
        self
    }

    /// The name of the credentials provider that signs its requests (see
    /// [`crate::UploaderBuilder::credentials`]). Defaults to `"s3"`.
    pub fn credentials(mut self, provider: impl Into<String>) -> Self {
        self.target.credentials = provider.into();
        self
    }

    /// The object's URL (unsigned).
    pub fn url(&self) -> Result<String, Error> {
        let bucket = s3::bucket(&self.target).map_err(|reason| Error::InvalidUrl {
            url: crate::redact::redact_url(&self.target.endpoint),
            reason,
        })?;
        Ok(bucket.object_url(&self.target.key).to_string())
    }
}

impl UploadRequest {
    /// Uploads the file at `path` to an S3 object: one signed PUT if it is smaller than
    /// a part, otherwise a multipart upload that resumes where the server stands after
    /// a crash, a network cut or a pause. Checked at
    /// [`crate::Uploader::create_upload`].
    pub fn s3(object: S3Object, path: impl Into<PathBuf>) -> Self {
        let url = object
            .url()
            .unwrap_or_else(|_| object.target.endpoint.clone());
        let mut r = UploadRequest::put(url, path);
        r.protocol = Protocol::S3(Box::new(object.target));
        r
    }
}

/// Checks an S3 request (before anything is persisted); other requests pass.
pub(crate) fn validate_request(r: &UploadRequest) -> Result<(), Error> {
    let Protocol::S3(t) = &r.protocol else {
        return Ok(());
    };
    validate(t)?;
    if !matches!(r.body, RequestBody::File(_)) || r.method != "PUT" {
        return Err(Error::InvalidRequest {
            reason: "S3 uploads PUT one file: build them with UploadRequest::s3".into(),
        });
    }
    if let Some((name, _)) = r.headers.first() {
        return Err(Error::InvalidHeader {
            name: name.clone(),
            reason: "an S3 upload signs its own headers: set the content type and metadata \
                     on the S3Object"
                .into(),
        });
    }
    Ok(())
}

/// Checks an S3 target.
fn validate(t: &S3Target) -> Result<(), Error> {
    let invalid = |reason: String| Err(Error::InvalidRequest { reason });
    validate_url(&t.endpoint)?;
    if t.bucket.is_empty() {
        return invalid("the S3 bucket name is empty".into());
    }
    if t.bucket.contains('/') {
        return invalid(format!("the S3 bucket name {:?} holds a '/'", t.bucket));
    }
    if t.key.is_empty() {
        return invalid("the S3 object key is empty".into());
    }
    if t.key.len() > MAX_KEY {
        return invalid(format!(
            "the S3 object key is {} bytes long; S3 allows at most {MAX_KEY}",
            t.key.len()
        ));
    }
    if t.region.is_empty() || !is_token(&t.region) {
        return invalid(format!("the S3 region {:?} is not a region name", t.region));
    }
    if t.part_size < MIN_PART {
        return invalid(format!(
            "the S3 part size {} is under S3's minimum of {MIN_PART} bytes (5 MiB)",
            t.part_size
        ));
    }
    if t.part_size > MAX_PART {
        return invalid(format!(
            "the S3 part size {} is over S3's maximum of {MAX_PART} bytes (5 GiB)",
            t.part_size
        ));
    }
    if t.credentials.is_empty() {
        return invalid("the S3 credentials provider name is empty".into());
    }
    for (name, value) in &t.metadata {
        validate_header(&format!("x-amz-meta-{name}"), value)?;
    }
    if let Some(ct) = &t.content_type {
        validate_header("content-type", ct)?;
    }
    if let Some(class) = &t.storage_class {
        if !is_token(class) {
            return invalid(format!("the S3 storage class {class:?} is not a token"));
        }
    }
    s3::bucket(t).map_err(|reason| Error::InvalidRequest {
        reason: format!("S3 bucket {:?}: {reason}", t.bucket),
    })?;
    Ok(())
}

/// Fixes the part size for a file of `size` bytes (it may grow to fit 10,000 parts).
pub(crate) fn fit_part_size(t: &mut S3Target, size: u64) -> Result<(), Error> {
    match s3::part_size_for(size, t.part_size) {
        Some(p) => {
            t.part_size = p;
            Ok(())
        }
        None => Err(Error::InvalidRequest {
            reason: format!(
                "a {size}-byte file needs more than {} parts even at S3's largest part \
                 ({MAX_PART} bytes)",
                s3::MAX_PARTS
            ),
        }),
    }
}
