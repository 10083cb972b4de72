//! What handles read without asking the scheduler: one cell per upload with its latest
//! snapshot, a condition variable for `wait`, and the event subscribers. Only the
//! scheduler writes cells; no lock here is ever held across I/O.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crossbeam_channel::Sender;

use crate::command::Command;
use crate::events::EventSender;
use crate::journal::UploadState;
use crate::model::{Failure, SubmissionKey, UploadId};
use crate::progress::{Event, Progress, ResponseInfo};
use crate::request_info::RequestInfo;

/// State shared by the `Uploader`, its handles and the scheduler.
pub(crate) struct Shared {
    pub tx: Sender<Command>,
    pub cells: Mutex<BTreeMap<UploadId, Arc<Cell>>>,
    /// The next id `create_upload` hands out (ids are reserved before the journal write,
    /// so that a reader body can be spooled under its id first).
    pub next_id: AtomicU64,
    pub store_dir: PathBuf,
    pub closed: AtomicBool,
    /// What opening the store found.
    pub recovery: crate::journal::Recovery,
    /// The uploads clients submitted, by their submission key: a submission that
    /// arrives twice is created once. Only the scheduler writes it.
    pub submissions: Mutex<HashMap<SubmissionKey, UploadId>>,
    /// Who submitted the uploads clients submitted (the uid of the client's process).
    /// Kept with `submissions`, under its lock's order: `submissions`, then this.
    pub submitters: Mutex<HashMap<UploadId, u32>>,
    /// Where the journal file holds the body of each published response that has no
    /// file (the offset of its record): what `Upload::response_body` reads. Only the
    /// scheduler writes it: an entry before the cell shows the response, all of them
    /// again after a compaction moved them. A map beside the cells rather than a field
    /// in each: most uploads have no such body to point at.
    pub bodies_at: Mutex<HashMap<UploadId, u64>>,
    /// Notified whenever `bodies_at` changes: a read that raced a compaction waits on it
    /// for the body's new offset.
    pub bodies_moved: Condvar,
}

/// One upload as handles see it.
pub(crate) struct Cell {
    pub id: UploadId,
    pub info: RequestInfo,
    pub snap: Mutex<Snapshot>,
    pub changed: Condvar,
    pub subscribers: Mutex<Vec<EventSender>>,
}

/// The latest published state of an upload.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub progress: Progress,
    pub response: Option<ResponseInfo>,
    /// The final error, or the last attempt's error while retrying.
    pub error: Option<Failure>,
    pub removed: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take every handle down with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cell {
    pub fn new(u: &UploadState, total: u64, response: Option<ResponseInfo>) -> Cell {
        Cell {
            id: u.id,
            info: RequestInfo::of(&u.request, u.created_ms),
            snap: Mutex::new(Snapshot {
                progress: Progress {
                    status: u.status,
                    bytes_sent: u.bytes_sent,
                    total_bytes_to_send: total,
                    bytes_acknowledged: u.acked,
                    bytes_received: response.as_ref().map_or(0, |r| r.body_len),
                    total_bytes_to_receive: None,
                    has_restarted: u.restarted,
                    has_response_changed: false,
                    attempts: u.attempts,
                },
                response,
                error: u.error.clone(),
                removed: false,
            }),
            changed: Condvar::new(),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Applies `f` to the snapshot, sends `event` (built from the new progress) to
    /// subscribers and wakes waiters. The event is sent before the snapshot lock is
    /// released: whoever sees the new state can also receive its event.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot), event: fn(Progress) -> Event) {
        let ends = {
            let mut s = lock(&self.snap);
            f(&mut s);
            let ev = event(s.progress.clone());
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|tx| tx.send(ev.clone()));
            if s.removed || matches!(&ev, Event::StatusChanged(p) if p.status.is_final()) {
                // No event follows a final status: end the streams, so that a
                // `for ev in upload.events()` loop ends too.
                subscribers.clear();
            }
            s.removed || matches!(ev, Event::StatusChanged(_))
        };
        // Waiters wait for an end, which only a status change or a removal brings: bytes
        // moving do not wake them.
        if ends {
            self.changed.notify_all();
        }
    }
}
