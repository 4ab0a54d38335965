//! The `gatehouse` command.
//!
//! - `gatehouse serve --config FILE`: run the proxy in front of a cluster.
//! - `gatehouse broker`: run the Kafka-compatible broker on object storage.
//! - `gatehouse demo`: the embedded default: the broker on a local data
//!   directory with the demo world's topics, and the proxy in front of it.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

mod commands;
use commands::{
    audit::*, broker::*, config::*, demo::*, erase::*, keys::*, policy::*, serve::*, users::*,
};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A governance-aware Kafka proxy and the broker it ships with"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GATEHOUSE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy in front of a Kafka-compatible cluster.
    Serve(ServeArgs),
    /// Run a broker whose data lives in object storage.
    Broker(BrokerArgs),
    /// Run the embedded default: the broker with the demo topics on a local
    /// data directory, and the proxy in front of it.
    Demo(DemoArgs),
    /// Check Cedar policies: `validate` a directory against the schema, or
    /// run its request fixtures (`test`).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check a proxy configuration (`check FILE`) with its policies,
    /// catalog and credentials file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage a SASL credentials file (PLAIN / SCRAM users and their
    /// attributes); passwords are stored only as salted SCRAM verifiers.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Field protection keys: list them, show a data subject's, rotate the
    /// key-encryption key. Works on a stopped proxy's key store.
    Keys(KeysArgs),
    /// The audit trail: query it, follow one data subject, verify the
    /// chains, export them for a SIEM.
    Audit(AuditArgs),
    /// The right to erasure: ask a running proxy to forget a data subject
    /// (`--subject ID --reason TEXT`), or how erasures stand (`status`).
    Erase(EraseArgs),
}

pub(crate) async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let json = matches!(cli.log_format, LogFormat::Json);
    // `serve` exports traces when its configuration says where to.
    let mut traces = None;
    let command = match cli.command {
        Command::Serve(args) => {
            let config = gatehouse_proxy::ProxyConfig::load(&args.config)?;
            traces = gatehouse_telemetry::Tracing::new(
                "gatehouse-proxy",
                &config.telemetry.clone().unwrap_or_default(),
            )?;
            Command::Serve(args.with_config(config))
        }
        Command::Demo(args) => {
            if let Some(t) = args.telemetry() {
                traces = gatehouse_telemetry::Tracing::new("gatehouse-proxy", &t)?;
            }
            Command::Demo(args)
        }
        other => other,
    };
    gatehouse_telemetry::init_logging(json, traces.as_ref());
    let command = match command {
        Command::Users(cmd) => return run_users(cmd),
        Command::Policy(cmd) => return run_policy(cmd),
        Command::Config(cmd) => return run_config(cmd),
        Command::Keys(args) => return run_keys(args),
        Command::Audit(args) => return run_audit(args),
        other => other,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(async {
        match command {
            Command::Serve(args) => run_serve(args).await,
            Command::Broker(args) => run_broker(args).await,
            Command::Demo(args) => run_demo(args).await,
            Command::Erase(args) => run_erase(args).await,
            Command::Users(_)
            | Command::Policy(_)
            | Command::Config(_)
            | Command::Keys(_)
            | Command::Audit(_) => Ok(()),
        }
    });
    if let Some(t) = traces {
        t.shutdown();
    }
    result
}
