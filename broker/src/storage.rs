//! Object storage: where every durable byte of the broker lives.
//!
//! Layout under the store's root:
//!
//! ```text
//! cluster.json                 cluster id, written once
//! wal/00000000000000000042     commit object 42 (see [`crate::log`])
//! snapshots/00000000000000000040.json   state as of commit 40
//! compacted/00000000000000000007   compaction output 7 (batches only)
//! ```
//!
//! Batches live in commit objects (as produced) or in compaction outputs.
//! Both are named by a `u64` object id: commit objects by their sequence
//! number, compaction outputs by [`COMPACTED`] plus their reserved id (see
//! [`compacted_object`]), so the index, the reference counts and the cache
//! need not tell them apart.
//!
//! Commit objects are written with `PutMode::Create`: two brokers that
//! somehow share a store cannot both write commit `n`, so the log stays
//! linear and the loser learns it was fenced.
//!
//! Recently written objects stay in a bounded memory cache, so consumers
//! that follow the tail never touch the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::StorageError;

/// Handle on the object store plus the read cache.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    cache: Arc<Mutex<ObjectCache>>,
    description: String,
}

#[derive(Debug, Default)]
struct ObjectCache {
    budget: usize,
    used: usize,
    objects: BTreeMap<u64, Bytes>,
}

impl ObjectCache {
    fn insert(&mut self, seq: u64, data: Bytes) {
        if data.len() > self.budget {
            return;
        }
        self.used += data.len();
        if let Some(old) = self.objects.insert(seq, data) {
            self.used -= old.len();
        }
        // Commit sequence numbers grow with time, so dropping the lowest is
        // dropping the oldest: tailing consumers keep hitting the cache.
        while self.used > self.budget {
            match self.objects.pop_first() {
                Some((_, d)) => self.used -= d.len(),
                None => break,
            }
        }
    }
}

pub(crate) fn wal_path(seq: u64) -> Path {
    Path::from(format!("wal/{seq:020}"))
}

/// Object ids at or above this name compaction outputs, not commit objects.
pub const COMPACTED: u64 = 1 << 62;

/// The object id of compaction output `id`.
pub fn compacted_object(id: u64) -> u64 {
    COMPACTED | id
}

/// Whether `object` is a compaction output.
pub fn is_compacted(object: u64) -> bool {
    object >= COMPACTED
}

/// Where object `object` (a commit sequence or a compaction output) lives.
pub(crate) fn object_path(object: u64) -> Path {
    if is_compacted(object) {
        Path::from(format!("compacted/{:020}", object - COMPACTED))
    } else {
        wal_path(object)
    }
}

fn snapshot_path(seq: u64) -> Path {
    Path::from(format!("snapshots/{seq:020}.json"))
}

