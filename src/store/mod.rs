//! The files an upload owns in the store besides its journal records: the response body
//! (`bodies/<id>`) and a spooled source (`spool/<id>`).

pub(crate) mod body;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::journal::format::MAX_PLAUSIBLE_ID;
use crate::journal::State;
use crate::model::UploadId;
use crate::Error;

const BODIES: &str = crate::journal::BODIES_DIR;
const SPOOL: &str = "spool";
const LOST: &str = "lost";

/// Creates the sub-directories (mode 0700), durably: a sub-directory whose entry did not
/// reach the disk would take every file in it along in a power cut.
pub(crate) fn create_dirs(store: &Path) -> Result<(), Error> {
    for d in [BODIES, SPOOL] {
        let p = store.join(d);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)
            .map_err(|e| Error::io("create store directory", &p, e))?;
        // An existing directory keeps its mode: tighten it like the store itself.
        let mode = fs::metadata(&p)
            .map_err(|e| Error::io("inspect store directory", &p, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            log::info!("tightening store directory {} to mode 0700", p.display());
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("set mode 0700 on store directory", &p, e))?;
        }
    }
    // Always, not only when this open created them: an open that created them and was
    // cut before this fsync leaves directories whose entries may not be on disk.
    sync_dir(store)?;
    Ok(())
}

/// fsyncs a directory, so that a create, rename or unlink in it survives a power cut
/// (the journal's own, as the crate's error).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    Ok(crate::journal::sync_dir(dir)?)
}

/// Makes the directory entry of `path` (just created or renamed) durable: an fsync of
/// its directory, or, where this process may not read that directory (a member of a
/// store's client group writing into its inbox, mode 2730), a `syncfs` of the file
/// system that holds it, through the file itself.
pub(crate) fn sync_entry(path: &Path) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(path);
    match sync_dir(dir) {
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::PermissionDenied => {
            let f = fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
            nix::unistd::syncfs(&f).map_err(|e| Error::io("syncfs", path, e.into()))
        }
        other => other,
    }
}

/// Where the response body of `id` is kept.
pub(crate) fn body_path(store: &Path, id: UploadId) -> PathBuf {
    crate::journal::body_file(store, id)
}

/// Where the spooled source of `id` is kept.
pub(crate) fn spool_path(store: &Path, id: UploadId) -> PathBuf {
    store.join(SPOOL).join(id.to_string())
}

fn remove_quietly(p: &Path) {
    match fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("could not remove {}: {e}", p.display()),
    }
}

/// Deletes every file of `id`.
pub(crate) fn remove_upload_files(store: &Path, id: UploadId) {
    let body = body_path(store, id);
    remove_quietly(&body);
    remove_quietly(&body.with_extension("part"));
    let spool = spool_path(store, id);
    remove_quietly(&spool);
    remove_quietly(&spool.with_extension("part"));
}

