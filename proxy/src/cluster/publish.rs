//! Writing to the cluster as the proxy itself: its own compacted state
//! topics ([`StateTopic`]: `_gatehouse.keys`, `_gatehouse.erasure`; one
//! partition, `cleanup.policy=compact`, every record signed in its
//! `gatehouse-mac` header, acks=all), and tombstones for a key on every
//! partition of a client topic ([`tombstone_everywhere`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gatehouse_keys::{StateRecordMac, MAC_HEADER};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{oneshot, Mutex};

use crate::cluster::client::{error_name, metadata, Conn, Upstream};

const PRODUCE_VERSIONS: (i16, i16) = (3, 9);
const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 5);
const TOPIC_ALREADY_EXISTS: i16 = 36;
const PRODUCE_TIMEOUT_MS: i32 = 10_000;

/// One record to publish: its key and its value (`None`: a tombstone).
pub(crate) type StateRecord = (Vec<u8>, Option<Vec<u8>>);

/// One of the proxy's own compacted state topics.
pub(crate) struct StateTopic {
    upstream: Arc<dyn Upstream>,
    topic: String,
    max_frame_bytes: usize,
    /// Signs every published record.
    mac: Arc<StateRecordMac>,
    /// The connection to the partition's leader, reused between
    /// publications; one publication at a time.
    conn: Mutex<Option<Conn>>,
    /// Records waiting for the next batch of [`StateTopic::publish`], and
    /// whether a batch is being published.
    queue: PublishQueue,
}

type Queued = (StateRecord, oneshot::Sender<Result<(), String>>);

/// Records waiting for the next batch, and whether a publisher runs.
type PublishQueue = std::sync::Mutex<(Vec<Queued>, bool)>;

impl std::fmt::Debug for StateTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTopic")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The most record bytes one published batch carries (Apache Kafka's
/// default `max.message.bytes` is 1 MiB).
const BATCH_BYTES: usize = 512 << 10;

/// A record's framing within a batch, at most (varints, headers).
const RECORD_OVERHEAD: usize = 64;

/// Marks the publisher stopped if its task ends without saying so (a
/// panic): the next publication starts a new one, and those queued
/// meanwhile get an error and retry.
struct Running<'a> {
    queue: &'a PublishQueue,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.0.clear();
            q.1 = false;
        }
    }
}

impl StateTopic {
    pub(crate) fn new(
        upstream: Arc<dyn Upstream>,
        topic: String,
        max_frame_bytes: usize,
        mac: Arc<StateRecordMac>,
    ) -> Self {
        Self {
            upstream,
            topic,
            max_frame_bytes,
            mac,
            conn: Mutex::new(None),
            queue: std::sync::Mutex::new((Vec::new(), false)),
        }
    }

    /// Publishes one record (acks=all) and waits for it. Records that
    /// callers publish while a batch is on its way go out together in the
    /// next one: many concurrent publications cost a few round trips, not
    /// one each.
    pub(crate) async fn publish(self: &Arc<Self>, record: StateRecord) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.0.push((record, tx));
            !std::mem::replace(&mut q.1, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.publish_queued().await });
        }
        rx.await
            .map_err(|_| format!("{}: the publication stopped", self.topic))?
    }

    /// Publishes queued records, a batch at a time, until none is left.
    /// A batch holds at most [`BATCH_BYTES`] of records (and at least
    /// one), well under the cluster's default `max.message.bytes`; each
    /// batch's result goes to its own callers.
    async fn publish_queued(&self) {
        let mut running = Running {
            queue: &self.queue,
            armed: true,
        };
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.0.is_empty() {
                    q.1 = false;
                    running.armed = false;
                    return;
                }
                let mut size = 0usize;
                let take =
                    q.0.iter()
                        .take_while(|((k, v), _)| {
                            size += k.len() + v.as_ref().map_or(0, Vec::len) + RECORD_OVERHEAD;
                            size <= BATCH_BYTES
                        })
                        .count()
                        .max(1);
                q.0.drain(..take).collect::<Vec<_>>()
            };
            let (records, waiting): (Vec<StateRecord>, Vec<_>) = batch.into_iter().unzip();
            let result = self.publish_with(|| Ok((records, ()))).await.map(|_| ());
            for tx in waiting {
                let _ = tx.send(result.clone());
            }
        }
    }

    /// The topic's name.
    pub(crate) fn name(&self) -> &str {
        &self.topic
    }

    /// Creates the topic if the cluster does not have it.
    pub(crate) async fn ensure(&self) -> Result<(), String> {
        let mut conn = Conn::open(self.upstream.as_ref(), None, self.max_frame_bytes)
            .await
            .map_err(|e| e.to_string())?;
        if metadata(&mut conn, &self.topic).await.is_ok() {
            return Ok(());
        }
        let v = conn.version(ApiKey::CreateTopics, CREATE_TOPICS_VERSIONS)?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_num_partitions(1)
                .with_replication_factor(if v >= 4 { -1 } else { 1 })
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact")))])]);
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, v, &req).await?;
        for t in &resp.topics {
            if t.error_code != 0 && t.error_code != TOPIC_ALREADY_EXISTS {
                return Err(format!(
                    "cannot create {}: {}",
                    self.topic,
                    error_name(t.error_code)
                ));
            }
        }
        tracing::info!(topic = %self.topic, "state topic created");
        Ok(())
    }

    /// Publishes what `pending` returns, called while this topic's
    /// publication lock is held (so that two tasks never publish the same
    /// records), signed, in one batch, and waits for the cluster's
    /// acknowledgement (acks=all). Returns what was published; nothing to
    /// publish costs no round trip.
    pub(crate) async fn publish_with<T>(
        &self,
        pending: impl FnOnce() -> Result<(Vec<StateRecord>, T), String>,
    ) -> Result<(Vec<StateRecord>, T), String> {
        let mut guard = self.conn.lock().await;
        let (records, extra) = pending()?;
        if records.is_empty() {
            return Ok((records, extra));
        }
        let batch = encode_batch(&records, |key, value| {
            let tag = self
                .mac
                .sign(&self.topic, Some(key), value)
                .map_err(|e| format!("signing {} records: {e}", self.topic))?;
            Ok(vec![(MAC_HEADER, Bytes::copy_from_slice(&tag))])
        })?;
        let mut last_error = String::new();
        for attempt in 0..2 {
            if guard.is_none() {
                match self.connect_leader().await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        last_error = e;
                        if attempt == 0 {
                            // The topic may be missing: create it, then retry.
                            if let Err(e) = self.ensure().await {
                                last_error = e;
                            }
                        }
                        continue;
                    }
                }
            }
            let Some(conn) = guard.as_mut() else { continue };
            match produce(conn, &self.topic, 0, batch.clone()).await {
                Ok(()) => return Ok((records, extra)),
                Err(e) => {
                    last_error = e;
                    *guard = None;
                }
            }
        }
        Err(format!("cannot publish to {}: {last_error}", self.topic))
    }

    async fn connect_leader(&self) -> Result<Conn, String> {
        let mut boot = Conn::open(self.upstream.as_ref(), None, self.max_frame_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let layout = metadata(&mut boot, &self.topic)
            .await
            .map_err(|e| e.to_string())?;
        let leader = *layout
            .leaders
            .get(&0)
            .ok_or_else(|| format!("{}: partition 0 has no leader", self.topic))?;
        let (host, port) = layout
            .brokers
            .get(&leader)
            .cloned()
            .ok_or_else(|| format!("{}: leader {leader} unknown", self.topic))?;
        // The bootstrap connection may already be to the leader; a
        // dedicated one keeps it simple and is made once.
        Conn::open(
            self.upstream.as_ref(),
            Some((leader, &host, port)),
            self.max_frame_bytes,
        )
        .await
        .map_err(|e| e.to_string())
    }
}

