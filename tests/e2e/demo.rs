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
    // The demo prints ready-made client settings per principal.
    let ingest = dir
        .path()
        .join("clients/ingest.properties")
        .to_string_lossy()
        .into_owned();
    let support = dir.path().join("clients/support.properties");
    let analytics = dir
        .path()
        .join("clients/analytics.properties")
        .to_string_lossy()
        .into_owned();
    // Without credentials the proxy refuses everything but ApiVersions/SASL.
    ensure!(
        kcat(&["-b", &b, "-L", "-m", "3"], None, LIMIT)
            .await
            .is_err(),
        "the demo served an anonymous client"
    );

    let listing = kcat(&["-b", &b, "-F", &ingest, "-L"], None, LIMIT).await?;
    for (topic, partitions, _) in gatehouse::demo::DEMO_TOPICS {
        ensure!(
            listing.contains(&format!("topic \"{topic}\" with {partitions} partitions")),
            "kcat -L does not show {topic}: {listing}"
        );
    }

    // The README's tour: ingest produces posts keyed by author with kcat.
    let post = r#"u-000042:{"id":"p-81724","author":{"id":"u-000042","email":"jane.doe@example.com"},"text":"The new campaign is great"}"#;
    kcat(
        &[
            "-b",
            &b,
            "-F",
            &ingest,
            "-t",
            "social.posts",
            "-P",
            "-K:",
            "-z",
            "gzip",
        ],
        Some(format!("{post}\n").as_bytes()),
        LIMIT,
    )
    .await?;
    let out = kcat(
        &[
            "-b",
            &b,
            "-F",
            &analytics,
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

    // A Python client and rdkafka on other demo topics, with the settings
    // files' credentials.
    let mut opts: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(&support)?.lines() {
        opts.push("--option".into());
        opts.push(line.replace("sasl.mechanisms", "sasl.mechanism"));
    }
    let with = |base: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        v.extend(opts.iter().cloned());
        v
    };
    let args = with(&[
        "produce",
        "--bootstrap",
        &b,
        "--topic",
        "support.tickets",
        "--count",
        "300",
    ]);
    run_ok(
        Client::Confluent,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        LIMIT,
    )
    .await?;
    let args = with(&[
        "consume",
        "--bootstrap",
        &b,
        "--topic",
        "support.tickets",
        "--group",
        "support",
        "--count",
        "300",
    ]);
    let got = run_ok(
        Client::Confluent,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        LIMIT,
    )
    .await?;
    ensure!(got["consumed"] == 300, "python consumed {got}");
    let token = dir
        .path()
        .join("clients/analytics.jwt")
        .to_string_lossy()
        .into_owned();
    run_ok(
        Client::Confluent,
        &["metadata", "--bootstrap", &b, "--oauth-token-file", &token],
        LIMIT,
    )
    .await?;
    let creds = plain_creds(&ingest)?;
    let creds: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let p = producer(&b, &creds)?;
    produce(&p, "enrich.sentiment", "labels", 0..500).await?;

    // Stop and start again on the same data: nothing is lost, the demo
    // topics are not created twice.
    demo.shutdown().await?;
    let demo = gatehouse::demo::start(dir.path(), DemoAddrs::local(0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let creds = plain_creds(&analytics)?;
    let creds: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let c = consumer(&b, "sentiment-reader", &creds)?;
    c.subscribe(&["enrich.sentiment"])?;
    let rows = consume(&c, 500, LIMIT).await?;
    ensure!(rows.len() == 500);
    let out = kcat(
        &[
            "-b",
            &b,
            "-F",
            &analytics,
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

/// The settings file as librdkafka options, with SASL PLAIN (the `rdkafka`
/// crate's librdkafka is built without TLS, which its SCRAM needs).
fn plain_creds(path: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = if k == "sasl.mechanisms" { "PLAIN" } else { v };
            out.push((k.to_string(), v.to_string()));
        }
    }
    Ok(out)
}
