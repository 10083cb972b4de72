//! The network watcher (Linux): a small thread on an rtnetlink socket that hears every
//! link, address and route change the kernel makes, for free, instead of waiting for
//! the prober's next poll.
//!
//! - A change that can bring connectivity back (a link going up, an address or a
//!   route added) makes the scheduler probe every waiting host at once.
//! - A change that can take it away (a link going down, an address or a route
//!   removed) makes it probe the hosts of running transfers at once: a transfer whose
//!   host no longer takes a connection is stopped and parked as `PausedNoNetwork`,
//!   without waiting for `TCP_USER_TIMEOUT` and without spending a retry.
//!
//! A burst of messages (an interface coming up brings its link, addresses and routes)
//! makes one round: changes are gathered for [`DEBOUNCE`] after the first. A kernel
//! that refuses the socket (no netlink in a container) leaves the prober polling, with
//! a logged warning. Polling stays in any case, for what netlink cannot see: the link
//! is up but the server, or something upstream, is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use netlink_packet_core::NetlinkBuffer;
use netlink_packet_route::link::{LinkFlags, LinkHeader};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::command::Command;

/// How long changes are gathered after the first one of a burst.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the thread looks at its stop flag while the network is quiet (a stop
/// waits at most this long for it).
const STOP_CHECK: Duration = Duration::from_millis(200);
/// The multicast groups: links, IPv4 and IPv6 addresses and routes.
const GROUPS: u32 = (libc::RTMGRP_LINK
    | libc::RTMGRP_IPV4_IFADDR
    | libc::RTMGRP_IPV6_IFADDR
    | libc::RTMGRP_IPV4_ROUTE
    | libc::RTMGRP_IPV6_ROUTE) as u32;

/// What a batch of changes can mean for connectivity.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    /// Connectivity may have come back.
    pub gained: bool,
    /// Connectivity may have gone.
    pub lost: bool,
}

/// What one rtnetlink message means, from its type (and, for a link, its flags);
/// other messages mean nothing here.
fn classify(message_type: u16, payload: &[u8]) -> Change {
    let gained = |g: bool| Change {
        gained: g,
        lost: !g,
    };
    match message_type {
        libc::RTM_NEWLINK => {
            let up = LinkHeader::parse(payload).is_ok_and(|h| {
                h.flags.contains(LinkFlags::Up) && h.flags.contains(LinkFlags::Running)
            });
            gained(up)
        }
        libc::RTM_DELLINK | libc::RTM_DELADDR | libc::RTM_DELROUTE => gained(false),
        libc::RTM_NEWADDR | libc::RTM_NEWROUTE => gained(true),
        _ => Change::default(),
    }
}

/// What the messages of one datagram mean, together. Only the fixed headers are read
/// (netlink-packet-core's and netlink-packet-route's parsers): the messages' attributes
/// do not matter here, and a parser of every message kind would cost the binary a
/// third of a megabyte.
pub(crate) fn classify_datagram(mut buf: &[u8]) -> Change {
    let mut change = Change::default();
    while let Ok(msg) = NetlinkBuffer::new_checked(buf) {
        let c = classify(msg.message_type(), msg.payload());
        change.gained |= c.gained;
        change.lost |= c.lost;
        // Messages are 4-byte aligned in a datagram.
        let next = (msg.length() as usize).div_ceil(4) * 4;
        if next == 0 {
            break;
        }
        buf = buf.get(next..).unwrap_or_default();
    }
    change
}

/// The watcher, ready to run on a thread of its own.
pub(crate) struct Watcher {
    socket: Socket,
    tx: Sender<Command>,
    stop: Arc<AtomicBool>,
}

/// Wakes a [`Watcher`] blocked in its read, so that it sees its stop flag at once
/// instead of at its next read timeout: a netlink message to its socket's port, from a
/// socket of our own. Best effort: if the message cannot be sent, the read timeout
/// ([`STOP_CHECK`]) still ends the wait.
pub(crate) struct Waker {
    port: u32,
}

impl Waker {
    pub fn wake(&self) {
        // A bare NLMSG_NOOP header: length 16, type 1, no flags, sequence 0, port 0.
        let mut msg = [0u8; 16];
        msg[0..4].copy_from_slice(&16u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&1u16.to_ne_bytes());
        let sent = Socket::new(NETLINK_ROUTE)
            .and_then(|s| s.send_to(&msg, &SocketAddr::new(self.port, 0), 0));
        if let Err(e) = sent {
            log::debug!("could not wake the network watcher ({e}); it stops at its next read");
        }
    }
}