fn parse_seq(path: &Path, prefix: &str, suffix: &str) -> Option<u64> {
    path.as_ref()
        .strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

impl Storage {
    /// Opens the store named by `location`: a filesystem path, a `file://`
    /// URL, or an object store URL such as `s3://bucket/prefix` (credentials
    /// and endpoint from the usual `AWS_*` environment variables).
    ///
    /// `options` are object store settings (`aws_endpoint`, `aws_region`,
    /// …) that take precedence over the environment.
    pub fn open(
        location: &str,
        fsync: bool,
        cache_bytes: usize,
        options: &[(String, String)],
    ) -> Result<Self, StorageError> {
        let (store, description): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = location.strip_prefix("file://") {
                (local(rest, fsync)?, location.to_string())
            } else if location.contains("://") {
                let url = url::Url::parse(location).map_err(|e| StorageError::Config {
                    location: location.to_string(),
                    reason: e.to_string(),
                })?;
                let mut opts: Vec<(String, String)> = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                opts.extend(options.iter().cloned());
                let (store, prefix) =
                    object_store::parse_url_opts(&url, opts).map_err(|e| StorageError::Config {
                        location: location.to_string(),
                        reason: e.to_string(),
                    })?;
                let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                    Arc::from(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                };
                (store, url.to_string())
            } else {
                (local(location, fsync)?, format!("file://{location}"))
            };
        Ok(Self {
            store,
            cache: Arc::new(Mutex::new(ObjectCache {
                budget: cache_bytes,
                ..Default::default()
            })),
            description,
        })
    }

    /// Where the data lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Writes commit object `seq`; fails with [`StorageError::Fenced`] if it
    /// exists already.
    pub(crate) async fn put_commit(&self, seq: u64, data: Bytes) -> Result<(), StorageError> {
        let path = wal_path(seq);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(data.clone()), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(StorageError::Fenced(seq))
            }
            Err(e) => return Err(StorageError::Store(e)),
        }
        self.cache_insert(seq, data);
        Ok(())
    }

    /// Whether commit object `seq` exists (used after an ambiguous failure).
    pub(crate) async fn commit_exists(&self, seq: u64) -> Result<bool, StorageError> {
        match self.store.head(&wal_path(seq)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    fn cache_insert(&self, seq: u64, data: Bytes) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(seq, data);
        }
    }

    fn cached(&self, seq: u64) -> Option<Bytes> {
        self.cache.lock().ok()?.objects.get(&seq).cloned()
    }

    /// Reads a whole commit object.
    pub(crate) async fn read_commit(&self, seq: u64) -> Result<Bytes, StorageError> {
        if let Some(b) = self.cached(seq) {
            return Ok(b);
        }
        let data = self.store.get(&wal_path(seq)).await?.bytes().await?;
        Ok(data)
    }

    /// Writes compaction output `object` (an id from [`compacted_object`]).
    /// Ids are reserved through the commit log and never reused, so a plain
    /// put is enough.
    pub(crate) async fn put_object(&self, object: u64, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&object_path(object), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Reads `len` bytes at `pos` of object `seq` (a commit object or a
    /// compaction output).
    pub(crate) async fn read_range(
        &self,
        seq: u64,
        pos: u64,
        len: u64,
    ) -> Result<Bytes, StorageError> {
        if let Some(b) = self.cached(seq) {
            let end = pos + len;
            if end as usize <= b.len() {
                return Ok(b.slice(pos as usize..end as usize));
            }
            return Err(StorageError::Corrupt(format!(
                "range {pos}..{end} outside commit object {seq} of {} bytes",
                b.len()
            )));
        }
        Ok(self
            .store
            .get_range(&object_path(seq), pos..pos + len)
            .await?)
    }

    /// Sequence numbers of all commit objects, ascending.
    pub(crate) async fn list_commits(&self) -> Result<Vec<u64>, StorageError> {
        let prefix = Path::from("wal");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut seqs: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, "wal/", ""))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Deletes a commit object or compaction output; gone already is fine.
    pub(crate) async fn delete_commit(&self, seq: u64) -> Result<(), StorageError> {
        if let Ok(mut c) = self.cache.lock() {
            if let Some(d) = c.objects.remove(&seq) {
                c.used -= d.len();
            }
        }
        match self.store.delete(&object_path(seq)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Ids of all compaction outputs in the store, ascending (for tests and
    /// checks; clean-up goes by the state, never by listing).
    pub async fn list_compacted(&self) -> Result<Vec<u64>, StorageError> {
        let prefix = Path::from("compacted");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut ids: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, "compacted/", ""))
            .map(compacted_object)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Sequence numbers of all snapshots, ascending.
    pub(crate) async fn list_snapshots(&self) -> Result<Vec<u64>, StorageError> {
        let prefix = Path::from("snapshots");
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut seqs: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, "snapshots/", ".json"))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    pub(crate) async fn put_snapshot(&self, seq: u64, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&snapshot_path(seq), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    pub(crate) async fn read_snapshot(&self, seq: u64) -> Result<Bytes, StorageError> {
        Ok(self.store.get(&snapshot_path(seq)).await?.bytes().await?)
    }

    pub(crate) async fn delete_snapshot(&self, seq: u64) -> Result<(), StorageError> {
        match self.store.delete(&snapshot_path(seq)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Reads the cluster id, creating it on first start.
    pub(crate) async fn cluster_id(&self) -> Result<String, StorageError> {
        let path = Path::from("cluster.json");
        match self.store.get(&path).await {
            Ok(r) => {
                let data = r.bytes().await?;
                let v: serde_json::Value = serde_json::from_slice(&data)
                    .map_err(|e| StorageError::Corrupt(format!("cluster.json: {e}")))?;
                v.get("cluster_id")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| StorageError::Corrupt("cluster.json has no cluster_id".into()))
            }
            Err(object_store::Error::NotFound { .. }) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let body = serde_json::json!({ "cluster_id": id }).to_string();
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(body.into_bytes()), opts)
                    .await
                {
                    Ok(_) => Ok(id),
                    // Another broker won the race: use its id.
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        Box::pin(self.cluster_id()).await
                    }
                    Err(e) => Err(StorageError::Store(e)),
                }
            }
            Err(e) => Err(StorageError::Store(e)),
        }
    }
}

fn local(path: &str, fsync: bool) -> Result<Arc<dyn ObjectStore>, StorageError> {
    std::fs::create_dir_all(path).map_err(|e| StorageError::Config {
        location: path.to_string(),
        reason: e.to_string(),
    })?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
        .map_err(|e| StorageError::Config {
            location: path.to_string(),
            reason: e.to_string(),
        })?
        .with_fsync(fsync);
    Ok(Arc::new(fs))
}
