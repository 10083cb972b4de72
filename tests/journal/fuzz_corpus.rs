//! Runs the fuzz harnesses (`background_transfer::fuzzing`) over the committed seed corpus
//! in `fuzz/seeds/` plus a few thousand deterministic mutations of it, so `cargo test`
//! exercises the same invariants as `cargo fuzz`. The seeds are regenerated with
//! `cargo test --test journal -- --ignored fuzz_corpus::regenerate_seeds` (see `fuzz/README.md`).

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use background_transfer::fuzzing;
use background_transfer::journal::format::{
    self, encode_frame, header, Crc32, Damage, FRAME_HEADER_LEN, HEADER_LEN,
};
use background_transfer::journal::record::{
    AzureTargetV1, BodyV1, ChangedV1, CostPolicyV1, CreatedV1, CreatedV2, CreatedV3, CreatedV4,
    FailureV1, GcsSessionV1, GcsTargetV1, MultipartV1, PartContentV1, PartV1, PriorityV1,
    ProgressV1, ProtocolV1, RequestV1, ResponseV1, ResponseWithBodyV1, ResumeUrlV1, S3PartV1,
    S3TargetV1, S3UploadV1, SourceV1, StateV1, StatusV1,
};
use background_transfer::journal::Record;

use crate::support::{hex, Xorshift};

const TARGETS: [&str; 3] = ["decode_record", "replay_file", "open_store"];
/// Mutations per seed file and target (about 20 seeds in all, so a few thousand runs).
const MUTATIONS_PER_SEED: usize = 250;
/// Fewer for `open_store`: each run opens a store and starts its threads.
const OPEN_MUTATIONS_PER_SEED: usize = 40;

type Harness = fn(&[u8]);

fn harness(target: &str) -> Harness {
    match target {
        "decode_record" => fuzzing::decode_record,
        "replay_file" => fuzzing::replay_file,
        "open_store" => fuzzing::open_store,
        _ => unreachable!("unknown target {target}"),
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted by name; empty if the folder is missing.
fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).expect("read seed"))
        })
        .collect();
    out.sort();
    out
}

