//! Sockets for connection-failure tests: a listener that never accepts, and a closed port.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Upper bound on connections made to fill the backlog.
const MAX_FILLERS: usize = 16;
/// A connect that takes longer than this is taken as hanging: the backlog is full.
const FILL_TIMEOUT: Duration = Duration::from_millis(100);

/// A listener on 127.0.0.1 with backlog 0 that never accepts, its queue already filled,
/// so a further connect gets no answer (Linux drops the SYN) and hangs until its timeout.
pub struct HangingListener {
    listener: Socket,
    /// Connections occupying the backlog; kept open for the listener's lifetime.
    fillers: Vec<Socket>,
    addr: SocketAddr,
}

impl HangingListener {
    /// Panics if the sockets cannot be set up (test setup).
    pub fn new() -> HangingListener {
        let listener = tcp_socket();
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        listener
            .bind(&any_port.into())
            .expect("bind hanging listener");
        listener.listen(0).expect("listen on hanging listener");
        let addr = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("hanging listener address");
        let target = SockAddr::from(addr);
        let mut fillers = Vec::new();
        for _ in 0..MAX_FILLERS {
            let socket = tcp_socket();
            // connect_timeout connects in nonblocking mode and polls for completion.
            let connected = socket.connect_timeout(&target, FILL_TIMEOUT).is_ok();
            fillers.push(socket);
            if !connected {
                break;
            }
        }
        HangingListener {
            listener,
            fillers,
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }
}

impl Default for HangingListener {
    fn default() -> HangingListener {
        HangingListener::new()
    }
}

fn tcp_socket() -> Socket {
    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("create TCP socket")
}

/// A port on 127.0.0.1 with nothing listening (bound once by us, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind for closed_port");
    listener.local_addr().expect("closed_port address").port()
}
