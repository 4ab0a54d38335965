//! Several brokers over one store: membership by leases, partitions spread
//! over the live brokers and served only by their leader, clients sent to
//! the leader, directly and through the proxy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gatehouse_tests::{record_batch, RawClient, TestCluster};
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::records::Compression;

use crate::broker_protocol::{create, produce_one};
use crate::support::{consume, consumer, produce, producer};

/// What the broker at `addr` says of the cluster: the live brokers, each
/// partition's leader of `topic` (-1: none), and the topic's id.
async fn view_at(
    addr: std::net::SocketAddr,
    topic: &str,
) -> Result<(Vec<i32>, Vec<i32>, [u8; 16])> {
    let mut c = RawClient::connect(addr).await?;
    let m: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await?;
    let brokers = m.brokers.iter().map(|b| b.node_id.0).collect();
    let (leaders, id) = m
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .map(|t| {
            let mut ps: Vec<_> = t.partitions.iter().collect();
            ps.sort_by_key(|p| p.partition_index);
            (
                ps.iter().map(|p| p.leader_id.0).collect(),
                *t.topic_id.as_bytes(),
            )
        })
        .unwrap_or_default();
    Ok((brokers, leaders, id))
}

/// What broker `node` says of the cluster: the live brokers, and each
/// partition's leader of `topic` (-1: none).
async fn metadata(cluster: &TestCluster, node: i32, topic: &str) -> Result<(Vec<i32>, Vec<i32>)> {
    let (brokers, leaders, _) = view_at(cluster.addr(node)?, topic).await?;
    Ok((brokers, leaders))
}

/// Where rendezvous hashing over `live` places each partition of `topic`
/// (the brokers' own rule, from the topic's id).
async fn placement(cluster: &TestCluster, topic: &str, live: &[i32]) -> Result<Vec<i32>> {
    let (_, leaders, id) = view_at(cluster.addr(0)?, topic).await?;
    (0..i32::try_from(leaders.len())?)
        .map(|p: i32| {
            let mut key = id.to_vec();
            key.extend_from_slice(&p.to_be_bytes());
            gatehouse_broker::members::rendezvous(live, &key).context("no broker")
        })
        .collect()
}

