//! Journal and start-up: a store of queued uploads written with the journal API, and the
//! replay of 100,000 progress records.

use std::fs;
use std::path::Path;
use std::time::Instant;

use background_transfer::journal::record::{
    BodyV1, CostPolicyV1, CreatedV1, PriorityV1, ProgressV1, ProtocolV1, RequestV1, SourceV1,
};
use background_transfer::journal::{Durability, Journal, Record, Store};
use background_transfer::Uploader;

use crate::measure::{median, JournalCost};
use crate::report::{fmt_mib, Table};
use crate::{GIB, MIB};

pub fn created(id: u64, url: &str, src: &Path, size: u64, mtime_ns: i64) -> Record {
    Record::Created(CreatedV1 {
        id,
        created_ms: 1_700_000_000_000 + id,
        request: RequestV1 {
            url: format!("{url}/queued/{id}"),
            method: "PUT".into(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: BodyV1::File(SourceV1 {
                path: src.as_os_str().as_encoded_bytes().to_vec(),
                size,
                mtime_ns,
                spooled: false,
            }),
            priority: PriorityV1::Default,
            group: None,
            cost: CostPolicyV1::Always,
            protocol: ProtocolV1::Plain,
            idempotent: false,
        },
    })
}

/// A store of `n` queued uploads, written with the journal API (one fsync at the end).
pub fn make_queued_store(dir: &Path, n: u64, url: &str, src: &Path) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(src).expect("source");
    // As the crate records it (`source.rs`).
    let mtime_ns = meta
        .mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec());
    let mut store = Store::open(dir).expect("open store");
    for id in 1..=n {
        store
            .commit(
                created(id, url, src, meta.len(), mtime_ns),
                Durability::Batched,
            )
            .expect("append");
    }
    store.sync().expect("sync");
}

/// Median time of `Store::open` over a journal of one upload and 100,000 progress
/// records (the approach of `benches/journal.rs`).
pub fn replay_100k(dir: &Path) -> (f64, u64) {
    fs::create_dir_all(dir).expect("dir");
    {
        let (mut j, _, _) = Journal::open(dir).expect("journal");
        j.append(
            &created(0, "http://127.0.0.1:9", Path::new("/x"), 1, 0),
            Durability::Sync,
        )
        .expect("append");
        for n in 0..100_000u64 {
            let rec = Record::Progress(ProgressV1 {
                id: 0,
                bytes_sent: n * 65_536,
                acked: 0,
            });
            j.append(&rec, Durability::Batched).expect("append");
        }
        j.sync().expect("sync");
    }
    let bytes = fs::metadata(dir.join("journal")).map_or(0, |m| m.len());
    let times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(dir).expect("open");
            let e = t.elapsed().as_secs_f64();
            assert_eq!(s.state().uploads.len(), 1);
            e
        })
        .collect();
    (median(&times), bytes)
}

/// 4: journal and start-up: `open()` of the store of queued uploads (median of 5) and of
/// a new store (`open_empty`, seconds), the replay of 100,000 progress records (written in
/// `dir`), and what the crate's uploads cost the journal per GiB.
pub fn journal_rows(
    table: &mut Table,
    dir: &Path,
    queued_dir: &Path,
    open_empty: f64,
    cost: &JournalCost,
) {
    eprintln!("journal");
    let opens: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let up = Uploader::builder()
                .store_dir(queued_dir)
                .start_transfers(false)
                .open()
                .expect("open");
            let e = t.elapsed().as_secs_f64();
            drop(up);
            e
        })
        .collect();
    let open_ms = median(&opens) * 1e3;
    table.max(
        "open() with 10,000 uploads",
        open_ms,
        format!("{open_ms:.1} ms"),
        100.0,
        "≤ 100 ms",
    );
    table.info(
        "open() of a new store",
        format!("{:.1} ms", open_empty * 1e3),
    );
    let (replay, replay_bytes) = replay_100k(&dir.join("replay"));
    table.max(
        &format!(
            "replay 100,000 progress records ({:.1} MiB)",
            replay_bytes as f64 / MIB as f64
        ),
        replay * 1e3,
        format!("{:.1} ms", replay * 1e3),
        50.0,
        "≤ 50 ms (benches/journal.rs)",
    );
    let per_gib = |x: u64| x as f64 * GIB as f64 / cost.bytes_uploaded.max(1) as f64;
    table.max(
        "journal fsyncs per GiB uploaded",
        per_gib(cost.fsyncs),
        format!(
            "{:.1} ({} over {})",
            per_gib(cost.fsyncs),
            cost.fsyncs,
            fmt_mib(cost.bytes_uploaded)
        ),
        64.0,
        "≤ 64",
    );
    table.info(
        "journal bytes per GiB uploaded",
        format!("{:.0} B", per_gib(cost.journal_bytes)),
    );
    table.info(
        "journal records per GiB uploaded",
        format!("{:.1}", per_gib(cost.records)),
    );
}
