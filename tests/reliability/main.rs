//! What must hold when things go wrong: SIGKILL chaos, hostile servers, bad input,
//! security (private store, no leaked credentials, no bad certificate let through) and
//! storage faults under the `Uploader`.
//!
//! ```sh
//! cargo test --release --test reliability                          # all of them
//! cargo test --release --test reliability chaos:: -- --nocapture   # one module
//! ```

#[path = "../support/mod.rs"]
mod support;

mod rawserver;

mod bad_input;
mod chaos;
mod hostile;
mod security;
mod storage;

/// The child processes' one entry point (see `support::child`): ignored, so that it is no
/// test of its own; `support::child::command()` runs it with `--ignored` and the role
/// variable of the module whose child body it runs.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[
        (bad_input::CHILD_ENV, bad_input::child_process),
        (chaos::CHILD_ENV, chaos::child_process),
        (hostile::CHILD_ENV, hostile::child_process),
        (security::CHILD_ENV, security::child_process),
        (security::LOG_CHILD_ENV, security::credentials_child_process),
    ]);
}
