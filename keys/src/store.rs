//! Per-subject data keys in sled, replicated through a compacted topic.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::cache::KeyCache;
use crate::id::{random_key_material, to_hex, DATA_KEY_LEN};
use crate::{DataKey, KekProvider, KeyError, KeyId, WrappedKey};

/// Label given to the provider's `mac` to derive the subject-tag secret.
const SUBJECT_TAG_LABEL: &[u8] = b"gatehouse-keys/subject-tag-secret/v1";
/// Bytes of HMAC kept in a subject tag (128 bits, 32 hex characters).
const TAG_LEN: usize = 16;
const RECORD_VERSION: u32 = 1;

/// Tree layout. `k` + key id -> record JSON (the same bytes that are published).
const P_KEY: u8 = b'k';
/// `s` + subject tag + key id -> "" (live) or "d" (destroyed).
const P_SUBJECT: u8 = b's';
/// `u` + key id -> "" : record not yet confirmed published.
const P_UNPUBLISHED: u8 = b'u';
const DESTROYED_MARK: &[u8] = b"d";

type Tag = [u8; TAG_LEN];

/// A key record, as stored in sled and as published on the key topic.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
struct KeyRecord {
    v: u32,
    /// Hex subject tag; empty when only a tombstone was ever seen.
    subject_tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kek_id: Option<String>,
    /// Base64 of the wrapped bytes; absent once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
    #[serde(default)]
    created_ms: u64,
    #[serde(default)]
    destroyed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    destroyed_ms: Option<u64>,
}

impl KeyRecord {
    fn wrapped_key(&self, id: KeyId) -> Result<WrappedKey, KeyError> {
        let corrupt = |reason: &str| KeyError::Corrupt {
            key: id.to_string(),
            reason: reason.to_owned(),
        };
        let kek_id = self.kek_id.clone().ok_or_else(|| corrupt("no kek id"))?;
        let bytes = STANDARD
            .decode(
                self.wrapped
                    .as_deref()
                    .ok_or_else(|| corrupt("no wrapped key"))?,
            )
            .map_err(|_| corrupt("wrapped key is not base64"))?;
        Ok(WrappedKey { kek_id, bytes })
    }

    fn destroyed_copy(&self, now: u64) -> KeyRecord {
        KeyRecord {
            v: RECORD_VERSION,
            subject_tag: self.subject_tag.clone(),
            kek_id: None,
            wrapped: None,
            created_ms: self.created_ms,
            destroyed: true,
            destroyed_ms: Some(self.destroyed_ms.unwrap_or(now)),
        }
    }

    fn info(&self, id: KeyId) -> KeyInfo {
        KeyInfo {
            id,
            subject_tag: self.subject_tag.clone(),
            kek_id: self.kek_id.clone().unwrap_or_default(),
            created_ms: self.created_ms,
            destroyed: self.destroyed,
        }
    }
}

/// A record to publish on the key topic: (key id, record key bytes, record value bytes).
/// A plain tuple alias: `(KeyId, Vec<u8>, Vec<u8>)`.
pub type UnpublishedRecord = (KeyId, Vec<u8>, Vec<u8>);

/// What applying a replicated record changed in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicatedChange {
    /// Nothing: already known (or destroyed here, which is final).
    Unchanged,
    /// A data key new to this store.
    Added,
    /// A known key, now wrapped under another KEK (a rotation elsewhere).
    Rewrapped,
    /// A key this store held (or had never seen) is now destroyed here.
    Destroyed,
}

/// An operator's view of one data key. Holds no key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key id.
    pub id: KeyId,
    /// Keyed tag of the subject (hex), never the subject id; empty if unknown.
    pub subject_tag: String,
    /// The KEK wrapping the key; empty once destroyed.
    pub kek_id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Whether the key was destroyed (crypto-shredded).
    pub destroyed: bool,
}

struct Inner {
    tree: sled::Tree,
    provider: Arc<dyn KekProvider>,
    tag_key: hmac::Key,
    cache: KeyCache,
    /// Keys destroyed since the store opened (see [`KeyStore::destructions`]).
    destroyed: AtomicU64,
    /// Subject tag -> key id chosen for writes (bounded by the cache capacity).
    writers: Mutex<HashMap<Tag, KeyId>>,
    /// Serializes every change of records, so choices and queues stay consistent.
    change: Mutex<()>,
    /// Record bytes handed out by `unpublished`, to confirm in `mark_published`.
    handed_out: Mutex<HashMap<KeyId, Vec<u8>>>,
}

