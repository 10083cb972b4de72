//! TLS over the connection's own socket: rustls driven directly, in place of ureq's
//! `RustlsConnector`.
//!
//! ureq's connector puts a generic adapter between rustls and the socket: every TLS
//! record is copied once more into the TCP transport's buffer and sent with a system
//! call of its own (eight `sendto` per 128 KiB of body). Here rustls writes its records
//! for a whole output buffer to the socket in one `writev`, straight from its own
//! buffers, and reads straight from the socket. A connection tunnelled through a
//! `CONNECT` proxy, which has no socket of its own, goes through ureq's adapter as before.
//!
//! One [`ClientConfig`] per uploader (and one per client identity) is shared by all its
//! connections, so a TLS 1.3 session is resumed across uploads to the same server
//! instead of a full handshake each (early data stays off). It is built at the first TLS
//! connection, not at open.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use ureq::unversioned::transport::time::{Duration as UreqDuration, Instant as UreqInstant};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};
use ureq::Timeout;

use super::connector::{transport_error, SocketTransport};

/// What every TLS configuration of an uploader starts from: the trusted roots and the
/// crypto provider (ring).
#[derive(Debug)]
pub(crate) struct TlsBase {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl TlsBase {
    /// Trusts `roots` only.
    pub fn new(roots: RootCertStore) -> TlsBase {
        TlsBase {
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// A client configuration: TLS 1.2 and 1.3, certificates verified against the
    /// roots, `auth` presented as the client certificate if given.
    ///
    /// # Errors
    /// The key is not one rustls can sign with, or does not parse.
    pub fn client_config(
        &self,
        auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_root_certificates(self.roots.clone());
        let mut config = match auth {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.resumption = Resumption::in_memory_sessions(64);
        Ok(Arc::new(config))
    }
}

/// Wraps connections to `https` URLs in TLS: the uploader's configuration, presenting
/// `identity` if one is set.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    pub tls: Arc<super::Tls>,
    pub identity: Option<Arc<super::identity::Identity>>,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<A: Transport> Connector<Either<A, SocketTransport>> for TlsConnector {
    type Out = Either<Either<A, SocketTransport>, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<Either<A, SocketTransport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || inner.is_tls() {
            return Ok(Some(Either::A(inner)));
        }
        let host = details.uri.host().unwrap_or_default();
        // An IPv6 literal comes bracketed from the URI.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ureq::Error::Tls("invalid DNS name for TLS"))?;
        let config = self.tls.client_config(self.identity.as_deref())?;
        let mut conn = ClientConnection::new(config, name)?;
        // rustls queues at most one output buffer's records: each is written out before
        // the next is taken.
        conn.set_buffer_limit(None);
        let mut io = match inner {
            Either::B(socket) => Io::Socket(socket),
            Either::A(tunnel) => {
                let mut adapter =
                    TransportAdapter::new(tunnel.boxed(), details.current_time.clone());
                adapter.set_timeout(details.timeout);
                Io::Tunnel(adapter)
            }
        };
        let deadline = handshake_deadline(details);
        let mut handshake = Handshake {
            io: &mut io,
            deadline,
            reason: details.timeout.reason,
        };
        conn.complete_io(&mut handshake)
            .map_err(|e| handshake.error(e))?;
        if conn.is_handshaking() {
            // rustls returns early only on a would-block, which the handshake's I/O turns
            // into the timeout: a safety net, so that a half-made connection never
            // carries a body.
            return Err(ureq::Error::Timeout(details.timeout.reason));
        }
        log::trace!("TLS handshake done ({:?})", conn.protocol_version());
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport { buffers, conn, io })))
    }
}

/// When the connect step's timeout runs out, counted from the start of the connection
/// as ureq counts it; `None`: never.
fn handshake_deadline(details: &ConnectionDetails) -> Option<Instant> {
    match (details.now, details.timeout.after) {
        (UreqInstant::Exact(start), UreqDuration::Exact(after)) => start.checked_add(after),
        (UreqInstant::AlreadyHappened, _) => Some(Instant::now()),
        _ => None,
    }
}

/// What TLS reads and writes: the socket itself, or a proxy's tunnel through ureq's
/// adapter.
enum Io {
    Socket(SocketTransport),
    Tunnel(TransportAdapter),
}

impl Io {
    /// Applies ureq's next timeout for a write (`write`) or a read; returns its reason.
    /// The tunnel's adapter picks the per-write or per-read part itself.
    fn timeout(&mut self, timeout: NextTimeout, write: bool) -> Result<Timeout, ureq::Error> {
        match self {
            Io::Socket(s) if write => s.write_timeout(timeout),
            Io::Socket(s) => s.read_timeout(timeout),
            Io::Tunnel(t) => {
                t.set_timeout(timeout);
                Ok(timeout.reason)
            }
        }
    }