/// Waits until `pick` holds of what broker `node` says, within `limit`.
async fn until(
    cluster: &TestCluster,
    node: i32,
    topic: &str,
    limit: Duration,
    what: &str,
    pick: impl Fn(&[i32], &[i32]) -> bool,
) -> Result<(Vec<i32>, Vec<i32>)> {
    let deadline = Instant::now() + limit;
    loop {
        let (brokers, leaders) = metadata(cluster, node, topic).await?;
        if pick(&brokers, &leaders) {
            return Ok((brokers, leaders));
        }
        ensure!(
            Instant::now() < deadline,
            "broker {node}: {what}: brokers {brokers:?}, leaders {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Objects in broker `node`'s own log.
fn log_objects(cluster: &TestCluster, node: i32) -> usize {
    std::fs::read_dir(cluster.store().join(format!("nodes/{node}/wal")))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Three brokers over one store: each lists all three, a topic's
/// partitions are spread over them and every broker names the same
/// leaders, a produce to a broker that does not lead is refused with
/// NOT_LEADER_OR_FOLLOWER, rdkafka producers and a consumer group go to
/// the leaders by themselves (every broker's own log grows: the commit
/// path is no longer one broker's), and a broker that dies is gone from
/// the others' metadata after its lease, its partitions led by the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_one_store() -> Result<()> {
    let lease = Duration::from_secs(2);
    let mut cluster = TestCluster::start(3, lease).await?;
    cluster.formed().await?;
    let mut c1 = RawClient::connect(cluster.addr(1)?).await?;
    create(&mut c1, "spread", 24, &[]).await?;
    let (_, leaders) = until(&cluster, 0, "spread", lease, "24 leaders", |_, l| {
        l.len() == 24
    })
    .await?;
    // Each partition where rendezvous hashing over the three puts it.
    let expected = placement(&cluster, "spread", &[0, 1, 2]).await?;
    ensure!(
        leaders == expected,
        "leaders {leaders:?}, placed {expected:?}"
    );
    ensure!(
        (0..3).all(|n| leaders.contains(&n)),
        "a broker leads nothing: {leaders:?}"
    );
    for node in 1..3 {
        until(
            &cluster,
            node,
            "spread",
            lease,
            "the same leaders",
            |_, l| l == leaders.as_slice(),
        )
        .await?;
    }

    // A broker that does not lead a partition refuses to store it.
    create(&mut c1, "probe", 6, &[]).await?;
    let (_, probe) = until(&cluster, 1, "probe", lease, "6 leaders", |_, l| {
        l.len() == 6
    })
    .await?;
    let (partition, leader) = probe
        .iter()
        .enumerate()
        .find(|(_, n)| **n != 1)
        .map(|(p, n)| (p as i32, *n))
        .context("a partition broker 1 does not lead")?;
    let batch = record_batch(-1, -1, -1, 1, 1_000, Compression::None)?;
    let (code, _) = produce_one(&mut c1, "probe", partition, batch.clone()).await?;
    ensure!(code == 6, "NOT_LEADER_OR_FOLLOWER expected, got {code}");
    until(&cluster, leader, "probe", lease, "the topic", |_, l| {
        l.len() == 6
    })
    .await?;
    let mut to_leader = RawClient::connect(cluster.addr(leader)?).await?;
    ensure!(
        produce_one(&mut to_leader, "probe", partition, batch)
            .await?
            .0
            == 0
    );

    // Real clients find the leaders and the group coordinator.
    let before: Vec<usize> = (0..3).map(|n| log_objects(&cluster, n)).collect();
    let bootstrap = cluster.bootstrap();
    let p = producer(
        &bootstrap,
        &[("enable.idempotence", "true"), ("acks", "all")],
    )?;
    produce(&p, "spread", "cluster", 0..3_000).await?;
    let grew: Vec<bool> = (0..3)
        .map(|n| log_objects(&cluster, n) > before[n as usize])
        .collect();
    ensure!(grew == [true, true, true], "logs grew: {grew:?}");
    let c = consumer(&bootstrap, "readers", &[])?;
    rdkafka::consumer::Consumer::subscribe(&c, &["spread"])?;
    let got = consume(&c, 3_000, Duration::from_secs(60)).await?;
    let ids: BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == 3_000, "{} distinct of 3000", ids.len());

    // A broker that dies: gone from the others' metadata within a lease
    // (and a quarter), and its partitions led by the others; the rest
    // stay where they were.
    let dead = leaders[0];
    cluster.kill(dead)?;
    let asked = (dead + 1) % 3;
    let (brokers, now) = until(
        &cluster,
        asked,
        "spread",
        lease * 3,
        "the dead broker's partitions moved",
        |b, l| !b.contains(&dead) && l.len() == 24 && l.iter().all(|n| *n >= 0 && *n != dead),
    )
    .await?;
    ensure!(brokers.len() == 2);
    ensure!(
        now.iter().zip(&leaders).all(|(n, l)| *l == dead || n == l),
        "{now:?} after {leaders:?}"
    );
    Ok(())
}

/// The passthrough proxy in front of a three-broker cluster: it gives each
/// broker a listener of its own, and an idempotent producer and a consumer
/// group work through it as they do directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_behind_the_proxy() -> Result<()> {
    let lease = Duration::from_secs(2);
    let cluster = TestCluster::start(3, lease).await?;
    cluster.formed().await?;
    let mut config = gatehouse_proxy::ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        cluster.addr(0)?.to_string(),
    );
    config.upstream.bootstrap_servers =
        cluster.bootstrap().split(',').map(str::to_string).collect();
    let proxy = gatehouse_proxy::Proxy::start(config).await?;
    let via = proxy.local_addr().to_string();
    let mut c = RawClient::connect(cluster.addr(0)?).await?;
    create(&mut c, "behind", 6, &[]).await?;
    for node in 0..3 {
        until(&cluster, node, "behind", lease, "the topic", |_, l| {
            l.len() == 6
        })
        .await?;
    }
    let p = producer(&via, &[("enable.idempotence", "true"), ("acks", "all")])?;
    produce(&p, "behind", "proxied", 0..2_000).await?;
    let consumer = consumer(&via, "behind-readers", &[])?;
    rdkafka::consumer::Consumer::subscribe(&consumer, &["behind"])?;
    let got = consume(&consumer, 2_000, Duration::from_secs(60)).await?;
    let ids: BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == 2_000, "{} distinct of 2000", ids.len());
    ensure!(
        proxy.node_routes().len() == 3,
        "routes {:?}",
        proxy.node_routes()
    );
    Ok(())
}

