//! The crash-safe journal: an append-only, checksummed postcard log in a locked store.
//!
//! A store directory holds `lock` (the fs2 lock), `journal` (the log) and the upload
//! files the engine keeps (response bodies, spooled sources). [`Store::open`] is recovery:
//! it takes the lock, replays the journal up to its last whole record and folds the
//! records into a [`State`]. Every later change goes through [`Store::commit`], which
//! appends the record and then applies it to the state, so the two never disagree.
//!
//! Durability: records the program can observe (a create, a status change, a response)
//! are committed with [`Durability::Sync`] and are on disk when `commit` returns.
//! Progress checkpoints use [`Durability::Batched`]: at most one fsync per
//! [`BATCH_INTERVAL`] for them, and every `Sync` commit carries them along.

mod compact;
mod convert;
mod entry;
mod error;
pub mod fault;
mod file;
pub mod format;
#[doc(hidden)]
pub mod fuzz;
mod lock;
pub(crate) mod portable;
pub mod record;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use compact::CompactStep;
pub use entry::{Entry, INLINE_BODY_MAX};
pub use error::JournalError;
pub(crate) use file::{body_file, sync_dir, BODIES_DIR};
pub use file::{
    process_fsyncs, Durability, Journal, Recovery, BATCH_INTERVAL, COMPACT_FILE, JOURNAL_FILE,
    QUARANTINE_FILE,
};
pub use lock::{StoreLock, LOCK_FILE};
pub use record::Record;
pub use replay::{State, UploadState};

use crate::model::UploadId;
use crate::Error;

/// Compaction is considered once the journal holds this many records...
const COMPACT_MIN_RECORDS: u64 = 4096;
/// ...and runs when it holds more than this many times the live records.
const COMPACT_RATIO: u64 = 4;

/// Where the journal holds the body of each upload whose latest response record has it
/// (the frame's offset), from the offsets of the records replayed at open that keep one
/// (`(index in records, offset)`, in order). The state says which uploads that is: the
/// fold sets `body_in_journal` from the latest response record, so that upload's latest
/// record with a body is that one.
fn bodies_at(
    records: &[Record],
    offsets: &[(usize, u64)],
    state: &State,
) -> BTreeMap<UploadId, u64> {
    let mut at = BTreeMap::new();
    for &(i, offset) in offsets {
        if let Some(Record::ResponseWithBody(r)) = records.get(i) {
            at.insert(r.response.id, offset);
        }
    }
    at.retain(|id, _| state.uploads.get(id).is_some_and(|u| u.body_in_journal));
    at
}

/// The response body of upload `id` kept in the journal `file` (at `path`) in the record
/// whose frame starts at `at` ([`Store::body_at`]).
///
/// # Errors
/// [`Error::Io`] (`InvalidData`) if the record there is not a response with a body of
/// that upload: the journal was compacted since `at` was taken (take it again), or is
/// damaged; [`Error::Io`] if the file cannot be read.
pub fn read_body(
    file: &std::fs::File,
    path: &Path,
    at: u64,
    id: UploadId,
) -> Result<Vec<u8>, Error> {
    let read = |e| Error::io("read response body from the journal", path, e);
    match file::record_at(file, at).map_err(read)? {
        Record::ResponseWithBody(r) if r.response.id == id => Ok(r.body),
        _ => Err(read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no response body of upload {id} at journal offset {at}"),
        ))),
    }
}

