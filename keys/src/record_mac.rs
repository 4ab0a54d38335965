//! Authenticated records on Gatehouse's internal state topics.
//!
//! Internal topics (the key topic `_gatehouse.keys`, later the erasure
//! topic) are written by proxies and followed by every proxy replica. Any
//! client that may produce to the cluster could write to them too, so a
//! replica applies only records that carry a MAC that only holders of the
//! key provider can compute: HMAC-SHA256 under a secret derived from the
//! provider's [`KekProvider::mac`] with the label
//! `gatehouse-keys/state-record-mac/v1` (like the subject-tag secret, it
//! never changes with KEK rotation).
//!
//! The MAC covers, unambiguously encoded:
//!
//! ```text
//! "gatehouse state record v1" | u32be len | topic | key | value
//! ```
//!
//! where `key` and `value` are each `0x00` for null, or `0x01 | u32be len |
//! bytes`. The topic is bound so a record cannot be moved from one internal
//! topic to another; a null value (a tombstone) is authenticated as such.
//! The 32-byte tag travels in the record header [`MAC_HEADER`], so a
//! tombstone's value stays null for compaction.
//!
//! What the MAC does not cover: the record's position. A record captured
//! from the topic verifies again if it is written again (a replay); callers
//! must make applying a record idempotent and never let an old record undo
//! a later one (the key store never brings a destroyed key back).

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::{KekProvider, KeyError};

/// The record header that carries the MAC (32 raw bytes).
pub const MAC_HEADER: &str = "gatehouse-mac";
/// Length of the MAC in bytes (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// Label given to the provider's `mac` to derive the record MAC secret.
const SECRET_LABEL: &[u8] = b"gatehouse-keys/state-record-mac/v1";
/// Domain separation inside the MAC input.
const DOMAIN: &[u8] = b"gatehouse state record v1";

/// Signs and verifies records of internal state topics. Cheap to share
/// (`Arc`); holds the derived secret only inside the HMAC key.
pub struct StateRecordMac {
    key: hmac::Key,
}

