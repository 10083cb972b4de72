//! The parent side: what the child was told had happened ([`Model`], folded from its
//! lines), and the invariant checked on the store after the cut ([`check`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use background_transfer::journal::Store;
use background_transfer::model::Body;
use background_transfer::{Recovery, Status, Uploader};

use crate::support::{sha256_file, sha256_hex};

/// The response body of upload `id` as the store keeps it: in the journal when it holds
/// it (at most 4 KiB), else in `bodies/<id>`; `None` when neither has it.
fn kept_body(st: &Store, store: &Path, id: u64) -> Option<Vec<u8>> {
    if st.body_at(id).is_some() {
        return st.body(id).ok();
    }
    std::fs::read(store.join("bodies").join(id.to_string())).ok()
}

/// What an acknowledged change left an upload as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// Created or resumed, with no transfers: `Queued`.
    Queued,
    Paused,
    Canceled,
    Removed,
    /// Created with transfers running: anything but canceled.
    Active,
    /// Completed, with this body (SHA-256) kept.
    Completed(String),
}

impl Want {
    fn allows(&self, s: Status) -> bool {
        match self {
            Want::Queued => s == Status::Queued,
            Want::Paused => s == Status::PausedByApplication,
            Want::Canceled => s == Status::Canceled,
            Want::Removed => false,
            Want::Active => s != Status::Canceled,
            Want::Completed(_) => s == Status::Completed,
        }
    }
}

#[derive(Debug)]
struct Expect {
    /// SHA-256 of a spooled source.
    spool: Option<String>,
    last: Want,
    /// The change begun and not acknowledged when the cut came: it may or may not be there.
    pending: Option<Want>,
    /// Acknowledged before the journal was damaged: the journal may have lost it, and
    /// then its spooled source must be in `lost/`.
    before_damage: bool,
}

/// Everything the child was told.
#[derive(Debug, Default)]
pub struct Model {
    ups: BTreeMap<u64, Expect>,
    damaged: bool,
    /// Acknowledged changes, for the report.
    pub acks: usize,
    /// Ids a create returned twice: ids are never reused within a store.
    reused: Vec<u64>,
    /// The least checkpoint (upload, bytes sent) that must be on disk: batched records
    /// are fsynced within a second, so the one that covered the progress seen 1.5 s
    /// before the cut must have reached it.
    checkpoint: Option<(u64, u64)>,
}

/// The promise for batched records, with the margin the issue allows.
const CHECKPOINT_LATENCY_MS: u64 = 1500;

impl Model {
    /// Sets the checkpoint that must have survived a cut at `cut_ms` (Unix ms), from the
    /// `progress <id> <bytes> <unix ms>` lines: a checkpoint is written whenever the bytes
    /// sent pass the last one by `every`, so one of at least `p - every` was written when
    /// progress `p` was seen.
    pub fn expect_checkpoint(&mut self, lines: &[String], cut_ms: u64, every: u64) {
        let limit = cut_ms.saturating_sub(CHECKPOINT_LATENCY_MS);
        for l in lines {
            let w: Vec<&str> = l.split(' ').collect();
            if let ["progress", id, bytes, at] = w[..] {
                let (id, bytes, at): (u64, u64, u64) = (
                    id.parse().unwrap(),
                    bytes.parse().unwrap(),
                    at.parse().unwrap(),
                );
                if at <= limit {
                    let floor = bytes.saturating_sub(every);
                    let best = self.checkpoint.map_or(0, |c| c.1);
                    self.checkpoint = Some((id, floor.max(best)));
                }
            }
        }
    }
}

impl Model {
    /// Folds the child's lines. `transfers`: whether its uploads were being sent.
    pub fn fold(lines: &[String], transfers: bool) -> Model {
        let mut m = Model::default();
        for l in lines {
            let w: Vec<&str> = l.split(' ').collect();
            match w[..] {
                ["damaged"] => {
                    m.damaged = true;
                    for e in m.ups.values_mut() {
                        e.before_damage = true;
                    }
                }
                ["ok", "create", id, what, ..] => {
                    m.acks += 1;
                    let spool = (what == "spool").then(|| w[4].to_string());
                    let last = if transfers {
                        Want::Active
                    } else {
                        Want::Queued
                    };
                    let id: u64 = id.parse().unwrap();
                    if m.ups.contains_key(&id) {
                        m.reused.push(id);
                    }
                    m.ups.insert(
                        id,
                        Expect {
                            spool,
                            last,
                            pending: None,
                            before_damage: false,
                        },
                    );
                }
                ["begin", op, id] if id != "-" => {
                    if let Some(e) = m.ups.get_mut(&id.parse().unwrap()) {
                        e.pending = Some(want(op, None));
                    }
                }
                ["ok", op, id, ..] if id != "-" && op != "compact" => {
                    m.acks += 1;
                    if let Some(e) = m.ups.get_mut(&id.parse().unwrap()) {
                        e.last = want(op, w.get(3).copied());
                        e.pending = None;
                    }
                }
                ["ok", "compact", ..] => m.acks += 1,
                ["err", _, id, ..] if id != "-" => {
                    if let Some(e) = m.ups.get_mut(&id.parse().unwrap()) {
                        e.pending = None;
                    }
                }
                _ => {}
            }
        }
        m
    }
}

