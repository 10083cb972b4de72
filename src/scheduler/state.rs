//! The upload state machine: one pure function, [`step`], from an upload's state and an
//! event to its next state and the effects the scheduler's loop carries out. No I/O here;
//! `tests` below walk every (state, event) pair.
//!
//! An upload's state is its persisted [`Status`] plus what its worker is doing. Pause
//! and cancel of a running transfer are persisted at once (a crash in between must not
//! bring it back running) while the worker is still stopping, so `status` and `worker`
//! are independent.
//!
//! The written answers to the races:
//! - **cancel against a completion already on the wire**: the cancel was persisted and
//!   acknowledged first, so the upload stays `Canceled`; the server's response is still
//!   kept, so the program can see that the server had it all.
//! - **pause against a completion**: `Completed` wins (the server has it; nothing is
//!   left to pause).
//! - **remove during a tus DELETE** (the abort worker of a canceled upload): the upload
//!   is removed at once; the DELETE worker holds its own copy of the session.
//! - **shutdown during any of these**: the worker is stopped; whatever it reports is
//!   recorded by the same rules (a completion is `Completed`, an interrupted transfer
//!   goes back to `Queued`, a POST that had sent its whole body ends `NotResumable`).
//!
//! A failed upload with a session on the server (a tus upload URL) ends that session
//! (DELETE, best effort), and so does removing an unfinished or failed one.
//!
//! `Completed` and `Canceled` are absorbing. `Error` is absorbing for every event the
//! engine makes; only the program's explicit [`Op::Resume`] starts it again, with a
//! fresh retry budget (documented on `Upload::resume`).

use crate::command::Op;
use crate::worker::Class;
use crate::Status;

/// Why the scheduler stopped a running transfer: what status it lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Pause,
    Cancel,
    Remove,
    Costed,
    Shutdown,
    /// Paused, then resumed before the worker had stopped: back to the queue.
    Requeue,
    /// The network went away under it (its host stopped taking connections after a
    /// link, address or route went): parked as `PausedNoNetwork`, no retry spent.
    Offline,
}

/// What the upload's worker thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Worker {
    /// No worker.
    Idle,
    /// A transfer runs; `Some` once the scheduler asked it to stop, and why.
    Running(Option<StopReason>),
    /// A worker ends the upload's session on the server (tus DELETE); the upload itself
    /// has ended.
    Aborting,
}

/// An upload's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub status: Status,
    pub worker: Worker,
}

/// How a transfer's attempt ended, as far as the machine needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Completed,
    /// The scheduler stopped it (or it stopped without being asked).
    Stopped {
        body_complete: bool,
    },
    Failed {
        class: Class,
        body_complete: bool,
        has_response: bool,
    },
}

/// What else the machine consults; the scheduler knows each of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Facts {
    /// The request may be sent again after it may have reached the server.
    pub may_resend: bool,
    /// A transient failure may spend another retry.
    pub retry_left: bool,
    /// The prober just saw the host answer (an unreachable host then spends a retry).
    pub rebounded: bool,
    /// The network is costed and this upload may not use a costed one.
    pub costed: bool,
    /// The upload has a session on the server (abort has something to end).
    pub has_session: bool,
}

/// What happens to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// The program's operation (make-current is not a state change).
    Op(Op),
    /// The scheduler picked it to run.
    Start,
    /// Its transfer's worker ended.
    Ended(Ending),
    /// Its abort worker ended.
    AbortEnded,
    /// The prober saw its host answer.
    Online,
    /// Its host is known to be unreachable.
    HostOffline,
    /// The network changed and its host no longer takes a connection (the watcher saw
    /// a link, address or route go, and the prober confirmed it).
    RouteLost,
    /// Its backoff ran out.
    RetryDue,
    /// The program said the network is (not) costed; only for uploads whose cost
    /// policy forbids a costed network.
    Costed(bool),
    /// A credentials provider it names is not registered (after a restart).
    NoProvider,
    /// Every provider it names is registered now.
    ProviderRegistered,
    /// The uploader shuts down.
    Shutdown,
}

/// How a persisted status change treats the attempt count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempts {
    Keep,
    /// This attempt counted against the retry budget.
    Spend,
    /// A fresh budget (the program asked to try a failed upload again).
    Reset,
}

