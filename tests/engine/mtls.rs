//! Mutual TLS against the crate's own loopback rustls server, which requires a client
//! certificate from its client CA: the right certificate uploads byte-exact; none, one
//! from another CA and an expired one each end in a final `Error::Tls` that says the
//! client certificate was refused, with no retry spent; a missing key file fails
//! `open()`; a certificate rotated on disk is used from the next connection on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use background_transfer::{Error, Status, UploadRequest};

use crate::support::tls::{ClientCa, ClientPem, TlsMaterial};
use crate::support::{ended, fast, sha256_file, wait_for, write_file, Action, TestServer};

fn write_pem(dir: &Path, name: &str, pem: &ClientPem) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    (cert, key)
}

fn mtls_server(ca: &ClientCa) -> TestServer {
    TestServer::start_tls_material(
        Action::respond(201, "device accepted"),
        TlsMaterial::requiring_client_certs(ca),
    )
}

/// Uploads 1 MiB with `identity` (or none): the upload's end.
fn upload_with(
    identity: Option<(PathBuf, PathBuf)>,
    server: &TestServer,
) -> (Result<(), Error>, u32) {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = fast(&tmp.path().join("store")).add_root_certificate_pem(server.ca_pem());
    if let Some((cert, key)) = identity {
        b = b.client_certificate(cert, key);
    }
    let up = b.open().unwrap();
    let f = write_file(tmp.path(), "f.bin", 1 << 20, 3);
    let h = up
        .create_upload(UploadRequest::put(server.url("/d"), &f))
        .unwrap();
    let r = ended(&h, Duration::from_secs(20)).map(|info| {
        assert_eq!(info.status, 201);
    });
    if r.is_ok() {
        let reqs = server.requests();
        assert_eq!(reqs.last().unwrap().sha256, sha256_file(&f), "byte-exact");
    }
    (r, h.progress().attempts)
}

fn assert_refused(r: Result<(), Error>, attempts: u32, case: &str) {
    match r {
        Err(Error::Tls { message }) => {
            assert!(
                message.contains("refused the client certificate"),
                "{case}: {message}"
            );
        }
        other => panic!("{case}: expected a TLS error, got {other:?}"),
    }
    assert_eq!(attempts, 0, "{case}: no retry spent");
}

#[test]
fn the_right_client_certificate_uploads_and_wrong_ones_are_refused_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("fleet device CA");
    let other = ClientCa::generate("some other CA");
    let server = mtls_server(&ca);

    let good = write_pem(tmp.path(), "good", &ca.issue("device-1", false));
    let (r, attempts) = upload_with(Some(good), &server);
    r.expect("the right certificate uploads");
    assert_eq!(attempts, 0);

    let (r, attempts) = upload_with(None, &server);
    assert_refused(r, attempts, "no certificate");
    let foreign = write_pem(tmp.path(), "foreign", &other.issue("device-1", false));
    let (r, attempts) = upload_with(Some(foreign), &server);
    assert_refused(r, attempts, "another CA");
    let expired = write_pem(tmp.path(), "expired", &ca.issue("device-1", true));
    let (r, attempts) = upload_with(Some(expired), &server);
    assert_refused(r, attempts, "expired");
}

