//! The credentials file: salted SCRAM verifiers and per-user attributes.
//!
//! The file never holds a password. For each mechanism a user may use it
//! holds what RFC 5802 calls the *authentication information*: the salt, the
//! iteration count, `StoredKey` and `ServerKey`. Those are enough to run a
//! SCRAM exchange as the server, and to check a PLAIN password (by salting
//! and hashing it the same way), but not to log in as the user.
//!
//! ```toml
//! [[user]]
//! name = "ingest"
//!
//! [user.attributes]          # free-form: strings or arrays of strings
//! team = "platform"
//! region = "eu"
//! purposes = []
//!
//! [user.scram_sha_256]
//! salt = "base64…"
//! iterations = 4096
//! stored_key = "base64…"
//! server_key = "base64…"
//!
//! [user.scram_sha_512]       # optional, like scram_sha_256
//! salt = "base64…"
//! iterations = 4096
//! stored_key = "base64…"
//! server_key = "base64…"
//! ```
//!
//! Binary values are standard, padded base64. Iteration counts must lie in
//! [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]. Unknown keys are refused, so a
//! misspelt `scram_sha256` table is an error instead of a user who silently
//! cannot log in. A user with neither credential is allowed (its attributes
//! can still serve identities established otherwise, e.g. by mTLS) but can
//! never authenticate with PLAIN or SCRAM.
//!
//! Files are written with [`CredentialStore::to_toml`], typically after
//! [`User::new_with_password`].

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, b64_decode, b64_encode, ct_eq, Secret};
use crate::error::SaslError;
use crate::mechanism::Mechanism;

/// The smallest accepted iteration count (RFC 7677 §4, and Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;

/// The largest accepted iteration count. Each PLAIN login and each SCRAM
/// client exchange costs this many HMAC computations, so an absurd value in a
/// file, or sent by a hostile server to our client, is refused.
pub const MAX_ITERATIONS: u32 = 1 << 20;

/// The iteration count used when the caller has no opinion.
pub const DEFAULT_ITERATIONS: u32 = MIN_ITERATIONS;

const DEFAULT_ITERATIONS_NONZERO: NonZeroU32 = match NonZeroU32::new(DEFAULT_ITERATIONS) {
    Some(n) => n,
    None => panic!("DEFAULT_ITERATIONS is not zero"),
};

/// Length of the random salts [`ScramCredential::derive`] generates.
pub const SALT_LEN: usize = 24;

/// The longest user name accepted (the PLAIN limit, RFC 4616 §2).
pub const MAX_USERNAME_LEN: usize = 255;

// ---------------------------------------------------------------------------
// ScramCredential
// ---------------------------------------------------------------------------

/// The server-side SCRAM credential of one user for one mechanism:
/// salt, iteration count, `StoredKey` and `ServerKey`.
///
/// The keys are verifiers, not passwords, but whoever holds `StoredKey` and
/// `ServerKey` can impersonate the *server* to a client, so they are kept in
/// buffers wiped on drop, compared in constant time, and never printed by
/// `Debug`.
#[derive(Clone)]
pub struct ScramCredential {
    mechanism: Mechanism,
    salt: Vec<u8>,
    iterations: NonZeroU32,
    stored_key: Secret,
    server_key: Secret,
}

impl ScramCredential {
    /// Derives the credential for `password`.
    ///
    /// With `salt: None` a fresh random salt of [`SALT_LEN`] bytes is drawn
    /// from the system CSPRNG. The password is used as UTF-8 bytes without
    /// SASLprep, exactly as Kafka does.
    ///
    /// # Errors
    /// [`SaslError::UnsupportedMechanism`] for [`Mechanism::Plain`],
    /// [`SaslError::IterationsOutOfRange`], [`SaslError::InvalidCredential`]
    /// for an empty salt, [`SaslError::Crypto`] if randomness is unavailable.
    pub fn derive(
        mechanism: Mechanism,
        password: &str,
        salt: Option<&[u8]>,
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        let hash = mechanism.scram_hash()?;
        let iterations = check_iterations(iterations.into())?;
        let salt = match salt {
            Some(salt) => salt.to_vec(),
            None => crypto::random_bytes(SALT_LEN)?,
        };
        if salt.is_empty() {
            return Err(SaslError::InvalidCredential {
                reason: "the salt is empty",
            });
        }
        let salted_password = hash.salted_password(password.as_bytes(), &salt, iterations);
        let keys = hash.keys(&salted_password)?;
        Ok(ScramCredential {
            mechanism,
            salt,
            iterations,
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        })
    }

