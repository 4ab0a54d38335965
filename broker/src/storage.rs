//! Object storage: where every durable byte of the broker lives.
//!
//! Layout under the store's root:
//!
//! ```text
//! cluster.json                 cluster id, written once
//! meta/00000000000000000003    entry 3 of the metadata log every broker shares
//! nodes/1/wal/00000000000000000042     broker 1's commit object 42 (see [`crate::log`])
//! nodes/1/snapshots/00000000000000000040.json   its state as of commit 40
//! nodes/1/compacted/00000000000000000007   its compaction output 7 (batches only)
//! ```
//!
//! A store written by a single broker before brokers had a folder each
//! keeps its log at the root (`wal/`, `snapshots/`, `compacted/`): node 0
//! goes on using it there.
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
//!
//! [`Storage::instrument`] counts every request to the store (by
//! operation: requests, bytes, failures) and every lookup in the cache
//! (hits, misses) with instruments of the meter it is handed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gatehouse_telemetry::{Counter, KeyValue};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use opentelemetry::metrics::Meter;

use crate::error::StorageError;

/// Handle on the object store plus the read cache.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Where this broker's own log lives: `nodes/<id>/`, or the root for
    /// node 0 of a store from before (see [`Storage::for_node`]).
    root: String,
    /// Node 0's log is at the root (a store from before brokers had a
    /// folder each).
    legacy_zero: bool,
    /// See [`Storage::writer`].
    writer: String,
    cache: Arc<Mutex<ObjectCache>>,
    description: String,
    /// Cache hits and misses, once instrumented.
    metrics: Option<Arc<StoreMetrics>>,
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

/// What [`Storage::instrument`] counts. Labels are the operation only
/// (`put`, `get`, `head`, `list`, `delete`, `copy`), never a key.
#[derive(Debug)]
pub struct StoreMetrics {
    requests: Counter<u64>,
    bytes: Counter<u64>,
    errors: Counter<u64>,
    cache_hits: Counter<u64>,
    cache_misses: Counter<u64>,
    /// The `operation` label of each [`StoreOp`], made once.
    labels: [[KeyValue; 1]; StoreOp::ALL.len()],
}

/// A request to the object store, as the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreOp {
    Put,
    Get,
    Head,
    List,
    Delete,
    Copy,
}

impl StoreOp {
    const ALL: [StoreOp; 6] = [
        StoreOp::Put,
        StoreOp::Get,
        StoreOp::Head,
        StoreOp::List,
        StoreOp::Delete,
        StoreOp::Copy,
    ];

    fn name(self) -> &'static str {
        match self {
            StoreOp::Put => "put",
            StoreOp::Get => "get",
            StoreOp::Head => "head",
            StoreOp::List => "list",
            StoreOp::Delete => "delete",
            StoreOp::Copy => "copy",
        }
    }
}

impl StoreMetrics {
    fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let metrics = Self {
            requests: counter(
                "gatehouse.broker.store.requests",
                "Requests to the object store, by operation (a delete per object)",
            ),
            // No unit on purpose: Prometheus would name it
            // `…_bytes_bytes_total`.
            bytes: counter(
                "gatehouse.broker.store.bytes",
                "Bytes written to (put) and read from (get) the object store",
            ),
            errors: counter(
                "gatehouse.broker.store.errors",
                "Object store requests that failed, by operation (not found and already exists are answers, not failures)",
            ),
            cache_hits: counter(
                "gatehouse.broker.cache.hits",
                "Reads of stored batches served from the cache of recent objects",
            ),
            cache_misses: counter(
                "gatehouse.broker.cache.misses",
                "Reads of stored batches that went to the object store",
            ),
            labels: StoreOp::ALL.map(|op| [KeyValue::new("operation", op.name())]),
        };
        // Every series from the start, so that rates of rare ones (errors,
        // misses) are defined before the first occurrence.
        for label in &metrics.labels {
            metrics.requests.add(0, label);
            metrics.errors.add(0, label);
        }
        for label in &metrics.labels[..2] {
            metrics.bytes.add(0, label);
        }
        metrics.cache_hits.add(0, &[]);
        metrics.cache_misses.add(0, &[]);
        metrics
    }

    fn label(&self, op: StoreOp) -> &[KeyValue] {
        &self.labels[op as usize]
    }

    /// One request done: counted, with its bytes if it succeeded.
    fn done<T>(&self, op: StoreOp, result: &object_store::Result<T>, bytes: u64) {
        let label = self.label(op);
        self.requests.add(1, label);
        match result {
            Ok(_) if bytes > 0 => self.bytes.add(bytes, label),
            Ok(_) => {}
            Err(e) => self.failed(op, e),
        }
    }

    fn failed(&self, op: StoreOp, e: &object_store::Error) {
        if !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }
        ) {
            self.errors.add(1, self.label(op));
        }
    }
}

