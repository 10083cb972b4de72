//! The scheduler thread: the only owner of the uploads' state and the only journal
//! writer. It takes commands from handles, outcomes from workers and reachability from
//! the prober, decides what runs, and publishes every change to the handles' cells.

mod commands;
mod outcome;
mod policy;
mod recovery;
mod transfers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ureq::Agent;

use crate::bandwidth::Bandwidth;
use crate::http::Roots;
use crate::journal::record::{
    CreatedV1, FailureV1, ProtocolV1, Record, StateV1, StatusV1, UploadId,
};
use crate::journal::{Durability, Store};
use crate::prober::ProbeMsg;
use crate::progress::{Event, ResponseInfo};
use crate::shared::{lock, Cell, Shared};
use crate::worker::{Control, WorkerMsg};
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
    /// Tells the agent's connector to give up a connect in progress.
    connect_stop: Arc<std::sync::atomic::AtomicBool>,
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
        // journal to take its upload URL. Its sockets and any connect in progress have
        // been stopped, so a worker still running at the deadline is about to report;
        // only something outside the network (a hung file system) could keep it.
        let mut warned = false;
        while !self.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = if left.is_zero() {
                if !warned {
                    warned = true;
                    log::warn!(
                        "{} worker(s) slow to stop; waiting for them",
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
