//! Requests as Gatehouse asks them ([`Action`], [`Resource`],
//! [`RecordContext`]) and their translation into Cedar entities.

use std::str::FromStr;

use cedar_policy as cedar;
use cedar_policy::{EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::catalog::{ProtectedField, TopicInfo};
use crate::error::PolicyError;
use crate::principal::{ConsentSet, PrincipalInfo};

/// The Cedar entity id of the one `Gatehouse::Cluster` entity.
pub const CLUSTER_ID: &str = "kafka";

/// The actions of the schema (`Gatehouse::Action::"..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Produce to a topic.
    Produce,
    /// Fetch from a topic.
    Consume,
    /// Topic metadata (Metadata, ListOffsets, OffsetForLeaderEpoch).
    Describe,
    /// CreateTopics.
    CreateTopic,
    /// DeleteTopics.
    DeleteTopic,
    /// AlterConfigs, IncrementalAlterConfigs, CreatePartitions on a topic.
    AlterTopic,
    /// DescribeConfigs on a topic.
    DescribeConfigs,
    /// DeleteRecords.
    DeleteRecords,
    /// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetFetch.
    JoinGroup,
    /// OffsetCommit.
    CommitOffset,
    /// DescribeGroups, ListGroups.
    DescribeGroup,
    /// DeleteGroups, OffsetDelete.
    DeleteGroup,
    /// DescribeCluster; brokers in Metadata.
    DescribeCluster,
    /// InitProducerId without a transactional id.
    IdempotentWrite,
    /// Any other cluster-wide administration.
    ClusterAdmin,
    /// Read the audit trail (the proxy's admin listener).
    ReadAudit,
    /// Start the erasure of a data subject, or ask how one stands (the
    /// proxy's admin listener).
    EraseSubject,
    /// InitProducerId with a transactional id, AddPartitionsToTxn,
    /// AddOffsetsToTxn, EndTxn, TxnOffsetCommit.
    TransactionalWrite,
    /// DescribeTransactions, ListTransactions.
    DescribeTransactionalId,
    /// Deliver one record to a consumer (context: [`RecordContext`]).
    ConsumeRecord,
    /// Accept one record from a producer (context: the record's region).
    ProduceRecord,
    /// Deliver a protected field decrypted.
    ReadClear,
    /// Deliver a protected field decrypted, then masked.
    ReadMasked,
    /// Deliver a protected field as a pseudonym.
    ReadPseudonym,
}

/// Which kind of resource an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `Gatehouse::Topic`.
    Topic,
    /// `Gatehouse::Group`.
    Group,
    /// `Gatehouse::Cluster`.
    Cluster,
    /// `Gatehouse::TransactionalId`.
    TransactionalId,
    /// `Gatehouse::Field`.
    Field,
}

impl Action {
    /// Every action, in schema order.
    pub const ALL: [Action; 24] = [
        Action::Produce,
        Action::Consume,
        Action::Describe,
        Action::CreateTopic,
        Action::DeleteTopic,
        Action::AlterTopic,
        Action::DescribeConfigs,
        Action::DeleteRecords,
        Action::JoinGroup,
        Action::CommitOffset,
        Action::DescribeGroup,
        Action::DeleteGroup,
        Action::DescribeCluster,
        Action::IdempotentWrite,
        Action::ClusterAdmin,
        Action::ReadAudit,
        Action::EraseSubject,
        Action::TransactionalWrite,
        Action::DescribeTransactionalId,
        Action::ConsumeRecord,
        Action::ProduceRecord,
        Action::ReadClear,
        Action::ReadMasked,
        Action::ReadPseudonym,
    ];

