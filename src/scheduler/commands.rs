//! What the scheduler does with the program's commands: create, pause, resume, cancel,
//! remove, make current, the network's cost, and a host that answers again.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::journal::record::{ChangedV1, CreatedV1, Record, StatusV1, UploadId};
use crate::journal::Durability;
use crate::progress::Event;
use crate::shared::{lock, Cell};
use crate::Error;

use super::{host_key, total_len, Op, Scheduler, StopReason};

impl Scheduler {
    pub(super) fn create(&mut self, record: CreatedV1) -> Result<(), Error> {
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

    pub(super) fn op(&mut self, id: UploadId, op: Op, reply: Sender<Result<(), Error>>) {
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

    pub(super) fn remove(&mut self, id: UploadId) -> Result<(), Error> {
        self.retry_at.remove(&id);
        self.commit(Record::Removed(id), Durability::Sync)?;
        crate::store_files::remove_upload_files(&self.shared.store_dir, id);
        if let Some(cell) = lock(&self.shared.cells).remove(&id) {
            cell.update(|s| s.removed = true, Event::StatusChanged);
        }
        log::info!("removed upload {id}");
        Ok(())
    }

    pub(super) fn set_cost(&mut self, costed: bool) {
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

    pub(super) fn online(&mut self, host: &str) {
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
}
