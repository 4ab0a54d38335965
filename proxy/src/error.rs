//! Errors of the proxy, saying which side failed.

/// Errors that stop the proxy or a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The client sent something the proxy refuses (downstream's fault).
    #[error("client: {0}")]
    Downstream(String),
    /// The cluster failed or sent something unusable (upstream's fault).
    #[error("upstream: {0}")]
    Upstream(String),
    /// A bug or resource problem in the proxy itself.
    #[error("internal: {0}")]
    Internal(String),
}