    /// Assembles a credential from stored parts (e.g. migrated from Kafka's
    /// `kafka-configs --describe --entity-type users`), checking them.
    ///
    /// # Errors
    /// [`SaslError::UnsupportedMechanism`] for PLAIN,
    /// [`SaslError::IterationsOutOfRange`], or [`SaslError::InvalidCredential`]
    /// for an empty salt or keys whose length is not the hash length.
    pub fn from_parts(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: u32,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
    ) -> Result<ScramCredential, SaslError> {
        let stored_key = Zeroizing::new(stored_key);
        let server_key = Zeroizing::new(server_key);
        let hash = mechanism.scram_hash()?;
        let iterations = check_iterations(iterations.into())?;
        if salt.is_empty() {
            return Err(SaslError::InvalidCredential {
                reason: "the salt is empty",
            });
        }
        if stored_key.len() != hash.len() {
            return Err(SaslError::InvalidCredential {
                reason: "stored_key length does not match the mechanism's hash length",
            });
        }
        if server_key.len() != hash.len() {
            return Err(SaslError::InvalidCredential {
                reason: "server_key length does not match the mechanism's hash length",
            });
        }
        Ok(ScramCredential {
            mechanism,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }

    /// The mechanism this credential is for.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// `StoredKey = H(ClientKey)`.
    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }

    /// Whether `password` salts and hashes to this credential's `StoredKey`
    /// (constant-time comparison).
    pub(crate) fn matches_password(&self, password: &[u8]) -> Result<bool, SaslError> {
        let hash = self.mechanism.scram_hash()?;
        let salted_password = hash.salted_password(password, &self.salt, self.iterations);
        let keys = hash.keys(&salted_password)?;
        Ok(ct_eq(&keys.stored_key, &self.stored_key))
    }
}

impl PartialEq for ScramCredential {
    fn eq(&self, other: &Self) -> bool {
        // Evaluate both key comparisons unconditionally, in constant time.
        let stored = ct_eq(&self.stored_key, &other.stored_key);
        let server = ct_eq(&self.server_key, &other.server_key);
        self.mechanism == other.mechanism
            && self.salt == other.salt
            && self.iterations == other.iterations
            && stored & server
    }
}

impl Eq for ScramCredential {}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("salt", &b64_encode(&self.salt))
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

fn check_iterations(iterations: u64) -> Result<NonZeroU32, SaslError> {
    let out_of_range = SaslError::IterationsOutOfRange {
        iterations,
        min: MIN_ITERATIONS,
        max: MAX_ITERATIONS,
    };
    if !(u64::from(MIN_ITERATIONS)..=u64::from(MAX_ITERATIONS)).contains(&iterations) {
        return Err(out_of_range);
    }
    u32::try_from(iterations)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(out_of_range)
}

// ---------------------------------------------------------------------------
// User and attributes
// ---------------------------------------------------------------------------

/// The value of a user attribute: a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A single string, e.g. `team = "platform"`.
    String(String),
    /// A list of strings, e.g. `purposes = ["moderation", "analytics"]`.
    List(Vec<String>),
}

