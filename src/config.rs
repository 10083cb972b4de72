//! Every setting of an [`crate::Uploader`], with all defaults in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Uploader};

/// The settings of an [`Uploader`]. Built with [`Uploader::builder`]; read with the
/// getters. Every default is documented on its builder method and set in
/// [`Config::new`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) store_dir: PathBuf,
    pub(crate) max_concurrent: usize,
    pub(crate) worker_stack_size: usize,
    pub(crate) buffer_size: usize,
    pub(crate) sendfile: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    pub(crate) tcp_user_timeout: Duration,
    pub(crate) retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) retry_after_cap: Duration,
    pub(crate) max_response_body: u64,
    pub(crate) retention: Option<Duration>,
    pub(crate) root_certs_pem: Vec<Vec<u8>>,
    /// The client certificate chain and key files (mutual TLS).
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    /// Client identities uploads may name: (name, certificate, key).
    pub(crate) client_identities: Vec<(String, PathBuf, PathBuf)>,
    pub(crate) webpki_roots: bool,
    pub(crate) proxy: Option<crate::redact::SecretUrl>,
    pub(crate) start_paused: bool,
    pub(crate) start_transfers: bool,
    pub(crate) groups: Vec<(String, crate::GroupBehavior)>,
    pub(crate) progress_interval: Duration,
    pub(crate) checkpoint_bytes: u64,
    pub(crate) max_bandwidth: Option<u64>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) resolve_timeout: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) allow_https_downgrade: bool,
    pub(crate) user_agent: String,
    pub(crate) probe_timeout: Duration,
    pub(crate) probe_backoff_min: Duration,
    pub(crate) probe_backoff_max: Duration,
    pub(crate) probe_targets: Option<Vec<String>>,
    pub(crate) watch_network: bool,
    pub(crate) serve_clients: bool,
    pub(crate) client_group: Option<u32>,
    pub(crate) fault_hook: Option<std::sync::Arc<dyn crate::journal::fault::FaultHook>>,
    /// The credentials providers by name (shared with the running uploader, which can
    /// register more).
    pub(crate) providers: crate::credentials::Providers,
}

impl Config {
    /// The defaults, for a store in `store_dir`.
    pub fn new(store_dir: impl Into<PathBuf>) -> Config {
        Config {
            store_dir: store_dir.into(),
            max_concurrent: 4,
            worker_stack_size: 256 * 1024,
            buffer_size: 128 * 1024,
            sendfile: false,
            // WinRT's defaults: 5 minutes to connect, 2 minutes for the response to start
            // once the body is sent.
            connect_timeout: Duration::from_secs(5 * 60),
            response_timeout: Duration::from_secs(2 * 60),
            stall_timeout: Duration::from_secs(60),
            tcp_user_timeout: Duration::from_secs(30),
            // WinRT: 3 retries while the network is up.
            retries: 3,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5 * 60),
            retry_after_cap: Duration::from_secs(15 * 60),
            max_response_body: 1024 * 1024,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            root_certs_pem: Vec::new(),
            webpki_roots: true,
            proxy: None,
            start_paused: false,
            start_transfers: true,
            groups: Vec::new(),
            progress_interval: Duration::from_millis(250),
            checkpoint_bytes: 16 * 1024 * 1024,
            max_bandwidth: None,
            shutdown_timeout: Duration::from_secs(5),
            resolve_timeout: Duration::from_secs(30),
            max_redirects: 5,
            allow_https_downgrade: false,
            user_agent: concat!("background-transfer/", env!("CARGO_PKG_VERSION")).to_string(),
            probe_timeout: Duration::from_secs(3),
            probe_backoff_min: Duration::from_secs(2),
            probe_backoff_max: Duration::from_secs(60),
            probe_targets: None,
            watch_network: true,
            serve_clients: true,
            client_group: None,
            fault_hook: None,
            client_cert: None,
            client_identities: Vec::new(),
            providers: Default::default(),
        }
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }
    /// Uploads on the wire at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }
    /// Stack size of each worker thread.
    pub fn worker_stack_size(&self) -> usize {
        self.worker_stack_size
    }
    /// Size of the one buffer each worker streams its body through.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }
    /// Whether plain-HTTP file bodies go to the socket with `sendfile(2)`.
    pub fn sendfile(&self) -> bool {
        self.sendfile
    }
    /// Longest wait for a host name to resolve.
    pub fn resolve_timeout(&self) -> Duration {
        self.resolve_timeout
    }
    /// Longest wait for a TCP connection.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// Longest wait for the response to start once the body is sent.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }
    /// Longest a single socket write may block (a send making no progress).
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the kernel
    /// gives up on the connection.
    pub fn tcp_user_timeout(&self) -> Duration {
        self.tcp_user_timeout
    }
    /// Retries after the first attempt for transient failures.
    pub fn retries(&self) -> u32 {
        self.retries
    }
    /// First backoff delay.
    pub fn backoff_base(&self) -> Duration {
        self.backoff_base
    }
    /// Longest backoff delay.
    pub fn backoff_max(&self) -> Duration {
        self.backoff_max
    }
    /// Longest `Retry-After` honoured.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_after_cap
    }
    /// Bytes of a response body kept in the store.
    pub fn max_response_body(&self) -> u64 {
        self.max_response_body
    }
    /// How long completed, canceled and failed uploads are kept.
    pub fn retention(&self) -> Option<Duration> {
        self.retention
    }
    /// The proxy, if one is configured.
    pub fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }
    /// Whether unfinished uploads stay paused after `open()`.
    pub fn start_paused(&self) -> bool {
        self.start_paused
    }
    /// Whether this `Uploader` starts transfers (see [`UploaderBuilder::start_transfers`]).
    pub fn start_transfers(&self) -> bool {
        self.start_transfers
    }
    /// Most bytes per second for all transfers together.
    pub fn max_bandwidth(&self) -> Option<u64> {
        self.max_bandwidth
    }
    /// Longest `shutdown()` waits for workers before it interrupts their sockets.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }
    /// Connect timeout of a reachability probe.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_timeout
    }
}

