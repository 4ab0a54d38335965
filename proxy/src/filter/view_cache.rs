//! The view cache: what a governed fetch delivered of each stored batch, reused
//! for every later fetch of that batch with the same view.
//!
//! Social streams fan out: analytics, feature stores, search indexes and
//! lakehouse sinks read the same records, each as its own consumer group and
//! usually as one of a few principals. The work the fields filter (protected
//! topics) and the consent filter (the other governed topics) do on a batch
//! (decompress, find every record's subject, decide consent, decrypt, mask,
//! re-encode, recompress) depends only on the batch and the view, so its
//! result is kept, bounded in bytes, and the next fetch with the same view
//! copies it.
//!
//! A batch is named by its topic, the topic's id where the fetch carries one
//! (a re-created topic is another), its partition, base offset, leader epoch,
//! length and CRC-32C (which covers every record). A view is the filter, the
//! principal with every attribute (as the policy plans are keyed) and the state
//! everything the transform read was in: the policy set's version and the
//! catalog's generation (together, the plan), the consent store's generation,
//! the key store's count of destroyed keys, and the erasure list's generation.
//! Each of these moves only once the change is visible to every lookup, and
//! the view is read before the transform, so an entry is never older than its
//! key says. A change therefore makes every older entry unreachable (they age
//! out of the cache); it never serves one.
//!
//! Not cached: batches with a field whose key this replica has not seen yet
//! (it may arrive through the key topic) and partial batches at the end of a
//! fetch.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_policy::PrincipalInfo;

/// Everything a fetch's transform depended on besides the batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ViewId {
    /// The filter that transformed it (each keeps notes of its own).
    pub filter: &'static str,
    pub principal: PrincipalInfo,
    pub topic: String,
    pub topic_id: [u8; 16],
    pub policies: u64,
    pub catalog: u64,
    pub consent: u64,
    pub keys_destroyed: u64,
    pub erasures: u64,
}

/// One batch in one view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BatchKey {
    pub view: Arc<ViewId>,
    pub partition: i32,
    pub base_offset: i64,
    pub leader_epoch: i32,
    pub len: u32,
    pub crc: u32,
}

impl BatchKey {
    /// The key of `batch` (a complete v2 batch) in `view`.
    pub(crate) fn of(view: &Arc<ViewId>, partition: i32, batch: &[u8]) -> Option<Self> {
        let base_offset = i64::from_be_bytes(batch.get(0..8)?.try_into().ok()?);
        let leader_epoch = i32::from_be_bytes(batch.get(12..16)?.try_into().ok()?);
        let crc = u32::from_be_bytes(batch.get(17..21)?.try_into().ok()?);
        Some(BatchKey {
            view: view.clone(),
            partition,
            base_offset,
            leader_epoch,
            len: u32::try_from(batch.len()).ok()?,
            crc,
        })
    }
}

/// What a view got of one batch.
pub(crate) struct Cached {
    /// The batch as delivered (empty when every record was withheld). Its own
    /// allocation: never a slice of a whole fetch response.
    pub records: Bytes,
    /// What the filter noted of the batch (its own type, named by the
    /// view's `filter`), merged into each fetch's.
    notes: Box<dyn Any + Send + Sync>,
    weight: u64,
}

impl Cached {
    /// `extra`: bytes the notes hold besides their size (strings).
    /// `records` is copied when it is a slice of `within` (the fetch
    /// response it came in), so that the cache never pins a whole response.
    pub(crate) fn new<S: Any + Send + Sync>(
        records: Bytes,
        within: &[u8],
        notes: S,
        extra: usize,
    ) -> Self {
        let weight = (records.len() + std::mem::size_of::<S>() + extra + 128) as u64;
        let start = records.as_ptr() as usize;
        let span = within.as_ptr() as usize..within.as_ptr() as usize + within.len();
        let records = if span.contains(&start) {
            Bytes::copy_from_slice(&records)
        } else {
            records
        };
        Cached {
            records,
            notes: Box::new(notes),
            weight,
        }
    }

