//! Firmware rollback: a journal written by a newer build, opened by this one. A whole
//! record (checksum right) that this build cannot decode is never a reason to cut the
//! journal: marked skippable, it is skipped and kept byte for byte, and the journal is
//! not compacted over it; not marked, the store is refused with the file untouched
//! (the rule for adding a record kind is in `journal::format`'s docs).

use std::fs;
use std::path::Path;

use background_transfer::journal::format::{self, HEADER_LEN};
use background_transfer::journal::{replay, Durability, Record, Recovery, Store, JOURNAL_FILE};
use background_transfer::{Error, Uploader};

use crate::records;

/// A payload no kind of this build decodes: postcard's variant index 200.
const FUTURE_PAYLOAD: &[u8] = &[200, 1, 7, 7, 7];

/// A store of `n` known records, then a future record (`skippable` or not), then `m`
/// more known records, as a newer build would have left it. Returns the records known
/// to this build, and the file.
fn newer_build_store(dir: &Path, n: u64, skippable: bool, m: u64) -> (Vec<Record>, Vec<u8>) {
    let known: Vec<Record> = (0..n + m).map(records::record).collect();
    let mut bytes = format::header().to_vec();
    for r in &known[..n as usize] {
        bytes.extend(format::encode_frame(r).unwrap());
    }
    bytes.extend(format::encode_raw_frame(FUTURE_PAYLOAD, skippable));
    for r in &known[n as usize..] {
        bytes.extend(format::encode_frame(r).unwrap());
    }
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(JOURNAL_FILE), &bytes).unwrap();
    (known, bytes)
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(JOURNAL_FILE)).unwrap()
}

#[test]
fn a_skippable_record_from_a_newer_build_is_skipped_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (known, before) = newer_build_store(&dir, 12, true, 9);
    let mut store = Store::open(&dir).unwrap();
    assert_eq!(store.recovery(), &Recovery::Clean);
    assert_eq!(
        store.state().uploads,
        replay::fold(&known).uploads,
        "every record around it applied"
    );
    assert_eq!(journal_bytes(&dir), before, "opening rewrote nothing");
    // Appends go after it; an explicit compaction leaves the journal as it is.
    store
        .commit(records::record(100), Durability::Sync)
        .unwrap();
    store.compact().unwrap();
    drop(store);
    let after = journal_bytes(&dir);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "nothing before the append changed"
    );
    let scan = format::scan(&after[HEADER_LEN..]);
    assert_eq!(scan.skipped, 1);
    assert!(scan.damage.is_none());
    assert_eq!(scan.records.last(), Some(&records::record(100)));
}

#[test]
fn compaction_never_drops_a_record_of_a_newer_build() {
    // Enough dead records that this build would compact at once, were it not for the
    // record it does not understand.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (_, before) = newer_build_store(&dir, 4, true, 0);
    let mut store = Store::open(&dir).unwrap();
    for n in 0..6000u64 {
        // The same two records again and again: all but the last are dead.
        store
            .commit(records::record(4 + n % 2), Durability::Batched)
            .unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let after = journal_bytes(&dir);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the newer build's record is still there"
    );
    // The newer build, back after the rollback, finds its record where it left it, and
    // every record this build wrote after it.
    let scan = format::scan(&after[HEADER_LEN..]);
    assert_eq!((scan.skipped, scan.records.len()), (1, 6004));
}

#[test]
fn a_journal_compacted_by_this_build_opens_in_a_newer_one() {
    // The other direction: what this build writes when it does compact (no record of a
    // newer build in it) is a plain journal of known records, which a newer build (whose
    // decoder reads every kind this one writes) reads as it is; modelled by scanning
    // the compacted file with the format's own scanner, byte for byte what both share.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    for n in 0..40 {
        store
            .commit(records::record(n), Durability::Batched)
            .unwrap();
    }
    let live = store.state().clone();
    store.compact().unwrap();
    drop(store);
    let scan = records::scan_journal(&dir);
    assert!(scan.damage.is_none() && scan.skipped == 0);
    let folded = replay::fold(&scan.records);
    assert_eq!(folded.uploads, live.uploads);
    assert_eq!(folded.next_id, live.next_id);
}

#[test]
fn an_unmarked_record_from_a_newer_build_is_refused_and_the_file_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (_, before) = newer_build_store(&dir, 12, false, 9);
    let offset = HEADER_LEN
        + (0..12)
            .map(|n| format::encode_frame(&records::record(n)).unwrap().len())
            .sum::<usize>();
    let err = Store::open(&dir).unwrap_err();
    match &err {
        Error::JournalUnreadable { offset: at, .. } => assert_eq!(*at as usize, offset),
        other => panic!("expected JournalUnreadable, got {other:?}"),
    }
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(journal_bytes(&dir), before, "byte-identical");
    // The program's open says the same, and leaves it too; no copy, no marker.
    let err = Uploader::builder().store_dir(&dir).open().err().unwrap();
    assert!(matches!(err, Error::JournalUnreadable { .. }), "{err}");
    assert_eq!(journal_bytes(&dir), before);
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("journal.corrupt") || n == "quarantine"),
        "{names:?}"
    );
}
