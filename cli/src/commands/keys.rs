//! `gatehouse keys`: Field protection keys: list them, show a data subject's, rotate the
//! key-encryption key, on a stopped proxy's key store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    /// The proxy configuration (its `[keys]` section).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The demo's data directory (`gatehouse demo --data`).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Every data key: id, subject tag, wrapping KEK, created, destroyed.
    List,
    /// The keys of one data subject (by id; the store only holds its tag).
    ShowSubject {
        /// The data subject id, e.g. u-000042.
        id: String,
    },
    /// Start a new key-encryption key and re-wrap every data key under it.
    /// Data is not touched; the re-wrapped keys reach the other replicas
    /// through the key topic when the proxy next starts.
    Rotate,
}

/// Opens the key store a proxy (or the demo) uses.
pub(crate) fn open_key_store(args: &KeysArgs) -> Result<gatehouse_keys::KeyStore> {
    let (key_file, state_dir) = match (&args.config, &args.data) {
        (Some(config), _) => {
            let config = gatehouse_proxy::ProxyConfig::load(config)?;
            let keys = config
                .keys
                .context("the configuration has no [keys] section")?;
            (keys.key_file, keys.state_dir)
        }
        (None, Some(data)) => gatehouse::keys::demo_key_paths(data),
        (None, None) => anyhow::bail!("say which key store: --config FILE or --data DIR"),
    };
    Ok(gatehouse::keys::open_key_store(&key_file, &state_dir)?)
}

pub(crate) fn run_keys(args: KeysArgs) -> Result<()> {
    let store = open_key_store(&args)?;
    match args.command {
        KeysCommand::List => {
            let keys = store.list()?;
            print!("{}", gatehouse::keys::render(&keys));
            println!("{} keys", keys.len());
        }
        KeysCommand::ShowSubject { id } => {
            let keys = store.subject_keys(&id)?;
            println!("subject tag {}", store.subject_tag(&id));
            print!("{}", gatehouse::keys::render(&keys));
            if keys.is_empty() {
                println!("no keys: nothing of this subject has been encrypted here");
            }
        }
        KeysCommand::Rotate => {
            let (kek, n) = store.rotate_kek()?;
            println!("rotated to {kek}: {n} data keys re-wrapped; no data was touched");
        }
    }
    Ok(())
}
