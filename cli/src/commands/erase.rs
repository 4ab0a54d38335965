//! `gatehouse erase`: the right to erasure, asked of a running proxy's
//! admin API (`POST /api/erase`, `GET /api/erasures[/ID]`), authenticated
//! like the auditor API (HTTP Basic with a user of the proxy's credentials
//! file).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gatehouse::admin_client::{render_workflow, AdminClient};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EraseArgs {
    #[command(subcommand)]
    command: Option<EraseCommand>,
    /// The data subject to erase (its id as the catalog locates it).
    #[arg(long)]
    subject: Option<String>,
    /// Why (recorded in the audit trail and the workflow).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
enum EraseCommand {
    /// How erasures stand: every workflow, or the one of subject ID.
    Status {
        /// A subject id (hashed by the proxy; shown only as its hash).
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is, and who asks.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The proxy's admin listener.
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:9180"
    )]
    url: String,
    /// A client properties file with `sasl.username` and `sasl.password`
    /// (as the demo writes for each principal).
    #[arg(long, env = "GATEHOUSE_ADMIN_PROPERTIES", conflicts_with = "user")]
    properties: Option<PathBuf>,
    /// The user, with its password in `GATEHOUSE_ADMIN_PASSWORD`.
    #[arg(long, env = "GATEHOUSE_ADMIN_USER")]
    user: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> Result<AdminClient> {
        Ok(match (&self.properties, &self.user) {
            (Some(path), _) => AdminClient::with_properties(&self.url, path)?,
            (None, Some(user)) => {
                let password = std::env::var("GATEHOUSE_ADMIN_PASSWORD")
                    .context("--user needs the password in GATEHOUSE_ADMIN_PASSWORD")?;
                AdminClient::new(&self.url, user, &password)?
            }
            (None, None) => bail!(
                "who asks? give --properties FILE, or --user NAME with GATEHOUSE_ADMIN_PASSWORD"
            ),
        })
    }
}

pub(crate) async fn run_erase(args: EraseArgs) -> Result<()> {
    match args.command {
        Some(EraseCommand::Status { id, admin }) => {
            let all = admin.client()?.status(id.as_deref()).await?;
            if all.is_empty() {
                println!("no erasure so far");
            }
            for w in &all {
                print!("{}", render_workflow(w));
            }
        }
        None => {
            let subject = args
                .subject
                .context("--subject ID is required (or: gatehouse erase status)")?;
            let reason = args
                .reason
                .context("--reason TEXT is required: it is recorded")?;
            let w = args.admin.client()?.erase(&subject, &reason).await?;
            println!("erasure requested: every replica withholds the subject from now on");
            print!("{}", render_workflow(&w));
            println!("follow it with: gatehouse erase status {subject}");
        }
    }
    Ok(())
}
