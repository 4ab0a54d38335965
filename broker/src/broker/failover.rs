//! Taking over the partitions and coordinator slots of a broker that is
//! gone (sections 8 and 9 of `docs/design/broker-cluster.md`).
//!
//! Every broker looks, every quarter of the lease and whenever membership
//! changes, for keys (partitions, coordinator slots) whose leader is not
//! live. A key goes to the live broker rendezvous hashing names for it;
//! that broker takes all such keys of the dead leader X at once:
//!
//! 1. **Plug.** It creates a `Fenced` commit at the next free sequence
//!    number of X's log (create-only). X writes its numbers in order, so
//!    none of its writes can land at or after the plug: whatever X
//!    acknowledged is before it, and X, if it is only paused, finds the
//!    number taken at its next commit and stops.
//! 2. **Rebuild.** It reads X's log up to the plug (X's newest snapshot,
//!    then the commits after it) into X's state: each partition's batches
//!    (in X's objects, which it now reads), offsets and idempotent
//!    producers, and the groups' committed offsets.
//! 3. **Adopt.** It commits those keys' state in its own log.
//! 4. **Lead.** It appends `Lead` at the next epoch for each key X still
//!    leads to the metadata log; only the first `Lead` of an epoch holds,
//!    so of two brokers taking the same key one wins and the other's
//!    adopted copy stays unused.
//!
//! A broker that restarts after being taken over, or while a takeover of
//! its keys may run, leads its keys again at the next epoch before it
//! serves them ([`relead`]), so that a takeover in flight and the restart
//! cannot both serve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::committer::AdminOp;
use crate::error::{BrokerError, StorageError};
use crate::log::{AdoptedPartition, Command, CommitBuilder};
use crate::members::rendezvous;
use crate::meta::{Key, Meta, MetaCommand};
use crate::storage::{node_base, Storage};

use super::Shared;

/// Where a key goes among `live` brokers.
fn target(live: &[i32], key: Key) -> Option<i32> {
    let bytes = match key {
        Key::Partition { topic, partition } => {
            let mut b = topic.as_bytes().to_vec();
            b.extend_from_slice(&partition.to_be_bytes());
            b
        }
        Key::Slot(s) => {
            let mut b = b"slot".to_vec();
            b.extend_from_slice(&s.to_be_bytes());
            b
        }
    };
    rendezvous(live, &bytes)
}

/// Every key of the cluster with its leader.
fn keys(meta: &Meta) -> impl Iterator<Item = (Key, i32)> + '_ {
    let partitions = meta.topics.iter().flat_map(|(id, t)| {
        t.partitions.iter().enumerate().map(|(p, l)| {
            (
                Key::Partition {
                    topic: *id,
                    partition: i32::try_from(p).unwrap_or(i32::MAX),
                },
                l.node,
            )
        })
    });
    let slots = meta
        .slots
        .iter()
        .enumerate()
        .map(|(s, l)| (Key::Slot(u32::try_from(s).unwrap_or(u32::MAX)), l.node));
    partitions.chain(slots)
}

/// The keys `me` should take over: those whose leader is not `live`,
/// grouped by that leader.
fn orphans(meta: &Meta, live: &[i32], me: i32) -> BTreeMap<i32, Vec<Key>> {
    let mut out: BTreeMap<i32, Vec<Key>> = BTreeMap::new();
    for (key, leader) in keys(meta) {
        if !live.contains(&leader) && target(live, key) == Some(me) {
            out.entry(leader).or_default().push(key);
        }
    }
    out
}

/// Watches membership and takes over what this broker should, until the
/// broker stops.
pub(super) async fn follow(shared: Arc<Shared>) {
    let mut members = shared.members.clone();
    let mut tick = tokio::time::interval(shared.config.lease / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = members.changed() => if changed.is_err() { return },
        }
        if *shared.fenced.borrow() {
            return;
        }
        if let Err(e) = reconcile(&shared).await {
            tracing::warn!(error = %e, "moving keys failed; trying again");
        }
    }
}

/// Most keys a broker hands to others per round (joins move keys a few at
/// a time, so clients see short pauses, not one long one).
const MOVES_PER_ROUND: usize = 8;

