//! The local key file provider.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::id::random_key_material;
use crate::{KekProvider, KeyError, WrappedKey};

const FORMAT: u32 = 1;
const KEK_PREFIX: &str = "kek-";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Key files larger than this are not key files.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// The file as stored (JSON). Every string field is wiped on drop.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyFileRepr {
    format: u32,
    current: String,
    keks: Vec<KekRepr>,
    mac_secret: String,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct KekRepr {
    id: String,
    key: String,
}

struct Kek {
    cipher: Aes256Gcm,
}

struct State {
    current: String,
    keks: BTreeMap<String, Kek>,
    mac_key: hmac::Key,
}

/// The local key file provider, for development and single-host deployments.
///
/// The file is JSON, owner-only (mode 0600):
///
/// ```json
/// {"format":1,"current":"kek-2",
///  "keks":[{"id":"kek-1","key":"<base64>"},{"id":"kek-2","key":"<base64>"}],
///  "mac_secret":"<base64>"}
/// ```
///
/// Data keys are wrapped with AES-256-GCM under the current KEK, with a random
/// nonce and the KEK id as associated data; the wrapped bytes are
/// `nonce (12) | ciphertext | tag (16)`. The MAC secret never rotates.
pub struct LocalKeyFile {
    path: PathBuf,
    state: RwLock<State>,
}

impl LocalKeyFile {
    /// Opens the file, or creates it (mode 0600, parent dirs created) with a fresh
    /// random KEK `kek-1` and MAC secret if it does not exist.
    ///
    /// Refuses a file that is readable or writable by group or others
    /// ([`KeyError::InsecurePermissions`], which says to run `chmod 600`).
    pub fn open_or_create(path: &Path) -> Result<Self, KeyError> {
        let repr = match read_file(path)? {
            Some(repr) => repr,
            None => create_file(path)?,
        };
        let state = State::from_repr(path, &repr)?;
        tracing::debug!(path = %path.display(), current = %state.current, "opened local key file");
        Ok(LocalKeyFile {
            path: path.to_owned(),
            state: RwLock::new(state),
        })
    }

    /// Opens an existing file; fails if there is none (a reader of a
    /// stopped proxy's state must not make up a new KEK).
    pub fn open(path: &Path) -> Result<Self, KeyError> {
        let repr = read_file(path)?.ok_or_else(|| KeyError::KeyFile {
            path: path.display().to_string(),
            reason: "no such file (is this the proxy's [keys] key_file?)".to_owned(),
        })?;
        let state = State::from_repr(path, &repr)?;
        Ok(LocalKeyFile {
            path: path.to_owned(),
            state: RwLock::new(state),
        })
    }

    /// The file this provider reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The KEK ids in the file.
    pub fn kek_ids(&self) -> Vec<String> {
        self.read_state().keks.keys().cloned().collect()
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the file (another process may have rotated it).
    fn reload(&self) -> Result<(), KeyError> {
        let mut st = self.write_state();
        let repr = read_file(&self.path)?.ok_or_else(|| KeyError::KeyFile {
            path: self.path.display().to_string(),
            reason: "the file disappeared".to_owned(),
        })?;
        *st = State::from_repr(&self.path, &repr)?;
        Ok(())
    }

    fn unwrap_with(
        state: &State,
        wrapped: &WrappedKey,
    ) -> Option<Result<Zeroizing<Vec<u8>>, KeyError>> {
        let kek = state.keks.get(&wrapped.kek_id)?;
        let failed = |reason: &str| KeyError::UnwrapFailed {
            kek_id: wrapped.kek_id.clone(),
            reason: reason.to_owned(),
        };
        if wrapped.bytes.len() < NONCE_LEN + TAG_LEN {
            return Some(Err(failed("wrapped key too short")));
        }
        let (nonce, rest) = wrapped.bytes.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        Some(
            kek.cipher
                .decrypt_in_place_detached(
                    Nonce::from_slice(nonce),
                    wrapped.kek_id.as_bytes(),
                    buf.as_mut_slice(),
                    Tag::from_slice(tag),
                )
                .map(|()| buf)
                .map_err(|_| failed("authentication failed (wrong key or corrupted)")),
        )
    }
}

impl KekProvider for LocalKeyFile {
    fn current_kek_id(&self) -> String {
        self.read_state().current.clone()
    }

