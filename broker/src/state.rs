//! The broker's state, rebuilt from the commit log: topics, partitions and
//! where their batches live, committed group offsets, producer ids.
//!
//! [`State::apply`] is the only way state changes, both while serving and
//! while replaying, so a restarted broker ends up exactly where the old one
//! stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::log::{Command, CommittedOffset, CompactedRun};
use crate::storage::{compacted_object, COMPACTED};

/// How many recent batches per producer are remembered to spot retries.
pub const PRODUCER_WINDOW: usize = 5;

/// Where a stored batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLoc {
    /// First offset.
    pub base: i64,
    /// Last offset.
    pub last: i64,
    /// Largest timestamp in the batch.
    pub max_ts: i64,
    /// Commit object holding it.
    pub object: u64,
    /// Byte position in the object.
    pub pos: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A recent batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    /// First sequence.
    pub first_seq: i32,
    /// Last sequence.
    pub last_seq: i32,
    /// Offset it was stored at.
    pub base: i64,
}

/// What a partition remembers of an idempotent producer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    /// Current epoch.
    pub epoch: i16,
    /// Most recent batches, oldest first.
    pub recent: VecDeque<ProducerBatch>,
}

impl ProducerState {
    /// The sequence number the next batch must start with.
    pub fn next_seq(&self) -> Option<i32> {
        self.recent.back().map(|b| {
            if b.last_seq == i32::MAX {
                0
            } else {
                b.last_seq + 1
            }
        })
    }

    /// Records an appended batch.
    pub fn push(&mut self, epoch: i16, batch: ProducerBatch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.recent.clear();
        }
        self.recent.push_back(batch);
        while self.recent.len() > PRODUCER_WINDOW {
            self.recent.pop_front();
        }
    }
}

/// One partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Partition {
    /// First offset still readable.
    pub log_start: i64,
    /// Next offset to assign: the high watermark.
    pub next_offset: i64,
    /// Stored batches in offset order.
    pub batches: VecDeque<BatchLoc>,
    /// Total bytes of `batches`.
    pub bytes: u64,
    /// Idempotent producers seen on this partition.
    pub producers: HashMap<i64, ProducerState>,
    /// Offsets below this were compacted: at most one record per key.
    #[serde(default)]
    pub clean_end: i64,
    /// When the earliest tombstone kept by compaction may be removed (ms
    /// since the epoch), if any was kept.
    #[serde(default)]
    pub tombstones_due: Option<i64>,
}

impl Partition {
    /// Index of the first batch whose last offset is at or after `offset`.
    pub fn batch_index(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last < offset)
    }
}

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Id.
    pub id: Uuid,
    /// Config overrides (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<Partition>,
}

/// The whole durable state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Last commit object applied.
    pub last_seq: u64,
    /// Topics by id.
    pub topics: HashMap<Uuid, Topic>,
    /// Topic ids by name.
    pub names: BTreeMap<String, Uuid>,
    /// Committed offsets: group → (topic, partition) → offset.
    pub groups: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    /// Highest producer id handed out.
    pub last_producer_id: i64,
    /// Objects (commit objects and compaction outputs) not yet deleted,
    /// with how many live batches each holds.
    pub objects: BTreeMap<u64, u32>,
    /// Highest compaction output id reserved.
    pub last_object_id: u64,
    /// Compaction outputs reserved but not yet settled by a compaction
    /// commit (object ids).
    pub reserved: BTreeSet<u64>,
}

/// A snapshot on disk: the state plus a format marker.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    format: u32,
    state: SnapshotState,
}

/// JSON maps need string keys; groups are stored as lists.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotState {
    last_seq: u64,
    topics: Vec<Topic>,
    groups: BTreeMap<String, Vec<CommittedOffset>>,
    last_producer_id: i64,
    objects: Vec<(u64, u32)>,
    #[serde(default)]
    last_object_id: u64,
    #[serde(default)]
    reserved: Vec<u64>,
}

