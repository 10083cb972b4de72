//! Upload protocols against real servers: tus 1.0 (`@tus/server`, `tests/tus-server/`).
//!
//! ```sh
//! cargo test --release --test protocols
//! ```

#[path = "../support/mod.rs"]
mod support;

mod tus;

/// The child processes' one entry point (see `support::child`): ignored, so that it is no
/// test of its own; `support::child::command()` runs it with `--ignored` and the role
/// variable of the module whose child body it runs.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[(tus::CHILD_ENV, tus::child_process)]);
}
