//! The client's operations against an owner in this process (the socket and its
//! checks are the same for a thread as for another process): create, list, get,
//! pause, resume, cancel, remove, response body, follow and wait; the same submission
//! created once; submissions without an owner wait in the inbox and are created when
//! one opens the store.

use std::time::Duration;

use background_transfer::{Client, Error, Status, Submission, Submitted, UploadRequest};

use crate::support::{fast, sha256_file, wait_until, write_file, Action, Behavior, TestServer};

const T: Duration = Duration::from_secs(20);

#[test]
fn a_client_creates_lists_and_waits_through_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let client = Client::connect(&store).unwrap();
    assert!(client.owner_running());
    let f = write_file(tmp.path(), "a", 300_000, 7);
    let s = client
        .create_upload(UploadRequest::put(server.url("/a"), &f))
        .unwrap();
    let id = s.id().expect("created by the running owner");
    // The owner's own handle sees it at once: the create is durable and published.
    assert!(up.get(id).is_some());
    let info = client.wait(id).unwrap();
    assert_eq!(info.status, 200);
    let r = &server.requests()[0];
    assert_eq!(r.body_len, 300_000);
    assert_eq!(r.sha256, sha256_file(&f));
    let remote = client.get(id).unwrap();
    assert_eq!(remote.progress.status, Status::Completed);
    assert_eq!(remote.request.url, server.url("/a"));
    assert_eq!(client.uploads().unwrap().len(), 1);
    let body = client.response_body(id).unwrap();
    let mut local = Vec::new();
    std::io::Read::read_to_end(
        &mut up.get(id).unwrap().response_body().unwrap(),
        &mut local,
    )
    .unwrap();
    assert_eq!(body, local);
    assert!(matches!(client.find(&s.key()).unwrap(), Submission::Created(i) if i == id));
    client.remove(id).unwrap();
    assert!(up.get(id).is_none());
    assert!(matches!(client.get(id), Err(Error::NotFound { .. })));
    assert!(matches!(
        client.find(&s.key()).unwrap(),
        Submission::Unknown
    ));
}

#[test]
fn a_client_pauses_resumes_and_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 256 * 1024,
    });
    let store = tmp.path().join("store");
    let _up = fast(&store).buffer_size(16 * 1024).open().unwrap();
    let client = Client::connect(&store).unwrap();
    let f = write_file(tmp.path(), "big", 8 << 20, 1);
    let id = client
        .create_upload(UploadRequest::put(server.url("/p"), &f))
        .unwrap()
        .id()
        .unwrap();
    assert!(wait_until(T, || server
        .requests()
        .first()
        .is_some_and(|r| r.body_len > 0)));
    client.pause(id).unwrap();
    assert_eq!(
        client.get(id).unwrap().progress.status,
        Status::PausedByApplication
    );
    client.resume(id).unwrap();
    let mut follow = client.follow(id).unwrap();
    let first = follow.next().unwrap().unwrap();
    assert_eq!(first.id, id);
    client.cancel(id).unwrap();
    let last = follow.last().unwrap().unwrap();
    assert_eq!(last.progress.status, Status::Canceled);
    assert!(matches!(client.wait(id), Err(Error::Canceled)));
    assert!(matches!(
        client.pause(id),
        Err(Error::InvalidRequest { .. })
    ));
}

#[test]
fn a_reader_body_is_spooled_by_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let _up = fast(&store).open().unwrap();
    let client = Client::connect(&store).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let id = client
        .create_upload(UploadRequest::from_reader(
            server.url("/r"),
            std::io::Cursor::new(data.clone()),
        ))
        .unwrap()
        .id()
        .unwrap();
    client.wait(id).unwrap();
    assert_eq!(server.requests()[0].body_len, data.len() as u64);
    // Nothing is left in the inbox: the owner took the body into its spool.
    let left: Vec<_> = std::fs::read_dir(store.join("inbox"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_requests_and_refusals_are_typed_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let client = Client::connect(&store).unwrap();
    let e = client
        .create_upload(UploadRequest::put(
            "http://127.0.0.1:9/x",
            tmp.path().join("missing"),
        ))
        .unwrap_err();
    assert!(matches!(e, Error::SourceMissing { .. }), "{e}");
    let f = write_file(tmp.path(), "a", 10, 1);
    // Only the owner knows its providers: its refusal comes back as the same error.
    let e = client
        .create_upload(UploadRequest::put("http://127.0.0.1:9/x", &f).credentials("nobody"))
        .unwrap_err();
    assert!(matches!(e, Error::Credentials { .. }), "{e}");
    assert!(up.uploads().is_empty());
    assert!(matches!(client.pause(77), Err(Error::NotFound { id: 77 })));
}

#[test]
fn without_an_owner_submissions_wait_and_are_created_once_when_one_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let client = Client::connect(&store).unwrap();
    assert!(!client.owner_running());
    assert!(matches!(client.uploads(), Err(Error::NoOwner { .. })));
    let mut keys = Vec::new();
    for i in 0..5 {
        let f = write_file(tmp.path(), &format!("f{i}"), 1000 + i, i);
        let s = client
            .create_upload(UploadRequest::put(server.url(&format!("/n{i}")), &f))
            .unwrap();
        assert!(matches!(s, Submitted::Queued { .. }));
        assert!(matches!(
            client.find(&s.key()).unwrap(),
            Submission::Waiting
        ));
        keys.push(s.key());
    }
    let up = fast(&store).open().unwrap();
    // Imported before `open` returned.
    assert_eq!(up.uploads().len(), 5);
    for k in &keys {
        let Submission::Created(id) = client.find(k).unwrap() else {
            panic!("not created");
        };
        client.wait(id).unwrap();
    }
    assert_eq!(server.request_count(), 5);
    drop(up);
    // Reopened: nothing is imported twice.
    let up = fast(&store).open().unwrap();
    assert_eq!(up.uploads().len(), 5);
}

