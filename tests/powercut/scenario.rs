//! The child side: workloads that run on a store on the loop file system until they are
//! killed, printing every change the library told them had happened.
//!
//! Lines: `ready` once the workload proper starts (the parent cuts at a random moment
//! after it); `begin <op> <id>` before a call and `ok <op> <id> [detail]` after it
//! returned Ok (`err ...` after an error). `<id>` is `-` for a create, whose id is only
//! known when it returns. The parent folds these lines into what the store must hold
//! ([`super::verify`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use background_transfer::{UploadRequest, Uploader};

use crate::support::child::mark;
use crate::support::{random_bytes, sha256_hex, Rng};

/// The role variable of the workload child; its value is the scenario's name.
pub const CHILD_ENV: &str = "BGXFER_POWERCUT_CHILD";
/// The store directory (on the loop file system).
pub const STORE_ENV: &str = "BGXFER_POWERCUT_STORE";
/// A directory outside the image, for the program's own source files.
pub const SRC_ENV: &str = "BGXFER_POWERCUT_SRC";
/// The loopback server's URL.
pub const URL_ENV: &str = "BGXFER_POWERCUT_URL";
/// The seed of the workload's choices.
pub const SEED_ENV: &str = "BGXFER_POWERCUT_SEED";

/// The workloads, each cut at many points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Uploads created from files and from readers (spooled).
    Create,
    /// Pause, resume, cancel and remove.
    Control,
    /// Uploads that complete, with their response bodies kept.
    Complete,
    /// Completed uploads purged by retention when the store is opened again.
    Purge,
    /// The journal compacted again and again.
    Compact,
    /// A damaged journal: the uploads it no longer lists are moved to `lost/`.
    Lost,
    /// `Create`, cut; then the copy opened by a second child, cut during its open.
    CutOpen,
    /// A long, throttled upload: its progress checkpoints must reach the disk within
    /// 1.5 s though progress messages keep the scheduler busy.
    Checkpoint,
}

/// Bytes between the checkpoints of [`Scenario::Checkpoint`] (4 s apart at its rate).
pub const CHECKPOINT_BYTES: u64 = 1024 * 1024;
/// Its bandwidth cap.
const CHECKPOINT_RATE: u64 = 256 * 1024;

pub const ALL: [Scenario; 8] = [
    Scenario::Create,
    Scenario::Control,
    Scenario::Complete,
    Scenario::Purge,
    Scenario::Compact,
    Scenario::Lost,
    Scenario::CutOpen,
    Scenario::Checkpoint,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Create => "create",
            Scenario::Control => "control",
            Scenario::Complete => "complete",
            Scenario::Purge => "purge",
            Scenario::Compact => "compact",
            Scenario::Lost => "lost",
            Scenario::CutOpen => "cut-open",
            Scenario::Checkpoint => "checkpoint",
        }
    }

    fn from_name(s: &str) -> Option<Scenario> {
        ALL.into_iter().find(|x| x.name() == s)
    }

    /// When after `ready` the cut may come (ms): the workload's busy part.
    pub fn window_ms(self) -> (u64, u64) {
        match self {
            Scenario::Complete | Scenario::Purge => (0, 1500),
            Scenario::Compact => (0, 600),
            // After the first checkpoint, and between the later ones.
            Scenario::Checkpoint => (5000, 9000),
            _ => (0, 800),
        }
    }
}

/// The second child of [`Scenario::CutOpen`]: opens the store it finds, again and again.
pub const OPEN_ONLY: &str = "open-only";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"))
}

struct Ctx {
    store: PathBuf,
    src: PathBuf,
    url: String,
    rng: Rng,
    files: u64,
}

impl Ctx {
    fn builder(&self, transfers: bool) -> background_transfer::UploaderBuilder {
        Uploader::builder()
            .store_dir(&self.store)
            .start_transfers(transfers)
            .watch_network(false)
            .probe_targets(Vec::new())
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .shutdown_timeout(Duration::from_secs(2))
    }

