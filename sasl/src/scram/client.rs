//! The client side of a SCRAM exchange.

use std::fmt;

use zeroize::Zeroizing;

use super::messages::{
    as_text, escape_saslname, parse_server_final, parse_server_first, ServerFinal,
};
use crate::credentials::{validate_username, MAX_ITERATIONS, MIN_ITERATIONS};
use crate::crypto::{self, b64_encode, ct_eq, xor, Hash, Secret};
use crate::error::SaslError;
use crate::mechanism::Mechanism;

/// The gs2 header the client sends: no channel binding, no authzid.
const GS2_HEADER: &str = "n,,";

/// The client side of SCRAM-SHA-256 / SCRAM-SHA-512: the proxy uses it to
/// authenticate to the broker, tests use it to drive [`ScramServer`].
///
/// ```text
/// let mut client = ScramClient::new(mechanism, user, password)?;
/// send(client.first());                      // client-first-message
/// send(client.step(&receive())?);            // server-first → client-final
/// client.finish(&receive())?;                // server-final: checks the server
/// ```
///
/// The password is held (in a buffer wiped on drop) only until
/// [`step`](Self::step) has derived the keys; afterwards only the expected
/// server signature is kept. A server-first-message with an iteration count
/// outside [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`] is refused, so a hostile
/// server can neither weaken the derivation nor make us burn CPU.
///
/// [`ScramServer`]: super::ScramServer
pub struct ScramClient {
    mechanism: Mechanism,
    hash: Hash,
    /// The complete client-first-message (gs2 header + bare part).
    client_first: String,
    client_nonce: String,
    state: State,
}

enum State {
    AwaitingServerFirst { password: Zeroizing<String> },
    AwaitingServerFinal { server_signature: Secret },
    Done,
    Failed,
}

impl ScramClient {
    /// A client for `mechanism` authenticating as `username` with `password`,
    /// with a fresh random nonce.
    ///
    /// # Errors
    /// [`SaslError::UnsupportedMechanism`] for PLAIN,
    /// [`SaslError::InvalidUsername`], [`SaslError::Crypto`].
    pub fn new(
        mechanism: Mechanism,
        username: &str,
        password: &str,
    ) -> Result<ScramClient, SaslError> {
        ScramClient::with_nonce(mechanism, username, password, crypto::random_nonce()?)
    }

    /// A client with a chosen nonce, so tests can reproduce published
    /// exchanges byte for byte.
    #[cfg(test)]
    pub(crate) fn with_fixed_nonce(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        nonce: &str,
    ) -> Result<ScramClient, SaslError> {
        ScramClient::with_nonce(mechanism, username, password, nonce.to_owned())
    }

    fn with_nonce(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        client_nonce: String,
    ) -> Result<ScramClient, SaslError> {
        let hash = mechanism.scram_hash()?;
        validate_username(username)?;
        let client_first = format!(
            "{GS2_HEADER}n={},r={client_nonce}",
            escape_saslname(username)
        );
        Ok(ScramClient {
            mechanism,
            hash,
            client_first,
            client_nonce,
            state: State::AwaitingServerFirst {
                password: Zeroizing::new(password.to_owned()),
            },
        })
    }

    /// The mechanism this client runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The client-first-message, e.g. `n,,n=user,r=<nonce>`.
    pub fn first(&self) -> Vec<u8> {
        self.client_first.clone().into_bytes()
    }

    /// Takes the server-first-message and returns the client-final-message
    /// (with the proof).
    ///
    /// # Errors
    /// [`SaslError::Malformed`], [`SaslError::UnsupportedExtension`] (`m=`),
    /// [`SaslError::NonceMismatch`] when the server nonce does not extend
    /// ours, [`SaslError::IterationsOutOfRange`],
    /// [`SaslError::InvalidState`] if called twice. Errors are terminal.
    pub fn step(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let State::AwaitingServerFirst { password } =
            std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(SaslError::InvalidState {
                reason: "server-first-message already processed",
            });
        };
        let server_first = as_text(server_first)?;
        let parsed = parse_server_first(server_first)?;
        if parsed.nonce.len() <= self.client_nonce.len()
            || !parsed.nonce.starts_with(&self.client_nonce)
        {
            return Err(SaslError::NonceMismatch);
        }
        let iterations = u32::try_from(parsed.iterations)
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .and_then(std::num::NonZeroU32::new)
            .ok_or(SaslError::IterationsOutOfRange {
                iterations: parsed.iterations,
                min: MIN_ITERATIONS,
                max: MAX_ITERATIONS,
            })?;

        let salted_password =
            self.hash
                .salted_password(password.as_bytes(), &parsed.salt, iterations);
        drop(password);
        let keys = self.hash.keys(&salted_password)?;

        let channel_binding = b64_encode(GS2_HEADER.as_bytes());
        let without_proof = format!("c={channel_binding},r={}", parsed.nonce);
        let client_first_bare = &self.client_first[GS2_HEADER.len()..];
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.hash.mac(&keys.stored_key, auth_message.as_bytes())?;
        let proof = xor(&keys.client_key, &client_signature);
        let server_signature = self.hash.mac(&keys.server_key, auth_message.as_bytes())?;

        self.state = State::AwaitingServerFinal { server_signature };
        Ok(format!("{without_proof},p={}", b64_encode(&proof)).into_bytes())
    }

    /// Checks the server-final-message: the server proves it knows our
    /// credential by sending the expected `v=ServerSignature`.
    ///
    /// # Errors
    /// [`SaslError::ServerRejected`] for `e=...`,
    /// [`SaslError::ServerSignatureMismatch`], [`SaslError::Malformed`],
    /// [`SaslError::InvalidState`] out of order.
    pub fn finish(&mut self, server_final: &[u8]) -> Result<(), SaslError> {
        let State::AwaitingServerFinal { server_signature } =
            std::mem::replace(&mut self.state, State::Failed)
        else {
            return Err(SaslError::InvalidState {
                reason: "no server-final-message expected",
            });
        };
        match parse_server_final(as_text(server_final)?)? {
            ServerFinal::Error(reason) => Err(SaslError::ServerRejected { reason }),
            ServerFinal::Verifier(signature) if ct_eq(&signature, &server_signature) => {
                self.state = State::Done;
                Ok(())
            }
            ServerFinal::Verifier(_) => Err(SaslError::ServerSignatureMismatch),
        }
    }

    /// Whether the server has been verified.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingServerFirst { .. } => "awaiting server-first-message",
            State::AwaitingServerFinal { .. } => "awaiting server-final-message",
            State::Done => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
