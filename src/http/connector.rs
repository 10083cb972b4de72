//! TCP connections made with socket2: an explicit connect timeout, TCP keepalive and
//! `TCP_USER_TIMEOUT`, so a dead cellular link is noticed in seconds.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, TcpKeepalive, Type};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::Timeout;

/// How long a connect goes unanswered before it is reported as waiting (a dead zone, a
/// modem attaching): a connect that is answered sooner is never reported.
pub(crate) const UNANSWERED: Duration = Duration::from_secs(1);

/// Told `true` when a connect has gone unanswered for [`UNANSWERED`], and `false` when
/// that connect ends, either way (never `false` without a `true` before it).
#[derive(Clone)]
pub(crate) struct ConnectWatch(Arc<dyn Fn(bool) + Send + Sync>);

impl ConnectWatch {
    pub fn new(f: impl Fn(bool) + Send + Sync + 'static) -> Self {
        ConnectWatch(Arc::new(f))
    }
}

impl fmt::Debug for ConnectWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectWatch")
    }
}

/// Says `false` to the watch when a connect it was told about ends.
struct Reported<'a>(Option<&'a ConnectWatch>);

impl Drop for Reported<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.0 {
            (w.0)(false);
        }
    }
}

/// Opens TCP connections for ureq. Stands where ureq's own `TcpConnector` would.
#[derive(Debug, Clone)]
pub(crate) struct SocketConnector {
    pub connect_timeout: Duration,
    pub user_timeout: Duration,
    /// Set when the scheduler stops the transfer: a connect in progress gives up.
    pub stop: Arc<AtomicBool>,
    /// Told about connects that go unanswered.
    pub watch: Option<ConnectWatch>,
    /// Waited on after the connect, before the connection is handed to ureq (and any
    /// byte is sent): the scheduler opens it once the transfer's start is durable.
    pub gate: Option<Arc<super::StartGate>>,
    /// Shared with the body readers when file bytes go out with `sendfile(2)`.
    pub zero_copy: Option<Arc<super::ZeroCopy>>,
}

impl SocketConnector {
    fn pass_gate(&self) -> Result<(), ureq::Error> {
        match &self.gate {
            Some(g) => g.wait().map_err(ureq::Error::Io),
            None => Ok(()),
        }
    }
}

impl<In: Transport> Connector<In> for SocketConnector {
    type Out = Either<In, SocketTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(t) = chained {
            // A proxy connection made earlier in the chain.
            self.pass_gate()?;
            return Ok(Some(Either::A(t)));
        }
        let mut last = None;
        for addr in details.addrs.iter() {
            match connect(
                *addr,
                self.connect_timeout,
                self.user_timeout,
                Some(&self.stop),
                self.watch.as_ref(),
            ) {
                Ok(stream) => {
                    self.pass_gate()?;
                    let stream = Arc::new(Sock(stream));
                    let weak: Weak<dyn ShutdownHandle> =
                        Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>;
                    (details.register_shutdown)(weak)?;
                    let buffers = LazyBuffers::new(
                        details.config.input_buffer_size(),
                        details.config.output_buffer_size(),
                    );
                    return Ok(Some(Either::B(SocketTransport {
                        stream,
                        buffers,
                        read_timeout: None,
                        write_timeout: None,
                        zero_copy: self.zero_copy.clone(),
                        id: super::ZeroCopy::transport_id(),
                    })));
                }
                Err(e) => {
                    log::debug!("connect to {addr} failed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => {
                ureq::Error::Io(io::Error::new(io::ErrorKind::TimedOut, ConnectTimedOut))
            }
            Some(e) => ureq::Error::Io(e),
            None => ureq::Error::HostNotFound,
        })
    }
}

/// Marks a TCP connect that timed out: the host did not answer at all (unreachable),
/// unlike ureq's own connect timeout, which also covers the TLS handshake with a host
/// that did answer.
#[derive(Debug)]
pub(crate) struct ConnectTimedOut;

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TCP connect timed out")
    }
}

impl std::error::Error for ConnectTimedOut {}

/// `EINPROGRESS`: a non-blocking connect that has started. The platform's own value
/// (115 on most Linux targets, 150 on MIPS, 36 on the BSDs and macOS).
const EINPROGRESS: i32 = libc::EINPROGRESS;

