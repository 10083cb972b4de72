//! The engine against loopback servers, one module per capability: plain uploads,
//! control, events, scheduling, retries, timeouts, redirects, connectivity, retention,
//! threads, validation, TLS, restarts and small bodies kept in the journal, plus the self-test of `tests/support`.
//!
//! ```sh
//! cargo test --release --test engine                 # all of them
//! cargo test --release --test engine scheduling::    # one module
//! ```

#[path = "../support/mod.rs"]
mod support;

mod connectivity;
mod control;
mod credentials;
mod early_answer;
mod events;
mod log_scan;
mod mtls;
mod races;
mod redirects;
mod restart;
mod retention;
mod retry;
mod scheduling;
mod sendfile;
mod small_bodies;
mod support_selftest;
mod threads;
mod timeouts;
mod tls;
mod upload;
mod validation;

/// The child processes' one entry point (see `support::child`): ignored, so that it is no
/// test of its own; `support::child::command()` runs it with `--ignored` and the role
/// variable of the module whose child body it runs.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[
        (restart::CHILD_ENV, restart::child_process),
        (threads::CHILD_ENV, threads::child_process),
        (events::UNREAD_CHILD_ENV, events::unread_child_process),
    ]);
}
