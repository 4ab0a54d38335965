//! `gatehouse serve`: Running the proxy in front of a Kafka-compatible cluster.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::wait_for_signal;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The proxy's TOML configuration.
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub(crate) config: PathBuf,
    /// The configuration, once read.
    #[arg(skip)]
    loaded: Option<Box<gatehouse_proxy::ProxyConfig>>,
}

impl ServeArgs {
    /// The same arguments with the configuration already read.
    pub(crate) fn with_config(self, config: gatehouse_proxy::ProxyConfig) -> Self {
        Self {
            loaded: Some(Box::new(config)),
            ..self
        }
    }
}

pub(crate) async fn run_serve(args: ServeArgs) -> Result<()> {
    let config = match args.loaded {
        Some(c) => *c,
        None => gatehouse_proxy::ProxyConfig::load(&args.config)?,
    };
    let proxy = gatehouse_proxy::Proxy::start(config)
        .await
        .context("proxy failed to start")?;
    println!("gatehouse proxy listening on {}", proxy.local_addr());
    wait_for_signal().await?;
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    Ok(())
}
