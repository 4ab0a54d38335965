//! Request and response schemas for the guard: GENERATED, do not edit
//! by hand.
//!
//! Produced by `wire/tools/gen_guard_schema.py` from the decoders of
//! kafka-protocol 0.18.0 (`src/messages/*_request.rs` and
//! `src/messages/*_response.rs`). Each field lists the versions it is
//! read in; strings, bytes and arrays are compact exactly at the
//! message's flexible versions.

use kafka_protocol::messages::ApiKey;

use super::{Field, Kind, Message, Struct, Tagged};

// ====== requests ======

// === Produce request (v3-13, flexible from v9) ===

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

// === Fetch request (v4-18, flexible from v12) ===

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

// === ListOffsets request (v1-10, flexible from v6) ===

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

// === Metadata request (v0-13, flexible from v9) ===

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

// === OffsetCommit request (v2-9, flexible from v8) ===

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

// === OffsetFetch request (v1-9, flexible from v6) ===

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

// === FindCoordinator request (v0-6, flexible from v3) ===

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

// === JoinGroup request (v0-9, flexible from v6) ===

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

// === Heartbeat request (v0-4, flexible from v4) ===

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

// === LeaveGroup request (v0-5, flexible from v4) ===

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

// === SyncGroup request (v0-5, flexible from v4) ===

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

// === DescribeGroups request (v0-6, flexible from v5) ===

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

// === ListGroups request (v0-5, flexible from v3) ===

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

// === SaslHandshake request (v0-1, never flexible) ===

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

// === ApiVersions request (v0-4, flexible from v3) ===

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

// === CreateTopics request (v2-7, flexible from v5) ===

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

// === DeleteTopics request (v1-6, flexible from v4) ===

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

// === DeleteRecords request (v0-2, flexible from v2) ===

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

// === InitProducerId request (v0-5, flexible from v2) ===

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

// === DescribeConfigs request (v1-4, flexible from v4) ===

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

// === AlterConfigs request (v0-2, flexible from v2) ===

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

// === SaslAuthenticate request (v0-2, flexible from v2) ===

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

// === CreatePartitions request (v0-3, flexible from v2) ===

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

// === DeleteGroups request (v0-2, flexible from v2) ===

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

// === IncrementalAlterConfigs request (v0-1, flexible from v1) ===

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

// === DescribeCluster request (v0-2, flexible from v0) ===

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

// === OffsetForLeaderEpoch request (v2-4, flexible from v4) ===

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

// === DescribeProducers request (v0-0, flexible from v0) ===

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

// === ConsumerGroupHeartbeat request (v0-1, flexible from v0) ===

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

// === ConsumerGroupDescribe request (v0-1, flexible from v0) ===

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

// === DescribeTopicPartitions request (v0-0, flexible from v0) ===

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

// === AddPartitionsToTxn request (v0-5, flexible from v3) ===

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

// === AddOffsetsToTxn request (v0-4, flexible from v3) ===

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

// === EndTxn request (v0-5, flexible from v3) ===

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

// === TxnOffsetCommit request (v0-5, flexible from v3) ===

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

// === DescribeAcls request (v1-3, flexible from v2) ===

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

// === CreateAcls request (v1-3, flexible from v2) ===

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

// === DeleteAcls request (v1-3, flexible from v2) ===

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

// ====== responses ======

// === Produce response (v3-13, flexible from v9) ===

static PRODUCE_RESPONSE_MESSAGE: Message = Message {
    min: 3,
    max: 13,
    flexible: Some(9),
    body: &PRODUCE_RESPONSE,
};

static PRODUCE_RESPONSE: Struct = Struct {
    name: "ProduceResponse",
    fields: &[
        Field { name: "responses", versions: (3, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TOPIC_PRODUCE_RESPONSE) } },
        Field { name: "throttle_time_ms", versions: (3, 13), kind: Kind::Int32 },
    ],
    tagged: &[
        Tagged { tag: 0, name: "node_endpoints", versions: (10, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&NODE_ENDPOINT) } },
    ],
};

static TOPIC_PRODUCE_RESPONSE: Struct = Struct {
    name: "TopicProduceResponse",
    fields: &[
        Field { name: "name", versions: (3, 12), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (13, 13), kind: Kind::Uuid },
        Field { name: "partition_responses", versions: (3, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&PARTITION_PRODUCE_RESPONSE) } },
    ],
    tagged: &[],
};

