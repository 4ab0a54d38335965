//! Faults and abuse through the proxy, with the real broker behind it and
//! a TCP fault relay ([`gatehouse_tests::relay::FaultRelay`]) between them
//! where the cluster must misbehave: an upstream that stalls, a client that
//! never reads its responses, a client that trickles a frame.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::{Proxy, ProxyConfig};
use gatehouse_tests::relay::FaultRelay;
use gatehouse_tests::{record_batch_of, RawClient, TestBroker};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker_protocol::{create, produce_one};

fn local0() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

fn produce_request(topic: &str, batch: bytes::Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])])
}

/// Waits until `counter` has not moved for `quiet`, within `limit`; its
/// value then.
async fn settles(counter: &AtomicUsize, quiet: Duration, limit: Duration) -> Result<usize> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = counter.load(Ordering::Relaxed);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(now);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "still moving after {limit:?}: {now}"
        );
    }
}

/// The cluster stops answering one connection: the proxy stops reading
/// that client once its in-flight limit is reached (back-pressure, not
/// buffering), other clients are served on connections of their own, and
/// the stalled client's requests are answered once the cluster returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_holds_back_only_its_own_client() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut direct = RawClient::connect(broker.broker_addr()).await?;
    create(&mut direct, "faults.stall", 1, &[]).await?;
    let relay = FaultRelay::start(broker.broker_addr()).await?;
    let mut config = ProxyConfig::new(local0(), relay.addr().to_string());
    config.limits.max_in_flight = 16;
    let proxy = Proxy::start(config).await?;

    let mut a = RawClient::connect(proxy.local_addr()).await?;
    let _: MetadataResponse = a
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await?;
    relay.stall_existing();

    // A pipelines 400 produce requests of 256 KiB (100 MiB) without
    // waiting for answers.
    let value = "v".repeat(256 * 1024);
    let frame = a.frame(
        ApiKey::Produce,
        9,
        &produce_request("faults.stall", record_batch_of(&[("k", &value)])?),
    )?;
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..400 {
            a.send_raw(&frame).await?;
            s.fetch_add(frame.len(), Ordering::Relaxed);
        }
        // Once everything is in, the first answer arrives.
        let answer = a.read_frame().await?;
        anyhow::Ok(answer)
    });
    let held = settles(&sent, Duration::from_millis(750), Duration::from_secs(30)).await?;
    eprintln!("stalled upstream: the client got {held} bytes of 100 MiB in");
    // 16 requests in flight at the proxy, and what the sockets hold.
    ensure!(
        held < 40 << 20,
        "the proxy took {held} bytes from a client whose cluster stalled"
    );

    // Another client, another upstream connection: served.
    let mut b = RawClient::connect(proxy.local_addr()).await?;
    let (code, _) = produce_one(&mut b, "faults.stall", 0, record_batch_of(&[("k", "v")])?).await?;
    ensure!(
        code == 0,
        "produce while another client's upstream stalls: {code}"
    );

    // The cluster returns: the stalled client is answered.
    relay.resume();
    let answer = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .context("the stalled client was never answered")???;
    ensure!(answer.len() > 8);
    proxy.shutdown().await;
    Ok(())
}

