//! `gatehouse broker`: Running a broker whose data lives in object storage.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use gatehouse_broker::{Broker, BrokerConfig};

use crate::wait_for_signal;

#[derive(Debug, Args)]
pub(crate) struct BrokerArgs {
    /// Address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:9092",
        env = "GATEHOUSE_BROKER_LISTEN"
    )]
    listen: SocketAddr,
    /// Host name advertised to clients (default: the listen address).
    #[arg(long, env = "GATEHOUSE_BROKER_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Where data lives: a directory, file:///path, or s3://bucket/prefix
    /// (credentials and endpoint from AWS_* variables).
    #[arg(
        long,
        default_value = "gatehouse-data/broker",
        env = "GATEHOUSE_BROKER_DATA"
    )]
    data: String,
    /// This broker's node id.
    #[arg(long, default_value_t = 0, env = "GATEHOUSE_BROKER_NODE_ID")]
    node_id: i32,
    /// Create topics on first use (metadata requests for unknown topics).
    #[arg(long, env = "GATEHOUSE_BROKER_AUTO_CREATE_TOPICS")]
    auto_create_topics: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1, env = "GATEHOUSE_BROKER_DEFAULT_PARTITIONS")]
    default_partitions: i32,
    /// How long produce requests are gathered into one commit object (ms).
    #[arg(long, default_value_t = 2, env = "GATEHOUSE_BROKER_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64,
    /// How often compaction of cleanup.policy=compact topics runs (ms).
    #[arg(
        long,
        default_value_t = 15_000,
        env = "GATEHOUSE_BROKER_COMPACTION_INTERVAL_MS"
    )]
    compaction_interval_ms: u64,
    /// Skip fsync of local data files (faster, loses data on power failure).
    #[arg(long, env = "GATEHOUSE_BROKER_NO_FSYNC")]
    no_fsync: bool,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 100 << 20, env = "GATEHOUSE_BROKER_MAX_FRAME_BYTES")]
    max_frame_bytes: usize,
    /// Memory for recently written data, in MiB.
    #[arg(long, default_value_t = 256, env = "GATEHOUSE_BROKER_CACHE_MB")]
    cache_mb: usize,
    /// Require SASL (PLAIN, SCRAM-SHA-256/512) with the users of this
    /// credentials file (see `gatehouse users`).
    #[arg(long, env = "GATEHOUSE_BROKER_SASL_CREDENTIALS")]
    sasl_credentials: Option<PathBuf>,
    /// An object store setting, `KEY=VALUE` as `object_store` names it
    /// (`aws_endpoint=http://127.0.0.1:9000`, `aws_allow_http=true`, …);
    /// repeatable, and ahead of the `AWS_*` environment variables.
    /// Credentials belong in the AWS_* variables, not here (a command
    /// line shows in the process list).
    #[arg(long = "store-option", value_name = "KEY=VALUE", value_parser = key_value)]
    store_options: Vec<(String, String)>,
    /// How long this broker's lease in the store lasts (ms): a broker not
    /// heard from for this long is gone, and its partitions move to the
    /// others. Every broker of a cluster should use the same value.
    #[arg(long, default_value_t = 10_000, env = "GATEHOUSE_BROKER_LEASE_MS")]
    lease_ms: u64,
    /// Serve GET /metrics (Prometheus), /healthz and /readyz over plain
    /// HTTP on this address (off by default; no credentials asked, so bind
    /// it to a loopback or management address).
    #[arg(long, value_name = "HOST:PORT", env = "GATEHOUSE_BROKER_ADMIN_ADDR")]
    admin_addr: Option<SocketAddr>,
    /// Push the broker's metrics over OTLP/HTTP to this collector (e.g.
    /// http://otel-collector:4318), every --otlp-interval-secs.
    #[arg(long, value_name = "URL", env = "GATEHOUSE_BROKER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// How often metrics are pushed over OTLP.
    #[arg(
        long,
        default_value_t = 30,
        env = "GATEHOUSE_BROKER_OTLP_INTERVAL_SECS"
    )]
    otlp_interval_secs: u64,
}

pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

impl BrokerArgs {
    fn config(&self) -> BrokerConfig {
        BrokerConfig {
            node_id: self.node_id,
            listen: self.listen,
            advertised_host: self.advertised_host.clone(),
            data: self.data.clone(),
            fsync: !self.no_fsync,
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            compaction_interval: Duration::from_millis(self.compaction_interval_ms.max(1)),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_frame_bytes: self.max_frame_bytes,
            cache_bytes: self.cache_mb << 20,
            sasl_credentials: self.sasl_credentials.clone(),
            store_options: self.store_options.clone(),
            lease: Duration::from_millis(self.lease_ms.max(300)),
            admin_listen: self.admin_addr,
            telemetry: gatehouse_telemetry::TelemetryConfig {
                otlp_endpoint: self.otlp_endpoint.clone(),
                metrics_interval_secs: self.otlp_interval_secs,
                ..Default::default()
            },
            ..BrokerConfig::default()
        }
    }
}

pub(crate) async fn run_broker(args: BrokerArgs) -> Result<()> {
    let broker = Broker::start(args.config())
        .await
        .context("broker failed to start")?;
    println!("gatehouse broker listening on {}", broker.local_addr());
    if let Some(admin) = broker.admin_addr() {
        println!(
            "gatehouse broker metrics and probes on http://{admin} (/metrics, /healthz, /readyz)"
        );
    }
    tokio::select! {
        signal = wait_for_signal() => signal?,
        () = broker.fenced() => {
            // Another broker took this one's partitions over (it was
            // paused past its lease): start again from the store.
            eprintln!("gatehouse broker: taken over by another broker; exiting with status 3 to be restarted");
            drop(broker);
            std::process::exit(FENCED_EXIT);
        }
    }
    tracing::info!("shutting down (handing partitions to the other brokers first)");
    broker.shutdown().await.context("broker shutdown")?;
    Ok(())
}

/// The exit status of a broker another broker took over: a supervisor
/// starts it again.
const FENCED_EXIT: i32 = 3;
