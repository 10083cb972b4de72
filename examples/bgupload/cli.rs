//! The command line, parsed with `lexopt` into a [`Command`]. The form is a contract that
//! scripts depend on (issue 6); `USAGE` is its reference.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use background_transfer::Priority;
use lexopt::prelude::*;

pub const USAGE: &str = "\
bgupload: persistent, retried, resumable background uploads (background-transfer example)

Usage:
  bgupload [--store DIR] add [-X METHOD] [-H 'Name: value']... [--priority high|default|low]
                             [--group NAME] [--protocol plain|tus|s3|gcs|azure] [--tus]
                             [--region R] [--part-size BYTES] [--tus-meta KEY=VALUE]...
                             [--bearer-from-file FILE | --url-from-command 'CMD']
                             URL FILE
      persist a new upload and print its id (one line, nothing else);
      --tus is --protocol tus, and --tus-meta adds an Upload-Metadata entry (beside the
      file name; a -H 'Upload-Metadata: ...' replaces the crate's own); with --protocol s3 (a build with the `s3` feature), URL is
      http(s)://HOST[:PORT]/BUCKET/KEY (path style), and the keys come from
      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN when `run` or
      `send` sends it (never written to the store); the region is --region, else
      AWS_REGION, else us-east-1; parts are 8 MiB unless --part-size says otherwise;
      with --protocol gcs (feature `gcs`), URL is a Google Cloud Storage resumable
      initiation URL (…?uploadType=resumable&name=…) or a session URI (…&upload_id=…),
      the token comes from BGUPLOAD_BEARER_TOKEN when `run` or `send` sends it, and
      --part-size is the chunk (a multiple of 256 KiB; 8 MiB); with --protocol azure
      (feature `azure`), URL is the blob's SAS URL and --part-size the block (8 MiB);
      `list` shows URLs without their query (a SAS or session id is a credential);
      for plain and tus uploads, --bearer-from-file sends `Authorization: Bearer` with
      FILE's contents, read at each request (a device agent may rewrite it; a 401 or 403
      reads it once more and sends again without spending a retry), and
      --url-from-command runs `sh -c CMD` before each request and sends it to the URL
      printed on its first line (a fresh presigned URL; 20 s at most); neither value is
      written to the store, only FILE's path or CMD
  bgupload [--store DIR] run [--until-idle] [--max-concurrent N] [--connect-timeout SECS]
                             [--response-timeout SECS] [--retries N]
                             [--max-bandwidth BYTES_PER_SEC] [--sendfile]
                             [--client-cert FILE --client-key FILE] [--ca-cert FILE]
                             [--give-up-after DURATION]
      run the uploads: progress bars on a terminal, plain lines otherwise;
      SIGUSR1 means \"the network changed\": uploads waiting for it probe at once;
      --until-idle exits once every upload is completed, failed, canceled or paused:
      0 if none failed or was canceled, 1 otherwise; --give-up-after (with --until-idle,
      and `send`) exits 1 once DURATION (90, 90s, 5m, 2h) has passed with uploads still
      waiting, naming each and what it waits for (they stay in the store for a later
      run); --sendfile sends plain-HTTP file bytes with sendfile(2) (no copy through
      the program); --client-cert/--client-key present a device certificate (PEM chain
      and key, re-read when they change), --ca-cert trusts only the PEM roots in FILE
  bgupload [--store DIR] list [--json]
      one line per upload, or a JSON array; `attempts` counts the failed attempts that
      spent a retry (kept across runs: a SIGKILL, a pause or no network spends none)
  bgupload [--store DIR] pause|resume|cancel|remove ID
  bgupload [--store DIR] response ID
      the server's answer to an upload, as kept: status line and headers on stderr,
      the body on stdout
  bgupload [--store DIR] send URL FILE [add and run options]
      add, then run --until-idle; exits 0 if this upload completed, 1 if not
  bgupload demo
      a self-contained demonstration (loopback server, temporary files and store)