/// Panics in the engine's own threads (named `bgxfer-*`), which `catch_unwind` on the
/// calling thread does not see (libFuzzer aborts on a panic in any thread).
static ENGINE_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_engine_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            if name.is_some_and(|n| n.starts_with("bgxfer-")) {
                ENGINE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Runs one input through a harness; on a panic (in any of the engine's threads too),
/// names the input (in hex) and panics.
fn run(target: &str, what: &str, input: &[u8]) {
    let f = harness(target);
    count_engine_panics();
    let before = ENGINE_PANICS.load(Ordering::SeqCst);
    let result = panic::catch_unwind(AssertUnwindSafe(|| f(input)));
    let engine = ENGINE_PANICS.load(Ordering::SeqCst) > before;
    if result.is_err() || engine {
        eprintln!(
            "{target} panicked on {what} ({} bytes): {}",
            input.len(),
            hex(input)
        );
        match result {
            Err(e) => panic::resume_unwind(e),
            Ok(()) => panic!("{target}: a thread of the engine panicked on {what}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The seeds: real records, framed by the library's own encoder.
// ---------------------------------------------------------------------------------------

fn source(path: &str, size: u64, spooled: bool) -> SourceV1 {
    SourceV1 {
        path: path.as_bytes().to_vec(),
        size,
        mtime_ns: 1_700_000_000_123_456_789,
        spooled,
    }
}

fn created_file(id: u64) -> Record {
    Record::Created(CreatedV1 {
        id,
        created_ms: 1_700_000_000_000 + id,
        request: RequestV1 {
            url: format!("https://example.com/upload/{id}"),
            method: "PUT".into(),
            headers: vec![
                ("Content-Type".into(), "image/jpeg".into()),
                ("Idempotency-Key".into(), format!("key-{id}")),
            ],
            body: BodyV1::File(source(
                &format!("/data/photos/IMG_{id:05}.jpg"),
                3_000_000,
                false,
            )),
            priority: PriorityV1::Default,
            group: None,
            cost: CostPolicyV1::Always,
            protocol: ProtocolV1::Plain,
            idempotent: true,
        },
    })
}

/// An upload to a storage API (S3, GCS, Azure) whose credentials come from a provider.
fn created_storage(id: u64, protocol: ProtocolV1) -> Record {
    let Record::Created(mut created) = created_file(id) else {
        unreachable!("created_file makes a Created record")
    };
    created.request.headers.clear();
    created.request.protocol = protocol;
    Record::CreatedV2(CreatedV2 {
        created,
        credentials: Some("fleet-keys".into()),
    })
}

fn s3_target() -> ProtocolV1 {
    ProtocolV1::S3(Box::new(S3TargetV1 {
        endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
        virtual_host: true,
        bucket: "fleet".into(),
        key: "cam1/0001.mp4".into(),
        region: "eu-west-1".into(),
        part_size: 8 << 20,
        storage_class: Some("STANDARD_IA".into()),
        content_type: Some("video/mp4".into()),
        metadata: vec![("device".into(), "cam1".into())],
        credentials: "s3".into(),
    }))
}

fn gcs_target() -> ProtocolV1 {
    ProtocolV1::Gcs(Box::new(GcsTargetV1 {
        session_given: false,
        chunk_size: 8 << 20,
        content_type: Some("video/mp4".into()),
    }))
}

fn azure_target() -> ProtocolV1 {
    ProtocolV1::Azure(Box::new(AzureTargetV1 {
        block_size: 8 << 20,
        block_prefix: "0123abcd".into(),
        content_type: None,
    }))
}

/// An S3 multipart upload, a GCS session (forgotten, then a new one) and an Azure blob.
fn storage_life() -> Vec<Record> {
    vec![
        created_storage(7, s3_target()),
        Record::S3Upload(S3UploadV1 {
            id: 7,
            upload_id: Some("2~upload-7".into()),
        }),
        Record::S3Part(S3PartV1 {
            id: 7,
            number: 1,
            etag: "\"e1\"".into(),
            size: 8 << 20,
        }),
        created_storage(8, gcs_target()),
        Record::GcsSession(GcsSessionV1 {
            id: 8,
            uri: Some("https://storage.googleapis.com/upload?upload_id=u8".into()),
        }),
        Record::GcsSession(GcsSessionV1 { id: 8, uri: None }),
        Record::GcsSession(GcsSessionV1 {
            id: 8,
            uri: Some("https://storage.googleapis.com/upload?upload_id=u8b".into()),
        }),
        created_storage(9, azure_target()),
        progress(9, 16 << 20, 8 << 20),
        created_with_identity(10),
        created_by_client(11),
    ]
}

/// An upload a client submitted through the owner's control socket or inbox.
fn created_by_client(id: u64) -> Record {
    let Record::CreatedV3(created) = created_with_identity(id) else {
        unreachable!("created_with_identity makes a CreatedV3 record")
    };
    Record::CreatedV4(CreatedV4 {
        created,
        submission: *b"0123456789abcdef",
        submitter: Some(1000),
    })
}

/// A plain upload that presents a registered client identity and takes a token.
fn created_with_identity(id: u64) -> Record {
    let Record::Created(created) = created_file(id) else {
        unreachable!("created_file makes a Created record")
    };
    Record::CreatedV3(CreatedV3 {
        created: CreatedV2 {
            created,
            credentials: Some("bearer-file:/run/agent/token".into()),
        },
        client_identity: Some("device-7".into()),
    })
}

fn created_multipart(id: u64) -> Record {
    let mut path = b"/var/spool/bgx/\xff\xfe-not-utf8".to_vec();
    path.extend_from_slice(id.to_string().as_bytes());
    Record::Created(CreatedV1 {
        id,
        created_ms: 1_700_000_100_000,
        request: RequestV1 {
            url: "https://tus.example.org/files/".into(),
            method: "POST".into(),
            headers: vec![("Authorization".into(), "Bearer abc.def".into())],
            body: BodyV1::Multipart(MultipartV1 {
                subtype: "form-data".into(),
                boundary: "----bgx-boundary-7MA4YWxkTrZu0gW".into(),
                parts: vec![
                    PartV1 {
                        name: "caption".into(),
                        file_name: None,
                        content_type: Some("text/plain; charset=utf-8".into()),
                        content: PartContentV1::Text("Sommer am See ☀".into()),
                    },
                    PartV1 {
                        name: "file".into(),
                        file_name: Some("clip.mp4".into()),
                        content_type: Some("video/mp4".into()),
                        content: PartContentV1::File(SourceV1 {
                            path,
                            size: 52_428_800,
                            mtime_ns: -1,
                            spooled: true,
                        }),
                    },
                ],
            }),
            priority: PriorityV1::High,
            group: Some("holiday".into()),
            cost: CostPolicyV1::UnrestrictedOnly,
            protocol: ProtocolV1::Tus {
                chunk_size: Some(4 << 20),
            },
            idempotent: false,
        },
    })
}

fn state(id: u64, status: StatusV1, attempts: u32, error: Option<FailureV1>) -> Record {
    Record::State(StateV1 {
        id,
        status,
        attempts,
        error,
        at_ms: 1_700_000_200_000 + attempts as u64,
    })
}

fn progress(id: u64, bytes_sent: u64, acked: u64) -> Record {
    Record::Progress(ProgressV1 {
        id,
        bytes_sent,
        acked,
    })
}

fn resume_url(id: u64, url: Option<&str>) -> Record {
    Record::ResumeUrl(ResumeUrlV1 {
        id,
        url: url.map(Into::into),
    })
}

/// `response(id)` with its 17-byte body kept in the journal.
fn response_with_body(id: u64) -> Record {
    let Record::Response(response) = response(id) else {
        unreachable!("response makes a Response record")
    };
    Record::ResponseWithBody(ResponseWithBodyV1 {
        response,
        body: b"{\"id\":\"files/42\"}".to_vec(),
    })
}

fn response(id: u64) -> Record {
    Record::Response(ResponseV1 {
        id,
        status: 201,
        headers: vec![
            ("Location".into(), format!("https://example.com/files/{id}")),
            ("Content-Length".into(), "17".into()),
        ],
        url: format!("https://example.com/upload/{id}"),
        body_len: 17,
        body_truncated: false,
    })
}

fn changed(id: u64, priority: PriorityV1, current_seq: u64) -> Record {
    Record::Changed(ChangedV1 {
        id,
        priority,
        current_seq,
    })
}

/// A plain upload's whole life.
fn plain_life() -> Vec<Record> {
    vec![
        created_file(0),
        state(0, StatusV1::Running, 1, None),
        progress(0, 1 << 20, 0),
        progress(0, 3_000_000, 0),
        response_with_body(0),
        state(0, StatusV1::Completed, 1, None),
    ]
}

/// A tus multipart upload that is interrupted, loses its server URL and fails.
fn tus_life() -> Vec<Record> {
    vec![
        created_multipart(7),
        changed(7, PriorityV1::Low, 3),
        state(7, StatusV1::Running, 1, None),
        resume_url(
            7,
            Some("https://tus.example.org/files/24e533e02ec3bc40c387f1a0e460e216"),
        ),
        progress(7, 4 << 20, 4 << 20),
        state(7, StatusV1::PausedNoNetwork, 1, None),
        resume_url(7, None),
        Record::Restarted(7),
        state(7, StatusV1::WaitingToRetry, 2, None),
        state(
            7,
            StatusV1::Error,
            3,
            Some(FailureV1::HttpStatus { status: 410 }),
        ),
    ]
}

/// Several uploads interleaved, with removals and records for ids that are gone.
fn mixed() -> Vec<Record> {
    vec![
        created_file(1),
        created_file(2),
        created_multipart(3),
        state(1, StatusV1::Running, 1, None),
        progress(1, 65_536, 0),
        Record::Removed(2),
        progress(2, 1, 0),
        changed(3, PriorityV1::High, 1),
        state(3, StatusV1::PausedCostedNetwork, 0, None),
        state(1, StatusV1::Canceled, 1, None),
        Record::Removed(1),
        Record::Removed(41),
        created_file(1),
    ]
}

fn every_variant() -> Vec<Record> {
    vec![
        created_file(5),
        created_multipart(6),
        state(5, StatusV1::PausedByApplication, 0, None),
        state(
            6,
            StatusV1::WaitingToRetry,
            2,
            Some(FailureV1::Timeout {
                phase: "response".into(),
            }),
        ),
        progress(6, 100, 50),
        resume_url(6, Some("https://tus.example.org/files/6")),
        response(5),
        Record::Restarted(6),
        changed(5, PriorityV1::Low, 9),
        Record::Removed(5),
    ]
}

/// Every number a record carries at its limit: sizes and offsets of `u64::MAX` (a
/// multipart body whose parts sum past it), `u32::MAX` attempts and part numbers, times
/// at the end of `u64` and before the epoch, the largest id. What a disk can hold, the
/// open's arithmetic must survive.
fn extreme_life() -> Vec<Record> {
    let max_sources = |r: Record| match r {
        Record::Created(mut c) => {
            c.created_ms = u64::MAX;
            match &mut c.request.body {
                BodyV1::File(s) => {
                    s.size = u64::MAX;
                    s.mtime_ns = i64::MIN;
                }
                BodyV1::Multipart(m) => {
                    for p in &mut m.parts {
                        if let PartContentV1::File(s) = &mut p.content {
                            s.size = u64::MAX;
                        }
                    }
                    m.parts.extend(m.parts.clone());
                }
            }
            Record::Created(c)
        }
        other => other,
    };
    let mut s3 = s3_target();
    if let ProtocolV1::S3(t) = &mut s3 {
        t.part_size = u64::MAX;
    }
    let mut azure = azure_target();
    if let ProtocolV1::Azure(t) = &mut azure {
        t.block_size = u64::MAX;
    }
    let mut gcs = gcs_target();
    if let ProtocolV1::Gcs(t) = &mut gcs {
        t.chunk_size = u64::MAX;
    }
    let top = u64::MAX - 1;
    vec![
        max_sources(created_file(1)),
        state(1, StatusV1::WaitingToRetry, u32::MAX, None),
        progress(1, u64::MAX, u64::MAX),
        max_sources(created_multipart(2)),
        progress(2, u64::MAX, u64::MAX - 1),
        max_sources(created_storage(3, s3)),
        Record::S3Part(S3PartV1 {
            id: 3,
            number: u32::MAX,
            etag: "\"e\"".into(),
            size: u64::MAX,
        }),
        Record::S3Part(S3PartV1 {
            id: 3,
            number: 1,
            etag: "\"f\"".into(),
            size: u64::MAX,
        }),
        max_sources(created_storage(4, gcs)),
        progress(4, u64::MAX, u64::MAX),
        max_sources(created_storage(5, azure)),
        progress(5, u64::MAX, u64::MAX),
        Record::State(StateV1 {
            id: 1,
            status: StatusV1::Queued,
            attempts: u32::MAX,
            error: None,
            at_ms: u64::MAX,
        }),
        changed(2, PriorityV1::High, u64::MAX),
        match max_sources(created_file(6)) {
            Record::Created(mut c) => {
                c.id = top;
                Record::Created(c)
            }
            other => other,
        },
        Record::Response(ResponseV1 {
            id: top,
            status: u16::MAX,
            headers: vec![],
            url: String::new(),
            body_len: u64::MAX,
            body_truncated: true,
        }),
        state(top, StatusV1::Completed, u32::MAX, None),
    ]
}

fn journal(records: &[Record]) -> Vec<u8> {
    let mut out = header().to_vec();
    for r in records {
        out.extend_from_slice(&encode_frame(r).expect("seed record fits"));
    }
    out
}

/// Offset (in the whole file) of the start of frame `i`.
fn frame_start(records: &[Record], i: usize) -> usize {
    HEADER_LEN
        + records[..i]
            .iter()
            .map(|r| encode_frame(r).unwrap().len())
            .sum::<usize>()
}

/// One seed: its file name, its bytes, and (for journals) the records a replay must
/// recover and whether it stops on damage.
struct Seed {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Option<(Vec<Record>, Option<Damage>)>,
}

fn replay_seeds() -> Vec<Seed> {
    let clean = |name, records: Vec<Record>| Seed {
        name,
        bytes: journal(&records),
        expect: Some((records, None)),
    };
    let mut seeds = vec![
        clean("empty.journal", vec![]),
        clean("plain_life.journal", plain_life()),
        clean("tus_multipart_life.journal", tus_life()),
        clean("mixed.journal", mixed()),
        clean("every_variant.journal", every_variant()),
        clean("storage_life.journal", storage_life()),
        clean("extreme_values.journal", extreme_life()),
    ];

    // A crash during an append: the last frame (a create) is cut in the middle of its
    // payload.
    let all = mixed();
    let mut torn = journal(&all);
    let last = frame_start(&all, all.len() - 1);
    torn.truncate(last + (torn.len() - last) / 2);
    seeds.push(Seed {
        name: "torn_tail.journal",
        bytes: torn,
        expect: Some((all[..all.len() - 1].to_vec(), Some(Damage::TornTail))),
    });

    // A file extended but its last page never written: zeroes after the last record.
    let life = plain_life();
    let mut zeroed = journal(&life);
    zeroed.extend_from_slice(&[0; 64]);
    seeds.push(Seed {
        name: "zeroed_tail.journal",
        bytes: zeroed,
        expect: Some((life, Some(Damage::TornTail))),
    });

    // Bit rot in the middle: one payload byte of the third frame flipped.
    let tus = tus_life();
    let mut flipped = journal(&tus);
    flipped[frame_start(&tus, 2) + FRAME_HEADER_LEN + 1] ^= 0x40;
    seeds.push(Seed {
        name: "flipped_byte.journal",
        bytes: flipped,
        expect: Some((
            tus[..2].to_vec(),
            Some(Damage::Corrupt("checksum mismatch".into())),
        )),
    });

    // A creation cut short inside the header.
    seeds.push(Seed {
        name: "torn_header.journal",
        bytes: header()[..11].to_vec(),
        expect: None,
    });
    seeds
}

fn record_seeds() -> Vec<Seed> {
    let one = |name, record: Record| Seed {
        name,
        bytes: encode_frame(&record).unwrap(),
        expect: Some((vec![record], None)),
    };
    vec![
        one("created_file.frame", created_file(3)),
        one("created_multipart.frame", created_multipart(4)),
        one("state.frame", state(3, StatusV1::Running, 1, None)),
        one(
            "state_error.frame",
            state(
                3,
                StatusV1::Error,
                5,
                Some(FailureV1::SourceChanged {
                    path: b"/data/\xffraw".to_vec(),
                    what: "size 10 -> 12".into(),
                }),
            ),
        ),
        one("progress.frame", progress(3, 123_456_789, 65_536)),
        one(
            "resume_url.frame",
            resume_url(4, Some("https://tus.example.org/f/4")),
        ),
        one("resume_url_none.frame", resume_url(4, None)),
        one("response.frame", response(3)),
        one("response_with_body.frame", response_with_body(3)),
        one("removed.frame", Record::Removed(3)),
        one("restarted.frame", Record::Restarted(u64::MAX)),
        one("changed.frame", changed(4, PriorityV1::High, 2)),
        one("created_s3.frame", created_storage(7, s3_target())),
        one("created_gcs.frame", created_storage(8, gcs_target())),
        one("created_azure.frame", created_storage(9, azure_target())),
        one(
            "gcs_session.frame",
            Record::GcsSession(GcsSessionV1 {
                id: 8,
                uri: Some("https://storage.googleapis.com/upload?upload_id=u8".into()),
            }),
        ),
    ]
}

fn seeds(target: &str) -> Vec<Seed> {
    match target {
        "decode_record" => record_seeds(),
        // The same journals, through the whole open.
        "replay_file" | "open_store" => replay_seeds(),
        _ => unreachable!(),
    }
}

/// Writes the seed corpus to `fuzz/seeds/<target>/`, replacing what is there.
#[test]
#[ignore = "regenerates fuzz/seeds; run by hand after changing the generator"]
fn regenerate_seeds() {
    for target in TARGETS {
        let dir = fuzz_dir().join("seeds").join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap();
        }
        fs::create_dir_all(&dir).unwrap();
        for seed in seeds(target) {
            fs::write(dir.join(seed.name), &seed.bytes).unwrap();
        }
    }
}

/// The committed seeds are exactly what the generator makes, so the corpus is
/// reproducible and an accidental change of the on-disk encoding shows up here.
#[test]
fn committed_seeds_match_generator() {
    for target in TARGETS {
        let committed = files("seeds", target);
        let mut generated: Vec<(String, Vec<u8>)> = seeds(target)
            .into_iter()
            .map(|s| (s.name.to_string(), s.bytes))
            .collect();
        generated.sort();
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&generated),
            "fuzz/seeds/{target} is stale: run `cargo test --test fuzz_corpus -- --ignored regenerate_seeds`"
        );
        for ((name, c), (_, g)) in committed.iter().zip(&generated) {
            assert!(
                c == g,
                "fuzz/seeds/{target}/{name} differs from the generator: the encoding changed, or run `cargo test --test fuzz_corpus -- --ignored regenerate_seeds`"
            );
        }
        let total: usize = committed.iter().map(|(_, b)| b.len()).sum();
        assert!(
            total < 32 * 1024,
            "seed corpus for {target} grew to {total} bytes"
        );
    }
}

/// The seeds replay to exactly the records they were written with (a prefix of them for
/// the damaged ones), and each single frame decodes to its record.
#[test]
fn seeds_recover_what_was_written() {
    for seed in replay_seeds() {
        let Some((records, damage)) = seed.expect else {
            continue;
        };
        let scan = format::scan(&seed.bytes[HEADER_LEN..]);
        assert_eq!(scan.records, records, "{}", seed.name);
        assert_eq!(scan.damage, damage, "{}", seed.name);
    }
    for seed in record_seeds() {
        let (records, _) = seed.expect.unwrap();
        let (format::Frame::Record(record), used) =
            format::decode_frame(&seed.bytes).unwrap().unwrap()
        else {
            panic!("{}: not a known record", seed.name);
        };
        assert_eq!(record, records[0], "{}", seed.name);
        assert_eq!(used, seed.bytes.len(), "{}", seed.name);
    }
}

/// Every committed seed and regression input, through both harnesses.
#[test]
fn harnesses_accept_committed_inputs() {
    let mut count = 0;
    for target in TARGETS {
        for kind in ["seeds", "regressions"] {
            for (name, bytes) in files(kind, target) {
                for t in TARGETS {
                    run(t, &format!("fuzz/{kind}/{target}/{name}"), &bytes);
                    count += 1;
                }
            }
        }
    }
    assert!(count >= 2 * 10, "only {count} committed inputs found");
}

/// Crashes found but not fixed yet (`fuzz/known-crashes/<target>/`). Once this passes,
/// move the files to `fuzz/regressions/<target>/` (run by the test above) and drop them here.
#[test]
#[ignore = "fails until the crashes in fuzz/known-crashes are fixed (see fuzz/README.md)"]
fn known_crashes_are_fixed() {
    for target in TARGETS {
        for (name, bytes) in files("known-crashes", target) {
            run(
                target,
                &format!("fuzz/known-crashes/{target}/{name}"),
                &bytes,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic mutations.
// ---------------------------------------------------------------------------------------

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x10, 0x08];

/// Applies one random mutation to `data`, drawing on `others` for splices.
fn mutate(rng: &mut Xorshift, data: &mut Vec<u8>, others: &[Vec<u8>]) -> &'static str {
    if data.is_empty() {
        data.push(rng.byte());
        return "grow";
    }
    match rng.below(8) {
        0 => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
            "bit flip"
        }
        1 => {
            let i = rng.below(data.len());
            data[i] = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            };
            "byte set"
        }
        2 => {
            let n = rng.below(data.len());
            data.truncate(n);
            "truncate"
        }
        3 => {
            let i = rng.below(data.len() + 1);
            let n = 1 + rng.below(8);
            let fill: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            data.splice(i..i, fill);
            "insert"
        }
        4 => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(16));
            data.drain(i..i + n);
            "delete"
        }
        5 => {
            let other = &others[rng.below(others.len())];
            let i = rng.below(data.len() + 1);
            let j = rng.below(other.len() + 1);
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
            "splice"
        }
        6 => {
            // Duplicate a chunk somewhere else (repeats whole frames now and then).
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(64));
            let chunk = data[i..i + n].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, chunk);
            "duplicate"
        }
        _ => {
            // A length field: set a little-endian u32 to an interesting value.
            let i = rng.below(data.len());
            let v: u32 = [0, 1, 0x7F, 0x100, 0x10_0000, 0x10_0001, u32::MAX][rng.below(7)];
            for (k, b) in v.to_le_bytes().iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *b;
                }
            }
            "u32 set"
        }
    }
}

