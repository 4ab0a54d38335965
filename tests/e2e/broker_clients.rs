//! kcat, confluent-kafka, kafka-python and kafkajs against the broker.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse_tests::clients::{kcat, run, run_ok, Client};
use gatehouse_tests::TestBroker;
use gatehouse_tests::Via;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

fn ids(v: &Value) -> Result<Vec<u64>> {
    v.get("ids")
        .and_then(Value::as_array)
        .context("no ids in client output")?
        .iter()
        .map(|i| i.as_u64().context("id is not a number"))
        .collect()
}

/// A client creates a topic, produces with every codec it supports, reads
/// everything back in a consumer group, then reads only what is new after
/// producing more: its committed offsets were kept.
async fn round_trip(client: Client, via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    round_trip_on(client, &broker.bootstrap(), 1).await
}

/// The same against three brokers sharing one store: partitions and group
/// coordinators spread over them, the client follows leaders itself.
async fn cluster_round_trip(client: Client, via: Via) -> Result<()> {
    let cluster = gatehouse_tests::TestCluster::start(3, std::time::Duration::from_secs(2)).await?;
    cluster.formed().await?;
    let proxy = match via {
        Via::Proxy => Some(cluster.proxy().await?),
        Via::Direct => None,
    };
    let b = proxy
        .as_ref()
        .map_or_else(|| cluster.bootstrap(), |p| p.local_addr().to_string());
    round_trip_on(client, &b, 3).await
}

async fn round_trip_on(client: Client, b: &str, brokers: usize) -> Result<()> {
    let b = b.to_string();
    let topic = format!("rt-{client:?}").to_lowercase();
    run_ok(
        client,
        &[
            "create-topic",
            "--bootstrap",
            &b,
            "--topic",
            &topic,
            "--partitions",
            "3",
        ],
        LIMIT,
    )
    .await?;
    let meta = run_ok(client, &["metadata", "--bootstrap", &b], LIMIT).await?;
    ensure!(meta["topics"][&topic] == 3, "metadata: {meta}");
    ensure!(
        meta["brokers"].as_array().map(Vec::len) == Some(brokers),
        "metadata: {meta}"
    );

    let per = 500u64;
    let mut produced = 0u64;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let start = produced.to_string();
        let o = run(
            client,
            &[
                "produce",
                "--bootstrap",
                &b,
                "--topic",
                &topic,
                "--count",
                &per.to_string(),
                "--start",
                &start,
                "--compression",
                codec,
                "--idempotent",
            ],
            LIMIT,
        )
        .await?;
        if o.code == 3 {
            // The client has no codec for this one (kafkajs without plugins).
            continue;
        }
        ensure!(
            o.code == 0,
            "{client:?} produce {codec}: {}\n{}",
            o.json,
            o.stderr
        );
        produced += per;
    }
    ensure!(
        produced >= 2 * per,
        "{client:?} produced with fewer than two codecs"
    );

    let group = format!("{topic}-group");
    let got = run_ok(
        client,
        &[
            "consume",
            "--bootstrap",
            &b,
            "--topic",
            &topic,
            "--group",
            &group,
            "--count",
            &produced.to_string(),
        ],
        LIMIT,
    )
    .await?;
    ensure!(got["keys_ok"] == true, "keys: {got}");
    let seen: BTreeSet<u64> = ids(&got)?.into_iter().collect();
    ensure!(
        seen.len() as u64 == produced && seen.iter().copied().eq(0..produced),
        "{client:?} consumed {} distinct of {produced}",
        seen.len()
    );

    run_ok(
        client,
        &[
            "produce",
            "--bootstrap",
            &b,
            "--topic",
            &topic,
            "--count",
            "50",
            "--start",
            &produced.to_string(),
        ],
        LIMIT,
    )
    .await?;
    let more = run_ok(
        client,
        &[
            "consume",
            "--bootstrap",
            &b,
            "--topic",
            &topic,
            "--group",
            &group,
            "--count",
            "50",
        ],
        LIMIT,
    )
    .await?;
    let new = ids(&more)?;
    ensure!(
        new.len() == 50 && new.iter().all(|i| *i >= produced),
        "resumed consumer saw old messages: {new:?}"
    );

    run_ok(
        client,
        &["delete-topic", "--bootstrap", &b, "--topic", &topic],
        LIMIT,
    )
    .await?;
    let meta = run_ok(client, &["metadata", "--bootstrap", &b], LIMIT).await?;
    ensure!(
        meta["topics"].get(&topic).is_none(),
        "topic still listed: {meta}"
    );
    Ok(())
}

async fn confluent_kafka_on_a_cluster(via: Via) -> Result<()> {
    cluster_round_trip(Client::Confluent, via).await
}

async fn kafka_python_on_a_cluster(via: Via) -> Result<()> {
    cluster_round_trip(Client::KafkaPython, via).await
}

async fn kafkajs_on_a_cluster(via: Via) -> Result<()> {
    cluster_round_trip(Client::KafkaJs, via).await
}

async fn confluent_kafka_round_trip(via: Via) -> Result<()> {
    round_trip(Client::Confluent, via).await
}

async fn kafka_python_round_trip(via: Via) -> Result<()> {
    round_trip(Client::KafkaPython, via).await
}

async fn kafkajs_round_trip(via: Via) -> Result<()> {
    round_trip(Client::KafkaJs, via).await
}

async fn kcat_lists_produces_and_consumes(via: Via) -> Result<()> {
    let broker = TestBroker::start_via_with(via, |c| {
        c.auto_create_topics = true;
        c.default_partitions = 3;
    })
    .await?;
    let b = broker.bootstrap();
    let lines: String = (0..300).map(|i| format!("k{i}:value {i}\n")).collect();
    kcat(
        &["-b", &b, "-t", "kc", "-P", "-K:", "-z", "lz4"],
        Some(lines.as_bytes()),
        LIMIT,
    )
    .await?;
    let listing = kcat(&["-b", &b, "-L"], None, LIMIT).await?;
    ensure!(listing.contains("1 brokers"), "kcat -L: {listing}");
    ensure!(
        listing.contains("topic \"kc\" with 3 partitions"),
        "kcat -L: {listing}"
    );
    let out = kcat(
        &["-b", &b, "-t", "kc", "-C", "-e", "-q", "-f", "%k=%s\n"],
        None,
        LIMIT,
    )
    .await?;
    let got: BTreeSet<&str> = out.lines().collect();
    let want: BTreeSet<String> = (0..300).map(|i| format!("k{i}=value {i}")).collect();
    ensure!(
        got.len() == 300 && want.iter().all(|w| got.contains(w.as_str())),
        "kcat consumed {} lines",
        got.len()
    );
    // Offsets by query: the three partitions' ends add up to 300.
    let ends = kcat(
        &[
            "-b", &b, "-Q", "-t", "kc:0:-1", "-t", "kc:1:-1", "-t", "kc:2:-1",
        ],
        None,
        LIMIT,
    )
    .await?;
    let total: i64 = ends
        .lines()
        .filter_map(|l| l.rsplit("offset ").next()?.trim().parse::<i64>().ok())
        .sum();
    ensure!(total == 300, "kcat -Q: {ends}");
    Ok(())
}

direct_and_proxied!(
    confluent_kafka_round_trip,
    kafka_python_round_trip,
    kafkajs_round_trip,
    kcat_lists_produces_and_consumes,
    confluent_kafka_on_a_cluster,
    kafka_python_on_a_cluster,
    kafkajs_on_a_cluster,
);