--store defaults to ./bgupload-store. The method defaults to PUT (safe to send again,
so an interrupted upload restarts after a crash); a POST continues after a crash only
with an Idempotency-Key header. While `run` (or `send`) holds a store, the other
commands (add, list, pause, resume, cancel, remove, response, send) go to it through
its control socket and print the same; `send` then waits for its own upload, which the
running process sends. Only a second `run` on the same store is refused.
";

/// What the user asked for.
#[derive(Debug)]
pub enum Command {
    Help,
    Add(AddArgs),
    Run(RunArgs),
    List {
        json: bool,
    },
    Op {
        op: Op,
        id: u64,
    },
    /// `response ID`: the stored answer.
    Response {
        id: u64,
    },
    Send {
        add: AddArgs,
        run: RunArgs,
    },
    Demo,
}

/// The per-upload commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pause,
    Resume,
    Cancel,
    Remove,
}

impl Op {
    /// The past tense, for the confirmation line.
    pub fn done(self) -> &'static str {
        match self {
            Op::Pause => "paused",
            Op::Resume => "resumed",
            Op::Cancel => "canceled",
            Op::Remove => "removed",
        }
    }
}

/// How `add` sends the file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolArg {
    #[default]
    Plain,
    Tus,
    S3,
    Gcs,
    Azure,
}

#[derive(Debug, Default)]
pub struct AddArgs {
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
    pub priority: Priority,
    pub group: Option<String>,
    pub protocol: ProtocolArg,
    /// S3: `--region`.
    pub region: Option<String>,
    /// S3 parts, GCS chunks, Azure blocks: `--part-size`.
    pub part_size: Option<u64>,
    /// tus: `--tus-meta key=value`, in order.
    pub tus_meta: Vec<(String, String)>,
    /// `--bearer-from-file FILE`: the bearer token is read from FILE at each request.
    pub bearer_file: Option<PathBuf>,
    /// `--url-from-command CMD`: each request goes to the URL CMD prints.
    pub url_command: Option<String>,
    pub url: String,
    pub file: PathBuf,
}

#[derive(Debug, Default)]
pub struct RunArgs {
    pub until_idle: bool,
    pub max_concurrent: Option<usize>,
    pub connect_timeout: Option<Duration>,
    pub response_timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub max_bandwidth: Option<u64>,
    /// `--sendfile`: plain-HTTP file bytes with `sendfile(2)`.
    pub sendfile: bool,
    /// `--client-cert` and `--client-key` (mutual TLS).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `--ca-cert`: the roots to trust instead of the built-in ones.
    pub ca_cert: Option<PathBuf>,
    /// `--give-up-after`: with `--until-idle`, stop waiting after this long.
    pub give_up_after: Option<Duration>,
}

/// The global options and the command.
#[derive(Debug)]
pub struct Cli {
    /// `--store`, if given.
    pub store: Option<PathBuf>,
    pub command: Command,
}

impl Cli {
    /// The store directory: `--store` or `./bgupload-store`.
    pub fn store_dir(&self) -> PathBuf {
        self.store
            .clone()
            .unwrap_or_else(|| PathBuf::from("bgupload-store"))
    }
}

/// Parses the process's arguments.
pub fn parse_env() -> Result<Cli, String> {
    parse(lexopt::Parser::from_env())
}

/// Parses arguments (without the program name). Used by the unit tests below.
#[cfg(test)]
pub fn parse_args<I: IntoIterator<Item = &'static str>>(args: I) -> Result<Cli, String> {
    parse(lexopt::Parser::from_args(args))
}

