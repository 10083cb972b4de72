//! The scheduler thread: the only owner of the uploads' state and the only journal
//! writer. It takes commands from handles, outcomes from workers and reachability from
//! the prober, decides what runs, and publishes every change to the handles' cells.

mod commands;
mod effects;
mod outcome;
mod policy;
mod recovery;
mod state;
mod transfers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use ureq::Agent;

use crate::bandwidth::Bandwidth;
use crate::command::Command;
use crate::http::Control;
use crate::http::Roots;
use crate::journal::{Durability, Entry, Store};
use crate::model::{Failure, Protocol, StoredResponse, UploadId};
use crate::prober::{ProbeEvent, ProbeMsg};
use crate::progress::{Event, ResponseInfo};
use crate::shared::{lock, Cell, Shared};
use crate::worker::pool::Pool;
use crate::worker::{self, WorkerEvent};
use crate::{Config, Error, GroupBehavior, Status};

pub(crate) use policy::host_key;
use state::StopReason;

/// What [`Scheduler::next`] read.
enum Inbox {
    Command(Command),
    Worker(WorkerEvent),
    Probe(ProbeEvent),
    /// Nothing within the timeout.
    Idle,
    /// Every handle is gone.
    Closed,
}

struct Running {
    ctl: Sender<Control>,
    agent: Agent,
    /// Tells the agent's connector to give up a connect in progress.
    connect_stop: Arc<std::sync::atomic::AtomicBool>,
    thread: worker::pool::Finished,
    stop: Option<StopReason>,
    /// Only for tus terminations: this worker sends DELETE, nothing else.
    terminating: bool,
    /// Bytes sent when the last progress checkpoint was journaled.
    checkpointed: u64,
    replies: Vec<Sender<Result<(), Error>>>,
}

pub(crate) struct Scheduler {
    store: Store,
    config: Arc<Config>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    worker_rx: Receiver<WorkerEvent>,
    /// Cloned into every worker's job.
    worker_tx: Sender<WorkerEvent>,
    probe_rx: Receiver<ProbeEvent>,
    /// Held so that `probe_rx` never reports disconnected (the prober ends first at
    /// shutdown): a disconnected receiver would be ready forever in `select!`.
    _probe_tx: Sender<ProbeEvent>,
    prober: Sender<ProbeMsg>,
    roots: Roots,
    bandwidth: Option<Arc<Bandwidth>>,
    running: HashMap<UploadId, Running>,
    retry_at: BTreeMap<UploadId, Instant>,
    offline: HashSet<String>,
    groups: HashMap<String, GroupBehavior>,
    costed: bool,
    next_retention: Instant,
    rng: u64,
    shutting_down: bool,
    /// Uploads requeued because the prober saw their host answer. If such an upload's
    /// next attempt finds the host unreachable again, that attempt spends a retry: the
    /// probe and the upload disagree (a proxy, a redirect, configured probe targets), and
    /// without this the two would bounce off each other forever.
    rebounded: HashSet<UploadId>,
    /// A journal write failed: nothing can be recorded until the store is reopened.
    journal_failed: bool,
    /// The gates of transfers started since the last fsync: opened once their Running
    /// records are durable ([`Scheduler::open_gates`]).
    gates: Vec<Arc<crate::http::StartGate>>,
    /// Uploads whose Running record awaits that fsync: their handles show Running only
    /// after it (an observable status is durable).
    starting: Vec<UploadId>,
    /// The upload being created and its cell: listed (`shared.cells`) only once its
    /// creation is durable, since a power cut before would take it back.
    unlisted: Option<(UploadId, Arc<Cell>)>,
    /// The write or fsync that failed it (what a create caught in it is told).
    journal_error: Option<crate::model::Failure>,
    /// The uploads whose status is `Queued`: what scheduling looks at, so that the work
    /// per message does not grow with the uploads the store retains. Kept by `commit`.
    queued: policy::Queue,
    /// Each upload's `host:port`, parsed once (at create or open).
    hosts: HashMap<UploadId, String>,
    /// The worker threads (kept for the next transfer a while).
    pool: Pool,
}

