//! Azure Blob Storage block blobs through a SAS URL: a file smaller than one block is
//! one Put Blob; a larger one is sent block by block and committed with Put Block
//! List, and an interrupted upload sends only the blocks the server lacks.
//!
//! Within one attempt: *where* (Get Block List says which of this upload's blocks the
//! server holds, uncommitted, with their sizes; a blob already committed with exactly
//! this upload's blocks is done), *send* (Put Block for each missing block, each with
//! its `Content-MD5`), *finish* (Put Block List, in order; its answer is kept as the
//! upload's response). The server's block list is the session: nothing but the
//! upload's block-ID prefix needs journaling.
//!
//! Block IDs are the base64 of `PREFIX-NNNNNN` (the upload's random prefix, fixed at
//! creation, and the block's index): all of one length, as Azure requires, and never
//! the same as the blocks another upload (or an earlier upload of another file) left
//! uncommitted on the same blob, which a plain index would be mistaken for.

use std::collections::BTreeMap;

use super::digest::content_md5;
use super::reply::{self, read, Reply};
use super::sender::{Request, Sender};
use super::xml::{elements, tag};
use super::{fail, UploadProtocol};
use crate::model::{AzureTarget, Body as RequestBody, Protocol, Source};
use crate::multipart::Segment;
use crate::worker::{accepted, Class, Job, Outcome};
use crate::{source, Error};

/// The `x-ms-version` sent on every request (block blobs up to 4000 MiB per block).
const API_VERSION: &str = "2021-08-06";
/// Azure's limits: blocks per blob, and bytes per block.
pub(crate) const MAX_BLOCKS: u64 = 50_000;
/// The largest block (API version 2019-12-12 and later).
pub(crate) const MAX_BLOCK: u64 = 4000 << 20;
/// Error codes that a retry can help with, whatever their status.
const TRANSIENT_CODES: &[&str] = &["ServerBusy", "InternalError", "OperationTimedOut"];
/// Error codes of a SAS the service refused (expired, or not allowing the request).
const SAS_REFUSED: &[&str] = &["AuthenticationFailed", "AuthorizationFailure"];

/// The Azure protocol.
pub(crate) struct Azure;

impl UploadProtocol for Azure {
    fn attempt(&self, job: &Job) -> Outcome {
        let Protocol::Azure(target) = &job.request.protocol else {
            return protocol_error("the Azure protocol was given another protocol's upload");
        };
        run(job, target)
    }

