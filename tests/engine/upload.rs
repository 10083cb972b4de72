//! Plain uploads: PUT, POST and multipart of 0 B to 100 MiB arrive byte-exact, and the
//! response is kept.

use std::io::Read;
use std::time::Duration;

use background_transfer::{Status, UploadRequest};

use crate::support;
use crate::support::{fast, sha256_file, write_file, Action, Behavior, TestServer};

const SIZES: [u64; 4] = [0, 1, 1 << 20, 100 << 20];

#[test]
fn put_and_post_arrive_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::always(Action::respond(201, "stored")));
    let up = fast(&tmp.path().join("store")).open().unwrap();
    let mut expected = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let f = write_file(tmp.path(), &format!("f{i}"), *size, i as u64);
        let put = up
            .create_upload(UploadRequest::put(server.url(&format!("/put/{i}")), &f))
            .unwrap();
        let post = up
            .create_upload(UploadRequest::post(server.url(&format!("/post/{i}")), &f))
            .unwrap();
        expected.push((format!("/put/{i}"), "PUT", *size, sha256_file(&f), put));
        expected.push((format!("/post/{i}"), "POST", *size, sha256_file(&f), post));
    }
    for (path, method, size, sha, handle) in &expected {
        let info = handle
            .wait_timeout(Duration::from_secs(120))
            .expect("finished")
            .unwrap();
        assert_eq!(info.status, 201);
        let p = handle.progress();
        assert_eq!(p.status, Status::Completed);
        assert_eq!(p.bytes_sent, *size);
        assert_eq!(p.total_bytes_to_send, *size);
        let mut body = String::new();
        handle
            .response_body()
            .unwrap()
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, "stored");
        let reqs = server.requests();
        let got = reqs
            .iter()
            .find(|r| &r.path == path)
            .expect("server saw it");
        assert_eq!(got.method, *method);
        assert!(got.complete);
        assert_eq!(got.body_len, *size, "{path}");
        assert_eq!(&got.sha256, sha, "{path}");
        assert_eq!(
            got.header("content-length"),
            Some(size.to_string().as_str())
        );
    }
    up.shutdown().unwrap();
}

#[test]
fn multipart_is_streamed_with_an_exact_length() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let up = fast(&tmp.path().join("store")).open().unwrap();
    for (i, size) in SIZES.iter().enumerate() {
        let f = write_file(tmp.path(), &format!("m{i}"), *size, 7 + i as u64);
        let req = UploadRequest::multipart(server.url(&format!("/form/{i}")))
            .boundary("XBOUNDARYX")
            .text("note", "hello")
            .file("upload", &f);
        let h = up.create_upload(req).unwrap();
        h.wait_timeout(Duration::from_secs(120)).unwrap().unwrap();
        // The body the server must have seen, built independently.
        let mut want = Vec::new();
        want.extend_from_slice(
            b"--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n",
        );
        want.extend_from_slice(
            format!(
                "--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"m{i}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        want.extend_from_slice(&std::fs::read(&f).unwrap());
        want.extend_from_slice(b"\r\n--XBOUNDARYX--\r\n");
        let reqs = server.requests();
        let got = reqs
            .iter()
            .find(|r| r.path == format!("/form/{i}"))
            .unwrap();
        assert_eq!(got.body_len, want.len() as u64);
        assert_eq!(got.sha256, support::sha256_hex(&want));
        assert_eq!(
            got.header("content-type"),
            Some("multipart/form-data; boundary=XBOUNDARYX")
        );
        assert_eq!(h.progress().total_bytes_to_send, want.len() as u64);
    }
}

#[test]
fn reader_uploads_are_spooled_and_survive_a_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::ok());
    let data = support::random_bytes(300_000, 3);
    let id = {
        // An Uploader that transfers nothing: the pause below cannot lose a race with
        // a worker starting the upload.
        let up = fast(&store).start_transfers(false).open().unwrap();
        let h = up
            .create_upload(UploadRequest::from_reader(
                server.url("/r"),
                std::io::Cursor::new(data.clone()),
            ))
            .unwrap();
        h.pause().unwrap();
        let id = h.id();
        up.shutdown().unwrap();
        id
    };
    assert_eq!(server.request_count(), 0);
    let up = fast(&store).open().unwrap();
    let h = up.get(id).expect("persisted");
    assert_eq!(h.status(), Status::PausedByApplication);
    h.resume().unwrap();
    h.wait_timeout(Duration::from_secs(30)).unwrap().unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.sha256, support::sha256_hex(&data));
    h.remove().unwrap();
    assert!(up.get(id).is_none());
    let spool = store.join("spool").join(id.to_string());
    assert!(!spool.exists(), "remove deletes the spooled source");
    assert!(!store.join("bodies").join(id.to_string()).exists());
}

