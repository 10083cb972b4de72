//! Small response bodies (at most 4 KiB, most answers) get no file: the journal keeps
//! their bytes in the record (and the fsync) that makes the response durable, reads come
//! from there, and a compaction carries them over. A larger body has a file of its own.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use background_transfer::journal::record::Record;
use background_transfer::journal::{Journal, Store, INLINE_BODY_MAX};
use background_transfer::{Status, UploadRequest, Uploader};

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
    let mut opened = up
        .get(id)
        .expect("the upload is kept")
        .response_body()
        .expect("its body opens");
    let mut body = Vec::new();
    opened.read_to_end(&mut body).unwrap();
    assert_eq!(
        opened.len(),
        body.len() as u64,
        "its length is what it reads"
    );
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

#[test]
fn a_small_body_has_no_file_and_is_read_from_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let answer = random_bytes(300, 11);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let up = fast(&store).open().unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|i| complete_one(&up, &server, tmp.path(), &format!("f{i}")))
        .collect();
    for &id in &ids {
        assert_eq!(body_of(&up, id), answer, "upload {id}, before a restart");
    }
    assert_eq!(body_files(&store), Vec::<String>::new(), "no file at all");
    up.shutdown().unwrap();
    let kept = kept_bodies(&store);
    assert_eq!(
        kept,
        ids.iter()
            .map(|&id| (id, answer.clone()))
            .collect::<Vec<_>>(),
        "each small body is in the journal, once, byte-exact"
    );

    // A file under a body's name (what an older build wrote beside the journal's copy,
    // or a power cut left of it) is not what is read: the journal is.
    fs::write(store.join("bodies").join(ids[0].to_string()), b"stale").unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    for &id in &ids {
        assert_eq!(body_of(&up, id), answer, "upload {id}, after a restart");
    }
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
            match head.path.as_str() {
                "/small" => s.clone(),
                "/empty" => Vec::new(),
                _ => l.clone(),
            },
        )
    }));
    let up = fast(&store).open().unwrap();
    let small_id = complete_one(&up, &server, tmp.path(), "small");
    let large_id = complete_one(&up, &server, tmp.path(), "large");
    let empty_id = complete_one(&up, &server, tmp.path(), "empty");
    assert_eq!(body_files(&store), vec![large_id.to_string()]);
    up.shutdown().unwrap();
    assert_eq!(
        kept_bodies(&store),
        vec![(small_id, small.clone()), (empty_id, Vec::new())]
    );
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(body_of(&up, small_id), small);
    assert_eq!(body_of(&up, large_id), large);
    assert_eq!(body_of(&up, empty_id), b"");
}

/// A retried upload whose first answer (a 503 with a page over 4 KiB) went to a file and
/// whose last answer is small: what is read is the last answer.
#[test]
fn the_last_answer_is_read_even_when_an_earlier_one_had_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let page = random_bytes(INLINE_BODY_MAX as usize * 3, 4);
    let server = TestServer::start(
        Behavior::script([Action::respond(503, page.clone())])
            .then(Action::respond(201, b"stored".to_vec())),
    );
    let up = fast(&store).open().unwrap();
    let id = complete_one(&up, &server, tmp.path(), "f");
    assert_eq!(body_of(&up, id), b"stored");
    up.shutdown().unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(body_of(&up, id), b"stored");
}

#[test]
fn a_compaction_keeps_small_bodies_in_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let answer = random_bytes(200, 5);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let up = fast(&store).open().unwrap();
    let id = complete_one(&up, &server, tmp.path(), "f");
    up.shutdown().unwrap();

    let mut st = Store::open(&store).unwrap();
    assert!(st.state().uploads[&id].body_in_journal);
    let before = st.body_at(id).expect("the journal holds its body");
    st.compact().unwrap();
    assert!(st.state().uploads[&id].body_in_journal);
    assert_ne!(st.body_at(id), Some(before), "the compaction moved it");
    assert_eq!(st.body(id).unwrap(), answer);
    drop(st);
    assert_eq!(kept_bodies(&store), vec![(id, answer.clone())]);
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(body_of(&up, id), answer);
    assert_eq!(body_files(&store), Vec::<String>::new());
}

/// A compaction while the uploader runs moves every record: a handle taken before it
/// reads its body where the compaction put it.
#[test]
fn a_handle_reads_its_body_across_a_live_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let answer = random_bytes(1000, 6);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let up = fast(&store).open().unwrap();
    let id = complete_one(&up, &server, tmp.path(), "f");
    let h = up.get(id).unwrap();
    let journal = store.join("journal");
    let grown = fs::metadata(&journal).unwrap().len();
    // Each "make current" is a record of its own: enough of them make dead records
    // dominate, and the journal is compacted (it shrinks).
    let mut compacted = false;
    for _ in 0..6000 {
        h.make_current().unwrap();
        if fs::metadata(&journal).unwrap().len() < grown {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "the journal was compacted");
    assert_eq!(body_of(&up, id), answer);
    assert_eq!(h.status(), Status::Completed);
}

/// No file is made for an answer before it comes, or for a small one: an attempt that
/// gets no answer and the upload that waits for its retry leave nothing in `bodies/`.
#[test]
fn an_attempt_without_an_answer_leaves_no_body_file() {
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
    // First attempt: the server holds its answer.
    assert!(server.wait_for_requests(1, Duration::from_secs(10)));
    assert_eq!(body_files(&store), Vec::<String>::new());
    let first = h
        .wait_timeout(Duration::from_secs(10))
        .expect("the first attempt ends");
    assert!(first.is_ok(), "{first:?}");
    // A second upload whose attempt is cut before the answer: WaitingToRetry.
    let g = up
        .create_upload(UploadRequest::put(server.url("/b"), &f))
        .unwrap();
    let waiting = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        g.status() == Status::WaitingToRetry
    });
    assert!(
        waiting,
        "the cut attempt is waiting to retry: {:?}",
        g.status()
    );
    assert_eq!(body_files(&store), Vec::<String>::new());
    let done = g
        .wait_timeout(Duration::from_secs(10))
        .expect("the retry ends")
        .unwrap();
    assert_eq!(done.status, 201);
    assert_eq!(body_files(&store), Vec::<String>::new());
    assert_eq!(body_of(&up, g.id()), b"made");
}
