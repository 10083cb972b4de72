//! The journal's boundary: its on-disk `*V1` records to and from the crate's model.
//! The one place that knows both; nothing outside `journal/` sees a `*V1` type.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::entry::Entry;
use super::record::*;
use crate::model::{
    AzureTarget, Body, Failure, GcsTarget, Multipart, Part, PartContent, Protocol, Request,
    S3Target, Session, Source, StoredPart, StoredResponse, TimeoutPhase, UrlStyle,
};
use crate::model::{CostPolicy, Priority, Status};

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(b.to_vec()))
}

fn stored_response(r: &ResponseV1) -> StoredResponse {
    StoredResponse {
        status: r.status,
        headers: r.headers.clone(),
        url: r.url.clone(),
        body_len: r.body_len,
        body_truncated: r.body_truncated,
    }
}

impl From<&Record> for Entry {
    fn from(r: &Record) -> Entry {
        match r {
            Record::Created(c) => Entry::Created {
                id: c.id,
                created_ms: c.created_ms,
                request: request(&c.request),
            },
            Record::CreatedV2(c) => Entry::Created {
                id: c.created.id,
                created_ms: c.created.created_ms,
                request: Request {
                    credentials: c.credentials.clone(),
                    ..request(&c.created.request)
                },
            },
            Record::CreatedV3(c) => Entry::Created {
                id: c.created.created.id,
                created_ms: c.created.created.created_ms,
                request: Request {
                    credentials: c.created.credentials.clone(),
                    client_identity: c.client_identity.clone(),
                    ..request(&c.created.created.request)
                },
            },
            Record::CreatedV4(c) => {
                let v3 = &c.created;
                Entry::Created {
                    id: v3.created.created.id,
                    created_ms: v3.created.created.created_ms,
                    request: Request {
                        credentials: v3.created.credentials.clone(),
                        client_identity: v3.client_identity.clone(),
                        submission: Some(c.submission),
                        submitter: c.submitter,
                        ..request(&v3.created.created.request)
                    },
                }
            }
            Record::State(s) => Entry::State {
                id: s.id,
                status: status(s.status),
                attempts: s.attempts,
                error: s.error.as_ref().map(failure),
                at_ms: s.at_ms,
            },
            Record::Progress(p) => Entry::Progress {
                id: p.id,
                bytes_sent: p.bytes_sent,
                acked: p.acked,
            },
            Record::ResumeUrl(r) => Entry::Session {
                id: r.id,
                session: r.url.clone().map(|url| Session::Tus { url }),
            },
            Record::Response(r) => Entry::Response {
                id: r.id,
                response: stored_response(r),
                body: None,
            },
            Record::ResponseWithBody(r) => Entry::Response {
                id: r.response.id,
                response: stored_response(&r.response),
                body: Some(r.body.clone()),
            },
            Record::Removed(id) => Entry::Removed(*id),
            Record::Restarted(id) => Entry::Restarted(*id),
            Record::Changed(c) => Entry::Changed {
                id: c.id,
                priority: priority(c.priority),
                current_seq: c.current_seq,
            },
            Record::S3Upload(u) => Entry::Session {
                id: u.id,
                session: u.upload_id.clone().map(|upload_id| Session::S3 {
                    upload_id,
                    parts: vec![],
                }),
            },
            Record::GcsSession(g) => Entry::Session {
                id: g.id,
                session: g.uri.clone().map(|uri| Session::Gcs { uri }),
            },
            Record::S3Part(p) => Entry::Part {
                id: p.id,
                part: StoredPart {
                    number: p.number,
                    etag: p.etag.clone(),
                    size: p.size,
                },
            },
        }
    }
}

impl From<Record> for Entry {
    fn from(r: Record) -> Entry {
        Entry::from(&r)
    }
}

