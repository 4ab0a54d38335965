//! The SCRAM key schedule (RFC 5802 §3) on top of aws-lc-rs, plus small
//! helpers (randomness, base64, constant-time comparison).
//!
//! ```text
//! SaltedPassword  := Hi(Normalize(password), salt, i)      -- PBKDF2-HMAC-H
//! ClientKey       := HMAC(SaltedPassword, "Client Key")
//! StoredKey       := H(ClientKey)
//! ServerKey       := HMAC(SaltedPassword, "Server Key")
//! ClientSignature := HMAC(StoredKey, AuthMessage)
//! ClientProof     := ClientKey XOR ClientSignature
//! ServerSignature := HMAC(ServerKey, AuthMessage)
//! ```
//!
//! `Normalize` is the identity on UTF-8 bytes, as in Kafka (which does not
//! apply SASLprep either): a password is used exactly as typed.

use std::num::NonZeroU32;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2, rand};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::SaslError;

/// A heap buffer wiped when dropped.
pub(crate) type Secret = Zeroizing<Vec<u8>>;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    /// Output length in bytes; also the length of every key and proof.
    pub(crate) const fn len(self) -> usize {
        match self {
            Hash::Sha256 => digest::SHA256_OUTPUT_LEN,
            Hash::Sha512 => digest::SHA512_OUTPUT_LEN,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Hash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC-H, one block of output.
    pub(crate) fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: NonZeroU32,
    ) -> Secret {
        let mut out = Zeroizing::new(vec![0; self.len()]);
        pbkdf2::derive(self.pbkdf2(), iterations, salt, password, &mut out);
        out
    }

    /// `HMAC(key, data)`.
    pub(crate) fn mac(self, key: &[u8], data: &[u8]) -> Result<Secret, SaslError> {
        let key = hmac::Key::new(self.hmac(), key);
        let mut out = Zeroizing::new(vec![0; self.len()]);
        hmac::sign_to_buffer(&key, data, &mut out)
            .map_err(|_| SaslError::Crypto { operation: "HMAC" })?;
        Ok(out)
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Secret {
        let digest = digest::digest(self.digest(), data);
        Zeroizing::new(digest.as_ref().to_vec())
    }

    /// `ClientKey`, `StoredKey` and `ServerKey` from a salted password.
    pub(crate) fn keys(self, salted_password: &[u8]) -> Result<Keys, SaslError> {
        let client_key = self.mac(salted_password, b"Client Key")?;
        let stored_key = self.hash(&client_key);
        let server_key = self.mac(salted_password, b"Server Key")?;
        Ok(Keys {
            client_key,
            stored_key,
            server_key,
        })
    }
}

/// The keys derived from a salted password.
pub(crate) struct Keys {
    pub(crate) client_key: Secret,
    pub(crate) stored_key: Secret,
    pub(crate) server_key: Secret,
}

/// `a XOR b` for equal-length inputs (the caller checks lengths).
pub(crate) fn xor(a: &[u8], b: &[u8]) -> Secret {
    Zeroizing::new(a.iter().zip(b).map(|(x, y)| x ^ y).collect())
}

/// Constant-time equality (constant in the contents; lengths are public).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `len` bytes from the system CSPRNG.
pub(crate) fn random_bytes(len: usize) -> Result<Vec<u8>, SaslError> {
    let mut out = vec![0; len];
    rand::fill(&mut out).map_err(|_| SaslError::Crypto {
        operation: "random number generation",
    })?;
    Ok(out)
}

/// A fresh SCRAM nonce: 24 random bytes, base64 (32 printable characters,
/// never a comma).
pub(crate) fn random_nonce() -> Result<String, SaslError> {
    Ok(b64_encode(&random_bytes(24)?))
}

/// Standard, padded base64 (what SCRAM and the credentials file use).
pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard, padded base64.
pub(crate) fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use super::*;

    /// The key schedule for RFC 7677's example credential (user "user",
    /// password "pencil"). RFC 7677 only publishes the messages; the expected
    /// keys were computed independently with Python's hashlib/hmac.
    #[test]
    fn rfc7677_keys() {
        let salt = b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let iterations = NonZeroU32::new(4096).unwrap();
        let salted = Hash::Sha256.salted_password(b"pencil", &salt, iterations);
        let keys = Hash::Sha256.keys(&salted).unwrap();
        assert_eq!(
            b64_encode(&keys.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            b64_encode(&keys.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn xor_and_ct_eq() {
        assert_eq!(&*xor(&[0b1010, 0xff], &[0b0110, 0x0f]), &[0b1100, 0xf0]);
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn nonces_are_fresh_and_comma_free() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c) && c != b','));
    }
}
