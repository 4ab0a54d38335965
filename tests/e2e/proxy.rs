//! What is particular to the proxy: byte-for-byte passthrough, routing that
//! follows the cluster, an upstream that goes away, limits and shutdown.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::{Proxy, ProxyConfig};
use gatehouse_tests::{record_batch, RawClient, TestBroker, Via};
use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

use crate::broker_protocol::{create, produce_one};

fn all_topics() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

fn local0() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

fn fetch_request(topic: &str, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

/// Sends the same Fetch to the broker and to the proxy and returns the two
/// raw response frames.
async fn fetch_both(broker: &TestBroker, topic: &str) -> Result<(bytes::Bytes, bytes::Bytes)> {
    let mut out = Vec::new();
    for addr in [broker.broker_addr(), broker.addr()] {
        let mut c = RawClient::connect(addr).await?;
        let frame = c.frame(ApiKey::Fetch, 12, &fetch_request(topic, 0))?;
        c.send_raw(&frame).await?;
        out.push(c.read_frame().await?);
    }
    let proxied = out.pop().context("no proxied response")?;
    let direct = out.pop().context("no direct response")?;
    Ok((direct, proxied))
}

/// A topic no filter governs crosses the proxy byte for byte: the whole
/// Fetch response frame, record batches included, is what the broker sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungoverned_fetch_is_byte_identical() -> Result<()> {
    let broker = TestBroker::start_via(Via::Proxy).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "plain", 1, &[]).await?;
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let b = record_batch(-1, -1, -1, 20, 1_000 + i as i64, codec)?;
        ensure!(produce_one(&mut c, "plain", 0, b).await? == (0, i as i64 * 20));
    }
    let (direct, proxied) = fetch_both(&broker, "plain").await?;
    ensure!(direct.len() > 500, "fetch returned {} bytes", direct.len());
    ensure!(direct == proxied, "proxied fetch differs from direct");
    let resp: FetchResponse = RawClient::decode_response(ApiKey::Fetch, 12, direct)?;
    let records = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    ensure!(gatehouse_wire::check_record_batches(&records).is_ok());
    Ok(())
}

/// A large response that no filter reads is forwarded as it arrives
/// (streamed): it still arrives byte for byte, and an answer the proxy makes
/// itself for a request sent while the response is on its way waits until
/// the whole response is out; then the connection closes as that answer
/// says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_stream_through_in_order() -> Result<()> {
    use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
    let broker = TestBroker::start_via(Via::Proxy).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "large", 1, &[]).await?;
    let value = "v".repeat(500_000);
    for i in 0..16 {
        let b = gatehouse_tests::record_batch_of(&[("k", value.as_str())])?;
        ensure!(produce_one(&mut c, "large", 0, b).await? == (0, i));
    }
    let request = fetch_request("large", 0)
        .with_max_bytes(16 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("large")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(16 << 20)])]);
    let mut direct = RawClient::connect(broker.broker_addr()).await?;
    let frame = direct.frame(ApiKey::Fetch, 12, &request)?;
    direct.send_raw(&frame).await?;
    let expected = direct.read_frame().await?;
    ensure!(
        expected.len() > 7_000_000,
        "fetch returned {} bytes",
        expected.len()
    );

    let mut c = RawClient::connect(broker.addr()).await?;
    let fetch = c.frame(ApiKey::Fetch, 12, &request)?;
    c.send_raw(&fetch).await?;
    // The response has begun to arrive (and fills the socket buffers): ask
    // for something the proxy answers itself.
    let head = c.read_raw(8).await?;
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let frame = c.frame(ApiKey::SaslHandshake, 1, &handshake)?;
    c.send_raw(&frame).await?;
    ensure!(
        head[..4] == (expected.len() as i32).to_be_bytes(),
        "length differs"
    );
    let rest = c.read_raw(expected.len() - 4).await?;
    ensure!(
        head[4..] == expected[..4] && rest == expected[4..],
        "streamed fetch differs"
    );
    let refused: SaslHandshakeResponse =
        RawClient::decode_response(ApiKey::SaslHandshake, 1, c.read_frame().await?)?;
    ensure!(
        refused.error_code == 33,
        "handshake answered {}",
        refused.error_code
    );
    c.expect_closed(Duration::from_secs(5)).await?;
    Ok(())
}

