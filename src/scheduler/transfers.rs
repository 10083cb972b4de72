//! Running transfers: what starts next, starting a worker, stopping one, and retries
//! that come due.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::http::Control;
use crate::journal::{Durability, Entry};
use crate::model::{Protocol, UploadId};
use crate::progress::Event;
use crate::shared::lock;
use crate::worker::{self, Job};
use crate::Status;

use super::effects::Context;
use super::state::{self, Event as On, StopReason};
use super::{policy, Running, Scheduler};

impl Scheduler {
    /// Stops a running worker for `reason` (journal failure): the machine's rule for
    /// which reason wins.
    pub(super) fn stop(&mut self, id: UploadId, reason: StopReason) {
        if let Some(r) = self.running.get(&id) {
            let next = state::stop_reason(r.stop, reason);
            self.signal_stop(id, next);
        }
    }

    /// Tells a running worker to stop and records why (`reason`, as the machine decided).
    pub(super) fn signal_stop(&mut self, id: UploadId, reason: Option<StopReason>) {
        if let Some(r) = self.running.get_mut(&id) {
            if reason.is_some() {
                r.stop = reason;
            }
            let _ = r.ctl.send(Control::Stop);
            let shutdown = reason == Some(StopReason::Shutdown) || self.shutting_down;
            if !r.terminating || shutdown {
                // Interrupts a worker blocked on its socket (a stalled send, a slow
                // response) or in a connect as well; the control message covers the rest.
                r.connect_stop.store(true, Ordering::SeqCst);
                r.agent.clone().shutdown();
            }
        }
    }

    /// Starts what may start now, then makes their starts durable with one fsync and
    /// lets their first bytes go.
    pub(super) fn schedule(&mut self) {
        self.start_queued();
        self.open_gates();
    }

    /// fsyncs the Running records of the transfers started since the last call, then
    /// opens their gates and shows them Running (or refuses the gates, when the fsync
    /// failed: the journal failure stops those transfers before they send anything).
    pub(super) fn open_gates(&mut self) {
        if self.gates.is_empty() && self.starting.is_empty() {
            return;
        }
        let go = !self.journal_failed && self.sync_now().is_ok();
        // The first bytes go before the handles hear of it: both only wait for the fsync.
        for gate in self.gates.drain(..) {
            gate.open(go);
        }
        for id in std::mem::take(&mut self.starting) {
            // After a failed fsync the handles show the journal failure instead.
            if go {
                self.publish(id);
            }
        }
    }

