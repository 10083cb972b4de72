//! The inbox: submissions waiting for an owner, one `<key>.req` file each (the
//! request's creation record), with the spooled body of a reader request beside it as
//! `<key>.body`. A `.req` is written to a temporary name, fsynced, renamed into place
//! and the directory fsynced: once it has its name it is whole and durable. Submissions
//! the owner could not admit are moved to `refused/` with their reason.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::journal::portable;
use crate::journal::record::FailureV1;
use crate::model::{Failure, SubmissionKey};
use crate::{store, Error};

use super::{key_hex, parse_key};

const REQ: &str = "req";
const BODY: &str = "body";
const REFUSED: &str = "refused";
const WHY: &str = "why";

pub(super) fn req_path(inbox: &Path, key: &SubmissionKey) -> PathBuf {
    inbox.join(format!("{}.{REQ}", key_hex(key)))
}

pub(super) fn body_path(inbox: &Path, key: &SubmissionKey) -> PathBuf {
    inbox.join(format!("{}.{BODY}", key_hex(key)))
}

fn refused_dir(inbox: &Path) -> PathBuf {
    inbox.join(REFUSED)
}

/// Makes `refused/` the owner's own (mode 0700): the inbox is writable by the client
/// group, so anything else there (a member's directory, a symlink, a file) is moved
/// aside first; the owner writes into it, and must not through anyone's symlink.
pub(super) fn prepare_refused(inbox: &Path) -> Result<(), Error> {
    let dir = refused_dir(inbox);
    let ours = |m: &fs::Metadata| m.file_type().is_dir() && m.uid() == super::peer::euid();
    match fs::symlink_metadata(&dir) {
        Ok(m) if ours(&m) => {}
        Ok(_) => {
            let aside = inbox.join(format!(
                "{REFUSED}.untrusted-{}",
                crate::scheduler::now_ms()
            ));
            log::error!(
                "{} is not the owner's directory; moved to {}",
                dir.display(),
                aside.display()
            );
            fs::rename(&dir, &aside).map_err(|e| Error::io("move aside", &dir, e))?;
            create_refused(&dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_refused(&dir)?,
        Err(e) => return Err(Error::io("inspect", &dir, e)),
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("set mode 0700 on", &dir, e))
}

fn create_refused(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create", dir, e))
}

/// Writes `bytes` as the submission `key`, durably.
pub(super) fn write_req(
    inbox: &Path,
    key: &SubmissionKey,
    bytes: &[u8],
    mode: u32,
) -> Result<(), Error> {
    let path = req_path(inbox, key);
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode exactly, whatever the umask: the owner reads it through the group.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write a submission into the inbox", &tmp, e));
    }
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename a submission into", &path, e))?;
    store::sync_entry(&path)
}

/// The submissions waiting, oldest first.
pub(super) fn pending(inbox: &Path) -> Vec<(SubmissionKey, PathBuf)> {
    let Ok(dir) = fs::read_dir(inbox) else {
        return Vec::new();
    };
    let mut out: Vec<(std::time::SystemTime, SubmissionKey, PathBuf)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != REQ {
                return None;
            }
            let key = parse_key(p.file_stem()?.to_str()?)?;
            let at = e.metadata().ok()?.modified().ok()?;
            Some((at, key, p))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, k, p)| (k, p)).collect()
}

/// Reads a `.req` file of at most `max` bytes.
pub(super) fn read_req(file: &mut File, max: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("over the {max}-byte cap"),
        ));
    }
    Ok(bytes)
}

/// Moves a submission the owner cannot admit aside, with its reason, so that its client
/// can learn why ([`refusal`]) and it is not tried again.
pub(super) fn refuse(inbox: &Path, key: &SubmissionKey, path: &Path, why: &Error) {
    let dir = refused_dir(inbox);
    let moved = prepare_refused(inbox)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|()| {
            let reason = postcard::to_allocvec(&portable::failure_record(&why.to_failure()))
                .unwrap_or_default();
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dir.join(format!("{}.{WHY}", key_hex(key))))?;
            f.write_all(&reason)?;
            fs::rename(path, dir.join(format!("{}.{REQ}", key_hex(key))))
        });
    if let Err(e) = moved {
        log::error!(
            "could not move refused submission {} aside ({e}); removing it",
            path.display()
        );
        let _ = fs::remove_file(path);
    }
    let body = body_path(inbox, key);
    if body.exists() {
        let _ = fs::rename(&body, dir.join(format!("{}.{BODY}", key_hex(key))));
    }
    let _ = store::sync_dir(inbox);
}

/// Why the owner refused submission `key`, if it did.
pub(super) fn refusal(inbox: &Path, key: &SubmissionKey) -> Option<Failure> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(refused_dir(inbox).join(format!("{}.{WHY}", key_hex(key))))
        .ok()?;
    let bytes = read_req(&mut f, 64 * 1024).ok()?;
    let f: FailureV1 = postcard::from_bytes(&bytes).ok()?;
    Some(portable::failure_of(&f))
}

/// Files a crashed client left behind: temporary `.tmp`/`.part` files, and `.body`
/// files of no waiting submission, older than `age`; and bodies of submissions already
/// created (`created` says which keys).
pub(super) fn sweep(
    inbox: &Path,
    age: std::time::Duration,
    created: impl Fn(&SubmissionKey) -> bool,
) {
    let Ok(dir) = fs::read_dir(inbox) else {
        return;
    };
    for e in dir.filter_map(|e| e.ok()) {
        let p = e.path();
        let Some(ext) = p.extension().and_then(|x| x.to_str()) else {
            continue;
        };
        let key = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| parse_key(s.split('.').next().unwrap_or(s)));
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        let stale = match (ext, key) {
            ("tmp" | "part", Some(_)) => old,
            (BODY, Some(k)) => created(&k) || (old && !req_path(inbox, &k).exists()),
            _ => false,
        };
        if stale {
            log::info!("removing {} left in the inbox", p.display());
            let _ = fs::remove_file(&p);
        }
    }
}
