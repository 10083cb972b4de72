//! The [`Uploader`]: one per store directory; owns the scheduler and prober threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded};

use crate::admission::{self, Admission};
use crate::command::Command;
use crate::config::{Config, UploaderBuilder};
use crate::journal::Store;
use crate::prober::{ProbeMsg, Prober};
use crate::request::UploadRequest;
use crate::scheduler::Scheduler;
use crate::shared::{lock, Shared};
use crate::{store, Error, Upload};

/// How the uploads of one transfer group run (WinRT's `BackgroundTransferBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GroupBehavior {
    /// Up to the concurrency limit at once. The default.
    #[default]
    Parallel,
    /// One at a time, in priority order.
    Serialized,
}

/// Runs uploads in the background from a store directory (WinRT's
/// `BackgroundUploader`). Opening it replays the store: every persisted upload comes
/// back with its state, and unfinished ones continue.
///
/// Dropping it shuts it down like [`Uploader::shutdown`].
pub struct Uploader {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Ends a probe in progress when the uploader stops.
    probe_stop: Arc<AtomicBool>,
    /// The owner's checks of a new request: its credentials provider, client identity
    /// and protocol limits (the workers and the scheduler see the same providers and
    /// identities).
    admission: Admission,
    /// The control socket and inbox, when it serves clients.
    service: Option<crate::service::Service>,
    /// Wakes the network watcher's read when the uploader stops.
    #[cfg(all(target_os = "linux", feature = "netlink"))]
    watcher: Option<crate::netwatch::Waker>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("store", &self.shared.store_dir)
            .finish_non_exhaustive()
    }
}

impl Uploader {
    /// A builder with every default (see [`UploaderBuilder`]).
    pub fn builder() -> UploaderBuilder {
        UploaderBuilder::new()
    }