static NODE_ENDPOINT: Struct = Struct {
    name: "NodeEndpoint",
    fields: &[
        Field { name: "node_id", versions: (10, 13), kind: Kind::Int32 },
        Field { name: "host", versions: (10, 13), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (10, 13), kind: Kind::Int32 },
        Field { name: "rack", versions: (10, 13), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static PARTITION_PRODUCE_RESPONSE: Struct = Struct {
    name: "PartitionProduceResponse",
    fields: &[
        Field { name: "index", versions: (3, 13), kind: Kind::Int32 },
        Field { name: "error_code", versions: (3, 13), kind: Kind::Int16 },
        Field { name: "base_offset", versions: (3, 13), kind: Kind::Int64 },
        Field { name: "log_append_time_ms", versions: (3, 13), kind: Kind::Int64 },
        Field { name: "log_start_offset", versions: (5, 13), kind: Kind::Int64 },
        Field { name: "record_errors", versions: (8, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&BATCH_INDEX_AND_ERROR_MESSAGE) } },
        Field { name: "error_message", versions: (8, 13), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[
        Tagged { tag: 0, name: "current_leader", versions: (10, 13), kind: Kind::Struct(&LEADER_ID_AND_EPOCH) },
    ],
};

static BATCH_INDEX_AND_ERROR_MESSAGE: Struct = Struct {
    name: "BatchIndexAndErrorMessage",
    fields: &[
        Field { name: "batch_index", versions: (8, 13), kind: Kind::Int32 },
        Field { name: "batch_index_error_message", versions: (8, 13), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static LEADER_ID_AND_EPOCH: Struct = Struct {
    name: "LeaderIdAndEpoch",
    fields: &[
        Field { name: "leader_id", versions: (10, 13), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (10, 13), kind: Kind::Int32 },
    ],
    tagged: &[],
};

// === Fetch response (v4-18, flexible from v12) ===

static FETCH_RESPONSE_MESSAGE: Message = Message {
    min: 4,
    max: 18,
    flexible: Some(12),
    body: &FETCH_RESPONSE,
};

static FETCH_RESPONSE: Struct = Struct {
    name: "FetchResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "error_code", versions: (7, 18), kind: Kind::Int16 },
        Field { name: "session_id", versions: (7, 18), kind: Kind::Int32 },
        Field { name: "responses", versions: (4, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FETCHABLE_TOPIC_RESPONSE) } },
    ],
    tagged: &[
        Tagged { tag: 0, name: "node_endpoints", versions: (16, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FETCH_RESPONSE_NODE_ENDPOINT) } },
    ],
};

static FETCHABLE_TOPIC_RESPONSE: Struct = Struct {
    name: "FetchableTopicResponse",
    fields: &[
        Field { name: "topic", versions: (4, 12), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (13, 18), kind: Kind::Uuid },
        Field { name: "partitions", versions: (4, 18), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&PARTITION_DATA) } },
    ],
    tagged: &[],
};

static FETCH_RESPONSE_NODE_ENDPOINT: Struct = Struct {
    name: "NodeEndpoint",
    fields: &[
        Field { name: "node_id", versions: (16, 18), kind: Kind::Int32 },
        Field { name: "host", versions: (16, 18), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (16, 18), kind: Kind::Int32 },
        Field { name: "rack", versions: (16, 18), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static PARTITION_DATA: Struct = Struct {
    name: "PartitionData",
    fields: &[
        Field { name: "partition_index", versions: (4, 18), kind: Kind::Int32 },
        Field { name: "error_code", versions: (4, 18), kind: Kind::Int16 },
        Field { name: "high_watermark", versions: (4, 18), kind: Kind::Int64 },
        Field { name: "last_stable_offset", versions: (4, 18), kind: Kind::Int64 },
        Field { name: "log_start_offset", versions: (5, 18), kind: Kind::Int64 },
        Field { name: "aborted_transactions", versions: (4, 18), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&ABORTED_TRANSACTION) } },
        Field { name: "preferred_read_replica", versions: (11, 18), kind: Kind::Int32 },
        Field { name: "records", versions: (4, 18), kind: Kind::Records },
    ],
    tagged: &[
        Tagged { tag: 0, name: "diverging_epoch", versions: (12, 18), kind: Kind::Struct(&EPOCH_END_OFFSET) },
        Tagged { tag: 1, name: "current_leader", versions: (12, 18), kind: Kind::Struct(&FETCH_RESPONSE_LEADER_ID_AND_EPOCH) },
        Tagged { tag: 2, name: "snapshot_id", versions: (12, 18), kind: Kind::Struct(&SNAPSHOT_ID) },
    ],
};

static ABORTED_TRANSACTION: Struct = Struct {
    name: "AbortedTransaction",
    fields: &[
        Field { name: "producer_id", versions: (4, 18), kind: Kind::Int64 },
        Field { name: "first_offset", versions: (4, 18), kind: Kind::Int64 },
    ],
    tagged: &[],
};

static EPOCH_END_OFFSET: Struct = Struct {
    name: "EpochEndOffset",
    fields: &[
        Field { name: "epoch", versions: (12, 18), kind: Kind::Int32 },
        Field { name: "end_offset", versions: (12, 18), kind: Kind::Int64 },
    ],
    tagged: &[],
};

static FETCH_RESPONSE_LEADER_ID_AND_EPOCH: Struct = Struct {
    name: "LeaderIdAndEpoch",
    fields: &[
        Field { name: "leader_id", versions: (12, 18), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (12, 18), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static SNAPSHOT_ID: Struct = Struct {
    name: "SnapshotId",
    fields: &[
        Field { name: "end_offset", versions: (4, 18), kind: Kind::Int64 },
        Field { name: "epoch", versions: (4, 18), kind: Kind::Int32 },
    ],
    tagged: &[],
};

// === ListOffsets response (v1-10, flexible from v6) ===

static LIST_OFFSETS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 10,
    flexible: Some(6),
    body: &LIST_OFFSETS_RESPONSE,
};

static LIST_OFFSETS_RESPONSE: Struct = Struct {
    name: "ListOffsetsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (2, 10), kind: Kind::Int32 },
        Field { name: "topics", versions: (1, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&LIST_OFFSETS_TOPIC_RESPONSE) } },
    ],
    tagged: &[],
};

static LIST_OFFSETS_TOPIC_RESPONSE: Struct = Struct {
    name: "ListOffsetsTopicResponse",
    fields: &[
        Field { name: "name", versions: (1, 10), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (1, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&LIST_OFFSETS_PARTITION_RESPONSE) } },
    ],
    tagged: &[],
};

static LIST_OFFSETS_PARTITION_RESPONSE: Struct = Struct {
    name: "ListOffsetsPartitionResponse",
    fields: &[
        Field { name: "partition_index", versions: (1, 10), kind: Kind::Int32 },
        Field { name: "error_code", versions: (1, 10), kind: Kind::Int16 },
        Field { name: "timestamp", versions: (1, 10), kind: Kind::Int64 },
        Field { name: "offset", versions: (1, 10), kind: Kind::Int64 },
        Field { name: "leader_epoch", versions: (4, 10), kind: Kind::Int32 },
    ],
    tagged: &[],
};

// === Metadata response (v0-13, flexible from v9) ===

static METADATA_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 13,
    flexible: Some(9),
    body: &METADATA_RESPONSE,
};

static METADATA_RESPONSE: Struct = Struct {
    name: "MetadataResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (3, 13), kind: Kind::Int32 },
        Field { name: "brokers", versions: (0, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&METADATA_RESPONSE_BROKER) } },
        Field { name: "cluster_id", versions: (2, 13), kind: Kind::Str { nullable: true } },
        Field { name: "controller_id", versions: (1, 13), kind: Kind::Int32 },
        Field { name: "topics", versions: (0, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&METADATA_RESPONSE_TOPIC) } },
        Field { name: "cluster_authorized_operations", versions: (8, 10), kind: Kind::Int32 },
        Field { name: "error_code", versions: (13, 13), kind: Kind::Int16 },
    ],
    tagged: &[],
};

