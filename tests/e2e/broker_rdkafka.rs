//! librdkafka (through the `rdkafka` crate) against the broker.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse_tests::TestBroker;
use gatehouse_tests::Via;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::Message;

use crate::support::{consume, consumer, create_topic, end_offsets, produce, producer};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: usize = 10_000;

/// The scenario: 3 partitions, 10,000 keyed messages per codec from
/// an idempotent producer, a consumer group that commits half way, a broker
/// restart, and a second member that resumes exactly where the first
/// stopped: nothing lost, nothing twice, end offsets equal to the count.
async fn codecs_groups_commit_restart_resume(via: Via) -> Result<()> {
    let mut broker = TestBroker::start_via(via).await?;
    let b = broker.bootstrap();
    create_topic(&b, "orders", 3, &[]).await?;

    for (n, codec) in CODECS.iter().enumerate() {
        let p = producer(
            &b,
            &[
                ("compression.type", codec),
                ("enable.idempotence", "true"),
                ("linger.ms", "5"),
            ],
        )?;
        produce(&p, "orders", codec, n * PER_CODEC..(n + 1) * PER_CODEC).await?;
    }
    let total = CODECS.len() * PER_CODEC;

    let c = consumer(&b, "billing", &[])?;
    let ends = end_offsets(&c, "orders", 3)?;
    let sum: i64 = ends.values().map(|(lo, hi)| hi - lo).sum();
    ensure!(
        sum == total as i64,
        "end offsets add up to {sum}, produced {total}"
    );

    c.subscribe(&["orders"])?;
    let first = consume(&c, total / 2, Duration::from_secs(60)).await?;
    c.commit_consumer_state(CommitMode::Sync)?;
    drop(c);

    broker.restart().await?;

    let c = consumer(&b, "billing", &[])?;
    c.subscribe(&["orders"])?;
    let rest = consume(&c, total - first.len(), Duration::from_secs(60)).await?;
    let mut seen = BTreeSet::new();
    for (i, ..) in first.iter().chain(&rest) {
        ensure!(seen.insert(*i), "message {i} delivered twice");
    }
    ensure!(
        seen.len() == total,
        "got {} distinct messages of {total}",
        seen.len()
    );
    ensure!(seen.iter().copied().eq(0..total), "messages are missing");
    // Nothing more is waiting: the group is at the end.
    let extra = consume(&c, 1, Duration::from_millis(1500)).await;
    ensure!(
        extra.is_err(),
        "an extra message arrived after all were consumed"
    );
    Ok(())
}

/// Two members of one group split the partitions between them and each
/// message is delivered to exactly one of them.
async fn two_members_share_partitions(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let b = broker.bootstrap();
    create_topic(&b, "shared", 4, &[]).await?;
    let p = producer(&b, &[("linger.ms", "2")])?;
    produce(&p, "shared", "share", 0..2_000).await?;

    let c1 = consumer(&b, "pair", &[])?;
    let c2 = consumer(&b, "pair", &[])?;
    c1.subscribe(&["shared"])?;
    c2.subscribe(&["shared"])?;
    let mut seen = BTreeSet::new();
    let mut by_member = [BTreeSet::new(), BTreeSet::new()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 2_000 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "only {} consumed",
            seen.len()
        );
        tokio::select! {
            m = c1.recv() => {
                let m = m?;
                by_member[0].insert(m.partition());
                seen.insert((m.partition(), m.offset()));
            }
            m = c2.recv() => {
                let m = m?;
                by_member[1].insert(m.partition());
                seen.insert((m.partition(), m.offset()));
            }
        }
    }
    ensure!(seen.len() == 2_000);
    ensure!(
        !by_member[0].is_empty() && !by_member[1].is_empty(),
        "both members should get partitions: {by_member:?}"
    );
    Ok(())
}

/// Idempotent producer: messages produced across a broker crash (no clean
/// shutdown, no final snapshot) are all there exactly once, and producer
/// state survives replay so the same producer continues without gaps.
async fn idempotent_producer_survives_crash(via: Via) -> Result<()> {
    let mut broker = TestBroker::start_via(via).await?;
    let b = broker.bootstrap();
    create_topic(&b, "events", 1, &[]).await?;
    let p = producer(&b, &[("enable.idempotence", "true"), ("linger.ms", "1")])?;
    produce(&p, "events", "before", 0..1_000).await?;
    broker.crash_and_restart().await?;
    produce(&p, "events", "after", 1_000..2_000).await?;

    let c = consumer(&b, "audit", &[])?;
    let ends = end_offsets(&c, "events", 1)?;
    ensure!(ends[&0] == (0, 2_000), "watermarks {:?}", ends[&0]);
    c.subscribe(&["events"])?;
    let got = consume(&c, 2_000, Duration::from_secs(60)).await?;
    let ids: Vec<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(
        ids == (0..2_000).collect::<Vec<_>>(),
        "order or content differs"
    );
    Ok(())
}

direct_and_proxied!(
    codecs_groups_commit_restart_resume,
    two_members_share_partitions,
    idempotent_producer_survives_crash
);
