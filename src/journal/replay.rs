//! The fold: the one place that knows what records mean. Replay applies every record of
//! the journal, in order, to an empty [`State`]; the engine applies each new record the
//! same way after appending it, so memory and disk never disagree.

use std::collections::BTreeMap;

use super::entry::Entry;
use super::record::Record;
use crate::model::{Failure, Request, Session, StoredResponse, UploadId};
use crate::model::{Priority, Status};

/// Everything the journal knows about one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// Upload id.
    pub id: UploadId,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub created_ms: u64,
    /// The request as accepted.
    pub request: Request,
    /// Current priority (may differ from the request's after a change).
    pub priority: Priority,
    /// "Make current" sequence: higher runs first within a priority; 0 if never.
    pub current_seq: u64,
    /// Last persisted status.
    pub status: Status,
    /// Milliseconds since the Unix epoch of the last status change.
    pub status_ms: u64,
    /// Attempts that counted against the retry budget.
    pub attempts: u32,
    /// Why it failed, for `Error`.
    pub error: Option<Failure>,
    /// Last progress checkpoint: bytes sent in the current attempt.
    pub bytes_sent: u64,
    /// Last progress checkpoint: bytes the server acknowledged.
    pub acked: u64,
    /// The protocol's session on the server (for tus, where the upload lives).
    pub session: Option<Session>,
    /// The server's final response.
    pub response: Option<StoredResponse>,
    /// The journal holds the response's body (at most [`super::INLINE_BODY_MAX`] bytes,
    /// in its [`Entry::Response`]): it has no file, and a compaction carries it over.
    pub body_in_journal: bool,
    /// Some attempt started again from byte 0.
    pub restarted: bool,
}

impl UploadState {
    /// The tus upload URL, if the session has one.
    pub fn resume_url(&self) -> Option<&str> {
        match &self.session {
            Some(Session::Tus { url }) => Some(url),
            Some(Session::S3 { .. } | Session::Gcs { .. }) | None => None,
        }
    }
}

/// The state of every upload in a store, folded from its journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Live uploads by id.
    pub uploads: BTreeMap<UploadId, UploadState>,
    /// The id the next upload gets. Ids are never reused within a store.
    pub next_id: UploadId,
    /// The next "make current" sequence number.
    pub next_current_seq: u64,
    /// Records that referred to an upload the state does not have, or repeated a create.
    /// Harmless (for example progress written just before a removal), counted for tests.
    pub ignored: u64,
}

impl State {
    /// Applies one entry. Never panics, whatever the entry says.
    pub fn apply(&mut self, entry: &Entry) {
        let id = entry.id();
        if id == UploadId::MAX {
            // Never handed out (ids stop below it), so only damage or a hostile file can
            // hold it; refusing it keeps `id + 1` from overflowing anywhere.
            self.ignored += 1;
            return;
        }
        match entry {
            Entry::Created {
                created_ms,
                request,
                ..
            } => self.create(id, *created_ms, request),
            Entry::Removed(_) => {
                // Also written for a removed maximum id by compaction, so that ids are never
                // reused after a compaction dropped the upload that held the maximum.
                self.bump_id(id);
                self.uploads.remove(&id);
            }
            _ => {
                let Some(u) = self.uploads.get_mut(&id) else {
                    self.ignored += 1;
                    return;
                };
                apply_to_upload(u, entry);
                if let Entry::Changed { current_seq, .. } = entry {
                    self.next_current_seq =
                        self.next_current_seq.max(current_seq.saturating_add(1));
                }
            }
        }
    }

    fn create(&mut self, id: UploadId, created_ms: u64, request: &Request) {
        self.bump_id(id);
        if self.uploads.contains_key(&id) {
            self.ignored += 1;
            return;
        }
        self.uploads.insert(
            id,
            UploadState {
                id,
                created_ms,
                request: request.clone(),
                priority: request.priority,
                current_seq: 0,
                status: Status::Queued,
                status_ms: created_ms,
                attempts: 0,
                error: None,
                bytes_sent: 0,
                acked: 0,
                session: None,
                response: None,
                body_in_journal: false,
                restarted: false,
            },
        );
    }