/// Twenty clients each send an 8 MiB produce request while the cluster
/// stalls: the proxy holds at most `max_buffered_bytes` (32 MiB) of them,
/// not 160 MiB; a client with a small request is served meanwhile, and
/// every large one is answered once the cluster returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_requests_to_a_stalled_cluster_are_held_to_the_buffer_budget() -> Result<()> {
    const CLIENTS: usize = 20;
    let broker = TestBroker::start().await?;
    let mut direct = RawClient::connect(broker.broker_addr()).await?;
    create(&mut direct, "faults.budget", 1, &[]).await?;
    let relay = FaultRelay::start(broker.broker_addr()).await?;
    let mut config = ProxyConfig::new(local0(), relay.addr().to_string());
    config.limits.max_frame_bytes = 16 << 20;
    config.limits.max_buffered_bytes = 32 << 20;
    let proxy = Proxy::start(config).await?;
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut c = RawClient::connect(proxy.local_addr()).await?;
        let _: MetadataResponse = c
            .call(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            )
            .await?;
        clients.push(c);
    }
    relay.stall_existing();
    let rss_before = rss_bytes()?;
    let value = "v".repeat(8 << 20);
    let frame = clients[0].frame(
        ApiKey::Produce,
        9,
        &produce_request("faults.budget", record_batch_of(&[("k", &value)])?),
    )?;
    drop(value);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for mut c in clients {
        let (frame, sent) = (frame.clone(), sent.clone());
        writers.push(tokio::spawn(async move {
            c.send_raw(&frame).await?;
            sent.fetch_add(1, Ordering::Relaxed);
            c.read_frame().await
        }));
    }
    // Sampled while the clients push.
    let started = tokio::time::Instant::now();
    let mut watch = 0;
    while started.elapsed() < Duration::from_secs(3) {
        watch = watch.max(proxy.buffered_bytes());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let grown = rss_bytes()?.saturating_sub(rss_before);
    eprintln!(
        "{CLIENTS} clients x 8 MiB to a stalled cluster: {} sent whole, proxy held at most {} MiB of requests, RSS grew {} MiB",
        sent.load(Ordering::Relaxed),
        watch >> 20,
        grown >> 20
    );
    ensure!(
        watch <= 32 << 20 && watch > 0,
        "held {watch} bytes of large requests"
    );
    ensure!(
        grown < 96 << 20,
        "RSS grew {} MiB with the cluster stalled",
        grown >> 20
    );
    // A small request on a connection of its own is served.
    let mut small = RawClient::connect(proxy.local_addr()).await?;
    let (code, _) = produce_one(
        &mut small,
        "faults.budget",
        0,
        record_batch_of(&[("k", "v")])?,
    )
    .await?;
    ensure!(code == 0, "small produce while the budget is taken: {code}");
    // The cluster returns: every large request is answered.
    relay.resume();
    for w in writers {
        let answer = tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .context("a large request was never answered")???;
        ensure!(answer.len() > 8);
    }
    ensure!(
        proxy.buffered_bytes() == 0,
        "{} bytes still held",
        proxy.buffered_bytes()
    );
    proxy.shutdown().await;
    Ok(())
}

/// A client that sends Fetch requests and never reads the answers: the
/// proxy writes until the socket is full, then stops reading the cluster
/// and the client, so what it holds stays bounded; others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_to_a_bound() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut direct = RawClient::connect(broker.broker_addr()).await?;
    create(&mut direct, "faults.unread", 1, &[]).await?;
    let value = "r".repeat(512 * 1024);
    for _ in 0..16 {
        let (code, _) = produce_one(
            &mut direct,
            "faults.unread",
            0,
            record_batch_of(&[("k", &value)])?,
        )
        .await?;
        ensure!(code == 0);
    }
    let mut config = ProxyConfig::new(local0(), broker.broker_addr().to_string());
    config.limits.max_in_flight = 16;
    let proxy = Proxy::start(config).await?;
    let rss_before = rss_bytes()?;

    // 100,000 fetches of up to 8 MiB each from offset 0 (800 GiB asked
    // for; 10 MB of requests, more than socket buffers hold), none read.
    let mut c = RawClient::connect(proxy.local_addr()).await?;
    let fetch = kafka_protocol::messages::FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_max_bytes(8 << 20)
        .with_topics(vec![
            kafka_protocol::messages::fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("faults.unread")))
                .with_partitions(vec![
                    kafka_protocol::messages::fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(8 << 20),
                ]),
        ]);
    let frame = c.frame(ApiKey::Fetch, 12, &fetch)?;
    let sent = Arc::new(AtomicUsize::new(0));
    let s = sent.clone();
    let greedy = tokio::spawn(async move {
        for _ in 0..100_000 {
            if c.send_raw(&frame).await.is_err() {
                break;
            }
            s.fetch_add(1, Ordering::Relaxed);
        }
        c
    });
    let accepted = settles(&sent, Duration::from_millis(750), Duration::from_secs(30)).await?;
    ensure!(
        accepted < 100_000,
        "the proxy kept reading requests whose answers were not read"
    );
    let grown = rss_bytes()?.saturating_sub(rss_before);
    eprintln!(
        "client that never reads: {accepted} of 100,000 fetches taken, memory grew {} MiB",
        grown >> 20
    );
    // 16 in flight of 8 MiB each would be 128 MiB held; what the proxy
    // holds is one answer and the socket buffers.
    ensure!(
        grown < 96 << 20,
        "memory grew by {} MiB for a client that reads nothing",
        grown >> 20
    );

    // Others are served meanwhile.
    let mut other = RawClient::connect(proxy.local_addr()).await?;
    let m: MetadataResponse = other
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await?;
    ensure!(m.brokers.len() == 1);
    greedy.abort();
    proxy.shutdown().await;
    Ok(())
}

