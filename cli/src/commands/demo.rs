//! `gatehouse demo`: The embedded default: the broker with the demo world, the proxy in
//! front of it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::wait_for_signal;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Directory for the demo's data.
    #[arg(long, default_value = "gatehouse-data", env = "GATEHOUSE_DEMO_DATA")]
    data: PathBuf,
    /// The proxy's bootstrap port (what clients use); broker node N is
    /// served on the following ports (port + 1 + N).
    #[arg(long, default_value_t = 9092, env = "GATEHOUSE_DEMO_PORT")]
    port: u16,
    /// The broker's own port, for looking behind the proxy.
    #[arg(long, default_value_t = 19092, env = "GATEHOUSE_DEMO_BROKER_PORT")]
    broker_port: u16,
    /// The admin listener's port (the auditor page and API, erasure).
    #[arg(long, default_value_t = 9180, env = "GATEHOUSE_DEMO_ADMIN_PORT")]
    admin_port: u16,
    /// Brokers sharing one store (broker N on the broker port + N); the
    /// demo's partitions and group coordinators are spread over them.
    #[arg(long, default_value_t = 1, env = "GATEHOUSE_DEMO_BROKERS")]
    brokers: i32,
    /// Where the brokers keep their data (default: the demo's data
    /// directory), e.g. s3://bucket/prefix.
    #[arg(long, env = "GATEHOUSE_DEMO_STORE")]
    store: Option<String>,
    /// An object store setting, KEY=VALUE (aws_endpoint=…,
    /// aws_allow_http=true); repeatable. Credentials go in AWS_* variables.
    #[arg(long = "store-option", value_name = "KEY=VALUE", value_parser = crate::commands::broker::key_value)]
    store_options: Vec<(String, String)>,
    /// Push metrics and traces (every request) over OTLP/HTTP to this
    /// collector, e.g. http://127.0.0.1:4318.
    #[arg(long, env = "GATEHOUSE_DEMO_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
}

impl DemoArgs {
    /// The demo's `[telemetry]`: with an endpoint, every request traced
    /// and metrics pushed every 10 s.
    pub(crate) fn telemetry(&self) -> Option<gatehouse_telemetry::TelemetryConfig> {
        self.otlp_endpoint
            .as_ref()
            .map(|e| gatehouse_telemetry::TelemetryConfig {
                otlp_endpoint: Some(e.clone()),
                trace_sample_ratio: 1.0,
                metrics_interval_secs: 10,
                listen: None,
            })
    }
}

pub(crate) async fn run_demo(args: DemoArgs) -> Result<()> {
    let addrs = gatehouse::demo::DemoAddrs::local(args.port, args.broker_port, args.admin_port);
    anyhow::ensure!(
        (1..=16).contains(&args.brokers),
        "--brokers must be 1 to 16"
    );
    let cluster = gatehouse::demo::DemoCluster {
        brokers: args.brokers,
        store: args.store.clone(),
        store_options: args.store_options.clone(),
        telemetry: args.telemetry(),
    };
    let demo = gatehouse::demo::start_cluster(&args.data, addrs, &cluster)
        .await
        .context("demo failed to start")?;
    let addr = demo.bootstrap();
    let clients = args.data.join("clients");
    let ingest = clients.join("ingest.properties");
    let analytics = clients.join("analytics.properties");
    println!();
    println!(
        "Gatehouse demo is running (data in {}).",
        args.data.display()
    );
    println!();
    println!("  bootstrap.servers = {addr}            (through Gatehouse; SASL required)");
    let brokers = demo.broker_addrs();
    if brokers.len() == 1 {
        println!(
            "  broker            = {}   (behind it, for comparison)",
            demo.broker_addr()
        );
    } else {
        for (node, b) in brokers.iter().enumerate() {
            println!("  broker {node}          = {b}   (behind it; one store, partitions spread)");
        }
    }
    for (node, b) in demo.broker_admin_addrs().iter().enumerate() {
        println!(
            "  broker {node} metrics  = http://{b}/metrics   (and /healthz, /readyz; no credentials)"
        );
    }
    if let Some(admin) = demo.admin_addr() {
        println!("  admin             = http://{admin}   (auditor page and API, erasure)");
        println!("  probes            = http://{admin}/healthz, /readyz   (no credentials)");
        println!("  metrics           = http://{admin}/metrics   (Prometheus; no credentials)");
    }
    if let Some(e) = &args.otlp_endpoint {
        println!("  OTLP              = {e}   (proxy and broker metrics every 10 s, a trace of every request)");
    }
    println!();
    println!(
        "Client settings for each demo principal are in {}:",
        clients.display()
    );
    println!("  ingest     (SCRAM-SHA-512)  {}", ingest.display());
    println!("  analytics  (SCRAM-SHA-512)  {}", analytics.display());
    println!(
        "  auditor    (HTTP Basic)     {}   (the admin page and API)",
        clients.join("auditor.properties").display()
    );
    println!(
        "  privacy    (HTTP Basic)     {}   (gatehouse erase)",
        clients.join("privacy.properties").display()
    );
    println!(
        "  analytics  (OAUTHBEARER)    a signed JWT in {}",
        clients.join("analytics.jwt").display()
    );
    println!();
    println!("Try it:");
    println!("  kcat -b {addr} -F {} -L", ingest.display());
    println!(
        "  echo 'u-000042:{{\"id\":\"p-1\",\"text\":\"hello\"}}' | kcat -b {addr} -F {} -t social.posts -P -K:",
        ingest.display()
    );
    println!(
        "  kcat -b {addr} -F {} -t social.posts -C -e",
        analytics.display()
    );
    if let Some(admin) = demo.admin_addr() {
        let privacy = clients.join("privacy.properties");
        println!(
            "  gatehouse erase --url http://{admin} --properties {} --subject u-000042 --reason 'customer request'",
            privacy.display()
        );
        println!(
            "  gatehouse erase status u-000042 --url http://{admin} --properties {}   (steps, and what the read-back found)",
            privacy.display()
        );
    }
    println!();
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    demo.shutdown().await.context("demo shutdown")?;
    Ok(())
}
