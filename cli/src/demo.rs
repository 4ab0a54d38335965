//! The embedded default: a broker on a local data directory with the demo
//! world's topics (see the README's tour).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use gatehouse_broker::{Broker, BrokerConfig, BrokerError, KafkaCode};

/// The demo world's topics: (name, partitions, cleanup policy).
pub const DEMO_TOPICS: &[(&str, i32, &str)] = &[
    ("social.posts", 3, "delete"),
    ("social.profiles", 3, "compact"),
    ("support.tickets", 3, "delete"),
    ("consent.events", 3, "compact"),
    ("enrich.sentiment", 3, "delete"),
];

/// Starts the demo broker on `listen` with its data under `data`, and
/// creates the demo topics that do not exist yet.
pub async fn start(data: &Path, listen: SocketAddr) -> Result<Broker, BrokerError> {
    let config = BrokerConfig {
        listen,
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
            Err(e) => return Err(e),
        }
    }
    Ok(broker)
}