impl AttributeValue {
    /// The string, if this is a single value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttributeValue::String(s) => Some(s),
            AttributeValue::List(_) => None,
        }
    }

    /// The list, if this is a list.
    pub fn as_list(&self) -> Option<&[String]> {
        match self {
            AttributeValue::String(_) => None,
            AttributeValue::List(items) => Some(items),
        }
    }

    /// The values as a sequence: one element for a string, the items of a list.
    pub fn values(&self) -> impl Iterator<Item = &str> + '_ {
        let items: &[String] = match self {
            AttributeValue::String(s) => std::slice::from_ref(s),
            AttributeValue::List(items) => items,
        };
        items.iter().map(String::as_str)
    }

    fn to_toml(&self) -> toml::Value {
        match self {
            AttributeValue::String(s) => toml::Value::String(s.clone()),
            AttributeValue::List(items) => {
                toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
            }
        }
    }

    fn from_toml(value: toml::Value) -> Result<AttributeValue, &'static str> {
        match value {
            toml::Value::String(s) => Ok(AttributeValue::String(s)),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    _ => Err("list attributes may only contain strings"),
                })
                .collect::<Result<_, _>>()
                .map(AttributeValue::List),
            _ => Err("attributes must be strings or arrays of strings"),
        }
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

impl From<Vec<String>> for AttributeValue {
    fn from(value: Vec<String>) -> Self {
        AttributeValue::List(value)
    }
}

/// One user: a name, free-form attributes, and a SCRAM credential per mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (the SASL authentication identity).
    pub name: String,
    /// Attributes the proxy turns into the principal (team, region, purposes, ...).
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The SCRAM-SHA-256 credential; also used to check PLAIN passwords.
    pub scram_sha_256: Option<ScramCredential>,
    /// The SCRAM-SHA-512 credential; used for PLAIN when there is no SHA-256 one.
    pub scram_sha_512: Option<ScramCredential>,
}

impl User {
    /// A user with credentials for both SCRAM mechanisms, each with its own
    /// fresh random salt, derived from `password`.
    ///
    /// # Errors
    /// [`SaslError::InvalidUsername`], [`SaslError::IterationsOutOfRange`],
    /// [`SaslError::Crypto`].
    pub fn new_with_password(
        name: impl Into<String>,
        password: &str,
        iterations: u32,
        attributes: BTreeMap<String, AttributeValue>,
    ) -> Result<User, SaslError> {
        let name = name.into();
        validate_username(&name)?;
        Ok(User {
            name,
            attributes,
            scram_sha_256: Some(ScramCredential::derive(
                Mechanism::ScramSha256,
                password,
                None,
                iterations,
            )?),
            scram_sha_512: Some(ScramCredential::derive(
                Mechanism::ScramSha512,
                password,
                None,
                iterations,
            )?),
        })
    }

    /// The credential for a SCRAM mechanism (`None` for PLAIN or when absent).
    pub fn credential(&self, mechanism: Mechanism) -> Option<&ScramCredential> {
        match mechanism {
            Mechanism::ScramSha256 => self.scram_sha_256.as_ref(),
            Mechanism::ScramSha512 => self.scram_sha_512.as_ref(),
            Mechanism::Plain => None,
        }
    }

    /// The credential PLAIN passwords are checked against: SCRAM-SHA-256 if
    /// present, otherwise SCRAM-SHA-512.
    pub fn plain_credential(&self) -> Option<&ScramCredential> {
        self.scram_sha_256.as_ref().or(self.scram_sha_512.as_ref())
    }

    /// An attribute by name.
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes.get(key)
    }
}