impl From<&Entry> for Record {
    fn from(e: &Entry) -> Record {
        match e {
            Entry::Created {
                id,
                created_ms,
                request,
            } => {
                let created = CreatedV1 {
                    id: *id,
                    created_ms: *created_ms,
                    request: request_v1(request),
                };
                let v3 = |created| CreatedV3 {
                    created: CreatedV2 {
                        created,
                        credentials: request.credentials.clone(),
                    },
                    client_identity: request.client_identity.clone(),
                };
                match (
                    &request.credentials,
                    &request.client_identity,
                    request.submission,
                ) {
                    (None, None, None) => Record::Created(created),
                    (credentials, None, None) => Record::CreatedV2(CreatedV2 {
                        created,
                        credentials: credentials.clone(),
                    }),
                    (_, Some(_), None) => Record::CreatedV3(v3(created)),
                    (_, _, Some(submission)) => Record::CreatedV4(CreatedV4 {
                        created: v3(created),
                        submission,
                        submitter: request.submitter,
                    }),
                }
            }
            Entry::State {
                id,
                status,
                attempts,
                error,
                at_ms,
            } => Record::State(StateV1 {
                id: *id,
                status: status_v1(*status),
                attempts: *attempts,
                error: error.as_ref().map(failure_v1),
                at_ms: *at_ms,
            }),
            Entry::Progress {
                id,
                bytes_sent,
                acked,
            } => Record::Progress(ProgressV1 {
                id: *id,
                bytes_sent: *bytes_sent,
                acked: *acked,
            }),
            // A session that is gone is written as a tus one: replay forgets the session
            // whatever its protocol.
            Entry::Session { id, session: None } => {
                Record::ResumeUrl(ResumeUrlV1 { id: *id, url: None })
            }
            Entry::Session {
                id,
                session: Some(Session::Tus { url }),
            } => Record::ResumeUrl(ResumeUrlV1 {
                id: *id,
                url: Some(url.clone()),
            }),
            // Only the upload's identity: its parts are `Part` entries of their own, so
            // that a part costs one small record, not a rewrite of the whole list.
            Entry::Session {
                id,
                session: Some(Session::S3 { upload_id, .. }),
            } => Record::S3Upload(S3UploadV1 {
                id: *id,
                upload_id: Some(upload_id.clone()),
            }),
            Entry::Session {
                id,
                session: Some(Session::Gcs { uri }),
            } => Record::GcsSession(GcsSessionV1 {
                id: *id,
                uri: Some(uri.clone()),
            }),
            Entry::Part { id, part } => Record::S3Part(S3PartV1 {
                id: *id,
                number: part.number,
                etag: part.etag.clone(),
                size: part.size,
            }),
            Entry::Response { id, response, body } => {
                let response = ResponseV1 {
                    id: *id,
                    status: response.status,
                    headers: response.headers.clone(),
                    url: response.url.clone(),
                    body_len: response.body_len,
                    body_truncated: response.body_truncated,
                };
                match body {
                    None => Record::Response(response),
                    Some(body) => Record::ResponseWithBody(ResponseWithBodyV1 {
                        response,
                        body: body.clone(),
                    }),
                }
            }
            Entry::Removed(id) => Record::Removed(*id),
            Entry::Restarted(id) => Record::Restarted(*id),
            Entry::Changed {
                id,
                priority,
                current_seq,
            } => Record::Changed(ChangedV1 {
                id: *id,
                priority: priority_v1(*priority),
                current_seq: *current_seq,
            }),
        }
    }
}

