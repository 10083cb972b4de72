//! The journal file: opening is recovery, appends are framed and fsynced on demand.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::JournalError;
use super::format::{self, Damage, HeaderCheck, HEADER_LEN, MAX_PLAUSIBLE_ID, MAX_RECORD_LEN};
use super::record::Record;

/// File name of the journal inside the store.
pub const JOURNAL_FILE: &str = "journal";
/// File name compaction writes before renaming it over the journal.
pub const COMPACT_FILE: &str = "journal.compact";
/// Written (durably) before a damaged journal is cut back or started afresh, removed once
/// the files of the uploads it no longer lists are in `lost/`: while it exists, every
/// open keeps such files instead of deleting them as crash leftovers, so that a power
/// cut between the cut-back and the moves cannot turn a damaged journal into lost bytes.
pub const QUARANTINE_FILE: &str = "quarantine";

/// What [`Journal::open_indexed`] gives: the journal, its records, where each record
/// that keeps a response body starts in the file (its index in the records, its
/// offset), and what opening found.
pub(crate) type Opened = (Journal, Vec<Record>, Vec<(usize, u64)>, Recovery);

/// The record whose frame starts at `at` in the journal `file`, checked as replay checks
/// it (length cap, checksum, decoding): a small response body is read back this way.
///
/// # Errors
/// The read fails, or the bytes there are not a whole, valid frame (the file was replaced
/// by a compaction since `at` was taken, or is damaged): `InvalidData`.
pub(crate) fn record_at(file: &File, at: u64) -> io::Result<Record> {
    use std::os::unix::fs::FileExt;
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    let mut head = [0u8; format::FRAME_HEADER_LEN];
    file.read_exact_at(&mut head, at)?;
    let len =
        (u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & !format::SKIPPABLE) as usize;
    if len > MAX_RECORD_LEN {
        return Err(bad(format!("no record at journal offset {at}")));
    }
    let mut frame = vec![0u8; format::FRAME_HEADER_LEN + len];
    frame[..format::FRAME_HEADER_LEN].copy_from_slice(&head);
    file.read_exact_at(
        &mut frame[format::FRAME_HEADER_LEN..],
        at + head.len() as u64,
    )?;
    match format::decode_frame(&frame) {
        Ok(Some((format::Frame::Record(r), _))) => Ok(r),
        _ => Err(bad(format!("no valid record at journal offset {at}"))),
    }
}

/// How hard an append is pushed to disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning: the record survives a power cut once this returns.
    Sync,
    /// Written now, fsynced with the next `Sync` append or once [`BATCH_INTERVAL`] has
    /// passed since the last fsync, whichever comes first. For progress checkpoints.
    Batched,
}

/// The longest a batched record stays written but not fsynced while appends continue.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Journal fsyncs issued by every journal of this process (benchmarks count them).
static PROCESS_FSYNCS: AtomicU64 = AtomicU64::new(0);

/// Journal fsyncs (appends, compactions, journal creation) issued in this process so
/// far, by every store. For benchmarks: `benches/transfer/` reports them per GiB.
#[doc(hidden)]
pub fn process_fsyncs() -> u64 {
    PROCESS_FSYNCS.load(Ordering::Relaxed)
}

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// There was no journal; an empty one was created.
    Created,
    /// Every byte checked out.
    Clean,
    /// A partial record at the end (what a crash during an append leaves) was cut off.
    TornTail {
        /// Where the journal now ends.
        offset: u64,
        /// Bytes removed.
        dropped: u64,
    },
    /// Damage that a crash does not explain was found. The whole file as found was
    /// copied to `saved_as`, and the journal keeps the records before the damage.
    Corrupt {
        /// Where the journal now ends.
        offset: u64,
        /// Bytes removed.
        dropped: u64,
        /// What was wrong.
        reason: String,
        /// The copy of the damaged file.
        saved_as: PathBuf,
    },
}

