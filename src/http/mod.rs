//! HTTP mechanism: the ureq agent (socket2 connector, rustls, explicit proxy) and one
//! attempt on the wire, with redirects handled here and errors classified for the
//! scheduler's retry policy.

mod attempt;
mod body;
mod connector;
pub(crate) mod date;
mod resolver;
mod response;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ureq::config::Config as UreqConfig;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector};
use ureq::Agent;

pub(crate) use attempt::{resolve as resolve_location, same_origin, send, Attempt, Sent};
pub(crate) use body::BodyReader;
pub(crate) use connector::connect;
pub(crate) use response::{read_response, StoredResponse};

use crate::{Config, Error};

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

/// The parsed root certificates, checked once at open.
pub(crate) fn root_certs(config: &Config) -> Result<Option<RootCerts>, Error> {
    if config.root_certs_pem.is_empty() {
        return Ok(None);
    }
    let mut certs = Vec::new();
    for pem in &config.root_certs_pem {
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::InvalidCertificate {
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::InvalidCertificate {
            reason: "no CERTIFICATE block in the PEM data".into(),
        });
    }
    Ok(Some(RootCerts::new_with_certs(&certs)))
}

/// A new agent. Each worker gets its own, so the scheduler can interrupt its sockets
/// with `Agent::shutdown` without touching other transfers.
pub(crate) fn agent(
    config: &Config,
    roots: &Option<RootCerts>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Agent, Error> {
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if let Some(r) = roots {
        tls = tls.root_certs(r.clone());
    } else if !config.webpki_roots {
        // No root at all: every certificate is refused (ureq's default is webpki-roots).
        tls = tls.root_certs(RootCerts::new_with_certs(&[]));
    }
    let proxy = match &config.proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| Error::InvalidUrl {
            url: crate::redact::redact_url(p),
            reason: format!("bad proxy: {e}"),
        })?),
        None => None,
    };
    let ucfg: UreqConfig = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .user_agent(config.user_agent.as_str())
        .allow_non_standard_methods(true)
        .save_redirect_history(false)
        .no_delay(true)
        .input_buffer_size(config.buffer_size.max(16 * 1024))
        // The response head must fit the input buffer: ureq only reports a head that is
        // too large when it exceeds this cap, and one that merely fills the buffer looks
        // like a peer that stopped talking ("Peer disconnected").
        .max_response_header_size((64 * 1024).min(config.buffer_size.max(16 * 1024) - 1))
        .output_buffer_size(config.buffer_size)
        .timeout_connect(config.connect_timeout.checked_add(Duration::from_secs(30)))
        .timeout_send_request(Some(config.stall_timeout))
        .timeout_per_write(Some(config.stall_timeout))
        .timeout_recv_response(Some(config.response_timeout))
        .timeout_recv_body(Some(config.response_timeout))
        .tls_config(tls.build())
        .build();
    let connector = ()
        .chain(ConnectProxyConnector::default())
        .chain(connector::SocketConnector {
            connect_timeout: config.connect_timeout,
            user_timeout: config.tcp_user_timeout,
            stop,
        })
        .chain(RustlsConnector::default());
    Ok(Agent::with_parts(
        ucfg,
        connector,
        resolver::MarkedResolver::default(),
    ))
}

/// Turns a ureq error into ours and says whether a retry can help.
pub(crate) fn classify(e: ureq::Error) -> (Error, Class) {
    use ureq::Error as U;
    match e {
        U::Timeout(t) => {
            let (phase, class) = match t {
                ureq::Timeout::Resolve => ("connect", Class::Unreachable),
                // The TCP connect succeeded (its own timeout is ConnectTimedOut) but the
                // TLS or proxy handshake did not finish: the host is there, spend a retry.
                ureq::Timeout::Connect => ("connect", Class::Transient),
                ureq::Timeout::SendRequest | ureq::Timeout::SendBody | ureq::Timeout::PerWrite => {
                    ("send", Class::Transient)
                }
                _ => ("response", Class::Transient),
            };
            (
                Error::Timeout {
                    phase: phase.into(),
                },
                class,
            )
        }
        U::HostNotFound => (
            Error::Network {
                message: "host name not found".into(),
            },
            Class::Unreachable,
        ),
        U::Io(io) => classify_io(&io),
        U::ConnectionFailed => (
            Error::Network {
                message: "connection failed".into(),
            },
            Class::Unreachable,
        ),
        U::Rustls(e) => (
            Error::Tls {
                message: e.to_string(),
            },
            Class::Final,
        ),
        U::Tls(m) => (Error::Tls { message: m.into() }, Class::Final),
        U::BadUri(m) => (
            Error::InvalidUrl {
                url: String::new(),
                reason: m,
            },
            Class::Final,
        ),
        U::Protocol(p) => (
            Error::Protocol {
                message: format!("malformed HTTP from the server: {p}"),
            },
            Class::Transient,
        ),
        U::LargeResponseHeader(..) => (
            Error::Protocol {
                message: "response header too large".into(),
            },
            Class::Transient,
        ),
        U::ConnectProxyFailed(m) => (Error::Network { message: m }, Class::Unreachable),
        other => (
            Error::Network {
                message: other.to_string(),
            },
            Class::Transient,
        ),
    }
}

