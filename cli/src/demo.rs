//! The embedded default: the broker Gatehouse ships, on a local data
//! directory with the demo world's topics, and the proxy in front of it.
//! Clients use the proxy's address; the broker's own address is printed
//! too, for looking behind the proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use gatehouse_broker::{Broker, BrokerConfig, BrokerError, KafkaCode};
use gatehouse_proxy::{Proxy, ProxyConfig, ProxyError};

/// The demo world's topics: (name, partitions, cleanup policy).
pub const DEMO_TOPICS: &[(&str, i32, &str)] = &[
    ("social.posts", 3, "delete"),
    ("social.profiles", 3, "compact"),
    ("support.tickets", 3, "delete"),
    ("consent.events", 3, "compact"),
    ("enrich.sentiment", 3, "delete"),
];

/// Where the demo listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoAddrs {
    /// The proxy's bootstrap address (what clients use).
    pub proxy: SocketAddr,
    /// The proxy's port for broker node N is `node_port_base + N` (0: any).
    pub node_port_base: u16,
    /// The broker's own address.
    pub broker: SocketAddr,
}

impl DemoAddrs {
    /// All on 127.0.0.1: the proxy on `port`, node ports right after it,
    /// the broker on `broker_port`.
    pub fn local(port: u16, broker_port: u16) -> Self {
        let ip = [127, 0, 0, 1];
        Self {
            proxy: SocketAddr::from((ip, port)),
            node_port_base: if port == 0 { 0 } else { port.saturating_add(1) },
            broker: SocketAddr::from((ip, broker_port)),
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The broker failed.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The proxy failed.
    #[error("proxy: {0}")]
    Proxy(#[from] ProxyError),
}

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The broker.
    pub broker: Broker,
    /// The proxy in front of it.
    pub proxy: Proxy,
}

impl Demo {
    /// The address clients use: the proxy.
    pub fn bootstrap(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The broker's own address (bypassing Gatehouse).
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// Stops the proxy (draining in-flight requests), then the broker.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        self.proxy.shutdown().await;
        self.broker.shutdown().await?;
        Ok(())
    }
}

/// Starts the broker with its data under `data`, creates the demo topics
/// that do not exist yet, and starts the proxy in front of it.
pub async fn start(data: &Path, addrs: DemoAddrs) -> Result<Demo, DemoError> {
    let config = BrokerConfig {
        listen: addrs.broker,
        data: data.join("broker").to_string_lossy().into_owned(),
        auto_create_topics: true,
        default_partitions: 3,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await?;
    for (name, partitions, policy) in DEMO_TOPICS {
        let configs = BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())]);
        match broker.create_topic(name, *partitions, configs).await {
            Ok(()) => tracing::info!(topic = name, "demo topic created"),
            Err(BrokerError::Refused {
                code: KafkaCode::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut proxy_config = ProxyConfig::new(addrs.proxy, broker.local_addr().to_string());
    proxy_config.listener.node_port_base = addrs.node_port_base;
    let proxy = Proxy::start(proxy_config).await?;
    Ok(Demo { broker, proxy })
}