static METADATA_RESPONSE_BROKER: Struct = Struct {
    name: "MetadataResponseBroker",
    fields: &[
        Field { name: "node_id", versions: (0, 13), kind: Kind::Int32 },
        Field { name: "host", versions: (0, 13), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (0, 13), kind: Kind::Int32 },
        Field { name: "rack", versions: (1, 13), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static METADATA_RESPONSE_TOPIC: Struct = Struct {
    name: "MetadataResponseTopic",
    fields: &[
        Field { name: "error_code", versions: (0, 13), kind: Kind::Int16 },
        Field { name: "name", versions: (0, 13), kind: Kind::Str { nullable: true } },
        Field { name: "topic_id", versions: (10, 13), kind: Kind::Uuid },
        Field { name: "is_internal", versions: (1, 13), kind: Kind::Bool },
        Field { name: "partitions", versions: (0, 13), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&METADATA_RESPONSE_PARTITION) } },
        Field { name: "topic_authorized_operations", versions: (8, 13), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static METADATA_RESPONSE_PARTITION: Struct = Struct {
    name: "MetadataResponsePartition",
    fields: &[
        Field { name: "error_code", versions: (0, 13), kind: Kind::Int16 },
        Field { name: "partition_index", versions: (0, 13), kind: Kind::Int32 },
        Field { name: "leader_id", versions: (0, 13), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (7, 13), kind: Kind::Int32 },
        Field { name: "replica_nodes", versions: (0, 13), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
        Field { name: "isr_nodes", versions: (0, 13), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
        Field { name: "offline_replicas", versions: (5, 13), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === OffsetCommit response (v2-10, flexible from v8) ===

static OFFSET_COMMIT_RESPONSE_MESSAGE: Message = Message {
    min: 2,
    max: 10,
    flexible: Some(8),
    body: &OFFSET_COMMIT_RESPONSE,
};

static OFFSET_COMMIT_RESPONSE: Struct = Struct {
    name: "OffsetCommitResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (3, 10), kind: Kind::Int32 },
        Field { name: "topics", versions: (2, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_COMMIT_RESPONSE_TOPIC) } },
    ],
    tagged: &[],
};

static OFFSET_COMMIT_RESPONSE_TOPIC: Struct = Struct {
    name: "OffsetCommitResponseTopic",
    fields: &[
        Field { name: "name", versions: (2, 9), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (10, 10), kind: Kind::Uuid },
        Field { name: "partitions", versions: (2, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_COMMIT_RESPONSE_PARTITION) } },
    ],
    tagged: &[],
};

static OFFSET_COMMIT_RESPONSE_PARTITION: Struct = Struct {
    name: "OffsetCommitResponsePartition",
    fields: &[
        Field { name: "partition_index", versions: (2, 10), kind: Kind::Int32 },
        Field { name: "error_code", versions: (2, 10), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === OffsetFetch response (v1-10, flexible from v6) ===

static OFFSET_FETCH_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 10,
    flexible: Some(6),
    body: &OFFSET_FETCH_RESPONSE,
};

static OFFSET_FETCH_RESPONSE: Struct = Struct {
    name: "OffsetFetchResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (3, 10), kind: Kind::Int32 },
        Field { name: "topics", versions: (1, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_RESPONSE_TOPIC) } },
        Field { name: "error_code", versions: (2, 7), kind: Kind::Int16 },
        Field { name: "groups", versions: (8, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_RESPONSE_GROUP) } },
    ],
    tagged: &[],
};

static OFFSET_FETCH_RESPONSE_TOPIC: Struct = Struct {
    name: "OffsetFetchResponseTopic",
    fields: &[
        Field { name: "name", versions: (1, 7), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (1, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_RESPONSE_PARTITION) } },
    ],
    tagged: &[],
};

static OFFSET_FETCH_RESPONSE_GROUP: Struct = Struct {
    name: "OffsetFetchResponseGroup",
    fields: &[
        Field { name: "group_id", versions: (8, 10), kind: Kind::Str { nullable: false } },
        Field { name: "topics", versions: (8, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_RESPONSE_TOPICS) } },
        Field { name: "error_code", versions: (8, 10), kind: Kind::Int16 },
    ],
    tagged: &[],
};

static OFFSET_FETCH_RESPONSE_PARTITION: Struct = Struct {
    name: "OffsetFetchResponsePartition",
    fields: &[
        Field { name: "partition_index", versions: (1, 7), kind: Kind::Int32 },
        Field { name: "committed_offset", versions: (1, 7), kind: Kind::Int64 },
        Field { name: "committed_leader_epoch", versions: (5, 7), kind: Kind::Int32 },
        Field { name: "metadata", versions: (1, 7), kind: Kind::Str { nullable: true } },
        Field { name: "error_code", versions: (1, 7), kind: Kind::Int16 },
    ],
    tagged: &[],
};

static OFFSET_FETCH_RESPONSE_TOPICS: Struct = Struct {
    name: "OffsetFetchResponseTopics",
    fields: &[
        Field { name: "name", versions: (8, 9), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (10, 10), kind: Kind::Uuid },
        Field { name: "partitions", versions: (8, 10), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FETCH_RESPONSE_PARTITIONS) } },
    ],
    tagged: &[],
};

static OFFSET_FETCH_RESPONSE_PARTITIONS: Struct = Struct {
    name: "OffsetFetchResponsePartitions",
    fields: &[
        Field { name: "partition_index", versions: (8, 10), kind: Kind::Int32 },
        Field { name: "committed_offset", versions: (8, 10), kind: Kind::Int64 },
        Field { name: "committed_leader_epoch", versions: (8, 10), kind: Kind::Int32 },
        Field { name: "metadata", versions: (8, 10), kind: Kind::Str { nullable: true } },
        Field { name: "error_code", versions: (8, 10), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === FindCoordinator response (v0-6, flexible from v3) ===

static FIND_COORDINATOR_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 6,
    flexible: Some(3),
    body: &FIND_COORDINATOR_RESPONSE,
};

static FIND_COORDINATOR_RESPONSE: Struct = Struct {
    name: "FindCoordinatorResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 6), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "node_id", versions: (0, 3), kind: Kind::Int32 },
        Field { name: "host", versions: (0, 3), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (0, 3), kind: Kind::Int32 },
        Field { name: "coordinators", versions: (4, 6), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&COORDINATOR) } },
    ],
    tagged: &[],
};

static COORDINATOR: Struct = Struct {
    name: "Coordinator",
    fields: &[
        Field { name: "key", versions: (4, 6), kind: Kind::Str { nullable: false } },
        Field { name: "node_id", versions: (4, 6), kind: Kind::Int32 },
        Field { name: "host", versions: (4, 6), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (4, 6), kind: Kind::Int32 },
        Field { name: "error_code", versions: (4, 6), kind: Kind::Int16 },
        Field { name: "error_message", versions: (4, 6), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === JoinGroup response (v0-9, flexible from v6) ===

static JOIN_GROUP_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 9,
    flexible: Some(6),
    body: &JOIN_GROUP_RESPONSE,
};

static JOIN_GROUP_RESPONSE: Struct = Struct {
    name: "JoinGroupResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (2, 9), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 9), kind: Kind::Int16 },
        Field { name: "generation_id", versions: (0, 9), kind: Kind::Int32 },
        Field { name: "protocol_type", versions: (7, 9), kind: Kind::Str { nullable: true } },
        Field { name: "protocol_name", versions: (0, 9), kind: Kind::Str { nullable: true } },
        Field { name: "leader", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "skip_assignment", versions: (9, 9), kind: Kind::Bool },
        Field { name: "member_id", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "members", versions: (0, 9), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&JOIN_GROUP_RESPONSE_MEMBER) } },
    ],
    tagged: &[],
};

