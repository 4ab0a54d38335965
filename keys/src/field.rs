//! Field ciphertexts: `"gh1.<base64url>"`.

use std::cell::RefCell;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use zeroize::Zeroize;

use crate::{DataKey, KeyError, KeyId};

/// Prefix of the text inside a protected field's JSON string.
pub const CIPHERTEXT_PREFIX: &str = "gh1.";

/// Format version byte, the first byte of the body. Version 1 bound topic
/// and field path only, so a ciphertext could be moved into another
/// subject's record; it is no longer read. Version 2 binds the subject too.
const VERSION: u8 = 2;
const ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// version | key id | nonce
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;
/// base64 characters that decode to exactly the version byte, the key id and
/// one nonce byte (18 bytes).
const HEAD_B64_LEN: usize = 24;
/// Smallest possible encoded body: header and tag around an empty plaintext.
const MIN_B64_LEN: usize = ((HEADER_LEN + TAG_LEN) * 4).div_ceil(3);
/// Scratch buffers above this size are given back after use.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Per-thread buffer holding AAD and the raw binary ciphertext, so the hot
    /// path allocates nothing once warm.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf);
            // The buffer held a plaintext at some point: wipe what was used.
            buf.as_mut_slice().zeroize();
            buf.clear();
            if buf.capacity() > SCRATCH_KEEP {
                buf.shrink_to(SCRATCH_KEEP);
            }
            r
        }
        // Not reachable (no re-entrancy), but never panic: use a fresh buffer.
        Err(_) => {
            let mut buf = Vec::new();
            let r = f(&mut buf);
            buf.as_mut_slice().zeroize();
            r
        }
    })
}

/// Nonces drawn per refill of the per-thread nonce pool.
const NONCES_PER_REFILL: usize = 64;

struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_REFILL],
    next: usize,
    pid: u32,
}

thread_local! {
    static NONCES: RefCell<NoncePool> = const {
        RefCell::new(NoncePool {
            bytes: [0; NONCE_LEN * NONCES_PER_REFILL],
            next: NONCES_PER_REFILL,
            pid: 0,
        })
    };
}

/// A fresh random 96-bit nonce.
///
/// Random bytes are drawn from the system generator 64 nonces at a time
/// (one call instead of one per field, which halves the cost of encrypting a
/// small field). Each nonce is handed out once and wiped; the pool is dropped
/// when the process id changes, so a forked child never reuses its parent's.
fn next_nonce() -> Result<[u8; NONCE_LEN], KeyError> {
    NONCES.with(|cell| {
        let Ok(mut pool) = cell.try_borrow_mut() else {
            let mut nonce = [0u8; NONCE_LEN];
            aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError::Random)?;
            return Ok(nonce);
        };
        let pid = std::process::id();
        if pool.next >= NONCES_PER_REFILL || pool.pid != pid {
            aws_lc_rs::rand::fill(&mut pool.bytes).map_err(|_| KeyError::Random)?;
            pool.next = 0;
            pool.pid = pid;
        }
        let start = pool.next * NONCE_LEN;
        pool.next += 1;
        let slot = pool
            .bytes
            .get_mut(start..start + NONCE_LEN)
            .ok_or(KeyError::Crypto("nonce pool"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(slot);
        slot.fill(0);
        Ok(nonce)
    })
}

/// What a field ciphertext is bound to: it decrypts only for the same
/// topic, field path and data subject. A ciphertext copied into another
/// topic, another field or another subject's record does not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldBinding<'a> {
    /// The topic of the record.
    pub topic: &'a str,
    /// The field's path in the catalog (`$.author.email`).
    pub path: &'a str,
    /// The record's data subject id.
    pub subject: &'a str,
}