/// When the cluster refuses connections, clients are disconnected cleanly
/// and the proxy keeps serving once the cluster is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_or_resetting() -> Result<()> {
    let mut broker = TestBroker::start_via(Via::Proxy).await?;
    // A client mid-conversation when the broker goes away is disconnected.
    let mut c = RawClient::connect(broker.addr()).await?;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &all_topics()).await?;
    let port = broker.broker_addr().port();
    let dead = ProxyConfig::new(local0(), format!("127.0.0.1:{}", closed_port()?));
    let lonely = Proxy::start(dead).await?;
    let mut refused = RawClient::connect(lonely.local_addr()).await?;
    let frame = refused.frame(ApiKey::Metadata, 12, &all_topics())?;
    refused.send_raw(&frame).await?;
    refused.expect_closed(Duration::from_secs(10)).await?;

    broker.crash_and_restart().await?;
    ensure!(broker.broker_addr().port() == port);
    c.expect_closed(Duration::from_secs(10)).await?;
    // New connections go through again.
    let mut again = RawClient::connect(broker.addr()).await?;
    let m: MetadataResponse = again.call(ApiKey::Metadata, 12, &all_topics()).await?;
    ensure!(m.brokers.len() == 1);
    lonely.shutdown().await;
    Ok(())
}

fn closed_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Shutdown lets a long-polling fetch finish before closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut raw = RawClient::connect(broker.broker_addr()).await?;
    create(&mut raw, "quiet", 1, &[]).await?;
    let proxy = Proxy::start(ProxyConfig::new(local0(), broker.broker_addr().to_string())).await?;
    let mut c = RawClient::connect(proxy.local_addr()).await?;
    let frame = c.frame(ApiKey::Fetch, 12, &fetch_request("quiet", 1_500))?;
    c.send_raw(&frame).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(proxy.shutdown());
    let resp: FetchResponse = RawClient::decode_response(ApiKey::Fetch, 12, c.read_frame().await?)?;
    ensure!(resp.responses[0].partitions[0].error_code == 0);
    ensure!(
        started.elapsed() >= Duration::from_millis(800),
        "the fetch was cut short"
    );
    c.expect_closed(Duration::from_secs(5)).await?;
    stopping.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_idle_timeout() -> Result<()> {
    let broker = TestBroker::start().await?;
    let mut config = ProxyConfig::new(local0(), broker.broker_addr().to_string());
    config.limits.max_connections = 2;
    config.limits.idle_timeout_secs = 1;
    let proxy = Proxy::start(config).await?;
    let mut a = RawClient::connect(proxy.local_addr()).await?;
    let mut b = RawClient::connect(proxy.local_addr()).await?;
    for c in [&mut a, &mut b] {
        let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &all_topics()).await?;
    }
    let mut third = RawClient::connect(proxy.local_addr()).await?;
    third.expect_closed(Duration::from_secs(5)).await?;
    // Idle connections are closed after the timeout, which frees places.
    a.expect_closed(Duration::from_secs(5)).await?;
    b.expect_closed(Duration::from_secs(5)).await?;
    let mut fourth = RawClient::connect(proxy.local_addr()).await?;
    let m: MetadataResponse = fourth.call(ApiKey::Metadata, 12, &all_topics()).await?;
    ensure!(m.brokers.len() == 1);
    proxy.shutdown().await;
    Ok(())
}

