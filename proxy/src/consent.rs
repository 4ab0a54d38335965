//! Consent state: followed from the compacted consent topic, kept in sled.
//!
//! A data subject's consent arrives as a record on a compacted topic
//! (`consent.events` in the demo world): the key is the subject id (UTF-8),
//! the value `{"purposes": ["analytics", …], "updated_at": "…"}` (fields
//! other than `purposes` are ignored), and a null value (a tombstone)
//! withdraws everything. The proxy follows that topic in the background
//! ([`ConsentFollower`]) and materializes it in a [`ConsentStore`]: an
//! in-memory map for the per-record lookups of the policy engine, backed by
//! sled so that a restart resumes where it stopped instead of replaying the
//! topic. Every proxy replica follows the topic on its own and has its own
//! sled directory (sled locks it; replicas never share one): the topic is
//! the shared truth, each store a materialized copy (DESIGN.md, "Scaling
//! out").
//!
//! # The store
//!
//! - Two sled trees: `subjects` (subject id → JSON `{"purposes": […],
//!   "partition": p, "offset": o}`, the purposes and the record they came
//!   from) and `offsets` (partition, 4 bytes big-endian → the next offset
//!   to read, 8 bytes big-endian). A third, `meta`, remembers which topic
//!   (name and, where the cluster tells it, topic id) the state was built
//!   from: following another topic, or the same name re-created, starts
//!   from scratch.
//! - [`ConsentStore::get`] never touches sled: the whole state is loaded at
//!   [`ConsentStore::open`] and kept in memory. A lookup is a read lock, a
//!   hash-map probe and an `Arc` clone.
//! - [`ConsentSet`]s are **interned**: all subjects with the same purposes
//!   share one allocation, so comparing two sets is usually a pointer
//!   comparison and hashing one writes a precomputed `u64`. The policy
//!   engine memoizes its decisions per distinct set; there are few of them.
//! - A record is applied at most once and in offset order: a record below
//!   the partition's next offset is ignored ([`RecordOutcome::Stale`]).
//!   Re-applying a record is harmless anyway (the state after a record
//!   depends only on that record), which is what makes the order in which
//!   sled persists the subject and the offset irrelevant after a crash:
//!   sled recovers a prefix of the writes, and the follower re-reads from
//!   the recovered offset.
//! - A value that is not JSON `{"purposes": [string, …]}` (`purposes`
//!   given once: a repeated member is refused, as on every path Gatehouse
//!   governs, see [`crate::json`]; at most [`MAX_PURPOSES`] names of at
//!   most [`MAX_PURPOSE_LEN`] bytes) **withdraws every purpose** of its
//!   subject, as a tombstone would: a withdrawal that one reader cannot
//!   parse must not leave an earlier grant standing (fail closed). Such a
//!   record is counted ([`ConsentStore::malformed`]) and logged. Records
//!   whose key is null, empty or not UTF-8 name no subject: they are
//!   skipped and counted. Logs name the partition and offset, never the
//!   subject. The proxy refuses to write such records in the first place
//!   ([`validate_record`], `INVALID_RECORD` on produce to the consent
//!   topic); the store's rule is for records written around it.
//! - A store whose sled copy cannot be read back (a corrupt entry) is
//!   cleared at open and rebuilt from the topic: until the follower has
//!   caught up, subjects have no consent (fail closed).
//!
//! # The follower
//!
//! [`ConsentFollower`] runs one background task, in rounds:
//!
//! 1. Connect to the cluster's bootstrap servers the way sessions do (TLS
//!    and the proxy's SASL credentials if configured), ask `ApiVersions`,
//!    then `Metadata` for the consent topic (never creating it). A missing
//!    topic is retried with backoff.
//! 2. Tell the store which topic (and topic id) it follows
//!    ([`ConsentStore::bind_source`]).
//! 3. Group the partitions by leader and run one fetch loop per leader, all
//!    concurrently. The bootstrap connection is reused for the leader it
//!    leads to; other leaders are reached at the address from the Metadata
//!    response (registered in the proxy's node routes, as a client's
//!    Metadata would).
//! 4. Each fetch loop long-polls `Fetch` (`max_wait` 500 ms,
//!    `READ_COMMITTED`) from the store's next offset of each partition. Record
//!    batches are decoded with [`crate::records::decode_record_set`] (wire
//!    guard and CRC first); control batches are skipped, as are batches of
//!    transactions the response lists as aborted; records below the fetch
//!    position (a batch may start earlier) are skipped. Each record is
//!    applied, then the partition's offset moves past the batch (past
//!    compaction gaps too). A partition that only returns a partial batch
//!    gets a larger `partition_max_bytes` on the next fetch.
//! 5. `OFFSET_OUT_OF_RANGE` (the log start moved past the store, or the log
//!    is shorter than the store thinks): the partition's subjects are
//!    dropped from the store and it is replayed from the log start
//!    (`ListOffsets` earliest), since records in between (tombstones
//!    included) may be gone.
//! 6. Leadership errors end the round at once for a fresh Metadata;
//!    connection and other errors end it with exponential backoff (200 ms
//!    up to 10 s). A round also ends every five minutes (every five seconds
//!    while some partition has no leader) to pick up new partitions and
//!    leaders.
//!
//! The task stops when the proxy shuts down (it flushes the store first).
//! Progress is observable: [`ConsentStore::subscribe`] /
//! [`ConsentStore::wait_until`] for applied offsets per partition, and
//! [`ConsentFollower::status`] / [`ConsentFollower::wait_caught_up`] for the
//! follower's view (connected, last error, each partition's next offset
//! and end offset — the last stable offset).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::AbortedTransaction;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::filter::Target;
use crate::records::{decode_record_set, RecordsOptions};
use crate::server::Shared;
use crate::session::BoxStream;

/// Most purposes one consent value may list; more makes it malformed.
pub const MAX_PURPOSES: usize = 64;
/// Longest purpose name, in bytes; longer makes the value malformed.
pub const MAX_PURPOSE_LEN: usize = 128;