static JOIN_GROUP_RESPONSE_MEMBER: Struct = Struct {
    name: "JoinGroupResponseMember",
    fields: &[
        Field { name: "member_id", versions: (0, 9), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (5, 9), kind: Kind::Str { nullable: true } },
        Field { name: "metadata", versions: (0, 9), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === Heartbeat response (v0-4, flexible from v4) ===

static HEARTBEAT_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(4),
    body: &HEARTBEAT_RESPONSE,
};

static HEARTBEAT_RESPONSE: Struct = Struct {
    name: "HeartbeatResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 4), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 4), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === LeaveGroup response (v0-5, flexible from v4) ===

static LEAVE_GROUP_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(4),
    body: &LEAVE_GROUP_RESPONSE,
};

static LEAVE_GROUP_RESPONSE: Struct = Struct {
    name: "LeaveGroupResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "members", versions: (3, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&MEMBER_RESPONSE) } },
    ],
    tagged: &[],
};

static MEMBER_RESPONSE: Struct = Struct {
    name: "MemberResponse",
    fields: &[
        Field { name: "member_id", versions: (3, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (3, 5), kind: Kind::Str { nullable: true } },
        Field { name: "error_code", versions: (3, 5), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === SyncGroup response (v0-5, flexible from v4) ===

static SYNC_GROUP_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(4),
    body: &SYNC_GROUP_RESPONSE,
};

static SYNC_GROUP_RESPONSE: Struct = Struct {
    name: "SyncGroupResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "protocol_type", versions: (5, 5), kind: Kind::Str { nullable: true } },
        Field { name: "protocol_name", versions: (5, 5), kind: Kind::Str { nullable: true } },
        Field { name: "assignment", versions: (0, 5), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === DescribeGroups response (v0-6, flexible from v5) ===

static DESCRIBE_GROUPS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 6,
    flexible: Some(5),
    body: &DESCRIBE_GROUPS_RESPONSE,
};

static DESCRIBE_GROUPS_RESPONSE: Struct = Struct {
    name: "DescribeGroupsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 6), kind: Kind::Int32 },
        Field { name: "groups", versions: (0, 6), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBED_GROUP) } },
    ],
    tagged: &[],
};

static DESCRIBED_GROUP: Struct = Struct {
    name: "DescribedGroup",
    fields: &[
        Field { name: "error_code", versions: (0, 6), kind: Kind::Int16 },
        Field { name: "error_message", versions: (6, 6), kind: Kind::Str { nullable: true } },
        Field { name: "group_id", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "group_state", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "protocol_type", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "protocol_data", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "members", versions: (0, 6), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBED_GROUP_MEMBER) } },
        Field { name: "authorized_operations", versions: (3, 6), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DESCRIBED_GROUP_MEMBER: Struct = Struct {
    name: "DescribedGroupMember",
    fields: &[
        Field { name: "member_id", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "group_instance_id", versions: (4, 6), kind: Kind::Str { nullable: true } },
        Field { name: "client_id", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "client_host", versions: (0, 6), kind: Kind::Str { nullable: false } },
        Field { name: "member_metadata", versions: (0, 6), kind: Kind::Bytes { nullable: false } },
        Field { name: "member_assignment", versions: (0, 6), kind: Kind::Bytes { nullable: false } },
    ],
    tagged: &[],
};

// === ListGroups response (v0-5, flexible from v3) ===

static LIST_GROUPS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &LIST_GROUPS_RESPONSE,
};

static LIST_GROUPS_RESPONSE: Struct = Struct {
    name: "ListGroupsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "groups", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&LISTED_GROUP) } },
    ],
    tagged: &[],
};

static LISTED_GROUP: Struct = Struct {
    name: "ListedGroup",
    fields: &[
        Field { name: "group_id", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "protocol_type", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_state", versions: (4, 5), kind: Kind::Str { nullable: false } },
        Field { name: "group_type", versions: (5, 5), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === SaslHandshake response (v0-1, never flexible) ===

static SASL_HANDSHAKE_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: None,
    body: &SASL_HANDSHAKE_RESPONSE,
};

static SASL_HANDSHAKE_RESPONSE: Struct = Struct {
    name: "SaslHandshakeResponse",
    fields: &[
        Field { name: "error_code", versions: (0, 1), kind: Kind::Int16 },
        Field { name: "mechanisms", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
    ],
    tagged: &[],
};

// === ApiVersions response (v0-4, flexible from v3) ===

static API_VERSIONS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(3),
    body: &API_VERSIONS_RESPONSE,
};

static API_VERSIONS_RESPONSE: Struct = Struct {
    name: "ApiVersionsResponse",
    fields: &[
        Field { name: "error_code", versions: (0, 4), kind: Kind::Int16 },
        Field { name: "api_keys", versions: (0, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&API_VERSION) } },
        Field { name: "throttle_time_ms", versions: (1, 4), kind: Kind::Int32 },
    ],
    tagged: &[
        Tagged { tag: 0, name: "supported_features", versions: (3, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&SUPPORTED_FEATURE_KEY) } },
        Tagged { tag: 1, name: "finalized_features_epoch", versions: (3, 4), kind: Kind::Int64 },
        Tagged { tag: 2, name: "finalized_features", versions: (3, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&FINALIZED_FEATURE_KEY) } },
        Tagged { tag: 3, name: "zk_migration_ready", versions: (3, 4), kind: Kind::Bool },
    ],
};

static API_VERSION: Struct = Struct {
    name: "ApiVersion",
    fields: &[
        Field { name: "api_key", versions: (0, 4), kind: Kind::Int16 },
        Field { name: "min_version", versions: (0, 4), kind: Kind::Int16 },
        Field { name: "max_version", versions: (0, 4), kind: Kind::Int16 },
    ],
    tagged: &[],
};

static SUPPORTED_FEATURE_KEY: Struct = Struct {
    name: "SupportedFeatureKey",
    fields: &[
        Field { name: "name", versions: (3, 4), kind: Kind::Str { nullable: false } },
        Field { name: "min_version", versions: (3, 4), kind: Kind::Int16 },
        Field { name: "max_version", versions: (3, 4), kind: Kind::Int16 },
    ],
    tagged: &[],
};

static FINALIZED_FEATURE_KEY: Struct = Struct {
    name: "FinalizedFeatureKey",
    fields: &[
        Field { name: "name", versions: (3, 4), kind: Kind::Str { nullable: false } },
        Field { name: "max_version_level", versions: (3, 4), kind: Kind::Int16 },
        Field { name: "min_version_level", versions: (3, 4), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === CreateTopics response (v2-7, flexible from v5) ===

static CREATE_TOPICS_RESPONSE_MESSAGE: Message = Message {
    min: 2,
    max: 7,
    flexible: Some(5),
    body: &CREATE_TOPICS_RESPONSE,
};

static CREATE_TOPICS_RESPONSE: Struct = Struct {
    name: "CreateTopicsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (2, 7), kind: Kind::Int32 },
        Field { name: "topics", versions: (2, 7), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATABLE_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static CREATABLE_TOPIC_RESULT: Struct = Struct {
    name: "CreatableTopicResult",
    fields: &[
        Field { name: "name", versions: (2, 7), kind: Kind::Str { nullable: false } },
        Field { name: "topic_id", versions: (7, 7), kind: Kind::Uuid },
        Field { name: "error_code", versions: (2, 7), kind: Kind::Int16 },
        Field { name: "error_message", versions: (2, 7), kind: Kind::Str { nullable: true } },
        Field { name: "num_partitions", versions: (5, 7), kind: Kind::Int32 },
        Field { name: "replication_factor", versions: (5, 7), kind: Kind::Int16 },
        Field { name: "configs", versions: (5, 7), kind: Kind::Array { nullable: true, elem: &Kind::Struct(&CREATABLE_TOPIC_CONFIGS) } },
    ],
    tagged: &[
        Tagged { tag: 0, name: "topic_config_error_code", versions: (5, 7), kind: Kind::Int16 },
    ],
};

static CREATABLE_TOPIC_CONFIGS: Struct = Struct {
    name: "CreatableTopicConfigs",
    fields: &[
        Field { name: "name", versions: (5, 7), kind: Kind::Str { nullable: false } },
        Field { name: "value", versions: (5, 7), kind: Kind::Str { nullable: true } },
        Field { name: "read_only", versions: (5, 7), kind: Kind::Bool },
        Field { name: "config_source", versions: (5, 7), kind: Kind::Int8 },
        Field { name: "is_sensitive", versions: (5, 7), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === DeleteTopics response (v1-6, flexible from v4) ===

static DELETE_TOPICS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 6,
    flexible: Some(4),
    body: &DELETE_TOPICS_RESPONSE,
};

static DELETE_TOPICS_RESPONSE: Struct = Struct {
    name: "DeleteTopicsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 6), kind: Kind::Int32 },
        Field { name: "responses", versions: (1, 6), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETABLE_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static DELETABLE_TOPIC_RESULT: Struct = Struct {
    name: "DeletableTopicResult",
    fields: &[
        Field { name: "name", versions: (1, 6), kind: Kind::Str { nullable: true } },
        Field { name: "topic_id", versions: (6, 6), kind: Kind::Uuid },
        Field { name: "error_code", versions: (1, 6), kind: Kind::Int16 },
        Field { name: "error_message", versions: (5, 6), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DeleteRecords response (v0-2, flexible from v2) ===

static DELETE_RECORDS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &DELETE_RECORDS_RESPONSE,
};

static DELETE_RECORDS_RESPONSE: Struct = Struct {
    name: "DeleteRecordsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "topics", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_RECORDS_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static DELETE_RECORDS_TOPIC_RESULT: Struct = Struct {
    name: "DeleteRecordsTopicResult",
    fields: &[
        Field { name: "name", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_RECORDS_PARTITION_RESULT) } },
    ],
    tagged: &[],
};

static DELETE_RECORDS_PARTITION_RESULT: Struct = Struct {
    name: "DeleteRecordsPartitionResult",
    fields: &[
        Field { name: "partition_index", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "low_watermark", versions: (0, 2), kind: Kind::Int64 },
        Field { name: "error_code", versions: (0, 2), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === InitProducerId response (v0-6, flexible from v2) ===

static INIT_PRODUCER_ID_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 6,
    flexible: Some(2),
    body: &INIT_PRODUCER_ID_RESPONSE,
};

static INIT_PRODUCER_ID_RESPONSE: Struct = Struct {
    name: "InitProducerIdResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 6), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 6), kind: Kind::Int16 },
        Field { name: "producer_id", versions: (0, 6), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (0, 6), kind: Kind::Int16 },
        Field { name: "ongoing_txn_producer_id", versions: (6, 6), kind: Kind::Int64 },
        Field { name: "ongoing_txn_producer_epoch", versions: (6, 6), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === DescribeConfigs response (v1-4, flexible from v4) ===

static DESCRIBE_CONFIGS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 4,
    flexible: Some(4),
    body: &DESCRIBE_CONFIGS_RESPONSE,
};

static DESCRIBE_CONFIGS_RESPONSE: Struct = Struct {
    name: "DescribeConfigsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 4), kind: Kind::Int32 },
        Field { name: "results", versions: (1, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_CONFIGS_RESULT) } },
    ],
    tagged: &[],
};

static DESCRIBE_CONFIGS_RESULT: Struct = Struct {
    name: "DescribeConfigsResult",
    fields: &[
        Field { name: "error_code", versions: (1, 4), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 4), kind: Kind::Str { nullable: true } },
        Field { name: "resource_type", versions: (1, 4), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (1, 4), kind: Kind::Str { nullable: false } },
        Field { name: "configs", versions: (1, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_CONFIGS_RESOURCE_RESULT) } },
    ],
    tagged: &[],
};

static DESCRIBE_CONFIGS_RESOURCE_RESULT: Struct = Struct {
    name: "DescribeConfigsResourceResult",
    fields: &[
        Field { name: "name", versions: (1, 4), kind: Kind::Str { nullable: false } },
        Field { name: "value", versions: (1, 4), kind: Kind::Str { nullable: true } },
        Field { name: "read_only", versions: (1, 4), kind: Kind::Bool },
        Field { name: "config_source", versions: (1, 4), kind: Kind::Int8 },
        Field { name: "is_sensitive", versions: (1, 4), kind: Kind::Bool },
        Field { name: "synonyms", versions: (1, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_CONFIGS_SYNONYM) } },
        Field { name: "config_type", versions: (3, 4), kind: Kind::Int8 },
        Field { name: "documentation", versions: (3, 4), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

static DESCRIBE_CONFIGS_SYNONYM: Struct = Struct {
    name: "DescribeConfigsSynonym",
    fields: &[
        Field { name: "name", versions: (1, 4), kind: Kind::Str { nullable: false } },
        Field { name: "value", versions: (1, 4), kind: Kind::Str { nullable: true } },
        Field { name: "source", versions: (1, 4), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === AlterConfigs response (v0-2, flexible from v2) ===

static ALTER_CONFIGS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &ALTER_CONFIGS_RESPONSE,
};

static ALTER_CONFIGS_RESPONSE: Struct = Struct {
    name: "AlterConfigsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "responses", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ALTER_CONFIGS_RESOURCE_RESPONSE) } },
    ],
    tagged: &[],
};

static ALTER_CONFIGS_RESOURCE_RESPONSE: Struct = Struct {
    name: "AlterConfigsResourceResponse",
    fields: &[
        Field { name: "error_code", versions: (0, 2), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 2), kind: Kind::Str { nullable: true } },
        Field { name: "resource_type", versions: (0, 2), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (0, 2), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === SaslAuthenticate response (v0-2, flexible from v2) ===

static SASL_AUTHENTICATE_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &SASL_AUTHENTICATE_RESPONSE,
};

static SASL_AUTHENTICATE_RESPONSE: Struct = Struct {
    name: "SaslAuthenticateResponse",
    fields: &[
        Field { name: "error_code", versions: (0, 2), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 2), kind: Kind::Str { nullable: true } },
        Field { name: "auth_bytes", versions: (0, 2), kind: Kind::Bytes { nullable: false } },
        Field { name: "session_lifetime_ms", versions: (1, 2), kind: Kind::Int64 },
    ],
    tagged: &[],
};

// === CreatePartitions response (v0-3, flexible from v2) ===

static CREATE_PARTITIONS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 3,
    flexible: Some(2),
    body: &CREATE_PARTITIONS_RESPONSE,
};

static CREATE_PARTITIONS_RESPONSE: Struct = Struct {
    name: "CreatePartitionsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 3), kind: Kind::Int32 },
        Field { name: "results", versions: (0, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CREATE_PARTITIONS_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static CREATE_PARTITIONS_TOPIC_RESULT: Struct = Struct {
    name: "CreatePartitionsTopicResult",
    fields: &[
        Field { name: "name", versions: (0, 3), kind: Kind::Str { nullable: false } },
        Field { name: "error_code", versions: (0, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 3), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DeleteGroups response (v0-2, flexible from v2) ===

static DELETE_GROUPS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(2),
    body: &DELETE_GROUPS_RESPONSE,
};

static DELETE_GROUPS_RESPONSE: Struct = Struct {
    name: "DeleteGroupsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "results", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETABLE_GROUP_RESULT) } },
    ],
    tagged: &[],
};

static DELETABLE_GROUP_RESULT: Struct = Struct {
    name: "DeletableGroupResult",
    fields: &[
        Field { name: "group_id", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "error_code", versions: (0, 2), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === IncrementalAlterConfigs response (v0-1, flexible from v1) ===

static INCREMENTAL_ALTER_CONFIGS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(1),
    body: &INCREMENTAL_ALTER_CONFIGS_RESPONSE,
};

static INCREMENTAL_ALTER_CONFIGS_RESPONSE: Struct = Struct {
    name: "IncrementalAlterConfigsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "responses", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&INCREMENTAL_ALTER_CONFIGS_RESPONSE_ALTER_CONFIGS_RESOURCE_RESPONSE) } },
    ],
    tagged: &[],
};

static INCREMENTAL_ALTER_CONFIGS_RESPONSE_ALTER_CONFIGS_RESOURCE_RESPONSE: Struct = Struct {
    name: "AlterConfigsResourceResponse",
    fields: &[
        Field { name: "error_code", versions: (0, 1), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "resource_type", versions: (0, 1), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (0, 1), kind: Kind::Str { nullable: false } },
    ],
    tagged: &[],
};

// === DescribeCluster response (v0-2, flexible from v0) ===

static DESCRIBE_CLUSTER_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 2,
    flexible: Some(0),
    body: &DESCRIBE_CLUSTER_RESPONSE,
};

static DESCRIBE_CLUSTER_RESPONSE: Struct = Struct {
    name: "DescribeClusterResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 2), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 2), kind: Kind::Str { nullable: true } },
        Field { name: "endpoint_type", versions: (1, 2), kind: Kind::Int8 },
        Field { name: "cluster_id", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "controller_id", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "brokers", versions: (0, 2), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_CLUSTER_BROKER) } },
        Field { name: "cluster_authorized_operations", versions: (0, 2), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DESCRIBE_CLUSTER_BROKER: Struct = Struct {
    name: "DescribeClusterBroker",
    fields: &[
        Field { name: "broker_id", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "host", versions: (0, 2), kind: Kind::Str { nullable: false } },
        Field { name: "port", versions: (0, 2), kind: Kind::Int32 },
        Field { name: "rack", versions: (0, 2), kind: Kind::Str { nullable: true } },
        Field { name: "is_fenced", versions: (2, 2), kind: Kind::Bool },
    ],
    tagged: &[],
};

// === OffsetForLeaderEpoch response (v2-4, flexible from v4) ===

static OFFSET_FOR_LEADER_EPOCH_RESPONSE_MESSAGE: Message = Message {
    min: 2,
    max: 4,
    flexible: Some(4),
    body: &OFFSET_FOR_LEADER_EPOCH_RESPONSE,
};

static OFFSET_FOR_LEADER_EPOCH_RESPONSE: Struct = Struct {
    name: "OffsetForLeaderEpochResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (2, 4), kind: Kind::Int32 },
        Field { name: "topics", versions: (2, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FOR_LEADER_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static OFFSET_FOR_LEADER_TOPIC_RESULT: Struct = Struct {
    name: "OffsetForLeaderTopicResult",
    fields: &[
        Field { name: "topic", versions: (2, 4), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (2, 4), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&OFFSET_FOR_LEADER_EPOCH_RESPONSE_EPOCH_END_OFFSET) } },
    ],
    tagged: &[],
};

static OFFSET_FOR_LEADER_EPOCH_RESPONSE_EPOCH_END_OFFSET: Struct = Struct {
    name: "EpochEndOffset",
    fields: &[
        Field { name: "error_code", versions: (2, 4), kind: Kind::Int16 },
        Field { name: "partition", versions: (2, 4), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (2, 4), kind: Kind::Int32 },
        Field { name: "end_offset", versions: (2, 4), kind: Kind::Int64 },
    ],
    tagged: &[],
};

// === DescribeProducers response (v0-0, flexible from v0) ===

static DESCRIBE_PRODUCERS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 0,
    flexible: Some(0),
    body: &DESCRIBE_PRODUCERS_RESPONSE,
};

static DESCRIBE_PRODUCERS_RESPONSE: Struct = Struct {
    name: "DescribeProducersResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "topics", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TOPIC_RESPONSE) } },
    ],
    tagged: &[],
};

static TOPIC_RESPONSE: Struct = Struct {
    name: "TopicResponse",
    fields: &[
        Field { name: "name", versions: (0, 0), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&PARTITION_RESPONSE) } },
    ],
    tagged: &[],
};

static PARTITION_RESPONSE: Struct = Struct {
    name: "PartitionResponse",
    fields: &[
        Field { name: "partition_index", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 0), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 0), kind: Kind::Str { nullable: true } },
        Field { name: "active_producers", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&PRODUCER_STATE) } },
    ],
    tagged: &[],
};

static PRODUCER_STATE: Struct = Struct {
    name: "ProducerState",
    fields: &[
        Field { name: "producer_id", versions: (0, 0), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "last_sequence", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "last_timestamp", versions: (0, 0), kind: Kind::Int64 },
        Field { name: "coordinator_epoch", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "current_txn_start_offset", versions: (0, 0), kind: Kind::Int64 },
    ],
    tagged: &[],
};

// === ConsumerGroupHeartbeat response (v0-1, flexible from v0) ===

static CONSUMER_GROUP_HEARTBEAT_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(0),
    body: &CONSUMER_GROUP_HEARTBEAT_RESPONSE,
};

static CONSUMER_GROUP_HEARTBEAT_RESPONSE: Struct = Struct {
    name: "ConsumerGroupHeartbeatResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 1), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "member_id", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "member_epoch", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "heartbeat_interval_ms", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "assignment", versions: (0, 1), kind: Kind::OptionStruct(&ASSIGNMENT) },
    ],
    tagged: &[],
};

static ASSIGNMENT: Struct = Struct {
    name: "Assignment",
    fields: &[
        Field { name: "topic_partitions", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CONSUMER_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS) } },
    ],
    tagged: &[],
};

static CONSUMER_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS: Struct = Struct {
    name: "TopicPartitions",
    fields: &[
        Field { name: "topic_id", versions: (0, 1), kind: Kind::Uuid },
        Field { name: "partitions", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === ConsumerGroupDescribe response (v0-1, flexible from v0) ===

static CONSUMER_GROUP_DESCRIBE_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 1,
    flexible: Some(0),
    body: &CONSUMER_GROUP_DESCRIBE_RESPONSE,
};

static CONSUMER_GROUP_DESCRIBE_RESPONSE: Struct = Struct {
    name: "ConsumerGroupDescribeResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "groups", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CONSUMER_GROUP_DESCRIBE_RESPONSE_DESCRIBED_GROUP) } },
    ],
    tagged: &[],
};

static CONSUMER_GROUP_DESCRIBE_RESPONSE_DESCRIBED_GROUP: Struct = Struct {
    name: "DescribedGroup",
    fields: &[
        Field { name: "error_code", versions: (0, 1), kind: Kind::Int16 },
        Field { name: "error_message", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "group_id", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "group_state", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "group_epoch", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "assignment_epoch", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "assignor_name", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "members", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&MEMBER) } },
        Field { name: "authorized_operations", versions: (0, 1), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static MEMBER: Struct = Struct {
    name: "Member",
    fields: &[
        Field { name: "member_id", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "instance_id", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "rack_id", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "member_epoch", versions: (0, 1), kind: Kind::Int32 },
        Field { name: "client_id", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "client_host", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "subscribed_topic_names", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Str { nullable: false } } },
        Field { name: "subscribed_topic_regex", versions: (0, 1), kind: Kind::Str { nullable: true } },
        Field { name: "assignment", versions: (0, 1), kind: Kind::Struct(&CONSUMER_GROUP_DESCRIBE_RESPONSE_ASSIGNMENT) },
        Field { name: "target_assignment", versions: (0, 1), kind: Kind::Struct(&CONSUMER_GROUP_DESCRIBE_RESPONSE_ASSIGNMENT) },
        Field { name: "member_type", versions: (1, 1), kind: Kind::Int8 },
    ],
    tagged: &[],
};

static CONSUMER_GROUP_DESCRIBE_RESPONSE_ASSIGNMENT: Struct = Struct {
    name: "Assignment",
    fields: &[
        Field { name: "topic_partitions", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&CONSUMER_GROUP_DESCRIBE_RESPONSE_TOPIC_PARTITIONS) } },
    ],
    tagged: &[],
};

static CONSUMER_GROUP_DESCRIBE_RESPONSE_TOPIC_PARTITIONS: Struct = Struct {
    name: "TopicPartitions",
    fields: &[
        Field { name: "topic_id", versions: (0, 1), kind: Kind::Uuid },
        Field { name: "topic_name", versions: (0, 1), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 1), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === DescribeTopicPartitions response (v0-0, flexible from v0) ===

static DESCRIBE_TOPIC_PARTITIONS_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 0,
    flexible: Some(0),
    body: &DESCRIBE_TOPIC_PARTITIONS_RESPONSE,
};

static DESCRIBE_TOPIC_PARTITIONS_RESPONSE: Struct = Struct {
    name: "DescribeTopicPartitionsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "topics", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_TOPIC_PARTITIONS_RESPONSE_TOPIC) } },
        Field { name: "next_cursor", versions: (0, 0), kind: Kind::OptionStruct(&DESCRIBE_TOPIC_PARTITIONS_RESPONSE_CURSOR) },
    ],
    tagged: &[],
};

static DESCRIBE_TOPIC_PARTITIONS_RESPONSE_TOPIC: Struct = Struct {
    name: "DescribeTopicPartitionsResponseTopic",
    fields: &[
        Field { name: "error_code", versions: (0, 0), kind: Kind::Int16 },
        Field { name: "name", versions: (0, 0), kind: Kind::Str { nullable: true } },
        Field { name: "topic_id", versions: (0, 0), kind: Kind::Uuid },
        Field { name: "is_internal", versions: (0, 0), kind: Kind::Bool },
        Field { name: "partitions", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_TOPIC_PARTITIONS_RESPONSE_PARTITION) } },
        Field { name: "topic_authorized_operations", versions: (0, 0), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DESCRIBE_TOPIC_PARTITIONS_RESPONSE_CURSOR: Struct = Struct {
    name: "Cursor",
    fields: &[
        Field { name: "topic_name", versions: (0, 0), kind: Kind::Str { nullable: false } },
        Field { name: "partition_index", versions: (0, 0), kind: Kind::Int32 },
    ],
    tagged: &[],
};

static DESCRIBE_TOPIC_PARTITIONS_RESPONSE_PARTITION: Struct = Struct {
    name: "DescribeTopicPartitionsResponsePartition",
    fields: &[
        Field { name: "error_code", versions: (0, 0), kind: Kind::Int16 },
        Field { name: "partition_index", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "leader_id", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "leader_epoch", versions: (0, 0), kind: Kind::Int32 },
        Field { name: "replica_nodes", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
        Field { name: "isr_nodes", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
        Field { name: "eligible_leader_replicas", versions: (0, 0), kind: Kind::Array { nullable: true, elem: &Kind::Int32 } },
        Field { name: "last_known_elr", versions: (0, 0), kind: Kind::Array { nullable: true, elem: &Kind::Int32 } },
        Field { name: "offline_replicas", versions: (0, 0), kind: Kind::Array { nullable: false, elem: &Kind::Int32 } },
    ],
    tagged: &[],
};

// === AddPartitionsToTxn response (v0-5, flexible from v3) ===

static ADD_PARTITIONS_TO_TXN_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &ADD_PARTITIONS_TO_TXN_RESPONSE,
};

static ADD_PARTITIONS_TO_TXN_RESPONSE: Struct = Struct {
    name: "AddPartitionsToTxnResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (4, 5), kind: Kind::Int16 },
        Field { name: "results_by_transaction", versions: (4, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_RESULT) } },
        Field { name: "results_by_topic_v3_and_below", versions: (0, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static ADD_PARTITIONS_TO_TXN_RESULT: Struct = Struct {
    name: "AddPartitionsToTxnResult",
    fields: &[
        Field { name: "transactional_id", versions: (4, 5), kind: Kind::Str { nullable: false } },
        Field { name: "topic_results", versions: (4, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT) } },
    ],
    tagged: &[],
};

static ADD_PARTITIONS_TO_TXN_TOPIC_RESULT: Struct = Struct {
    name: "AddPartitionsToTxnTopicResult",
    fields: &[
        Field { name: "name", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "results_by_partition", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ADD_PARTITIONS_TO_TXN_PARTITION_RESULT) } },
    ],
    tagged: &[],
};

static ADD_PARTITIONS_TO_TXN_PARTITION_RESULT: Struct = Struct {
    name: "AddPartitionsToTxnPartitionResult",
    fields: &[
        Field { name: "partition_index", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "partition_error_code", versions: (0, 5), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === AddOffsetsToTxn response (v0-4, flexible from v3) ===

static ADD_OFFSETS_TO_TXN_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 4,
    flexible: Some(3),
    body: &ADD_OFFSETS_TO_TXN_RESPONSE,
};

static ADD_OFFSETS_TO_TXN_RESPONSE: Struct = Struct {
    name: "AddOffsetsToTxnResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 4), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 4), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === EndTxn response (v0-5, flexible from v3) ===

static END_TXN_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &END_TXN_RESPONSE,
};

static END_TXN_RESPONSE: Struct = Struct {
    name: "EndTxnResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 5), kind: Kind::Int16 },
        Field { name: "producer_id", versions: (5, 5), kind: Kind::Int64 },
        Field { name: "producer_epoch", versions: (5, 5), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === TxnOffsetCommit response (v0-5, flexible from v3) ===

static TXN_OFFSET_COMMIT_RESPONSE_MESSAGE: Message = Message {
    min: 0,
    max: 5,
    flexible: Some(3),
    body: &TXN_OFFSET_COMMIT_RESPONSE,
};

static TXN_OFFSET_COMMIT_RESPONSE: Struct = Struct {
    name: "TxnOffsetCommitResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "topics", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TXN_OFFSET_COMMIT_RESPONSE_TOPIC) } },
    ],
    tagged: &[],
};

static TXN_OFFSET_COMMIT_RESPONSE_TOPIC: Struct = Struct {
    name: "TxnOffsetCommitResponseTopic",
    fields: &[
        Field { name: "name", versions: (0, 5), kind: Kind::Str { nullable: false } },
        Field { name: "partitions", versions: (0, 5), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&TXN_OFFSET_COMMIT_RESPONSE_PARTITION) } },
    ],
    tagged: &[],
};

static TXN_OFFSET_COMMIT_RESPONSE_PARTITION: Struct = Struct {
    name: "TxnOffsetCommitResponsePartition",
    fields: &[
        Field { name: "partition_index", versions: (0, 5), kind: Kind::Int32 },
        Field { name: "error_code", versions: (0, 5), kind: Kind::Int16 },
    ],
    tagged: &[],
};

// === DescribeAcls response (v1-3, flexible from v2) ===

static DESCRIBE_ACLS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &DESCRIBE_ACLS_RESPONSE,
};

static DESCRIBE_ACLS_RESPONSE: Struct = Struct {
    name: "DescribeAclsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 3), kind: Kind::Int32 },
        Field { name: "error_code", versions: (1, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "resources", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DESCRIBE_ACLS_RESOURCE) } },
    ],
    tagged: &[],
};

static DESCRIBE_ACLS_RESOURCE: Struct = Struct {
    name: "DescribeAclsResource",
    fields: &[
        Field { name: "resource_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "pattern_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "acls", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ACL_DESCRIPTION) } },
    ],
    tagged: &[],
};

