//! The server side of a SCRAM exchange.

use std::fmt;
use std::sync::OnceLock;

use super::messages::{as_text, parse_client_final, parse_client_first};
use crate::credentials::{CredentialStore, User};
use crate::crypto::{self, b64_encode, ct_eq, xor, Hash, Secret};
use crate::error::SaslError;
use crate::mechanism::Mechanism;

/// What the server does after a successful [`ScramServer::step`].
#[derive(Debug)]
#[must_use]
pub enum Step<'a> {
    /// Send `response` (the server-first-message) to the client and feed its
    /// next message to [`ScramServer::step`].
    Continue {
        /// The message for the client.
        response: Vec<u8>,
    },
    /// Authentication succeeded. Send `response` (the server-final-message,
    /// `v=ServerSignature`, which lets the client check the server) and treat
    /// the connection as `user` from now on.
    Done {
        /// The authenticated user.
        user: &'a User,
        /// The message for the client.
        response: Vec<u8>,
    },
}

/// The server side of SCRAM-SHA-256 / SCRAM-SHA-512, one per authentication
/// attempt.
///
/// Feed each client message to [`step`](Self::step): the client-first-message
/// yields [`Step::Continue`] with the server-first-message, the
/// client-final-message yields [`Step::Done`] with the server-final-message.
/// Any error ends the exchange: later calls fail with
/// [`SaslError::InvalidState`].
///
/// An unknown user (or one without a credential for this mechanism) gets a
/// plausible server-first-message built from a decoy credential (a salt
/// derived from the user name with a per-process secret, so it is stable
/// across attempts, and the iteration count real users have), and the
/// exchange fails at the proof with the same
/// [`SaslError::AuthenticationFailed`] as a wrong password.
///
/// Kafka clients send SCRAM in `SaslAuthenticate` requests; on error, answer
/// with `SASL_AUTHENTICATION_FAILED` and the error's message.
pub struct ScramServer<'a> {
    mechanism: Mechanism,
    hash: Hash,
    store: &'a CredentialStore,
    state: State<'a>,
    /// The user name of the client-first-message, once one parsed.
    claimed: Option<String>,
    /// Test hook: use this server nonce instead of a random one.
    fixed_nonce: Option<String>,
}

enum State<'a> {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Pending<'a>>),
    Done,
    Failed,
}

/// What the server remembers between the two client messages.
struct Pending<'a> {
    /// `None` when the exchange runs against a decoy credential.
    user: Option<&'a User>,
    stored_key: Secret,
    server_key: Secret,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// Client nonce followed by server nonce.
    nonce: String,
}