    fn wrap(&self, dek: &[u8]) -> Result<WrappedKey, KeyError> {
        let st = self.read_state();
        let kek = st
            .keks
            .get(&st.current)
            .ok_or_else(|| KeyError::UnknownKek {
                kek_id: st.current.clone(),
            })?;
        let mut bytes = vec![0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Random)?;
        bytes.extend_from_slice(dek);
        let (nonce, body) = bytes.split_at_mut(NONCE_LEN);
        let tag = kek
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), st.current.as_bytes(), body)
            .map_err(|_| {
                body.zeroize();
                KeyError::Crypto("key wrapping")
            })?;
        bytes.extend_from_slice(tag.as_slice());
        Ok(WrappedKey {
            kek_id: st.current.clone(),
            bytes,
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if let Some(r) = Self::unwrap_with(&self.read_state(), wrapped) {
            return r;
        }
        // Perhaps another process rotated the file since we read it.
        self.reload()?;
        Self::unwrap_with(&self.read_state(), wrapped).unwrap_or_else(|| {
            Err(KeyError::UnknownKek {
                kek_id: wrapped.kek_id.clone(),
            })
        })
    }

    fn mac(&self, data: &[u8]) -> Result<[u8; 32], KeyError> {
        let tag = hmac::sign(&self.read_state().mac_key, data);
        let mut out = [0u8; 32];
        let t = tag.as_ref();
        if t.len() != out.len() {
            return Err(KeyError::Crypto("HMAC-SHA256 length"));
        }
        out.copy_from_slice(t);
        Ok(out)
    }

    fn rotate(&self) -> Result<String, KeyError> {
        let mut st = self.write_state();
        // Start from the file, not memory, so a rotation by another process is kept.
        let mut repr = read_file(&self.path)?.ok_or_else(|| KeyError::KeyFile {
            path: self.path.display().to_string(),
            reason: "the file disappeared".to_owned(),
        })?;
        let next = repr
            .keks
            .iter()
            .filter_map(|k| k.id.strip_prefix(KEK_PREFIX)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        let id = format!("{KEK_PREFIX}{next}");
        let material = random_key_material()?;
        repr.keks.push(KekRepr {
            id: id.clone(),
            key: STANDARD.encode(material.as_slice()),
        });
        repr.current = id.clone();
        let new_state = State::from_repr(&self.path, &repr)?;
        write_file(&self.path, &repr, Install::Replace)?;
        *st = new_state;
        tracing::info!(path = %self.path.display(), kek_id = %id, "rotated local key-encryption key");
        Ok(id)
    }
}

impl fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.read_state();
        f.debug_struct("LocalKeyFile")
            .field("path", &self.path)
            .field("current", &st.current)
            .field("keks", &st.keks.keys().collect::<Vec<_>>())
            .field("key_material", &"<redacted>")
            .finish()
    }
}

impl State {
    fn from_repr(path: &Path, repr: &KeyFileRepr) -> Result<Self, KeyError> {
        let invalid = |reason: String| KeyError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        if repr.format != FORMAT {
            return Err(invalid(format!("unsupported format {}", repr.format)));
        }
        let mut keks = BTreeMap::new();
        for k in &repr.keks {
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(k.key.as_bytes())
                    .map_err(|_| invalid(format!("key {:?} is not base64", k.id)))?,
            );
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| invalid(format!("key {:?} is not 32 bytes", k.id)))?;
            if keks.insert(k.id.clone(), Kek { cipher }).is_some() {
                return Err(invalid(format!("key {:?} appears twice", k.id)));
            }
        }
        if !keks.contains_key(&repr.current) {
            return Err(invalid(format!(
                "current key {:?} is not in the file",
                repr.current
            )));
        }
        let mac_secret = Zeroizing::new(
            STANDARD
                .decode(repr.mac_secret.as_bytes())
                .map_err(|_| invalid("mac_secret is not base64".to_owned()))?,
        );
        if mac_secret.len() < 32 {
            return Err(invalid("mac_secret is shorter than 32 bytes".to_owned()));
        }
        Ok(State {
            current: repr.current.clone(),
            keks,
            mac_key: hmac::Key::new(hmac::HMAC_SHA256, &mac_secret),
        })
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> KeyError {
    move |source| KeyError::Io { context, source }
}

