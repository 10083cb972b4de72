//! Running transfers: what starts next, starting a worker, stopping one, and retries
//! that come due.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::journal::record::{ProtocolV1, Record, StatusV1, UploadId};
use crate::journal::Durability;
use crate::progress::Event;
use crate::shared::lock;
use crate::worker::{self, Control, Job};

use super::{host_key, policy, Running, Scheduler, StopReason};

impl Scheduler {
    pub(super) fn stop(&mut self, id: UploadId, reason: StopReason) {
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
                // response) or in a connect as well; the control message covers the rest.
                r.connect_stop.store(true, Ordering::SeqCst);
                r.agent.clone().shutdown();
            }
        }
    }

    pub(super) fn schedule(&mut self) {
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
    pub(super) fn park_offline(&mut self) {
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
    pub(super) fn start(&mut self, id: UploadId, terminating: bool) {
        let Some(u) = self.store.state().uploads.get(&id) else {
            return;
        };
        let request = u.request.clone();
        let resume_url = u.resume_url.clone();
        let attempts = u.attempts;
        let connect_stop = Arc::new(AtomicBool::new(false));
        let agent = match crate::http::agent(&self.config, &self.roots, connect_stop.clone()) {
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
                        connect_stop,
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
    pub(super) fn terminate_tus(&mut self, id: UploadId) {
        let has_url = self.store.state().uploads.get(&id).is_some_and(|u| {
            matches!(u.request.protocol, ProtocolV1::Tus { .. }) && u.resume_url.is_some()
        });
        if has_url && !self.running.contains_key(&id) && !self.shutting_down {
            self.start(id, true);
        }
    }

    pub(super) fn fire_retries(&mut self) {
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
}
