//! TLS: a configured root makes HTTPS uploads byte-exact; untrusted, wrong-host and expired certificates fail at once with `Error::Tls`.

use std::time::Duration;

use background_transfer::{Error, Status, UploadRequest, Uploader};

use crate::support::connect_proxy::ConnectProxy;
use crate::support::tls::TlsMaterial;
use crate::support::{fast, sha256_file, write_file, Action, TestServer, TlsFlavor};

#[test]
fn https_upload_with_the_configured_root_is_byte_exact() {
    https_upload_is_byte_exact(None);
}

/// Through an HTTP `CONNECT` proxy, TLS runs over the proxy's tunnel (not a socket of
/// the uploader's own): the body still arrives byte-exact, and through the proxy.
#[test]
fn https_through_a_connect_proxy_is_byte_exact() {
    let proxy = ConnectProxy::start();
    https_upload_is_byte_exact(Some(&proxy));
    assert_eq!(proxy.tunnels(), 1, "the connection went through the proxy");
}

/// A 3 MiB PUT over TLS (through `proxy` if given), trusting the server's CA.
fn https_upload_is_byte_exact(proxy: Option<&ConnectProxy>) {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_tls(Action::respond(201, "stored over tls"));
    assert!(server.url("/u").starts_with("https://"));
    let up = fast(&tmp.path().join("store"))
        .add_root_certificate_pem(server.ca_pem())
        .proxy(proxy.map(ConnectProxy::url))
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a", 3 << 20, 1);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let info = h
        .wait_timeout(Duration::from_secs(20))
        .expect("ended in time")
        .expect("completed");
    assert_eq!(info.status, 201);
    assert_eq!(info.url, server.url("/u"));
    assert_eq!(h.progress().attempts, 0);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "PUT");
    assert!(reqs[0].complete);
    assert_eq!(reqs[0].body_len, 3 << 20);
    assert_eq!(reqs[0].sha256, sha256_file(&f));
    up.shutdown().unwrap();
}

/// Uploads to one server share TLS sessions: each upload after the first resumes a
/// session instead of a full handshake (one TLS configuration per uploader, not one per
/// transfer), and still sends every byte.
#[test]
fn later_uploads_to_a_server_resume_its_tls_session() {
    let tmp = tempfile::tempdir().unwrap();
    let (material, resumed) = TlsMaterial::generate(TlsFlavor::Good).counting_resumptions();
    let server = TestServer::start_tls_material(Action::respond(201, "ok"), material);
    let up = fast(&tmp.path().join("store"))
        .add_root_certificate_pem(server.ca_pem())
        .open()
        .unwrap();
    for (i, len) in [(0u8, 10_000u64), (1, 200_000), (2, 1)] {
        let f = write_file(tmp.path(), &format!("f{i}"), len, i.into());
        let h = up
            .create_upload(UploadRequest::put(server.url(&format!("/r{i}")), &f))
            .unwrap();
        let info = h
            .wait_timeout(Duration::from_secs(20))
            .expect("ended in time")
            .expect("completed");
        assert_eq!(info.status, 201);
        let reqs = server.requests();
        assert_eq!(reqs[usize::from(i)].sha256, sha256_file(&f));
    }
    assert_eq!(server.connections(), 3, "one connection per upload");
    assert_eq!(
        resumed.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the second and third uploads resumed a session"
    );
    up.shutdown().unwrap();
}

/// Uploads to a TLS server with `flavor`, trusting its CA if `trust`, and checks the
/// upload fails with `Error::Tls` after a single connection. Returns the message.
fn tls_failure(flavor: TlsFlavor, trust: bool) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let server = TestServer::start_tls_with(Action::ok(), flavor);
    let mut b = fast(&tmp.path().join("store"));
    if trust {
        b = b.add_root_certificate_pem(server.ca_pem());
    }
    let up = b.open().unwrap();
    let f = write_file(tmp.path(), "a", 100_000, 2);
    let h = up
        .create_upload(UploadRequest::put(server.url("/u"), &f))
        .unwrap();
    let err = h
        .wait_timeout(Duration::from_secs(20))
        .expect("ended in time")
        .unwrap_err();
    let Error::Tls { message } = &err else {
        panic!("{flavor:?}: expected Error::Tls, got {err:?}");
    };
    assert!(!message.is_empty());
    assert_eq!(h.status(), Status::Error);
    assert!(h.response_info().is_none());
    // Retrying cannot fix a certificate: no attempt after the first.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(server.connections(), 1, "{flavor:?}: one connection only");
    let complete = server.requests().iter().filter(|r| r.complete).count();
    assert_eq!(complete, 0, "{flavor:?}: no body reached the server");
    up.shutdown().unwrap();
    err.to_string()
}

#[test]
fn without_the_root_the_upload_fails_with_a_tls_error() {
    let msg = tls_failure(TlsFlavor::Good, false);
    assert!(msg.contains("TLS"), "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
}

#[test]
fn a_certificate_for_another_host_fails_with_a_tls_error() {
    let msg = tls_failure(TlsFlavor::WrongHost, true);
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");
}

#[test]
fn an_expired_certificate_fails_with_a_tls_error() {
    let msg = tls_failure(TlsFlavor::Expired, true);
    assert!(msg.to_lowercase().contains("expired"), "{msg}");
}

#[test]
fn an_invalid_root_pem_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_pems: [&[u8]; 3] = [
        b"this is not PEM at all",
        b"-----BEGIN CERTIFICATE-----\n!!!! not base64 !!!!\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n",
    ];
    for (i, pem) in bad_pems.iter().enumerate() {
        let store = tmp.path().join(format!("s{i}"));
        let err = Uploader::builder()
            .store_dir(&store)
            .add_root_certificate_pem(pem.to_vec())
            .open()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidCertificate { .. }),
            "{i}: {err:?}"
        );
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
