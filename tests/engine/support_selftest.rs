//! Self-test of `tests/support` (test server, TLS flavors, hanging listener, files) via raw sockets.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConnection, StreamOwned};
use socket2::{Domain, Protocol, Socket, Type};

use crate::support;
use crate::support::{sha256_hex, Action, Behavior, HangingListener, TestServer, TlsFlavor};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(10);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to test server");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads one response; the body per `Content-Length`, else to end of stream (not for 1xx).
fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if let Some(len) = response.header("content-length") {
        response.body = vec![0; len.parse().expect("content-length")];
        r.read_exact(&mut response.body)?;
    } else if status >= 200 {
        r.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

fn put_request(path: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Sends one PUT on a fresh connection and reads the answer.
fn put(server: &TestServer, path: &str, body: &[u8]) -> io::Result<Response> {
    let mut stream = connect(server.addr());
    stream.write_all(&put_request(path, body, ""))?;
    read_response(&mut BufReader::new(stream))
}

#[test]
fn content_length_put_is_recorded_with_its_hash() {
    let server = TestServer::start(Behavior::ok());
    let body = support::random_bytes(1 << 20, 1);
    let mut stream = connect(server.addr());
    stream
        .write_all(&put_request(
            "/upload?part=1",
            &body,
            "X-Upload-Id: abc\r\n",
        ))
        .unwrap();
    let response = read_response(&mut BufReader::new(&stream)).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");

    assert!(server.wait_for_requests(1, WAIT));
    let requests = server.requests();
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("PUT", "/upload?part=1")
    );
    assert!(r
        .headers
        .contains(&("X-Upload-Id".to_string(), "abc".to_string())));
    assert_eq!(r.header("x-upload-id"), Some("abc"));
    assert_eq!(r.body_len, body.len() as u64);
    assert_eq!(r.sha256, sha256_hex(&body));
    assert!(r.complete && r.finished);
    assert!(r.finished_at >= r.started_at);
    assert!(server.url("/x").starts_with("http://127.0.0.1:"));
    assert_eq!(
        server.url("x"),
        format!("http://127.0.0.1:{}/x", server.port())
    );
}

#[test]
fn chunked_body_is_decoded_and_hashed() {
    let server = TestServer::start(Behavior::ok());
    let body = support::random_bytes(100_000, 2);
    let mut stream = connect(server.addr());
    stream
        .write_all(b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for (i, chunk) in [&body[..1], &body[1..4097], &body[4097..]]
        .iter()
        .enumerate()
    {
        let extension = if i == 1 { ";name=value" } else { "" };
        write!(stream, "{:x}{extension}\r\n", chunk.len()).unwrap();
        stream.write_all(chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\nX-Trailer: t\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(&stream)).unwrap();
    assert_eq!(response.status, 200);

    assert!(server.wait_for_requests(1, WAIT));
    let r = &server.requests()[0];
    assert_eq!(r.body_len, body.len() as u64);
    assert_eq!(r.sha256, sha256_hex(&body));
    assert!(r.complete);
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let server = TestServer::start(Behavior::ok());
    let stream = connect(server.addr());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (i, body) in [b"first".as_slice(), b"second body".as_slice()]
        .iter()
        .enumerate()
    {
        writer
            .write_all(&put_request(&format!("/r{i}"), body, ""))
            .unwrap();
        let response = read_response(&mut reader).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None);
    }
    assert!(server.wait_for_requests(2, WAIT));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].connection_id, requests[1].connection_id);
    assert_eq!(requests[1].path, "/r1");
    assert_eq!(requests[1].sha256, sha256_hex(b"second body"));
    assert_eq!(server.connections(), 1);
}

#[test]
fn close_after_body_bytes_records_the_partial_body() {
    let server = TestServer::start(Behavior::script([Action::CloseAfterBodyBytes(1000)]));
    let body = support::random_bytes(200_000, 3);
    let mut stream = connect(server.addr());
    let _ = stream.write_all(&put_request("/cut", &body, "")); // may fail once the server closes
    assert!(read_response(&mut BufReader::new(&stream)).is_err());

    assert!(server.wait_for_requests(1, WAIT));
    let r = &server.requests()[0];
    assert!(!r.complete);
    assert_eq!(r.body_len, 1000);
    assert_eq!(r.sha256, sha256_hex(&body[..1000]));

    // The script is used up: the next request gets the default answer.
    assert_eq!(put(&server, "/again", b"x").unwrap().status, 200);
}

