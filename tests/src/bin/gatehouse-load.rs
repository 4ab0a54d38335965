//! gatehouse-load: produce and consume load with a real client (librdkafka
//! through the `rdkafka` crate), in the spirit of Kafka's producer/consumer
//! perf tools and the OpenMessaging Benchmark. Prints one JSON line per
//! phase.
//!
//! ```text
//! gatehouse-load --bootstrap 127.0.0.1:9092 --topic load --messages 200000 --size 1024
//! gatehouse-load --bootstrap 127.0.0.1:9092 --topic lat --producers 4 --rate 20000 \
//!     --duration 10 --e2e --watch-pid $(pgrep -f 'gatehouse serve')
//! ```
//!
//! Phases:
//! - `produce`: N producers (one librdkafka client each) send `--messages`
//!   (or for `--duration` seconds), at most `--rate` messages per second in
//!   total. Reports throughput and the p50/p99/p99.9 time from `send` to
//!   acknowledgement. With `--e2e`, N consumers tail the topic at the same
//!   time and the phase also reports end-to-end latency (send to receipt),
//!   carried in a record header.
//! - `consume` (unless `--produce-only`): N consumers read everything back
//!   from the start, as fast as they can. With `--reads K`, K times, each
//!   time as another consumer group (phases `consume`, `consume-2`, …):
//!   fan-out, as when several applications read the same records.
//!
//! With `--watch-pid`, each phase also reports that process's CPU seconds and
//! its peak resident set size during the phase (the peak is reset at the
//! start of the phase through `/proc/PID/clear_refs` when permitted).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

/// Header carrying the send time (ns since the tool started, big-endian).
const SENT_HEADER: &str = "gatehouse-load-sent";

#[derive(Debug, Parser)]
struct Args {
    /// bootstrap.servers
    #[arg(long)]
    bootstrap: String,
    /// Topic (created if missing, with --partitions).
    #[arg(long, default_value = "load")]
    topic: String,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Messages to produce in total (ignored with --duration).
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Produce for this many seconds instead of a message count.
    #[arg(long)]
    duration: Option<f64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Distinct record keys (0: no keys). With `--values posts` the key is
    /// the post's author, one of this many subjects.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// compression.type
    #[arg(long, default_value = "none")]
    compression: String,
    /// linger.ms
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Producer clients (each its own librdkafka instance and connections).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer clients; partitions are split between them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Messages per second to aim for, over all producers (0: as fast as
    /// possible). Paced runs measure latency below saturation.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Tail the topic while producing and report end-to-end latency.
    #[arg(long)]
    e2e: bool,
    /// Extra client connections held open during the produce phase, each
    /// producing one record per second (acks=1) with a minimal Kafka client
    /// speaking the protocol directly (plaintext, no SASL): many connected
    /// clients around the measured load, without the cost of a librdkafka
    /// instance per connection in this process.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Skip the read-back phase.
    #[arg(long)]
    produce_only: bool,
    /// Read everything back this many times, each as another consumer group.
    #[arg(long, default_value_t = 1)]
    reads: usize,
    /// A process (the proxy) whose CPU time and peak RSS each phase reports.
    #[arg(long)]
    watch_pid: Option<u32>,
    /// A librdkafka setting for every client, `key=value` (repeatable),
    /// e.g. `security.protocol=SASL_PLAINTEXT`.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// A librdkafka setting for the consumers only (repeatable; overrides
    /// `--option`), e.g. to consume as another principal.
    #[arg(long = "consumer-option", value_name = "KEY=VALUE")]
    consumer_options: Vec<String>,
    /// What the values are: `text`, or `posts` (JSON social posts of about
    /// --size bytes with five personal fields, keyed by their author).
    #[arg(long, default_value = "text")]
    values: String,
}

fn apply(config: &mut ClientConfig, options: &[String]) -> Result<()> {
    for o in options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--option {o}: expected KEY=VALUE"))?;
        config.set(k, v);
    }
    Ok(())
}