/// Errors of the consent store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// The sled database could not be opened.
    #[error("cannot open the consent store at {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// A read or write of the sled database failed.
    #[error("consent store: {0}")]
    Storage(#[from] sled::Error),
    /// An entry could not be encoded for sled.
    #[error("consent store: cannot encode an entry: {0}")]
    Encode(#[from] serde_json::Error),
}

// === ConsentSet ===

#[derive(Debug)]
struct Interned {
    purposes: BTreeSet<String>,
    /// Hash of `purposes`, computed once.
    hash: u64,
    /// The same set as the policy engine memoizes decisions by: shared, so
    /// steady-state record decisions are hash lookups.
    policy: gatehouse_policy::ConsentSet,
}

/// The purposes a subject consented to. Interned by the store that made it:
/// subjects with the same purposes share one allocation. Cloning is an
/// `Arc` clone, hashing writes a precomputed `u64`, and equality is a
/// pointer comparison for sets of the same store (with a content comparison
/// as the fallback, so sets compare by content whatever their origin).
#[derive(Clone)]
pub struct ConsentSet(Arc<Interned>);

impl ConsentSet {
    fn new(purposes: BTreeSet<String>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        purposes.hash(&mut h);
        let policy = gatehouse_policy::ConsentSet::new(purposes.iter().cloned());
        Self(Arc::new(Interned {
            purposes,
            hash: h.finish(),
            policy,
        }))
    }

    /// The set as the policy engine takes it.
    pub fn policy(&self) -> &gatehouse_policy::ConsentSet {
        &self.0.policy
    }

    /// The purposes, sorted.
    pub fn purposes(&self) -> &BTreeSet<String> {
        &self.0.purposes
    }

    /// Whether `purpose` was granted.
    pub fn allows(&self, purpose: &str) -> bool {
        self.0.purposes.contains(purpose)
    }

    /// Whether no purpose was granted.
    pub fn is_empty(&self) -> bool {
        self.0.purposes.is_empty()
    }

    /// Whether `a` and `b` are the very same interned set.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl PartialEq for ConsentSet {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other)
            || (self.0.hash == other.0.hash && self.0.purposes == other.0.purposes)
    }
}

impl Eq for ConsentSet {}

impl Hash for ConsentSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl std::fmt::Debug for ConsentSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ConsentSet").field(&self.0.purposes).finish()
    }
}

// === ConsentStore ===

/// What applying one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordOutcome {
    /// The subject's consent was set.
    Set,
    /// A tombstone: the subject's consent was removed.
    Removed,
    /// Skipped and counted: a null, empty or non-UTF-8 key. The offset
    /// advanced.
    Malformed,
    /// A value that is not `{"purposes": [..]}`: counted, and the subject's
    /// consent was removed, as by a tombstone (fail closed).
    Withdrawn,
    /// Below the partition's next offset: already applied, ignored.
    Stale,
}

/// A subject's consent in sled.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    purposes: BTreeSet<String>,
    partition: i32,
    offset: i64,
}

/// The value of a consent record.
#[derive(Debug, Deserialize)]
struct ConsentValue {
    purposes: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    set: ConsentSet,
    partition: i32,
}

#[derive(Debug, Default)]
struct State {
    subjects: HashMap<String, Entry>,
    /// Precomputed hash → the live sets with that hash.
    interner: HashMap<u64, Vec<ConsentSet>>,
}

impl State {
    fn intern(&mut self, purposes: BTreeSet<String>) -> ConsentSet {
        let fresh = ConsentSet::new(purposes);
        let bucket = self.interner.entry(fresh.0.hash).or_default();
        if let Some(existing) = bucket.iter().find(|s| s.0.purposes == fresh.0.purposes) {
            return existing.clone();
        }
        bucket.push(fresh.clone());
        fresh
    }

    /// Forgets interned sets nobody but the interner holds any more, in the
    /// bucket of `released` (which the caller gives up).
    fn release(&mut self, released: ConsentSet) {
        let hash = released.0.hash;
        drop(released);
        if let Some(bucket) = self.interner.get_mut(&hash) {
            bucket.retain(|s| Arc::strong_count(&s.0) > 1);
            if bucket.is_empty() {
                self.interner.remove(&hash);
            }
        }
    }

    fn put(&mut self, subject: &str, set: ConsentSet, partition: i32) {
        if let Some(old) = self
            .subjects
            .insert(subject.to_string(), Entry { set, partition })
        {
            self.release(old.set);
        }
    }

    fn remove(&mut self, subject: &str) {
        if let Some(old) = self.subjects.remove(subject) {
            self.release(old.set);
        }
    }
}

/// Consent per data subject: in memory for lookups, in sled for restarts.
/// See the module docs.
pub struct ConsentStore {
    db: sled::Db,
    subjects: sled::Tree,
    offsets: sled::Tree,
    meta: sled::Tree,
    state: RwLock<State>,
    /// Next offset to read, per partition; the in-memory copy of `offsets`.
    progress: watch::Sender<BTreeMap<i32, i64>>,
    malformed: AtomicU64,
}

