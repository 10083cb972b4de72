//! How a request becomes an upload: [`prepare`] turns the program's [`UploadRequest`]
//! into its journal form (sources recorded, a reader spooled, multipart framing
//! checked), which needs nothing of the owner, so a [`crate::Client`] does it in its own
//! process; [`Admission::admit`] is what only the store's owner can check (the
//! credentials provider and client identity a request names, the protocol's limits);
//! [`allocate_id`] and [`submit`] have the scheduler persist it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

#[cfg(any(feature = "s3", feature = "azure"))]
use crate::model::Protocol;
use std::sync::atomic::Ordering;

use crossbeam_channel::bounded;

use crate::command::Command;
use crate::model::{self, Body, Multipart, PartContent, Request, Source, UploadId};
use crate::multipart;
use crate::request::{Part, RequestBody, UploadRequest};
use crate::scheduler::now_ms;
use crate::shared::Shared;
use crate::{source, store, Error};

/// The checks of a request that need no file: URL, headers, method, the protocol's own.
pub(crate) fn validate(request: &UploadRequest) -> Result<(), Error> {
    request.validate()?;
    #[cfg(feature = "s3")]
    crate::s3_object::validate_request(request)?;
    #[cfg(feature = "gcs")]
    crate::gcs_upload::validate_request(request)?;
    #[cfg(feature = "azure")]
    crate::azure_blob::validate_request(request)?;
    Ok(())
}

/// Turns a validated request into its journal form. A reader body goes to `spool`,
/// which returns the recorded spooled file.
pub(crate) fn prepare(
    r: UploadRequest,
    spool: impl FnOnce(Box<dyn io::Read + Send>) -> Result<Source, Error>,
) -> Result<Request, Error> {
    let idempotent = r.is_idempotent();
    let body = match r.body {
        RequestBody::File(path) => Body::File(source::record(&path, false)?),
        RequestBody::Reader(reader) => Body::File(spool(reader)?),
        RequestBody::Multipart {
            subtype,
            boundary,
            parts,
        } => {
            if parts.is_empty() {
                return Err(Error::InvalidRequest {
                    reason: "a multipart request needs at least one part".into(),
                });
            }
            if !crate::request::is_token(&subtype) {
                return Err(Error::InvalidRequest {
                    reason: format!("multipart subtype {subtype:?} is not a token"),
                });
            }
            let boundary = boundary.unwrap_or_else(multipart::random_boundary);
            multipart::validate_boundary(&boundary)?;
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                out.push(persist_part(p)?);
            }
            Body::Multipart(Multipart {
                subtype,
                boundary,
                parts: out,
            })
        }
    };
    Ok(Request {
        url: r.url,
        method: r.method,
        headers: r.headers,
        body,
        priority: r.priority,
        group: r.group,
        cost: r.cost,
        protocol: r.protocol,
        idempotent,
        credentials: r.credentials,
        client_identity: r.client_identity,
        submission: None,
        submitter: None,
    })
}

/// Copies a reader into `path` (created with `mode`), fsynced, and records it as a
/// spooled source. The
/// rename is durable before this returns: on btrfs an fsync of the journal does not
/// carry a rename in another directory along.
pub(crate) fn spool(
    mut reader: Box<dyn io::Read + Send>,
    path: &Path,
    mode: u32,
) -> Result<Source, Error> {
    let tmp = path.with_extension("part");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("create spool file", &tmp, e))?;
    // The mode exactly, whatever the umask (a client group's owner links the file, and
    // the kernel's protected_hardlinks wants read and write for that).
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set the mode of", &tmp, e))?;
    let copied = io::copy(&mut reader, &mut f).and_then(|_| {
        f.flush()?;
        f.sync_all()
    });
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("spool the reader into", &tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename spool file", path, e))?;
    store::sync_entry(path)?;
    source::record(path, true)
}

/// Hands out the next upload id. Never wraps: a store whose journal says the ids are
/// spent refuses new uploads rather than handing out id 0 again (its spool would
/// replace a live one's).
pub(crate) fn allocate_id(shared: &Shared) -> Result<UploadId, Error> {
    shared
        .next_id
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_add(1))
        .map_err(|_| Error::InvalidRequest {
            reason: "this store has handed out every upload id; use a new store".into(),
        })
}

/// Has the scheduler persist an admitted request under `id` (fsynced when this
/// returns) and returns its id: `id`, or the upload its submission key was created under
/// before, in which case `id`'s files are removed. On an error nothing was persisted and
/// `id`'s files are removed too.
pub(crate) fn submit(shared: &Shared, id: UploadId, request: Request) -> Result<UploadId, Error> {
    let (tx, rx) = bounded(1);
    let sent = shared.tx.send(Command::Create {
        id,
        created_ms: now_ms(),
        request: Box::new(request),
        reply: tx,
    });
    let result = match sent {
        Ok(()) => rx.recv().unwrap_or(Err(Error::ShutDown)),
        Err(_) => Err(Error::ShutDown),
    };
    if result.as_ref().map_or(true, |got| *got != id) {
        store::remove_upload_files(&shared.store_dir, id);
    }
    result
}

/// What only the store's owner knows: the providers and identities registered with it.
#[derive(Clone)]
pub(crate) struct Admission {
    /// The credentials providers (the workers see the same map).
    pub providers: crate::credentials::Providers,
    /// The roots and client identities (the scheduler sees the same).
    pub tls: crate::http::Roots,
}

impl Admission {
    /// Checks a prepared request against the owner, and fits the protocol's part size
    /// to the body.
    pub fn admit(&self, request: &mut Request) -> Result<(), Error> {
        if let Some(name) = &request.credentials {
            self.check_provider(name)?;
        }
        if let Some(name) = &request.client_identity {
            if !self.tls.has_identity(name) {
                return Err(Error::InvalidCertificate {
                    reason: format!(
                        "no client identity is registered under the name {name:?} (see \
                         UploaderBuilder::client_identity)"
                    ),
                });
            }
        }
        #[cfg(feature = "s3")]
        if let (Protocol::S3(t), Body::File(src)) = (&mut request.protocol, &request.body) {
            crate::s3_object::fit_part_size(t, src.size)?;
            let name = t.credentials.clone();
            self.check_provider(&name)?;
        }
        #[cfg(feature = "azure")]
        if let (Protocol::Azure(t), Body::File(src)) = (&request.protocol, &request.body) {
            crate::azure_blob::check_fits(t, src.size)?;
        }
        Ok(())
    }

    fn check_provider(&self, name: &str) -> Result<(), Error> {
        if self.providers.contains(name) {
            return Ok(());
        }
        Err(Error::Credentials {
            provider: name.to_string(),
            message: "no provider is registered under this name (see \
                      UploaderBuilder::credentials)"
                .into(),
            permanent: true,
        })
    }
}

fn persist_part(p: Part) -> Result<model::Part, Error> {
    Ok(match p {
        Part::Text { name, value } => {
            multipart::validate_text("field name", &name)?;
            model::Part {
                name,
                file_name: None,
                content_type: None,
                content: PartContent::Text(value),
            }
        }
        Part::File {
            name,
            path,
            file_name,
            content_type,
        } => {
            multipart::validate_text("field name", &name)?;
            let file_name = file_name.unwrap_or_else(|| {
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "file".into())
            });
            multipart::validate_text("file name", &file_name)?;
            let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
            multipart::validate_text("content type", &content_type)?;
            model::Part {
                name,
                file_name: Some(file_name),
                content_type: Some(content_type),
                content: PartContent::File(source::record(&path, false)?),
            }
        }
    })
}
