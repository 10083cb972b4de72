//! What the scheduler does with workers' reports: progress, resumable URLs, and the end
//! of an attempt (the retry policy lives here).

use crate::http::StoredResponse;
use crate::journal::{Durability, Entry};
use crate::model::UploadId;
use crate::progress::Event;
use crate::worker::Class;
use crate::worker::{Outcome, WorkerEvent};
use crate::Status;

use super::effects::Context;
use super::state::{self, Ending, Worker};
use super::Scheduler;

impl Scheduler {
    pub(super) fn worker_event(&mut self, msg: WorkerEvent) {
        match msg {
            WorkerEvent::Progress {
                id,
                sent,
                acked,
                received,
                to_receive,
            } => self.progress(id, sent, acked, received, to_receive),
            WorkerEvent::Session { id, session, ack } => {
                let r = self.commit(Entry::Session { id, session }, Durability::Sync);
                let _ = ack.send(r);
            }
            WorkerEvent::Part { id, part } => {
                let _ = self.commit(Entry::Part { id, part }, Durability::Sync);
            }
            WorkerEvent::Restarted { id } => {
                let _ = self.commit(Entry::Restarted(id), Durability::Sync);
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
            WorkerEvent::Connecting { id, waiting } => self.connecting(id, waiting),
            WorkerEvent::Done { id, outcome, body } => self.done(id, outcome, body),
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
            let rec = Entry::Progress {
                id,
                bytes_sent: sent,
                acked,
            };
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

    /// Journals the response, with its body's bytes when it has no file of its own
    /// (they reach the disk in the same frame, and reads come from there). A body file an
    /// earlier answer left stays until the upload is removed: deleting it before this
    /// record is durable could leave that answer without its body after a power cut.
    pub(super) fn store_response(
        &mut self,
        id: UploadId,
        r: &StoredResponse,
        body: Option<Vec<u8>>,
    ) {
        let rec = Entry::Response {
            id,
            response: r.clone(),
            body,
        };
        let _ = self.commit(rec, Durability::Batched);
    }

    fn done(&mut self, id: UploadId, outcome: Outcome, body: Option<Vec<u8>>) {
        let Some(state) = self.machine_state(id) else {
            // Removed meanwhile: only its thread is left to reap.
            self.rebounded.remove(&id);
            if let Some(r) = self.running.remove(&id) {
                let _ = r.thread.join();
                for reply in r.replies {
                    let _ = reply.send(Ok(()));
                }
            }
            return;
        };
        let Some(r) = self.running.remove(&id) else {
            return;
        };
        // Its outcome was the worker's last message: its thread is ending. Joined once
        // the outcome is recorded, so that the fsync and the replies do not wait for the
        // thread's exit.
        let _joined_after = Reap(Some(r.thread), id);
        let waiting = r.replies;
        let rebounded = self.rebounded.contains(&id);
        let (ending, ctx) = match outcome {
            _ if state.worker == Worker::Aborting => {
                // The DELETE of a canceled upload: nothing to record.
                self.step_from(id, state, state::Event::AbortEnded, Context::default());
                for reply in waiting {
                    let _ = reply.send(Ok(()));
                }
                return;
            }
            Outcome::Completed(resp) => (
                Ending::Completed,
                Context {
                    response: Some(resp),
                    ..Context::default()
                },
            ),
            Outcome::Stopped { body_complete } => {
                (Ending::Stopped { body_complete }, Context::default())
            }
            Outcome::Failed {
                error,
                class,
                response,
                retry_after,
                body_complete,
            } => {
                if class == Class::Unreachable && rebounded && state.worker == Worker::Running(None)
                {
                    log::warn!(
                        "upload {id}: unreachable ({error}) right after the prober saw its \
                         host answer; counting it as a failed attempt"
                    );
                }
                if state.worker == Worker::Running(None) {
                    if let Some(c) = self.cell(id) {
                        let f = error.to_failure();
                        c.update(|s| s.error = Some(f), Event::Progress);
                    }
                }
                (
                    Ending::Failed {
                        class,
                        body_complete,
                        has_response: response.is_some(),
                    },
                    Context {
                        error: Some(error),
                        response,
                        retry_after,
                        ..Context::default()
                    },
                )
            }
        };
        let ctx = Context {
            waiting,
            body,
            ..ctx
        };
        // The machine decides from the state the upload was in while its worker ran.
        self.step_from(id, state, state::Event::Ended(ending), ctx);
        self.rebounded.remove(&id);
        if self
            .store
            .state()
            .uploads
            .get(&id)
            .is_some_and(|u| u.status == Status::Completed)
        {
            log::info!("upload {id} completed");
        }
    }

    /// Every byte was sent and acknowledged: journal it and show it.
    pub(super) fn complete_progress(&mut self, id: UploadId, resp: &StoredResponse) {
        let total = self
            .store
            .state()
            .uploads
            .get(&id)
            .map_or(0, |u| super::total_len(&u.request));
        let rec = Entry::Progress {
            id,
            bytes_sent: total,
            acked: total,
        };
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

    pub(super) fn checkpoint(&mut self, id: UploadId) {
        if let Some(c) = self.cell(id) {
            let (sent, acked) = {
                let s = crate::shared::lock(&c.snap);
                (s.progress.bytes_sent, s.progress.bytes_acknowledged)
            };
            let rec = Entry::Progress {
                id,
                bytes_sent: sent,
                acked,
            };
            let _ = self.commit(rec, Durability::Batched);
        }
    }
}

/// Joins a worker's thread when dropped (at the end of [`Scheduler::done`]), and says
/// so if it panicked.
struct Reap(Option<crate::worker::pool::Finished>, UploadId);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            if t.join().is_err() {
                log::error!("worker of upload {} panicked", self.1);
            }
        }
    }
}
