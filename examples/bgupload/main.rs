//! `bgupload`: the command-line face of `background-transfer`, built on its public API
//! only. See `bgupload --help` and the README's "Command line" section.
//!
//! ```text
//! bgupload [--store DIR] add [-X METHOD] [-H 'Name: value']... [--priority high|default|low] [--group NAME] [--protocol plain|tus|s3|gcs|azure] [--tus] [--region R] [--part-size BYTES] [--tus-meta KEY=VALUE]... [--bearer-from-file FILE | --url-from-command 'CMD'] URL FILE
//! bgupload [--store DIR] run [--until-idle] [--max-concurrent N] [--connect-timeout SECS] [--response-timeout SECS] [--retries N] [--max-bandwidth BYTES_PER_SEC] [--sendfile] [--client-cert FILE --client-key FILE] [--ca-cert FILE] [--give-up-after DURATION]
//! bgupload [--store DIR] list [--json]
//! bgupload [--store DIR] pause|resume|cancel|remove ID
//! bgupload [--store DIR] response ID
//! bgupload send URL FILE [same options as add and run]
//! bgupload demo
//! ```
//!
//! Modules: `cli` parses, `run` runs the uploader (also for `send`), `held` reaches the
//! store whoever holds it (this process, or a running `run` through a `Client`), `list`
//! prints the store, `demo` is the self-contained demonstration with its receiving server in
//! `server`, and `progress_view` draws bars or plain lines.

mod cli;
#[cfg(any(feature = "gcs", feature = "azure"))]
mod cloud;
mod demo;
mod held;
mod list;
mod progress_view;
mod providers;
mod run;
#[cfg(feature = "s3")]
mod s3;
mod server;

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use background_transfer::{Error, UploadRequest, UploaderBuilder};

use cli::{AddArgs, Command, Op, ProtocolArg};

/// Exit status for a usage mistake (like most Unix tools).
pub const EXIT_USAGE: u8 = 2;

/// A failure to report: one sentence for stderr, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An error of `create_upload`: a mistake in what was asked (a bad URL, a missing
/// source, a header that cannot be sent) exits 2 like a usage mistake; anything else 1.
pub fn refused(e: Error) -> Failure {
    let asked = matches!(
        e,
        Error::InvalidUrl { .. }
            | Error::InvalidHeader { .. }
            | Error::InvalidRequest { .. }
            | Error::SourceMissing { .. }
            | Error::RecordTooLarge { .. }
            | Error::InvalidCertificate { .. }
    );
    let mut f = Failure::from(e);
    if asked {
        f.code = EXIT_USAGE;
    }
    f
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let message = match &e {
            // The documented one-process-per-store rule, said in the CLI's terms.
            // Only `run` meets it: the other commands go to the process that holds it.
            Error::StoreLocked { path } => format!(
                "store {} is held by another process (a running `bgupload run` or `send`, or \
                 a program's uploader); one run per store: the other commands reach it",
                path.display()
            ),
            other => other.to_string(),
        };
        Failure::new(message)
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bgupload: {e}; see `bgupload --help`");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let store = cli.store_dir();
    let result = match cli.command {
        Command::Help => {
            print!("{}", cli::USAGE);
            Ok(0)
        }
        Command::Add(a) => add(&store, a),
        Command::Run(r) => run::run(&store, &r, None),
        Command::Send { add, run } => run::run(&store, &run, Some(add)),
        Command::List { json } => list::list(&store, json),
        Command::Op { op, id } => upload_op(&store, op, id),
        Command::Response { id } => response(&store, id),
        Command::Demo => demo::demo(),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("bgupload: {f}");
            ExitCode::from(f.code)
        }
    }
}

/// The credentials providers the CLI's uploads name (S3: the AWS environment; GCS: the
/// bearer token in the environment; `--bearer-from-file` and `--url-from-command`: one
/// per name the store's uploads record, and `extra`, the name of one being added).
pub fn with_providers(b: UploaderBuilder, store: &Path, extra: Option<String>) -> UploaderBuilder {
    #[cfg(feature = "s3")]
    let b = s3::register(b);
    #[cfg(feature = "gcs")]
    let b = cloud::register(b);
    providers::register(b, &providers::names(store, extra))
}

/// The provider name `add` records for `--bearer-from-file` or `--url-from-command`.
pub fn provider_name(a: &AddArgs) -> Option<String> {
    match (&a.bearer_file, &a.url_command) {
        (Some(f), _) => Some(providers::bearer_file_name(f)),
        (None, Some(c)) => Some(providers::url_command_name(c)),
        (None, None) => None,
    }
}

