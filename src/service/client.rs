//! [`Client`]: another process's way to a store that an owner holds.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::admission;
use crate::journal::portable;
use crate::model::{Body, PartContent, SubmissionKey, UploadId};
use crate::progress::{Progress, ResponseInfo};
use crate::{Error, RequestInfo, Status, UploadRequest};

use super::inbox;
use super::wire::{self, Answer, Ask, Found, WireOp, WireUpload};
use super::{inbox_dir, key_hex, new_key, short_path, socket_path, SOCKET};

/// How long a client retries an owner that answers "busy".
const BUSY_FOR: Duration = Duration::from_secs(5);
/// How long a client waits for an answer to a create or a command.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A process's handle on a store that another process owns (the one whose
/// [`crate::Uploader`] holds it, such as `bgupload run`). It offers what the owner's
/// handles do: create uploads, list them, read their progress, pause, resume, cancel
/// and remove them, read their responses, and follow or wait for them.
///
/// A submission is durable when [`Client::create_upload`] returns `Ok`, by the same
/// rule as [`crate::Uploader::create_upload`]: the owner fsynced it into its journal,
/// or, if no owner runs (or the owner died while it was being asked), it was fsynced
/// into the store's inbox, and the next owner creates it when it starts. A submission
/// is created at most once, whichever way it went.
///
/// Only processes of the store's owning user, or of the group its owner configured
/// ([`crate::UploaderBuilder::client_group`]), are admitted; the kernel says who a
/// process is. Everyone else gets [`Error::PermissionDenied`], and nothing changes.
///
/// ```no_run
/// use background_transfer::{Client, UploadRequest};
///
/// let client = Client::connect("/var/lib/bgupload")?;
/// let submitted = client.create_upload(UploadRequest::put("http://example.com/a", "/data/a"))?;
/// if let Some(id) = submitted.id() {
///     println!("upload {id}: {:?}", client.get(id)?.progress.status);
/// }
/// # Ok::<(), background_transfer::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    store: PathBuf,
    inbox: PathBuf,
    /// This process is not of the store's owning user (a member of its client group):
    /// it hands over copies of its files, never their paths.
    foreign: bool,
}

/// Where a submission went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The owner created it under this id.
    Created {
        /// The upload's id.
        id: UploadId,
        /// The submission's key.
        key: SubmissionKey,
    },
    /// No owner took it (none runs, or it went away mid-call): it waits durably in the
    /// inbox, and the next owner creates it. [`Client::find`] tells its id then.
    Queued {
        /// The submission's key.
        key: SubmissionKey,
    },
}

impl Submitted {
    /// The submission's key.
    pub fn key(&self) -> SubmissionKey {
        match self {
            Submitted::Created { key, .. } | Submitted::Queued { key } => *key,
        }
    }

    /// The upload's id, if the owner created it already.
    pub fn id(&self) -> Option<UploadId> {
        match self {
            Submitted::Created { id, .. } => Some(*id),
            Submitted::Queued { .. } => None,
        }
    }
}

/// What became of a submission ([`Client::find`]).
#[derive(Debug)]
pub enum Submission {
    /// Created under this id.
    Created(UploadId),
    /// Waiting in the inbox for an owner.
    Waiting,
    /// The owner could not admit it when it took it from the inbox (for example the
    /// credentials provider it names is not registered with the owner).
    Refused(Error),
    /// Not known: never submitted, or created and removed since.
    Unknown,
}

/// An upload as a client sees it: a snapshot of what the owner's
/// [`crate::Upload`] handle shows.
#[derive(Debug)]
#[non_exhaustive]
pub struct RemoteUpload {
    /// The upload's id.
    pub id: UploadId,
    /// What it sends.
    pub request: RequestInfo,
    /// Its progress.
    pub progress: Progress,
    /// The server's response, once there is one.
    pub response: Option<ResponseInfo>,
    /// Why it failed, or the last attempt's error while it waits.
    pub error: Option<Error>,
}

