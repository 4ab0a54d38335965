//! Storage: restarts from snapshots and logs, retention, object clean-up,
//! compaction.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use gatehouse_tests::Via;
use gatehouse_tests::{record_batch, RawClient, TestBroker};
use kafka_protocol::records::Compression;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

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
        std::fs::read_dir(store.join("nodes/0/wal"))
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
/// The conditional write the broker's commit log rests on, checked against
/// the S3 server the tests use (moto) and against a local directory, not
/// assumed: of 8 concurrent create-only puts of one key, exactly one
/// succeeds, the others are told the object exists, and a read returns the
/// winner's bytes; 32 rounds each. (Stock moto checks `If-None-Match` and
/// then writes without a lock: the tests run it behind a lock, see
/// deploy/s3/serial_moto.py. These rounds did not catch its race; the
/// metadata log test below did.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_writes_have_exactly_one_winner() -> Result<()> {
    use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
    use std::sync::Arc;
    let s3 = gatehouse_tests::S3Server::start("gatehouse-conformance").await?;
    let mut builder =
        object_store::aws::AmazonS3Builder::new().with_bucket_name("gatehouse-conformance");
    for (k, v) in s3.options() {
        builder = builder.with_config(k.parse()?, v);
    }
    let dir = tempfile::tempdir()?;
    let stores: Vec<(&str, Arc<dyn ObjectStore>)> = vec![
        ("s3", Arc::new(builder.build()?)),
        (
            "local",
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                dir.path(),
            )?),
        ),
    ];
    for (name, store) in stores {
        for round in 0..32 {
            let path = object_store::path::Path::from(format!("race/{round}"));
            let attempts = (0..8).map(|i| {
                let store = store.clone();
                let path = path.clone();
                async move {
                    let opts = PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    };
                    let body = PutPayload::from(format!("writer {i}").into_bytes());
                    (i, store.put_opts(&path, body, opts).await)
                }
            });
            let results = futures::future::join_all(attempts).await;
            let mut winners = Vec::new();
            for (i, r) in results {
                match r {
                    Ok(_) => winners.push(i),
                    Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => bail!("{name} round {round}: writer {i}: {e}"),
                }
            }
            ensure!(
                winners.len() == 1,
                "{name} round {round}: {} writers created the object: {winners:?}",
                winners.len()
            );
            let stored = store.get(&path).await?.bytes().await?;
            ensure!(
                stored.as_ref() == format!("writer {}", winners[0]).as_bytes(),
                "{name} round {round}: the object holds another writer's bytes"
            );
        }
    }
    Ok(())
}

