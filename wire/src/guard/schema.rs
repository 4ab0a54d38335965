//! Request schemas for the guard: GENERATED, do not edit by hand.
//!
//! Produced by `wire/tools/gen_guard_schema.py` from the decoders of
//! kafka-protocol 0.18.0 (`src/messages/*_request.rs`). Each
//! field lists the versions it is read in; strings, bytes and arrays
//! are compact exactly at the message's flexible versions.

use kafka_protocol::messages::ApiKey;

use super::{Field, Kind, Message, Struct, Tagged};

// === Produce (v3-13, flexible from v9) ===

static PRODUCE_REQUEST_MESSAGE: Message = Message {
    min: 3,
    max: 13,
    flexible: Some(9),
    body: &PRODUCE_REQUEST,
};

static PRODUCE_REQUEST: Struct = Struct {
    name: "ProduceRequest",
    fields: &[
        Field { name: "transactional_id", versions: (3, 13), kind: Kind::Str { nullable: true } },
        Field { name: "acks", versions: (3, 13), kind: Kind::Int16 },
        Field { name: "timeout_ms", versions: (3, 13), kind: Kind::Int32 },
        Field { name: "topic_data", versions: (3, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TOPIC_PRODUCE_DATA) } },
    ],
    tagged: &[],
};

static TOPIC_PRODUCE_DATA: Struct = Struct {
    name: "TopicProduceData",
    fields: &[
        Field { name: "name", versions: (3, 12), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (13, 13), kind: Kind::Uuid },
        Field { name: "partition_data", versions: (3, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&PARTITION_PRODUCE_DATA) } },
    ],
    tagged: &[],
};

static PARTITION_PRODUCE_DATA: Struct = Struct {
    name: "PartitionProduceData",
    fields: &[
        Field { name: "index", versions: (3, 13), kind: Kind::Int32 },
        Field { name: "records", versions: (3, 13), kind: Kind::Records },
    ],
    tagged: &[],
};

// === Fetch (v4-18, flexible from v12) ===

static FETCH_REQUEST_MESSAGE: Message = Message {
    min: 4,
    max: 18,
    flexible: Some(12),
    body: &FETCH_REQUEST,
};

static FETCH_REQUEST: Struct = Struct {
    name: "FetchRequest",
    fields: &[
        Field { name: "replica_id", versions: (4, 14), kind: Kind::Int32 },
        Field { name: "max_wait_ms", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "min_bytes", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "max_bytes", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "isolation_level", versions: (4, 18), kind: Kind::Int8 },
        Field { name: "session_id", versions: (7, 18), kind: Kind::Int32 },
        Field { name: "session_epoch", versions: (7, 18), kind: Kind::Int32 },
        Field { name: "topics", versions: (4, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FETCH_TOPIC) } },
        Field { name: "forgotten_topics_data", versions: (7, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FORGOTTEN_TOPIC) } },
        Field { name: "rack_id", versions: (11, 18), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[
        Tagged { tag: 0, name: "cluster_id", versions: (12, 18), kind: Kind::Str { nullable: true } },
        Tagged { tag: 1, name: "replica_state", versions: (15, 18), kind: Kind::Struct(&REPLICA_STATE) },
    ],
};

static FETCH_TOPIC: Struct = Struct {
    name: "FetchTopic",
    fields: &[
        Field { name: "topic", versions: (4, 12), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (13, 18), kind: Kind::Uuid },
        Field { name: "partitions", versions: (4, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FETCH_PARTITION) } },
    ],
    tagged: &[],
};

