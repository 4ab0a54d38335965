//! The key-encryption-key provider interface.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyError;

/// A data key wrapped by a key-encryption key (KEK), as stored: which KEK
/// wrapped it, and the provider's opaque bytes (for [`crate::LocalKeyFile`]:
/// nonce and AES-256-GCM ciphertext; for Vault transit: the `vault:v2:…`
/// ciphertext text; for a cloud KMS: its ciphertext blob).
///
/// The bytes are ciphertext, not key material, so `Debug` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the KEK that wrapped the data key (e.g. `kek-2`).
    pub kek_id: String,
    /// The wrapped data key.
    pub bytes: Vec<u8>,
}

/// A key-encryption-key provider.
///
/// Sync on purpose: remote providers (Vault transit `encrypt`/`decrypt`/`hmac`
/// endpoints, AWS/GCP KMS Encrypt/Decrypt/GenerateMac) block, and callers only
/// call it off the hot path (unwrapped keys are cached by [`crate::KeyStore`]).
///
/// Implementations must never log or put key material in errors.
pub trait KekProvider: Send + Sync + std::fmt::Debug {
    /// The id of the KEK that [`KekProvider::wrap`] uses now.
    fn current_kek_id(&self) -> String;
    /// Wraps a data key with the current KEK.
    fn wrap(&self, dek: &[u8]) -> Result<WrappedKey, KeyError>;
    /// Unwraps a data key wrapped by any KEK version the provider still knows.
    /// An unknown KEK id is [`KeyError::UnknownKek`].
    fn unwrap(&self, wrapped: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, KeyError>;
    /// A keyed MAC under a provider-held secret that does NOT change on KEK rotation
    /// (Vault transit hmac, KMS GenerateMac). Used to derive stable secrets shared by
    /// every replica that uses the same provider (pseudonym secret, subject tags).
    fn mac(&self, data: &[u8]) -> Result<[u8; 32], KeyError>;
    /// Starts a new KEK version; old versions stay available to unwrap. Returns the new id.
    fn rotate(&self) -> Result<String, KeyError>;
}
