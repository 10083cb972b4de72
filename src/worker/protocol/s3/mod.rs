//! S3 uploads (and the services that speak its API): a file smaller than one part is
//! one signed PUT; a larger one is a multipart upload that resumes where the server
//! stands.
//!
//! Multipart, within one attempt: *start* (CreateMultipartUpload; its `UploadId` is
//! journaled, fsynced, before the first part), *where* (ListParts says which parts the
//! server has; a server without ListParts, like s3rver, is trusted with the parts the
//! journal recorded), *send* (UploadPart for each missing part, each with its
//! `Content-MD5`, each confirmed part journaled with its `ETag`), *finish*
//! (CompleteMultipartUpload, whose answer is kept as the upload's response). A server
//! that lost the multipart upload (`NoSuchUpload`) gets a new one, from part 1, with
//! `has_restarted` set; a Complete whose answer was lost and that comes back as
//! `NoSuchUpload` first checks whether the object is there with the right size.

mod client;

use std::collections::BTreeMap;

use super::digest::content_md5;
use super::reply::Reply;
use super::xml::{elements, tag};
use super::{fail, journal_session, UploadProtocol};
use crate::http::Control;
use crate::model::{Body as RequestBody, Protocol, S3Target, Session, Source, StoredPart};
use crate::multipart::Segment;
use crate::source;
use crate::worker::{accepted, Class, Job, Outcome, WorkerEvent};
use crate::Error;
pub(crate) use client::bucket;
use client::{Client, Signed};

/// Times one attempt starts a new multipart upload after the server lost one.
const MAX_RESTARTS: u32 = 2;
/// Parts per ListParts page.
const LIST_PAGE: u16 = 1000;
/// S3's limits: parts per upload, and the smallest part but the last.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// The smallest part S3 accepts (but the last).
pub(crate) const MIN_PART: u64 = 5 << 20;
/// The largest part S3 accepts.
pub(crate) const MAX_PART: u64 = 5 << 30;

/// The S3 protocol.
pub(crate) struct S3;

impl UploadProtocol for S3 {
    fn attempt(&self, job: &Job) -> Outcome {
        let Protocol::S3(target) = &job.request.protocol else {
            return protocol_error("the S3 protocol was given another protocol's upload");
        };
        run(job, target)
    }

    fn abort(&self, job: &Job) {
        let (Protocol::S3(target), Some(Session::S3 { upload_id, .. })) =
            (&job.request.protocol, &job.session)
        else {
            return;
        };
        let mut c = match Client::new(job, target) {
            Ok(c) => c,
            Err(o) => {
                log::warn!("upload {}: cannot abort the S3 upload: {o:?}", job.id);
                return;
            }
        };
        let key = target.key.as_str();
        let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
            Signed::new(
                "DELETE",
                b.abort_multipart_upload(Some(k), key, upload_id),
                &[],
            )
        };
        match c.exchange(&build, None) {
            Ok(r) => log::info!(
                "upload {}: AbortMultipartUpload answered {}",
                job.id,
                r.status
            ),
            Err(o) => log::warn!("upload {}: AbortMultipartUpload failed: {o:?}", job.id),
        }
    }
}

fn protocol_error(message: &str) -> Outcome {
    fail(
        Error::Protocol {
            message: message.into(),
        },
        Class::Final,
    )
}

/// The part size an upload of `size` bytes uses: `asked`, grown (to whole MiB) so that
/// the file needs at most [`MAX_PARTS`] parts. `None` if even [`MAX_PART`] is too small.
pub(crate) fn part_size_for(size: u64, asked: u64) -> Option<u64> {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    let part = asked.max(needed);
    (part <= MAX_PART).then_some(part)
}

