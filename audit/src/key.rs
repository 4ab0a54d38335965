//! The Ed25519 signing key, the `verifying_key.pub` file, signed messages and the
//! signed head record.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{AuditError, Result};

/// Name of the public-key file written beside the segments.
pub const VERIFYING_KEY_FILE: &str = "verifying_key.pub";
/// Name of the signed head record written beside the segments.
pub const HEAD_FILE: &str = "head.json";

/// The Ed25519 key that signs checkpoints and head records.
///
/// Loaded from (or created as) a PKCS#8 file with mode 0600; a file that group or
/// other can read is refused. The PKCS#8 bytes read from disk are held in a
/// [`Zeroizing`] buffer only while parsing; the private key then lives inside
/// aws-lc, which cleanses it when freed on drop. `Debug` never shows it.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    path: PathBuf,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("public", &self.public_base64())
            .field("private", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// Loads the key at `path`, or creates one (mode 0600, parent directories too)
    /// if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let key_err = |reason: String| AuditError::Key {
            path: path.to_path_buf(),
            reason,
        };
        match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode();
                if mode & 0o077 != 0 {
                    return Err(key_err(format!(
                        "mode {:o} lets group or other read it; chmod 600 it",
                        mode & 0o777
                    )));
                }
                let bytes = Zeroizing::new(fs::read(path).map_err(|e| AuditError::io(path, e))?);
                let pair = Ed25519KeyPair::from_pkcs8(&bytes)
                    .map_err(|e| key_err(format!("not an Ed25519 PKCS#8 key: {e}")))?;
                Ok(SigningKey {
                    pair,
                    path: path.to_path_buf(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(|e| AuditError::io(parent, e))?;
                }
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| key_err("key generation failed".into()))?;
                let bytes = Zeroizing::new(doc.as_ref().to_vec());
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| AuditError::io(path, e))?;
                f.write_all(&bytes).map_err(|e| AuditError::io(path, e))?;
                f.sync_all().map_err(|e| AuditError::io(path, e))?;
                let pair = Ed25519KeyPair::from_pkcs8(&bytes)
                    .map_err(|e| key_err(format!("generated key rejected: {e}")))?;
                Ok(SigningKey {
                    pair,
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    /// Raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Public key in standard base64, as written to `verifying_key.pub`.
    pub fn public_base64(&self) -> String {
        B64.encode(self.public_key())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> String {
        B64.encode(self.pair.sign(msg).as_ref())
    }

    /// Signs a document of kind `kind` (e.g. `erasure-report`) for an
    /// auditor to file; [`verify_document`] checks it against the chain's
    /// `verifying_key.pub`. The signed bytes name the kind, so a document
    /// signature can never pass for a checkpoint's or another kind's.
    pub fn sign_document(&self, kind: &str, body: &[u8]) -> String {
        self.sign(&document_message(kind, body))
    }
}

fn document_message(kind: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!("gatehouse-audit document v1\n{kind}\n").into_bytes();
    m.extend_from_slice(body);
    m
}

/// Checks a signature made by [`SigningKey::sign_document`] (or
/// [`crate::AuditLog::sign_document`]) with the public key in
/// `verifying_key` (the base64 text of a chain's `verifying_key.pub`).
pub fn verify_document(
    verifying_key: &str,
    kind: &str,
    body: &[u8],
    signature: &str,
) -> Result<()> {
    let key = PublicKey::from_base64(verifying_key).ok_or_else(|| {
        AuditError::Document("the verifying key is not a base64 Ed25519 key".into())
    })?;
    if key.verify(&document_message(kind, body), signature.trim()) {
        Ok(())
    } else {
        Err(AuditError::Document(
            "the signature does not verify: the document was changed, or signed by another key"
                .into(),
        ))
    }
}

/// Bytes signed by a checkpoint (`what` = `checkpoint`) or a head record (`head`).
pub(crate) fn signed_message(
    what: &str,
    replica: &str,
    seq: u64,
    hash: &str,
    time_ms: u64,
) -> Vec<u8> {
    format!("gatehouse-audit {what} v1\n{replica}\n{seq}\n{hash}\n{time_ms}\n").into_bytes()
}

/// A parsed public key.
#[derive(Debug, Clone)]
pub(crate) struct PublicKey(Vec<u8>);

impl PublicKey {
    pub(crate) fn from_base64(s: &str) -> Option<Self> {
        let bytes = B64.decode(s.trim()).ok()?;
        (bytes.len() == 32).then_some(PublicKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn verify(&self, msg: &[u8], sig_b64: &str) -> bool {
        let Ok(sig) = B64.decode(sig_b64) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(msg, &sig)
            .is_ok()
    }
}

/// Reads `dir/verifying_key.pub`: `Ok(None)` when absent.
pub(crate) fn read_verifying_key(dir: &Path) -> Result<Option<Result<PublicKey, String>>> {
    let path = dir.join(VERIFYING_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(PublicKey::from_base64(&s).ok_or_else(|| {
            format!("{VERIFYING_KEY_FILE} is not a base64 Ed25519 key")
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

/// Writes `bytes` to `dir/name` atomically (temp file + rename), optionally fsyncing
/// the file and the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    {
        let mut f = fs::File::create(&tmp).map_err(|e| AuditError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| AuditError::io(&tmp, e))?;
        if sync {
            f.sync_all().map_err(|e| AuditError::io(&tmp, e))?;
        }
    }
    fs::rename(&tmp, &dst).map_err(|e| AuditError::io(&dst, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that created/renamed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io(dir, e))
}

/// Location of the latest checkpoint event, kept in the head record as a hint so
/// that `open` can verify from there instead of from seq 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CheckpointHint {
    pub seq: u64,
    pub hash: String,
    pub segment: u64,
    pub offset: u64,
    pub line: u64,
}

/// `head.json`: signed statement "this replica's chain reaches `seq` with `hash`".
/// Rewritten (temp + rename) after every fsync'd batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    pub replica: String,
    pub seq: u64,
    pub hash: String,
    pub time_ms: u64,
    /// Unsigned hint, checked against the chain before use.
    pub checkpoint: Option<CheckpointHint>,
    /// Base64 Ed25519 signature over `signed_message("head", replica, seq, hash, time_ms)`.
    pub signature: String,
}

impl Head {
    pub(crate) fn signature_ok(&self, key: &PublicKey) -> bool {
        key.verify(
            &signed_message("head", &self.replica, self.seq, &self.hash, self.time_ms),
            &self.signature,
        )
    }
}

/// Reads `dir/head.json`: `Ok(None)` when absent, `Ok(Some(Err))` when unreadable.
/// A live writer rewrites the head in place, so a head that does not parse is
/// read again a few times before it is called unreadable.
pub(crate) fn read_head(dir: &Path) -> Result<Option<Result<Head, String>>> {
    let path = dir.join(HEAD_FILE);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<Head>(&b) {
                Ok(h) => return Ok(Some(Ok(h))),
                Err(_) if attempts < 4 => std::thread::sleep(std::time::Duration::from_millis(2)),
                Err(e) => return Ok(Some(Err(format!("{HEAD_FILE} unreadable: {e}")))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AuditError::io(path, e)),
        }
    }
}
