//! Small response bodies (at most 4 KiB, most answers) are not fsynced on their own: the
//! journal keeps their bytes in the fsync that makes the response durable. A power cut
//! that loses, cuts or leaves stale their file costs nothing: the next open writes it
//! back from the journal. A compaction fsyncs the files and drops the bytes.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use background_transfer::journal::record::Record;
use background_transfer::journal::{Journal, Store, INLINE_BODY_MAX};
use background_transfer::{UploadRequest, Uploader};

use crate::support::{fast, random_bytes, write_file, Action, Behavior, TestServer};

/// The response bodies the journal holds, in the order written (each in its response's
/// own record).
fn kept_bodies(store: &Path) -> Vec<(u64, Vec<u8>)> {
    let (_, records, _) = Journal::open(store).unwrap();
    (records.iter())
        .filter_map(|r| match r {
            Record::ResponseWithBody(r) => Some((r.response.id, r.body.clone())),
            _ => None,
        })
        .collect()
}

fn body_of(up: &Uploader, id: u64) -> Vec<u8> {
    let mut body = Vec::new();
    up.get(id)
        .expect("the upload is kept")
        .response_body()
        .expect("its body opens")
        .read_to_end(&mut body)
        .unwrap();
    body
}

/// Uploads one small file to a server answering `body`; returns its id.
fn complete_one(up: &Uploader, server: &TestServer, dir: &Path, name: &str) -> u64 {
    let f = write_file(dir, name, 1024, 7);
    let h = up
        .create_upload(UploadRequest::put(server.url(&format!("/{name}")), &f))
        .unwrap();
    let info = h
        .wait_timeout(Duration::from_secs(30))
        .expect("finishes")
        .unwrap();
    assert_eq!(info.status, 201);
    h.id()
}

#[test]
fn a_small_body_a_power_cut_lost_cut_or_left_stale_comes_back_from_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let answer = random_bytes(300, 11);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let up = fast(&store).open().unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|i| complete_one(&up, &server, tmp.path(), &format!("f{i}")))
        .collect();
    up.shutdown().unwrap();
    let kept = kept_bodies(&store);
    assert_eq!(
        kept,
        ids.iter()
            .map(|&id| (id, answer.clone()))
            .collect::<Vec<_>>(),
        "each small body is in the journal, once, byte-exact"
    );

    // What a power cut can leave of files written without fsync: no file, an empty one
    // (delayed allocation), or an older attempt's body under the name.
    let file = |id: u64| store.join("bodies").join(id.to_string());
    fs::remove_file(file(ids[0])).unwrap();
    fs::write(file(ids[1]), b"").unwrap();
    fs::write(file(ids[2]), random_bytes(300, 12)).unwrap();

    let up = fast(&store).start_transfers(false).open().unwrap();
    for &id in &ids {
        assert_eq!(body_of(&up, id), answer, "upload {id}: its body came back");
    }
    drop(up);
    assert!(
        fs::read_dir(store.join("bodies"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".part")),
        "no temp file is left"
    );
}

#[test]
fn only_bodies_of_at_most_4_kib_are_kept_in_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (at_most, over) = (INLINE_BODY_MAX as usize, INLINE_BODY_MAX as usize + 1);
    let small = random_bytes(at_most, 1);
    let large = random_bytes(over, 2);
    let (s, l) = (small.clone(), large.clone());
    let server = TestServer::start(Behavior::handler(move |head, _| {
        Action::respond(
            201,
            if head.path == "/small" {
                s.clone()
            } else {
                l.clone()
            },
        )
    }));
    let up = fast(&store).open().unwrap();
    let small_id = complete_one(&up, &server, tmp.path(), "small");
    let large_id = complete_one(&up, &server, tmp.path(), "large");
    up.shutdown().unwrap();
    assert_eq!(kept_bodies(&store), vec![(small_id, small.clone())]);
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(body_of(&up, small_id), small);
    assert_eq!(body_of(&up, large_id), large);
}

#[test]
fn a_compaction_fsyncs_small_bodies_and_drops_their_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let answer = random_bytes(200, 5);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let up = fast(&store).open().unwrap();
    let id = complete_one(&up, &server, tmp.path(), "f");
    up.shutdown().unwrap();

    let mut st = Store::open(&store).unwrap();
    assert!(st.state().uploads[&id].body_in_journal);
    st.compact().unwrap();
    assert!(!st.state().uploads[&id].body_in_journal);
    drop(st);
    assert!(
        kept_bodies(&store).is_empty(),
        "the compacted journal holds no body"
    );
    let st = Store::open(&store).unwrap();
    assert!(!st.state().uploads[&id].body_in_journal);
    drop(st);
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(body_of(&up, id), answer);
}

/// The files in the store's `bodies/` directory, sorted.
fn body_files(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.join("bodies"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A plain upload makes its body's temp file before it sends (off the path from the
/// answer to the completion). An attempt that gets no answer removes it: neither the
/// upload waiting for its retry nor the completed one leaves a `.part` behind.
#[test]
fn an_attempt_without_an_answer_leaves_no_body_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(
        Behavior::script([
            Action::DelayResponse(Duration::from_millis(400)),
            Action::CloseAfterBodyBytes(512),
        ])
        .then(Action::respond(201, b"made".to_vec())),
    );
    // A long first backoff: the upload sits in WaitingToRetry long enough to look.
    let up = fast(&store)
        .backoff(Duration::from_millis(600), Duration::from_millis(600))
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "src", 1024, 3);
    let h = up
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    let id = h.id();
    // First attempt: the server holds its answer; the temp file is there meanwhile.
    assert!(server.wait_for_requests(1, Duration::from_secs(10)));
    assert_eq!(body_files(&store), vec![format!("{id}.part")]);
    let first = h
        .wait_timeout(Duration::from_secs(10))
        .expect("the first attempt ends");
    assert!(first.is_ok(), "{first:?}");
    // A second upload whose attempt is cut before the answer: WaitingToRetry, no file.
    let g = up
        .create_upload(UploadRequest::put(server.url("/b"), &f))
        .unwrap();
    let waiting = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        g.status() == background_transfer::Status::WaitingToRetry
    });
    assert!(
        waiting,
        "the cut attempt is waiting to retry: {:?}",
        g.status()
    );
    assert_eq!(body_files(&store), vec![id.to_string()]);
    let done = g
        .wait_timeout(Duration::from_secs(10))
        .expect("the retry ends")
        .unwrap();
    assert_eq!(done.status, 201);
    assert_eq!(body_files(&store), vec![id.to_string(), g.id().to_string()]);
    assert_eq!(body_of(&up, g.id()), b"made");
}