static FORGOTTEN_TOPIC: Struct = Struct {
    name: "ForgottenTopic",
    fields: &[
        Field { name: "topic", versions: (7, 12), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (13, 18), kind: Kind::Uuid },
        Field { name: "partitions", versions: (7, 18), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

static REPLICA_STATE: Struct = Struct {
    name: "ReplicaState",
    fields: &[
        Field { name: "replica_id", versions: (15, 18), kind: Kind::Int32 },
        Field { name: "replica_epoch", versions: (15, 18), kind: Kind::Int64 },
    ],
    tagged: &[],
};

static FETCH_PARTITION: Struct = Struct {
    name: "FetchPartition",
    fields: &[
        Field { name: "partition", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "current_leader_epoch", versions: (9, 18), kind: Kind::Int32 },
        Field { name: "fetch_offset", versions: (4, 18), kind: Kind::Int64 },
        Field { name: "last_fetched_epoch", versions: (12, 18), kind: Kind::Int32 },
        Field { name: "log_start_offset", versions: (5, 18), kind: Kind::Int64 },
        Field { name: "partition_max_bytes", versions: (4, 18), kind: Kind::Int32 },
    ],
    tagged: &[
        Tagged { tag: 0, name: "replica_directory_id", versions: (17, 18), kind: Kind::Uuid },
        Tagged { tag: 1, name: "high_watermark", versions: (18, 18), kind: Kind::Int64 },
    ],
};

// === ListOffsets (v1-10, flexible from v6) ===

static LIST_OFFSETS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 10,
    flexible: Some(6),
    body: &LIST_OFFSETS_REQUEST,
};

static LIST_OFFSETS_REQUEST: Struct = Struct {
    name: "ListOffsetsRequest",
    fields: &[
        Field { name: "replica_id", versions: (1, 10), kind: Kind::Int32 },
        Field { name: "isolation_level", versions: (2, 10), kind: Kind::Int8 },
        Field { name: "topics", versions: (1, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&LIST_OFFSETS_TOPIC) } },
        Field { name: "timeout_ms", versions: (10, 10), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static LIST_OFFSETS_TOPIC: Struct = Struct {
    name: "ListOffsetsTopic",
    fields: &[
        Field { name: "name", versions: (1, 10), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (1, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&LIST_OFFSETS_PARTITION) } },
    ],
    tagged: &[],
};

static LIST_OFFSETS_PARTITION: Struct = Struct {
    name: "ListOffsetsPartition",
    fields: &[
        Field { name: "partition_index", versions: (1, 10), kind: Kind::Int32 },
        Field { name: "current_leader_epoch", versions: (4, 10), kind: Kind::Int32 },
        Field { name: "timestamp", versions: (1, 10), kind: Kind::Int64 },
    ],
    tagged: &[],
};

// === Metadata (v0-13, flexible from v9) ===

static METADATA_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 13,
    flexible: Some(9),
    body: &METADATA_REQUEST,
};

static METADATA_REQUEST: Struct = Struct {
    name: "MetadataRequest",
    fields: &[
        Field { name: "topics", versions: (0, 13), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&METADATA_REQUEST_TOPIC) } },
        Field { name: "allow_auto_topic_creation", versions: (4, 13), kind: Kind::Bool },
        Field { name: "include_cluster_authorized_operations", versions: (8, 10), kind: Kind::Bool },
        Field { name: "include_topic_authorized_operations", versions: (8, 13), kind: Kind::Bool },
    ],
    tagged: &[],
};

static METADATA_REQUEST_TOPIC: Struct = Struct {
    name: "MetadataRequestTopic",
    fields: &[
        Field { name: "topic_id", versions: (10, 13), kind: Kind::Uuid },
        Field { name: "name", versions: (0, 13), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === OffsetCommit (v2-9, flexible from v8) ===

static OFFSET_COMMIT_REQUEST_MESSAGE: Message = Message {
    min: 2,
    max: 9,
    flexible: Some(8),
    body: &OFFSET_COMMIT_REQUEST,
};

static OFFSET_COMMIT_REQUEST: Struct = Struct {
    name: "OffsetCommitRequest",
    fields: &[
        Field { name: "group_id", versions: (2, 9), kind: Kind::Str { nullable: false } },
        Field { name: "generation_id_or_member_epoch", versions: (2, 9), kind: Kind::Int32 },
        Field { name: "member_id", versions: (2, 9), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (7, 9), kind: Kind::Str { nullable: true } },
        Field { name: "retention_time_ms", versions: (2, 4), kind: Kind::Int64 },
        Field { name: "topics", versions: (2, 9), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_COMMIT_REQUEST_TOPIC) } },
    ],
    tagged: &[],
};

static OFFSET_COMMIT_REQUEST_TOPIC: Struct = Struct {
    name: "OffsetCommitRequestTopic",
    fields: &[
        Field { name: "name", versions: (2, 9), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (2, 9), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_COMMIT_REQUEST_PARTITION) } },
    ],
    tagged: &[],
};

static OFFSET_COMMIT_REQUEST_PARTITION: Struct = Struct {
    name: "OffsetCommitRequestPartition",
    fields: &[
        Field { name: "partition_index", versions: (2, 9), kind: Kind::Int32 },
        Field { name: "committed_offset", versions: (2, 9), kind: Kind::Int64 },
        Field { name: "committed_leader_epoch", versions: (6, 9), kind: Kind::Int32 },
        Field { name: "committed_metadata", versions: (2, 9), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === OffsetFetch (v1-9, flexible from v6) ===

static OFFSET_FETCH_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 9,
    flexible: Some(6),
    body: &OFFSET_FETCH_REQUEST,
};

static OFFSET_FETCH_REQUEST: Struct = Struct {
    name: "OffsetFetchRequest",
    fields: &[
        Field { name: "group_id", versions: (1, 7), kind: Kind::Str { nullable: false } },
        Field { name: "topics", versions: (1, 7), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&OFFSET_FETCH_REQUEST_TOPIC) } },
        Field { name: "groups", versions: (8, 9), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_REQUEST_GROUP) } },
        Field { name: "require_stable", versions: (7, 9), kind: Kind::Bool },
    ],
    tagged: &[],
};

