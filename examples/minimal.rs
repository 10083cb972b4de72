//! The smallest program using the crate: the size figure of `cargo bench --bench transfer`
//! (built with `cargo build --profile minimal --example minimal`).
//!
//! Usage: `minimal <url> <file>` uploads the file with PUT and prints the status.

use background_transfer::{UploadRequest, Uploader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: minimal <url> <file>".into());
    };
    let uploader = Uploader::builder().store_dir("minimal-store").open()?;
    let op = uploader.create_upload(UploadRequest::put(url, file))?;
    println!("HTTP {}", op.wait()?.status);
    Ok(())
}
