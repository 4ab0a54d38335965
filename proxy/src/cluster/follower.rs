//! Following a compacted topic into a materialized state ([`Materialized`]):
//! the consent store ([`crate::cluster::consent`]), the key store
//! ([`crate::cluster::keys`]) and the erasure state
//! ([`crate::cluster::erasure`]).
//!
//! [`follow`] makes one background task, which runs in rounds:
//!
//! 1. Connect to the cluster's bootstrap servers through the proxy's
//!    [`crate::cluster::dial::Dialer`] (TLS and the proxy's SASL credentials
//!    if configured), ask `ApiVersions`, then `Metadata` for the topic
//!    (never creating it). A missing topic is retried with backoff.
//! 2. Tell the state which topic (and topic id) it follows
//!    ([`Materialized::bind_to`]).
//! 3. Group the partitions by leader and run one fetch loop per leader, all
//!    concurrently. The bootstrap connection is reused for the leader it
//!    leads to; other leaders are dialled at the address from the Metadata
//!    response.
//! 4. Each fetch loop long-polls `Fetch` (`max_wait` 500 ms,
//!    `READ_COMMITTED`) from the state's next offset of each partition.
//!    Record batches are decoded with
//!    [`crate::codec::records::decode_record_set`] (wire guard and CRC
//!    first); control batches are skipped, as are batches of transactions
//!    the response lists as aborted; records below the fetch position (a
//!    batch may start earlier) are skipped. Each record is applied, then the
//!    partition's offset moves past the batch (past compaction gaps too). A
//!    partition that only returns a partial batch gets a larger
//!    `partition_max_bytes` on the next fetch.
//! 5. `OFFSET_OUT_OF_RANGE` (the log start moved past the state, or the log
//!    is shorter than the state thinks): the partition is reset
//!    ([`Materialized::reset_to`]) and replayed from the log start
//!    (`ListOffsets` earliest), since records in between (tombstones
//!    included) may be gone.
//! 6. Leadership errors end the round at once for a fresh Metadata;
//!    connection and other errors end it with exponential backoff (200 ms
//!    up to 10 s). A round also ends every five minutes (every five seconds
//!    while some partition has no leader) to pick up new partitions and
//!    leaders.
//!
//! The task stops when the proxy shuts down (it persists the state first).
//! Progress is observable through the [`FollowerStatus`] the task
//! publishes (connected, last error, each partition's next offset and end
//! offset — the last stable offset); the consent store also offers
//! `subscribe` / `wait_until` for applied offsets per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use crate::cluster::client::{
    earliest_offset, error_name, metadata, needs_refresh, Conn, RoundEnd, Upstream,
};
use crate::codec::records::{decode_record_set, RecordsOptions};

/// The materialized copy of a compacted topic that a follower keeps up to
/// date: the consent store here, the key store for the key topic. Records
/// are applied in offset order per partition; the store remembers each
/// partition's next offset durably, so a restart resumes where it stopped.
pub(crate) trait Materialized: Send + Sync + 'static {
    /// The next offset to read of `partition`.
    fn position(&self, partition: i32) -> i64;
    /// Applies one record (a record below the position is ignored). The
    /// headers are there for a state that authenticates its records (the
    /// key topic verifies its `gatehouse-mac` header); every implementation
    /// says what it does with them.
    fn apply_raw(
        &self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &crate::codec::records::Headers,
    ) -> Result<(), String>;
    /// Moves the position forward to `next` (never back).
    fn advance_to(&self, partition: i32, next: i64) -> Result<(), String>;
    /// Forgets what came from `partition` and replays it from `start`.
    fn reset_to(&self, partition: i32, start: i64) -> Result<usize, String>;
    /// Records which topic (and topic id) the state comes from; `true` if
    /// it was built from another one and was cleared.
    fn bind_to(&self, topic: &str, topic_id: Option<&str>) -> Result<bool, String>;
    /// Writes everything to disk.
    fn persist(&self) -> Result<(), String>;
}
/// What one partition's records of a fetch response did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Records applied (set, removed or malformed).
    pub records: usize,
    /// Complete batches seen (control batches included).
    pub batches: usize,
    /// Whether the response ended with an incomplete batch.
    pub partial_tail: bool,
}

