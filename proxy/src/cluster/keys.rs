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
//!
//! # Authenticated records
//!
//! Any client allowed to produce to the cluster could write to the key
//! topic. So every record a replica publishes carries a MAC in its
//! `gatehouse-mac` header ([`gatehouse_keys::StateRecordMac`]: HMAC-SHA256
//! under a secret derived from the key provider, over the topic name, the
//! record key and the value, a null value included), and the follower
//! applies only records whose MAC verifies. A record that does not (no MAC,
//! a wrong one, one made for another topic or key, or a record written by a
//! Gatehouse version from before MACs) is not applied: its offset is passed,
//! a warning is logged (topic, partition, offset, key id, reason; nothing
//! personal) and it becomes a `key_operation` audit event `rejected_record`.
//! A flood is bounded: at most one such event (and one warning) per
//! [`REJECTION_WINDOW`]; the rejections in between are counted and recorded
//! in one summary event at the end of the window.
//!
//! # Audited key destruction
//!
//! [`crate::cluster::keys::Keys::destroy_subject`] is the supported way to destroy
//! a subject's keys in a running proxy: one `destroy` event per key (key id,
//! subject hash, replica) is durable on the audit trail before anything is
//! destroyed, then the destroyed markers are published. Every publication is
//! recorded too (`publish`, or `publish_destroyed` for a destroyed marker),
//! so a destruction made on the store directly is on the trail once
//! published; and a replica that applies a destruction read from the topic
//! records `destroy_applied`.
//!
//! # Replays
//!
//! The MAC does not cover a record's offset: an authentic record captured
//! from the topic verifies again if written again. A replica that has
//! applied a destruction keeps the destroyed marker in its sled store and
//! never applies a live record of that key id again, so replaying a key's
//! old record after its destruction does not bring it back there. A
//! replica whose store is new, reading a topic where compaction has already
//! replaced the destroyed marker with such a replayed record, never sees
//! the destruction: that limit remains.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::EventKind;
use gatehouse_keys::{
    KeyError, KeyId, KeyStore, Pseudonymizer, ReplicatedChange, StateRecordMac, MAC_HEADER,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::client::Upstream;
use crate::cluster::follower::{FollowerStatus, Materialized};
use crate::cluster::publish::StateTopic;

/// At most one audit event (and one warning) about rejected key-topic
/// records per window; the rejections in between are counted.
pub(crate) const REJECTION_WINDOW: Duration = Duration::from_secs(10);

/// The key side of field protection: the store, the pseudonym secret and
/// the key topic.
#[derive(Debug)]
pub struct Keys {
    pub(crate) store: KeyStore,
    pub(crate) pseudonyms: Pseudonymizer,
    pub(crate) topic: std::sync::OnceLock<Arc<KeyTopic>>,
}

impl Keys {
    /// Keys from `store`, pseudonyms from `pseudonyms`.
    pub fn new(store: KeyStore, pseudonyms: Pseudonymizer) -> Self {
        Self {
            store,
            pseudonyms,
            topic: std::sync::OnceLock::new(),
        }
    }

    /// The key store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }
}

/// The wrapped keys of this replica's store, followed from and published to
/// the key topic.
pub(crate) struct KeyTopic {
    /// Where key records are published (signed, acks=all).
    topic: StateTopic,
    store: KeyStore,
    status: std::sync::OnceLock<watch::Receiver<FollowerStatus>>,
    /// Where key publications are recorded, if the proxy keeps an audit
    /// trail.
    audit: Option<gatehouse_audit::AuditLog>,
    replica: String,
}

impl std::fmt::Debug for KeyTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTopic")
            .field("topic", &self.topic.name())
            .finish_non_exhaustive()
    }
}