    fn abort(&self, job: &Job) {
        // Uncommitted blocks cannot be deleted one by one; the service drops them a
        // week after the last change to the blob, and a commit discards them at once.
        log::info!(
            "upload {}: the Azure blocks already sent stay uncommitted; the service \
             drops them within a week",
            job.id
        );
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

/// The block ID of block `index` (from 0).
pub(crate) fn block_id(prefix: &str, index: u64) -> String {
    crate::base64::encode(format!("{prefix}-{index:06}").as_bytes())
}

/// `base` (a blob URL with its SAS query) with `query` added.
fn with_query(base: &str, query: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

/// A block ID as it stands in a query (base64's `+`, `/` and `=` escaped).
fn query_escaped(id: &str) -> String {
    id.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// The `se` (expiry) of a SAS URL, for an error message.
fn sas_expiry(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let se = query.split('&').find_map(|kv| kv.strip_prefix("se="))?;
    Some(se.replace("%3A", ":").replace("%3a", ":"))
}

/// One attempt: the sender, the upload's blob and how it is cut.
struct Blob<'a> {
    s: Sender<'a>,
    target: &'a AzureTarget,
    src: &'a Source,
    /// The blob's URL without its SAS: what the kept answer says answered.
    plain_url: String,
}

fn run(job: &Job, target: &AzureTarget) -> Outcome {
    let RequestBody::File(src) = &job.request.body else {
        return protocol_error("Azure uploads send one file");
    };
    if let Err(e) = source::open_unchanged(src) {
        return fail(e, Class::Final);
    }
    if target.block_size == 0 {
        return protocol_error("the journaled Azure block size is 0");
    }
    let s = match Sender::new(job) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let own = job.request.url.as_str();
    let mut b = Blob {
        s,
        target,
        src,
        plain_url: own.split_once('?').map_or(own, |(u, _)| u).to_string(),
    };
    if src.size < target.block_size {
        return b.put_blob();
    }
    b.blocks()
}

/// What the server holds of this upload's blocks.
struct Held {
    /// Uncommitted blocks by ID, with their sizes.
    uncommitted: BTreeMap<String, u64>,
    /// The committed blocks, in order.
    committed: Vec<(String, u64)>,
    reply: Reply,
}

impl Blob<'_> {
    /// Sends a request to the blob (`query` added to its URL) and reads the answer.
    fn exchange(
        &mut self,
        method: &'static str,
        query: &str,
        mut headers: Vec<(String, String)>,
        body: Option<(&[Segment], u64, u64)>,
    ) -> Result<Reply, Outcome> {
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        let url = |base: &str| {
            if query.is_empty() {
                base.to_string()
            } else {
                with_query(base, query)
            }
        };
        let (resp, _) = self.s.send(Request {
            method,
            url: &url,
            headers,
            body,
        })?;
        read(resp)
    }

    /// The headers of the request that creates the blob: the program's, and the
    /// content type.
    fn blob_headers(&self, content_type: &str) -> Vec<(String, String)> {
        let mut h = self.s.job.request.headers.clone();
        if let Some(ct) = &self.target.content_type {
            h.push((content_type.into(), ct.clone()));
        }
        h
    }

    fn len_of(&self, index: u64) -> u64 {
        let start = index * self.target.block_size;
        self.target.block_size.min(self.src.size - start)
    }

    fn count(&self) -> u64 {
        self.src.size.div_ceil(self.target.block_size)
    }

    /// A file smaller than one block: one Put Blob.
    fn put_blob(&mut self) -> Outcome {
        let md5 = match content_md5(self.src, 0, self.src.size) {
            Ok(m) => m,
            Err(e) => return fail(e, Class::Final),
        };
        let mut headers = self.blob_headers("Content-Type");
        headers.push(("x-ms-blob-type".into(), "BlockBlob".into()));
        headers.push(("Content-MD5".into(), md5));
        let segments = [Segment::File(self.src.clone())];
        let reply = match self.exchange("PUT", "", headers, Some((&segments, 0, self.src.size))) {
            Ok(r) => r,
            Err(o) => return o,
        };
        if reply.status != 201 {
            let what = match is_md5_mismatch(&reply) {
                true => "the blob arrived damaged: its Content-MD5 does not match".into(),
                false => "Put Blob".to_string(),
            };
            return self.refused(&reply, &what);
        }
        self.s.reporter.acked = self.src.size;
        self.s.reporter.flush(0, None);
        self.completed(&reply, &segments)
    }

    /// A block blob: the missing blocks, then the commit.
    fn blocks(&mut self) -> Outcome {
        let count = self.count();
        let ids: Vec<String> = (0..count)
            .map(|i| block_id(&self.target.block_prefix, i))
            .collect();
        let mut held = match self.held() {
            Ok(h) => h,
            Err(o) => return o,
        };
        // Azure refuses a block whose ID is not of the length of the blob's other
        // uncommitted blocks: blocks another client left (another SDK, within the
        // week they live) would fail every Put Block. A commit of the blob's current
        // list discards them and keeps what the blob holds.
        let our_len = ids.first().map_or(0, String::len);
        if held.uncommitted.keys().any(|id| id.len() != our_len) {
            log::warn!(
                "upload {}: the blob holds uncommitted blocks another client left, with IDs \
                 of another length; discarding them (the committed blob stays as it is)",
                self.s.job.id
            );
            let committed: Vec<String> = held.committed.iter().map(|(id, _)| id.clone()).collect();
            if let Err(o) = self.put_block_list("Committed", &committed, vec![]) {
                return o;
            }
            held.uncommitted.clear();
        }
        let segments = [Segment::File(self.src.clone())];
        let expected: Vec<(String, u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), self.len_of(i as u64)))
            .collect();
        if held.committed == expected {
            // An earlier commit worked and its answer was lost.
            log::info!(
                "upload {}: the blob is committed with this upload's blocks already",
                self.s.job.id
            );
            self.s.reporter.acked = self.src.size;
            self.s.reporter.flush(0, None);
            return self.completed(&held.reply, &segments);
        }
        let missing: Vec<u64> = (0..count)
            .filter(|&i| held.uncommitted.get(&ids[i as usize]) != Some(&self.len_of(i)))
            .collect();
        self.s.reporter.acked =
            self.src.size - missing.iter().map(|&i| self.len_of(i)).sum::<u64>();
        self.s.reporter.flush(0, None);
        if missing.len() as u64 != count {
            log::info!(
                "upload {}: the server holds {} of {count} blocks; sending the other {}",
                self.s.job.id,
                count - missing.len() as u64,
                missing.len()
            );
        }
        for index in missing {
            if self.s.job.ctl.try_recv() == Ok(crate::http::Control::Stop) {
                return Outcome::Stopped {
                    body_complete: false,
                };
            }
            if let Err(o) = self.put_block(&segments, &ids[index as usize], index) {
                return o;
            }
        }
        self.commit(&ids, &segments)
    }

