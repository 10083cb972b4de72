//! The owner's side: the control socket's accept thread, one thread per connection
//! (at most [`MAX_CONNECTIONS`]), and the inbox thread that imports submissions left
//! while no owner ran.
//!
//! What a hostile or broken client can cost: one of the connection slots for at most
//! [`wire::ASK_DEADLINE`] (its whole request must arrive by then, and it is at most
//! [`wire::MAX_ASK`] bytes, read as it arrives); a client over the cap is answered
//! "busy" at once and closed. Refusals and malformed requests are logged at most once
//! a second.

use std::collections::HashMap;
use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::admission::Admission;
use crate::journal::portable;
use crate::model::{Body, PartContent, Protocol, Request, SubmissionKey, UploadId};
use crate::shared::{lock, Shared};
use crate::{source, store, Error, Upload};

use super::inbox;
use super::peer::{peer_of, Admitted};
use super::wire::{
    self, Answer, Ask, Found, WireInfo, WireOp, WireProgress, WireResponse, WireUpload,
};
use super::{inbox_dir, short_path, socket_path, SOCKET};

/// Requests served at once; more are answered "busy".
pub(crate) const MAX_CONNECTIONS: usize = 32;
/// Follows served at once (each waits on its upload's events, not on its client, so
/// they do not count against [`MAX_CONNECTIONS`]); more are answered "busy".
pub(crate) const MAX_FOLLOWERS: usize = 256;
/// How often the inbox is looked at without a poke.
const INBOX_EVERY: Duration = Duration::from_secs(5);
/// Leftovers of a crashed client older than this are removed from the inbox.
const STALE: Duration = Duration::from_secs(3600);

/// The running service of one owner. Stopped (threads joined, socket removed) by
/// [`Service::stop`] or on drop.
pub(crate) struct Service {
    ctx: Arc<Ctx>,
    /// The listening socket, shut down at a stop to wake the accept loop.
    listener: UnixListener,
    accept: Option<JoinHandle<()>>,
    inbox: Option<JoinHandle<()>>,
}

struct Ctx {
    shared: Arc<Shared>,
    admission: Admission,
    admitted: Admitted,
    socket: PathBuf,
    inbox: PathBuf,
    stop: AtomicBool,
    poke: Sender<()>,
    /// The open connections: a handle on each stream (to end it at a stop) and its
    /// thread. A connection's thread takes its own entry out when it ends.
    conns: Mutex<HashMap<u64, (UnixStream, JoinHandle<()>)>>,
    next_conn: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
    /// Connections refused or dropped for bad input (for logs and tests).
    refused: AtomicU64,
    /// The connections in `conns` that follow an upload.
    followers: AtomicUsize,
}