static ACL_DESCRIPTION: Struct = Struct {
    name: "AclDescription",
    fields: &[
        Field { name: "principal", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "host", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "operation", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "permission_type", versions: (1, 3), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === CreateAcls response (v1-3, flexible from v2) ===

static CREATE_ACLS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &CREATE_ACLS_RESPONSE,
};

static CREATE_ACLS_RESPONSE: Struct = Struct {
    name: "CreateAclsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 3), kind: Kind::Int32 },
        Field { name: "results", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&ACL_CREATION_RESULT) } },
    ],
    tagged: &[],
};

static ACL_CREATION_RESULT: Struct = Struct {
    name: "AclCreationResult",
    fields: &[
        Field { name: "error_code", versions: (1, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 3), kind: Kind::Str { nullable: true } },
    ],
    tagged: &[],
};

// === DeleteAcls response (v1-3, flexible from v2) ===

static DELETE_ACLS_RESPONSE_MESSAGE: Message = Message {
    min: 1,
    max: 3,
    flexible: Some(2),
    body: &DELETE_ACLS_RESPONSE,
};

static DELETE_ACLS_RESPONSE: Struct = Struct {
    name: "DeleteAclsResponse",
    fields: &[
        Field { name: "throttle_time_ms", versions: (1, 3), kind: Kind::Int32 },
        Field { name: "filter_results", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_ACLS_FILTER_RESULT) } },
    ],
    tagged: &[],
};

