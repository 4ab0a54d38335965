//! SASL PLAIN and SCRAM-SHA-256 / SCRAM-SHA-512 for Gatehouse.
//!
//! Both halves of Gatehouse authenticate with this crate: the proxy checks
//! Kafka clients (server side) and logs in to the broker (client side), and
//! the broker checks the proxy (server side). It speaks SASL the way Kafka
//! does (KIP-84): the mechanism names of [`Mechanism`], SCRAM as in
//! RFC 5802 / RFC 7677 without channel binding, PLAIN as in RFC 4616. The
//! Kafka framing (`SaslHandshake`, `SaslAuthenticate`) is the caller's job;
//! this crate only turns SASL messages into answers.
//!
//! # The pieces
//!
//! - [`credentials`]: the credentials file. A [`CredentialStore`] holds
//!   [`User`]s: a name, free-form [`AttributeValue`]s the proxy turns into a
//!   principal (team, region, purposes, ...), and a [`ScramCredential`] per
//!   SCRAM mechanism (salt, iterations, `StoredKey`, `ServerKey`). The file
//!   never holds a password; [`User::new_with_password`] and
//!   [`CredentialStore::to_toml`] write new ones.
//! - [`plain`]: [`verify_plain`] checks a PLAIN message by salting the
//!   password with the user's stored SCRAM parameters.
//! - [`scram`]: [`ScramServer`], a state machine driven by
//!   [`ScramServer::step`] that yields [`Step::Continue`] and then
//!   [`Step::Done`] with the authenticated user; and [`ScramClient`], the
//!   other side.
//! - [`SaslError`]: every failure. Messages are safe to log and to send to
//!   clients: they never contain passwords, proofs or keys, and an unknown
//!   user is reported exactly like a wrong password.
//!
//! # Server side
//!
//! ```
//! use gatehouse_sasl::{CredentialStore, Mechanism, ScramClient, ScramServer, Step, User};
//!
//! # fn main() -> Result<(), gatehouse_sasl::SaslError> {
//! let mut store = CredentialStore::new();
//! store.insert(User::new_with_password("ingest", "s3cret", 4096, Default::default())?)?;
//!
//! let mut server = ScramServer::new(Mechanism::ScramSha256, &store)?;
//! let mut client = ScramClient::new(Mechanism::ScramSha256, "ingest", "s3cret")?;
//!
//! let Step::Continue { response: server_first } = server.step(&client.first())? else { unreachable!() };
//! let client_final = client.step(&server_first)?;
//! let Step::Done { user, response: server_final } = server.step(&client_final)? else { unreachable!() };
//! client.finish(&server_final)?; // the client has verified the server, too
//! assert_eq!(user.name, "ingest");
//!
//! // PLAIN (over TLS only): the same store, the same password.
//! let user = gatehouse_sasl::verify_plain(&store, b"\0ingest\0s3cret")?;
//! assert_eq!(user.name, "ingest");
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - Secrets (passwords held by the client, salted passwords, client keys,
//!   `StoredKey`/`ServerKey`) live in buffers wiped on drop and are compared
//!   in constant time.
//! - Iteration counts below 4096 are refused everywhere, including in a
//!   server-first-message received by [`ScramClient`]; counts above
//!   [`credentials::MAX_ITERATIONS`] are refused too.
//! - For unknown users, [`verify_plain`] does the same PBKDF2 work as for
//!   known ones, and [`ScramServer`] answers with a decoy salt and iteration
//!   count, failing only at the proof.
//! - Passwords are used as UTF-8 bytes without SASLprep, like Kafka.

mod crypto;
mod error;
mod mechanism;

pub mod credentials;
pub mod plain;
pub mod scram;

pub use credentials::{AttributeValue, CredentialStore, ScramCredential, User};
pub use error::SaslError;
pub use mechanism::Mechanism;
pub use plain::{parse_plain, verify_plain, PlainMessage};
pub use scram::{ScramClient, ScramServer, Step};
