//! Real processes: a SIGKILLed appender loses no acknowledged record, and the store lock
//! passes from a killed holder to the next opener.
//!
//! The child processes are this test binary itself, re-run with `BGXFER_CHILD` set and
//! filtered to its `child_process` entry point, which calls [`child_process`] here.

use std::path::Path;
use std::time::{Duration, Instant};

use background_transfer::journal::{Durability, Journal, Store};
use background_transfer::Error;

use crate::records;
use crate::support::child::{self, mark, ChildProcess};
use crate::support::Rng;

pub const CHILD_ENV: &str = "BGXFER_CHILD";
const STORE_ENV: &str = "BGXFER_STORE";

/// The child processes' body; `CHILD_ENV` is the role (`append` or `hold`).
pub fn child_process() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var(STORE_ENV).unwrap());
    match role.as_str() {
        "append" => {
            // Hold the lock like the engine does, and append through the journal directly
            // (no compaction) so that the file is exactly the sequence written.
            let _lock = background_transfer::journal::StoreLock::acquire(&dir).unwrap();
            let (mut journal, recovered, _) = Journal::open(&dir).unwrap();
            mark("READY");
            let mut n = recovered.len() as u64;
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                journal
                    .append(&records::record(n), Durability::Sync)
                    .unwrap();
                println!("ACK {n}");
                n += 1;
            }
        }
        "hold" => {
            let _store = Store::open(&dir).unwrap();
            mark("READY");
            std::thread::sleep(Duration::from_secs(20));
        }
        other => panic!("unknown child role {other}"),
    }
}

fn spawn(role: &str, dir: &Path) -> ChildProcess {
    child::spawn(CHILD_ENV, role, &[(STORE_ENV, &dir)])
}

fn wait_ready(child: &mut ChildProcess) {
    child
        .wait_for_line("READY", Duration::from_secs(20))
        .expect("child did not get ready");
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let iterations: u32 = std::env::var("BGXFER_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill test seed {seed:#x}, {iterations} iterations");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut acked_max: Option<u64> = None;
    let mut acks_total = 0u64;
    let mut lost = 0u64;
    let mut torn = 0u32;
    for it in 0..iterations {
        let mut child = spawn("append", &dir);
        wait_ready(&mut child);
        std::thread::sleep(Duration::from_millis(rng.next() % 61));
        child.kill();
        // Everything the child printed before it died is in the pipe.
        child.read_to_end(Duration::from_secs(5));
        for line in child.lines_so_far() {
            if let Some(n) = line.strip_prefix("ACK ") {
                let n: u64 = n.parse().unwrap();
                acked_max = Some(acked_max.map_or(n, |m| m.max(n)));
                acks_total += 1;
            }
        }
        // Recover, then compare what is on disk with what was written and acknowledged.
        let store = Store::open(&dir).unwrap();
        if !matches!(
            store.recovery(),
            background_transfer::journal::Recovery::Clean
                | background_transfer::journal::Recovery::Created
        ) {
            torn += 1;
        }
        assert!(
            !matches!(
                store.recovery(),
                background_transfer::journal::Recovery::Corrupt { .. }
            ),
            "iteration {it}: a kill produced damage: {:?}",
            store.recovery()
        );
        drop(store);
        let scan = records::scan_journal(&dir);
        assert!(scan.damage.is_none());
        for (i, r) in scan.records.iter().enumerate() {
            assert_eq!(
                *r,
                records::record(i as u64),
                "iteration {it}: record {i} differs"
            );
        }
        let recovered = scan.records.len() as u64;
        if let Some(m) = acked_max {
            if recovered <= m {
                lost += m + 1 - recovered;
            }
        }
    }
    eprintln!(
        "{iterations} SIGKILLs: {acks_total} acknowledged appends, {lost} acknowledged records \
         lost, {torn} recoveries cut a torn tail"
    );
    assert_eq!(lost, 0, "acknowledged records were lost");
    assert!(
        acks_total > 0,
        "the children never appended: the test proved nothing"
    );
}

#[test]
fn a_second_opener_gets_store_locked_until_the_holder_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut child = spawn("hold", &dir);
    wait_ready(&mut child);
    match Store::open(&dir) {
        Err(Error::StoreLocked { path }) => assert_eq!(path, dir),
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    child.kill();
    let store = Store::open(&dir).expect("the lock passes on once the holder is killed");
    // The same process opening it a second time is refused too.
    let err = Store::open(&dir).unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "{err}");
    assert!(err.to_string().contains(dir.to_str().unwrap()), "{err}");
    drop(store);
    Store::open(&dir).expect("reopens after the first handle is dropped");
}