/// Per-subject data keys in a sled tree, wrapped by a [`KekProvider`], with
/// unwrapped keys cached in memory (bounded). A cheap-to-clone handle.
///
/// Subject ids are never stored: records carry a keyed subject tag
/// ([`KeyStore::subject_tag`]).
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn key_key(id: KeyId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = P_KEY;
    k[1..].copy_from_slice(&id.0);
    k
}

fn unpublished_key(id: KeyId) -> [u8; 17] {
    let mut k = key_key(id);
    k[0] = P_UNPUBLISHED;
    k
}

fn subject_prefix(tag: &Tag) -> [u8; 1 + TAG_LEN] {
    let mut k = [0u8; 1 + TAG_LEN];
    k[0] = P_SUBJECT;
    k[1..].copy_from_slice(tag);
    k
}

fn subject_key(tag: &Tag, id: KeyId) -> [u8; 1 + TAG_LEN + 16] {
    let mut k = [0u8; 1 + TAG_LEN + 16];
    k[..1 + TAG_LEN].copy_from_slice(&subject_prefix(tag));
    k[1 + TAG_LEN..].copy_from_slice(&id.0);
    k
}

/// The key id at the end of a tree key (`k`/`u` + id, or `s` + tag + id).
fn trailing_id(k: &[u8]) -> Result<KeyId, KeyError> {
    let start = k.len().checked_sub(16).ok_or_else(|| KeyError::Corrupt {
        key: to_hex(k),
        reason: "short store key".to_owned(),
    })?;
    let mut id = [0u8; 16];
    id.copy_from_slice(&k[start..]);
    Ok(KeyId(id))
}

fn parse_tag(hex: &str) -> Option<Tag> {
    if hex.len() != 2 * TAG_LEN {
        return None;
    }
    // A subject tag has the shape of a key id's hex (16 bytes).
    KeyId::from_hex_bytes(hex.as_bytes()).ok().map(|id| id.0)
}