static DELETE_ACLS_FILTER_RESULT: Struct = Struct {
    name: "DeleteAclsFilterResult",
    fields: &[
        Field { name: "error_code", versions: (1, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "matching_acls", versions: (1, 3), kind: Kind::Array { nullable: false, elem: &Kind::Struct(&DELETE_ACLS_MATCHING_ACL) } },
    ],
    tagged: &[],
};

static DELETE_ACLS_MATCHING_ACL: Struct = Struct {
    name: "DeleteAclsMatchingAcl",
    fields: &[
        Field { name: "error_code", versions: (1, 3), kind: Kind::Int16 },
        Field { name: "error_message", versions: (1, 3), kind: Kind::Str { nullable: true } },
        Field { name: "resource_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "resource_name", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "pattern_type", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "principal", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "host", versions: (1, 3), kind: Kind::Str { nullable: false } },
        Field { name: "operation", versions: (1, 3), kind: Kind::Int8 },
        Field { name: "permission_type", versions: (1, 3), kind: Kind::Int8 },
    ],
    tagged: &[],
};

// === lookup ===

/// The schema of `api`'s request body, if the guard knows it.
pub(super) fn request(api: ApiKey) -> Option<&'static Message> {
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

/// The schema of `api`'s response body, if the guard knows it.
pub(super) fn response(api: ApiKey) -> Option<&'static Message> {
    Some(match api {
        ApiKey::Produce => &PRODUCE_RESPONSE_MESSAGE,
        ApiKey::Fetch => &FETCH_RESPONSE_MESSAGE,
        ApiKey::ListOffsets => &LIST_OFFSETS_RESPONSE_MESSAGE,
        ApiKey::Metadata => &METADATA_RESPONSE_MESSAGE,
        ApiKey::OffsetCommit => &OFFSET_COMMIT_RESPONSE_MESSAGE,
        ApiKey::OffsetFetch => &OFFSET_FETCH_RESPONSE_MESSAGE,
        ApiKey::FindCoordinator => &FIND_COORDINATOR_RESPONSE_MESSAGE,
        ApiKey::JoinGroup => &JOIN_GROUP_RESPONSE_MESSAGE,
        ApiKey::Heartbeat => &HEARTBEAT_RESPONSE_MESSAGE,
        ApiKey::LeaveGroup => &LEAVE_GROUP_RESPONSE_MESSAGE,
        ApiKey::SyncGroup => &SYNC_GROUP_RESPONSE_MESSAGE,
        ApiKey::DescribeGroups => &DESCRIBE_GROUPS_RESPONSE_MESSAGE,
        ApiKey::ListGroups => &LIST_GROUPS_RESPONSE_MESSAGE,
        ApiKey::SaslHandshake => &SASL_HANDSHAKE_RESPONSE_MESSAGE,
        ApiKey::ApiVersions => &API_VERSIONS_RESPONSE_MESSAGE,
        ApiKey::CreateTopics => &CREATE_TOPICS_RESPONSE_MESSAGE,
        ApiKey::DeleteTopics => &DELETE_TOPICS_RESPONSE_MESSAGE,
        ApiKey::DeleteRecords => &DELETE_RECORDS_RESPONSE_MESSAGE,
        ApiKey::InitProducerId => &INIT_PRODUCER_ID_RESPONSE_MESSAGE,
        ApiKey::DescribeConfigs => &DESCRIBE_CONFIGS_RESPONSE_MESSAGE,
        ApiKey::AlterConfigs => &ALTER_CONFIGS_RESPONSE_MESSAGE,
        ApiKey::SaslAuthenticate => &SASL_AUTHENTICATE_RESPONSE_MESSAGE,
        ApiKey::CreatePartitions => &CREATE_PARTITIONS_RESPONSE_MESSAGE,
        ApiKey::DeleteGroups => &DELETE_GROUPS_RESPONSE_MESSAGE,
        ApiKey::IncrementalAlterConfigs => &INCREMENTAL_ALTER_CONFIGS_RESPONSE_MESSAGE,
        ApiKey::DescribeCluster => &DESCRIBE_CLUSTER_RESPONSE_MESSAGE,
        ApiKey::OffsetForLeaderEpoch => &OFFSET_FOR_LEADER_EPOCH_RESPONSE_MESSAGE,
        ApiKey::DescribeProducers => &DESCRIBE_PRODUCERS_RESPONSE_MESSAGE,
        ApiKey::ConsumerGroupHeartbeat => &CONSUMER_GROUP_HEARTBEAT_RESPONSE_MESSAGE,
        ApiKey::ConsumerGroupDescribe => &CONSUMER_GROUP_DESCRIBE_RESPONSE_MESSAGE,
        ApiKey::DescribeTopicPartitions => &DESCRIBE_TOPIC_PARTITIONS_RESPONSE_MESSAGE,
        ApiKey::AddPartitionsToTxn => &ADD_PARTITIONS_TO_TXN_RESPONSE_MESSAGE,
        ApiKey::AddOffsetsToTxn => &ADD_OFFSETS_TO_TXN_RESPONSE_MESSAGE,
        ApiKey::EndTxn => &END_TXN_RESPONSE_MESSAGE,
        ApiKey::TxnOffsetCommit => &TXN_OFFSET_COMMIT_RESPONSE_MESSAGE,
        ApiKey::DescribeAcls => &DESCRIBE_ACLS_RESPONSE_MESSAGE,
        ApiKey::CreateAcls => &CREATE_ACLS_RESPONSE_MESSAGE,
        ApiKey::DeleteAcls => &DELETE_ACLS_RESPONSE_MESSAGE,
        _ => return None,
    })
}

/// Every API the tables cover (both directions), in table order.
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
