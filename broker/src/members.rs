//! Who is in the cluster: leases kept in the store (section 6 of
//! `docs/design/broker-cluster.md`).
//!
//! Every broker overwrites `members/<node>.json` every third of the lease
//! (its address, its incarnation and a counter that changes every time).
//! Every broker lists `members/` every quarter of the lease and judges
//! liveness by its own monotonic clock: a broker is live while its lease
//! object changed within the lease period, as this broker saw it. No two
//! clocks need agree, and a broker seen for the first time gets a whole
//! lease before it can be judged gone. A broker that stops cleanly deletes
//! its lease, and is gone at the next listing.
//!
//! Liveness decides where clients are sent (Metadata, FindCoordinator) and
//! where new partitions go; it never decides who may write a partition
//! (that is the metadata log's leadership), so a wrong judgement costs
//! availability, not safety.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::StorageError;
use crate::storage::{LeaseStamp, Storage};

/// A live broker, as its lease says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub node: i32,
    /// The host clients reach it at.
    pub host: String,
    /// The port.
    pub port: i32,
    /// Its process's id (a broker restarted under the same id has a new
    /// one).
    pub incarnation: String,
    /// Bumped at every renewal.
    #[serde(default)]
    pub counter: u64,
}

/// What this broker last saw of another's lease.
#[derive(Debug)]
struct Seen {
    stamp: LeaseStamp,
    changed_at: Instant,
    member: Option<Member>,
}

/// This broker's lease and its view of the others'.
#[derive(Debug)]
pub struct Membership {
    storage: Storage,
    me: Member,
    lease: Duration,
    live: watch::Sender<BTreeMap<i32, Member>>,
    seen: HashMap<i32, Seen>,
}

impl Membership {
    /// `me`'s membership of the cluster on `storage`, with leases of
    /// `lease`.
    pub fn new(storage: Storage, me: Member, lease: Duration) -> Self {
        let live = BTreeMap::from([(me.node, me.clone())]);
        Self {
            storage,
            me,
            lease,
            live: watch::Sender::new(live),
            seen: HashMap::new(),
        }
    }

    /// Writes this broker's lease and reads the others': what a broker
    /// does before it serves.
    pub async fn join(&mut self) -> Result<(), StorageError> {
        self.renew().await?;
        self.observe().await
    }

    /// This broker.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The live brokers (this one always among them), by id.
    pub fn live(&self) -> BTreeMap<i32, Member> {
        self.live.borrow().clone()
    }

    /// Changes of [`Membership::live`].
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<i32, Member>> {
        self.live.subscribe()
    }

    /// The live broker `node`, if it is.
    pub fn member(&self, node: i32) -> Option<Member> {
        self.live.borrow().get(&node).cloned()
    }

    /// Writes this broker's lease.
    pub async fn renew(&mut self) -> Result<(), StorageError> {
        self.me.counter += 1;
        let body = serde_json::to_vec(&self.me)
            .map_err(|e| StorageError::Corrupt(format!("lease: {e}")))?;
        self.storage.put_lease(self.me.node, body.into()).await
    }

    /// Lists the leases and updates the live set.
    async fn observe(&mut self) -> Result<(), StorageError> {
        let seen = &mut self.seen;
        let now = Instant::now();
        let listed = self.storage.list_leases().await?;
        let mut present = Vec::with_capacity(listed.len());
        for (node, stamp) in listed {
            present.push(node);
            if node == self.me.node {
                continue;
            }
            let changed = seen.get(&node).is_none_or(|s| s.stamp != stamp);
            if changed {
                let member = match self.storage.read_lease(node).await? {
                    Some(b) => serde_json::from_slice::<Member>(&b).ok(),
                    None => None,
                };
                seen.insert(
                    node,
                    Seen {
                        stamp,
                        changed_at: now,
                        member,
                    },
                );
            }
        }
        seen.retain(|n, _| present.contains(n));
        let mut live: BTreeMap<i32, Member> = seen
            .values()
            .filter(|s| now.duration_since(s.changed_at) < self.lease)
            .filter_map(|s| s.member.clone())
            .map(|m| (m.node, m))
            .collect();
        live.insert(self.me.node, self.me.clone());
        self.live.send_if_modified(|old| {
            let nodes = |m: &BTreeMap<i32, Member>| -> Vec<(i32, String, i32)> {
                m.values()
                    .map(|m| (m.node, m.host.clone(), m.port))
                    .collect()
            };
            if nodes(old) == nodes(&live) {
                return false;
            }
            tracing::info!(live = ?live.keys().collect::<Vec<_>>(), "cluster membership changed");
            *old = live;
            true
        });
        Ok(())
    }

