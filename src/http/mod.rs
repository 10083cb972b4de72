//! The wire only: the ureq agent (socket2 connector, rustls, explicit proxy), one
//! request with its body reader and stop token, and redirects. It returns typed wire
//! errors ([`WireError`]); it never decides about retries and never writes the store.

mod attempt;
mod body;
mod connector;
pub(crate) mod date;
mod fresh_input;
mod identity;
mod resolver;
mod response;
mod start_gate;
mod tls;
mod wire;
mod zero_copy;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use ureq::config::Config as UreqConfig;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector};
use ureq::Agent;

pub(crate) use attempt::{
    is_downgrade, resolve as resolve_location, same_origin, send, Attempt, Failed, Sent,
};
pub(crate) use body::BodyReader;
pub(crate) use connector::{connect, ConnectWatch};
pub(crate) use resolver::{lookup, LookupKind};
#[cfg(any(feature = "s3", feature = "azure"))]
pub(crate) use response::headers_of;
pub(crate) use response::{answer, StoredResponse};
pub(crate) use start_gate::StartGate;
pub(crate) use wire::WireError;
pub(crate) use zero_copy::ZeroCopy;
pub(crate) use zero_copy::{bytes_sent as sendfile_bytes, Claim};

use crate::{Config, Error};

/// What the scheduler tells a running transfer, checked at every body buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    /// Stop at the next buffer; the scheduler knows why (pause, cancel, shutdown, ...).
    Stop,
}

/// What every agent's TLS needs: the roots, the uploader's client certificate if one is
/// set, and the client identities uploads may name, each as a ready TLS configuration.
/// The Mozilla roots and the configuration without a client certificate are built at
/// the first TLS connection: a program that only speaks plain HTTP and sets no client
/// certificate never loads them (about 0.5 MiB of resident code and data).
#[derive(Debug)]
pub(crate) struct Tls {
    /// The roots added with `add_root_certificate_pem`, parsed at open (a bad one fails
    /// the open); `None`: the Mozilla roots, or none if they are turned off.
    added_roots: Option<RootCertStore>,
    webpki_roots: bool,
    base: OnceLock<tls::TlsBase>,
    /// The configuration of connections that present no client certificate.
    anonymous: OnceLock<Arc<ClientConfig>>,
    identity: Option<Arc<identity::Identity>>,
    named: RwLock<HashMap<String, Arc<identity::Identity>>>,
}

impl Tls {
    /// Parses the roots and reads the client certificates, once, at open.
    ///
    /// # Errors
    /// [`Error::InvalidCertificate`] for a root that does not parse, or a client
    /// certificate or key that is missing, unreadable or does not parse.
    pub fn load(config: &Config) -> Result<Tls, Error> {
        let mut tls = Tls {
            added_roots: added_roots(config)?,
            webpki_roots: config.webpki_roots,
            base: OnceLock::new(),
            anonymous: OnceLock::new(),
            identity: None,
            named: RwLock::default(),
        };
        if let Some((cert, key)) = &config.client_cert {
            tls.identity = Some(Arc::new(identity::Identity::load(cert, key, tls.base())?));
        }
        for (name, cert, key) in &config.client_identities {
            tls.register(name.clone(), cert, key)?;
        }
        Ok(tls)
    }