    /// The Cedar action id (`produce`, `consume_record`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Action::Produce => "produce",
            Action::Consume => "consume",
            Action::Describe => "describe",
            Action::CreateTopic => "create_topic",
            Action::DeleteTopic => "delete_topic",
            Action::AlterTopic => "alter_topic",
            Action::DescribeConfigs => "describe_configs",
            Action::DeleteRecords => "delete_records",
            Action::JoinGroup => "join_group",
            Action::CommitOffset => "commit_offset",
            Action::DescribeGroup => "describe_group",
            Action::DeleteGroup => "delete_group",
            Action::DescribeCluster => "describe_cluster",
            Action::IdempotentWrite => "idempotent_write",
            Action::ClusterAdmin => "cluster_admin",
            Action::ReadAudit => "read_audit",
            Action::EraseSubject => "erase_subject",
            Action::TransactionalWrite => "transactional_write",
            Action::DescribeTransactionalId => "describe_transactional_id",
            Action::ConsumeRecord => "consume_record",
            Action::ProduceRecord => "produce_record",
            Action::ReadClear => "read_clear",
            Action::ReadMasked => "read_masked",
            Action::ReadPseudonym => "read_pseudonym",
        }
    }

    /// The action with this Cedar id.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The kind of resource the action applies to.
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            Action::Produce
            | Action::Consume
            | Action::Describe
            | Action::CreateTopic
            | Action::DeleteTopic
            | Action::AlterTopic
            | Action::DescribeConfigs
            | Action::DeleteRecords
            | Action::ConsumeRecord
            | Action::ProduceRecord => ResourceKind::Topic,
            Action::JoinGroup
            | Action::CommitOffset
            | Action::DescribeGroup
            | Action::DeleteGroup => ResourceKind::Group,
            Action::DescribeCluster
            | Action::IdempotentWrite
            | Action::ClusterAdmin
            | Action::ReadAudit
            | Action::EraseSubject => ResourceKind::Cluster,
            Action::TransactionalWrite | Action::DescribeTransactionalId => {
                ResourceKind::TransactionalId
            }
            Action::ReadClear | Action::ReadMasked | Action::ReadPseudonym => ResourceKind::Field,
        }
    }

    fn index(self) -> usize {
        // ALL is in declaration order, so the discriminant is the index.
        self as usize
    }
}

/// What a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    /// A topic, by name.
    Topic(&'a str),
    /// A consumer group, by id.
    Group(&'a str),
    /// The cluster.
    Cluster,
    /// A transactional id.
    TransactionalId(&'a str),
    /// A protected field of a topic, by JSON path (as in the catalog).
    Field {
        /// The topic.
        topic: &'a str,
        /// The field's path, e.g. `$.author.email`.
        path: &'a str,
    },
}

impl Resource<'_> {
    /// The kind of resource.
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Topic(_) => ResourceKind::Topic,
            Resource::Group(_) => ResourceKind::Group,
            Resource::Cluster => ResourceKind::Cluster,
            Resource::TransactionalId(_) => ResourceKind::TransactionalId,
            Resource::Field { .. } => ResourceKind::Field,
        }
    }
}

/// The context of a per-record decision ([`Action::ConsumeRecord`],
/// [`Action::ProduceRecord`]); ignored by the other actions.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordContext<'a> {
    /// What the record's data subject granted; `None`: the subject is unknown.
    pub subject_purposes: Option<&'a ConsentSet>,
    /// The record's region; `None`: the topic's residency.
    pub record_region: Option<&'a str>,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Whether the request is allowed. Deny by default: no permit, any
    /// forbid, or any error means `false`.
    pub allowed: bool,
    /// The `@id`s of the policies that decided: the permits that allowed, or
    /// the forbids that denied; empty when nothing matched (default deny).
    pub policies: Vec<String>,
}

impl Decision {
    pub(crate) fn deny() -> Self {
        Decision::default()
    }
}

/// Parsed Cedar names, built once per policy set (parsing them cannot fail,
/// but the API returns `Result`, and this crate does not unwrap).
#[derive(Debug)]
pub(crate) struct Names {
    principal: EntityTypeName,
    topic: EntityTypeName,
    field: EntityTypeName,
    group: EntityTypeName,
    cluster: EntityTypeName,
    transactional_id: EntityTypeName,
    actions: Vec<EntityUid>,
}