#[test]
fn retry_after_and_redirect_headers_are_sent() {
    let server = TestServer::start(Behavior::script([
        Action::RetryAfter {
            status: 503,
            seconds: 7,
        },
        Action::RetryAfter {
            status: 429,
            seconds: 1,
        },
        Action::Redirect {
            status: 307,
            location: "/elsewhere".into(),
        },
    ]));
    let busy = put(&server, "/a", b"1").unwrap();
    assert_eq!((busy.status, busy.header("retry-after")), (503, Some("7")));
    let limited = put(&server, "/a", b"1").unwrap();
    assert_eq!(
        (limited.status, limited.header("Retry-After")),
        (429, Some("1"))
    );
    let moved = put(&server, "/a", b"1").unwrap();
    assert_eq!(
        (moved.status, moved.header("location")),
        (307, Some("/elsewhere"))
    );
    assert!(server.wait_for_requests(3, WAIT));
    assert!(server.requests().iter().all(|r| r.complete));
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let server = TestServer::start(Behavior::ok());
    let stream = connect(server.addr());
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(
            b"PUT /e HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 100);
    writer.write_all(b"hello").unwrap();
    assert_eq!(read_response(&mut reader).unwrap().status, 200);
    assert!(server.wait_for_requests(1, WAIT));
    assert_eq!(server.requests()[0].sha256, sha256_hex(b"hello"));
}

#[test]
fn handler_and_runtime_changes_pick_actions() {
    let server = TestServer::start(Behavior::ok());
    server.set_handler(Arc::new(|head, index| {
        if head.path == "/missing" {
            Action::respond(404, "nope")
        } else {
            Action::respond(200, format!("#{index}"))
        }
    }));
    assert_eq!(put(&server, "/missing", b"").unwrap().status, 404);
    assert_eq!(put(&server, "/found", b"").unwrap().body, b"#1");
    server.set_script(vec![Action::respond(201, "made")]);
    assert_eq!(put(&server, "/found", b"").unwrap().status, 201);
    assert_eq!(put(&server, "/found", b"").unwrap().body, b"#3");
    server.set_behavior(Action::respond(202, ""));
    assert_eq!(put(&server, "/found", b"").unwrap().status, 202);
}

#[test]
fn other_faults_behave_as_documented() {
    let server = TestServer::start(Behavior::script([
        Action::CloseImmediately,
        Action::Garbage,
        Action::HugeBody(1_000_000),
        Action::DelayResponse(Duration::from_millis(200)),
        Action::HugeBody(u64::MAX),
    ]));
    assert!(put(&server, "/closed", b"abc").is_err());

    let mut raw = Vec::new();
    let mut stream = connect(server.addr());
    stream
        .write_all(&put_request("/garbage", b"abc", ""))
        .unwrap();
    let _ = stream.read_to_end(&mut raw);
    assert!(!raw.is_empty() && !raw.starts_with(b"HTTP/"));

    let huge = put(&server, "/huge", b"").unwrap();
    assert_eq!((huge.status, huge.body.len()), (200, 1_000_000));

    let started = Instant::now();
    assert_eq!(put(&server, "/slow", b"abc").unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let mut stream = connect(server.addr());
    stream.write_all(&put_request("/endless", b"", "")).unwrap();
    let mut endless = BufReader::new(stream);
    let mut head = String::new();
    endless.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
    let mut chunk = vec![0; 1 << 20];
    endless.read_exact(&mut chunk).unwrap();

    assert!(server.wait_for_requests(5, WAIT));
    let requests = server.requests();
    assert!(!requests[0].complete);
    assert_eq!(requests[0].body_len, 0);
    assert!(requests[1..].iter().all(|r| r.complete));
}

#[test]
fn stalled_upload_is_released_by_drop() {
    let server = TestServer::start(Action::StallAfterBodyBytes(10));
    let body = vec![7u8; 10_000];
    let mut stream = connect(server.addr());
    stream.write_all(&put_request("/stall", &body, "")).unwrap();
    assert!(server.wait_for_requests(1, WAIT));
    let r = &server.requests()[0];
    assert_eq!((r.body_len, r.complete), (10, false));

    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut rest = Vec::new();
    let ended = stream.read_to_end(&mut rest);
    assert!(ended.is_err() || rest.is_empty());
}

#[test]
fn max_concurrent_counts_parallel_slow_uploads() {
    let server = TestServer::start(Action::SlowRead {
        bytes_per_sec: 40_000,
    });
    let barrier = Arc::new(Barrier::new(3));
    let uploads: Vec<_> = (0..3)
        .map(|i| {
            let addr = server.addr();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let body = support::random_bytes(20_000, i);
                let mut stream = connect(addr);
                barrier.wait();
                stream.write_all(&put_request("/slow", &body, "")).unwrap();
                read_response(&mut BufReader::new(stream)).unwrap().status
            })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.join().unwrap(), 200);
    }
    assert_eq!(server.max_concurrent(), 3);
    assert_eq!(server.active(), 0);
    assert!(server.requests().iter().all(|r| r.complete));
}