/// The object store with every request counted.
#[derive(Debug)]
struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<StoreMetrics>,
}

impl std::fmt::Display for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let len = payload.content_length() as u64;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.metrics.done(StoreOp::Put, &r, len);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.metrics.done(StoreOp::Put, &r, 0);
        r
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let op = if options.head {
            StoreOp::Head
        } else {
            StoreOp::Get
        };
        let r = self.inner.get_opts(location, options).await;
        let bytes = match (&r, op) {
            (Ok(got), StoreOp::Get) => got.range.end.saturating_sub(got.range.start),
            _ => 0,
        };
        self.metrics.done(op, &r, bytes);
        r
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        let metrics = self.metrics.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| metrics.done(StoreOp::Delete, r, 0))
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.metrics
            .requests
            .add(1, self.metrics.label(StoreOp::List));
        let metrics = self.metrics.clone();
        self.inner
            .list(prefix)
            .inspect_err(move |e| metrics.failed(StoreOp::List, e))
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        let r = self.inner.list_with_delimiter(prefix).await;
        self.metrics.done(StoreOp::List, &r, 0);
        r
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        let r = self.inner.copy_opts(from, to, options).await;
        self.metrics.done(StoreOp::Copy, &r, 0);
        r
    }
}

/// Who created an object, once that is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Created {
    Ours,
    Theirs,
}

/// Where entry `seq` of the metadata log lives.
pub(crate) fn meta_path(seq: u64) -> Path {
    Path::from(format!("meta/{seq:020}"))
}

/// Where broker `node`'s lease lives.
fn lease_path(node: i32) -> Path {
    Path::from(format!("members/{node}.json"))
}

/// What tells one version of a lease object from the next, as a listing
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseStamp {
    e_tag: Option<String>,
    modified_ms: i64,
    size: u64,
}

/// How many bits of an object id (a commit's sequence number, or a
/// compaction output's reserved id) number it within its broker's log;
/// the bits above them (up to [`COMPACTED`]) are the broker's id. Broker
/// `n`'s log starts at [`node_base`]`(n) + 1`, so object ids are unique
/// across the cluster and a broker taking over partitions can point at the
/// previous leader's objects. Broker 0's ids are the plain numbers.
const NODE_SHIFT: u32 = 40;

/// The largest broker id (22 bits).
pub const MAX_NODE_ID: i32 = (1 << 22) - 1;

/// The number before broker `node`'s first commit and first compaction
/// output.
pub fn node_base(node: i32) -> u64 {
    u64::from(node.unsigned_abs()) << NODE_SHIFT
}

