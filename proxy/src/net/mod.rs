//! The client side: listeners (the bootstrap listener and one per broker
//! node), the connection limit, TLS termination, and one session per client
//! connection, which runs the filter chain and forwards to the cluster;
//! and the proxy's own in-process reads through the chain ([`loopback`]).

pub(crate) mod listener;
pub(crate) mod loopback;
pub mod routes;
pub(crate) mod session;
pub(crate) mod trace;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::cluster::dial::Dialer;
use crate::config::Limits;
use crate::filter::Filter;
use crate::tasks::Tasks;
use crate::tls::TlsServer;

/// What every client connection is served with.
#[derive(Debug)]
pub(crate) struct Front {
    /// The filter chain, in request order.
    pub chain: Vec<Arc<dyn Filter>>,
    /// SASL at the proxy, if configured.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The audit trail (authentications are recorded by the session).
    pub audit: Option<gatehouse_audit::AuditLog>,
    /// How sessions reach the cluster.
    pub dialer: Arc<Dialer>,
    /// Node id → proxy port and upstream address.
    pub routes: Arc<routes::Routes>,
    /// Frame size, connections, in-flight requests, timeouts.
    pub limits: Limits,
    /// TLS on the client listeners, if configured.
    pub tls: Option<Arc<TlsServer>>,
    /// Client connections open (permits taken).
    pub connections: Arc<Semaphore>,
    /// Bytes of large client requests held, all connections together
    /// (`max_buffered_bytes` permits).
    pub buffered: Arc<Semaphore>,
    /// Client connections open per IP address, when that is limited.
    pub per_ip: Option<Arc<listener::PerIp>>,
    /// Where sessions run, and the shutdown signal.
    pub tasks: Arc<Tasks>,
    /// Requests, latencies, bytes, authentications.
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
}

impl Front {
    /// Client connections open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.limits.max_connections - self.connections.available_permits()
    }

    /// Bytes of large client requests held now (`max_buffered_bytes`).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.limits.max_buffered_bytes - self.buffered.available_permits()
    }

    /// How long a connection may stay idle.
    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_secs)
    }
}