/// The open journal file.
#[derive(Debug)]
pub struct Journal {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// Invariant: the file's length; everything before it is whole, checked records.
    pub(super) len: u64,
    /// Records in the file.
    pub(super) records: u64,
    pub(super) poisoned: bool,
    unsynced: bool,
    /// `len` and `records` as of the last fsync (or open): what a failed fsync cuts the
    /// file back to, as a crash would.
    durable: (u64, u64),
    /// When the oldest record not yet fsynced was written.
    unsynced_since: Option<Instant>,
    last_sync: Instant,
    fsyncs: u64,
    /// Records of kinds this build does not know, skipped (marked skippable by a newer
    /// build). While there are any, the journal is never compacted: that would drop them.
    pub(super) skipped: u64,
    /// Fault injection (tests only).
    pub(super) fault: Option<std::sync::Arc<dyn super::fault::FaultHook>>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, recovering it to its last whole
    /// record. The caller holds the store lock.
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Record>, Recovery), JournalError> {
        let (journal, records, _, recovery) = Journal::open_indexed(dir)?;
        Ok((journal, records, recovery))
    }

    /// [`Journal::open`], with where in the file each record that keeps a response body
    /// starts (its frame's offset, for [`record_at`]).
    pub(crate) fn open_indexed(dir: &Path) -> Result<Opened, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        remove_stale_compaction(dir)?;
        // Only a regular file can be a journal: the read below would block forever on a
        // FIFO and run out of memory on a device such as /dev/zero. Checked before the
        // open (opening a device can block) and after it (the path may have changed).
        let not_regular = || {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
            Err(JournalError::io("open journal", &path, e))
        };
        if fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            return not_regular();
        }
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Upload files without a journal: the journal was lost, and they may be
                // all that is left of its uploads. Kept aside, not deleted, even if this
                // open is cut before the recovery that moves them.
                if has_upload_files(dir) {
                    mark_quarantine(dir, 0)?;
                }
                let journal = create_empty(dir, &path)?;
                return Ok((journal, Vec::new(), Vec::new(), Recovery::Created));
            }
            Err(e) => return Err(JournalError::io("open journal", &path, e)),
        };
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return not_regular();
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| JournalError::io("read journal", &path, e))?;
        match format::check_header(&bytes) {
            HeaderCheck::Valid => {}
            HeaderCheck::TornHeader => {
                mark_quarantine(dir, 0)?;
                log::warn!(
                    "journal {} has a partial header ({} bytes); starting it afresh",
                    path.display(),
                    bytes.len()
                );
                drop(file);
                let journal = create_empty(dir, &path)?;
                return Ok((journal, Vec::new(), Vec::new(), Recovery::Created));
            }
            HeaderCheck::NotRecognized => return Err(JournalError::JournalNotRecognized { path }),
            HeaderCheck::Newer(found) => {
                return Err(JournalError::JournalVersion {
                    path,
                    found,
                    supported: format::VERSION,
                })
            }
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        let scan = format::scan(body);
        let valid = (HEADER_LEN + scan.valid_len) as u64;
        let dropped = bytes.len() as u64 - valid;
        let recovery = match scan.damage {
            None => Recovery::Clean,
            Some(Damage::Unreadable(reason)) => {
                // A whole record from a newer build (or a bug): cutting here would drop it
                // and every record after it. The file stays as it is.
                log::error!(
                    "journal {}: the record at offset {valid} cannot be read by this build \
                     ({reason}) and is not marked skippable; not opening the store",
                    path.display()
                );
                return Err(JournalError::RecordUnreadable {
                    path,
                    offset: valid,
                });
            }
            Some(Damage::TornTail) => {
                log::warn!(
                    "journal {}: cut a partial record at offset {valid} ({dropped} bytes), \
                     as a crash during an append leaves",
                    path.display()
                );
                truncate(&file, &path, valid)?;
                Recovery::TornTail {
                    offset: valid,
                    dropped,
                }
            }
            Some(Damage::Corrupt(reason)) => {
                let saved_as = save_aside(dir, &bytes)?;
                mark_quarantine(dir, format::salvage_next_id(&body[scan.valid_len..]))?;
                log::error!(
                    "journal {} is damaged at offset {valid}: {reason}; kept the {} records \
                     before it, dropped {dropped} bytes, saved the damaged file as {}",
                    path.display(),
                    scan.records.len(),
                    saved_as.display()
                );
                truncate(&file, &path, valid)?;
                Recovery::Corrupt {
                    offset: valid,
                    dropped,
                    reason,
                    saved_as,
                }
            }
        };
        file.seek(SeekFrom::Start(valid))
            .map_err(|e| JournalError::io("seek journal", &path, e))?;
        let journal = Journal {
            path,
            file,
            len: valid,
            records: scan.records.len() as u64,
            poisoned: false,
            unsynced: false,
            durable: (valid, scan.records.len() as u64),
            unsynced_since: None,
            last_sync: Instant::now(),
            fsyncs: 0,
            skipped: scan.skipped as u64,
            fault: None,
        };
        let offsets = scan
            .body_offsets
            .iter()
            .map(|&(i, o)| (i, (HEADER_LEN + o) as u64))
            .collect();
        Ok((journal, scan.records, offsets, recovery))
    }

    /// Appends one record.
    ///
    /// # Errors
    /// [`JournalError::RecordTooLarge`] (nothing written), [`JournalError::JournalPoisoned`] if an
    /// earlier write or fsync failed, or [`JournalError::Io`] (and the journal is poisoned).
    pub fn append(&mut self, record: &Record, durability: Durability) -> Result<(), JournalError> {
        self.check_usable()?;
        let frame = format::encode_frame(record).map_err(|len| JournalError::RecordTooLarge {
            len,
            max: MAX_RECORD_LEN,
        })?;
        let before = self.len;
        let written = self
            .hook(super::fault::FileOp::Write)
            .and_then(|()| self.file.write_all(&frame));
        if let Err(e) = written {
            self.poisoned = true;
            self.cut_failed_append(before);
            return Err(JournalError::io("append to journal", &self.path, e));
        }
        self.len += frame.len() as u64;
        self.records += 1;
        self.unsynced = true;
        self.unsynced_since.get_or_insert_with(Instant::now);
        match durability {
            Durability::Sync => self.sync(),
            Durability::Batched if self.last_sync.elapsed() >= BATCH_INTERVAL => self.sync(),
            Durability::Batched => Ok(()),
        }
    }

    /// Best effort after a failed append: cuts the file back to `len` (before the
    /// record), so that neither a partial frame nor a record whose append reported an
    /// error stays in it. The journal is poisoned either way.
    fn cut_failed_append(&mut self, len: u64) {
        if let Err(e) = self.file.set_len(len) {
            log::error!(
                "could not cut journal {} back to {len} bytes after a failed append: {e}",
                self.path.display()
            );
        }
        self.len = len;
    }

    /// fsyncs everything appended so far. After a failure the journal is poisoned: Linux
    /// may have dropped the dirty pages, so no later success could be trusted.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.check_usable()?;
        if !self.unsynced {
            return Ok(());
        }
        let synced = self
            .hook(super::fault::FileOp::Fsync)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = synced {
            self.poisoned = true;
            // Every record since the last fsync failed with it (a create among them
            // returns an error): none may turn up after a reopen. Their bytes are in the
            // page cache, so without this cut they would; a crash would lose them too.
            let (len, records) = self.durable;
            self.cut_failed_append(len);
            self.records = records;
            return Err(JournalError::io("fsync journal", &self.path, e));
        }
        self.unsynced = false;
        self.durable = (self.len, self.records);
        self.unsynced_since = None;
        self.last_sync = Instant::now();
        self.fsyncs += 1;
        PROCESS_FSYNCS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// When the batched records waiting for an fsync must be fsynced: [`BATCH_INTERVAL`]
    /// after the oldest of them was written. `None` when nothing waits.
    pub fn sync_due(&self) -> Option<Instant> {
        self.unsynced_since.map(|t| t + BATCH_INTERVAL)
    }

    /// Whether batched records are waiting for an fsync.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// fsyncs issued by this handle (appends and compactions), for benchmarks.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// Records currently in the file.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no records.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn hook(&self, op: super::fault::FileOp) -> std::io::Result<()> {
        match &self.fault {
            Some(h) => h.before(op),
            None => Ok(()),
        }
    }

    pub(super) fn check_usable(&self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::JournalPoisoned {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn count_fsync(&mut self) {
        self.fsyncs += 1;
        PROCESS_FSYNCS.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn replace_file(&mut self, file: File, len: u64, records: u64) {
        self.file = file;
        self.len = len;
        self.records = records;
        self.unsynced = false;
        self.durable = (len, records);
        self.unsynced_since = None;
        self.last_sync = Instant::now();
    }
}

/// Opens a store file for writing with mode 0600.
pub(super) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// fsyncs a directory so that a create or rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("fsync store directory", dir, e))
}

/// Creates an empty journal atomically: header to a temp file, fsync, rename, fsync dir.
fn create_empty(dir: &Path, path: &Path) -> Result<Journal, JournalError> {
    let tmp = dir.join(COMPACT_FILE);
    let mut f = create_private(&tmp).map_err(|e| JournalError::io("create journal", &tmp, e))?;
    f.write_all(&format::header())
        .and_then(|()| f.sync_all())
        .map_err(|e| JournalError::io("write journal header", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| JournalError::io("rename new journal into", path, e))?;
    sync_dir(dir)?;
    PROCESS_FSYNCS.fetch_add(2, Ordering::Relaxed);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| JournalError::io("open journal", path, e))?;
    file.seek(SeekFrom::End(0))
        .map_err(|e| JournalError::io("seek journal", path, e))?;
    Ok(Journal {
        path: path.to_path_buf(),
        file,
        len: HEADER_LEN as u64,
        records: 0,
        poisoned: false,
        unsynced: false,
        durable: (HEADER_LEN as u64, 0),
        unsynced_since: None,
        last_sync: Instant::now(),
        fsyncs: 2,
        skipped: 0,
        fault: None,
    })
}

/// Writes [`QUARANTINE_FILE`] durably, holding `next_id`: one past the highest upload
/// id the damaged part still shows, so that those ids are never handed out again even
/// if the cut-back journal is all that survives. An existing marker (an earlier
/// recovery that did not finish) keeps the higher of the two.
fn mark_quarantine(dir: &Path, next_id: u64) -> Result<(), JournalError> {
    let path = dir.join(QUARANTINE_FILE);
    let next_id = next_id.max(quarantine_floor(dir).unwrap_or(0));
    // Written aside and renamed: a cut mid-write must not cost an earlier marker's floor.
    let tmp = dir.join(format!("{QUARANTINE_FILE}.tmp"));
    create_private(&tmp)
        .and_then(|mut f| {
            f.write_all(next_id.to_string().as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(|e| JournalError::io("create quarantine marker", &path, e))?;
    sync_dir(dir)
}

/// The store's directory of response bodies.
pub(crate) const BODIES_DIR: &str = "bodies";

/// Where the response body of `id` is kept in the store `dir`.
pub(crate) fn body_file(dir: &Path, id: super::record::UploadId) -> PathBuf {
    dir.join(BODIES_DIR).join(id.to_string())
}

/// Whether the store's upload-file directories hold anything.
fn has_upload_files(dir: &Path) -> bool {
    ["spool", BODIES_DIR]
        .iter()
        .any(|d| fs::read_dir(dir.join(d)).is_ok_and(|mut entries| entries.next().is_some()))
}

/// The id floor a quarantine marker holds; `None` without a marker. A marker that does
/// not parse (damaged too) still marks the quarantine, with no floor.
pub(super) fn quarantine_floor(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join(QUARANTINE_FILE)).ok()?;
    let floor: u64 = text.trim().parse().unwrap_or(0);
    Some(if floor <= MAX_PLAUSIBLE_ID { floor } else { 0 })
}

/// A compaction that did not reach its rename leaves its temp file: the journal beside it
/// is complete, so the temp file is only in the way.
fn remove_stale_compaction(dir: &Path) -> Result<(), JournalError> {
    let tmp = dir.join(COMPACT_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => {
            log::info!(
                "removed {} left by an interrupted compaction",
                tmp.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JournalError::io("remove stale compaction file", &tmp, e)),
    }
}

fn truncate(file: &File, path: &Path, len: u64) -> Result<(), JournalError> {
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|e| JournalError::io("truncate journal", path, e))
}

/// Copies the damaged journal to the first free `journal.corrupt-N`, durably.
fn save_aside(dir: &Path, bytes: &[u8]) -> Result<PathBuf, JournalError> {
    for n in 1..=1000u32 {
        let path = dir.join(format!("{JOURNAL_FILE}.corrupt-{n}"));
        let mut f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(JournalError::io("create copy of damaged journal", &path, e)),
        };
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| JournalError::io("write copy of damaged journal", &path, e))?;
        sync_dir(dir)?;
        return Ok(path);
    }
    Err(JournalError::io(
        "find a free name for a copy of the damaged journal",
        dir,
        io::Error::other("journal.corrupt-1 to journal.corrupt-1000 all exist"),
    ))
}
