//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while loading credentials or running a SASL
/// exchange.
///
/// Messages are safe to log and to return to a Kafka client: no variant ever
/// carries a password, a salted password, a client proof, a client key or a
/// signature. Protocol errors carry a fixed description (`&'static str`) rather
/// than fragments of the offending message, so nothing a client typed is
/// echoed back.
///
/// An unknown user and a wrong password are deliberately indistinguishable:
/// both surface as [`SaslError::AuthenticationFailed`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    // ----- credentials file -------------------------------------------------
    /// The credentials file could not be read from disk.
    #[error("cannot read credentials file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// The credentials file is not valid TOML, or does not have the expected
    /// layout (unknown keys, wrong value types, ...).
    #[error("invalid credentials file: {0}")]
    CredentialsSyntax(String),

    /// One `[[user]]` entry of a credentials file (or a [`User`] handed to
    /// [`CredentialStore::insert`]) is invalid: bad base64, wrong key length,
    /// iteration count out of range, unsupported attribute value, ...
    ///
    /// [`User`]: crate::credentials::User
    /// [`CredentialStore::insert`]: crate::credentials::CredentialStore::insert
    #[error("invalid credentials for user {user:?}: {reason}")]
    InvalidUser {
        /// The user name of the offending entry (empty if the name itself is missing).
        user: String,
        /// What is wrong, including the offending field.
        reason: String,
    },

    /// Two users with the same name.
    #[error("duplicate user {name:?} in credentials")]
    DuplicateUser {
        /// The name that appears more than once.
        name: String,
    },

    /// A user name is not acceptable (empty, too long, contains NUL).
    #[error("invalid user name: {reason}")]
    InvalidUsername {
        /// Why the name was refused.
        reason: &'static str,
    },

    /// A SCRAM iteration count outside the accepted range
    /// ([`MIN_ITERATIONS`](crate::credentials::MIN_ITERATIONS) ..=
    /// [`MAX_ITERATIONS`](crate::credentials::MAX_ITERATIONS)).
    #[error("iteration count {iterations} is out of range (minimum {min}, maximum {max})")]
    IterationsOutOfRange {
        /// The refused iteration count.
        iterations: u64,
        /// The smallest accepted count (4096, as RFC 7677 and Kafka require).
        min: u32,
        /// The largest accepted count.
        max: u32,
    },

    /// A SCRAM credential's parts are inconsistent (empty salt, key length
    /// not matching the hash function, ...).
    #[error("invalid SCRAM credential: {reason}")]
    InvalidCredential {
        /// What is wrong.
        reason: &'static str,
    },

    /// The credentials could not be serialised to TOML.
    #[error("cannot serialise credentials: {0}")]
    Serialize(String),

    // ----- mechanism negotiation --------------------------------------------
    /// A mechanism name this crate does not implement, or a mechanism used
    /// where it does not apply (PLAIN given to the SCRAM state machines).
    #[error("unsupported SASL mechanism {name:?}")]
    UnsupportedMechanism {
        /// The mechanism name (truncated to 64 characters).
        name: String,
    },

    // ----- protocol ---------------------------------------------------------
    /// A SASL message does not follow the grammar of its mechanism.
    #[error("malformed SASL message: {reason}")]
    Malformed {
        /// Which rule was broken (a fixed text; never part of the message).
        reason: &'static str,
    },

    /// The client asked for channel binding (`p=` gs2 flag, or a `c=`
    /// attribute that does not match the gs2 header). Gatehouse does not
    /// offer the `-PLUS` mechanisms.
    #[error("channel binding is not supported")]
    ChannelBindingNotSupported,

    /// The client used a SCRAM extension that is not supported: a mandatory
    /// extension (`m=`), or Kafka's delegation-token extension `tokenauth=true`.
    #[error("unsupported SCRAM extension {name:?}")]
    UnsupportedExtension {
        /// The extension's attribute name (never its value).
        name: String,
    },

    /// The authorization identity differs from the authentication identity;
    /// Gatehouse does not let one user act as another.
    #[error("authorization identity must be empty or equal to the authentication identity")]
    AuthzidMismatch,

    /// The nonce in the client-final-message is not the one the server sent,
    /// or the server's nonce does not extend the client's.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,

    /// Unknown user, user without a credential for this mechanism, or wrong
    /// password / client proof. These cases are reported identically on
    /// purpose.
    #[error("authentication failed: invalid credentials")]
    AuthenticationFailed,

    /// (Client side) the server's signature in server-final-message is wrong:
    /// the server does not know our credential. Do not trust it.
    #[error("server signature verification failed")]
    ServerSignatureMismatch,

    /// (Client side) the server ended the exchange with `e=<error>`.
    #[error("server rejected the authentication: {reason}")]
    ServerRejected {
        /// The server's error value (printable ASCII, truncated).
        reason: String,
    },

    /// A state machine was driven out of order, or after it finished or failed.
    #[error("SASL exchange used out of order: {reason}")]
    InvalidState {
        /// What was attempted.
        reason: &'static str,
    },

    /// The system random number generator or another cryptographic primitive failed.
    #[error("cryptographic failure: {operation}")]
    Crypto {
        /// The operation that failed.
        operation: &'static str,
    },
}

/// Shortens an attacker-controlled name before it goes into an error.
pub(crate) fn truncated(name: &str) -> String {
    const MAX: usize = 64;
    let mut end = name.len().min(MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}