/// One round: take over what dead brokers led, take what is handed here,
/// take back what was handed to a broker that went away, and hand keys
/// whose place is now another broker's (one that joined) to it.
async fn reconcile(shared: &Shared) -> Result<(), BrokerError> {
    if shared.leaving.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    if plugged(shared).await? {
        tracing::error!("another broker closed this broker's log (it was gone past its lease)");
        shared.fenced.send_replace(true);
        return Ok(());
    }
    let me = shared.node();
    let meta = shared.meta.current();
    let live: Vec<i32> = shared.live().keys().copied().collect();
    let orphaned = orphans(&meta, &live, me);
    for (from, keys) in &orphaned {
        let won = take_over(shared, *from, keys).await?;
        tracing::info!(
            from,
            keys = keys.len(),
            won,
            "took over the keys of a broker that is gone"
        );
    }
    let mut handed: BTreeMap<i32, Vec<Key>> = BTreeMap::new();
    let mut stranded = Vec::new();
    let mut moves = Vec::new();
    for (key, leader) in keys(&meta) {
        let Some(l) = meta.leadership(key) else {
            continue;
        };
        match l.handoff {
            Some((_, to)) if to == me && live.contains(&leader) => {
                handed.entry(leader).or_default().push(key);
            }
            Some((_, to)) if leader == me && !live.contains(&to) => stranded.push(key),
            None if leader == me && moves.len() < MOVES_PER_ROUND => {
                if let Some(to) = target(&live, key).filter(|t| *t != me) {
                    moves.push((key, to));
                }
            }
            _ => {}
        }
    }
    for (from, keys) in &handed {
        let won = adopt_handoff(shared, *from, keys).await?;
        tracing::info!(from, keys = keys.len(), won, "took over keys handed here");
    }
    if !stranded.is_empty() {
        // Handed to a broker that went away before it took them: this
        // broker's state of them is as it was; lead them again.
        let kept = lead(shared, &stranded, |l| l == me).await?;
        tracing::info!(kept, "took back keys handed to a broker that is gone");
    }
    if orphaned.is_empty() && handed.is_empty() && !moves.is_empty() {
        hand_off(shared, &moves).await?;
    }
    Ok(())
}

/// Hands `moves` (key, to) over: stops serving them, lets every write
/// already queued become durable, and records the handoffs in the metadata
/// log; the receivers rebuild them from this broker's log.
async fn hand_off(shared: &Shared, moves: &[(Key, i32)]) -> Result<(), BrokerError> {
    let me = shared.node();
    if let Ok(mut r) = shared.released.lock() {
        r.extend(moves.iter().map(|(k, _)| *k));
    }
    let result = async {
        // The committer answers admin ops in order: once this one is
        // answered, every produce queued before it is durable or failed.
        shared
            .committer
            .admin(AdminOp::Mirror)
            .await
            .map_err(|(code, message)| BrokerError::Refused { code, message })?;
        let end_seq = shared.state.read().map(|s| s.last_seq).unwrap_or(0);
        shared
            .meta
            .append_with(|m| {
                Ok(moves
                    .iter()
                    .filter_map(|(key, to)| {
                        let l = m.leadership(*key)?;
                        (l.node == me && l.handoff.is_none()).then_some(MetaCommand::Handoff {
                            key: *key,
                            epoch: l.epoch,
                            from: me,
                            end_seq,
                            to: *to,
                        })
                    })
                    .collect())
            })
            .await
            .map_err(|e| BrokerError::Config(format!("the metadata log: {e}")))
    }
    .await;
    if let Ok(mut r) = shared.released.lock() {
        for (k, _) in moves {
            r.remove(k);
        }
    }
    result?;
    tracing::info!(keys = moves.len(), "handed keys to brokers that joined");
    Ok(())
}