/// A broker killed under load: its partitions and the group coordinator
/// slots it led move to the others (plugged log, rebuilt state, next
/// epoch), an idempotent producer carries on after its own retries with
/// nothing lost or stored twice, and a group's committed offsets survive
/// the move of its coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_s_partitions_move_with_nothing_lost() -> Result<()> {
    use rdkafka::consumer::{CommitMode, Consumer};
    let lease = Duration::from_secs(2);
    let mut cluster = TestCluster::start(3, lease).await?;
    cluster.formed().await?;
    // Broker 0 started the cluster: it coordinates every group. The topic
    // is one of which it leads a partition too (they are spread at random).
    let mut c = RawClient::connect(cluster.addr(1)?).await?;
    let mut topic = String::new();
    for attempt in 0..10 {
        let name = format!("moving-{attempt}");
        create(&mut c, &name, 6, &[]).await?;
        let (_, leaders) =
            until(&cluster, 1, &name, lease, "6 leaders", |_, l| l.len() == 6).await?;
        if leaders.contains(&0) {
            topic = name;
            break;
        }
    }
    ensure!(!topic.is_empty(), "broker 0 led no partition of 10 topics");
    let topic = topic.as_str();
    let bootstrap = cluster.bootstrap();
    let p = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
        ],
    )?;
    produce(&p, topic, "before", 0..3_000).await?;
    let early = consumer(&bootstrap, "early", &[])?;
    early.subscribe(&[topic])?;
    consume(&early, 3_000, Duration::from_secs(30)).await?;
    early.commit_consumer_state(CommitMode::Sync)?;
    drop(early);

    let killed = Instant::now();
    cluster.kill(0)?;
    produce(&p, topic, "after", 3_000..6_000).await?;
    let recovered = killed.elapsed();
    let (brokers, now) = metadata(&cluster, 1, topic).await?;
    ensure!(brokers == [1, 2], "{brokers:?}");
    ensure!(now.iter().all(|l| *l == 1 || *l == 2), "{now:?}");

    // Everything acknowledged, once each (read from the brokers left: a
    // consumer told of a dead one reports its connection failures).
    let bootstrap = format!("{},{}", cluster.addr(1)?, cluster.addr(2)?);
    let all = consumer(&bootstrap, "everything", &[])?;
    all.subscribe(&[topic])?;
    let got = consume(&all, 6_000, Duration::from_secs(60)).await?;
    let ids: BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == 6_000, "{} distinct of 6000", ids.len());
    // Per partition, in the order produced (keys always map to one
    // partition, and each key was sent once, in order of its index).
    let mut last: BTreeMap<i32, (i64, usize)> = BTreeMap::new();
    for (i, partition, offset) in &got {
        if let Some((o, _)) = last.get(partition) {
            ensure!(offset > o, "partition {partition} went back");
        }
        last.insert(*partition, (*offset, *i));
    }

    // The group's offsets moved with its coordinator: it resumes after
    // the first 3000.
    let resumed = consumer(&bootstrap, "early", &[])?;
    resumed.subscribe(&[topic])?;
    let next = consume(&resumed, 3_000, Duration::from_secs(60)).await?;
    ensure!(
        next.iter().all(|(i, ..)| *i >= 3_000),
        "the group started over: {:?}",
        next.iter().map(|(i, ..)| *i).min()
    );
    println!("failover: producer carried on {recovered:?} after the kill");
    Ok(())
}

