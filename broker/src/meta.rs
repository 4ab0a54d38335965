//! The cluster's shared control state: topics and their configs, who leads
//! each partition and each group coordinator slot at which epoch, and the
//! blocks of producer ids handed to brokers (see
//! `docs/design/broker-cluster.md`, section 4).
//!
//! Every change is a [`MetaCommand`] in the metadata log (`meta/<seq>`,
//! appended with create-only writes by [`crate::meta_log`]); every broker
//! applies the same commands in the same order, so every broker holds the
//! same [`Meta`] for the same prefix of the log. Applying is pure and
//! deterministic: a command that does not hold against the state it is
//! applied to (which only a writer that skipped [`Meta::check`] could log)
//! changes nothing.
//!
//! Leadership is taken by a `Lead` whose epoch is the current one plus one:
//! of two brokers racing for a partition, only the first `Lead` in the log
//! counts, and the other finds its own refused when it catches up.
//!
//! The broker follows it: the topic catalog is mirrored into each broker's
//! own log ([`crate::catalog`]), handlers check leadership against it, and
//! takeovers and handoffs change it (`broker/failover.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What has a leader: a partition, or a group coordinator slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// Partition `partition` of topic `topic`.
    Partition {
        /// Topic id.
        topic: Uuid,
        /// Partition index.
        partition: i32,
    },
    /// Group coordinator slot (a group's slot is a hash of its id).
    Slot(u32),
}

/// Who leads a key, since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The leading broker.
    pub node: i32,
    /// Bumped by every change of leader.
    pub epoch: i32,
    /// The sequence number in the leader's own log where its state of the
    /// key starts (its checkpoint); 0 for a key that starts empty.
    pub from_seq: u64,
    /// Set while the leader hands the key over: (the seq of its release in
    /// its log, the broker taking over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<(u64, i32)>,
}

impl Leadership {
    fn new(node: i32) -> Self {
        Self {
            node,
            epoch: 0,
            from_seq: 0,
            handoff: None,
        }
    }
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Name.
    pub name: String,
    /// Id.
    pub id: Uuid,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// One per partition.
    pub partitions: Vec<Leadership>,
}

/// One change of the shared control state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaCommand {
    /// The log's first command: how many coordinator slots there are, and
    /// who leads them at first.
    Init {
        /// Slot count (fixed for the cluster's life).
        slots: u32,
        /// The first leader of each slot (as many as `slots`).
        leaders: Vec<i32>,
    },
    /// A topic was created; `leaders` has one broker per partition.
    CreateTopic {
        /// Name.
        name: String,
        /// Id.
        id: Uuid,
        /// Config overrides.
        configs: BTreeMap<String, String>,
        /// The first leader of each partition.
        leaders: Vec<i32>,
    },
    /// A topic's partition count grew to `leaders.len()` plus the
    /// partitions it had.
    AddPartitions {
        /// Topic id.
        id: Uuid,
        /// The first leader of each new partition.
        leaders: Vec<i32>,
    },
    /// A topic was deleted.
    DeleteTopic {
        /// Id.
        id: Uuid,
    },
    /// A topic's config overrides were replaced.
    SetConfigs {
        /// Id.
        id: Uuid,
        /// The full new set.
        configs: BTreeMap<String, String>,
    },
    /// `node` leads `key` from epoch `epoch`, its state starting at
    /// `from_seq` of its own log. Holds only if `epoch` is the current
    /// epoch plus one.
    Lead {
        /// What.
        key: Key,
        /// The new epoch.
        epoch: i32,
        /// The new leader.
        node: i32,
        /// Its checkpoint's seq in its log.
        from_seq: u64,
    },
    /// The leader of `key` at `epoch` released it at `end_seq` of its log,
    /// for `to` to take over.
    Handoff {
        /// What.
        key: Key,
        /// The current epoch.
        epoch: i32,
        /// The leader handing it off (the only broker that may).
        from: i32,
        /// The release's seq in the leader's log.
        end_seq: u64,
        /// Who takes over.
        to: i32,
    },
    /// Producer ids `first..first + count` are `node`'s to hand out.
    AllocateProducerIds {
        /// The broker.
        node: i32,
        /// The first id (the last id handed out before, plus one).
        first: i64,
        /// How many.
        count: i64,
    },
}

