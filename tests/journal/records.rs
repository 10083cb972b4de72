//! Sample journal records for the journal tests: every kind, deterministic.
#![allow(dead_code)]

use std::path::Path;

use background_transfer::journal::format::{self, Scan, HEADER_LEN};
use background_transfer::journal::record::*;
use background_transfer::journal::JOURNAL_FILE;

/// A request with a file body.
pub fn request(id: u64) -> RequestV1 {
    RequestV1 {
        url: format!("https://example.com/upload/{id}"),
        method: if id % 2 == 0 { "PUT" } else { "POST" }.into(),
        headers: vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("X-Id".into(), id.to_string()),
        ],
        body: if id % 3 == 0 {
            BodyV1::Multipart(MultipartV1 {
                subtype: "form-data".into(),
                boundary: format!("b{id}"),
                parts: vec![
                    PartV1 {
                        name: "note".into(),
                        file_name: None,
                        content_type: None,
                        content: PartContentV1::Text("hello".into()),
                    },
                    PartV1 {
                        name: "file".into(),
                        file_name: Some("a.bin".into()),
                        content_type: Some("application/octet-stream".into()),
                        content: PartContentV1::File(source(id)),
                    },
                ],
            })
        } else {
            BodyV1::File(source(id))
        },
        priority: [PriorityV1::Low, PriorityV1::Default, PriorityV1::High][(id % 3) as usize],
        group: (id % 4 == 0).then(|| "photos".to_string()),
        cost: CostPolicyV1::Always,
        protocol: if id % 5 == 0 {
            ProtocolV1::Tus {
                chunk_size: Some(1 << 20),
            }
        } else {
            ProtocolV1::Plain
        },
        idempotent: id % 7 == 0,
    }
}

fn source(id: u64) -> SourceV1 {
    SourceV1 {
        path: format!("/data/file-{id}.bin").into_bytes(),
        size: id * 1000,
        mtime_ns: 1_700_000_000_000_000_000 + id as i64,
        spooled: false,
    }
}

/// Record number `n` of a deterministic life story touching uploads 0..=n/4.
pub fn record(n: u64) -> Record {
    let id = n / 4;
    match n % 4 {
        0 => Record::Created(CreatedV1 {
            id,
            created_ms: 1_000 + n,
            request: request(id),
        }),
        1 => Record::Progress(ProgressV1 {
            id,
            bytes_sent: n * 100,
            acked: n * 50,
        }),
        2 => match id % 4 {
            0 => Record::State(StateV1 {
                id,
                status: StatusV1::Error,
                attempts: 4,
                error: Some(FailureV1::HttpStatus { status: 500 }),
                at_ms: 2_000 + n,
            }),
            1 => Record::ResumeUrl(ResumeUrlV1 {
                id,
                url: Some(format!("https://example.com/files/{id}")),
            }),
            2 => Record::Restarted(id),
            _ => Record::Changed(ChangedV1 {
                id,
                priority: PriorityV1::High,
                current_seq: id,
            }),
        },
        _ => match id % 3 {
            0 => Record::Response(ResponseV1 {
                id,
                status: 201,
                headers: vec![("Location".into(), "/x".into())],
                url: "https://example.com/upload".into(),
                body_len: 12,
                body_truncated: false,
            }),
            1 => Record::Removed(id),
            _ => Record::State(StateV1 {
                id,
                status: StatusV1::Completed,
                attempts: 1,
                error: None,
                at_ms: 3_000 + n,
            }),
        },
    }
}

/// The records of the journal in the store `dir` as they are on disk: the file read and
/// scanned after its header (the store is not opened).
pub fn scan_journal(dir: &Path) -> Scan {
    let bytes = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
    format::scan(&bytes[HEADER_LEN..])
}
