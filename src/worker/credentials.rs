//! An upload's credentials provider as plain HTTP and tus use it: asked before the
//! first request of an attempt, and again (with `refresh`) when a server answered 401
//! or 403. What it gives is merged into each request and never kept anywhere else.

use std::sync::Arc;

use crate::credentials::{CredentialProvider, CredentialRequest, Credentials};
use crate::request::{validate_header, validate_url};
use crate::worker::{Class, Job, Outcome};
use crate::Error;

/// What the provider gave for this attempt.
#[derive(Default)]
struct Given {
    headers: Vec<(String, String)>,
    url: Option<String>,
}

/// An attempt's view of its provider (none for an upload that names none).
pub(crate) struct Creds {
    id: u64,
    name: Option<String>,
    provider: Option<Arc<dyn CredentialProvider>>,
    given: Option<Given>,
}

fn failure(name: &str, message: String, permanent: bool) -> Outcome {
    Outcome::Failed {
        error: Error::Credentials {
            provider: name.to_string(),
            message,
            permanent,
        },
        class: if permanent {
            Class::Final
        } else {
            Class::Transient
        },
        response: None,
        retry_after: None,
        body_complete: false,
    }
}

impl Creds {
    /// The upload's provider, which must be registered.
    pub fn new(job: &Job) -> Result<Creds, Box<Outcome>> {
        let name = job.request.credentials.clone();
        let provider = match &name {
            Some(n) => Some(job.config.providers.get(n).ok_or_else(|| {
                Box::new(failure(
                    n,
                    "no provider is registered under this name (register it with \
                     UploaderBuilder::credentials or Uploader::register_credentials, then \
                     resume the upload)"
                        .into(),
                    true,
                ))
            })?),
            None => None,
        };
        Ok(Creds {
            id: job.id,
            name,
            provider,
            given: None,
        })
    }

    /// Whether the upload takes credentials from a provider.
    pub fn active(&self) -> bool {
        self.provider.is_some()
    }

    /// Asks the provider (the first time, or again with `refresh`).
    pub fn ask(&mut self, refresh: bool) -> Result<(), Box<Outcome>> {
        let (Some(provider), Some(name)) = (&self.provider, &self.name) else {
            return Ok(());
        };
        if self.given.is_some() && !refresh {
            return Ok(());
        }
        let asked = crate::credentials::ask(
            provider.as_ref(),
            &CredentialRequest {
                upload: self.id,
                refresh,
            },
        );
        let bad = |m: String| Box::new(failure(name, m, true));
        let given = match asked {
            Ok(Credentials::Headers(headers)) => {
                for (n, v) in &headers {
                    validate_header(n, v)
                        .map_err(|e| bad(format!("it gave a header that cannot be sent: {e}")))?;
                }
                Given { headers, url: None }
            }
            Ok(Credentials::Url(url)) => {
                validate_url(&url)
                    .map_err(|e| bad(format!("it gave a URL that cannot be used: {e}")))?;
                Given {
                    headers: vec![],
                    url: Some(url),
                }
            }
            Ok(_) => {
                return Err(bad(
                    "it gave S3 keys to an upload that is not an S3 upload".into()
                ))
            }
            Err(e) => return Err(Box::new(failure(name, e.message, e.permanent))),
        };
        log::debug!(
            "upload {}: credentials from provider {name:?}{}",
            self.id,
            if refresh { " (refreshed)" } else { "" }
        );
        self.given = Some(given);
        Ok(())
    }

    /// The URL to send to instead of `url` (a presigned one), if the provider gave one
    /// and `url` is the upload's own.
    pub fn url(&self, url: &str, own: &str) -> String {
        match self.given.as_ref().and_then(|g| g.url.as_ref()) {
            Some(u) if url == own => u.clone(),
            _ => url.to_string(),
        }
    }

    /// `headers` with the provider's added, replacing any of the same name.
    pub fn headers(&self, mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
        if let Some(g) = &self.given {
            headers.retain(|(n, _)| !g.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)));
            headers.extend(g.headers.iter().cloned());
        }
        headers
    }
}

/// Whether an answer says the credentials were refused.
pub(crate) fn refused(status: u16) -> bool {
    matches!(status, 401 | 403)
}
