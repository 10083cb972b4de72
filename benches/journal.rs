//! Journal benchmark: append rate with and without an fsync per record, replay time of
//! 100,000 progress records, and compaction time. Prints figures; asserts nothing.
//!
//! Run: `cargo bench --bench journal`

use std::time::{Duration, Instant};

use background_transfer::journal::record::{
    BodyV1, CostPolicyV1, CreatedV1, PriorityV1, ProgressV1, ProtocolV1, RequestV1, SourceV1,
};
use background_transfer::journal::{Durability, Record, Store};

fn created(id: u64) -> Record {
    Record::Created(CreatedV1 {
        id,
        created_ms: 1_700_000_000_000,
        request: RequestV1 {
            url: format!("https://example.com/upload/{id}"),
            method: "PUT".into(),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            body: BodyV1::File(SourceV1 {
                path: format!("/data/photos/IMG_{id:05}.jpg").into_bytes(),
                size: 3_000_000,
                mtime_ns: 1_700_000_000_000_000_000,
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

fn progress(id: u64, n: u64) -> Record {
    Record::Progress(ProgressV1 {
        id,
        bytes_sent: n * 65_536,
        acked: 0,
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");

    // Append rate with an fsync per record.
    let mut store = Store::open(&store_dir).expect("open");
    store.commit(created(0), Durability::Sync).unwrap();
    let n_sync = 500u64;
    let t = Instant::now();
    for i in 0..n_sync {
        store.commit(progress(0, i), Durability::Sync).unwrap();
    }
    let sync_rate = n_sync as f64 / t.elapsed().as_secs_f64();

    // Append rate with batched durability (at most one fsync per second).
    let n_batched = 100_000u64;
    let t = Instant::now();
    for i in 0..n_batched {
        store.commit(progress(0, i), Durability::Batched).unwrap();
    }
    store.sync().unwrap();
    let batched_rate = n_batched as f64 / t.elapsed().as_secs_f64();
    drop(store);

    // Replay of a journal holding 100,000 progress records (written without compaction).
    let replay_dir = dir.path().join("replay");
    {
        let mut j = background_transfer::journal::Journal::open(&{
            std::fs::create_dir_all(&replay_dir).unwrap();
            replay_dir.clone()
        })
        .unwrap()
        .0;
        j.append(&created(0), Durability::Sync).unwrap();
        for i in 0..100_000 {
            j.append(&progress(0, i), Durability::Batched).unwrap();
        }
        j.sync().unwrap();
    }
    let bytes = std::fs::metadata(replay_dir.join("journal")).unwrap().len();
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let s = Store::open(&replay_dir).unwrap();
        times.push(t.elapsed());
        assert_eq!(s.state().uploads.len(), 1);
    }
    let replay = median(times);

    // Compaction of 10,000 uploads, each with 9 dead progress records behind it.
    let compact_dir = dir.path().join("compact");
    let mut store = Store::open(&compact_dir).unwrap();
    {
        let j = store.journal_mut();
        for id in 0..10_000 {
            j.append(&created(id), Durability::Batched).unwrap();
            for n in 0..9 {
                j.append(&progress(id, n), Durability::Batched).unwrap();
            }
        }
        j.sync().unwrap();
    }
    drop(store);
    let mut store = Store::open(&compact_dir).unwrap();
    let before = store.journal().len();
    let t = Instant::now();
    store.compact().unwrap();
    let compact = t.elapsed();
    let after = store.journal().len();
    drop(store);
    let t = Instant::now();
    let store = Store::open(&compact_dir).unwrap();
    let open_10k = t.elapsed();
    assert_eq!(store.state().uploads.len(), 10_000);

    println!("journal benchmark (store in {})", dir.path().display());
    println!("| figure | value | target |");
    println!("|---|---|---|");
    println!("| append, fsync per record | {sync_rate:.0} records/s | |");
    println!("| append, batched fsync | {batched_rate:.0} records/s | |");
    println!(
        "| replay 100,000 progress records ({:.1} MiB) | {:.1} ms | <= 50 ms |",
        bytes as f64 / 1048576.0,
        replay.as_secs_f64() * 1e3
    );
    println!(
        "| compact 10,000 uploads ({:.1} MiB -> {:.1} MiB) | {:.1} ms | |",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        compact.as_secs_f64() * 1e3
    );
    println!(
        "| open store of 10,000 uploads | {:.1} ms | <= 100 ms |",
        open_10k.as_secs_f64() * 1e3
    );
}