    /// Creates one upload from a file (outside the image) or a reader (spooled into the
    /// store), and reports it.
    fn create(&mut self, up: &Uploader, reader: bool) -> Option<u64> {
        let len = self.rng.range(1, 192 * 1024) as usize;
        let seed = self.rng.next() | 1;
        let bytes = random_bytes(len, seed);
        mark("begin create -");
        let created = if reader {
            let sha = sha256_hex(&bytes);
            up.create_upload(UploadRequest::from_reader(
                self.url.clone(),
                Cursor::new(bytes),
            ))
            .map(|u| (u.id(), format!("spool {sha}")))
        } else {
            self.files += 1;
            let path = self
                .src
                .join(format!("src-{}-{}", std::process::id(), self.files));
            std::fs::write(&path, &bytes).unwrap();
            up.create_upload(UploadRequest::put(self.url.clone(), path))
                .map(|u| (u.id(), "file".to_string()))
        };
        match created {
            Ok((id, what)) => {
                mark(format!("ok create {id} {what}"));
                Some(id)
            }
            Err(e) => {
                mark(format!("err create - {e}"));
                None
            }
        }
    }

    /// Creates a reader upload and waits for it to complete; reports the body it kept.
    fn complete_one(&mut self, up: &Uploader) {
        let Some(id) = self.create(up, true) else {
            return;
        };
        let u = up.get(id).unwrap();
        match u.wait_timeout(Duration::from_secs(20)) {
            Some(Ok(_)) => {
                let mut body = Vec::new();
                let read = u
                    .response_body()
                    .map_err(|e| e.to_string())
                    .and_then(|mut f| {
                        std::io::Read::read_to_end(&mut f, &mut body).map_err(|e| e.to_string())
                    });
                match read {
                    Ok(_) => mark(format!("ok complete {id} {}", sha256_hex(&body))),
                    Err(e) => mark(format!("err complete {id} {e}")),
                }
            }
            Some(Err(e)) => mark(format!("err complete {id} {e}")),
            None => mark(format!("err complete {id} timeout")),
        }
    }
}

/// The child body: runs the scenario named by [`CHILD_ENV`] until it is killed.
pub fn child_process() {
    let name = env(CHILD_ENV);
    let mut cx = Ctx {
        store: PathBuf::from(env(STORE_ENV)),
        src: PathBuf::from(env(SRC_ENV)),
        url: env(URL_ENV),
        rng: Rng(env(SEED_ENV).parse::<u64>().unwrap() | 1),
        files: 0,
    };
    if name == OPEN_ONLY {
        return open_only(&cx);
    }
    let scenario = Scenario::from_name(&name).unwrap_or_else(|| panic!("no scenario {name}"));
    match scenario {
        Scenario::Create | Scenario::CutOpen => {
            let up = cx.builder(false).open().unwrap();
            mark("ready");
            loop {
                let reader = cx.rng.next() % 2 == 0;
                cx.create(&up, reader);
            }
        }
        Scenario::Control => control(&mut cx),
        Scenario::Complete => {
            let up = cx.builder(true).open().unwrap();
            mark("ready");
            loop {
                cx.complete_one(&up);
            }
        }
        Scenario::Purge => purge(&mut cx),
        Scenario::Checkpoint => checkpoint(&mut cx),
        Scenario::Compact => compact(&mut cx),
        Scenario::Lost => lost(&mut cx),
    }
}

fn control(cx: &mut Ctx) {
    let up = cx.builder(false).open().unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.extend(cx.create(&up, true));
    }
    mark("ready");
    loop {
        let id = ids[cx.rng.next() as usize % ids.len()];
        let Some(u) = up.get(id) else {
            continue;
        };
        let op = match cx.rng.next() % 10 {
            0..=3 => "pause",
            4..=6 => "resume",
            7..=8 => "cancel",
            _ => "remove",
        };
        mark(format!("begin {op} {id}"));
        let r = match op {
            "pause" => u.pause(),
            "resume" => u.resume(),
            "cancel" => u.cancel(),
            _ => u.remove(),
        };
        match &r {
            Ok(()) => mark(format!("ok {op} {id}")),
            Err(e) => mark(format!("err {op} {id} {e}")),
        }
        if op == "remove" && r.is_ok() {
            ids.retain(|&i| i != id);
            ids.extend(cx.create(&up, true));
        }
    }
}

