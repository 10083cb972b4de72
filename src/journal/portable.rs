//! The journal's forms of a request and a failure, for other processes: a
//! [`crate::Client`] sends its request to the owner, and the owner its errors back, in
//! the records the journal already keeps stable across versions (the request as the
//! record of its creation, a failure as the record it is persisted in).

use super::convert;
use super::entry::Entry;
use super::record::{FailureV1, Record};
use crate::model::{Failure, Request};

/// A request as the bytes of its creation record (id 0).
pub(crate) fn encode_request(request: &Request, created_ms: u64) -> Vec<u8> {
    let record = Record::from(&Entry::Created {
        id: 0,
        created_ms,
        request: request.clone(),
    });
    postcard::to_allocvec(&record).unwrap_or_default()
}

/// The request [`encode_request`] wrote, and its creation time; `None` for bytes that
/// are not a creation record.
pub(crate) fn decode_request(bytes: &[u8]) -> Option<(Request, u64)> {
    let record: Record = postcard::from_bytes(bytes).ok()?;
    match Entry::from(&record) {
        Entry::Created {
            request,
            created_ms,
            ..
        } => Some((request, created_ms)),
        _ => None,
    }
}

/// A failure in its persisted form.
pub(crate) fn failure_record(f: &Failure) -> FailureV1 {
    convert::failure_v1(f)
}

/// The failure a persisted form stands for.
pub(crate) fn failure_of(f: &FailureV1) -> Failure {
    convert::failure(f)
}
