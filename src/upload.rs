//! The [`Upload`] handle: a cheap, cloneable view of one upload and the operations on it.

use std::fmt;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::command::{Command, Op};
use crate::events::{self, Events};
use crate::model::UploadId;
use crate::progress::{Event, Progress, ResponseInfo};
use crate::shared::{lock, Cell, Shared, Snapshot};
use crate::{Error, RequestInfo, ResponseBody, Status};

/// A handle to one upload (WinRT's `UploadOperation`). Cheap to clone; every clone
/// sees the same upload. Reading progress never blocks on the network.
#[derive(Clone)]
pub struct Upload {
    cell: Arc<Cell>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("id", &self.cell.id)
            .field("status", &self.status())
            .finish()
    }
}

impl Upload {
    pub(crate) fn new(cell: Arc<Cell>, shared: Arc<Shared>) -> Upload {
        Upload { cell, shared }
    }

    /// The upload's id, unique within its store and stable across restarts.
    pub fn id(&self) -> u64 {
        self.cell.id
    }

    /// What it sends.
    pub fn request(&self) -> &RequestInfo {
        &self.cell.info
    }

    /// A snapshot of its progress.
    pub fn progress(&self) -> Progress {
        lock(&self.cell.snap).progress.clone()
    }

    /// Its status now.
    pub fn status(&self) -> Status {
        lock(&self.cell.snap).progress.status
    }

    /// Why it failed (for [`Status::Error`]), or the last attempt's error while it waits
    /// to retry or for the network.
    pub fn error(&self) -> Option<Error> {
        lock(&self.cell.snap)
            .error
            .as_ref()
            .map(Error::from_failure)
    }

    /// The server's response, once there is one (also for failed uploads).
    pub fn response_info(&self) -> Option<ResponseInfo> {
        lock(&self.cell.snap).response.clone()
    }

    /// The stored response body (WinRT's `GetResultStreamAt(0)`): read it like a file.
    ///
    /// # Errors
    /// [`Error::NoResponse`] if the server has not answered yet; [`Error::NotFound`]
    /// if the upload was removed; [`Error::Io`] if the body cannot be read from the store.
    pub fn response_body(&self) -> Result<ResponseBody, Error> {
        // A compaction may move a body the journal holds between the look at its offset
        // and the read: the read then finds another record there, and the offset, updated
        // right after the compaction, says where it went. A read that fails while the
        // offset does not change is a real failure.
        loop {
            let (removed, answered) = {
                let s = lock(&self.cell.snap);
                (s.removed, s.response.is_some())
            };
            let at = self.body_at();
            if removed {
                return Err(Error::NotFound { id: self.id() });
            }
            if !answered {
                return Err(Error::NoResponse { id: self.id() });
            }
            let Some(at) = at else {
                let path = crate::store::body_path(&self.shared.store_dir, self.id());
                return File::open(&path)
                    .and_then(ResponseBody::file)
                    .map_err(|e| Error::io("open response body", path, e));
            };
            let path = self.shared.store_dir.join(crate::journal::JOURNAL_FILE);
            let read = File::open(&path)
                .map_err(|e| Error::io("open journal", &path, e))
                .and_then(|f| crate::journal::read_body(&f, &path, at, self.id()));
            let e = match read {
                Ok(bytes) => return Ok(ResponseBody::bytes(bytes)),
                Err(e) => e,
            };
            // The scheduler moves the offset right after a compaction (a removal takes
            // it away): wait for that, not longer than the compaction's fsyncs take.
            let map = lock(&self.shared.bodies_at);
            let (map, waited) = self
                .shared
                .bodies_moved
                .wait_timeout_while(map, Duration::from_secs(2), |m| {
                    m.get(&self.id()) == Some(&at)
                })
                .unwrap_or_else(|p| p.into_inner());
            drop(map);
            if waited.timed_out() {
                return Err(e);
            }
        }
    }

    /// Where the journal holds its response body, if it does.
    fn body_at(&self) -> Option<u64> {
        lock(&self.shared.bodies_at).get(&self.id()).copied()
    }