impl State {
    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.names.get(name).and_then(|id| self.topics.get(id))
    }

    /// Looks a partition up by topic name and index.
    pub fn partition(&self, name: &str, index: i32) -> Option<&Partition> {
        self.topic(name)?
            .partitions
            .get(usize::try_from(index).ok()?)
    }

    /// Applies the commands of commit object `seq`.
    pub fn apply(&mut self, seq: u64, commands: &[Command]) {
        self.last_seq = seq;
        self.objects.entry(seq).or_insert(0);
        for cmd in commands {
            self.apply_one(seq, cmd);
        }
    }

    fn release(&mut self, loc: &BatchLoc) {
        if let Some(n) = self.objects.get_mut(&loc.object) {
            *n = n.saturating_sub(1);
        }
    }

    fn apply_one(&mut self, seq: u64, cmd: &Command) {
        match cmd {
            Command::Batch {
                topic,
                partition,
                base,
                last_delta,
                max_ts,
                pos,
                len,
                producer_id,
                producer_epoch,
                first_seq,
            } => {
                let Some(p) = self
                    .topics
                    .get_mut(topic)
                    .and_then(|t| t.partitions.get_mut(*partition as usize))
                else {
                    return;
                };
                let loc = BatchLoc {
                    base: *base,
                    last: base + *last_delta as i64,
                    max_ts: *max_ts,
                    object: seq,
                    pos: *pos,
                    len: *len,
                };
                p.next_offset = loc.last + 1;
                p.bytes += *len as u64;
                p.batches.push_back(loc);
                if *producer_id >= 0 {
                    let last_seq = if *first_seq < 0 {
                        -1
                    } else {
                        ((*first_seq as i64 + *last_delta as i64) % (i32::MAX as i64 + 1)) as i32
                    };
                    p.producers.entry(*producer_id).or_default().push(
                        *producer_epoch,
                        ProducerBatch {
                            first_seq: *first_seq,
                            last_seq,
                            base: *base,
                        },
                    );
                }
                *self.objects.entry(seq).or_insert(0) += 1;
            }
            Command::CreateTopic {
                name,
                id,
                partitions,
                configs,
            } => {
                self.names.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    Topic {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: (0..*partitions).map(|_| Partition::default()).collect(),
                    },
                );
            }
            Command::DeleteTopic { id } => {
                if let Some(t) = self.topics.remove(id) {
                    if self.names.get(&t.name) == Some(id) {
                        self.names.remove(&t.name);
                    }
                    for p in &t.partitions {
                        for b in &p.batches {
                            self.release(b);
                        }
                    }
                }
            }
            Command::AddPartitions { id, count } => {
                if let Some(t) = self.topics.get_mut(id) {
                    while (t.partitions.len() as i32) < *count {
                        t.partitions.push(Partition::default());
                    }
                }
            }
            Command::SetConfigs { id, configs } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.configs = configs.clone();
                }
            }
            Command::SetLogStart {
                id,
                partition,
                offset,
            } => {
                let mut released = Vec::new();
                if let Some(p) = self
                    .topics
                    .get_mut(id)
                    .and_then(|t| t.partitions.get_mut(*partition as usize))
                {
                    if *offset > p.log_start {
                        p.log_start = (*offset).min(p.next_offset);
                        while p.batches.front().is_some_and(|b| b.last < p.log_start) {
                            if let Some(b) = p.batches.pop_front() {
                                p.bytes -= b.len as u64;
                                released.push(b);
                            }
                        }
                    }
                }
                for b in &released {
                    self.release(b);
                }
            }
            Command::CommitOffsets { group, offsets } => {
                let g = self.groups.entry(group.clone()).or_default();
                for o in offsets {
                    g.insert((o.topic.clone(), o.partition), o.clone());
                }
            }
            Command::DeleteGroup { group } => {
                self.groups.remove(group);
            }
            Command::Fenced { .. } => {}
            Command::Adopt { partitions, groups } => {
                for a in partitions {
                    let Some(slot) = self
                        .topics
                        .get_mut(&a.topic)
                        .and_then(|t| t.partitions.get_mut(usize::try_from(a.partition).ok()?))
                    else {
                        continue;
                    };
                    let old = std::mem::replace(slot, a.state.clone());
                    for b in &old.batches {
                        self.release(b);
                    }
                    for b in &a.state.batches {
                        *self.objects.entry(b.object).or_insert(0) += 1;
                    }
                }
                for (group, offsets) in groups {
                    self.groups.insert(
                        group.clone(),
                        offsets
                            .iter()
                            .map(|o| ((o.topic.clone(), o.partition), o.clone()))
                            .collect(),
                    );
                }
            }
            Command::AllocateProducerId { id } => {
                self.last_producer_id = self.last_producer_id.max(*id);
            }
            Command::Started { .. } => {}
            Command::ReserveObject { id } => {
                self.last_object_id = self.last_object_id.max(*id);
                let object = compacted_object(*id);
                self.objects.entry(object).or_insert(0);
                self.reserved.insert(object);
            }
            Command::Compact { objects, runs } => {
                for id in objects {
                    self.reserved.remove(&compacted_object(*id));
                }
                for run in runs {
                    self.apply_run(run);
                }
            }
        }
    }

    /// Where `run` would go: the index range of the batches it replaces,
    /// if the partition still holds exactly those batches.
    fn run_range(&self, run: &CompactedRun) -> Option<(Uuid, usize, std::ops::Range<usize>)> {
        let p = self
            .topics
            .get(&run.topic)?
            .partitions
            .get(usize::try_from(run.partition).ok()?)?;
        let count = usize::try_from(run.count).ok().filter(|c| *c > 0)?;
        let i = p.batch_index(run.from);
        let j = i.checked_add(count)?;
        if j > p.batches.len() || p.batches[i].base != run.from || p.batches[j - 1].last != run.to {
            return None;
        }
        // The replacements lie inside the run, in order, without overlap.
        let mut next = run.from;
        for b in &run.batches {
            if b.base < next || b.last < b.base || b.last > run.to {
                return None;
            }
            next = b.last + 1;
        }
        Some((run.topic, usize::try_from(run.partition).ok()?, i..j))
    }

    /// Whether `run` still applies: the partition holds exactly the batches
    /// it replaces (retention, DeleteRecords or a topic deletion since the
    /// compaction read them make it stale, and it is skipped).
    pub fn run_applies(&self, run: &CompactedRun) -> bool {
        self.run_range(run).is_some()
    }

    fn apply_run(&mut self, run: &CompactedRun) {
        let Some((topic, index, range)) = self.run_range(run) else {
            return;
        };
        let Some(p) = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.partitions.get_mut(index))
        else {
            return;
        };
        let tail = p.batches.split_off(range.end);
        let old: Vec<BatchLoc> = p.batches.drain(range.start..).collect();
        p.batches.extend(run.batches.iter().copied());
        p.batches.extend(tail);
        for b in &old {
            p.bytes = p.bytes.saturating_sub(b.len as u64);
        }
        for b in &run.batches {
            p.bytes += b.len as u64;
        }
        p.clean_end = p.clean_end.max(run.clean_end);
        p.tombstones_due = run.tombstones_due;
        for b in &old {
            self.release(b);
        }
        for b in &run.batches {
            *self.objects.entry(b.object).or_insert(0) += 1;
        }
    }

    /// Serialises the state for a snapshot.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut topics: Vec<Topic> = self.topics.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let snap = SnapshotFile {
            format: 1,
            state: SnapshotState {
                last_seq: self.last_seq,
                topics,
                groups: self
                    .groups
                    .iter()
                    .map(|(g, o)| (g.clone(), o.values().cloned().collect()))
                    .collect(),
                last_producer_id: self.last_producer_id,
                objects: self.objects.iter().map(|(k, v)| (*k, *v)).collect(),
                last_object_id: self.last_object_id,
                reserved: self.reserved.iter().copied().collect(),
            },
        };
        serde_json::to_vec(&snap)
    }

    /// Restores a snapshot.
    pub fn from_snapshot(data: &[u8]) -> Result<Self, serde_json::Error> {
        let snap: SnapshotFile = serde_json::from_slice(data)?;
        let s = snap.state;
        let mut state = State {
            last_seq: s.last_seq,
            last_producer_id: s.last_producer_id,
            objects: s.objects.into_iter().collect(),
            last_object_id: s.last_object_id,
            reserved: s.reserved.into_iter().collect(),
            ..Default::default()
        };
        for t in s.topics {
            state.names.insert(t.name.clone(), t.id);
            state.topics.insert(t.id, t);
        }
        for (g, offsets) in s.groups {
            let m = state.groups.entry(g).or_default();
            for o in offsets {
                m.insert((o.topic.clone(), o.partition), o);
            }
        }
        Ok(state)
    }

    /// Compaction outputs that no live batch needs and no compaction in
    /// progress may still reference: replaced ones, and reserved ones whose
    /// compaction never committed (the broker died or the pass failed).
    /// Only call this while no compaction pass is running.
    pub fn dead_compacted(&self) -> BTreeSet<u64> {
        self.objects
            .range(COMPACTED..)
            .filter(|(_, refs)| **refs == 0)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Commit objects at or before `upto` that no live batch needs.
    pub fn dead_objects(&self, upto: u64) -> BTreeSet<u64> {
        self.objects
            .range(..=upto)
            .filter(|(_, refs)| **refs == 0)
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(topic: Uuid, partition: i32, base: i64, n: i32, len: u32) -> Command {
        Command::Batch {
            topic,
            partition,
            base,
            last_delta: n - 1,
            max_ts: base,
            pos: 0,
            len,
            producer_id: 3,
            producer_epoch: 0,
            first_seq: base as i32,
        }
    }

    #[test]
    fn apply_tracks_offsets_producers_and_object_refs() {
        let id = Uuid::new_v4();
        let mut s = State::default();
        s.apply(
            1,
            &[Command::CreateTopic {
                name: "t".into(),
                id,
                partitions: 1,
                configs: BTreeMap::new(),
            }],
        );
        s.apply(2, &[batch(id, 0, 0, 10, 100)]);
        s.apply(3, &[batch(id, 0, 10, 5, 50)]);
        let p = s.partition("t", 0).expect("partition");
        assert_eq!(p.next_offset, 15);
        assert_eq!(p.bytes, 150);
        assert_eq!(p.producers[&3].next_seq(), Some(15));
        assert_eq!(s.objects.get(&2), Some(&1));

        s.apply(
            4,
            &[Command::SetLogStart {
                id,
                partition: 0,
                offset: 12,
            }],
        );
        let p = s.partition("t", 0).expect("partition");
        assert_eq!(p.log_start, 12);
        assert_eq!(
            p.batches.len(),
            1,
            "the first batch is wholly below the start"
        );
        assert_eq!(s.dead_objects(4), BTreeSet::from([1, 2, 4]));

        let restored = State::from_snapshot(&s.to_snapshot().expect("snap")).expect("restore");
        assert_eq!(restored.partition("t", 0).map(|p| p.next_offset), Some(15));
        assert_eq!(restored.objects, s.objects);

        s.apply(5, &[Command::DeleteTopic { id }]);
        assert!(s.topic("t").is_none());
        assert!(s.dead_objects(5).contains(&3));
    }
}