/// Brokers joining take over a share of the partitions (handed over by the
/// broker that led them), and a broker stopped cleanly hands its
/// partitions over before it returns; an idempotent producer running
/// throughout sees only retriable errors, and nothing is lost or stored
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_and_leaving_brokers_move_partitions_without_loss() -> Result<()> {
    let lease = Duration::from_secs(2);
    let mut cluster = TestCluster::start(1, lease).await?;
    let mut c = RawClient::connect(cluster.addr(0)?).await?;
    create(&mut c, "growing", 12, &[]).await?;
    let p = producer(
        &cluster.bootstrap(),
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
        ],
    )?;
    produce(&p, "growing", "alone", 0..1_000).await?;

    // Two brokers join: each comes to lead a share within a few seconds,
    // while the producer goes on.
    cluster.add().await?;
    cluster.add().await?;
    let sending = {
        let p = p.clone();
        tokio::spawn(async move { produce(&p, "growing", "joining", 1_000..4_000).await })
    };
    let expected = placement(&cluster, "growing", &[0, 1, 2]).await?;
    let (_, leaders) = until(
        &cluster,
        0,
        "growing",
        lease * 10,
        "a share each",
        |b, l| b.len() == 3 && l == expected.as_slice(),
    )
    .await?;
    sending.await??;

    // Broker 1 stops cleanly: by the time it returns, its partitions have
    // other leaders.
    let had: usize = leaders.iter().filter(|n| **n == 1).count();
    cluster.stop(1).await?;
    let (_, after) = metadata(&cluster, 0, "growing").await?;
    ensure!(
        after.iter().all(|n| *n == 0 || *n == 2),
        "{after:?} after broker 1 (which led {had}) stopped"
    );
    produce(&p, "growing", "after", 4_000..5_000).await?;

    let bootstrap = format!("{},{}", cluster.addr(0)?, cluster.addr(2)?);
    let all = consumer(&bootstrap, "everything", &[])?;
    rdkafka::consumer::Consumer::subscribe(&all, &["growing"])?;
    let got = consume(&all, 5_000, Duration::from_secs(60)).await?;
    let ids: BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == 5_000, "{} distinct of 5000", ids.len());
    Ok(())
}

/// A broker in a process of its own (`gatehouse-broker`).
pub(crate) struct BrokerProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) addr: std::net::SocketAddr,
}

impl BrokerProcess {
    pub(crate) async fn start(node: i32, data: &std::path::Path, lease: Duration) -> Result<Self> {
        Self::start_on(node, &data.to_string_lossy(), lease, None, &[]).await
    }

    /// On `data` (a directory or a URL) with object store `options`, on
    /// `listen` if given (a restart on the same port).
    pub(crate) async fn start_on(
        node: i32,
        data: &str,
        lease: Duration,
        listen: Option<std::net::SocketAddr>,
        options: &[(String, String)],
    ) -> Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let listen = listen.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-broker"))
            .arg(node.to_string())
            .arg(data)
            .arg(lease.as_millis().to_string())
            .arg(listen)
            .args(options.iter().map(|(k, v)| format!("{k}={v}")))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await??
            .context("the broker said nothing")?;
        let addr = line
            .strip_prefix("listening ")
            .context("no address")?
            .parse()?;
        Ok(Self { child, addr })
    }

    fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.id().context("exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?;
        ensure!(status.success(), "kill -{name} {pid}");
        Ok(())
    }
}