    fn start_queued(&mut self) {
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
                hosts: &self.hosts,
            };
            let Some(id) = policy::next(&self.queued, self.store.state(), &ctx) else {
                return;
            };
            match self.missing_provider(id) {
                // Never sent without its credentials: it waits, out of the queue.
                Some(error) => {
                    log::warn!("upload {id}: {error}");
                    let ctx = Context {
                        error: Some(error),
                        ..Context::default()
                    };
                    self.step(id, On::NoProvider, ctx);
                }
                None => self.step(id, On::Start, Context::default()),
            }
        }
    }

    /// Why `id` cannot start: a credentials provider or client identity it names is not
    /// registered.
    fn missing_provider(&self, id: UploadId) -> Option<crate::Error> {
        let u = self.store.state().uploads.get(&id)?;
        if let Some(name) = &u.request.client_identity {
            if !self.roots.has_identity(name) {
                return Some(crate::http::identity_missing(name));
            }
        }
        let name = u
            .request
            .providers()
            .find(|n| !self.config.providers.contains(n))?;
        Some(crate::Error::Credentials {
            provider: name.to_string(),
            message: "no provider is registered under this name; the upload waits, sending \
                      nothing, until the program registers it (UploaderBuilder::credentials \
                      or Uploader::register_credentials)"
                .into(),
            permanent: false,
        })
    }

    /// Uploads waiting for credentials whose providers and client identity are all
    /// registered now go back to the queue.
    pub(super) fn credentials_registered(&mut self) {
        let ready: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.status == Status::PausedNoCredentials)
            .map(|u| u.id)
            .filter(|id| self.missing_provider(*id).is_none())
            .collect();
        for id in ready {
            log::info!("upload {id}: its credentials are registered; queued");
            self.step(id, On::ProviderRegistered, Context::default());
        }
    }

    /// Queued uploads to a host known to be unreachable wait as `PausedNoNetwork`, and
    /// ones that may not use a costed network as `PausedCostedNetwork`.
    pub(super) fn park_offline(&mut self) {
        if !self.costed && self.offline.is_empty() {
            return;
        }
        let state = self.store.state();
        let parked: Vec<(UploadId, On)> = self
            .queued
            .iter()
            .filter_map(|id| state.uploads.get(&id))
            .filter(|u| u.status == Status::Queued && !self.running.contains_key(&u.id))
            .filter_map(|u| {
                if self.costed && u.request.cost == crate::CostPolicy::UnrestrictedOnly {
                    Some((u.id, On::Costed(true)))
                } else if self
                    .hosts
                    .get(&u.id)
                    .is_some_and(|h| self.offline.contains(h))
                {
                    Some((u.id, On::HostOffline))
                } else {
                    None
                }
            })
            .collect();
        for (id, event) in parked {
            self.step(id, event, Context::default());
        }
    }

    /// Starts a worker for `id`; `terminating` starts one that only ends a tus upload on
    /// the server (DELETE).
    pub(super) fn start(&mut self, id: UploadId, terminating: bool) {
        let Some(u) = self.store.state().uploads.get(&id) else {
            return;
        };
        let request = u.request.clone();
        let session = u.session.clone();
        let attempts = u.attempts;
        let connect_stop = Arc::new(AtomicBool::new(false));
        let identity = request.client_identity.as_deref();
        let tx = self.worker_tx.clone();
        let watch = crate::http::ConnectWatch::new(move |waiting| {
            let _ = tx.send(worker::WorkerEvent::Connecting { id, waiting });
        });
        // A transfer's first byte waits for its Running record's fsync (`open_gates`);
        // the end of a tus upload records nothing first.
        let gate = (!terminating).then(|| Arc::new(crate::http::StartGate::default()));
        let (agent, zero_copy) = match crate::http::agent(
            &self.config,
            &self.roots,
            identity,
            connect_stop.clone(),
            Some(watch),
            gate.clone(),
        ) {
            Ok(a) => a,
            Err(e) => {
                if !terminating {
                    // Shown once, as what it became (not also as a start at `open_gates`).
                    self.starting.retain(|s| *s != id);
                    self.set_status(id, Status::Error, attempts, Some(e.to_failure()));
                }
                return;
            }
        };
        if !terminating {
            let sent_before = self
                .cell(id)
                .map_or(0, |c| lock(&c.snap).progress.bytes_sent);
            if matches!(request.protocol, Protocol::Plain) && sent_before > 0 {
                // A plain upload always starts from byte 0: say so.
                let _ = self.commit(Entry::Restarted(id), Durability::Batched);
                if let Some(c) = self.cell(id) {
                    c.update(|s| s.progress.bytes_sent = 0, Event::Progress);
                }
            }
            if self.journal_failed {
                // Its start could not be recorded: it must not go on the wire.
                return;
            }
        }
        let (ctl_tx, ctl_rx) = unbounded();
        let job = Job {
            id,
            request,
            session,
            config: self.config.clone(),
            agent: agent.clone(),
            bandwidth: self.bandwidth.clone(),
            ctl: ctl_rx,
            tx: self.worker_tx.clone(),
            body_path: crate::store::body_path(&self.shared.store_dir, id),
            terminate: terminating,
            small_body: std::cell::RefCell::new(None),
            zero_copy,
        };
        let spawned = self
            .pool
            .run(format!("bgxfer-upload-{id}"), move || worker::run(job));
        match spawned {
            Ok(thread) => {
                self.gates.extend(gate);
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
                    self.starting.retain(|s| *s != id);
                    self.set_status(id, Status::WaitingToRetry, attempts, None);
                    self.retry_at
                        .insert(id, Instant::now() + Duration::from_secs(5));
                }
            }
        }
    }

    /// A running transfer's connect went unanswered (or ended): its handles show
    /// `Connecting` meanwhile. Only for a transfer the scheduler has not asked to stop,
    /// and never persisted.
    pub(super) fn connecting(&mut self, id: UploadId, waiting: bool) {
        let live = self
            .running
            .get(&id)
            .is_some_and(|r| !r.terminating && r.stop.is_none());
        let running = self
            .store
            .state()
            .uploads
            .get(&id)
            .is_some_and(|u| u.status == Status::Running);
        if !(live && running) {
            return;
        }
        if let Some(c) = self.cell(id) {
            let status = if waiting {
                Status::Connecting
            } else {
                Status::Running
            };
            if waiting {
                log::info!("upload {id}: its connect is unanswered; connecting");
            }
            c.update(|s| s.progress.status = status, Event::StatusChanged);
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
            self.step(id, On::RetryDue, Context::default());
        }
    }
}