/// The metadata log over the S3 server: three writers (three opened
/// stores, as three brokers) append 50 entries each at once; every entry
/// is in the log once, none is lost, and all three read the same state.
/// The topic catalog and the producer-id blocks are decided in the shared
/// metadata log: a topic another writer of the store adds there is served
/// within a poll, a topic created through the broker is there too, and
/// producer ids are never handed out twice across a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_and_producer_ids_come_from_the_metadata_log() -> Result<()> {
    use gatehouse_broker::catalog::{changes, CatalogOp};
    use gatehouse_broker::meta::Refused;
    use gatehouse_broker::meta_log::MetaLog;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, InitProducerIdRequest, InitProducerIdResponse, MetadataRequest, MetadataResponse,
        TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    let mut broker = TestBroker::start().await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    let first: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &init).await?;
    let next: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &init).await?;
    ensure!(first.error_code == 0 && next.producer_id.0 == first.producer_id.0 + 1);
    broker.crash_and_restart().await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    let after: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &init).await?;
    ensure!(
        after.error_code == 0 && after.producer_id.0 > next.producer_id.0,
        "{} after {}",
        after.producer_id.0,
        next.producer_id.0
    );

    // Another writer of the store adds a topic to the metadata log.
    let store = gatehouse_broker::storage::Storage::open(&broker.data_dir(), false, 0, &[])?;
    let log = MetaLog::new(store);
    let op = CatalogOp::Create {
        name: "from-meta".into(),
        partitions: 3,
        configs: BTreeMap::new(),
    };
    log.append_with(|m| {
        changes(m, &op, &[0])
            .map(|(commands, _)| commands)
            .map_err(|(_, why)| Refused::Invalid(why))
    })
    .await?;
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("from-meta"))))]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await?;
        if m.topics[0].error_code == 0 {
            ensure!(m.topics[0].partitions.len() == 3, "{:?}", m.topics[0]);
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the topic never showed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a topic created through the broker is in the metadata log.
    create(&mut c, "via-broker", 2, &[]).await?;
    log.catch_up().await?;
    let meta = log.meta().await;
    let id = meta.names.get("via-broker").context("via-broker in Meta")?;
    ensure!(meta.topics.get(id).map(|t| t.partitions.len()) == Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_writers_share_the_metadata_log_on_s3() -> Result<()> {
    use gatehouse_broker::meta::MetaCommand;
    use gatehouse_broker::meta_log::MetaLog;
    use std::sync::Arc;
    let s3 = gatehouse_tests::S3Server::start("gatehouse-meta").await?;
    let logs: Vec<Arc<MetaLog>> = (0..3)
        .map(|_| {
            gatehouse_broker::storage::Storage::open(
                "s3://gatehouse-meta/cluster",
                false,
                0,
                &s3.options(),
            )
            .map(|s| Arc::new(MetaLog::new(s)))
        })
        .collect::<Result<_, _>>()?;
    logs[0]
        .append(vec![MetaCommand::Init {
            slots: 3,
            leaders: vec![0, 1, 2],
        }])
        .await?;
    let writers = logs.iter().enumerate().map(|(node, log)| {
        let log = log.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..50 {
                let (seq, _) = log
                    .append_with(|m| {
                        Ok(vec![MetaCommand::AllocateProducerIds {
                            node: node as i32,
                            first: m.last_producer_id + 1,
                            count: 1000,
                        }])
                    })
                    .await?;
                seqs.push(seq);
            }
            anyhow::Ok(seqs)
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(writers).await {
        all.extend(w??);
    }
    all.sort_unstable();
    ensure!(all == (2..=151).collect::<Vec<u64>>(), "entries: {all:?}");
    let mut states = Vec::new();
    for log in &logs {
        ensure!(log.catch_up().await? == 151);
        states.push(log.meta().await);
    }
    ensure!(states[0] == states[1] && states[1] == states[2]);
    ensure!(states[0].last_producer_id == 150_000);
    Ok(())
}

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
    // The first broker refuses (NOT_LEADER_OR_FOLLOWER), or, having found
    // its log taken over, has stopped serving and closes the connection.
    if let Ok(mut to_first) = RawClient::connect(broker.addr()).await {
        if let Ok((code, _)) = produce_one(&mut to_first, "remote", 0, b1).await {
            ensure!(
                code == 6,
                "the fenced broker answered {code}, not NOT_LEADER_OR_FOLLOWER"
            );
        }
    }
    tokio::time::timeout(Duration::from_secs(10), broker.broker()?.fenced())
        .await
        .context("the first broker never learned that another took its log")?;
    drop(second);
    drop(broker);
    s3.stop().await
}

direct_and_proxied!(
    state_survives_clean_restart_and_crash,
    retention_trims_old_data_and_deletes_objects
);

/// A record as a consumer sees it: (offset, key, value or tombstone).
type Seen = (i64, String, Option<String>);

/// Reads partition 0 of `topic` from its log start up to the high
/// watermark with a fresh rdkafka consumer (no group offsets involved);
/// gaps left by compaction are skipped as a Kafka consumer skips them.
async fn read_partition(bootstrap: &str, topic: &str) -> Result<Vec<Seen>> {
    let c: StreamConsumer = consumer(bootstrap, &format!("reader-{}", now_ms()), &[])?;
    let (lo, hi) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut out = Vec::new();
    if hi <= lo {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(deadline, c.recv())
            .await
            .with_context(|| format!("read {} records, no offset {} yet", out.len(), hi - 1))??;
        let key = String::from_utf8_lossy(m.key().context("record without key")?).into_owned();
        let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
        out.push((m.offset(), key, value));
        if m.offset() >= hi - 1 {
            return Ok(out);
        }
    }
}

/// Newest value per key, tombstones deleting.
fn fold(records: &[Seen]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (_, k, v) in records {
        match v {
            Some(v) => m.insert(k.clone(), v.clone()),
            None => m.remove(k),
        };
    }
    m
}

/// Sends keyed records (a `None` value is a tombstone) and returns each
/// one with the offset it was stored at.
async fn send(
    p: &FutureProducer,
    topic: &str,
    records: &[(String, Option<String>)],
) -> Result<Vec<Seen>> {
    let mut pending = Vec::with_capacity(records.len());
    for (k, v) in records {
        let mut r = FutureRecord::to(topic).key(k.as_str()).partition(0);
        if let Some(v) = v {
            r = r.payload(v.as_str());
        }
        pending.push(p.send_result(r).map_err(|(e, _)| e)?);
    }
    let mut out = Vec::with_capacity(records.len());
    for (f, (k, v)) in pending.into_iter().zip(records) {
        match f.await {
            Ok(Ok(d)) => out.push((d.offset, k.clone(), v.clone())),
            Ok(Err((e, _))) => bail!("delivery failed: {e}"),
            Err(_) => bail!("delivery cancelled"),
        }
    }
    Ok(out)
}

/// A small deterministic generator (the seed is printed, and can be set
/// with GATEHOUSE_COMPACTION_SEED to replay a failure).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Compaction against a model: random keyed writes and tombstones, with
/// background compaction every 20 ms, explicit passes and broker kills
/// (timed to land inside a pass: the run prints how many passes they cut
/// short, as abandoned outputs cleaned up after the restart) between
/// rounds. After every round a
/// consumer reading the partition from its start sees, folded newest-wins,
/// exactly the model (a BTreeMap of the newest value per key), every record
/// it sees is the one written at that offset, and offsets only grow. At the
/// end, with the tombstones past `delete.retention.ms`, the partition holds
/// exactly one record per live key (plus the active segment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_matches_a_model_through_kills() -> Result<()> {
    let seed = std::env::var("GATEHOUSE_COMPACTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    println!("compaction model seed {seed}");
    let mut rng = Rng(seed);
    let mut broker =
        TestBroker::start_with(|c| c.compaction_interval = Duration::from_millis(20)).await?;
    let b = broker.bootstrap();
    create_topic(
        &b,
        "model",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("delete.retention.ms", "1000"),
        ],
    )
    .await?;
    // The broker is killed often: reconnect quickly rather than with
    // librdkafka's backoff of up to 10 s.
    let p = producer(
        &b,
        &[
            ("linger.ms", "2"),
            ("compression.type", "lz4"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    )?;
    let mut model: BTreeMap<String, String> = BTreeMap::new();
    let mut written: HashMap<i64, Seen> = HashMap::new();
    let (mut kills, mut abandoned, mut compacted) = (0, 0, 0);
    let mut pass_us = 5_000u64;
    for round in 0..30 {
        let n = 10 + rng.below(50) as usize;
        let records: Vec<(String, Option<String>)> = (0..n)
            .map(|i| {
                let key = format!("k{}", rng.below(40));
                let tombstone = rng.below(5) == 0;
                (key, (!tombstone).then(|| format!("r{round}-{i}")))
            })
            .collect();
        for r in send(&p, "model", &records).await? {
            match &r.2 {
                Some(v) => model.insert(r.1.clone(), v.clone()),
                None => model.remove(&r.1),
            };
            written.insert(r.0, r);
        }
        match rng.below(3) {
            0 => {
                // Killed in the middle of a pass: a pass asked for now (or
                // the background one, every 20 ms) and a kill after a
                // random part of the time the last pass took.
                let pass = tokio::spawn(broker.broker()?.compact_now());
                tokio::time::sleep(Duration::from_micros(rng.below(pass_us.max(500)))).await;
                broker.crash_and_restart().await?;
                let _ = pass.await;
                kills += 1;
                let s = broker.broker()?.compact_now().await?;
                abandoned += s.abandoned_deleted;
            }
            1 => {
                let s = broker.broker()?.compact_now().await?;
                pass_us = pass_us.max(s.elapsed.as_micros() as u64);
                compacted += s.partitions;
            }
            _ => {}
        }
        let seen = read_partition(&b, "model").await?;
        ensure!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "round {round}: offsets not increasing"
        );
        for r in &seen {
            ensure!(
                written.get(&r.0) == Some(r),
                "round {round}: read {r:?}, wrote {:?}",
                written.get(&r.0)
            );
        }
        ensure!(
            fold(&seen) == model,
            "round {round}: consumer view differs from the model"
        );
    }
    println!("{kills} kills, {abandoned} abandoned outputs cleaned, {compacted} explicit swaps");

    // The end state: tombstones past delete.retention.ms are gone and every
    // key below the active segment (one marker record) appears once.
    send(
        &p,
        "model",
        &[("marker".to_string(), Some("end".to_string()))],
    )
    .await?;
    broker.broker()?.compact_now().await?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    broker.broker()?.compact_now().await?;
    broker.crash_and_restart().await?;
    let seen = read_partition(&b, "model").await?;
    ensure!(
        seen.iter().all(|r| r.2.is_some()),
        "tombstones remain: {seen:?}"
    );
    let mut expected = model.clone();
    expected.insert("marker".into(), "end".into());
    ensure!(fold(&seen) == expected, "final view differs from the model");
    ensure!(
        seen.len() == expected.len(),
        "{} records for {} keys: compaction left duplicates",
        seen.len(),
        expected.len()
    );
    Ok(())
}

/// Records younger than min.compaction.lag.ms are never compacted (nor
/// used to drop older ones), and consumers read across the gaps that
/// compaction leaves at the old offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_honours_min_compaction_lag() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(
        &mut c,
        "lagged",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
            ("min.compaction.lag.ms", "3600000"),
        ],
    )
    .await?;
    // Three old batches and three fresh ones, each with keys k0..k2.
    let old = now_ms() - 2 * 3_600_000;
    for i in 0..3 {
        let b = record_batch(-1, -1, -1, 3, old + i, Compression::Gzip)?;
        ensure!(produce_one(&mut c, "lagged", 0, b).await?.0 == 0);
    }
    for _ in 0..3 {
        let b = record_batch(-1, -1, -1, 3, now_ms(), Compression::None)?;
        ensure!(produce_one(&mut c, "lagged", 0, b).await?.0 == 0);
    }
    let stats = broker.broker()?.compact_now().await?;
    ensure!(stats.partitions == 1, "{stats:?}");
    ensure!(
        (stats.records_read, stats.records_kept) == (9, 3),
        "only the old batches are compacted: {stats:?}"
    );
    let seen = read_partition(&broker.bootstrap(), "lagged").await?;
    let offsets: Vec<i64> = seen.iter().map(|r| r.0).collect();
    ensure!(
        offsets == (6..18).collect::<Vec<_>>(),
        "offsets read: {offsets:?}"
    );
    // The log start did not move: offsets 0..6 are a gap, not trimmed.
    let cons = consumer(&broker.bootstrap(), "lag-watermarks", &[])?;
    ensure!(end_offsets(&cons, "lagged", 1)?[&0] == (0, 18));
    Ok(())
}