/// A locked store with its journal and the state folded from it.
#[derive(Debug)]
pub struct Store {
    journal: Journal,
    state: State,
    recovery: Recovery,
    /// Where in the journal file the response body of each upload whose body the journal
    /// holds is ([`UploadState::body_in_journal`]): the offset of the frame of its latest
    /// response record. Invariant: an upload is here exactly when its state says
    /// `body_in_journal`; kept by `open`, `commit` and `compact`.
    bodies_at: BTreeMap<UploadId, u64>,
    /// Compactions done since open: each moves every record, so every offset above.
    compactions: u64,
    // Dropped last: the lock outlives every file handle of the store.
    lock: StoreLock,
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and replays its journal.
    ///
    /// # Errors
    /// [`Error::StoreLocked`] if another opener holds the store;
    /// [`Error::JournalNotRecognized`], [`Error::JournalVersion`] or
    /// [`Error::JournalUnreadable`] (file untouched);
    /// [`Error::Io`] for file system failures.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let lock = StoreLock::acquire(dir)?;
        let (journal, records, offsets, recovery) = Journal::open_indexed(dir)?;
        let state = replay::fold(&records);
        let bodies_at = bodies_at(&records, &offsets, &state);
        if journal.skipped > 0 {
            log::warn!(
                "journal {} holds {} records of a kind a newer build wrote; they are kept, \
                 and the journal is not compacted until that build runs again",
                dir.display(),
                journal.skipped
            );
        }
        let mut store = Store {
            journal,
            state,
            recovery,
            bodies_at,
            compactions: 0,
            lock,
        };
        // Ids a damaged journal lost are not handed out again: the marker holds the
        // floor its recovery salvaged, and a record makes it part of the journal.
        if let Some(floor) = file::quarantine_floor(dir) {
            if floor > store.state.next_id {
                log::warn!(
                    "upload ids below {floor} were handed out before the journal was damaged"
                );
                store.commit(Entry::Removed(floor - 1), Durability::Sync)?;
            }
        }
        log::info!(
            "opened store {}: {} records, {} uploads, {:?}",
            dir.display(),
            records.len(),
            store.state.uploads.len(),
            store.recovery
        );
        Ok(store)
    }

    /// Appends `entry` (or an on-disk record) with the given durability, then applies it to the state.
    /// Then compacts the journal if dead records dominate; a failed compaction is logged,
    /// not returned: the record is committed either way, and a compaction that failed
    /// before its rename leaves the journal as it was.
    pub fn commit(&mut self, entry: impl Into<Entry>, durability: Durability) -> Result<(), Error> {
        let entry = entry.into();
        // Where the record's frame starts: the end of the file before the append.
        let at = self.journal.len();
        self.journal.append(&Record::from(&entry), durability)?;
        self.state.apply(&entry);
        match &entry {
            Entry::Response { id, body, .. } => {
                let kept = self
                    .state
                    .uploads
                    .get(id)
                    .is_some_and(|u| u.body_in_journal);
                match body {
                    Some(_) if kept => self.bodies_at.insert(*id, at),
                    _ => self.bodies_at.remove(id),
                };
            }
            Entry::Removed(id) => {
                self.bodies_at.remove(id);
            }
            _ => {}
        }
        if let Err(e) = self.maybe_compact() {
            log::error!("journal compaction failed: {e}");
            let _ = std::fs::remove_file(self.path(COMPACT_FILE));
        }
        Ok(())
    }

    /// Routes the journal's writes and fsyncs through `hook` (fault-injection tests).
    #[doc(hidden)]
    pub fn set_fault_hook(&mut self, hook: Option<std::sync::Arc<dyn fault::FaultHook>>) {
        self.journal.fault = hook;
    }

    /// fsyncs batched records.
    pub fn sync(&mut self) -> Result<(), Error> {
        Ok(self.journal.sync()?)
    }

    /// Rewrites the journal as the live state now. Not while the journal holds records
    /// of kinds this build skipped (written by a newer build): the snapshot would drop
    /// them, so the journal is left as it is.
    pub fn compact(&mut self) -> Result<(), Error> {
        if self.journal.skipped > 0 {
            log::info!(
                "journal {} holds {} records of a newer build; not compacting it",
                self.dir().display(),
                self.journal.skipped
            );
            return Ok(());
        }
        let live = self.snapshot()?;
        let offsets = self.journal.compact_indexed(&live)?;
        self.compactions += 1;
        // The snapshot keeps every body the journal held, in its upload's response
        // record: at a new offset.
        self.bodies_at.clear();
        for (r, at) in live.iter().zip(offsets) {
            if let Record::ResponseWithBody(r) = r {
                self.bodies_at.insert(r.response.id, at);
            }
        }
        Ok(())
    }

    /// The fewest records that rebuild the live state, small response bodies included
    /// (read back from the journal): what a compaction writes.
    ///
    /// # Errors
    /// A body the journal holds cannot be read back ([`Error::Io`]).
    pub fn snapshot(&self) -> Result<Vec<Record>, Error> {
        let mut bodies = BTreeMap::new();
        for &id in self.bodies_at.keys() {
            bodies.insert(id, self.body(id)?);
        }
        Ok(self.state.snapshot(|id| bodies.remove(&id)))
    }

    /// The response body of `id` that the journal holds (see [`Store::body_at`]).
    ///
    /// # Errors
    /// [`Error::NoResponse`] if the journal holds no body for it; [`Error::Io`] if it
    /// cannot be read back.
    pub fn body(&self, id: UploadId) -> Result<Vec<u8>, Error> {
        let at = *self.bodies_at.get(&id).ok_or(Error::NoResponse { id })?;
        read_body(&self.journal.file, &self.journal.path, at, id)
    }

    /// Where the journal file holds the response body of `id` (the offset of its record),
    /// if it does: [`read_body`] reads it there. Valid until the next compaction
    /// ([`Store::compactions`]).
    pub fn body_at(&self, id: UploadId) -> Option<u64> {
        self.bodies_at.get(&id).copied()
    }

    /// Every upload whose response body the journal holds, with where ([`Store::body_at`]).
    pub fn kept_bodies(&self) -> impl Iterator<Item = (UploadId, u64)> + '_ {
        self.bodies_at.iter().map(|(&id, &at)| (id, at))
    }

    /// Compactions since open: offsets from [`Store::body_at`] taken before the last one
    /// are stale.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    fn maybe_compact(&mut self) -> Result<(), Error> {
        let records = self.journal.records();
        // Records of a newer build are kept: no compaction until that build runs again
        // (it was said once at open).
        if records < COMPACT_MIN_RECORDS || records % 256 != 0 || self.journal.skipped > 0 {
            return Ok(());
        }
        let live = self.state.live_records() as u64;
        if records > COMPACT_RATIO * live.max(1) {
            self.compact()?;
        }
        Ok(())
    }

    /// The state folded from the journal.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// What opening found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Whether files the journal does not list must be kept aside rather than deleted:
    /// the journal was found damaged at this open or at an earlier one whose recovery did
    /// not finish ([`QUARANTINE_FILE`]).
    pub fn quarantine_pending(&self) -> bool {
        self.path(QUARANTINE_FILE).exists()
    }

    /// Ends the quarantine once the files it protects are durably in `lost/`.
    ///
    /// # Errors
    /// [`Error::Io`]; the marker then stays, and the next open keeps files aside again.
    pub fn finish_quarantine(&mut self) -> Result<(), Error> {
        let path = self.path(QUARANTINE_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(file::sync_dir(self.dir())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove quarantine marker", path, e)),
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Mutable access to the journal, for tests that interrupt a compaction.
    #[doc(hidden)]
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.lock.dir()
    }

    /// A path inside the store.
    pub fn path(&self, name: &str) -> PathBuf {
        self.lock.dir().join(name)
    }
}
