//! The journal and the store below the `Uploader`: recovery from every kind of damage,
//! compaction, SIGKILLed appenders and lock holders, injected write and fsync failures,
//! and the fuzz harnesses over their seed corpus.
//!
//! ```sh
//! cargo test --release --test journal                   # all of them
//! cargo test --release --test journal journal_kill::    # one module
//! ```

#[path = "../support/mod.rs"]
mod support;

mod records;

mod fuzz_corpus;
mod journal_compaction;
mod journal_kill;
mod journal_recovery;
mod rollback;
mod storage_faults;

/// The child processes' one entry point (see `support::child`): ignored, so that it is no
/// test of its own; `support::child::command()` runs it with `--ignored` and the role
/// variable of the module whose child body it runs.
#[test]
#[ignore = "child-process entry point: run by support::child::command()"]
fn child_process() {
    support::child::dispatch(&[(journal_kill::CHILD_ENV, journal_kill::child_process)]);
}