impl std::fmt::Debug for ConsentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("ConsentStore")
            .field("subjects", &state.subjects.len())
            .field("distinct_sets", &state.interner.len())
            .field("next_offsets", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

const META_TOPIC: &[u8] = b"topic";
const META_TOPIC_ID: &[u8] = b"topic_id";

impl ConsentStore {
    /// Opens (or creates) the store in directory `path` and loads it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ConsentError> {
        let path = path.as_ref();
        let db = open_sled(&sled::Config::new().path(path).cache_capacity(64 << 20)).map_err(
            |source| ConsentError::Open {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let subjects = db.open_tree("subjects")?;
        let offsets = db.open_tree("offsets")?;
        let meta = db.open_tree("meta")?;
        let store = Self {
            db,
            subjects,
            offsets,
            meta,
            state: RwLock::new(State::default()),
            progress: watch::channel(BTreeMap::new()).0,
            malformed: AtomicU64::new(0),
        };
        if let Err(reason) = store.load() {
            tracing::warn!(
                path = %path.display(),
                reason,
                "consent store unreadable; rebuilding it from the consent topic"
            );
            store.clear()?;
        }
        Ok(store)
    }

    /// Loads sled into memory; `Err` names the first corrupt entry.
    fn load(&self) -> Result<(), String> {
        let mut state = State::default();
        for item in self.subjects.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let subject =
                std::str::from_utf8(&k).map_err(|_| "a subject key is not UTF-8".to_string())?;
            let stored: Stored = serde_json::from_slice(&v)
                .map_err(|e| format!("a subject entry does not decode: {e}"))?;
            let set = state.intern(stored.purposes);
            state.put(subject, set, stored.partition);
        }
        let mut next = BTreeMap::new();
        for item in self.offsets.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let (Ok(p), Ok(o)) = (<[u8; 4]>::try_from(&*k), <[u8; 8]>::try_from(&*v)) else {
                return Err("an offset entry has the wrong size".into());
            };
            next.insert(i32::from_be_bytes(p), i64::from_be_bytes(o));
        }
        *self.write() = state;
        self.progress.send_replace(next);
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything (memory and sled): consent and offsets.
    fn clear(&self) -> Result<(), ConsentError> {
        let mut state = self.write();
        self.subjects.clear()?;
        self.offsets.clear()?;
        *state = State::default();
        self.progress.send_replace(BTreeMap::new());
        Ok(())
    }

    /// The consent of `subject`; `None` if the store has no record of it
    /// (never seen, or withdrawn by a tombstone).
    pub fn get(&self, subject: &str) -> Option<ConsentSet> {
        self.read().subjects.get(subject).map(|e| e.set.clone())
    }

    /// Subjects with a consent record.
    pub fn len(&self) -> usize {
        self.read().subjects.len()
    }

    /// Whether no subject has a consent record.
    pub fn is_empty(&self) -> bool {
        self.read().subjects.is_empty()
    }

    /// Distinct purpose sets currently interned.
    pub fn distinct_sets(&self) -> usize {
        self.read().interner.values().map(Vec::len).sum()
    }

    /// Records skipped as malformed since the store was opened.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The next offset to read from `partition` (0 if never read).
    pub fn next_offset(&self, partition: i32) -> i64 {
        self.progress.borrow().get(&partition).copied().unwrap_or(0)
    }

    /// The next offset to read, for every partition read so far.
    pub fn next_offsets(&self) -> BTreeMap<i32, i64> {
        self.progress.borrow().clone()
    }

    /// Watches [`Self::next_offsets`]: it changes whenever a record is
    /// applied or a partition's offset moves.
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<i32, i64>> {
        self.progress.subscribe()
    }

    /// Waits until everything below `next_offset` in `partition` has been
    /// applied (wrap it in a timeout).
    pub async fn wait_until(&self, partition: i32, next_offset: i64) {
        let mut rx = self.progress.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        let _ = rx
            .wait_for(|m| m.get(&partition).is_some_and(|n| *n >= next_offset))
            .await;
    }

    /// Applies one record with its purposes already parsed: `Some` sets the
    /// subject's consent, `None` (a tombstone) removes it. Records below the
    /// partition's next offset are ignored ([`RecordOutcome::Stale`]).
    pub fn apply(
        &self,
        partition: i32,
        offset: i64,
        subject: &str,
        purposes: Option<Vec<String>>,
    ) -> Result<RecordOutcome, ConsentError> {
        let mut state = self.write();
        if offset < self.next_offset(partition) {
            return Ok(RecordOutcome::Stale);
        }
        let outcome = match purposes {
            Some(purposes) => {
                let purposes: BTreeSet<String> = purposes.into_iter().collect();
                let stored = Stored {
                    purposes,
                    partition,
                    offset,
                };
                self.subjects
                    .insert(subject.as_bytes(), serde_json::to_vec(&stored)?)?;
                let set = state.intern(stored.purposes);
                state.put(subject, set, partition);
                RecordOutcome::Set
            }
            None => {
                self.subjects.remove(subject.as_bytes())?;
                state.remove(subject);
                RecordOutcome::Removed
            }
        };
        self.set_next(partition, offset.saturating_add(1))?;
        Ok(outcome)
    }

    /// Applies one raw record of the consent topic: the key is the subject
    /// id, the value `{"purposes": [..]}` or null. A value that cannot be
    /// read withdraws the subject's consent; a record naming no subject is
    /// skipped. Both are counted and logged; their offset is consumed.
    pub fn apply_record(
        &self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<RecordOutcome, ConsentError> {
        if offset < self.next_offset(partition) {
            return Ok(RecordOutcome::Stale);
        }
        let (subject, reason) = match parse_record(key, value) {
            Ok((subject, purposes)) => return self.apply(partition, offset, subject, purposes),
            Err(RecordError::NoSubject(reason)) => (None, reason),
            Err(RecordError::BadValue(subject, reason)) => (Some(subject), reason),
        };
        self.malformed.fetch_add(1, Ordering::Relaxed);
        match subject {
            Some(subject) => {
                tracing::warn!(
                    partition,
                    offset,
                    reason,
                    "unreadable consent record: the subject's consent is withdrawn"
                );
                let outcome = self.apply(partition, offset, subject, None)?;
                Ok(match outcome {
                    RecordOutcome::Removed => RecordOutcome::Withdrawn,
                    other => other,
                })
            }
            None => {
                let _state = self.write();
                if offset < self.next_offset(partition) {
                    return Ok(RecordOutcome::Stale);
                }
                tracing::warn!(
                    partition,
                    offset,
                    reason,
                    "consent record naming no subject skipped"
                );
                self.set_next(partition, offset.saturating_add(1))?;
                Ok(RecordOutcome::Malformed)
            }
        }
    }

    /// Moves `partition`'s next offset forward to `next` (past a batch's
    /// compaction gaps, control batches, aborted transactions). Never moves
    /// it back.
    pub fn advance(&self, partition: i32, next: i64) -> Result<(), ConsentError> {
        let _state = self.write();
        let current = self.progress.borrow().get(&partition).copied();
        if current.is_none_or(|c| next > c) {
            self.set_next(partition, next)?;
        }
        Ok(())
    }

    /// Writes `partition`'s next offset; the caller holds the write lock.
    fn set_next(&self, partition: i32, next: i64) -> Result<(), ConsentError> {
        self.offsets
            .insert(partition.to_be_bytes(), &next.to_be_bytes())?;
        self.progress.send_modify(|m| {
            m.insert(partition, next);
        });
        Ok(())
    }

    /// Drops the consent of every subject last seen on `partition` and sets
    /// its next offset to `start`, to replay it from there. Returns how many
    /// subjects were dropped.
    pub fn reset_partition(&self, partition: i32, start: i64) -> Result<usize, ConsentError> {
        let mut state = self.write();
        let doomed: Vec<String> = state
            .subjects
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .map(|(s, _)| s.clone())
            .collect();
        for subject in &doomed {
            self.subjects.remove(subject.as_bytes())?;
            state.remove(subject);
        }
        self.set_next(partition, start)?;
        Ok(doomed.len())
    }

    /// Records which topic the state follows. If the store was built from
    /// another topic, or from a topic of the same name with another topic id
    /// (deleted and re-created), everything is forgotten and `true` is
    /// returned: the follower then replays the topic from its start.
    /// `topic_id` is `None` when the cluster does not tell it.
    pub fn bind_source(&self, topic: &str, topic_id: Option<&str>) -> Result<bool, ConsentError> {
        let old_topic = self.meta.get(META_TOPIC)?;
        let old_id = self.meta.get(META_TOPIC_ID)?;
        let other_topic = old_topic.as_deref().is_some_and(|t| t != topic.as_bytes());
        let other_id = match (old_id.as_deref(), topic_id) {
            (Some(old), Some(new)) => old != new.as_bytes(),
            _ => false,
        };
        let reset = other_topic || other_id;
        if reset {
            self.clear()?;
        }
        if old_topic.is_none() || reset {
            self.meta.insert(META_TOPIC, topic.as_bytes())?;
        }
        if let Some(id) = topic_id {
            self.meta.insert(META_TOPIC_ID, id.as_bytes())?;
        } else if reset {
            self.meta.remove(META_TOPIC_ID)?;
        }
        Ok(reset)
    }

    /// Writes everything to disk (sled also does so on its own every
    /// 500 ms, and when the store is dropped). Returns the bytes written.
    pub fn flush(&self) -> Result<usize, ConsentError> {
        Ok(self.db.flush()?)
    }
}

/// Why a consent record cannot be applied as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RecordError<'a> {
    /// The key names no subject.
    NoSubject(&'static str),
    /// The value of this subject's record cannot be read.
    BadValue(&'a str, &'static str),
}

/// Parses a record into (subject, purposes or tombstone).
fn parse_record<'a>(
    key: Option<&'a [u8]>,
    value: Option<&[u8]>,
) -> Result<(&'a str, Option<Vec<String>>), RecordError<'a>> {
    let key = key.ok_or(RecordError::NoSubject("null key"))?;
    let subject =
        std::str::from_utf8(key).map_err(|_| RecordError::NoSubject("key is not UTF-8"))?;
    if subject.is_empty() {
        return Err(RecordError::NoSubject("empty key"));
    }
    let Some(value) = value else {
        return Ok((subject, None));
    };
    parse_purposes(value)
        .map(|p| (subject, Some(p)))
        .map_err(|why| RecordError::BadValue(subject, why))
}

/// Reads a consent value: `{"purposes": [string, …]}`, other members
/// ignored, `purposes` exactly once (serde refuses a repeated field, which
/// is the I-JSON rule of [`crate::json`]).
fn parse_purposes(value: &[u8]) -> Result<Vec<String>, &'static str> {
    let v: ConsentValue = serde_json::from_slice(value)
        .map_err(|_| "value is not {\"purposes\": [..]} with purposes given once")?;
    if v.purposes.len() > MAX_PURPOSES {
        return Err("too many purposes");
    }
    if v.purposes.iter().any(|p| p.len() > MAX_PURPOSE_LEN) {
        return Err("purpose name too long");
    }
    Ok(v.purposes)
}

/// Checks a record about to be produced to the consent topic: a UTF-8
/// subject key, and a value that is null (a withdrawal of everything) or
/// `{"purposes": [string, …]}`. `Err` says what is wrong, without the
/// subject.
pub(crate) fn validate_record(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<(), String> {
    match parse_record(key, value) {
        Ok(_) => Ok(()),
        Err(RecordError::NoSubject(why)) => Err(format!("no data subject: {why}")),
        Err(RecordError::BadValue(_, why)) => Err(why.to_string()),
    }
}

// === applying fetched records ===

// === what a follower writes to ===

/// Opens a sled database, waiting a moment for a lock that a database of
/// the same directory, just dropped in this process, still holds: sled
/// releases it from a background thread (a proxy restarted in the same
/// process would otherwise fail now and then). A lock held by another
/// process is still an error, after the wait.
pub(crate) fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("lock"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

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
        headers: &crate::records::Headers,
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

impl Materialized for ConsentStore {
    fn position(&self, partition: i32) -> i64 {
        self.next_offset(partition)
    }

    /// Consent records are written by clients, through the proxy (which
    /// validates them) or around it: they carry no MAC, and the headers are
    /// not read.
    fn apply_raw(
        &self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        _headers: &crate::records::Headers,
    ) -> Result<(), String> {
        self.apply_record(partition, offset, key, value)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn advance_to(&self, partition: i32, next: i64) -> Result<(), String> {
        self.advance(partition, next).map_err(|e| e.to_string())
    }

    fn reset_to(&self, partition: i32, start: i64) -> Result<usize, String> {
        self.reset_partition(partition, start)
            .map_err(|e| e.to_string())
    }

    fn bind_to(&self, topic: &str, topic_id: Option<&str>) -> Result<bool, String> {
        self.bind_source(topic, topic_id).map_err(|e| e.to_string())
    }

    fn persist(&self) -> Result<(), String> {
        self.flush().map(|_| ()).map_err(|e| e.to_string())
    }
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

/// A handle on the background task following the consent topic. Cloning it
/// does not start another task.
#[derive(Debug, Clone)]
pub struct ConsentFollower {
    store: Arc<ConsentStore>,
    status: watch::Receiver<FollowerStatus>,
}

/// The follower's task, to be spawned by whoever owns the runtime's tasks.
pub(crate) type FollowerTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

impl ConsentFollower {
    /// Starts following `topic` into `store` on a task of its own; the task
    /// ends when the proxy shuts down.
    // Remove the allow once server.rs starts the follower.
    #[allow(dead_code)]
    pub(crate) fn spawn(shared: Arc<Shared>, topic: String, store: Arc<ConsentStore>) -> Self {
        let (follower, task) = Self::new(shared, topic, store);
        tokio::spawn(task);
        follower
    }

    /// The handle and the task, for a caller that spawns the task itself
    /// (for instance among the proxy's tasks, so that shutdown waits for
    /// it).
    #[allow(dead_code)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        topic: String,
        store: Arc<ConsentStore>,
    ) -> (Self, FollowerTask) {
        let settings = Settings {
            max_frame_bytes: shared.config.limits.max_frame_bytes,
            shutdown: shared.shutdown.subscribe(),
        };
        Self::with_upstream(Arc::new(ProxyUpstream(shared)), settings, topic, store)
    }

    fn with_upstream(
        upstream: Arc<dyn Upstream>,
        settings: Settings,
        topic: String,
        store: Arc<ConsentStore>,
    ) -> (Self, FollowerTask) {
        let (status, task) = follow_with(upstream, settings, topic, store.clone());
        (Self { store, status }, task)
    }

    /// The store the follower writes to.
    pub fn store(&self) -> &Arc<ConsentStore> {
        &self.store
    }

    /// The follower's current view.
    pub fn status(&self) -> FollowerStatus {
        self.status.borrow().clone()
    }

    /// Watches [`Self::status`].
    pub fn subscribe(&self) -> watch::Receiver<FollowerStatus> {
        self.status.clone()
    }

    /// Waits until [`FollowerStatus::caught_up`] (wrap it in a timeout).
    /// Returns at once if the task has ended.
    pub async fn wait_caught_up(&self) {
        let mut rx = self.status.clone();
        let _ = rx.wait_for(FollowerStatus::caught_up).await;
    }
}

/// Follows `topic` into `store` through the proxy's upstream settings: the
/// status and the task (to be spawned among the proxy's tasks).
pub(crate) fn follow(
    shared: Arc<Shared>,
    topic: String,
    store: Arc<dyn Materialized>,
) -> (watch::Receiver<FollowerStatus>, FollowerTask) {
    let settings = Settings {
        max_frame_bytes: shared.config.limits.max_frame_bytes,
        shutdown: shared.shutdown.subscribe(),
    };
    follow_with(Arc::new(ProxyUpstream(shared)), settings, topic, store)
}

fn follow_with(
    upstream: Arc<dyn Upstream>,
    settings: Settings,
    topic: String,
    store: Arc<dyn Materialized>,
) -> (watch::Receiver<FollowerStatus>, FollowerTask) {
    let (tx, rx) = watch::channel(FollowerStatus::default());
    (rx, Box::pin(run(upstream, settings, topic, store, tx)))
}

/// Fixed settings of a follower.
#[derive(Debug)]
struct Settings {
    max_frame_bytes: usize,
    shutdown: watch::Receiver<bool>,
}

pub(crate) type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<(BoxStream, String), String>> + Send + 'a>>;

/// How the follower reaches the cluster.
pub(crate) trait Upstream: Send + Sync {
    /// A connection to the bootstrap servers (`None`) or to node
    /// `(id, host, port)`, authenticated, with its address.
    fn connect(&self, node: Option<(i32, &str, i32)>) -> Connecting<'_>;
}

/// Through the proxy's own upstream settings (TLS, SASL, node routes).
pub(crate) struct ProxyUpstream(pub(crate) Arc<Shared>);

impl Upstream for ProxyUpstream {
    fn connect(&self, node: Option<(i32, &str, i32)>) -> Connecting<'_> {
        let node = node.map(|(id, host, port)| (id, host.to_string(), port));
        Box::pin(async move {
            let target = match node {
                None => Target::Bootstrap,
                Some((id, host, port)) => {
                    crate::routes::proxy_port_for(&self.0, id, &host, port)
                        .await
                        .map_err(|e| e.to_string())?;
                    Target::Node(id)
                }
            };
            crate::session::connect_upstream(&self.0, target)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Versions the follower speaks: (lowest, highest).
const METADATA_VERSIONS: (i16, i16) = (1, 12);
const FETCH_VERSIONS: (i16, i16) = (4, 12);
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);

const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
const FETCH_MAX_BYTES: i32 = 8 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const ROUND_LENGTH: Duration = Duration::from_secs(300);
const ROUND_LENGTH_LEADERLESS: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const READ_COMMITTED: i8 = 1;
const EARLIEST: i64 = -2;

/// Why a round ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoundEnd {
    /// Metadata changed under us (leadership): refresh at once.
    #[error("{0}")]
    Refresh(String),
    /// Anything else: retry after a backoff.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for RoundEnd {
    fn from(s: String) -> Self {
        RoundEnd::Failed(s)
    }
}

/// Whether a partition error asks for fresh metadata rather than a backoff.
fn needs_refresh(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::LeaderNotAvailable
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::ReplicaNotAvailable
                | ResponseError::KafkaStorageError
                | ResponseError::OffsetNotAvailable
                | ResponseError::UnknownTopicId
                | ResponseError::InconsistentTopicId
        )
    )
}

pub(crate) fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    }
}

/// The highest version both sides speak.
fn pick_version(
    offered: &HashMap<i16, (i16, i16)>,
    api: ApiKey,
    ours: (i16, i16),
) -> Result<i16, String> {
    let (min, max) = offered
        .get(&(api as i16))
        .copied()
        .ok_or_else(|| format!("the cluster does not offer {api:?}"))?;
    let v = max.min(ours.1);
    if v < min.max(ours.0) {
        return Err(format!(
            "the cluster offers {api:?} v{min}-{max}; the proxy speaks v{}-{}",
            ours.0, ours.1
        ));
    }
    Ok(v)
}

/// One connection to a broker, with the versions agreed on it.
pub(crate) struct Conn {
    stream: BoxStream,
    pub(crate) addr: String,
    next_id: i32,
    max_frame_bytes: usize,
    offered: HashMap<i16, (i16, i16)>,
    metadata: i16,
    fetch: i16,
    list_offsets: i16,
}

impl Conn {
    /// The highest version of `api` in `ours` (lowest, highest) that the
    /// broker offers.
    pub(crate) fn version(&self, api: ApiKey, ours: (i16, i16)) -> Result<i16, String> {
        pick_version(&self.offered, api, ours)
    }

    pub(crate) async fn open(
        upstream: &dyn Upstream,
        node: Option<(i32, &str, i32)>,
        max_frame_bytes: usize,
    ) -> Result<Self, RoundEnd> {
        let (stream, addr) = upstream.connect(node).await?;
        let mut conn = Conn {
            stream,
            addr,
            next_id: 1,
            max_frame_bytes,
            offered: HashMap::new(),
            metadata: 0,
            fetch: 0,
            list_offsets: 0,
        };
        let versions: ApiVersionsResponse = conn
            .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
            .await?;
        if versions.error_code != 0 {
            return Err(RoundEnd::Failed(format!(
                "{}: ApiVersions: {}",
                conn.addr,
                error_name(versions.error_code)
            )));
        }
        let offered: HashMap<i16, (i16, i16)> = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        conn.metadata = pick_version(&offered, ApiKey::Metadata, METADATA_VERSIONS)?;
        conn.fetch = pick_version(&offered, ApiKey::Fetch, FETCH_VERSIONS)?;
        conn.list_offsets = pick_version(&offered, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS)?;
        conn.offered = offered;
        Ok(conn)
    }

    /// Sends one request and reads its response.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let addr = self.addr.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{addr}: {api:?} {what}: {e}");
        let mut out = BytesMut::new();
        out.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("gatehouse-proxy")))
            .encode(&mut out, api.request_header_version(version))
            .map_err(|e| fail("encode", &e))?;
        req.encode(&mut out, version)
            .map_err(|e| fail("encode", &e))?;
        let len = i32::try_from(out.len() - 4).map_err(|e| fail("encode", &e))?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let max = self.max_frame_bytes;
        let stream = &mut self.stream;
        let exchange = async {
            stream.write_all(&out).await?;
            stream.flush().await?;
            let len = stream.read_i32().await?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response of {len} bytes"),
                    )
                })?;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        let mut body = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| fail("response", &"timed out"))?
            .map_err(|e| fail("exchange", &e))?;
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| fail("response header", &e))?;
        if header.correlation_id != id {
            return Err(fail(
                "response",
                &format!(
                    "correlation id {} where {id} was due",
                    header.correlation_id
                ),
            ));
        }
        gatehouse_wire::check_response(api, version, &body).map_err(|e| fail("response", &e))?;
        Resp::decode(&mut body, version).map_err(|e| fail("response", &e))
    }
}

