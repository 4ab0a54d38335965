//! Sharing data keys between proxy replicas through a compacted topic.
//!
//! Every replica encrypts with per-subject data keys from its own
//! [`KeyStore`] (sled). So that a record produced through one replica can
//! be read through another, each wrapped key a replica creates (or
//! destroys) is written to the key topic (`_gatehouse.keys` by default:
//! one partition, `cleanup.policy=compact`, key = key id) **before** the
//! produce that uses it is forwarded, and every replica follows the topic
//! into its store (the same follower as the consent topic). Keys are
//! wrapped by the key-encryption key, so the topic holds nothing usable
//! without the KEK provider.
//!
//! Two replicas creating a key for the same new subject at once each write
//! their own key (every ciphertext names its key id); both keys stay
//! readable everywhere, and once each replica has seen the other's, both
//! pick the same one for new data.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gatehouse_keys::{KeyId, KeyStore};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{watch, Mutex};

use crate::consent::{
    error_name, metadata, Conn, FollowerStatus, Materialized, ProxyUpstream, Upstream,
};
use crate::server::Shared;

const PRODUCE_VERSIONS: (i16, i16) = (3, 9);
const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 5);
const TOPIC_ALREADY_EXISTS: i16 = 36;
const PRODUCE_TIMEOUT_MS: i32 = 10_000;

/// The wrapped keys of this replica's store, followed from and published to
/// the key topic.
pub(crate) struct KeyTopic {
    /// Weak: the proxy's filters hold this (through the keys), and the
    /// proxy's state must not keep itself alive.
    shared: std::sync::Weak<Shared>,
    topic: String,
    max_frame_bytes: usize,
    store: KeyStore,
    /// The connection to the key partition's leader, reused between
    /// publications; one publication at a time.
    conn: Mutex<Option<Conn>>,
    status: std::sync::OnceLock<watch::Receiver<FollowerStatus>>,
    /// Where key publications are recorded, if the proxy keeps an audit
    /// trail.
    audit: Option<gatehouse_audit::AuditLog>,
    replica: String,
}

impl std::fmt::Debug for KeyTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTopic")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KeyTopic {
    pub(crate) fn new(shared: Arc<Shared>, topic: String, store: KeyStore) -> Self {
        let max_frame_bytes = shared.config.limits.max_frame_bytes;
        let audit = shared.audit.clone();
        let replica = audit
            .as_ref()
            .map(|a| a.replica_id().to_string())
            .unwrap_or_default();
        Self {
            audit,
            replica,
            shared: Arc::downgrade(&shared),
            topic,
            max_frame_bytes,
            store,
            conn: Mutex::new(None),
            status: std::sync::OnceLock::new(),
        }
    }

    fn upstream(&self) -> Result<ProxyUpstream, String> {
        self.shared
            .upgrade()
            .map(ProxyUpstream)
            .ok_or_else(|| "the proxy is stopping".to_string())
    }

    /// Remembers the follower's status (set once, when it starts).
    pub(crate) fn set_status(&self, status: watch::Receiver<FollowerStatus>) {
        let _ = self.status.set(status);
    }

    /// Waits (up to `limit`) until the follower has read the key topic to
    /// its end, so that a key another replica published before its produce
    /// was forwarded is known here. Returns whether it has.
    pub(crate) async fn caught_up(&self, limit: Duration) -> bool {
        let Some(status) = self.status.get() else {
            return false;
        };
        let mut rx = status.clone();
        tokio::time::timeout(limit, rx.wait_for(FollowerStatus::caught_up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Creates the key topic if the cluster does not have it.
    pub(crate) async fn ensure_topic(&self) -> Result<(), String> {
        let upstream = self.upstream()?;
        let mut conn = Conn::open(&upstream, None, self.max_frame_bytes)
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
                    "cannot create the key topic {}: {}",
                    self.topic,
                    error_name(t.error_code)
                ));
            }
        }
        tracing::info!(topic = %self.topic, "key topic created");
        Ok(())
    }

    /// Writes every key record of the store not yet on the topic, and waits
    /// for the cluster's acknowledgement (acks=all). Nothing to do is
    /// cheap: one look at the store.
    pub(crate) async fn publish_pending(&self) -> Result<usize, String> {
        let pending = self.store.unpublished().map_err(|e| e.to_string())?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut guard = self.conn.lock().await;
        // Another task may have published them while this one waited.
        let pending = self.store.unpublished().map_err(|e| e.to_string())?;
        if pending.is_empty() {
            return Ok(0);
        }
        let batch = encode_batch(&pending)?;
        let mut last_error = String::new();
        for attempt in 0..2 {
            if guard.is_none() {
                match self.connect_leader().await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        last_error = e;
                        if attempt == 0 {
                            // The topic may be missing: create it, then retry.
                            if let Err(e) = self.ensure_topic().await {
                                last_error = e;
                            }
                        }
                        continue;
                    }
                }
            }
            let Some(conn) = guard.as_mut() else { continue };
            match self.produce(conn, batch.clone()).await {
                Ok(()) => {
                    for (id, _, _) in &pending {
                        self.store.mark_published(*id).map_err(|e| e.to_string())?;
                    }
                    self.record(&pending).await;
                    return Ok(pending.len());
                }
                Err(e) => {
                    last_error = e;
                    *guard = None;
                }
            }
        }
        Err(format!(
            "cannot publish data keys to {}: {last_error}",
            self.topic
        ))
    }

    /// Records the published key records in the audit trail: which key was
    /// created (or destroyed, or re-wrapped under a new KEK) and shared.
    /// Key records name a subject only by its tag, so the event names none.
    async fn record(&self, published: &[(KeyId, Vec<u8>, Vec<u8>)]) {
        let Some(log) = &self.audit else { return };
        let events = published
            .iter()
            .map(|(id, _, value)| {
                let destroyed = serde_json::from_slice::<serde_json::Value>(value)
                    .ok()
                    .and_then(|v| v.get("destroyed").and_then(serde_json::Value::as_bool))
                    .unwrap_or(false);
                gatehouse_audit::EventKind::KeyOperation {
                    operation: if destroyed { "destroy" } else { "publish" }.to_string(),
                    key_id: Some(id.to_string()),
                    subject: None,
                    actor: format!("proxy {}", self.replica),
                }
            })
            .collect();
        if let Err(e) = log.append_all(events).await {
            // The keys are on the cluster already; what is lost is the
            // record of it.
            tracing::error!(error = %e, "audit log unavailable: key publication not recorded");
        }
    }

    async fn connect_leader(&self) -> Result<Conn, String> {
        let upstream = self.upstream()?;
        let mut boot = Conn::open(&upstream, None, self.max_frame_bytes)
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
            &upstream as &dyn Upstream,
            Some((leader, &host, port)),
            self.max_frame_bytes,
        )
        .await
        .map_err(|e| e.to_string())
    }

    async fn produce(&self, conn: &mut Conn, batch: Bytes) -> Result<(), String> {
        let v = conn.version(ApiKey::Produce, PRODUCE_VERSIONS)?;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
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
            return Err(format!("produce: {}", error_name(code)));
        }
        Ok(())
    }
}

