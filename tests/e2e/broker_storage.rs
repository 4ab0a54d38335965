//! Storage: restarts from snapshots and logs, retention, object clean-up.

use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse_tests::Via;
use gatehouse_tests::{record_batch, RawClient, TestBroker};
use kafka_protocol::records::Compression;
use rdkafka::consumer::Consumer;

use crate::broker_protocol::{create, produce_one};
use crate::support::{consume, consumer, create_topic, end_offsets, produce, producer};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Topics, data, configs and offsets come back after a clean restart (from
/// the final snapshot) and after a crash (by replaying the commit log).
async fn state_survives_clean_restart_and_crash(via: Via) -> Result<()> {
    let mut broker = TestBroker::start_via(via).await?;
    let b = broker.bootstrap();
    create_topic(&b, "keep", 2, &[("retention.ms", "86400000")]).await?;
    let p = producer(&b, &[("compression.type", "zstd")])?;
    produce(&p, "keep", "a", 0..500).await?;
    broker.restart().await?;
    produce(&p, "keep", "b", 500..1_000).await?;
    broker.crash_and_restart().await?;

    let c = consumer(&b, "reader", &[])?;
    let ends = end_offsets(&c, "keep", 2)?;
    ensure!(
        ends.values().map(|(lo, hi)| hi - lo).sum::<i64>() == 1_000,
        "{ends:?}"
    );
    c.subscribe(&["keep"])?;
    let got = consume(&c, 1_000, Duration::from_secs(30)).await?;
    let mut ids: Vec<usize> = got.iter().map(|(i, ..)| *i).collect();
    ids.sort_unstable();
    ensure!(ids == (0..1_000).collect::<Vec<_>>());
    Ok(())
}

/// retention.ms moves the log start past old batches, and commit objects
/// nobody needs any more are deleted from the store.
async fn retention_trims_old_data_and_deletes_objects(via: Via) -> Result<()> {
    let broker = TestBroker::start_via_with(via, |c| c.snapshot_every = 1).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "short", 1, &[("retention.ms", "60000")]).await?;
    let old = now_ms() - 3_600_000;
    for i in 0..3 {
        let b = record_batch(-1, -1, -1, 10, old + i, Compression::None)?;
        ensure!(produce_one(&mut c, "short", 0, b).await?.0 == 0);
    }
    let fresh = record_batch(-1, -1, -1, 5, now_ms(), Compression::None)?;
    ensure!(produce_one(&mut c, "short", 0, fresh).await? == (0, 30));

    let store = std::path::PathBuf::from(broker_data(&broker));
    let count = || {
        std::fs::read_dir(store.join("wal"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = count();
    broker.broker()?.housekeep().await?;
    broker.broker()?.housekeep().await?;
    let after = count();
    ensure!(after < before, "commit objects {before} -> {after}");

    let b = broker.bootstrap();
    let cons = consumer(&b, "late", &[])?;
    let ends = end_offsets(&cons, "short", 1)?;
    ensure!(
        ends[&0] == (30, 35),
        "watermarks after retention: {:?}",
        ends[&0]
    );
    Ok(())
}

fn broker_data(broker: &TestBroker) -> String {
    broker.data_dir()
}

/// The broker on an S3-compatible store: data survives a crash, and a
/// second broker writing to the same store fences the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_round_trip_and_fencing() -> Result<()> {
    let s3 = gatehouse_tests::S3Server::start("gatehouse-test").await?;
    let options = s3.options();
    let mut broker = TestBroker::start_with(|c| {
        c.data = "s3://gatehouse-test/cluster-a".into();
        c.store_options = options.clone();
    })
    .await?;
    let b = broker.bootstrap();
    create_topic(&b, "remote", 2, &[]).await?;
    let p = producer(&b, &[("compression.type", "lz4")])?;
    produce(&p, "remote", "s3", 0..2_000).await?;
    broker.crash_and_restart().await?;
    let c = consumer(&b, "s3-reader", &[])?;
    c.subscribe(&["remote"])?;
    let got = consume(&c, 2_000, Duration::from_secs(30)).await?;
    ensure!(got.len() == 2_000);

    // A second broker on the same store takes over the log; the first can
    // no longer commit anything.
    let second = TestBroker::start_with(|c| {
        c.data = "s3://gatehouse-test/cluster-a".into();
        c.store_options = options.clone();
    })
    .await?;
    let mut to_second = RawClient::connect(second.addr()).await?;
    let b1 = record_batch(-1, -1, -1, 3, now_ms(), Compression::None)?;
    ensure!(
        produce_one(&mut to_second, "remote", 0, b1.clone())
            .await?
            .0
            == 0
    );
    let mut to_first = RawClient::connect(broker.addr()).await?;
    let (code, _) = produce_one(&mut to_first, "remote", 0, b1).await?;
    ensure!(
        code == 6,
        "the fenced broker answered {code}, not NOT_LEADER_OR_FOLLOWER"
    );
    drop(second);
    drop(broker);
    s3.stop().await
}

direct_and_proxied!(
    state_survives_clean_restart_and_crash,
    retention_trims_old_data_and_deletes_objects
);