/// The headers the object is created with (signed: `x-amz-*` must be), lower case.
fn object_headers(t: &S3Target) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if let Some(ct) = &t.content_type {
        h.push(("content-type".to_string(), ct.clone()));
    }
    for (name, value) in &t.metadata {
        h.push((format!("x-amz-meta-{name}"), value.clone()));
    }
    if let Some(class) = &t.storage_class {
        h.push(("x-amz-storage-class".to_string(), class.clone()));
    }
    h
}

fn run(job: &Job, target: &S3Target) -> Outcome {
    let RequestBody::File(src) = &job.request.body else {
        return protocol_error("S3 uploads send one file");
    };
    if let Err(e) = source::open_unchanged(src) {
        return fail(e, Class::Final);
    }
    let mut c = match Client::new(job, target) {
        Ok(c) => c,
        Err(o) => return o,
    };
    if src.size < target.part_size {
        return single_put(&mut c, src);
    }
    let mut session = job.session.clone();
    let mut restarts = 0;
    loop {
        match multipart(&mut c, src, session.take()) {
            Flow::Done(o) => return o,
            Flow::Gone if restarts < MAX_RESTARTS => {
                restarts += 1;
                log::warn!(
                    "upload {}: the server lost the multipart upload; starting a new one",
                    job.id
                );
                // Forget it first: a crash from here on must not resume it.
                if let Err(o) = journal_session(job, None) {
                    return o;
                }
                let _ = job.tx.send(WorkerEvent::Restarted { id: job.id });
                c.reporter.acked = 0;
                c.reporter.sent = 0;
            }
            Flow::Gone => {
                if let Err(o) = journal_session(job, None) {
                    return o;
                }
                return fail(
                    Error::Protocol {
                        message: format!(
                            "the server lost the multipart upload {} times in a row",
                            MAX_RESTARTS + 1
                        ),
                    },
                    Class::Transient,
                );
            }
        }
    }
}

/// How a multipart pass ended.
enum Flow {
    Done(Outcome),
    /// The server does not have the multipart upload (any more).
    Gone,
}

/// A file smaller than one part: one signed PUT.
fn single_put(c: &mut Client, src: &Source) -> Outcome {
    let md5 = match content_md5(src, 0, src.size) {
        Ok(m) => m,
        Err(e) => return fail(e, Class::Final),
    };
    let signed_headers = object_headers(c.target);
    let key = c.target.key.as_str();
    let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
        let mut s = Signed::new("PUT", b.put_object(Some(k), key), &signed_headers);
        s.headers.push(("Content-MD5".into(), md5.clone()));
        s
    };
    let segments = [Segment::File(src.clone())];
    let reply = match c.exchange(&build, Some((&segments, 0, src.size))) {
        Ok(r) => r,
        Err(o) => return o,
    };
    c.reporter.sent(src.size);
    if !(200..300).contains(&reply.status) {
        return c.refused(&reply, "PutObject");
    }
    c.reporter.acked = src.size;
    c.reporter.flush(0, None);
    completed(c, &reply, &segments)
}

/// The upload's end: the answer kept, the source checked once more.
fn completed(c: &mut Client, reply: &Reply, segments: &[Segment]) -> Outcome {
    match c.keep(reply) {
        Ok(stored) => accepted(stored, segments),
        Err(o) => o,
    }
}

fn is_no_such_upload(reply: &Reply) -> bool {
    reply.status == 404 && reply.error().0 != "NoSuchBucket"
}

