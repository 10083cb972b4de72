//! Test support, shared by every test binary (`#[path = "../support/mod.rs"] mod support;`
//! in `tests/<binary>/main.rs`, `mod support;` in `tests/cli.rs` and `tests/netfaults.rs`):
//! loopback HTTP/1.1 server with fault injection, TLS, files, child processes.
#![allow(dead_code)]

mod action;
pub mod child;
mod conn;
pub mod dns;
mod engine;
mod files;
mod http;
mod net;
pub mod netns;
pub mod nginx;
pub mod proxy;
mod record;
mod server;
pub mod tls;
pub mod tus;

#[allow(unused_imports)] // each test uses a subset
pub use self::{
    action::{Action, Behavior, Handler},
    engine::{fast, wait_for, wait_until},
    files::{random_bytes, sha256_file, sha256_hex, sparse_file, write_file},
    http::RequestHead,
    net::{closed_port, HangingListener},
    record::Recorded,
    server::TestServer,
    tls::TlsFlavor,
};
