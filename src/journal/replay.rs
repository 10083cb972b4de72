//! The fold: the one place that knows what records mean. Replay applies every record of
//! the journal, in order, to an empty [`State`]; the engine applies each new record the
//! same way after appending it, so memory and disk never disagree.

use std::collections::BTreeMap;

use super::record::{
    ChangedV1, CreatedV1, FailureV1, PriorityV1, ProgressV1, Record, RequestV1, ResponseV1,
    StateV1, StatusV1, UploadId,
};

/// Everything the journal knows about one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadState {
    /// Upload id.
    pub id: UploadId,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub created_ms: u64,
    /// The request as accepted.
    pub request: RequestV1,
    /// Current priority (may differ from the request's after a change).
    pub priority: PriorityV1,
    /// "Make current" sequence: higher runs first within a priority; 0 if never.
    pub current_seq: u64,
    /// Last persisted status.
    pub status: StatusV1,
    /// Milliseconds since the Unix epoch of the last status change.
    pub status_ms: u64,
    /// Attempts that counted against the retry budget.
    pub attempts: u32,
    /// Why it failed, for `Error`.
    pub error: Option<FailureV1>,
    /// Last progress checkpoint: bytes sent in the current attempt.
    pub bytes_sent: u64,
    /// Last progress checkpoint: bytes the server acknowledged.
    pub acked: u64,
    /// Where the resumable upload lives on the server.
    pub resume_url: Option<String>,
    /// The server's final response.
    pub response: Option<ResponseV1>,
    /// Some attempt started again from byte 0.
    pub restarted: bool,
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
    /// Applies one record. Never panics, whatever the record says.
    pub fn apply(&mut self, record: &Record) {
        let id = record.id();
        if id == UploadId::MAX {
            // Never handed out (ids stop below it), so only damage or a hostile file can
            // hold it; refusing it keeps `id + 1` from overflowing anywhere.
            self.ignored += 1;
            return;
        }
        match record {
            Record::Created(c) => self.create(c),
            Record::Removed(_) => {
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
                apply_to_upload(u, record);
                if let Record::Changed(c) = record {
                    self.next_current_seq =
                        self.next_current_seq.max(c.current_seq.saturating_add(1));
                }
            }
        }
    }

    fn create(&mut self, c: &CreatedV1) {
        self.bump_id(c.id);
        if self.uploads.contains_key(&c.id) {
            self.ignored += 1;
            return;
        }
        self.uploads.insert(
            c.id,
            UploadState {
                id: c.id,
                created_ms: c.created_ms,
                request: c.request.clone(),
                priority: c.request.priority,
                current_seq: 0,
                status: StatusV1::Queued,
                status_ms: c.created_ms,
                attempts: 0,
                error: None,
                bytes_sent: 0,
                acked: 0,
                resume_url: None,
                response: None,
                restarted: false,
            },
        );
    }

    fn bump_id(&mut self, id: UploadId) {
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// The fewest records that rebuild this state: what compaction writes.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for u in self.uploads.values() {
            upload_records(u, &mut out);
        }
        let max_live = self.uploads.keys().next_back().map(|id| id + 1);
        if self.next_id > 0 && max_live != Some(self.next_id) {
            out.push(Record::Removed(self.next_id - 1));
        }
        out
    }

    /// How many records [`State::snapshot`] would write, without building them.
    pub fn live_records(&self) -> usize {
        self.uploads
            .values()
            .map(|u| 2 + u.restarted as usize)
            .sum()
    }
}

fn apply_to_upload(u: &mut UploadState, record: &Record) {
    match record {
        Record::State(s) => {
            u.status = s.status;
            u.status_ms = s.at_ms;
            u.attempts = s.attempts;
            u.error = s.error.clone();
        }
        Record::Progress(p) => {
            u.bytes_sent = p.bytes_sent;
            u.acked = p.acked;
        }
        Record::ResumeUrl(r) => u.resume_url = r.url.clone(),
        Record::Response(r) => u.response = Some(r.clone()),
        Record::Restarted(_) => {
            u.restarted = true;
            u.bytes_sent = 0;
            u.acked = 0;
        }
        Record::Changed(c) => {
            u.priority = c.priority;
            u.current_seq = c.current_seq;
        }
        Record::Created(_) | Record::Removed(_) => {}
    }
}

fn upload_records(u: &UploadState, out: &mut Vec<Record>) {
    out.push(Record::Created(CreatedV1 {
        id: u.id,
        created_ms: u.created_ms,
        request: u.request.clone(),
    }));
    if u.priority != u.request.priority || u.current_seq != 0 {
        out.push(Record::Changed(ChangedV1 {
            id: u.id,
            priority: u.priority,
            current_seq: u.current_seq,
        }));
    }
    if u.restarted {
        out.push(Record::Restarted(u.id));
    }
    if u.status != StatusV1::Queued
        || u.attempts != 0
        || u.error.is_some()
        || u.status_ms != u.created_ms
    {
        out.push(Record::State(StateV1 {
            id: u.id,
            status: u.status,
            attempts: u.attempts,
            error: u.error.clone(),
            at_ms: u.status_ms,
        }));
    }
    if u.bytes_sent != 0 || u.acked != 0 {
        out.push(Record::Progress(ProgressV1 {
            id: u.id,
            bytes_sent: u.bytes_sent,
            acked: u.acked,
        }));
    }
    if let Some(url) = &u.resume_url {
        out.push(Record::ResumeUrl(super::record::ResumeUrlV1 {
            id: u.id,
            url: Some(url.clone()),
        }));
    }
    if let Some(r) = &u.response {
        out.push(Record::Response(r.clone()));
    }
}

/// Folds records into a fresh state.
pub fn fold<'a>(records: impl IntoIterator<Item = &'a Record>) -> State {
    let mut state = State::default();
    for r in records {
        state.apply(r);
    }
    state
}