    /// Get Block List (all): this upload's uncommitted blocks, and the committed list.
    fn held(&mut self) -> Result<Held, Outcome> {
        let reply = self.exchange("GET", "comp=blocklist&blocklisttype=all", vec![], None)?;
        if reply.status == 404 && reply.error().0 == "BlobNotFound" {
            return Ok(Held {
                uncommitted: BTreeMap::new(),
                committed: vec![],
                reply,
            });
        }
        if reply.status != 200 {
            return Err(self.refused(&reply, "Get Block List"));
        }
        let text = reply.text();
        let list = |section: &str| -> Result<Vec<(String, u64)>, Outcome> {
            let Some(inner) = elements(&text, section).next() else {
                return Ok(vec![]);
            };
            elements(inner, "Block")
                .map(|b| {
                    let name = tag(b, "Name");
                    let size = tag(b, "Size").and_then(|s| s.trim().parse::<u64>().ok());
                    match (name, size) {
                        (Some(n), Some(s)) => Ok((n.trim().to_string(), s)),
                        _ => Err(fail(
                            Error::Protocol {
                                message: "Get Block List answer with a block that lacks its \
                                          name or size"
                                    .into(),
                            },
                            Class::Transient,
                        )),
                    }
                })
                .collect()
        };
        let uncommitted = list("UncommittedBlocks")?.into_iter().collect();
        let committed = list("CommittedBlocks")?;
        Ok(Held {
            uncommitted,
            committed,
            reply,
        })
    }

    fn put_block(&mut self, segments: &[Segment], id: &str, index: u64) -> Result<(), Outcome> {
        let start = index * self.target.block_size;
        let len = self.len_of(index);
        let md5 = content_md5(self.src, start, len).map_err(|e| fail(e, Class::Final))?;
        let query = format!("comp=block&blockid={}", query_escaped(id));
        let headers = vec![("Content-MD5".to_string(), md5)];
        let reply = self.exchange("PUT", &query, headers, Some((segments, start, start + len)))?;
        if reply.status == 201 {
            self.s.reporter.acked += len;
            self.s.reporter.flush(0, None);
            return Ok(());
        }
        let what = if is_md5_mismatch(&reply) {
            format!(
                "block {index} (bytes {start}..{}) arrived damaged: its Content-MD5 does not \
                 match",
                start + len
            )
        } else {
            format!("Put Block {index}")
        };
        Err(self.refused(&reply, &what))
    }