/// The node map follows the cluster: when node 0 comes back at another
/// address, the proxy's port for node 0 leads there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_a_node_that_moves() -> Result<()> {
    let first = TestBroker::start().await?;
    let mut raw = RawClient::connect(first.broker_addr()).await?;
    create(&mut raw, "moving", 1, &[]).await?;
    let second = TestBroker::start().await?;
    let mut raw2 = RawClient::connect(second.broker_addr()).await?;
    create(&mut raw2, "moved", 1, &[]).await?;
    let mut config = ProxyConfig::new(local0(), first.broker_addr().to_string());
    config
        .upstream
        .bootstrap_servers
        .push(second.broker_addr().to_string());
    let proxy = Proxy::start(config).await?;

    let topics = |m: &MetadataResponse| -> Vec<String> {
        m.topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect()
    };
    let mut c = RawClient::connect(proxy.local_addr()).await?;
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &all_topics()).await?;
    ensure!(topics(&m) == ["moving"]);
    let node_port = m.brokers[0].port;

    // Node 0 "moves": the first broker goes away, the second (also node 0)
    // answers the bootstrap instead.
    first.stop().await?;
    let mut c = RawClient::connect(proxy.local_addr()).await?;
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &all_topics()).await?;
    ensure!(topics(&m) == ["moved"]);
    ensure!(
        m.brokers[0].port == node_port,
        "node 0 keeps its proxy port"
    );
    let mut n = RawClient::connect(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        node_port as u16,
    )))
    .await?;
    let m: MetadataResponse = n.call(ApiKey::Metadata, 12, &all_topics()).await?;
    ensure!(
        topics(&m) == ["moved"],
        "the node port still leads to the old address"
    );
    proxy.shutdown().await;
    Ok(())
}

/// A filter that rewrites fetched values of one topic (upper case), and
/// drops records whose value says "secret": it exercises response
/// decoding, the record batch codec and re-encoding with real consumers.
#[derive(Debug)]
struct Shout;

impl gatehouse_proxy::filter::Filter for Shout {
    fn name(&self) -> &'static str {
        "shout"
    }

    fn wants(&self, api: ApiKey, direction: gatehouse_proxy::filter::Direction) -> bool {
        api == ApiKey::Fetch && direction == gatehouse_proxy::filter::Direction::Response
    }

    fn on_response<'a>(
        &'a self,
        _s: &'a gatehouse_proxy::filter::SessionContext,
        r: &'a mut gatehouse_proxy::filter::Response,
    ) -> gatehouse_proxy::filter::FilterFuture<'a, gatehouse_proxy::filter::ResponseAction> {
        use gatehouse_proxy::codec::records::{
            rewrite_records, RecordsError, RecordsOptions, Verdict,
        };
        use gatehouse_proxy::filter::ResponseAction;
        let mut outcome = ResponseAction::Continue;
        if let kafka_protocol::messages::ResponseKind::Fetch(f) = &mut r.body {
            for t in f
                .responses
                .iter_mut()
                .filter(|t| t.topic.0.as_str() == "shout")
            {
                for p in &mut t.partitions {
                    let Some(records) = &p.records else { continue };
                    let result = rewrite_records(records, &RecordsOptions::fetch(), |_, rec| {
                        let Some(v) = &rec.value else {
                            return Ok::<_, RecordsError>(Verdict::Keep);
                        };
                        if v.as_ref() == b"secret" {
                            return Ok(Verdict::Drop);
                        }
                        rec.value = Some(bytes::Bytes::from(v.to_ascii_uppercase()));
                        Ok(Verdict::Keep)
                    });
                    match result {
                        Ok(rw) => p.records = Some(rw.records),
                        Err(e) => outcome = ResponseAction::Close(e.to_string()),
                    }
                }
            }
        }
        Box::pin(async move { outcome })
    }
}

