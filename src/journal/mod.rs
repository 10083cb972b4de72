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

/// The last body bytes the journal holds for each upload whose latest response has them.
fn inline_bodies(records: &[Record], state: &State) -> BTreeMap<UploadId, Vec<u8>> {
    let mut bodies = BTreeMap::new();
    for r in records {
        match r {
            Record::ResponseWithBody(r) => {
                bodies.insert(r.response.id, r.body.clone());
            }
            Record::Response(r) => {
                bodies.remove(&r.id);
            }
            Record::Removed(id) => {
                bodies.remove(id);
            }
            _ => {}
        }
    }
    bodies.retain(|id, _| state.uploads.get(id).is_some_and(|u| u.body_in_journal));
    bodies
}

/// A locked store with its journal and the state folded from it.
#[derive(Debug)]
pub struct Store {
    journal: Journal,
    state: State,
    recovery: Recovery,
    /// The journal's bytes of small response bodies whose files were written without
    /// fsync, by upload, from the records replayed at open (taken by recovery).
    inline_bodies: BTreeMap<UploadId, Vec<u8>>,
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
        let (journal, records, recovery) = Journal::open(dir)?;
        let state = replay::fold(&records);
        let inline_bodies = inline_bodies(&records, &state);
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
            inline_bodies,
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
        self.journal.append(&Record::from(&entry), durability)?;
        self.state.apply(&entry);
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
        // The snapshot drops the bodies the journal holds: their files first.
        self.sync_inline_bodies()?;
        let live = self.state.snapshot();
        self.journal.compact(&live)?;
        for u in self.state.uploads.values_mut() {
            u.body_in_journal = false;
        }
        Ok(())
    }

    /// fsyncs the response body files whose bytes only the journal holds durably, and
    /// their directory. A file that is gone (removed by hand) is said and passed over:
    /// there is nothing of it to keep.
    fn sync_inline_bodies(&self) -> Result<(), Error> {
        let ids: Vec<UploadId> = (self.state.uploads.values())
            .filter(|u| u.body_in_journal)
            .map(|u| u.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        for id in ids {
            let path = body_file(self.dir(), id);
            match std::fs::File::open(&path).and_then(|f| f.sync_all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    log::warn!("upload {id}: its response body {} is gone", path.display());
                }
                Err(e) => return Err(Error::io("fsync response body file", path, e)),
            }
        }
        Ok(file::sync_dir(&self.path(BODIES_DIR))?)
    }

    /// The journal's bytes of response bodies whose files may not have reached the disk
    /// (see [`Entry::Response`]), as replayed at open; empty after the first call.
    pub fn take_inline_bodies(&mut self) -> BTreeMap<UploadId, Vec<u8>> {
        std::mem::take(&mut self.inline_bodies)
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