/// Applies the record batches of one fetch response partition, starting at
/// `*position` (records before it are skipped), and moves `*position` past
/// every complete batch. Control batches are skipped; so are the data
/// batches of transactions `aborted` lists (read-committed semantics, as
/// the Java consumer does it).
pub(crate) fn apply_fetched(
    store: &dyn Materialized,
    partition: i32,
    position: &mut i64,
    records: &Bytes,
    aborted: &[AbortedTransaction],
) -> Result<Applied, String> {
    let set = decode_record_set(records, &RecordsOptions::fetch())
        .map_err(|e| format!("partition {partition}: {e}"))?;
    let mut aborted: Vec<(i64, i64)> = aborted
        .iter()
        .map(|a| (a.first_offset, a.producer_id.0))
        .collect();
    aborted.sort_unstable();
    let mut aborted = aborted.into_iter().peekable();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut out = Applied {
        partial_tail: !set.partial_tail.is_empty(),
        ..Applied::default()
    };
    for batch in &set.batches {
        out.batches += 1;
        let h = &batch.header;
        let next = h.next_offset();
        if next <= *position {
            continue;
        }
        if h.is_transactional() {
            while let Some((_, pid)) = aborted.next_if(|(first, _)| *first <= h.last_offset()) {
                aborting.insert(pid);
            }
        }
        if h.is_control() {
            // An ABORT marker (key: version i16, type i16 = 0) ends the
            // aborted transaction of its producer.
            let is_abort = batch
                .records
                .first()
                .and_then(|r| r.key.as_ref())
                .is_some_and(|k| {
                    let mut k = k.clone();
                    k.len() >= 4 && {
                        k.advance(2);
                        k.get_i16() == 0
                    }
                });
            if is_abort {
                aborting.remove(&h.producer_id);
            }
        } else if !(h.is_transactional() && aborting.contains(&h.producer_id)) {
            for r in &batch.records {
                let offset = h.offset_of(r);
                if offset < *position {
                    continue;
                }
                store.apply_raw(
                    partition,
                    offset,
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )?;
                out.records += 1;
            }
        }
        store.advance_to(partition, next)?;
        *position = next;
    }
    Ok(out)
}

// === the follower ===

/// What the follower knows of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    /// The next offset it will read.
    pub next_offset: i64,
    /// The partition's end for a read-committed reader (the last stable
    /// offset, else the high watermark) at the last fetch; -1 before one.
    pub end_offset: i64,
}

/// The follower's view of the consent topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerStatus {
    /// Whether a round is running (connected, topic found).
    pub connected: bool,
    /// Partitions of the topic, as of the last Metadata.
    pub partitions: BTreeMap<i32, PartitionStatus>,
    /// Why the last round ended badly, if it did.
    pub last_error: Option<String>,
    /// Rounds that ended with an error.
    pub failures: u64,
}

impl FollowerStatus {
    /// Whether every partition has been read up to its end as of the last
    /// fetch (and the topic has partitions at all).
    pub fn caught_up(&self) -> bool {
        !self.partitions.is_empty()
            && self
                .partitions
                .values()
                .all(|p| p.end_offset >= 0 && p.next_offset >= p.end_offset)
    }
}

/// Follows `topic` into `store`, reaching the cluster through `upstream`:
/// the status and the task (to be spawned among the proxy's tasks).
pub(crate) fn follow(
    upstream: Arc<dyn Upstream>,
    settings: Settings,
    topic: String,
    store: Arc<dyn Materialized>,
) -> (watch::Receiver<FollowerStatus>, FollowerTask) {
    let (tx, rx) = watch::channel(FollowerStatus::default());
    (rx, Box::pin(run(upstream, settings, topic, store, tx)))
}