fn request(r: &RequestV1) -> Request {
    Request {
        url: r.url.clone(),
        method: r.method.clone(),
        headers: r.headers.clone(),
        body: match &r.body {
            BodyV1::File(s) => Body::File(source(s)),
            BodyV1::Multipart(m) => Body::Multipart(Multipart {
                subtype: m.subtype.clone(),
                boundary: m.boundary.clone(),
                parts: m
                    .parts
                    .iter()
                    .map(|p| Part {
                        name: p.name.clone(),
                        file_name: p.file_name.clone(),
                        content_type: p.content_type.clone(),
                        content: match &p.content {
                            PartContentV1::Text(t) => PartContent::Text(t.clone()),
                            PartContentV1::File(s) => PartContent::File(source(s)),
                        },
                    })
                    .collect(),
            }),
        },
        priority: priority(r.priority),
        group: r.group.clone(),
        cost: match r.cost {
            CostPolicyV1::Always => CostPolicy::Always,
            CostPolicyV1::UnrestrictedOnly => CostPolicy::UnrestrictedOnly,
        },
        protocol: match &r.protocol {
            ProtocolV1::Plain => Protocol::Plain,
            ProtocolV1::Tus { chunk_size } => Protocol::Tus {
                chunk_size: *chunk_size,
            },
            ProtocolV1::S3(t) => Protocol::S3(Box::new(S3Target {
                endpoint: t.endpoint.clone(),
                style: if t.virtual_host {
                    UrlStyle::VirtualHost
                } else {
                    UrlStyle::Path
                },
                bucket: t.bucket.clone(),
                key: t.key.clone(),
                region: t.region.clone(),
                part_size: t.part_size,
                storage_class: t.storage_class.clone(),
                content_type: t.content_type.clone(),
                metadata: t.metadata.clone(),
                credentials: t.credentials.clone(),
            })),
            ProtocolV1::Gcs(t) => Protocol::Gcs(Box::new(GcsTarget {
                session_given: t.session_given,
                chunk_size: t.chunk_size,
                content_type: t.content_type.clone(),
            })),
            ProtocolV1::Azure(t) => Protocol::Azure(Box::new(AzureTarget {
                block_size: t.block_size,
                block_prefix: t.block_prefix.clone(),
                content_type: t.content_type.clone(),
            })),
        },
        idempotent: r.idempotent,
        credentials: None,
        client_identity: None,
        submission: None,
        submitter: None,
    }
}

fn request_v1(r: &Request) -> RequestV1 {
    RequestV1 {
        url: r.url.clone(),
        method: r.method.clone(),
        headers: r.headers.clone(),
        body: match &r.body {
            Body::File(s) => BodyV1::File(source_v1(s)),
            Body::Multipart(m) => BodyV1::Multipart(MultipartV1 {
                subtype: m.subtype.clone(),
                boundary: m.boundary.clone(),
                parts: m
                    .parts
                    .iter()
                    .map(|p| PartV1 {
                        name: p.name.clone(),
                        file_name: p.file_name.clone(),
                        content_type: p.content_type.clone(),
                        content: match &p.content {
                            PartContent::Text(t) => PartContentV1::Text(t.clone()),
                            PartContent::File(s) => PartContentV1::File(source_v1(s)),
                        },
                    })
                    .collect(),
            }),
        },
        priority: priority_v1(r.priority),
        group: r.group.clone(),
        cost: match r.cost {
            CostPolicy::Always => CostPolicyV1::Always,
            CostPolicy::UnrestrictedOnly => CostPolicyV1::UnrestrictedOnly,
        },
        protocol: match &r.protocol {
            Protocol::Plain => ProtocolV1::Plain,
            Protocol::Tus { chunk_size } => ProtocolV1::Tus {
                chunk_size: *chunk_size,
            },
            Protocol::S3(t) => ProtocolV1::S3(Box::new(S3TargetV1 {
                endpoint: t.endpoint.clone(),
                virtual_host: t.style == UrlStyle::VirtualHost,
                bucket: t.bucket.clone(),
                key: t.key.clone(),
                region: t.region.clone(),
                part_size: t.part_size,
                storage_class: t.storage_class.clone(),
                content_type: t.content_type.clone(),
                metadata: t.metadata.clone(),
                credentials: t.credentials.clone(),
            })),
            Protocol::Gcs(t) => ProtocolV1::Gcs(Box::new(GcsTargetV1 {
                session_given: t.session_given,
                chunk_size: t.chunk_size,
                content_type: t.content_type.clone(),
            })),
            Protocol::Azure(t) => ProtocolV1::Azure(Box::new(AzureTargetV1 {
                block_size: t.block_size,
                block_prefix: t.block_prefix.clone(),
                content_type: t.content_type.clone(),
            })),
        },
        idempotent: r.idempotent,
    }
}

fn source(s: &SourceV1) -> Source {
    Source {
        path: path(&s.path),
        size: s.size,
        mtime_ns: s.mtime_ns,
        spooled: s.spooled,
    }
}

