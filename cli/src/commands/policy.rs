//! `gatehouse policy`: Checking Cedar policies: validate a directory, run its fixtures.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate every `*.cedar` file of DIR against the schema (and its
    /// `catalog.toml`, if present).
    Validate {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Run the request fixtures under DIR/fixtures/ALLOW and DIR/fixtures/DENY
    /// (or FIXTURES) against the policies of DIR.
    Test {
        /// The policy directory.
        dir: PathBuf,
    },
}

pub(crate) fn run_policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { dir } => {
            let report = gatehouse_policy::validate(&dir)
                .with_context(|| format!("policies in {} are not valid", dir.display()))?;
            println!("{report}");
        }
        PolicyCommand::Test { dir } => {
            let report = gatehouse_policy::test_fixtures(&dir)
                .with_context(|| format!("cannot run the fixtures of {}", dir.display()))?;
            println!("{report}");
            anyhow::ensure!(report.all_passed(), "some fixtures failed");
        }
    }
    Ok(())
}
