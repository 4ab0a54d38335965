//! A bounded cache of unwrapped data keys (CLOCK eviction).
//!
//! Hits take a read lock and set a "referenced" bit; misses insert under the
//! write lock, evicting the first entry whose bit is clear (clearing bits as
//! the hand passes). O(1) amortized, no allocation on hits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::{DataKey, KeyId};

struct Slot {
    key: Arc<DataKey>,
    referenced: AtomicBool,
    pos: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<KeyId, Slot>,
    ring: Vec<KeyId>,
    hand: usize,
}

pub(crate) struct KeyCache {
    capacity: usize,
    inner: RwLock<Inner>,
}

impl KeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        KeyCache {
            capacity,
            inner: RwLock::new(Inner::default()),
        }
    }

    pub(crate) fn get(&self, id: &KeyId) -> Option<Arc<DataKey>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let slot = inner.map.get(id)?;
        slot.referenced.store(true, Ordering::Relaxed);
        Some(Arc::clone(&slot.key))
    }

    pub(crate) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.len() < self.capacity
    }

    /// Inserts (evicting if full) and returns the cached key: an entry that
    /// another thread inserted first wins, so every caller shares one instance.
    pub(crate) fn insert(&self, key: Arc<DataKey>) -> Arc<DataKey> {
        if self.capacity == 0 {
            return key;
        }
        let id = key.id();
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = inner.map.get(&id) {
            slot.referenced.store(true, Ordering::Relaxed);
            return Arc::clone(&slot.key);
        }
        while inner.ring.len() >= self.capacity {
            inner.evict_one();
        }
        let pos = inner.ring.len();
        inner.ring.push(id);
        inner.map.insert(
            id,
            Slot {
                key: Arc::clone(&key),
                // No credit on insert: a key looked up once (a scan, a replay of the key
                // topic) goes before keys that are used again.
                referenced: AtomicBool::new(false),
                pos,
            },
        );
        key
    }

    pub(crate) fn remove(&self, id: &KeyId) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.remove(id);
    }
}

impl Inner {
    fn evict_one(&mut self) {
        // Each pass clears bits, so this ends within two turns of the ring.
        for _ in 0..=2 * self.ring.len() {
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let Some(&cand) = self.ring.get(self.hand) else {
                return;
            };
            let referenced = self
                .map
                .get(&cand)
                .is_some_and(|s| s.referenced.swap(false, Ordering::Relaxed));
            if referenced {
                self.hand += 1;
            } else {
                self.remove(&cand);
                return;
            }
        }
        // Unreachable in practice; keep the bound anyway.
        if let Some(&cand) = self.ring.first() {
            self.remove(&cand);
        }
    }

    fn remove(&mut self, id: &KeyId) {
        let Some(slot) = self.map.remove(id) else {
            return;
        };
        if slot.pos < self.ring.len() {
            self.ring.swap_remove(slot.pos);
            if let Some(&moved) = self.ring.get(slot.pos) {
                if let Some(s) = self.map.get_mut(&moved) {
                    s.pos = slot.pos;
                }
            }
        }
        if self.hand >= self.ring.len() {
            self.hand = 0;
        }
    }
}

impl KeyCache {
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Result<Arc<DataKey>, crate::KeyError> {
        Ok(Arc::new(DataKey::from_bytes(KeyId([n; 16]), &[n; 32])?))
    }

    /// The ring and the map always agree.
    fn check(cache: &KeyCache) {
        let inner = cache.inner.read().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(inner.map.len(), inner.ring.len());
        for (i, id) in inner.ring.iter().enumerate() {
            assert_eq!(inner.map.get(id).map(|s| s.pos), Some(i));
        }
        assert!(inner.map.len() <= cache.capacity);
    }

    #[test]
    fn bounded_and_consistent() -> Result<(), crate::KeyError> {
        let cache = KeyCache::new(3);
        for n in 0..50u8 {
            cache.insert(key(n)?);
            check(&cache);
            // Keep key 0 hot: CLOCK should keep it.
            assert!(cache.get(&KeyId([0; 16])).is_some());
            if n % 7 == 6 {
                cache.remove(&KeyId([n - 1; 16]));
                check(&cache);
            }
        }
        assert_eq!(cache.len(), 3);
        Ok(())
    }

    #[test]
    fn first_insert_wins_and_zero_capacity() -> Result<(), crate::KeyError> {
        let cache = KeyCache::new(2);
        let a = cache.insert(key(1)?);
        let b = cache.insert(key(1)?);
        assert!(Arc::ptr_eq(&a, &b));
        let none = KeyCache::new(0);
        none.insert(key(1)?);
        assert_eq!(none.len(), 0);
        assert!(none.get(&KeyId([1; 16])).is_none());
        Ok(())
    }
}
