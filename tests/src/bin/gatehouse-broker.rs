//! gatehouse-broker: a broker in a process of its own, for the tests that
//! pause it (SIGSTOP), kill it or stop it (SIGTERM). It does what
//! `gatehouse broker` does (hands its partitions over on SIGTERM, exits
//! with status 3 when another broker took it over) and prints the address
//! it listens on (port 0 binds a free one):
//!
//! ```text
//! gatehouse-broker NODE_ID DATA LEASE_MS [LISTEN] [--admin-addr=HOST:PORT] [KEY=VALUE…]
//! listening 127.0.0.1:41234
//! admin 127.0.0.1:41235
//! ```
//!
//! With `--admin-addr`, it serves `/metrics`, `/healthz` and `/readyz`
//! there and prints the address on a second line.

use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_broker::{Broker, BrokerConfig};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: gatehouse-broker NODE_ID DATA LEASE_MS [LISTEN] [--admin-addr=HOST:PORT] [KEY=VALUE…]";
    let node_id: i32 = args.get(1).context(usage)?.parse()?;
    let data = args.get(2).context(usage)?.clone();
    let lease_ms: u64 = args.get(3).context(usage)?.parse()?;
    let listen = args
        .get(4)
        .map_or(Ok("127.0.0.1:0".parse()?), |a| a.parse())?;
    let admin_listen = args
        .iter()
        .skip(5)
        .find_map(|a| a.strip_prefix("--admin-addr="))
        .map(str::parse)
        .transpose()?;
    let store_options = args
        .iter()
        .skip(5)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let broker = Broker::start(BrokerConfig {
        node_id,
        listen,
        data,
        store_options,
        lease: Duration::from_millis(lease_ms),
        initial_rebalance_delay: Duration::from_millis(100),
        admin_listen,
        ..BrokerConfig::default()
    })
    .await
    .context("broker failed to start")?;
    println!("listening {}", broker.local_addr());
    if let Some(admin) = broker.admin_addr() {
        println!("admin {admin}");
    }
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => broker.shutdown().await?,
        () = broker.fenced() => {
            eprintln!("gatehouse-broker: taken over by another broker");
            drop(broker);
            std::process::exit(3);
        }
    }
    Ok(())
}
