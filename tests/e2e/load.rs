//! The load tool behind `bench/run.sh` measures what it says: every record
//! it reports was produced, acknowledged and read back (through the proxy),
//! its end-to-end latencies come from the records it read, the extra
//! connections produced, and the watched process's CPU and memory are read.

use anyhow::{ensure, Context, Result};
use gatehouse_tests::{TestBroker, Via};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_reports_what_it_did() -> Result<()> {
    let broker = TestBroker::start_via(Via::Proxy).await?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-load"))
        .args(["--bootstrap", &broker.addr().to_string(), "--topic", "load"])
        .args(["--messages", "3000", "--size", "300", "--values", "posts"])
        .args(["--producers", "2", "--consumers", "2", "--e2e"])
        .args(["--connections", "5", "--rate", "3000"])
        .args(["--watch-pid", &std::process::id().to_string()])
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "gatehouse-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phases: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let [produce, consume] = phases.as_slice() else {
        anyhow::bail!("expected two phases, got {phases:?}");
    };
    let n = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .with_context(|| format!("{k} in {v}"))
    };
    ensure!(produce["phase"] == "produce" && consume["phase"] == "consume");
    // Read back: the load's records and those of the extra connections.
    ensure!(n(produce, "messages")? == 3000.0);
    ensure!(
        n(consume, "messages")? == 3000.0 + n(produce, "background_acked")?,
        "{produce} {consume}"
    );
    // Every record was seen by the tailing consumers, with its latency.
    ensure!(n(produce, "e2e_messages")? == 3000.0, "{produce}");
    let (p50, p99, p999) = (
        n(produce, "e2e_ms_p50")?,
        n(produce, "e2e_ms_p99")?,
        n(produce, "e2e_ms_p999")?,
    );
    ensure!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{produce}");
    ensure!(n(produce, "latency_ms_p50")? > 0.0);
    // Paced at 3,000 msg/s: about a second, not as fast as possible.
    ensure!(n(produce, "seconds")? > 0.5, "{produce}");
    // Each extra connection produced at least once (a record a second).
    ensure!(n(produce, "background_acked")? >= 5.0, "{produce}");
    // This test process is the watched one: it served the traffic.
    ensure!(n(produce, "proxy_cpu_s")? > 0.0, "{produce}");
    ensure!(n(consume, "proxy_peak_rss_mb")? > 1.0, "{consume}");
    ensure!(n(consume, "mb_per_s")? > 0.0);
    Ok(())
}
