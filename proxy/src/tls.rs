//! TLS with rustls: termination on client listeners (optionally mutual,
//! the client certificate naming the principal), and origination towards
//! the cluster with its own CA.
//!
//! Only TLS 1.2 and 1.3 are offered. The server certificate and key are
//! re-read when their files change, so certificates rotate without a
//! restart; a broken new pair is refused with a log line and the old one
//! stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::ProxyError;

/// TLS on the client listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle for client certificates; enables mutual TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: refuse clients without a certificate.
    #[serde(default = "yes")]
    pub require_client_cert: bool,
    /// How often the files are checked for changes, in seconds.
    #[serde(default = "ten")]
    pub reload_interval_secs: u64,
}

/// TLS towards the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA bundle the cluster's certificates chain to.
    pub ca_file: PathBuf,
    /// PEM certificate for mutual TLS towards the cluster.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM key for mutual TLS towards the cluster.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify instead of the broker's host name.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}
fn ten() -> u64 {
    10
}

fn tls_err(what: &str, path: &Path, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Config(format!("{what} {}: {e}", path.display()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err("cannot read certificates from", path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("bad certificate in", path, e))?;
    if certs.is_empty() {
        return Err(ProxyError::Config(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProxyError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_err("cannot read a private key from", path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore, ProxyError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| tls_err("bad CA certificate in", path, e))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(cfg: &ServerTlsConfig) -> Result<ServerConfig, ProxyError> {
    let certs = load_certs(&cfg.cert_file)?;
    let key = load_key(&cfg.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Config(format!("TLS: {e}")))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let v =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider());
            let v = if cfg.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| ProxyError::Config(format!("client CA {}: {e}", ca.display())))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key do not fit", &cfg.cert_file, e))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The listener side: the current server configuration, reloadable.
#[derive(Debug)]
pub struct TlsServer {
    cfg: ServerTlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsServer {
    /// Loads the certificate, key and client CA.
    pub fn load(cfg: &ServerTlsConfig) -> Result<Self, ProxyError> {
        let config = server_config(cfg)?;
        Ok(Self {
            stamps: Mutex::new(Self::stamps_of(cfg)),
            cfg: cfg.clone(),
            current: RwLock::new(Arc::new(config)),
        })
    }

    fn stamps_of(cfg: &ServerTlsConfig) -> Vec<Option<SystemTime>> {
        let mut files = vec![cfg.cert_file.as_path(), cfg.key_file.as_path()];
        files.extend(cfg.client_ca_file.as_deref());
        files.into_iter().map(modified).collect()
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(current)
    }

    /// Re-reads the files if they changed; `Ok(true)` when a new
    /// configuration is in use.
    pub fn reload_if_changed(&self) -> Result<bool, ProxyError> {
        let now = Self::stamps_of(&self.cfg);
        let mut stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        if *stamps == now {
            return Ok(false);
        }
        *stamps = now;
        let config = server_config(&self.cfg)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(true)
    }

    /// How often to check for changes.
    pub fn reload_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cfg.reload_interval_secs.max(1))
    }
}

/// The principal named by a client certificate: its subject common name,
/// or else its first DNS, URI or e-mail subject alternative name.
pub fn certificate_principal(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    if let Some(cn) = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = parsed.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
            Some(s.to_string())
        }
        _ => None,
    })
}

/// TLS towards the cluster: the connector and the name to verify (when
/// fixed by configuration rather than taken from each broker's host).
pub struct UpstreamTls {
    /// The connector.
    pub connector: TlsConnector,
    /// A fixed name to verify.
    pub server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A connector for the cluster.
pub fn connector(cfg: &ClientTlsConfig) -> Result<UpstreamTls, ProxyError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProxyError::Config(format!("TLS: {e}")))?
        .with_root_certificates(load_roots(&cfg.ca_file)?);
    let config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(load_certs(c)?, load_key(k)?)
            .map_err(|e| tls_err("client certificate and key do not fit", c, e))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ProxyError::Config(
                "upstream.tls needs both cert_file and key_file, or neither".into(),
            ))
        }
    };
    let name = cfg
        .server_name
        .as_deref()
        .map(|n| ServerName::try_from(n.to_string()))
        .transpose()
        .map_err(|e| ProxyError::Config(format!("upstream.tls.server_name: {e}")))?;
    Ok(UpstreamTls {
        connector: TlsConnector::from(Arc::new(config)),
        server_name: name,
    })
}
