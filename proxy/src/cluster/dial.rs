//! Connections to the cluster: TCP, then TLS towards the cluster and the
//! proxy's own SASL exchange when configured, before anything else is sent
//! on the connection. Client sessions and the proxy's own client
//! ([`crate::cluster::client`]) both dial through a [`Dialer`].

use bytes::{Bytes, BytesMut};
use gatehouse_sasl::{Mechanism, ScramClient};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use std::time::Duration;

use tokio::net::TcpStream;

use crate::cluster::client::{Connecting, Upstream};
use crate::config::{ProxyConfig, UpstreamSasl};
use crate::error::ProxyError;
use crate::tls::UpstreamTls;

/// A byte stream: plain TCP or TLS, towards the client or the cluster.
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}
/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// How the proxy reaches the cluster: its bootstrap servers, the connect
/// timeout, TLS towards the cluster and the proxy's SASL credentials.
#[derive(Debug)]
pub struct Dialer {
    bootstrap: Vec<String>,
    timeout: Duration,
    tls: Option<UpstreamTls>,
    sasl: Option<Credentials>,
}

impl Dialer {
    /// The dialer `config`'s `[upstream]` describes (TLS files and SASL
    /// password read now).
    pub fn new(config: &ProxyConfig) -> Result<Self, ProxyError> {
        Ok(Self {
            bootstrap: config.upstream.bootstrap_servers.clone(),
            timeout: config.connect_timeout(),
            tls: config
                .upstream
                .tls
                .as_ref()
                .map(crate::tls::connector)
                .transpose()?,
            sasl: config
                .upstream
                .sasl
                .as_ref()
                .map(Credentials::load)
                .transpose()?,
        })
    }

    /// A connection to the first bootstrap server that answers, and its
    /// address.
    pub async fn bootstrap(&self) -> Result<(BoxStream, String), ProxyError> {
        self.first_of(&self.bootstrap).await
    }

    /// A connection to `addr` (`host:port`).
    pub async fn dial(&self, addr: &str) -> Result<(BoxStream, String), ProxyError> {
        self.first_of(std::slice::from_ref(&addr.to_string())).await
    }

    async fn first_of(&self, candidates: &[String]) -> Result<(BoxStream, String), ProxyError> {
        let mut last = String::from("no address");
        for addr in candidates {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr.as_str())).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    let mut stream = self.secure(addr, s).await?;
                    if let Some(creds) = &self.sasl {
                        tokio::time::timeout(self.timeout, authenticate(&mut stream, creds))
                            .await
                            .map_err(|_| ProxyError::Upstream(format!("{addr}: SASL timed out")))?
                            .map_err(|e| ProxyError::Upstream(format!("{addr}: {e}")))?;
                    }
                    return Ok((stream, addr.clone()));
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connect timed out"),
            }
        }
        Err(ProxyError::Upstream(format!(
            "cannot reach the cluster ({last})"
        )))
    }

    /// TLS over `s` when configured.
    async fn secure(&self, addr: &str, s: TcpStream) -> Result<BoxStream, ProxyError> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(s));
        };
        let name = match &tls.server_name {
            Some(n) => n.clone(),
            None => {
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
                rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| ProxyError::Config(format!("upstream host {host}: {e}")))?
            }
        };
        let tls = tokio::time::timeout(self.timeout, tls.connector.connect(name, s))
            .await
            .map_err(|_| ProxyError::Upstream(format!("{addr}: TLS handshake timed out")))?
            .map_err(|e| ProxyError::Upstream(format!("{addr}: TLS handshake: {e}")))?;
        Ok(Box::new(tls))
    }
}

impl Upstream for Dialer {
    fn connect(&self, node: Option<(i32, &str, i32)>) -> Connecting<'_> {
        let addr = node.map(|(_, host, port)| format!("{host}:{port}"));
        Box::pin(async move {
            match addr {
                None => self.bootstrap().await,
                Some(a) => self.dial(&a).await,
            }
            .map_err(|e| e.to_string())
        })
    }
}

/// Loaded upstream credentials.
pub struct Credentials {
    mechanism: Mechanism,
    username: String,
    password: Zeroizing<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the password from its file or environment variable.
    pub fn load(c: &UpstreamSasl) -> Result<Self, ProxyError> {
        let mechanism = Mechanism::from_name(&c.mechanism).ok_or_else(|| {
            ProxyError::Config(format!("upstream.sasl.mechanism: unknown {}", c.mechanism))
        })?;
        let password = match (&c.password_file, &c.password_env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ProxyError::Config(format!(
                        "upstream.sasl.password_file {}: {e}",
                        path.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                ProxyError::Config(format!("upstream.sasl.password_env: ${var} is not set"))
            })?,
            _ => {
                return Err(ProxyError::Config(
                    "upstream.sasl needs exactly one of password_file and password_env".into(),
                ))
            }
        };
        Ok(Self {
            mechanism,
            username: c.username.clone(),
            password: Zeroizing::new(password),
        })
    }
}

async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut BoxStream,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    req: &Req,
) -> Result<Resp, String> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0; 4]);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("gatehouse-proxy")))
        .encode(&mut out, api.request_header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut out, version).map_err(|e| e.to_string())?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let len = stream.read_i32().await.map_err(|e| e.to_string())?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= 1 << 20)
        .ok_or_else(|| format!("{api:?} response of {len} bytes"))?;
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!("{api:?} answered out of order"));
    }
    gatehouse_wire::check_response(api, version, &body).map_err(|e| e.to_string())?;
    Resp::decode(&mut body, version).map_err(|e| e.to_string())
}

async fn step(stream: &mut BoxStream, id: i32, bytes: Vec<u8>) -> Result<Bytes, String> {
    let resp: SaslAuthenticateResponse = call(
        stream,
        ApiKey::SaslAuthenticate,
        1,
        id,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
    )
    .await?;
    if resp.error_code != 0 {
        return Err(format!(
            "the cluster refused the proxy's credentials (error {}: {})",
            resp.error_code,
            resp.error_message.as_deref().unwrap_or("")
        ));
    }
    Ok(resp.auth_bytes)
}

/// Runs the SASL exchange on a fresh upstream connection.
async fn authenticate(stream: &mut BoxStream, c: &Credentials) -> Result<(), String> {
    let hs: SaslHandshakeResponse = call(
        stream,
        ApiKey::SaslHandshake,
        1,
        -1,
        &SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(c.mechanism.to_string())),
    )
    .await?;
    if hs.error_code != 0 {
        return Err(format!(
            "the cluster does not offer {} (error {})",
            c.mechanism, hs.error_code
        ));
    }
    match c.mechanism {
        Mechanism::Plain => {
            let msg = gatehouse_sasl::plain::client_initial_response(&c.username, &c.password)
                .map_err(|e| e.to_string())?;
            step(stream, -2, msg.to_vec()).await?;
        }
        m => {
            let mut client =
                ScramClient::new(m, &c.username, &c.password).map_err(|e| e.to_string())?;
            let server_first = step(stream, -2, client.first()).await?;
            let client_final = client.step(&server_first).map_err(|e| e.to_string())?;
            let server_final = step(stream, -3, client_final).await?;
            client.finish(&server_final).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
