//! Name resolution for ureq: the system resolver (ureq's default), with its failures
//! marked so that classification can tell "no network" from "no such host".

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ureq::config::Config as UreqConfig;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// What a failed lookup said, from the resolver's own text: std reports `getaddrinfo`
/// errors as uncategorised I/O errors that keep only `gai_strerror`'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LookupKind {
    /// `EAI_AGAIN`: the name servers could not be asked or did not answer. With no
    /// network this is what every lookup gives.
    Temporary,
    /// `EAI_NONAME` / `EAI_NODATA`, or no address at all: the name servers say the
    /// name does not exist (or a resolver with no network may say so too).
    NotFound,
    /// Anything else (`EAI_FAIL`, `EAI_SYSTEM`, ...).
    Other,
}

impl LookupKind {
    /// Reads the kind from a resolver error's text (glibc, musl and BSD wordings).
    pub(crate) fn of(message: &str) -> LookupKind {
        let m = message.to_ascii_lowercase();
        if m.contains("temporary failure") || m.contains("try again") {
            LookupKind::Temporary
        } else if m.contains("not known")
            || m.contains("no address associated")
            || m.contains("name does not resolve")
            || m.contains("nodename nor servname")
            || m.contains("no such host")
        {
            LookupKind::NotFound
        } else {
            LookupKind::Other
        }
    }
}

/// A failed lookup of `host`, carried inside an `io::Error` through ureq.
#[derive(Debug)]
pub(crate) struct LookupFailed {
    pub host: String,
    pub kind: LookupKind,
    pub message: String,
}

impl fmt::Display for LookupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not look up {}: {}", self.host, self.message)
    }
}

impl std::error::Error for LookupFailed {}

/// Resolves `host:port` with the system resolver on a thread of its own, waiting at
/// most `timeout` and giving up at once when `stop` is set: `getaddrinfo` has no
/// timeout and cannot be interrupted, and a name server that never answers holds it
/// for the system's full wait (30 s a try). A lookup given up on finishes on its own
/// thread, which then ends. An address literal (`127.0.0.1:80`, `[::1]:443`) needs no
/// lookup and no thread.
pub(crate) fn lookup(
    host_port: &str,
    timeout: Duration,
    stop: Option<&AtomicBool>,
) -> Result<Vec<SocketAddr>, Lookup> {
    if let Ok(addr) = host_port.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host_port.to_string();
    let spawned = std::thread::Builder::new()
        .name("bgxfer-resolve".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        });
    if let Err(e) = spawned {
        return Err(Lookup::Failed(e));
    }
    let deadline = Instant::now().checked_add(timeout);
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(r) => return r.map_err(Lookup::Failed),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Lookup::Failed(io::Error::other("the lookup thread died")))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(Lookup::Stopped);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Lookup::TimedOut);
        }
    }
}

/// How a [`lookup`] failed.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The resolver's own error.
    Failed(io::Error),
    /// No answer within the timeout.
    TimedOut,
    /// The transfer was stopped meanwhile.
    Stopped,
}

/// The resolver for ureq: [`lookup`], with failures turned into [`LookupFailed`].
#[derive(Debug)]
pub(crate) struct MarkedResolver {
    pub timeout: Duration,
    pub stop: Arc<AtomicBool>,
}

impl Resolver for MarkedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &UreqConfig,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default().to_string();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ureq::Error::BadUri(format!("{uri} is not an absolute URL")));
        };
        let Some(host_port) = DefaultResolver::host_and_port(scheme, authority) else {
            return Err(ureq::Error::BadUri(format!("no port for {uri}")));
        };
        let addrs = match lookup(&host_port, self.timeout, Some(&self.stop)) {
            Ok(a) => a,
            Err(Lookup::Stopped) => {
                return Err(ureq::Error::Io(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "lookup stopped",
                )))
            }
            Err(Lookup::TimedOut) => return Err(ureq::Error::Timeout(ureq::Timeout::Resolve)),
            Err(Lookup::Failed(e)) => {
                let message = e.to_string();
                let message = message
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&message)
                    .to_string();
                return Err(ureq::Error::Io(io::Error::new(
                    e.kind(),
                    LookupFailed {
                        host,
                        kind: LookupKind::of(&message),
                        message,
                    },
                )));
            }
        };
        let mut result = self.empty();
        for a in config.ip_family().keep_wanted(addrs.into_iter()).take(16) {
            result.push(a);
        }
        if result.is_empty() {
            return Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                LookupFailed {
                    host,
                    kind: LookupKind::NotFound,
                    message: "no address for this name".into(),
                },
            )));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::LookupKind;

    #[test]
    fn kinds_from_resolver_texts() {
        for (text, kind) in [
            (
                "Temporary failure in name resolution",
                LookupKind::Temporary,
            ),
            ("Try again", LookupKind::Temporary),
            ("Name or service not known", LookupKind::NotFound),
            ("No address associated with hostname", LookupKind::NotFound),
            ("Name does not resolve", LookupKind::NotFound),
            (
                "nodename nor servname provided, or not known",
                LookupKind::NotFound,
            ),
            (
                "Non-recoverable failure in name resolution",
                LookupKind::Other,
            ),
        ] {
            assert_eq!(LookupKind::of(text), kind, "{text}");
        }
    }
}