/// A clean stop in a cluster: stops serving every key, lets every queued
/// write become durable, leaves the cluster (the lease goes), and waits (at
/// most `limit`) until the other brokers lead every key it led: they take
/// them over as from a broker that is gone, which it now is for them.
/// Clients see a short pause and retriable errors.
pub(super) async fn hand_everything_off(
    shared: &Shared,
    limit: std::time::Duration,
) -> Result<(), BrokerError> {
    let me = shared.node();
    if shared.live().keys().all(|n| *n == me) {
        return Ok(());
    }
    shared
        .leaving
        .store(true, std::sync::atomic::Ordering::Release);
    let meta = shared.meta.current();
    if let Ok(mut r) = shared.released.lock() {
        r.extend(keys(&meta).filter(|(_, l)| *l == me).map(|(k, _)| k));
    }
    // Admin ops are answered in order: every write queued before this one
    // is durable (or failed) once it is answered.
    shared
        .committer
        .admin(AdminOp::Mirror)
        .await
        .map_err(|(code, message)| BrokerError::Refused { code, message })?;
    // Leave: no more renewals, and no lease for the others to see.
    shared.shutdown.send_replace(true);
    shared.storage.delete_lease(me).await?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        shared.meta.catch_up().await?;
        let led = keys(&shared.meta.current())
            .filter(|(_, l)| *l == me)
            .count();
        if led == 0 {
            tracing::info!("every key taken over by the other brokers");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(led, "stopping before every key was taken over");
            return Ok(());
        }
        tokio::time::sleep(shared.config.lease / 8).await;
    }
}

/// Takes `keys` handed here by live broker `from`: its log, read to its
/// end, holds everything of them (it stopped writing them before it
/// recorded the handoff).
async fn adopt_handoff(shared: &Shared, from: i32, keys: &[Key]) -> Result<usize, BrokerError> {
    let theirs = shared.storage.for_other(from);
    let state = super::recover(&theirs, from, None).await?;
    adopt(shared, &state, keys).await?;
    lead(shared, keys, |l| l == from).await
}

/// Whether another broker plugged this broker's log: a commit at the
/// next number that this broker did not write. Checked every round, so a
/// broker that was paused knows it at once, even with nothing to write.
async fn plugged(shared: &Shared) -> Result<bool, StorageError> {
    let next = shared.state.read().map(|s| s.last_seq + 1).unwrap_or(0);
    let Some(object) = shared.storage.find_commit(next).await? else {
        return Ok(false);
    };
    // A plug, or the first commit of a newer process started under this
    // broker's id (this one writes `Started` only when it starts).
    Ok(crate::log::parse(next, &object)?.iter().any(|c| {
        matches!(c, Command::Fenced { by } if *by != shared.node())
            || matches!(c, Command::Started { .. })
    }))
}

/// Plugs `theirs` (broker `from`'s log) for `me`: the sequence number of
/// the plug.
async fn plug(theirs: &Storage, from: i32, me: i32) -> Result<u64, StorageError> {
    let commits = theirs.list_commits().await?;
    let mut seq = commits.last().copied().unwrap_or(node_base(from)) + 1;
    // A broker still writing takes numbers as fast as we try them: go on
    // past them without reading in between.
    for _ in 0..256 {
        let mut builder = CommitBuilder::default();
        builder.push(Command::Fenced { by: me });
        let (object, _) = builder.finish(seq, theirs.writer())?;
        match theirs.create_commit(seq, object).await {
            Ok(()) => return Ok(seq),
            Err(StorageError::Fenced(_)) => seq += 1,
            Err(e) => return Err(e),
        }
    }
    Err(StorageError::Corrupt(format!(
        "broker {from}'s log kept growing past 256 attempts to close it"
    )))
}

/// Takes `keys` over from broker `from`: plug, rebuild, adopt, lead. The
/// number of keys this broker now leads.
async fn take_over(shared: &Shared, from: i32, keys: &[Key]) -> Result<usize, BrokerError> {
    let theirs = shared.storage.for_other(from);
    let plugged = plug(&theirs, from, shared.node()).await?;
    let state = super::recover(&theirs, from, Some(plugged)).await?;
    adopt(shared, &state, keys).await?;
    lead(shared, keys, |l| l == from).await
}