    /// The roots and crypto provider, built on first use.
    fn base(&self) -> &tls::TlsBase {
        self.base.get_or_init(|| {
            tls::TlsBase::new(match &self.added_roots {
                Some(roots) => roots.clone(),
                None if self.webpki_roots => RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                },
                // No root at all: every certificate is refused.
                None => RootCertStore::empty(),
            })
        })
    }

    /// The TLS configuration of a connection that presents `identity` (`None`: no
    /// client certificate).
    ///
    /// # Errors
    /// rustls refuses the configuration (it cannot, for the provider and versions used).
    pub fn client_config(
        &self,
        identity: Option<&identity::Identity>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        if let Some(id) = identity {
            return Ok(id.current(self.base()));
        }
        if let Some(c) = self.anonymous.get() {
            return Ok(c.clone());
        }
        let made = self.base().client_config(None)?;
        Ok(self.anonymous.get_or_init(|| made).clone())
    }

    /// Reads a client identity and registers it under `name` (replacing one of the same
    /// name).
    ///
    /// # Errors
    /// [`Error::InvalidCertificate`] as for [`Tls::load`]; nothing is registered then.
    pub fn register(&self, name: String, cert: &Path, key: &Path) -> Result<(), Error> {
        let id = Arc::new(identity::Identity::load(cert, key, self.base())?);
        self.named
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, id);
        Ok(())
    }

    /// Whether a client identity is registered under `name`.
    pub fn has_identity(&self, name: &str) -> bool {
        self.named_identity(name).is_some()
    }

    fn named_identity(&self, name: &str) -> Option<Arc<identity::Identity>> {
        self.named
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// The buffer responses are read through: the body buffer's size, within 16..=64 KiB
/// (answers are small; the body buffer is for the upload's bytes).
fn input_buffer(config: &Config) -> usize {
    config.buffer_size.clamp(16 * 1024, 64 * 1024)
}

/// Why an upload that names client identity `name` cannot go: it is not registered.
pub(crate) fn identity_missing(name: &str) -> Error {
    Error::InvalidCertificate {
        reason: format!(
            "no client identity is registered under the name {name:?}; the upload waits, \
             sending nothing, until the program registers it \
             (UploaderBuilder::client_identity or Uploader::register_client_identity)"
        ),
    }
}

/// The roots added with `add_root_certificate_pem`, checked once at open; `None` if
/// none were added.
fn added_roots(config: &Config) -> Result<Option<RootCertStore>, Error> {
    if config.root_certs_pem.is_empty() {
        return Ok(None);
    }
    let bad = |reason: String| Error::InvalidCertificate { reason };
    let mut certs = Vec::new();
    for pem in &config.root_certs_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            certs.push(cert.map_err(|e| bad(format!("root certificate PEM: {e}")))?);
        }
    }
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block in the PEM data".into()));
    }
    // As ureq did: a certificate of a bundle (a system CA file) that webpki cannot take
    // as a root is passed over, not a reason to refuse the others.
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certs);
    if ignored > 0 {
        log::warn!("{ignored} of the added root certificates cannot be used as roots; ignored");
    }
    if added == 0 {
        return Err(bad(
            "none of the added root certificates can be used as a root".into(),
        ));
    }
    Ok(Some(store))
}

/// A new agent. Each worker gets its own, so the scheduler can interrupt its sockets
/// with `Agent::shutdown` without touching other transfers. With
/// [`Config::sendfile`] (on Linux), also what its requests' body readers share with its
/// plain sockets to send file bytes with `sendfile(2)`.
/// `identity` names the registered client identity its connections present (`None`:
/// the uploader's own, if any); `watch` hears of connects that go unanswered.
pub(crate) fn agent(
    config: &Config,
    setup: &Arc<Tls>,
    identity: Option<&str>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    watch: Option<ConnectWatch>,
    gate: Option<Arc<StartGate>>,
) -> Result<(Agent, Option<Arc<ZeroCopy>>), Error> {
    let identity = match identity {
        Some(name) => Some(
            setup
                .named_identity(name)
                .ok_or_else(|| identity_missing(name))?,
        ),
        None => setup.identity.clone(),
    };
    let proxy = match &config.proxy {
        Some(p) => Some(ureq::Proxy::new(p).map_err(|e| Error::InvalidUrl {
            url: crate::redact::redact_url(p),
            reason: format!("bad proxy: {e}"),
        })?),
        None => None,
    };
    let ucfg: UreqConfig = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .user_agent(config.user_agent.as_str())
        .allow_non_standard_methods(true)
        .save_redirect_history(false)
        .no_delay(true)
        .input_buffer_size(input_buffer(config))
        // The response head must fit the input buffer: ureq only reports a head that is
        // too large when it exceeds this cap, and one that merely fills the buffer looks
        // like a peer that stopped talking ("Peer disconnected").
        .max_response_header_size(input_buffer(config) - 1)
        .output_buffer_size(config.buffer_size)
        .timeout_connect(config.connect_timeout.checked_add(Duration::from_secs(30)))
        .timeout_send_request(Some(config.stall_timeout))
        .timeout_per_write(Some(config.stall_timeout))
        .timeout_recv_response(Some(config.response_timeout))
        .timeout_recv_body(Some(config.response_timeout))
        .build();
    let stop_for_resolver = stop.clone();
    let zero_copy = (config.sendfile && cfg!(target_os = "linux")).then(Arc::default);
    let connector = ()
        .chain(ConnectProxyConnector::default())
        .chain(connector::SocketConnector {
            connect_timeout: config.connect_timeout,
            user_timeout: config.tcp_user_timeout,
            stop,
            watch,
            gate,
            zero_copy: zero_copy.clone(),
        })
        .chain(tls::TlsConnector {
            tls: setup.clone(),
            identity,
        })
        .chain(fresh_input::FreshInputConnector);
    let agent = Agent::with_parts(
        ucfg,
        connector,
        resolver::MarkedResolver {
            timeout: config.resolve_timeout,
            stop: stop_for_resolver,
        },
    );
    Ok((agent, zero_copy))
}

/// Shared by workers: the roots and the client certificate.
pub(crate) type Roots = Arc<Tls>;