/// Message `i`: (key, value).
fn message(args: &Args, i: u64, text: &[u8]) -> (Option<String>, Vec<u8>) {
    let key = (args.keys > 0).then(|| i % args.keys);
    if args.values == "posts" {
        let subject = format!("u-{:06}", key.unwrap_or(i % 1_000));
        let mut v = format!(
            r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"{subject}","email":"user.{i}@example.com","name":"Jane Doe","handle":"@user{i}","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"campaign":"cmp-2026-11","text":""#
        )
        .into_bytes();
        let room = args.size.saturating_sub(v.len() + 2);
        v.extend_from_slice(&text[..room.min(text.len())]);
        v.extend_from_slice(b"\"}");
        (key.map(|_| subject), v)
    } else {
        (key.map(|k| format!("key-{k}")), text.to_vec())
    }
}

/// Percentile `p` of sorted nanoseconds, in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

fn latencies(prefix: &str, mut ns: Vec<u64>) -> serde_json::Map<String, serde_json::Value> {
    ns.sort_unstable();
    let mut m = serde_json::Map::new();
    for (name, p) in [("p50", 0.50), ("p99", 0.99), ("p999", 0.999)] {
        m.insert(format!("{prefix}_ms_{name}"), json!(percentile(&ns, p)));
    }
    m.insert(
        format!("{prefix}_ms_max"),
        json!(ns.last().copied().unwrap_or(0) as f64 / 1e6),
    );
    m
}

/// CPU time and peak memory of a watched process.
struct Watch {
    pid: u32,
    ticks_per_s: f64,
    start_ticks: u64,
}

impl Watch {
    fn start(pid: u32) -> Result<Self> {
        // Reset the peak RSS (VmHWM) so that it covers this phase only;
        // without permission the peak covers the process's lifetime.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let ticks_per_s = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0);
        Ok(Watch {
            pid,
            ticks_per_s,
            start_ticks: cpu_ticks(pid)?,
        })
    }

    fn finish(&self, m: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.start_ticks);
        m.insert("proxy_cpu_s".into(), json!(ticks as f64 / self.ticks_per_s));
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        let kb = |field: &str| -> Option<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        if let Some(hwm) = kb("VmHWM:") {
            m.insert("proxy_peak_rss_mb".into(), json!(hwm / 1024.0));
        }
        if let Some(rss) = kb("VmRSS:") {
            m.insert("proxy_rss_mb".into(), json!(rss / 1024.0));
        }
        Ok(())
    }
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces).
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let get = |i: usize| -> Result<u64> {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc stat")
    };
    Ok(get(14)? + get(15)?)
}

async fn ensure_topic(args: &Args) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.bootstrap);
    apply(&mut config, &args.options)?;
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = config.create()?;
    let topic = NewTopic::new(&args.topic, args.partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics(&[topic], &AdminOptions::new()).await? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            // Through a proxy that does not let this principal create it:
            // it must exist already.
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed)) => {}
            Err((t, e)) => bail!("cannot create {t}: {e}"),
        }
    }
    Ok(())
}

fn consumer(args: &Args, group: &str) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800");
    apply(&mut config, &args.options)?;
    apply(&mut config, &args.consumer_options)?;
    Ok(config.create()?)
}

/// The topic's partitions with their (low, high) watermarks.
fn partitions(args: &Args) -> Result<Vec<(i32, i64, i64)>> {
    let c = consumer(args, "gatehouse-load")?;
    let md = c.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let topic = md.topics().first().context("topic missing")?;
    let mut out = Vec::new();
    for p in topic.partitions() {
        let (lo, hi) = c.fetch_watermarks(&args.topic, p.id(), Duration::from_secs(10))?;
        out.push((p.id(), lo, hi));
    }
    if out.is_empty() {
        bail!("topic {} has no partitions", args.topic);
    }
    Ok(out)
}

/// What one consumer thread read.
#[derive(Default)]
struct Read {
    messages: u64,
    bytes: u64,
    e2e_ns: Vec<u64>,
}

