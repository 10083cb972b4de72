//! `run` and `send`: open the store with transfers on, show progress, and stop on
//! SIGINT/SIGTERM (transfers are stopped and persisted; the next `run` continues them)
//! or, with `--until-idle`, once nothing is left to do. SIGUSR1 says "the network
//! changed, probe now" (a modem manager's hook knows before the kernel does).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use background_transfer::{Status, Upload, Uploader};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

use crate::cli::{AddArgs, RunArgs};
use crate::held::Shown;
use crate::progress_view::{ProgressView, Row};
use crate::Failure;

/// How often the view polls the uploads' snapshots.
const POLL: Duration = Duration::from_millis(50);

/// Whether `--until-idle` may stop for this status: the upload ended, or the program
/// (someone with `bgupload pause`) paused it.
pub fn is_idle(s: Status) -> bool {
    matches!(
        s,
        Status::Completed
            | Status::Error
            | Status::Canceled
            | Status::PausedByApplication
            // Its provider is one only the program that named it can register.
            | Status::PausedNoCredentials
    )
}

/// SIGINT and SIGTERM set a flag the loop polls; a second signal ends the process at
/// once (the journal is crash-safe, so that loses nothing accepted).
struct Signals {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    /// SIGUSR1: the network changed.
    usr1: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        let any = Arc::new(AtomicBool::new(false));
        let int = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        for (sig, flag, code) in [(SIGINT, &int, 130), (SIGTERM, &term, 143)] {
            let registered =
                signal_hook::flag::register_conditional_shutdown(sig, code, Arc::clone(&any))
                    .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&any)))
                    .and_then(|_| signal_hook::flag::register(sig, Arc::clone(flag)));
            registered
                .map_err(|e| Failure::new(format!("could not install a signal handler: {e}")))?;
        }
        let usr1 = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGUSR1, Arc::clone(&usr1))
            .map_err(|e| Failure::new(format!("could not install a signal handler: {e}")))?;
        Ok(Signals { int, term, usr1 })
    }

    /// Whether SIGUSR1 came since the last call.
    fn network_changed(&self) -> bool {
        self.usr1.swap(false, Ordering::SeqCst)
    }

    /// The exit status for the signal received, if one was.
    fn received(&self) -> Option<u8> {
        if self.int.load(Ordering::SeqCst) {
            Some(130)
        } else if self.term.load(Ordering::SeqCst) {
            Some(143)
        } else {
            None
        }
    }
}

fn builder(
    store: &Path,
    a: &RunArgs,
    extra: Option<String>,
) -> Result<background_transfer::UploaderBuilder, Failure> {
    let mut b = crate::with_providers(Uploader::builder(), store, extra)
        .store_dir(store)
        .max_bandwidth(a.max_bandwidth)
        .sendfile(a.sendfile);
    if let Some(n) = a.max_concurrent {
        b = b.max_concurrent(n);
    }
    if let Some(t) = a.connect_timeout {
        b = b.connect_timeout(t);
    }
    if let Some(t) = a.response_timeout {
        b = b.response_timeout(t);
    }
    if let Some(n) = a.retries {
        b = b.retries(n);
    }
    match (&a.client_cert, &a.client_key) {
        (Some(cert), Some(key)) => b = b.client_certificate(cert, key),
        (None, None) => {}
        _ => {
            return Err(Failure {
                message: "--client-cert and --client-key go together".into(),
                code: crate::EXIT_USAGE,
            })
        }
    }
    if let Some(ca) = &a.ca_cert {
        let pem = std::fs::read(ca).map_err(|e| Failure {
            message: format!("--ca-cert {}: {e}", ca.display()),
            code: crate::EXIT_USAGE,
        })?;
        b = b.add_root_certificate_pem(pem);
    }
    Ok(b)
}

