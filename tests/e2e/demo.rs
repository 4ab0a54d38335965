//! `gatehouse demo`, as a newcomer runs it from the README: kcat, a Python
//! client and rdkafka against the embedded default.

use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse::demo::DemoAddrs;
use gatehouse_tests::clients::{kcat, run_ok, Client};
use rdkafka::consumer::Consumer;

use crate::support::{consume, consumer, produce, producer};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_kcat_python_and_rdkafka() -> Result<()> {
    gatehouse_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let demo = gatehouse::demo::start(dir.path(), DemoAddrs::local(0, 0)).await?;
    let b = demo.bootstrap().to_string();

    let listing = kcat(&["-b", &b, "-L"], None, LIMIT).await?;
    for (topic, partitions, _) in gatehouse::demo::DEMO_TOPICS {
        ensure!(
            listing.contains(&format!("topic \"{topic}\" with {partitions} partitions")),
            "kcat -L does not show {topic}: {listing}"
        );
    }

    // The README's tour: ingest produces posts keyed by author with kcat.
    let post = r#"u-000042:{"id":"p-81724","author":{"id":"u-000042","email":"jane.doe@example.com"},"text":"The new campaign is great"}"#;
    kcat(
        &["-b", &b, "-t", "social.posts", "-P", "-K:", "-z", "gzip"],
        Some(format!("{post}\n").as_bytes()),
        LIMIT,
    )
    .await?;
    let out = kcat(
        &[
            "-b",
            &b,
            "-t",
            "social.posts",
            "-C",
            "-e",
            "-q",
            "-f",
            "%k %s\n",
        ],
        None,
        LIMIT,
    )
    .await?;
    ensure!(
        out.trim() == post.replacen(':', " ", 1),
        "kcat read back: {out}"
    );

    // A Python client and rdkafka on another demo topic.
    run_ok(
        Client::Confluent,
        &[
            "produce",
            "--bootstrap",
            &b,
            "--topic",
            "support.tickets",
            "--count",
            "300",
        ],
        LIMIT,
    )
    .await?;
    let got = run_ok(
        Client::Confluent,
        &[
            "consume",
            "--bootstrap",
            &b,
            "--topic",
            "support.tickets",
            "--group",
            "support",
            "--count",
            "300",
        ],
        LIMIT,
    )
    .await?;
    ensure!(got["consumed"] == 300, "python consumed {got}");
    let p = producer(&b, &[])?;
    produce(&p, "enrich.sentiment", "labels", 0..500).await?;

    // Stop and start again on the same data: nothing is lost, the demo
    // topics are not created twice.
    demo.shutdown().await?;
    let demo = gatehouse::demo::start(dir.path(), DemoAddrs::local(0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let c = consumer(&b, "sentiment-reader", &[])?;
    c.subscribe(&["enrich.sentiment"])?;
    let rows = consume(&c, 500, LIMIT).await?;
    ensure!(rows.len() == 500);
    let out = kcat(
        &[
            "-b",
            &b,
            "-t",
            "social.posts",
            "-C",
            "-e",
            "-q",
            "-f",
            "%k\n",
        ],
        None,
        LIMIT,
    )
    .await?;
    ensure!(out.trim() == "u-000042", "post after restart: {out}");
    demo.shutdown().await?;
    Ok(())
}