/// Reads the given partitions from the given offsets until `enough` says
/// so (checked with the total read by all consumers; with `marked`, only
/// records that carry a send time count, so that records of the extra
/// connections do not end a tail early).
#[allow(clippy::too_many_arguments)]
fn read(
    args: &Args,
    group: &str,
    assigned: &[(i32, i64)],
    start: Instant,
    total: &AtomicU64,
    marked: bool,
    ready: &std::sync::Barrier,
    enough: &(dyn Fn(u64) -> bool + Sync),
) -> Result<Read> {
    // Connected to the partitions' leader before the clock starts (every
    // reader waits at `ready`, even one that failed to get there).
    let prepared = (|| -> Result<BaseConsumer> {
        let c = consumer(args, group)?;
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in assigned {
            tpl.add_partition_offset(&args.topic, *p, Offset::Offset(*offset))?;
            c.fetch_watermarks(&args.topic, *p, Duration::from_secs(10))?;
        }
        c.assign(&tpl)?;
        Ok(c)
    })();
    ready.wait();
    let c = prepared?;
    let mut r = Read::default();
    let mut idle_since: Option<Instant> = None;
    loop {
        if enough(total.load(Ordering::Relaxed)) {
            return Ok(r);
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_since = None;
                r.messages += 1;
                r.bytes += m.payload().map(<[u8]>::len).unwrap_or(0) as u64;
                let sent = m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == SENT_HEADER)
                        .and_then(|h| h.value)
                        .and_then(|v| <[u8; 8]>::try_from(v).ok())
                });
                if let Some(sent) = sent {
                    let now = start.elapsed().as_nanos() as u64;
                    r.e2e_ns.push(now.saturating_sub(u64::from_be_bytes(sent)));
                }
                if !marked || sent.is_some() {
                    total.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    bail!(
                        "consume stalled at {} messages",
                        total.load(Ordering::Relaxed)
                    );
                }
            }
        }
    }
}

/// Splits partitions between `n` consumers, round robin.
fn split<T: Copy>(parts: &[T], n: usize) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new(); n.max(1).min(parts.len().max(1))];
    let len = out.len();
    for (i, p) in parts.iter().enumerate() {
        out[i % len].push(*p);
    }
    out
}

/// One background connection: connect, ApiVersions, then one record per
/// second until `stop`. Returns the records acknowledged.
async fn background(
    addr: std::net::SocketAddr,
    topic: String,
    partition: i32,
    value: bytes::Bytes,
    connected: Arc<tokio::sync::Barrier>,
    stop: Arc<AtomicBool>,
) -> Result<u64> {
    use gatehouse_tests::RawClient;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    let mut c = RawClient::connect(addr).await?;
    let versions: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await?;
    if versions.error_code != 0 {
        bail!("ApiVersions answered {}", versions.error_code);
    }
    connected.wait().await;
    let value = String::from_utf8_lossy(&value).into_owned();
    let mut acked = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let batch = gatehouse_tests::record_batch_of(&[("bg", value.as_str())])?;
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await?;
        let code = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .map(|p| p.error_code)
            .context("empty produce response")?;
        if code != 0 {
            bail!("background produce answered error {code}");
        }
        acked += 1;
    }
    Ok(acked)
}

/// One producer client's share of the load. Returns (messages, bytes,
/// acknowledgement latencies in ns).
async fn produce_one(
    args: Arc<Args>,
    index: usize,
    start: Instant,
    produced: Arc<AtomicU64>,
    ready: Arc<tokio::sync::Barrier>,
) -> Result<(u64, u64, Vec<u64>)> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    apply(&mut config, &args.options)?;
    let producer: FutureProducer = config.create()?;
    // Connected and with the topic's metadata before the clock starts, so
    // that starting many clients is not measured as latency.
    let warm = producer.clone();
    let topic = args.topic.clone();
    let warmed = tokio::task::spawn_blocking(move || {
        warm.client()
            .fetch_metadata(Some(&topic), Duration::from_secs(60))
            .map(|_| ())
    })
    .await?;
    ready.wait().await;
    warmed?;
    // Values are random-ish text so compression has realistic work to do.
    let text: Vec<u8> = (0..args.size)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[(i * 7 + i / 13) % 37])
        .collect();
    // Deliveries are collected by a task of their own as they complete, so
    // each latency is taken when its acknowledgement arrives.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut latencies = Vec::new();
        let mut open = true;
        loop {
            tokio::select! {
                next = rx.recv(), if open => match next {
                    Some(fut) => inflight.push(fut),
                    None => open = false,
                },
                Some(done) = inflight.next(), if !inflight.is_empty() => latencies.push(done),
                else => break,
            }
        }
        latencies
    });
    let n = args.producers as u64;
    let share = args.messages / n + u64::from((index as u64) < args.messages % n);
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    // Pacing: this producer's share of the rate, in ticks of at least 1 ms.
    let rate = args.rate as f64 / n as f64;
    let per_tick = (rate / 1000.0).ceil().max(1.0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(per_tick / rate.max(1e-9)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut bytes) = (0u64, 0u64);
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if sent >= share => break,
            _ => {}
        }
        if args.rate > 0 && sent % per_tick as u64 == 0 {
            tick.tick().await;
        }
        let i = sent * n + index as u64;
        let (key, value) = message(&args, i, &text);
        bytes += value.len() as u64;
        let sent_at = Instant::now();
        let mut record = FutureRecord::to(&args.topic).payload(&value);
        if let Some(k) = &key {
            record = record.key(k);
        }
        if args.e2e {
            let ns = (sent_at - start).as_nanos() as u64;
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: SENT_HEADER,
                value: Some(&ns.to_be_bytes()),
            }));
        }
        let fut = producer.send_result(record).map_err(|(e, _)| e)?;
        sent += 1;
        produced.fetch_add(1, Ordering::Relaxed);
        let timed = async move {
            match fut.await {
                Ok(Ok(_)) => Ok(sent_at.elapsed().as_nanos() as u64),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("delivery cancelled".to_string()),
            }
        };
        if tx.send(Box::pin(timed)).is_err() {
            bail!("delivery collector stopped");
        }
        // Let other producers' tasks run between unpaced sends.
        if args.rate == 0 && sent % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    drop(tx);
    let mut latencies = Vec::new();
    for r in collector.await? {
        latencies.push(r.map_err(|e| anyhow::anyhow!("delivery failed: {e}"))?);
    }
    Ok((sent, bytes, latencies))
}