/// Checks that `name` can be a user name: non-empty, at most
/// [`MAX_USERNAME_LEN`] bytes, no NUL (which PLAIN cannot carry).
///
/// # Errors
/// [`SaslError::InvalidUsername`].
pub fn validate_username(name: &str) -> Result<(), SaslError> {
    if name.is_empty() {
        return Err(SaslError::InvalidUsername {
            reason: "the name is empty",
        });
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(SaslError::InvalidUsername {
            reason: "the name is longer than 255 bytes",
        });
    }
    if name.contains('\0') {
        return Err(SaslError::InvalidUsername {
            reason: "the name contains a NUL character",
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// CredentialStore
// ---------------------------------------------------------------------------

/// All users, by name. Read-only once built; share it behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialStore {
    users: BTreeMap<String, User>,
}

impl CredentialStore {
    /// An empty store.
    pub fn new() -> CredentialStore {
        CredentialStore::default()
    }

    /// Reads and parses a credentials file.
    ///
    /// # Errors
    /// [`SaslError::Io`], plus everything [`CredentialStore::from_toml`] returns.
    pub fn load(path: impl AsRef<Path>) -> Result<CredentialStore, SaslError> {
        let path = path.as_ref();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SaslError::Io {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        CredentialStore::from_toml(&text)
    }

    /// Parses the text of a credentials file.
    ///
    /// # Errors
    /// [`SaslError::CredentialsSyntax`] for TOML or layout errors,
    /// [`SaslError::InvalidUser`] for a bad entry (bad base64, wrong key
    /// length, iterations out of range, bad name or attribute),
    /// [`SaslError::DuplicateUser`].
    pub fn from_toml(text: &str) -> Result<CredentialStore, SaslError> {
        let file: FileRepr = toml::from_str(text).map_err(|e| {
            // Report the position and the parser's message, not the TOML
            // excerpt `Display` would add (it could quote key material).
            let message = e.message().trim_end();
            SaslError::CredentialsSyntax(match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: {message}")
                }
                None => message.to_owned(),
            })
        })?;
        let mut store = CredentialStore::new();
        for raw in file.user {
            let user = raw.into_user()?;
            store.insert(user)?;
        }
        Ok(store)
    }

    /// Renders the store as a credentials file (users sorted by name).
    ///
    /// # Errors
    /// [`SaslError::Serialize`] (not expected in practice).
    pub fn to_toml(&self) -> Result<String, SaslError> {
        let file = FileRepr {
            user: self.users.values().map(UserRepr::from_user).collect(),
        };
        let body = toml::to_string(&file).map_err(|e| SaslError::Serialize(e.to_string()))?;
        Ok(format!(
            "# Gatehouse SASL credentials: salted SCRAM verifiers only, never passwords.\n\n{body}"
        ))
    }

    /// Adds a user.
    ///
    /// # Errors
    /// [`SaslError::DuplicateUser`] if the name is taken,
    /// [`SaslError::InvalidUsername`], or [`SaslError::InvalidUser`] when a
    /// credential sits in the wrong mechanism's slot.
    pub fn insert(&mut self, user: User) -> Result<(), SaslError> {
        validate_username(&user.name)?;
        for (slot, mechanism, credential) in [
            ("scram_sha_256", Mechanism::ScramSha256, &user.scram_sha_256),
            ("scram_sha_512", Mechanism::ScramSha512, &user.scram_sha_512),
        ] {
            if let Some(credential) = credential {
                if credential.mechanism() != mechanism {
                    return Err(SaslError::InvalidUser {
                        user: user.name.clone(),
                        reason: format!("{slot} holds a {} credential", credential.mechanism()),
                    });
                }
            }
        }
        if self.users.contains_key(&user.name) {
            return Err(SaslError::DuplicateUser { name: user.name });
        }
        self.users.insert(user.name.clone(), user);
        Ok(())
    }

    /// Removes a user, returning it (e.g. to replace its credentials).
    pub fn remove(&mut self, name: &str) -> Option<User> {
        self.users.remove(name)
    }

    /// Looks a user up by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// All users, sorted by name.
    pub fn users(&self) -> impl Iterator<Item = &User> + '_ {
        self.users.values()
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Salt length and iteration count to use for a decoy credential when a
    /// client names an unknown user: the most common combination among real
    /// credentials of this mechanism, so decoys look like real users.
    pub(crate) fn decoy_profile(&self, mechanism: Mechanism) -> (usize, NonZeroU32) {
        let mut counts: BTreeMap<(usize, NonZeroU32), usize> = BTreeMap::new();
        for credential in self.users.values().filter_map(|u| u.credential(mechanism)) {
            *counts
                .entry((credential.salt.len(), credential.iterations))
                .or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|&(_, n)| n)
            .map(|(profile, _)| profile)
            .unwrap_or((SALT_LEN, DEFAULT_ITERATIONS_NONZERO))
    }
}

// ---------------------------------------------------------------------------
// File representation
// ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    user: Vec<UserRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRepr {
    name: String,
    #[serde(default)]
    attributes: BTreeMap<String, toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scram_sha_256: Option<CredentialRepr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scram_sha_512: Option<CredentialRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRepr {
    salt: String,
    iterations: i64,
    stored_key: String,
    server_key: String,
}

impl Drop for CredentialRepr {
    fn drop(&mut self) {
        self.stored_key.zeroize();
        self.server_key.zeroize();
    }
}

impl UserRepr {
    fn from_user(user: &User) -> UserRepr {
        UserRepr {
            name: user.name.clone(),
            attributes: user
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.to_toml()))
                .collect(),
            scram_sha_256: user
                .scram_sha_256
                .as_ref()
                .map(CredentialRepr::from_credential),
            scram_sha_512: user
                .scram_sha_512
                .as_ref()
                .map(CredentialRepr::from_credential),
        }
    }

    fn into_user(self) -> Result<User, SaslError> {
        let invalid = |reason: String| SaslError::InvalidUser {
            user: self.name.clone(),
            reason,
        };
        validate_username(&self.name).map_err(|e| invalid(format!("name: {e}")))?;
        let mut attributes = BTreeMap::new();
        for (key, value) in &self.attributes {
            let value = AttributeValue::from_toml(value.clone())
                .map_err(|reason| invalid(format!("attributes.{key}: {reason}")))?;
            attributes.insert(key.clone(), value);
        }
        let credential = |slot: &str, mechanism, repr: &Option<CredentialRepr>| {
            repr.as_ref()
                .map(|repr| repr.to_credential(mechanism))
                .transpose()
                .map_err(|reason| invalid(format!("{slot}.{reason}")))
        };
        Ok(User {
            scram_sha_256: credential(
                "scram_sha_256",
                Mechanism::ScramSha256,
                &self.scram_sha_256,
            )?,
            scram_sha_512: credential(
                "scram_sha_512",
                Mechanism::ScramSha512,
                &self.scram_sha_512,
            )?,
            name: self.name,
            attributes,
        })
    }
}