/// The usage failure of a protocol this build leaves out.
#[allow(dead_code)] // a build with every feature never needs it
fn not_built(feature: &str) -> Failure {
    Failure {
        message: format!(
            "this bgupload was built without {feature} support: build it with \
             `--features {feature}`"
        ),
        code: EXIT_USAGE,
    }
}

/// Builds the request `add` and `send` persist.
pub fn request(a: AddArgs) -> Result<UploadRequest, Failure> {
    let custom = a.bearer_file.is_some() || a.url_command.is_some();
    if custom && !matches!(a.protocol, ProtocolArg::Plain | ProtocolArg::Tus) {
        return Err(Failure {
            message: "--bearer-from-file and --url-from-command apply to --protocol plain \
                      and tus (s3, gcs and azure take their credentials as their help says)"
                .into(),
            code: EXIT_USAGE,
        });
    }
    match a.protocol {
        #[cfg(feature = "s3")]
        ProtocolArg::S3 => return s3::request(&a),
        #[cfg(not(feature = "s3"))]
        ProtocolArg::S3 => return Err(not_built("s3")),
        #[cfg(feature = "gcs")]
        ProtocolArg::Gcs => return cloud::gcs(&a),
        #[cfg(not(feature = "gcs"))]
        ProtocolArg::Gcs => return Err(not_built("gcs")),
        #[cfg(feature = "azure")]
        ProtocolArg::Azure => return cloud::azure(&a),
        #[cfg(not(feature = "azure"))]
        ProtocolArg::Azure => return Err(not_built("azure")),
        ProtocolArg::Plain | ProtocolArg::Tus => {}
    }
    let provider = provider_name(&a);
    if a.bearer_file.is_some() && a.url_command.is_some() {
        return Err(Failure {
            message: "--bearer-from-file and --url-from-command go one at a time".into(),
            code: EXIT_USAGE,
        });
    }
    if !a.tus_meta.is_empty() && a.protocol != ProtocolArg::Tus {
        return Err(Failure {
            message: "--tus-meta applies to --protocol tus only".into(),
            code: EXIT_USAGE,
        });
    }
    if a.region.is_some() || a.part_size.is_some() {
        return Err(Failure {
            message: "--region applies to --protocol s3 only, --part-size to s3, gcs and \
                      azure"
                .into(),
            code: EXIT_USAGE,
        });
    }
    // PUT by default: sending it again is safe, so an upload a crash interrupted
    // restarts. (The crate's own default, POST like WinRT, ends such an upload in
    // `Error::NotResumable` unless it carries an Idempotency-Key.)
    let method = a.method.unwrap_or_else(|| "PUT".into());
    let mut req = UploadRequest::new(&method, a.url, a.file).priority(a.priority);
    for (name, value) in &a.headers {
        req = req.header(name, value).map_err(refused)?;
    }
    if let Some(g) = a.group {
        req = req.group(g);
    }
    if let Some(name) = provider {
        req = req.credentials(name);
    }
    if a.protocol == ProtocolArg::Tus {
        req = req.tus(None);
        for (k, v) in &a.tus_meta {
            req = req.tus_metadata(k, v).map_err(refused)?;
        }
    }
    Ok(req)
}

/// `add`: persist the upload and print its id, nothing else.
fn add(store: &Path, a: AddArgs) -> Result<u8, Failure> {
    let provider = provider_name(&a);
    let req = request(a)?;
    let held = held::Held::open(store, provider)?;
    let id = held.create(req)?;
    held.close()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{id}");
    Ok(0)
}

/// `response ID`: status line and headers on stderr, the kept body on stdout.
fn response(store: &Path, id: u64) -> Result<u8, Failure> {
    let held = held::Held::open(store, None)?;
    let (info, body) = held.response(id)?;
    {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "HTTP {} from {}", info.status, info.url);
        for (name, value) in &info.headers {
            let _ = writeln!(err, "{name}: {value}");
        }
        if info.body_truncated {
            let _ = writeln!(
                err,
                "(body cut at {} bytes: the store's cap)",
                info.body_len
            );
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&body)
        .and_then(|_| out.flush())
        .map_err(|e| Failure::new(format!("could not write the body: {e}")))?;
    drop(out);
    held.close()?;
    Ok(0)
}

/// `pause|resume|cancel|remove ID`.
fn upload_op(store: &Path, op: Op, id: u64) -> Result<u8, Failure> {
    let held = held::Held::open(store, None)?;
    held.op(op, id)?;
    held.close()?;
    let _ = writeln!(std::io::stdout().lock(), "{} upload {id}", op.done());
    Ok(0)
}
