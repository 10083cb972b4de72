//! Issue 14: nothing a credentials provider gives, and no credential header or URL
//! query the program set, reaches the crate's own log lines, even at TRACE. A logger
//! that keeps the lines holding a credential is installed for this binary; the crate's
//! own must hold none. (ureq logs each request's whole URL, query included, at DEBUG,
//! and the raw bytes at TRACE: the crate docs say to keep `ureq` and `ureq_proto` at
//! INFO wherever credentials matter; the figure printed shows what they hold.)

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use background_transfer::{CredentialRequest, Credentials, UploadRequest};

use crate::support::{completed, fast, write_file, Action, Behavior, TestServer};

struct Keep;

/// The lines kept: the crate's that hold a credential or a refresh, and other
/// targets' that hold a credential (with their level). The other tests of this binary
/// log too; keeping every line of theirs would hold their bodies' worth of ureq traces.
static LINES: Mutex<Vec<(String, log::Level, String)>> = Mutex::new(Vec::new());
/// The crate's lines seen in all.
static OURS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl log::Log for Keep {
    /// Every level of the crate's own lines; up to DEBUG of the others (ureq-proto's
    /// TRACE hex dumps of every body would slow this binary's other tests for nothing).
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("background_transfer") || m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!("{}", r.args());
        let ours = r.target().starts_with("background_transfer");
        if ours {
            OURS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if line.contains("LOGSCAN") || (ours && line.contains("asking the provider again")) {
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push((
                r.target().to_string(),
                r.level(),
                line,
            ));
        }
    }
    fn flush(&self) {}
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if log::set_logger(&Keep).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
    });
}

#[test]
fn no_credential_reaches_the_crates_log_lines_at_trace() {
    install();
    let tmp = tempfile::tempdir().unwrap();
    // 401 to a stale token (the provider is asked again), 201 to the fresh one.
    let srv = TestServer::start(Behavior::handler(|head, _| {
        match head.header("authorization") {
            Some(v) if v.ends_with("fresh-LOGSCAN-secret-2") => Action::respond(201, "stored"),
            _ => Action::respond(401, "no"),
        }
    }));
    let up = fast(&tmp.path().join("store"))
        .credentials("bearer", |r: &CredentialRequest| {
            let t = if r.refresh() {
                "fresh-LOGSCAN-secret-2"
            } else {
                "stale-LOGSCAN-secret-1"
            };
            Ok(Credentials::Headers(vec![(
                "Authorization".into(),
                format!("Bearer {t}"),
            )]))
        })
        .credentials("signed", |_: &CredentialRequest| {
            Ok(Credentials::Url(
                "http://127.0.0.1:9/signed/a.bin?X-Amz-Signature=LOGSCAN-sig-3&sig=LOGSCAN-sas-4"
                    .into(),
            ))
        })
        .open()
        .unwrap();
    let f = write_file(tmp.path(), "a.bin", 2 << 20, 5);
    let h = up
        .create_upload(UploadRequest::put(srv.url("/a.bin"), &f).credentials("bearer"))
        .unwrap();
    completed(&h, Duration::from_secs(30));
    // The program's own credential header and a URL whose query is a credential.
    let own = UploadRequest::put(srv.url("/b.bin?sig=LOGSCAN-sas-5"), &f)
        .header("Authorization", "Bearer fresh-LOGSCAN-secret-2")
        .unwrap();
    completed(&up.create_upload(own).unwrap(), Duration::from_secs(30));
    // A provider URL that cannot be reached: its failure is logged too.
    let signed = up
        .create_upload(UploadRequest::put(srv.url("/c.bin"), &f).credentials("signed"))
        .unwrap();
    let _ = signed.wait_timeout(Duration::from_secs(3));
    up.shutdown().unwrap();

    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ours = |t: &str| t.starts_with("background_transfer");
    assert!(
        lines
            .iter()
            .any(|(t, _, l)| ours(t) && l.contains("asking the provider again")),
        "the scan saw the crate's lines (a refresh is logged)"
    );
    let leaks: Vec<_> = lines
        .iter()
        .filter(|(t, _, l)| ours(t) && l.contains("LOGSCAN"))
        .collect();
    assert!(
        leaks.is_empty(),
        "credentials in the crate's log lines: {leaks:#?}"
    );
    let theirs: Vec<String> = lines
        .iter()
        .filter(|(t, _, _)| !ours(t))
        .map(|(t, level, l)| format!("{t} {level}: {}", l.chars().take(400).collect::<String>()))
        .collect();
    eprintln!(
        "log scan at TRACE: {} lines of the crate's, none with a credential; lines of other \
         targets holding one: {theirs:?}",
        OURS.load(std::sync::atomic::Ordering::Relaxed)
    );
}
