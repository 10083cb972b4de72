//! Credentials providers: the program's code that hands out keys when an upload needs
//! them, so that no secret is ever persisted.
//!
//! An upload records only its provider's *name*. The program registers the provider
//! under that name when it opens the store ([`crate::UploaderBuilder::credentials`]), or
//! later ([`crate::Uploader::register_credentials`]). Before each attempt the worker
//! asks the provider; it asks again, with [`CredentialRequest::refresh`] set, when the
//! keys it was given have expired or the server refused them as expired or wrong. What
//! a provider returns lives in memory only: it is never written to the store, never
//! logged, and its `Debug` text hides it.
//!
//! An upload whose provider is not registered (a restart that did not register it)
//! waits as [`crate::Status::PausedNoCredentials`]: nothing is sent without its
//! credentials, no retry is spent, and it is queued again when the provider is
//! registered.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::model::UploadId;

/// What a provider is asked for.
#[derive(Debug, Clone)]
pub struct CredentialRequest {
    pub(crate) upload: UploadId,
    pub(crate) refresh: bool,
}

impl CredentialRequest {
    /// The upload that needs them.
    pub fn upload(&self) -> UploadId {
        self.upload
    }

    /// The last credentials given were refused by the server or have expired: a
    /// provider that caches them must fetch new ones.
    pub fn refresh(&self) -> bool {
        self.refresh
    }
}

/// AWS-style access keys for signing S3 requests (Signature V4).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Keys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
    pub(crate) expires: Option<SystemTime>,
}

impl S3Keys {
    /// Long-lived keys.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        S3Keys {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            expires: None,
        }
    }

    /// Temporary keys: with the session token (`x-amz-security-token`) they belong to.
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }

    /// When they expire: the provider is asked again (with `refresh`) before a request
    /// that would be signed after this time.
    pub fn expires(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Whether they have expired.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn expired(&self) -> bool {
        self.expires.is_some_and(|t| t <= SystemTime::now())
    }
}

impl fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not even the access key id: it identifies the device's account.
        f.debug_struct("S3Keys")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// What a provider hands out.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Keys that sign S3 requests.
    S3(S3Keys),
    /// Headers added to the request (replacing any of the same name it has), for
    /// example `Authorization: Bearer …`. Values must be valid header values.
    Headers(Vec<(String, String)>),
    /// A URL that replaces the upload's own for this request: a presigned URL. For
    /// tus it replaces the creation endpoint. The upload's response records the
    /// upload's own URL, never this one.
    Url(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::S3(k) => f.debug_tuple("S3").field(k).finish(),
            // Names only: the values are the secrets.
            Credentials::Headers(h) => f
                .debug_tuple("Headers")
                .field(&h.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
                .finish(),
            Credentials::Url(u) => f
                .debug_tuple("Url")
                .field(&crate::redact::redact_url(u))
                .finish(),
        }
    }
}

/// Why a provider could not give credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub(crate) message: String,
    pub(crate) permanent: bool,
}

impl ProviderError {
    /// A failure that may pass (the token service is unreachable): the attempt spends a
    /// retry, as a network failure would.
    pub fn transient(message: impl Into<String>) -> Self {
        ProviderError {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure retrying cannot help (the device was deprovisioned): the upload ends
    /// in [`crate::Error::Credentials`] with `permanent` set.
    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError {
            message: message.into(),
            permanent: true,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}

/// A source of credentials, called from worker threads (so `Send + Sync`), at most once
/// per request sent. A closure `Fn(&CredentialRequest) -> Result<Credentials,
/// ProviderError>` is one.
pub trait CredentialProvider: Send + Sync + 'static {
    /// The credentials to use now. Must not block for long: the upload waits for it,
    /// and a pause or shutdown cannot interrupt it.
    fn credentials(&self, request: &CredentialRequest) -> Result<Credentials, ProviderError>;
}

impl<F> CredentialProvider for F
where
    F: Fn(&CredentialRequest) -> Result<Credentials, ProviderError> + Send + Sync + 'static,
{
    fn credentials(&self, request: &CredentialRequest) -> Result<Credentials, ProviderError> {
        self(request)
    }
}

/// The registered providers by name, shared by the uploader and its workers.
#[derive(Clone, Default)]
pub(crate) struct Providers(Arc<RwLock<HashMap<String, Arc<dyn CredentialProvider>>>>);

impl Providers {
    pub fn register(&self, name: String, provider: Arc<dyn CredentialProvider>) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, provider);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn CredentialProvider>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Asks `provider`. A provider that panics is a failure of that provider, said so (a
/// permanent one: asking again would panic again), not a failure of the crate.
pub(crate) fn ask(
    provider: &dyn CredentialProvider,
    request: &CredentialRequest,
) -> Result<Credentials, ProviderError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        provider.credentials(request)
    }))
    .unwrap_or_else(|_| Err(ProviderError::permanent("the provider panicked")))
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        f.debug_set().entries(map.keys()).finish()
    }
}