/// Produces a tombstone (`key`, null value) to every partition of `topic`
/// (acks=all), so that compaction removes the key's records wherever a
/// producer's partitioner put them; returns the number of partitions.
pub(crate) async fn tombstone_everywhere(
    upstream: &dyn Upstream,
    max_frame_bytes: usize,
    topic: &str,
    key: &[u8],
) -> Result<usize, String> {
    let mut boot = Conn::open(upstream, None, max_frame_bytes)
        .await
        .map_err(|e| e.to_string())?;
    let layout = metadata(&mut boot, topic)
        .await
        .map_err(|e| format!("{topic}: {e}"))?;
    if let Some(p) = layout.leaderless.first() {
        return Err(format!("{topic}: partition {p} has no leader"));
    }
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in &layout.leaders {
        by_leader.entry(*leader).or_default().push(*partition);
    }
    let batch = encode_batch(&[(key.to_vec(), None)], |_, _| Ok(Vec::new()))?;
    let mut done = 0;
    for (leader, partitions) in by_leader {
        let (host, port) = layout
            .brokers
            .get(&leader)
            .cloned()
            .ok_or_else(|| format!("{topic}: leader {leader} unknown"))?;
        let mut conn = Conn::open(upstream, Some((leader, &host, port)), max_frame_bytes)
            .await
            .map_err(|e| e.to_string())?;
        for p in partitions {
            produce(&mut conn, topic, p, batch.clone()).await?;
            done += 1;
        }
    }
    Ok(done)
}

async fn produce(conn: &mut Conn, topic: &str, partition: i32, batch: Bytes) -> Result<(), String> {
    let v = conn.version(ApiKey::Produce, PRODUCE_VERSIONS)?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(PRODUCE_TIMEOUT_MS)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = conn.call(ApiKey::Produce, v, &req).await?;
    let code = resp
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter())
        .map(|p| p.error_code)
        .next()
        .ok_or("empty produce response")?;
    if code != 0 {
        return Err(format!(
            "produce to {topic}/{partition}: {}",
            error_name(code)
        ));
    }
    Ok(())
}

type HeaderList = Vec<(&'static str, Bytes)>;

/// `records` as one uncompressed batch, each with the headers `headers`
/// gives it.
fn encode_batch(
    records: &[StateRecord],
    headers: impl Fn(&[u8], Option<&[u8]>) -> Result<HeaderList, String>,
) -> Result<Bytes, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| {
            let mut h = kafka_protocol::indexmap::IndexMap::new();
            for (name, v) in headers(key, value.as_deref())? {
                h.insert(StrBytes::from_static_str(name), Some(v));
            }
            Ok(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1 + i as i32,
                timestamp: now,
                key: Some(Bytes::copy_from_slice(key)),
                value: value.as_deref().map(Bytes::copy_from_slice),
                headers: h,
            })
        })
        .collect::<Result<Vec<Record>, String>>()?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encoding records: {e}"))?;
    Ok(buf.freeze())
}