#[test]
fn a_missing_or_unreadable_key_fails_open_with_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("fleet device CA");
    let (cert, key) = write_pem(tmp.path(), "d", &ca.issue("device-1", false));
    let missing = tmp.path().join("missing.key");
    let err = fast(&tmp.path().join("s1"))
        .client_certificate(&cert, &missing)
        .open()
        .expect_err("a missing key");
    match &err {
        Error::InvalidCertificate { reason } => assert!(reason.contains("missing.key"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A key file that holds a certificate, not a key.
    let err = fast(&tmp.path().join("s2"))
        .client_certificate(&cert, &cert)
        .open()
        .expect_err("no key in the file");
    assert!(matches!(err, Error::InvalidCertificate { .. }), "{err:?}");
    // A PRIVATE KEY block whose bytes are no key: refused at open, naming the file (it
    // used to pass the PEM check and panic in ureq's TLS setup at the first connection).
    let garbage = tmp.path().join("garbage.key");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = fast(&tmp.path().join("s4"))
        .client_certificate(&cert, &garbage)
        .open()
        .expect_err("a key that is not one");
    match &err {
        Error::InvalidCertificate { reason } => {
            assert!(reason.contains("garbage.key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // And the good pair opens.
    fast(&tmp.path().join("s3"))
        .client_certificate(&cert, &key)
        .open()
        .unwrap()
        .shutdown()
        .unwrap();
}

#[test]
fn a_certificate_rotated_on_disk_is_used_from_the_next_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("fleet device CA");
    let server = mtls_server(&ca);
    // The device starts with an expired certificate...
    let (cert, key) = write_pem(tmp.path(), "device", &ca.issue("device-1", true));
    let up = fast(&tmp.path().join("store"))
        .add_root_certificate_pem(server.ca_pem())
        .client_certificate(&cert, &key)
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "f.bin", 1 << 20, 4);
    let h = up
        .create_upload(UploadRequest::put(server.url("/d"), &f))
        .unwrap();
    assert!(ended(&h, Duration::from_secs(20)).is_err());
    assert_eq!(h.status(), Status::Error);
    // ...its agent rotates it in place, and the program retries the upload.
    let fresh = ca.issue("device-1", false);
    std::fs::write(&cert, &fresh.cert).unwrap();
    std::fs::write(&key, &fresh.key).unwrap();
    h.resume().unwrap();
    let info = ended(&h, Duration::from_secs(20)).expect("the new certificate is used");
    assert_eq!(info.status, 201);
    up.shutdown().unwrap();
}

/// Client identities by name, per upload: each upload presents the certificate it
/// names (one good, one expired, none), an unknown name is refused at creation and a
/// key that cannot be read at registration, both typed; after a restart that does not
/// register an upload's identity it waits, sending nothing, until it is registered.
#[test]
fn each_upload_presents_the_client_identity_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("fleet device CA");
    let server = mtls_server(&ca);
    let (a_cert, a_key) = write_pem(tmp.path(), "a", &ca.issue("device-a", false));
    let (b_cert, b_key) = write_pem(tmp.path(), "b", &ca.issue("device-b", true));
    let store = tmp.path().join("store");
    let f = write_file(tmp.path(), "f.bin", 1 << 20, 8);
    let up = fast(&store)
        .add_root_certificate_pem(server.ca_pem())
        .client_identity("device-a", &a_cert, &a_key)
        .client_identity("device-b", &b_cert, &b_key)
        .open()
        .unwrap();
    let put = |path: &str| UploadRequest::put(server.url(path), &f);
    let a = up
        .create_upload(put("/a").client_identity("device-a"))
        .unwrap();
    let b = up
        .create_upload(put("/b").client_identity("device-b"))
        .unwrap();
    let none = up.create_upload(put("/none")).unwrap();
    let info = ended(&a, Duration::from_secs(20)).expect("device-a's certificate is good");
    assert_eq!(info.status, 201);
    assert_refused(
        ended(&b, Duration::from_secs(20)).map(|_| ()),
        b.progress().attempts,
        "device-b (expired)",
    );
    assert_refused(
        ended(&none, Duration::from_secs(20)).map(|_| ()),
        none.progress().attempts,
        "no identity named, none for the uploader",
    );
    let stored: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.complete)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].path.as_str(), &stored[0].sha256),
        ("/a", &sha256_file(&f))
    );

    // Typed refusals: an unknown name at creation, an unreadable key at registration.
    match up.create_upload(put("/z").client_identity("device-z")) {
        Err(Error::InvalidCertificate { reason }) => {
            assert!(reason.contains("device-z"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match up.register_client_identity("device-c", &a_cert, tmp.path().join("gone.key")) {
        Err(Error::InvalidCertificate { reason }) => {
            assert!(reason.contains("gone.key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Registered while running, and used by a new upload.
    up.register_client_identity("device-c", &a_cert, &a_key)
        .unwrap();
    let c = up
        .create_upload(put("/c").client_identity("device-c"))
        .unwrap();
    assert_eq!(ended(&c, Duration::from_secs(20)).unwrap().status, 201);
    up.shutdown().unwrap();
    // An upload made by a run that registers device-c but sends nothing...
    let up = fast(&store)
        .start_transfers(false)
        .client_identity("device-c", &a_cert, &a_key)
        .open()
        .unwrap();
    let c_id = up
        .create_upload(put("/c2").client_identity("device-c"))
        .unwrap()
        .id();
    up.shutdown().unwrap();

    // ...reopened without device-c: it waits, with its reason, and sends nothing.
    let before = server.request_count();
    let up = fast(&store)
        .add_root_certificate_pem(server.ca_pem())
        .open()
        .unwrap();
    let c = up.get(c_id).unwrap();
    assert!(wait_for(&c, Duration::from_secs(20), |s| s
        == Status::PausedNoCredentials));
    match c.error() {
        Some(Error::InvalidCertificate { reason }) => {
            assert!(reason.contains("device-c"), "{reason}")
        }
        other => panic!("the reason it waits: {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.request_count(),
        before,
        "nothing sent without its identity"
    );
    up.register_client_identity("device-c", &a_cert, &a_key)
        .unwrap();
    let info = ended(&c, Duration::from_secs(20)).expect("goes on once registered");
    assert_eq!(info.status, 201);
    assert_eq!(c.progress().attempts, 0);
    up.shutdown().unwrap();
    crate::support::assert_no_bytes(&store, b"PRIVATE KEY");
}

/// mTLS against nginx (Debian's, `ssl_verify_client on`): the device certificate
/// stores the file byte-exact. nginx refuses a missing, foreign or expired certificate
/// differently from a TLS alert: it finishes the handshake, answers HTTP 400 with a page
/// that says why, and closes. Each of those ends in the same final `Error::Tls` as an
/// alert, no retry spent, with nginx's answer kept, and nothing stored.
#[test]
fn nginx_takes_the_device_certificate_and_refuses_the_others_for_good() {
    use crate::support::nginx::Nginx;
    use crate::support::TlsFlavor;
    let tmp = tempfile::tempdir().unwrap();
    let ca = ClientCa::generate("fleet device CA");
    let server_tls = TlsMaterial::generate(TlsFlavor::Good);
    let dir = tmp.path();
    let (crt, key, client_ca) = (dir.join("srv.crt"), dir.join("srv.key"), dir.join("ca.pem"));
    std::fs::write(&crt, &server_tls.leaf_pem).unwrap();
    std::fs::write(&key, &server_tls.key_pem).unwrap();
    std::fs::write(&client_ca, &ca.cert_pem).unwrap();
    let port = crate::support::closed_port();
    let extra = format!(
        "ssl_certificate {}; ssl_certificate_key {}; ssl_client_certificate {}; \
         ssl_verify_client on;",
        crt.display(),
        key.display(),
        client_ca.display()
    );
    let Some(nginx) = Nginx::start_listening(
        "mTLS against nginx",
        &dir.join("nginx"),
        None,
        "127.0.0.1",
        port,
        "ssl",
        &extra,
    ) else {
        return;
    };
    let url = format!("https://127.0.0.1:{port}/dev/a.bin");
    let f = write_file(dir, "f.bin", 3 << 20, 9);
    let run = |identity: Option<(PathBuf, PathBuf)>, name: &str| {
        let mut b = fast(&dir.join(format!("store-{name}")))
            .add_root_certificate_pem(server_tls.ca_pem.clone());
        if let Some((c, k)) = identity {
            b = b.client_certificate(c, k);
        }
        let up = b.open().unwrap();
        let h = up.create_upload(UploadRequest::put(&url, &f)).unwrap();
        let r = ended(&h, Duration::from_secs(30));
        let mut body = String::new();
        if let Ok(mut file) = h.response_body() {
            std::io::Read::read_to_string(&mut file, &mut body).unwrap();
        }
        (r, h.progress().attempts, body)
    };
    let good = write_pem(dir, "good", &ca.issue("device-1", false));
    let (r, attempts, _) = run(Some(good), "good");
    assert!(r.is_ok(), "{r:?}\n{}", nginx.error_log());
    assert_eq!(attempts, 0);
    assert_eq!(
        sha256_file(nginx.root().join("dev/a.bin")),
        sha256_file(&f),
        "stored byte-exact"
    );
    std::fs::remove_file(nginx.root().join("dev/a.bin")).unwrap();

    let other = ClientCa::generate("some other CA");
    let cases = [
        ("no certificate", None),
        (
            "another CA",
            Some(write_pem(dir, "foreign", &other.issue("device-1", false))),
        ),
        (
            "expired",
            Some(write_pem(dir, "expired", &ca.issue("device-1", true))),
        ),
    ];
    for (i, (case, identity)) in cases.into_iter().enumerate() {
        let (r, attempts, body) = run(identity, &format!("refused-{i}"));
        assert_refused(r.map(|_| ()), attempts, case);
        assert!(
            body.contains("400"),
            "{case}: nginx's answer is kept: {body:?}"
        );
        assert!(
            !nginx.root().join("dev/a.bin").exists(),
            "{case}: nothing stored"
        );
    }
}
