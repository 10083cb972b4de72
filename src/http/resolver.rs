//! Name resolution for ureq: the system resolver (ureq's default), with its failures
//! marked so that classification can tell "no network" from "no such host".

use std::fmt;
use std::io;

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

/// ureq's default resolver, with failures turned into [`LookupFailed`].
#[derive(Debug, Default)]
pub(crate) struct MarkedResolver(DefaultResolver);

impl Resolver for MarkedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &UreqConfig,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = || uri.host().unwrap_or_default().to_string();
        match self.0.resolve(uri, config, timeout) {
            Err(ureq::Error::Io(e)) => {
                let message = e.to_string();
                let message = message
                    .strip_prefix("failed to lookup address information: ")
                    .unwrap_or(&message)
                    .to_string();
                Err(ureq::Error::Io(io::Error::new(
                    e.kind(),
                    LookupFailed {
                        host: host(),
                        kind: LookupKind::of(&message),
                        message,
                    },
                )))
            }
            Err(ureq::Error::HostNotFound) => Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                LookupFailed {
                    host: host(),
                    kind: LookupKind::NotFound,
                    message: "no address for this name".into(),
                },
            ))),
            other => other,
        }
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
