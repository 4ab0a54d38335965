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
//!   governs, see [`crate::codec::json`]; at most [`MAX_PURPOSES`] names of at
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
//!
//! The follower that keeps the store up to date is [`crate::cluster::follower`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::client::Upstream;
use crate::cluster::follower::{follow, FollowerStatus, FollowerTask, Materialized, Settings};
use crate::cluster::open_sled;

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
    /// Counts the changes of `state` (see [`ConsentStore::generation`]).
    generation: AtomicU64,
}

/// The state, written; if it was changed (mutably borrowed), the store's
/// generation moves on when the guard is dropped (the lock still held), so
/// whoever reads a generation reads a state at least that recent. Holding the
/// lock to move offsets only leaves the generation alone.
struct Writing<'a> {
    guard: RwLockWriteGuard<'a, State>,
    generation: &'a AtomicU64,
    changed: bool,
}

impl std::ops::Deref for Writing<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Writing<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        &mut self.guard
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if self.changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }
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
            generation: AtomicU64::new(0),
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

    fn write(&self) -> Writing<'_> {
        Writing {
            guard: self.state.write().unwrap_or_else(|p| p.into_inner()),
            generation: &self.generation,
            changed: false,
        }
    }

    /// Moves on whenever consent may have changed: what was decided with the
    /// consent of one generation holds until it moves (the view cache's key).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
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
/// is the I-JSON rule of [`crate::codec::json`]).
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
        _headers: &crate::codec::records::Headers,
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

/// A handle on the background task following the consent topic. Cloning it
/// does not start another task.
#[derive(Debug, Clone)]
pub struct ConsentFollower {
    store: Arc<ConsentStore>,
    status: watch::Receiver<FollowerStatus>,
}

impl ConsentFollower {
    /// The handle and the task following `topic` into `store` through
    /// `upstream`, for a caller that spawns the task itself (among the
    /// proxy's tasks, so that shutdown waits for it).
    pub(crate) fn new(
        upstream: Arc<dyn Upstream>,
        settings: Settings,
        topic: String,
        store: Arc<ConsentStore>,
    ) -> (Self, FollowerTask) {
        let (status, task) = follow(upstream, settings, topic, store.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn purposes(p: &[&str]) -> Option<Vec<String>> {
        Some(p.iter().map(|s| s.to_string()).collect())
    }

    fn names(set: &ConsentSet) -> Vec<&str> {
        set.purposes().iter().map(String::as_str).collect()
    }

    /// The generation (the view cache's key) moves with every consent
    /// change, and not when only offsets move (a stale record, an advance).
    #[test]
    fn the_generation_moves_with_consent_not_with_offsets() {
        let dir = tempfile::tempdir().expect("ok");
        let store = ConsentStore::open(dir.path()).expect("ok");
        let g0 = store.generation();
        store
            .apply(0, 0, "u-000001", purposes(&["analytics"]))
            .expect("ok");
        let g1 = store.generation();
        assert!(g1 > g0);
        store.advance(0, 10).expect("ok");
        store
            .apply(0, 3, "u-000001", purposes(&["marketing"]))
            .expect("stale");
        assert_eq!(store.generation(), g1);
        store.apply(0, 11, "u-000001", None).expect("ok");
        assert!(store.generation() > g1);
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
}