    pub(crate) fn notes<S: Any>(&self) -> Option<&S> {
        self.notes.downcast_ref()
    }
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<BatchKey, Arc<Cached>> for Weight {
    fn weight(&self, _: &BatchKey, v: &Arc<Cached>) -> u64 {
        v.weight
    }
}

/// Delivered batches by (batch, view), bounded in bytes, shared by the
/// filters that transform fetched records.
pub struct ViewCache {
    cache: quick_cache::sync::Cache<BatchKey, Arc<Cached>, Weight>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a view cache holds and has served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewCacheStats {
    /// Bytes held (batches, their notes, a fixed overhead each).
    pub bytes: u64,
    /// Batches held.
    pub batches: usize,
    /// Batches served from it since the proxy started.
    pub hits: u64,
    /// Batches transformed and offered to it since the proxy started.
    pub misses: u64,
}

impl std::fmt::Debug for ViewCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewCache")
            .field("batches", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl ViewCache {
    /// A cache of at most `bytes` (counting the batches, their notes and a
    /// fixed overhead each); `None` for 0.
    pub fn with_bytes(bytes: usize) -> Option<Arc<Self>> {
        (bytes > 0).then(|| Arc::new(Self::new(bytes)))
    }

    pub(crate) fn new(bytes: usize) -> Self {
        // Fetched batches are typically 16 KiB to 1 MiB.
        let items = (bytes / (64 << 10)).max(16);
        // Fan-out favours recency: a batch one group just fetched is what the
        // next group fetches, once. Half the space goes to batches fetched
        // once (quick_cache's default keeps 3 % for them, made for workloads
        // where frequency counts), so a read of up to half the cache leaves
        // its batches for the next reader.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(bytes as u64)
            .hot_allocation(0.5)
            .build();
        let cache = match options {
            Ok(options) => quick_cache::sync::Cache::with_options(
                options,
                Weight,
                Default::default(),
                Default::default(),
            ),
            Err(_) => quick_cache::sync::Cache::with_weighter(items, bytes as u64, Weight),
        };
        ViewCache {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &BatchKey) -> Option<Arc<Cached>> {
        let found = self.cache.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: BatchKey, value: Cached) {
        self.cache.insert(key, Arc::new(value));
    }

    /// Bytes held now.
    pub(crate) fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// Batches held now.
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    /// What it holds and has served.
    pub fn stats(&self) -> ViewCacheStats {
        ViewCacheStats {
            bytes: self.weight(),
            batches: self.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// A fetched partition's record set as a view gets it, through `cache`: a
/// complete batch the cache holds for `view` is copied from it; any other
/// goes through `transform` alone, its notes are handed to `merge`, and it is
/// kept unless `keep` says no (with the bytes its notes hold besides their
/// size). A partial batch at the end is passed on as it is. Returns the set
/// and the batches found and transformed.
pub(crate) fn through<S: Any + Send + Sync, E>(
    cache: &ViewCache,
    view: &Arc<ViewId>,
    partition: i32,
    records: &Bytes,
    mut transform: impl FnMut(&Bytes) -> Result<(Bytes, S), E>,
    mut merge: impl FnMut(&S),
    keep: impl Fn(&S) -> Option<usize>,
) -> Result<(Bytes, usize, usize), E>
where
    E: From<crate::codec::records::RecordsError>,
{
    let (batches, tail) = crate::codec::records::split_fetched(records)?;
    let mut out = bytes::BytesMut::with_capacity(records.len());
    let (mut hits, mut misses) = (0, 0);
    for batch in batches {
        let key = BatchKey::of(view, partition, &batch);
        if let Some(hit) = key.as_ref().and_then(|k| cache.get(k)) {
            if let Some(notes) = hit.notes::<S>() {
                merge(notes);
                out.extend_from_slice(&hit.records);
                hits += 1;
                continue;
            }
        }
        let (delivered, notes) = transform(&batch)?;
        misses += 1;
        out.extend_from_slice(&delivered);
        merge(&notes);
        if let (Some(key), Some(extra)) = (key, keep(&notes)) {
            cache.insert(key, Cached::new(delivered, records, notes, extra));
        }
    }
    out.extend_from_slice(&tail);
    Ok((out.freeze(), hits, misses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(consent: u64) -> Arc<ViewId> {
        Arc::new(ViewId {
            filter: "fields",
            principal: PrincipalInfo::new("analytics", "analytics", "eu", ["analytics"]),
            topic: "social.posts".into(),
            topic_id: [0; 16],
            policies: 1,
            catalog: 1,
            consent,
            keys_destroyed: 0,
            erasures: 0,
        })
    }

    fn batch(base_offset: i64, crc: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&base_offset.to_be_bytes());
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_batch_is_found_only_in_its_view_and_content() {
        let cache = ViewCache::new(1 << 20);
        let b = batch(100, 7, 200);
        let key = BatchKey::of(&view(1), 0, &b).expect("key");
        cache.insert(
            key.clone(),
            Cached::new(Bytes::from_static(b"delivered"), &[], 3u32, 0),
        );
        let hit = cache.get(&key).expect("hit");
        assert_eq!(&hit.records[..], b"delivered");
        assert_eq!(hit.notes::<u32>(), Some(&3));
        assert_eq!(hit.notes::<u64>(), None);
        // Another consent generation, partition, offset or content: a miss.
        assert!(cache
            .get(&BatchKey::of(&view(2), 0, &b).expect("key"))
            .is_none());
        assert!(cache
            .get(&BatchKey::of(&view(1), 1, &b).expect("key"))
            .is_none());
        assert!(cache
            .get(&BatchKey::of(&view(1), 0, &batch(101, 7, 200)).expect("key"))
            .is_none());
        assert!(cache
            .get(&BatchKey::of(&view(1), 0, &batch(100, 8, 200)).expect("key"))
            .is_none());
        assert!(BatchKey::of(&view(1), 0, &b[..20]).is_none());
    }

    #[test]
    fn the_cache_holds_at_most_its_bound() {
        let cache = ViewCache::new(1 << 20);
        let payload = vec![1u8; 64 << 10];
        for i in 0..100 {
            let b = batch(i, 1, 64);
            let key = BatchKey::of(&view(1), 0, &b).expect("key");
            cache.insert(key, Cached::new(Bytes::from(payload.clone()), &[], 0u8, 0));
        }
        assert!(cache.weight() <= 1 << 20, "{} bytes", cache.weight());
        assert!(cache.len() < 100);
    }
}