impl<'a> ScramServer<'a> {
    /// A server for `mechanism`, authenticating against `store`.
    ///
    /// # Errors
    /// [`SaslError::UnsupportedMechanism`] for [`Mechanism::Plain`] (use
    /// [`verify_plain`](crate::plain::verify_plain)).
    pub fn new(
        mechanism: Mechanism,
        store: &'a CredentialStore,
    ) -> Result<ScramServer<'a>, SaslError> {
        Ok(ScramServer {
            mechanism,
            hash: mechanism.scram_hash()?,
            store,
            state: State::AwaitingClientFirst,
            claimed: None,
            fixed_nonce: None,
        })
    }

    /// Fixes the server's part of the nonce, so tests can reproduce published
    /// exchanges byte for byte.
    #[cfg(test)]
    pub(crate) fn with_server_nonce(mut self, nonce: &str) -> Self {
        self.fixed_nonce = Some(nonce.to_owned());
        self
    }

    /// The mechanism this server runs.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the exchange finished successfully.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The user name the client-first-message claimed, once one was parsed
    /// (whether or not the exchange then succeeded). Unverified until
    /// [`Step::Done`]: for the record of a refused attempt, never for access.
    pub fn claimed_username(&self) -> Option<&str> {
        self.claimed.as_deref()
    }

    /// Whether the exchange failed (every later [`step`](Self::step) fails).
    pub fn has_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Processes the client's next message.
    ///
    /// # Errors
    /// [`SaslError::Malformed`], [`SaslError::ChannelBindingNotSupported`],
    /// [`SaslError::UnsupportedExtension`], [`SaslError::AuthzidMismatch`] on
    /// the client-first-message; [`SaslError::NonceMismatch`],
    /// [`SaslError::ChannelBindingNotSupported`] (wrong `c=`),
    /// [`SaslError::AuthenticationFailed`] on the client-final-message;
    /// [`SaslError::InvalidState`] once the exchange is over.
    pub fn step(&mut self, client_message: &[u8]) -> Result<Step<'a>, SaslError> {
        // Any early return leaves the state at Failed.
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitingClientFirst => self.client_first(client_message),
            State::AwaitingClientFinal(pending) => self.client_final(*pending, client_message),
            State::Done => Err(SaslError::InvalidState {
                reason: "the exchange is already complete",
            }),
            State::Failed => Err(SaslError::InvalidState {
                reason: "the exchange has failed",
            }),
        }
    }

    fn client_first(&mut self, message: &[u8]) -> Result<Step<'a>, SaslError> {
        let first = parse_client_first(as_text(message)?)?;
        self.claimed = Some(first.username.clone());
        let server_nonce = match &self.fixed_nonce {
            Some(nonce) => nonce.clone(),
            None => crypto::random_nonce()?,
        };
        let nonce = format!("{}{server_nonce}", first.nonce);

        let user = self.store.user(&first.username);
        let (user, salt, iterations, stored_key, server_key) =
            match user.and_then(|u| Some((u, u.credential(self.mechanism)?))) {
                Some((user, credential)) => (
                    Some(user),
                    credential.salt().to_vec(),
                    credential.iterations(),
                    Secret::new(credential.stored_key().to_vec()),
                    Secret::new(credential.server_key().to_vec()),
                ),
                None => {
                    let (salt_len, iterations) = self.store.decoy_profile(self.mechanism);
                    let salt = decoy_salt(self.mechanism, &first.username, salt_len)?;
                    let stored_key = Secret::new(crypto::random_bytes(self.hash.len())?);
                    let server_key = Secret::new(crypto::random_bytes(self.hash.len())?);
                    (None, salt, iterations.get(), stored_key, server_key)
                }
            };

        let server_first = format!("r={nonce},s={},i={iterations}", b64_encode(&salt));
        let response = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal(Box::new(Pending {
            user,
            stored_key,
            server_key,
            gs2_header: first.gs2_header.to_owned(),
            client_first_bare: first.bare.to_owned(),
            server_first,
            nonce,
        }));
        Ok(Step::Continue { response })
    }

    fn client_final(
        &mut self,
        pending: Pending<'a>,
        message: &[u8],
    ) -> Result<Step<'a>, SaslError> {
        let last = parse_client_final(as_text(message)?)?;
        // Without channel binding, c= carries just the gs2 header ("biws" is
        // base64 of "n,,").
        if last.channel_binding != pending.gs2_header.as_bytes() {
            return Err(SaslError::ChannelBindingNotSupported);
        }
        // Kafka's own server only checks that the client's nonce *ends with*
        // the combined nonce it sent: librdkafka up to at least 2.0 repeats
        // its client nonce in front of it. The server part is still required
        // in full, so the message is still fresh; the proof covers the
        // message exactly as sent.
        if !last.nonce.ends_with(pending.nonce.as_str()) {
            return Err(SaslError::NonceMismatch);
        }
        if last.proof.len() != self.hash.len() {
            return Err(SaslError::Malformed {
                reason: "client proof has the wrong length",
            });
        }

        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof
        // is right iff H(ClientKey) = StoredKey.
        let auth_message = format!(
            "{},{},{}",
            pending.client_first_bare, pending.server_first, last.without_proof
        );
        let client_signature = self
            .hash
            .mac(&pending.stored_key, auth_message.as_bytes())?;
        let client_key = xor(&last.proof, &client_signature);
        let proof_ok = ct_eq(&self.hash.hash(&client_key), &pending.stored_key);

        match pending.user {
            Some(user) if proof_ok => {
                let server_signature = self
                    .hash
                    .mac(&pending.server_key, auth_message.as_bytes())?;
                self.state = State::Done;
                Ok(Step::Done {
                    user,
                    response: format!("v={}", b64_encode(&server_signature)).into_bytes(),
                })
            }
            _ => Err(SaslError::AuthenticationFailed),
        }
    }
}

impl fmt::Debug for ScramServer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::AwaitingClientFirst => "awaiting client-first-message",
            State::AwaitingClientFinal(_) => "awaiting client-final-message",
            State::Done => "done",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// A salt for an unknown user: `HMAC(secret, mechanism NUL username)`,
/// truncated to `len` (at most 64) bytes. Stable for a given name within the
/// process, so probing twice does not reveal the user is fake; unpredictable
/// without the per-process secret.
fn decoy_salt(mechanism: Mechanism, username: &str, len: usize) -> Result<Vec<u8>, SaslError> {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = match SECRET.get() {
        Some(secret) => secret,
        None => {
            let mut fresh = [0; 32];
            fresh.copy_from_slice(&crypto::random_bytes(32)?);
            SECRET.get_or_init(|| fresh)
        }
    };
    let data = [mechanism.name().as_bytes(), b"\0", username.as_bytes()].concat();
    let mut salt = Hash::Sha512.mac(secret, &data)?.to_vec();
    salt.truncate(len.clamp(1, Hash::Sha512.len()));
    Ok(salt)
}