impl StateRecordMac {
    /// Derives the record MAC secret from the provider (one `mac` call).
    /// Every replica that uses the same provider derives the same secret.
    pub fn new(provider: &dyn KekProvider) -> Result<Self, KeyError> {
        let secret = Zeroizing::new(provider.mac(SECRET_LABEL)?);
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_slice()),
        })
    }

    fn context(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<hmac::Context, KeyError> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(DOMAIN);
        let topic_len = u32::try_from(topic.len()).map_err(|_| KeyError::TooLong("topic"))?;
        ctx.update(&topic_len.to_be_bytes());
        ctx.update(topic.as_bytes());
        for (part, what) in [(key, "record key"), (value, "record value")] {
            match part {
                None => ctx.update(&[0]),
                Some(bytes) => {
                    let len = u32::try_from(bytes.len()).map_err(|_| KeyError::TooLong(what))?;
                    ctx.update(&[1]);
                    ctx.update(&len.to_be_bytes());
                    ctx.update(bytes);
                }
            }
        }
        Ok(ctx)
    }

    /// The MAC of a record of `topic` (`None` key or value: null).
    pub fn sign(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<[u8; MAC_LEN], KeyError> {
        let tag = self.context(topic, key, value)?.sign();
        let mut out = [0u8; MAC_LEN];
        let t = tag.as_ref();
        if t.len() != MAC_LEN {
            return Err(KeyError::Crypto("HMAC-SHA256 length"));
        }
        out.copy_from_slice(t);
        Ok(out)
    }

    /// Checks `mac` (the value of the [`MAC_HEADER`] header, `None` when the
    /// record has none) against the record, in constant time.
    /// [`KeyError::Unauthenticated`] says why a record does not verify.
    pub fn verify(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        mac: Option<&[u8]>,
    ) -> Result<(), KeyError> {
        let mac = mac.ok_or(KeyError::Unauthenticated("no record MAC"))?;
        if mac.len() != MAC_LEN {
            return Err(KeyError::Unauthenticated("record MAC has the wrong length"));
        }
        let expected = self.sign(topic, key, value)?;
        if constant_time_eq(&expected, mac) {
            Ok(())
        } else {
            Err(KeyError::Unauthenticated("record MAC does not verify"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl fmt::Debug for StateRecordMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateRecordMac")
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalKeyFile;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn mac_from(dir: &tempfile::TempDir, name: &str) -> Result<StateRecordMac, KeyError> {
        let provider = LocalKeyFile::open_or_create(&dir.path().join(name))?;
        StateRecordMac::new(&provider)
    }

    const TOPIC: &str = "_gatehouse.keys";
    const KEY: &[u8] = b"00112233445566778899aabbccddeeff";
    const VALUE: &[u8] = br#"{"v":1,"destroyed":true}"#;

    fn unauthenticated(r: Result<(), KeyError>) -> bool {
        matches!(r, Err(KeyError::Unauthenticated(_)))
    }

    #[test]
    fn a_signed_record_verifies_under_the_same_provider_only() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mac = mac_from(&dir, "a.json")?;
        let tag = mac.sign(TOPIC, Some(KEY), Some(VALUE))?;
        mac.verify(TOPIC, Some(KEY), Some(VALUE), Some(&tag))?;
        // Another replica with the same key file derives the same secret.
        let again = mac_from(&dir, "a.json")?;
        again.verify(TOPIC, Some(KEY), Some(VALUE), Some(&tag))?;
        // Another key provider (another key file): rejected.
        let other = mac_from(&dir, "b.json")?;
        assert!(unauthenticated(other.verify(
            TOPIC,
            Some(KEY),
            Some(VALUE),
            Some(&tag)
        )));
        Ok(())
    }

    #[test]
    fn the_topic_key_and_value_are_bound() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mac = mac_from(&dir, "a.json")?;
        let tag = mac.sign(TOPIC, Some(KEY), Some(VALUE))?;
        // Moved to another internal topic.
        assert!(unauthenticated(mac.verify(
            "_gatehouse.erasure",
            Some(KEY),
            Some(VALUE),
            Some(&tag)
        )));
        // Under another record key.
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(b"ffffffffffffffffffffffffffffffff"),
            Some(VALUE),
            Some(&tag)
        )));
        // A tampered value.
        let mut tampered = VALUE.to_vec();
        tampered[5] ^= 1;
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            Some(&tampered),
            Some(&tag)
        )));
        // A tampered MAC, a short one, none at all.
        let mut bad = tag;
        bad[0] ^= 0x80;
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            Some(VALUE),
            Some(&bad)
        )));
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            Some(VALUE),
            Some(&tag[..16])
        )));
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            Some(VALUE),
            None
        )));
        // Boundaries cannot shift between topic, key and value.
        let split = mac.sign("ab", Some(b"c"), Some(b""))?;
        assert!(unauthenticated(mac.verify(
            "a",
            Some(b"bc"),
            Some(b""),
            Some(&split)
        )));
        Ok(())
    }

    #[test]
    fn tombstones_are_authenticated_as_tombstones() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mac = mac_from(&dir, "a.json")?;
        let tomb = mac.sign(TOPIC, Some(KEY), None)?;
        mac.verify(TOPIC, Some(KEY), None, Some(&tomb))?;
        // A tombstone is not an empty value, nor the other way round.
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            Some(b""),
            Some(&tomb)
        )));
        let empty = mac.sign(TOPIC, Some(KEY), Some(b""))?;
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            None,
            Some(&empty)
        )));
        // A record's MAC does not make its tombstone valid.
        let live = mac.sign(TOPIC, Some(KEY), Some(VALUE))?;
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(KEY),
            None,
            Some(&live)
        )));
        // Nor a tombstone under another key.
        assert!(unauthenticated(mac.verify(
            TOPIC,
            Some(b"ffffffffffffffffffffffffffffffff"),
            None,
            Some(&tomb)
        )));
        Ok(())
    }

    #[test]
    fn debug_shows_no_secret() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mac = mac_from(&dir, "a.json")?;
        assert_eq!(
            format!("{mac:?}"),
            r#"StateRecordMac { key: "<redacted>" }"#
        );
        Ok(())
    }
}