/// Longest the loop sleeps: batched journal records are fsynced at this pace.
const TICK: Duration = Duration::from_secs(1);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(600);

impl Scheduler {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        probes: (Sender<ProbeEvent>, Receiver<ProbeEvent>),
        prober: Sender<ProbeMsg>,
        roots: Roots,
    ) -> Scheduler {
        let (worker_tx, worker_rx) = unbounded();
        let config_stack = config.worker_stack_size;
        let bandwidth = config.max_bandwidth.map(|b| Arc::new(Bandwidth::new(b)));
        let groups = config.groups.iter().cloned().collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Scheduler {
            store,
            config,
            shared,
            commands,
            worker_rx,
            worker_tx,
            probe_rx: probes.1,
            _probe_tx: probes.0,
            prober,
            roots,
            bandwidth,
            running: HashMap::new(),
            retry_at: BTreeMap::new(),
            offline: HashSet::new(),
            groups,
            costed: false,
            next_retention: Instant::now(),
            rng: seed,
            shutting_down: false,
            rebounded: HashSet::new(),
            journal_failed: false,
            gates: Vec::new(),
            starting: Vec::new(),
            unlisted: None,
            journal_error: None,
            queued: policy::Queue::default(),
            hosts: HashMap::new(),
            pool: Pool::new(config_stack),
        }
    }

    /// The thread's body: recovery, then `ready` is signalled, then the loop.
    pub fn run_after(mut self, ready: Sender<()>) {
        self.recover();
        let _ = ready.send(());
        drop(ready);
        loop {
            self.fire_retries();
            self.retention();
            self.schedule();
            let now = Instant::now();
            let sync_due = self.store.journal().sync_due();
            if sync_due.is_some_and(|t| t <= now) && !self.journal_failed {
                // A steady stream of worker messages never lets the inbox go idle: batched
                // checkpoints are fsynced on time all the same.
                self.sync_journal();
            }
            let wake = self
                .retry_at
                .values()
                .copied()
                .chain(sync_due.filter(|t| *t > now))
                .min()
                .map_or(TICK, |t| t.saturating_duration_since(now))
                .min(TICK);
            match self.next(wake) {
                Inbox::Command(Command::Shutdown(reply)) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
                Inbox::Command(c) => self.command(c),
                Inbox::Worker(w) => self.worker_event(w),
                Inbox::Probe(ProbeEvent::Online(host)) => self.online(&host),
                Inbox::Probe(ProbeEvent::Unreachable(host)) => self.route_lost(&host),
                Inbox::Idle => self.sync_journal(),
                Inbox::Closed => {
                    self.shutdown();
                    return;
                }
            }
        }
    }

    /// fsyncs batched journal records.
    fn sync_journal(&mut self) {
        let _ = self.sync_now();
    }

    /// fsyncs batched journal records now; a failure is also returned.
    fn sync_now(&mut self) -> Result<(), Error> {
        let synced = self.store.sync();
        if let Err(e) = &synced {
            log::error!("journal fsync failed: {e}");
            self.journal_error.get_or_insert_with(|| e.to_failure());
            self.journal_failure();
        }
        synced
    }

    /// The next message, commands first: a pause or cancel never waits behind a
    /// stream of worker progress. `Idle` after `timeout` with nothing to read.
    fn next(&self, timeout: Duration) -> Inbox {
        if let Ok(c) = self.commands.try_recv() {
            return Inbox::Command(c);
        }
        crossbeam_channel::select! {
            recv(self.commands) -> c => c.map_or(Inbox::Closed, Inbox::Command),
            recv(self.worker_rx) -> w => w.map_or(Inbox::Idle, Inbox::Worker),
            recv(self.probe_rx) -> p => p.map_or(Inbox::Idle, Inbox::Probe),
            default(timeout) => Inbox::Idle,
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Create {
                id,
                created_ms,
                request,
                reply,
            } => {
                // The creation is fsynced before the reply, together with the Running
                // record when it starts at once: one fsync for both.
                let failed_before = self.journal_failed;
                let key = request.submission;
                let submitter = request.submitter;
                let r = match self.create(id, created_ms, *request) {
                    Ok(true) => {
                        self.schedule();
                        self.sync_now().map(|()| {
                            // Durable now: listed, and a second arrival of it is this
                            // upload.
                            if let Some((id, cell)) = self.unlisted.take() {
                                lock(&self.shared.cells).insert(id, cell);
                            }
                            if let Some(k) = key {
                                lock(&self.shared.submissions).insert(k, id);
                            }
                            if let Some(uid) = submitter {
                                lock(&self.shared.submitters).insert(id, uid);
                            }
                            id
                        })
                    }
                    // Created before: its id (durable since that create answered).
                    Ok(false) => Ok(key
                        .and_then(|k| lock(&self.shared.submissions).get(&k).copied())
                        .unwrap_or(id)),
                    Err(e) => Err(e),
                };
                let r = r.map_err(|e| match (&e, &self.journal_error) {
                    // Its Running record's write or fsync (in `schedule`) failed first.
                    (Error::JournalPoisoned { .. }, Some(f)) if !failed_before => {
                        Error::from_failure(f)
                    }
                    _ => e,
                });
                // Still unlisted: it failed. It is not in the store after a reopen, and
                // no handle has seen it.
                self.unlisted = None;
                if r.is_err() {
                    if let Some(k) = key {
                        let mut subs = lock(&self.shared.submissions);
                        if subs.get(&k) == Some(&id) {
                            subs.remove(&k);
                        }
                    }
                }
                let _ = reply.send(r);
            }
            Command::Op { id, op, reply } => self.op(id, op, reply),
            Command::SetCost(costed) => self.set_cost(costed),
            Command::SetGroup(name, b) => {
                self.groups.insert(name, b);
            }
            Command::NetworkChanged => {
                let _ = self.prober.send(ProbeMsg::Now);
            }
            Command::CredentialsRegistered => self.credentials_registered(),
            // Behind a proxy an upload's host is not reached directly: polling (and TCP)
            // decide there.
            Command::NetworkLost if self.config.proxy.is_some() => {}
            Command::NetworkLost => {
                let mut hosts: Vec<String> = self
                    .running
                    .keys()
                    .filter_map(|id| self.hosts.get(id).cloned())
                    .collect();
                hosts.sort();
                hosts.dedup();
                if !hosts.is_empty() {
                    let _ = self.prober.send(ProbeMsg::Check(hosts));
                }
            }
            Command::Shutdown(reply) => {
                // Only reached during shutdown itself: `run_after` handles the first.
                let _ = reply.send(());
            }
        }
    }

    // ---- journal and cells -------------------------------------------------------

    /// Commits a record; a failure is logged (the journal is then poisoned and every
    /// later commit fails the same way, so nothing is silently half-written).
    fn commit(&mut self, record: Entry, durability: Durability) -> Result<(), Error> {
        let id = record.id();
        let compactions = self.store.compactions();
        let committed = self.store.commit(record, durability);
        self.index(id);
        if self.store.compactions() != compactions {
            self.moved_bodies();
        }
        if let Err(e) = &committed {
            log::error!("journal write failed: {e}; the store must be reopened");
            // A record over the size cap is refused before anything is written.
            if !matches!(e, Error::RecordTooLarge { .. }) {
                self.journal_error.get_or_insert_with(|| e.to_failure());
                self.journal_failure();
            }
        }
        committed
    }

    /// A compaction moved every record: the handles learn where the bodies the journal
    /// holds are now (published responses only: the others are shown by `publish`).
    fn moved_bodies(&self) {
        // A published body the journal no longer holds (a later answer replaced it, not
        // published yet) has no record any more: its entry goes.
        lock(&self.shared.bodies_at).retain(|&id, offset| match self.store.body_at(id) {
            Some(now) => {
                *offset = now;
                true
            }
            None => false,
        });
        self.shared.bodies_moved.notify_all();
    }

    /// Brings the scheduling index up to date for `id` after a change.
    pub(super) fn index(&mut self, id: UploadId) {
        let u = self.store.state().uploads.get(&id);
        self.queued.update(id, u);
        match u {
            Some(u) => {
                if u.status.is_final() {
                    self.hosts.remove(&id);
                } else if let std::collections::hash_map::Entry::Vacant(slot) = self.hosts.entry(id)
                {
                    if let Some(h) = host_key(&u.request.url) {
                        slot.insert(h);
                    }
                }
            }
            None => {
                self.hosts.remove(&id);
            }
        }
    }

    /// After a failed journal write or fsync nothing can be recorded any more: the
    /// journal refuses every append until the store is reopened. So transfers stop
    /// (their outcome could not be recorded, and an upload whose start was not recorded
    /// would be started again and again), no other starts, and every unfinished upload
    /// ends in `Error` with the reason, so that no `wait` hangs. None of this is
    /// persisted: a reopened store continues the uploads from their last recorded state.
    fn journal_failure(&mut self) {
        if self.journal_failed {
            return;
        }
        self.journal_failed = true;
        let running: Vec<UploadId> = self.running.keys().copied().collect();
        for id in running {
            self.stop(id, StopReason::Shutdown);
        }
        let failure = Error::JournalPoisoned {
            path: self.store.journal().path().to_path_buf(),
        }
        .to_failure();
        let unfinished: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| !u.status.is_final())
            .map(|u| u.id)
            .collect();
        for id in unfinished {
            if let Some(cell) = self.cell(id) {
                let f = failure.clone();
                cell.update(
                    |s| {
                        s.progress.status = Status::Error;
                        s.error = Some(f);
                    },
                    Event::StatusChanged,
                );
            }
        }
    }

    fn set_status(&mut self, id: UploadId, status: Status, attempts: u32, error: Option<Failure>) {
        let _ = self.try_set_status(id, status, attempts, error);
    }

    /// [`Scheduler::set_status`] for a change a caller waits on (pause, resume, cancel):
    /// a failed journal write is its error, and the status did not change.
    fn try_set_status(
        &mut self,
        id: UploadId,
        status: Status,
        attempts: u32,
        error: Option<Failure>,
    ) -> Result<(), Error> {
        let rec = Entry::State {
            id,
            status,
            attempts,
            error,
            at_ms: now_ms(),
        };
        // A start is fsynced by `open_gates`, with the other starts of the same pass,
        // while its worker connects; its first byte waits for that fsync.
        let durability = if status == Status::Running {
            Durability::Batched
        } else {
            Durability::Sync
        };
        let committed = self.commit(rec, durability);
        if status == Status::Running && committed.is_ok() {
            self.starting.push(id);
        } else {
            self.publish(id);
        }
        committed
    }

    fn cell(&self, id: UploadId) -> Option<Arc<Cell>> {
        if let Some((unlisted, cell)) = &self.unlisted {
            if *unlisted == id {
                return Some(cell.clone());
            }
        }
        lock(&self.shared.cells).get(&id).cloned()
    }

    /// Publishes the journal's view of `id` (status, attempts, error, response) to its
    /// cell, with a `StatusChanged` event.
    fn publish(&self, id: UploadId) {
        if self.journal_failed {
            // The handles already show the failure; the journal's view is stale.
            return;
        }
        let (Some(cell), Some(u)) = (self.cell(id), self.store.state().uploads.get(&id)) else {
            return;
        };
        let response = u
            .response
            .as_ref()
            .map(|r| response_info(r, &u.request.protocol));
        let status = u.status;
        let (attempts, restarted, error) = (u.attempts, u.restarted, u.error.clone());
        if response.is_some() {
            // Before the cell shows the response: whoever sees it finds its body.
            let mut at = lock(&self.shared.bodies_at);
            match self.store.body_at(id) {
                Some(offset) => at.insert(id, offset),
                None => at.remove(&id),
            };
            self.shared.bodies_moved.notify_all();
        }
        cell.update(
            |s| {
                if s.response.is_some() && response.is_some() && s.response != response {
                    s.progress.has_response_changed = true;
                }
                if response.is_some() {
                    s.response = response;
                }
                s.progress.status = status;
                s.progress.attempts = attempts;
                s.progress.has_restarted = restarted;
                if error.is_some() || status == Status::Completed {
                    s.error = error;
                }
            },
            Event::StatusChanged,
        );
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let ids: Vec<UploadId> = self.running.keys().copied().collect();
        for id in ids {
            self.step(id, state::Event::Shutdown, effects::Context::default());
        }
        let deadline = Instant::now()
            .checked_add(self.config.shutdown_timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        // Every worker's report is handled until the hard deadline, twice the timeout:
        // its Done may carry a completion that must be recorded, and a tus worker may be
        // waiting for the journal to take its upload URL. Its sockets, any connect and
        // any name lookup have been stopped, so a worker still running at the timeout is
        // about to report; only something outside the network (a hung file system)
        // could keep it. Past the hard deadline it is left to end on its own: nothing
        // persisted is lost (its upload reads back as interrupted, like after a crash).
        let hard = deadline
            .checked_add(self.config.shutdown_timeout)
            .unwrap_or(deadline);
        let mut warned = false;
        while !self.running.is_empty() {
            let now = Instant::now();
            if now >= hard {
                let ids: Vec<UploadId> = self.running.keys().copied().collect();
                log::error!(
                    "shutdown: leaving {} worker(s) that did not stop in time (uploads {ids:?}); \
                     they end on their own, and their uploads continue at the next open",
                    ids.len()
                );
                break;
            }
            let left = deadline.saturating_duration_since(now);
            let msg = if left.is_zero() {
                if !warned {
                    warned = true;
                    log::warn!(
                        "{} worker(s) slow to stop; waiting for them",
                        self.running.len()
                    );
                }
                self.next(
                    hard.saturating_duration_since(now)
                        .min(Duration::from_secs(1)),
                )
            } else {
                self.next(left)
            };
            match msg {
                Inbox::Worker(w) => self.worker_event(w),
                Inbox::Command(Command::Create { reply, .. }) => {
                    let _ = reply.send(Err(Error::ShutDown));
                }
                Inbox::Command(Command::Op { reply, .. }) => {
                    let _ = reply.send(Err(Error::ShutDown));
                }
                Inbox::Command(Command::Shutdown(reply)) => {
                    let _ = reply.send(());
                }
                Inbox::Command(_) | Inbox::Probe(_) | Inbox::Idle => {}
                Inbox::Closed => break,
            }
        }
        let _ = self.prober.send(ProbeMsg::Shutdown);
        if let Err(e) = self.store.sync() {
            log::error!("journal fsync at shutdown failed: {e}");
        }
        log::info!("uploader shut down");
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Total body bytes of a request.
pub(crate) fn total_len(req: &crate::model::Request) -> u64 {
    use crate::model::Body;
    match &req.body {
        Body::File(s) => s.size,
        Body::Multipart(mp) => crate::multipart::total_len(&crate::multipart::layout(mp)),
    }
}

/// The public view of a stored response.
pub(crate) fn response_info(r: &StoredResponse, protocol: &Protocol) -> ResponseInfo {
    ResponseInfo {
        status: r.status,
        headers: r.headers.clone(),
        url: r.url.clone(),
        is_resumable: protocol.is_resumable()
            || r.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("tus-resumable")),
        body_len: r.body_len,
        body_truncated: r.body_truncated,
    }
}