/// One connect with a timeout, keepalive and `TCP_USER_TIMEOUT`. It is made without
/// blocking and watched, so that `stop` (a pause, cancel or shutdown) ends it at once
/// instead of after the connect timeout, which `Agent::shutdown` cannot do: the socket
/// is only registered with the agent once connected. `watch` hears of a connect that
/// goes unanswered for [`UNANSWERED`], and of its end.
pub(crate) fn connect(
    addr: SocketAddr,
    timeout: Duration,
    user_timeout: Duration,
    stop: Option<&AtomicBool>,
    watch: Option<&ConnectWatch>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(15))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    socket.set_tcp_keepalive(&keepalive)?;
    // While connecting, `TCP_USER_TIMEOUT` is the connect timeout itself: the kernel
    // then retransmits the SYN for as long as the program allowed (a modem that needs
    // minutes to attach), instead of giving up at the shorter timeout meant for a
    // connection that stopped answering, or at `tcp_syn_retries` (about 2 minutes).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(timeout))?;
    socket.set_nonblocking(true)?;
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock =>
        {
            wait_connected(&socket, timeout, stop, watch)?
        }
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(user_timeout))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = user_timeout;
    Ok(socket.into())
}

/// Waits for a non-blocking connect: done once the socket has a peer, failed once it
/// has an error. Polled (1 ms doubling to 20 ms) rather than `poll(2)`, which would
/// need `unsafe` or another dependency; a loopback connect is seen within a millisecond.
fn wait_connected(
    socket: &Socket,
    timeout: Duration,
    stop: Option<&AtomicBool>,
    watch: Option<&ConnectWatch>,
) -> io::Result<()> {
    let start = Instant::now();
    let deadline = start.checked_add(timeout);
    let mut nap = Duration::from_millis(1);
    let mut reported = Reported(None);
    loop {
        if let (Some(w), None) = (watch, reported.0) {
            if start.elapsed() >= UNANSWERED {
                (w.0)(true);
                reported.0 = Some(w);
            }
        }
        if let Some(e) = socket.take_error()? {
            return Err(e);
        }
        if socket.peer_addr().is_ok() {
            return Ok(());
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "connect stopped",
            ));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// A connection's socket, shared with the agent's shutdown handle.
///
/// `Agent::shutdown` (how the scheduler stops a transfer: pause, cancel, remove, costed
/// network, shutdown) also sets `SO_LINGER` to 0 here, so the close that follows resets
/// the connection and the kernel drops what is still queued in the send buffer. Without
/// it, the megabytes a fast link queues up for a slow reader kept reaching the server
/// for seconds after a pause or cancel.
pub(crate) struct Sock(TcpStream);

impl ShutdownHandle for Sock {
    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.0).set_linger(Some(Duration::ZERO));
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A TCP transport for ureq (the equivalent of its private `TcpTransport`).
pub(crate) struct SocketTransport {
    stream: Arc<Sock>,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// File bytes a body reader claimed for the next transmit go out with `sendfile(2)`.
    zero_copy: Option<Arc<super::ZeroCopy>>,
    /// Tells this transport's output buffer from another's in `zero_copy`.
    id: u64,
}

/// Marks an established connection that stopped answering: the kernel gave up on it
/// (`TCP_USER_TIMEOUT` or keepalive: `ETIMEDOUT`, or an ICMP unreachable that became
/// its error). The network went away under a working transfer: a cellular dead zone, a
/// removed route, a link that went down. Unlike a reset, the server said nothing.
#[derive(Debug)]
pub(crate) struct ConnectionLost(pub io::Error);

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the connection stopped answering ({})", self.0)
    }
}

impl std::error::Error for ConnectionLost {}

/// A read or write error on an established connection, as ureq should see it.
/// `WouldBlock` is our own socket timeout (`SO_SNDTIMEO`/`SO_RCVTIMEO`, set from
/// ureq's timeouts): the peer is there but too slow. `TimedOut` is the kernel's.
pub(crate) fn transport_error(e: io::Error, reason: Timeout) -> ureq::Error {
    use io::ErrorKind as K;
    match e.kind() {
        K::WouldBlock => ureq::Error::Timeout(reason),
        K::TimedOut | K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown => {
            let kind = e.kind();
            ureq::Error::Io(io::Error::new(kind, ConnectionLost(e)))
        }
        _ => ureq::Error::Io(e),
    }
}

