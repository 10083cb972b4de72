//! The scheduler thread: the only owner of the uploads' state and the only journal
//! writer. It takes commands from handles, outcomes from workers and reachability from
//! the prober, decides what runs, and publishes every change to the handles' cells.

mod outcome;
mod policy;
mod recovery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use ureq::Agent;

use crate::bandwidth::Bandwidth;
use crate::http::Roots;
use crate::journal::record::{
    ChangedV1, CreatedV1, FailureV1, ProtocolV1, Record, StateV1, StatusV1, UploadId,
};
use crate::journal::{Durability, Store};
use crate::prober::ProbeMsg;
use crate::progress::{Event, ResponseInfo};
use crate::shared::{lock, Cell, Shared};
use crate::worker::{self, Control, Job, WorkerMsg};
use crate::{Config, Error, GroupBehavior, Status};

pub(crate) use policy::host_key;

/// Everything the scheduler is told.
pub(crate) enum Msg {
    /// Persist a new upload (fsynced before the reply).
    Create {
        record: CreatedV1,
        reply: Sender<Result<(), Error>>,
    },
    /// An operation on one upload.
    Op {
        id: UploadId,
        op: Op,
        reply: Sender<Result<(), Error>>,
    },
    /// The program says the network is (not) costed.
    SetCost(bool),
    /// How a group runs.
    SetGroup(String, GroupBehavior),
    /// The program saw the network change: probe now.
    NetworkChanged,
    /// The prober saw a host answer.
    Online(String),
    /// A worker's report.
    Worker(WorkerMsg),
    /// Stop every transfer, persist, and end the thread.
    Shutdown(Sender<()>),
}

/// Operations on one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Pause,
    Resume,
    Cancel,
    Remove,
    MakeCurrent,
}

/// Why the scheduler stopped a running transfer: what status it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Pause,
    Cancel,
    Remove,
    Costed,
    Shutdown,
    /// Paused, then resumed before the worker had stopped: back to the queue.
    Requeue,
}

