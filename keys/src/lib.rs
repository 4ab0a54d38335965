//! Gatehouse key hierarchy: per-subject data keys wrapped by a
//! key-encryption key, field ciphertexts, masking and pseudonyms.
//!
//! # Key hierarchy
//!
//! ```text
//!  KekProvider (LocalKeyFile, Vault transit, cloud KMS)
//!   ├── KEK versions kek-1, kek-2, …   wrap / unwrap data keys; rotate() adds a version
//!   └── MAC secret (never rotates)     mac(): subject tags, pseudonym secret,
//!                                       internal-topic record MACs
//!         │
//!  KeyStore (sled tree + bounded in-memory cache, replicated via a compacted topic)
//!   └── data keys (AES-256-GCM), one or more per subject, stored wrapped,
//!       indexed by a keyed subject tag (HMAC), never by the subject id
//!         │
//!  encrypt_field_into / decrypt_field_into: one JSON field value per ciphertext
//! ```
//!
//! * A **data key** ([`DataKey`]) is a random AES-256 key with a random 128-bit
//!   [`KeyId`]. Each subject (data owner) has its own, so destroying a
//!   subject's keys ([`KeyStore::destroy_subject`]) makes every ciphertext of
//!   that subject unreadable everywhere it was copied (crypto-shredding).
//! * Data keys are stored only **wrapped** ([`WrappedKey`]) by a
//!   **key-encryption key** (KEK) held by a [`KekProvider`]. Rotating the KEK
//!   ([`KeyStore::rotate_kek`]) re-wraps the data keys and changes no data.
//! * The provider also offers a keyed **MAC** whose secret does not rotate.
//!   It derives the subject-tag secret ([`KeyStore::subject_tag`]) and the
//!   pseudonym secret ([`Pseudonymizer`]), so every replica that uses the same
//!   provider derives the same tags and tokens without sharing any other secret.
//!
//! # Field ciphertext format
//!
//! A protected field's JSON value is replaced by a JSON string
//!
//! ```text
//! "gh1.<base64url, no padding, of: version (2) | key id (16) | nonce (12) | ciphertext | tag (16)>"
//! ```
//!
//! * version is `2` (version 1 did not bind the subject and is no longer
//!   read: such a field decrypts nowhere); the key id names the data key, so a reader can find the
//!   key without trying ([`ciphertext_key_id`]);
//! * the nonce is 96 random bits per encryption (random nonces are fine far
//!   beyond the number of fields one subject key encrypts);
//! * the plaintext is the field's original JSON text (string, number, object, …);
//! * the associated data is `version | key id` then, each as `u32be len | bytes`,
//!   the topic, the field path and the record's subject id ([`FieldBinding`]),
//!   so a ciphertext copied to another topic, field or subject's record, or
//!   with its key id changed, fails to decrypt. Decryption fails closed on
//!   any change.
//!
//! # Plugging in Vault transit or a cloud KMS
//!
//! Implement [`KekProvider`] (it is synchronous; remote calls block, but the
//! store only calls it when a key is created, rotated, replicated or not in
//! its cache):
//!
//! * `wrap`: Vault `POST transit/encrypt/<name>` with the base64 data key, or
//!   KMS `Encrypt`; store the returned ciphertext as [`WrappedKey::bytes`] and
//!   the key version (Vault `vault:vN:` prefix, KMS key version / ARN) as
//!   [`WrappedKey::kek_id`].
//! * `unwrap`: Vault `transit/decrypt/<name>`, KMS `Decrypt`; answer
//!   [`KeyError::UnknownKek`] for a version the service no longer has.
//! * `mac`: Vault `transit/hmac/<name>` with a dedicated key that is never
//!   rotated (or pinned `key_version`), KMS `GenerateMac` with an HMAC key.
//!   It must return the same 32 bytes for the same input on every replica,
//!   forever: changing it changes every subject tag and pseudonym.
//! * `rotate`: Vault `transit/keys/<name>/rotate`, KMS key rotation; return
//!   the new version's id.
//!
//! [`LocalKeyFile`] is the built-in provider for development and single-host
//! deployments: a 0600 JSON file holding the KEK versions and the MAC secret.
//!
//! # Replication
//!
//! Several proxy replicas share keys through a compacted Kafka topic. Each
//! replica publishes what [`KeyStore::unpublished`] returns (key: key id in
//! hex; value: JSON record with subject tag, KEK id, wrapped key, creation
//! time, or a destroyed marker), confirms with [`KeyStore::mark_published`],
//! and applies everything it reads from the topic with
//! [`KeyStore::apply_replicated`]. Two replicas that create a key for the
//! same subject at once both end up choosing the smallest key id for writes,
//! and each can read the other's ciphertexts. A destroyed key never comes back:
//! the store keeps a destroyed marker for its id forever, and ignores any
//! later record of that id (a replayed copy of the key's old record included).
//!
//! Records on the topic must be authenticated before they are applied: every
//! replica signs what it publishes with a [`StateRecordMac`] (HMAC-SHA256
//! under a secret derived from the provider's `mac`, the topic, record key and
//! value, tombstones included, carried in the [`MAC_HEADER`] record header)
//! and applies only records that verify. A client that can write to the
//! cluster but holds no key provider cannot forge a key record or a
//! destruction. The same helper serves every internal state topic.
//!
//! # Secrets hygiene
//!
//! Key material is zeroized on drop and never printed: every type holding it
//! has a redacting `Debug`, and error messages name only files, key ids and
//! KEK ids, never key bytes, plaintexts or subject ids.
//!
//! Inside each AES-256-GCM cipher (KEKs, data keys) the expanded AES key
//! schedule is zeroized on drop too (the `aes` crate's `zeroize` feature,
//! enabled in this crate's `Cargo.toml`). One gap remains: the 16-byte GHASH
//! key H = AES_K(0) of each cipher is not wiped on x86_64 with CLMUL, because
//! `polyval` 0.6.2's CPU-autodetecting wrapper never drops the backend it
//! holds, so its `zeroize` feature only takes effect in the soft backend
//! (e.g. built with `--cfg polyval_force_soft`). H does not reveal the key,
//! but with H and one valid ciphertext under a key, tags can be forged.

mod cache;
mod error;
mod field;
mod id;
mod local;
mod mask;
mod provider;
mod pseudonym;
mod record_mac;
mod store;

pub use error::KeyError;
pub use field::{
    ciphertext_key_id, decrypt_field_into, encrypt_field_into, FieldBinding, CIPHERTEXT_PREFIX,
};
pub use id::{DataKey, KeyId, DATA_KEY_LEN};
pub use local::LocalKeyFile;
pub use mask::mask_into;
pub use provider::{KekProvider, WrappedKey};
pub use pseudonym::Pseudonymizer;
pub use record_mac::{StateRecordMac, MAC_HEADER, MAC_LEN};
pub use store::{KeyInfo, KeyStore, ReplicatedChange, UnpublishedRecord};
pub use zeroize::Zeroizing;
