//! `gatehouse users`: A SASL credentials file: users, passwords (as salted SCRAM verifiers)
//! and attributes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Add a user (or replace its password and attributes).
    Add {
        /// The credentials file (created if missing).
        #[arg(long)]
        file: PathBuf,
        /// User name.
        #[arg(long)]
        name: String,
        /// Read the password from this environment variable instead of
        /// the first line of standard input.
        #[arg(long)]
        password_env: Option<String>,
        /// A string attribute, `key=value` (repeatable), e.g. `team=platform`.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// A list attribute, `key=a,b` (repeatable), e.g. `purposes=analytics`.
        #[arg(long = "list-attr", value_name = "KEY=A,B")]
        list_attrs: Vec<String>,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Remove a user.
    Remove {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
        /// User name.
        #[arg(long)]
        name: String,
    },
    /// List users and their attributes (never secrets).
    List {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
    },
}

pub(crate) fn split_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("'{s}' is not key=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub(crate) fn run_users(cmd: UsersCommand) -> Result<()> {
    use gatehouse_sasl::{AttributeValue, CredentialStore, User};
    let load = |file: &PathBuf| -> Result<CredentialStore> {
        if file.exists() {
            Ok(CredentialStore::load(file)?)
        } else {
            Ok(CredentialStore::new())
        }
    };
    let save = |file: &PathBuf, store: &CredentialStore| -> Result<()> {
        let text = store.to_toml()?;
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        restrict(file)
    };
    match cmd {
        UsersCommand::Add {
            file,
            name,
            password_env,
            attrs,
            list_attrs,
            iterations,
        } => {
            let password = match password_env {
                Some(var) => std::env::var(&var).with_context(|| format!("${var} is not set"))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            anyhow::ensure!(!password.is_empty(), "empty password");
            let mut attributes = std::collections::BTreeMap::new();
            for a in attrs {
                let (k, v) = split_kv(&a)?;
                attributes.insert(k, AttributeValue::String(v));
            }
            for a in list_attrs {
                let (k, v) = split_kv(&a)?;
                let items = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                attributes.insert(k, AttributeValue::List(items));
            }
            let mut store = load(&file)?;
            store.remove(&name);
            store.insert(User::new_with_password(
                &name, &password, iterations, attributes,
            )?)?;
            save(&file, &store)?;
            println!("user {name} saved in {}", file.display());
        }
        UsersCommand::Remove { file, name } => {
            let mut store = load(&file)?;
            anyhow::ensure!(
                store.remove(&name).is_some(),
                "no user {name} in {}",
                file.display()
            );
            save(&file, &store)?;
            println!("user {name} removed");
        }
        UsersCommand::List { file } => {
            let store = load(&file)?;
            for u in store.users() {
                let attrs: Vec<String> = u
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.values().collect::<Vec<_>>().join(",")))
                    .collect();
                let mechs: Vec<&str> = [
                    u.scram_sha_256.as_ref().map(|_| "SCRAM-SHA-256"),
                    u.scram_sha_512.as_ref().map(|_| "SCRAM-SHA-512"),
                ]
                .into_iter()
                .flatten()
                .collect();
                println!("{}\t{}\t{}", u.name, mechs.join(","), attrs.join(" "));
            }
        }
    }
    Ok(())
}

/// Credentials files hold password verifiers: readable by the owner only.
pub(crate) fn restrict(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}