fn source_v1(s: &Source) -> SourceV1 {
    SourceV1 {
        path: bytes(&s.path),
        size: s.size,
        mtime_ns: s.mtime_ns,
        spooled: s.spooled,
    }
}

fn priority(p: PriorityV1) -> Priority {
    match p {
        PriorityV1::Low => Priority::Low,
        PriorityV1::Default => Priority::Default,
        PriorityV1::High => Priority::High,
    }
}

fn priority_v1(p: Priority) -> PriorityV1 {
    match p {
        Priority::Low => PriorityV1::Low,
        Priority::Default => PriorityV1::Default,
        Priority::High => PriorityV1::High,
    }
}

fn status(s: StatusV1) -> Status {
    match s {
        StatusV1::Queued => Status::Queued,
        StatusV1::Running => Status::Running,
        StatusV1::PausedByApplication => Status::PausedByApplication,
        StatusV1::PausedNoNetwork => Status::PausedNoNetwork,
        StatusV1::PausedCostedNetwork => Status::PausedCostedNetwork,
        StatusV1::WaitingToRetry => Status::WaitingToRetry,
        StatusV1::Completed => Status::Completed,
        StatusV1::Canceled => Status::Canceled,
        StatusV1::Error => Status::Error,
    }
}

fn status_v1(s: Status) -> StatusV1 {
    match s {
        Status::Queued => StatusV1::Queued,
        Status::Running => StatusV1::Running,
        Status::PausedByApplication => StatusV1::PausedByApplication,
        Status::PausedNoNetwork => StatusV1::PausedNoNetwork,
        Status::PausedCostedNetwork => StatusV1::PausedCostedNetwork,
        // Only shown by the handles while a running transfer's connect is unanswered.
        Status::Connecting => StatusV1::Running,
        // Decided again at each open from the providers registered then.
        Status::PausedNoCredentials => StatusV1::Queued,
        Status::WaitingToRetry => StatusV1::WaitingToRetry,
        Status::Completed => StatusV1::Completed,
        Status::Canceled => StatusV1::Canceled,
        Status::Error => StatusV1::Error,
    }
}

fn phase(s: &str) -> TimeoutPhase {
    match s {
        "connect" => TimeoutPhase::Connect,
        "send" => TimeoutPhase::Send,
        _ => TimeoutPhase::Response,
    }
}

fn phase_v1(p: TimeoutPhase) -> String {
    match p {
        TimeoutPhase::Connect => "connect",
        TimeoutPhase::Send => "send",
        TimeoutPhase::Response => "response",
    }
    .into()
}

