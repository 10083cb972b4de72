//! This crate's runs: one `Uploader`, timed from `create_upload` to `wait()`, with what
//! each upload cost the journal.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use background_transfer::journal::format::{scan, HEADER_LEN};
use background_transfer::journal::process_fsyncs;
use background_transfer::{UploadRequest, Uploader, UploaderBuilder};

use crate::contest::{check_answer, Target};
use crate::measure::{process_cpu, JournalCost};

/// The crate's `Uploader` for a store in `store`, trusting `ca_pem` (if not empty), with
/// `BGXFER_BENCH_BUFFER` as its `buffer_size` if set.
pub fn builder(store: &Path, ca_pem: &str) -> UploaderBuilder {
    let mut builder = Uploader::builder().store_dir(store);
    if !ca_pem.is_empty() {
        builder = builder.add_root_certificate_pem(ca_pem.to_string());
    }
    if let Some(b) = std::env::var("BGXFER_BENCH_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.buffer_size(b);
    }
    builder
}

pub fn journal_path(up: &Uploader) -> PathBuf {
    up.store_dir().join("journal")
}

pub fn run_crate(t: &Target, up: &Uploader, cost: &mut JournalCost) -> (f64, f64) {
    let journal = journal_path(up);
    let len0 = fs::metadata(&journal).map_or(0, |m| m.len());
    let f0 = process_fsyncs();
    let c0 = process_cpu();
    let start = Instant::now();
    let op = up
        .create_upload(UploadRequest::put(t.url.clone(), t.file))
        .expect("create_upload");
    let info = op.wait().expect("upload");
    let wall = start.elapsed().as_secs_f64();
    let c1 = process_cpu();
    let f1 = process_fsyncs();
    assert_eq!(info.status, 200, "crate upload answered {}", info.status);
    let mut answer = String::new();
    op.response_body()
        .expect("response body")
        .read_to_string(&mut answer)
        .expect("read response body");
    check_answer("this crate", &answer, t.size);
    // Everything the upload wrote is on disk: `Completed` is an fsynced record.
    let bytes = fs::read(&journal).unwrap_or_default();
    cost.bytes_uploaded += t.size;
    cost.fsyncs += f1 - f0;
    cost.journal_bytes += (bytes.len() as u64).saturating_sub(len0);
    let from = (len0 as usize).clamp(HEADER_LEN, bytes.len());
    cost.records += scan(&bytes[from..]).records.len() as u64;
    (wall, c1 - c0)
}