/// One pass of a multipart upload: find or create it, send the missing parts, complete.
fn multipart(c: &mut Client, src: &Source, session: Option<Session>) -> Flow {
    let part_size = c.target.part_size;
    let count = src.size.div_ceil(part_size);
    let (upload_id, mut done) = match session {
        Some(Session::S3 { upload_id, parts }) => match list_parts(c, &upload_id) {
            Listed::Parts(on_server) => (upload_id, on_server),
            Listed::Unsupported => {
                let journaled = parts.into_iter().map(|p| (p.number, p)).collect();
                (upload_id, journaled)
            }
            Listed::Gone => return Flow::Gone,
            Listed::End(o) => return Flow::Done(o),
        },
        _ => match create(c) {
            Ok(id) => (id, BTreeMap::new()),
            Err(o) => return Flow::Done(o),
        },
    };
    // Only parts of the size this upload cuts count as done.
    done.retain(|&n, p| {
        let n = u64::from(n);
        n >= 1 && n <= count && p.size == part_len(src.size, part_size, n)
    });
    c.reporter.acked = done.values().map(|p| p.size).sum();
    c.reporter.flush(0, None);
    let segments = [Segment::File(src.clone())];
    let missing: Vec<u32> = (1..=count as u32)
        .filter(|n| !done.contains_key(n))
        .collect();
    // The next part's Content-MD5 is computed on a helper thread while this part is on
    // the wire: hashing then costs no wall time.
    let sent = std::thread::scope(|scope| {
        let digest = |n: u32| {
            let start = u64::from(n - 1) * part_size;
            content_md5(src, start, part_len(src.size, part_size, u64::from(n)))
        };
        let mut next: Option<std::thread::ScopedJoinHandle<'_, Result<String, Error>>> = None;
        for (i, &number) in missing.iter().enumerate() {
            let md5 = match next.take().map(|h| h.join()) {
                Some(Ok(md5)) => md5,
                // No helper (the first part, or it could not start), or it panicked.
                _ => digest(number),
            };
            if let Some(&after) = missing.get(i + 1) {
                next = std::thread::Builder::new()
                    .name("bgxfer-s3-md5".into())
                    .stack_size(128 * 1024)
                    .spawn_scoped(scope, move || digest(after))
                    .ok();
            }
            let md5 = match md5 {
                Ok(m) => m,
                Err(e) => return Some(Flow::Done(fail(e, Class::Final))),
            };
            if c.job.ctl.try_recv() == Ok(Control::Stop) {
                return Some(Flow::Done(Outcome::Stopped {
                    body_complete: false,
                }));
            }
            match upload_part(c, src, &segments, &upload_id, number, &md5) {
                Part::Done(p) => {
                    c.reporter.acked += p.size;
                    c.reporter.flush(0, None);
                    let _ = c.job.tx.send(WorkerEvent::Part {
                        id: c.job.id,
                        part: p.clone(),
                    });
                    done.insert(number, p);
                }
                Part::Gone => return Some(Flow::Gone),
                Part::End(o) => return Some(Flow::Done(o)),
            }
        }
        None
    });
    if let Some(flow) = sent {
        return flow;
    }
    complete(c, src, &segments, &upload_id, &done)
}

fn part_len(size: u64, part_size: u64, n: u64) -> u64 {
    let start = (n - 1) * part_size;
    part_size.min(size - start)
}

/// CreateMultipartUpload; the `UploadId` is journaled before it is returned.
fn create(c: &mut Client) -> Result<String, Outcome> {
    let signed_headers = object_headers(c.target);
    let key = c.target.key.as_str();
    let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
        Signed::new(
            "POST",
            b.create_multipart_upload(Some(k), key),
            &signed_headers,
        )
    };
    let reply = c.exchange(&build, None)?;
    if !(200..300).contains(&reply.status) || reply.is_error_document() {
        return Err(c.refused(&reply, "CreateMultipartUpload"));
    }
    let upload_id = match tag(&reply.text(), "UploadId") {
        Some(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            return Err(protocol_error(
                "CreateMultipartUpload answer without an UploadId",
            ))
        }
    };
    journal_session(
        c.job,
        Some(Session::S3 {
            upload_id: upload_id.clone(),
            parts: vec![],
        }),
    )?;
    log::info!("upload {}: S3 multipart upload created", c.job.id);
    Ok(upload_id)
}

/// What ListParts said.
enum Listed {
    Parts(BTreeMap<u32, StoredPart>),
    /// The server has no ListParts (405/501): trust the journal.
    Unsupported,
    Gone,
    End(Outcome),
}