/// Retention by size and by time deletes whole objects, commit objects and
/// compaction outputs alike, and what is left reads back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_whole_objects_by_size_and_time() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.snapshot_every = 1).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    let store = std::path::PathBuf::from(broker_data(&broker));
    let count = |dir: &str| {
        std::fs::read_dir(store.join("nodes/0").join(dir))
            .map(|d| d.count())
            .unwrap_or(0)
    };

    // By size: ten batches of ten records, room for about three.
    let one = record_batch(-1, -1, -1, 10, now_ms(), Compression::None)?;
    let limit = (one.len() * 3 + 10).to_string();
    create(&mut c, "sized", 1, &[("retention.bytes", limit.as_str())]).await?;
    for _ in 0..10 {
        let b = record_batch(-1, -1, -1, 10, now_ms(), Compression::None)?;
        ensure!(produce_one(&mut c, "sized", 0, b).await?.0 == 0);
    }
    let before = count("wal");
    broker.broker()?.housekeep().await?;
    broker.broker()?.housekeep().await?;
    let after = count("wal");
    ensure!(after + 7 <= before, "commit objects {before} -> {after}");
    let seen = read_partition(&broker.bootstrap(), "sized").await?;
    let offsets: Vec<i64> = seen.iter().map(|r| r.0).collect();
    ensure!(offsets == (70..100).collect::<Vec<_>>(), "{offsets:?}");

    // By time, on a compacted topic: the compaction output of old data
    // goes once retention passes it.
    create(
        &mut c,
        "both",
        1,
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "60000"),
            ("min.cleanable.dirty.ratio", "0"),
        ],
    )
    .await?;
    let old = now_ms() - 3_600_000;
    for i in 0..4 {
        let b = record_batch(-1, -1, -1, 5, old + i, Compression::Zstd)?;
        ensure!(produce_one(&mut c, "both", 0, b).await?.0 == 0);
    }
    let fresh = record_batch(-1, -1, -1, 2, now_ms(), Compression::None)?;
    ensure!(produce_one(&mut c, "both", 0, fresh).await? == (0, 20));
    let stats = broker.broker()?.compact_now().await?;
    ensure!(
        stats.partitions == 1 && stats.records_kept == 5,
        "{stats:?}"
    );
    ensure!(count("compacted") == 1, "one compaction output");
    broker.broker()?.housekeep().await?;
    broker.broker()?.compact_now().await?;
    broker.broker()?.compact_now().await?;
    ensure!(count("compacted") == 0, "the output went with retention");
    let seen = read_partition(&broker.bootstrap(), "both").await?;
    let offsets: Vec<i64> = seen.iter().map(|r| r.0).collect();
    ensure!(offsets == [20, 21], "{offsets:?}");
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Produce latency (acks=all, one 10-record batch at a time) for `limit`,
/// or until `done` says stop.
async fn produce_latencies(
    c: &mut RawClient,
    limit: Duration,
    done: impl Fn() -> bool,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    while start.elapsed() < limit && !done() {
        let b = record_batch(-1, -1, -1, 10, now_ms(), Compression::Lz4)?;
        let t = std::time::Instant::now();
        let (code, _) = produce_one(c, "latency", 0, b).await?;
        out.push(t.elapsed());
        ensure!(code == 0, "produce failed with {code}");
    }
    out.sort_unstable();
    Ok(out)
}

