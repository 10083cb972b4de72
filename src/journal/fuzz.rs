//! Fuzz harnesses for the journal's decoder and replay. They live in the library so that
//! `cargo fuzz` targets are one line each and `cargo test` runs the same checks over the
//! committed corpus. Each panics (the fuzzer's finding) when an invariant breaks.

use super::format::{self, HeaderCheck, HEADER_LEN};
use super::record::Record;
use super::replay;

/// Decodes one frame from arbitrary bytes. Invariants: no panic; a decoded record
/// re-encodes to a frame that decodes to the same record (encode→decode round trip).
pub fn decode_record(data: &[u8]) {
    if let Ok(Some((format::Frame::Record(record), used))) = format::decode_frame(data) {
        assert!(used <= data.len(), "frame claims more bytes than it had");
        let frame = format::encode_frame(&record).expect("a decoded record fits the cap");
        let (again, again_used) = format::decode_frame(&frame)
            .expect("our own frame decodes")
            .expect("our own frame is not empty");
        assert_eq!(
            again,
            format::Frame::Record(record),
            "encode→decode changed the record"
        );
        assert_eq!(again_used, frame.len());
    }
}

/// Replays arbitrary bytes as a whole journal file. Invariants: no panic; the fold
/// accepts whatever decodes; recovery is idempotent (the recovered prefix scans clean to
/// the same records); and cutting a journal of the recovered records anywhere recovers
/// exactly the whole records before the cut, in order (recovered is a prefix of written).
pub fn replay_file(data: &[u8]) {
    if format::check_header(data) != HeaderCheck::Valid {
        return replay_body(data);
    }
    replay_body(data.get(HEADER_LEN..).unwrap_or_default());
}

fn replay_body(body: &[u8]) {
    let scan = format::scan(body);
    assert!(scan.valid_len <= body.len());
    let state = replay::fold(&scan.records);
    // Compaction's invariant: the snapshot, with the bodies the journal holds, folds back
    // to the same live state (bodies in the journal included).
    let mut bodies = std::collections::BTreeMap::new();
    for r in &scan.records {
        match r {
            Record::ResponseWithBody(r) => {
                bodies.insert(r.response.id, r.body.clone());
            }
            Record::Response(r) => {
                bodies.remove(&r.id);
            }
            _ => {}
        }
    }
    let again = replay::fold(&state.snapshot(|id| bodies.get(&id).cloned()));
    assert_eq!(
        again.uploads, state.uploads,
        "snapshot changed the live state"
    );
    assert_eq!(again.next_id, state.next_id, "snapshot changed the next id");

    let again = format::scan(&body[..scan.valid_len]);
    assert!(again.damage.is_none(), "recovered prefix is not clean");
    assert_eq!(again.records, scan.records, "recovery is not idempotent");

    // Write the recovered records afresh and cut the result at a point the input picks.
    let mut written = Vec::new();
    let mut ends = Vec::new();
    for r in &scan.records {
        written.extend_from_slice(&format::encode_frame(r).expect("decoded record fits"));
        ends.push(written.len());
    }
    let cut = if written.is_empty() {
        0
    } else {
        body.len() % (written.len() + 1)
    };
    let cut_scan = format::scan(&written[..cut]);
    let whole = ends.iter().take_while(|&&e| e <= cut).count();
    assert_eq!(
        cut_scan.records.len(),
        whole,
        "lost or invented a record at cut {cut}"
    );
    assert_eq!(cut_scan.records[..], scan.records[..whole], "not a prefix");
}