/// Why an upload ends in `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The attempt's own error.
    Failure,
    /// The whole body was sent and the request is not idempotent: sending it again
    /// could make the server process it twice.
    NotResumable(NotResumable),
}

/// The situation a [`Why::NotResumable`] arose in (it words the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotResumable {
    Paused,
    ShutDown,
    Requeued,
    NoResponse,
    NetworkLost,
}

/// What the scheduler's loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Journal (fsynced) and publish the new status.
    Persist {
        status: Status,
        attempts: Attempts,
        why: Option<Why>,
    },
    /// Ask the running worker to stop.
    StopWorker,
    /// Start a worker for the transfer.
    StartWorker,
    /// Start a worker that ends the session on the server.
    StartAbort,
    /// Forget a pending retry.
    CancelRetry,
    /// Wait a backoff (or the server's `Retry-After`) before `RetryDue`.
    ScheduleRetry,
    /// Journal how far the transfer got.
    Checkpoint,
    /// Journal the server's response.
    StoreResponse,
    /// Journal that every byte was sent and acknowledged.
    CompleteProgress,
    /// Tell the prober to watch the upload's host.
    WatchHost,
    /// Remove the upload and its files from the store.
    Remove,
    /// Answer the operation now: `Ok`, or refused because the upload has ended.
    Reply(Result<(), Ended>),
    /// Answer the operation once the worker has stopped.
    ReplyLater,
}

/// An operation refused because the upload has already ended this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Completed,
    Canceled,
    Failed,
}

impl Ended {
    /// Words for "upload N has already ...".
    pub(super) fn words(self) -> &'static str {
        match self {
            Ended::Completed => "completed",
            Ended::Canceled => "been canceled",
            Ended::Failed => "failed",
        }
    }
}

fn persist(status: Status) -> Effect {
    Effect::Persist {
        status,
        attempts: Attempts::Keep,
        why: None,
    }
}

fn fail(why: Why, attempts: Attempts) -> Effect {
    Effect::Persist {
        status: Status::Error,
        attempts,
        why: Some(why),
    }
}

/// Which stop reason wins when a running worker is asked to stop again.
pub(super) fn stop_reason(current: Option<StopReason>, new: StopReason) -> Option<StopReason> {
    use StopReason as R;
    let replace = matches!(
        (current, new),
        (None | Some(R::Requeue), _)
            | (_, R::Remove | R::Cancel)
            | (Some(R::Costed | R::Offline), R::Pause)
    );
    if replace {
        Some(new)
    } else {
        current
    }
}