#[test]
fn files_are_kept_when_the_journal_had_to_start_afresh() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // An answer over 4 KiB: a body file of its own (a smaller one is in the journal).
    let answer = "kept".repeat(2000);
    let server = TestServer::start(Behavior::always(Action::respond(201, answer.clone())));
    let f = write_file(tmp.path(), "a", 1000, 1);
    let id = {
        let up = fast(&store).open().unwrap();
        let h = up
            .create_upload(UploadRequest::put(server.url("/a"), &f))
            .unwrap();
        h.wait_timeout(Duration::from_secs(20)).unwrap().unwrap();
        h.id()
    };
    let body = store.join("bodies").join(id.to_string());
    assert!(body.exists());
    // Outside damage empties the journal: the store starts afresh, but the response
    // body, which may be all that is left of the upload, is not deleted as an orphan.
    std::fs::write(store.join("journal"), b"").unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.uploads().is_empty());
    drop(up);
    let kept = store.join("lost").join(format!("bodies-{id}"));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        answer.as_bytes(),
        "moved aside, not deleted"
    );
    // ...and left alone by later opens.
    drop(fast(&store).open().unwrap());
    assert!(kept.exists());
    // A whole journal that simply does not hold an upload does clean its files up.
    let orphan = store.join("bodies").join("999");
    std::fs::write(&orphan, b"x").unwrap();
    let _up = fast(&store).open().unwrap();
    assert!(!orphan.exists());
}

/// A store written before the spool's rename was made durable could lose that rename in
/// a power cut (btrfs: an fsync of the journal does not carry it), leaving only
/// `spool/<id>.part` beside a journal that lists the upload. Recovery used to delete the
/// `.part` as a crash leftover; now it renames it into place when it is the file the
/// journal recorded, and keeps it when it is not.
#[test]
fn a_spooled_source_whose_rename_was_lost_is_restored_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::always(Action::respond(201, "ok")));
    let data = support::random_bytes(70_000, 3);
    let (a, b) = {
        let up = fast(&store).start_transfers(false).open().unwrap();
        let new = |seed| {
            let bytes = support::random_bytes(5000, seed);
            up.create_upload(UploadRequest::from_reader(
                server.url("/s"),
                std::io::Cursor::new(bytes),
            ))
            .unwrap()
            .id()
        };
        let a = up
            .create_upload(UploadRequest::from_reader(
                server.url("/a"),
                std::io::Cursor::new(data.clone()),
            ))
            .unwrap()
            .id();
        let b = new(4);
        up.shutdown().unwrap();
        (a, b)
    };
    let spool = |id: u64| store.join("spool").join(id.to_string());
    let part = |id: u64| store.join("spool").join(format!("{id}.part"));
    std::fs::rename(spool(a), part(a)).unwrap();
    // b's `.part` is not its source (another length): kept for a person to look at.
    std::fs::remove_file(spool(b)).unwrap();
    std::fs::write(part(b), b"not the spooled source").unwrap();

    let up = fast(&store).open().unwrap();
    assert_eq!(std::fs::read(spool(a)).unwrap(), data, "restored in place");
    assert!(!part(a).exists());
    assert!(part(b).exists(), "a .part that is not the source is kept");
    let h = up.get(a).unwrap();
    h.wait_timeout(Duration::from_secs(20)).unwrap().unwrap();
    let sent = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/a")
        .unwrap();
    assert_eq!(sent.sha256, support::sha256_hex(&data));
}

