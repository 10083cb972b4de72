//! The device's client certificate (mutual TLS): a PEM chain and its private key, read
//! at open and read again whenever either file changes, since devices rotate them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ClientConfig;

use super::tls::TlsBase;
use crate::Error;

/// What identifies one version of a file: a rotation changes at least one of these.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    match fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

/// A client certificate from two files, kept current, with the TLS configuration that
/// presents it (one per version of the files, so its session cache is shared by every
/// connection that presents the same certificate, and dropped with it).
#[derive(Debug)]
pub(crate) struct Identity {
    cert_path: PathBuf,
    key_path: PathBuf,
    loaded: Mutex<(Stamp, Stamp, Arc<ClientConfig>)>,
}

impl Identity {
    /// Reads and checks both files: the chain and key must parse, and rustls must accept
    /// the key as one it can sign with.
    ///
    /// # Errors
    /// [`Error::InvalidCertificate`] naming the file that is missing, unreadable, or
    /// holds no certificate or no usable private key.
    pub fn load(cert_path: &Path, key_path: &Path, base: &TlsBase) -> Result<Identity, Error> {
        let (cs, ks) = (stamp(cert_path), stamp(key_path));
        let config = read(cert_path, key_path, base)?;
        Ok(Identity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            loaded: Mutex::new((cs, ks, config)),
        })
    }

    /// The TLS configuration that presents the certificate as it is now: read again if
    /// a file changed since. A file caught half-written during a rotation keeps the
    /// previous certificate (logged), and the next connection tries again.
    pub fn current(&self, base: &TlsBase) -> Arc<ClientConfig> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let (cs, ks) = (stamp(&self.cert_path), stamp(&self.key_path));
        if (cs, ks) != (loaded.0, loaded.1) {
            match read(&self.cert_path, &self.key_path, base) {
                Ok(config) => {
                    log::info!(
                        "client certificate {} changed: using the new one",
                        self.cert_path.display()
                    );
                    *loaded = (cs, ks, config);
                }
                Err(e) => log::warn!("client certificate changed but cannot be used yet: {e}"),
            }
        }
        loaded.2.clone()
    }
}

fn read(cert_path: &Path, key_path: &Path, base: &TlsBase) -> Result<Arc<ClientConfig>, Error> {
    let bad = |path: &Path, what: String| Error::InvalidCertificate {
        reason: format!("client certificate file {}: {what}", path.display()),
    };
    let cert_pem = fs::read(cert_path).map_err(|e| bad(cert_path, e.to_string()))?;
    let key_pem = fs::read(key_path).map_err(|e| bad(key_path, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_path, format!("does not parse: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert_path, "no CERTIFICATE block".into()));
    }
    // PKCS#8, SEC1 (EC) or PKCS#1 (RSA): the first key in the file.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        bad(
            key_path,
            "no PRIVATE KEY block (PKCS#8, SEC1 or RSA)".into(),
        )
    })?;
    base.client_config(Some((chain, key)))
        .map_err(|e| bad(key_path, format!("the key cannot be used: {e}")))
}
