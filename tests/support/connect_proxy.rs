//! An HTTP `CONNECT` proxy on loopback that tunnels every request to 127.0.0.1 at the
//! port asked for: virtual-hosted S3 names need no DNS through it, and HTTPS goes
//! through it as a proxied client sends it.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP CONNECT proxy that tunnels every request to 127.0.0.1 at the port asked
/// for, whatever the host: virtual-hosted names then need no DNS. It serves for two
/// minutes at most.
pub struct ConnectProxy {
    pub port: u16,
    tunnels: Arc<AtomicU64>,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        use std::io::{BufRead, BufReader, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let tunnels = Arc::new(AtomicU64::new(0));
        let counted = tunnels.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let _ = client.set_nonblocking(false);
                    let mut reader = BufReader::new(client.try_clone().unwrap());
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let port = first
                        .split_whitespace()
                        .nth(1)
                        .and_then(|hp| hp.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok());
                    let (Some(port), true) = (port, first.starts_with("CONNECT ")) else {
                        return;
                    };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let mut c = client;
                    let _ = c.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n");
                    let (mut s_read, mut c_write) =
                        (server.try_clone().unwrap(), c.try_clone().unwrap());
                    let up = std::thread::spawn(move || {
                        let mut reader = reader;
                        let mut server = server;
                        let _ = std::io::copy(&mut reader, &mut server);
                        let _ = server.shutdown(std::net::Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                    let _ = up.join();
                });
            }
        });
        ConnectProxy { port, tunnels }
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
