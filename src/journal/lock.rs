//! The store directory: created private (0700), and locked for as long as it is open.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::JournalError;

/// Name of the lock file inside the store. A separate file, not the journal itself:
/// compaction renames a new journal into place, and a lock on the old inode would be lost.
pub const LOCK_FILE: &str = "lock";

/// How long a contended lock is retried before the store counts as locked.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// An open, exclusively locked store directory. The lock is released when this is
/// dropped, or by the kernel when the process dies (SIGKILL included).
#[derive(Debug)]
pub struct StoreLock {
    dir: PathBuf,
    // Held for its flock; never read.
    _file: File,
}

impl StoreLock {
    /// Creates `dir` (mode 0700) if needed and takes its lock without waiting.
    ///
    /// # Errors
    /// [`JournalError::StoreLocked`] if another opener holds it (another process, or another
    /// `Uploader` in this one: flock locks belong to the open file, not the process);
    /// [`JournalError::Io`] if the directory cannot be created or the lock file opened.
    pub fn acquire(dir: &Path) -> Result<StoreLock, JournalError> {
        create_durably(dir)?;
        let meta =
            fs::metadata(dir).map_err(|e| JournalError::io("inspect store directory", dir, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            log::info!("tightening store directory {} to mode 0700", dir.display());
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| JournalError::io("set mode 0700 on store directory", dir, e))?;
        }
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| JournalError::io("open lock file", &path, e))?;
        // A contended lock is tried again for a moment: a child process that another
        // thread of this program is spawning holds a copy of every descriptor until it
        // execs, our lock included, so a store closed and reopened at that instant would
        // look locked. A real holder still holds it after the grace period.
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        loop {
            // Fully qualified: std's File::lock family (Rust >= 1.89) shares these names.
            match fs2::FileExt::try_lock_exclusive(&file) {
                Ok(()) => {
                    return Ok(StoreLock {
                        dir: dir.to_path_buf(),
                        _file: file,
                    })
                }
                Err(e) if is_contended(&e) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(JournalError::StoreLocked {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(JournalError::io("lock", &path, e)),
            }
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates `dir` (mode 0700) and any missing ancestors, and makes each new entry durable:
/// a directory created but not fsynced in its parent can vanish in a power cut, with
/// every upload file under it (an fsync of a file does not carry its parent's entry on
/// every file system).
fn create_durably(dir: &Path) -> Result<(), JournalError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| JournalError::io("create store directory", dir, e))?;
    for created in missing.iter().filter(|c| !c.as_os_str().is_empty()).rev() {
        // A relative path's first component lives in the working directory.
        let parent = created
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        super::file::sync_dir(parent)?;
    }
    Ok(())
}

fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}
