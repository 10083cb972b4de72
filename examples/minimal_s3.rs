//! The smallest program that uploads to S3 (the `s3` feature): the S3 size figure of
//! `cargo bench --bench transfer` (built with
//! `cargo build --profile minimal --features s3 --example minimal_s3`).
//!
//! Usage: `minimal_s3 <endpoint> <bucket> <key> <file>` uploads the file with the keys
//! in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, and prints the status.

use background_transfer::{Credentials, S3Keys, S3Object, UploadRequest, Uploader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, bucket, key, file] = args.as_slice() else {
        return Err("usage: minimal_s3 <endpoint> <bucket> <key> <file>".into());
    };
    let uploader = Uploader::builder()
        .store_dir("minimal-store")
        .credentials("s3", |_: &background_transfer::CredentialRequest| {
            let var = |n| std::env::var(n).unwrap_or_default();
            Ok(Credentials::S3(S3Keys::new(
                var("AWS_ACCESS_KEY_ID"),
                var("AWS_SECRET_ACCESS_KEY"),
            )))
        })
        .open()?;
    let object = S3Object::new(endpoint.as_str(), bucket.as_str(), key.as_str());
    let op = uploader.create_upload(UploadRequest::s3(object, file))?;
    println!("HTTP {}", op.wait()?.status);
    Ok(())
}
