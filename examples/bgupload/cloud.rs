//! `--protocol gcs` and `--protocol azure`: a Google Cloud Storage resumable upload
//! (URL: the initiation URL, or a session URI the user started) with the bearer token
//! read from `BGUPLOAD_BEARER_TOKEN` when a request is sent (never written to the
//! store), and an Azure block blob through its SAS URL.

use background_transfer::UploadRequest;
#[cfg(feature = "gcs")]
use background_transfer::{
    CredentialRequest, Credentials, GcsUpload, ProviderError, UploaderBuilder,
};

use crate::cli::AddArgs;
use crate::Failure;

/// The provider name the CLI's GCS uploads record.
#[cfg(feature = "gcs")]
pub const BEARER: &str = "bearer-env";

/// Registers the bearer-token provider.
#[cfg(feature = "gcs")]
pub fn register(b: UploaderBuilder) -> UploaderBuilder {
    b.credentials(BEARER, bearer_from_env)
}

/// `Authorization: Bearer $BGUPLOAD_BEARER_TOKEN`, read at each ask (a refreshed
/// token in the environment of a new `run` is used at once); none if it is unset (a
/// signed session URI needs none).
#[cfg(feature = "gcs")]
fn bearer_from_env(_: &CredentialRequest) -> Result<Credentials, ProviderError> {
    let headers = match std::env::var("BGUPLOAD_BEARER_TOKEN") {
        Ok(t) if !t.trim().is_empty() => {
            vec![("Authorization".to_string(), format!("Bearer {}", t.trim()))]
        }
        _ => vec![],
    };
    Ok(Credentials::Headers(headers))
}

fn usage(message: String) -> Failure {
    let mut f = Failure::new(message);
    f.code = crate::EXIT_USAGE;
    f
}

fn refuse_method(a: &AddArgs, protocol: &str) -> Result<(), Failure> {
    if a.method.as_deref().is_some_and(|m| m != "PUT") {
        return Err(usage(format!("-X does not apply to --protocol {protocol}")));
    }
    if a.region.is_some() {
        return Err(usage("--region applies to --protocol s3 only".into()));
    }
    Ok(())
}

/// A GCS upload of `a.file`: a URL holding `upload_id=` is a session the user started;
/// any other is an initiation URL. `-H` headers go on the initiation.
#[cfg(feature = "gcs")]
pub fn gcs(a: &AddArgs) -> Result<UploadRequest, Failure> {
    refuse_method(a, "gcs")?;
    let is_session = a
        .url
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("upload_id=")));
    let mut upload = if is_session {
        GcsUpload::session(a.url.clone())
    } else {
        GcsUpload::initiation(a.url.clone())
    };
    if let Some(c) = a.part_size {
        upload = upload.chunk_size(c);
    }
    let mut req = UploadRequest::gcs(upload, a.file.clone())
        .priority(a.priority)
        .credentials(BEARER);
    for (name, value) in &a.headers {
        req = req.header(name, value).map_err(crate::refused)?;
    }
    if let Some(g) = &a.group {
        req = req.group(g.clone());
    }
    Ok(req)
}

/// An Azure block blob at its SAS URL. `-H` headers (`x-ms-meta-*`) go on the request
/// that creates the blob.
#[cfg(feature = "azure")]
pub fn azure(a: &AddArgs) -> Result<UploadRequest, Failure> {
    refuse_method(a, "azure")?;
    let mut blob = background_transfer::AzureBlob::new(a.url.clone());
    if let Some(b) = a.part_size {
        blob = blob.block_size(b);
    }
    let mut req = UploadRequest::azure(blob, a.file.clone()).priority(a.priority);
    for (name, value) in &a.headers {
        req = req.header(name, value).map_err(crate::refused)?;
    }
    if let Some(g) = &a.group {
        req = req.group(g.clone());
    }
    Ok(req)
}