impl KeyTopic {
    /// Publishes to and reads `topic` through `upstream`; publications are
    /// recorded on `audit` when there is one.
    pub(crate) fn new(
        upstream: Arc<dyn Upstream>,
        max_frame_bytes: usize,
        audit: Option<gatehouse_audit::AuditLog>,
        topic: String,
        store: KeyStore,
        mac: Arc<StateRecordMac>,
    ) -> Self {
        let replica = audit
            .as_ref()
            .map(|a| a.replica_id().to_string())
            .unwrap_or_default();
        Self {
            audit,
            replica,
            topic: StateTopic::new(upstream, topic, max_frame_bytes, mac),
            store,
            status: std::sync::OnceLock::new(),
        }
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
        self.topic.ensure().await
    }

    /// Writes every key record of the store not yet on the topic, and waits
    /// for the cluster's acknowledgement (acks=all). Nothing to do is
    /// cheap: one look at the store.
    pub(crate) async fn publish_pending(&self) -> Result<usize, String> {
        if self
            .store
            .unpublished()
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Ok(0);
        }
        // Listed again under the publication lock: another task may have
        // published them while this one waited.
        let (_, pending) = self
            .topic
            .publish_with(|| {
                let pending = self.store.unpublished().map_err(|e| e.to_string())?;
                let records = pending
                    .iter()
                    .map(|(_, k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                Ok((records, pending))
            })
            .await
            .map_err(|e| format!("cannot publish data keys: {e}"))?;
        if pending.is_empty() {
            return Ok(0);
        }
        for (id, _, _) in &pending {
            self.store.mark_published(*id).map_err(|e| e.to_string())?;
        }
        self.record(&pending).await;
        Ok(pending.len())
    }

    /// Records the published key records in the audit trail: which key was
    /// created (or re-wrapped under a new KEK) and shared (`publish`), or
    /// which destroyed marker was (`publish_destroyed`). Key records name a
    /// subject only by its tag, so the event names none.
    async fn record(&self, published: &[(KeyId, Vec<u8>, Vec<u8>)]) {
        let Some(log) = &self.audit else { return };
        let events = published
            .iter()
            .map(|(id, _, value)| {
                let destroyed = serde_json::from_slice::<serde_json::Value>(value)
                    .ok()
                    .and_then(|v| v.get("destroyed").and_then(serde_json::Value::as_bool))
                    .unwrap_or(false);
                EventKind::KeyOperation {
                    operation: if destroyed {
                        "publish_destroyed"
                    } else {
                        "publish"
                    }
                    .to_string(),
                    key_id: Some(id.to_string()),
                    subject: None,
                    actor: format!("proxy {}", self.replica),
                    detail: None,
                }
            })
            .collect();
        if let Err(e) = log.append_all(events).await {
            // The keys are on the cluster already; what is lost is the
            // record of it.
            tracing::error!(error = %e, "audit log unavailable: key publication not recorded");
        }
    }
}

/// Why [`crate::cluster::keys::Keys::destroy_subject`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDestroyError {
    /// The audit trail could not record the destruction: nothing was
    /// destroyed (fail closed).
    #[error("the audit trail cannot record the destruction, nothing was destroyed: {0}")]
    Audit(String),
    /// The key store failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The keys are destroyed on this replica (and on the audit trail) but
    /// the destroyed markers could not be published yet; they stay queued
    /// and go out with the next publication.
    #[error("keys destroyed here but not yet published to the key topic: {0}")]
    NotPublished(String),
}

