//! The one error type of the crate.

use crate::KeyId;

/// Everything that can go wrong in `gatehouse-keys`.
///
/// Messages never contain key bytes, plaintexts or subject ids: they name
/// files, key ids and key-encryption-key ids only, which are not secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file-system operation on a key file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is readable or writable by group or others.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:03o}); \
         a key file must be private to its owner: run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file could not be parsed or is inconsistent.
    #[error("key file {path} is not valid: {reason}")]
    KeyFile {
        /// The key file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A wrapped key names a key-encryption key the provider does not know.
    #[error("key-encryption key {kek_id:?} is not known to the key provider")]
    UnknownKek {
        /// The unknown KEK id.
        kek_id: String,
    },
    /// The provider knows the KEK but the wrapped key does not unwrap under it.
    #[error("could not unwrap a data key with key-encryption key {kek_id:?}: {reason}")]
    UnwrapFailed {
        /// The KEK id named by the wrapped key.
        kek_id: String,
        /// Why (never contains key material).
        reason: String,
    },
    /// A remote key provider (Vault transit, cloud KMS) failed.
    #[error("key provider error: {0}")]
    Provider(String),
    /// The sled key store failed.
    #[error("key store: {0}")]
    Storage(#[from] sled::Error),
    /// A record in the key store could not be read back.
    #[error("key store record for key {key}: {reason}")]
    Corrupt {
        /// The record's key id (hex) or store key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A record read from the key topic is not valid.
    #[error("invalid replicated key record: {0}")]
    InvalidRecord(String),
    /// A record of an internal state topic does not carry a valid MAC
    /// (none, or one that does not verify): it was not written by a proxy
    /// holding the key provider, or was changed or moved since.
    #[error("unauthenticated state record: {0}")]
    Unauthenticated(&'static str),
    /// The value is not a Gatehouse field ciphertext (no `"gh1.` prefix).
    #[error("value is not a Gatehouse field ciphertext")]
    NotCiphertext,
    /// The value has the ciphertext prefix but cannot be decoded.
    #[error("malformed field ciphertext: {0}")]
    Malformed(&'static str),
    /// The ciphertext was made under another key than the one given.
    #[error("field ciphertext is under key {found}, not key {expected}")]
    WrongKey {
        /// The key that was given.
        expected: KeyId,
        /// The key named in the ciphertext.
        found: KeyId,
    },
    /// Authentication failed: tampered ciphertext, or moved to another topic or field.
    #[error(
        "field ciphertext failed authentication (tampered, or moved from another topic or field)"
    )]
    Decrypt,
    /// An input is too long for the format.
    #[error("{0} is too long")]
    TooLong(&'static str),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// A string is not a key id.
    #[error("invalid key id: expected 32 lowercase hex characters")]
    InvalidKeyId,
    /// An unexpected failure inside a cryptographic primitive.
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}