/// Not a test but a measurement (nothing is asserted about speed): fills a
/// compacted partition with 400,000 records of ~250 bytes over 20,000 keys
/// (lz4, pseudo-random hex values), then runs one compaction pass while a client produces to another
/// topic, and prints the pass's throughput and the produce latencies with
/// and without it. Run by hand:
///
/// `cargo nextest run -p gatehouse-tests --test e2e -E 'test(/compaction_throughput/)' --run-ignored only --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn compaction_throughput_and_produce_latency() -> Result<()> {
    let broker = TestBroker::start().await?;
    let b = broker.bootstrap();
    create_topic(
        &b,
        "bulk",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0"),
        ],
    )
    .await?;
    create_topic(&b, "latency", 1, &[]).await?;
    let p = producer(
        &b,
        &[
            ("linger.ms", "20"),
            ("batch.size", "1000000"),
            ("compression.type", "lz4"),
        ],
    )?;
    // Values that compress about as well as typical JSON would, not to
    // nothing: hex digits of a pseudo-random sequence.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let loaded = std::time::Instant::now();
    for chunk in 0..20u64 {
        let records: Vec<(String, Option<String>)> = (0..20_000)
            .map(|i| {
                let n: u64 = chunk * 20_000 + i;
                let pad: String = (0..12)
                    .map(|_| format!("{:016x}", rng.below(u64::MAX)))
                    .collect();
                (
                    format!("key-{}", (n * 7919) % 20_000),
                    Some(format!("{n}:{pad}")),
                )
            })
            .collect();
        send(&p, "bulk", &records).await?;
    }
    // One more write: the active segment, which compaction leaves alone.
    send(&p, "bulk", &[("tail".to_string(), Some("t".to_string()))]).await?;
    println!("loaded 400000 records in {:?}", loaded.elapsed());

    let mut c = RawClient::connect(broker.addr()).await?;
    let idle = produce_latencies(&mut c, Duration::from_secs(5), || false).await?;
    let pass = tokio::spawn(broker.broker()?.compact_now());
    let during = produce_latencies(&mut c, Duration::from_secs(600), || pass.is_finished()).await?;
    let stats = pass.await??;
    let secs = stats.elapsed.as_secs_f64();
    println!(
        "compaction: {} batches, {:.1} MB read, {:.1} MB written, {} -> {} records, {} objects, {:.2} s: {:.1} MB/s read, {:.1} MB/s written",
        stats.batches,
        stats.bytes_read as f64 / 1e6,
        stats.bytes_written as f64 / 1e6,
        stats.records_read,
        stats.records_kept,
        stats.objects_written,
        secs,
        stats.bytes_read as f64 / 1e6 / secs,
        stats.bytes_written as f64 / 1e6 / secs,
    );
    for (name, l) in [("idle", &idle), ("during compaction", &during)] {
        println!(
            "produce latency {name}: {} requests, p50 {:?}, p99 {:?}, max {:?}",
            l.len(),
            percentile(l, 0.50),
            percentile(l, 0.99),
            l.last().copied().unwrap_or_default()
        );
    }
    ensure!(stats.records_kept <= 20_000, "{stats:?}");
    Ok(())
}