/// The follower's task, to be spawned by whoever owns the runtime's tasks.
pub(crate) type FollowerTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Fixed settings of a follower.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Largest response frame accepted.
    pub max_frame_bytes: usize,
    /// Stops the follower when it turns `true`.
    pub shutdown: watch::Receiver<bool>,
}

const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 8 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const ROUND_LENGTH: Duration = Duration::from_secs(300);
const ROUND_LENGTH_LEADERLESS: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const READ_COMMITTED: i8 = 1;
/// The task: rounds until shutdown.
async fn run(
    upstream: Arc<dyn Upstream>,
    mut settings: Settings,
    topic: String,
    store: Arc<dyn Materialized>,
    status: watch::Sender<FollowerStatus>,
) {
    tracing::info!(%topic, "following topic");
    let mut backoff = BACKOFF_MIN;
    loop {
        if *settings.shutdown.borrow_and_update() {
            break;
        }
        let ended = tokio::select! {
            r = round(&*upstream, settings.max_frame_bytes, &topic, &*store, &status) => r,
            r = settings.shutdown.changed() => match r {
                Ok(()) => continue,
                Err(_) => break,
            },
        };
        status.send_modify(|s| s.connected = false);
        let wait = match ended {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                Duration::ZERO
            }
            Err(RoundEnd::Refresh(reason)) => {
                tracing::info!(%topic, reason, "topic follower refreshing metadata");
                backoff = BACKOFF_MIN;
                BACKOFF_MIN
            }
            Err(RoundEnd::Failed(reason)) => {
                tracing::warn!(%topic, reason, retry_ms = backoff.as_millis() as u64, "topic follower interrupted");
                status.send_modify(|s| {
                    s.last_error = Some(reason);
                    s.failures += 1;
                });
                let w = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = settings.shutdown.changed() => if r.is_err() { break },
        }
    }
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.persist()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "consent store flush failed"),
        Err(e) => tracing::warn!(error = %e, "consent store flush failed"),
    }
    status.send_modify(|s| s.connected = false);
    tracing::info!(%topic, "topic follower stopped");
}

type Worker<'a> = Pin<Box<dyn Future<Output = Result<(), RoundEnd>> + Send + 'a>>;

/// One round: metadata, then fetch loops per leader until one of them ends
/// or the round is over.
async fn round(
    upstream: &dyn Upstream,
    max_frame_bytes: usize,
    topic: &str,
    store: &dyn Materialized,
    status: &watch::Sender<FollowerStatus>,
) -> Result<(), RoundEnd> {
    let mut boot = Conn::open(upstream, None, max_frame_bytes).await?;
    let layout = metadata(&mut boot, topic).await?;
    let reset = store.bind_to(topic, layout.topic_id.as_deref())?;
    if reset {
        tracing::warn!(%topic, "state was built from another topic; replaying this one");
    }
    if !layout.leaderless.is_empty() {
        tracing::warn!(%topic, partitions = ?layout.leaderless, "consent partitions without a leader");
    }
    status.send_modify(|s| {
        s.connected = true;
        let old = std::mem::take(&mut s.partitions);
        for p in layout.leaders.keys().chain(&layout.leaderless) {
            let end_offset = old.get(p).map(|o| o.end_offset).unwrap_or(-1);
            s.partitions.insert(
                *p,
                PartitionStatus {
                    next_offset: store.position(*p),
                    end_offset,
                },
            );
        }
    });
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (p, leader) in &layout.leaders {
        by_leader.entry(*leader).or_default().push(*p);
    }
    let mut boot = Some(boot);
    let mut workers: Vec<Worker<'_>> = Vec::new();
    for (leader, partitions) in by_leader {
        let Some((host, port)) = layout.brokers.get(&leader) else {
            continue;
        };
        let conn = match boot.take() {
            Some(b) if b.addr == format!("{host}:{port}") => b,
            other => {
                boot = other;
                Conn::open(upstream, Some((leader, host, *port)), max_frame_bytes).await?
            }
        };
        workers.push(Box::pin(fetch_loop(conn, topic, partitions, store, status)));
    }
    drop(boot);
    let length = if layout.leaderless.is_empty() {
        ROUND_LENGTH
    } else {
        ROUND_LENGTH_LEADERLESS
    };
    if workers.is_empty() {
        tokio::time::sleep(length).await;
        return Ok(());
    }
    match tokio::time::timeout(length, futures::future::select_all(workers)).await {
        Ok((ended, _, _)) => ended,
        Err(_) => Ok(()),
    }
}

