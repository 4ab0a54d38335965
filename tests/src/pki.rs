//! Certificates for TLS tests, made fresh by each test (nothing checked in).

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

/// A certificate authority, a server certificate for 127.0.0.1 / localhost
/// and client certificates, as PEM files in a directory.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate chain and key.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
}

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

impl TestPki {
    /// Creates the CA and the server certificate under `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        let ca = ca("Gatehouse test CA")?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse-proxy");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        std::fs::write(dir.join("server.pem"), cert.pem())?;
        std::fs::write(dir.join("server.key"), key.serialize_pem())?;
        // Keep the CA for client certificates.
        std::fs::write(dir.join("ca.key"), ca_key_pem(&ca))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        })
    }

    /// A client certificate with common name `cn`, signed by this CA (or by
    /// a CA of its own when `foreign`); returns (cert, key) paths.
    pub fn client(&self, cn: &str, foreign: bool) -> Result<(PathBuf, PathBuf)> {
        let issuer = if foreign {
            ca("Some other CA")?
        } else {
            let key = KeyPair::from_pem(&std::fs::read_to_string(self.dir.join("ca.key"))?)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "Gatehouse test CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            CertifiedIssuer::self_signed(params, key)?
        };
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let tag = if foreign { "foreign-" } else { "" };
        let (c, k) = (
            self.dir.join(format!("{tag}{cn}.pem")),
            self.dir.join(format!("{tag}{cn}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }
}

fn ca_key_pem(ca: &CertifiedIssuer<'static, KeyPair>) -> String {
    ca.key().serialize_pem()
}
