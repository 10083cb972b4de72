//! Test certificates (a throwaway CA and leaves signed by it) and rustls configs using them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Which server certificate a TLS test server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFlavor {
    /// Valid for `localhost` and `127.0.0.1`.
    Good,
    /// Valid, but only for `example.invalid`.
    WrongHost,
    /// For `localhost` and `127.0.0.1`, but expired in 2001.
    Expired,
}

/// A CA and a server configuration presenting a leaf signed by it.
pub struct TlsMaterial {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub leaf_der: Vec<u8>,
    pub server_config: Arc<ServerConfig>,
    /// The server's leaf and key as PEM, for servers we did not write (nginx).
    pub leaf_pem: String,
    pub key_pem: String,
    /// The server's chain and key, to build other server configurations.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    /// Generates a fresh CA and leaf. Panics on failure (test setup).
    pub fn generate(flavor: TlsFlavor) -> TlsMaterial {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "background-transfer test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = match flavor {
            TlsFlavor::WrongHost => vec!["example.invalid".into()],
            TlsFlavor::Good | TlsFlavor::Expired => vec!["localhost".into(), "127.0.0.1".into()],
        };
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let mut leaf_params = CertificateParams::new(names.clone()).expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if flavor == TlsFlavor::Expired {
            leaf_params.not_before = date_time_ymd(2000, 1, 1);
            leaf_params.not_after = date_time_ymd(2001, 1, 1);
        }
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        let leaf_pem = leaf_cert.pem();
        let key_pem = leaf_key.serialize_pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let server_config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .expect("server certificate");
        TlsMaterial {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            server_config: Arc::new(server_config),
            leaf_pem,
            key_pem,
            chain,
            key,
        }
    }
}

impl TlsMaterial {
    /// The same material, its server counting the handshakes that resumed an earlier
    /// session (TLS 1.3 tickets or a TLS 1.2 session ID) instead of a full handshake.
    pub fn counting_resumptions(mut self) -> (TlsMaterial, Arc<AtomicU64>) {
        let resumed = Arc::new(AtomicU64::new(0));
        let mut config = (*self.server_config).clone();
        config.session_storage = Arc::new(CountingSessions {
            inner: rustls::server::ServerSessionMemoryCache::new(256),
            resumed: resumed.clone(),
        });
        self.server_config = Arc::new(config);
        (self, resumed)
    }
}

/// A server session cache that counts the sessions it hands back for resumption.
#[derive(Debug)]
struct CountingSessions {
    inner: Arc<rustls::server::ServerSessionMemoryCache>,
    resumed: Arc<AtomicU64>,
}

impl CountingSessions {
    fn counted(&self, found: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if found.is_some() {
            self.resumed.fetch_add(1, Ordering::SeqCst);
        }
        found
    }
}

impl rustls::server::StoresServerSessions for CountingSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.inner.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.counted(self.inner.get(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.counted(self.inner.take(key))
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

/// A rustls client configuration (ring provider) trusting only the CA `ca_der`.
pub fn client_config(ca_der: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("add test CA to root store");
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A client certificate and its key, as PEM.
#[derive(Clone, Debug)]
pub struct ClientPem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority for client certificates.
pub struct ClientCa {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl ClientCa {
    pub fn generate(name: &str) -> ClientCa {
        let key = KeyPair::generate().expect("generate client CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign client CA");
        ClientCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A device certificate signed by this CA (expired in 2001 if `expired`).
    pub fn issue(&self, device: &str, expired: bool) -> ClientPem {
        let key = KeyPair::generate().expect("generate device key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("device params");
        params.distinguished_name.push(DnType::CommonName, device);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign device");
        ClientPem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

impl TlsMaterial {
    /// A good server certificate, and a server that requires a client certificate
    /// issued by `client_ca`.
    pub fn requiring_client_certs(client_ca: &ClientCa) -> TlsMaterial {
        let base = TlsMaterial::generate(TlsFlavor::Good);
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(client_ca.cert_der.clone()))
            .expect("client CA");
        let provider = Arc::new(ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let server_config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(base.chain.clone(), base.key.clone_key())
            .expect("server certificate");
        TlsMaterial {
            server_config: Arc::new(server_config),
            ..base
        }
    }
}
