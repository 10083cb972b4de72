//! Journal recovery: every cut, tail and kind of damage behaves as the recovery rules say.

use std::fs;
use std::path::Path;

use background_transfer::journal::format::{self, HEADER_LEN};
use background_transfer::journal::{replay, Durability, Record, Recovery, Store, JOURNAL_FILE};
use background_transfer::Error;

use crate::records;

fn write_store(dir: &Path, n: u64) -> (Vec<Record>, Vec<usize>) {
    let mut store = Store::open(dir).unwrap();
    let mut written = Vec::new();
    for i in 0..n {
        let r = records::record(i);
        store.commit(r.clone(), Durability::Batched).unwrap();
        written.push(r);
    }
    store.sync().unwrap();
    drop(store);
    // Offsets where each record ends.
    let mut ends = Vec::new();
    let mut pos = HEADER_LEN;
    for r in &written {
        pos += format::encode_frame(r).unwrap().len();
        ends.push(pos);
    }
    (written, ends)
}

fn journal(dir: &Path) -> std::path::PathBuf {
    dir.join(JOURNAL_FILE)
}

fn reopen_records(dir: &Path) -> (Store, Vec<Record>) {
    let store = Store::open(dir).unwrap();
    // Read the records back through the file to compare with what was written.
    let scan = records::scan_journal(dir);
    assert!(scan.damage.is_none(), "journal not clean after recovery");
    (store, scan.records)
}

#[test]
fn truncation_at_every_offset_recovers_exactly_the_whole_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (written, ends) = write_store(&dir, 60);
    let full = fs::read(journal(&dir)).unwrap();
    assert_eq!(*ends.last().unwrap(), full.len());
    let cut_dir = tmp.path().join("cut");
    for cut in HEADER_LEN..=full.len() {
        let _ = fs::remove_dir_all(&cut_dir);
        fs::create_dir_all(&cut_dir).unwrap();
        fs::write(journal(&cut_dir), &full[..cut]).unwrap();
        let store = Store::open(&cut_dir).unwrap();
        let whole = ends.iter().take_while(|&&e| e <= cut).count();
        let boundary = cut == HEADER_LEN || ends.contains(&cut);
        match store.recovery() {
            Recovery::Clean => assert!(boundary, "cut {cut} reported clean"),
            Recovery::TornTail { offset, .. } => {
                assert!(!boundary, "cut {cut} at a boundary reported torn");
                let expected = if whole == 0 {
                    HEADER_LEN
                } else {
                    ends[whole - 1]
                };
                assert_eq!(*offset as usize, expected);
            }
            other => panic!("cut {cut}: unexpected {other:?}"),
        }
        let expected = replay::fold(&written[..whole]);
        assert_eq!(store.state().uploads, expected.uploads, "cut {cut}");
        drop(store);
        let (store, recs) = reopen_records(&cut_dir);
        assert_eq!(
            recs,
            written[..whole],
            "cut {cut}: records are not the prefix"
        );
        assert_eq!(
            store.recovery(),
            &Recovery::Clean,
            "recovery is not idempotent"
        );
    }
}