/// Associated data: version | key id | then topic, path and subject, each
/// as u32 length | bytes.
fn push_aad(buf: &mut Vec<u8>, id: &KeyId, binding: &FieldBinding<'_>) -> Result<(), KeyError> {
    buf.push(VERSION);
    buf.extend_from_slice(&id.0);
    for (part, what) in [
        (binding.topic, "topic name"),
        (binding.path, "field path"),
        (binding.subject, "subject id"),
    ] {
        let len = u32::try_from(part.len()).map_err(|_| KeyError::TooLong(what))?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    Ok(())
}

/// Encrypts a field's JSON text and appends the JSON string holding the
/// ciphertext, with its double quotes, to `out`.
///
/// The plaintext is the original JSON text of the field (any JSON value).
/// The associated data binds the format version, the key id and `binding`
/// (topic, field path, subject). A random 96-bit nonce is drawn for every
/// call. On error `out` is left as it was.
pub fn encrypt_field_into(
    key: &DataKey,
    binding: &FieldBinding<'_>,
    plaintext_json: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), KeyError> {
    let nonce = next_nonce()?;
    with_scratch(|s| {
        push_aad(s, &key.id(), binding)?;
        let aad_len = s.len();
        s.reserve(HEADER_LEN + plaintext_json.len() + TAG_LEN);
        s.push(VERSION);
        s.extend_from_slice(&key.id().0);
        s.extend_from_slice(&nonce);
        s.extend_from_slice(plaintext_json);
        let (aad, raw) = s.split_at_mut(aad_len);
        let body = raw
            .get_mut(HEADER_LEN..)
            .ok_or(KeyError::Crypto("field buffer"))?;
        let tag = key
            .cipher()
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, body)
            .map_err(|_| KeyError::TooLong("field value"))?;
        s.extend_from_slice(tag.as_slice());
        let raw = s.get(aad_len..).ok_or(KeyError::Crypto("field buffer"))?;

        let enc_len =
            base64::encoded_len(raw.len(), false).ok_or(KeyError::TooLong("field value"))?;
        let start = out.len();
        out.reserve(enc_len + CIPHERTEXT_PREFIX.len() + 2);
        out.push(b'"');
        out.extend_from_slice(CIPHERTEXT_PREFIX.as_bytes());
        let b64_start = out.len();
        out.resize(b64_start + enc_len, 0);
        match out
            .get_mut(b64_start..)
            .map(|dst| URL_SAFE_NO_PAD.encode_slice(raw, dst))
        {
            Some(Ok(_)) => {
                out.push(b'"');
                Ok(())
            }
            _ => {
                out.truncate(start);
                Err(KeyError::Crypto("base64 encoding"))
            }
        }
    })
}

/// The base64 body of a token: `"gh1.<body>"` (surrounding ASCII whitespace ignored).
fn token_body(token: &[u8]) -> Result<&[u8], KeyError> {
    let t = token.trim_ascii();
    let inner = t
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .ok_or(KeyError::NotCiphertext)?;
    let body = inner
        .strip_prefix(CIPHERTEXT_PREFIX.as_bytes())
        .ok_or(KeyError::NotCiphertext)?;
    if body.len() < MIN_B64_LEN {
        return Err(KeyError::Malformed("too short"));
    }
    Ok(body)
}

/// The id of the key a field ciphertext was made under, without decrypting.
///
/// `token` is the field's JSON text, with the quotes, as found in a record.
/// Returns [`KeyError::NotCiphertext`] for any value that is not a
/// `"gh1.…"` string and [`KeyError::Malformed`] for a broken one.
pub fn ciphertext_key_id(token: &[u8]) -> Result<KeyId, KeyError> {
    let body = token_body(token)?;
    let head = body
        .get(..HEAD_B64_LEN)
        .ok_or(KeyError::Malformed("too short"))?;
    let mut raw = [0u8; 18];
    let n = URL_SAFE_NO_PAD
        .decode_slice(head, &mut raw)
        .map_err(|_| KeyError::Malformed("invalid base64"))?;
    if n != raw.len() {
        return Err(KeyError::Malformed("invalid base64"));
    }
    check_version(raw[0])?;
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&raw[1..=ID_LEN]);
    Ok(KeyId(id))
}

fn check_version(version: u8) -> Result<(), KeyError> {
    match version {
        VERSION => Ok(()),
        1 => Err(KeyError::Malformed(
            "format version 1 (not bound to a subject) is no longer read",
        )),
        _ => Err(KeyError::Malformed("unsupported format version")),
    }
}

/// Decrypts a field ciphertext and appends the original JSON text to `out`.
///
/// Fails closed: any tampering, another key, topic, field path or subject
/// gives an error, and `out` is left as it was.
pub fn decrypt_field_into(
    key: &DataKey,
    binding: &FieldBinding<'_>,
    token: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), KeyError> {
    let body = token_body(token)?;
    with_scratch(|s| {
        push_aad(s, &key.id(), binding)?;
        let aad_len = s.len();
        s.resize(aad_len + base64::decoded_len_estimate(body.len()), 0);
        let dst = s
            .get_mut(aad_len..)
            .ok_or(KeyError::Crypto("field buffer"))?;
        let n = URL_SAFE_NO_PAD
            .decode_slice(body, dst)
            .map_err(|_| KeyError::Malformed("invalid base64"))?;
        s.truncate(aad_len + n);
        if n < HEADER_LEN + TAG_LEN {
            return Err(KeyError::Malformed("too short"));
        }
        let (aad, raw) = s.split_at_mut(aad_len);
        let (header, rest) = raw.split_at_mut(HEADER_LEN);
        check_version(header[0])?;
        let mut found = [0u8; ID_LEN];
        found.copy_from_slice(&header[1..=ID_LEN]);
        let found = KeyId(found);
        if found != key.id() {
            return Err(KeyError::WrongKey {
                expected: key.id(),
                found,
            });
        }
        let nonce = Nonce::from_slice(&header[1 + ID_LEN..]);
        let split = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at_mut(split);
        key.cipher()
            .decrypt_in_place_detached(nonce, aad, ct, Tag::from_slice(tag))
            .map_err(|_| KeyError::Decrypt)?;
        out.extend_from_slice(ct);
        Ok(())
    })
}