/// A submission in the inbox whose spooled body is a symlink to a file of the owner's
/// (or anything but the client's own regular file) is refused: the owner never reads a
/// file for a client through the inbox. The crafted request is the journal's own
/// creation record, as a client writes it.
#[test]
fn an_inbox_body_that_is_a_symlink_is_refused() {
    use background_transfer::journal::record::{
        BodyV1, CostPolicyV1, CreatedV1, CreatedV2, CreatedV3, CreatedV4, PriorityV1, ProtocolV1,
        Record, RequestV1, SourceV1,
    };
    use std::os::unix::fs::MetadataExt;

    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    drop(fast(&store).open().unwrap());
    let secret = write_file(tmp.path(), "secret", 4096, 9);
    let store = std::fs::canonicalize(&store).unwrap();
    let key = *b"symlink-attack!!";
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let body = store.join("inbox").join(format!("{hex}.body"));
    std::os::unix::fs::symlink(&secret, &body).unwrap();
    let meta = std::fs::metadata(&secret).unwrap();
    let record = Record::CreatedV4(CreatedV4 {
        created: CreatedV3 {
            created: CreatedV2 {
                created: CreatedV1 {
                    id: 0,
                    created_ms: 1,
                    request: RequestV1 {
                        url: server.url("/stolen"),
                        method: "PUT".into(),
                        headers: vec![],
                        body: BodyV1::File(SourceV1 {
                            path: body.as_os_str().as_encoded_bytes().to_vec(),
                            size: meta.len(),
                            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                            spooled: true,
                        }),
                        priority: PriorityV1::Default,
                        group: None,
                        cost: CostPolicyV1::Always,
                        protocol: ProtocolV1::Plain,
                        idempotent: true,
                    },
                },
                credentials: None,
            },
            client_identity: None,
        },
        submission: key,
        submitter: None,
    });
    std::fs::write(
        store.join("inbox").join(format!("{hex}.req")),
        postcard::to_allocvec(&record).unwrap(),
    )
    .unwrap();
    let up = fast(&store).open().unwrap();
    assert!(up.uploads().is_empty(), "the symlinked body was taken");
    let client = Client::connect(&store).unwrap();
    match client.find(&key).unwrap() {
        Submission::Refused(Error::PermissionDenied { .. }) => {}
        other => panic!("not refused as it should be: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.request_count(), 0);
    assert!(store
        .join("inbox/refused")
        .join(format!("{hex}.req"))
        .exists());
}

#[test]
fn a_multipart_and_a_tus_upload_go_through_a_client_like_through_the_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start(Behavior::ok());
    let store = tmp.path().join("store");
    let up = fast(&store).open().unwrap();
    let client = Client::connect(&store).unwrap();
    let f = write_file(tmp.path(), "photo.jpg", 70_000, 4);
    let req = || {
        UploadRequest::multipart(server.url("/form"))
            .text("device", "sensor-7")
            .file("photo", &f)
            .boundary("fixed-boundary-for-the-test")
    };
    let remote = client.create_upload(req()).unwrap().id().unwrap();
    client.wait(remote).unwrap();
    let local = up.create_upload(req()).unwrap();
    local.wait().unwrap();
    let r = server.requests();
    assert_eq!(r.len(), 2);
    assert!(r[0].complete && r[1].complete);
    assert_eq!(r[0].sha256, r[1].sha256, "the same bytes either way");
    assert_eq!(
        client.get(remote).unwrap().request.files,
        local.request().files
    );
    if !crate::support::tus::available("a_tus_upload_goes_through_a_client") {
        return;
    }
    let tus = crate::support::tus::TusServer::start("client-tus", &tmp.path().join("tus")).unwrap();
    let big = write_file(tmp.path(), "big", 3 << 20, 5);
    let id = client
        .create_upload(UploadRequest::put(tus.endpoint(), &big).tus(None))
        .unwrap()
        .id()
        .unwrap();
    let info = client.wait(id).unwrap();
    assert!(info.is_resumable);
    let ids = tus.upload_ids();
    assert_eq!(ids.len(), 1);
    assert_eq!(sha256_file(tus.data_file(&ids[0])), sha256_file(&big));
}