impl Names {
    pub(crate) fn new() -> Result<Self, PolicyError> {
        let ty = |name: &str| {
            EntityTypeName::from_str(&format!("Gatehouse::{name}")).map_err(|e| {
                PolicyError::Schema {
                    file: "gatehouse.cedarschema".to_owned(),
                    message: format!("entity type {name}: {e}"),
                }
            })
        };
        let action_type = ty("Action")?;
        Ok(Names {
            principal: ty("Principal")?,
            topic: ty("Topic")?,
            field: ty("Field")?,
            group: ty("Group")?,
            cluster: ty("Cluster")?,
            transactional_id: ty("TransactionalId")?,
            actions: Action::ALL
                .iter()
                .map(|a| {
                    EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.name()))
                })
                .collect(),
        })
    }

    pub(crate) fn action(&self, action: Action) -> EntityUid {
        // `actions` is built from Action::ALL, so every index exists.
        self.actions[action.index()].clone()
    }

    pub(crate) fn principal_uid(&self, principal: &PrincipalInfo) -> EntityUid {
        uid(&self.principal, &principal.name)
    }

    pub(crate) fn topic_uid(&self, topic: &str) -> EntityUid {
        uid(&self.topic, topic)
    }

    pub(crate) fn field_uid(&self, topic: &str, path: &str) -> EntityUid {
        // Topic names cannot hold '/', so the id is unambiguous.
        uid(&self.field, &format!("{topic}/{path}"))
    }

    pub(crate) fn resource_uid(&self, resource: &Resource<'_>) -> EntityUid {
        match *resource {
            Resource::Topic(name) => self.topic_uid(name),
            Resource::Group(name) => uid(&self.group, name),
            Resource::Cluster => uid(&self.cluster, CLUSTER_ID),
            Resource::TransactionalId(name) => uid(&self.transactional_id, name),
            Resource::Field { topic, path } => self.field_uid(topic, path),
        }
    }

    pub(crate) fn principal_entity(
        &self,
        principal: &PrincipalInfo,
    ) -> Result<cedar::Entity, String> {
        let attrs = [
            ("team", string(&principal.team)),
            ("region", string(&principal.region)),
            ("purposes", string_set(&principal.purposes)),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let tags = principal
            .attributes
            .iter()
            .map(|(k, values)| (k.clone(), string_set(values)));
        cedar::Entity::new_with_tags(self.principal_uid(principal), attrs, [], tags)
            .map_err(|e| e.to_string())
    }

    pub(crate) fn topic_entity(
        &self,
        name: &str,
        info: &TopicInfo<'_>,
    ) -> Result<cedar::Entity, String> {
        let attrs = [
            ("name", string(name)),
            ("classification", string(info.classification())),
            ("residency", string(info.residency())),
            ("owner", string(info.owner())),
            ("governed", RestrictedExpression::new_bool(info.governed())),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        cedar::Entity::new_with_tags(self.topic_uid(name), attrs, [], []).map_err(|e| e.to_string())
    }

    pub(crate) fn field_entity(
        &self,
        topic: &str,
        field: &ProtectedField,
    ) -> Result<cedar::Entity, String> {
        let attrs = [
            (
                "topic",
                RestrictedExpression::new_entity_uid(self.topic_uid(topic)),
            ),
            ("path", string(field.path.as_str())),
            ("category", string(&field.category)),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        cedar::Entity::new_with_tags(self.field_uid(topic, field.path.as_str()), attrs, [], [])
            .map_err(|e| e.to_string())
    }

    /// The entity for a group or transactional id (`name` attribute only),
    /// or the cluster (no attribute).
    pub(crate) fn named_entity(&self, resource: &Resource<'_>) -> Result<cedar::Entity, String> {
        let uid = self.resource_uid(resource);
        match *resource {
            Resource::Group(name) | Resource::TransactionalId(name) => {
                cedar::Entity::new_with_tags(uid, [("name".to_owned(), string(name))], [], [])
                    .map_err(|e| e.to_string())
            }
            _ => Ok(cedar::Entity::with_uid(uid)),
        }
    }
}

fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn string_set<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s)))
}

/// The Cedar context of a request.
pub(crate) fn context(
    action: Action,
    record: &RecordContext<'_>,
    residency: &str,
) -> Result<cedar::Context, String> {
    let region = string(record.record_region.unwrap_or(residency));
    let pairs: Vec<(String, RestrictedExpression)> = match action {
        Action::ConsumeRecord => {
            let purposes = record
                .subject_purposes
                .map(|set| set.iter().map(string).collect::<Vec<_>>())
                .unwrap_or_default();
            vec![
                (
                    "subject_purposes".to_owned(),
                    RestrictedExpression::new_set(purposes),
                ),
                (
                    "subject_known".to_owned(),
                    RestrictedExpression::new_bool(record.subject_purposes.is_some()),
                ),
                ("record_region".to_owned(), region),
            ]
        }
        Action::ProduceRecord => vec![("record_region".to_owned(), region)],
        _ => return Ok(cedar::Context::empty()),
    };
    cedar::Context::from_pairs(pairs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for (i, action) in Action::ALL.into_iter().enumerate() {
            assert_eq!(action.index(), i);
            assert_eq!(Action::from_name(action.name()), Some(action));
        }
        assert_eq!(Action::from_name("fly"), None);
    }
}