impl Keys {
    /// Destroys every data key of `subject` (crypto-shredding), the
    /// supported way in a running proxy: first one `destroy` event per live
    /// key (key id, subject hash, this replica) is made durable on the audit
    /// trail (if it cannot be, nothing is destroyed), then the keys are
    /// destroyed in the store, then the destroyed markers are published to
    /// the key topic (acks=all), so every replica applies them. Returns the
    /// ids destroyed.
    pub async fn destroy_subject(&self, subject: &str) -> Result<Vec<KeyId>, KeyDestroyError> {
        let topic = self.topic.get();
        let audit = topic.and_then(|t| t.audit.as_ref().map(|a| (a, t.replica.clone())));
        let live: Vec<KeyId> = self
            .store
            .subject_keys(subject)?
            .into_iter()
            .filter(|k| !k.destroyed)
            .map(|k| k.id)
            .collect();
        let event = |id: Option<KeyId>, hash: &str, replica: &str, detail: Option<&str>| {
            EventKind::KeyOperation {
                operation: "destroy".into(),
                key_id: id.map(|k| k.to_string()),
                subject: Some(hash.to_string()),
                actor: format!("proxy {replica}"),
                detail: detail.map(str::to_string),
            }
        };
        if let Some((log, replica)) = &audit {
            let hash = log.subject_hash(subject);
            let events = if live.is_empty() {
                vec![event(None, &hash, replica, Some("no live data key"))]
            } else {
                live.iter()
                    .map(|id| event(Some(*id), &hash, replica, None))
                    .collect()
            };
            log.append_all(events)
                .await
                .map_err(|e| KeyDestroyError::Audit(e.to_string()))?;
        }
        let ids = self.store.destroy_subject(subject)?;
        if let Some((log, replica)) = &audit {
            // A key created for the subject between the listing and the
            // destruction.
            let hash = log.subject_hash(subject);
            let late: Vec<EventKind> = ids
                .iter()
                .filter(|id| !live.contains(id))
                .map(|id| event(Some(*id), &hash, replica, None))
                .collect();
            if !late.is_empty() {
                if let Err(e) = log.append_all(late).await {
                    tracing::error!(error = %e, "audit log unavailable: key destruction not recorded");
                }
            }
        }
        if let Some(topic) = topic {
            topic
                .publish_pending()
                .await
                .map_err(KeyDestroyError::NotPublished)?;
        }
        Ok(ids)
    }

    /// The key topic follower's view (which offsets this replica has read),
    /// once the follower has started.
    pub fn key_topic_status(&self) -> Option<FollowerStatus> {
        let topic = self.topic.get()?;
        let status = topic.status.get()?;
        let now = status.borrow().clone();
        Some(now)
    }
}

/// Where the key topic's follower sends audit events: spawned onto the
/// runtime (the follower applies records synchronously), errors logged.
pub(crate) type AuditSink = Arc<dyn Fn(Vec<EventKind>) + Send + Sync>;

/// An [`AuditSink`] appending to `log` (none: events are dropped, as the
/// proxy keeps no audit trail).
pub(crate) fn audit_sink(log: Option<gatehouse_audit::AuditLog>) -> AuditSink {
    Arc::new(move |events: Vec<EventKind>| {
        let Some(log) = log.clone() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = log.append_all(events).await {
                        tracing::error!(error = %e, "audit log unavailable: key topic event not recorded");
                    }
                });
            }
            Err(_) => {
                tracing::error!("no runtime: key topic event not recorded");
            }
        }
    })
}

/// Rejected key-topic records, reported at a bounded rate: the first
/// rejection of a window is logged and audited at once; later ones in the
/// same window are counted, and the count is logged and audited in one
/// event when the window ends.
pub(crate) struct Rejections {
    topic: String,
    actor: String,
    window: Duration,
    sink: AuditSink,
    state: std::sync::Mutex<RejectionState>,
}

#[derive(Default)]
struct RejectionState {
    /// When the last event was emitted.
    last_event: Option<Instant>,
    /// Rejections since then that no event reported yet.
    suppressed: u64,
    /// Whether a task will report `suppressed` at the window's end.
    flush_scheduled: bool,
}

