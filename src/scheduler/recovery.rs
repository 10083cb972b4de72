//! What opening a store does to uploads a crash or shutdown left unfinished, and the
//! retention of ended uploads.

use std::time::{Duration, Instant};

use crate::journal::{Durability, Entry};
use crate::model::{Protocol, UploadId};
use crate::shared::{lock, Cell};
use crate::Status;

use super::{now_ms, Scheduler, RETENTION_EVERY};

impl Scheduler {
    /// Restart rules: an attempt that was on the wire when the process died starts
    /// again (a PUT from byte 0, a tus upload from the server's offset); a POST that is
    /// not idempotent ends in `Error` because it may have reached the server. Waiting
    /// states are re-evaluated from scratch.
    pub(super) fn recover(&mut self) {
        let unfinished: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| !u.status.is_final())
            .map(|u| u.id)
            .collect();
        for id in unfinished {
            self.index(id);
        }
        let fixes: Vec<(UploadId, Status, u32, bool)> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| !u.status.is_final())
            .map(|u| {
                (
                    u.id,
                    u.status,
                    u.attempts,
                    matches!(u.request.protocol, Protocol::Plain),
                )
            })
            .collect();
        for (id, status, attempts, plain) in fixes {
            let next = match status {
                Status::Running if !self.may_resend(id) => {
                    let e = crate::model::Failure::NotResumable {
                        reason:
                            "a restart interrupted it while it was being sent; the request is not \
                         idempotent and may have reached the server (mark it idempotent, or \
                         give it an Idempotency-Key, to allow sending it again)"
                                .into(),
                    };
                    self.set_status(id, Status::Error, attempts, Some(e));
                    continue;
                }
                Status::Running => {
                    if plain {
                        let _ = self.commit(Entry::Restarted(id), Durability::Batched);
                    }
                    Status::Queued
                }
                Status::PausedByApplication => continue,
                _ => Status::Queued,
            };
            let next = if self.config.start_paused {
                Status::PausedByApplication
            } else {
                next
            };
            if next != status {
                self.set_status(id, next, attempts, None);
            }
        }
        // Cells for every upload, for the handles.
        let cells: Vec<(UploadId, Cell)> = self
            .store
            .state()
            .uploads
            .values()
            .map(|u| {
                let resp = u
                    .response
                    .as_ref()
                    .map(|r| super::response_info(r, &u.request.protocol));
                (u.id, Cell::new(u, super::total_len(&u.request), resp))
            })
            .collect();
        *lock(&self.shared.bodies_at) = self.store.kept_bodies().collect();
        {
            let mut map = lock(&self.shared.cells);
            for (id, c) in cells {
                map.insert(id, std::sync::Arc::new(c));
            }
        }
        *lock(&self.shared.submissions) = self
            .store
            .state()
            .uploads
            .values()
            .filter_map(|u| u.request.submission.map(|k| (k, u.id)))
            .collect();
        *lock(&self.shared.submitters) = self
            .store
            .state()
            .uploads
            .values()
            .filter_map(|u| u.request.submitter.map(|uid| (u.id, uid)))
            .collect();
        // Files the journal does not account for are crash leftovers when the journal is
        // whole; after damage (or a journal that had to start afresh) they may belong to
        // uploads the journal lost, and are kept aside.
        let whole = matches!(
            self.shared.recovery,
            crate::Recovery::Clean | crate::Recovery::TornTail { .. }
        );
        let quarantine = !whole || self.store.quarantine_pending();
        let orphans =
            crate::store::handle_orphans(&self.shared.store_dir, self.store.state(), quarantine);
        // Ids are never handed out twice: not those of uploads a damaged journal lost
        // whose files are in `lost/` (the records the damaged part still showed are
        // accounted for by `Store::open`).
        let floor = orphans.next_id;
        if floor > self.store.state().next_id {
            log::warn!("upload ids below {floor} were handed out before the journal was damaged");
            let _ = self.commit(Entry::Removed(floor - 1), Durability::Sync);
        }
        self.shared.next_id.fetch_max(
            self.store.state().next_id,
            std::sync::atomic::Ordering::SeqCst,
        );
        if let Err(e) = self.store.sync() {
            log::error!("journal fsync after recovery failed: {e}");
            self.journal_failure();
        }
        // Only once every file it protects is durably in `lost/`: otherwise the next open
        // must keep them too.
        if quarantine && orphans.all_kept && !self.journal_failed {
            if let Err(e) = self.store.finish_quarantine() {
                log::error!("{e}");
            }
        }
    }

    /// Removes ended uploads older than the retention window.
    pub(super) fn retention(&mut self) {
        let now = Instant::now();
        if now < self.next_retention {
            return;
        }
        self.next_retention = now + RETENTION_EVERY;
        let Some(keep) = self.config.retention else {
            return;
        };
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let old: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.status.is_final() && u.status_ms < cutoff)
            .map(|u| u.id)
            .collect();
        for id in old {
            log::info!(
                "upload {id} ended more than {:?} ago; removing it",
                Duration::from_millis(keep.as_millis() as u64)
            );
            let _ = self.remove(id);
        }
    }
}
