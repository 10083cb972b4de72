//! Who may talk to a store: the operating system's word for it. A connection's peer is
//! read from the socket (`SO_PEERCRED`), never from anything the client says; a file
//! in the inbox is judged by its owner.

use std::ffi::CString;
use std::io;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{getgrouplist, Gid, Uid, User};

/// The process on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The peer of a connected unix socket, as the kernel recorded it at `connect`.
pub(crate) fn peer_of(stream: &UnixStream) -> io::Result<Peer> {
    let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok(Peer {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// This process's effective user.
pub(crate) fn euid() -> u32 {
    Uid::effective().as_raw()
}

/// Who is admitted: the store's owning user, and the members of one group if the owner
/// configured it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    pub uid: u32,
    pub group: Option<u32>,
}

impl Admitted {
    /// The rule for this process (the owner).
    pub fn for_owner(group: Option<u32>) -> Admitted {
        Admitted { uid: euid(), group }
    }

    /// Whether user `uid` (primary group `gid`) may talk to the store.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        if uid == self.uid {
            return true;
        }
        match self.group {
            Some(g) => gid == g || is_member(uid, gid, g),
            None => false,
        }
    }
}

impl Admitted {
    /// Whether user `uid` may, by the user database alone (its primary group and its
    /// supplementary groups): for a file, whose group says nothing of its owner.
    pub fn allows_user(&self, uid: u32) -> bool {
        if uid == self.uid {
            return true;
        }
        let Some(group) = self.group else {
            return false;
        };
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(u)) => u.gid.as_raw() == group || is_member(uid, u.gid.as_raw(), group),
            _ => false,
        }
    }
}

/// Whether user `uid` is a member of group `group` by the group database (its
/// supplementary groups); `false` for a uid with no account.
fn is_member(uid: u32, gid: u32, group: u32) -> bool {
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, Gid::from_raw(gid))
        .map(|groups| groups.contains(&Gid::from_raw(group)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_pair_knows_its_own_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer_of(&a).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        let me = Admitted::for_owner(None);
        assert!(me.allows(p.uid, p.gid));
        assert!(!me.allows(p.uid.wrapping_add(12345), 54321));
        let group = Admitted {
            uid: p.uid.wrapping_add(1),
            group: Some(p.gid),
        };
        assert!(group.allows(p.uid, p.gid), "the primary group counts");
    }
}