pub(super) fn failure(f: &FailureV1) -> Failure {
    match f {
        FailureV1::HttpStatus { status } => Failure::HttpStatus { status: *status },
        FailureV1::SourceMissing { path: p } => Failure::SourceMissing { path: path(p) },
        FailureV1::SourceChanged { path: p, what } => Failure::SourceChanged {
            path: path(p),
            what: what.clone(),
        },
        FailureV1::Timeout { phase: p } => Failure::Timeout { phase: phase(p) },
        FailureV1::Tls { message } => Failure::Tls {
            message: message.clone(),
        },
        FailureV1::Network { message } => Failure::Network {
            message: message.clone(),
        },
        FailureV1::NotResumable { message } => Failure::NotResumable {
            reason: message.clone(),
        },
        FailureV1::Protocol { message } => Failure::Protocol {
            message: message.clone(),
        },
        // Written by older builds: only the text is known.
        FailureV1::Io { message } => Failure::Io {
            op: "upload".into(),
            path: PathBuf::new(),
            os_code: None,
            message: message.clone(),
        },
        FailureV1::IoDetailed {
            op,
            path: p,
            os_code,
            message,
        } => Failure::Io {
            op: op.clone(),
            path: path(p),
            os_code: *os_code,
            message: message.clone(),
        },
        FailureV1::JournalPoisoned { path: p } => Failure::JournalPoisoned { path: path(p) },
        FailureV1::RecordTooLarge { len, max } => Failure::RecordTooLarge {
            len: *len,
            max: *max,
        },
        FailureV1::InvalidUrl { url, reason } => Failure::InvalidUrl {
            url: url.clone(),
            reason: reason.clone(),
        },
        FailureV1::InvalidHeader { name, reason } => Failure::InvalidHeader {
            name: name.clone(),
            reason: reason.clone(),
        },
        FailureV1::InvalidRequest { reason } => Failure::InvalidRequest {
            reason: reason.clone(),
        },
        FailureV1::InvalidCertificate { reason } => Failure::InvalidCertificate {
            reason: reason.clone(),
        },
        FailureV1::Service {
            status,
            code,
            message,
        } => Failure::Service {
            status: *status,
            code: code.clone(),
            message: message.clone(),
        },
        FailureV1::Credentials {
            provider,
            message,
            permanent,
        } => Failure::Credentials {
            provider: provider.clone(),
            message: message.clone(),
            permanent: *permanent,
        },
        FailureV1::Other {
            variant,
            path: p,
            numbers,
        } => {
            let n = |i: usize| numbers.get(i).copied().unwrap_or(0);
            let n32 = |i: usize| u32::try_from(n(i)).unwrap_or(u32::MAX);
            match variant.as_str() {
                "StoreLocked" => Failure::StoreLocked { path: path(p) },
                "JournalNotRecognized" => Failure::JournalNotRecognized { path: path(p) },
                "JournalUnreadable" => Failure::JournalUnreadable {
                    path: path(p),
                    offset: n(0),
                },
                "JournalVersion" => Failure::JournalVersion {
                    path: path(p),
                    found: n32(0),
                    supported: n32(1),
                },
                "Canceled" => Failure::Canceled,
                "NotFound" => Failure::NotFound { id: n(0) },
                "NoResponse" => Failure::NoResponse { id: n(0) },
                "ShutDown" => Failure::ShutDown,
                "PermissionDenied" => Failure::PermissionDenied { path: path(p) },
                "NoOwner" => Failure::NoOwner { path: path(p) },
                // A variant from a newer build: say what it was rather than lose it.
                other => Failure::Protocol {
                    message: format!("failed ({other}, recorded by a newer version)"),
                },
            }
        }
    }
}

fn other(variant: &str, p: Option<&Path>, numbers: Vec<u64>) -> FailureV1 {
    FailureV1::Other {
        variant: variant.into(),
        path: p.map(bytes).unwrap_or_default(),
        numbers,
    }
}

