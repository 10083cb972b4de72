//! The Azure Blob Storage destination of an upload: [`AzureBlob`], and
//! [`UploadRequest::azure`].

use std::path::PathBuf;

use crate::model::{AzureTarget, Protocol};
use crate::request::{validate_header, RequestBody};
use crate::worker::protocol::azure::{MAX_BLOCK, MAX_BLOCKS};
use crate::{Error, UploadRequest};

/// The default block: 8 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 8 << 20;

/// A block blob in Azure Blob Storage, reached through a SAS URL: the device holds a
/// shared access signature, never the account key.
///
/// ```
/// use background_transfer::{AzureBlob, UploadRequest};
/// let blob = AzureBlob::new(
///     "https://fleet.blob.core.windows.net/videos/cam1/0001.mp4?sv=2021-08-06&sr=c&sp=cw&se=2027-01-01T00%3A00%3A00Z&sig=…",
/// )
/// .content_type("video/mp4");
/// let request = UploadRequest::azure(blob, "/var/spool/cam/0001.mp4");
/// ```
///
/// A file smaller than one block is one Put Blob; a larger one is sent in blocks, each
/// with its `Content-MD5`, and committed with Put Block List. After a crash, a network
/// cut or a pause, the server's block list says which blocks to send again. Headers set
/// on the [`UploadRequest`] (`x-ms-meta-*`, `x-ms-access-tier`, ...) go on the request
/// that creates the blob.
///
/// With a credentials provider ([`UploadRequest::credentials`]) that gives
/// [`crate::Credentials::Url`], each attempt asks it for the SAS URL and a refused SAS
/// (403) asks it once more for a fresh one; the URL given here then needs no SAS, and
/// none is persisted.
#[derive(Debug, Clone)]
pub struct AzureBlob {
    url: String,
    target: AzureTarget,
}

impl AzureBlob {
    /// The blob at `url`: `https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS`.
    pub fn new(url: impl Into<String>) -> Self {
        AzureBlob {
            url: url.into(),
            target: AzureTarget {
                block_size: DEFAULT_BLOCK_SIZE,
                block_prefix: block_prefix(),
                content_type: None,
            },
        }
    }

    /// Bytes per block: at most 4000 MiB, and the file may need at most 50,000 blocks;
    /// 8 MiB by default. A network cut costs at most the block on the wire.
    pub fn block_size(mut self, bytes: u64) -> Self {
        self.target.block_size = bytes;
        self
    }

    /// The blob's `Content-Type`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.target.content_type = Some(content_type.into());
        self
    }
}

/// Eight random hex digits: the upload's own block IDs.
fn block_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:08x}", h.finish() as u32)
}

impl UploadRequest {
    /// Uploads the file at `path` to an Azure block blob. Checked at
    /// [`crate::Uploader::create_upload`].
    pub fn azure(blob: AzureBlob, path: impl Into<PathBuf>) -> Self {
        let mut r = UploadRequest::put(blob.url, path);
        r.protocol = Protocol::Azure(Box::new(blob.target));
        r
    }
}

/// Checks an Azure request (before anything is persisted); other requests pass.
pub(crate) fn validate_request(r: &UploadRequest) -> Result<(), Error> {
    let Protocol::Azure(t) = &r.protocol else {
        return Ok(());
    };
    let invalid = |reason: String| Err(Error::InvalidRequest { reason });
    if !matches!(r.body, RequestBody::File(_)) || r.method != "PUT" {
        return invalid("Azure uploads send one file: build them with UploadRequest::azure".into());
    }
    if t.block_size == 0 || t.block_size > MAX_BLOCK {
        return invalid(format!(
            "the Azure block size {} is outside 1..={MAX_BLOCK} bytes (4000 MiB, the \
             service's limit)",
            t.block_size
        ));
    }
    let (path, query) = r.url.split_once('?').unwrap_or((&r.url, ""));
    let has_sas = query.split('&').any(|kv| kv.starts_with("sig="));
    if !has_sas && r.credentials.is_none() {
        return Err(Error::InvalidUrl {
            url: crate::redact::redact_url(&r.url),
            reason: "an Azure blob URL needs a SAS query (sv=…&sig=…), or the upload a \
                     credentials provider that gives SAS URLs"
                .into(),
        });
    }
    let segments = path
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .count();
    if segments < 2 {
        return Err(Error::InvalidUrl {
            url: crate::redact::redact_url(&r.url),
            reason: "an Azure blob URL names a container and a blob: \
                     https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB?SAS"
                .into(),
        });
    }
    if let Some(ct) = &t.content_type {
        validate_header("x-ms-blob-content-type", ct)?;
    }
    Ok(())
}

/// Checks that a file of `size` bytes fits in [`MAX_BLOCKS`] blocks.
pub(crate) fn check_fits(t: &AzureTarget, size: u64) -> Result<(), Error> {
    let blocks = size.div_ceil(t.block_size);
    if blocks <= MAX_BLOCKS {
        return Ok(());
    }
    let fits = size.div_ceil(MAX_BLOCKS).div_ceil(1 << 20) << 20;
    Err(Error::InvalidRequest {
        reason: format!(
            "a {size}-byte file in blocks of {} bytes needs {blocks} blocks; Azure allows \
             {MAX_BLOCKS} (blocks of {fits} bytes would do)",
            t.block_size
        ),
    })
}
