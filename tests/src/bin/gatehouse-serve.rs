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
    let path = std::env::args()
        .nth(1)
        .context("usage: gatehouse-serve CONFIG")?;
    let config = gatehouse_proxy::ProxyConfig::load(std::path::Path::new(&path))?;
    // As `gatehouse serve`: traces go where `[telemetry]` says.
    let traces = gatehouse_telemetry::Tracing::new(
        "gatehouse-proxy",
        &config.telemetry.clone().unwrap_or_default(),
    )?;
    if std::env::var_os("GATEHOUSE_LOG").is_none() {
        std::env::set_var("GATEHOUSE_LOG", "warn");
    }
    gatehouse_telemetry::init_logging(false, traces.as_ref());
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
    if let Some(t) = traces {
        tokio::task::spawn_blocking(move || t.shutdown()).await?;
    }
    Ok(())
}
