//! Error type of the audit crate.

use std::path::PathBuf;

/// Everything that can go wrong in the audit trail.
///
/// Any `Err` from [`crate::AuditLog::append`] means the event is **not known to be
/// durable**: callers must refuse the data access it was recording (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An operating-system I/O error on a file or directory of the log.
    #[error("audit I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A write or fsync failed; the log refuses every append (fail closed) until a
    /// retry finds the disk writable again.
    #[error("audit log unavailable after a write failure: {0}")]
    Unavailable(String),
    /// The log was closed (or its writer task is gone).
    #[error("audit log is closed")]
    Closed,
    /// The chain on disk is broken somewhere other than a torn last line: the log
    /// refuses to open and names the location.
    #[error("audit chain broken in {segment} line {line} (seq {seq:?}): {reason}")]
    Corrupt {
        /// Segment file name.
        segment: String,
        /// 1-based line number in that segment.
        line: u64,
        /// Sequence number of the offending event, when it could be read.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A signed document does not verify.
    #[error("signed document: {0}")]
    Document(String),
    /// The signing key could not be loaded, created or used.
    #[error("audit signing key {path}: {reason}")]
    Key {
        /// Key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another [`crate::AuditLog`] in this process already writes this directory.
    #[error("audit directory {0} is already open for writing in this process")]
    AlreadyOpen(PathBuf),
    /// Another process writes this directory's chain (it holds the writer lock, or
    /// the index lock of an older version).
    #[error("audit directory {0} is being written by another process")]
    WrittenElsewhere(PathBuf),
    /// The configuration is unusable.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// The index database failed (the index is derived data; segments are the
    /// truth).
    #[error("audit index error: {0}")]
    Index(Box<redb::Error>),
    /// JSON (de)serialisation failed.
    #[error("audit JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

/// Every error of the index database is an [`AuditError::Index`].
macro_rules! index_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for AuditError {
            fn from(e: $t) -> Self {
                AuditError::Index(Box::new(e.into()))
            }
        }
    )*};
}
index_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Short-hand used inside the crate.
pub(crate) type Result<T, E = AuditError> = std::result::Result<T, E>;