/// Real consumers (librdkafka through rdkafka, and kcat) read batches the
/// proxy decoded and re-encoded, for every codec, including batches whose
/// records were all removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_read_rewritten_batches_for_every_codec() -> Result<()> {
    use rdkafka::consumer::Consumer;
    use rdkafka::producer::FutureRecord;
    use rdkafka::Message;
    let broker = TestBroker::start().await?;
    let direct = broker.broker_addr().to_string();
    crate::support::create_topic(&direct, "shout", 1, &[]).await?;
    let mut expected = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let p =
            crate::support::producer(&direct, &[("compression.type", codec), ("linger.ms", "20")])?;
        let mut pending = Vec::new();
        for i in 0..50 {
            let value = if i % 10 == 9 {
                "secret".to_string()
            } else {
                format!("{codec} value {i}")
            };
            if value != "secret" {
                expected.push(value.to_uppercase());
            }
            pending.push(
                p.send_result(FutureRecord::to("shout").key("k").payload(&value))
                    .map_err(|(e, _)| e)?,
            );
        }
        // A batch of secrets only: after the filter, an empty batch.
        for _ in 0..3 {
            pending.push(
                p.send_result(FutureRecord::to("shout").key("k").payload("secret"))
                    .map_err(|(e, _)| e)?,
            );
        }
        for f in pending {
            if !matches!(f.await, Ok(Ok(_))) {
                anyhow::bail!("produce failed");
            }
        }
    }
    let proxy = Proxy::start_with_filters(
        ProxyConfig::new(local0(), direct.clone()),
        vec![std::sync::Arc::new(Shout)],
    )
    .await?;
    let b = proxy.local_addr().to_string();
    let c = crate::support::consumer(&b, "shouters", &[])?;
    c.subscribe(&["shout"])?;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < expected.len() {
        let m = tokio::time::timeout_at(deadline, c.recv())
            .await
            .context("timed out")??;
        got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    ensure!(got == expected, "rdkafka read {got:?}");
    let out = gatehouse_tests::clients::kcat(
        &["-b", &b, "-t", "shout", "-C", "-e", "-q"],
        None,
        Duration::from_secs(60),
    )
    .await?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines == expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "kcat read {lines:?}"
    );
    // The emptied batch at the end still advances the consumer: a record
    // produced after it arrives.
    let p = crate::support::producer(&direct, &[])?;
    p.send(
        FutureRecord::to("shout").key("k").payload("after"),
        Duration::from_secs(5),
    )
    .await
    .map_err(|(e, _)| e)?;
    let m = tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .context("stuck behind the empty batch")??;
    ensure!(m.payload() == Some(b"AFTER".as_slice()));
    proxy.shutdown().await;
    Ok(())
}

/// A passthrough proxy (no `[admin]`) serves its metrics and probes on
/// `[telemetry] listen`: the requests it forwarded are counted, and
/// `/readyz` follows the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_proxy_serves_metrics_and_probes() -> Result<()> {
    use crate::admin::get;
    let broker = TestBroker::start().await?;
    let mut config = ProxyConfig::new(local0(), broker.broker_addr().to_string());
    config.telemetry = Some(gatehouse_telemetry::TelemetryConfig {
        listen: Some(local0()),
        ..Default::default()
    });
    let proxy = Proxy::start(config).await?;
    let metrics = proxy.metrics_addr().context("the metrics listener")?;
    let bootstrap = proxy.local_addr().to_string();
    crate::support::create_topic(&bootstrap, "metrics.passthrough", 1, &[]).await?;
    let producer = crate::support::producer(&bootstrap, &[])?;
    crate::support::produce(&producer, "metrics.passthrough", "m", 0..50).await?;
    let m = get(metrics, "/metrics", None).await?;
    ensure!(m.status == 200, "{}", m.status);
    let produced: f64 = m
        .body
        .lines()
        .filter(|l| {
            l.starts_with("gatehouse_proxy_requests_total{")
                && l.contains("api=\"Produce\"")
                && l.contains("outcome=\"forwarded\"")
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    ensure!(produced >= 1.0, "no produce counted: {}", m.body);
    ensure!(get(metrics, "/healthz", None).await?.status == 200);
    ensure!(get(metrics, "/readyz", None).await?.status == 200);
    broker.stop().await?;
    let r = get(metrics, "/readyz", None).await?;
    ensure!(
        r.status == 503 && r.body.contains("\"upstream\""),
        "{} {}",
        r.status,
        r.body
    );
    proxy.shutdown().await;
    Ok(())
}
