//! The device's client certificate (mutual TLS): a PEM chain and its private key, read
//! at open and read again whenever either file changes, since devices rotate them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use ureq::tls::{ClientCert, PemItem};

use crate::Error;

/// What identifies one version of a file: a rotation changes at least one of these.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Stamp {
    match fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

/// A client certificate from two files, kept current.
#[derive(Debug)]
pub(crate) struct Identity {
    cert_path: PathBuf,
    key_path: PathBuf,
    loaded: Mutex<(Stamp, Stamp, ClientCert)>,
}

impl Identity {
    /// Reads and checks both files.
    ///
    /// # Errors
    /// [`Error::InvalidCertificate`] naming the file that is missing, unreadable, or
    /// holds no certificate or no private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, Error> {
        let (cs, ks) = (stamp(cert_path), stamp(key_path));
        let cert = read(cert_path, key_path)?;
        Ok(Identity {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            loaded: Mutex::new((cs, ks, cert)),
        })
    }

    /// The certificate to present now: read again if a file changed since. A file
    /// caught half-written during a rotation keeps the previous certificate (logged),
    /// and the next connection tries again.
    pub fn current(&self) -> ClientCert {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let (cs, ks) = (stamp(&self.cert_path), stamp(&self.key_path));
        if (cs, ks) != (loaded.0, loaded.1) {
            match read(&self.cert_path, &self.key_path) {
                Ok(cert) => {
                    log::info!(
                        "client certificate {} changed: using the new one",
                        self.cert_path.display()
                    );
                    *loaded = (cs, ks, cert);
                }
                Err(e) => log::warn!("client certificate changed but cannot be used yet: {e}"),
            }
        }
        loaded.2.clone()
    }
}

fn read(cert_path: &Path, key_path: &Path) -> Result<ClientCert, Error> {
    let bad = |path: &Path, what: String| Error::InvalidCertificate {
        reason: format!("client certificate file {}: {what}", path.display()),
    };
    let cert_pem = fs::read(cert_path).map_err(|e| bad(cert_path, e.to_string()))?;
    let key_pem = fs::read(key_path).map_err(|e| bad(key_path, e.to_string()))?;
    let mut chain = Vec::new();
    for item in ureq::tls::parse_pem(&cert_pem) {
        match item {
            Ok(PemItem::Certificate(c)) => chain.push(c),
            Ok(_) => {}
            Err(e) => return Err(bad(cert_path, format!("does not parse: {e}"))),
        }
    }
    if chain.is_empty() {
        return Err(bad(cert_path, "no CERTIFICATE block".into()));
    }
    // PKCS#8, SEC1 (EC) or PKCS#1 (RSA): the first key in the file.
    let key = ureq::tls::parse_pem(&key_pem)
        .find_map(|item| match item {
            Ok(PemItem::PrivateKey(k)) => Some(k),
            _ => None,
        })
        .ok_or_else(|| {
            bad(
                key_path,
                "no PRIVATE KEY block (PKCS#8, SEC1 or RSA)".into(),
            )
        })?;
    Ok(ClientCert::new_with_certs(&chain, key))
}
