//! The control socket's messages and framing. Every frame is a little-endian `u32`
//! length, then that many bytes: a version byte and the postcard message. One request
//! per connection; the owner answers with one frame, or for [`Ask::Follow`] and
//! [`Ask::Body`] with a stream of frames that [`Answer::Done`] ends.
//!
//! Requests travel as the journal's creation record and errors as its failure record
//! ([`crate::journal::portable`]): the forms the crate already keeps readable across
//! versions.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::journal::portable;
use crate::journal::record::FailureV1;
use crate::model::{SubmissionKey, UploadId};
use crate::progress::{Progress, ResponseInfo};
use crate::{CostPolicy, Error, Priority, RequestInfo, Status};

/// The version byte of every frame; a frame of another version is refused.
pub(crate) const VERSION: u8 = 1;
/// The largest frame a client may send (a request with its headers and paths).
pub(crate) const MAX_ASK: usize = 1 << 20;
/// The largest frame the owner sends (a list of many uploads).
pub(crate) const MAX_ANSWER: usize = 64 << 20;
/// A body is streamed in chunks of this size.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Ask {
    /// Create an upload: its request's creation record (with its submission key).
    Create(Vec<u8>),
    /// Every upload.
    List,
    /// One upload.
    Get(UploadId),
    /// An operation on one upload.
    Op(UploadId, WireOp),
    /// The stored response body, as chunks.
    Body(UploadId),
    /// Where a submission is: the id it was created under.
    Find(SubmissionKey),
    /// A snapshot at every event of the upload until it ends.
    Follow(UploadId),
    /// A submission was left in the inbox: import it now.
    Poke,
}

/// The operations of [`crate::Upload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireOp {
    Pause,
    Resume,
    Cancel,
    Remove,
    MakeCurrent,
}

/// What the owner answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// The upload's id (new, or the one its submission was created under before).
    Created(UploadId),
    /// Every upload.
    Uploads(Vec<WireUpload>),
    /// One upload (also each frame of a follow).
    Upload(Box<WireUpload>),
    /// A chunk of a response body.
    Chunk(Vec<u8>),
    /// Where a submission is.
    Found(Found),
    /// Done: the operation took effect, or a stream ended.
    Done,
    /// The request failed with this error.
    Failed(FailureV1),
}

/// Where a submission is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Found {
    /// Created under this id.
    Created(UploadId),
    /// Still waiting in the inbox.
    Waiting,
    /// Refused when it was imported from the inbox, for this reason.
    Refused(FailureV1),
    /// Not known (never submitted, or removed since).
    Unknown,
}

/// An upload as a client sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireUpload {
    pub id: UploadId,
    pub info: WireInfo,
    pub progress: WireProgress,
    pub response: Option<WireResponse>,
    pub error: Option<FailureV1>,
}

/// [`RequestInfo`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireInfo {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub files: Vec<PathBuf>,
    pub multipart: bool,
    pub tus: bool,
    pub protocol: String,
    pub part_size: Option<u64>,
    pub priority: u8,
    pub group: Option<String>,
    pub unrestricted_only: bool,
    pub created_ms: u64,
}

/// [`Progress`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireProgress {
    pub status: String,
    pub bytes_sent: u64,
    pub total_bytes_to_send: u64,
    pub bytes_acknowledged: u64,
    pub bytes_received: u64,
    pub total_bytes_to_receive: Option<u64>,
    pub has_restarted: bool,
    pub has_response_changed: bool,
    pub attempts: u32,
}

/// [`ResponseInfo`] on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub url: String,
    pub is_resumable: bool,
    pub body_len: u64,
    pub body_truncated: bool,
}

const STATUSES: [Status; 11] = [
    Status::Queued,
    Status::Running,
    Status::Connecting,
    Status::PausedByApplication,
    Status::PausedNoNetwork,
    Status::PausedCostedNetwork,
    Status::PausedNoCredentials,
    Status::WaitingToRetry,
    Status::Completed,
    Status::Canceled,
    Status::Error,
];

const PRIORITIES: [Priority; 3] = [Priority::Low, Priority::Default, Priority::High];

/// The protocol names [`crate::model::Protocol::name`] gives, as the `&'static str` of
/// [`RequestInfo::protocol`].
const PROTOCOLS: [&str; 5] = ["plain", "tus", "s3", "gcs", "azure"];

impl WireInfo {
    pub fn of(i: &RequestInfo) -> WireInfo {
        WireInfo {
            method: i.method.clone(),
            url: i.url.clone(),
            headers: i.headers.clone(),
            files: i.files.clone(),
            multipart: i.multipart,
            tus: i.tus,
            protocol: i.protocol.to_string(),
            part_size: i.part_size,
            priority: PRIORITIES
                .iter()
                .position(|p| *p == i.priority)
                .unwrap_or(1) as u8,
            group: i.group.clone(),
            unrestricted_only: i.cost_policy == CostPolicy::UnrestrictedOnly,
            created_ms: i.created_ms,
        }
    }

    pub fn info(self) -> RequestInfo {
        RequestInfo {
            method: self.method,
            url: self.url,
            headers: self.headers,
            files: self.files,
            multipart: self.multipart,
            tus: self.tus,
            protocol: PROTOCOLS
                .iter()
                .find(|p| **p == self.protocol)
                .copied()
                .unwrap_or("unknown"),
            part_size: self.part_size,
            priority: PRIORITIES
                .get(usize::from(self.priority))
                .copied()
                .unwrap_or_default(),
            group: self.group,
            cost_policy: if self.unrestricted_only {
                CostPolicy::UnrestrictedOnly
            } else {
                CostPolicy::Always
            },
            created_ms: self.created_ms,
        }
    }
}