fn parse(mut p: lexopt::Parser) -> Result<Cli, String> {
    let mut store = None;
    let name = loop {
        match p.next().map_err(msg)? {
            Some(Long("store")) => store = Some(path_value(&mut p, "--store")?),
            Some(Short('h') | Long("help")) => {
                return Ok(Cli {
                    store,
                    command: Command::Help,
                })
            }
            Some(Value(v)) => break string(v)?,
            Some(other) => return Err(msg(other.unexpected())),
            None => return Err(
                "no command given (add, run, list, pause, resume, cancel, remove, response, send or demo)"
                    .into(),
            ),
        }
    };
    let mut add = AddArgs::default();
    let mut run = RunArgs::default();
    let mut json = false;
    let mut positional: Vec<String> = Vec::new();
    let takes_add = matches!(name.as_str(), "add" | "send");
    let takes_run = matches!(name.as_str(), "run" | "send");
    while let Some(arg) = p.next().map_err(msg)? {
        match arg {
            Short('h') | Long("help") => {
                return Ok(Cli {
                    store,
                    command: Command::Help,
                })
            }
            // Accepted after the command too: `bgupload list --store DIR` is forgiving.
            Long("store") => store = Some(path_value(&mut p, "--store")?),
            Short('X') | Long("method") if takes_add => {
                add.method = Some(string(p.value().map_err(msg)?)?);
            }
            Short('H') | Long("header") if takes_add => {
                let h = string(p.value().map_err(msg)?)?;
                add.headers.push(header(&h)?);
            }
            Long("priority") if takes_add => {
                add.priority = match string(p.value().map_err(msg)?)?.as_str() {
                    "high" => Priority::High,
                    "default" => Priority::Default,
                    "low" => Priority::Low,
                    other => {
                        return Err(format!(
                            "--priority {other:?} is not one of high, default, low"
                        ))
                    }
                }
            }
            Long("group") if takes_add => add.group = Some(string(p.value().map_err(msg)?)?),
            Long("tus") if takes_add => add.protocol = ProtocolArg::Tus,
            Long("protocol") if takes_add => {
                add.protocol = match string(p.value().map_err(msg)?)?.as_str() {
                    "plain" => ProtocolArg::Plain,
                    "tus" => ProtocolArg::Tus,
                    "s3" => ProtocolArg::S3,
                    "gcs" => ProtocolArg::Gcs,
                    "azure" => ProtocolArg::Azure,
                    other => {
                        return Err(format!(
                            "--protocol {other:?} is not one of plain, tus, s3, gcs, azure"
                        ))
                    }
                }
            }
            Long("region") if takes_add => add.region = Some(string(p.value().map_err(msg)?)?),
            Long("tus-meta") if takes_add => {
                let kv = string(p.value().map_err(msg)?)?;
                let Some((k, v)) = kv.split_once('=') else {
                    return Err(format!("--tus-meta {kv:?} is not in the form key=value"));
                };
                add.tus_meta.push((k.to_string(), v.to_string()));
            }
            Long("part-size") if takes_add => add.part_size = Some(number(&mut p, "--part-size")?),
            Long("bearer-from-file") if takes_add => {
                add.bearer_file = Some(path_value(&mut p, "--bearer-from-file")?)
            }
            Long("url-from-command") if takes_add => {
                let cmd = string(p.value().map_err(msg)?)?;
                if cmd.trim().is_empty() {
                    return Err("--url-from-command needs a command".into());
                }
                add.url_command = Some(cmd)
            }
            Long("until-idle") if takes_run => run.until_idle = true,
            Long("max-concurrent") if takes_run => {
                let n: usize = number(&mut p, "--max-concurrent")?;
                if n == 0 {
                    return Err("--max-concurrent must be at least 1".into());
                }
                run.max_concurrent = Some(n);
            }
            Long("connect-timeout") if takes_run => {
                run.connect_timeout = Some(seconds(&mut p, "--connect-timeout")?)
            }
            Long("response-timeout") if takes_run => {
                run.response_timeout = Some(seconds(&mut p, "--response-timeout")?)
            }
            Long("retries") if takes_run => run.retries = Some(number(&mut p, "--retries")?),
            Long("max-bandwidth") if takes_run => {
                let b: u64 = number(&mut p, "--max-bandwidth")?;
                if b == 0 {
                    return Err("--max-bandwidth must be at least 1 byte per second".into());
                }
                run.max_bandwidth = Some(b);
            }
            Long("sendfile") if takes_run => run.sendfile = true,
            Long("client-cert") if takes_run => {
                run.client_cert = Some(path_value(&mut p, "--client-cert")?)
            }
            Long("client-key") if takes_run => {
                run.client_key = Some(path_value(&mut p, "--client-key")?)
            }
            Long("ca-cert") if takes_run => run.ca_cert = Some(path_value(&mut p, "--ca-cert")?),
            Long("give-up-after") if takes_run => {
                run.give_up_after = Some(duration(&mut p, "--give-up-after")?)
            }
            Long("json") if name == "list" => json = true,
            Value(v) => positional.push(string(v)?),
            other => {
                return Err(format!("{} (for `{name}`)", msg(other.unexpected())));
            }
        }
    }
    let positionals = |want: &[&str], got: &[String]| -> Result<(), String> {
        if got.len() < want.len() {
            Err(format!(
                "`{name}` needs {}; missing {}",
                want.join(" "),
                want[got.len()..].join(" ")
            ))
        } else if got.len() > want.len() {
            Err(format!(
                "`{name}` takes {}; unexpected extra argument {:?}",
                if want.is_empty() {
                    "no arguments".to_string()
                } else {
                    want.join(" ")
                },
                got[want.len()]
            ))
        } else {
            Ok(())
        }
    };
    let command = match name.as_str() {
        "add" | "send" => {
            positionals(&["URL", "FILE"], &positional)?;
            let mut it = positional.into_iter();
            add.url = it.next().unwrap_or_default();
            add.file = PathBuf::from(it.next().unwrap_or_default());
            if name == "add" {
                Command::Add(add)
            } else {
                run.until_idle = true;
                Command::Send { add, run }
            }
        }
        "run" => {
            positionals(&[], &positional)?;
            if run.give_up_after.is_some() && !run.until_idle {
                return Err(
                    "--give-up-after needs --until-idle (a plain run waits for good)".into(),
                );
            }
            Command::Run(run)
        }
        "list" => {
            positionals(&[], &positional)?;
            Command::List { json }
        }
        "pause" | "resume" | "cancel" | "remove" | "response" => {
            positionals(&["ID"], &positional)?;
            let id = positional[0].parse::<u64>().map_err(|_| {
                format!(
                    "upload id {:?} is not a number (see `bgupload list`)",
                    positional[0]
                )
            })?;
            if name == "response" {
                return Ok(Cli {
                    store,
                    command: Command::Response { id },
                });
            }
            let op = match name.as_str() {
                "pause" => Op::Pause,
                "resume" => Op::Resume,
                "cancel" => Op::Cancel,
                _ => Op::Remove,
            };
            Command::Op { op, id }
        }
        "demo" => {
            positionals(&[], &positional)?;
            if store.is_some() {
                return Err(
                    "`demo` uses its own temporary store; --store does not apply to it".into(),
                );
            }
            Command::Demo
        }
        "help" => Command::Help,
        other => {
            return Err(format!(
                "unknown command {other:?} (expected add, run, list, pause, resume, cancel, \
                 remove, response, send or demo)"
            ))
        }
    };
    Ok(Cli { store, command })
}