impl CredentialRepr {
    fn from_credential(credential: &ScramCredential) -> CredentialRepr {
        CredentialRepr {
            salt: b64_encode(&credential.salt),
            iterations: i64::from(credential.iterations()),
            stored_key: b64_encode(&credential.stored_key),
            server_key: b64_encode(&credential.server_key),
        }
    }

    /// Decodes and checks the entry; the error names the offending field.
    fn to_credential(&self, mechanism: Mechanism) -> Result<ScramCredential, String> {
        let decode = |field: &str, text: &str| {
            b64_decode(text).map_err(|e| format!("{field}: invalid base64 ({e})"))
        };
        let salt = decode("salt", &self.salt)?;
        let mut stored_key = Zeroizing::new(decode("stored_key", &self.stored_key)?);
        let mut server_key = Zeroizing::new(decode("server_key", &self.server_key)?);
        let iterations = u64::try_from(self.iterations)
            .ok()
            .and_then(|i| check_iterations(i).ok())
            .ok_or_else(|| {
                format!(
                    "iterations: {} is out of range (minimum {MIN_ITERATIONS}, maximum {MAX_ITERATIONS})",
                    self.iterations
                )
            })?;
        ScramCredential::from_parts(
            mechanism,
            salt,
            iterations.get(),
            std::mem::take(&mut *stored_key),
            std::mem::take(&mut *server_key),
        )
        .map_err(|e| match e {
            SaslError::InvalidCredential { reason } => reason.to_owned(),
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use super::*;

    fn attrs() -> BTreeMap<String, AttributeValue> {
        BTreeMap::from([
            ("team".to_owned(), AttributeValue::from("platform")),
            ("region".to_owned(), AttributeValue::from("eu")),
            ("purposes".to_owned(), AttributeValue::List(vec![])),
            (
                "tags".to_owned(),
                AttributeValue::List(vec!["a, b".to_owned(), "quote \" and = sign".to_owned()]),
            ),
        ])
    }

    fn sample_store() -> CredentialStore {
        let mut store = CredentialStore::new();
        store
            .insert(User::new_with_password("ingest", "s3cret", 4096, attrs()).unwrap())
            .unwrap();
        store
            .insert(
                User::new_with_password("weird,user=name", "pw", 4096, BTreeMap::new()).unwrap(),
            )
            .unwrap();
        let mut only_512 =
            User::new_with_password("analytics", "pw2", 8192, BTreeMap::new()).unwrap();
        only_512.scram_sha_256 = None;
        store.insert(only_512).unwrap();
        store
    }

    #[test]
    fn derive_with_given_salt_is_deterministic() {
        let a = ScramCredential::derive(
            Mechanism::ScramSha256,
            "pw",
            Some(b"0123456789abcdef"),
            4096,
        )
        .unwrap();
        let b = ScramCredential::derive(
            Mechanism::ScramSha256,
            "pw",
            Some(b"0123456789abcdef"),
            4096,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.stored_key().len(), 32);
        let c = ScramCredential::derive(Mechanism::ScramSha512, "pw", None, 4096).unwrap();
        assert_eq!(c.salt().len(), SALT_LEN);
        assert_eq!(c.stored_key().len(), 64);
        assert_eq!(c.server_key().len(), 64);
        let d = ScramCredential::derive(Mechanism::ScramSha512, "pw", None, 4096).unwrap();
        assert_ne!(c.salt(), d.salt(), "random salts differ");
        assert!(c.matches_password(b"pw").unwrap());
        assert!(!c.matches_password(b"pW").unwrap());
    }

    #[test]
    fn derive_refuses_bad_parameters() {
        assert!(matches!(
            ScramCredential::derive(Mechanism::ScramSha256, "pw", None, 4095),
            Err(SaslError::IterationsOutOfRange {
                iterations: 4095,
                min: 4096,
                ..
            })
        ));
        assert!(matches!(
            ScramCredential::derive(Mechanism::ScramSha256, "pw", None, MAX_ITERATIONS + 1),
            Err(SaslError::IterationsOutOfRange { .. })
        ));
        assert!(matches!(
            ScramCredential::derive(Mechanism::Plain, "pw", None, 4096),
            Err(SaslError::UnsupportedMechanism { .. })
        ));
        assert!(matches!(
            ScramCredential::derive(Mechanism::ScramSha256, "pw", Some(b""), 4096),
            Err(SaslError::InvalidCredential { .. })
        ));
        assert!(matches!(
            ScramCredential::from_parts(
                Mechanism::ScramSha512,
                vec![1],
                4096,
                vec![0; 32],
                vec![0; 64]
            ),
            Err(SaslError::InvalidCredential { .. })
        ));
        assert!(matches!(
            User::new_with_password("", "pw", 4096, BTreeMap::new()),
            Err(SaslError::InvalidUsername { .. })
        ));
        assert!(matches!(
            User::new_with_password("a\0b", "pw", 4096, BTreeMap::new()),
            Err(SaslError::InvalidUsername { .. })
        ));
    }

    #[test]
    fn debug_redacts_keys() {
        let c = ScramCredential::derive(Mechanism::ScramSha256, "pw", None, 4096).unwrap();
        let debug = format!("{c:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(&b64_encode(c.stored_key())));
        assert!(!debug.contains(&b64_encode(c.server_key())));
    }

    #[test]
    fn toml_round_trip() {
        let store = sample_store();
        let text = store.to_toml().unwrap();
        assert!(text.contains("[[user]]"), "{text}");
        assert!(text.contains("[user.attributes]"), "{text}");
        assert!(text.contains("[user.scram_sha_256]"), "{text}");
        let back = CredentialStore::from_toml(&text).unwrap();
        assert_eq!(back, store);
        assert_eq!(back.len(), 3);
        let ingest = back.user("ingest").unwrap();
        assert_eq!(
            ingest.attribute("team").and_then(AttributeValue::as_str),
            Some("platform")
        );
        assert_eq!(
            ingest
                .attribute("purposes")
                .and_then(AttributeValue::as_list),
            Some(&[][..])
        );
        assert!(back.user("analytics").unwrap().scram_sha_256.is_none());
        assert!(back.user("nobody").is_none());
        // Writing again gives the same text.
        assert_eq!(back.to_toml().unwrap(), text);
    }

    #[test]
    fn parses_documented_layout() {
        let credential =
            ScramCredential::derive(Mechanism::ScramSha256, "pencil", None, 4096).unwrap();
        let text = format!(
            r#"
            [[user]]
            name = "ingest"
            [user.attributes]
            team = "platform"
            region = "eu"
            purposes = []
            [user.scram_sha_256]
            salt = "{}"
            iterations = 4096
            stored_key = "{}"
            server_key = "{}"

            [[user]]
            name = "no-credentials"
            "#,
            b64_encode(credential.salt()),
            b64_encode(credential.stored_key()),
            b64_encode(credential.server_key()),
        );
        let store = CredentialStore::from_toml(&text).unwrap();
        let ingest = store.user("ingest").unwrap();
        assert_eq!(ingest.scram_sha_256.as_ref(), Some(&credential));
        assert_eq!(ingest.plain_credential(), Some(&credential));
        assert_eq!(ingest.attributes.len(), 3);
        assert_eq!(
            ingest
                .attribute("region")
                .unwrap()
                .values()
                .collect::<Vec<_>>(),
            ["eu"]
        );
        let none = store.user("no-credentials").unwrap();
        assert!(none.attributes.is_empty() && none.plain_credential().is_none());
        assert!(CredentialStore::from_toml("").unwrap().is_empty());
    }

    fn entry(salt: &str, iterations: &str, stored_key: &str) -> String {
        format!(
            "[[user]]\nname = \"u\"\n[user.scram_sha_256]\nsalt = \"{salt}\"\niterations = {iterations}\n\
             stored_key = \"{stored_key}\"\nserver_key = \"{}\"\n",
            b64_encode(&[7; 32])
        )
    }

    #[test]
    fn file_errors_are_clear() {
        let key = b64_encode(&[1; 32]);
        assert!(CredentialStore::from_toml(&entry("c2FsdA==", "4096", &key)).is_ok());

        let err = CredentialStore::from_toml(&entry("not base64!", "4096", &key)).unwrap_err();
        assert!(
            matches!(&err, SaslError::InvalidUser { user, .. } if user == "u"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("scram_sha_256.salt: invalid base64"),
            "{err}"
        );

        let err = CredentialStore::from_toml(&entry("c2FsdA==", "4096", "@@@@")).unwrap_err();
        assert!(
            err.to_string()
                .contains("scram_sha_256.stored_key: invalid base64"),
            "{err}"
        );

        let err = CredentialStore::from_toml(&entry("c2FsdA==", "4095", &key)).unwrap_err();
        assert!(
            err.to_string()
                .contains("iterations: 4095 is out of range (minimum 4096"),
            "{err}"
        );
        let err = CredentialStore::from_toml(&entry("c2FsdA==", "-1", &key)).unwrap_err();
        assert!(
            err.to_string().contains("iterations: -1 is out of range"),
            "{err}"
        );
        let err = CredentialStore::from_toml(&entry("c2FsdA==", "99999999999", &key)).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");

        let err = CredentialStore::from_toml(&entry("c2FsdA==", "4096", &b64_encode(&[1; 64])))
            .unwrap_err();
        assert!(err.to_string().contains("stored_key length"), "{err}");

        let err = CredentialStore::from_toml(&entry("", "4096", &key)).unwrap_err();
        assert!(err.to_string().contains("salt is empty"), "{err}");

        let twice = format!(
            "{}{}",
            entry("c2FsdA==", "4096", &key),
            entry("c2FsdA==", "4096", &key)
        );
        let err = CredentialStore::from_toml(&twice).unwrap_err();
        assert!(
            matches!(&err, SaslError::DuplicateUser { name } if name == "u"),
            "{err}"
        );
        assert!(err.to_string().contains("duplicate user \"u\""), "{err}");

        let err =
            CredentialStore::from_toml("[[user]]\nname = \"u\"\npassword = \"x\"\n").unwrap_err();
        assert!(matches!(err, SaslError::CredentialsSyntax(_)), "{err}");
        let err = CredentialStore::from_toml("[[user]]\nname = \"u\"\n[user.scram_sha256]\n")
            .unwrap_err();
        assert!(matches!(err, SaslError::CredentialsSyntax(_)), "{err}");
        let err = CredentialStore::from_toml("[[user]\n").unwrap_err();
        assert!(matches!(err, SaslError::CredentialsSyntax(_)), "{err}");

        let err =
            CredentialStore::from_toml("[[user]]\nname = \"u\"\n[user.attributes]\nlevel = 3\n")
                .unwrap_err();
        assert!(err.to_string().contains("attributes.level"), "{err}");
        let err =
            CredentialStore::from_toml("[[user]]\nname = \"u\"\n[user.attributes]\nl = [1]\n")
                .unwrap_err();
        assert!(err.to_string().contains("only contain strings"), "{err}");

        let err = CredentialStore::from_toml("[[user]]\nname = \"\"\n").unwrap_err();
        assert!(matches!(err, SaslError::InvalidUser { .. }), "{err}");
    }

    #[test]
    fn load_reports_the_path() {
        let err = CredentialStore::load("/nonexistent/gatehouse/credentials.toml").unwrap_err();
        assert!(matches!(err, SaslError::Io { .. }));
        assert!(
            err.to_string()
                .contains("/nonexistent/gatehouse/credentials.toml"),
            "{err}"
        );

        let path =
            std::env::temp_dir().join(format!("gatehouse-sasl-test-{}.toml", std::process::id()));
        let store = sample_store();
        std::fs::write(&path, store.to_toml().unwrap()).unwrap();
        let loaded = CredentialStore::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap(), store);
    }

    #[test]
    fn insert_checks_slots_and_duplicates() {
        let mut store = sample_store();
        let mut swapped = User::new_with_password("swapped", "pw", 4096, BTreeMap::new()).unwrap();
        std::mem::swap(&mut swapped.scram_sha_256, &mut swapped.scram_sha_512);
        assert!(matches!(
            store.insert(swapped),
            Err(SaslError::InvalidUser { .. })
        ));
        let again = User::new_with_password("ingest", "other", 4096, BTreeMap::new()).unwrap();
        assert!(matches!(
            store.insert(again.clone()),
            Err(SaslError::DuplicateUser { .. })
        ));
        assert!(store.remove("ingest").is_some());
        store.insert(again).unwrap();
    }

    #[test]
    fn decoy_profile_follows_real_users() {
        let store = sample_store();
        assert_eq!(store.decoy_profile(Mechanism::ScramSha256).1.get(), 4096);
        let mut only_8192 = CredentialStore::new();
        only_8192
            .insert(User::new_with_password("a", "pw", 8192, BTreeMap::new()).unwrap())
            .unwrap();
        assert_eq!(
            only_8192.decoy_profile(Mechanism::ScramSha512),
            (SALT_LEN, NonZeroU32::new(8192).unwrap())
        );
        assert_eq!(
            CredentialStore::new()
                .decoy_profile(Mechanism::ScramSha256)
                .1
                .get(),
            DEFAULT_ITERATIONS
        );
    }
}