    fn op(&self, op: Op) -> Result<(), Error> {
        let (tx, rx) = bounded(1);
        self.shared
            .tx
            .send(Command::Op {
                id: self.id(),
                op,
                reply: tx,
            })
            .map_err(|_| Error::ShutDown)?;
        rx.recv().map_err(|_| Error::ShutDown)?
    }

    /// Pauses it: a running transfer stops within one buffer. Persisted: it stays paused
    /// across restarts until [`Upload::resume`].
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] if it has already ended; [`Error::NotFound`];
    /// [`Error::ShutDown`].
    pub fn pause(&self) -> Result<(), Error> {
        self.op(Op::Pause)
    }

    /// Resumes a paused upload, or tries a failed one again with a fresh retry budget.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] if it completed or was canceled; [`Error::NotFound`];
    /// [`Error::ShutDown`].
    pub fn resume(&self) -> Result<(), Error> {
        self.op(Op::Resume)
    }

    /// Cancels it: the request is ended, and a tus upload is deleted on the server.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] if it completed or failed; [`Error::NotFound`];
    /// [`Error::ShutDown`].
    pub fn cancel(&self) -> Result<(), Error> {
        self.op(Op::Cancel)
    }

    /// Removes it and its files (response body, spooled source) from the store,
    /// canceling it first if it is unfinished. The handle is useless afterwards.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::ShutDown`]; [`Error::Io`] if the journal write fails.
    pub fn remove(&self) -> Result<(), Error> {
        self.op(Op::Remove)
    }

    /// Puts it ahead of every other upload not yet running (WinRT's
    /// `MakeCurrentInTransferGroup`). Running transfers are not interrupted.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::ShutDown`].
    pub fn make_current(&self) -> Result<(), Error> {
        self.op(Op::MakeCurrent)
    }

    /// Events from now on: progress (coalesced) and status changes. If the upload has
    /// already ended, one `StatusChanged` with its final state is delivered at once.
    /// The stream ends (the receiver disconnects) after the final `StatusChanged`, or
    /// when the upload is removed.
    pub fn events(&self) -> Events {
        // Under the snapshot's lock, which `Cell::update` holds while it sends: no
        // change can slip between this read and the subscription.
        let snap = lock(&self.cell.snap);
        if snap.progress.status.is_final() || snap.removed {
            return Events::ended_with(Event::StatusChanged(snap.progress.clone()));
        }
        let (tx, rx) = events::stream();
        lock(&self.cell.subscribers).push(tx);
        drop(snap);
        rx
    }

    /// Blocks until the upload ends: the response for a completed upload, its error for
    /// a failed one.
    ///
    /// # Errors
    /// The upload's error; [`Error::Canceled`]; [`Error::NotFound`] if it was removed;
    /// [`Error::ShutDown`] if the uploader shut down first.
    pub fn wait(&self) -> Result<ResponseInfo, Error> {
        loop {
            if let Some(r) = self.wait_timeout(Duration::from_secs(3600)) {
                return r;
            }
        }
    }

    /// Like [`Upload::wait`], for at most `timeout`; `None` if it has not ended by then.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<ResponseInfo, Error>> {
        // A timeout too large to add to now is no deadline at all.
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.cell.snap);
        loop {
            if let Some(r) = outcome(&guard, self.id()) {
                return Some(r);
            }
            if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Some(Err(Error::ShutDown));
            }
            let left = deadline.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return None;
            }
            // Wake at least every second to notice a shutdown.
            guard = self
                .cell
                .changed
                .wait_timeout(guard, left.min(Duration::from_secs(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The result `wait` returns for a snapshot, if the upload has ended.
fn outcome(s: &Snapshot, id: UploadId) -> Option<Result<ResponseInfo, Error>> {
    if s.removed {
        return Some(Err(Error::NotFound { id }));
    }
    match s.progress.status {
        Status::Completed => Some(s.response.clone().ok_or(Error::NotFound { id })),
        Status::Canceled => Some(Err(Error::Canceled)),
        Status::Error => Some(Err(s
            .error
            .as_ref()
            .map(Error::from_failure)
            .unwrap_or(Error::Canceled))),
        _ => None,
    }
}