pub(crate) fn classify_io(io: &io::Error) -> (Error, Class) {
    use io::ErrorKind as K;
    // rustls reports a failed handshake (untrusted, expired or wrong-host certificate, an
    // alert) as an io::Error wrapping its own error: that is TLS, and retrying cannot help.
    if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return (
            Error::Tls {
                message: e.to_string(),
            },
            Class::Final,
        );
    }
    if let Some(lost) = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<connector::ConnectionLost>())
    {
        return (
            Error::Network {
                message: lost.to_string(),
            },
            Class::Lost,
        );
    }
    if let Some(lookup) = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<resolver::LookupFailed>())
    {
        return classify_lookup(lookup, crate::route::exists());
    }
    if io
        .get_ref()
        .is_some_and(|e| e.is::<connector::ConnectTimedOut>())
    {
        return (
            Error::Timeout {
                phase: "connect".into(),
            },
            Class::Unreachable,
        );
    }
    let class = match io.kind() {
        K::ConnectionRefused
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => Class::Unreachable,
        K::TimedOut => {
            return (
                Error::Timeout {
                    phase: "send".into(),
                },
                Class::Transient,
            )
        }
        _ => Class::Transient,
    };
    (
        Error::Network {
            message: io.to_string(),
        },
        class,
    )
}

/// A failed name lookup. "Try again" (`EAI_AGAIN`: the name servers could not be
/// reached) is what every lookup gives with no network, so it is offline. "Not found"
/// is offline too while the machine has no route anywhere (some resolvers say it with
/// no network); with a route, the name servers answered that the name does not exist,
/// and retrying cannot help.
fn classify_lookup(lookup: &resolver::LookupFailed, has_route: bool) -> (Error, Class) {
    use resolver::LookupKind as L;
    let error = Error::Network {
        message: lookup.to_string(),
    };
    let class = match (lookup.kind, has_route) {
        (L::Temporary, _) | (_, false) => Class::Unreachable,
        (L::NotFound, true) => {
            return (
                Error::Network {
                    message: format!(
                        "host {} not found: the name servers say it does not exist ({})",
                        lookup.host, lookup.message
                    ),
                },
                Class::Final,
            )
        }
        (L::Other, true) => Class::Transient,
    };
    (error, class)
}

/// Whether a status is worth retrying (WinRT's set plus 408 and 504).
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
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

/// Shared by workers: the parsed roots.
pub(crate) type Roots = Arc<Option<RootCerts>>;

#[cfg(test)]
mod tests {
    use super::resolver::{LookupFailed, LookupKind};
    use super::{classify_io, classify_lookup, Class};

    fn lookup(kind: LookupKind) -> LookupFailed {
        LookupFailed {
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
            let (e, c) = classify_lookup(&lookup(kind), route);
            assert_eq!(c, class, "{kind:?} route={route}");
            assert!(e.to_string().contains("uploads.example"), "{e}");
        }
    }

    #[test]
    fn a_lookup_error_through_io_is_recognised() {
        let io = std::io::Error::other(lookup(LookupKind::Temporary));
        assert_eq!(classify_io(&io).1, Class::Unreachable);
    }

    #[test]
    fn a_connection_that_stopped_answering_is_lost_not_transient() {
        for kind in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::HostUnreachable,
        ] {
            let inner = std::io::Error::from(kind);
            let io = std::io::Error::new(kind, super::connector::ConnectionLost(inner));
            assert_eq!(classify_io(&io).1, Class::Lost);
        }
        // A reset is the server's answer: a retry is spent.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&reset).1, Class::Transient);
    }
}