impl RemoteUpload {
    fn of(w: WireUpload) -> Result<RemoteUpload, Error> {
        let progress = w.progress.progress().ok_or_else(|| Error::Protocol {
            message: "the owner reported a status this build does not know (a newer owner?)".into(),
        })?;
        Ok(RemoteUpload {
            id: w.id,
            request: w.info.info(),
            progress,
            response: w.response.map(|r| r.info()),
            error: w.error.as_ref().map(wire::error_of),
        })
    }

    /// What [`crate::Upload::wait`] returns for this snapshot, if it has ended.
    fn outcome(&self) -> Option<Result<ResponseInfo, Error>> {
        match self.progress.status {
            Status::Completed => Some(self.response.clone().ok_or(Error::NotFound { id: self.id })),
            Status::Canceled => Some(Err(Error::Canceled)),
            Status::Error => Some(Err(self
                .error
                .as_ref()
                .map(|e| Error::from_failure(&e.to_failure()))
                .unwrap_or(Error::Canceled))),
            _ => None,
        }
    }
}

/// The snapshots of one upload as it changes ([`Client::follow`]); it ends after the
/// snapshot that shows the upload ended.
#[derive(Debug)]
pub struct Follow {
    stream: Option<UnixStream>,
    /// The answer read with the request.
    first: Option<Answer>,
    store: PathBuf,
}

impl Iterator for Follow {
    type Item = Result<RemoteUpload, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = self.stream.as_mut()?;
        let answer = match self.first.take() {
            Some(a) => Ok(a),
            None => wire::read_frame::<Answer>(stream, wire::MAX_ANSWER, None),
        };
        match answer {
            Ok(Answer::Upload(u)) => Some(RemoteUpload::of(*u)),
            Ok(Answer::Done) => {
                self.stream = None;
                None
            }
            Ok(Answer::Failed(f)) => {
                self.stream = None;
                Some(Err(wire::error_of(&f)))
            }
            Ok(_) => {
                self.stream = None;
                Some(Err(unexpected(&self.store)))
            }
            Err(_) => {
                // The owner went away (stopped, or died).
                self.stream = None;
                Some(Err(Error::NoOwner {
                    path: self.store.clone(),
                }))
            }
        }
    }
}

fn unexpected(store: &Path) -> Error {
    Error::io(
        "understand the owner's answer on",
        socket_path(store),
        io::Error::new(io::ErrorKind::InvalidData, "unexpected answer"),
    )
}