fn encode_batch(pending: &[(KeyId, Vec<u8>, Vec<u8>)]) -> Result<Bytes, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = pending
        .iter()
        .enumerate()
        .map(|(i, (_, key, value))| Record {
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
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| format!("encoding key records: {e}"))?;
    Ok(buf.freeze())
}

/// The key store as the key topic's follower sees it: records applied to
/// the store, positions kept in sled beside it.
pub(crate) struct KeyTopicState {
    store: KeyStore,
    offsets: sled::Tree,
    meta: sled::Tree,
}

impl KeyTopicState {
    pub(crate) fn new(store: KeyStore, db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            store,
            offsets: db.open_tree("key_topic_offsets")?,
            meta: db.open_tree("key_topic_meta")?,
        })
    }
}

impl Materialized for KeyTopicState {
    fn position(&self, partition: i32) -> i64 {
        self.offsets
            .get(partition.to_be_bytes())
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0)
    }

    fn apply_raw(
        &self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        if offset < self.position(partition) {
            return Ok(());
        }
        if let Some(key) = key {
            // A record this replica cannot apply (another KEK, garbage) is
            // skipped with a warning: ciphertexts under that key stay
            // unreadable here (fields removed), never shown.
            if let Err(e) = self.store.apply_replicated(key, value) {
                tracing::warn!(partition, offset, error = %e, "key record skipped");
            }
        }
        self.advance_to(partition, offset.saturating_add(1))
    }

    fn advance_to(&self, partition: i32, next: i64) -> Result<(), String> {
        if next > self.position(partition) {
            self.offsets
                .insert(partition.to_be_bytes(), &next.to_be_bytes())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn reset_to(&self, partition: i32, start: i64) -> Result<usize, String> {
        // Keys are never forgotten on a replay (a destroyed one stays
        // destroyed in the store); only the position moves.
        self.offsets
            .insert(partition.to_be_bytes(), &start.to_be_bytes())
            .map_err(|e| e.to_string())?;
        Ok(0)
    }

    fn bind_to(&self, topic: &str, topic_id: Option<&str>) -> Result<bool, String> {
        let key = "topic";
        let value = format!("{topic}/{}", topic_id.unwrap_or(""));
        let old = self.meta.get(key).map_err(|e| e.to_string())?;
        let changed = old.as_deref().is_some_and(|o| o != value.as_bytes());
        if changed {
            self.offsets.clear().map_err(|e| e.to_string())?;
        }
        self.meta
            .insert(key, value.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(changed)
    }

    fn persist(&self) -> Result<(), String> {
        self.offsets.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}
