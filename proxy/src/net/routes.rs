//! Port-per-broker routing.
//!
//! Clients first reach the bootstrap listener; metadata responses then tell
//! them about broker nodes. The proxy rewrites each node's address to a
//! proxy listener of its own, started the first time the node is seen, and
//! remembers the node's real address so that connections on that listener
//! go to that node. The map follows the cluster: nodes that appear get a
//! listener, and the upstream address of a node is updated whenever a
//! metadata response reports it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::error::ProxyError;
use crate::filter::broker_address::NodeRoutes;
use crate::filter::{FilterFuture, Target};

/// A node's listener and where the node really is.
#[derive(Debug, Clone)]
pub struct NodeRoute {
    /// The proxy port clients use for this node.
    pub proxy_port: u16,
    /// The node's own `host:port`.
    pub upstream: String,
}

/// A listener just bound for a node, for the listener task to serve.
pub(crate) type NewListener = (TcpListener, Target);

/// The node map.
#[derive(Debug)]
pub struct Routes {
    nodes: Mutex<HashMap<i32, NodeRoute>>,
    /// Where node listeners are bound: the bootstrap listener's address.
    bind: IpAddr,
    /// Node `n` listens on `node_port_base + n` (0: any free port).
    node_port_base: u16,
    /// The host clients are told to connect to.
    advertised_host: String,
    /// New node listeners go to the task that accepts on them.
    listeners: mpsc::UnboundedSender<NewListener>,
}

impl Routes {
    /// An empty map; listeners for new nodes are sent to `listeners`.
    pub(crate) fn new(
        bind: IpAddr,
        node_port_base: u16,
        advertised_host: String,
        listeners: mpsc::UnboundedSender<NewListener>,
    ) -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            bind,
            node_port_base,
            advertised_host,
            listeners,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, NodeRoute>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upstream address of `node`, if known.
    pub fn upstream_of(&self, node: i32) -> Option<String> {
        self.lock().get(&node).map(|r| r.upstream.clone())
    }

    /// All known routes.
    pub fn snapshot(&self) -> Vec<(i32, NodeRoute)> {
        let mut v: Vec<_> = self.lock().iter().map(|(k, r)| (*k, r.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Returns the proxy port for `node`, recording its upstream address
    /// and starting its listener if this is the first time it is seen.
    pub(crate) async fn proxy_port_for(
        &self,
        node: i32,
        upstream_host: &str,
        upstream_port: i32,
    ) -> Result<u16, ProxyError> {
        let upstream = format!("{upstream_host}:{upstream_port}");
        {
            let mut nodes = self.lock();
            if let Some(r) = nodes.get_mut(&node) {
                if r.upstream != upstream {
                    tracing::info!(node, from = %r.upstream, to = %upstream, "broker node moved");
                    r.upstream = upstream;
                }
                return Ok(r.proxy_port);
            }
        }
        // Bind outside the lock; two responses racing for the same new node
        // may both bind, and the loser's listener is dropped below.
        let base = self.node_port_base;
        let port = if base == 0 {
            0
        } else {
            u16::try_from(i64::from(base) + i64::from(node)).map_err(|_| {
                ProxyError::Config(format!("node id {node} does not fit node_port_base {base}"))
            })?
        };
        let addr = SocketAddr::new(self.bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ProxyError::Bind { addr, source })?
            .port();
        let mut nodes = self.lock();
        if let Some(r) = nodes.get(&node) {
            return Ok(r.proxy_port);
        }
        if self.listeners.send((listener, Target::Node(node))).is_err() {
            return Err(ProxyError::Internal("the proxy is shutting down".into()));
        }
        nodes.insert(
            node,
            NodeRoute {
                proxy_port: bound,
                upstream: upstream.clone(),
            },
        );
        drop(nodes);
        tracing::info!(node, port = bound, %upstream, "listening for broker node");
        Ok(bound)
    }
}

impl NodeRoutes for Routes {
    fn advertise<'a>(
        &'a self,
        node: i32,
        host: &'a str,
        port: i32,
    ) -> FilterFuture<'a, Result<(String, u16), String>> {
        Box::pin(async move {
            let p = self
                .proxy_port_for(node, host, port)
                .await
                .map_err(|e| e.to_string())?;
            Ok((self.advertised_host.clone(), p))
        })
    }
}
