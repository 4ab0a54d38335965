//! Key ids and data keys.

use std::fmt;
use std::str::FromStr;

use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use crate::KeyError;

/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LEN: usize = 32;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The id of a data key: 16 random bytes, shown as 32 lowercase hex characters.
///
/// Key ids are not secret: they appear in ciphertexts, on the key topic and in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// A fresh random key id.
    pub fn random() -> Result<Self, KeyError> {
        let mut b = [0u8; 16];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| KeyError::Random)?;
        Ok(KeyId(b))
    }

    /// The 32 lowercase hex characters, as bytes (no allocation).
    pub fn hex_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }

    /// Parses 32 lowercase hex characters given as bytes.
    pub fn from_hex_bytes(s: &[u8]) -> Result<Self, KeyError> {
        if s.len() != 32 {
            return Err(KeyError::InvalidKeyId);
        }
        let mut out = [0u8; 16];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Ok(KeyId(out))
    }
}

fn hex_val(c: u8) -> Result<u8, KeyError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(KeyError::InvalidKeyId),
    }
}

/// Lowercase hex of any bytes.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex_bytes();
        // Hex digits are ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        KeyId::from_hex_bytes(s.as_bytes())
    }
}

/// One subject's AES-256-GCM data key.
///
/// Holds the expanded cipher (key schedule computed once) so that encrypting a
/// field does not redo it. The raw key bytes are not kept. `Debug` shows the id only.
pub struct DataKey {
    id: KeyId,
    cipher: Aes256Gcm,
}

impl DataKey {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// A data key from its raw bytes (32). The caller should zeroize its copy.
    pub fn from_bytes(id: KeyId, key: &[u8]) -> Result<Self, KeyError> {
        if key.len() != DATA_KEY_LEN {
            return Err(KeyError::Crypto("a data key must be 32 bytes"));
        }
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| KeyError::Crypto("a data key must be 32 bytes"))?;
        Ok(DataKey { id, cipher })
    }

    /// A fresh random data key with a fresh random id (not stored anywhere).
    pub fn generate() -> Result<Self, KeyError> {
        let material = random_key_material()?;
        DataKey::from_bytes(KeyId::random()?, material.as_slice())
    }

    pub(crate) fn cipher(&self) -> &Aes256Gcm {
        &self.cipher
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// 32 random bytes, zeroized on drop.
pub(crate) fn random_key_material() -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, KeyError> {
    let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
    aws_lc_rs::rand::fill(k.as_mut_slice()).map_err(|_| KeyError::Random)?;
    Ok(k)
}