pub(super) fn failure_v1(f: &Failure) -> FailureV1 {
    match f {
        Failure::HttpStatus { status } => FailureV1::HttpStatus { status: *status },
        Failure::SourceMissing { path } => FailureV1::SourceMissing { path: bytes(path) },
        Failure::SourceChanged { path, what } => FailureV1::SourceChanged {
            path: bytes(path),
            what: what.clone(),
        },
        Failure::Timeout { phase } => FailureV1::Timeout {
            phase: phase_v1(*phase),
        },
        Failure::Tls { message } => FailureV1::Tls {
            message: message.clone(),
        },
        Failure::Network { message } => FailureV1::Network {
            message: message.clone(),
        },
        Failure::NotResumable { reason } => FailureV1::NotResumable {
            message: reason.clone(),
        },
        Failure::Protocol { message } => FailureV1::Protocol {
            message: message.clone(),
        },
        Failure::Io {
            op,
            path,
            os_code,
            message,
        } => FailureV1::IoDetailed {
            op: op.clone(),
            path: bytes(path),
            os_code: *os_code,
            message: message.clone(),
        },
        Failure::JournalPoisoned { path } => FailureV1::JournalPoisoned { path: bytes(path) },
        Failure::RecordTooLarge { len, max } => FailureV1::RecordTooLarge {
            len: *len,
            max: *max,
        },
        Failure::InvalidUrl { url, reason } => FailureV1::InvalidUrl {
            url: url.clone(),
            reason: reason.clone(),
        },
        Failure::InvalidHeader { name, reason } => FailureV1::InvalidHeader {
            name: name.clone(),
            reason: reason.clone(),
        },
        Failure::InvalidRequest { reason } => FailureV1::InvalidRequest {
            reason: reason.clone(),
        },
        Failure::InvalidCertificate { reason } => FailureV1::InvalidCertificate {
            reason: reason.clone(),
        },
        Failure::Service {
            status,
            code,
            message,
        } => FailureV1::Service {
            status: *status,
            code: code.clone(),
            message: message.clone(),
        },
        Failure::Credentials {
            provider,
            message,
            permanent,
        } => FailureV1::Credentials {
            provider: provider.clone(),
            message: message.clone(),
            permanent: *permanent,
        },
        Failure::StoreLocked { path } => other("StoreLocked", Some(path), vec![]),
        Failure::JournalNotRecognized { path } => other("JournalNotRecognized", Some(path), vec![]),
        Failure::JournalUnreadable { path, offset } => {
            other("JournalUnreadable", Some(path), vec![*offset])
        }
        Failure::JournalVersion {
            path,
            found,
            supported,
        } => other(
            "JournalVersion",
            Some(path),
            vec![u64::from(*found), u64::from(*supported)],
        ),
        Failure::Canceled => other("Canceled", None, vec![]),
        Failure::NotFound { id } => other("NotFound", None, vec![*id]),
        Failure::NoResponse { id } => other("NoResponse", None, vec![*id]),
        Failure::ShutDown => other("ShutDown", None, vec![]),
        Failure::PermissionDenied { path } => other("PermissionDenied", Some(path), vec![]),
        Failure::NoOwner { path } => other("NoOwner", Some(path), vec![]),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::io;

    use super::super::{Durability, Entry, Store};
    use crate::model::{Body, Protocol, Request, Source, TimeoutPhase};
    use crate::{CostPolicy, Error, Priority, Status};

    /// One error of every variant. The match in `covered` is exhaustive: a new variant
    /// fails to compile until it is added here.
    fn every_error() -> Vec<Error> {
        let path = || std::path::PathBuf::from("/var/lib/x/\u{e9}t\u{e9}.bin");
        let all = vec![
            Error::StoreLocked { path: path() },
            Error::JournalNotRecognized { path: path() },
            Error::JournalUnreadable {
                path: path(),
                offset: 4242,
            },
            Error::JournalVersion {
                path: path(),
                found: 9,
                supported: 1,
            },
            Error::JournalPoisoned { path: path() },
            Error::RecordTooLarge {
                len: 2_000_000,
                max: 1 << 20,
            },
            Error::InvalidUrl {
                url: "http://h/x".into(),
                reason: "no".into(),
            },
            Error::InvalidHeader {
                name: "X-A".into(),
                reason: "CR".into(),
            },
            Error::InvalidRequest {
                reason: "empty".into(),
            },
            Error::InvalidCertificate {
                reason: "bad PEM".into(),
            },
            Error::SourceMissing { path: path() },
            Error::SourceChanged {
                path: path(),
                what: "its size".into(),
            },
            Error::HttpStatus { status: 413 },
            Error::Timeout {
                phase: TimeoutPhase::Connect,
            },
            Error::Timeout {
                phase: TimeoutPhase::Send,
            },
            Error::Timeout {
                phase: TimeoutPhase::Response,
            },
            Error::Tls {
                message: "expired".into(),
            },
            Error::Network {
                message: "reset".into(),
            },
            Error::NotResumable {
                reason: "POST".into(),
            },
            Error::Protocol {
                message: "bad offset".into(),
            },
            Error::Service {
                status: 403,
                code: "SignatureDoesNotMatch".into(),
                message: "check the secret".into(),
            },
            Error::Credentials {
                provider: "fleet".into(),
                message: "token file missing".into(),
                permanent: false,
            },
            Error::Credentials {
                provider: "fleet".into(),
                message: "deprovisioned".into(),
                permanent: true,
            },
            Error::Canceled,
            Error::NotFound { id: 7 },
            Error::NoResponse { id: 8 },
            Error::ShutDown,
            Error::PermissionDenied { path: path() },
            Error::NoOwner { path: path() },
            Error::Io {
                op: Cow::Borrowed("fsync journal"),
                path: path(),
                source: io::Error::from_raw_os_error(28),
            },
            Error::Io {
                op: Cow::Borrowed("read source"),
                path: path(),
                source: io::Error::other("short read"),
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            seen.insert(covered(e));
        }
        assert_eq!(seen.len(), 27, "every variant once at least");
        all
    }

    fn covered(e: &Error) -> u8 {
        match e {
            Error::StoreLocked { .. } => 0,
            Error::JournalNotRecognized { .. } => 1,
            Error::JournalUnreadable { .. } => 24,
            Error::JournalVersion { .. } => 2,
            Error::JournalPoisoned { .. } => 3,
            Error::RecordTooLarge { .. } => 4,
            Error::InvalidUrl { .. } => 5,
            Error::InvalidHeader { .. } => 6,
            Error::InvalidRequest { .. } => 7,
            Error::InvalidCertificate { .. } => 8,
            Error::SourceMissing { .. } => 9,
            Error::SourceChanged { .. } => 10,
            Error::HttpStatus { .. } => 11,
            Error::Timeout { .. } => 12,
            Error::Tls { .. } => 13,
            Error::Network { .. } => 14,
            Error::NotResumable { .. } => 15,
            Error::Protocol { .. } => 16,
            Error::Canceled => 17,
            Error::NotFound { .. } => 18,
            Error::NoResponse { .. } => 19,
            Error::ShutDown => 20,
            Error::Io { .. } => 21,
            Error::Service { .. } => 22,
            Error::Credentials { .. } => 23,
            Error::PermissionDenied { .. } => 25,
            Error::NoOwner { .. } => 26,
        }
    }

    fn request() -> Request {
        Request {
            url: "http://127.0.0.1:9/x".into(),
            method: "PUT".into(),
            headers: vec![],
            body: Body::File(Source {
                path: "/tmp/a".into(),
                size: 1,
                mtime_ns: 0,
                spooled: false,
            }),
            priority: Priority::Default,
            group: None,
            cost: CostPolicy::Always,
            protocol: Protocol::Plain,
            idempotent: true,
            credentials: None,
            client_identity: None,
            submission: None,
            submitter: None,
        }
    }

    /// Every failure kind, committed to a journal and read back after a reopen, comes
    /// back as the same variant with the same text.
    #[test]
    fn every_failure_reads_back_identically_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let errors = every_error();
        {
            let mut store = Store::open(dir.path()).unwrap();
            for (id, e) in errors.iter().enumerate() {
                let id = id as u64;
                store
                    .commit(
                        Entry::Created {
                            id,
                            created_ms: 1,
                            request: request(),
                        },
                        Durability::Sync,
                    )
                    .unwrap();
                store
                    .commit(
                        Entry::State {
                            id,
                            status: Status::Error,
                            attempts: 3,
                            error: Some(e.to_failure()),
                            at_ms: 2,
                        },
                        Durability::Sync,
                    )
                    .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        for (id, e) in errors.iter().enumerate() {
            let u = &store.state().uploads[&(id as u64)];
            let back = Error::from_failure(u.error.as_ref().unwrap());
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(format!("{back:?}"), format!("{e:?}"));
            assert_eq!(
                back.to_failure(),
                e.to_failure(),
                "the failure is a fixed point"
            );
        }
    }
}

#[cfg(test)]
mod credentials_tests {
    use super::super::{Durability, Entry, Store};
    use crate::model::{Body, Protocol, Request, Source};
    use crate::{CostPolicy, Priority};

    /// The provider's name survives a reopen (as `CreatedV2`), and so does a client
    /// identity's (as `CreatedV3`); a request with neither is still written as
    /// `Created`, which older builds read.
    #[test]
    fn the_credentials_provider_and_client_identity_names_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let request = |credentials: Option<&str>, identity: Option<&str>| Request {
            url: "http://127.0.0.1:9/x".into(),
            method: "PUT".into(),
            headers: vec![],
            body: Body::File(Source {
                path: "/tmp/a".into(),
                size: 1,
                mtime_ns: 0,
                spooled: false,
            }),
            priority: Priority::Default,
            group: None,
            cost: CostPolicy::Always,
            protocol: Protocol::Plain,
            idempotent: true,
            credentials: credentials.map(String::from),
            client_identity: identity.map(String::from),
            submission: None,
            submitter: None,
        };
        let cases = [
            (Some("agent"), None, "CreatedV2"),
            (None, None, "Created"),
            (None, Some("device-7"), "CreatedV3"),
            (Some("agent"), Some("device-7"), "CreatedV3"),
        ];
        {
            let mut store = Store::open(dir.path()).unwrap();
            for (id, (c, i, kind)) in cases.iter().enumerate() {
                let entry = Entry::Created {
                    id: id as u64,
                    created_ms: 1,
                    request: request(*c, *i),
                };
                let written = match super::Record::from(&entry) {
                    super::Record::Created(_) => "Created",
                    super::Record::CreatedV2(_) => "CreatedV2",
                    super::Record::CreatedV3(_) => "CreatedV3",
                    other => panic!("{other:?}"),
                };
                assert_eq!(written, *kind);
                store.commit(entry, Durability::Sync).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        for (id, (c, i, _)) in cases.iter().enumerate() {
            let r = &store.state().uploads[&(id as u64)].request;
            assert_eq!(r.credentials.as_deref(), *c);
            assert_eq!(r.client_identity.as_deref(), *i);
        }
    }
}

#[cfg(test)]
mod storage_protocol_tests {
    use super::super::{Durability, Entry, Store};
    use crate::model::{AzureTarget, Body, GcsTarget, Protocol, Request, Session, Source};
    use crate::{CostPolicy, Priority};

    fn request(protocol: Protocol) -> Request {
        Request {
            url: "http://127.0.0.1:9/x?sv=1&sig=s".into(),
            method: "PUT".into(),
            headers: vec![("x-ms-meta-a".into(), "b".into())],
            body: Body::File(Source {
                path: "/tmp/a".into(),
                size: 1,
                mtime_ns: 0,
                spooled: false,
            }),
            priority: Priority::Default,
            group: None,
            cost: CostPolicy::Always,
            protocol,
            idempotent: true,
            credentials: Some("p".into()),
            client_identity: None,
            submission: None,
            submitter: None,
        }
    }

    /// GCS and Azure targets and a GCS session read back after a reopen and after a
    /// compaction; a forgotten session stays forgotten.
    #[test]
    fn gcs_and_azure_uploads_and_sessions_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let gcs = request(Protocol::Gcs(Box::new(GcsTarget {
            session_given: false,
            chunk_size: 4 << 20,
            content_type: Some("video/mp4".into()),
        })));
        let azure = request(Protocol::Azure(Box::new(AzureTarget {
            block_size: 8 << 20,
            block_prefix: "0123abcd".into(),
            content_type: None,
        })));
        let session = Session::Gcs {
            uri: "http://127.0.0.1:9/upload?upload_id=u1".into(),
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            for (id, r) in [(0, &gcs), (1, &azure), (2, &gcs)] {
                let created = Entry::Created {
                    id,
                    created_ms: 1,
                    request: r.clone(),
                };
                store.commit(created, Durability::Sync).unwrap();
            }
            for id in [0, 2] {
                let entry = Entry::Session {
                    id,
                    session: Some(session.clone()),
                };
                store.commit(entry, Durability::Sync).unwrap();
            }
            let forget = Entry::Session {
                id: 2,
                session: None,
            };
            store.commit(forget, Durability::Sync).unwrap();
        }
        for round in ["reopen", "compaction"] {
            let mut store = Store::open(dir.path()).unwrap();
            let u = &store.state().uploads;
            assert_eq!(u[&0].request, gcs, "{round}");
            assert_eq!(u[&1].request, azure, "{round}");
            assert_eq!(u[&0].session, Some(session.clone()), "{round}");
            assert_eq!(u[&1].session, None, "{round}");
            assert_eq!(u[&2].session, None, "{round}: forgotten");
            store.compact().unwrap();
        }
    }
}