impl Watcher {
    /// Opens the socket and joins the groups; `None` (logged) if the kernel refuses.
    pub fn open(tx: Sender<Command>, stop: Arc<AtomicBool>) -> Option<Watcher> {
        let opened = (|| {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind(&SocketAddr::new(0, GROUPS))?;
            socket2::SockRef::from(&socket).set_read_timeout(Some(STOP_CHECK))?;
            Ok::<_, std::io::Error>(socket)
        })();
        match opened {
            Ok(socket) => Some(Watcher { socket, tx, stop }),
            Err(e) => {
                log::warn!(
                    "no rtnetlink socket ({e}): network changes are noticed by polling only"
                );
                None
            }
        }
    }

    /// What wakes it when the uploader stops; `None` if the socket's port is unknown.
    pub fn waker(&self) -> Option<Waker> {
        let mut addr = SocketAddr::new(0, 0);
        self.socket.get_address(&mut addr).ok()?;
        Some(Waker {
            port: addr.port_number(),
        })
    }

    /// The thread's body: until the uploader stops.
    pub fn run(self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Change::default();
        let mut since: Option<Instant> = None;
        while !self.stop.load(Ordering::SeqCst) {
            match self.socket.recv_from(&mut &mut buf[..], 0) {
                // Only the kernel (port 0) tells of changes; anything else (our own
                // Waker) only wakes the loop.
                Ok((_, from)) if from.port_number() != 0 => {}
                Ok((n, _)) => {
                    let c = classify_datagram(&buf[..n.min(buf.len())]);
                    if c != Change::default() {
                        pending.gained |= c.gained;
                        pending.lost |= c.lost;
                        since.get_or_insert_with(Instant::now);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped messages: something changed.
                    log::debug!("rtnetlink: {e}; probing anyway");
                    pending.gained = true;
                    pending.lost = true;
                    since.get_or_insert_with(Instant::now);
                }
                Err(e) => {
                    // Anything else would repeat: wait before trying again.
                    log::warn!("rtnetlink: {e}");
                    std::thread::sleep(STOP_CHECK);
                }
            }
            if since.is_some_and(|t| t.elapsed() >= DEBOUNCE) {
                since = None;
                let c = std::mem::take(&mut pending);
                log::debug!("network changed: {c:?}");
                if c.lost && self.tx.send(Command::NetworkLost).is_err() {
                    return;
                }
                if c.gained && self.tx.send(Command::NetworkChanged).is_err() {
                    return;
                }
            }
            if since.is_some() {
                // Gather the rest of the burst without waiting a whole STOP_CHECK.
                let _ = socket2::SockRef::from(&self.socket).set_read_timeout(Some(DEBOUNCE));
            } else {
                let _ = socket2::SockRef::from(&self.socket).set_read_timeout(Some(STOP_CHECK));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::link::LinkMessage;
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::RouteNetlinkMessage;

    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
            msg.finalize();
            let mut buf = vec![0; msg.buffer_len()];
            msg.serialize(&mut buf);
            out.extend_from_slice(&buf);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn link_address_and_route_changes_are_read() {
        let mut up = LinkMessage::default();
        up.header.flags = LinkFlags::Up | LinkFlags::Running;
        let down = LinkMessage::default();
        let gained = Change {
            gained: true,
            lost: false,
        };
        let lost = Change {
            gained: false,
            lost: true,
        };
        assert_eq!(
            classify_datagram(&datagram(vec![RouteNetlinkMessage::NewLink(up)])),
            gained
        );
        assert_eq!(
            classify_datagram(&datagram(vec![RouteNetlinkMessage::NewLink(down)])),
            lost
        );
        let both = datagram(vec![
            RouteNetlinkMessage::DelRoute(RouteMessage::default()),
            RouteNetlinkMessage::NewRoute(RouteMessage::default()),
        ]);
        assert_eq!(
            classify_datagram(&both),
            Change {
                gained: true,
                lost: true
            }
        );
        assert_eq!(classify_datagram(&[0xff; 7]), Change::default());
        assert_eq!(classify_datagram(&[]), Change::default());
    }
}