fn checkpoint(cx: &mut Ctx) {
    let up = cx
        .builder(true)
        .max_bandwidth(Some(CHECKPOINT_RATE))
        .checkpoint_bytes(CHECKPOINT_BYTES)
        .progress_interval(Duration::from_millis(20))
        .open()
        .unwrap();
    let path = cx.src.join(format!("big-{}", std::process::id()));
    std::fs::write(&path, random_bytes(16 << 20, 5)).unwrap();
    let u = up
        .create_upload(UploadRequest::put(cx.url.clone(), path))
        .unwrap();
    mark(format!("ok create {} file", u.id()));
    mark("ready");
    // Just before each checkpoint the program makes a record that is fsynced at once (a
    // small create): the checkpoint that follows within the second is then batched, and
    // only the scheduler's own timer fsyncs it while progress messages keep coming.
    let (mut last_checkpoint, mut armed) = (0u64, true);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let sent = u.progress().bytes_sent;
        mark(format!("progress {} {sent} {now}", u.id()));
        if sent >= last_checkpoint + CHECKPOINT_BYTES {
            last_checkpoint = sent;
            armed = true;
        } else if armed && sent + 128 * 1024 >= last_checkpoint + CHECKPOINT_BYTES {
            armed = false;
            cx.create(&up, false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn purge(cx: &mut Ctx) {
    let mut first = true;
    loop {
        // Every open purges what ended more than 50 ms ago.
        let up = cx
            .builder(true)
            .retention(Some(Duration::from_millis(50)))
            .open()
            .unwrap();
        if first {
            mark("ready");
            first = false;
        }
        for _ in 0..3 {
            cx.complete_one(&up);
        }
        up.shutdown().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    }
}

fn compact(cx: &mut Ctx) {
    let up = cx.builder(false).open().unwrap();
    for i in 0..8 {
        if let Some(id) = cx.create(&up, i % 2 == 0) {
            let u = up.get(id).unwrap();
            for _ in 0..3 {
                mark(format!("begin pause {id}"));
                u.pause().unwrap();
                mark(format!("ok pause {id}"));
                mark(format!("begin resume {id}"));
                u.resume().unwrap();
                mark(format!("ok resume {id}"));
            }
        }
    }
    up.shutdown().unwrap();
    let mut store = background_transfer::journal::Store::open(&cx.store).unwrap();
    mark("ready");
    for n in 0u64.. {
        store.compact().unwrap();
        mark(format!("ok compact {n}"));
    }
}

fn lost(cx: &mut Ctx) {
    let up = cx.builder(false).open().unwrap();
    for _ in 0..6 {
        cx.create(&up, true);
    }
    up.shutdown().unwrap();
    damage_journal(&cx.store.join("journal"));
    mark("damaged");
    mark("ready");
    let up = cx.builder(false).open().unwrap();
    mark("ok reopened -");
    loop {
        cx.create(&up, true);
    }
}

/// Flips a byte in the middle of the journal and fsyncs it: damage a crash does not
/// explain, so the next open keeps the records before it and moves the files of the
/// uploads it no longer lists to `lost/`.
fn damage_journal(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(path).unwrap().len();
    let at = len / 2;
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&bytes[at as usize..=at as usize]).unwrap();
    f.sync_all().unwrap();
}

/// [`OPEN_ONLY`]: opens the store, which runs crash recovery (a torn tail cut, files
/// the journal does not list dealt with), shuts it down, and again; the parent kills it
/// during one of these opens. No transfers, so that the statuses stay as the first child
/// left them.
fn open_only(cx: &Ctx) {
    mark("ready");
    loop {
        let up = cx.builder(false).open().unwrap();
        up.shutdown().unwrap();
    }
}
