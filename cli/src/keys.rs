//! `gatehouse keys`: the operator's view of field protection keys.
//!
//! Works on the key store of a stopped proxy (sled allows one process at a
//! time): the proxy configuration's `[keys]` section, or the demo's data
//! directory, says where it is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatehouse_keys::{KeyInfo, KeyStore, LocalKeyFile};

/// Why the key store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysCommandError {
    /// No `[keys]` section, no store yet, or a bad configuration.
    #[error("{0}")]
    Setup(String),
    /// The key store or key file refused.
    #[error(transparent)]
    Keys(#[from] gatehouse_keys::KeyError),
}

/// Where a proxy keeps its keys: (key file, state directory).
pub fn demo_key_paths(data: &Path) -> (PathBuf, PathBuf) {
    (
        data.join("keys").join("kek.toml"),
        data.join("proxy").join("keys"),
    )
}

/// Opens the key store at `state_dir` with the KEK file `key_file`.
pub fn open_key_store(key_file: &Path, state_dir: &Path) -> Result<KeyStore, KeysCommandError> {
    let (provider, db) = open_store(key_file, state_dir)?;
    let tree = db
        .open_tree("keys")
        .map_err(|e| KeysCommandError::Setup(format!("key store: {e}")))?;
    Ok(KeyStore::open(tree, Arc::new(provider), 64)?)
}

/// The KEK file and the sled database of a stopped proxy's key state.
fn open_store(
    key_file: &Path,
    state_dir: &Path,
) -> Result<(LocalKeyFile, sled::Db), KeysCommandError> {
    if !state_dir.exists() {
        return Err(KeysCommandError::Setup(format!(
            "no key store at {} (has the proxy run with field protection?)",
            state_dir.display()
        )));
    }
    let provider = LocalKeyFile::open(key_file)?;
    let db = sled::open(state_dir).map_err(|e| {
        KeysCommandError::Setup(format!(
            "cannot open the key store at {}: {e} (a running proxy holds it; stop it first)",
            state_dir.display()
        ))
    })?;
    Ok((provider, db))
}

/// The erasure workflows a stopped proxy holds (its copy of the erasure
/// topic, in the same store as its keys): what `gatehouse erase status`
/// shows without a running proxy. With `subject`, only that subject's.
pub fn offline_erasures(
    key_file: &Path,
    state_dir: &Path,
    topic: &str,
    subject: Option<&str>,
) -> Result<Vec<gatehouse_proxy::cluster::erasure::Workflow>, KeysCommandError> {
    use gatehouse_keys::{KekProvider, StateRecordMac, Zeroizing};
    let (provider, db) = open_store(key_file, state_dir)?;
    let tree = db
        .open_tree("erasure")
        .map_err(|e| KeysCommandError::Setup(format!("erasure state: {e}")))?;
    let secret = Zeroizing::new(provider.mac(gatehouse_audit::SUBJECT_SECRET_LABEL)?);
    let mac = Arc::new(StateRecordMac::new(&provider)?);
    let erasures =
        gatehouse_proxy::cluster::erasure::Erasures::open(tree, secret, topic.to_string(), mac)
            .map_err(KeysCommandError::Setup)?;
    Ok(match subject {
        Some(id) => erasures.get(&erasures.hash(id)).into_iter().collect(),
        None => erasures.list(),
    })
}

/// A table of keys, one per line, for the terminal.
pub fn render(keys: &[KeyInfo]) -> String {
    let mut out = format!(
        "{:<32}  {:<32}  {:<8}  {:<13}  state\n",
        "key id", "subject tag", "kek", "created (ms)"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<32}  {:<32}  {:<8}  {:<13}  {}\n",
            k.id,
            k.subject_tag,
            k.kek_id,
            k.created_ms,
            if k.destroyed { "destroyed" } else { "live" }
        ));
    }
    out
}
