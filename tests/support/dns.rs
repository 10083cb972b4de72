//! dnsmasq (Debian's `dnsmasq-base`) as a real name server inside a network namespace:
//! names the test chooses resolve, names it marks missing get NXDOMAIN, and nothing is
//! forwarded anywhere. Stopped on drop.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::netns::{skip, NetPair};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq on `addr:53` inside a namespace.
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// Serves `names` (name → IPv4 address) and answers NXDOMAIN for `missing`, on
    /// `addr` inside `ns`. `None` (after SKIPPED) when dnsmasq is missing outside CI.
    pub fn start(
        test: &str,
        dir: &Path,
        ns: &str,
        addr: &str,
        names: &[(&str, &str)],
        missing: &[&str],
    ) -> Option<Dnsmasq> {
        if !Path::new(DNSMASQ).exists() {
            return skip(
                test,
                "dnsmasq is not installed (apt-get install dnsmasq-base)",
            );
        }
        let mut cmd = NetPair::exec(ns, DNSMASQ);
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--user=root",
            "--port=53",
        ])
        .arg(format!("--listen-address={addr}"))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
        for (name, ip) in names {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        for name in missing {
            // An address option with no address: NXDOMAIN for the name.
            cmd.arg(format!("--address=/{name}/"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        // dnsmasq binds before it forks nothing (foreground): give it a moment, then check
        // it is still there.
        std::thread::sleep(Duration::from_millis(300));
        let mut d = Dnsmasq { child };
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "dnsmasq exited at once"
        );
        Some(d)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