/// Two brokers that both believe they lead a partition: a leader paused
/// past its lease (SIGSTOP) is taken over; resumed (SIGCONT), its write is
/// refused, it learns its log was closed and exits with status 3, and
/// nothing it wrote lies after the plug. Every acknowledged record is
/// there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_fenced_and_steps_down() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    let lease = Duration::from_millis(1_500);
    let mut brokers = Vec::new();
    for node in 0..3 {
        brokers.push(BrokerProcess::start(node, &store, lease).await?);
    }
    let leaders_of = |addr, topic: String| async move {
        let (brokers, leaders, _) = view_at(addr, &topic).await?;
        anyhow::Ok((brokers, leaders))
    };
    let deadline = Instant::now() + lease * 4;
    while leaders_of(brokers[0].addr, String::new()).await?.0 != [0, 1, 2] {
        ensure!(
            Instant::now() < deadline,
            "the brokers never saw each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A topic with a partition broker 2 leads (they are spread at random).
    let mut c = RawClient::connect(brokers[0].addr).await?;
    let mut found = None;
    for attempt in 0..10 {
        let name = format!("paused-{attempt}");
        create(&mut c, &name, 6, &[]).await?;
        let deadline = Instant::now() + lease * 4;
        let leaders = loop {
            let (_, leaders) = leaders_of(brokers[2].addr, name.clone()).await?;
            if leaders.len() == 6 {
                break leaders;
            }
            ensure!(Instant::now() < deadline, "{name} never showed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Some(p) = leaders.iter().position(|n| *n == 2) {
            found = Some((name, p as i32));
            break;
        }
    }
    let (topic, partition) = found.context("broker 2 led no partition of 10 topics")?;
    let topic = topic.as_str();
    let mut to_two = RawClient::connect(brokers[2].addr).await?;
    let batch = || record_batch(-1, -1, -1, 1, 1_000, Compression::None);
    ensure!(produce_one(&mut to_two, topic, partition, batch()?).await? == (0, 0));

    // Paused past its lease: the others take its partitions over.
    brokers[2].signal("STOP")?;
    let deadline = Instant::now() + lease * 4;
    let moved_to = loop {
        let (_, leaders) = leaders_of(brokers[0].addr, topic.to_string()).await?;
        let l = leaders.get(partition as usize).copied().unwrap_or(-1);
        if l == 0 || l == 1 {
            break l;
        }
        ensure!(Instant::now() < deadline, "never taken over: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut to_new = RawClient::connect(brokers[moved_to as usize].addr).await?;
    ensure!(produce_one(&mut to_new, topic, partition, batch()?).await? == (0, 1));

    // Resumed: it still believes it leads, but it cannot store anything.
    brokers[2].signal("CONT")?;
    // Refused (NOT_LEADER_OR_FOLLOWER), or the connection closed if it
    // already found its log closed and is stepping down.
    if let Ok((code, _)) = produce_one(&mut to_two, topic, partition, batch()?).await {
        ensure!(code == 6, "the paused leader answered {code}");
    }
    let status = tokio::time::timeout(lease * 4, brokers[2].child.wait()).await??;
    ensure!(status.code() == Some(3), "exit status {status:?}");

    // Its log ends with the plug: nothing of its own after it.
    let wal = store.join("nodes/2/wal");
    // (A write the broker had in flight when it stopped may have left a
    // staging file of the local store beside the commits.)
    let seq = std::fs::read_dir(&wal)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .context("broker 2's log")?;
    let commands =
        gatehouse_broker::log::parse(seq, &std::fs::read(wal.join(format!("{seq:020}")))?)?;
    ensure!(
        matches!(commands[..], [gatehouse_broker::log::Command::Fenced { by }] if by != 2),
        "{commands:?}"
    );
    // Both acknowledged records, and only those.
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = to_new.call(ApiKey::ListOffsets, 7, &req).await?;
    let p = &resp.topics[0].partitions[0];
    ensure!(
        p.error_code == 0 && p.offset == 2,
        "high watermark {} ({})",
        p.offset,
        p.error_code
    );
    Ok(())
}

/// The acceptance run: three broker processes over one S3 server
/// (moto behind a write lock), 100,000 keyed records produced through the
/// proxy by an idempotent acks=all producer while one broker is SIGKILLed
/// (at 30 %) and started again (at 60 %). Every acknowledged record is read
/// once, in per-partition order, and a group's committed offsets survive
/// the move of its coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_over_s3_lose_nothing_when_one_is_killed_and_restarted() -> Result<()> {
    use rdkafka::consumer::{CommitMode, Consumer};
    let s3 = gatehouse_tests::S3Server::start("cluster").await?;
    let options = s3.options();
    let data = "s3://cluster/acceptance";
    let lease = Duration::from_millis(1_500);
    let mut brokers = Vec::new();
    for node in 0..3 {
        brokers.push(BrokerProcess::start_on(node, data, lease, None, &options).await?);
    }
    let listed = |addr| async move { anyhow::Ok(view_at(addr, "").await?.0.len()) };
    let deadline = Instant::now() + lease * 4;
    while listed(brokers[0].addr).await? < 3 {
        ensure!(
            Instant::now() < deadline,
            "the brokers never saw each other"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut config = gatehouse_proxy::ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        brokers[0].addr.to_string(),
    );
    config.upstream.bootstrap_servers = brokers.iter().map(|b| b.addr.to_string()).collect();
    let proxy = gatehouse_proxy::Proxy::start(config).await?;
    let via = proxy.local_addr().to_string();
    let mut c = RawClient::connect(brokers[1].addr).await?;
    create(&mut c, "acceptance", 6, &[]).await?;
    let p = producer(
        &via,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "120000"),
        ],
    )?;
    produce(&p, "acceptance", "before", 0..30_000).await?;
    let early = consumer(&via, "acceptance-readers", &[])?;
    early.subscribe(&["acceptance"])?;
    consume(&early, 30_000, Duration::from_secs(120)).await?;
    early.commit_consumer_state(CommitMode::Sync)?;
    drop(early);

    // Kill the leader of partition 0 (and whatever else it leads or
    // coordinates by now).
    let victim = listed_leader(brokers[1].addr, "acceptance", 0).await?;
    let slot = usize::try_from(victim)?;
    let killed_at = brokers[slot].addr;
    brokers[slot].child.start_kill()?;
    brokers[slot].child.wait().await?;
    produce(&p, "acceptance", "killed", 30_000..60_000).await?;
    let moved = listed_leader(brokers[(slot + 1) % 3].addr, "acceptance", 0).await?;
    ensure!(
        moved != victim && moved >= 0,
        "partition 0 still on {moved}"
    );
    brokers[slot] = BrokerProcess::start_on(victim, data, lease, Some(killed_at), &options).await?;
    produce(&p, "acceptance", "restarted", 60_000..100_000).await?;

    let all = consumer(&via, "acceptance-all", &[])?;
    all.subscribe(&["acceptance"])?;
    let got = consume(&all, 100_000, Duration::from_secs(180)).await?;
    let ids: BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == 100_000, "{} distinct of 100000", ids.len());
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (_, partition, offset) in &got {
        if let Some(o) = last.get(partition) {
            ensure!(offset > o, "partition {partition} went back");
        }
        last.insert(*partition, *offset);
    }
    let resumed = consumer(&via, "acceptance-readers", &[])?;
    resumed.subscribe(&["acceptance"])?;
    let rest = consume(&resumed, 70_000, Duration::from_secs(180)).await?;
    ensure!(
        rest.iter().all(|(i, ..)| *i >= 30_000),
        "the group started over"
    );
    proxy.shutdown().await;
    Ok(())
}

/// Partition `partition`'s leader of `topic`, as the broker at `addr` says.
async fn listed_leader(addr: std::net::SocketAddr, topic: &str, partition: i32) -> Result<i32> {
    let (_, leaders, _) = view_at(addr, topic).await?;
    leaders
        .get(usize::try_from(partition)?)
        .copied()
        .context("no such partition")
}
