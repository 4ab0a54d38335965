//! `gatehouse serve`: Running the proxy in front of a Kafka-compatible cluster.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::wait_for_signal;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The proxy's TOML configuration.
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    config: PathBuf,
}

pub(crate) async fn run_serve(args: ServeArgs) -> Result<()> {
    let config = gatehouse_proxy::ProxyConfig::load(&args.config)?;
    let proxy = gatehouse_proxy::Proxy::start(config)
        .await
        .context("proxy failed to start")?;
    println!("gatehouse proxy listening on {}", proxy.local_addr());
    wait_for_signal().await?;
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    Ok(())
}