/// A frame trickled a byte at a time (slow-loris) never counts as
/// activity: the connection is closed after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_frame_is_cut_off_at_the_idle_timeout() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut config = ProxyConfig::new(local0(), broker.broker_addr().to_string());
    config.limits.idle_timeout_secs = 1;
    let proxy = Proxy::start(config).await?;
    let mut c = RawClient::connect(proxy.local_addr()).await?;
    c.send_raw(&1000u32.to_be_bytes()).await?;
    let started = tokio::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if c.send_raw(&[0]).await.is_err() {
            closed = true;
            break;
        }
        if c.expect_closed(Duration::from_millis(200)).await.is_ok() {
            closed = true;
            break;
        }
    }
    ensure!(closed, "a trickling client was kept for 10 s");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    proxy.shutdown().await;
    Ok(())
}

/// This process's resident set size.
fn rss_bytes() -> Result<usize> {
    vm_rss("/proc/self/status")
}

/// The VmRSS of a `/proc/<pid>/status` file, in bytes.
fn vm_rss(status: &str) -> Result<usize> {
    let status = std::fs::read_to_string(status)?;
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb * 1024)
}

/// Connections held open without logging in: the connection limit holds,
/// memory stays small per connection, and each is closed at the
/// authentication deadline, after which a client that logs in is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_that_never_log_in_are_closed() -> Result<()> {
    const HELD: usize = 2_000;
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users.toml");
    let mut store = gatehouse_sasl::CredentialStore::new();
    store.insert(gatehouse_sasl::User::new_with_password(
        "ingest",
        "ingest-pass",
        4096,
        Default::default(),
    )?)?;
    std::fs::write(&users, store.to_toml()?)?;
    let mut config = ProxyConfig::new(local0(), broker.broker_addr().to_string());
    config.auth = Some(toml::from_str(&format!(
        "mechanisms = [\"PLAIN\"]\ncredentials_file = {:?}\n",
        users.display().to_string()
    ))?);
    config.limits.max_connections = HELD;
    config.limits.auth_timeout_secs = 2;
    let proxy = Proxy::start(config).await?;
    let rss_before = rss_bytes()?;
    let mut idle = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        idle.push(RawClient::connect(proxy.local_addr()).await?);
    }
    // Every place is taken: one more is closed at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy.open_connections() < HELD {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{} of {HELD} connections open",
            proxy.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_connection = rss_bytes()?.saturating_sub(rss_before) / HELD;
    eprintln!("{HELD} idle connections: {per_connection} bytes each");
    ensure!(
        per_connection < 256 << 10,
        "{per_connection} bytes per idle connection"
    );
    let mut extra = RawClient::connect(proxy.local_addr()).await?;
    extra.expect_closed(Duration::from_secs(5)).await?;
    // At the deadline they are closed, and a client that logs in is served.
    for c in idle.iter_mut().take(10) {
        c.expect_closed(Duration::from_secs(10)).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = RawClient::connect(proxy.local_addr()).await?;
        if let Ok(a) = crate::identity::sasl_once(
            &mut c,
            "PLAIN",
            crate::identity::plain("ingest", "ingest-pass"),
        )
        .await
        {
            ensure!(a.error_code == 0, "{a:?}");
            let m: MetadataResponse = c
                .call(
                    ApiKey::Metadata,
                    12,
                    &MetadataRequest::default().with_topics(None),
                )
                .await?;
            ensure!(m.brokers.len() == 1);
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no place freed for a client that logs in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(idle);
    proxy.shutdown().await;
    Ok(())
}

/// The resident set size of process `pid`, and how many descriptors it
/// has open.
fn process_usage(pid: u32) -> Result<(usize, usize)> {
    let rss = vm_rss(&format!("/proc/{pid}/status"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok((rss, fds))
}

/// 10,000 connections opened from one address and held without a word:
/// the proxy (a process of its own) takes them all with little memory each
/// and dials the cluster for none of them; one more from that address is
/// closed at once (`max_connections_per_ip`), and a client on another
/// address logs in, produces and reads meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_leave_room_for_other_clients() -> Result<()> {
    const HELD: usize = 10_000;
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let users = dir.path().join("users.toml");
    let mut store = gatehouse_sasl::CredentialStore::new();
    store.insert(gatehouse_sasl::User::new_with_password(
        "ingest",
        "ingest-pass",
        4096,
        Default::default(),
    )?)?;
    std::fs::write(&users, store.to_toml()?)?;
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[listener]\nbind = \"127.0.0.1:0\"\n\n[upstream]\nbootstrap_servers = [\"{}\"]\n\n\
             [auth]\nmechanisms = [\"PLAIN\"]\ncredentials_file = {:?}\n\n\
             [limits]\nmax_connections = {}\nmax_connections_per_ip = {HELD}\nauth_timeout_secs = 600\n",
            broker.broker_addr(),
            users.display().to_string(),
            HELD + 100,
        ),
    )?;
    let (child, addr, _) = crate::erasure::serve_process_listening(&config, None).await?;
    let pid = child.id().context("proxy pid")?;
    let (rss_before, fds_before) = process_usage(pid)?;
    let ours_before = std::fs::read_dir("/proc/self/fd")?.count();
    let started = tokio::time::Instant::now();
    let abuser: std::net::IpAddr = "127.0.0.2".parse()?;
    let mut idle = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        idle.push(RawClient::connect_from(addr, abuser).await?);
    }
    // The proxy has accepted every one of them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (rss, fds) = loop {
        let (rss, fds) = process_usage(pid)?;
        if fds >= fds_before + HELD {
            break (rss, fds);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the proxy holds {} of {HELD} connections",
            fds.saturating_sub(fds_before)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let per_connection = rss.saturating_sub(rss_before) / HELD;
    eprintln!(
        "{HELD} idle connections opened in {:?}: proxy RSS {} -> {} MB, {per_connection} bytes each",
        started.elapsed(),
        rss_before >> 20,
        rss >> 20
    );
    ensure!(
        per_connection < 32 << 10,
        "{per_connection} bytes per idle connection"
    );
    // Not one of them reached the cluster: the proxy holds one descriptor
    // per client connection, and the broker (in this process) none more.
    ensure!(
        fds < fds_before + HELD + 50,
        "the proxy holds {fds} descriptors for {HELD} connections"
    );
    let ours = std::fs::read_dir("/proc/self/fd")?.count();
    ensure!(
        ours < ours_before + HELD + 200,
        "{} descriptors here for {HELD} client sockets: the cluster was dialled",
        ours - ours_before
    );
    // One more from that address is closed at once.
    let mut extra = RawClient::connect_from(addr, abuser).await?;
    extra.expect_closed(Duration::from_secs(5)).await?;
    // A client on another address is served: it logs in, produces and
    // reads back.
    let served = tokio::time::Instant::now();
    let creds = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "PLAIN"),
        ("sasl.username", "ingest"),
        ("sasl.password", "ingest-pass"),
    ];
    let bootstrap = addr.to_string();
    crate::support::create_topic(&broker.broker_addr().to_string(), "busy", 1, &[]).await?;
    let producer = crate::support::producer(&bootstrap, &creds)?;
    for i in 0..20 {
        producer
            .send(
                rdkafka::producer::FutureRecord::to("busy")
                    .key("k")
                    .payload(&format!("record {i}")),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let read = crate::policy::read_from(&bootstrap, "busy", &creds, "busy", 1).await?;
    ensure!(read.len() == 20, "read {} of 20", read.len());
    eprintln!(
        "a client on another address produced and read 20 records in {:?}",
        served.elapsed()
    );
    // Closed, they give their places back.
    drop(idle);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while process_usage(pid)?.1 > fds_before + 50 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the proxy still holds {} descriptors",
            process_usage(pid)?.1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = RawClient::connect_from(addr, abuser).await?;
    let v: kafka_protocol::messages::ApiVersionsResponse = again
        .call(
            ApiKey::ApiVersions,
            3,
            &kafka_protocol::messages::ApiVersionsRequest::default(),
        )
        .await?;
    ensure!(v.error_code == 0 && !v.api_keys.is_empty(), "{v:?}");
    drop(child);
    Ok(())
}

/// Produces `n` posts to `social.posts`, each by its own author `u-NNN`
/// (key and subject) with an email, and `text`; waits for every ack.
async fn produce_posts(
    producer: &rdkafka::producer::FutureProducer,
    n: usize,
    text: &str,
) -> Result<()> {
    for i in 0..n {
        let author = format!("u-{i:03}");
        let value = serde_json::json!({
            "id": format!("p-{i}"),
            "author": {"id": author, "email": format!("{author}@example.com")},
            "text": text
        })
        .to_string();
        producer
            .send(
                rdkafka::producer::FutureRecord::to("social.posts")
                    .key(&author)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Mounted {
    /// A tmpfs of `size` (e.g. `16m`) at `at`; `None` where this process may
    /// not mount (not root).
    fn tmpfs(at: &std::path::Path, size: &str) -> Result<Option<Self>> {
        std::fs::create_dir_all(at)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status();
        Ok(matches!(status, Ok(s) if s.success()).then(|| Mounted(at.to_path_buf())))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; its path.
fn fill_disk(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write_all(&chunk).and_then(|()| f.sync_data()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return Ok(path),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `log` contains `needle`; the last line that does.
async fn logged(log: &std::path::Path, needle: &str, within: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().rfind(|l| l.contains(needle)) {
            return Ok(line.to_string());
        }
        if tokio::time::Instant::now() >= deadline {
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            anyhow::bail!(
                "no log line with {needle:?}; the log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit trail's disk fills up under a running governed proxy (a
/// process of its own, its audit directory on a small tmpfs): a governed
/// read is refused (no delivery without its event) with a clear log line;
/// once space returns the same consumer gets every record, a `recovery`
/// event records what the failed writes left, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_audit_disk_refuses_data_until_space_returns() -> Result<()> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    // Enough distinct authors that the delivery events (which name each
    // subject's hash) outgrow what is left of the segment's last page.
    const POSTS: usize = 200;
    let w = crate::policy::World::start().await?;
    let mnt = w.dir.path().join("audit-disk");
    let Some(_mounted) = Mounted::tmpfs(&mnt, "16m")? else {
        eprintln!("SKIPPED: this process may not mount a tmpfs (it must run as root)");
        return Ok(());
    };
    let audit = mnt.join("audit");
    let config = crate::erasure::process_config(&w, "full")?;
    let text = std::fs::read_to_string(&config)?.replace(
        &toml::Value::String(
            w.dir
                .path()
                .join("audit-full")
                .to_string_lossy()
                .into_owned(),
        )
        .to_string(),
        &toml::Value::String(audit.to_string_lossy().into_owned()).to_string(),
    );
    ensure!(text.contains("audit-disk"), "audit dir not moved: {text}");
    std::fs::write(&config, text)?;
    let log = w.dir.path().join("proxy.log");
    let (child, addr, _) = crate::erasure::serve_process_logged(&config, None, Some(&log)).await?;
    let bootstrap = addr.to_string();
    let opts = |who: &str| -> Vec<(String, String)> {
        let mut o = crate::policy::World::creds(who);
        o.push(("reconnect.backoff.max.ms".into(), "500".into()));
        o
    };
    let ingest = opts("ingest");
    let ingest: Vec<(&str, &str)> = ingest
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let producer = crate::support::producer(&bootstrap, &ingest)?;
    produce_posts(&producer, POSTS, "disk").await?;
    // The disk is full: trust-safety (who may read posts in clear) gets
    // nothing, and the log says why.
    let filler = fill_disk(&mnt)?;
    let reader = opts("trust-safety");
    let reader: Vec<(&str, &str)> = reader
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let consumer: rdkafka::consumer::StreamConsumer =
        crate::support::consumer(&bootstrap, "trust-safety-disk", &reader)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("social.posts", p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let line = logged(&log, "audit log write failed", Duration::from_secs(30)).await?;
    eprintln!("logged: {line}");
    ensure!(line.contains("No space left on device"), "{line}");
    // Errors only (logins and reads are refused: neither can be recorded),
    // for three seconds.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(m) = tokio::time::timeout_at(until, consumer.recv()).await {
        if let Ok(m) = m {
            anyhow::bail!(
                "offset {} was delivered while the audit disk was full",
                m.offset()
            );
        }
    }
    // Space returns: the same consumer gets every post.
    std::fs::remove_file(&filler)?;
    let freed = tokio::time::Instant::now();
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got < POSTS {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| format!("{got} of {POSTS} read once space returned"))?;
        if let Ok(m) = m {
            ensure!(m.payload().is_some());
            got += 1;
        }
    }
    let resumed = logged(&log, "audit log writable again", Duration::from_secs(5)).await?;
    eprintln!(
        "all {POSTS} posts read {:?} after space returned; logged: {resumed}",
        freed.elapsed()
    );
    drop(consumer);
    drop(producer);
    // Stopped cleanly, the chain verifies and holds the recovery.
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()?;
    }
    let mut child = child;
    tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    let verified = gatehouse_audit::verify(std::slice::from_ref(&audit))?;
    ensure!(verified.is_clean(), "{verified:?}");
    let mut recoveries = 0;
    for e in std::fs::read_dir(&audit)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            recoveries += std::fs::read_to_string(&p)?
                .matches("\"type\":\"recovery\"")
                .count();
        }
    }
    ensure!(recoveries >= 1, "no recovery event in the chain");
    Ok(())
}

/// The key-encryption key file unreadable or lost, under a governed proxy
/// process: a file that cannot be read (a directory in its place, or
/// garbage) stops the proxy at start with an error naming it, so nothing
/// is served; a key file replaced by a new one (the old keys lost) serves
/// posts whose encrypted fields are removed (`no_key` in the audit trail),
/// never in clear and never as ciphertext, to a reader entitled to them in
/// clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_or_lost_key_file_fails_closed() -> Result<()> {
    let w = crate::policy::World::start().await?;
    let producer = w.producer("ingest")?;
    produce_posts(&producer, 5, "keys").await?;
    let kek = toml::Value::String(w.dir.path().join("kek.toml").to_string_lossy().into_owned())
        .to_string();
    let with_key_file = |name: &str, key_file: &std::path::Path| -> Result<std::path::PathBuf> {
        let config = crate::erasure::process_config(&w, name)?;
        let text = std::fs::read_to_string(&config)?.replace(
            &kek,
            &toml::Value::String(key_file.to_string_lossy().into_owned()).to_string(),
        );
        std::fs::write(&config, text)?;
        Ok(config)
    };
    // Unreadable: the proxy does not start, and says which file.
    let as_dir = w.dir.path().join("kek-dir");
    std::fs::create_dir(&as_dir)?;
    let garbage = w.dir.path().join("kek-garbage.toml");
    std::fs::write(&garbage, "this is = not [ a key file")?;
    // Private to their owner, as a key file must be: what stops the proxy
    // is that neither can be read as one.
    use std::os::unix::fs::PermissionsExt;
    for p in [&as_dir, &garbage] {
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    }
    for (name, key_file) in [("dir", &as_dir), ("garbage", &garbage)] {
        let config = with_key_file(name, key_file)?;
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-serve"))
                .arg(&config)
                .output(),
        )
        .await
        .context("the proxy neither started nor stopped")??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && !stdout.contains("listening"),
            "started with an unreadable key file ({name}): {stdout}"
        );
        ensure!(
            stderr.contains(&*key_file.to_string_lossy()),
            "the error does not name the key file ({name}): {stderr}"
        );
        eprintln!(
            "{name}: {}",
            stderr
                .lines()
                .find(|l| l.contains("key file"))
                .unwrap_or(&stderr)
        );
    }
    // Lost: a new key file, the data keys on the key topic cannot be
    // unwrapped. trust-safety, who reads posts in clear, gets them without
    // the encrypted email.
    let config = with_key_file("lost", &w.dir.path().join("kek-new.toml"))?;
    let (child, addr, _) = crate::erasure::serve_process_listening(&config, None).await?;
    let read = crate::policy::read_records(addr, "trust-safety", "social.posts", 3).await?;
    ensure!(read.len() == 5, "read {} of 5", read.len());
    for r in &read {
        let v: serde_json::Value = serde_json::from_str(&r.value)?;
        ensure!(
            v["author"].get("email").is_none() && v["text"] == "keys",
            "with the key lost, trust-safety got {}",
            r.value
        );
    }
    drop(child);
    let events = gatehouse_audit::query(
        &[w.dir.path().join("audit-lost")],
        &gatehouse_audit::Query::default(),
    )?;
    let no_key = events.iter().any(|e| {
        matches!(&e.kind, gatehouse_audit::EventKind::Delivery { fields, .. }
            if fields.get("no_key").is_some_and(|f| f.iter().any(|p| p.contains("email"))))
    });
    ensure!(no_key, "no delivery recorded the email as no_key");
    // With the key file it was written under, the same reader gets it.
    let read = w.read_all("trust-safety", "social.posts", 3).await?;
    ensure!(
        read.iter().all(|(_, v)| v.contains("@example.com")),
        "{read:?}"
    );
    Ok(())
}

/// A broker process SIGKILLed and started again on its port and data
/// while an idempotent acks=all producer writes and a consumer group reads
/// through the proxy: the producer's records are all acknowledged, the
/// cluster holds each once, and the group reads every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_while_clients_produce_and_consume_through_the_proxy() -> Result<()> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    const RECORDS: usize = 6_000;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let lease = Duration::from_millis(1_500);
    let mut broker = crate::broker_cluster::BrokerProcess::start(0, &data, lease).await?;
    let broker_addr = broker.addr;
    let proxy = Proxy::start(ProxyConfig::new(local0(), broker_addr.to_string())).await?;
    let via = proxy.local_addr().to_string();
    let mut c = RawClient::connect(broker_addr).await?;
    create(&mut c, "killed", 3, &[]).await?;
    drop(c);
    let producer = crate::support::producer(
        &via,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "120000"),
        ],
    )?;
    let consumer: rdkafka::consumer::StreamConsumer = crate::support::consumer(
        &via,
        "killed-readers",
        &[("reconnect.backoff.max.ms", "500")],
    )?;
    consumer.subscribe(&["killed"])?;
    // The reader, all along: every record index it gets.
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let first_after_restart = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    let reader = {
        let (seen, first) = (seen.clone(), first_after_restart.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
            loop {
                let Ok(m) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
                    return;
                };
                let Ok(m) = m else { continue };
                let Some(i) = m.payload().and_then(|p| crate::support::index_of(p).ok()) else {
                    continue;
                };
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if i >= RECORDS / 3 {
                    first
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(tokio::time::Instant::now);
                }
                seen.insert(i);
                if seen.len() == RECORDS {
                    return;
                }
            }
        })
    };
    crate::support::produce(&producer, "killed", "before", 0..RECORDS / 3).await?;
    // Killed once the group is reading.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap_or_else(|p| p.into_inner()).len() < RECORDS / 6 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the group read nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read_before = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    broker.child.start_kill()?;
    broker.child.wait().await?;
    let killed = tokio::time::Instant::now();
    // Records sent while the broker is down wait in the producer.
    let during = {
        let p = producer.clone();
        tokio::spawn(async move {
            crate::support::produce(&p, "killed", "during", RECORDS / 3..2 * RECORDS / 3).await
        })
    };
    broker = crate::broker_cluster::BrokerProcess::start_on(
        0,
        &data.to_string_lossy(),
        lease,
        Some(broker_addr),
        &[],
    )
    .await?;
    let restarted = tokio::time::Instant::now();
    during.await??;
    crate::support::produce(&producer, "killed", "after", 2 * RECORDS / 3..RECORDS).await?;
    reader.await?;
    let read = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    let recovered = first_after_restart
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map(|t| t.saturating_duration_since(restarted));
    eprintln!(
        "broker killed with {read_before} of {} read; back after {:?}; the group read its first later record {recovered:?} after that; {read} of {RECORDS} read",
        RECORDS / 3,
        restarted - killed
    );
    ensure!(read == RECORDS, "the group read {read} of {RECORDS}");
    // Stored once each: a fresh reader gets exactly RECORDS.
    let all = crate::support::consumer(&broker_addr.to_string(), "killed-check", &[])?;
    all.subscribe(&["killed"])?;
    let got = crate::support::consume(&all, RECORDS, Duration::from_secs(60)).await?;
    let ids: std::collections::BTreeSet<usize> = got.iter().map(|(i, ..)| *i).collect();
    ensure!(ids.len() == RECORDS, "{} distinct of {RECORDS}", ids.len());
    let extra = tokio::time::timeout(Duration::from_millis(500), all.recv()).await;
    ensure!(extra.is_err(), "more than {RECORDS} records stored");
    proxy.shutdown().await;
    drop(broker);
    Ok(())
}

