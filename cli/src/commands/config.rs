//! `gatehouse config check FILE`: validating a proxy configuration with its
//! policies, catalog and credentials file before it is deployed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check a proxy configuration as `gatehouse serve` would read it: the
    /// TOML, the policies and catalog of `[policy] dir`, and the
    /// credentials file; each error names its file (and line).
    Check {
        /// The proxy's TOML configuration.
        file: PathBuf,
    },
}

pub(crate) fn run_config(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Check { file } => match gatehouse::config_check::check(&file) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                println!("{}: valid", file.display());
                Ok(())
            }
            Err(e) => anyhow::bail!("{e}"),
        },
    }
}