/// The machine.
pub(super) fn step(s: State, event: Event, f: Facts) -> (State, Vec<Effect>) {
    use Effect as E;
    use Status as S;
    let at = |status: Status, worker: Worker| State { status, worker };
    let stay = |effects: Vec<Effect>| (s, effects);
    let ended = match s.status {
        S::Completed => Some(Ended::Completed),
        S::Canceled => Some(Ended::Canceled),
        S::Error => Some(Ended::Failed),
        _ => None,
    };
    let running = match s.worker {
        Worker::Running(stop) => Some(stop),
        Worker::Idle | Worker::Aborting => None,
    };
    let stopping = |reason: StopReason| Worker::Running(stop_reason(running.flatten(), reason));
    match event {
        Event::Op(Op::MakeCurrent) => stay(vec![]),
        // An upload whose cancel was recorded while its worker stops has ended: an
        // operation on it is answered as for any ended upload.
        Event::Op(Op::Pause | Op::Resume) if ended == Some(Ended::Canceled) => {
            stay(vec![E::Reply(Err(Ended::Canceled))])
        }
        Event::Op(Op::Cancel) if s.status == S::Canceled => stay(vec![E::Reply(Ok(()))]),
        Event::Op(Op::Pause) => match (running, ended) {
            (None, Some(e)) => stay(vec![E::Reply(Err(e))]),
            (Some(_), _) => (
                at(S::PausedByApplication, stopping(StopReason::Pause)),
                vec![
                    E::StopWorker,
                    persist(S::PausedByApplication),
                    E::Reply(Ok(())),
                ],
            ),
            (None, None) if s.status == S::PausedByApplication => stay(vec![E::Reply(Ok(()))]),
            (None, None) => (
                at(S::PausedByApplication, s.worker),
                vec![
                    E::CancelRetry,
                    persist(S::PausedByApplication),
                    E::Reply(Ok(())),
                ],
            ),
        },
        Event::Op(Op::Resume) => match (running, s.status) {
            (Some(Some(StopReason::Pause)), _) => (
                at(S::Queued, Worker::Running(Some(StopReason::Requeue))),
                vec![persist(S::Queued), E::Reply(Ok(()))],
            ),
            (Some(_), _) => stay(vec![E::Reply(Ok(()))]),
            (None, S::PausedByApplication) => (
                at(S::Queued, s.worker),
                vec![persist(S::Queued), E::Reply(Ok(()))],
            ),
            (None, S::Error) => (
                at(S::Queued, s.worker),
                vec![
                    E::Persist {
                        status: S::Queued,
                        attempts: Attempts::Reset,
                        why: None,
                    },
                    E::Reply(Ok(())),
                ],
            ),
            (None, S::Completed) => stay(vec![E::Reply(Err(Ended::Completed))]),
            (None, S::Canceled) => stay(vec![E::Reply(Err(Ended::Canceled))]),
            (None, _) => stay(vec![E::Reply(Ok(()))]),
        },
        Event::Op(Op::Cancel) => match (running, s.status) {
            (Some(_), _) => (
                at(S::Canceled, stopping(StopReason::Cancel)),
                vec![E::StopWorker, persist(S::Canceled), E::Reply(Ok(()))],
            ),
            (None, S::Canceled) => stay(vec![E::Reply(Ok(()))]),
            (None, S::Completed) => stay(vec![E::Reply(Err(Ended::Completed))]),
            (None, S::Error) => stay(vec![E::Reply(Err(Ended::Failed))]),
            (None, _) => {
                let mut effects = vec![E::CancelRetry, persist(S::Canceled), E::Reply(Ok(()))];
                if f.has_session && s.worker == Worker::Idle {
                    effects.push(E::StartAbort);
                }
                (
                    at(
                        S::Canceled,
                        if effects.contains(&E::StartAbort) {
                            Worker::Aborting
                        } else {
                            s.worker
                        },
                    ),
                    effects,
                )
            }
        },
        Event::Op(Op::Remove) => match running {
            Some(_) => (
                at(s.status, stopping(StopReason::Remove)),
                vec![E::StopWorker, E::ReplyLater],
            ),
            None => {
                let mut effects = vec![];
                // Removing an unfinished or failed upload ends its session on the server
                // (a completed one has none left to end; a canceled one ended it).
                let open = matches!(ended, None | Some(Ended::Failed));
                if open && f.has_session && s.worker == Worker::Idle {
                    effects.push(E::StartAbort);
                }
                effects.extend([E::Remove, E::Reply(Ok(()))]);
                (s, effects)
            }
        },
        Event::Start => match (s.status, s.worker) {
            (S::Queued, Worker::Idle) => (
                at(S::Running, Worker::Running(None)),
                vec![persist(S::Running), E::StartWorker],
            ),
            _ => stay(vec![]),
        },
        Event::Ended(ending) => match running {
            Some(stop) => ended_transfer(s.status, stop, ending, f),
            None => stay(vec![]),
        },
        Event::AbortEnded => match s.worker {
            Worker::Aborting => (at(s.status, Worker::Idle), vec![]),
            _ => stay(vec![]),
        },
        Event::Online => match (s.status, s.worker) {
            (S::PausedNoNetwork, Worker::Idle) => {
                (at(S::Queued, Worker::Idle), vec![persist(S::Queued)])
            }
            _ => stay(vec![]),
        },
        Event::HostOffline => match (s.status, s.worker) {
            (S::Queued, Worker::Idle) => (
                at(S::PausedNoNetwork, Worker::Idle),
                vec![persist(S::PausedNoNetwork)],
            ),
            _ => stay(vec![]),
        },
        // A request that must not be sent twice is left to TCP: its connection may well
        // outlive the change, and stopping it could end it in NotResumable.
        Event::RouteLost if !f.may_resend => stay(vec![]),
        Event::RouteLost => match s.worker {
            Worker::Running(None) => (
                s_with(s, stopping(StopReason::Offline)),
                vec![E::StopWorker],
            ),
            _ => stay(vec![]),
        },
        Event::RetryDue => match (s.status, s.worker) {
            (S::WaitingToRetry, Worker::Idle) => {
                (at(S::Queued, Worker::Idle), vec![persist(S::Queued)])
            }
            _ => stay(vec![]),
        },
        Event::Costed(true) => match (running, s.status) {
            (Some(_), _) => (s_with(s, stopping(StopReason::Costed)), vec![E::StopWorker]),
            (None, S::Queued | S::WaitingToRetry) if s.worker == Worker::Idle => (
                at(S::PausedCostedNetwork, Worker::Idle),
                vec![E::CancelRetry, persist(S::PausedCostedNetwork)],
            ),
            _ => stay(vec![]),
        },
        Event::Costed(false) => match (s.status, s.worker) {
            (S::PausedCostedNetwork, Worker::Idle) => {
                (at(S::Queued, Worker::Idle), vec![persist(S::Queued)])
            }
            _ => stay(vec![]),
        },
        // Nothing is sent without its credentials; waiting for them spends no retry. The
        // reason (which provider) is the event's error.
        Event::NoProvider => match (s.status, s.worker) {
            (S::Queued | S::WaitingToRetry, Worker::Idle) => (
                at(S::PausedNoCredentials, Worker::Idle),
                vec![
                    E::CancelRetry,
                    E::Persist {
                        status: S::PausedNoCredentials,
                        attempts: Attempts::Keep,
                        why: Some(Why::Failure),
                    },
                ],
            ),
            _ => stay(vec![]),
        },
        Event::ProviderRegistered => match (s.status, s.worker) {
            (S::PausedNoCredentials, Worker::Idle) => {
                (at(S::Queued, Worker::Idle), vec![persist(S::Queued)])
            }
            _ => stay(vec![]),
        },
        Event::Shutdown => match s.worker {
            Worker::Running(_) => (
                s_with(s, stopping(StopReason::Shutdown)),
                vec![E::StopWorker],
            ),
            Worker::Aborting => stay(vec![E::StopWorker]),
            Worker::Idle => stay(vec![]),
        },
    }
}