/// The broker whose log object `object` belongs to.
pub fn object_node(object: u64) -> i32 {
    i32::try_from((object & !COMPACTED) >> NODE_SHIFT).unwrap_or(0)
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
                let (store, prefix) = if url.scheme() == "s3" {
                    s3(&url, opts).map_err(|e| StorageError::Config {
                        location: location.to_string(),
                        reason: e.to_string(),
                    })?
                } else {
                    object_store::parse_url_opts(&url, opts).map_err(|e| StorageError::Config {
                        location: location.to_string(),
                        reason: e.to_string(),
                    })?
                };
                let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                    Arc::from(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                };
                (store, url.to_string())
            } else {
                (local(location, fsync)?, format!("file://{location}"))
            };
        Ok(Self::with_store(store, cache_bytes, description))
    }

    /// A storage on `store` as it is (no retries or options added).
    pub(crate) fn with_store(
        store: Arc<dyn ObjectStore>,
        cache_bytes: usize,
        description: String,
    ) -> Self {
        Self {
            store,
            root: String::new(),
            legacy_zero: true,
            writer: uuid::Uuid::new_v4().simple().to_string(),
            cache: Arc::new(Mutex::new(ObjectCache {
                budget: cache_bytes,
                ..Default::default()
            })),
            description,
            metrics: None,
        }
    }

    /// This storage with its requests and cache lookups counted by
    /// instruments of `meter` (see [`StoreMetrics`]). Called before the
    /// storage is cloned: clones made earlier are not counted.
    pub fn instrument(mut self, meter: &Meter) -> Self {
        let metrics = Arc::new(StoreMetrics::new(meter));
        self.store = Arc::new(Instrumented {
            inner: self.store,
            metrics: metrics.clone(),
        });
        self.metrics = Some(metrics);
        self
    }

    /// Bytes the read cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().map(|c| c.used).unwrap_or(0)
    }

    /// Whether the store answers: the cluster's `cluster.json` is there
    /// (one HEAD request). For readiness probes; the caller bounds the wait.
    pub async fn check_reachable(&self) -> Result<(), StorageError> {
        self.store.head(&Path::from("cluster.json")).await?;
        Ok(())
    }

    /// Where the data lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// This storage as broker `node` uses it: its own log under
    /// `nodes/<node>/`; for node 0 of a store a single broker wrote before
    /// brokers had a folder each (a log at the root, none under `nodes/0/`),
    /// that log where it is.
    pub async fn for_node(mut self, node: i32) -> Result<Self, StorageError> {
        let own = format!("nodes/{node}/");
        let has = |prefix: String| {
            let store = self.store.clone();
            async move {
                let prefix = Path::from(prefix);
                let mut list = store.list(Some(&prefix));
                futures::StreamExt::next(&mut list).await.transpose()
            }
        };
        self.legacy_zero = has("nodes/0/wal".into()).await?.is_none()
            && (has("wal".into()).await?.is_some() || has("snapshots".into()).await?.is_some());
        self.root = if node == 0 && self.legacy_zero {
            String::new()
        } else {
            own
        };
        Ok(self)
    }

    /// The same store, with broker `node`'s log as its own: how a broker
    /// taking over reads (and plugs) another's log.
    pub fn for_other(&self, node: i32) -> Self {
        let mut other = self.clone();
        other.root = self.root_of(node);
        other
    }

    /// Where broker `node`'s log lives.
    fn root_of(&self, node: i32) -> String {
        if node == 0 && self.legacy_zero {
            String::new()
        } else {
            format!("nodes/{node}/")
        }
    }

    /// The brokers (other than `node`) whose logs this store holds.
    pub async fn other_nodes(&self, node: i32) -> Result<Vec<i32>, StorageError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&Path::from("nodes")))
            .await?;
        let mut nodes: Vec<i32> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.parts().next_back()?.as_ref().parse().ok())
            .filter(|n| *n != node)
            .collect();
        if node != 0 && !self.root.is_empty() {
            // Node 0 of a store from before keeps its log at the root.
            let mut root = self.store.list(Some(&Path::from("wal")));
            if futures::StreamExt::next(&mut root).await.is_some() {
                nodes.push(0);
            }
        }
        nodes.sort_unstable();
        nodes.dedup();
        Ok(nodes)
    }

    fn wal_path(&self, seq: u64) -> Path {
        Path::from(format!("{}wal/{seq:020}", self.root))
    }

    /// Where object `object` (a commit sequence or a compaction output,
    /// of any broker's log: the id says whose) lives.
    fn object_path(&self, object: u64) -> Path {
        let root = self.root_of(object_node(object));
        if is_compacted(object) {
            Path::from(format!("{root}compacted/{:020}", object - COMPACTED))
        } else {
            Path::from(format!("{root}wal/{object:020}"))
        }
    }

    fn snapshot_path(&self, seq: u64) -> Path {
        Path::from(format!("{}snapshots/{seq:020}.json", self.root))
    }

    /// Everything under folder `name` of this broker's log, with its
    /// prefix (to parse names against).
    async fn list_own(
        &self,
        name: &str,
    ) -> Result<(Vec<object_store::ObjectMeta>, String), StorageError> {
        let prefix = Path::from(format!("{}{name}", self.root));
        let metas = self.store.list(Some(&prefix)).try_collect().await?;
        Ok((metas, format!("{}{name}/", self.root)))
    }

    /// Checks that the store enforces create-only writes (S3's
    /// `If-None-Match: *`; a hard link on a local directory): the log's
    /// numbering and the fencing of a second writer rest on it. A store
    /// that lets a second create of one key overwrite the first is refused.
    pub async fn check_create_only(&self) -> Result<(), StorageError> {
        let path = Path::from(format!("probe/{}", self.writer));
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&path, PutPayload::from_static(b"first"), create())
            .await?;
        let second = self
            .store
            .put_opts(&path, PutPayload::from_static(b"second"), create())
            .await;
        let _ = self.store.delete(&path).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store(e)),
            Ok(_) => Err(StorageError::Config {
                location: self.description.clone(),
                reason: "the store does not enforce create-only writes (a second create of one object overwrote the first): brokers cannot number their commits safely on it".into(),
            }),
        }
    }

    /// A random id of this opened store, written into every commit object
    /// it creates (so that no two writers' objects are ever the same bytes).
    pub(crate) fn writer(&self) -> &str {
        &self.writer
    }

    /// Creates commit object `seq` (create-only). Fails with
    /// [`StorageError::Fenced`] if another writer created it.
    pub(crate) async fn create_commit(&self, seq: u64, data: Bytes) -> Result<(), StorageError> {
        match self.create(&self.wal_path(seq), data.clone()).await? {
            Created::Ours => {
                self.cache_insert(seq, data);
                Ok(())
            }
            Created::Theirs => Err(StorageError::Fenced(seq)),
        }
    }

    /// Creates entry `seq` of the metadata log (create-only): whether this
    /// writer's bytes are the ones stored.
    pub(crate) async fn create_meta(&self, seq: u64, data: Bytes) -> Result<bool, StorageError> {
        Ok(self.create(&meta_path(seq), data).await? == Created::Ours)
    }

    /// Entry `seq` of the metadata log, if it exists.
    pub(crate) async fn read_meta(&self, seq: u64) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&meta_path(seq)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Creates `path` with `data`, create-only.
    ///
    /// An outcome the store leaves unclear is settled by reading the object
    /// back: an error after the request was sent (the write may have
    /// landed), or "already exists", which is also what the object store
    /// client's own retry of a create that did land (answered with a 5xx)
    /// reports. The object holding our bytes means ours is durable
    /// (every writer's objects differ: they carry [`Storage::writer`]);
    /// other bytes mean another writer created it; no object means the
    /// write did not happen and the error stands.
    async fn create(&self, path: &Path, data: Bytes) -> Result<Created, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let Some(e) = self
            .store
            .put_opts(path, PutPayload::from_bytes(data.clone()), opts)
            .await
            .err()
        else {
            return Ok(Created::Ours);
        };
        let exists = matches!(e, object_store::Error::AlreadyExists { .. });
        match self.store.get(path).await {
            Ok(found) => {
                let found = found.bytes().await.map_err(StorageError::Store)?;
                if found != data {
                    return Ok(Created::Theirs);
                }
                if !exists {
                    tracing::warn!(%path, error = %e, "create reported failure but is durable");
                }
                Ok(Created::Ours)
            }
            Err(object_store::Error::NotFound { .. }) if !exists => Err(StorageError::Store(e)),
            Err(read) => {
                tracing::warn!(%path, error = %read, "cannot read back an object whose creation is unclear");
                Err(StorageError::Store(e))
            }
        }
    }

    fn cache_insert(&self, seq: u64, data: Bytes) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(seq, data);
        }
    }

    fn cached(&self, seq: u64) -> Option<Bytes> {
        let found = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.objects.get(&seq).cloned());
        if let Some(m) = &self.metrics {
            match found {
                Some(_) => m.cache_hits.add(1, &[]),
                None => m.cache_misses.add(1, &[]),
            }
        }
        found
    }

    /// Commit object `seq`, if there is one.
    pub(crate) async fn find_commit(&self, seq: u64) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&self.wal_path(seq)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Reads a whole commit object.
    pub(crate) async fn read_commit(&self, seq: u64) -> Result<Bytes, StorageError> {
        if let Some(b) = self.cached(seq) {
            return Ok(b);
        }
        let data = self.store.get(&self.wal_path(seq)).await?.bytes().await?;
        Ok(data)
    }

    /// Writes compaction output `object` (an id from [`compacted_object`]).
    /// Ids are reserved through the commit log and never reused, so a plain
    /// put is enough.
    pub(crate) async fn put_object(&self, object: u64, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.object_path(object), PutPayload::from_bytes(data))
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
            .get_range(&self.object_path(seq), pos..pos + len)
            .await?)
    }

    /// Sequence numbers of all commit objects, ascending.
    pub(crate) async fn list_commits(&self) -> Result<Vec<u64>, StorageError> {
        let (metas, prefix) = self.list_own("wal").await?;
        let mut seqs: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, &prefix, ""))
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
        match self.store.delete(&self.object_path(seq)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Ids of all compaction outputs in the store, ascending (for tests and
    /// checks; clean-up goes by the state, never by listing).
    pub async fn list_compacted(&self) -> Result<Vec<u64>, StorageError> {
        let (metas, prefix) = self.list_own("compacted").await?;
        let mut ids: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, &prefix, ""))
            .map(compacted_object)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Sequence numbers of all snapshots, ascending.
    pub(crate) async fn list_snapshots(&self) -> Result<Vec<u64>, StorageError> {
        let (metas, prefix) = self.list_own("snapshots").await?;
        let mut seqs: Vec<u64> = metas
            .iter()
            .filter_map(|m| parse_seq(&m.location, &prefix, ".json"))
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    pub(crate) async fn put_snapshot(&self, seq: u64, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.snapshot_path(seq), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    pub(crate) async fn read_snapshot(&self, seq: u64) -> Result<Bytes, StorageError> {
        Ok(self
            .store
            .get(&self.snapshot_path(seq))
            .await?
            .bytes()
            .await?)
    }

    pub(crate) async fn delete_snapshot(&self, seq: u64) -> Result<(), StorageError> {
        match self.store.delete(&self.snapshot_path(seq)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Writes broker `node`'s lease (overwriting the last one).
    pub(crate) async fn put_lease(&self, node: i32, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&lease_path(node), PutPayload::from_bytes(data))
            .await?;
        Ok(())
    }

    /// Every lease in the store: the broker, and what tells one version of
    /// its lease object from the next.
    pub(crate) async fn list_leases(&self) -> Result<Vec<(i32, LeaseStamp)>, StorageError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&Path::from("members")))
            .try_collect()
            .await?;
        Ok(metas
            .iter()
            .filter_map(|m| {
                let node = parse_seq(&m.location, "members/", ".json")?;
                let stamp = LeaseStamp {
                    e_tag: m.e_tag.clone(),
                    modified_ms: m.last_modified.timestamp_millis(),
                    size: m.size,
                };
                Some((i32::try_from(node).ok()?, stamp))
            })
            .collect())
    }

    /// Broker `node`'s lease, if it has one.
    pub(crate) async fn read_lease(&self, node: i32) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&lease_path(node)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(StorageError::Store(e)),
        }
    }

    /// Deletes broker `node`'s lease; gone already is fine.
    pub(crate) async fn delete_lease(&self, node: i32) -> Result<(), StorageError> {
        match self.store.delete(&lease_path(node)).await {
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

/// How long the S3 client keeps retrying a request (5xx, 429, connection
/// errors) before the error reaches the broker: well inside the 30 s a
/// producer waits for its commit, so that a produce fails over to the
/// client's own retry rather than hanging.
const S3_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// An S3 (or S3-compatible) store: `options` (`aws_endpoint`,
/// `aws_region`, …) as `object_store` names them, and retries with
/// exponential backoff (100 ms doubling to 2 s, at most 5, within
/// [`S3_RETRY_TIMEOUT`]); the object key prefix is the URL's path.
fn s3(
    url: &url::Url,
    options: Vec<(String, String)>,
) -> object_store::Result<(Box<dyn ObjectStore>, Path)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut builder = AmazonS3Builder::new().with_url(url.as_str());
    // Keys it does not know (other `AWS_*` variables) are ignored, as
    // `object_store::parse_url_opts` does.
    for (key, value) in options {
        if let Ok(key) = key.parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    let store = builder
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(100),
                max_backoff: std::time::Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 5,
            retry_timeout: S3_RETRY_TIMEOUT,
        })
        .build()?;
    let prefix = Path::from_url_path(url.path())?;
    Ok((Box::new(store), prefix))
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

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutResult,
    };

    /// An in-memory store with the faults of real ones.
    #[derive(Debug, Default)]
    struct Faulty {
        inner: InMemory,
        /// Ignores create-only: every put overwrites (as an S3-compatible
        /// server without conditional writes would).
        overwrite: bool,
        /// The next create fails without landing; it lands later, just
        /// before the put after it (a request the store answered late).
        fail_next_create: std::sync::atomic::AtomicBool,
        late: std::sync::Mutex<Option<(Path, PutPayload)>>,
    }

    impl std::fmt::Display for Faulty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Faulty")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            let late = self.late.lock().map(|mut l| l.take()).unwrap_or(None);
            if let Some((path, late)) = late {
                self.inner.put(&path, late).await?;
            }
            let create = matches!(opts.mode, PutMode::Create);
            if create
                && self
                    .fail_next_create
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                if let Ok(mut l) = self.late.lock() {
                    *l = Some((location.clone(), payload));
                }
                return Err(object_store::Error::Generic {
                    store: "Faulty",
                    source: "the request timed out".into(),
                });
            }
            if self.overwrite {
                self.inner.put(location, payload).await
            } else {
                self.inner.put_opts(location, payload, opts).await
            }
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// A store without create-only writes is refused at start; one with
    /// them (in memory, a local directory) passes.
    #[tokio::test]
    async fn a_store_without_create_only_writes_is_refused() -> Result<(), StorageError> {
        let overwriting = Faulty {
            overwrite: true,
            ..Faulty::default()
        };
        let bad = Storage::with_store(Arc::new(overwriting), 0, "overwriting".into());
        let err = bad.check_create_only().await.err();
        assert!(
            matches!(&err, Some(StorageError::Config { reason, .. }) if reason.contains("create-only")),
            "{err:?}"
        );
        Storage::with_store(Arc::new(InMemory::new()), 0, "memory".into())
            .check_create_only()
            .await?;
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let local = Storage::open(&dir.path().to_string_lossy(), false, 0, &[])?;
        local.check_create_only().await?;
        // The probe leaves nothing behind.
        assert!(futures::StreamExt::next(&mut local.store.list(None))
            .await
            .is_none());
        Ok(())
    }

    /// A create whose outcome was unclear is settled by reading the object
    /// back: the client's retry of a create that did land is told "already
    /// exists" and must not fence its own writer; another writer's object
    /// at the sequence number must.
    #[tokio::test]
    async fn an_unclear_create_is_settled_by_reading_back() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().to_string_lossy().into_owned();
        let a = Storage::open(&path, false, 0, &[])?;
        let b = Storage::open(&path, false, 0, &[])?;
        assert_ne!(a.writer(), b.writer());

        // a's first attempt landed; its retry finds the object there.
        let ours = Bytes::from_static(b"a's commit");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        a.store
            .put_opts(&a.wal_path(1), PutPayload::from_bytes(ours.clone()), create)
            .await?;
        a.create_commit(1, ours.clone()).await?;

        // b, a writer that did not create it, is fenced.
        let theirs = Bytes::from_static(b"b's commit");
        assert!(matches!(
            b.create_commit(1, theirs).await,
            Err(StorageError::Fenced(1))
        ));
        // The object is a's, unchanged.
        assert_eq!(a.read_commit(1).await?, ours);
        // A plain create still works.
        b.create_commit(2, Bytes::from_static(b"b's next")).await?;
        assert!(matches!(
            a.create_commit(2, Bytes::from_static(b"a's next")).await,
            Err(StorageError::Fenced(2))
        ));
        Ok(())
    }

    /// A commit whose write failed unclear, then landed late, is written
    /// again unchanged and applied: the writer neither takes it for
    /// another writer's (and fences itself) nor loses it.
    #[tokio::test]
    async fn a_commit_that_lands_late_is_settled_not_fenced(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use crate::committer::{self, AdminOp, CommitterDeps};
        use crate::error::KafkaCode;
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };

        fn batch(value: &'static [u8]) -> Bytes {
            let record = Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: -1,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(value)),
                headers: Default::default(),
            };
            let mut buf = bytes::BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            if RecordBatchEncoder::encode(&mut buf, [&record], &options).is_err() {
                return Bytes::new();
            }
            buf.freeze()
        }

        let store = Arc::new(Faulty::default());
        let storage = Storage::with_store(store.clone(), 0, "faulty".into());
        let state = Arc::new(std::sync::RwLock::new(crate::state::State::default()));
        let meta = Arc::new(crate::meta_log::MetaLog::new(storage.clone()));
        meta.append(crate::catalog::adopt(&crate::state::State::default(), 0, 1))
            .await?;
        let (committer, run) = committer::start(CommitterDeps {
            storage,
            state: state.clone(),
            commits: tokio::sync::watch::channel(0).0,
            commit_interval: std::time::Duration::from_millis(1),
            commit_max_bytes: 1 << 20,
            meta,
            node_id: 0,
            live: tokio::sync::watch::channel(Default::default()).1,
            fenced: tokio::sync::watch::Sender::new(false),
            metrics: committer::CommitMetrics::new(
                &gatehouse_telemetry::Metrics::local("test").meter("test"),
            ),
        });
        let task = tokio::spawn(run);
        committer
            .admin(AdminOp::CreateTopic {
                name: "t".into(),
                partitions: 1,
                configs: Default::default(),
                validate_only: false,
            })
            .await
            .map_err(|e| format!("{e:?}"))?;

        store
            .fail_next_create
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let a = batch(b"a");
        let first = committer
            .produce("t", 0, crate::batch::validate_single(&a)?, a)?
            .await?;
        assert_eq!(first, Err(KafkaCode::KafkaStorageError));

        // The write lands late; the next commit settles it first.
        let b = batch(b"b");
        let second = committer
            .produce("t", 0, crate::batch::validate_single(&b)?, b)?
            .await?;
        assert_eq!(second, Ok(1), "a is at offset 0, b after it");
        let next = state
            .read()
            .map_err(|_| "state poisoned")?
            .partition("t", 0)
            .map(|p| p.next_offset);
        assert_eq!(next, Some(2));
        drop(committer);
        task.await?;
        Ok(())
    }

    /// An instrumented storage counts each request by operation, the bytes
    /// of puts and gets, failures (not "not found"), and cache lookups.
    #[tokio::test]
    async fn requests_and_cache_lookups_are_counted() -> Result<(), StorageError> {
        let metrics = gatehouse_telemetry::Metrics::local("test");
        let uncached = Storage::with_store(Arc::new(InMemory::new()), 0, "memory".into())
            .instrument(&metrics.meter("test"));
        uncached
            .create_commit(1, Bytes::from_static(b"one"))
            .await?;
        assert_eq!(uncached.read_commit(1).await?, Bytes::from_static(b"one"));
        assert!(uncached.find_commit(2).await?.is_none());
        assert!(uncached.check_reachable().await.is_err());
        assert_eq!(uncached.list_commits().await?, vec![1]);
        let text = metrics.render();
        for line in [
            "gatehouse_broker_store_requests_total{operation=\"put\"} 1",
            "gatehouse_broker_store_bytes_total{operation=\"put\"} 3",
            "gatehouse_broker_store_requests_total{operation=\"get\"} 2",
            "gatehouse_broker_store_bytes_total{operation=\"get\"} 3",
            "gatehouse_broker_store_requests_total{operation=\"head\"} 1",
            "gatehouse_broker_store_requests_total{operation=\"list\"} 1",
            "gatehouse_broker_store_errors_total{operation=\"get\"} 0",
            "gatehouse_broker_store_errors_total{operation=\"head\"} 0",
            "gatehouse_broker_cache_misses_total 1",
            "gatehouse_broker_cache_hits_total 0",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        Ok(())
    }

    /// Each broker's log lives in its own folder; node 0 of a store a
    /// single broker wrote before keeps its log at the root.
    #[tokio::test]
    async fn each_broker_has_a_folder_and_old_stores_keep_theirs() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().to_string_lossy().into_owned();
        let open = || Storage::open(&path, false, 0, &[]);
        let one = open()?.for_node(1).await?;
        one.create_commit(1, Bytes::from_static(b"one")).await?;
        assert!(dir
            .path()
            .join("nodes/1/wal")
            .join(format!("{:020}", 1))
            .exists());
        assert_eq!(one.other_nodes(1).await?, Vec::<i32>::new());
        let zero = open()?.for_node(0).await?;
        assert_eq!(zero.other_nodes(0).await?, vec![1]);
        assert_eq!(zero.root, "nodes/0/");

        let old = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let old_path = old.path().to_string_lossy().into_owned();
        let before = Storage::open(&old_path, false, 0, &[])?;
        before.create_commit(1, Bytes::from_static(b"old")).await?;
        let zero = Storage::open(&old_path, false, 0, &[])?.for_node(0).await?;
        assert_eq!(zero.root, "");
        assert_eq!(zero.list_commits().await?, vec![1]);
        let two = Storage::open(&old_path, false, 0, &[])?.for_node(2).await?;
        assert_eq!(two.other_nodes(2).await?, vec![0]);
        Ok(())
    }
}
