//! Carrying out the state machine's decisions: the scheduler feeds an upload's state and
//! an event to [`state::step`] and executes the effects it returns, in order.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::http::StoredResponse;
use crate::model::{Failure, UploadId};
use crate::prober::ProbeMsg;
use crate::{Error, Status};

use super::state::{self, Attempts, Effect, Event, Facts, NotResumable, Why, Worker};
use super::{host_key, policy, Scheduler};

/// What an event brings beyond itself: the attempt's error and response, the reply
/// channels waiting on the outcome.
#[derive(Default)]
pub(super) struct Context {
    /// The failed attempt's error (for `Why::Failure`).
    pub error: Option<Error>,
    /// The server's answer, when there was one.
    pub response: Option<StoredResponse>,
    /// Its body's bytes, when the journal is to keep them (it has no file).
    pub body: Option<Vec<u8>>,
    /// The server's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The operation's reply (answered by `Reply`, or kept by `ReplyLater`).
    pub reply: Option<Sender<Result<(), Error>>>,
    /// Replies waiting for the worker to stop (answered by `ReplyLater`).
    pub waiting: Vec<Sender<Result<(), Error>>>,
}

impl Scheduler {
    /// The machine's view of `id`, if the store has it.
    pub(super) fn machine_state(&self, id: UploadId) -> Option<state::State> {
        let u = self.store.state().uploads.get(&id)?;
        let worker = match self.running.get(&id) {
            None => Worker::Idle,
            Some(r) if r.terminating => Worker::Aborting,
            Some(r) => Worker::Running(r.stop),
        };
        Some(state::State {
            status: u.status,
            worker,
        })
    }

    fn facts(&self, id: UploadId) -> Facts {
        let u = self.store.state().uploads.get(&id);
        Facts {
            may_resend: self.may_resend(id),
            retry_left: u.is_some_and(|u| u.attempts < self.config.retries),
            rebounded: self.rebounded.contains(&id),
            costed: self.costed,
            has_session: u.is_some_and(|u| u.session.is_some()),
        }
    }

    /// Runs `event` through the machine for `id` and executes the effects. Returns the
    /// result the operation's caller gets (a failed journal write, a refusal).
    pub(super) fn step(&mut self, id: UploadId, event: Event, ctx: Context) {
        match self.machine_state(id) {
            Some(before) => self.step_from(id, before, event, ctx),
            None => {
                if let Some(reply) = ctx.reply {
                    let _ = reply.send(Err(Error::NotFound { id }));
                }
            }
        }
    }

