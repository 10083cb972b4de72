//! `add --bearer-from-file FILE` and `add --url-from-command 'CMD'`: credentials
//! providers made from what the upload records, its provider's *name*
//! (`bearer-file:/abs/path`, `url-command:CMD`), so that every later `run` can make the
//! same provider again. The token and the URL themselves are read at each ask and never
//! written to the store; the file's path and the command are not secrets.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use background_transfer::{CredentialRequest, Credentials, ProviderError, UploaderBuilder};

/// The prefix of a `--bearer-from-file` provider's name.
const BEARER_FILE: &str = "bearer-file:";
/// The prefix of a `--url-from-command` provider's name.
const URL_COMMAND: &str = "url-command:";
/// How long a `--url-from-command` command may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// The provider name `--bearer-from-file FILE` records (the file's absolute path).
pub fn bearer_file_name(file: &Path) -> String {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    format!("{BEARER_FILE}{}", abs.display())
}

/// The provider name `--url-from-command CMD` records.
pub fn url_command_name(cmd: &str) -> String {
    format!("{URL_COMMAND}{cmd}")
}

/// The names of this kind that the uploads in `store` record, read from its journal
/// before the store is opened for real (an upload's provider must be registered before
/// its first request), plus `extra` (the one an `add` is about to record).
pub fn names(store: &Path, extra: Option<String>) -> Vec<String> {
    let mut out: Vec<String> = extra.into_iter().collect();
    if store.join("journal").exists() {
        if let Ok(st) = background_transfer::journal::Store::open(store) {
            for u in st.state().uploads.values() {
                if let Some(n) = &u.request.credentials {
                    if (n.starts_with(BEARER_FILE) || n.starts_with(URL_COMMAND))
                        && !out.contains(n)
                    {
                        out.push(n.clone());
                    }
                }
            }
        }
    }
    out
}

/// Registers a provider for each of `names`.
pub fn register(mut b: UploaderBuilder, names: &[String]) -> UploaderBuilder {
    for name in names {
        if let Some(path) = name.strip_prefix(BEARER_FILE) {
            let path = PathBuf::from(path);
            b = b.credentials(name.clone(), move |_: &CredentialRequest| bearer(&path));
        } else if let Some(cmd) = name.strip_prefix(URL_COMMAND) {
            let cmd = cmd.to_string();
            b = b.credentials(name.clone(), move |_: &CredentialRequest| {
                url_from(&cmd, COMMAND_LIMIT)
            });
        }
    }
    b
}

/// `Authorization: Bearer <the file's contents, trimmed>`, read now: a device agent
/// that rewrites the file is heard at the next request. A missing or empty file is a
/// transient failure (the agent may be between writes).
fn bearer(path: &Path) -> Result<Credentials, ProviderError> {
    let token = std::fs::read_to_string(path).map_err(|e| {
        ProviderError::transient(format!(
            "could not read the token file {}: {e}",
            path.display()
        ))
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(ProviderError::transient(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(Credentials::Headers(vec![(
        "Authorization".into(),
        format!("Bearer {token}"),
    )]))
}

/// The first line `sh -c CMD` prints: a fresh presigned URL for this request. A
/// command that fails, prints no URL or runs past `limit` (it is killed) is a transient
/// failure naming why; what it printed is not repeated (it may hold a signature).
fn url_from(cmd: &str, limit: Duration) -> Result<Credentials, ProviderError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| ProviderError::transient(format!("could not run the URL command: {e}")))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProviderError::transient(format!(
                    "the URL command did not finish within {} s",
                    limit.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(ProviderError::transient(format!("URL command: {e}"))),
        }
    };
    let mut out = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(64 * 1024).read_to_string(&mut out);
    }
    if !status.success() {
        return Err(ProviderError::transient(format!(
            "the URL command failed ({status})"
        )));
    }
    let url = out.lines().next().unwrap_or_default().trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ProviderError::transient(
            "the URL command printed no http(s) URL on its first line",
        ));
    }
    Ok(Credentials::Url(url.to_string()))
}