/// Why a command does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The log has no `Init` yet, or `Init` came twice.
    #[error("{0}")]
    Init(String),
    /// A topic of that name exists.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// No such topic.
    #[error("no topic with id {0}")]
    UnknownTopic(Uuid),
    /// No such partition or slot.
    #[error("no such partition or slot: {0:?}")]
    UnknownKey(Key),
    /// Someone else changed the key's leadership first.
    #[error("{key:?} is at epoch {current}, not {expected}")]
    StaleEpoch {
        /// What.
        key: Key,
        /// Its epoch now.
        current: i32,
        /// The epoch the command was made for.
        expected: i32,
    },
    /// A handoff by a broker that does not lead the key.
    #[error("{key:?} is led by {leader}, not {node}")]
    NotLeader {
        /// What.
        key: Key,
        /// The leader now.
        leader: i32,
        /// Who claimed it.
        node: i32,
    },
    /// Producer ids were handed out meanwhile.
    #[error("producer ids from {expected} are next, not {first}")]
    ProducerIds {
        /// The next free id.
        expected: i64,
        /// The block's first id.
        first: i64,
    },
    /// Anything else that makes no sense (empty leaders, …).
    #[error("{0}")]
    Invalid(String),
}

/// The shared control state at one point of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The last applied seq of the metadata log (0: none).
    pub last_seq: u64,
    /// Topics by id.
    pub topics: BTreeMap<Uuid, TopicMeta>,
    /// Topic ids by name.
    pub names: BTreeMap<String, Uuid>,
    /// The leader of each coordinator slot (empty before `Init`).
    pub slots: Vec<Leadership>,
    /// The last producer id handed to a broker.
    pub last_producer_id: i64,
}

impl Meta {
    /// The leadership of `key`, if it exists.
    pub fn leadership(&self, key: Key) -> Option<&Leadership> {
        match key {
            Key::Partition { topic, partition } => self
                .topics
                .get(&topic)?
                .partitions
                .get(usize::try_from(partition).ok()?),
            Key::Slot(s) => self.slots.get(usize::try_from(s).ok()?),
        }
    }

    /// The leadership of partition `partition` of the topic named `name`.
    pub fn partition_leader(&self, name: &str, partition: i32) -> Option<&Leadership> {
        let topic = *self.names.get(name)?;
        self.leadership(Key::Partition { topic, partition })
    }

    /// The coordinator slot of group `group` (a hash of its id), if the
    /// log is initialized.
    pub fn slot_of(&self, group: &str) -> Option<u32> {
        let slots = u32::try_from(self.slots.len()).ok().filter(|n| *n > 0)?;
        Some(crc32c::crc32c(group.as_bytes()) % slots)
    }

    /// The leader of group `group`'s coordinator slot.
    pub fn coordinator_of(&self, group: &str) -> Option<&Leadership> {
        self.leadership(Key::Slot(self.slot_of(group)?))
    }

    fn leadership_mut(&mut self, key: Key) -> Option<&mut Leadership> {
        match key {
            Key::Partition { topic, partition } => self
                .topics
                .get_mut(&topic)?
                .partitions
                .get_mut(usize::try_from(partition).ok()?),
            Key::Slot(s) => self.slots.get_mut(usize::try_from(s).ok()?),
        }
    }