impl KeyStore {
    /// Opens the store on a sled tree the caller opened for keys (e.g.
    /// `db.open_tree("keys")`). Calls the provider's `mac` once to derive the
    /// subject-tag secret. `cache_capacity` bounds the unwrapped keys kept in
    /// memory (0 disables the cache; every lookup then unwraps).
    pub fn open(
        tree: sled::Tree,
        provider: Arc<dyn KekProvider>,
        cache_capacity: usize,
    ) -> Result<Self, KeyError> {
        let secret = zeroize::Zeroizing::new(provider.mac(SUBJECT_TAG_LABEL)?);
        Ok(KeyStore {
            inner: Arc::new(Inner {
                tree,
                provider,
                tag_key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_slice()),
                cache: KeyCache::new(cache_capacity),
                destroyed: AtomicU64::new(0),
                writers: Mutex::new(HashMap::new()),
                change: Mutex::new(()),
                handed_out: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn tag_bytes(&self, subject: &str) -> Tag {
        let mac = hmac::sign(&self.inner.tag_key, subject.as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac.as_ref()[..TAG_LEN]);
        tag
    }

    /// The keyed tag of a subject id (HMAC-SHA256 under a secret derived from
    /// the provider's `mac`, 128 bits, hex). Stored instead of subject ids, so
    /// the key store, the key topic and audit never hold subject ids in clear.
    /// The same on every replica that uses the same provider.
    pub fn subject_tag(&self, subject: &str) -> String {
        to_hex(&self.tag_bytes(subject))
    }

    /// Keys destroyed (here or by a replicated record) since the store opened,
    /// counted once each is unobtainable: what was decrypted with the count at one
    /// value holds until it moves. Keys created do not move it (nothing that was
    /// decrypted before changes).
    pub fn destructions(&self) -> u64 {
        self.inner.destroyed.load(Ordering::SeqCst)
    }

    /// The number of unwrapped keys held in memory now.
    pub fn cached_keys(&self) -> usize {
        self.inner.cache.len()
    }

    fn record(&self, id: KeyId) -> Result<Option<(KeyRecord, sled::IVec)>, KeyError> {
        match self.inner.tree.get(key_key(id))? {
            None => Ok(None),
            Some(bytes) => {
                let rec = serde_json::from_slice(&bytes).map_err(|_| KeyError::Corrupt {
                    key: id.to_string(),
                    reason: "record is not valid JSON".to_owned(),
                })?;
                Ok(Some((rec, bytes)))
            }
        }
    }

    fn encode(rec: &KeyRecord) -> Result<Vec<u8>, KeyError> {
        serde_json::to_vec(rec).map_err(|_| KeyError::Crypto("record serialization"))
    }

    fn unwrap_material(
        &self,
        id: KeyId,
        wrapped: &WrappedKey,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        let material = self.inner.provider.unwrap(wrapped)?;
        if material.len() != DATA_KEY_LEN {
            return Err(KeyError::Corrupt {
                key: id.to_string(),
                reason: "unwrapped key is not 32 bytes".to_owned(),
            });
        }
        Ok(material)
    }

    /// The smallest live key id of the subject.
    fn first_live(&self, tag: &Tag) -> Result<Option<KeyId>, KeyError> {
        for entry in self.inner.tree.scan_prefix(subject_prefix(tag)) {
            let (k, v) = entry?;
            if v.is_empty() {
                return trailing_id(&k).map(Some);
            }
        }
        Ok(None)
    }

    /// The key new data of this subject is encrypted under: the subject's live
    /// key with the smallest id if it has any (so replicas that created keys
    /// concurrently converge once they exchanged records), else a fresh random
    /// key, wrapped, stored durably (flushed) and queued for publication.
    pub fn key_for_write(&self, subject: &str) -> Result<Arc<DataKey>, KeyError> {
        let tag = self.tag_bytes(subject);
        let chosen = lock(&self.inner.writers).get(&tag).copied();
        if let Some(id) = chosen {
            if let Some(key) = self.key(id)? {
                return Ok(key);
            }
        }

        let _change = lock(&self.inner.change);
        if let Some(id) = self.first_live(&tag)? {
            let key = self.key(id)?.ok_or_else(|| KeyError::Corrupt {
                key: id.to_string(),
                reason: "subject index names a key that is not live".to_owned(),
            })?;
            self.remember_writer(tag, id);
            return Ok(key);
        }

        let id = KeyId::random()?;
        let material = random_key_material()?;
        let wrapped = self.inner.provider.wrap(material.as_slice())?;
        let rec = KeyRecord {
            v: RECORD_VERSION,
            subject_tag: to_hex(&tag),
            kek_id: Some(wrapped.kek_id.clone()),
            wrapped: Some(STANDARD.encode(&wrapped.bytes)),
            created_ms: now_ms(),
            destroyed: false,
            destroyed_ms: None,
        };
        let mut batch = sled::Batch::default();
        batch.insert(&key_key(id)[..], Self::encode(&rec)?);
        batch.insert(&subject_key(&tag, id)[..], &[]);
        batch.insert(&unpublished_key(id)[..], &[]);
        self.inner.tree.apply_batch(batch)?;
        // Data encrypted under this key may leave the proxy right away: the key must survive a crash.
        self.inner.tree.flush()?;
        let key = self
            .inner
            .cache
            .insert(Arc::new(DataKey::from_bytes(id, material.as_slice())?));
        self.remember_writer(tag, id);
        tracing::debug!(key_id = %id, kek_id = %wrapped.kek_id, "created data key");
        Ok(key)
    }

    fn remember_writer(&self, tag: Tag, id: KeyId) {
        let mut writers = lock(&self.inner.writers);
        if writers.len() >= self.inner.cache_capacity_for_writers() {
            writers.clear();
        }
        writers.insert(tag, id);
    }

    /// The key with this id, unwrapped (cached). `Ok(None)` when unknown or destroyed.
    pub fn key(&self, id: KeyId) -> Result<Option<Arc<DataKey>>, KeyError> {
        if let Some(key) = self.inner.cache.get(&id) {
            return Ok(Some(key));
        }
        let Some((rec, _)) = self.record(id)? else {
            return Ok(None);
        };
        if rec.destroyed {
            return Ok(None);
        }
        let material = self.unwrap_material(id, &rec.wrapped_key(id)?)?;
        let key = self
            .inner
            .cache
            .insert(Arc::new(DataKey::from_bytes(id, material.as_slice())?));
        // A destruction may have run while we unwrapped: it evicts after
        // marking the record, so checking the record after inserting suffices.
        if !matches!(self.record(id)?, Some((r, _)) if !r.destroyed) {
            self.inner.cache.remove(&id);
            return Ok(None);
        }
        Ok(Some(key))
    }

    /// Destroys every key of the subject (crypto-shredding): the wrapped bytes
    /// are deleted, a destroyed marker stays (so a late replicated copy cannot
    /// resurrect the key), cache entries are evicted, and each destruction is
    /// queued for publication. Returns the ids destroyed.
    pub fn destroy_subject(&self, subject: &str) -> Result<Vec<KeyId>, KeyError> {
        let tag = self.tag_bytes(subject);
        let _change = lock(&self.inner.change);
        let now = now_ms();
        let mut ids = Vec::new();
        let mut batch = sled::Batch::default();
        for entry in self.inner.tree.scan_prefix(subject_prefix(&tag)) {
            let (k, v) = entry?;
            if !v.is_empty() {
                continue;
            }
            let id = trailing_id(&k)?;
            let rec = match self.record(id)? {
                Some((rec, _)) => rec.destroyed_copy(now),
                None => KeyRecord {
                    v: RECORD_VERSION,
                    subject_tag: to_hex(&tag),
                    kek_id: None,
                    wrapped: None,
                    created_ms: 0,
                    destroyed: true,
                    destroyed_ms: Some(now),
                },
            };
            batch.insert(&key_key(id)[..], Self::encode(&rec)?);
            batch.insert(&subject_key(&tag, id)[..], DESTROYED_MARK);
            batch.insert(&unpublished_key(id)[..], &[]);
            ids.push(id);
        }
        self.inner.tree.apply_batch(batch)?;
        self.inner.tree.flush()?;
        for id in &ids {
            self.inner.cache.remove(id);
        }
        self.inner
            .destroyed
            .fetch_add(ids.len() as u64, Ordering::SeqCst);
        lock(&self.inner.writers).remove(&tag);
        tracing::info!(keys = ids.len(), subject_tag = %to_hex(&tag), "destroyed subject data keys");
        Ok(ids)
    }

    /// Rotates the provider's KEK and re-wraps every live data key under the
    /// new KEK, without changing any key id or any data. Re-wrapped records
    /// are queued for publication. Returns (new KEK id, keys re-wrapped).
    ///
    /// If it fails part-way, running it again re-wraps the rest.
    pub fn rotate_kek(&self) -> Result<(String, usize), KeyError> {
        let _change = lock(&self.inner.change);
        let new_kek = self.inner.provider.rotate()?;
        let mut count = 0;
        for entry in self.inner.tree.scan_prefix([P_KEY]) {
            let (k, bytes) = entry?;
            let id = trailing_id(&k)?;
            let mut rec: KeyRecord =
                serde_json::from_slice(&bytes).map_err(|_| KeyError::Corrupt {
                    key: id.to_string(),
                    reason: "record is not valid JSON".to_owned(),
                })?;
            if rec.destroyed || rec.kek_id.as_deref() == Some(new_kek.as_str()) {
                continue;
            }
            let material = self.unwrap_material(id, &rec.wrapped_key(id)?)?;
            let wrapped = self.inner.provider.wrap(material.as_slice())?;
            rec.kek_id = Some(wrapped.kek_id);
            rec.wrapped = Some(STANDARD.encode(&wrapped.bytes));
            let mut batch = sled::Batch::default();
            batch.insert(&key_key(id)[..], Self::encode(&rec)?);
            batch.insert(&unpublished_key(id)[..], &[]);
            self.inner.tree.apply_batch(batch)?;
            count += 1;
        }
        self.inner.tree.flush()?;
        tracing::info!(kek_id = %new_kek, rewrapped = count, "rotated key-encryption key");
        Ok((new_kek, count))
    }

    /// Every key record, destroyed ones included. Never exposes key material.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        let mut out = Vec::new();
        for entry in self.inner.tree.scan_prefix([P_KEY]) {
            let (k, _) = entry?;
            let id = trailing_id(&k)?;
            if let Some((rec, _)) = self.record(id)? {
                out.push(rec.info(id));
            }
        }
        Ok(out)
    }

    /// The keys of one subject, destroyed ones included, by key id.
    pub fn subject_keys(&self, subject: &str) -> Result<Vec<KeyInfo>, KeyError> {
        let tag = self.tag_bytes(subject);
        let mut out = Vec::new();
        for entry in self.inner.tree.scan_prefix(subject_prefix(&tag)) {
            let (k, _) = entry?;
            let id = trailing_id(&k)?;
            if let Some((rec, _)) = self.record(id)? {
                out.push(rec.info(id));
            }
        }
        Ok(out)
    }

    /// Records created, re-wrapped or destroyed locally that have not been
    /// confirmed published yet: (key id, record key bytes, record value bytes).
    ///
    /// The record key is the key id in hex; the value is JSON:
    /// `{"v":1,"subject_tag":"<hex>","kek_id":"kek-2","wrapped":"<base64>","created_ms":…,"destroyed":false}`
    /// or, once destroyed, `{"v":1,"subject_tag":"<hex>","created_ms":…,"destroyed":true,"destroyed_ms":…}`.
    /// Publish destroyed markers as values (not tombstones) so that compaction keeps them.
    pub fn unpublished(&self) -> Result<Vec<UnpublishedRecord>, KeyError> {
        let mut handed = lock(&self.inner.handed_out);
        let mut out = Vec::new();
        for entry in self.inner.tree.scan_prefix([P_UNPUBLISHED]) {
            let (k, _) = entry?;
            let id = trailing_id(&k)?;
            if let Some((_, bytes)) = self.record(id)? {
                handed.insert(id, bytes.to_vec());
                out.push((id, id.hex_bytes().to_vec(), bytes.to_vec()));
            }
        }
        Ok(out)
    }

    /// Confirms that the record of `id` last returned by [`KeyStore::unpublished`]
    /// was published. If the record changed since (e.g. destroyed), it stays queued.
    pub fn mark_published(&self, id: KeyId) -> Result<(), KeyError> {
        let _change = lock(&self.inner.change);
        let handed = lock(&self.inner.handed_out).remove(&id);
        if let Some(handed) = handed {
            let current = self.inner.tree.get(key_key(id))?;
            if current.as_deref() != Some(handed.as_slice()) {
                return Ok(());
            }
        }
        self.inner.tree.remove(unpublished_key(id))?;
        Ok(())
    }

    /// Applies one record read from the key topic (`value` `None` = tombstone =
    /// destroyed).
    ///
    /// Idempotent. A destroyed key never comes back: its destroyed marker
    /// stays in the store, and a later live record of the same id (a replayed
    /// copy of its old record, say) is ignored. A live record is checked
    /// by unwrapping it: a record wrapped under a KEK the provider does not
    /// know is an error that names the KEK id. A live record for a key held
    /// under another KEK (a rotation on another replica) replaces the local
    /// one only if it unwraps to the same key.
    ///
    /// The caller must have authenticated the record first (see
    /// [`crate::StateRecordMac`]): this method trusts what it is given.
    pub fn apply_replicated(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<ReplicatedChange, KeyError> {
        let id = KeyId::from_hex_bytes(key)
            .map_err(|_| KeyError::InvalidRecord("record key is not a key id".to_owned()))?;
        let incoming: Option<KeyRecord> = match value {
            None => None,
            Some(v) => {
                let rec: KeyRecord = serde_json::from_slice(v).map_err(|_| {
                    KeyError::InvalidRecord(format!("record of key {id} is not valid JSON"))
                })?;
                if rec.v != RECORD_VERSION {
                    return Err(KeyError::InvalidRecord(format!(
                        "record of key {id} has unsupported version {}",
                        rec.v
                    )));
                }
                Some(rec)
            }
        };
        let _change = lock(&self.inner.change);
        let existing = self.record(id)?.map(|(r, _)| r);
        match incoming {
            None => self.apply_destroyed(id, existing, None),
            Some(rec) if rec.destroyed => self.apply_destroyed(id, existing, Some(rec)),
            Some(rec) => self.apply_live(id, existing, rec),
        }
    }

    fn apply_destroyed(
        &self,
        id: KeyId,
        existing: Option<KeyRecord>,
        incoming: Option<KeyRecord>,
    ) -> Result<ReplicatedChange, KeyError> {
        if existing.as_ref().is_some_and(|r| r.destroyed) {
            return Ok(ReplicatedChange::Unchanged);
        }
        let now = now_ms();
        let rec = match (&existing, &incoming) {
            (Some(e), Some(i)) => {
                let mut r = e.destroyed_copy(now);
                r.destroyed_ms = i.destroyed_ms.or(Some(now));
                r
            }
            (Some(e), None) => e.destroyed_copy(now),
            (None, Some(i)) => i.destroyed_copy(now),
            (None, None) => KeyRecord {
                v: RECORD_VERSION,
                subject_tag: String::new(),
                kek_id: None,
                wrapped: None,
                created_ms: 0,
                destroyed: true,
                destroyed_ms: Some(now),
            },
        };
        let tag = parse_tag(&rec.subject_tag);
        let mut batch = sled::Batch::default();
        batch.insert(&key_key(id)[..], Self::encode(&rec)?);
        if let Some(tag) = &tag {
            batch.insert(&subject_key(tag, id)[..], DESTROYED_MARK);
        }
        self.inner.tree.apply_batch(batch)?;
        self.inner.tree.flush()?;
        self.inner.cache.remove(&id);
        self.inner.destroyed.fetch_add(1, Ordering::SeqCst);
        if let Some(tag) = &tag {
            lock(&self.inner.writers).remove(tag);
        }
        tracing::debug!(key_id = %id, "applied replicated key destruction");
        Ok(ReplicatedChange::Destroyed)
    }

    fn apply_live(
        &self,
        id: KeyId,
        existing: Option<KeyRecord>,
        rec: KeyRecord,
    ) -> Result<ReplicatedChange, KeyError> {
        let invalid = |what: &str| KeyError::InvalidRecord(format!("record of key {id}: {what}"));
        let tag = parse_tag(&rec.subject_tag).ok_or_else(|| invalid("bad subject tag"))?;
        let wrapped = rec
            .wrapped_key(id)
            .map_err(|_| invalid("missing or malformed wrapped key"))?;
        match existing {
            Some(e) if e.destroyed => Ok(ReplicatedChange::Unchanged),
            Some(e) if e.kek_id == rec.kek_id => Ok(ReplicatedChange::Unchanged),
            Some(e) => {
                // Re-wrapped elsewhere: take it only if it is the same key.
                let ours = self.unwrap_material(id, &e.wrapped_key(id)?)?;
                let theirs = self.unwrap_material(id, &wrapped)?;
                if !constant_time_eq(&ours, &theirs) {
                    return Err(invalid("conflicts with the local key of the same id"));
                }
                let mut updated = e;
                updated.kek_id = rec.kek_id;
                updated.wrapped = rec.wrapped;
                self.inner
                    .tree
                    .insert(key_key(id), Self::encode(&updated)?)?;
                Ok(ReplicatedChange::Rewrapped)
            }
            None => {
                let material = self.unwrap_material(id, &wrapped)?;
                let stored = KeyRecord {
                    destroyed_ms: None,
                    ..rec
                };
                let mut batch = sled::Batch::default();
                batch.insert(&key_key(id)[..], Self::encode(&stored)?);
                batch.insert(&subject_key(&tag, id)[..], &[]);
                self.inner.tree.apply_batch(batch)?;
                if self.inner.cache.has_room() {
                    self.inner
                        .cache
                        .insert(Arc::new(DataKey::from_bytes(id, material.as_slice())?));
                }
                // The subject may now have a smaller key id: choose again.
                lock(&self.inner.writers).remove(&tag);
                tracing::debug!(key_id = %id, "applied replicated data key");
                Ok(ReplicatedChange::Added)
            }
        }
    }
}

impl Inner {
    fn cache_capacity_for_writers(&self) -> usize {
        // Bounded like the key cache, with a floor so tiny caches still help.
        self.cache.capacity().max(16)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("provider", &self.inner.provider)
            .field("cached_keys", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}
