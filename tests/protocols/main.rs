//! Upload protocols against real servers: tus 1.0 (`@tus/server`, `tests/tus-server/`)
//! and, with their features, S3 (moto, s3rver and s3s-fs; see `s3.rs`), Google Cloud
//! Storage (gcp-storage-emulator; `gcs.rs`) and Azure block blobs (Azurite; `azure.rs`).
//!
//! ```sh
//! cargo test --release --all-features --test protocols
//! ```

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "gcs")]
mod gcs;
#[cfg(feature = "s3")]
mod s3;
mod tus;

/// The child processes' one entry point (see `support::child`): ignored, so that it is no
/// test of its own; `support::child::command()` runs it with `--ignored` and the role
/// variable of the module whose child body it runs.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[
        (tus::CHILD_ENV, tus::child_process),
        #[cfg(feature = "s3")]
        (s3::CHILD_ENV, s3::child_process),
        #[cfg(feature = "gcs")]
        (gcs::CHILD_ENV, gcs::child_process),
        #[cfg(feature = "azure")]
        (azure::CHILD_ENV, azure::child_process),
    ]);
}