fn msg(e: lexopt::Error) -> String {
    e.to_string()
}

fn string(v: OsString) -> Result<String, String> {
    v.into_string()
        .map_err(|v| format!("argument {v:?} is not valid UTF-8"))
}

fn path_value(p: &mut lexopt::Parser, opt: &str) -> Result<PathBuf, String> {
    let v = p.value().map_err(msg)?;
    if v.is_empty() {
        return Err(format!("{opt} needs a directory"));
    }
    Ok(PathBuf::from(v))
}

fn number<T: FromStr>(p: &mut lexopt::Parser, opt: &str) -> Result<T, String> {
    let v = string(p.value().map_err(msg)?)?;
    v.parse()
        .map_err(|_| format!("{opt} {v:?} is not a whole number in range"))
}

fn seconds(p: &mut lexopt::Parser, opt: &str) -> Result<Duration, String> {
    let v = string(p.value().map_err(msg)?)?;
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{opt} {v:?} is not a positive number of seconds")),
    }
}

/// A duration: seconds, or a number with `s`, `m` or `h` (`90`, `90s`, `5m`, `2h`).
fn duration(p: &mut lexopt::Parser, opt: &str) -> Result<Duration, String> {
    let v = string(p.value().map_err(msg)?)?.trim().to_string();
    let (num, unit) = match v.char_indices().last() {
        Some((i, 's')) => (&v[..i], 1.0),
        Some((i, 'm')) => (&v[..i], 60.0),
        Some((i, 'h')) => (&v[..i], 3600.0),
        _ => (v.as_str(), 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * unit <= 1e9 => {
            Ok(Duration::from_secs_f64(n * unit))
        }
        _ => Err(format!(
            "{opt} {v:?} is not a positive duration (seconds, or with s, m or h: 90s, 5m, 2h)"
        )),
    }
}

/// `Name: value` (curl's form). The crate validates name and value when the upload is
/// created.
fn header(h: &str) -> Result<(String, String), String> {
    let Some((name, value)) = h.split_once(':') else {
        return Err(format!("header {h:?} is not in the form 'Name: value'"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("header {h:?} has no name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_with_every_option() {
        let cli = parse_args([
            "--store",
            "/tmp/s",
            "add",
            "-X",
            "post",
            "-H",
            "X-A: 1",
            "-HX-B:2",
            "--priority",
            "high",
            "--group",
            "g",
            "--tus",
            "http://h/x",
            "f.bin",
        ])
        .unwrap();
        assert_eq!(cli.store_dir(), PathBuf::from("/tmp/s"));
        let Command::Add(a) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(a.method.as_deref(), Some("post"));
        assert_eq!(
            a.headers,
            vec![("X-A".into(), "1".into()), ("X-B".into(), "2".into())]
        );
        assert_eq!(a.priority, Priority::High);
        assert_eq!(a.group.as_deref(), Some("g"));
        assert_eq!(a.protocol, ProtocolArg::Tus);
        assert_eq!(a.url, "http://h/x");
    }

    #[test]
    fn run_and_send_options() {
        let cli = parse_args([
            "run",
            "--until-idle",
            "--max-concurrent",
            "2",
            "--connect-timeout",
            "1.5",
            "--retries",
            "0",
            "--max-bandwidth",
            "1000",
            "--sendfile",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert!(r.until_idle);
        assert_eq!(r.max_concurrent, Some(2));
        assert_eq!(r.connect_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(r.retries, Some(0));
        assert!(r.sendfile);
        let cli = parse_args(["send", "http://h/x", "f", "--retries", "1", "-X", "PUT"]).unwrap();
        assert!(matches!(cli.command, Command::Send { .. }));
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for args in [
            vec![],
            vec!["frobnicate"],
            vec!["add", "http://h/x"],
            vec!["add", "http://h/x", "f", "extra"],
            vec!["run", "--json"],
            vec!["list", "--until-idle"],
            vec!["pause", "abc"],
            vec!["add", "-H", "nocolon", "http://h/x", "f"],
            vec!["run", "--max-concurrent", "0"],
            vec!["run", "--connect-timeout", "-1"],
            vec!["add", "--priority", "urgent", "http://h/x", "f"],
        ] {
            let e = parse_args(args.clone()).unwrap_err();
            assert!(!e.contains('\n'), "{args:?}: {e}");
        }
    }
}
