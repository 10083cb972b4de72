//! What went wrong on the wire, as a fact: the transport's typed error. Whether a retry
//! can help is not decided here (see `worker::classify`).

use std::io;

use super::connector::{ConnectTimedOut, ConnectionLost};
use super::resolver::{LookupFailed, LookupKind};
use crate::model::TimeoutPhase;

/// A failure on the wire.
#[derive(Debug)]
pub(crate) enum WireError {
    /// No TCP connection could be made: refused, host or network unreachable, or no
    /// answer within the connect timeout (`timed_out`).
    NoConnection { message: String, timed_out: bool },
    /// The host name did not resolve.
    Lookup {
        host: String,
        kind: LookupKind,
        message: String,
    },
    /// A connection that was working stopped answering: the kernel gave up on it.
    Lost { message: String },
    /// One of the request's own timeouts fired while the host was there (a TLS or proxy
    /// handshake, a stalled write, a slow response).
    Timeout(TimeoutPhase),
    /// TLS failed (certificate, handshake, alert).
    Tls { message: String },
    /// The URL cannot be requested.
    BadUrl { message: String },
    /// The server broke HTTP (malformed answer, oversized head).
    Malformed { message: String },
    /// A proxy did not open the tunnel.
    Proxy { message: String },
    /// Anything else on the network: a reset, a close, an I/O error of the socket.
    Network { message: String },
}

impl From<ureq::Error> for WireError {
    fn from(e: ureq::Error) -> WireError {
        use ureq::Error as U;
        match e {
            U::Timeout(t) => match t {
                ureq::Timeout::Resolve => WireError::NoConnection {
                    message: "name lookup timed out".into(),
                    timed_out: true,
                },
                ureq::Timeout::Connect => WireError::Timeout(TimeoutPhase::Connect),
                ureq::Timeout::SendRequest | ureq::Timeout::SendBody | ureq::Timeout::PerWrite => {
                    WireError::Timeout(TimeoutPhase::Send)
                }
                _ => WireError::Timeout(TimeoutPhase::Response),
            },
            U::HostNotFound => WireError::NoConnection {
                message: "host name not found".into(),
                timed_out: false,
            },
            U::Io(io) => WireError::from(io),
            U::ConnectionFailed => WireError::NoConnection {
                message: "connection failed".into(),
                timed_out: false,
            },
            U::Rustls(e) => WireError::Tls {
                message: tls_message(&e),
            },
            U::Tls(m) => WireError::Tls { message: m.into() },
            U::BadUri(m) => WireError::BadUrl { message: m },
            U::Protocol(p) => WireError::Malformed {
                message: format!("malformed HTTP from the server: {p}"),
            },
            U::LargeResponseHeader(..) => WireError::Malformed {
                message: "response header too large".into(),
            },
            U::ConnectProxyFailed(m) => WireError::Proxy { message: m },
            other => WireError::Network {
                message: other.to_string(),
            },
        }
    }
}

impl From<io::Error> for WireError {
    /// An I/O error from a request or a response body. ureq hands its own errors back
    /// wrapped in an `io::Error` while a body is read: they are unwrapped first.
    fn from(io: io::Error) -> WireError {
        if io.get_ref().is_some_and(|e| e.is::<ureq::Error>()) {
            return WireError::from(ureq::Error::from(io));
        }
        use io::ErrorKind as K;
        // rustls reports a failed handshake (untrusted, expired or wrong-host
        // certificate, an alert) as an io::Error wrapping its own error.
        if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return WireError::Tls {
                message: tls_message(e),
            };
        }
        if let Some(lost) = io
            .get_ref()
            .and_then(|e| e.downcast_ref::<ConnectionLost>())
        {
            return WireError::Lost {
                message: lost.to_string(),
            };
        }
        if let Some(l) = io.get_ref().and_then(|e| e.downcast_ref::<LookupFailed>()) {
            return WireError::Lookup {
                host: l.host.clone(),
                kind: l.kind,
                message: l.message.clone(),
            };
        }
        if io.get_ref().is_some_and(|e| e.is::<ConnectTimedOut>()) {
            return WireError::NoConnection {
                message: "TCP connect timed out".into(),
                timed_out: true,
            };
        }
        match io.kind() {
            K::ConnectionRefused
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable => WireError::NoConnection {
                message: io.to_string(),
                timed_out: false,
            },
            K::TimedOut => WireError::Timeout(TimeoutPhase::Send),
            _ => WireError::Network {
                message: io.to_string(),
            },
        }
    }
}

/// A TLS error's text. The alerts a server sends when it refuses the client's
/// certificate (none sent, unknown issuer, expired, bad) say so in words: with TLS 1.3
/// they arrive after the handshake, on the first read, where they would otherwise read
/// as an unexplained failure.
fn tls_message(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::AlertReceived(
            a @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => format!(
            "the server refused the client certificate (TLS alert {a:?}); check the \
             certificate given to UploaderBuilder::client_certificate, or that one is given"
        ),
        other => other.to_string(),
    }
}