fn list_parts(c: &mut Client, upload_id: &str) -> Listed {
    let key = c.target.key.as_str();
    let mut parts = BTreeMap::new();
    let mut marker: Option<u16> = None;
    // 10,000 parts at 1,000 a page: bounded even if a server keeps saying "truncated".
    for _ in 0..=(MAX_PARTS / u64::from(LIST_PAGE)) {
        let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
            let mut a = b.list_parts(Some(k), key, upload_id);
            a.set_max_parts(LIST_PAGE);
            if let Some(m) = marker {
                a.set_part_number_marker(m);
            }
            Signed::new("GET", a, &[])
        };
        let reply = match c.exchange(&build, None) {
            Ok(r) => r,
            Err(o) => return Listed::End(o),
        };
        match reply.status {
            200..=299 => {}
            405 | 501 => {
                log::info!(
                    "upload {}: the server has no ListParts ({}); resuming from the \
                     journaled parts",
                    c.job.id,
                    reply.status
                );
                return Listed::Unsupported;
            }
            _ if is_no_such_upload(&reply) => return Listed::Gone,
            _ => return Listed::End(c.refused(&reply, "ListParts")),
        }
        let text = reply.text();
        for p in elements(&text, "Part") {
            let number = tag(p, "PartNumber").and_then(|n| n.trim().parse::<u32>().ok());
            let size = tag(p, "Size").and_then(|n| n.trim().parse::<u64>().ok());
            let (Some(number), Some(size), Some(etag)) = (number, size, tag(p, "ETag")) else {
                return Listed::End(fail(
                    Error::Protocol {
                        message: "ListParts answer with a part that lacks its number, size \
                                  or ETag"
                            .into(),
                    },
                    Class::Transient,
                ));
            };
            parts.insert(number, StoredPart { number, etag, size });
        }
        let truncated = tag(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
        let next = tag(&text, "NextPartNumberMarker").and_then(|n| n.trim().parse::<u16>().ok());
        match (truncated, next) {
            (true, Some(m)) if m > 0 && Some(m) != marker => marker = Some(m),
            (true, _) => {
                return Listed::End(protocol_error(
                    "ListParts answer truncated without a usable NextPartNumberMarker",
                ))
            }
            (false, _) => return Listed::Parts(parts),
        }
    }
    Listed::End(protocol_error("ListParts never ended"))
}

/// How a part went.
enum Part {
    Done(StoredPart),
    Gone,
    End(Outcome),
}

fn upload_part(
    c: &mut Client,
    src: &Source,
    segments: &[Segment],
    upload_id: &str,
    number: u32,
    md5: &str,
) -> Part {
    let part_size = c.target.part_size;
    let start = u64::from(number - 1) * part_size;
    let len = part_len(src.size, part_size, u64::from(number));
    let key = c.target.key.as_str();
    // Part numbers are at most MAX_PARTS, which fits.
    let part_number = u16::try_from(number).unwrap_or(u16::MAX);
    let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
        let mut s = Signed::new(
            "PUT",
            b.upload_part(Some(k), key, part_number, upload_id),
            &[],
        );
        s.headers.push(("Content-MD5".into(), md5.to_string()));
        s
    };
    let reply = match c.exchange(&build, Some((segments, start, start + len))) {
        Ok(r) => r,
        Err(o) => return Part::End(o),
    };
    if (200..300).contains(&reply.status) {
        return match reply.header("etag") {
            Some(etag) => Part::Done(StoredPart {
                number,
                etag: etag.to_string(),
                size: len,
            }),
            None => Part::End(protocol_error(&format!(
                "UploadPart {number} answered {} without an ETag",
                reply.status
            ))),
        };
    }
    if is_no_such_upload(&reply) {
        return Part::Gone;
    }
    let what = match reply.error().0.as_str() {
        "BadDigest" | "InvalidDigest" => format!(
            "part {number} (bytes {start}..{}) arrived damaged: its Content-MD5 does not match",
            start + len
        ),
        _ => format!("UploadPart {number}"),
    };
    Part::End(c.refused(&reply, &what))
}