fn want(op: &str, detail: Option<&str>) -> Want {
    match op {
        "pause" => Want::Paused,
        "resume" => Want::Queued,
        "cancel" => Want::Canceled,
        "remove" => Want::Removed,
        "complete" => Want::Completed(detail.unwrap_or_default().to_string()),
        _ => panic!("unknown op {op}"),
    }
}

/// Opens the store as a program would after the power cut (with no transfers), then
/// checks the invariant on what that open left. Returns the violations found.
/// `purged`: retention may have removed ended uploads.
pub fn check(store: &Path, model: &Model, purged: bool) -> Vec<String> {
    let mut v: Vec<String> = (model.reused.iter())
        .map(|id| format!("upload id {id} was handed out twice"))
        .collect();
    let checkpoint_err = model.checkpoint.and_then(|(id, floor)| {
        // Read before the program's open, whose recovery restarts a plain PUT from 0.
        let st = match Store::open(store) {
            Ok(s) => s,
            Err(e) => return Some(format!("opening the journal failed: {e}")),
        };
        match st.state().uploads.get(&id) {
            Some(u) if u.status.is_final() || u.bytes_sent >= floor => None,
            Some(u) => Some(format!(
                "upload {id}: the checkpoint on disk says {} bytes sent; progress seen \
                 {CHECKPOINT_LATENCY_MS} ms before the cut needs one of at least {floor}",
                u.bytes_sent
            )),
            None => Some(format!("upload {id} is missing")),
        }
    });
    let opened = std::panic::catch_unwind(|| {
        Uploader::builder()
            .store_dir(store)
            .start_transfers(false)
            .watch_network(false)
            .probe_targets(Vec::new())
            .shutdown_timeout(Duration::from_secs(2))
            .open()
    });
    match opened {
        Err(_) => {
            v.push("opening the store panicked".into());
            return v;
        }
        Ok(Err(e)) => {
            v.push(format!("opening the store failed: {e}"));
            return v;
        }
        Ok(Ok(up)) => {
            let recovery = up.recovery().clone();
            if !model.damaged && matches!(recovery, Recovery::Corrupt { .. }) {
                v.push(format!("the journal was found damaged: {recovery:?}"));
            }
            if let Err(e) = up.shutdown() {
                v.push(format!("shutting the store down failed: {e}"));
            }
        }
    }
    let st = match Store::open(store) {
        Ok(s) => s,
        Err(e) => {
            v.push(format!("reopening the journal failed: {e}"));
            return v;
        }
    };
    let state = st.state();
    let spool = |id: u64| store.join("spool").join(id.to_string());
    let lost = |id: u64| store.join("lost").join(format!("spool-{id}"));
    for (&id, e) in &model.ups {
        let pending = e.pending.as_ref();
        let Some(u) = state.uploads.get(&id) else {
            let removed = e.last == Want::Removed || pending == Some(&Want::Removed);
            let may_purge = purged && matches!(e.last, Want::Active | Want::Completed(_));
            if removed || may_purge {
                continue;
            }
            if e.before_damage {
                match &e.spool {
                    Some(sha) if lost(id).exists() && sha256_file(lost(id)) == *sha => continue,
                    Some(_) => v.push(format!(
                        "upload {id}: the damaged journal lost it and its spooled source is \
                         not in lost/ either"
                    )),
                    None => continue,
                }
                continue;
            }
            v.push(format!(
                "upload {id} was acknowledged ({:?}) but the store does not list it",
                e.last
            ));
            continue;
        };
        let ok = e.last.allows(u.status) || pending.is_some_and(|p| p.allows(u.status));
        if !ok {
            v.push(format!(
                "upload {id}: status {:?}, acknowledged as {:?} (then begun: {pending:?})",
                u.status, e.last
            ));
        }
        if let Some(sha) = &e.spool {
            if !spool(id).exists() {
                v.push(format!(
                    "upload {id}: spooled source spool/{id} is missing (its create returned Ok)"
                ));
            } else if sha256_file(spool(id)) != *sha {
                v.push(format!("upload {id}: spooled source spool/{id} differs"));
            }
        }
        if let Want::Completed(sha) = &e.last {
            match kept_body(&st, store, id) {
                None => v.push(format!(
                    "upload {id}: completed, but its response body is missing"
                )),
                Some(b) if sha256_hex(&b) != *sha => v.push(format!(
                    "upload {id}: its response body differs from the body read"
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(err) = checkpoint_err {
        v.push(err);
    }
    // Nothing the journal lists refers to a missing file.
    for u in state.uploads.values() {
        if let Body::File(src) = &u.request.body {
            if src.spooled {
                match std::fs::metadata(&src.path) {
                    Ok(m) if m.len() == src.size => {}
                    Ok(m) => v.push(format!(
                        "upload {}: spooled source {} is {} bytes, the journal says {}",
                        u.id,
                        src.path.display(),
                        m.len(),
                        src.size
                    )),
                    Err(_) => v.push(format!(
                        "upload {}: the journal lists spooled source {}, which is missing",
                        u.id,
                        src.path.display()
                    )),
                }
            }
        }
        if let Some(r) = &u.response {
            let kept = kept_body(&st, store, u.id).map(|b| b.len() as u64);
            if r.body_len > 0 && kept != Some(r.body_len) {
                v.push(format!(
                    "upload {}: the journal lists a {}-byte response body; it is \
                     missing or of another length ({kept:?})",
                    u.id, r.body_len
                ));
            }
        }
    }
    v
}