/// A free loopback port (bound, then released).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The governed proxy, a process of its own, SIGKILLed while an
/// idempotent acks=all producer writes protected posts through it, and
/// started again on the same ports: the producer carries on, every record
/// is stored exactly once (encrypted), and the audit chain of the killed
/// process verifies once reopened and closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_under_load_loses_and_duplicates_nothing() -> Result<()> {
    use rdkafka::producer::FutureRecord;
    const RECORDS: usize = 3_000;
    let w = crate::policy::World::start().await?;
    let config = crate::erasure::process_config(&w, "killed")?;
    // Fixed ports, so that clients find the restarted proxy where they
    // left it.
    let (port, nodes) = (free_port()?, free_port()?);
    let text = std::fs::read_to_string(&config)?.replacen(
        "bind = \"127.0.0.1:0\"\n\n[upstream]",
        &format!("bind = \"127.0.0.1:{port}\"\nnode_port_base = {nodes}\n\n[upstream]"),
        1,
    );
    std::fs::write(&config, text)?;
    let (child, _) = crate::erasure::serve_process(&config, None).await?;
    let mut child = Some(child);
    let creds = crate::policy::World::creds("ingest");
    let mut options: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    options.extend([
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("message.timeout.ms", "120000"),
        ("linger.ms", "5"),
    ]);
    let producer = crate::support::producer(&format!("127.0.0.1:{port}"), &options)?;
    let mut pending = Vec::with_capacity(RECORDS);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut killed_at = None;
    let mut restarted = None;
    for i in 0..RECORDS {
        let subject = format!("u-{:06}", i % 50);
        let value = serde_json::json!({
            "id": format!("p-{i}"),
            "author": {"id": subject, "email": format!("{subject}@example.com")},
            "text": "soak"
        })
        .to_string();
        let fut = producer
            .send_result(
                FutureRecord::to("social.posts")
                    .key(&subject)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)?;
        let a = acked.clone();
        pending.push(tokio::spawn(async move {
            let r = fut.await;
            if matches!(r, Ok(Ok(_))) {
                a.fetch_add(1, Ordering::Relaxed);
            }
            r
        }));
        // A third of the way, once records are acknowledged: SIGKILL, and
        // start it again.
        if i == RECORDS / 3 {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.load(Ordering::Relaxed) < RECORDS / 6 {
                ensure!(
                    tokio::time::Instant::now() < deadline,
                    "nothing acknowledged"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Some(mut c) = child.take() {
                c.start_kill()?;
                c.wait().await?;
            }
            killed_at = Some((acked.load(Ordering::Relaxed), tokio::time::Instant::now()));
            let (c, _) = crate::erasure::serve_process(&config, None).await?;
            restarted = Some(tokio::time::Instant::now());
            child = Some(c);
        }
    }
    for p in pending {
        match p.await? {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("a record was not acknowledged: {e}"),
            Err(_) => anyhow::bail!("delivery future cancelled"),
        }
    }
    let (acked_before_kill, killed) = killed_at.context("never killed")?;
    eprintln!(
        "proxy killed after {acked_before_kill} acks; restarted after {:?}; all {RECORDS} acknowledged",
        restarted.map(|r| r - killed)
    );
    // What the cluster holds: each post once, its email encrypted.
    let stored = crate::policy::read_from(
        &w.broker.broker_addr().to_string(),
        "soak-check",
        &[],
        "social.posts",
        3,
    )
    .await?;
    let mut ids = std::collections::BTreeMap::<String, usize>::new();
    for r in &stored {
        ensure!(
            !r.value.contains("@example.com"),
            "stored in clear: {}",
            r.value
        );
        let v: serde_json::Value = serde_json::from_str(&r.value)?;
        *ids.entry(v["id"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let duplicated = ids.values().filter(|n| **n > 1).count();
    ensure!(
        ids.len() == RECORDS && duplicated == 0,
        "{} distinct posts stored of {RECORDS}, {duplicated} duplicated",
        ids.len()
    );
    // The killed process's chain: reopened (a torn last line cut, and the
    // cut recorded) by the restarted process, closed cleanly: it verifies.
    if let Some(c) = child.take() {
        if let Some(pid) = c.id() {
            std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()?;
        }
        let mut c = c;
        tokio::time::timeout(Duration::from_secs(60), c.wait()).await??;
    }
    let verified = gatehouse_audit::verify(&[w.dir.path().join("audit-killed")])?;
    ensure!(verified.is_clean(), "{verified:?}");
    Ok(())
}
