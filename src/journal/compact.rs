//! Compaction: rewrite the journal as the live state, atomically.
//!
//! Steps: write the snapshot to `journal.compact`, fsync it, rename it over `journal`,
//! fsync the directory. A crash before the rename leaves the old journal (complete) and a
//! temp file that the next open deletes; a crash after it leaves the new journal. Either
//! way the store opens with the same live state.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use super::error::JournalError;
use super::file::{create_private, sync_dir, Journal, COMPACT_FILE};
use super::format;
use super::record::Record;

/// The step after which a test compaction stops, as if the process died there.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactStep {
    /// Half of the temp file written.
    PartialWrite,
    /// Temp file written, not fsynced.
    Written,
    /// Temp file fsynced.
    Synced,
    /// Renamed over the journal, directory not fsynced.
    Renamed,
    /// Everything done.
    Done,
}

impl Journal {
    /// Replaces the journal with `live` (the snapshot of the current state).
    ///
    /// # Errors
    /// [`JournalError::Io`] if a step fails; before the rename the old journal is untouched and
    /// still in use, after it the journal is poisoned (reopen the store).
    pub fn compact(&mut self, live: &[Record]) -> Result<(), JournalError> {
        self.compact_until(live, CompactStep::Done)
    }

    /// [`Journal::compact`], returning where each record of `live` starts in the new file.
    pub(crate) fn compact_indexed(&mut self, live: &[Record]) -> Result<Vec<u64>, JournalError> {
        self.compact_steps(live, CompactStep::Done)
    }

    /// [`Journal::compact`] that stops after `step`, for crash tests. The handle is only
    /// good for dropping afterwards unless `step` is `Done`.
    #[doc(hidden)]
    pub fn compact_until(
        &mut self,
        live: &[Record],
        step: CompactStep,
    ) -> Result<(), JournalError> {
        self.compact_steps(live, step).map(|_| ())
    }

    fn compact_steps(
        &mut self,
        live: &[Record],
        step: CompactStep,
    ) -> Result<Vec<u64>, JournalError> {
        self.check_usable()?;
        // Whatever was batched must be durable before the file that holds it goes away.
        self.sync()?;
        let dir = self
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf();
        let tmp = dir.join(COMPACT_FILE);
        let mut bytes = format::header().to_vec();
        let mut offsets = Vec::with_capacity(live.len());
        for r in live {
            offsets.push(bytes.len() as u64);
            let frame = format::encode_frame(r).map_err(|len| JournalError::RecordTooLarge {
                len,
                max: format::MAX_RECORD_LEN,
            })?;
            bytes.extend_from_slice(&frame);
        }
        let mut f = create_private(&tmp).map_err(|e| JournalError::io("create", &tmp, e))?;
        let written = if step == CompactStep::PartialWrite {
            bytes.len() / 2
        } else {
            bytes.len()
        };
        self.hook(super::fault::FileOp::Compact)
            .and_then(|()| f.write_all(&bytes[..written]))
            .map_err(|e| JournalError::io("write", &tmp, e))?;
        if step <= CompactStep::Written {
            return Ok(offsets);
        }
        self.hook(super::fault::FileOp::Compact)
            .and_then(|()| f.sync_all())
            .map_err(|e| JournalError::io("fsync", &tmp, e))?;
        self.count_fsync();
        if step == CompactStep::Synced {
            return Ok(offsets);
        }
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(JournalError::io(
                "rename compacted journal over",
                &self.path,
                e,
            ));
        }
        // From here on the old file handle points at an unlinked inode.
        self.poisoned = true;
        if step == CompactStep::Renamed {
            return Ok(offsets);
        }
        sync_dir(&dir)?;
        self.count_fsync();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| JournalError::io("reopen compacted journal", &self.path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| JournalError::io("seek journal", &self.path, e))?;
        self.replace_file(file, bytes.len() as u64, live.len() as u64);
        self.poisoned = false;
        log::debug!(
            "compacted journal {} to {} records ({} bytes)",
            self.path.display(),
            live.len(),
            bytes.len()
        );
        Ok(offsets)
    }
}
