//! `gatehouse erase`: the right to erasure, asked of a running proxy's
//! admin API (`POST /api/erase`, `GET /api/erasures[/ID]`,
//! `POST /api/erasures/ID/verify`), authenticated
//! like the auditor API (HTTP Basic with a user of the proxy's credentials
//! file).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gatehouse::admin_client::{
    render_report, render_verification, render_workflow, verify_report, AdminClient,
};

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
        /// Offline: read a stopped proxy's state (its `[keys]` section).
        #[arg(long, conflicts_with = "data")]
        config: Option<PathBuf>,
        /// Offline: read the stopped demo's state (`gatehouse demo --data`).
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The signed report of subject ID's erasure, for an auditor to file
    /// (JSON to --output, text on stdout).
    Report {
        /// The subject id.
        id: String,
        /// Where to write the signed JSON report.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reads the governed topics back again now, as the workflow's
    /// verification step did (e.g. to see what compaction has removed
    /// since).
    Verify {
        /// The subject id.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Checks a signed report against the signing replica's audit key
    /// (offline: no proxy needed).
    VerifyReport {
        /// The report (JSON, as `report --output` wrote it).
        file: PathBuf,
        /// The `verifying_key.pub` of the replica that signed it (in its
        /// audit directory).
        #[arg(long)]
        verifying_key: PathBuf,
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
        Some(EraseCommand::Status {
            id,
            config,
            data,
            admin,
        }) => {
            let all = match (config, data) {
                (None, None) => admin.client()?.status(id.as_deref()).await?,
                (config, data) => offline_status(config, data, id.as_deref())?,
            };
            if all.is_empty() {
                println!("no erasure so far");
            }
            for w in &all {
                print!("{}", render_workflow(w));
            }
        }
        Some(EraseCommand::Report { id, output, admin }) => {
            let doc = admin.client()?.report(&id).await?;
            if let Some(path) = output {
                // Byte for byte: the signature covers the text as sent.
                std::fs::write(&path, &doc)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("signed report written to {}", path.display());
            }
            print!("{}", render_report(&doc));
        }
        Some(EraseCommand::Verify { id, admin }) => {
            let v = admin.client()?.verify(&id).await?;
            print!("{}", render_verification(&v));
            if v["outcome"] == "failed" {
                bail!("records of the subject are readable");
            }
        }
        Some(EraseCommand::VerifyReport {
            file,
            verifying_key,
        }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let key = std::fs::read_to_string(&verifying_key)
                .with_context(|| format!("cannot read {}", verifying_key.display()))?;
            verify_report(&text, &key)
                .with_context(|| format!("{} does not verify", file.display()))?;
            print!("{}", render_report(&text));
            println!("the signature verifies: the report is as the proxy issued it");
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

/// The workflows of a stopped proxy (or demo), read from its state.
fn offline_status(
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    id: Option<&str>,
) -> Result<Vec<serde_json::Value>> {
    let (key_file, state_dir, topic) = match (config, data) {
        (Some(config), _) => {
            let config = gatehouse_proxy::ProxyConfig::load(&config)?;
            let keys = config
                .keys
                .context("the configuration has no [keys] section: no erasure state")?;
            (keys.key_file, keys.state_dir, keys.erasure_topic)
        }
        (None, Some(data)) => {
            let (k, s) = gatehouse::keys::demo_key_paths(&data);
            (k, s, "_gatehouse.erasure".to_string())
        }
        (None, None) => bail!("say whose state: --config FILE or --data DIR"),
    };
    let workflows = gatehouse::keys::offline_erasures(&key_file, &state_dir, &topic, id)?;
    Ok(workflows.iter().map(|w| w.to_json()).collect())
}
