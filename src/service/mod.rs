//! One store, many programs: the store's owner (the process whose [`crate::Uploader`]
//! holds it) takes submissions and commands from other processes of the same machine
//! through a [`Client`].
//!
//! Two ways in, and why both:
//! - **The control socket** (`<store>/control.sock`, a unix stream socket): creates and
//!   commands take effect at once, and progress can be read and followed live. The
//!   kernel names the peer of every connection (`SO_PEERCRED`): only the store's user,
//!   and the members of a group the owner configured, are admitted.
//! - **The inbox** (`<store>/inbox/`): a submission made while no owner runs, or while
//!   the owner dies mid-call, is written there durably (fsynced, renamed into place) and
//!   the next owner imports it when it starts. So a submission is never refused for
//!   want of an owner, and the client's `Ok` always means "durable": either the owner
//!   acknowledged it after its journal fsync, or its file is in the inbox.
//!
//! Every submission carries a random key (journaled with the upload): a submission the
//! owner took over the socket and that also reached the inbox, because the owner died
//! before it answered, is created once.
//!
//! Directory permissions are the first gate (the store is mode 0700, or 0710 with a
//! client group; the inbox 0700 or 2730), the peer's credentials the second.

mod client;
mod inbox;
mod owner;
mod peer;
mod wire;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use client::{Client, Follow, RemoteUpload, Submission, Submitted};
pub(crate) use owner::Service;

use crate::model::SubmissionKey;

/// The control socket's name in the store.
const SOCKET: &str = "control.sock";
/// The inbox's name in the store.
const INBOX: &str = "inbox";

fn socket_path(store: &Path) -> PathBuf {
    store.join(SOCKET)
}

fn inbox_dir(store: &Path) -> PathBuf {
    store.join(INBOX)
}

fn key_hex(key: &SubmissionKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_key(hex: &str) -> Option<SubmissionKey> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// A fresh random submission key, from the kernel's generator.
fn new_key() -> io::Result<SubmissionKey> {
    let mut key = [0u8; 16];
    io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut key)?;
    Ok(key)
}

/// Runs `f` with a path to `dir/name` that fits a unix socket address (107 bytes): the
/// path itself, or one through the directory's descriptor in `/proc/self/fd`.
fn short_path<T>(dir: &Path, name: &str, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let direct = dir.join(name);
    if direct.as_os_str().len() < 100 {
        return f(&direct);
    }
    let d = File::open(dir)?;
    let via = PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
    let r = f(&via);
    drop(d);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_file_names() {
        let k = new_key().unwrap();
        assert_eq!(parse_key(&key_hex(&k)), Some(k));
        assert_ne!(new_key().unwrap(), k);
        assert_eq!(parse_key("zz"), None);
        assert_eq!(parse_key(&"g".repeat(32)), None);
    }
}
