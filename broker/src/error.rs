//! Errors of the broker crate.
//!
//! Errors that reach a client become Kafka error codes ([`KafkaCode`]);
//! errors of the broker itself ([`BrokerError`], [`StorageError`]) are for
//! the operator and say which side failed.

/// Kafka protocol error codes the broker answers with.
///
/// Only the codes this broker uses are listed; the numbers are Kafka's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[repr(i16)]
pub enum KafkaCode {
    /// No error.
    None = 0,
    /// Offset outside the partition's log.
    OffsetOutOfRange = 1,
    /// A record batch failed its CRC or structure check.
    CorruptMessage = 2,
    /// Topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// Leader not available (no partitions yet).
    LeaderNotAvailable = 5,
    /// This broker does not lead the partition (or was fenced).
    NotLeaderOrFollower = 6,
    /// The request timed out.
    RequestTimedOut = 7,
    /// A batch is larger than the topic allows.
    MessageTooLarge = 10,
    /// Coordinator is loading.
    CoordinatorLoadInProgress = 14,
    /// Coordinator not available.
    CoordinatorNotAvailable = 15,
    /// Not the coordinator for this group.
    NotCoordinator = 16,
    /// Invalid topic name.
    InvalidTopicException = 17,
    /// Record list too large.
    RecordListTooLarge = 18,
    /// Generation does not match.
    IllegalGeneration = 22,
    /// Protocol type or protocols do not match the group's.
    InconsistentGroupProtocol = 23,
    /// Group id is empty or invalid.
    InvalidGroupId = 24,
    /// Member is not part of the group.
    UnknownMemberId = 25,
    /// Session timeout out of range.
    InvalidSessionTimeout = 26,
    /// The group is rebalancing.
    RebalanceInProgress = 27,
    /// Commit metadata too large.
    OffsetMetadataTooLarge = 12,
    /// Topic authorization failed.
    TopicAuthorizationFailed = 29,
    /// The API version is not supported.
    UnsupportedVersion = 35,
    /// Topic exists already.
    TopicAlreadyExists = 36,
    /// Invalid partition count.
    InvalidPartitions = 37,
    /// Invalid replication factor.
    InvalidReplicationFactor = 38,
    /// Invalid config.
    InvalidConfig = 40,
    /// Invalid request.
    InvalidRequest = 42,
    /// Unsupported message format.
    UnsupportedForMessageFormat = 43,
    /// Sequence number out of order.
    OutOfOrderSequenceNumber = 45,
    /// Duplicate sequence.
    DuplicateSequenceNumber = 46,
    /// Producer epoch is older than the current one.
    InvalidProducerEpoch = 47,
    /// Storage error: the write was not made durable; retry.
    KafkaStorageError = 56,
    /// Group is not empty.
    NonEmptyGroup = 68,
    /// Group does not exist.
    GroupIdNotFound = 69,
    /// The group's member id is required (KIP-394).
    MemberIdRequired = 79,
    /// Invalid record.
    InvalidRecord = 87,
    /// The SASL mechanism is not enabled.
    UnsupportedSaslMechanism = 33,
    /// SASL authentication failed.
    SaslAuthenticationFailed = 58,
    /// Unknown server error.
    UnknownServerError = -1,
}

impl KafkaCode {
    /// The wire value.
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// Failures of the object store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store location could not be opened.
    #[error("cannot open object store at {location}: {reason}")]
    Config {
        /// The configured location.
        location: String,
        /// Why.
        reason: String,
    },
    /// The object store failed a request.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Another writer created a commit object with our next sequence number.
    #[error("commit {0} was written by another broker: this broker is fenced")]
    Fenced(u64),
    /// Stored data does not parse.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Failures that stop the broker from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Invalid configuration.
    #[error("invalid broker configuration: {0}")]
    Config(String),
    /// The broker stopped before the operation finished.
    #[error("the broker has stopped")]
    Stopped,
    /// An operation was refused, with the Kafka error a client would get.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// The Kafka error code.
        code: KafkaCode,
        /// Why.
        message: String,
    },
}