    /// Renews the lease and watches the others' until `stop`, then
    /// deletes the lease (a clean stop: the others see it gone at once).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut renew = tokio::time::interval(self.lease / 3);
        let mut observe = tokio::time::interval(self.lease / 4);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        observe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    if let Err(e) = self.renew().await {
                        tracing::warn!(error = %e, "cannot renew this broker's lease");
                    }
                }
                _ = observe.tick() => {
                    if let Err(e) = self.observe().await {
                        tracing::warn!(error = %e, "cannot list the cluster's leases");
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        if let Err(e) = self.storage.delete_lease(self.me.node).await {
            tracing::warn!(error = %e, "cannot delete this broker's lease");
        }
    }
}

/// Where broker `node`'s new partitions and slots go: rendezvous hashing
/// of `key` over `nodes` (the highest score wins, ties to the lower id),
/// so that a broker joining or leaving moves about 1/N of them.
pub fn rendezvous(nodes: &[i32], key: &[u8]) -> Option<i32> {
    let key = u64::from(crc32c::crc32c(key));
    nodes
        .iter()
        .map(|n| {
            // The node and the key's checksum, mixed (splitmix64's
            // finalizer): a checksum alone is too linear to rank by.
            let mut x =
                (u64::from(n.unsigned_abs()) << 32 | key).wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
            (x, std::cmp::Reverse(*n))
        })
        .max()
        .map(|(_, std::cmp::Reverse(n))| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: i32) -> Member {
        Member {
            node,
            host: "127.0.0.1".into(),
            port: 9092 + node,
            incarnation: format!("i{node}"),
            counter: 0,
        }
    }

    /// Brokers on one store see each other while their leases are renewed,
    /// and one whose lease stops changing is gone within a lease.
    #[tokio::test]
    async fn leases_decide_who_is_live() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let path = dir.path().to_string_lossy().into_owned();
        let lease = Duration::from_millis(400);
        let mut a = Membership::new(Storage::open(&path, false, 0, &[])?, member(0), lease);
        let mut b = Membership::new(Storage::open(&path, false, 0, &[])?, member(1), lease);
        a.renew().await?;
        b.renew().await?;
        a.observe().await?;
        assert_eq!(a.live().keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(a.member(1).map(|m| m.port), Some(9093));
        // b stops renewing: gone once a lease has passed without a change.
        tokio::time::sleep(lease / 2).await;
        a.renew().await?;
        a.observe().await?;
        assert!(a.member(1).is_some(), "within its lease");
        tokio::time::sleep(lease).await;
        a.observe().await?;
        assert_eq!(a.live().keys().copied().collect::<Vec<_>>(), vec![0]);
        // It renews again: live again; it leaves: gone at once.
        b.renew().await?;
        a.observe().await?;
        assert!(a.member(1).is_some());
        b.storage.delete_lease(1).await?;
        a.observe().await?;
        assert!(a.member(1).is_none());
        Ok(())
    }

    /// Rendezvous hashing spreads keys and moves few when a node joins.
    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let keys: Vec<Vec<u8>> = (0..300u32).map(|k| k.to_be_bytes().to_vec()).collect();
        let three: Vec<i32> = keys
            .iter()
            .filter_map(|k| rendezvous(&[0, 1, 2], k))
            .collect();
        for n in 0..3 {
            let share = three.iter().filter(|x| **x == n).count();
            assert!((60..=140).contains(&share), "node {n}: {share} of 300");
        }
        let four: Vec<i32> = keys
            .iter()
            .filter_map(|k| rendezvous(&[0, 1, 2, 3], k))
            .collect();
        let moved = three.iter().zip(&four).filter(|(a, b)| a != b).count();
        assert!(moved < 120, "{moved} of 300 moved");
        assert!(three.iter().zip(&four).all(|(a, b)| a == b || *b == 3));
        assert_eq!(rendezvous(&[], b"k"), None);
    }
}
