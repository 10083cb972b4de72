//! What a program sees of an upload: status, progress, the server's response, events.

/// The state of an upload (WinRT's `BackgroundTransferStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Waiting for its turn (WinRT `Idle`).
    Queued,
    /// On the wire.
    Running,
    /// Running, but its connect has gone unanswered for over a second (a dead zone, a
    /// modem still attaching, a host that drops SYNs): nothing is moving yet. Shown by
    /// the handles, never persisted; it turns back into [`Status::Running`] when the
    /// connect is answered, or ends as any failed connect does.
    Connecting,
    /// Paused by [`crate::Upload::pause`]; [`crate::Upload::resume`] continues it.
    PausedByApplication,
    /// Waiting for the server's host to become reachable. No retry is spent meanwhile.
    PausedNoNetwork,
    /// Waiting for an unmetered network (its [`CostPolicy`] forbids the costed one).
    PausedCostedNetwork,
    /// Waiting for the program to register the credentials provider the upload names
    /// (after a restart that did not register it): nothing is sent without its
    /// credentials, no retry is spent, and it goes on as soon as the provider is
    /// registered. [`crate::Upload::error`] names the provider. Not persisted: each open
    /// decides it again from the providers registered then.
    PausedNoCredentials,
    /// An attempt failed transiently; the next starts after a backoff.
    WaitingToRetry,
    /// Done: the server answered 2xx and its response is kept.
    Completed,
    /// Canceled by the program.
    Canceled,
    /// Failed for good; [`crate::Upload::error`] says why.
    Error,
}

impl Status {
    /// Whether the upload has ended: completed, canceled or failed.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Canceled | Status::Error)
    }

    /// The word the command-line example and logs use: `queued`, `running`,
    /// `connecting`, `paused`,
    /// `paused-no-network`, `paused-costed-network`, `paused-no-credentials`,
    /// `waiting-to-retry`, `completed`, `canceled` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Connecting => "connecting",
            Status::PausedByApplication => "paused",
            Status::PausedNoNetwork => "paused-no-network",
            Status::PausedCostedNetwork => "paused-costed-network",
            Status::PausedNoCredentials => "paused-no-credentials",
            Status::WaitingToRetry => "waiting-to-retry",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
            Status::Error => "error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scheduling priority: higher runs first; [`crate::Upload::make_current`] beats both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// After `Default`.
    Low,
    /// The default.
    #[default]
    Default,
    /// Before `Default`.
    High,
}

/// Whether an upload may run while the program says the network is costed (metered).
/// Linux has no standard metered flag: see [`crate::Uploader::set_network_cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CostPolicy {
    /// Run on any network. The default.
    #[default]
    Always,
    /// Pause (as [`Status::PausedCostedNetwork`]) while the network is costed.
    UnrestrictedOnly,
}

/// A snapshot of an upload's progress (WinRT's `BackgroundUploadProgress`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Status now.
    pub status: Status,
    /// Body bytes sent in the current (or last) attempt: handed to the kernel's socket,
    /// so on a slow link the server may have received a few MiB less (see
    /// `bytes_acknowledged` for what it confirmed). For a resumed upload this starts at
    /// the offset it resumed from.
    pub bytes_sent: u64,
    /// Total body bytes.
    pub total_bytes_to_send: u64,
    /// Bytes the server has acknowledged as stored (tus `Upload-Offset`, or the whole body
    /// once a plain upload completed).
    pub bytes_acknowledged: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// Response body size announced by the server, if it did.
    pub total_bytes_to_receive: Option<u64>,
    /// Some attempt had to start again from byte 0.
    pub has_restarted: bool,
    /// A response arrived that replaced an earlier one (for example after a retry).
    pub has_response_changed: bool,
    /// Attempts made so far that counted against the retry budget.
    pub attempts: u32,
}

/// The server's response (WinRT's `ResponseInformation`).
///
/// Its `Debug` hides credentials: the URL's userinfo and query, and the values of
/// `Set-Cookie` and similar headers (the fields themselves hold them as received).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseInfo {
    /// HTTP status code.
    pub status: u16,
    /// Headers in the order received.
    pub headers: Vec<(String, String)>,
    /// The URL that answered, after redirects.
    pub url: String,
    /// Whether the upload can be resumed on this server (it speaks tus, or it is an S3,
    /// Google Cloud Storage or Azure upload).
    pub is_resumable: bool,
    /// Bytes of the response body kept in the store.
    pub body_len: u64,
    /// The body was longer than the configured cap and was cut there.
    pub body_truncated: bool,
}

impl std::fmt::Debug for ResponseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if crate::redact::is_sensitive_header(n) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("ResponseInfo")
            .field("status", &self.status)
            .field("headers", &headers)
            .field("url", &crate::redact::redact_url(&self.url))
            .field("is_resumable", &self.is_resumable)
            .field("body_len", &self.body_len)
            .field("body_truncated", &self.body_truncated)
            .finish()
    }
}

impl ResponseInfo {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What [`crate::Upload::events`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bytes moved (coalesced: a few per second at most).
    Progress(Progress),
    /// The status changed. After a final status no more events come.
    StatusChanged(Progress),
}

impl Event {
    /// The progress snapshot carried by the event.
    pub fn progress(&self) -> &Progress {
        match self {
            Event::Progress(p) | Event::StatusChanged(p) => p,
        }
    }
}