impl WireProgress {
    pub fn of(p: &Progress) -> WireProgress {
        WireProgress {
            status: p.status.as_str().to_string(),
            bytes_sent: p.bytes_sent,
            total_bytes_to_send: p.total_bytes_to_send,
            bytes_acknowledged: p.bytes_acknowledged,
            bytes_received: p.bytes_received,
            total_bytes_to_receive: p.total_bytes_to_receive,
            has_restarted: p.has_restarted,
            has_response_changed: p.has_response_changed,
            attempts: p.attempts,
        }
    }

    /// `None` for a status this build does not know.
    pub fn progress(self) -> Option<Progress> {
        let status = *STATUSES.iter().find(|s| s.as_str() == self.status)?;
        Some(Progress {
            status,
            bytes_sent: self.bytes_sent,
            total_bytes_to_send: self.total_bytes_to_send,
            bytes_acknowledged: self.bytes_acknowledged,
            bytes_received: self.bytes_received,
            total_bytes_to_receive: self.total_bytes_to_receive,
            has_restarted: self.has_restarted,
            has_response_changed: self.has_response_changed,
            attempts: self.attempts,
        })
    }
}

impl WireResponse {
    pub fn of(r: &ResponseInfo) -> WireResponse {
        WireResponse {
            status: r.status,
            headers: r.headers.clone(),
            url: r.url.clone(),
            is_resumable: r.is_resumable,
            body_len: r.body_len,
            body_truncated: r.body_truncated,
        }
    }

    pub fn info(self) -> ResponseInfo {
        ResponseInfo {
            status: self.status,
            headers: self.headers,
            url: self.url,
            is_resumable: self.is_resumable,
            body_len: self.body_len,
            body_truncated: self.body_truncated,
        }
    }
}

/// An error in the form it travels in.
pub(crate) fn failed(e: &Error) -> Answer {
    Answer::Failed(portable::failure_record(&e.to_failure()))
}

/// The error a failure record stands for.
pub(crate) fn error_of(f: &FailureV1) -> Error {
    Error::from_failure(&portable::failure_of(f))
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the connection before a whole frame.
    Closed,
    /// The deadline passed first.
    TimedOut,
    /// The frame is longer than the cap.
    TooLarge(usize),
    /// Another version, or bytes that are no message.
    Malformed(String),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => write!(f, "closed before a whole message"),
            FrameError::TimedOut => write!(f, "no whole message in time"),
            FrameError::TooLarge(n) => write!(f, "a message of {n} bytes is over the cap"),
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Writes one frame.
pub(crate) fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let mut buf = vec![0u8; 5];
    buf[4] = VERSION;
    let buf = postcard::to_extend(msg, buf).map_err(io::Error::other)?;
    let len = u32::try_from(buf.len() - 4).map_err(io::Error::other)?;
    let mut buf = buf;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    w.write_all(&buf)
}

/// Reads one frame of at most `max` bytes, all of it before `deadline` (`None`: no
/// deadline beyond the socket's own timeout). The stream's read timeout must be set
/// (it bounds each read); the buffer grows only as bytes arrive.
pub(crate) fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    max: usize,
    deadline: Option<Instant>,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    read_full(r, &mut len, deadline, true)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Malformed("empty frame".into()));
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let mut chunk = [0u8; 8192];
    while body.len() < len {
        let want = (len - body.len()).min(chunk.len());
        read_full(r, &mut chunk[..want], deadline, false)?;
        body.extend_from_slice(&chunk[..want]);
    }
    if body[0] != VERSION {
        return Err(FrameError::Malformed(format!(
            "version {} (this build speaks {VERSION})",
            body[0]
        )));
    }
    postcard::from_bytes(&body[1..]).map_err(|e| FrameError::Malformed(e.to_string()))
}

fn read_full(
    r: &mut impl Read,
    buf: &mut [u8],
    deadline: Option<Instant>,
    at_start: bool,
) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(FrameError::TimedOut);
        }
        match r.read(&mut buf[got..]) {
            Ok(0) if at_start && got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if deadline.is_none() {
                    return Err(FrameError::TimedOut);
                }
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// How long an owner waits for a client's whole request.
pub(crate) const ASK_DEADLINE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_caps_hold() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Ask::Get(7)).unwrap();
        let got: Ask = read_frame(&mut buf.as_slice(), MAX_ASK, None).unwrap();
        assert!(matches!(got, Ask::Get(7)));
        let mut big = (u32::MAX).to_le_bytes().to_vec();
        big.push(VERSION);
        let e = read_frame::<Ask>(&mut big.as_slice(), MAX_ASK, None).unwrap_err();
        assert!(matches!(e, FrameError::TooLarge(_)), "{e}");
        let mut other = buf.clone();
        other[4] = 9;
        let e = read_frame::<Ask>(&mut other.as_slice(), MAX_ASK, None).unwrap_err();
        assert!(matches!(e, FrameError::Malformed(_)), "{e}");
        let e = read_frame::<Ask>(&mut &buf[..buf.len() - 1], MAX_ASK, None).unwrap_err();
        assert!(matches!(e, FrameError::Closed), "{e}");
    }

    #[test]
    fn every_status_travels() {
        for s in STATUSES {
            let p = Progress {
                status: s,
                bytes_sent: 1,
                total_bytes_to_send: 2,
                bytes_acknowledged: 0,
                bytes_received: 0,
                total_bytes_to_receive: None,
                has_restarted: false,
                has_response_changed: false,
                attempts: 3,
            };
            assert_eq!(WireProgress::of(&p).progress(), Some(p));
        }
    }
}