/// Where a followed topic's partitions are.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) topic_id: Option<String>,
    /// Partition → leader node.
    pub(crate) leaders: BTreeMap<i32, i32>,
    /// Partitions without a leader right now.
    pub(crate) leaderless: Vec<i32>,
    /// Node → (host, port).
    pub(crate) brokers: HashMap<i32, (String, i32)>,
}

pub(crate) async fn metadata(conn: &mut Conn, topic: &str) -> Result<Layout, RoundEnd> {
    let v = conn.metadata;
    let mut req =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    if v >= 4 {
        req.allow_auto_topic_creation = false;
    }
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, v, &req).await?;
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| format!("Metadata does not mention the topic {topic}"))?;
    if t.error_code != 0 {
        let e = format!("topic {topic}: {}", error_name(t.error_code));
        return Err(RoundEnd::Failed(e));
    }
    let mut layout = Layout {
        topic_id: (!t.topic_id.is_nil()).then(|| t.topic_id.to_string()),
        brokers: resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, (b.host.to_string(), b.port)))
            .collect(),
        ..Layout::default()
    };
    for p in &t.partitions {
        if p.error_code == 0 && p.leader_id.0 >= 0 && layout.brokers.contains_key(&p.leader_id.0) {
            layout.leaders.insert(p.partition_index, p.leader_id.0);
        } else {
            layout.leaderless.push(p.partition_index);
        }
    }
    if layout.leaders.is_empty() && layout.leaderless.is_empty() {
        return Err(RoundEnd::Failed(format!("topic {topic} has no partitions")));
    }
    Ok(layout)
}