impl SocketTransport {
    /// A transport over a connected socket (what the connector makes, for unit tests).
    #[cfg(test)]
    pub(crate) fn over(stream: TcpStream) -> SocketTransport {
        SocketTransport {
            stream: Arc::new(Sock(stream)),
            buffers: LazyBuffers::new(16 * 1024, 16 * 1024),
            read_timeout: None,
            write_timeout: None,
            zero_copy: None,
            id: super::ZeroCopy::transport_id(),
        }
    }

    /// Sets the socket's send timeout (`SO_SNDTIMEO`) from ureq's next write timeout,
    /// with a system call only when it changed; returns the timeout's reason.
    ///
    /// # Errors
    /// [`ureq::Error::Timeout`] when that timeout has already passed.
    pub(crate) fn write_timeout(&mut self, timeout: NextTimeout) -> Result<Timeout, ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.set_socket_write_timeout(timeout.not_zero().map(|d| *d))?;
        Ok(timeout.reason)
    }

    /// Sets the socket's receive timeout (`SO_RCVTIMEO`) as [`Self::write_timeout`]
    /// does the send timeout.
    ///
    /// # Errors
    /// [`ureq::Error::Timeout`] when that timeout has already passed.
    pub(crate) fn read_timeout(&mut self, timeout: NextTimeout) -> Result<Timeout, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.set_socket_read_timeout(timeout.not_zero().map(|d| *d))?;
        Ok(timeout.reason)
    }

    /// Sets the socket's receive timeout directly (the TLS handshake counts down to its
    /// own deadline).
    pub(crate) fn set_socket_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if t != self.read_timeout {
            self.stream.0.set_read_timeout(t)?;
            self.read_timeout = t;
        }
        Ok(())
    }

    /// Sets the socket's send timeout directly, as [`Self::set_socket_read_timeout`].
    pub(crate) fn set_socket_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if t != self.write_timeout {
            self.stream.0.set_write_timeout(t)?;
            self.write_timeout = t;
        }
        Ok(())
    }
}

/// The socket itself, for a layer above (TLS) that reads and writes it directly rather
/// than through this transport's buffers. Writes keep their vectors: TLS records go
/// out in one `writev`.
impl Read for SocketTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.stream.0).read(buf)
    }
}

impl Write for SocketTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.stream.0).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        (&self.stream.0).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for SocketTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // Taken first: an early return must not leave it for another transmit.
        let claim = self.zero_copy.as_ref().and_then(|zc| zc.take_claim());
        let reason = self.write_timeout(timeout)?;
        if let Some(zc) = &self.zero_copy {
            zc.set_output(self.id, self.buffers.output());
            if let Some(claim) = claim {
                return zc
                    .send(&self.stream.0, &claim, amount)
                    .map_err(|e| transport_error(e, reason));
            }
        }
        let output = &self.buffers.output()[..amount];
        (&self.stream.0)
            .write_all(output)
            .map_err(|e| transport_error(e, reason))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let reason = self.read_timeout(timeout)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&self.stream.0).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| transport_error(e, reason))?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // Probe without blocking: no bytes and no error means the peer has not closed.
        let stream = &self.stream.0;
        if stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut buf = [0u8; 1];
        let open =
            matches!((&*stream).read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && stream.set_nonblocking(false).is_ok()
    }
}

impl fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport")
            .field("peer", &self.stream.0.peer_addr().ok())
            .finish()
    }
}

impl Drop for SocketTransport {
    fn drop(&mut self) {
        if let Some(zc) = &self.zero_copy {
            zc.transport_gone(self.id);
        }
        let _ = self.stream.0.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    /// A connect in progress is recognised by the platform's constant, not a number
    /// that holds on x86 and ARM only (on MIPS, OpenWrt's routers, it is 150).
    #[test]
    fn einprogress_is_the_platforms() {
        assert_eq!(super::EINPROGRESS, libc::EINPROGRESS);
        #[cfg(all(target_os = "linux", any(target_arch = "mips", target_arch = "mips64")))]
        assert_eq!(super::EINPROGRESS, 150);
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        assert_eq!(super::EINPROGRESS, 115);
        let e = std::io::Error::from_raw_os_error(libc::EINPROGRESS);
        assert_eq!(e.raw_os_error(), Some(super::EINPROGRESS));
    }
}