impl Rejections {
    pub(crate) fn new(topic: String, actor: String, window: Duration, sink: AuditSink) -> Self {
        Self {
            topic,
            actor,
            window,
            sink,
            state: std::sync::Mutex::new(RejectionState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RejectionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports one record that was not applied because `reason`.
    pub(crate) fn reject(
        self: &Arc<Self>,
        partition: i32,
        offset: i64,
        key_id: Option<KeyId>,
        reason: &str,
    ) {
        let now = Instant::now();
        let mut st = self.state();
        let due = st
            .last_event
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window);
        if due {
            st.last_event = Some(now);
            drop(st);
            let key = key_id.map(|k| k.to_string());
            tracing::warn!(
                topic = %self.topic,
                partition,
                offset,
                key_id = key.as_deref().unwrap_or("-"),
                reason,
                "key topic record rejected, not applied: it is not authenticated by a Gatehouse proxy"
            );
            (self.sink)(vec![EventKind::KeyOperation {
                operation: "rejected_record".into(),
                key_id: key,
                subject: None,
                actor: self.actor.clone(),
                detail: Some(format!(
                    "{} partition {partition} offset {offset}: {reason}; not applied",
                    self.topic
                )),
            }]);
            return;
        }
        st.suppressed += 1;
        let schedule = !st.flush_scheduled;
        st.flush_scheduled = true;
        let at = st.last_event.map_or(now, |t| t + self.window);
        drop(st);
        tracing::debug!(topic = %self.topic, partition, offset, reason, "key topic record rejected");
        if schedule {
            let this = Arc::clone(self);
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        this.flush();
                    });
                }
                Err(_) => this.flush(),
            }
        }
    }

    /// Reports the rejections counted since the last event, if any.
    pub(crate) fn flush(&self) {
        let mut st = self.state();
        st.flush_scheduled = false;
        if st.suppressed == 0 {
            return;
        }
        let count = std::mem::take(&mut st.suppressed);
        st.last_event = Some(Instant::now());
        drop(st);
        tracing::warn!(
            topic = %self.topic,
            count,
            "key topic records rejected, not applied: they are not authenticated by a Gatehouse proxy"
        );
        (self.sink)(vec![EventKind::KeyOperation {
            operation: "rejected_record".into(),
            key_id: None,
            subject: None,
            actor: self.actor.clone(),
            detail: Some(format!(
                "{count} more records of {} rejected within {} s (no valid MAC); not applied",
                self.topic,
                self.window.as_secs_f64()
            )),
        }]);
    }
}

/// The key store as the key topic's follower sees it: records verified and
/// applied to the store, positions kept in sled beside it.
pub(crate) struct KeyTopicState {
    store: KeyStore,
    offsets: sled::Tree,
    meta: sled::Tree,
    /// The topic followed, bound into every record's MAC.
    topic: String,
    mac: Arc<StateRecordMac>,
    rejections: Arc<Rejections>,
    sink: AuditSink,
    actor: String,
}

impl KeyTopicState {
    pub(crate) fn new(
        store: KeyStore,
        db: &sled::Db,
        topic: String,
        mac: Arc<StateRecordMac>,
        audit: Option<gatehouse_audit::AuditLog>,
    ) -> Result<Self, sled::Error> {
        let actor = format!(
            "proxy {}",
            audit.as_ref().map(|a| a.replica_id()).unwrap_or_default()
        );
        let sink = audit_sink(audit);
        Self::with_sink(store, db, topic, mac, actor, sink, REJECTION_WINDOW)
    }

