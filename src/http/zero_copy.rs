//! File bytes from the page cache to the socket with `sendfile(2)`
//! (`UploaderBuilder::sendfile`), for plain-HTTP bodies.
//!
//! ureq reads a body with a known length straight into its transport's output buffer
//! and then hands that buffer to the transport. With zero copy on, the body reader does
//! not fill the buffer: when ureq asks it to fill the output buffer of the plain socket
//! transport (the exact slice, checked by address and length), it claims that buffer's
//! next transmit for a range of the file instead, and the transport sends the range with
//! `sendfile`. Every read still goes through the reader, so pause, cancel, progress and
//! the bandwidth budget act per buffer as before. A connection wrapped in TLS never
//! transmits from that buffer (TLS has its own), so its reader never claims one: the
//! buffer is known by its transport's id, address and length, and forgotten when that
//! transport goes (a later buffer may take its address).

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Error;

/// Body bytes sent with `sendfile` by every uploader of this process (tests and the
/// benchmark read it).
static SENT: AtomicU64 = AtomicU64::new(0);

/// Body bytes this process has sent with `sendfile` so far.
#[doc(hidden)]
pub fn bytes_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// A range of a file that the next transmit sends in place of the output buffer.
pub(crate) struct Claim {
    pub file: Arc<File>,
    pub path: PathBuf,
    pub offset: u64,
    pub len: usize,
}

#[derive(Default)]
struct State {
    /// The output buffer of the plain socket transport that transmitted last: that
    /// transport's id, the buffer's address and length (the request head comes first).
    /// Cleared when that transport goes: a later buffer (a TLS connection's) may be
    /// allocated at the same address.
    output: Option<(u64, usize, usize)>,
    claim: Option<Claim>,
    /// Why a claimed range could not be sent from its file (it shrank): what the attempt
    /// fails with, instead of the transport error ureq reports.
    failure: Option<Error>,
}

/// Shared by one agent's socket transports and the body readers of its requests.
#[derive(Default)]
pub(crate) struct ZeroCopy {
    state: Mutex<State>,
}

impl std::fmt::Debug for ZeroCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ZeroCopy")
    }
}

impl ZeroCopy {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new id for a socket transport.
    pub fn transport_id() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    /// The output buffer of plain socket transport `id`, seen at a transmit.
    pub fn set_output(&self, id: u64, output: &[u8]) {
        self.state().output = Some((id, output.as_ptr() as usize, output.len()));
    }

    /// Transport `id` is gone: its buffer, and a claim on it, with it.
    pub fn transport_gone(&self, id: u64) {
        let mut s = self.state();
        if s.output.is_some_and(|(owner, _, _)| owner == id) {
            s.output = None;
            s.claim = None;
        }
    }

    /// A new request: no claim of an earlier one is left.
    pub fn new_request(&self) {
        self.state().claim = None;
    }

    /// Whether `buf` is that output buffer, whole: what ureq hands a body of known
    /// length to fill and then transmits from offset 0.
    pub fn is_output(&self, buf: &[u8]) -> bool {
        self.state()
            .output
            .is_some_and(|(_, at, len)| (at, len) == (buf.as_ptr() as usize, buf.len()))
    }

    /// Claims the next transmit for `claim`.
    pub fn claim(&self, claim: Claim) {
        self.state().claim = Some(claim);
    }

    /// The claim on this transmit, if any.
    pub fn take_claim(&self) -> Option<Claim> {
        self.state().claim.take()
    }

    /// Why the last claimed range could not be sent from its file, if it could not.
    pub fn take_failure(&self) -> Option<Error> {
        self.state().failure.take()
    }

    /// Sends `claim` (`amount` bytes, what ureq transmits) on `sock`. A file that ends
    /// before the range does fails it with [`Error::SourceChanged`] (kept for the attempt,
    /// see [`ZeroCopy::take_failure`]).
    pub fn send(&self, sock: &TcpStream, claim: &Claim, amount: usize) -> io::Result<()> {
        if claim.len != amount {
            // Not the transmit the reader claimed: the buffer does not hold the bytes.
            return Err(io::Error::other(format!(
                "a {amount}-byte transmit where {} file bytes were claimed",
                claim.len
            )));
        }
        let mut offset = i64::try_from(claim.offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        let mut left = claim.len;
        while left > 0 {
            match sendfile(sock, &claim.file, &mut offset, left) {
                Ok(0) => {
                    self.state().failure = Some(Error::SourceChanged {
                        path: claim.path.clone(),
                        what: "it shrank while being uploaded".into(),
                    });
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the source file ended early",
                    ));
                }
                Ok(n) => {
                    left -= n;
                    SENT.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn sendfile(sock: &TcpStream, file: &File, offset: &mut i64, count: usize) -> nix::Result<usize> {
    // The 64-bit call: a 32-bit ARM board's `off_t` would stop at 2 GiB.
    nix::sys::sendfile::sendfile64(sock, file, Some(offset), count)
}

/// Only Linux is offered zero copy (`http::agent`): elsewhere no claim is ever made.
#[cfg(not(target_os = "linux"))]
fn sendfile(_: &TcpStream, _: &File, _: &mut i64, _: usize) -> nix::Result<usize> {
    Err(nix::errno::Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::ZeroCopy;

    #[test]
    fn a_buffer_is_forgotten_with_its_transport() {
        let zc = ZeroCopy::default();
        let buf = vec![0u8; 64];
        let (a, b) = (ZeroCopy::transport_id(), ZeroCopy::transport_id());
        zc.set_output(a, &buf);
        assert!(zc.is_output(&buf));
        assert!(!zc.is_output(&buf[..32]), "only the whole buffer");
        zc.transport_gone(b);
        assert!(
            zc.is_output(&buf),
            "another transport going changes nothing"
        );
        zc.transport_gone(a);
        assert!(!zc.is_output(&buf), "forgotten with its transport");
    }
}
