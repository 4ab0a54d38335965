//! rdkafka helpers shared by the test modules.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

pub fn config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000")
        .set("log_level", "4");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Result<FutureProducer> {
    Ok(config(bootstrap, extra).create()?)
}

pub fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> Result<StreamConsumer> {
    let mut c = config(bootstrap, extra);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500");
    Ok(c.create()?)
}

pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap, &[]).create()?;
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        if let Err((t, e)) = r {
            bail!("creating {t} failed: {e}");
        }
    }
    Ok(())
}

/// The value the tests produce for message `i`: JSON with the index and
/// enough text to compress.
pub fn value(tag: &str, i: usize) -> String {
    format!(
        r#"{{"i":{i},"tag":"{tag}","text":"message {i} of the {tag} run, with some repeated words words words"}}"#
    )
}

/// Extracts the index from a value made by [`value`].
pub fn index_of(payload: &[u8]) -> Result<usize> {
    let v: serde_json::Value = serde_json::from_slice(payload).context("value is not JSON")?;
    v.get("i")
        .and_then(|i| i.as_u64())
        .map(|i| i as usize)
        .context("value has no index")
}

/// Produces `count` keyed messages and waits for every delivery.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    tag: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let mut pending = Vec::with_capacity(range.len());
    for i in range {
        let key = format!("key-{i}");
        let value = value(tag, i);
        let fut = p
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        pending.push(fut);
    }
    for f in pending {
        match f.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => bail!("delivery failed: {e}"),
            Err(_) => bail!("delivery future cancelled"),
        }
    }
    Ok(())
}

/// Consumes exactly `count` messages (or fails after `limit`); returns
/// indexes with their (partition, offset).
pub async fn consume(
    c: &StreamConsumer,
    count: usize,
    limit: Duration,
) -> Result<Vec<(usize, i32, i64)>> {
    let mut out = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + limit;
    while out.len() < count {
        let m = tokio::time::timeout_at(deadline, c.recv())
            .await
            .with_context(|| format!("consumed only {} of {count} messages", out.len()))?;
        // A broker that went away (stopped, or not yet dropped from the
        // client's metadata) is reported and retried by the client.
        let m = match m {
            Err(rdkafka::error::KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure
                | rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            )) => continue,
            m => m?,
        };
        let payload = m.payload().context("message without value")?;
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let i = index_of(payload)?;
        if key.as_deref() != Some(format!("key-{i}").as_str()) {
            bail!("message {i} has key {key:?}");
        }
        out.push((i, m.partition(), m.offset()));
    }
    Ok(out)
}

/// Sum of high watermarks of all partitions of `topic`.
pub fn end_offsets(
    c: &StreamConsumer,
    topic: &str,
    partitions: i32,
) -> Result<HashMap<i32, (i64, i64)>> {
    (0..partitions)
        .map(|p| Ok((p, c.fetch_watermarks(topic, p, Duration::from_secs(10))?)))
        .collect()
}
