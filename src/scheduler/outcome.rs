//! What the scheduler does with workers' reports: progress, resumable URLs, and the end
//! of an attempt (the retry policy lives here).

use std::time::{Duration, Instant};

use crate::http::{Class, StoredResponse};
use crate::journal::record::{
    FailureV1, ProgressV1, Record, ResponseV1, ResumeUrlV1, StatusV1, UploadId,
};
use crate::journal::Durability;
use crate::prober::ProbeMsg;
use crate::progress::Event;
use crate::worker::{Outcome, WorkerMsg};
use crate::Error;

use super::{host_key, policy, Running, Scheduler, StopReason};

impl Scheduler {
    pub(super) fn worker_msg(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Progress {
                id,
                sent,
                acked,
                received,
                to_receive,
            } => self.progress(id, sent, acked, received, to_receive),
            WorkerMsg::ResumeUrl { id, url, ack } => {
                let r = self.commit(Record::ResumeUrl(ResumeUrlV1 { id, url }), Durability::Sync);
                let _ = ack.send(r);
            }
            WorkerMsg::Restarted { id } => {
                let _ = self.commit(Record::Restarted(id), Durability::Sync);
                if let Some(c) = self.cell(id) {
                    c.update(
                        |s| {
                            s.progress.has_restarted = true;
                            s.progress.bytes_sent = 0;
                            s.progress.bytes_acknowledged = 0;
                        },
                        Event::Progress,
                    );
                }
            }
            WorkerMsg::Done { id, outcome } => self.done(id, outcome),
        }
    }

    fn progress(&mut self, id: u64, sent: u64, acked: u64, received: u64, to_receive: Option<u64>) {
        let Some(r) = self.running.get_mut(&id) else {
            return;
        };
        // A restarted attempt starts counting again from 0.
        r.checkpointed = r.checkpointed.min(sent);
        let checkpoint = sent.saturating_sub(r.checkpointed) >= self.config.checkpoint_bytes;
        if checkpoint {
            r.checkpointed = sent;
        }
        if checkpoint {
            let rec = Record::Progress(ProgressV1 {
                id,
                bytes_sent: sent,
                acked,
            });
            let _ = self.commit(rec, Durability::Batched);
        }
        if let Some(c) = self.cell(id) {
            c.update(
                |s| {
                    s.progress.bytes_sent = sent;
                    s.progress.bytes_acknowledged = acked;
                    s.progress.bytes_received = received;
                    if to_receive.is_some() {
                        s.progress.total_bytes_to_receive = to_receive;
                    }
                },
                Event::Progress,
            );
        }
    }

    fn store_response(&mut self, id: UploadId, r: &StoredResponse) {
        let rec = Record::Response(ResponseV1 {
            id,
            status: r.status,
            headers: r.headers.clone(),
            url: r.url.clone(),
            body_len: r.body_len,
            body_truncated: r.body_truncated,
        });
        let _ = self.commit(rec, Durability::Batched);
    }

    fn done(&mut self, id: UploadId, outcome: Outcome) {
        let Some(r) = self.running.remove(&id) else {
            return;
        };
        if r.thread.join().is_err() {
            log::error!("worker of upload {id} panicked");
        }
        let Running {
            stop,
            terminating,
            replies,
            ..
        } = r;
        if terminating {
            // The DELETE of a canceled tus upload: nothing to record.
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
            return;
        }
        if !self.store.state().uploads.contains_key(&id) {
            return;
        }
        let rebounded = self.rebounded.remove(&id);
        let result = match (stop, outcome) {
            (Some(StopReason::Remove), outcome) => {
                // Removing an unfinished upload cancels it: a tus upload is ended on
                // its server too (the DELETE worker holds its own copy of the URL).
                if !matches!(outcome, Outcome::Completed(_)) {
                    self.terminate_tus(id);
                }
                self.remove(id)
            }
            (_, Outcome::Completed(resp)) => {
                self.completed(id, &resp);
                Ok(())
            }
            (Some(reason), outcome) => {
                self.stopped(id, reason, outcome);
                Ok(())
            }
            (None, outcome) => {
                self.ended(id, outcome, rebounded);
                Ok(())
            }
        };
        for reply in replies {
            let _ = reply.send(result.as_ref().map(|_| ()).map_err(clone_err));
        }
    }

    fn completed(&mut self, id: UploadId, resp: &StoredResponse) {
        let total = self
            .store
            .state()
            .uploads
            .get(&id)
            .map_or(0, |u| super::total_len(&u.request));
        self.store_response(id, resp);
        let rec = Record::Progress(ProgressV1 {
            id,
            bytes_sent: total,
            acked: total,
        });
        let _ = self.commit(rec, Durability::Batched);
        if let Some(c) = self.cell(id) {
            c.update(
                |s| {
                    s.progress.bytes_sent = total;
                    s.progress.bytes_acknowledged = total;
                    s.progress.bytes_received = resp.body_len;
                },
                Event::Progress,
            );
        }
        let attempts = self.attempts(id);
        log::info!("upload {id} completed: HTTP {}", resp.status);
        self.set_status(id, StatusV1::Completed, attempts, None);
    }

    fn stopped(&mut self, id: UploadId, reason: StopReason, outcome: Outcome) {
        let attempts = self.attempts(id);
        let body_complete = match &outcome {
            Outcome::Stopped { body_complete } | Outcome::Failed { body_complete, .. } => {
                *body_complete
            }
            Outcome::Completed(_) => true,
        };
        match reason {
            StopReason::Pause if body_complete && !self.may_resend(id) => {
                // Resuming would send it again, and the server may already have
                // processed it: the same rule as a shutdown in that state.
                let e = not_resumable(
                    "it was paused after the whole body was sent; the server may have \
                     processed it, and the request is not idempotent",
                );
                self.set_status(id, StatusV1::Error, attempts, Some(e));
            }
            StopReason::Pause => {
                // Persist how far it got, so that after a reopen the resumed attempt
                // is known to start again (`has_restarted`).
                self.checkpoint(id);
                self.set_status(id, StatusV1::PausedByApplication, attempts, None)
            }
            StopReason::Costed => {
                self.checkpoint(id);
                // The network may have stopped being costed while the worker stopped.
                let next = if self.costed {
                    StatusV1::PausedCostedNetwork
                } else {
                    StatusV1::Queued
                };
                self.set_status(id, next, attempts, None)
            }
            StopReason::Cancel => {
                self.set_status(id, StatusV1::Canceled, attempts, None);
                self.terminate_tus(id);
            }
            StopReason::Shutdown | StopReason::Requeue => {
                if body_complete && !self.may_resend(id) {
                    let e = not_resumable(if reason == StopReason::Shutdown {
                        "the uploader shut down after the whole body was sent"
                    } else {
                        "it was paused after the whole body was sent"
                    });
                    self.set_status(id, StatusV1::Error, attempts, Some(e));
                } else {
                    self.checkpoint(id);
                    self.set_status(id, StatusV1::Queued, attempts, None);
                }
            }
            StopReason::Remove => unreachable!("handled in done"),
        }
    }

    /// The retry policy.
    fn ended(&mut self, id: UploadId, outcome: Outcome, rebounded: bool) {
        let attempts = self.attempts(id);
        let Outcome::Failed {
            error,
            class,
            response,
            retry_after,
            body_complete,
        } = outcome
        else {
            // Stopped without being asked: treat like a shutdown stop.
            self.set_status(id, StatusV1::Queued, attempts, None);
            return;
        };
        let class = if class == Class::Unreachable && rebounded {
            log::warn!(
                "upload {id}: unreachable ({error}) right after the prober saw its host \
                 answer; counting it as a failed attempt"
            );
            Class::Transient
        } else {
            class
        };
        if let Some(resp) = &response {
            self.store_response(id, resp);
        }
        if let Some(c) = self.cell(id) {
            let f = error.to_failure();
            c.update(|s| s.error = Some(f), Event::Progress);
        }
        match class {
            Class::Unreachable | Class::Lost
                if body_complete && response.is_none() && !self.may_resend(id) =>
            {
                // The connection died after the whole body went out: the server may have
                // processed the request. The POST rule holds whatever the network did.
                let e = not_resumable(&format!(
                    "the whole body was sent but no response came ({error}); the server may \
                     have processed it, and the request is not idempotent"
                ));
                self.set_status(id, StatusV1::Error, attempts, Some(e));
            }
            Class::Unreachable | Class::Lost => {
                let host = self
                    .store
                    .state()
                    .uploads
                    .get(&id)
                    .and_then(|u| host_key(&u.request.url));
                if class == Class::Lost {
                    log::warn!("upload {id}: {error}; waiting for the network");
                } else {
                    log::warn!("upload {id}: host unreachable ({error}); waiting for the network");
                }
                if let Some(h) = host {
                    self.offline.insert(h.clone());
                    let _ = self.prober.send(ProbeMsg::Offline(h));
                }
                self.set_status(id, StatusV1::PausedNoNetwork, attempts, None);
            }
            Class::Transient if body_complete && response.is_none() && !self.may_resend(id) => {
                let e = not_resumable(&format!(
                    "the whole body was sent but no response came ({error}); the server may \
                     have processed it, and the request is not idempotent"
                ));
                self.set_status(id, StatusV1::Error, attempts, Some(e));
            }
            Class::Transient if attempts < self.config.retries => {
                let attempts = attempts + 1;
                let delay = match retry_after {
                    Some(d) => d.min(self.config.retry_after_cap),
                    None => policy::backoff(
                        attempts,
                        self.config.backoff_base,
                        self.config.backoff_max,
                        policy::xorshift(&mut self.rng),
                    ),
                };
                log::warn!(
                    "upload {id}: attempt {attempts} failed ({error}); retrying in {delay:?}"
                );
                let at = Instant::now()
                    .checked_add(delay)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600));
                self.retry_at.insert(id, at);
                self.set_status(id, StatusV1::WaitingToRetry, attempts, None);
            }
            Class::Transient | Class::Final => {
                let attempts = if class == Class::Transient {
                    attempts + 1
                } else {
                    attempts
                };
                log::warn!("upload {id} failed: {error}");
                // Keep how far it got: another process (`bgupload list`) reads it.
                self.checkpoint(id);
                self.set_status(id, StatusV1::Error, attempts, Some(error.to_failure()));
            }
        }
    }

    /// Whether the request may be sent again after it may have reached the server.
    pub(super) fn may_resend(&self, id: UploadId) -> bool {
        // Decided once, at creation (`UploadRequest::is_idempotent`), and persisted.
        self.store
            .state()
            .uploads
            .get(&id)
            .is_some_and(|u| u.request.idempotent)
    }

    fn checkpoint(&mut self, id: UploadId) {
        if let Some(c) = self.cell(id) {
            let (sent, acked) = {
                let s = crate::shared::lock(&c.snap);
                (s.progress.bytes_sent, s.progress.bytes_acknowledged)
            };
            let rec = Record::Progress(ProgressV1 {
                id,
                bytes_sent: sent,
                acked,
            });
            let _ = self.commit(rec, Durability::Batched);
        }
    }

    fn attempts(&self, id: UploadId) -> u32 {
        self.store
            .state()
            .uploads
            .get(&id)
            .map_or(0, |u| u.attempts)
    }
}

pub(super) fn not_resumable(reason: &str) -> FailureV1 {
    FailureV1::NotResumable {
        message: reason.to_string(),
    }
}

fn clone_err(e: &Error) -> Error {
    Error::from_failure(&e.to_failure())
}
