//! Test certificates (a throwaway CA and leaves signed by it) and rustls configs using them.

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

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let server_config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        TlsMaterial {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            leaf_der: leaf_cert.der().to_vec(),
            server_config: Arc::new(server_config),
        }
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
