//! Compaction: interrupted after any of its steps, the store opens with the same live
//! state; done, it shrinks the journal and keeps ids unique.

use background_transfer::journal::record::ProgressV1;
use background_transfer::journal::{
    CompactStep, Durability, Record, Store, COMPACT_FILE, JOURNAL_FILE,
};

use crate::records;

fn filled_store(dir: &std::path::Path) -> Store {
    let mut store = Store::open(dir).unwrap();
    for n in 0..400 {
        store
            .commit(records::record(n), Durability::Batched)
            .unwrap();
    }
    store.sync().unwrap();
    store
}

#[test]
fn interrupted_after_each_step_opens_with_the_same_live_state() {
    for step in [
        CompactStep::PartialWrite,
        CompactStep::Written,
        CompactStep::Synced,
        CompactStep::Renamed,
        CompactStep::Done,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut store = filled_store(&dir);
        let before = store.state().clone();
        let live = store.snapshot().unwrap();
        store.journal_mut().compact_until(&live, step).unwrap();
        drop(store); // the "crash": nothing after the step runs
        let mut reopened = Store::open(&dir).unwrap();
        assert_eq!(reopened.state().uploads, before.uploads, "after {step:?}");
        assert_eq!(reopened.state().next_id, before.next_id, "after {step:?}");
        assert!(
            !dir.join(COMPACT_FILE).exists(),
            "temp file left after {step:?}"
        );
        // And the store goes on working.
        reopened
            .commit(records::record(10_000), Durability::Sync)
            .unwrap();
        drop(reopened);
        let again = Store::open(&dir).unwrap();
        assert!(again.state().uploads.contains_key(&2500), "after {step:?}");
    }
}

#[test]
fn progress_churn_triggers_compaction_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    for n in 0..40 {
        store
            .commit(records::record(n), Durability::Batched)
            .unwrap();
    }
    let live_ids: Vec<u64> = store.state().uploads.keys().copied().collect();
    for i in 0..20_000u64 {
        let id = live_ids[(i % live_ids.len() as u64) as usize];
        let p = Record::Progress(ProgressV1 {
            id,
            bytes_sent: i,
            acked: i / 2,
        });
        store.commit(p, Durability::Batched).unwrap();
    }
    store.sync().unwrap();
    assert!(
        store.journal().records() < 5_000,
        "compaction did not run: {} records",
        store.journal().records()
    );
    let before = store.state().clone();
    drop(store);
    let after = Store::open(&dir).unwrap();
    assert_eq!(after.state().uploads, before.uploads);
    let size = std::fs::metadata(dir.join(JOURNAL_FILE)).unwrap().len();
    assert!(size < 1 << 20, "journal is {size} bytes");
}

#[test]
fn ids_are_not_reused_after_the_highest_upload_is_removed_and_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    for n in [0, 4, 8] {
        store.commit(records::record(n), Durability::Sync).unwrap();
    }
    assert_eq!(store.state().next_id, 3);
    store.commit(Record::Removed(2), Durability::Sync).unwrap();
    store.compact().unwrap();
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.state().next_id, 3);
    assert_eq!(store.state().uploads.len(), 2);
}
