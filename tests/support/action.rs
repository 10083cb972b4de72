//! What the server does with a request (`Action`) and how it picks one per request (`Behavior`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::http::RequestHead;

/// Arbitrary per-request logic: gets the request head and its 0-based index across the server.
pub type Handler = Arc<dyn Fn(&RequestHead, usize) -> Action + Send + Sync>;

/// The server's reaction to one request.
///
/// Unless stated otherwise the whole request body is read (and hashed) before answering,
/// and the connection stays open for the next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer with this status, extra headers and body. `Content-Length` is added unless given.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Read this many body bytes, then drop the connection without answering.
    CloseAfterBodyBytes(u64),
    /// Read this many body bytes, then stop reading until the server is dropped.
    StallAfterBodyBytes(u64),
    /// Read the whole body, wait this long, then answer `200 ok`.
    DelayResponse(Duration),
    /// Answer `status` (503 or 429) with `Retry-After: seconds`.
    RetryAfter { status: u16, seconds: u64 },
    /// Answer `status` (301/302/303/307/308) with `Location: location`.
    Redirect { status: u16, location: String },
    /// Read the body at about this rate, then answer `200 ok`.
    SlowRead { bytes_per_sec: u64 },
    /// Drop the connection as soon as the request head is parsed: no body read, no answer.
    CloseImmediately,
    /// Write bytes that are not HTTP, then close.
    Garbage,
    /// Answer 200 with a streamed body of this many bytes; `u64::MAX` streams until the
    /// client goes away (no `Content-Length`, `Connection: close`).
    HugeBody(u64),
}

impl Action {
    /// `200` with body `ok`.
    pub fn ok() -> Action {
        Action::respond(200, "ok")
    }

    /// `status` with the given body and no extra headers.
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` with extra headers and the given body.
    pub fn respond_with_headers(
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Action {
        Action::Respond {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }
}

impl Default for Action {
    fn default() -> Action {
        Action::ok()
    }
}

/// Picks the action for each request: scripted actions first (in order, one per request),
/// then the handler if one is set, else the default action.
#[derive(Clone, Default)]
pub struct Behavior {
    script: VecDeque<Action>,
    default: Action,
    handler: Option<Handler>,
}

/// What `Behavior::next` decided: an action now, or a handler to ask outside the lock.
pub(super) enum Choice {
    Ready(Action),
    Ask(Handler),
}

impl Behavior {
    /// Every request gets `200 ok`.
    pub fn ok() -> Behavior {
        Behavior::default()
    }

    /// Every request gets `action`.
    pub fn always(action: Action) -> Behavior {
        Behavior {
            default: action,
            ..Behavior::default()
        }
    }

    /// The first requests get `actions` in order, later ones `200 ok` (see [`Behavior::then`]).
    pub fn script(actions: impl IntoIterator<Item = Action>) -> Behavior {
        Behavior {
            script: actions.into_iter().collect(),
            ..Behavior::default()
        }
    }

    /// Sets the action used once the script is used up.
    pub fn then(mut self, default: Action) -> Behavior {
        self.default = default;
        self
    }

    /// Every request (after any script) is decided by `f(head, index)`.
    pub fn handler(f: impl Fn(&RequestHead, usize) -> Action + Send + Sync + 'static) -> Behavior {
        Behavior {
            handler: Some(Arc::new(f)),
            ..Behavior::default()
        }
    }

    pub(super) fn set_script(&mut self, actions: Vec<Action>) {
        self.script = actions.into();
    }

    pub(super) fn set_default(&mut self, action: Action) {
        self.default = action;
    }

    pub(super) fn set_handler(&mut self, handler: Option<Handler>) {
        self.handler = handler;
    }

    pub(super) fn next(&mut self) -> Choice {
        if let Some(action) = self.script.pop_front() {
            Choice::Ready(action)
        } else if let Some(handler) = &self.handler {
            Choice::Ask(Arc::clone(handler))
        } else {
            Choice::Ready(self.default.clone())
        }
    }
}

impl From<Action> for Behavior {
    fn from(action: Action) -> Behavior {
        Behavior::always(action)
    }
}

impl From<Vec<Action>> for Behavior {
    fn from(actions: Vec<Action>) -> Behavior {
        Behavior::script(actions)
    }
}

impl fmt::Debug for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behavior")
            .field("script", &self.script)
            .field("default", &self.default)
            .field("handler", &self.handler.as_ref().map(|_| "Fn"))
            .finish()
    }
}