    /// Put Block List of `ids`, each named as `kind` (`Latest`, `Committed`).
    fn put_block_list(
        &mut self,
        kind: &str,
        ids: &[String],
        headers: Vec<(String, String)>,
    ) -> Result<Reply, Outcome> {
        let mut xml = String::with_capacity(60 + ids.len() * (30 + 2 * kind.len()));
        xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in ids {
            xml.push_str(&format!("<{kind}>{id}</{kind}>"));
        }
        xml.push_str("</BlockList>");
        let body = [Segment::Bytes(xml.into_bytes())];
        let len = body[0].len();
        let reply = self.exchange("PUT", "comp=blocklist", headers, Some((&body, 0, len)))?;
        if reply.status != 201 {
            return Err(self.refused(&reply, "Put Block List"));
        }
        Ok(reply)
    }

    /// Put Block List: commits the blocks in order.
    fn commit(&mut self, ids: &[String], segments: &[Segment]) -> Outcome {
        let headers = self.blob_headers("x-ms-blob-content-type");
        match self.put_block_list("Latest", ids, headers) {
            Ok(reply) => {
                log::info!("upload {}: Azure block list committed", self.s.job.id);
                self.completed(&reply, segments)
            }
            Err(o) => o,
        }
    }

    fn completed(&mut self, reply: &Reply, segments: &[Segment]) -> Outcome {
        match reply::keep(self.s.job, reply, &reply.body, &self.plain_url) {
            Ok(stored) => accepted(stored, segments),
            Err(o) => o,
        }
    }

    /// A failed answer as the attempt's outcome: the service's code in the error, the
    /// answer kept, transient or final by status and code.
    fn refused(&mut self, reply: &Reply, what: &str) -> Outcome {
        let (code, said) = reply.error();
        let mut message = reply::described(what, &said);
        if reply.status == 403 && SAS_REFUSED.contains(&code.as_str()) {
            let until = sas_expiry(&self.s.job.request.url)
                .map(|se| format!(" (valid until {se})"))
                .unwrap_or_default();
            message.push_str(&if self.s.has_provider() {
                " (the SAS the provider gave was refused twice in a row)".to_string()
            } else {
                format!(
                    "; the SAS{until} expired or does not allow this request: give the upload \
                     a URL provider (UploadRequest::credentials) to hand out fresh ones"
                )
            });
        }
        let response = reply::keep(self.s.job, reply, &reply.body, &self.plain_url).ok();
        reply::refusal(reply, code, message, TRANSIENT_CODES, response)
    }
}

/// Whether the service refused a body whose Content-MD5 did not match (Azure:
/// `Md5Mismatch`; Azurite: `InvalidOperation`, "Provided contentMD5 doesn't match").
fn is_md5_mismatch(reply: &Reply) -> bool {
    let (code, message) = reply.error();
    code == "Md5Mismatch" || (reply.status == 400 && message.to_ascii_lowercase().contains("md5"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_all_of_one_length_and_the_uploads_own() {
        let a = block_id("0123abcd", 0);
        assert_eq!(a.len(), block_id("0123abcd", MAX_BLOCKS - 1).len());
        assert_ne!(a, block_id("89abcdef", 0));
        assert_eq!(crate::base64::encode(b"0123abcd-000000"), a);
        assert_eq!(query_escaped("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }

    #[test]
    fn queries_go_after_the_sas() {
        assert_eq!(
            with_query("http://h/a/c/b?sv=1&sig=x", "comp=block"),
            "http://h/a/c/b?sv=1&sig=x&comp=block"
        );
        assert_eq!(
            with_query("http://h/c/b", "comp=block"),
            "http://h/c/b?comp=block"
        );
        assert_eq!(
            sas_expiry("http://h/c/b?sv=1&se=2027-01-01T00%3A00%3A00Z&sig=x").as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
    }
}
