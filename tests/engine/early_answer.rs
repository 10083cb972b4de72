//! A server's answer before the body: nginx (Debian's, started by the test) refuses a
//! 64 MiB PUT sent at 1 MiB/s at once, with 401 (a location behind basic auth) or 413
//! (`client_max_body_size 1m`). With `Expect: 100-continue`, which the crate sends on
//! bodies of 1 MiB or more, the upload ends with that status in about a round trip,
//! with almost none of the body sent and no retry spent (before: 29 s of body, then a
//! network error with no status, and with retries, the whole file again).

use std::time::{Duration, Instant};

use background_transfer::{Error, UploadRequest};

use crate::support::nginx::Nginx;
use crate::support::proxy::Proxy;
use crate::support::{closed_port, ended, fast, write_file, MIB};

#[test]
fn a_401_or_413_before_the_body_costs_no_body_and_no_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let port = closed_port();
    let Some(nginx) = Nginx::start(
        "early answers from nginx",
        &tmp.path().join("nginx"),
        None,
        "127.0.0.1",
        port,
        "location /private/ { auth_basic \"devices\"; auth_basic_user_file /dev/null; }\n    \
         location /small/ { client_max_body_size 1m; dav_methods PUT; }",
    ) else {
        return;
    };
    let proxy = Proxy::start(format!("127.0.0.1:{}", nginx.port).parse().unwrap());
    let up = fast(&tmp.path().join("store"))
        .max_bandwidth(Some(MIB))
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "big.bin", 64 * MIB, 7);
    for (path, status) in [("/private/a.bin", 401), ("/small/a.bin", 413)] {
        let before = proxy.bytes_to_server();
        let started = Instant::now();
        let h = up
            .create_upload(UploadRequest::put(proxy.url(path), &f))
            .unwrap();
        let err = ended(&h, Duration::from_secs(30)).unwrap_err();
        let took = started.elapsed();
        let sent = proxy.bytes_to_server() - before;
        eprintln!("{status} from nginx: ended after {took:?}, {sent} bytes sent");
        assert!(
            matches!(err, Error::HttpStatus { status: s } if s == status),
            "{err:?}"
        );
        assert_eq!(
            h.response_info().map(|r| r.status),
            Some(status),
            "the answer is kept"
        );
        assert_eq!(h.progress().attempts, 0, "no retry spent");
        assert!(sent < MIB, "{sent} bytes of the body were sent");
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}
