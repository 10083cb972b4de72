//! The files an upload owns in the store besides its journal records: the response body
//! (`bodies/<id>`) and a spooled source (`spool/<id>`).

pub(crate) mod body;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::model::UploadId;
use crate::Error;

const BODIES: &str = "bodies";
const SPOOL: &str = "spool";
const LOST: &str = "lost";

/// Creates the sub-directories (mode 0700).
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
    Ok(())
}

/// Where the response body of `id` is kept.
pub(crate) fn body_path(store: &Path, id: UploadId) -> PathBuf {
    store.join(BODIES).join(id.to_string())
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
/// `lost/` instead, which the crate never touches again.
pub(crate) fn handle_orphans(store: &Path, live: &[UploadId], quarantine: bool) {
    let lost = store.join(LOST);
    for d in [BODIES, SPOOL] {
        let Ok(entries) = fs::read_dir(store.join(d)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let keep = name
                .parse::<UploadId>()
                .is_ok_and(|id| live.binary_search(&id).is_ok());
            if keep {
                continue;
            }
            if quarantine && !name.ends_with(".part") {
                let to = lost.join(format!("{d}-{name}"));
                let moved = DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&lost)
                    .and_then(|()| fs::rename(e.path(), &to));
                match moved {
                    Ok(()) => log::error!(
                        "kept {} as {}: the journal was damaged and no longer lists it",
                        e.path().display(),
                        to.display()
                    ),
                    Err(err) => log::error!("could not move {} aside: {err}", e.path().display()),
                }
            } else {
                log::info!("removing orphaned store file {}", e.path().display());
                remove_quietly(&e.path());
            }
        }
    }
}