async fn earliest_offset(conn: &mut Conn, topic: &str, partition: i32) -> Result<i64, RoundEnd> {
    let v = conn.list_offsets;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(EARLIEST)])]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, v, &req).await?;
    let p = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| format!("ListOffsets did not answer for partition {partition}"))?;
    if p.error_code != 0 {
        let e = format!(
            "ListOffsets for partition {partition}: {}",
            error_name(p.error_code)
        );
        return Err(if needs_refresh(p.error_code) {
            RoundEnd::Refresh(e)
        } else {
            RoundEnd::Failed(e)
        });
    }
    Ok(p.offset)
}

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
    use crate::records::{
        BatchHeader, Headers, Record, RecordBatch, ATTR_CONTROL, ATTR_TRANSACTIONAL,
    };
    use kafka_protocol::messages::ProducerId;

    fn purposes(p: &[&str]) -> Option<Vec<String>> {
        Some(p.iter().map(|s| s.to_string()).collect())
    }

    fn names(set: &ConsentSet) -> Vec<&str> {
        set.purposes().iter().map(String::as_str).collect()
    }

    #[test]
    fn apply_get_and_tombstone() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        assert!(store.get("u-000001").is_none());
        assert_eq!(store.next_offset(0), 0);
        let out = store
            .apply(0, 0, "u-000001", purposes(&["marketing", "analytics"]))
            .expect("ok");
        assert_eq!(out, RecordOutcome::Set);
        let set = store.get("u-000001").expect("ok");
        assert_eq!(names(&set), ["analytics", "marketing"]);
        assert!(set.allows("analytics") && !set.allows("personalization"));
        assert_eq!(store.next_offset(0), 1);
        // A later record replaces the purposes; an empty list is a record too.
        store.apply(0, 1, "u-000001", purposes(&[])).expect("ok");
        let set = store.get("u-000001").expect("ok");
        assert!(set.is_empty());
        // A tombstone removes the subject.
        let out = store.apply(0, 5, "u-000001", None).expect("ok");
        assert_eq!(out, RecordOutcome::Removed);
        assert!(store.get("u-000001").is_none());
        assert_eq!(store.next_offset(0), 6);
        assert!(store.is_empty());
        // Older records are ignored; partitions are independent.
        let out = store
            .apply(0, 3, "u-000001", purposes(&["analytics"]))
            .expect("ok");
        assert_eq!(out, RecordOutcome::Stale);
        assert!(store.get("u-000001").is_none());
        store
            .apply(1, 0, "u-000002", purposes(&["analytics"]))
            .expect("ok");
        assert_eq!(store.next_offsets(), BTreeMap::from([(0, 6), (1, 1)]));
        // Offsets move forward only.
        store.advance(1, 10).expect("ok");
        store.advance(1, 4).expect("ok");
        assert_eq!(store.next_offset(1), 10);
    }

    #[test]
    fn same_purposes_share_one_set() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        store
            .apply(0, 0, "a", purposes(&["analytics", "marketing"]))
            .expect("ok");
        store
            .apply(
                0,
                1,
                "b",
                purposes(&["marketing", "analytics", "analytics"]),
            )
            .expect("ok");
        store
            .apply(0, 2, "c", purposes(&["analytics"]))
            .expect("ok");
        let (a, b, c) = (
            store.get("a").expect("ok"),
            store.get("b").expect("ok"),
            store.get("c").expect("ok"),
        );
        assert!(ConsentSet::ptr_eq(&a, &b));
        assert_eq!(a, b);
        assert!(!ConsentSet::ptr_eq(&a, &c));
        assert_ne!(a, c);
        assert_eq!(store.distinct_sets(), 2);
        let hash = |s: &ConsentSet| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            s.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        // Usable as a memo key.
        let memo: HashMap<ConsentSet, bool> = [(a.clone(), true), (c.clone(), false)].into();
        assert_eq!(memo.get(&b), Some(&true));
        // Sets nobody holds are forgotten; held ones keep their identity.
        drop((b, c, memo));
        store.apply(0, 3, "c", None).expect("ok");
        assert_eq!(store.distinct_sets(), 1);
        store
            .apply(0, 4, "b", purposes(&["personalization"]))
            .expect("ok");
        store
            .apply(0, 5, "d", purposes(&["analytics", "marketing"]))
            .expect("ok");
        assert!(ConsentSet::ptr_eq(&a, &store.get("d").expect("ok")));
        assert_eq!(store.distinct_sets(), 2);
    }

    #[test]
    fn opening_waits_for_a_lock_about_to_be_released() {
        // sled releases a dropped database's lock from a background thread;
        // a store reopened in the same process meanwhile waits for it.
        let dir = tempfile::tempdir().expect("ok");
        let held = sled::open(dir.path()).expect("ok");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let store = ConsentStore::open(dir.path()).expect("waits, then opens");
        assert!(store.is_empty());
        release.join().expect("ok");
    }

    #[test]
    fn state_and_offsets_survive_a_restart() {
        let dir = tempfile::tempdir().expect("ok");
        {
            let store = ConsentStore::open(dir.path()).expect("ok");
            store.bind_source("consent.events", None).expect("ok");
            store
                .apply(0, 0, "a", purposes(&["analytics"]))
                .expect("ok");
            store
                .apply(0, 1, "b", purposes(&["analytics"]))
                .expect("ok");
            store
                .apply(0, 2, "c", purposes(&["marketing"]))
                .expect("ok");
            store.apply(0, 3, "c", None).expect("ok");
            store
                .apply(2, 7, "d", purposes(&["marketing"]))
                .expect("ok");
            store.advance(2, 12).expect("ok");
            // Dropped without an explicit flush.
        }
        let store = ConsentStore::open(dir.path()).expect("ok");
        assert_eq!(names(&store.get("a").expect("ok")), ["analytics"]);
        assert!(ConsentSet::ptr_eq(
            &store.get("a").expect("ok"),
            &store.get("b").expect("ok")
        ));
        assert!(store.get("c").is_none());
        assert_eq!(names(&store.get("d").expect("ok")), ["marketing"]);
        assert_eq!(store.next_offsets(), BTreeMap::from([(0, 4), (2, 12)]));
        assert_eq!(store.len(), 3);
        // Following the same topic keeps the state; another one resets it.
        assert!(!store
            .bind_source("consent.events", Some("id-1"))
            .expect("ok"));
        assert_eq!(store.len(), 3);
        assert!(store
            .bind_source("consent.events", Some("id-2"))
            .expect("ok"));
        assert!(store.is_empty());
        assert_eq!(store.next_offset(0), 0);
        store
            .apply(0, 0, "a", purposes(&["analytics"]))
            .expect("ok");
        assert!(store.bind_source("consent.other", None).expect("ok"));
        assert!(store.is_empty());
    }

    #[test]
    fn unreadable_values_withdraw_and_keyless_records_are_skipped() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        let ok = br#"{"purposes": ["analytics"], "updated_at": "2026-11-26T08:00:00Z"}"#;
        let long = format!(r#"{{"purposes": ["{}"]}}"#, "x".repeat(MAX_PURPOSE_LEN + 1));
        let many = format!(
            r#"{{"purposes": [{}]}}"#,
            vec![r#""p""#; MAX_PURPOSES + 1].join(",")
        );
        let bad_values: Vec<&[u8]> = vec![
            // A withdrawal to JavaScript and Python (the last member wins).
            br#"{"purposes": ["analytics"], "purposes": []}"#,
            br#"{"purposes": "none"}"#,
            b"not json",
            b"null",
            br#"{"purposes": [1, 2]}"#,
            br#"{"granted": ["analytics"]}"#,
            br#"["analytics"]"#,
            long.as_bytes(),
            many.as_bytes(),
            &[0xff, 0xfe],
        ];
        let mut offset = 0;
        for (i, v) in bad_values.iter().enumerate() {
            assert_eq!(
                store
                    .apply_record(0, offset, Some(b"u-1"), Some(ok))
                    .expect("ok"),
                RecordOutcome::Set
            );
            assert_eq!(
                store
                    .apply_record(0, offset + 1, Some(b"u-1"), Some(v))
                    .expect("ok"),
                RecordOutcome::Withdrawn,
                "case {i}"
            );
            assert!(
                store.get("u-1").is_none(),
                "case {i}: consent left standing"
            );
            assert!(validate_record(Some(b"u-1"), Some(v)).is_err(), "case {i}");
            offset += 2;
        }
        assert_eq!(
            store
                .apply_record(0, offset, Some(b"u-1"), Some(ok))
                .expect("ok"),
            RecordOutcome::Set
        );
        offset += 1;
        type Raw<'a> = Option<&'a [u8]>;
        let no_subject: Vec<(Raw<'_>, Raw<'_>)> = vec![
            (None, Some(ok)),
            (Some(&[0xff, 0x00]), Some(ok)),
            (Some(b""), Some(ok)),
            (None, None),
        ];
        for (i, (k, v)) in no_subject.iter().enumerate() {
            assert_eq!(
                store.apply_record(0, offset, *k, *v).expect("ok"),
                RecordOutcome::Malformed,
                "case {i}"
            );
            assert_eq!(store.next_offset(0), offset + 1);
            assert!(validate_record(*k, *v).is_err(), "case {i}");
            offset += 1;
        }
        assert_eq!(
            store.malformed(),
            (bad_values.len() + no_subject.len()) as u64
        );
        // A record naming no subject changes nobody's consent.
        assert_eq!(names(&store.get("u-1").expect("ok")), ["analytics"]);
        assert!(validate_record(Some(b"u-1"), Some(ok)).is_ok());
        assert!(validate_record(Some(b"u-1"), None).is_ok());
        // A null value is a tombstone, not malformed.
        let next = store.next_offset(0);
        assert_eq!(
            store.apply_record(0, next, Some(b"u-1"), None).expect("ok"),
            RecordOutcome::Removed
        );
        assert!(store.get("u-1").is_none());
    }

    #[test]
    fn reset_partition_drops_only_its_subjects() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        store
            .apply(0, 0, "a", purposes(&["analytics"]))
            .expect("ok");
        store
            .apply(1, 0, "b", purposes(&["analytics"]))
            .expect("ok");
        store
            .apply(0, 1, "c", purposes(&["marketing"]))
            .expect("ok");
        assert_eq!(store.reset_partition(0, 40).expect("ok"), 2);
        assert!(store.get("a").is_none() && store.get("c").is_none());
        assert!(store.get("b").is_some());
        assert_eq!(store.next_offset(0), 40);
        assert_eq!(store.distinct_sets(), 1);
        drop(store);
        let store = ConsentStore::open(dir.path()).expect("ok");
        assert!(store.get("a").is_none());
        assert_eq!(store.next_offset(0), 40);
    }

    #[test]
    fn a_corrupt_copy_is_rebuilt_from_scratch() {
        let dir = tempfile::tempdir().expect("ok");
        {
            let store = ConsentStore::open(dir.path()).expect("ok");
            store
                .apply(0, 0, "a", purposes(&["analytics"]))
                .expect("ok");
            store
                .subjects
                .insert(b"b", b"garbage".as_slice())
                .expect("ok");
        }
        let store = ConsentStore::open(dir.path()).expect("ok");
        assert!(store.is_empty());
        assert_eq!(store.next_offset(0), 0);
    }

    #[tokio::test]
    async fn wait_until_sees_applied_offsets() {
        let dir = tempfile::tempdir().expect("ok");
        let store = Arc::new(ConsentStore::open(dir.path()).expect("ok"));
        let s = store.clone();
        let waiter = tokio::spawn(async move { s.wait_until(3, 2).await });
        tokio::task::yield_now().await;
        store
            .apply(3, 0, "a", purposes(&["analytics"]))
            .expect("ok");
        assert!(!waiter.is_finished());
        store
            .apply(3, 1, "b", purposes(&["analytics"]))
            .expect("ok");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("ok")
            .expect("ok");
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

    #[test]
    fn versions_are_negotiated() {
        let offered = HashMap::from([
            (ApiKey::Fetch as i16, (4, 17)),
            (ApiKey::Metadata as i16, (0, 8)),
            (ApiKey::ListOffsets as i16, (8, 10)),
        ]);
        assert_eq!(
            pick_version(&offered, ApiKey::Fetch, FETCH_VERSIONS),
            Ok(12)
        );
        assert_eq!(
            pick_version(&offered, ApiKey::Metadata, METADATA_VERSIONS),
            Ok(8)
        );
        assert!(pick_version(&offered, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS).is_err());
        assert!(pick_version(&offered, ApiKey::Produce, (0, 9)).is_err());
        // Every version the follower speaks is one the wire guard checks.
        for (api, (lo, hi)) in [
            (ApiKey::Metadata, METADATA_VERSIONS),
            (ApiKey::Fetch, FETCH_VERSIONS),
            (ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS),
            (ApiKey::ApiVersions, (0, 0)),
        ] {
            for v in lo..=hi {
                assert!(
                    !matches!(
                        gatehouse_wire::check_response(api, v, &[]),
                        Err(gatehouse_wire::GuardError::UnknownApi { .. }
                            | gatehouse_wire::GuardError::UnsupportedVersion { .. })
                    ),
                    "{api:?} v{v}"
                );
            }
        }
        assert!(needs_refresh(6) && needs_refresh(3) && !needs_refresh(29));
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
        let (follower, task) = ConsentFollower::with_upstream(
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