impl Client {
    /// A client of the store at `store_dir`. Needs no owner to be running: submissions
    /// made while none runs wait in the store's inbox. Creates the store directory
    /// (mode 0700) if it does not exist yet.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] if this process may not reach the store;
    /// [`Error::Io`] if the directory cannot be created.
    pub fn connect(store_dir: impl AsRef<Path>) -> Result<Client, Error> {
        let dir = store_dir.as_ref();
        let denied = |e: io::Error, op: &'static str| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                Error::PermissionDenied { path: dir.into() }
            } else {
                Error::io(op, dir, e)
            }
        };
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| denied(e, "create store directory"))?;
                crate::store::sync_entry(dir)?;
                std::fs::metadata(dir).map_err(|e| denied(e, "inspect store directory"))?
            }
            Err(e) => return Err(denied(e, "inspect store directory")),
        };
        let store = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let foreign = meta.uid() != super::peer::euid();
        Ok(Client {
            inbox: inbox_dir(&store),
            store,
            foreign,
        })
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store
    }

    /// Whether an owner holds the store and answers now.
    pub fn owner_running(&self) -> bool {
        matches!(self.ask(&Ask::Poke), Ok(Answer::Done))
    }

    fn permission(&self, e: io::Error, op: &'static str, path: &Path) -> Error {
        if e.kind() == io::ErrorKind::PermissionDenied {
            Error::PermissionDenied {
                path: self.store.clone(),
            }
        } else {
            Error::io(op, path, e)
        }
    }

    /// Submits a new upload. Files are read by the owner from their paths, as with
    /// [`crate::Uploader::create_upload`]; a reader body is spooled into the store's
    /// inbox first. A process of the client group (not the store's user) hands over a
    /// copy of its file instead, since the owner must not read files for it that it
    /// could not read itself.
    ///
    /// # Errors
    /// What [`crate::Uploader::create_upload`] returns for a bad request or a missing
    /// source; the owner's refusal (for example a credentials provider it does not
    /// have); [`Error::PermissionDenied`]; [`Error::Io`] if the inbox cannot be
    /// written. Every error but one means nothing was persisted: an [`Error::Io`]
    /// writing the inbox after the owner went away mid-call, when the owner may have
    /// created the upload before it went (as with any call whose answer is lost).
    pub fn create_upload(&self, request: UploadRequest) -> Result<Submitted, Error> {
        admission::validate(&request)?;
        let key = new_key().map_err(|e| Error::io("draw a submission key", "", e))?;
        if !self.inbox.is_dir() {
            DirBuilder::new()
                .mode(0o700)
                .create(&self.inbox)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| self.permission(e, "create the inbox", &self.inbox))?;
            // Its entry is durable before the submission in it is.
            crate::store::sync_entry(&self.inbox)?;
        }
        let mode = if self.foreign { 0o660 } else { 0o600 };
        let body = inbox::body_path(&self.inbox, &key);
        let spool = |r| {
            admission::spool(r, &body, mode).map_err(|e| match e {
                Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                    Error::PermissionDenied {
                        path: self.store.clone(),
                    }
                }
                e => e,
            })
        };
        let mut prepared = admission::prepare(request, spool)?;
        let cleanup = || {
            let _ = std::fs::remove_file(&body);
        };
        if self.foreign {
            // What the owner refuses a member of its group (its credentials, identities
            // and the cloud protocols that need them), refused here too: such a request
            // must not wait in the inbox for a refusal.
            let owners_keys = prepared.credentials.is_some()
                || prepared.client_identity.is_some()
                || !matches!(
                    prepared.protocol,
                    crate::model::Protocol::Plain | crate::model::Protocol::Tus { .. }
                );
            if owners_keys {
                cleanup();
                return Err(Error::PermissionDenied {
                    path: self.store.clone(),
                });
            }
            match &mut prepared.body {
                Body::File(src) if !src.spooled => {
                    let file = crate::source::open_unchanged(src)?;
                    *src = spool(Box::new(file))?;
                }
                Body::File(_) => {}
                Body::Multipart(mp) => {
                    if mp
                        .parts
                        .iter()
                        .any(|p| matches!(p.content, PartContent::File(_)))
                    {
                        return Err(Error::PermissionDenied {
                            path: self.store.clone(),
                        });
                    }
                }
            }
        }
        prepared.submission = Some(key);
        let bytes = portable::encode_request(&prepared, crate::scheduler::now_ms());
        // The frame around it (length, version, the message's own framing) must fit
        // the owner's cap too.
        if bytes.len() + 16 > wire::MAX_ASK {
            cleanup();
            return Err(Error::RecordTooLarge {
                len: bytes.len(),
                max: wire::MAX_ASK - 16,
            });
        }
        match self.ask(&Ask::Create(bytes.clone())) {
            Ok(Answer::Created(id)) => Ok(Submitted::Created { id, key }),
            Ok(Answer::Failed(f)) if !is_busy(&wire::error_of(&f)) => {
                cleanup();
                Err(wire::error_of(&f))
            }
            Ok(Answer::Failed(_)) => self.queue(&key, &bytes, mode, "the owner stays busy"),
            Ok(_) => {
                cleanup();
                Err(unexpected(&self.store))
            }
            Err(e @ Error::PermissionDenied { .. }) => {
                cleanup();
                Err(e)
            }
            // No owner, or it went away before it answered: the inbox holds it until
            // one takes it (and creates it once, if this one already took it).
            Err(why) => self.queue(&key, &bytes, mode, &why.to_string()),
        }
    }

    /// Leaves a submission in the inbox, durably, and pokes the owner if one runs.
    fn queue(
        &self,
        key: &SubmissionKey,
        bytes: &[u8],
        mode: u32,
        why: &str,
    ) -> Result<Submitted, Error> {
        log::debug!("submission {} goes to the inbox: {why}", key_hex(key));
        inbox::write_req(&self.inbox, key, bytes, mode).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                Error::PermissionDenied {
                    path: self.store.clone(),
                }
            }
            e => e,
        })?;
        let _ = self.ask(&Ask::Poke);
        Ok(Submitted::Queued { key: *key })
    }

    /// What became of a submission. Works without an owner too (it then looks at the
    /// inbox only, so a submission the last owner created reads as `Unknown`).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::Io`] if the owner's answer is broken.
    pub fn find(&self, key: &SubmissionKey) -> Result<Submission, Error> {
        match self.ask(&Ask::Find(*key)) {
            Ok(Answer::Found(f)) => Ok(match f {
                Found::Created(id) => Submission::Created(id),
                Found::Waiting => Submission::Waiting,
                Found::Refused(f) => Submission::Refused(wire::error_of(&f)),
                Found::Unknown => Submission::Unknown,
            }),
            Ok(Answer::Failed(f)) => Err(wire::error_of(&f)),
            Ok(_) => Err(unexpected(&self.store)),
            Err(Error::NoOwner { .. }) => Ok(if inbox::req_path(&self.inbox, key).exists() {
                Submission::Waiting
            } else {
                match inbox::refusal(&self.inbox, key) {
                    Some(f) => Submission::Refused(Error::from_failure(&f)),
                    None => Submission::Unknown,
                }
            }),
            Err(e) => Err(e),
        }
    }

    /// Every upload in the store, in id order.
    ///
    /// # Errors
    /// [`Error::NoOwner`] if no owner runs; [`Error::PermissionDenied`].
    pub fn uploads(&self) -> Result<Vec<RemoteUpload>, Error> {
        match self.ask(&Ask::List)? {
            Answer::Uploads(list) => list.into_iter().map(RemoteUpload::of).collect(),
            Answer::Failed(f) => Err(wire::error_of(&f)),
            _ => Err(unexpected(&self.store)),
        }
    }

    /// One upload.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn get(&self, id: UploadId) -> Result<RemoteUpload, Error> {
        match self.ask(&Ask::Get(id))? {
            Answer::Upload(u) => RemoteUpload::of(*u),
            Answer::Failed(f) => Err(wire::error_of(&f)),
            _ => Err(unexpected(&self.store)),
        }
    }

    fn op(&self, id: UploadId, op: WireOp) -> Result<(), Error> {
        match self.ask(&Ask::Op(id, op))? {
            Answer::Done => Ok(()),
            Answer::Failed(f) => Err(wire::error_of(&f)),
            _ => Err(unexpected(&self.store)),
        }
    }

    /// [`crate::Upload::pause`], through the owner.
    ///
    /// # Errors
    /// What `Upload::pause` returns; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn pause(&self, id: UploadId) -> Result<(), Error> {
        self.op(id, WireOp::Pause)
    }

    /// [`crate::Upload::resume`], through the owner.
    ///
    /// # Errors
    /// What `Upload::resume` returns; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn resume(&self, id: UploadId) -> Result<(), Error> {
        self.op(id, WireOp::Resume)
    }

    /// [`crate::Upload::cancel`], through the owner.
    ///
    /// # Errors
    /// What `Upload::cancel` returns; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn cancel(&self, id: UploadId) -> Result<(), Error> {
        self.op(id, WireOp::Cancel)
    }

    /// [`crate::Upload::remove`], through the owner.
    ///
    /// # Errors
    /// What `Upload::remove` returns; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn remove(&self, id: UploadId) -> Result<(), Error> {
        self.op(id, WireOp::Remove)
    }

    /// [`crate::Upload::make_current`], through the owner.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn make_current(&self, id: UploadId) -> Result<(), Error> {
        self.op(id, WireOp::MakeCurrent)
    }

    /// The stored response body (at most the owner's
    /// [`crate::UploaderBuilder::max_response_body`]).
    ///
    /// # Errors
    /// [`Error::NoResponse`], [`Error::NotFound`] as [`crate::Upload::response_body`];
    /// [`Error::NoOwner`]; [`Error::PermissionDenied`].
    pub fn response_body(&self, id: UploadId) -> Result<Vec<u8>, Error> {
        let (mut stream, first) = self.open(&Ask::Body(id))?;
        let mut first = Some(first);
        let mut out = Vec::new();
        loop {
            let next = match first.take() {
                Some(a) => Ok(a),
                None => wire::read_frame::<Answer>(&mut stream, wire::MAX_ANSWER, None),
            };
            match next {
                Ok(Answer::Chunk(c)) => out.extend_from_slice(&c),
                Ok(Answer::Done) => return Ok(out),
                Ok(Answer::Failed(f)) => return Err(wire::error_of(&f)),
                Ok(_) => return Err(unexpected(&self.store)),
                Err(_) => {
                    return Err(Error::NoOwner {
                        path: self.store.clone(),
                    })
                }
            }
        }
    }

    /// A snapshot of the upload now and at every change until it ends.
    ///
    /// # Errors
    /// [`Error::NoOwner`]; [`Error::PermissionDenied`]. The iterator yields
    /// [`Error::NotFound`] for an unknown upload, and [`Error::NoOwner`] if the owner
    /// goes away.
    pub fn follow(&self, id: UploadId) -> Result<Follow, Error> {
        let (stream, first) = self.open(&Ask::Follow(id))?;
        let _ = stream.set_read_timeout(None);
        Ok(Follow {
            stream: Some(stream),
            first: Some(first),
            store: self.store.clone(),
        })
    }

    /// Blocks until the upload ends, as [`crate::Upload::wait`].
    ///
    /// # Errors
    /// The upload's error; [`Error::Canceled`]; [`Error::NotFound`];
    /// [`Error::NoOwner`] if no owner runs or it goes away first.
    pub fn wait(&self, id: UploadId) -> Result<ResponseInfo, Error> {
        for snap in self.follow(id)? {
            if let Some(r) = snap?.outcome() {
                return r;
            }
        }
        // The stream ended without a final snapshot: the upload was removed.
        Err(Error::NotFound { id })
    }

    /// Connects, sends `ask`, and returns the stream with the owner's first answer. An
    /// owner that answers "busy" is asked again for up to [`BUSY_FOR`].
    fn open(&self, ask: &Ask) -> Result<(UnixStream, Answer), Error> {
        let socket = socket_path(&self.store);
        let started = Instant::now();
        loop {
            let mut stream = match short_path(&self.store, SOCKET, connect_now) {
                Ok(s) => s,
                // The owner's backlog is full (it is frozen, or busy importing): like
                // a "busy" answer.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && started.elapsed() < BUSY_FOR => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Error::io("connect to the owner on", &socket, e))
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(Error::PermissionDenied {
                        path: self.store.clone(),
                    })
                }
                Err(_) => {
                    return Err(Error::NoOwner {
                        path: self.store.clone(),
                    })
                }
            };
            let _ = stream.set_read_timeout(Some(ANSWER_WITHIN));
            let _ = stream.set_write_timeout(Some(ANSWER_WITHIN));
            // A busy or refusing owner may answer and close before it reads: its answer
            // counts, not the failed write.
            let sent = wire::write_frame(&mut stream, ask);
            let answer = wire::read_frame::<Answer>(&mut stream, wire::MAX_ANSWER, None);
            let answer = match (answer, sent) {
                (Ok(a), _) => a,
                (Err(_), Err(e)) => return Err(Error::io("send a request on", &socket, e)),
                (Err(e), Ok(())) => {
                    return Err(Error::io(
                        "read the owner's answer on",
                        &socket,
                        io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string()),
                    ))
                }
            };
            if let Answer::Failed(f) = &answer {
                if is_busy(&wire::error_of(f)) && started.elapsed() < BUSY_FOR {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            return Ok((stream, answer));
        }
    }

    /// One request, one answer.
    fn ask(&self, ask: &Ask) -> Result<Answer, Error> {
        self.open(ask).map(|(_, answer)| answer)
    }
}

/// Connects without waiting: a unix socket whose owner does not accept (its backlog is
/// full) answers `WouldBlock` at once instead of leaving the caller blocked.
fn connect_now(path: &Path) -> io::Result<UnixStream> {
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.connect(&socket2::SockAddr::unix(path)?)?;
    s.set_nonblocking(false)?;
    Ok(UnixStream::from(std::os::fd::OwnedFd::from(s)))
}

fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock)
}
