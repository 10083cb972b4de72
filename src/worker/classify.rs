//! What a failure means for the upload: whether the network is gone (no retry is spent),
//! a retry can help, or nothing can. Wire errors come from `http` as facts; this is the
//! one place that turns them, and the server's statuses, into a [`Class`].

use std::time::Duration;

use crate::http::{date, LookupKind, WireError};
use crate::model::TimeoutPhase;
use crate::Error;

/// What kind of failure an attempt met: the scheduler's retry policy keys on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The host could not be reached (refused, unreachable, connect timeout, DNS). The
    /// network may be down: no retry is spent.
    Unreachable,
    /// A working connection stopped answering (a dead zone, a lost route or link): the
    /// network went away mid-transfer. No retry is spent, and unlike `Unreachable`, a
    /// probe that just saw the host answer does not make it count: the connection
    /// itself worked.
    Lost,
    /// The host answered but the attempt failed (reset, timeout, 408/429/5xx): retry.
    Transient,
    /// Retrying cannot help.
    Final,
}

/// A wire error as the crate's error, and what it means.
pub(crate) fn wire(e: WireError) -> (Error, Class) {
    wire_with_route(e, crate::route::exists)
}

fn wire_with_route(e: WireError, has_route: impl FnOnce() -> bool) -> (Error, Class) {
    use WireError as W;
    match e {
        W::NoConnection {
            timed_out: true, ..
        } => (
            Error::Timeout {
                phase: TimeoutPhase::Connect,
            },
            Class::Unreachable,
        ),
        W::NoConnection { message, .. } => (Error::Network { message }, Class::Unreachable),
        W::Lookup {
            host,
            kind,
            message,
        } => lookup(&host, kind, &message, has_route()),
        W::Lost { message } => (Error::Network { message }, Class::Lost),
        // The TCP connect succeeded (its own timeout is `NoConnection`) but the TLS or
        // proxy handshake did not finish: the host is there, spend a retry.
        W::Timeout(phase) => (Error::Timeout { phase }, Class::Transient),
        W::Tls { message } => (Error::Tls { message }, Class::Final),
        W::BadUrl { message } => (
            Error::InvalidUrl {
                url: String::new(),
                reason: message,
            },
            Class::Final,
        ),
        W::Malformed { message } => (Error::Protocol { message }, Class::Transient),
        W::Proxy { message } => (Error::Network { message }, Class::Unreachable),
        W::Network { message } => (Error::Network { message }, Class::Transient),
    }
}

/// A failed name lookup. "Try again" (`EAI_AGAIN`: the name servers could not be
/// reached) is what every lookup gives with no network, so it is offline. "Not found"
/// is offline too while the machine has no route anywhere (some resolvers say it with
/// no network); with a route, the name servers answered that the name does not exist,
/// and retrying cannot help.
fn lookup(host: &str, kind: LookupKind, message: &str, has_route: bool) -> (Error, Class) {
    let error = Error::Network {
        message: format!("could not look up {host}: {message}"),
    };
    let class = match (kind, has_route) {
        (LookupKind::Temporary, _) | (_, false) => Class::Unreachable,
        (LookupKind::NotFound, true) => {
            return (
                Error::Network {
                    message: format!(
                        "host {host} not found: the name servers say it does not exist \
                         ({message})"
                    ),
                },
                Class::Final,
            )
        }
        (LookupKind::Other, true) => Class::Transient,
    };
    (error, class)
}

/// A failed request as the crate's error, and what it means. `step` names the request
/// (`tus PATCH https://host/files/x`): errors that carry a message say which one failed,
/// in the error text and in what the journal keeps.
pub(crate) fn failed(f: crate::http::Failed, step: &str) -> (Error, Class) {
    let (error, class) = match f {
        crate::http::Failed::Wire(e) => wire(e),
        crate::http::Failed::Source(e) => (e, Class::Final),
        crate::http::Failed::Redirect(message) => (Error::Protocol { message }, Class::Final),
    };
    (during(error, step), class)
}

fn during(e: Error, step: &str) -> Error {
    let named = |message: String| format!("{step}: {message}");
    match e {
        Error::Network { message } => Error::Network {
            message: named(message),
        },
        Error::Tls { message } => Error::Tls {
            message: named(message),
        },
        Error::Protocol { message } => Error::Protocol {
            message: named(message),
        },
        other => other,
    }
}

/// Whether a status is worth retrying (WinRT's set plus 408 and 504).
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The reason a server gave in an HTTP answer for refusing the client certificate, if
/// the answer is one. nginx (`ssl_verify_client on`) does not refuse with a TLS alert:
/// it finishes the handshake, then answers 400 with a page titled by its internal
/// status, 496 (no certificate) or 495 (a certificate it could not verify: another CA,
/// expired, revoked). `head` is the start of the page.
pub(crate) fn client_cert_refusal(status: u16, https: bool, head: &[u8]) -> Option<String> {
    const REASONS: [&str; 2] = [
        "No required SSL certificate was sent",
        "The SSL certificate error",
    ];
    if status != 400 || !https {
        return None;
    }
    let text = String::from_utf8_lossy(head);
    let reason = REASONS.iter().find(|r| text.contains(*r))?;
    Some(format!(
        "the server refused the client certificate (HTTP 400: {reason}); check the \
         certificate given to UploaderBuilder::client_certificate, or that one is given"
    ))
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn retry_after(headers: &[(String, String)]) -> Option<Duration> {
    let v = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))?
        .1
        .trim();
    match v.parse::<u64>() {
        Ok(s) => Some(Duration::from_secs(s)),
        Err(_) => date::parse(v).map(|t| {
            t.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{wire_with_route, Class};
    use crate::http::{LookupKind, WireError};

    fn lookup(kind: LookupKind) -> WireError {
        WireError::Lookup {
            host: "uploads.example".into(),
            kind,
            message: "resolver text".into(),
        }
    }

    #[test]
    fn lookup_failures_offline_unless_the_name_is_known_not_to_exist() {
        use LookupKind::*;
        for (kind, route, class) in [
            (Temporary, false, Class::Unreachable),
            (Temporary, true, Class::Unreachable),
            (NotFound, false, Class::Unreachable),
            (NotFound, true, Class::Final),
            (Other, false, Class::Unreachable),
            (Other, true, Class::Transient),
        ] {
            let (e, c) = wire_with_route(lookup(kind), || route);
            assert_eq!(c, class, "{kind:?} route={route}");
            assert!(e.to_string().contains("uploads.example"), "{e}");
        }
    }

    #[test]
    fn nginx_pages_that_refuse_the_client_certificate_are_recognized() {
        use super::client_cert_refusal as refusal;
        let page = |title: &str| {
            format!("<html>\r\n<head><title>400 {title}</title></head>\r\n<body>\r\n")
        };
        let none = page("No required SSL certificate was sent");
        let bad = page("The SSL certificate error");
        for p in [&none, &bad] {
            let m = refusal(400, true, p.as_bytes()).expect(p);
            assert!(m.contains("refused the client certificate"), "{m}");
        }
        assert!(refusal(400, false, none.as_bytes()).is_none(), "plain HTTP");
        assert!(refusal(403, true, none.as_bytes()).is_none());
        assert!(refusal(400, true, page("Bad Request").as_bytes()).is_none());
    }

    #[test]
    fn a_connection_that_stopped_answering_is_lost_and_a_reset_is_transient() {
        let lost = WireError::Lost {
            message: "timed out".into(),
        };
        assert_eq!(wire_with_route(lost, || true).1, Class::Lost);
        let reset = WireError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(wire_with_route(reset, || true).1, Class::Transient);
    }
}
