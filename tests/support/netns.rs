//! Network namespaces for real network faults (root only): a client and a server
//! namespace joined by a veth pair on 10.200.N.0/24, with the faults the kernel can make
//! here: link down, address or route removed, nftables blackholes and resets, tbf shaping.
//!
//! Without root or `ip netns`, [`NetPair::create`] prints SKIPPED and returns `None`;
//! in CI (`CI=true`) it panics instead: these tests must run there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `CI=true`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails in CI, prints SKIPPED elsewhere, and returns `None` for the caller to return.
pub fn skip<T>(test: &str, why: &str) -> Option<T> {
    if in_ci() {
        panic!("{test} must run in CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

/// Runs a command to completion; its failure is returned as text.
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("{e}");
    }
}

/// Two namespaces and a veth pair between them. Deleted on drop.
pub struct NetPair {
    pub client: String,
    pub server: String,
    /// The client's end of the veth pair (inside `client`).
    pub client_if: String,
    pub server_if: String,
    /// `10.200.N.1`, in `server`.
    pub server_addr: String,
    /// `10.200.N.2`, in `client` once [`NetPair::link_client`] ran.
    pub client_addr: String,
    etc_dir: PathBuf,
}

impl NetPair {
    /// Namespaces for net `n` (10.200.n.0/24). The server side is up with its address;
    /// the client side is up and linked unless `client_offline`, in which case the
    /// client namespace has only loopback until [`NetPair::link_client`].
    pub fn create(test: &str, n: u8, client_offline: bool) -> Option<NetPair> {
        if !Path::new("/usr/sbin/ip").exists() && !Path::new("/sbin/ip").exists() {
            return skip(test, "`ip` (iproute2) is not installed");
        }
        let tag = format!("{}x{n}", std::process::id() % 100_000);
        let pair = NetPair {
            client: format!("bgx{tag}c"),
            server: format!("bgx{tag}s"),
            client_if: format!("bc{tag}"),
            server_if: format!("bs{tag}"),
            server_addr: format!("10.200.{n}.1"),
            client_addr: format!("10.200.{n}.2"),
            etc_dir: PathBuf::from(format!("/etc/netns/bgx{tag}c")),
        };
        if let Err(e) = run("ip", &["netns", "add", &pair.client]) {
            return skip(test, &format!("cannot create a network namespace: {e}"));
        }
        must("ip", &["netns", "add", &pair.server]);
        for ns in [&pair.client, &pair.server] {
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        must(
            "ip",
            &[
                "link",
                "add",
                &pair.client_if,
                "type",
                "veth",
                "peer",
                "name",
                &pair.server_if,
            ],
        );
        must(
            "ip",
            &["link", "set", &pair.client_if, "netns", &pair.client],
        );
        must(
            "ip",
            &["link", "set", &pair.server_if, "netns", &pair.server],
        );
        let s = &pair.server;
        let server_cidr = format!("{}/24", pair.server_addr);
        must(
            "ip",
            &["-n", s, "addr", "add", &server_cidr, "dev", &pair.server_if],
        );
        // loopback's 64 KiB MTU makes a small tbf burst stall all traffic.
        must(
            "ip",
            &["-n", s, "link", "set", &pair.server_if, "mtu", "1500", "up"],
        );
        must(
            "ip",
            &[
                "-n",
                &pair.client,
                "link",
                "set",
                &pair.client_if,
                "mtu",
                "1500",
            ],
        );
        if !client_offline {
            pair.link_client();
        }
        Some(pair)
    }

    /// Gives the client its address, brings its link up and adds a default route.
    pub fn link_client(&self) {
        let c = &self.client;
        let cidr = format!("{}/24", self.client_addr);
        must(
            "ip",
            &["-n", c, "addr", "add", &cidr, "dev", &self.client_if],
        );
        must("ip", &["-n", c, "link", "set", &self.client_if, "up"]);
        must(
            "ip",
            &["-n", c, "route", "add", "default", "via", &self.server_addr],
        );
    }

    /// Makes `ip netns exec <client>` use `nameserver` as its resolver.
    pub fn client_resolver(&self, nameserver: &str) {
        self.client_resolver_with(nameserver, "options timeout:1 attempts:1");
    }

    /// [`NetPair::client_resolver`] with `options` of its own.
    pub fn client_resolver_with(&self, nameserver: &str, options: &str) {
        std::fs::create_dir_all(&self.etc_dir).unwrap();
        std::fs::write(
            self.etc_dir.join("resolv.conf"),
            format!("nameserver {nameserver}\n{options}\n"),
        )
        .unwrap();
    }

    /// `ip netns exec <ns> <program>`.
    pub fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }

    /// Shapes the server's side of the link (what the client sends arrives at this rate
    /// once the client's queue fills; both ways are shaped).
    pub fn shape(&self, rate: &str) {
        for (ns, dev) in [
            (&self.server, &self.server_if),
            (&self.client, &self.client_if),
        ] {
            must(
                "ip",
                &[
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                    rate, "burst", "32kbit", "latency", "400ms",
                ],
            );
        }
    }

    /// Drops every packet to the server's `port` (a silent blackhole: a cellular dead
    /// zone), or lifts that again. Uses its own nftables table in the server namespace.
    pub fn blackhole(&self, port: u16, on: bool) {
        let s = &self.server;
        if on {
            must(
                "ip",
                &["netns", "exec", s, "nft", "add", "table", "inet", "bgx"],
            );
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    s,
                    "nft",
                    "add",
                    "chain",
                    "inet",
                    "bgx",
                    "input",
                    "{ type filter hook input priority 0 ; }",
                ],
            );
            let rule = format!("tcp dport {port} drop");
            must(
                "ip",
                &[
                    "netns", "exec", s, "nft", "add", "rule", "inet", "bgx", "input", &rule,
                ],
            );
        } else {
            must(
                "ip",
                &["netns", "exec", s, "nft", "delete", "table", "inet", "bgx"],
            );
        }
    }

    /// Answers every packet to the server's `port` with a TCP reset (nftables `reject
    /// with tcp reset` in the server namespace; a connection in the middle of its body
    /// gets it on its next segment), or lifts that again.
    pub fn reset(&self, port: u16, on: bool) {
        let s = &self.server;
        if on {
            must(
                "ip",
                &["netns", "exec", s, "nft", "add", "table", "inet", "bgxr"],
            );
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    s,
                    "nft",
                    "add",
                    "chain",
                    "inet",
                    "bgxr",
                    "input",
                    "{ type filter hook input priority 0 ; }",
                ],
            );
            let rule = format!("tcp dport {port} reject with tcp reset");
            must(
                "ip",
                &[
                    "netns", "exec", s, "nft", "add", "rule", "inet", "bgxr", "input", &rule,
                ],
            );
        } else {
            must(
                "ip",
                &["netns", "exec", s, "nft", "delete", "table", "inet", "bgxr"],
            );
        }
    }

    /// Counts the SYNs the client sends to the server's `port` from now on (its own
    /// nftables table in the client namespace, output hook): what probing costs on the
    /// air. Read with [`NetPair::syns`].
    pub fn count_syns(&self, port: u16) {
        let c = &self.client;
        must(
            "ip",
            &["netns", "exec", c, "nft", "add", "table", "inet", "bgxsyn"],
        );
        must(
            "ip",
            &[
                "netns",
                "exec",
                c,
                "nft",
                "add",
                "chain",
                "inet",
                "bgxsyn",
                "output",
                "{ type filter hook output priority 0 ; }",
            ],
        );
        let rule = format!("tcp dport {port} tcp flags & (syn | ack) == syn counter");
        must(
            "ip",
            &[
                "netns", "exec", c, "nft", "add", "rule", "inet", "bgxsyn", "output", &rule,
            ],
        );
    }

    /// The SYNs counted since [`NetPair::count_syns`].
    pub fn syns(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "nft",
                "list",
                "table",
                "inet",
                "bgxsyn",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("run nft");
        let text = String::from_utf8_lossy(&out.stdout);
        let n = text
            .split_once("counter packets ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        n.unwrap_or_else(|| panic!("no SYN counter in: {text}"))
    }

    /// Whether `addr:port` accepts TCP from inside `ns` (bash's /dev/tcp, 1 s).
    pub fn accepts(ns: &str, addr: &str, port: u16) -> bool {
        let probe = format!("exec 3<>/dev/tcp/{addr}/{port}");
        Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "1", "bash", "-c", &probe])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` until `addr:port` accepts from inside `ns`.
    pub fn wait_listening(ns: &str, addr: &str, port: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if Self::accepts(ns, addr, port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.client]);
        let _ = run("ip", &["netns", "del", &self.server]);
        let _ = std::fs::remove_dir_all(&self.etc_dir);
    }
}