    /// Whether `cmd` holds against this state (what a writer checks before
    /// it appends, and what applying checks again).
    pub fn check(&self, cmd: &MetaCommand) -> Result<(), Refused> {
        let initialized = !self.slots.is_empty();
        let leaders_ok = |leaders: &[i32]| {
            if leaders.is_empty() || leaders.iter().any(|n| *n < 0) {
                Err(Refused::Invalid(
                    "a leader for every new key is needed".into(),
                ))
            } else {
                Ok(())
            }
        };
        match cmd {
            MetaCommand::Init { slots, leaders } => {
                if initialized {
                    return Err(Refused::Init("the metadata log is initialized".into()));
                }
                if *slots == 0 || leaders.len() != *slots as usize {
                    return Err(Refused::Init(
                        "Init needs one leader per coordinator slot".into(),
                    ));
                }
                leaders_ok(leaders)
            }
            _ if !initialized => Err(Refused::Init("the metadata log is not initialized".into())),
            MetaCommand::CreateTopic {
                name, id, leaders, ..
            } => {
                if self.names.contains_key(name) || self.topics.contains_key(id) {
                    return Err(Refused::TopicExists(name.clone()));
                }
                leaders_ok(leaders)
            }
            MetaCommand::AddPartitions { id, leaders } => {
                if !self.topics.contains_key(id) {
                    return Err(Refused::UnknownTopic(*id));
                }
                leaders_ok(leaders)
            }
            MetaCommand::DeleteTopic { id } | MetaCommand::SetConfigs { id, .. } => {
                if self.topics.contains_key(id) {
                    Ok(())
                } else {
                    Err(Refused::UnknownTopic(*id))
                }
            }
            MetaCommand::Lead {
                key, epoch, node, ..
            } => {
                let l = self.leadership(*key).ok_or(Refused::UnknownKey(*key))?;
                if *node < 0 {
                    return Err(Refused::Invalid(format!("no broker {node}")));
                }
                if *epoch != l.epoch + 1 {
                    return Err(Refused::StaleEpoch {
                        key: *key,
                        current: l.epoch,
                        expected: epoch - 1,
                    });
                }
                Ok(())
            }
            MetaCommand::Handoff {
                key,
                epoch,
                from,
                to,
                ..
            } => {
                let l = self.leadership(*key).ok_or(Refused::UnknownKey(*key))?;
                if *epoch != l.epoch {
                    return Err(Refused::StaleEpoch {
                        key: *key,
                        current: l.epoch,
                        expected: *epoch,
                    });
                }
                if *from != l.node {
                    return Err(Refused::NotLeader {
                        key: *key,
                        leader: l.node,
                        node: *from,
                    });
                }
                if *to < 0 || *to == *from {
                    return Err(Refused::Invalid(format!("no handoff from {from} to {to}")));
                }
                Ok(())
            }
            MetaCommand::AllocateProducerIds { first, count, .. } => {
                if *first != self.last_producer_id + 1 {
                    return Err(Refused::ProducerIds {
                        expected: self.last_producer_id + 1,
                        first: *first,
                    });
                }
                if *count <= 0 || first.checked_add(*count).is_none() {
                    return Err(Refused::Invalid(format!(
                        "no block of {count} producer ids from {first}"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Applies the commands of metadata log entry `seq`, in order; each
    /// that does not hold ([`Meta::check`]) is skipped. Returns what each
    /// command came to.
    pub fn apply(&mut self, seq: u64, commands: &[MetaCommand]) -> Vec<Result<(), Refused>> {
        self.last_seq = seq;
        commands
            .iter()
            .map(|c| {
                self.check(c)?;
                self.apply_checked(c);
                Ok(())
            })
            .collect()
    }

    fn apply_checked(&mut self, cmd: &MetaCommand) {
        match cmd {
            MetaCommand::Init { leaders, .. } => {
                self.slots = leaders.iter().map(|n| Leadership::new(*n)).collect();
            }
            MetaCommand::CreateTopic {
                name,
                id,
                configs,
                leaders,
            } => {
                self.names.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicMeta {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: leaders.iter().map(|n| Leadership::new(*n)).collect(),
                    },
                );
            }
            MetaCommand::AddPartitions { id, leaders } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.partitions
                        .extend(leaders.iter().map(|n| Leadership::new(*n)));
                }
            }
            MetaCommand::DeleteTopic { id } => {
                if let Some(t) = self.topics.remove(id) {
                    self.names.remove(&t.name);
                }
            }
            MetaCommand::SetConfigs { id, configs } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.configs = configs.clone();
                }
            }
            MetaCommand::Lead {
                key,
                epoch,
                node,
                from_seq,
            } => {
                if let Some(l) = self.leadership_mut(*key) {
                    *l = Leadership {
                        node: *node,
                        epoch: *epoch,
                        from_seq: *from_seq,
                        handoff: None,
                    };
                }
            }
            MetaCommand::Handoff {
                key, end_seq, to, ..
            } => {
                if let Some(l) = self.leadership_mut(*key) {
                    l.handoff = Some((*end_seq, *to));
                }
            }
            MetaCommand::AllocateProducerIds { first, count, .. } => {
                self.last_producer_id = first.saturating_add(*count) - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn init(meta: &mut Meta, slots: u32) {
        let r = meta.apply(
            1,
            &[MetaCommand::Init {
                slots,
                leaders: vec![0; slots as usize],
            }],
        );
        assert_eq!(r, vec![Ok(())]);
    }

    #[test]
    fn leadership_moves_only_one_epoch_at_a_time() {
        let mut m = Meta::default();
        assert!(matches!(
            m.check(&MetaCommand::DeleteTopic { id: Uuid::nil() }),
            Err(Refused::Init(_))
        ));
        init(&mut m, 4);
        let id = Uuid::new_v4();
        let create = MetaCommand::CreateTopic {
            name: "t".into(),
            id,
            configs: BTreeMap::new(),
            leaders: vec![0, 1, 2],
        };
        assert_eq!(m.apply(2, std::slice::from_ref(&create)), vec![Ok(())]);
        assert!(matches!(
            m.apply(3, &[create]).as_slice(),
            [Err(Refused::TopicExists(_))]
        ));
        let key = Key::Partition {
            topic: id,
            partition: 1,
        };
        assert_eq!(m.leadership(key).map(|l| (l.node, l.epoch)), Some((1, 0)));
        // Two brokers race for partition 1 at epoch 1: the first Lead in
        // the log wins, the second is refused.
        let by = |node| MetaCommand::Lead {
            key,
            epoch: 1,
            node,
            from_seq: 7,
        };
        let results = m.apply(4, &[by(2), by(0)]);
        assert_eq!(results[0], Ok(()));
        assert!(matches!(
            results[1],
            Err(Refused::StaleEpoch { current: 1, .. })
        ));
        assert_eq!(m.leadership(key).map(|l| (l.node, l.epoch)), Some((2, 1)));
        // A handoff names the current epoch; the taker then leads at the next.
        assert!(m
            .check(&MetaCommand::Handoff {
                key,
                epoch: 0,
                from: 2,
                end_seq: 9,
                to: 0
            })
            .is_err());
        // Only its leader hands a key off.
        assert!(matches!(
            m.check(&MetaCommand::Handoff {
                key,
                epoch: 1,
                from: 0,
                end_seq: 9,
                to: 1
            }),
            Err(Refused::NotLeader { leader: 2, .. })
        ));
        m.apply(
            5,
            &[MetaCommand::Handoff {
                key,
                epoch: 1,
                from: 2,
                end_seq: 9,
                to: 0,
            }],
        );
        assert_eq!(m.leadership(key).and_then(|l| l.handoff), Some((9, 0)));
        m.apply(6, &[by(0).clone()]);
        assert_eq!(
            m.leadership(key).map(|l| l.node),
            Some(2),
            "epoch 1 is taken"
        );
        m.apply(
            7,
            &[MetaCommand::Lead {
                key,
                epoch: 2,
                node: 0,
                from_seq: 3,
            }],
        );
        let l = m.leadership(key).copied();
        assert_eq!(l.map(|l| (l.node, l.epoch, l.handoff)), Some((0, 2, None)));
        assert_eq!(m.last_seq, 7);
    }

    #[test]
    fn producer_id_blocks_follow_each_other() {
        let mut m = Meta::default();
        init(&mut m, 1);
        let block = |node, first| MetaCommand::AllocateProducerIds {
            node,
            first,
            count: 1000,
        };
        assert_eq!(m.apply(2, &[block(0, 1)]), vec![Ok(())]);
        assert!(matches!(
            m.apply(3, &[block(1, 1)]).as_slice(),
            [Err(Refused::ProducerIds { expected: 1001, .. })]
        ));
        assert_eq!(m.apply(4, &[block(1, 1001)]), vec![Ok(())]);
        assert_eq!(m.last_producer_id, 2000);
    }

    fn command() -> impl Strategy<Value = MetaCommand> {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        prop_oneof![
            (0usize..2, 1usize..4).prop_map(move |(t, n)| MetaCommand::CreateTopic {
                name: format!("t{t}"),
                id: ids[t],
                configs: BTreeMap::new(),
                leaders: vec![0; n],
            }),
            (0usize..2).prop_map(move |t| MetaCommand::DeleteTopic { id: ids[t] }),
            (0usize..2, 1usize..3).prop_map(move |(t, n)| MetaCommand::AddPartitions {
                id: ids[t],
                leaders: vec![1; n],
            }),
            (0usize..2, 0i32..4, 0i32..4, 0i32..3).prop_map(move |(t, p, e, n)| {
                MetaCommand::Lead {
                    key: Key::Partition {
                        topic: ids[t],
                        partition: p,
                    },
                    epoch: e,
                    node: n,
                    from_seq: 1,
                }
            }),
            (0u32..3, 0i32..4, 0i32..3).prop_map(|(s, e, n)| MetaCommand::Lead {
                key: Key::Slot(s),
                epoch: e,
                node: n,
                from_seq: 1,
            }),
            (1i64..3000, 1i64..100).prop_map(|(first, count)| {
                MetaCommand::AllocateProducerIds {
                    node: 0,
                    first,
                    count,
                }
            }),
        ]
    }

    proptest! {
        /// Applying is deterministic, epochs never go back, and a state
        /// survives a JSON round trip (what a snapshot of it is).
        #[test]
        fn apply_is_deterministic_and_epochs_only_grow(
            commands in proptest::collection::vec(command(), 0..60)
        ) {
            let mut a = Meta::default();
            init(&mut a, 3);
            let mut b = a.clone();
            for (i, c) in commands.iter().enumerate() {
                let before = a.clone();
                let seq = i as u64 + 2;
                let ra = a.apply(seq, std::slice::from_ref(c));
                let rb = b.apply(seq, std::slice::from_ref(c));
                prop_assert_eq!(&ra, &rb);
                prop_assert_eq!(&a, &b);
                if ra[0].is_err() {
                    let mut unchanged = before.clone();
                    unchanged.last_seq = seq;
                    prop_assert_eq!(&a, &unchanged);
                }
                for (id, t) in &before.topics {
                    if let Some(now) = a.topics.get(id) {
                        for (old, new) in t.partitions.iter().zip(&now.partitions) {
                            prop_assert!(new.epoch >= old.epoch);
                        }
                    }
                }
                prop_assert!(a.last_producer_id >= before.last_producer_id);
            }
            let json = serde_json::to_string(&a).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Meta = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, a);
        }
    }
}