/// Commits, in this broker's log, the state of `keys` as `state` (another
/// broker's, rebuilt from its log) has them.
async fn adopt(
    shared: &Shared,
    state: &crate::state::State,
    keys: &[Key],
) -> Result<(), BrokerError> {
    let refused = |(code, message)| BrokerError::Refused { code, message };
    shared
        .committer
        .admin(AdminOp::Mirror)
        .await
        .map_err(refused)?;
    let meta = shared.meta.current();
    let mut partitions = Vec::new();
    let mut slots = BTreeSet::new();
    for key in keys {
        match *key {
            Key::Partition { topic, partition } => partitions.push(AdoptedPartition {
                topic,
                partition,
                state: state
                    .topics
                    .get(&topic)
                    .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
                    .cloned()
                    .unwrap_or_default(),
            }),
            Key::Slot(s) => {
                slots.insert(s);
            }
        }
    }
    let groups: BTreeMap<String, Vec<crate::log::CommittedOffset>> = state
        .groups
        .iter()
        .filter(|(g, _)| meta.slot_of(g).is_some_and(|s| slots.contains(&s)))
        .map(|(g, offsets)| (g.clone(), offsets.values().cloned().collect()))
        .collect();
    shared
        .committer
        .admin(AdminOp::Adopt { partitions, groups })
        .await
        .map_err(refused)?;
    Ok(())
}

/// Appends `Lead` at the next epoch, for this broker, of each of `keys`
/// whose leader `still` accepts; how many of them this broker leads now.
async fn lead(
    shared: &Shared,
    keys: &[Key],
    still: impl Fn(i32) -> bool,
) -> Result<usize, BrokerError> {
    let me = shared.node();
    let from_seq = shared.state.read().map(|s| s.last_seq).unwrap_or(0);
    let (_, after) = shared
        .meta
        .append_with(|m| {
            Ok(keys
                .iter()
                .filter_map(|k| {
                    let l = m.leadership(*k)?;
                    still(l.node).then_some(MetaCommand::Lead {
                        key: *k,
                        epoch: l.epoch + 1,
                        node: me,
                        from_seq,
                    })
                })
                .collect())
        })
        .await
        .map_err(|e| BrokerError::Config(format!("the metadata log: {e}")))?;
    Ok(keys
        .iter()
        .filter(|k| after.leadership(**k).is_some_and(|l| l.node == me))
        .count())
}

/// Leads again, at the next epoch, every key the metadata log says this
/// broker leads, before it serves: a broker taking them over meanwhile
/// (this broker was gone long enough) and this restart cannot both serve
/// them; whichever `Lead` comes first holds. Only when other brokers'
/// logs are in the store: a broker alone has nobody to race.
pub(super) async fn relead(shared: &Shared) -> Result<(), BrokerError> {
    if shared.storage.other_nodes(shared.node()).await?.is_empty() {
        return Ok(());
    }
    let me = shared.node();
    let meta = shared.meta.current();
    let mine: Vec<Key> = keys(&meta)
        .filter(|(_, l)| *l == me)
        .map(|(k, _)| k)
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let kept = lead(shared, &mine, |l| l == me).await?;
    tracing::info!(kept, of = mine.len(), "led this broker's keys again");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Leadership;
    use uuid::Uuid;

    /// Keys of a dead broker go to the live ones, spread, each to exactly
    /// one of them; keys of live brokers stay.
    #[test]
    fn orphans_are_shared_out_once() {
        let mut meta = Meta::default();
        let id = Uuid::new_v4();
        let l = |node| Leadership {
            node,
            epoch: 0,
            from_seq: 0,
            handoff: None,
        };
        meta.topics.insert(
            id,
            crate::meta::TopicMeta {
                name: "t".into(),
                id,
                configs: BTreeMap::new(),
                partitions: (0..30).map(|p| l(p % 3)).collect(),
            },
        );
        meta.slots = (0..16).map(|_| l(0)).collect();
        let live = [1, 2];
        let one = orphans(&meta, &live, 1);
        let two = orphans(&meta, &live, 2);
        assert_eq!(one.keys().copied().collect::<Vec<_>>(), vec![0]);
        let taken = one[&0].len() + two[&0].len();
        assert_eq!(taken, 10 + 16, "every key of broker 0, once");
        assert!(!one[&0].is_empty() && !two[&0].is_empty());
        assert!(orphans(&meta, &[0, 1, 2], 1).is_empty());
    }
}
