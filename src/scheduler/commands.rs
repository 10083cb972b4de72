//! What the scheduler does with the program's commands: create, pause, resume, cancel,
//! remove, make current, the network's cost, and a host that answers again.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::journal::{Durability, Entry};
use crate::model::{Request, UploadId};
use crate::progress::Event;
use crate::shared::{lock, Cell};
use crate::Error;
use crate::Status;

use super::effects::Context;
use super::state::Event as On;
use super::{host_key, total_len, Scheduler};
use crate::command::Op;

impl Scheduler {
    /// Commits a new upload (batched: the caller fsyncs it); `Ok(false)` if its
    /// submission was created before (under the id the submissions map holds).
    pub(super) fn create(
        &mut self,
        id: UploadId,
        created_ms: u64,
        request: Request,
    ) -> Result<bool, Error> {
        if self.shutting_down {
            return Err(Error::ShutDown);
        }
        if let Some(key) = &request.submission {
            if lock(&self.shared.submissions).contains_key(key) {
                return Ok(false);
            }
        }
        let created = Entry::Created {
            id,
            created_ms,
            request,
        };
        // Batched: the caller fsyncs it before answering (with the Running record, if
        // the upload starts at once).
        self.commit(created, Durability::Batched)?;
        let Some(u) = self.store.state().uploads.get(&id) else {
            // Only a crafted journal can push ids this far (the fold refuses u64::MAX).
            return Err(Error::InvalidRequest {
                reason: "this store has run out of upload ids; use a new store".into(),
            });
        };
        let cell = Arc::new(Cell::new(u, total_len(&u.request), None));
        // Listed, and its key put into `submissions`, once the record is durable (the
        // caller's fsync): until then no handle sees it, and an inbox copy of it is not
        // taken for created.
        self.unlisted = Some((id, cell));
        log::info!(
            "accepted upload {id}: {} {}",
            u.request.method,
            crate::redact::redact_url(&u.request.url)
        );
        Ok(true)
    }

    pub(super) fn op(&mut self, id: UploadId, op: Op, reply: Sender<Result<(), Error>>) {
        if op == Op::MakeCurrent {
            let result = match self.store.state().uploads.get(&id) {
                None => Err(Error::NotFound { id }),
                Some(u) => {
                    let seq = self.store.state().next_current_seq.max(1);
                    let rec = Entry::Changed {
                        id,
                        priority: u.priority,
                        current_seq: seq,
                    };
                    self.commit(rec, Durability::Sync)
                }
            };
            let _ = reply.send(result);
            return;
        }
        let ctx = Context {
            reply: Some(reply),
            ..Context::default()
        };
        self.step(id, On::Op(op), ctx);
    }

    pub(super) fn remove(&mut self, id: UploadId) -> Result<(), Error> {
        self.retry_at.remove(&id);
        let key = self
            .store
            .state()
            .uploads
            .get(&id)
            .and_then(|u| u.request.submission);
        self.commit(Entry::Removed(id), Durability::Sync)?;
        if let Some(key) = key {
            lock(&self.shared.submissions).remove(&key);
        }
        lock(&self.shared.submitters).remove(&id);
        lock(&self.shared.bodies_at).remove(&id);
        self.shared.bodies_moved.notify_all();
        crate::store::remove_upload_files(&self.shared.store_dir, id);
        if let Some(cell) = lock(&self.shared.cells).remove(&id) {
            cell.update(|s| s.removed = true, Event::StatusChanged);
        }
        log::info!("removed upload {id}");
        Ok(())
    }

    pub(super) fn set_cost(&mut self, costed: bool) {
        self.costed = costed;
        let affected: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.request.cost == crate::CostPolicy::UnrestrictedOnly)
            .map(|u| u.id)
            .collect();
        for id in affected {
            self.step(id, On::Costed(costed), Context::default());
        }
    }

    /// The prober found `host` takes no connection after the network lost a link, an
    /// address or a route: its running transfers stop and wait as `PausedNoNetwork`.
    pub(super) fn route_lost(&mut self, host: &str) {
        let affected: Vec<UploadId> = self
            .running
            .keys()
            .copied()
            .filter(|id| self.hosts.get(id).map(String::as_str) == Some(host))
            .collect();
        for id in affected {
            log::info!("upload {id}: {host} went away with the network; parking it");
            self.step(id, On::RouteLost, Context::default());
        }
    }

    pub(super) fn online(&mut self, host: &str) {
        if !self.offline.remove(host) {
            return;
        }
        log::info!("{host} is reachable again");
        let waiting: Vec<UploadId> = self
            .store
            .state()
            .uploads
            .values()
            .filter(|u| u.status == Status::PausedNoNetwork)
            .filter(|u| host_key(&u.request.url).as_deref() == Some(host))
            .map(|u| u.id)
            .collect();
        for id in waiting {
            self.rebounded.insert(id);
            self.step(id, On::Online, Context::default());
        }
    }
}