/// Deals with files of uploads the journal does not hold. After a clean open they are
/// crash leftovers (a crash between spooling and the create record, or between a removal
/// record and the deletes, or a half-written body) and are deleted. When the journal was
/// damaged (`quarantine`), they may belong to uploads the journal lost: they are moved to
/// `lost/` instead (`.part` files too: a store written by an older version may hold a
/// complete source only under that name), which the crate never touches again.
///
/// A live upload's spooled source is never deleted: if only its `.part` is there (a
/// store written before the spool's rename was made durable lost the rename in a power
/// cut), and it matches the size and time the journal recorded, it is renamed into place.
///
/// Returns what it saw and whether everything it had to keep is durably kept.
pub(crate) fn handle_orphans(store: &Path, live: &State, quarantine: bool) -> Orphans {
    let lost = store.join(LOST);
    let mut out = Orphans {
        next_id: 0,
        all_kept: true,
    };
    let mut see = |id: UploadId| {
        if id < MAX_PLAUSIBLE_ID {
            out.next_id = out.next_id.max(id + 1);
        }
    };
    if let Ok(entries) = fs::read_dir(&lost) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let id = name
                .split_once('-')
                .and_then(|(_, rest)| rest.trim_end_matches(".part").parse::<UploadId>().ok());
            if let Some(id) = id {
                see(id);
            }
        }
    }
    let mut moved_from = Vec::new();
    for d in [BODIES, SPOOL] {
        let dir = store.join(d);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                log::error!("could not list {}: {e}", dir.display());
                out.all_kept = !quarantine;
                continue;
            }
        };
        let mut restored = false;
        let mut moved = false;
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let (stem, part) = match name.strip_suffix(".part") {
                Some(stem) => (stem, true),
                None => (&*name, false),
            };
            let id = stem.parse::<UploadId>().ok();
            if let Some(id) = id {
                see(id);
            }
            let owner = id.and_then(|id| live.uploads.get(&id));
            match owner {
                Some(_) if !part => continue,
                Some(u) if d == SPOOL && restore_spool(&e.path(), u) => {
                    restored = true;
                    continue;
                }
                _ => {}
            }
            if quarantine {
                let to = lost.join(format!("{d}-{name}"));
                let done = DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&lost)
                    .and_then(|()| fs::rename(e.path(), &to));
                match done {
                    Ok(()) => {
                        log::error!(
                            "kept {} as {}: the journal was damaged and no longer lists it",
                            e.path().display(),
                            to.display()
                        );
                        moved = true;
                    }
                    Err(err) => {
                        log::error!("could not move {} aside: {err}", e.path().display());
                        out.all_kept = false;
                    }
                }
            } else {
                log::info!("removing orphaned store file {}", e.path().display());
                remove_quietly(&e.path());
            }
        }
        if restored && sync_dir(&dir).is_err() {
            out.all_kept = false;
        }
        if moved {
            moved_from.push(dir);
        }
    }
    // A move is durable once its destination is: `lost/`, then its entry in the store,
    // then the source directories.
    if !moved_from.is_empty() {
        let dirs = [lost.clone(), store.to_path_buf()];
        for dir in dirs.iter().chain(&moved_from) {
            if let Err(e) = sync_dir(dir) {
                log::error!("{e}");
                out.all_kept = false;
            }
        }
    }
    out
}

/// What [`handle_orphans`] saw and did.
pub(crate) struct Orphans {
    /// One past the highest upload id any file in the store is named after (`lost/`
    /// included): ids that were handed out, whatever the journal says.
    pub next_id: u64,
    /// Everything that had to be kept (moved to `lost/`, restored) is, durably. When
    /// not, a quarantine must stay in force for the next open.
    pub all_kept: bool,
}

/// Renames the `.part` at `part` to the spooled source of `u` if `u`'s source is spooled,
/// its final file is missing, and the `.part` is the file the journal recorded.
fn restore_spool(part: &Path, u: &crate::journal::UploadState) -> bool {
    let crate::model::Body::File(src) = &u.request.body else {
        return false;
    };
    // The journal records the canonical path; the store may have been opened by another.
    let same_dir = |a: &Path, b: &Path| match (a.parent(), b.parent()) {
        (Some(a), Some(b)) => fs::canonicalize(a).ok() == fs::canonicalize(b).ok(),
        _ => false,
    };
    let named = src.path.file_name() == part.file_stem() && same_dir(&src.path, part);
    if !src.spooled || !named || src.path.exists() {
        return false;
    }
    let matches = fs::File::open(part)
        .map_err(|e| e.to_string())
        .and_then(|f| crate::source::check(src, &f).map_err(|e| e.to_string()));
    if let Err(why) = matches {
        log::warn!(
            "upload {}: its spooled source is missing and {} is not it ({why}); kept",
            u.id,
            part.display()
        );
        // Kept, not deleted: it may be all that is left of the upload's bytes.
        return true;
    }
    match fs::rename(part, &src.path) {
        Ok(()) => {
            log::warn!(
                "upload {}: its spooled source's rename was lost (a power cut); restored it from {}",
                u.id,
                part.display()
            );
            true
        }
        Err(e) => {
            log::error!("could not restore {}: {e}", src.path.display());
            true
        }
    }
}