/// Walks the frames from `start` and rewrites each checksum to match its (mutated)
/// length and payload, so mutations reach the postcard decoder and the fold instead of
/// stopping at the CRC.
fn fix_checksums(data: &mut [u8], start: usize) {
    let mut pos = start;
    while let Some(head) = data.get(pos..pos + FRAME_HEADER_LEN) {
        let len_bytes = [head[0], head[1], head[2], head[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let Some(payload) = data.get(pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + len) else {
            return;
        };
        let mut crc = Crc32::new();
        crc.update(&len_bytes);
        crc.update(payload);
        data[pos + 4..pos + 8].copy_from_slice(&crc.finish().to_le_bytes());
        pos += FRAME_HEADER_LEN + len;
    }
}

#[test]
fn harnesses_survive_mutations() {
    // xorshift64*: small, fixed-seed, good enough to pick mutations.
    let mut rng = Xorshift::from_state(0x9E37_79B9_7F4A_7C15);
    let (mut runs, mut decoded, mut rejected) = (0usize, 0usize, 0usize);
    for target in TARGETS {
        let corpus: Vec<Vec<u8>> = files("seeds", target).into_iter().map(|(_, b)| b).collect();
        assert!(!corpus.is_empty(), "no seeds for {target}");
        let frames_start = if target == "decode_record" {
            0
        } else {
            HEADER_LEN
        };
        let mutations = if target == "open_store" {
            OPEN_MUTATIONS_PER_SEED
        } else {
            MUTATIONS_PER_SEED
        };
        for (s, seed) in corpus.iter().enumerate() {
            let seed_records = format::scan(seed.get(frames_start..).unwrap_or_default()).records;
            for m in 0..mutations {
                let mut data = seed.clone();
                let mut what = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    what.push(mutate(&mut rng, &mut data, &corpus));
                }
                // Half the time, make every frame's checksum valid again.
                if m % 2 == 1 {
                    fix_checksums(&mut data, frames_start);
                    what.push("fixed checksums");
                }
                let label = format!("seed {s} mutation {m} ({})", what.join(", "));
                run(target, &label, &data);
                runs += 1;
                // Count the mutants that got past the checksum to the postcard decoder:
                // ones it rejected, and ones that decoded to records the seed does not have.
                let scan = format::scan(data.get(frames_start..).unwrap_or_default());
                if matches!(&scan.damage, Some(Damage::Unreadable(_))) {
                    rejected += 1;
                } else if !scan.records.is_empty() && scan.records != seed_records {
                    decoded += 1;
                }
            }
        }
    }
    eprintln!("{runs} mutants: {decoded} decoded to new records, {rejected} rejected by postcard");
    assert!(runs >= 4000, "only {runs} mutations ran");
    assert!(
        decoded * 20 >= runs && rejected * 20 >= runs,
        "mutations stop at the checksum: of {runs}, {decoded} decoded, {rejected} rejected"
    );
}