struct Running {
    ctl: Sender<Control>,
    agent: Agent,
    thread: JoinHandle<()>,
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
    rx: Receiver<Msg>,
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
        rx: Receiver<Msg>,
        prober: Sender<ProbeMsg>,
        roots: Roots,
    ) -> Scheduler {
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
            rx,
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
            let wake = self
                .retry_at
                .values()
                .min()
                .map_or(TICK, |t| t.saturating_duration_since(now))
                .min(TICK);
            match self.rx.recv_timeout(wake) {
                Ok(Msg::Shutdown(reply)) => {
                    self.shutdown();
                    let _ = reply.send(());
                    return;
                }
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.store.sync() {
                        log::error!("journal fsync failed: {e}");
                        self.journal_failure();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Create { record, reply } => {
                let r = self.create(record);
                let _ = reply.send(r);
            }
            Msg::Op { id, op, reply } => self.op(id, op, reply),
            Msg::SetCost(costed) => self.set_cost(costed),
            Msg::SetGroup(name, b) => {
                self.groups.insert(name, b);
            }
            Msg::NetworkChanged => {
                let _ = self.prober.send(ProbeMsg::Now);
            }
            Msg::Online(host) => self.online(&host),
            Msg::Worker(w) => self.worker_msg(w),
            Msg::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    // ---- journal and cells -------------------------------------------------------

    /// Commits a record; a failure is logged (the journal is then poisoned and every
    /// later commit fails the same way, so nothing is silently half-written).
    fn commit(&mut self, record: Record, durability: Durability) -> Result<(), Error> {
        let committed = self.store.commit(record, durability);
        if let Err(e) = &committed {
            log::error!("journal write failed: {e}; the store must be reopened");
            // A record over the size cap is refused before anything is written.
            if !matches!(e, Error::RecordTooLarge { .. }) {
                self.journal_failure();
            }
        }
        committed
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

    fn set_status(
        &mut self,
        id: UploadId,
        status: StatusV1,
        attempts: u32,
        error: Option<FailureV1>,
    ) {
        let _ = self.try_set_status(id, status, attempts, error);
    }

    /// [`Scheduler::set_status`] for a change a caller waits on (pause, resume, cancel):
    /// a failed journal write is its error, and the status did not change.
    fn try_set_status(
        &mut self,
        id: UploadId,
        status: StatusV1,
        attempts: u32,
        error: Option<FailureV1>,
    ) -> Result<(), Error> {
        let rec = Record::State(StateV1 {
            id,
            status,
            attempts,
            error,
            at_ms: now_ms(),
        });
        let committed = self.commit(rec, Durability::Sync);
        self.publish(id);
        committed
    }

    fn cell(&self, id: UploadId) -> Option<Arc<Cell>> {
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
        let status = Status::from_v1(u.status);
        let (attempts, restarted, error) = (u.attempts, u.restarted, u.error.clone());
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

    // ---- commands ----------------------------------------------------------------

    fn create(&mut self, record: CreatedV1) -> Result<(), Error> {
        if self.shutting_down {
            return Err(Error::ShutDown);
        }
        let id = record.id;
        self.commit(Record::Created(record), Durability::Sync)?;
        let Some(u) = self.store.state().uploads.get(&id) else {
            // Only a crafted journal can push ids this far (the fold refuses u64::MAX).
            return Err(Error::InvalidRequest {
                reason: "this store has run out of upload ids; use a new store".into(),
            });
        };
        let cell = Arc::new(Cell::new(u, total_len(&u.request), None));
        lock(&self.shared.cells).insert(id, cell);
        log::info!(
            "accepted upload {id}: {} {}",
            u.request.method,
            crate::redact::redact_url(&u.request.url)
        );
        Ok(())
    }

    fn op(&mut self, id: UploadId, op: Op, reply: Sender<Result<(), Error>>) {
        let Some(u) = self.store.state().uploads.get(&id) else {
            let _ = reply.send(Err(Error::NotFound { id }));
            return;
        };
        let status = u.status;
        let attempts = u.attempts;
        // A worker that only sends a canceled tus upload's DELETE does not make the
        // upload "running": it has ended, and a remove must remove it.
        let running = self.running.get(&id).is_some_and(|r| !r.terminating);
        let ended = |what: &str| {
            Err(Error::InvalidRequest {
                reason: format!("upload {id} has already {what}"),
            })
        };
        let result = match op {
            Op::Pause if running => {
                // Recorded now, not when the worker has stopped: a crash in between must
                // not bring the upload back running. The worker's report records it again.
                self.stop(id, StopReason::Pause);
                self.try_set_status(id, StatusV1::PausedByApplication, attempts, None)
            }
            Op::Pause => match status {
                StatusV1::Completed => ended("completed"),
                StatusV1::Canceled => ended("been canceled"),
                StatusV1::Error => ended("failed"),
                StatusV1::PausedByApplication => Ok(()),
                _ => {
                    self.retry_at.remove(&id);
                    self.try_set_status(id, StatusV1::PausedByApplication, attempts, None)
                }
            },
            Op::Resume if running => {
                // Paused but still stopping: the resume must not be lost when the
                // worker's report lands it in PausedByApplication.
                let requeue = self
                    .running
                    .get_mut(&id)
                    .filter(|r| r.stop == Some(StopReason::Pause))
                    .map(|r| r.stop = Some(StopReason::Requeue))
                    .is_some();
                if requeue {
                    self.try_set_status(id, StatusV1::Queued, attempts, None)
                } else {
                    Ok(())
                }
            }
            Op::Resume => match status {
                StatusV1::PausedByApplication => {
                    self.try_set_status(id, StatusV1::Queued, attempts, None)
                }
                StatusV1::Error => {
                    // A fresh retry budget for an upload the program asks to try again.
                    self.try_set_status(id, StatusV1::Queued, 0, None)
                }
                StatusV1::Completed => ended("completed"),
                StatusV1::Canceled => ended("been canceled"),
                _ => Ok(()),
            },
            Op::Cancel if running => {
                // Recorded now, like a pause; the worker's report records it again.
                self.stop(id, StopReason::Cancel);
                self.try_set_status(id, StatusV1::Canceled, attempts, None)
            }
            Op::Cancel => match status {
                StatusV1::Canceled => Ok(()),
                StatusV1::Completed => ended("completed"),
                StatusV1::Error => ended("failed"),
                _ => {
                    self.retry_at.remove(&id);
                    let canceled = self.try_set_status(id, StatusV1::Canceled, attempts, None);
                    if canceled.is_ok() {
                        self.terminate_tus(id);
                    }
                    canceled
                }
            },
            Op::Remove if running => {
                self.stop(id, StopReason::Remove);
                // Replied once the worker has stopped and the files are gone.
                if let Some(r) = self.running.get_mut(&id) {
                    r.replies.push(reply);
                }
                return;
            }
            Op::Remove => {
                if !status.is_final() {
                    self.terminate_tus(id);
                }
                self.remove(id)
            }
            Op::MakeCurrent => {
                let seq = self.store.state().next_current_seq.max(1);
                let rec = Record::Changed(ChangedV1 {
                    id,
                    priority: u.priority,
                    current_seq: seq,
                });
                self.commit(rec, Durability::Sync)
            }
        };
        let _ = reply.send(result);
    }

    fn remove(&mut self, id: UploadId) -> Result<(), Error> {
        self.retry_at.remove(&id);
        self.commit(Record::Removed(id), Durability::Sync)?;
        crate::store_files::remove_upload_files(&self.shared.store_dir, id);
        if let Some(cell) = lock(&self.shared.cells).remove(&id) {
            cell.update(|s| s.removed = true, Event::StatusChanged);
        }
        log::info!("removed upload {id}");
        Ok(())
    }

    fn set_cost(&mut self, costed: bool) {
        self.costed = costed;
        let affected: Vec<(UploadId, StatusV1, u32)> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.request.cost == crate::journal::record::CostPolicyV1::UnrestrictedOnly)
            .map(|u| (u.id, u.status, u.attempts))
            .collect();
        for (id, status, attempts) in affected {
            if costed {
                if self.running.contains_key(&id) {
                    self.stop(id, StopReason::Costed);
                } else if matches!(status, StatusV1::Queued | StatusV1::WaitingToRetry) {
                    self.retry_at.remove(&id);
                    self.set_status(id, StatusV1::PausedCostedNetwork, attempts, None);
                }
            } else if status == StatusV1::PausedCostedNetwork {
                self.set_status(id, StatusV1::Queued, attempts, None);
            }
        }
    }

    fn online(&mut self, host: &str) {
        if !self.offline.remove(host) {
            return;
        }
        log::info!("{host} is reachable again");
        let waiting: Vec<(UploadId, u32)> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.status == StatusV1::PausedNoNetwork)
            .filter(|u| host_key(&u.request.url).as_deref() == Some(host))
            .map(|u| (u.id, u.attempts))
            .collect();
        for (id, attempts) in waiting {
            self.rebounded.insert(id);
            self.set_status(id, StatusV1::Queued, attempts, None);
        }
    }

    // ---- running transfers -------------------------------------------------------

    fn stop(&mut self, id: UploadId, reason: StopReason) {
        if let Some(r) = self.running.get_mut(&id) {
            if r.stop.is_none()
                || r.stop == Some(StopReason::Requeue)
                || reason == StopReason::Remove
                || reason == StopReason::Cancel
                || (reason == StopReason::Pause && r.stop == Some(StopReason::Costed))
            {
                r.stop = Some(reason);
            }
            let _ = r.ctl.send(Control::Stop);
            if !r.terminating || reason == StopReason::Shutdown {
                // Interrupts a worker blocked on its socket (a stalled send, a slow
                // response) as well; the control message covers the rest.
                r.agent.clone().shutdown();
            }
        }
    }

    fn schedule(&mut self) {
        // `start_transfers(false)`: the store is open only to be looked at and managed.
        if self.shutting_down || !self.config.start_transfers || self.journal_failed {
            return;
        }
        self.park_offline();
        // A journal failure on the way (a status that could not be recorded) ends the
        // loop: the upload it was about stays where it was and would be picked again.
        while !self.journal_failed
            && self.running.values().filter(|r| !r.terminating).count() < self.config.max_concurrent
        {
            let running: HashSet<UploadId> = self.running.keys().copied().collect();
            let ctx = policy::Ctx {
                running: &running,
                groups: &self.groups,
                costed: self.costed,
                offline: &self.offline,
            };
            let Some(id) = policy::next(self.store.state(), &ctx) else {
                return;
            };
            self.start(id, false);
        }
    }

    /// Queued uploads to a host known to be unreachable wait as `PausedNoNetwork`, and
    /// ones that may not use a costed network as `PausedCostedNetwork`.
    fn park_offline(&mut self) {
        let parked: Vec<(UploadId, u32, StatusV1)> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.status == StatusV1::Queued && !self.running.contains_key(&u.id))
            .filter_map(|u| {
                if self.costed
                    && u.request.cost == crate::journal::record::CostPolicyV1::UnrestrictedOnly
                {
                    Some((u.id, u.attempts, StatusV1::PausedCostedNetwork))
                } else if host_key(&u.request.url).is_some_and(|h| self.offline.contains(&h)) {
                    Some((u.id, u.attempts, StatusV1::PausedNoNetwork))
                } else {
                    None
                }
            })
            .collect();
        for (id, attempts, status) in parked {
            self.set_status(id, status, attempts, None);
        }
    }

    /// Starts a worker for `id`; `terminating` starts one that only ends a tus upload on
    /// the server (DELETE).
    fn start(&mut self, id: UploadId, terminating: bool) {
        let Some(u) = self.store.state().uploads.get(&id) else {
            return;
        };
        let request = u.request.clone();
        let resume_url = u.resume_url.clone();
        let attempts = u.attempts;
        let agent = match crate::http::agent(&self.config, &self.roots) {
            Ok(a) => a,
            Err(e) => {
                if !terminating {
                    self.set_status(id, StatusV1::Error, attempts, Some(e.to_failure()));
                }
                return;
            }
        };
        if !terminating {
            let sent_before = self
                .cell(id)
                .map_or(0, |c| lock(&c.snap).progress.bytes_sent);
            if matches!(request.protocol, ProtocolV1::Plain) && sent_before > 0 {
                // A plain upload always starts from byte 0: say so.
                let _ = self.commit(Record::Restarted(id), Durability::Batched);
                if let Some(c) = self.cell(id) {
                    c.update(|s| s.progress.bytes_sent = 0, Event::Progress);
                }
            }
            self.set_status(id, StatusV1::Running, attempts, None);
            if self.journal_failed {
                // Its start could not be recorded: it must not go on the wire.
                return;
            }
        }
        let (ctl_tx, ctl_rx) = unbounded();
        let job = Job {
            id,
            request,
            resume_url,
            config: self.config.clone(),
            agent: agent.clone(),
            bandwidth: self.bandwidth.clone(),
            ctl: ctl_rx,
            tx: self.shared.tx.clone(),
            body_path: crate::store_files::body_path(&self.shared.store_dir, id),
            terminate: terminating,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("bgxfer-upload-{id}"))
            .stack_size(self.config.worker_stack_size)
            .spawn(move || worker::run(job));
        match spawned {
            Ok(thread) => {
                self.running.insert(
                    id,
                    Running {
                        ctl: ctl_tx,
                        agent,
                        thread,
                        stop: None,
                        terminating,
                        checkpointed: 0,
                        replies: Vec::new(),
                    },
                );
            }
            Err(e) => {
                log::error!("cannot start a worker thread for upload {id}: {e}");
                if !terminating {
                    self.set_status(id, StatusV1::WaitingToRetry, attempts, None);
                    self.retry_at
                        .insert(id, Instant::now() + Duration::from_secs(5));
                }
            }
        }
    }

    /// Ends a tus upload on the server, when it has one there.
    fn terminate_tus(&mut self, id: UploadId) {
        let has_url = self.store.state().uploads.get(&id).is_some_and(|u| {
            matches!(u.request.protocol, ProtocolV1::Tus { .. }) && u.resume_url.is_some()
        });
        if has_url && !self.running.contains_key(&id) && !self.shutting_down {
            self.start(id, true);
        }
    }

    fn fire_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<UploadId> = self
            .retry_at
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.retry_at.remove(&id);
            let Some(u) = self.store.state().uploads.get(&id) else {
                continue;
            };
            if u.status == StatusV1::WaitingToRetry {
                let attempts = u.attempts;
                self.set_status(id, StatusV1::Queued, attempts, None);
            }
        }
    }

    fn shutdown(&mut self) {
        self.shutting_down = true;
        let ids: Vec<UploadId> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id, StopReason::Shutdown);
        }
        let deadline = Instant::now()
            .checked_add(self.config.shutdown_timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        // Every worker's report is handled, also after the deadline: its Done may carry
        // a completion that must be recorded, and a tus worker may be waiting for the
        // journal to take its upload URL. A worker still running at the deadline has had
        // its sockets shut down; only a connect in progress can keep it (at most the
        // connect timeout).
        let mut warned = false;
        while !self.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = if left.is_zero() {
                if !warned {
                    warned = true;
                    log::warn!(
                        "{} worker(s) slow to stop (a connect in progress?); waiting for them",
                        self.running.len()
                    );
                }
                self.rx.recv_timeout(Duration::from_secs(1))
            } else {
                self.rx.recv_timeout(left)
            };
            match msg {
                Ok(Msg::Worker(w)) => self.worker_msg(w),
                Ok(Msg::Create { reply, .. }) | Ok(Msg::Op { reply, .. }) => {
                    let _ = reply.send(Err(Error::ShutDown));
                }
                Ok(Msg::Shutdown(reply)) => {
                    let _ = reply.send(());
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
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
pub(crate) fn total_len(req: &crate::journal::record::RequestV1) -> u64 {
    use crate::journal::record::BodyV1;
    match &req.body {
        BodyV1::File(s) => s.size,
        BodyV1::Multipart(mp) => crate::multipart::layout(mp).iter().map(|s| s.len()).sum(),
    }
}

/// The public view of a stored response.
pub(crate) fn response_info(
    r: &crate::journal::record::ResponseV1,
    protocol: &ProtocolV1,
) -> ResponseInfo {
    ResponseInfo {
        status: r.status,
        headers: r.headers.clone(),
        url: r.url.clone(),
        is_resumable: matches!(protocol, ProtocolV1::Tus { .. })
            || r.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("tus-resumable")),
        body_len: r.body_len,
        body_truncated: r.body_truncated,
    }
}