fn complete(
    c: &mut Client,
    src: &Source,
    segments: &[Segment],
    upload_id: &str,
    done: &BTreeMap<u32, StoredPart>,
) -> Flow {
    let key = c.target.key.as_str();
    let body = rusty_s3::actions::CompleteMultipartUpload::new(
        &c.bucket,
        None,
        key,
        upload_id,
        done.values().map(|p| p.etag.as_str()),
    )
    .body();
    let xml = [Segment::Bytes(body.into_bytes())];
    let len = xml[0].len();
    let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
        let etags = done.values().map(|p| p.etag.as_str());
        Signed::new(
            "POST",
            b.complete_multipart_upload(Some(k), key, upload_id, etags),
            &[],
        )
    };
    let reply = match c.exchange(&build, Some((&xml, 0, len))) {
        Ok(r) => r,
        Err(o) => return Flow::Done(o),
    };
    if (200..300).contains(&reply.status) && !reply.is_error_document() {
        log::info!("upload {}: S3 multipart upload completed", c.job.id);
        return Flow::Done(completed(c, &reply, segments));
    }
    if is_no_such_upload(&reply) {
        // An earlier Complete may have worked and lost its answer.
        return match head_object(c, src.size) {
            Ok(Some(head)) => {
                log::info!(
                    "upload {}: the multipart upload is gone but the object is there with \
                     its size: an earlier Complete worked",
                    c.job.id
                );
                Flow::Done(completed(c, &head, segments))
            }
            Ok(None) => Flow::Gone,
            Err(o) => Flow::Done(o),
        };
    }
    let what = match reply.error().0.as_str() {
        "EntityTooSmall" => format!(
            "CompleteMultipartUpload: the server refuses parts of {} bytes (S3's minimum \
             is {MIN_PART}; this server's may be larger)",
            c.target.part_size
        ),
        _ => "CompleteMultipartUpload".to_string(),
    };
    Flow::Done(c.refused(&reply, &what))
}

/// HeadObject: the object's answer if it exists with `size` bytes.
fn head_object(c: &mut Client, size: u64) -> Result<Option<Reply>, Outcome> {
    let key = c.target.key.as_str();
    let build = |b: &rusty_s3::Bucket, k: &rusty_s3::Credentials| {
        Signed::new("HEAD", b.head_object(Some(k), key), &[])
    };
    let reply = c.exchange(&build, None)?;
    let len = reply
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    match reply.status {
        200..=299 if len == Some(size) => Ok(Some(reply)),
        200..=299 | 404 => Ok(None),
        _ => Err(c.refused(&reply, "HeadObject")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_to_fit_ten_thousand_parts() {
        assert_eq!(part_size_for(100 << 20, 8 << 20), Some(8 << 20));
        // 100 GiB at 8 MiB would be 12,800 parts: 11 MiB parts make 9,310.
        let grown = part_size_for(100 << 30, 8 << 20).unwrap();
        assert_eq!(grown, 11 << 20);
        assert!((100u64 << 30).div_ceil(grown) <= MAX_PARTS);
        assert_eq!(
            part_size_for(MAX_PARTS * MAX_PART, MIN_PART),
            Some(MAX_PART)
        );
        assert_eq!(part_size_for(MAX_PARTS * MAX_PART + 1, MIN_PART), None);
    }

    #[test]
    fn error_documents_are_recognized() {
        let r = |body: &str| Reply {
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let e = r("<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code>\
                   <Message>We &amp; you</Message></Error>");
        assert!(e.is_error_document());
        assert_eq!(e.error(), ("InternalError".into(), "We & you".into()));
        assert!(!r("<CompleteMultipartUploadResult><ETag>x</ETag>\
                    </CompleteMultipartUploadResult>")
        .is_error_document());
    }
}