fn s_with(s: State, worker: Worker) -> State {
    State { worker, ..s }
}

/// A transfer's worker ended; `stop` is why the scheduler stopped it, if it did.
fn ended_transfer(
    status: Status,
    stop: Option<StopReason>,
    ending: Ending,
    f: Facts,
) -> (State, Vec<Effect>) {
    use Effect as E;
    use Status as S;
    let idle = |status: Status| State {
        status,
        worker: Worker::Idle,
    };
    let body_complete = match ending {
        Ending::Completed => true,
        Ending::Stopped { body_complete } | Ending::Failed { body_complete, .. } => body_complete,
    };
    let unsafe_to_resend = body_complete && !f.may_resend;
    let not_resumable = |case| fail(Why::NotResumable(case), Attempts::Keep);
    match (stop, ending) {
        (Some(StopReason::Remove), Ending::Completed) => {
            (idle(status), vec![E::Remove, E::ReplyLater])
        }
        (Some(StopReason::Remove), _) => {
            let mut effects = vec![];
            if f.has_session {
                effects.push(E::StartAbort);
            }
            effects.extend([E::Remove, E::ReplyLater]);
            (idle(status), effects)
        }
        // Absorbing: the cancel was acknowledged before the completion arrived.
        (Some(StopReason::Cancel), Ending::Completed) => {
            (idle(S::Canceled), vec![E::StoreResponse, E::ReplyLater])
        }
        (_, Ending::Completed) => (
            idle(S::Completed),
            vec![
                E::StoreResponse,
                E::CompleteProgress,
                persist(S::Completed),
                E::ReplyLater,
            ],
        ),
        (Some(StopReason::Pause), _) if unsafe_to_resend => (
            idle(S::Error),
            vec![not_resumable(NotResumable::Paused), E::ReplyLater],
        ),
        (Some(StopReason::Pause), _) => (
            idle(S::PausedByApplication),
            vec![
                E::Checkpoint,
                persist(S::PausedByApplication),
                E::ReplyLater,
            ],
        ),
        (Some(StopReason::Costed), _) => {
            let next = if f.costed {
                S::PausedCostedNetwork
            } else {
                S::Queued
            };
            (
                idle(next),
                vec![E::Checkpoint, persist(next), E::ReplyLater],
            )
        }
        (Some(StopReason::Cancel), _) => {
            let mut effects = vec![persist(S::Canceled), E::ReplyLater];
            let worker = if f.has_session {
                effects.push(E::StartAbort);
                Worker::Aborting
            } else {
                Worker::Idle
            };
            (
                State {
                    status: S::Canceled,
                    worker,
                },
                effects,
            )
        }
        // The server answered before the stop took effect: that answer decides.
        (
            Some(StopReason::Offline),
            Ending::Failed {
                has_response: true, ..
            },
        ) => ended_transfer(status, None, ending, f),
        (Some(StopReason::Offline), _) if unsafe_to_resend => (
            idle(S::Error),
            vec![not_resumable(NotResumable::NetworkLost), E::ReplyLater],
        ),
        (Some(StopReason::Offline), _) => (
            idle(S::PausedNoNetwork),
            vec![
                E::Checkpoint,
                E::WatchHost,
                persist(S::PausedNoNetwork),
                E::ReplyLater,
            ],
        ),
        (Some(reason @ (StopReason::Shutdown | StopReason::Requeue)), _) if unsafe_to_resend => {
            let case = if reason == StopReason::Shutdown {
                NotResumable::ShutDown
            } else {
                NotResumable::Requeued
            };
            (idle(S::Error), vec![not_resumable(case), E::ReplyLater])
        }
        (Some(StopReason::Shutdown | StopReason::Requeue), _) => (
            idle(S::Queued),
            vec![E::Checkpoint, persist(S::Queued), E::ReplyLater],
        ),
        // Stopped without being asked: like a shutdown stop.
        (None, Ending::Stopped { .. }) => {
            (idle(S::Queued), vec![persist(S::Queued), E::ReplyLater])
        }
        (
            None,
            Ending::Failed {
                class,
                has_response,
                ..
            },
        ) => {
            let class = if class == Class::Unreachable && f.rebounded {
                Class::Transient
            } else {
                class
            };
            let mut effects = if has_response {
                vec![E::StoreResponse]
            } else {
                vec![]
            };
            let next = match class {
                Class::Unreachable | Class::Lost | Class::Transient
                    if body_complete && !has_response && !f.may_resend =>
                {
                    effects.push(not_resumable(NotResumable::NoResponse));
                    S::Error
                }
                Class::Unreachable | Class::Lost => {
                    effects.extend([E::WatchHost, persist(S::PausedNoNetwork)]);
                    S::PausedNoNetwork
                }
                Class::Transient if f.retry_left => {
                    effects.extend([
                        E::ScheduleRetry,
                        Effect::Persist {
                            status: S::WaitingToRetry,
                            attempts: Attempts::Spend,
                            why: None,
                        },
                    ]);
                    S::WaitingToRetry
                }
                Class::Transient | Class::Final => {
                    let attempts = if class == Class::Transient {
                        Attempts::Spend
                    } else {
                        Attempts::Keep
                    };
                    effects.extend([E::Checkpoint, fail(Why::Failure, attempts)]);
                    S::Error
                }
            };
            effects.push(E::ReplyLater);
            if next == S::Error && f.has_session {
                // A failed upload leaves nothing behind on the server (best effort).
                effects.push(E::StartAbort);
                return (
                    State {
                        status: S::Error,
                        worker: Worker::Aborting,
                    },
                    effects,
                );
            }
            (idle(next), effects)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The table: every reachable state × every event × two sets of facts, one row each,
    //! compared with `state_table.txt` beside this file (the written spec of every
    //! answer; `BGXFER_BLESS=1 cargo test --lib state` rewrites it after a deliberate
    //! change, to be reviewed in the diff). Then the invariants, over every pair.
    use super::*;
    use std::fmt::Write;

    use StopReason as R;
    use Worker as W;

    /// Every state an upload can be in (a running worker exists only in these statuses).
    fn states() -> Vec<State> {
        let st = |status, worker| State { status, worker };
        vec![
            st(Status::Queued, W::Idle),
            st(Status::Running, W::Running(None)),
            st(Status::PausedByApplication, W::Idle),
            st(Status::PausedByApplication, W::Running(Some(R::Pause))),
            st(Status::Queued, W::Running(Some(R::Requeue))),
            st(Status::PausedNoNetwork, W::Idle),
            st(Status::PausedCostedNetwork, W::Idle),
            st(Status::PausedNoCredentials, W::Idle),
            st(Status::Running, W::Running(Some(R::Costed))),
            st(Status::WaitingToRetry, W::Idle),
            st(Status::Canceled, W::Running(Some(R::Cancel))),
            st(Status::Running, W::Running(Some(R::Remove))),
            st(Status::Running, W::Running(Some(R::Shutdown))),
            st(Status::Running, W::Running(Some(R::Offline))),
            st(Status::Completed, W::Idle),
            st(Status::Canceled, W::Idle),
            st(Status::Canceled, W::Aborting),
            st(Status::Error, W::Idle),
            st(Status::Error, W::Aborting),
        ]
    }

    fn events() -> Vec<Event> {
        let failed = |class, body_complete, has_response| {
            Event::Ended(Ending::Failed {
                class,
                body_complete,
                has_response,
            })
        };
        vec![
            Event::Op(Op::Pause),
            Event::Op(Op::Resume),
            Event::Op(Op::Cancel),
            Event::Op(Op::Remove),
            Event::Op(Op::MakeCurrent),
            Event::Start,
            Event::Ended(Ending::Completed),
            Event::Ended(Ending::Stopped {
                body_complete: false,
            }),
            Event::Ended(Ending::Stopped {
                body_complete: true,
            }),
            failed(Class::Transient, false, false),
            failed(Class::Transient, true, false),
            failed(Class::Unreachable, false, false),
            failed(Class::Lost, true, false),
            failed(Class::Final, true, true),
            Event::AbortEnded,
            Event::Online,
            Event::HostOffline,
            Event::RouteLost,
            Event::RetryDue,
            Event::Costed(true),
            Event::Costed(false),
            Event::NoProvider,
            Event::ProviderRegistered,
            Event::Shutdown,
        ]
    }

    /// Permissive facts, and strict ones.
    fn facts() -> [(&'static str, Facts); 2] {
        [
            (
                "lenient",
                Facts {
                    may_resend: true,
                    retry_left: true,
                    rebounded: false,
                    costed: false,
                    has_session: false,
                },
            ),
            (
                "strict",
                Facts {
                    may_resend: false,
                    retry_left: false,
                    rebounded: true,
                    costed: true,
                    has_session: true,
                },
            ),
        ]
    }

    fn table() -> String {
        let mut out = String::from(
            "# state | event | facts => next state | effects\n\
             # generated by `BGXFER_BLESS=1 cargo test --lib state`; review every change\n",
        );
        for s in states() {
            for e in events() {
                for (name, f) in facts() {
                    let (next, effects) = step(s, e, f);
                    let _ = writeln!(
                        out,
                        "{:?}/{:?} | {e:?} | {name} => {:?}/{:?} | {effects:?}",
                        s.status, s.worker, next.status, next.worker
                    );
                }
            }
        }
        out
    }

    #[test]
    fn the_table_is_the_spec() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scheduler/state_table.txt");
        let now = table();
        if std::env::var("BGXFER_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &now).unwrap();
        }
        let spec = std::fs::read_to_string(path).expect("state_table.txt");
        for (i, (a, b)) in spec.lines().zip(now.lines()).enumerate() {
            assert_eq!(a, b, "row {} of state_table.txt differs", i + 1);
        }
        assert_eq!(spec.lines().count(), now.lines().count());
        assert_eq!(
            now.lines().filter(|l| !l.starts_with('#')).count(),
            states().len() * events().len() * 2
        );
    }

    fn all_pairs() -> impl Iterator<Item = (State, Event, Facts, State, Vec<Effect>)> {
        states().into_iter().flat_map(|s| {
            events().into_iter().flat_map(move |e| {
                facts().into_iter().map(move |(_, f)| {
                    let (n, fx) = step(s, e, f);
                    (s, e, f, n, fx)
                })
            })
        })
    }

    #[test]
    fn completed_and_canceled_are_absorbing() {
        for (s, e, _, n, fx) in all_pairs() {
            if matches!(s.status, Status::Completed | Status::Canceled) {
                assert_eq!(n.status, s.status, "{s:?} {e:?}");
                assert!(
                    !fx.iter().any(
                        |x| matches!(x, Effect::Persist { status, .. } if *status != s.status)
                    ),
                    "{s:?} {e:?}: {fx:?}"
                );
            }
        }
    }

    #[test]
    fn error_is_left_only_by_the_programs_resume() {
        for (s, e, _, n, _) in all_pairs() {
            if s.status == Status::Error && n.status != Status::Error {
                assert_eq!(e, Event::Op(Op::Resume), "{s:?}");
                assert_eq!(n.status, Status::Queued);
            }
        }
    }

    #[test]
    fn every_operation_is_answered_once() {
        for (s, e, _, _, fx) in all_pairs() {
            if matches!(e, Event::Op(op) if op != Op::MakeCurrent) {
                let answers = fx
                    .iter()
                    .filter(|x| matches!(x, Effect::Reply(_) | Effect::ReplyLater))
                    .count();
                assert!(answers >= 1, "{s:?} {e:?}: {fx:?}");
                let replies = fx.iter().filter(|x| matches!(x, Effect::Reply(_))).count();
                assert!(replies <= 1, "{s:?} {e:?}: {fx:?}");
            }
        }
    }

    #[test]
    fn workers_start_only_from_the_queue_and_end_only_when_running() {
        for (s, e, _, n, fx) in all_pairs() {
            if fx.contains(&Effect::StartWorker) {
                assert_eq!((s.status, s.worker), (Status::Queued, W::Idle), "{e:?}");
                assert_eq!(n.worker, W::Running(None));
            }
            if matches!(e, Event::Ended(_)) && !matches!(s.worker, W::Running(_)) {
                assert_eq!((n, fx.is_empty()), (s, true), "{s:?} {e:?}");
            }
            if matches!(e, Event::Ended(_)) && matches!(s.worker, W::Running(_)) {
                assert_ne!(n.worker, s.worker, "the worker is gone: {s:?} {e:?}");
            }
        }
    }

    #[test]
    fn no_retry_is_spent_without_connectivity() {
        for (s, e, f, n, fx) in all_pairs() {
            if let Event::Ended(Ending::Failed {
                class: Class::Lost, ..
            }) = e
            {
                let spent = fx.iter().any(|x| {
                    matches!(
                        x,
                        Effect::Persist {
                            attempts: Attempts::Spend,
                            ..
                        }
                    )
                });
                assert!(!spent, "{s:?} {f:?}: {fx:?}");
                let _ = n;
            }
        }
    }

    #[test]
    fn nothing_leaves_the_wait_for_credentials_toward_the_wire_but_their_provider() {
        for (s, e, _, n, fx) in all_pairs() {
            if s.status == Status::PausedNoCredentials
                && matches!(n.status, Status::Queued | Status::Running)
            {
                assert_eq!(e, Event::ProviderRegistered, "{s:?}: {fx:?}");
            }
            if e == Event::NoProvider {
                assert!(!fx.contains(&Effect::StartWorker));
                assert!(!fx.iter().any(|x| matches!(
                    x,
                    Effect::Persist {
                        attempts: Attempts::Spend,
                        ..
                    }
                )));
            }
        }
    }

    /// The races, answered (see the module's docs).
    #[test]
    fn race_answers() {
        let lenient = facts()[0].1;
        // Cancel, then the completion that was already on the wire: stays canceled.
        let running = State {
            status: Status::Running,
            worker: W::Running(None),
        };
        let (s, _) = step(running, Event::Op(Op::Cancel), lenient);
        let (s, fx) = step(s, Event::Ended(Ending::Completed), lenient);
        assert_eq!(s.status, Status::Canceled);
        assert!(fx.contains(&Effect::StoreResponse));
        // Pause, then a completion: completed.
        let (s, _) = step(running, Event::Op(Op::Pause), lenient);
        let (s, _) = step(s, Event::Ended(Ending::Completed), lenient);
        assert_eq!(s.status, Status::Completed);
        // Remove during the DELETE of a canceled upload: removed at once.
        let aborting = State {
            status: Status::Canceled,
            worker: W::Aborting,
        };
        let (_, fx) = step(aborting, Event::Op(Op::Remove), lenient);
        assert_eq!(fx, vec![Effect::Remove, Effect::Reply(Ok(()))]);
        // Shutdown during a cancel: the cancel's reason stays.
        let (s, _) = step(running, Event::Op(Op::Cancel), lenient);
        let (s, _) = step(s, Event::Shutdown, lenient);
        assert_eq!(s.worker, W::Running(Some(R::Cancel)));
        // Shutdown, then the completion: completed.
        let (s, _) = step(running, Event::Shutdown, lenient);
        let (s, _) = step(s, Event::Ended(Ending::Completed), lenient);
        assert_eq!(s.status, Status::Completed);
    }
}