/// A power cut between cutting a damaged journal back (durable) and moving the files of
/// the uploads it no longer lists to `lost/` left a journal that looks whole: the next
/// open deleted those files as crash leftovers, and handed their ids out again. Emulated
/// here by opening the damaged journal without the engine (the journal's own recovery
/// only), then opening the store for real.
#[test]
fn files_and_ids_survive_a_cut_between_cutting_back_a_damaged_journal_and_the_moves() {
    use std::io::{Seek, SeekFrom, Write};
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::always(Action::respond(201, "ok")));
    let f = write_file(tmp.path(), "f", 1000, 9);
    let mut sources = Vec::new();
    let last = {
        let up = fast(&store).start_transfers(false).open().unwrap();
        for seed in 1..=4u64 {
            let bytes = support::random_bytes(3000, seed);
            let h = up
                .create_upload(UploadRequest::from_reader(
                    server.url("/s"),
                    std::io::Cursor::new(bytes.clone()),
                ))
                .unwrap();
            sources.push((h.id(), bytes));
        }
        // The last upload has no file in the store: only the damaged journal knows its id.
        let h = up
            .create_upload(UploadRequest::put(server.url("/f"), &f))
            .unwrap();
        up.shutdown().unwrap();
        h.id()
    };
    let journal = store.join("journal");
    let len = std::fs::metadata(&journal).unwrap().len();
    let mut j = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&journal)
        .unwrap();
    j.seek(SeekFrom::Start(len / 3)).unwrap();
    let mut byte = [0u8];
    std::io::Read::read_exact(&mut j, &mut byte).unwrap();
    j.seek(SeekFrom::Start(len / 3)).unwrap();
    j.write_all(&[byte[0] ^ 0x5a]).unwrap();
    drop(j);

    // The journal's recovery alone: cut back, copy saved, marker written; no moves yet.
    let listed: Vec<u64> = {
        let st = background_transfer::journal::Store::open(&store).unwrap();
        assert!(matches!(
            st.recovery(),
            background_transfer::Recovery::Corrupt { .. }
        ));
        st.state().uploads.keys().copied().collect()
    };
    assert!(store.join("quarantine").exists());
    let lost_ids: Vec<u64> = sources
        .iter()
        .map(|s| s.0)
        .filter(|id| !listed.contains(id))
        .collect();
    assert!(!lost_ids.is_empty(), "the damage must take uploads out");

    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(up.recovery(), &background_transfer::Recovery::Clean);
    for (id, bytes) in &sources {
        let kept = if lost_ids.contains(id) {
            store.join("lost").join(format!("spool-{id}"))
        } else {
            store.join("spool").join(id.to_string())
        };
        assert_eq!(
            &std::fs::read(&kept).unwrap(),
            bytes,
            "upload {id}'s source"
        );
    }
    assert!(!store.join("quarantine").exists(), "the moves are done");
    let next = up
        .create_upload(UploadRequest::put(server.url("/n"), &f))
        .unwrap()
        .id();
    assert!(
        next > last,
        "id {next} was handed out before (up to {last})"
    );
    drop(up);
    // Later opens leave lost/ alone and still do not reuse the ids.
    let up = fast(&store).start_transfers(false).open().unwrap();
    for id in &lost_ids {
        assert!(store.join("lost").join(format!("spool-{id}")).exists());
    }
    let again = up
        .create_upload(UploadRequest::put(server.url("/n"), &f))
        .unwrap()
        .id();
    assert!(again > next);
}

/// A quarantine ends only once every file it protects is in `lost/`: a move that fails
/// (here `lost` is a regular file, so it cannot be made) leaves the marker, and the files
/// where they were, for the next open.
#[test]
fn a_quarantine_stays_until_its_files_are_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::always(Action::respond(201, "ok")));
    let data = support::random_bytes(4000, 8);
    let id = spooled_store(&store, server.url("/q"), &data);
    // The journal is lost; only the spooled source is left.
    std::fs::remove_file(store.join("journal")).unwrap();
    std::fs::write(store.join("lost"), b"in the way").unwrap();
    drop(fast(&store).start_transfers(false).open().unwrap());
    let spool = store.join("spool").join(id.to_string());
    assert_eq!(
        std::fs::read(&spool).unwrap(),
        data,
        "not moved, not deleted"
    );
    assert!(store.join("quarantine").exists(), "the quarantine goes on");
    // With the way clear, the next open (whose journal now looks whole) moves it.
    std::fs::remove_file(store.join("lost")).unwrap();
    let up = fast(&store).start_transfers(false).open().unwrap();
    assert_eq!(up.recovery(), &background_transfer::Recovery::Clean);
    let kept = store.join("lost").join(format!("spool-{id}"));
    assert_eq!(std::fs::read(&kept).unwrap(), data);
    assert!(!store.join("quarantine").exists());
    // Its id is not handed out again.
    let f = write_file(tmp.path(), "n", 10, 1);
    let next = up
        .create_upload(UploadRequest::put(server.url("/n"), &f))
        .unwrap();
    assert!(next.id() > id);
}

/// A journal that is missing while upload files are there: the open that starts a new
/// journal writes the marker first, so a cut before its recovery moved the files does
/// not let the next open delete them.
#[test]
fn a_lost_journal_with_files_left_is_quarantined_before_it_is_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let server = TestServer::start(Behavior::always(Action::respond(201, "ok")));
    let data = support::random_bytes(3000, 9);
    let id = spooled_store(&store, server.url("/q"), &data);
    std::fs::remove_file(store.join("journal")).unwrap();
    // The journal's own open only (the program's open cut before its recovery).
    drop(background_transfer::journal::Store::open(&store).unwrap());
    assert!(store.join("quarantine").exists());
    drop(fast(&store).start_transfers(false).open().unwrap());
    let kept = store.join("lost").join(format!("spool-{id}"));
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        data,
        "kept aside, not deleted"
    );
}

/// Makes a store at `store` holding one reader upload of `data` (spooled, not sent),
/// closed again; returns its id.
fn spooled_store(store: &std::path::Path, url: String, data: &[u8]) -> u64 {
    let up = fast(store).start_transfers(false).open().unwrap();
    let id = up
        .create_upload(UploadRequest::from_reader(
            url,
            std::io::Cursor::new(data.to_vec()),
        ))
        .unwrap()
        .id();
    up.shutdown().unwrap();
    id
}
