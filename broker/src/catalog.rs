//! The topic catalog between the shared metadata log and a broker's own
//! log (step 6 of `docs/design/broker-cluster.md`, done by mirroring).
//!
//! The catalog (topics, ids, partition counts, config overrides) and the
//! producer-id blocks are decided in the metadata log ([`crate::meta`]),
//! which every broker of a store shares: a topic change is validated
//! against [`Meta`] and appended there first ([`changes`]). Each broker
//! then mirrors the catalog into its own commit log ([`mirror`]): the
//! commands that make its [`State`]'s catalog equal to Meta's, committed
//! like any admin change. So the data path, snapshots, retention and
//! compaction keep reading the catalog from `State`, and a broker that
//! stopped between the two writes catches up when it starts again.
//!
//! Pure: no I/O here.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::committer::{valid_topic_name, AdminError, AdminOutcome};
use crate::error::KafkaCode;
use crate::log::Command;
use crate::meta::{Meta, MetaCommand};
use crate::state::State;
use crate::topic_config;

/// Most partitions a topic may have.
const MAX_PARTITIONS: i32 = 10_000;

/// A change of the catalog a client asked for.
#[derive(Debug, Clone)]
pub enum CatalogOp {
    /// Create a topic.
    Create {
        /// Name.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Overrides.
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic.
    Delete {
        /// Name.
        name: String,
    },
    /// Grow a topic to `count` partitions.
    AddPartitions {
        /// Name.
        name: String,
        /// New total.
        count: i32,
    },
    /// Replace a topic's overrides.
    SetConfigs {
        /// Name.
        name: String,
        /// New overrides.
        configs: BTreeMap<String, String>,
    },
}

/// The metadata commands that make `op` on `meta`, and the outcome to
/// answer with; or the Kafka error that refuses it. No commands: nothing
/// changes. New partitions are spread over the `live` brokers.
pub fn changes(
    meta: &Meta,
    op: &CatalogOp,
    live: &[i32],
) -> Result<(Vec<MetaCommand>, AdminOutcome), AdminError> {
    let leaders = |id: Uuid, range: std::ops::Range<i32>| -> Vec<i32> {
        range
            .map(|p| {
                let mut key = id.as_bytes().to_vec();
                key.extend_from_slice(&p.to_be_bytes());
                crate::members::rendezvous(live, &key).unwrap_or(0)
            })
            .collect()
    };
    let unknown = |name: &str| {
        (
            KafkaCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    };
    let topic = |name: &str| {
        meta.names
            .get(name)
            .and_then(|id| meta.topics.get(id))
            .ok_or_else(|| unknown(name))
    };
    match op {
        CatalogOp::Create {
            name,
            partitions,
            configs,
        } => {
            if !valid_topic_name(name) {
                return Err((
                    KafkaCode::InvalidTopicException,
                    format!("'{name}' is not a valid topic name"),
                ));
            }
            if meta.names.contains_key(name) {
                return Err((
                    KafkaCode::TopicAlreadyExists,
                    format!("topic '{name}' already exists"),
                ));
            }
            if !(1..=MAX_PARTITIONS).contains(partitions) {
                return Err((
                    KafkaCode::InvalidPartitions,
                    format!("{partitions} partitions: must be between 1 and {MAX_PARTITIONS}"),
                ));
            }
            topic_config::validate_all(configs).map_err(|m| (KafkaCode::InvalidConfig, m))?;
            let id = Uuid::new_v4();
            Ok((
                vec![MetaCommand::CreateTopic {
                    name: name.clone(),
                    id,
                    configs: configs.clone(),
                    leaders: leaders(id, 0..*partitions),
                }],
                AdminOutcome::Created(id),
            ))
        }
        CatalogOp::Delete { name } => {
            let t = topic(name)?;
            Ok((
                vec![MetaCommand::DeleteTopic { id: t.id }],
                AdminOutcome::Done,
            ))
        }
        CatalogOp::AddPartitions { name, count } => {
            let t = topic(name)?;
            let have = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            if *count <= have || *count > MAX_PARTITIONS {
                return Err((
                    KafkaCode::InvalidPartitions,
                    format!("topic '{name}' has {have} partitions; cannot change to {count}"),
                ));
            }
            Ok((
                vec![MetaCommand::AddPartitions {
                    id: t.id,
                    leaders: leaders(t.id, have..*count),
                }],
                AdminOutcome::Done,
            ))
        }
        CatalogOp::SetConfigs { name, configs } => {
            let t = topic(name)?;
            topic_config::validate_all(configs).map_err(|m| (KafkaCode::InvalidConfig, m))?;
            let commands = if *configs == t.configs {
                Vec::new()
            } else {
                vec![MetaCommand::SetConfigs {
                    id: t.id,
                    configs: configs.clone(),
                }]
            };
            Ok((commands, AdminOutcome::Done))
        }
    }
}

/// The commands that make `state`'s catalog equal to `meta`'s: deletions
/// first (a name deleted and created again has a new id), then creations,
/// then partition counts and configs.
pub fn mirror(meta: &Meta, state: &State) -> Vec<Command> {
    let mut out: Vec<Command> = state
        .topics
        .keys()
        .filter(|id| !meta.topics.contains_key(id))
        .map(|id| Command::DeleteTopic { id: *id })
        .collect();
    for (id, t) in &meta.topics {
        let partitions = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        match state.topics.get(id) {
            None => out.push(Command::CreateTopic {
                name: t.name.clone(),
                id: *id,
                partitions,
                configs: t.configs.clone(),
            }),
            Some(have) => {
                if i32::try_from(have.partitions.len()).unwrap_or(i32::MAX) < partitions {
                    out.push(Command::AddPartitions {
                        id: *id,
                        count: partitions,
                    });
                }
                if have.configs != t.configs {
                    out.push(Command::SetConfigs {
                        id: *id,
                        configs: t.configs.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The metadata log's first entry for a store whose broker kept its
/// catalog in its own log (before the metadata log existed): `Init`, the
/// topics `state` has, and the producer ids it handed out, so that nothing
/// it knew is lost or handed out again.
pub fn adopt(state: &State, node: i32, slots: u32) -> Vec<MetaCommand> {
    let mut out = vec![MetaCommand::Init {
        slots,
        leaders: vec![node; slots as usize],
    }];
    let mut topics: Vec<_> = state.topics.values().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        out.push(MetaCommand::CreateTopic {
            name: t.name.clone(),
            id: t.id,
            configs: t.configs.clone(),
            leaders: vec![node; t.partitions.len().max(1)],
        });
    }
    if state.last_producer_id > 0 {
        out.push(MetaCommand::AllocateProducerIds {
            node,
            first: 1,
            count: state.last_producer_id,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(commands: &[MetaCommand]) -> Meta {
        let mut m = Meta::default();
        for (i, c) in commands.iter().enumerate() {
            for r in m.apply(i as u64 + 1, std::slice::from_ref(c)) {
                assert!(r.is_ok(), "{c:?}: {r:?}");
            }
        }
        m
    }

    fn state_of(meta: &Meta) -> State {
        let mut s = State::default();
        s.apply(1, &mirror(meta, &s));
        s
    }

    /// Validated against Meta like Kafka validates: the codes clients act on.
    #[test]
    fn changes_refuse_what_kafka_refuses() {
        let mut m = meta_of(&adopt(&State::default(), 0, 4));
        let create = |name: &str, partitions| CatalogOp::Create {
            name: name.into(),
            partitions,
            configs: BTreeMap::new(),
        };
        let (cmds, _) = changes(&m, &create("t", 3), &[0]).expect("created");
        for r in m.apply(m.last_seq + 1, &cmds) {
            assert!(r.is_ok());
        }
        let code = |r: Result<(Vec<MetaCommand>, AdminOutcome), AdminError>| r.err().map(|e| e.0);
        assert_eq!(
            code(changes(&m, &create("t", 1), &[0])),
            Some(KafkaCode::TopicAlreadyExists)
        );
        assert_eq!(
            code(changes(&m, &create("bad name", 1), &[0])),
            Some(KafkaCode::InvalidTopicException)
        );
        assert_eq!(
            code(changes(&m, &create("u", 0), &[0])),
            Some(KafkaCode::InvalidPartitions)
        );
        let grow = |count| CatalogOp::AddPartitions {
            name: "t".into(),
            count,
        };
        assert_eq!(
            code(changes(&m, &grow(3), &[0])),
            Some(KafkaCode::InvalidPartitions)
        );
        let (cmds, _) = changes(&m, &grow(5), &[0]).expect("grown");
        assert!(
            matches!(&cmds[..], [MetaCommand::AddPartitions { leaders, .. }] if leaders.len() == 2)
        );
        assert_eq!(
            code(changes(&m, &CatalogOp::Delete { name: "x".into() }, &[0])),
            Some(KafkaCode::UnknownTopicOrPartition)
        );
        let same = CatalogOp::SetConfigs {
            name: "t".into(),
            configs: BTreeMap::new(),
        };
        assert!(changes(&m, &same, &[0]).expect("valid").0.is_empty());
    }

    /// Mirroring makes the state's catalog Meta's, whatever changed in
    /// between, and mirroring again changes nothing.
    #[test]
    fn mirroring_converges() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let create = |name: &str, id, n| MetaCommand::CreateTopic {
            name: name.into(),
            id,
            configs: BTreeMap::new(),
            leaders: vec![0; n],
        };
        let mut cmds = adopt(&State::default(), 0, 1);
        cmds.extend([create("a", a, 1), create("b", b, 2)]);
        let m1 = meta_of(&cmds);
        let mut s = state_of(&m1);
        assert_eq!(s.topic("b").map(|t| t.partitions.len()), Some(2));
        // b deleted and created again (a new id), a grown and configured.
        let b2 = Uuid::new_v4();
        cmds.extend([
            MetaCommand::DeleteTopic { id: b },
            create("b", b2, 1),
            MetaCommand::AddPartitions {
                id: a,
                leaders: vec![0; 2],
            },
            MetaCommand::SetConfigs {
                id: a,
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            },
        ]);
        let m2 = meta_of(&cmds);
        let step = mirror(&m2, &s);
        s.apply(2, &step);
        assert_eq!(s.names.get("b"), Some(&b2));
        assert!(!s.topics.contains_key(&b));
        let ta = s.topic("a").expect("a");
        assert_eq!(ta.partitions.len(), 3);
        assert_eq!(
            ta.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert!(mirror(&m2, &s).is_empty());
    }

    /// A store from before the metadata log keeps its topics (same ids)
    /// and never hands out a producer id twice.
    #[test]
    fn adopting_keeps_topics_and_producer_ids() {
        let mut s = State::default();
        let id = Uuid::new_v4();
        s.apply(
            1,
            &[
                Command::CreateTopic {
                    name: "old".into(),
                    id,
                    partitions: 2,
                    configs: BTreeMap::new(),
                },
                Command::AllocateProducerId { id: 41 },
            ],
        );
        let m = meta_of(&adopt(&s, 0, 16));
        assert_eq!(m.names.get("old"), Some(&id));
        assert_eq!(m.last_producer_id, 41);
        assert!(mirror(&m, &s).is_empty());
    }
}