    /// An I/O error as ureq should see it: the socket's as the plain transport maps
    /// them, the tunnel's (ureq's own errors inside) unwrapped.
    fn error(&self, e: io::Error, reason: Timeout) -> ureq::Error {
        match self {
            Io::Socket(_) => transport_error(e, reason),
            Io::Tunnel(_) => ureq::Error::from(e),
        }
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Socket(s) => s.read(buf),
            Io::Tunnel(t) => t.read(buf),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Socket(s) => s.write(buf),
            Io::Tunnel(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Io::Socket(s) => s.write_vectored(bufs),
            Io::Tunnel(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The handshake's I/O: before each read and write, the socket's timeout is what is
/// left until the deadline, so the whole handshake, not each step, is bounded. A read or
/// write that runs out of time is ureq's timeout error, not a would-block: rustls'
/// `complete_io` would take that for a non-blocking socket and return mid-handshake.
struct Handshake<'a> {
    io: &'a mut Io,
    deadline: Option<Instant>,
    reason: Timeout,
}

impl Handshake<'_> {
    fn timed_out(&self) -> io::Error {
        io::Error::other(ureq::Error::Timeout(self.reason))
    }

    fn left(&self) -> io::Result<Option<std::time::Duration>> {
        match self.deadline {
            None => Ok(None),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(Some(left)),
                _ => Err(self.timed_out()),
            },
        }
    }

    /// A would-block (the socket's timeout) as the timeout it is.
    fn timeout_as_error<T>(&self, r: io::Result<T>) -> io::Result<T> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(self.timed_out()),
            other => other,
        }
    }

    fn error(&self, e: io::Error) -> ureq::Error {
        if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
            return ureq::Error::from(e);
        }
        self.io.error(e, self.reason)
    }
}

impl Read for Handshake<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        if let Io::Socket(s) = &mut self.io {
            s.set_socket_read_timeout(left)?;
        }
        let r = self.io.read(buf);
        self.timeout_as_error(r)
    }
}

impl Write for Handshake<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        if let Io::Socket(s) = &mut self.io {
            s.set_socket_write_timeout(left)?;
        }
        let r = self.io.write(buf);
        self.timeout_as_error(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS connection: ureq's plaintext buffers, the rustls state, and the socket.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    conn: ClientConnection,
    io: Io,
}

impl TlsTransport {
    /// Writes out every record rustls has queued.
    fn flush_records(&mut self, reason: Timeout) -> Result<(), ureq::Error> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.io) {
                Ok(0) => {
                    let e = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(self.io.error(e, reason));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io.error(e, reason)),
            }
        }
        Ok(())
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let reason = self.io.timeout(timeout, true)?;
        let mut sent = 0;
        while sent < amount {
            let output = &self.buffers.output()[sent..amount];
            sent += self.conn.writer().write(output)?;
            self.flush_records(reason)?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let reason = self.io.timeout(timeout, false)?;
        let input = self.buffers.input_append_buf();
        let read = rustls::Stream::new(&mut self.conn, &mut self.io).read(input);
        let amount = read.map_err(|e| self.io.error(e, reason))?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        match &mut self.io {
            Io::Socket(s) => s.is_open(),
            Io::Tunnel(t) => t.get_mut().is_open(),
        }
    }

    fn is_tls(&self) -> bool {
        true
    }
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTransport")
            .field("version", &self.conn.protocol_version())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, RootCertStore};
    use ureq::Timeout;

    use super::{Handshake, Io, TlsBase};
    use crate::http::connector::SocketTransport;

    /// A server that sends the start of its answer and then nothing: rustls' own loop
    /// takes the socket's timeout for a would-block and returns as if the handshake had
    /// gone as far as it could, so it must come back as the timeout it is.
    #[test]
    fn a_handshake_that_stalls_half_way_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut hello = [0u8; 2048];
            let _ = s.read(&mut hello);
            // The head of a ServerHello record, and no more.
            s.write_all(&[0x16, 0x03, 0x03, 0x00, 0x40, 0x02, 0x00, 0x00])
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
        });
        let stream = std::net::TcpStream::connect(addr).unwrap();
        let config = TlsBase::new(RootCertStore::empty())
            .client_config(None)
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(config, name).unwrap();
        let mut io = Io::Socket(SocketTransport::over(stream));
        let mut handshake = Handshake {
            io: &mut io,
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            reason: Timeout::Connect,
        };
        let started = Instant::now();
        let e = conn
            .complete_io(&mut handshake)
            .expect_err("half a handshake is no connection");
        assert!(
            matches!(handshake.error(e), ureq::Error::Timeout(Timeout::Connect)),
            "a timeout of the connect step"
        );
        assert!(conn.is_handshaking());
        assert!(started.elapsed() < Duration::from_secs(2));
        server.join().unwrap();
    }
}