/// Fetches `partitions` from their leader until an error.
async fn fetch_loop(
    mut conn: Conn,
    topic: &str,
    partitions: Vec<i32>,
    store: &dyn Materialized,
    status: &watch::Sender<FollowerStatus>,
) -> Result<(), RoundEnd> {
    // Responses must fit the frame limit (the broker may exceed max_bytes
    // by one batch, hence the halving).
    let fetch_max = i32::try_from(conn.max_frame_bytes / 2)
        .unwrap_or(i32::MAX)
        .clamp(1024, FETCH_MAX_BYTES);
    let partition_start = PARTITION_MAX_BYTES.min(fetch_max);
    // Partition → (position, partition_max_bytes).
    let mut state: BTreeMap<i32, (i64, i32)> = partitions
        .iter()
        .map(|p| (*p, (store.position(*p), partition_start)))
        .collect();
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    loop {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_MAX_WAIT.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(fetch_max)
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name.clone())
                .with_partitions(
                    state
                        .iter()
                        .map(|(p, (offset, max))| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(*offset)
                                .with_partition_max_bytes(*max)
                        })
                        .collect(),
                )]);
        let resp: FetchResponse = conn.call(ApiKey::Fetch, conn.fetch, &req).await?;
        if resp.error_code != 0 {
            let e = format!("Fetch: {}", error_name(resp.error_code));
            return Err(if needs_refresh(resp.error_code) {
                RoundEnd::Refresh(e)
            } else {
                RoundEnd::Failed(e)
            });
        }
        for data in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
            let p = data.partition_index;
            let Some((position, max_bytes)) = state.get_mut(&p) else {
                continue;
            };
            match data.error_code {
                0 => {}
                1 => {
                    // OFFSET_OUT_OF_RANGE: replay the partition from its start.
                    let start = earliest_offset(&mut conn, topic, p).await?;
                    let dropped = store.reset_to(p, start)?;
                    tracing::warn!(
                        %topic,
                        partition = p,
                        from = *position,
                        to = start,
                        dropped,
                        "consent offset out of range; replaying the partition from its start"
                    );
                    *position = start;
                    status.send_modify(|s| {
                        if let Some(st) = s.partitions.get_mut(&p) {
                            st.next_offset = start;
                        }
                    });
                    continue;
                }
                code => {
                    let e = format!("Fetch partition {p}: {}", error_name(code));
                    return Err(if needs_refresh(code) {
                        RoundEnd::Refresh(e)
                    } else {
                        RoundEnd::Failed(e)
                    });
                }
            }
            let records = data.records.clone().unwrap_or_default();
            let aborted = data.aborted_transactions.as_deref().unwrap_or(&[]);
            let before = *position;
            let applied = apply_fetched(store, p, position, &records, aborted)?;
            if *position == before && applied.partial_tail {
                // Only part of a batch fit: ask for more next time.
                *max_bytes = max_bytes.saturating_mul(2).min(fetch_max);
            } else if *position > before {
                *max_bytes = partition_start;
            }
            let end = if data.last_stable_offset >= 0 {
                data.last_stable_offset
            } else {
                data.high_watermark
            };
            let next_offset = *position;
            status.send_if_modified(|s| {
                let new = PartitionStatus {
                    next_offset,
                    end_offset: end,
                };
                if s.partitions.get(&p) == Some(&new) {
                    return false;
                }
                s.partitions.insert(p, new);
                true
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::client::Connecting;
    use crate::cluster::consent::{ConsentFollower, ConsentSet, ConsentStore};
    use crate::cluster::dial::BoxStream;
    use crate::codec::records::{
        BatchHeader, Headers, Record, RecordBatch, ATTR_CONTROL, ATTR_TRANSACTIONAL,
    };
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ProducerId;

    fn names(set: &ConsentSet) -> Vec<&str> {
        set.purposes().iter().map(String::as_str).collect()
    }

    fn header(base_offset: i64, last_offset_delta: i32, attributes: i16, pid: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            partition_leader_epoch: 0,
            attributes,
            last_offset_delta,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            base_sequence: if pid >= 0 { 0 } else { -1 },
        }
    }

    fn record(delta: i32, key: &str, value: Option<&str>) -> Record {
        Record::new(
            delta,
            0,
            Some(Bytes::copy_from_slice(key.as_bytes())),
            value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            Headers::new(),
        )
    }

    fn consent(p: &str) -> String {
        format!(r#"{{"purposes": [{p}], "updated_at": "2026-11-26T08:00:00Z"}}"#)
    }

    fn encode(batches: &[RecordBatch]) -> BytesMut {
        let mut out = BytesMut::new();
        for b in batches {
            b.encode(&mut out).expect("ok");
        }
        out
    }

    #[test]
    fn fetched_batches_are_applied_in_order() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        let analytics = consent(r#""analytics""#);
        let both = consent(r#""analytics", "marketing""#);
        // A compacted batch with gaps (offsets 0, 2; 3 was cleaned away).
        let b1 = RecordBatch {
            header: header(0, 3, 0, -1),
            records: vec![
                record(0, "u-1", Some(&analytics)),
                record(2, "u-2", Some(&both)),
            ],
        };
        let b2 = RecordBatch {
            header: header(4, 2, 0, -1),
            records: vec![
                record(0, "u-1", None),
                record(1, "u-3", Some("{oops")),
                record(2, "u-2", Some(&analytics)),
            ],
        };
        let set = encode(&[b1.clone(), b2.clone()]).freeze();
        let mut position = 0;
        let applied = apply_fetched(&store, 0, &mut position, &set, &[]).expect("ok");
        assert_eq!(applied.records, 5);
        assert_eq!(applied.batches, 2);
        assert!(!applied.partial_tail);
        assert_eq!(position, 7);
        assert_eq!(store.next_offset(0), 7);
        assert!(store.get("u-1").is_none());
        assert_eq!(names(&store.get("u-2").expect("ok")), ["analytics"]);
        assert!(store.get("u-3").is_none());
        assert_eq!(store.malformed(), 1);
        // Refetching from the middle of a batch skips what came before.
        let dir2 = tempfile::tempdir().expect("ok");
        let store2 = ConsentStore::open(dir2.path()).expect("ok");
        store2.advance(0, 5).expect("ok");
        let mut position = 5;
        let applied = apply_fetched(&store2, 0, &mut position, &set, &[]).expect("ok");
        assert_eq!(applied.records, 2);
        assert!(store2.get("u-1").is_none());
        assert_eq!(names(&store2.get("u-2").expect("ok")), ["analytics"]);
        // A partial tail is left for the next fetch.
        let mut cut = encode(&[b1, b2]);
        let whole = cut.len();
        cut.truncate(whole - 5);
        let dir3 = tempfile::tempdir().expect("ok");
        let store3 = ConsentStore::open(dir3.path()).expect("ok");
        let mut position = 0;
        let applied = apply_fetched(&store3, 0, &mut position, &cut.freeze(), &[]).expect("ok");
        assert!(applied.partial_tail);
        assert_eq!(applied.batches, 1);
        assert_eq!(position, 4);
        assert_eq!(names(&store3.get("u-1").expect("ok")), ["analytics"]);
        // Garbage is an error, not a panic.
        let mut position = 0;
        let garbage = Bytes::from_static(&[0xff; 80]);
        assert!(apply_fetched(&store3, 0, &mut position, &garbage, &[]).is_err());
    }

    #[test]
    fn aborted_transactions_and_control_batches_are_skipped() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        let analytics = consent(r#""analytics""#);
        let marketing = consent(r#""marketing""#);
        let txn = ATTR_TRANSACTIONAL;
        let marker = |kind: i16| {
            let mut key = BytesMut::new();
            key.put_i16(0);
            key.put_i16(kind);
            let mut value = BytesMut::new();
            value.put_i16(0);
            value.put_i32(0);
            Record::new(
                0,
                0,
                Some(key.freeze()),
                Some(value.freeze()),
                Headers::new(),
            )
        };
        let batches = [
            // Producer 7 writes u-1 and aborts.
            RecordBatch {
                header: header(0, 0, txn, 7),
                records: vec![record(0, "u-1", Some(&analytics))],
            },
            // Producer 8 writes u-2 and commits.
            RecordBatch {
                header: header(1, 0, txn, 8),
                records: vec![record(0, "u-2", Some(&analytics))],
            },
            RecordBatch {
                header: header(2, 0, txn | ATTR_CONTROL, 7),
                records: vec![marker(0)],
            },
            RecordBatch {
                header: header(3, 0, txn | ATTR_CONTROL, 8),
                records: vec![marker(1)],
            },
            // Producer 7 again, in a new transaction that commits.
            RecordBatch {
                header: header(4, 0, txn, 7),
                records: vec![record(0, "u-3", Some(&marketing))],
            },
            RecordBatch {
                header: header(5, 0, txn | ATTR_CONTROL, 7),
                records: vec![marker(1)],
            },
        ];
        let set = encode(&batches).freeze();
        let aborted = [AbortedTransaction::default()
            .with_producer_id(ProducerId(7))
            .with_first_offset(0)];
        let mut position = 0;
        let applied = apply_fetched(&store, 0, &mut position, &set, &aborted).expect("ok");
        assert_eq!(applied.batches, 6);
        assert_eq!(applied.records, 2);
        assert_eq!(position, 6);
        assert_eq!(store.next_offset(0), 6);
        assert!(store.get("u-1").is_none());
        assert_eq!(names(&store.get("u-2").expect("ok")), ["analytics"]);
        assert_eq!(names(&store.get("u-3").expect("ok")), ["marketing"]);
        assert_eq!(store.malformed(), 0);
    }

    /// Connects straight to `addr` with plain TCP.
    struct Direct(String);

    impl Upstream for Direct {
        fn connect(&self, _node: Option<(i32, &str, i32)>) -> Connecting<'_> {
            Box::pin(async move {
                let s = tokio::net::TcpStream::connect(self.0.as_str())
                    .await
                    .map_err(|e| format!("{}: {e}", self.0))?;
                Ok((Box::new(s) as BoxStream, self.0.clone()))
            })
        }
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_retried_until_shutdown() {
        // A port nobody listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("ok");
            l.local_addr().expect("ok").to_string()
        };
        let dir = tempfile::tempdir().expect("ok");
        let store = Arc::new(ConsentStore::open(dir.path()).expect("ok"));
        let (shutdown, rx) = watch::channel(false);
        let settings = Settings {
            max_frame_bytes: 1 << 20,
            shutdown: rx,
        };
        let (follower, task) = ConsentFollower::new(
            Arc::new(Direct(addr)),
            settings,
            "consent.events".into(),
            store,
        );
        let task = tokio::spawn(task);
        let mut status = follower.subscribe();
        tokio::time::timeout(
            Duration::from_secs(10),
            status.wait_for(|s| s.failures >= 2),
        )
        .await
        .expect("ok")
        .expect("ok");
        let s = follower.status();
        assert!(!s.connected && !s.caught_up());
        assert!(s.last_error.is_some());
        shutdown.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ok")
            .expect("ok");
        assert!(follower.store().is_empty());
    }
}