impl Service {
    /// Sets up the inbox and the socket, then imports what waits in the inbox: the
    /// socket is bound first, so that a client that found no owner and left its
    /// submission in the inbox is either seen by this scan or pokes this owner.
    pub fn start(
        shared: Arc<Shared>,
        admission: Admission,
        group: Option<u32>,
    ) -> Result<Service, Error> {
        let store_dir = shared.store_dir.clone();
        let inbox = inbox_dir(&store_dir);
        prepare_dirs(&store_dir, &inbox, group)?;
        let socket = socket_path(&store_dir);
        match fs::remove_file(&socket) {
            // The store's lock is held: a socket file here is a dead owner's.
            Ok(()) | Err(_) => {}
        }
        let listener = short_path(&store_dir, SOCKET, |p| UnixListener::bind(p))
            .map_err(|e| Error::io("bind the control socket", &socket, e))?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        fs::set_permissions(&socket, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set the mode of the control socket", &socket, e))?;
        if let Some(g) = group {
            chgrp(&socket, g)?;
        }
        let (poke, pokes) = bounded(1);
        let ctx = Arc::new(Ctx {
            shared,
            admission,
            admitted: Admitted::for_owner(group),
            socket,
            inbox,
            stop: AtomicBool::new(false),
            poke,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            last_warn: Mutex::new(None),
            refused: AtomicU64::new(0),
            followers: AtomicUsize::new(0),
        });
        // The first import before the accept loop starts: what waits is created by
        // the time `open` returns.
        ctx.import_inbox();
        let c = ctx.clone();
        let inbox = std::thread::Builder::new()
            .name("bgxfer-inbox".into())
            .stack_size(256 * 1024)
            .spawn(move || c.inbox_loop(pokes))
            .map_err(|e| Error::io("start the inbox thread", "", e))?;
        let kept = listener
            .try_clone()
            .map_err(|e| Error::io("keep the control socket", &ctx.socket, e))?;
        let c = ctx.clone();
        let accept = std::thread::Builder::new()
            .name("bgxfer-control".into())
            .stack_size(256 * 1024)
            .spawn(move || c.accept_loop(listener));
        let accept = match accept {
            Ok(t) => t,
            Err(e) => {
                ctx.stop.store(true, Ordering::SeqCst);
                let _ = ctx.poke.try_send(());
                let _ = inbox.join();
                return Err(Error::io("start the control thread", "", e));
            }
        };
        log::info!("serving clients on {}", ctx.socket.display());
        Ok(Service {
            ctx,
            listener: kept,
            accept: Some(accept),
            inbox: Some(inbox),
        })
    }

    /// Stops accepting, ends every connection, joins every thread and removes the
    /// socket.
    pub fn stop(&mut self) {
        if self.ctx.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept loop (its accept fails), which then sees `stop`. Not a
        // self-connect: that fails when descriptors run out, which abuse may cause.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let _ = self.ctx.poke.try_send(());
        if let Some(t) = self.inbox.take() {
            let _ = t.join();
        }
        let conns: Vec<(UnixStream, JoinHandle<()>)> =
            lock(&self.ctx.conns).drain().map(|(_, c)| c).collect();
        for (stream, _) in &conns {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, t) in conns {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.ctx.socket);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The inbox (0700, or 2730 with the group owning it so that its members can leave
/// files and its new files belong to the group) and the store directory itself (0700,
/// or 0710 so that the group can reach the socket and the inbox, but not list the
/// store).
fn prepare_dirs(store_dir: &Path, inbox: &Path, group: Option<u32>) -> Result<(), Error> {
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(inbox)
        .map_err(|e| Error::io("create the inbox", inbox, e))?;
    let (store_mode, inbox_mode) = match group {
        // Sticky too: a member may not unlink or rename another's files.
        Some(_) => (0o710, 0o3730),
        None => (0o700, 0o700),
    };
    if let Some(g) = group {
        chgrp(store_dir, g)?;
        chgrp(inbox, g)?;
    }
    for (dir, mode) in [(store_dir, store_mode), (inbox, inbox_mode)] {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set the mode of", dir, e))?;
    }
    inbox::prepare_refused(inbox)?;
    // The inbox's entry must be durable before a submission in it is (also when an
    // earlier open created it and was cut before this fsync).
    store::sync_dir(store_dir)
}

fn chgrp(path: &Path, gid: u32) -> Result<(), Error> {
    std::os::unix::fs::chown(path, None, Some(gid))
        .map_err(|e| Error::io("give the client group", path, e))
}

impl Ctx {
    fn store_dir(&self) -> &Path {
        &self.shared.store_dir
    }

    /// Logs a refused or broken connection, at most once a second.
    fn warn(&self, what: std::fmt::Arguments<'_>) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last_warn);
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            log::debug!("control socket: {what}");
            return;
        }
        *last = Some(Instant::now());
        log::warn!("control socket: {what}");
    }

    fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming() {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let stream = match stream {
                Ok(s) => s,
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => {
                    // Out of descriptors, most likely: wait rather than spin.
                    self.warn(format_args!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let requests = lock(&self.conns)
                .len()
                .saturating_sub(self.followers.load(Ordering::SeqCst));
            if requests >= MAX_CONNECTIONS {
                let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = wire::write_frame(&mut &stream, &wire::failed(&self.busy()));
                self.warn(format_args!(
                    "{MAX_CONNECTIONS} connections open; refused one"
                ));
                continue;
            }
            let n = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let Ok(kept) = stream.try_clone() else {
                continue;
            };
            let c = self.clone();
            let mut conns = lock(&self.conns);
            let t = std::thread::Builder::new()
                .name("bgxfer-client".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    c.serve(stream);
                    // Its stream closes here; its thread is ending (detached).
                    lock(&c.conns).remove(&n);
                });
            match t {
                Ok(t) => {
                    conns.insert(n, (kept, t));
                }
                Err(e) => self.warn(format_args!("no thread for a connection: {e}")),
            }
        }
    }

    /// The answer to a client over the caps: its client tries again shortly.
    fn busy(&self) -> Error {
        Error::io(
            "reach the store's owner through",
            self.socket.clone(),
            // A raw OS error travels as itself (its code), so the client knows it.
            io::Error::from_raw_os_error(libc::EAGAIN),
        )
    }

    fn serve(&self, stream: UnixStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
        let peer = match peer_of(&stream) {
            Ok(p) => p,
            Err(e) => return self.warn(format_args!("no peer credentials: {e}")),
        };
        if !self.admitted.allows(peer.uid, peer.gid) {
            self.warn(format_args!(
                "refused process {} of uid {} (not the store's user or group)",
                peer.pid, peer.uid
            ));
            let denied = Error::PermissionDenied {
                path: self.store_dir().to_path_buf(),
            };
            let _ = wire::write_frame(&mut &stream, &wire::failed(&denied));
            return;
        }
        let deadline = Instant::now() + wire::ASK_DEADLINE;
        let ask: Ask = match wire::read_frame(&mut &stream, wire::MAX_ASK, Some(deadline)) {
            Ok(a) => a,
            Err(e) => {
                self.warn(format_args!("dropped a request from pid {}: {e}", peer.pid));
                let bad = Error::io(
                    "read a request on",
                    self.socket.clone(),
                    io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                );
                let _ = wire::write_frame(&mut &stream, &wire::failed(&bad));
                return;
            }
        };
        let answer = match ask {
            Ask::Create(bytes) => match self.create(&bytes, peer.uid) {
                Ok(id) => Answer::Created(id),
                Err(e) => wire::failed(&e),
            },
            Ask::List => {
                let cells: Vec<_> = lock(&self.shared.cells).values().cloned().collect();
                Answer::Uploads(
                    cells
                        .into_iter()
                        .filter(|c| self.may_see(peer.uid, c.id))
                        .map(|c| snapshot(&Upload::new(c, self.shared.clone())))
                        .collect(),
                )
            }
            Ask::Get(id) | Ask::Op(id, _) | Ask::Body(id) | Ask::Follow(id)
                if !self.may_see(peer.uid, id) =>
            {
                wire::failed(&Error::NotFound { id })
            }
            Ask::Get(id) => match self.upload(id) {
                Ok(u) => Answer::Upload(Box::new(snapshot(&u))),
                Err(e) => wire::failed(&e),
            },
            Ask::Op(id, op) => match self.upload(id).and_then(|u| match op {
                WireOp::Pause => u.pause(),
                WireOp::Resume => u.resume(),
                WireOp::Cancel => u.cancel(),
                WireOp::Remove => u.remove(),
                WireOp::MakeCurrent => u.make_current(),
            }) {
                Ok(()) => Answer::Done,
                Err(e) => wire::failed(&e),
            },
            Ask::Find(key) => Answer::Found(match self.find(&key) {
                Found::Created(id) if !self.may_see(peer.uid, id) => Found::Unknown,
                found => found,
            }),
            Ask::Poke => {
                let _ = self.poke.try_send(());
                Answer::Done
            }
            Ask::Body(id) => return self.send_body(stream, id),
            Ask::Follow(id) => {
                let over = self.followers.fetch_add(1, Ordering::SeqCst) >= MAX_FOLLOWERS;
                if !over {
                    self.follow(&stream, id);
                }
                self.followers.fetch_sub(1, Ordering::SeqCst);
                if !over {
                    return;
                }
                wire::failed(&self.busy())
            }
        };
        if let Err(e) = wire::write_frame(&mut Within::new(&stream), &answer) {
            log::debug!("control socket: could not answer pid {}: {e}", peer.pid);
        }
    }

    /// Whether user `uid` may see and control upload `id`: the store's user may every
    /// one, a member of the client group only those it submitted.
    fn may_see(&self, uid: u32, id: UploadId) -> bool {
        uid == self.admitted.uid || lock(&self.shared.submitters).get(&id) == Some(&uid)
    }

    fn upload(&self, id: UploadId) -> Result<Upload, Error> {
        lock(&self.shared.cells)
            .get(&id)
            .map(|c| Upload::new(c.clone(), self.shared.clone()))
            .ok_or(Error::NotFound { id })
    }

    fn find(&self, key: &SubmissionKey) -> Found {
        if let Some(id) = lock(&self.shared.submissions).get(key) {
            return Found::Created(*id);
        }
        if inbox::req_path(&self.inbox, key).exists() {
            return Found::Waiting;
        }
        match inbox::refusal(&self.inbox, key) {
            Some(f) => Found::Refused(portable::failure_record(&f)),
            None => Found::Unknown,
        }
    }

    /// Creates the upload a client of user `uid` sent (over the socket or through the
    /// inbox), or finds the one its submission key was created under.
    fn create(&self, bytes: &[u8], uid: u32) -> Result<UploadId, Error> {
        let foreign = uid != self.admitted.uid;
        let (mut request, _) =
            portable::decode_request(bytes).ok_or_else(|| Error::InvalidRequest {
                reason: "the client's request is not a creation record this build reads".into(),
            })?;
        let key = request.submission.ok_or_else(|| Error::InvalidRequest {
            reason: "a client's request needs a submission key".into(),
        })?;
        // Who submitted it is the kernel's word, never the client's.
        request.submitter = Some(uid);
        let inbox_body = inbox::body_path(&self.inbox, &key);
        if let Some(id) = lock(&self.shared.submissions).get(&key).copied() {
            let _ = fs::remove_file(&inbox_body);
            return Ok(id);
        }
        self.check_sources(&request, foreign, &inbox_body)?;
        self.admission.admit(&mut request)?;
        let id = crate::admission::allocate_id(&self.shared)?;
        if let Body::File(src) = &mut request.body {
            if src.spooled {
                // A link, not a move: if this owner dies before the create is durable,
                // the client's fallback to the inbox still has the body.
                let spool = store::spool_path(self.store_dir(), id);
                if let Err(e) = fs::hard_link(&inbox_body, &spool) {
                    // Taken by the other way this submission came (socket or inbox),
                    // which created it since.
                    if let Some(id) = lock(&self.shared.submissions).get(&key).copied() {
                        return Ok(id);
                    }
                    return Err(match e.kind() {
                        io::ErrorKind::NotFound => Error::SourceMissing { path: inbox_body },
                        _ => Error::io("take the client's spooled body", &inbox_body, e),
                    });
                }
                // What was linked must be the client's own regular file: not a symlink
                // (link(2) does not follow one, but reading the link would), and not a
                // hard link to someone else's file.
                let own = fs::symlink_metadata(&spool)
                    .is_ok_and(|m| m.file_type().is_file() && m.uid() == uid);
                if !own {
                    store::remove_upload_files(self.store_dir(), id);
                    return Err(Error::PermissionDenied {
                        path: self.store_dir().to_path_buf(),
                    });
                }
                let linked = store::sync_dir(spool.parent().unwrap_or(&spool))
                    .and_then(|()| source::record(&spool, true))
                    .inspect_err(|_| store::remove_upload_files(self.store_dir(), id))?;
                if linked.size != src.size || linked.mtime_ns != src.mtime_ns {
                    store::remove_upload_files(self.store_dir(), id);
                    return Err(Error::SourceChanged {
                        path: inbox_body,
                        what: "the spooled body changed after the client wrote it".into(),
                    });
                }
                *src = linked;
            }
        }
        let got = crate::admission::submit(&self.shared, id, request)?;
        let _ = fs::remove_file(&inbox_body);
        Ok(got)
    }

    /// A client names files the owner reads. One of another user (a member of the
    /// client group) may only hand over a body it spooled into the inbox itself: the
    /// owner must not read a file for it that it could not read. A spooled body must be
    /// the one the inbox holds for its key.
    fn check_sources(&self, r: &Request, foreign: bool, inbox_body: &Path) -> Result<(), Error> {
        let denied = || Error::PermissionDenied {
            path: self.store_dir().to_path_buf(),
        };
        // The owner's credentials and client identities are its user's: a member of
        // the group must not send them to a URL of its choosing.
        let names_owners_keys = r.credentials.is_some()
            || r.client_identity.is_some()
            || !matches!(r.protocol, Protocol::Plain | Protocol::Tus { .. });
        if foreign && names_owners_keys {
            return Err(denied());
        }
        match &r.body {
            Body::File(src) if src.spooled => {
                // The client recorded it through the store's real path; only the
                // directory is resolved here, never the file (it could be a symlink).
                let expected = inbox_body
                    .parent()
                    .and_then(|d| fs::canonicalize(d).ok())
                    .zip(inbox_body.file_name())
                    .map(|(d, n)| d.join(n));
                if expected.as_deref() != Some(src.path.as_path()) {
                    return Err(Error::InvalidRequest {
                        reason: "a spooled body must be the inbox's file of its submission".into(),
                    });
                }
            }
            Body::File(_) if foreign => return Err(denied()),
            Body::File(_) => {}
            Body::Multipart(mp) => {
                let has_file = mp
                    .parts
                    .iter()
                    .any(|p| matches!(p.content, PartContent::File(_)));
                if has_file && foreign {
                    return Err(denied());
                }
                if mp
                    .parts
                    .iter()
                    .any(|p| matches!(&p.content, PartContent::File(s) if s.spooled))
                {
                    return Err(Error::InvalidRequest {
                        reason: "a multipart part cannot be a spooled file".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn send_body(&self, stream: UnixStream, id: UploadId) {
        let file = self.upload(id).and_then(|u| u.response_body());
        let mut w = Within::new(&stream);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                let _ = wire::write_frame(&mut w, &wire::failed(&e));
                return;
            }
        };
        let mut buf = vec![0u8; wire::CHUNK];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if wire::write_frame(&mut w, &Answer::Chunk(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let e = Error::io(
                        "read response body",
                        crate::store::body_path(self.store_dir(), id),
                        e,
                    );
                    let _ = wire::write_frame(&mut w, &wire::failed(&e));
                    return;
                }
            }
        }
        let _ = wire::write_frame(&mut w, &Answer::Done);
    }

    /// A snapshot now and at every change until the upload ends (or the client goes,
    /// or the owner stops).
    fn follow(&self, stream: &UnixStream, id: UploadId) {
        // Each snapshot within its own deadline: a follow lasts as long as its upload.
        let mut w = Within::new(stream);
        let upload = match self.upload(id) {
            Ok(u) => u,
            Err(e) => {
                let _ = wire::write_frame(&mut w, &wire::failed(&e));
                return;
            }
        };
        let events = upload.events();
        if wire::write_frame(&mut w, &Answer::Upload(Box::new(snapshot(&upload)))).is_err() {
            return;
        }
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match events.recv_timeout(Duration::from_millis(250)) {
                Ok(_) => {
                    // Coalesced: whatever else is queued is in the snapshot already.
                    while events.try_recv().is_ok() {}
                    w = Within::new(stream);
                    if wire::write_frame(&mut w, &Answer::Upload(Box::new(snapshot(&upload))))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(crate::RecvTimeoutError::Timeout) => {}
                Err(crate::RecvTimeoutError::Disconnected) => break,
            }
        }
        let last = match self.upload(id) {
            Ok(u) => Answer::Upload(Box::new(snapshot(&u))),
            Err(e) => wire::failed(&e),
        };
        let _ = wire::write_frame(&mut w, &last);
        let _ = wire::write_frame(&mut w, &Answer::Done);
    }

    fn inbox_loop(&self, pokes: Receiver<()>) {
        loop {
            match pokes.recv_timeout(INBOX_EVERY) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            self.import_inbox();
        }
    }

    /// Creates every submission waiting in the inbox, then removes its file. One that
    /// cannot be admitted is moved to `refused/` with its reason; one the store could
    /// not take (a journal error, a shutdown) stays for the next try.
    fn import_inbox(&self) {
        for (key, path) in inbox::pending(&self.inbox) {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            // Not through a symlink (its target's owner would be judged), not a FIFO
            // (an open would wait for a writer), not a hard link to another file.
            let opened = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .and_then(|f| {
                    let m = f.metadata()?;
                    Ok((f, m))
                });
            let (mut file, meta) = match opened {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.warn(format_args!(
                        "cannot open {}: {e}; moved aside",
                        path.display()
                    ));
                    let bad = Error::io("open a submission in the inbox", &path, e);
                    inbox::refuse(&self.inbox, &key, &path, &bad);
                    continue;
                }
            };
            // By its owner alone: in the setgid inbox every file has the group.
            if !meta.is_file() || meta.nlink() != 1 || !self.admitted.allows_user(meta.uid()) {
                self.warn(format_args!(
                    "{} (uid {}) is not a submission of the store's user or group; moved aside",
                    path.display(),
                    meta.uid()
                ));
                let denied = Error::PermissionDenied {
                    path: self.store_dir().to_path_buf(),
                };
                inbox::refuse(&self.inbox, &key, &path, &denied);
                continue;
            }
            let bytes = match inbox::read_req(&mut file, wire::MAX_ASK) {
                Ok(b) => b,
                Err(e) => {
                    let bad = Error::io("read a submission in the inbox", &path, e);
                    inbox::refuse(&self.inbox, &key, &path, &bad);
                    continue;
                }
            };
            let key_matches =
                portable::decode_request(&bytes).is_some_and(|(r, _)| r.submission == Some(key));
            let result = if key_matches {
                self.create(&bytes, meta.uid())
            } else {
                Err(Error::InvalidRequest {
                    reason: "not a submission for the key of its file name".into(),
                })
            };
            match result {
                Ok(id) => {
                    log::info!("imported submission {} as upload {id}", path.display());
                    let _ = fs::remove_file(&path);
                    let _ = store::sync_dir(&self.inbox);
                }
                // The store cannot take any now: the rest waits too.
                Err(e @ (Error::ShutDown | Error::JournalPoisoned { .. })) => {
                    log::warn!("submissions in the inbox wait: {e}");
                    return;
                }
                // This one cannot be taken now (a write failed, or it names a provider
                // or identity the program registers after `open`): it waits, the
                // others go on.
                Err(e) if waits(&e) => {
                    self.warn(format_args!("submission {} waits: {e}", path.display()));
                }
                Err(e) => {
                    log::warn!("refused submission {}: {e}", path.display());
                    inbox::refuse(&self.inbox, &key, &path, &e);
                }
            }
        }
        let subs = &self.shared.submissions;
        inbox::sweep(&self.inbox, STALE, |k| lock(subs).contains_key(k));
    }
}

/// How long the owner gives a client to take one answer (a list, a body, a snapshot),
/// however slowly it reads: a client that reads a byte now and then must not hold a
/// connection slot for hours.
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// A writer to a client that fails once [`ANSWER_DEADLINE`] has passed since it was
/// made, each write bounded by what is left.
struct Within<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl<'a> Within<'a> {
    fn new(stream: &'a UnixStream) -> Within<'a> {
        Within {
            stream,
            deadline: Instant::now() + ANSWER_DEADLINE,
        }
    }
}

impl io::Write for Within<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take the answer in time",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        io::Write::write(&mut &*self.stream, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether an inbox submission that failed with `e` is tried again later rather than
/// refused: an I/O error, or a credentials provider or client identity the owner does
/// not have yet (a program registers its own after `open`, which imports the inbox).
fn waits(e: &Error) -> bool {
    match e {
        Error::Io { .. } => true,
        Error::Credentials {
            permanent, message, ..
        } => *permanent && message.starts_with("no provider is registered"),
        Error::InvalidCertificate { reason } => reason.starts_with("no client identity"),
        _ => false,
    }
}

/// An upload as a client sees it.
fn snapshot(u: &Upload) -> WireUpload {
    WireUpload {
        id: u.id(),
        info: WireInfo::of(u.request()),
        progress: WireProgress::of(&u.progress()),
        response: u.response_info().map(|r| WireResponse::of(&r)),
        error: u.error().map(|e| portable::failure_record(&e.to_failure())),
    }
}
