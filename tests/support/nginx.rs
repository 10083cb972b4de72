//! nginx (Debian's package) as a real WebDAV PUT target, started by the test with its
//! own configuration, optionally inside a network namespace. Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::netns::{skip, NetPair};

/// Where Debian installs it.
const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx serving `root()` for PUT (and GET) at `http://addr:port/`.
pub struct Nginx {
    child: Child,
    pub addr: String,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx inside namespace `ns` (or here when `None`) on `addr:port`, with
    /// `extra` added to the `server` block. `None` (after SKIPPED) when nginx is not
    /// installed outside CI.
    pub fn start(
        test: &str,
        dir: &Path,
        ns: Option<&str>,
        addr: &str,
        port: u16,
        extra: &str,
    ) -> Option<Nginx> {
        Nginx::start_listening(test, dir, ns, addr, port, "", extra)
    }

    /// [`Nginx::start`] with `listen_opts` after the address (`ssl` for HTTPS).
    pub fn start_listening(
        test: &str,
        dir: &Path,
        ns: Option<&str>,
        addr: &str,
        port: u16,
        listen_opts: &str,
        extra: &str,
    ) -> Option<Nginx> {
        if !Path::new(NGINX).exists() {
            return skip(test, "nginx is not installed (apt-get install nginx)");
        }
        let root = dir.join("root");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/tmp;\n  \
                 proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  \
                 scgi_temp_path {d}/tmp;\n  \
                 server {{\n    listen {addr}:{port} {listen_opts};\n    root {root};\n    client_max_body_size 0;\n    \
                 location / {{ dav_methods PUT DELETE; create_full_put_path on; }}\n    {extra}\n  }}\n}}\n",
                root = root.display(),
            ),
        )
        .unwrap();
        let mut cmd = match ns {
            Some(ns) => NetPair::exec(ns, NGINX),
            None => Command::new(NGINX),
        };
        cmd.arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        let nginx = Nginx {
            child,
            addr: addr.to_string(),
            port,
            dir: dir.to_path_buf(),
        };
        let up = match ns {
            Some(ns) => NetPair::wait_listening(ns, addr, port, Duration::from_secs(10)),
            None => super::engine::wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect((addr, port)).is_ok()
            }),
        };
        assert!(up, "nginx did not start: {}", nginx.error_log());
        Some(nginx)
    }

    /// The directory PUTs land in.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// nginx's error log, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Its access log: one line per request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master is `ip netns exec`'s child or nginx itself: TERM its pid file's
        // process first, so workers go too.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nginx.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        std::thread::sleep(Duration::from_millis(50));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