    /// [`Scheduler::step`] from a state the caller saw (a worker that just ended).
    pub(super) fn step_from(
        &mut self,
        id: UploadId,
        before: state::State,
        event: Event,
        mut ctx: Context,
    ) {
        let (after, effects) = state::step(before, event, self.facts(id));
        log::trace!("upload {id}: {before:?} --{event:?}--> {after:?}: {effects:?}");
        // The worker's stop reason is part of the state (a resume turns a pending pause
        // into a requeue without another stop signal).
        if let (Worker::Running(stop), Some(r)) = (after.worker, self.running.get_mut(&id)) {
            if !r.terminating {
                r.stop = stop;
            }
        }
        // The first failure of a journal write or removal is what the caller hears.
        let mut result: Result<(), Error> = Ok(());
        for effect in effects {
            match effect {
                Effect::Persist {
                    status,
                    attempts,
                    why,
                } => {
                    let now = self
                        .store
                        .state()
                        .uploads
                        .get(&id)
                        .map_or(0, |u| u.attempts);
                    let attempts = match attempts {
                        Attempts::Keep => now,
                        Attempts::Spend => now.saturating_add(1),
                        Attempts::Reset => 0,
                    };
                    let error = why.map(|w| self.failure(w, &ctx));
                    if let Err(e) = self.try_set_status(id, status, attempts, error) {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
                Effect::StopWorker => {
                    let reason = match after.worker {
                        Worker::Running(Some(r)) => Some(r),
                        _ => None,
                    };
                    self.signal_stop(id, reason);
                }
                Effect::StartWorker => {
                    if !self.journal_failed {
                        self.start(id, false);
                    }
                }
                Effect::StartAbort => {
                    if !self.running.contains_key(&id) && !self.shutting_down {
                        self.start(id, true);
                    }
                }
                Effect::CancelRetry => {
                    self.retry_at.remove(&id);
                }
                Effect::ScheduleRetry => {
                    let attempt = self
                        .store
                        .state()
                        .uploads
                        .get(&id)
                        .map_or(1, |u| u.attempts.saturating_add(1));
                    let delay = match ctx.retry_after {
                        Some(d) => d.min(self.config.retry_after_cap),
                        None => policy::backoff(
                            attempt,
                            self.config.backoff_base,
                            self.config.backoff_max,
                            policy::xorshift(&mut self.rng),
                        ),
                    };
                    if let Some(e) = &ctx.error {
                        log::warn!(
                            "upload {id}: attempt {attempt} failed ({e}); retrying in {delay:?}"
                        );
                    }
                    let at = Instant::now()
                        .checked_add(delay)
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600));
                    self.retry_at.insert(id, at);
                }
                Effect::Checkpoint => self.checkpoint(id),
                Effect::CompleteProgress => {
                    if let Some(resp) = &ctx.response {
                        let resp = resp.clone();
                        self.complete_progress(id, &resp);
                    }
                }
                Effect::StoreResponse => {
                    if let Some(resp) = &ctx.response {
                        let resp = resp.clone();
                        self.store_response(id, &resp, ctx.body.take());
                    }
                }
                Effect::WatchHost => {
                    let host = self
                        .store
                        .state()
                        .uploads
                        .get(&id)
                        .and_then(|u| host_key(&u.request.url));
                    if let Some(e) = &ctx.error {
                        log::warn!("upload {id}: {e}; waiting for the network");
                    }
                    if let Some(h) = host {
                        self.offline.insert(h.clone());
                        let _ = self.prober.send(ProbeMsg::Offline(h));
                    }
                }
                Effect::Remove => {
                    if let Err(e) = self.remove(id) {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
                Effect::Reply(answer) => {
                    if let Some(reply) = ctx.reply.take() {
                        let answer = match answer {
                            Ok(()) => std::mem::replace(&mut result, Ok(())),
                            Err(ended) => Err(Error::InvalidRequest {
                                reason: format!("upload {id} has already {}", ended.words()),
                            }),
                        };
                        let _ = reply.send(answer);
                    }
                }
                Effect::ReplyLater => {
                    if let Some(reply) = ctx.reply.take() {
                        if let Some(r) = self.running.get_mut(&id) {
                            r.replies.push(reply);
                        }
                    }
                    for reply in ctx.waiting.drain(..) {
                        let _ = reply.send(clone_result(&result));
                    }
                }
            }
        }
        if after.status == Status::Error && before.status != Status::Error {
            if let Some(e) = &ctx.error {
                log::warn!("upload {id} failed: {e}");
            }
        }
    }

    fn failure(&self, why: Why, ctx: &Context) -> Failure {
        match why {
            Why::Failure => ctx.error.as_ref().map_or(
                Failure::Protocol {
                    message: "failed".into(),
                },
                Error::to_failure,
            ),
            Why::NotResumable(case) => {
                let reason = match case {
                    NotResumable::Paused => "it was paused after the whole body was sent; the \
                                             server may have processed it, and the request is \
                                             not idempotent"
                        .to_string(),
                    NotResumable::ShutDown => {
                        "the uploader shut down after the whole body was sent".to_string()
                    }
                    NotResumable::Requeued => "it was paused after the whole body was sent".into(),
                    NotResumable::NetworkLost => "the network went away after the whole body \
                                                  was sent; the server may have processed it, \
                                                  and the request is not idempotent"
                        .to_string(),
                    NotResumable::NoResponse => format!(
                        "the whole body was sent but no response came ({}); the server may \
                         have processed it, and the request is not idempotent",
                        ctx.error
                            .as_ref()
                            .map_or_else(|| "no answer".to_string(), ToString::to_string)
                    ),
                };
                Failure::NotResumable { reason }
            }
        }
    }
}

fn clone_result(r: &Result<(), Error>) -> Result<(), Error> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::from_failure(&e.to_failure())),
    }
}
