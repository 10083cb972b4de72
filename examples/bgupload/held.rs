//! The store, whoever holds it: this process (its lock was free, so the command opens
//! it as before), or the `bgupload run` (or any program's `Uploader`) that holds it
//! now, through a `Client`. Every command but `run` works either way and prints the
//! same; `Shown` is what they print from, for an upload of either kind.

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::{
    Client, Error, Progress, RemoteUpload, RequestInfo, ResponseInfo, Status, Submission,
    Submitted, Upload, UploadRequest, Uploader,
};

use crate::Failure;

/// An upload as the commands show it.
pub trait Shown {
    fn id(&self) -> u64;
    fn request(&self) -> &RequestInfo;
    fn progress(&self) -> Progress;
    fn status(&self) -> Status {
        self.progress().status
    }
    /// Its error, as text.
    fn error_message(&self) -> Option<String>;
    fn response_info(&self) -> Option<ResponseInfo>;
    /// Whether its progress is live (another process runs it) rather than the
    /// journal's last checkpoint.
    fn live(&self) -> bool;
}

impl Shown for Upload {
    fn id(&self) -> u64 {
        Upload::id(self)
    }
    fn request(&self) -> &RequestInfo {
        Upload::request(self)
    }
    fn progress(&self) -> Progress {
        Upload::progress(self)
    }
    fn error_message(&self) -> Option<String> {
        Upload::error(self).map(|e| e.to_string())
    }
    fn response_info(&self) -> Option<ResponseInfo> {
        Upload::response_info(self)
    }
    fn live(&self) -> bool {
        false
    }
}

impl Shown for RemoteUpload {
    fn id(&self) -> u64 {
        self.id
    }
    fn request(&self) -> &RequestInfo {
        &self.request
    }
    fn progress(&self) -> Progress {
        self.progress.clone()
    }
    fn error_message(&self) -> Option<String> {
        self.error.as_ref().map(|e| e.to_string())
    }
    fn response_info(&self) -> Option<ResponseInfo> {
        self.response.clone()
    }
    fn live(&self) -> bool {
        true
    }
}

/// Who holds the store for this command.
pub enum Held {
    /// This process: the lock was free.
    Here(Uploader),
    /// A running owner, through its control socket.
    There(Client),
}

/// How long `add` waits for an owner that is starting (or restarting) to take a
/// submission from the inbox, so that it can print the id.
const QUEUED_WAIT: Duration = Duration::from_secs(10);

impl Held {
    /// Opens the store to look at it and manage it (nothing goes on the wire here), or,
    /// if another process holds it, reaches that process.
    pub fn open(store: &Path, extra: Option<String>) -> Result<Held, Failure> {
        let b = Uploader::builder().store_dir(store).start_transfers(false);
        match crate::with_providers(b, store, extra).open() {
            Ok(up) => Ok(Held::Here(up)),
            Err(Error::StoreLocked { .. }) => Ok(Held::There(Client::connect(store)?)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every upload, in id order.
    pub fn uploads(&self) -> Result<Vec<Box<dyn Shown>>, Failure> {
        Ok(match self {
            Held::Here(up) => up
                .uploads()
                .into_iter()
                .map(|u| Box::new(u) as Box<dyn Shown>)
                .collect(),
            Held::There(c) => c
                .uploads()
                .map_err(owner_gone)?
                .into_iter()
                .map(|u| Box::new(u) as Box<dyn Shown>)
                .collect(),
        })
    }

    /// Persists a new upload and returns its id.
    pub fn create(&self, req: UploadRequest) -> Result<u64, Failure> {
        match self {
            Held::Here(up) => Ok(up.create_upload(req).map_err(crate::refused)?.id()),
            Held::There(c) => match c.create_upload(req).map_err(crate::refused)? {
                Submitted::Created { id, .. } => Ok(id),
                Submitted::Queued { key } => queued_id(c, &key),
            },
        }
    }

    /// Pause, resume, cancel or remove upload `id`.
    pub fn op(&self, op: crate::cli::Op, id: u64) -> Result<(), Failure> {
        use crate::cli::Op;
        match self {
            Held::Here(up) => {
                let h = up.get(id).ok_or(Error::NotFound { id })?;
                match op {
                    Op::Pause => h.pause()?,
                    Op::Resume => h.resume()?,
                    Op::Cancel => h.cancel()?,
                    Op::Remove => h.remove()?,
                }
            }
            Held::There(c) => match op {
                Op::Pause => c.pause(id).map_err(owner_gone)?,
                Op::Resume => c.resume(id).map_err(owner_gone)?,
                Op::Cancel => c.cancel(id).map_err(owner_gone)?,
                Op::Remove => c.remove(id).map_err(owner_gone)?,
            },
        }
        Ok(())
    }

    /// Upload `id`'s response and its kept body.
    pub fn response(&self, id: u64) -> Result<(ResponseInfo, Vec<u8>), Failure> {
        match self {
            Held::Here(up) => {
                let h = up.get(id).ok_or(Error::NotFound { id })?;
                let info = h.response_info().ok_or(Error::NoResponse { id })?;
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut h.response_body()?, &mut body)
                    .map_err(|e| Failure::new(format!("could not read the body: {e}")))?;
                Ok((info, body))
            }
            Held::There(c) => {
                let info = c
                    .get(id)
                    .map_err(owner_gone)?
                    .response
                    .ok_or(Error::NoResponse { id })?;
                Ok((info, c.response_body(id).map_err(owner_gone)?))
            }
        }
    }

    /// Releases the store (this process's lock), if it held it.
    pub fn close(self) -> Result<(), Failure> {
        match self {
            Held::Here(up) => Ok(up.shutdown()?),
            Held::There(_) => Ok(()),
        }
    }
}

/// The owner went away between the lock check and the request (it stopped, or died):
/// say so in the CLI's terms.
fn owner_gone(e: Error) -> Failure {
    match e {
        Error::NoOwner { path } => Failure::new(format!(
            "the process that held store {} went away; run the command again",
            path.display()
        )),
        e => e.into(),
    }
}

/// The id of a submission that went to the inbox because the owner was starting or
/// went away mid-call: the next owner creates it at its start.
fn queued_id(c: &Client, key: &background_transfer::model::SubmissionKey) -> Result<u64, Failure> {
    let deadline = Instant::now() + QUEUED_WAIT;
    loop {
        match c.find(key)? {
            Submission::Created(id) => return Ok(id),
            Submission::Refused(e) => return Err(crate::refused(e)),
            Submission::Waiting | Submission::Unknown => {}
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(format!(
                "no process took the upload from the inbox of {} within {QUEUED_WAIT:?}; it \
                 waits there durably and the next `bgupload run` creates it",
                c.store_dir().display()
            )));
        }
        // The lock may be free now (the owner died): opening the store here imports the
        // inbox too, but only an owner that transfers serves; poll the next one.
        std::thread::sleep(Duration::from_millis(20));
    }
}