/// Sends `GET /secure` over TLS to `server`, checking the certificate for `name`.
fn tls_get(server: &TestServer, name: &str) -> io::Result<Response> {
    let config = support::tls::client_config(&server.ca_der());
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut tls = StreamOwned::new(conn, connect(server.addr()));
    tls.write_all(b"GET /secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    tls.flush()?;
    read_response(&mut BufReader::new(tls))
}

fn certificate_error(result: io::Result<Response>) -> CertificateError {
    let err = result.err().expect("TLS handshake should fail");
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(e)) => e.clone(),
        _ => panic!("expected a certificate error, got {err:?}"),
    }
}

#[test]
fn tls_handshake_succeeds_with_the_test_ca() {
    let server = TestServer::start_tls(Behavior::ok());
    assert!(server.url("/x").starts_with("https://127.0.0.1:"));
    let from_pem = CertificateDer::from_pem_slice(server.ca_pem().as_bytes()).unwrap();
    assert_eq!(from_pem.as_ref(), server.ca_der().as_slice());
    for name in ["localhost", "127.0.0.1"] {
        let response = tls_get(&server, name).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, b"ok".as_slice())
        );
    }
    assert!(server.wait_for_requests(2, WAIT));
    assert_eq!(server.requests()[0].path, "/secure");
}

#[test]
fn tls_bad_certificates_are_rejected() {
    let wrong_host = TestServer::start_tls_with(Behavior::ok(), TlsFlavor::WrongHost);
    let err = certificate_error(tls_get(&wrong_host, "localhost"));
    assert!(
        matches!(
            err,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ),
        "{err:?}"
    );

    let expired = TestServer::start_tls_with(Behavior::ok(), TlsFlavor::Expired);
    let err = certificate_error(tls_get(&expired, "localhost"));
    assert!(
        matches!(
            err,
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        ),
        "{err:?}"
    );
    assert_eq!(wrong_host.request_count() + expired.request_count(), 0);
}

#[test]
fn hanging_listener_makes_connect_time_out() {
    let hanging = HangingListener::new();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let started = Instant::now();
    let err = socket
        .connect_timeout(&hanging.addr().into(), Duration::from_millis(300))
        .expect_err("connect to a full backlog should hang");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn closed_port_refuses_connections() {
    let port = support::closed_port();
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens there");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn file_helpers_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 * (1 << 20) + 5;
    let path = support::write_file(&dir, "data.bin", len as u64, 42);
    let expected = support::random_bytes(len, 42);
    assert_eq!(std::fs::read(&path).unwrap(), expected);
    assert_eq!(support::sha256_file(&path), sha256_hex(&expected));
    assert_ne!(support::random_bytes(64, 43), expected[..64]);

    let sparse = support::sparse_file(&dir, "sparse.bin", 1 << 30);
    assert_eq!(std::fs::metadata(sparse).unwrap().len(), 1 << 30);
}