    pub(crate) fn open_with(config: Config) -> Result<Uploader, Error> {
        let roots = Arc::new(crate::http::Tls::load(&config)?);
        if let Some(p) = &config.proxy {
            // Checked once here, rather than failing every upload when it starts.
            ureq::Proxy::new(p).map_err(|e| Error::InvalidUrl {
                url: crate::redact::redact_url(p),
                reason: format!("bad proxy: {e}"),
            })?;
        }
        let mut store = Store::open(&config.store_dir)?;
        store.set_fault_hook(config.fault_hook.clone());
        let store_dir = store.dir().to_path_buf();
        store::create_dirs(&store_dir)?;
        let (tx, rx) = unbounded();
        let (probe_tx, probe_rx) = unbounded();
        let (event_tx, event_rx) = unbounded();
        let probe_stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            tx: tx.clone(),
            cells: Default::default(),
            next_id: AtomicU64::new(store.state().next_id),
            store_dir,
            closed: AtomicBool::new(false),
            recovery: store.recovery().clone(),
            submissions: Default::default(),
            submitters: Default::default(),
            bodies_at: Default::default(),
            bodies_moved: Default::default(),
        });
        let providers = config.providers.clone();
        #[cfg_attr(
            not(all(target_os = "linux", feature = "netlink")),
            allow(unused_variables)
        )]
        // A store opened to look at it (no transfers) has nothing to watch for.
        let watch_network = config.watch_network && config.start_transfers;
        let serve = config.serve_clients && config.start_transfers;
        let client_group = config.client_group;
        let config = Arc::new(config);
        let prober = Prober {
            rx: probe_rx,
            tx: event_tx.clone(),
            timeout: config.probe_timeout,
            backoff_min: config.probe_backoff_min,
            backoff_max: config.probe_backoff_max,
            targets: config.probe_targets.clone(),
            stop: probe_stop.clone(),
        };
        let prober = std::thread::Builder::new()
            .name("bgxfer-prober".into())
            .stack_size(128 * 1024)
            .spawn(move || prober.run())
            .map_err(|e| Error::io("start prober thread", "", e))?;
        let scheduler = Scheduler::new(
            store,
            config,
            shared.clone(),
            rx,
            (event_tx, event_rx),
            probe_tx.clone(),
            roots.clone(),
        );
        let (ready_tx, ready_rx) = bounded::<()>(1);
        let scheduler = std::thread::Builder::new()
            .name("bgxfer-scheduler".into())
            .spawn(move || {
                scheduler.run_after(ready_tx);
            });
        let scheduler = match scheduler {
            Ok(t) => t,
            Err(e) => {
                let _ = probe_tx.send(ProbeMsg::Shutdown);
                let _ = prober.join();
                return Err(Error::io("start scheduler thread", "", e));
            }
        };
        // The scheduler publishes every persisted upload before it signals.
        let _ = ready_rx.recv();
        #[cfg_attr(not(all(target_os = "linux", feature = "netlink")), allow(unused_mut))]
        let mut threads = vec![scheduler, prober];
        #[cfg(all(target_os = "linux", feature = "netlink"))]
        let mut watcher = None;
        #[cfg(all(target_os = "linux", feature = "netlink"))]
        if watch_network {
            if let Some(w) = crate::netwatch::Watcher::open(tx.clone(), probe_stop.clone()) {
                watcher = w.waker();
                match std::thread::Builder::new()
                    .name("bgxfer-netwatch".into())
                    .stack_size(128 * 1024)
                    .spawn(move || w.run())
                {
                    Ok(t) => threads.push(t),
                    Err(e) => log::warn!("no network watcher thread ({e}): polling only"),
                }
            }
        }
        let admission = Admission {
            providers,
            tls: roots,
        };
        let mut uploader = Uploader {
            shared,
            threads,
            probe_stop,
            admission,
            service: None,
            #[cfg(all(target_os = "linux", feature = "netlink"))]
            watcher,
        };
        if serve {
            // Not fatal: the uploads of this program run without it (a store on a file
            // system without unix sockets, say); clients then queue in the inbox.
            match crate::service::Service::start(
                uploader.shared.clone(),
                uploader.admission.clone(),
                client_group,
            ) {
                Ok(service) => uploader.service = Some(service),
                Err(e) => log::error!("not serving other processes: {e}"),
            }
        }
        Ok(uploader)
    }

    /// Persists a new upload and returns its handle. When this returns, the upload is
    /// fsynced in the journal: it survives a crash or power cut from here on.
    ///
    /// A reader body ([`UploadRequest::from_reader`]) is copied into the store first.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::InvalidHeader`], [`Error::InvalidRequest`] for a
    /// bad request; [`Error::SourceMissing`] for a source that is not a readable regular
    /// file; [`Error::Io`] or a journal error if it could not be persisted;
    /// [`Error::ShutDown`]. In every error case nothing was persisted, and the uploads
    /// already in the store are untouched.
    pub fn create_upload(&self, request: UploadRequest) -> Result<Upload, Error> {
        admission::validate(&request)?;
        let id = admission::allocate_id(&self.shared)?;
        let dir = &self.shared.store_dir;
        let mut request = admission::prepare(request, |r| {
            admission::spool(r, &store::spool_path(dir, id), 0o600)
        })
        .inspect_err(|_| store::remove_upload_files(dir, id))?;
        if let Err(e) = self.admission.admit(&mut request) {
            store::remove_upload_files(dir, id);
            return Err(e);
        }
        let id = admission::submit(&self.shared, id, request)?;
        self.get(id).ok_or(Error::NotFound { id })
    }

    /// Registers a credentials provider under `name` while the uploader runs (see
    /// [`crate::UploaderBuilder::credentials`]); it replaces one of the same name.
    /// Uploads that name it use it from their next attempt on, and uploads waiting for
    /// it ([`crate::Status::PausedNoCredentials`]) go back to the queue.
    pub fn register_credentials(
        &self,
        name: impl Into<String>,
        provider: impl crate::CredentialProvider,
    ) {
        self.admission
            .providers
            .register(name.into(), Arc::new(provider));
        let _ = self.shared.tx.send(Command::CredentialsRegistered);
    }

    /// Registers a client certificate under `name` while the uploader runs (see
    /// [`crate::UploaderBuilder::client_identity`]); it replaces one of the same name.
    /// Uploads that name it present it from their next connection on, and uploads
    /// waiting for it ([`crate::Status::PausedNoCredentials`]) go back to the queue.
    ///
    /// # Errors
    /// [`Error::InvalidCertificate`] if either file is missing, unreadable or does not
    /// parse; nothing is registered then.
    pub fn register_client_identity(
        &self,
        name: impl Into<String>,
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<(), Error> {
        self.admission
            .tls
            .register(name.into(), cert.as_ref(), key.as_ref())?;
        let _ = self.shared.tx.send(Command::CredentialsRegistered);
        Ok(())
    }

    /// Every upload in the store, in id order.
    pub fn uploads(&self) -> Vec<Upload> {
        lock(&self.shared.cells)
            .values()
            .map(|c| Upload::new(c.clone(), self.shared.clone()))
            .collect()
    }

    /// The upload with this id, if the store has it.
    pub fn get(&self, id: u64) -> Option<Upload> {
        lock(&self.shared.cells)
            .get(&id)
            .map(|c| Upload::new(c.clone(), self.shared.clone()))
    }

    /// Tells the uploader whether the network is costed (metered). Linux has no standard
    /// flag for this, so the program, which knows its modem, says so. Uploads with
    /// [`crate::CostPolicy::UnrestrictedOnly`] pause as
    /// [`crate::Status::PausedCostedNetwork`] while it is, and continue when it is not.
    pub fn set_network_cost(&self, costed: bool) {
        let _ = self.shared.tx.send(Command::SetCost(costed));
    }

    /// Sets how the uploads of group `name` run. Not persisted: set it after each open
    /// (groups are [`GroupBehavior::Parallel`] until told otherwise), or better with
    /// [`UploaderBuilder::group_behavior`], which is in effect before the first transfer
    /// starts.
    pub fn set_group_behavior(&self, name: &str, behavior: GroupBehavior) {
        let _ = self
            .shared
            .tx
            .send(Command::SetGroup(name.to_string(), behavior));
    }

    /// Tells the uploader the network changed (from netlink, NetworkManager, a modem
    /// manager, ...): uploads waiting for the network are probed now instead of at
    /// their next backoff.
    pub fn network_changed(&self) {
        let _ = self.shared.tx.send(Command::NetworkChanged);
    }

    /// What opening the store found in its journal: clean, a torn tail cut off (normal
    /// after a crash), or damage (the damaged file was kept aside; see [`crate::Recovery`]).
    pub fn recovery(&self) -> &crate::Recovery {
        &self.shared.recovery
    }

    /// The store directory.
    pub fn store_dir(&self) -> &std::path::Path {
        &self.shared.store_dir
    }

    /// Stops every transfer (their progress is persisted and they continue at the next
    /// open), fsyncs the journal, joins every thread and releases the store's lock.
    /// Takes about [`Config::shutdown_timeout`] plus one probe timeout at most: a send,
    /// a wait for a response and a connect in progress are all interrupted.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for reporting a failed final fsync.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        // No submission or command from another process arrives after this.
        if let Some(mut service) = self.service.take() {
            service.stop();
        }
        let (tx, rx) = bounded(1);
        if self.shared.tx.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.recv();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        self.probe_stop.store(true, Ordering::SeqCst);
        #[cfg(all(target_os = "linux", feature = "netlink"))]
        if let Some(w) = &self.watcher {
            w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in lock(&self.shared.cells).values() {
            c.changed.notify_all();
        }
    }
}

impl Drop for Uploader {
    fn drop(&mut self) {
        self.stop();
    }
}
