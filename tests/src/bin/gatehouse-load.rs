//! gatehouse-load: produce and consume load with a real client (librdkafka
//! through the `rdkafka` crate), in the spirit of Kafka's
//! producer/consumer perf tools. Prints one JSON line per phase.
//!
//! ```text
//! gatehouse-load --bootstrap 127.0.0.1:9092 --topic load --messages 200000 --size 1024
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

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
    /// Messages to produce.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// compression.type
    #[arg(long, default_value = "none")]
    compression: String,
    /// linger.ms
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Skip the consume phase.
    #[arg(long)]
    produce_only: bool,
    /// Messages per second to aim for (0: as fast as possible). Paced runs
    /// measure latency below saturation.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// A librdkafka setting for every client, `key=value` (repeatable),
    /// e.g. `security.protocol=SASL_PLAINTEXT`.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// A librdkafka setting for the consumer only (repeatable; overrides
    /// `--option`), e.g. to consume as another principal.
    #[arg(long = "consumer-option", value_name = "KEY=VALUE")]
    consumer_options: Vec<String>,
    /// What the values are: `text`, or `posts` (JSON social posts of about
    /// --size bytes with five personal fields, keyed by their author, one of
    /// 1,000 subjects).
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
fn message(args: &Args, i: usize, text: &[u8]) -> (String, Vec<u8>) {
    if args.values == "posts" {
        let subject = format!("u-{:06}", i % 1_000);
        let mut v = format!(
            r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"{subject}","email":"user.{i}@example.com","name":"Jane Doe","handle":"@user{i}","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"campaign":"cmp-2026-11","text":""#
        )
        .into_bytes();
        let room = args.size.saturating_sub(v.len() + 2);
        v.extend_from_slice(&text[..room.min(text.len())]);
        v.extend_from_slice(b"\"}");
        (subject, v)
    } else {
        (format!("key-{}", i % 10_000), text.to_vec())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
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

async fn produce(args: &Args) -> Result<()> {
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
    let start = Instant::now();
    // Pacing: send in 1 ms ticks of rate/1000 messages.
    let per_tick = (args.rate / 1000).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent_bytes = 0usize;
    for i in 0..args.messages {
        if args.rate > 0 && i % per_tick == 0 {
            tick.tick().await;
        }
        let (key, value) = message(args, i, &text);
        sent_bytes += value.len();
        let sent = Instant::now();
        let fut = producer
            .send_result(FutureRecord::to(&args.topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        let timed = async move {
            match fut.await {
                Ok(Ok(_)) => Ok(sent.elapsed()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("delivery cancelled".to_string()),
            }
        };
        if tx.send(Box::pin(timed)).is_err() {
            bail!("delivery collector stopped");
        }
    }
    drop(tx);
    let results: Vec<Result<Duration, String>> = collector.await?;
    let mut latencies = Vec::with_capacity(results.len());
    for r in results {
        latencies.push(r.map_err(|e| anyhow::anyhow!("delivery failed: {e}"))?);
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let bytes = sent_bytes as f64;
    println!(
        "{}",
        serde_json::json!({
            "phase": "produce",
            "rate": args.rate,
            "messages": args.messages,
            "size": args.size,
            "seconds": secs,
            "msgs_per_s": args.messages as f64 / secs,
            "mb_per_s": bytes / secs / 1e6,
            "latency_ms_p50": percentile(&latencies, 0.50),
            "latency_ms_p99": percentile(&latencies, 0.99),
            "latency_ms_p999": percentile(&latencies, 0.999),
        })
    );
    Ok(())
}

fn consume(args: &Args) -> Result<()> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "gatehouse-load")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800");
    apply(&mut config, &args.options)?;
    apply(&mut config, &args.consumer_options)?;
    let consumer: BaseConsumer = config.create()?;
    let md = consumer.fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let topic = md.topics().first().context("topic missing")?;
    let mut tpl = TopicPartitionList::new();
    let mut expected = 0i64;
    for p in topic.partitions() {
        let (lo, hi) = consumer.fetch_watermarks(&args.topic, p.id(), Duration::from_secs(10))?;
        expected += hi - lo;
        tpl.add_partition_offset(&args.topic, p.id(), Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0i64, 0usize);
    while n < expected {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map(<[u8]>::len).unwrap_or(0);
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None => bail!("consume stalled at {n} of {expected}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "phase": "consume",
            "messages": n,
            "seconds": secs,
            "msgs_per_s": n as f64 / secs,
            "mb_per_s": bytes as f64 / secs / 1e6,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure_topic(&args).await?;
    produce(&args).await?;
    if !args.produce_only {
        tokio::task::block_in_place(|| consume(&args))?;
    }
    Ok(())
}
