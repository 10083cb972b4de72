//! One store, many programs: an owner (`Uploader`) serves other processes through
//! `Client` over its control socket and its inbox.
//!
//! ```sh
//! cargo test --release --test service
//! ```

#[path = "../support/mod.rs"]
mod support;

mod abuse;
mod basics;
mod producers;
mod strangers;

/// The child processes' one entry point (see `support::child`).
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[
        (producers::OWNER_ENV, producers::owner_process),
        (producers::PRODUCER_ENV, producers::producer_process),
        (strangers::STRANGER_ENV, strangers::stranger_process),
    ]);
}
