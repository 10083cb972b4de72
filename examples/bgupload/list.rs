//! `list`: one line per upload, or (`--json`) a JSON array of objects.

use std::io::{self, Write};
use std::path::Path;

use background_transfer::{Priority, Status};
use serde_json::{json, Value};

use crate::held::{Held, Shown};
use crate::Failure;

pub fn list(store: &Path, json: bool) -> Result<u8, Failure> {
    let held = Held::open(store, None)?;
    let uploads = held.uploads()?;
    let text = if json {
        let items: Vec<Value> = uploads.iter().map(|u| to_json(u.as_ref())).collect();
        let mut s = serde_json::to_string_pretty(&Value::Array(items))
            .map_err(|e| Failure::new(format!("could not encode the list as JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        uploads.iter().map(|u| line(u.as_ref()) + "\n").collect()
    };
    held.close()?;
    // A closed pipe (`bgupload list | head -1`) is not an error worth a panic.
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    Ok(0)
}

fn file_of(u: &dyn Shown) -> String {
    let files: Vec<String> = u
        .request()
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    files.join(",")
}

/// Where the acknowledged-bytes figure comes from: for an unfinished upload of a store
/// no process runs, the journal's last checkpoint (the server is asked again when a run
/// resumes it); of a store a `run` holds, that run's live count.
fn acknowledged_as_of(u: &dyn Shown) -> &'static str {
    match u.status() {
        Status::Completed => "completed",
        _ if u.live() => "live",
        _ => "last checkpoint",
    }
}

fn http_status(u: &dyn Shown) -> Option<u16> {
    u.response_info().map(|r| r.status)
}

fn priority(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Low => "low",
        _ => "default",
    }
}

/// `  3  completed              4194304/4194304  HTTP 201  PUT http://h/x  /data/a.bin`
/// followed by `  error: ...` for an upload that has one.
fn line(u: &dyn Shown) -> String {
    let p = u.progress();
    let sent = if p.status == Status::Completed {
        p.total_bytes_to_send
    } else {
        p.bytes_sent
    };
    let http = http_status(u).map_or("-".to_string(), |s| s.to_string());
    let mut s = format!(
        "{:>4}  {:<21}  {:>12}/{:<12}  HTTP {:<3}  {} {}  {}",
        u.id(),
        p.status.as_str(),
        sent,
        p.total_bytes_to_send,
        http,
        // A tus upload's requests are not the method the request names.
        if u.request().protocol == "plain" {
            u.request().method.as_str()
        } else {
            u.request().protocol
        },
        shown_url(&u.request().url),
        file_of(u)
    );
    if u.request().protocol != "plain" && !u.status().is_final() {
        s.push_str(&format!(
            "  acknowledged {} (as of the {})",
            p.bytes_acknowledged,
            if u.live() {
                "running owner"
            } else {
                "last checkpoint"
            }
        ));
    }
    if let Some(e) = u.error_message() {
        s.push_str(&format!("  error: {e}"));
    }
    s
}

/// A URL as `list` shows it: without its query, which may be a credential (an Azure
/// SAS, a GCS session's `upload_id`, a presigned URL's signature).
fn shown_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// The parts the server confirmed, as of the last checkpoint: every part but the last
/// is `part_size` bytes, so the acknowledged bytes count them.
fn parts_done(acked: u64, total: u64, part_size: u64) -> u64 {
    if acked >= total {
        total.div_ceil(part_size)
    } else {
        acked / part_size
    }
}

fn to_json(u: &dyn Shown) -> Value {
    let p = u.progress();
    let r = u.request();
    let sent = if p.status == Status::Completed {
        p.total_bytes_to_send
    } else {
        p.bytes_sent
    };
    json!({
        "id": u.id(),
        "url": shown_url(&r.url),
        "method": r.method,
        "protocol": r.protocol,
        "part_size": r.part_size,
        "parts_total": r.part_size.map(|ps| p.total_bytes_to_send.div_ceil(ps)),
        "parts_done": r.part_size.map(|ps| parts_done(p.bytes_acknowledged, p.total_bytes_to_send, ps)),
        "file": file_of(u),
        "status": p.status.as_str(),
        "bytes_sent": sent,
        "total_bytes": p.total_bytes_to_send,
        "bytes_acknowledged": p.bytes_acknowledged,
        "bytes_acknowledged_as_of": acknowledged_as_of(u),
        "http_status": http_status(u),
        "error": u.error_message(),
        "priority": priority(r.priority),
        "group": r.group,
        "tus": r.tus,
        "attempts": p.attempts,
        "has_restarted": p.has_restarted,
        "created_ms": r.created_ms,
    })
}