static OFFSET_FETCH_REQUEST_TOPIC: Struct = Struct {
    name: "OffsetFetchRequestTopic",
    fields: &[
        Field { name: "name", versions: (1, 7), kind: Kind::Str { nullable: false } },
        Field { name: "partition_indexes", versions: (1, 7), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

static OFFSET_FETCH_REQUEST_GROUP: Struct = Struct {
    name: "OffsetFetchRequestGroup",
    fields: &[
        Field { name: "group_id", versions: (8, 9), kind: Kind::Str { nullable: false } },
        Field { name: "member_id", versions: (9, 9), kind: Kind::Str { nullable: true } },
        Field { name: "member_epoch", versions: (9, 9), kind: Kind::Int32 },
        Field { name: "topics", versions: (8, 9), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&OFFSET_FETCH_REQUEST_TOPICS) } },
    ],
    tagged: &[],
};

static OFFSET_FETCH_REQUEST_TOPICS: Struct = Struct {
    name: "OffsetFetchRequestTopics",
    fields: &[
        Field { name: "name", versions: (8, 9), kind: Kind::Str { nullable: false } },
        Field { name: "partition_indexes", versions: (8, 9), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === FindCoordinator (v0-6, flexible from v3) ===

static FIND_COORDINATOR_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 6,
    flexible: Some(3),
    body: &FIND_COORDINATOR_REQUEST,
};

static FIND_COORDINATOR_REQUEST: Struct = Struct {
    name: "FindCoordinatorRequest",
    fields: &[
        Field { name: "key", versions: (0, 3), kind: Kind::Str { nullable: false } },
        Field { name: "key_type", versions: (1, 6), kind: Kind::Int8 },
        Field { name: "coordinator_keys", versions: (4, 6), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
    ],
    tagged: &[],
};

// === JoinGroup (v0-9, flexible from v6) ===

static JOIN_GROUP_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 9,
    flexible: Some(6),
    body: &JOIN_GROUP_REQUEST,
};

static JOIN_GROUP_REQUEST: Struct = Struct {
    name: "JoinGroupRequest",
    fields: &[
        Field { name: "group_id", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "session_timeout_ms", versions: (0, 9), kind: Kind::Int32 },
        Field { name: "rebalance_timeout_ms", versions: (1, 9), kind: Kind::Int32 },
        Field { name: "member_id", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (5, 9), kind: Kind::Str { nullable: true } },
        Field { name: "protocol_type", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "protocols", versions: (0, 9), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&JOIN_GROUP_REQUEST_PROTOCOL) } },
        Field { name: "reason", versions: (8, 9), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static JOIN_GROUP_REQUEST_PROTOCOL: Struct = Struct {
    name: "JoinGroupRequestProtocol",
    fields: &[
        Field { name: "name", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "metadata", versions: (0, 9), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === Heartbeat (v0-4, flexible from v4) ===

static HEARTBEAT_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(4),
    body: &HEARTBEAT_REQUEST,
};

static HEARTBEAT_REQUEST: Struct = Struct {
    name: "HeartbeatRequest",
    fields: &[
        Field { name: "group_id", versions: (0, 4), kind: Kind::Str { nullable: false } },
        Field { name: "generation_id", versions: (0, 4), kind: Kind::Int32 },
        Field { name: "member_id", versions: (0, 4), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (3, 4), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === LeaveGroup (v0-5, flexible from v4) ===

static LEAVE_GROUP_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(4),
    body: &LEAVE_GROUP_REQUEST,
};

static LEAVE_GROUP_REQUEST: Struct = Struct {
    name: "LeaveGroupRequest",
    fields: &[
        Field { name: "group_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "member_id", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "members", versions: (3, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&MEMBER_IDENTITY) } },
    ],
    tagged: &[],
};

static MEMBER_IDENTITY: Struct = Struct {
    name: "MemberIdentity",
    fields: &[
        Field { name: "member_id", versions: (3, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (3, 5), kind: Kind::Str { nullable: true } },
        Field { name: "reason", versions: (5, 5), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === SyncGroup (v0-5, flexible from v4) ===

static SYNC_GROUP_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(4),
    body: &SYNC_GROUP_REQUEST,
};

static SYNC_GROUP_REQUEST: Struct = Struct {
    name: "SyncGroupRequest",
    fields: &[
        Field { name: "group_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "generation_id", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "member_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (3, 5), kind: Kind::Str { nullable: true } },
        Field { name: "protocol_type", versions: (5, 5), kind: Kind::Str { nullable: true } },
        Field { name: "protocol_name", versions: (5, 5), kind: Kind::Str { nullable: true } },
        Field { name: "assignments", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&SYNC_GROUP_REQUEST_ASSIGNMENT) } },
    ],
    tagged: &[],
};

static SYNC_GROUP_REQUEST_ASSIGNMENT: Struct = Struct {
    name: "SyncGroupRequestAssignment",
    fields: &[
        Field { name: "member_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "assignment", versions: (0, 5), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === DescribeGroups (v0-6, flexible from v5) ===

static DESCRIBE_GROUPS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 6,
    flexible: Some(5),
    body: &DESCRIBE_GROUPS_REQUEST,
};

static DESCRIBE_GROUPS_REQUEST: Struct = Struct {
    name: "DescribeGroupsRequest",
    fields: &[
        Field { name: "groups", versions: (0, 6), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
        Field { name: "include_authorized_operations", versions: (3, 6), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === ListGroups (v0-5, flexible from v3) ===

static LIST_GROUPS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &LIST_GROUPS_REQUEST,
};

static LIST_GROUPS_REQUEST: Struct = Struct {
    name: "ListGroupsRequest",
    fields: &[
        Field { name: "states_filter", versions: (4, 5), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
        Field { name: "types_filter", versions: (5, 5), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
    ],
    tagged: &[],
};

// === SaslHandshake (v0-1, never flexible) ===

static SASL_HANDSHAKE_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: None,
    body: &SASL_HANDSHAKE_REQUEST,
};

static SASL_HANDSHAKE_REQUEST: Struct = Struct {
    name: "SaslHandshakeRequest",
    fields: &[
        Field { name: "mechanism", versions: (0, 1), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === ApiVersions (v0-4, flexible from v3) ===

static API_VERSIONS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(3),
    body: &API_VERSIONS_REQUEST,
};

static API_VERSIONS_REQUEST: Struct = Struct {
    name: "ApiVersionsRequest",
    fields: &[
        Field { name: "client_software_name", versions: (3, 4), kind: Kind::Str { nullable: false } },
        Field { name: "client_software_version", versions: (3, 4), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === CreateTopics (v2-7, flexible from v5) ===

static CREATE_TOPICS_REQUEST_MESSAGE: Message = Message {
    min: 2,
    max: 7,
    flexible: Some(5),
    body: &CREATE_TOPICS_REQUEST,
};

static CREATE_TOPICS_REQUEST: Struct = Struct {
    name: "CreateTopicsRequest",
    fields: &[
        Field { name: "topics", versions: (2, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATABLE_TOPIC) } },
        Field { name: "timeout_ms", versions: (2, 7), kind: Kind::Int32 },
        Field { name: "validate_only", versions: (2, 7), kind: Kind::Bool },
    ],
    tagged: &[],
};

static CREATABLE_TOPIC: Struct = Struct {
    name: "CreatableTopic",
    fields: &[
        Field { name: "name", versions: (2, 7), kind: Kind::Str { nullable: false } },
        Field { name: "num_partitions", versions: (2, 7), kind: Kind::Int32 },
        Field { name: "replication_factor", versions: (2, 7), kind: Kind::Int16 },
        Field { name: "assignments", versions: (2, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATABLE_REPLICA_ASSIGNMENT) } },
        Field { name: "configs", versions: (2, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATABLE_TOPIC_CONFIG) } },
    ],
    tagged: &[],
};

static CREATABLE_REPLICA_ASSIGNMENT: Struct = Struct {
    name: "CreatableReplicaAssignment",
    fields: &[
        Field { name: "partition_index", versions: (2, 7), kind: Kind::Int32 },
        Field { name: "broker_ids", versions: (2, 7), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

static CREATABLE_TOPIC_CONFIG: Struct = Struct {
    name: "CreatableTopicConfig",
    fields: &[
        Field { name: "name", versions: (2, 7), kind: Kind::Str { nullable: false } },
        Field { name: "value", versions: (2, 7), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DeleteTopics (v1-6, flexible from v4) ===

static DELETE_TOPICS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 6,
    flexible: Some(4),
    body: &DELETE_TOPICS_REQUEST,
};

static DELETE_TOPICS_REQUEST: Struct = Struct {
    name: "DeleteTopicsRequest",
    fields: &[
        Field { name: "topics", versions: (6, 6), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_TOPIC_STATE) } },
        Field { name: "topic_names", versions: (1, 5), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
        Field { name: "timeout_ms", versions: (1, 6), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DELETE_TOPIC_STATE: Struct = Struct {
    name: "DeleteTopicState",
    fields: &[
        Field { name: "name", versions: (6, 6), kind: Kind::Str { nullable: true } },
        Field { name: "topic_id", versions: (6, 6), kind: Kind::Uuid },
    ],
    tagged: &[],
};

// === DeleteRecords (v0-2, flexible from v2) ===

static DELETE_RECORDS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &DELETE_RECORDS_REQUEST,
};

static DELETE_RECORDS_REQUEST: Struct = Struct {
    name: "DeleteRecordsRequest",
    fields: &[
        Field { name: "topics", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_RECORDS_TOPIC) } },
        Field { name: "timeout_ms", versions: (0, 2), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DELETE_RECORDS_TOPIC: Struct = Struct {
    name: "DeleteRecordsTopic",
    fields: &[
        Field { name: "name", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_RECORDS_PARTITION) } },
    ],
    tagged: &[],
};

static DELETE_RECORDS_PARTITION: Struct = Struct {
    name: "DeleteRecordsPartition",
    fields: &[
        Field { name: "partition_index", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "offset", versions: (0, 2), kind: Kind::Int64 },
    ],
    tagged: &[],
};

// === InitProducerId (v0-5, flexible from v2) ===

static INIT_PRODUCER_ID_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(2),
    body: &INIT_PRODUCER_ID_REQUEST,
};

static INIT_PRODUCER_ID_REQUEST: Struct = Struct {
    name: "InitProducerIdRequest",
    fields: &[
        Field { name: "transactional_id", versions: (0, 5), kind: Kind::Str { nullable: true } },
        Field { name: "transaction_timeout_ms", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "producer_id", versions: (3, 5), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (3, 5), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === DescribeConfigs (v1-4, flexible from v4) ===

static DESCRIBE_CONFIGS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 4,
    flexible: Some(4),
    body: &DESCRIBE_CONFIGS_REQUEST,
};

static DESCRIBE_CONFIGS_REQUEST: Struct = Struct {
    name: "DescribeConfigsRequest",
    fields: &[
        Field { name: "resources", versions: (1, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_CONFIGS_RESOURCE) } },
        Field { name: "include_synonyms", versions: (1, 4), kind: Kind::Bool },
        Field { name: "include_documentation", versions: (3, 4), kind: Kind::Bool },
    ],
    tagged: &[],
};

static DESCRIBE_CONFIGS_RESOURCE: Struct = Struct {
    name: "DescribeConfigsResource",
    fields: &[
        Field { name: "resource_type", versions: (1, 4), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (1, 4), kind: Kind::Str { nullable: false } },
        Field { name: "configuration_keys", versions: (1, 4), kind: Kind::Array { nullable: true, elem: &Kind::Str { nullable: false } } },
    ],
    tagged: &[],
};

// === AlterConfigs (v0-2, flexible from v2) ===

static ALTER_CONFIGS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &ALTER_CONFIGS_REQUEST,
};

static ALTER_CONFIGS_REQUEST: Struct = Struct {
    name: "AlterConfigsRequest",
    fields: &[
        Field { name: "resources", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ALTER_CONFIGS_RESOURCE) } },
        Field { name: "validate_only", versions: (0, 2), kind: Kind::Bool },
    ],
    tagged: &[],
};

static ALTER_CONFIGS_RESOURCE: Struct = Struct {
    name: "AlterConfigsResource",
    fields: &[
        Field { name: "resource_type", versions: (0, 2), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "configs", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ALTERABLE_CONFIG) } },
    ],
    tagged: &[],
};

static ALTERABLE_CONFIG: Struct = Struct {
    name: "AlterableConfig",
    fields: &[
        Field { name: "name", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "value", versions: (0, 2), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === SaslAuthenticate (v0-2, flexible from v2) ===

static SASL_AUTHENTICATE_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &SASL_AUTHENTICATE_REQUEST,
};

static SASL_AUTHENTICATE_REQUEST: Struct = Struct {
    name: "SaslAuthenticateRequest",
    fields: &[
        Field { name: "auth_bytes", versions: (0, 2), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === CreatePartitions (v0-3, flexible from v2) ===

static CREATE_PARTITIONS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 3,
    flexible: Some(2),
    body: &CREATE_PARTITIONS_REQUEST,
};

static CREATE_PARTITIONS_REQUEST: Struct = Struct {
    name: "CreatePartitionsRequest",
    fields: &[
        Field { name: "topics", versions: (0, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATE_PARTITIONS_TOPIC) } },
        Field { name: "timeout_ms", versions: (0, 3), kind: Kind::Int32 },
        Field { name: "validate_only", versions: (0, 3), kind: Kind::Bool },
    ],
    tagged: &[],
};

static CREATE_PARTITIONS_TOPIC: Struct = Struct {
    name: "CreatePartitionsTopic",
    fields: &[
        Field { name: "name", versions: (0, 3), kind: Kind::Str { nullable: false } },
        Field { name: "count", versions: (0, 3), kind: Kind::Int32 },
        Field { name: "assignments", versions: (0, 3), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&CREATE_PARTITIONS_ASSIGNMENT) } },
    ],
    tagged: &[],
};

static CREATE_PARTITIONS_ASSIGNMENT: Struct = Struct {
    name: "CreatePartitionsAssignment",
    fields: &[
        Field { name: "broker_ids", versions: (0, 3), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === DeleteGroups (v0-2, flexible from v2) ===

static DELETE_GROUPS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &DELETE_GROUPS_REQUEST,
};

static DELETE_GROUPS_REQUEST: Struct = Struct {
    name: "DeleteGroupsRequest",
    fields: &[
        Field { name: "groups_names", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
    ],
    tagged: &[],
};

// === IncrementalAlterConfigs (v0-1, flexible from v1) ===

static INCREMENTAL_ALTER_CONFIGS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(1),
    body: &INCREMENTAL_ALTER_CONFIGS_REQUEST,
};

static INCREMENTAL_ALTER_CONFIGS_REQUEST: Struct = Struct {
    name: "IncrementalAlterConfigsRequest",
    fields: &[
        Field { name: "resources", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE) } },
        Field { name: "validate_only", versions: (0, 1), kind: Kind::Bool },
    ],
    tagged: &[],
};

static INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE: Struct = Struct {
    name: "AlterConfigsResource",
    fields: &[
        Field { name: "resource_type", versions: (0, 1), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "configs", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG) } },
    ],
    tagged: &[],
};

static INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG: Struct = Struct {
    name: "AlterableConfig",
    fields: &[
        Field { name: "name", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "config_operation", versions: (0, 1), kind: Kind::Int8 },
        Field { name: "value", versions: (0, 1), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DescribeCluster (v0-2, flexible from v0) ===

static DESCRIBE_CLUSTER_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(0),
    body: &DESCRIBE_CLUSTER_REQUEST,
};

static DESCRIBE_CLUSTER_REQUEST: Struct = Struct {
    name: "DescribeClusterRequest",
    fields: &[
        Field { name: "include_cluster_authorized_operations", versions: (0, 2), kind: Kind::Bool },
        Field { name: "endpoint_type", versions: (1, 2), kind: Kind::Int8 },
        Field { name: "include_fenced_brokers", versions: (2, 2), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === OffsetForLeaderEpoch (v2-4, flexible from v4) ===

static OFFSET_FOR_LEADER_EPOCH_REQUEST_MESSAGE: Message = Message {
    min: 2,
    max: 4,
    flexible: Some(4),
    body: &OFFSET_FOR_LEADER_EPOCH_REQUEST,
};

static OFFSET_FOR_LEADER_EPOCH_REQUEST: Struct = Struct {
    name: "OffsetForLeaderEpochRequest",
    fields: &[
        Field { name: "replica_id", versions: (3, 4), kind: Kind::Int32 },
        Field { name: "topics", versions: (2, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FOR_LEADER_TOPIC) } },
    ],
    tagged: &[],
};

static OFFSET_FOR_LEADER_TOPIC: Struct = Struct {
    name: "OffsetForLeaderTopic",
    fields: &[
        Field { name: "topic", versions: (2, 4), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (2, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FOR_LEADER_PARTITION) } },
    ],
    tagged: &[],
};

static OFFSET_FOR_LEADER_PARTITION: Struct = Struct {
    name: "OffsetForLeaderPartition",
    fields: &[
        Field { name: "partition", versions: (2, 4), kind: Kind::Int32 },
        Field { name: "current_leader_epoch", versions: (2, 4), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (2, 4), kind: Kind::Int32 },
    ],
    tagged: &[],
};

// === DescribeProducers (v0-0, flexible from v0) ===

static DESCRIBE_PRODUCERS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 0,
    flexible: Some(0),
    body: &DESCRIBE_PRODUCERS_REQUEST,
};

static DESCRIBE_PRODUCERS_REQUEST: Struct = Struct {
    name: "DescribeProducersRequest",
    fields: &[
        Field { name: "topics", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TOPIC_REQUEST) } },
    ],
    tagged: &[],
};

static TOPIC_REQUEST: Struct = Struct {
    name: "TopicRequest",
    fields: &[
        Field { name: "name", versions: (0, 0), kind: Kind::Str { nullable: false } },
        Field { name: "partition_indexes", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === ConsumerGroupHeartbeat (v0-1, flexible from v0) ===

static CONSUMER_GROUP_HEARTBEAT_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(0),
    body: &CONSUMER_GROUP_HEARTBEAT_REQUEST,
};

static CONSUMER_GROUP_HEARTBEAT_REQUEST: Struct = Struct {
    name: "ConsumerGroupHeartbeatRequest",
    fields: &[
        Field { name: "group_id", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "member_id", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "member_epoch", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "instance_id", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "rack_id", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "rebalance_timeout_ms", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "subscribed_topic_names", versions: (0, 1), kind: Kind::Array { nullable: true, elem: &Kind::Str { nullable: false } } },
        Field { name: "subscribed_topic_regex", versions: (1, 1), kind: Kind::Str { nullable: true } },
        Field { name: "server_assignor", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "topic_partitions", versions: (0, 1), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&TOPIC_PARTITIONS) } },
    ],
    tagged: &[],
};

static TOPIC_PARTITIONS: Struct = Struct {
    name: "TopicPartitions",
    fields: &[
        Field { name: "topic_id", versions: (0, 1), kind: Kind::Uuid },
        Field { name: "partitions", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === ConsumerGroupDescribe (v0-1, flexible from v0) ===

static CONSUMER_GROUP_DESCRIBE_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(0),
    body: &CONSUMER_GROUP_DESCRIBE_REQUEST,
};

static CONSUMER_GROUP_DESCRIBE_REQUEST: Struct = Struct {
    name: "ConsumerGroupDescribeRequest",
    fields: &[
        Field { name: "group_ids", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
        Field { name: "include_authorized_operations", versions: (0, 1), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === DescribeTopicPartitions (v0-0, flexible from v0) ===

static DESCRIBE_TOPIC_PARTITIONS_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 0,
    flexible: Some(0),
    body: &DESCRIBE_TOPIC_PARTITIONS_REQUEST,
};

static DESCRIBE_TOPIC_PARTITIONS_REQUEST: Struct = Struct {
    name: "DescribeTopicPartitionsRequest",
    fields: &[
        Field { name: "topics", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_TOPIC_PARTITIONS_TOPIC_REQUEST) } },
        Field { name: "response_partition_limit", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "cursor", versions: (0, 0), kind: Kind::OptionStruct(&CURSOR) },
    ],
    tagged: &[],
};

static DESCRIBE_TOPIC_PARTITIONS_TOPIC_REQUEST: Struct = Struct {
    name: "TopicRequest",
    fields: &[
        Field { name: "name", versions: (0, 0), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

static CURSOR: Struct = Struct {
    name: "Cursor",
    fields: &[
        Field { name: "topic_name", versions: (0, 0), kind: Kind::Str { nullable: false } },
        Field { name: "partition_index", versions: (0, 0), kind: Kind::Int32 },
    ],
    tagged: &[],
};

// === AddPartitionsToTxn (v0-5, flexible from v3) ===

static ADD_PARTITIONS_TO_TXN_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &ADD_PARTITIONS_TO_TXN_REQUEST,
};

static ADD_PARTITIONS_TO_TXN_REQUEST: Struct = Struct {
    name: "AddPartitionsToTxnRequest",
    fields: &[
        Field { name: "transactions", versions: (4, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_TRANSACTION) } },
        Field { name: "v3_and_below_transactional_id", versions: (0, 3), kind: Kind::Str { nullable: false } },
        Field { name: "v3_and_below_producer_id", versions: (0, 3), kind: Kind::Int64 },
        Field { name: "v3_and_below_producer_epoch", versions: (0, 3), kind: Kind::Int16 },
        Field { name: "v3_and_below_topics", versions: (0, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_TOPIC) } },
    ],
    tagged: &[],
};

static ADD_PARTITIONS_TO_TXN_TRANSACTION: Struct = Struct {
    name: "AddPartitionsToTxnTransaction",
    fields: &[
        Field { name: "transactional_id", versions: (4, 5), kind: Kind::Str { nullable: false } },
        Field { name: "producer_id", versions: (4, 5), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (4, 5), kind: Kind::Int16 },
        Field { name: "verify_only", versions: (4, 5), kind: Kind::Bool },
        Field { name: "topics", versions: (4, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_TOPIC) } },
    ],
    tagged: &[],
};

static ADD_PARTITIONS_TO_TXN_TOPIC: Struct = Struct {
    name: "AddPartitionsToTxnTopic",
    fields: &[
        Field { name: "name", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === AddOffsetsToTxn (v0-4, flexible from v3) ===

static ADD_OFFSETS_TO_TXN_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(3),
    body: &ADD_OFFSETS_TO_TXN_REQUEST,
};

static ADD_OFFSETS_TO_TXN_REQUEST: Struct = Struct {
    name: "AddOffsetsToTxnRequest",
    fields: &[
        Field { name: "transactional_id", versions: (0, 4), kind: Kind::Str { nullable: false } },
        Field { name: "producer_id", versions: (0, 4), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (0, 4), kind: Kind::Int16 },
        Field { name: "group_id", versions: (0, 4), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === EndTxn (v0-5, flexible from v3) ===

static END_TXN_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &END_TXN_REQUEST,
};

static END_TXN_REQUEST: Struct = Struct {
    name: "EndTxnRequest",
    fields: &[
        Field { name: "transactional_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "producer_id", versions: (0, 5), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "committed", versions: (0, 5), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === TxnOffsetCommit (v0-5, flexible from v3) ===

static TXN_OFFSET_COMMIT_REQUEST_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &TXN_OFFSET_COMMIT_REQUEST,
};

static TXN_OFFSET_COMMIT_REQUEST: Struct = Struct {
    name: "TxnOffsetCommitRequest",
    fields: &[
        Field { name: "transactional_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "producer_id", versions: (0, 5), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "generation_id", versions: (3, 5), kind: Kind::Int32 },
        Field { name: "member_id", versions: (3, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (3, 5), kind: Kind::Str { nullable: true } },
        Field { name: "topics", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TXN_OFFSET_COMMIT_REQUEST_TOPIC) } },
    ],
    tagged: &[],
};

static TXN_OFFSET_COMMIT_REQUEST_TOPIC: Struct = Struct {
    name: "TxnOffsetCommitRequestTopic",
    fields: &[
        Field { name: "name", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TXN_OFFSET_COMMIT_REQUEST_PARTITION) } },
    ],
    tagged: &[],
};

static TXN_OFFSET_COMMIT_REQUEST_PARTITION: Struct = Struct {
    name: "TxnOffsetCommitRequestPartition",
    fields: &[
        Field { name: "partition_index", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "committed_offset", versions: (0, 5), kind: Kind::Int64 },
        Field { name: "committed_leader_epoch", versions: (2, 5), kind: Kind::Int32 },
        Field { name: "committed_metadata", versions: (0, 5), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DescribeAcls (v1-3, flexible from v2) ===

static DESCRIBE_ACLS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &DESCRIBE_ACLS_REQUEST,
};

static DESCRIBE_ACLS_REQUEST: Struct = Struct {
    name: "DescribeAclsRequest",
    fields: &[
        Field { name: "resource_type_filter", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "resource_name_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "pattern_type_filter", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "principal_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "host_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "operation", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "permission_type", versions: (1, 3), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === CreateAcls (v1-3, flexible from v2) ===

static CREATE_ACLS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &CREATE_ACLS_REQUEST,
};

static CREATE_ACLS_REQUEST: Struct = Struct {
    name: "CreateAclsRequest",
    fields: &[
        Field { name: "creations", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ACL_CREATION) } },
    ],
    tagged: &[],
};

static ACL_CREATION: Struct = Struct {
    name: "AclCreation",
    fields: &[
        Field { name: "resource_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "resource_pattern_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "principal", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "host", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "operation", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "permission_type", versions: (1, 3), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === DeleteAcls (v1-3, flexible from v2) ===

static DELETE_ACLS_REQUEST_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &DELETE_ACLS_REQUEST,
};

static DELETE_ACLS_REQUEST: Struct = Struct {
    name: "DeleteAclsRequest",
    fields: &[
        Field { name: "filters", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_ACLS_FILTER) } },
    ],
    tagged: &[],
};

static DELETE_ACLS_FILTER: Struct = Struct {
    name: "DeleteAclsFilter",
    fields: &[
        Field { name: "resource_type_filter", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "resource_name_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "pattern_type_filter", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "principal_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "host_filter", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "operation", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "permission_type", versions: (1, 3), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === lookup ===

/// The schema of `api`'s request body, if the guard knows it.
pub(super) fn message(api: ApiKey) -> Option<&'static Message> {
    Some(match api {
        ApiKey::Produce => &PRODUCE_REQUEST_MESSAGE,
        ApiKey::Fetch => &FETCH_REQUEST_MESSAGE,
        ApiKey::ListOffsets => &LIST_OFFSETS_REQUEST_MESSAGE,
        ApiKey::Metadata => &METADATA_REQUEST_MESSAGE,
        ApiKey::OffsetCommit => &OFFSET_COMMIT_REQUEST_MESSAGE,
        ApiKey::OffsetFetch => &OFFSET_FETCH_REQUEST_MESSAGE,
        ApiKey::FindCoordinator => &FIND_COORDINATOR_REQUEST_MESSAGE,
        ApiKey::JoinGroup => &JOIN_GROUP_REQUEST_MESSAGE,
        ApiKey::Heartbeat => &HEARTBEAT_REQUEST_MESSAGE,
        ApiKey::LeaveGroup => &LEAVE_GROUP_REQUEST_MESSAGE,
        ApiKey::SyncGroup => &SYNC_GROUP_REQUEST_MESSAGE,
        ApiKey::DescribeGroups => &DESCRIBE_GROUPS_REQUEST_MESSAGE,
        ApiKey::ListGroups => &LIST_GROUPS_REQUEST_MESSAGE,
        ApiKey::SaslHandshake => &SASL_HANDSHAKE_REQUEST_MESSAGE,
        ApiKey::ApiVersions => &API_VERSIONS_REQUEST_MESSAGE,
        ApiKey::CreateTopics => &CREATE_TOPICS_REQUEST_MESSAGE,
        ApiKey::DeleteTopics => &DELETE_TOPICS_REQUEST_MESSAGE,
        ApiKey::DeleteRecords => &DELETE_RECORDS_REQUEST_MESSAGE,
        ApiKey::InitProducerId => &INIT_PRODUCER_ID_REQUEST_MESSAGE,
        ApiKey::DescribeConfigs => &DESCRIBE_CONFIGS_REQUEST_MESSAGE,
        ApiKey::AlterConfigs => &ALTER_CONFIGS_REQUEST_MESSAGE,
        ApiKey::SaslAuthenticate => &SASL_AUTHENTICATE_REQUEST_MESSAGE,
        ApiKey::CreatePartitions => &CREATE_PARTITIONS_REQUEST_MESSAGE,
        ApiKey::DeleteGroups => &DELETE_GROUPS_REQUEST_MESSAGE,
        ApiKey::IncrementalAlterConfigs => &INCREMENTAL_ALTER_CONFIGS_REQUEST_MESSAGE,
        ApiKey::DescribeCluster => &DESCRIBE_CLUSTER_REQUEST_MESSAGE,
        ApiKey::OffsetForLeaderEpoch => &OFFSET_FOR_LEADER_EPOCH_REQUEST_MESSAGE,
        ApiKey::DescribeProducers => &DESCRIBE_PRODUCERS_REQUEST_MESSAGE,
        ApiKey::ConsumerGroupHeartbeat => &CONSUMER_GROUP_HEARTBEAT_REQUEST_MESSAGE,
        ApiKey::ConsumerGroupDescribe => &CONSUMER_GROUP_DESCRIBE_REQUEST_MESSAGE,
        ApiKey::DescribeTopicPartitions => &DESCRIBE_TOPIC_PARTITIONS_REQUEST_MESSAGE,
        ApiKey::AddPartitionsToTxn => &ADD_PARTITIONS_TO_TXN_REQUEST_MESSAGE,
        ApiKey::AddOffsetsToTxn => &ADD_OFFSETS_TO_TXN_REQUEST_MESSAGE,
        ApiKey::EndTxn => &END_TXN_REQUEST_MESSAGE,
        ApiKey::TxnOffsetCommit => &TXN_OFFSET_COMMIT_REQUEST_MESSAGE,
        ApiKey::DescribeAcls => &DESCRIBE_ACLS_REQUEST_MESSAGE,
        ApiKey::CreateAcls => &CREATE_ACLS_REQUEST_MESSAGE,
        ApiKey::DeleteAcls => &DELETE_ACLS_REQUEST_MESSAGE,
        _ => return None,
    })
}

/// Every API the table covers, in table order.
#[cfg(test)]
pub(super) const COVERED: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::SyncGroup,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::SaslHandshake,
    ApiKey::ApiVersions,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::DeleteRecords,
    ApiKey::InitProducerId,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::SaslAuthenticate,
    ApiKey::CreatePartitions,
    ApiKey::DeleteGroups,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DescribeProducers,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::DescribeTopicPartitions,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
    ApiKey::TxnOffsetCommit,
    ApiKey::DescribeAcls,
    ApiKey::CreateAcls,
    ApiKey::DeleteAcls,
];