/// Reads and checks the file; `Ok(None)` when it does not exist.
fn read_file(path: &Path) -> Result<Option<KeyFileRepr>, KeyError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("opening key file {}", path.display()))(e)),
    };
    let meta = file.metadata().map_err(io_err(format!(
        "reading metadata of key file {}",
        path.display()
    )))?;
    check_permissions(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(KeyError::KeyFile {
            path: path.display().to_string(),
            reason: "the file is too large".to_owned(),
        });
    }
    let mut buf = Zeroizing::new(Vec::new());
    file.read_to_end(&mut buf)
        .map_err(io_err(format!("reading key file {}", path.display())))?;
    let repr: KeyFileRepr = serde_json::from_slice(&buf).map_err(|e| KeyError::KeyFile {
        path: path.display().to_string(),
        // serde_json's messages name the position and the expected token, not the content.
        reason: format!(
            "not a key file (JSON error at line {} column {})",
            e.line(),
            e.column()
        ),
    })?;
    Ok(Some(repr))
}

#[cfg(unix)]
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

fn create_file(path: &Path) -> Result<KeyFileRepr, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(io_err(format!("creating directory {}", dir.display())))?;
    }
    let kek = random_key_material()?;
    let mac = random_key_material()?;
    let repr = KeyFileRepr {
        format: FORMAT,
        current: format!("{KEK_PREFIX}1"),
        keks: vec![KekRepr {
            id: format!("{KEK_PREFIX}1"),
            key: STANDARD.encode(kek.as_slice()),
        }],
        mac_secret: STANDARD.encode(mac.as_slice()),
    };
    match write_file(path, &repr, Install::CreateNew) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created local key file with a new key-encryption key");
            Ok(repr)
        }
        // Another process created it first: use theirs.
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            read_file(path)?.ok_or_else(|| KeyError::KeyFile {
                path: path.display().to_string(),
                reason: "the file disappeared".to_owned(),
            })
        }
        Err(e) => Err(e),
    }
}

enum Install {
    /// Fail with `AlreadyExists` if the file exists.
    CreateNew,
    /// Atomically replace the file.
    Replace,
}

/// Writes a temporary 0600 file next to `path`, syncs it, and installs it.
fn write_file(path: &Path, repr: &KeyFileRepr, install: Install) -> Result<(), KeyError> {
    let json = Zeroizing::new(
        serde_json::to_vec_pretty(repr).map_err(|_| KeyError::KeyFile {
            path: path.display().to_string(),
            reason: "could not serialize".to_owned(),
        })?,
    );
    let name = path
        .file_name()
        .ok_or_else(|| KeyError::KeyFile {
            path: path.display().to_string(),
            reason: "the path has no file name".to_owned(),
        })?
        .to_string_lossy()
        .into_owned();
    let mut rnd = [0u8; 8];
    aws_lc_rs::rand::fill(&mut rnd).map_err(|_| KeyError::Random)?;
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", crate::id::to_hex(&rnd)));

    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .map_err(io_err(format!("creating {}", tmp.display())))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(io_err(format!("writing {}", tmp.display())))?;
        match install {
            Install::Replace => fs::rename(&tmp, path)
                .map_err(io_err(format!("replacing key file {}", path.display()))),
            Install::CreateNew => {
                let linked = fs::hard_link(&tmp, path)
                    .map_err(io_err(format!("creating key file {}", path.display())));
                let _ = fs::remove_file(&tmp);
                linked
            }
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            // Best effort: make the rename durable.
            let _ = d.sync_all();
        }
    }
    Ok(())
}
