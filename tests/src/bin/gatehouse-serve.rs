//! gatehouse-serve: the proxy in a process of its own, for the tests that
//! crash it (`GATEHOUSE_FAULT`) or kill it and start it again. It does what
//! `gatehouse serve --config FILE` does, and prints the addresses the tests
//! need (the listeners bind port 0):
//!
//! ```text
//! gatehouse-serve proxy.toml
//! listening 127.0.0.1:41234 admin 127.0.0.1:41235
//! ```

use anyhow::{Context, Result};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let path = std::env::args()
        .nth(1)
        .context("usage: gatehouse-serve CONFIG")?;
    let config = gatehouse_proxy::ProxyConfig::load(std::path::Path::new(&path))?;
    let proxy = gatehouse_proxy::Proxy::start(config)
        .await
        .context("proxy failed to start")?;
    println!(
        "listening {} admin {}",
        proxy.local_addr(),
        proxy
            .admin_addr()
            .map_or_else(|| "-".to_string(), |a| a.to_string())
    );
    tokio::signal::ctrl_c().await?;
    proxy.shutdown().await;
    Ok(())
}