async fn produce(args: Arc<Args>, watch: Option<u32>) -> Result<()> {
    let start = Instant::now();
    let produced = Arc::new(AtomicU64::new(0));
    // End-to-end: consumers positioned at the current end before the
    // first record is sent.
    let done = Arc::new(AtomicBool::new(false));
    let mut tails = Vec::new();
    if args.e2e {
        let parts: Vec<(i32, i64)> = partitions(&args)?
            .into_iter()
            .map(|(p, _, hi)| (p, hi))
            .collect();
        let total = Arc::new(AtomicU64::new(0));
        let groups = split(&parts, args.consumers);
        let ready = Arc::new(std::sync::Barrier::new(groups.len() + 1));
        for assigned in groups {
            let (args, produced, done, total, ready) = (
                args.clone(),
                produced.clone(),
                done.clone(),
                total.clone(),
                ready.clone(),
            );
            tails.push(std::thread::spawn(move || {
                let enough = |seen: u64| {
                    done.load(Ordering::Acquire) && seen >= produced.load(Ordering::Acquire)
                };
                read(
                    &args,
                    "gatehouse-load",
                    &assigned,
                    start,
                    &total,
                    true,
                    &ready,
                    &enough,
                )
            }));
        }
        let ready = ready.clone();
        tokio::task::block_in_place(move || ready.wait());
    }
    // Background connections, all connected before the clock starts.
    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Vec::new();
    if args.connections > 0 {
        if args
            .options
            .iter()
            .any(|o| o.contains("SASL") || o.contains("SSL"))
        {
            bail!("--connections speaks plaintext Kafka without SASL");
        }
        let first = args.bootstrap.split(',').next().unwrap_or_default();
        let addr: std::net::SocketAddr = tokio::net::lookup_host(first)
            .await?
            .next()
            .with_context(|| format!("cannot resolve {first}"))?;
        let value = bytes::Bytes::from(message(&args, 0, &vec![b'x'; args.size]).1);
        let connected = Arc::new(tokio::sync::Barrier::new(args.connections + 1));
        for i in 0..args.connections {
            held.push(tokio::spawn(background(
                addr,
                args.topic.clone(),
                i as i32 % args.partitions.max(1),
                value.clone(),
                connected.clone(),
                stop.clone(),
            )));
        }
        tokio::select! {
            _ = connected.wait() => {}
            // A connection that failed before the barrier would leave it
            // waiting: report it instead.
            r = futures::future::select_all(held.iter_mut()) => {
                let (r, _, _) = r;
                r??;
                bail!("a background connection ended early");
            }
        }
    }
    let ready = Arc::new(tokio::sync::Barrier::new(args.producers + 1));
    let mut producers = Vec::new();
    for i in 0..args.producers {
        producers.push(tokio::spawn(produce_one(
            args.clone(),
            i,
            start,
            produced.clone(),
            ready.clone(),
        )));
    }
    ready.wait().await;
    let watch = watch.map(Watch::start).transpose()?;
    let began = Instant::now();
    let (mut messages, mut bytes, mut acks) = (0u64, 0u64, Vec::new());
    for p in producers {
        let (m, b, l) = p.await??;
        messages += m;
        bytes += b;
        acks.extend(l);
    }
    let secs = began.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    stop.store(true, Ordering::Relaxed);
    let mut background_acked = 0;
    for h in held {
        background_acked += h.await??;
    }
    let mut e2e = Vec::new();
    for t in tails {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))??;
        e2e.extend(r.e2e_ns);
    }
    let mut out = serde_json::Map::new();
    out.insert("phase".into(), json!("produce"));
    out.insert("producers".into(), json!(args.producers));
    out.insert("rate".into(), json!(args.rate));
    out.insert("messages".into(), json!(messages));
    out.insert("size".into(), json!(args.size));
    out.insert("seconds".into(), json!(secs));
    out.insert("msgs_per_s".into(), json!(messages as f64 / secs));
    out.insert("mb_per_s".into(), json!(bytes as f64 / secs / 1e6));
    out.extend(latencies("latency", acks));
    if args.connections > 0 {
        out.insert("connections".into(), json!(args.connections));
        out.insert("background_acked".into(), json!(background_acked));
    }
    if args.e2e {
        out.insert("e2e_messages".into(), json!(e2e.len()));
        out.extend(latencies("e2e", e2e));
    }
    if let Some(w) = &watch {
        w.finish(&mut out)?;
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

/// The `reading`-th read back (from 1), as consumer group
/// `gatehouse-load-<reading>`.
fn consume(args: Arc<Args>, watch: Option<u32>, reading: usize) -> Result<()> {
    let group: Arc<str> = format!("gatehouse-load-{reading}").into();
    let parts = partitions(&args)?;
    let expected: u64 = parts.iter().map(|(_, lo, hi)| (hi - lo) as u64).sum();
    let from: Vec<(i32, i64)> = parts.iter().map(|(p, lo, _)| (*p, *lo)).collect();
    let start = Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    let groups = split(&from, args.consumers);
    let ready = Arc::new(std::sync::Barrier::new(groups.len() + 1));
    let mut readers = Vec::new();
    for assigned in groups {
        let (args, total, ready, group) =
            (args.clone(), total.clone(), ready.clone(), group.clone());
        readers.push(std::thread::spawn(move || {
            read(
                &args,
                &group,
                &assigned,
                start,
                &total,
                false,
                &ready,
                &|seen| seen >= expected,
            )
        }));
    }
    ready.wait();
    let watch = watch.map(Watch::start).transpose()?;
    let began = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    for r in readers {
        let r = r
            .join()
            .map_err(|_| anyhow::anyhow!("a consumer thread panicked"))??;
        n += r.messages;
        bytes += r.bytes;
    }
    let secs = began.elapsed().as_secs_f64();
    let mut out = serde_json::Map::new();
    let phase = match reading {
        1 => "consume".to_string(),
        n => format!("consume-{n}"),
    };
    out.insert("phase".into(), json!(phase));
    out.insert("consumers".into(), json!(args.consumers));
    out.insert("messages".into(), json!(n));
    out.insert("seconds".into(), json!(secs));
    out.insert("msgs_per_s".into(), json!(n as f64 / secs));
    out.insert("mb_per_s".into(), json!(bytes as f64 / secs / 1e6));
    if let Some(w) = &watch {
        w.finish(&mut out)?;
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.producers == 0 || args.consumers == 0 || args.reads == 0 {
        bail!("--producers, --consumers and --reads must be at least 1");
    }
    if args.values != "text" && args.values != "posts" {
        bail!("--values: expected `text` or `posts`");
    }
    let args = Arc::new(args);
    ensure_topic(&args).await?;
    let watch = args.watch_pid;
    produce(args.clone(), watch).await?;
    if !args.produce_only {
        for reading in 1..=args.reads {
            let args = args.clone();
            tokio::task::spawn_blocking(move || consume(args, watch, reading)).await??;
        }
    }
    Ok(())
}