/// The value of the Prometheus sample `name` whose labels include every
/// one of `labels`, summed over the others; 0 when there is none.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (n == name && all)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A broker with its admin listener on a free loopback port.
async fn broker_with_admin(
    tweak: impl FnOnce(&mut gatehouse_broker::BrokerConfig),
) -> Result<(TestBroker, std::net::SocketAddr)> {
    let broker = TestBroker::start_with(|c| {
        c.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        tweak(c);
    })
    .await?;
    let admin = broker
        .broker()?
        .admin_addr()
        .context("the broker has no admin listener")?;
    Ok((broker, admin))
}

/// Polls `GET /readyz` until it answers `want`, within `limit`; the last
/// answer.
async fn readyz_becomes(
    admin: std::net::SocketAddr,
    want: u16,
    limit: Duration,
) -> Result<crate::admin::Answer> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = crate::admin::get(admin, "/readyz", None).await?;
        if r.status == want {
            return Ok(r);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "/readyz still answers {} after {limit:?}: {}",
                r.status,
                r.body
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The broker's `/metrics` after a known workload (records produced and
/// consumed by rdkafka in a group) say what was done: produce and fetch
/// requests by outcome and their latencies, commit objects and their
/// bytes, object store puts and their bytes, cache hits, partitions led,
/// a rebalance; and nothing a client named (topic, group, client id).
/// `/healthz` and `/readyz` answer 200; other paths and methods do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_metrics_reflect_the_workload() -> Result<()> {
    use crate::admin::{get, request};
    let (broker, admin) = broker_with_admin(|_| {}).await?;
    let health = get(admin, "/healthz", None).await?;
    ensure!(health.status == 200, "{}", health.status);
    ensure!(
        health.json()? == serde_json::json!({"live": true}),
        "{}",
        health.body
    );
    let ready = readyz_becomes(admin, 200, Duration::from_secs(10)).await?;
    ensure!(ready.json()?["ready"] == true, "{}", ready.body);

    let b = broker.bootstrap();
    create_topic(&b, "metered-topic", 3, &[]).await?;
    let p = producer(&b, &[("compression.type", "none")])?;
    const N: usize = 300;
    produce(&p, "metered-topic", "metered", 0..N).await?;
    let payload: usize = (0..N)
        .map(|i| crate::support::value("metered", i).len() + format!("key-{i}").len())
        .sum();
    let c = consumer(&b, "metered-group", &[("client.id", "metered-client")])?;
    c.subscribe(&["metered-topic"])?;
    ensure!(consume(&c, N, Duration::from_secs(30)).await?.len() == N);

    let m = get(admin, "/metrics", None).await?;
    ensure!(m.status == 200, "{}", m.status);
    let t = m.body.as_str();
    let at_least = |name: &str, labels: &[(&str, &str)], min: f64| -> Result<()> {
        let v = metric(t, name, labels);
        ensure!(
            v >= min,
            "{name}{labels:?} = {v}, expected at least {min}:\n{t}"
        );
        Ok(())
    };
    at_least(
        "gatehouse_broker_requests_total",
        &[("api", "Produce"), ("outcome", "ok")],
        1.0,
    )?;
    at_least(
        "gatehouse_broker_requests_total",
        &[("api", "Fetch"), ("outcome", "ok")],
        1.0,
    )?;
    at_least(
        "gatehouse_broker_requests_total",
        &[("api", "JoinGroup")],
        1.0,
    )?;
    at_least(
        "gatehouse_broker_request_duration_seconds_count",
        &[("api", "Produce")],
        1.0,
    )?;
    at_least(
        "gatehouse_broker_request_duration_seconds_count",
        &[("api", "Fetch")],
        1.0,
    )?;
    at_least("gatehouse_broker_commits_total", &[("outcome", "ok")], 1.0)?;
    at_least("gatehouse_broker_commit_duration_seconds_count", &[], 1.0)?;
    at_least("gatehouse_broker_commit_size_bytes_count", &[], 1.0)?;
    at_least(
        "gatehouse_broker_commit_size_bytes_sum",
        &[],
        payload as f64,
    )?;
    at_least(
        "gatehouse_broker_store_requests_total",
        &[("operation", "put")],
        1.0,
    )?;
    at_least(
        "gatehouse_broker_store_bytes_total",
        &[("operation", "put")],
        payload as f64,
    )?;
    at_least(
        "gatehouse_broker_store_requests_total",
        &[("operation", "head")],
        1.0,
    )?;
    at_least("gatehouse_broker_cache_hits_total", &[], 1.0)?;
    at_least("gatehouse_broker_group_rebalances_total", &[], 1.0)?;
    ensure!(
        metric(t, "gatehouse_broker_partitions_led", &[]) == 3.0,
        "partitions led:\n{t}"
    );
    ensure!(
        metric(t, "gatehouse_broker_brokers_live", &[]) == 1.0,
        "live brokers:\n{t}"
    );
    ensure!(
        metric(t, "gatehouse_broker_store_errors_total", &[]) == 0.0,
        "store errors:\n{t}"
    );
    for name in [
        "gatehouse_broker_cache_misses_total",
        "gatehouse_broker_cache_size",
        "gatehouse_broker_request_duration_seconds_bucket",
        "gatehouse_broker_commit_duration_seconds_bucket",
        "gatehouse_broker_commit_size_bytes_bucket",
    ] {
        ensure!(t.contains(name), "{name} missing:\n{t}");
    }
    for chosen in ["metered-topic", "metered-group", "metered-client"] {
        ensure!(!t.contains(chosen), "{chosen} in /metrics");
    }
    ensure!(get(admin, "/nothing", None).await?.status == 404);
    ensure!(
        request(admin, "POST", "/metrics", None, Some("{}"))
            .await?
            .status
            == 405
    );
    // Each broker counts its own: a second one in this process has served
    // nothing.
    let (other, other_admin) = broker_with_admin(|_| {}).await?;
    let o = get(other_admin, "/metrics", None).await?;
    ensure!(
        metric(
            &o.body,
            "gatehouse_broker_requests_total",
            &[("api", "Produce")]
        ) == 0.0,
        "{}",
        o.body
    );
    drop(c);
    other.stop().await?;
    broker.stop().await
}

/// `/readyz` follows the object store: 200 while the S3 server answers,
/// 503 naming the `store` check while it does not (paused), 200 again once
/// it answers; `/healthz` stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_readiness_follows_the_object_store() -> Result<()> {
    let s3 = gatehouse_tests::S3Server::start("gatehouse-ready").await?;
    let options = s3.options();
    let (broker, admin) = broker_with_admin(|c| {
        c.data = "s3://gatehouse-ready/cluster".into();
        c.store_options = options.clone();
    })
    .await?;
    readyz_becomes(admin, 200, Duration::from_secs(10)).await?;

    s3.pause()?;
    let down = readyz_becomes(admin, 503, Duration::from_secs(20)).await;
    let health = crate::admin::get(admin, "/healthz", None).await;
    s3.resume()?;
    let down = down?;
    ensure!(health?.status == 200, "/healthz while the store is away");
    let body = down.json()?;
    let failing: Vec<&str> = body["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["check"].as_str())
        .collect();
    ensure!(failing == ["store"], "{}", down.body);

    let up = readyz_becomes(admin, 200, Duration::from_secs(30)).await?;
    ensure!(up.json()?["ready"] == true, "{}", up.body);
    broker.stop().await?;
    s3.stop().await
}