/// `run`, or `send` when `add` is given: that upload is created first, and the exit
/// status is its outcome.
pub fn run(store: &Path, args: &RunArgs, add: Option<AddArgs>) -> Result<u8, Failure> {
    let provider = add.as_ref().and_then(crate::provider_name);
    let request = add.map(crate::request).transpose()?;
    let signals = Signals::install()?;
    let up = match builder(store, args, provider)?.open() {
        Ok(up) => up,
        // `send` while a `run` holds the store: that run sends it.
        Err(background_transfer::Error::StoreLocked { .. }) if request.is_some() => {
            let request = request.expect("checked by the guard");
            return send_through_owner(store, request, args, &signals);
        }
        Err(e) => return Err(crate::refused(e)),
    };
    let own: Option<Upload> = match request {
        Some(r) => Some(up.create_upload(r).map_err(crate::refused)?),
        None => None,
    };
    let tty = std::io::stdout().is_terminal();
    let mut view = ProgressView::new(tty);
    if tty {
        view.note(&format!(
            "bgupload: running the uploads of {}; Ctrl-C stops them (the next run continues them)",
            up.store_dir().display()
        ));
    }
    let started = std::time::Instant::now();
    let mut gave_up = false;
    let uploads = loop {
        let uploads = up.uploads();
        let rows: Vec<Row> = uploads.iter().map(Row::of).collect();
        view.update(&rows);
        if let Some(code) = signals.received() {
            view.flush(&rows);
            view.finish();
            eprintln!(
                "bgupload: interrupted; transfers are stopped and saved, and `bgupload run` \
                 continues them"
            );
            up.shutdown()?;
            return Ok(code);
        }
        if signals.network_changed() {
            up.network_changed();
        }
        let idle = uploads.iter().all(|u| is_idle(u.status()));
        if args.until_idle && idle {
            view.flush(&rows);
            view.finish();
            break uploads;
        }
        if args
            .give_up_after
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            view.flush(&rows);
            view.finish();
            gave_up = true;
            break uploads;
        }
        match &own {
            // `send`: back as soon as its upload ends, not at the next tick.
            Some(o) => drop(o.wait_timeout(POLL)),
            None => std::thread::sleep(POLL),
        }
    };
    let mut failed = false;
    for u in &uploads {
        if own.as_ref().is_some_and(|o| o.id() != u.id()) {
            continue;
        }
        failed |= report(u, gave_up, args);
    }
    up.shutdown()?;
    Ok(u8::from(failed))
}

/// Says on stderr why upload `u` did not complete, if it did not; `true` then.
fn report(u: &dyn Shown, gave_up: bool, args: &RunArgs) -> bool {
    let name = Row::of(u).name;
    match u.status() {
        Status::Error => {
            let why = u
                .error_message()
                .unwrap_or_else(|| "no reason recorded".to_string());
            eprintln!("bgupload: upload {} ({name}) failed: {why}", u.id());
            true
        }
        Status::Canceled => {
            eprintln!("bgupload: upload {} ({name}) was canceled", u.id());
            true
        }
        Status::PausedNoCredentials => {
            let why = u
                .error_message()
                .unwrap_or_else(|| "no provider".to_string());
            eprintln!(
                "bgupload: upload {} ({name}) waits for its credentials: {why}; bgupload \
                 cannot make that provider, so the program that created the upload must \
                 run it",
                u.id()
            );
            true
        }
        s if gave_up && !is_idle(s) => {
            let secs = args.give_up_after.map_or(0.0, |d| d.as_secs_f64());
            let why = match (s, u.error_message()) {
                (Status::PausedNoNetwork, _) => "its host takes no connection".to_string(),
                (_, Some(e)) => format!("last error: {e}"),
                _ => "it was still being sent".to_string(),
            };
            eprintln!(
                "bgupload: gave up after {secs} s on upload {} ({name}): {} ({why}); it \
                 stays in the store, and a later run continues it",
                u.id(),
                s.as_str()
            );
            true
        }
        _ => false,
    }
}

/// `send` while another process (a `bgupload run`) holds the store: the upload is
/// submitted to it, and this process shows that one upload's progress until it ends.
/// Ctrl-C stops the watching, not the upload: the running owner goes on with it.
fn send_through_owner(
    store: &Path,
    request: background_transfer::UploadRequest,
    args: &RunArgs,
    signals: &Signals,
) -> Result<u8, Failure> {
    let held = crate::held::Held::There(background_transfer::Client::connect(store)?);
    let id = held.create(request)?;
    let crate::held::Held::There(client) = held else {
        unreachable!("made as There above")
    };
    let follow = client.follow(id)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for snap in follow {
            if tx.send(snap).is_err() {
                return;
            }
        }
    });
    let tty = std::io::stdout().is_terminal();
    let mut view = ProgressView::new(tty);
    if tty {
        view.note(&format!(
            "bgupload: the process that holds {} sends upload {id}; Ctrl-C stops watching \
             (the upload goes on)",
            store.display()
        ));
    }
    let started = std::time::Instant::now();
    let mut last: Option<background_transfer::RemoteUpload> = None;
    let mut gave_up = false;
    loop {
        if let Some(code) = signals.received() {
            view.finish();
            eprintln!("bgupload: stopped watching; upload {id} goes on in the running owner");
            return Ok(code);
        }
        match rx.recv_timeout(POLL) {
            Ok(Ok(snap)) => {
                view.update(&[Row::of(&snap)]);
                let ended = snap.progress.status.is_final();
                last = Some(snap);
                if ended {
                    break;
                }
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if args
            .give_up_after
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            gave_up = true;
            break;
        }
    }
    let Some(last) = last else {
        return Err(Failure::new(format!("upload {id} was removed")));
    };
    view.flush(&[Row::of(&last)]);
    view.finish();
    let failed = report(&last, gave_up, args) || last.progress.status != Status::Completed;
    Ok(u8::from(failed))
}