    pub(crate) fn with_sink(
        store: KeyStore,
        db: &sled::Db,
        topic: String,
        mac: Arc<StateRecordMac>,
        actor: String,
        sink: AuditSink,
        window: Duration,
    ) -> Result<Self, sled::Error> {
        Ok(Self {
            store,
            offsets: db.open_tree("key_topic_offsets")?,
            meta: db.open_tree("key_topic_meta")?,
            rejections: Arc::new(Rejections::new(
                topic.clone(),
                actor.clone(),
                window,
                sink.clone(),
            )),
            topic,
            mac,
            sink,
            actor,
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
        headers: &crate::codec::records::Headers,
    ) -> Result<(), String> {
        if offset < self.position(partition) {
            return Ok(());
        }
        let key_id = key.and_then(|k| KeyId::from_hex_bytes(k).ok());
        let mac = headers.last(MAC_HEADER.as_bytes()).and_then(|h| h.value);
        match self.mac.verify(&self.topic, key, value, mac) {
            Err(KeyError::Unauthenticated(reason)) => {
                self.rejections.reject(partition, offset, key_id, reason);
            }
            Err(e) => {
                // Too long to sign: not one of ours either.
                self.rejections
                    .reject(partition, offset, key_id, &e.to_string());
            }
            Ok(()) => {
                if let Some(key) = key {
                    // An authentic record this replica cannot apply
                    // (another KEK) is skipped with a warning: ciphertexts
                    // under that key stay unreadable here (fields removed),
                    // never shown.
                    match self.store.apply_replicated(key, value) {
                        Ok(ReplicatedChange::Destroyed) => {
                            tracing::info!(partition, offset, key_id = %key_id.map(|k| k.to_string()).unwrap_or_default(), "applied a key destruction from the key topic");
                            (self.sink)(vec![EventKind::KeyOperation {
                                operation: "destroy_applied".into(),
                                key_id: key_id.map(|k| k.to_string()),
                                subject: None,
                                actor: self.actor.clone(),
                                detail: Some(format!(
                                    "read from {} partition {partition} offset {offset}",
                                    self.topic
                                )),
                            }]);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(partition, offset, error = %e, "key record skipped")
                        }
                    }
                }
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
        // Rejections counted but not reported yet go on the record now.
        self.rejections.flush();
        self.offsets.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::records::Headers;
    use bytes::Bytes;
    use gatehouse_keys::LocalKeyFile;

    type TestResult = Result<(), Box<dyn std::error::Error>>;
    type Events = Arc<std::sync::Mutex<Vec<EventKind>>>;

    const TOPIC: &str = "_gatehouse.keys";

    struct Replica {
        _db: sled::Db,
        store: KeyStore,
        state: KeyTopicState,
        events: Events,
    }

    fn replica(
        dir: &std::path::Path,
        name: &str,
        provider: Arc<LocalKeyFile>,
        window: Duration,
    ) -> Result<Replica, Box<dyn std::error::Error>> {
        let db = sled::open(dir.join(name))?;
        let store = KeyStore::open(db.open_tree("keys")?, provider.clone(), 8)?;
        let mac = Arc::new(StateRecordMac::new(provider.as_ref())?);
        let events: Events = Arc::default();
        let seen = events.clone();
        let sink: AuditSink = Arc::new(move |e: Vec<EventKind>| {
            seen.lock().unwrap_or_else(|p| p.into_inner()).extend(e)
        });
        let state = KeyTopicState::with_sink(
            store.clone(),
            &db,
            TOPIC.to_string(),
            mac,
            format!("proxy {name}"),
            sink,
            window,
        )?;
        Ok(Replica {
            _db: db,
            store,
            state,
            events,
        })
    }

    fn signed(mac: &StateRecordMac, topic: &str, key: &[u8], value: Option<&[u8]>) -> Headers {
        let mut h = Headers::new();
        if let Ok(tag) = mac.sign(topic, Some(key), value) {
            h.push(MAC_HEADER, Some(Bytes::copy_from_slice(&tag)));
        }
        h
    }

    fn operations(events: &Events) -> Vec<(String, Option<String>)> {
        events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|e| match e {
                EventKind::KeyOperation {
                    operation, detail, ..
                } => Some((operation.clone(), detail.clone())),
                _ => None,
            })
            .collect()
    }

    /// Only records with a valid MAC change the store; the others pass
    /// their offset, are reported once per window with a count, and a
    /// destruction applied from the topic is an audit event.
    #[tokio::test(flavor = "current_thread")]
    async fn only_authenticated_records_are_applied() -> TestResult {
        let dir = tempfile::tempdir()?;
        let provider = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.json"))?);
        let stranger = LocalKeyFile::open_or_create(&dir.path().join("other.json"))?;
        let stranger_mac = StateRecordMac::new(&stranger)?;
        let mac = StateRecordMac::new(provider.as_ref())?;
        let a = replica(dir.path(), "a", provider.clone(), Duration::from_secs(3600))?;
        let b = replica(dir.path(), "b", provider.clone(), Duration::from_secs(3600))?;
        a.store.key_for_write("alice")?;
        let (id, key, value) = a.store.unpublished()?.pop().ok_or("no key record")?;

        // Unsigned, the key record is not applied.
        b.state.apply_raw(
            0,
            0,
            Some(&key),
            Some(&value),
            &crate::codec::records::Headers::new(),
        )?;
        assert!(b.store.key(id)?.is_none());
        assert_eq!(b.state.position(0), 1);
        // Signed, it is.
        b.state.apply_raw(
            0,
            1,
            Some(&key),
            Some(&value),
            &signed(&mac, TOPIC, &key, Some(&value)),
        )?;
        assert!(b.store.key(id)?.is_some());

        // Forged destructions: a bare tombstone, a tombstone signed for
        // another topic, one signed by another provider, a destroyed marker
        // with a garbage MAC, and the live record's MAC on a tombstone.
        let marker = br#"{"v":1,"subject_tag":"","created_ms":0,"destroyed":true}"#;
        let mut garbage = Headers::new();
        garbage.push(MAC_HEADER, Some(Bytes::from_static(&[7u8; 32])));
        let forgeries: Vec<(Option<&[u8]>, Headers)> = vec![
            (None, Headers::new()),
            (None, signed(&mac, "_gatehouse.erasure", &key, None)),
            (None, signed(&stranger_mac, TOPIC, &key, None)),
            (Some(&marker[..]), garbage),
            (None, signed(&mac, TOPIC, &key, Some(&value))),
        ];
        for (i, (v, h)) in forgeries.iter().enumerate() {
            b.state.apply_raw(0, 2 + i as i64, Some(&key), *v, h)?;
        }
        assert!(
            b.store.key(id)?.is_some(),
            "a forged destruction was applied"
        );
        assert_eq!(b.state.position(0), 7);
        // The unsigned record made the window's event; the rest are counted.
        let ops = operations(&b.events);
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert_eq!(ops[0].0, "rejected_record");
        b.state.rejections.flush();
        let ops = operations(&b.events);
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(
            ops[1]
                .1
                .as_deref()
                .is_some_and(|d| d.starts_with("5 more records")),
            "{ops:?}"
        );

        // A real destruction, signed by a, is applied and audited.
        a.store.destroy_subject("alice")?;
        let (_, dkey, dvalue) = a.store.unpublished()?.pop().ok_or("no marker")?;
        b.state.apply_raw(
            0,
            7,
            Some(&dkey),
            Some(&dvalue),
            &signed(&mac, TOPIC, &dkey, Some(&dvalue)),
        )?;
        assert!(b.store.key(id)?.is_none());
        // The old key record, replayed with its valid MAC: stays destroyed,
        // and is no new event.
        b.state.apply_raw(
            0,
            8,
            Some(&key),
            Some(&value),
            &signed(&mac, TOPIC, &key, Some(&value)),
        )?;
        assert!(b.store.key(id)?.is_none());
        let ops = operations(&b.events);
        assert_eq!(
            ops.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>(),
            ["rejected_record", "rejected_record", "destroy_applied"]
        );
        Ok(())
    }

    /// A flood of bad records makes one event per window, and the count of
    /// the others arrives at the window's end without another rejection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_reported_once_per_window_with_a_count() -> TestResult {
        let dir = tempfile::tempdir()?;
        let provider = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek.json"))?);
        let window = Duration::from_millis(300);
        let b = replica(dir.path(), "b", provider, window)?;
        let key = b"00112233445566778899aabbccddeeff";
        for offset in 0..1000 {
            b.state.apply_raw(
                0,
                offset,
                Some(key),
                None,
                &crate::codec::records::Headers::new(),
            )?;
        }
        assert_eq!(operations(&b.events).len(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while operations(&b.events).len() < 2 {
            assert!(Instant::now() < deadline, "the count was never reported");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ops = operations(&b.events);
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(
            ops[1]
                .1
                .as_deref()
                .is_some_and(|d| d.starts_with("999 more records")),
            "{ops:?}"
        );
        // Quiet since: the next rejection, a window later, is reported at once.
        tokio::time::sleep(window).await;
        b.state.apply_raw(
            0,
            1000,
            Some(key),
            None,
            &crate::codec::records::Headers::new(),
        )?;
        assert_eq!(operations(&b.events).len(), 3);
        Ok(())
    }
}