#[test]
fn torn_header_starts_afresh() {
    let tmp = tempfile::tempdir().unwrap();
    for cut in 0..HEADER_LEN {
        let dir = tmp.path().join(format!("h{cut}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(journal(&dir), &format::header()[..cut]).unwrap();
        let mut store = Store::open(&dir).unwrap();
        assert_eq!(store.recovery(), &Recovery::Created);
        store.commit(records::record(0), Durability::Sync).unwrap();
    }
}

#[test]
fn zero_filled_tails_are_torn_tails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (written, _) = write_store(&dir, 20);
    let full = fs::read(journal(&dir)).unwrap();
    for zeros in [1usize, 2, 7, 8, 9, 100, 4096, 8192] {
        let mut bytes = full.clone();
        bytes.resize(full.len() + zeros, 0);
        fs::write(journal(&dir), &bytes).unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(
            store.recovery(),
            &Recovery::TornTail {
                offset: full.len() as u64,
                dropped: zeros as u64
            }
        );
        drop(store);
        let (_, recs) = reopen_records(&dir);
        assert_eq!(recs, written);
    }
    assert!(!tmp.path().join("s/journal.corrupt-1").exists());
}

#[test]
fn garbage_tail_is_cut_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (written, _) = write_store(&dir, 20);
    let full = fs::read(journal(&dir)).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = full.clone();
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    // Make sure the garbage's length field is not one that merely runs off the end.
    bytes[full.len()..full.len() + 4].copy_from_slice(&10u32.to_le_bytes());
    fs::write(journal(&dir), &bytes).unwrap();
    let store = Store::open(&dir).unwrap();
    match store.recovery() {
        Recovery::Corrupt {
            offset, saved_as, ..
        } => {
            assert_eq!(*offset as usize, full.len());
            assert_eq!(
                fs::read(saved_as).unwrap(),
                bytes,
                "the copy is the file as found"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(store);
    let (_, recs) = reopen_records(&dir);
    assert_eq!(recs, written);
}

#[test]
fn oversize_length_field_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (written, ends) = write_store(&dir, 20);
    let mut bytes = fs::read(journal(&dir)).unwrap();
    let at = ends[9];
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(journal(&dir), &bytes).unwrap();
    let store = Store::open(&dir).unwrap();
    let Recovery::Corrupt { offset, reason, .. } = store.recovery() else {
        panic!("unexpected {:?}", store.recovery());
    };
    assert_eq!(*offset as usize, at);
    assert!(reason.contains("exceeds"), "{reason}");
    assert_eq!(store.state().uploads, replay::fold(&written[..10]).uploads);
}

#[test]
fn checksum_flip_in_the_middle_keeps_the_prefix_and_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let (written, ends) = write_store(&dir, 40);
    let original = fs::read(journal(&dir)).unwrap();
    let mut bytes = original.clone();
    let at = ends[19] + 12; // inside record 20's payload
    bytes[at] ^= 0x01;
    fs::write(journal(&dir), &bytes).unwrap();
    let mut store = Store::open(&dir).unwrap();
    let Recovery::Corrupt {
        offset,
        dropped,
        reason,
        saved_as,
    } = store.recovery().clone()
    else {
        panic!("unexpected {:?}", store.recovery());
    };
    assert_eq!(offset as usize, ends[19]);
    assert_eq!(dropped as usize, bytes.len() - ends[19]);
    assert!(reason.contains("checksum"), "{reason}");
    assert_eq!(saved_as, dir.join("journal.corrupt-1"));
    assert_eq!(fs::read(&saved_as).unwrap(), bytes);
    assert_eq!(store.state().uploads, replay::fold(&written[..20]).uploads);
    // The ids of the records past the damage (which still check out) are not handed
    // out again: one record after the kept ones says so.
    let all_ids = replay::fold(&written).next_id;
    assert_eq!(store.state().next_id, all_ids);
    // Appending after recovery works, and a second damage gets the next name.
    store
        .commit(records::record(1000), Durability::Sync)
        .unwrap();
    drop(store);
    let (_, recs) = reopen_records(&dir);
    assert_eq!(recs.len(), 22);
    assert_eq!(recs[20], Record::Removed(all_ids - 1));
    assert_eq!(recs[21], records::record(1000));
}

#[test]
fn wrong_magic_and_newer_version_are_typed_errors_and_leave_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    write_store(&dir, 5);
    let original = fs::read(journal(&dir)).unwrap();

    let mut wrong = original.clone();
    wrong[0] = b'X';
    fs::write(journal(&dir), &wrong).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(matches!(err, Error::JournalNotRecognized { .. }), "{err}");
    assert!(err.to_string().contains("journal"), "{err}");
    assert_eq!(fs::read(journal(&dir)).unwrap(), wrong);

    let mut newer = original.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(journal(&dir), &newer).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            Error::JournalVersion {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fs::read(journal(&dir)).unwrap(), newer);
}

#[test]
fn record_over_the_cap_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    store.commit(records::record(0), Durability::Sync).unwrap();
    let before = store.journal().len();
    let mut huge = records::request(1);
    huge.headers.push(("X-Big".into(), "a".repeat(2 << 20)));
    let rec = Record::Created(background_transfer::journal::record::CreatedV1 {
        id: 1,
        created_ms: 0,
        request: huge,
    });
    let err = store.commit(rec, Durability::Sync).unwrap_err();
    assert!(matches!(err, Error::RecordTooLarge { .. }), "{err}");
    assert_eq!(store.journal().len(), before);
    store.commit(records::record(4), Durability::Sync).unwrap();
    drop(store);
    assert_eq!(Store::open(&dir).unwrap().state().uploads.len(), 2);
}

#[test]
fn store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let mut store = Store::open(&dir).unwrap();
    store.commit(records::record(0), Durability::Sync).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}
