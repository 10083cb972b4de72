//! The crate's one error type: every failure names the thing and the fix.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::model::{Failure, TimeoutPhase};

/// Everything that can go wrong in `background-transfer`.
///
/// Each variant says what happened and, in its `Display` text, what to do about it.
/// The enum is `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another `Uploader` (in this process or another one) holds the store's lock.
    ///
    /// Only one opener may use a store directory at a time. Close the other one, or use
    /// a different store directory. A process that was killed releases the lock.
    StoreLocked {
        /// The store directory.
        path: PathBuf,
    },
    /// The journal file does not start with our magic bytes: it is not a journal of
    /// this crate, or its first bytes were destroyed. The file is left untouched.
    JournalNotRecognized {
        /// The journal file.
        path: PathBuf,
    },
    /// The journal was written by a newer format version than this build reads.
    /// The file is left untouched; open it with a newer build of the crate.
    JournalVersion {
        /// The journal file.
        path: PathBuf,
        /// The version found in the file header.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The journal holds a whole record (its checksum is right) that this build cannot
    /// read and that is not marked as one older builds may skip: written by a newer
    /// build (a device rolled back to an older one), or a bug. Nothing was cut off: the
    /// file is left byte for byte as it was; open it with the build that wrote it.
    JournalUnreadable {
        /// The journal file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
    /// A write or fsync of the journal failed earlier, so the journal handle refuses
    /// further appends: after a failed fsync, Linux may have dropped the dirty pages and
    /// nothing written since the last good fsync can be trusted. Reopen the store.
    JournalPoisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// A record is larger than the journal's hard cap (for example a request with
    /// enormous headers). Nothing was written.
    RecordTooLarge {
        /// The encoded size of the record.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The URL cannot be used: it does not parse, is not `http`/`https`, or has no host.
    /// Nothing was persisted.
    InvalidUrl {
        /// The URL, with any userinfo and query removed.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request header is invalid (a name that is not an HTTP token, a value with CR,
    /// LF or NUL, or one the crate sets itself). Nothing was persisted.
    InvalidHeader {
        /// The header name (its value is never shown: it may be a credential).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request cannot be sent as built (for example a multipart upload without
    /// parts, or a bad boundary). Nothing was persisted.
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// A configured root certificate does not parse as PEM, a client certificate or key
    /// is missing, unreadable or does not parse, or an upload names a client identity
    /// that is not registered (it then waits as [`crate::Status::PausedNoCredentials`]).
    InvalidCertificate {
        /// What is wrong, naming the file or the identity.
        reason: String,
    },
    /// A source file does not exist, is not a regular file, or cannot be read.
    SourceMissing {
        /// The source file.
        path: PathBuf,
    },
    /// A source file changed (size or modification time) after the upload was created.
    /// The crate never sends a file that changed: create a new upload for the new content.
    SourceChanged {
        /// The source file.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// The server answered with an error status: a final one (4xx other than 408 and
    /// 429), or a transient one after every retry was spent. Its response is kept.
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// A timeout fired (after every retry was spent).
    Timeout {
        /// Which one: connecting, sending (a stalled write), or the response.
        phase: TimeoutPhase,
    },
    /// TLS failed: an untrusted or expired certificate, a wrong host name, a handshake
    /// failure. Check the server's certificate or configure its root.
    Tls {
        /// The TLS error.
        message: String,
    },
    /// The network failed (refused, reset, unreachable) after every retry was spent.
    Network {
        /// The network error.
        message: String,
    },
    /// The upload cannot safely continue: for example a POST that a restart interrupted
    /// (it may have reached the server). Mark such requests idempotent to allow it.
    NotResumable {
        /// Why.
        reason: String,
    },
    /// The server broke the protocol, or redirected in a way the crate refuses (a 301,
    /// 302 or 303 would turn the upload into a GET).
    Protocol {
        /// What went wrong.
        message: String,
    },
    /// A storage service (S3 and its kin) refused the request with its own error code:
    /// `SignatureDoesNotMatch` for a wrong secret, `EntityTooSmall` for parts below the
    /// service's minimum, `BadDigest` for a part that arrived damaged. Its response is
    /// kept when it was the last answer.
    Service {
        /// The HTTP status.
        status: u16,
        /// The service's error code (`AccessDenied`, `NoSuchBucket`, ...).
        code: String,
        /// The service's message, with what the crate knows (which part, which size).
        message: String,
    },
    /// A credentials provider failed, or none is registered under the name the upload
    /// records. A `permanent` failure (the provider said retrying cannot help, for
    /// example a deprovisioned device) ends the upload; any other spends a retry.
    Credentials {
        /// The provider's name.
        provider: String,
        /// What went wrong (the provider's own text; never a secret).
        message: String,
        /// Retrying cannot help.
        permanent: bool,
    },
    /// The upload was canceled.
    Canceled,
    /// No upload with this id exists in the store (never, or removed).
    NotFound {
        /// The id.
        id: u64,
    },
    /// The upload has no response yet: the server has not answered it.
    NoResponse {
        /// The id.
        id: u64,
    },
    /// The `Uploader` has been shut down; open the store again.
    ShutDown,
    /// The store's owner refused this process, or the operating system did: only
    /// processes of the store's owning user, or of the group its owner configured
    /// ([`crate::UploaderBuilder::client_group`]), may talk to a store. Nothing changed.
    PermissionDenied {
        /// The store directory.
        path: PathBuf,
    },
    /// No process holds the store (no [`crate::Uploader`] is open on it), and the
    /// operation needs one: a [`crate::Client`] can submit without an owner, but not
    /// read progress or control uploads.
    NoOwner {
        /// The store directory.
        path: PathBuf,
    },
    /// An I/O operation on a file of the store or on a source file failed.
    Io {
        /// What we were doing, for example "fsync journal".
        op: Cow<'static, str>,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op: Cow::Borrowed(op),
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StoreLocked { path } => write!(
                f,
                "store {} is locked by another Uploader; close it or use another store directory",
                path.display()
            ),
            Error::JournalNotRecognized { path } => write!(
                f,
                "{} is not a background-transfer journal (bad magic bytes); it was left untouched",
                path.display()
            ),
            Error::JournalVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {} has format version {found}, this build reads up to {supported}; \
                 it was left untouched, open it with a newer build",
                path.display()
            ),
            Error::JournalUnreadable { path, offset } => write!(
                f,
                "journal {} holds a record at offset {offset} that this build cannot read \
                 (written by a newer build?); it was left untouched, open it with the build \
                 that wrote it",
                path.display()
            ),
            Error::JournalPoisoned { path } => write!(
                f,
                "an earlier write or fsync of journal {} failed; reopen the store",
                path.display()
            ),
            Error::RecordTooLarge { len, max } => write!(
                f,
                "journal record of {len} bytes exceeds the {max}-byte cap; make the request smaller"
            ),
            Error::InvalidUrl { url, reason } => write!(f, "invalid URL {url:?}: {reason}"),
            Error::InvalidHeader { name, reason } => {
                write!(f, "invalid request header {name:?}: {reason}")
            }
            Error::InvalidRequest { reason } => write!(f, "invalid request: {reason}"),
            Error::InvalidCertificate { reason } => {
                write!(f, "certificate not usable: {reason}")
            }
            Error::SourceMissing { path } => write!(
                f,
                "source file {} is missing, not a regular file, or unreadable",
                path.display()
            ),
            Error::SourceChanged { path, what } => write!(
                f,
                "source file {} changed after the upload was created ({what}); \
                 create a new upload for the new content",
                path.display()
            ),
            Error::HttpStatus { status } => write!(
                f,
                "the server answered HTTP {status}; its response is kept in the store"
            ),
            Error::Timeout { phase } => write!(f, "timed out ({phase})"),
            Error::Tls { message } => write!(f, "TLS failed: {message}"),
            Error::Network { message } => write!(f, "network error: {message}"),
            Error::NotResumable { reason } => write!(f, "upload not continued: {reason}"),
            Error::Protocol { message } => write!(f, "protocol error: {message}"),
            Error::Service {
                status,
                code,
                message,
            } => write!(f, "the server answered HTTP {status} {code}: {message}"),
            Error::Credentials {
                provider,
                message,
                permanent,
            } => write!(
                f,
                "credentials provider {provider:?} {}: {message}",
                if *permanent {
                    "failed for good"
                } else {
                    "failed"
                }
            ),
            Error::Canceled => write!(f, "the upload was canceled"),
            Error::NotFound { id } => write!(f, "no upload {id} in the store"),
            Error::NoResponse { id } => write!(
                f,
                "upload {id} has no response yet; wait for it to complete or fail"
            ),
            Error::ShutDown => write!(f, "the uploader was shut down; open the store again"),
            Error::PermissionDenied { path } => write!(
                f,
                "permission denied: store {} admits only its owning user and the group its \
                 owner configured",
                path.display()
            ),
            Error::NoOwner { path } => write!(
                f,
                "no process holds store {} (start `bgupload run` or open an Uploader on it)",
                path.display()
            ),
            Error::Io { op, path, source } => {
                write!(f, "could not {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// The failure this error stands for: a `Clone` copy that the journal persists and
    /// that [`Error::from_failure`] turns back into the same variant with the same text.
    pub(crate) fn to_failure(&self) -> Failure {
        use Error as E;
        use Failure as F;
        match self {
            E::StoreLocked { path } => F::StoreLocked { path: path.clone() },
            E::JournalNotRecognized { path } => F::JournalNotRecognized { path: path.clone() },
            E::JournalVersion {
                path,
                found,
                supported,
            } => F::JournalVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            E::JournalUnreadable { path, offset } => F::JournalUnreadable {
                path: path.clone(),
                offset: *offset,
            },
            E::JournalPoisoned { path } => F::JournalPoisoned { path: path.clone() },
            E::RecordTooLarge { len, max } => F::RecordTooLarge {
                len: *len as u64,
                max: *max as u64,
            },
            E::InvalidUrl { url, reason } => F::InvalidUrl {
                url: url.clone(),
                reason: reason.clone(),
            },
            E::InvalidHeader { name, reason } => F::InvalidHeader {
                name: name.clone(),
                reason: reason.clone(),
            },
            E::InvalidRequest { reason } => F::InvalidRequest {
                reason: reason.clone(),
            },
            E::InvalidCertificate { reason } => F::InvalidCertificate {
                reason: reason.clone(),
            },
            E::SourceMissing { path } => F::SourceMissing { path: path.clone() },
            E::SourceChanged { path, what } => F::SourceChanged {
                path: path.clone(),
                what: what.clone(),
            },
            E::HttpStatus { status } => F::HttpStatus { status: *status },
            E::Timeout { phase } => F::Timeout { phase: *phase },
            E::Tls { message } => F::Tls {
                message: message.clone(),
            },
            E::Network { message } => F::Network {
                message: message.clone(),
            },
            E::NotResumable { reason } => F::NotResumable {
                reason: reason.clone(),
            },
            E::Protocol { message } => F::Protocol {
                message: message.clone(),
            },
            E::Service {
                status,
                code,
                message,
            } => F::Service {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            },
            E::Credentials {
                provider,
                message,
                permanent,
            } => F::Credentials {
                provider: provider.clone(),
                message: message.clone(),
                permanent: *permanent,
            },
            E::Canceled => F::Canceled,
            E::NotFound { id } => F::NotFound { id: *id },
            E::NoResponse { id } => F::NoResponse { id: *id },
            E::ShutDown => F::ShutDown,
            E::PermissionDenied { path } => F::PermissionDenied { path: path.clone() },
            E::NoOwner { path } => F::NoOwner { path: path.clone() },
            E::Io { op, path, source } => F::Io {
                op: op.to_string(),
                path: path.clone(),
                os_code: source.raw_os_error(),
                message: source.to_string(),
            },
        }
    }

    /// The error a failure stands for (see [`Error::to_failure`]).
    pub(crate) fn from_failure(f: &Failure) -> Error {
        use Error as E;
        use Failure as F;
        match f.clone() {
            F::StoreLocked { path } => E::StoreLocked { path },
            F::JournalUnreadable { path, offset } => E::JournalUnreadable { path, offset },
            F::JournalNotRecognized { path } => E::JournalNotRecognized { path },
            F::JournalVersion {
                path,
                found,
                supported,
            } => E::JournalVersion {
                path,
                found,
                supported,
            },
            F::JournalPoisoned { path } => E::JournalPoisoned { path },
            F::RecordTooLarge { len, max } => E::RecordTooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            F::InvalidUrl { url, reason } => E::InvalidUrl { url, reason },
            F::InvalidHeader { name, reason } => E::InvalidHeader { name, reason },
            F::InvalidRequest { reason } => E::InvalidRequest { reason },
            F::InvalidCertificate { reason } => E::InvalidCertificate { reason },
            F::SourceMissing { path } => E::SourceMissing { path },
            F::SourceChanged { path, what } => E::SourceChanged { path, what },
            F::HttpStatus { status } => E::HttpStatus { status },
            F::Timeout { phase } => E::Timeout { phase },
            F::Tls { message } => E::Tls { message },
            F::Network { message } => E::Network { message },
            F::NotResumable { reason } => E::NotResumable { reason },
            F::Protocol { message } => E::Protocol { message },
            F::Service {
                status,
                code,
                message,
            } => E::Service {
                status,
                code,
                message,
            },
            F::Credentials {
                provider,
                message,
                permanent,
            } => E::Credentials {
                provider,
                message,
                permanent,
            },
            F::Canceled => E::Canceled,
            F::NotFound { id } => E::NotFound { id },
            F::NoResponse { id } => E::NoResponse { id },
            F::ShutDown => E::ShutDown,
            F::PermissionDenied { path } => E::PermissionDenied { path },
            F::NoOwner { path } => E::NoOwner { path },
            F::Io {
                op,
                path,
                os_code,
                message,
            } => E::Io {
                op: Cow::Owned(op),
                path,
                source: match os_code {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::other(message),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        // Results travel through channels and every call returns one: keep it compact.
        assert!(
            std::mem::size_of::<Error>() <= 64,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn messages_name_the_path() {
        let e = Error::StoreLocked {
            path: "/var/lib/x".into(),
        };
        assert!(e.to_string().contains("/var/lib/x"));
    }
}
