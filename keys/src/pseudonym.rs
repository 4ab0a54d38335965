//! Keyed deterministic pseudonyms.

use std::fmt;

use aws_lc_rs::hmac;

use crate::{KekProvider, KeyError};

/// Label given to the provider's `mac` to derive the pseudonym secret.
const PSEUDONYM_LABEL: &[u8] = b"gatehouse-keys/pseudonym-secret/v1";
/// Token prefix.
const PREFIX: &[u8] = b"ps_";
/// base32 characters in a token (5 bits each: 100 bits).
const TOKEN_CHARS: usize = 20;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Turns field values into keyed deterministic tokens (`"ps_…"`).
///
/// The secret is derived once from the provider's [`KekProvider::mac`], which
/// does not change on KEK rotation, so every replica that uses the same
/// provider produces the same token for the same category and value, and
/// tokens stay stable across rotations. Without the secret a token cannot be
/// reversed or recomputed. Cheap to clone.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl Pseudonymizer {
    /// Derives the pseudonym secret from the provider (one `mac` call).
    pub fn new(provider: &dyn KekProvider) -> Result<Self, KeyError> {
        let secret = zeroize::Zeroizing::new(provider.mac(PSEUDONYM_LABEL)?);
        Ok(Pseudonymizer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_slice()),
        })
    }

    /// Appends the token of (`category`, `value_json`) as a JSON string, with
    /// the quotes, such as `"ps_k3j9x2m4q8w1z7v5abcd"` (`ps_` and 20 base32
    /// characters, 100 bits of HMAC-SHA256).
    ///
    /// The category is part of the MAC input (length-prefixed), so the same
    /// value in two categories gives unrelated tokens. The value is taken as
    /// bytes: `"a"` and ` "a"` give different tokens.
    pub fn token_into(&self, category: &str, value_json: &[u8], out: &mut Vec<u8>) {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Categories longer than 4 GiB do not exist; saturate rather than fail.
        let len = u32::try_from(category.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(category.as_bytes());
        ctx.update(value_json);
        let tag = ctx.sign();
        let mac = tag.as_ref();

        out.reserve(PREFIX.len() + TOKEN_CHARS + 2);
        out.push(b'"');
        out.extend_from_slice(PREFIX);
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        let mut written = 0;
        for &b in mac {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 && written < TOKEN_CHARS {
                bits -= 5;
                // Masked to 5 bits, so the index is in range.
                out.push(BASE32[((acc >> bits) & 0x1f) as usize]);
                written += 1;
            }
            acc &= (1 << bits) - 1;
            if written == TOKEN_CHARS {
                break;
            }
        }
        out.push(b'"');
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("secret", &"<redacted>")
            .finish()
    }
}
