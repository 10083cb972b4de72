//! The anchor for the size figure of `cargo bench --bench transfer`: a bare ureq 3 +
//! rustls PUT of a file, with this crate's ureq features
//! (`cargo build --profile minimal --example minimal_ureq`).
//!
//! Usage: `minimal_ureq <url> <file>` uploads the file with PUT and prints the status.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: minimal_ureq <url> <file>".into());
    };
    let resp = ureq::put(&url).send(std::fs::File::open(file)?)?;
    println!("HTTP {}", resp.status());
    Ok(())
}