/// Builds an [`Uploader`]: `Uploader::builder().store_dir(..).open()`.
#[derive(Debug, Clone)]
pub struct UploaderBuilder {
    config: Config,
}

impl UploaderBuilder {
    pub(crate) fn new() -> Self {
        UploaderBuilder {
            config: Config::new("bgupload-store"),
        }
    }

    /// Where the journal, response bodies and spooled sources live.
    /// Defaults to `./bgupload-store`. Created with mode 0700 if missing.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.store_dir = dir.into();
        self
    }
    /// Uploads on the wire at once. Defaults to 4. At least 1.
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.config.max_concurrent = n.max(1);
        self
    }
    /// Stack size of each worker thread. Defaults to 256 KiB (TLS handshakes need room).
    pub fn worker_stack_size(mut self, bytes: usize) -> Self {
        self.config.worker_stack_size = bytes.max(64 * 1024);
        self
    }
    /// Size of the buffer each worker streams its body through (the writes it hands the
    /// socket); pause and cancel take effect within one buffer. Defaults to 128 KiB, as
    /// ureq's own: half that made twice the `read`/`sendto` calls for the same bytes.
    /// Clamped to 4 KiB..=4 MiB. Responses are read through at most 64 KiB.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.config.buffer_size = bytes.clamp(4096, 4 << 20);
        self
    }
    /// Sends the file parts of plain-HTTP bodies (not TLS) from the file to the socket
    /// with `sendfile(2)`, without copying them through this process: one system call per
    /// buffer instead of a `read` and a `send`. Pause, cancel, progress and
    /// [`UploaderBuilder::max_bandwidth`] work as without it, per buffer, and a source
    /// that shrinks is still [`Error::SourceChanged`]. Defaults to `false`: on loopback it
    /// was 1.3–1.5 times as fast as the copy on one machine (AMD EPYC) and half as fast on
    /// another (Intel Xeon), so it is worth measuring where it runs (`cargo bench --bench
    /// transfer` shows both); through a network card that can send from the page cache it
    /// saves the copy's CPU.
    pub fn sendfile(mut self, on: bool) -> Self {
        self.config.sendfile = on;
        self
    }
    /// Longest wait for a host name to resolve. A lookup that takes longer counts as
    /// offline (no retry is spent), and a pause, cancel or shutdown never waits for one.
    /// Defaults to 30 seconds (the system resolver's own wait for one name server).
    pub fn resolve_timeout(mut self, t: Duration) -> Self {
        self.config.resolve_timeout = t;
        self
    }
    /// Longest wait for a TCP connection. Defaults to 5 minutes (WinRT's value).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.config.connect_timeout = t;
        self
    }
    /// Longest wait for the response to start once the whole body is sent. Defaults to
    /// 2 minutes (WinRT's value).
    pub fn response_timeout(mut self, t: Duration) -> Self {
        self.config.response_timeout = t;
        self
    }
    /// Longest a socket write may block without progress. Defaults to 60 seconds.
    pub fn stall_timeout(mut self, t: Duration) -> Self {
        self.config.stall_timeout = t;
        self
    }
    /// `TCP_USER_TIMEOUT` on every connection, so a dead link is noticed in seconds
    /// rather than after the kernel's retransmission limit (~15 minutes). Defaults to
    /// 30 seconds.
    pub fn tcp_user_timeout(mut self, t: Duration) -> Self {
        self.config.tcp_user_timeout = t;
        self
    }
    /// Retries after the first attempt for transient failures (connect errors, timeouts,
    /// resets, 408, 429, 500, 502, 503, 504). Defaults to 3 (WinRT's value): 4 attempts.
    pub fn retries(mut self, n: u32) -> Self {
        self.config.retries = n;
        self
    }
    /// Exponential backoff between attempts: `base * 2^(attempt-1)`, at most `max`, with
    /// jitter (a random 50–100 % of the delay). Defaults to 2 seconds and 5 minutes.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base = base;
        self.config.backoff_max = max.max(base);
        self
    }
    /// Longest `Retry-After` (on 429 and 503) honoured; longer ones are capped.
    /// Defaults to 15 minutes.
    pub fn retry_after_cap(mut self, t: Duration) -> Self {
        self.config.retry_after_cap = t;
        self
    }
    /// Bytes of a response body kept in the store. Past the cap the rest of the body is
    /// not read: the connection is closed, the upload still completes, and
    /// [`crate::ResponseInfo::body_truncated`] is set. Defaults to 1 MiB.
    pub fn max_response_body(mut self, bytes: u64) -> Self {
        self.config.max_response_body = bytes;
        self
    }
    /// How long completed, canceled and failed uploads stay in the store (with their
    /// responses) before they are removed; `None` keeps them until
    /// [`crate::Upload::remove`]. Defaults to 7 days.
    pub fn retention(mut self, t: Option<Duration>) -> Self {
        self.config.retention = t;
        self
    }
    /// Presents this client certificate (mutual TLS) to every server that asks for one:
    /// `cert` holds the PEM chain (the device's certificate first), `key` its private
    /// key (PKCS#8, SEC1 or RSA PEM). Both are read at [`UploaderBuilder::open`] (a
    /// missing or unreadable file fails it with [`Error::InvalidCertificate`]) and read
    /// again before a connection whenever either changed, so a device can rotate them
    /// in place. A server that refuses the certificate ends the upload in
    /// [`Error::Tls`] saying so; no retry is spent on it. Custom roots
    /// ([`UploaderBuilder::add_root_certificate_pem`]) work alongside it.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Registers a client certificate under `name`, for the uploads that name it
    /// ([`crate::UploadRequest::client_identity`]) instead of presenting the uploader's
    /// own ([`UploaderBuilder::client_certificate`]): one program that uploads for
    /// several device identities, or to servers of different PKIs. Read and re-read as
    /// for `client_certificate` (a missing or unreadable file fails `open()` with
    /// [`Error::InvalidCertificate`]). Only the name is persisted with an upload; an
    /// upload whose identity is not registered after a restart waits as
    /// [`crate::Status::PausedNoCredentials`] until it is
    /// ([`crate::Uploader::register_client_identity`]).
    pub fn client_identity(
        mut self,
        name: impl Into<String>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.config
            .client_identities
            .push((name.into(), cert.into(), key.into()));
        self
    }

    /// Trusts the root certificates in this PEM data. Once any root is added, only the
    /// added roots are trusted (not the built-in Mozilla roots): a device that talks to
    /// its own servers pins their CA this way. Call it several times to add several.
    /// TLS certificates are always verified; there is no switch to turn that off.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.root_certs_pem.push(pem.into());
        self
    }
    /// Whether the Mozilla root certificates (webpki-roots) are trusted when no root is
    /// added with [`UploaderBuilder::add_root_certificate_pem`]. Defaults to `true`;
    /// `false` with no added root refuses every certificate.
    pub fn webpki_roots(mut self, on: bool) -> Self {
        self.config.webpki_roots = on;
        self
    }
    /// An HTTP `CONNECT` proxy such as `http://user:pass@proxy:3128`. Defaults to none:
    /// the environment (`HTTPS_PROXY`, ...) is deliberately not read, so a daemon's
    /// behaviour does not depend on how it was started.
    pub fn proxy(mut self, url: Option<String>) -> Self {
        self.config.proxy = url.map(crate::redact::SecretUrl);
        self
    }
    /// Leave unfinished uploads paused (as [`crate::Status::PausedByApplication`]) after
    /// `open()` instead of continuing them. Defaults to `false`.
    pub fn start_paused(mut self, on: bool) -> Self {
        self.config.start_paused = on;
        self
    }
    /// Whether this `Uploader` puts uploads on the wire. Defaults to `true`.
    ///
    /// `false` opens the store only to look at it and manage it: `create_upload`,
    /// `uploads`, `pause`, `resume`, `cancel` and `remove` work, but no transfer starts
    /// and, beyond the crash recovery every open does, no status is rewritten (unlike
    /// [`UploaderBuilder::start_paused`], which persists `PausedByApplication`), so the
    /// next `Uploader` that does transfer picks every upload up as it was. A
    /// command-line tool's `add` and `list` use this; the only request such an
    /// `Uploader` may still send is the `DELETE` that ends a canceled tus upload on its
    /// server.
    pub fn start_transfers(mut self, on: bool) -> Self {
        self.config.start_transfers = on;
        self
    }
    /// Whether other processes may submit and control uploads through a
    /// [`crate::Client`] while this `Uploader` holds the store (see [`crate::Client`]).
    /// Defaults to `true`. The owner listens on `<store>/control.sock` and imports the
    /// submissions that clients left in `<store>/inbox/` while no owner ran (at open,
    /// and when a client pokes it). An `Uploader` opened with
    /// [`UploaderBuilder::start_transfers`]`(false)` never serves.
    pub fn serve_clients(mut self, on: bool) -> Self {
        self.config.serve_clients = on;
        self
    }
    /// Admits the members of group `gid` as clients too (by default only processes
    /// of the store's own user are). The store directory becomes mode 0710 and the
    /// inbox 2730, both of this group, and the control socket 0660: the group can
    /// reach the socket and leave submissions, but cannot list or read the store. Its
    /// members hand over copies of their files (spooled into the inbox by the
    /// client), never paths for the owner to read on their behalf; they see and control
    /// only the uploads they submitted; and they may not use the owner's credentials
    /// providers or client identities (nor the S3, GCS and Azure protocols, which need
    /// them): plain and tus uploads with headers of their own.
    pub fn client_group(mut self, gid: u32) -> Self {
        self.config.client_group = Some(gid);
        self
    }
    /// How the uploads of group `name` run, in effect before the first transfer starts
    /// (like [`Uploader::set_group_behavior`], which can only act after `open()` has
    /// already started uploads). Not persisted: give it at every open. Groups are
    /// [`crate::GroupBehavior::Parallel`] unless told otherwise.
    pub fn group_behavior(
        mut self,
        name: impl Into<String>,
        behavior: crate::GroupBehavior,
    ) -> Self {
        let name = name.into();
        self.config.groups.retain(|(n, _)| *n != name);
        self.config.groups.push((name, behavior));
        self
    }
    /// Least time between two progress events of one upload. Defaults to 250 ms.
    pub fn progress_interval(mut self, t: Duration) -> Self {
        self.config.progress_interval = t;
        self
    }
    /// Bytes between two progress checkpoints in the journal (batched fsync). Defaults
    /// to 16 MiB: at most 64 journal fsyncs per GiB uploaded.
    pub fn checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.config.checkpoint_bytes = bytes.max(64 * 1024);
        self
    }
    /// Most bytes per second for all transfers together (one token bucket). Defaults to
    /// unlimited.
    pub fn max_bandwidth(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.config.max_bandwidth = bytes_per_sec.filter(|&b| b > 0);
        self
    }
    /// How long `shutdown()` (and `Drop`) waits for stopped workers to report; past it,
    /// as long again for the slow ones, and then it returns and leaves any that are
    /// still stuck (outside the network: a hung file system) to end on their own.
    /// Nothing persisted is lost either way. Defaults to 5 seconds.
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.config.shutdown_timeout = t;
        self
    }
    /// Redirects (307 and 308 only: they keep the method and body) followed per attempt.
    /// Defaults to 5.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.config.max_redirects = n;
        self
    }
    /// **Dangerous.** Lets an upload made over `https` continue over plain `http`: a
    /// 307/308 redirect to an `http` URL, or a tus upload URL (`Location`) on `http`.
    /// Either would send the whole file, and its headers, in cleartext. Refused with a
    /// final [`crate::Error::Protocol`] unless this is set. Defaults to `false`.
    pub fn allow_https_to_http(mut self, on: bool) -> Self {
        self.config.allow_https_downgrade = on;
        self
    }
    /// The `User-Agent` header. Defaults to `background-transfer/<version>`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.config.user_agent = ua.into();
        self
    }
    /// Connect timeout of a reachability probe. Defaults to 3 seconds.
    pub fn probe_timeout(mut self, t: Duration) -> Self {
        self.config.probe_timeout = t;
        self
    }
    /// Probe interval while a host is unreachable: starts at `min`, doubles up to `max`.
    /// Defaults to 2 seconds and 60 seconds.
    pub fn probe_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.probe_backoff_min = min;
        self.config.probe_backoff_max = max.max(min);
        self
    }
    /// Probe these `host:port` targets instead of the hosts of pending uploads: when
    /// any of them answers, the network is up. Defaults to the uploads' own hosts.
    pub fn probe_targets(mut self, targets: Vec<String>) -> Self {
        self.config.probe_targets = Some(targets);
        self
    }

    /// Whether to watch the kernel's link, address and route changes (rtnetlink, on
    /// Linux): a link, address or route coming back makes waiting uploads probe at
    /// once, and one going away parks running transfers whose host stops taking
    /// connections as `PausedNoNetwork` at once. On by default; off, or where the
    /// kernel refuses the socket, network changes are noticed by polling only (see
    /// [`UploaderBuilder::probe_backoff`] and [`crate::Uploader::network_changed`]).
    pub fn watch_network(mut self, on: bool) -> Self {
        self.config.watch_network = on;
        self
    }

    /// Routes the journal's writes and fsyncs through a fault-injection hook. For the
    /// crate's own storage-fault tests; not part of the API.
    #[doc(hidden)]
    pub fn fault_hook(
        mut self,
        hook: std::sync::Arc<dyn crate::journal::fault::FaultHook>,
    ) -> Self {
        self.config.fault_hook = Some(hook);
        self
    }

    /// Registers a credentials provider under `name`: uploads that name it (for
    /// example `S3Object::credentials`, with the `s3` feature) ask it for their keys at
    /// each attempt. Nothing it returns is persisted or logged. Registering a name again
    /// replaces the provider.
    pub fn credentials(
        self,
        name: impl Into<String>,
        provider: impl crate::CredentialProvider,
    ) -> Self {
        self.config
            .providers
            .register(name.into(), std::sync::Arc::new(provider));
        self
    }

    /// The configuration as built so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Opens the store (taking its lock and replaying its journal) and starts the
    /// uploader's threads. Unfinished uploads continue unless
    /// [`UploaderBuilder::start_paused`] is set.
    ///
    /// # Errors
    /// [`Error::StoreLocked`] if another `Uploader` has the store open; the journal
    /// errors of [`crate::journal`]; [`Error::Io`] if the store cannot be created;
    /// [`Error::InvalidCertificate`] for a root certificate that does not parse.
    pub fn open(self) -> Result<Uploader, Error> {
        Uploader::open_with(self.config)
    }
}
