//! `--protocol s3`: the object URL taken apart, and the credentials provider that reads
//! the usual AWS environment variables when a request is signed (they are never written
//! to the store).

use background_transfer::{
    CredentialRequest, Credentials, ProviderError, S3Keys, UploadRequest, UploaderBuilder,
};

use crate::cli::AddArgs;
use crate::Failure;

/// The provider name the CLI's S3 uploads record.
pub const PROVIDER: &str = "aws-env";

/// Registers the environment provider.
pub fn register(b: UploaderBuilder) -> UploaderBuilder {
    b.credentials(PROVIDER, from_env)
}

fn from_env(_: &CredentialRequest) -> Result<Credentials, ProviderError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err(ProviderError::permanent(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set for `run` or `send`",
        ));
    };
    let mut keys = S3Keys::new(key, secret);
    if let Some(token) = var("AWS_SESSION_TOKEN") {
        keys = keys.session_token(token);
    }
    Ok(Credentials::S3(keys))
}

/// `http(s)://HOST[:PORT]/BUCKET/KEY` as an S3 upload of `a.file`.
pub fn request(a: &AddArgs) -> Result<UploadRequest, Failure> {
    let usage = |why: &str| {
        let mut f = Failure::new(format!(
            "--protocol s3 takes URL as http(s)://HOST[:PORT]/BUCKET/KEY: {why} in {:?}",
            a.url
        ));
        f.code = crate::EXIT_USAGE;
        f
    };
    let (scheme, rest) = a.url.split_once("://").ok_or_else(|| usage("no scheme"))?;
    let (authority, path) = rest.split_once('/').ok_or_else(|| usage("no bucket"))?;
    let (bucket, key) = path.split_once('/').ok_or_else(|| usage("no key"))?;
    if a.method.as_deref().is_some_and(|m| m != "PUT") || !a.headers.is_empty() {
        return Err(usage(
            "-X and -H do not apply to S3 (it signs its own PUTs)",
        ));
    }
    let region = a
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "us-east-1".into());
    let mut object = background_transfer::S3Object::new(
        format!("{scheme}://{authority}"),
        percent_decode(bucket),
        percent_decode(key),
    )
    .region(region)
    .credentials(PROVIDER);
    if let Some(p) = a.part_size {
        object = object.part_size(p);
    }
    Ok(UploadRequest::s3(object, a.file.clone()).priority(a.priority))
}

/// `%XX` escapes decoded (a key with spaces is written `a%20b` in a URL).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
