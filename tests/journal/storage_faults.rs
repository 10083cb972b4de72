//! Storage faults: a failed write or fsync of the journal gets a typed error, poisons the
//! handle, and loses nothing acknowledged before it; the store opens again afterwards.

use std::sync::Arc;

use background_transfer::journal::fault::{FailNth, FileOp};
use background_transfer::journal::{Durability, Store};
use background_transfer::Error;

use crate::records;
use crate::support::{EIO, ENOSPC};

/// Appends records 0.. with `Sync` until one fails; returns how many were acknowledged.
fn append_until_failure(store: &mut Store, max: u64) -> (u64, Error) {
    for n in 0..max {
        if let Err(e) = store.commit(records::record(n), Durability::Sync) {
            return (n, e);
        }
    }
    panic!("no failure injected in {max} appends");
}

#[test]
fn every_injected_failure_is_typed_and_loses_nothing_acknowledged() {
    let mut injected = 0;
    for only in [Some(FileOp::Write), Some(FileOp::Fsync), None] {
        for n in 1..=12u64 {
            for sticky in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let dir = tmp.path().join("s");
                let mut store = Store::open(&dir).unwrap();
                let hook = Arc::new(FailNth::new(
                    n,
                    sticky,
                    only,
                    if n % 2 == 0 { EIO } else { ENOSPC },
                ));
                store.set_fault_hook(Some(hook));
                let (acked, err) = append_until_failure(&mut store, 100);
                injected += 1;
                assert!(
                    matches!(&err, Error::Io { op, .. } if op.contains("journal")),
                    "{only:?} n={n}: {err}"
                );
                assert!(err.to_string().contains("journal"), "names the file: {err}");
                // The handle refuses everything after: no success can be trusted now.
                let again = store
                    .commit(records::record(999), Durability::Sync)
                    .unwrap_err();
                assert!(matches!(again, Error::JournalPoisoned { .. }), "{again}");
                drop(store);
                // Reopen (the fault is gone, as after freeing space): every acknowledged
                // record is there, in order, and nothing that was never written.
                let store = Store::open(&dir).unwrap();
                let scan = records::scan_journal(&dir);
                assert!(
                    scan.records.len() as u64 >= acked,
                    "{only:?} n={n}: lost acknowledged records"
                );
                assert!(scan.records.len() as u64 <= acked + 1);
                for (i, r) in scan.records.iter().enumerate() {
                    assert_eq!(*r, records::record(i as u64));
                }
                let mut store = store;
                store
                    .commit(records::record(500), Durability::Sync)
                    .unwrap();
            }
        }
    }
    eprintln!("{injected} write/fsync faults injected, 0 acknowledged records lost");
}

#[test]
fn a_failed_compaction_leaves_the_journal_working() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    for n in 0..200 {
        store
            .commit(records::record(n), Durability::Batched)
            .unwrap();
    }
    store.sync().unwrap();
    let before = store.state().clone();
    store.set_fault_hook(Some(Arc::new(FailNth::new(
        1,
        true,
        Some(FileOp::Compact),
        ENOSPC,
    ))));
    let err = store.compact().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    // Appends still work, and a reopen sees everything.
    store
        .commit(records::record(1000), Durability::Sync)
        .unwrap();
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.state().uploads.len(), before.uploads.len() + 1);
}

/// A failed fsync takes every record since the last good one with it, as a crash would:
/// batched records written before it, and the record whose commit failed. A caller that
/// was told "failed" (a create fsynced together with its Running record) never finds
/// its record after a reopen; everything fsynced before stays.
#[test]
fn a_failed_fsync_cuts_every_record_since_the_last_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    for n in 0..3 {
        store.commit(records::record(n), Durability::Sync).unwrap();
    }
    // The next fsync fails.
    store.set_fault_hook(Some(Arc::new(FailNth::new(
        1,
        false,
        Some(FileOp::Fsync),
        EIO,
    ))));
    store
        .commit(records::record(3), Durability::Batched)
        .unwrap();
    store
        .commit(records::record(4), Durability::Batched)
        .unwrap();
    let err = store.sync().unwrap_err();
    assert!(
        matches!(&err, Error::Io { op, .. } if op.contains("fsync")),
        "{err}"
    );
    drop(store);
    Store::open(&dir).unwrap();
    let scan = records::scan_journal(&dir);
    let expected: Vec<_> = (0..3).map(records::record).collect();
    assert_eq!(
        scan.records, expected,
        "the unsynced records went with the fsync"
    );
}