    fn bump_id(&mut self, id: UploadId) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// The fewest records that rebuild this state: what compaction writes. `bodies`
    /// gives the bytes of each response body the journal holds
    /// ([`UploadState::body_in_journal`]); one it does not give is written as a body with
    /// a file of its own.
    pub fn snapshot(&self, mut bodies: impl FnMut(UploadId) -> Option<Vec<u8>>) -> Vec<Record> {
        let mut out = Vec::new();
        for u in self.uploads.values() {
            let body = if u.body_in_journal {
                bodies(u.id)
            } else {
                None
            };
            upload_entries(u, body, &mut out);
        }
        let max_live = self.uploads.keys().next_back().map(|id| id + 1);
        if self.next_id > 0 && max_live != Some(self.next_id) {
            out.push(Entry::Removed(self.next_id - 1));
        }
        out.iter().map(Record::from).collect()
    }

    /// How many records [`State::snapshot`] would write, without building them.
    pub fn live_records(&self) -> usize {
        self.uploads
            .values()
            .map(|u| 2 + u.restarted as usize)
            .sum()
    }
}

fn apply_to_upload(u: &mut UploadState, entry: &Entry) {
    match entry {
        Entry::State {
            status,
            attempts,
            error,
            at_ms,
            ..
        } => {
            u.status = *status;
            u.status_ms = *at_ms;
            u.attempts = *attempts;
            u.error = error.clone();
        }
        Entry::Progress {
            bytes_sent, acked, ..
        } => {
            u.bytes_sent = *bytes_sent;
            u.acked = *acked;
        }
        Entry::Session { session, .. } => u.session = session.clone(),
        // A part of the session it belongs to; one that arrives with no S3 session (its
        // upload id was forgotten since) is stale and ignored.
        Entry::Part { part, .. } => {
            if let Some(Session::S3 { parts, .. }) = &mut u.session {
                match parts.iter_mut().find(|p| p.number == part.number) {
                    Some(p) => *p = part.clone(),
                    None => parts.push(part.clone()),
                }
            }
        }
        Entry::Response { response, body, .. } => {
            u.response = Some(response.clone());
            u.body_in_journal = body.is_some();
        }
        Entry::Restarted(_) => {
            u.restarted = true;
            u.bytes_sent = 0;
            u.acked = 0;
        }
        Entry::Changed {
            priority,
            current_seq,
            ..
        } => {
            u.priority = *priority;
            u.current_seq = *current_seq;
        }
        Entry::Created { .. } | Entry::Removed(_) => {}
    }
}

fn upload_entries(u: &UploadState, body: Option<Vec<u8>>, out: &mut Vec<Entry>) {
    out.push(Entry::Created {
        id: u.id,
        created_ms: u.created_ms,
        request: u.request.clone(),
    });
    if u.priority != u.request.priority || u.current_seq != 0 {
        out.push(Entry::Changed {
            id: u.id,
            priority: u.priority,
            current_seq: u.current_seq,
        });
    }
    if u.restarted {
        out.push(Entry::Restarted(u.id));
    }
    if u.status != Status::Queued
        || u.attempts != 0
        || u.error.is_some()
        || u.status_ms != u.created_ms
    {
        out.push(Entry::State {
            id: u.id,
            status: u.status,
            attempts: u.attempts,
            error: u.error.clone(),
            at_ms: u.status_ms,
        });
    }
    if u.bytes_sent != 0 || u.acked != 0 {
        out.push(Entry::Progress {
            id: u.id,
            bytes_sent: u.bytes_sent,
            acked: u.acked,
        });
    }
    if let Some(session) = &u.session {
        out.push(Entry::Session {
            id: u.id,
            session: Some(session.clone()),
        });
        if let Session::S3 { parts, .. } = session {
            out.extend(parts.iter().map(|part| Entry::Part {
                id: u.id,
                part: part.clone(),
            }));
        }
    }
    if let Some(r) = &u.response {
        out.push(Entry::Response {
            id: u.id,
            response: r.clone(),
            body,
        });
    }
}

/// Folds on-disk records into a fresh state.
pub fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> State {
    let mut state = State::default();
    for r in records {
        state.apply(&Entry::from(r));
    }
    state
}
