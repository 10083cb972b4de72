//! Test support, shared by every test binary (`#[path = "../support/mod.rs"] mod support;`
//! in `tests/<binary>/main.rs`, `mod support;` in `tests/cli.rs` and `tests/netfaults.rs`):
//! loopback HTTP/1.1 server with fault injection, TLS, files, child processes.
#![allow(dead_code)]

mod action;
pub mod child;
#[cfg(any(feature = "gcs", feature = "azure"))]
pub mod cloud;
mod conn;
pub mod connect_proxy;
pub mod dns;
mod engine;
mod files;
mod http;
mod net;
pub mod netns;
pub mod nginx;
pub mod proxy;
mod record;
mod rng;
#[cfg(feature = "s3")]
pub mod s3;
mod server;
pub mod tls;
mod tmpfs;
pub mod tus;
mod watchdog;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// The errno values tests inject (Linux, every architecture the crate supports).
pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

#[allow(unused_imports)] // each test uses a subset
pub use self::{
    action::{Action, Behavior, Handler},
    engine::{completed, ended, fast, ids, kind, paused_upload, wait_for, wait_until},
    files::{
        all_files, assert_no_bytes, hex, random_bytes, sha256_file, sha256_hex, sparse_file,
        write_file, Xorshift,
    },
    http::RequestHead,
    net::{closed_port, HangingListener},
    record::Recorded,
    rng::Rng,
    server::TestServer,
    tls::TlsFlavor,
    tmpfs::Tmpfs,
    watchdog::{watchdog, Watchdog},
};
