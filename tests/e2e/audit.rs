//! The audit trail end to end: real clients through the proxy, then the
//! auditor's questions answered from the log, and the log verified.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse_audit::{Decision, EventKind, Query};

use crate::policy::{post, read_records, send, World};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_trail_names_who_received_what() -> Result<()> {
    let w = World::start().await?;
    crate::policy::consent_and_three_posts(&w).await?;
    let addr = w.proxy.local_addr();
    let mut received: BTreeMap<&str, BTreeSet<(i32, i64, String)>> = BTreeMap::new();
    for who in ["trust-safety", "analytics"] {
        let seen = read_records(addr, who, "social.posts", 3).await?;
        received.insert(
            who,
            seen.into_iter()
                .map(|r| (r.partition, r.offset, r.key))
                .collect(),
        );
    }
    ensure!(received["analytics"].len() == 2, "{received:?}");
    // marketing-us is refused by residency.
    let mut mkt = w.raw_as("marketing-us").await?;
    let _ = crate::policy::fetch_error(&mut mkt, "social.posts").await?;

    let dirs = vec![w.dir.path().join("audit-a")];
    let key_file = w.dir.path().join("kek.toml");
    let trail = |subject: &str| -> Result<Vec<gatehouse_audit::Event>> {
        let q = Query {
            subject_hash: Some(gatehouse::audit::subject_hash(&key_file, subject)?),
            ..Query::default()
        };
        Ok(gatehouse_audit::query(&dirs, &q)?)
    };

    // Who received u-000042's data, at which offsets: exactly the two
    // consumers, at exactly the offsets they were given.
    for (subject, receivers) in [
        ("u-000042", vec!["analytics", "trust-safety"]),
        ("u-000007", vec!["trust-safety"]),
    ] {
        let events = trail(subject)?;
        let mut delivered: BTreeMap<String, BTreeSet<(i32, i64)>> = BTreeMap::new();
        let mut produced = 0;
        for e in &events {
            match &e.kind {
                EventKind::Delivery {
                    principal,
                    partition,
                    first_offset,
                    last_offset,
                    ..
                } => {
                    let got = &received[principal.as_str()];
                    for (p, o, key) in got {
                        if p == partition && o >= first_offset && o <= last_offset && key == subject
                        {
                            delivered
                                .entry(principal.clone())
                                .or_default()
                                .insert((*p, *o));
                        }
                    }
                }
                EventKind::Produce { principal, .. } => {
                    ensure!(principal == "ingest");
                    produced += 1;
                }
                _ => {}
            }
        }
        let names: Vec<&str> = delivered.keys().map(String::as_str).collect();
        ensure!(names == receivers, "{subject} delivered to {names:?}");
        for who in receivers {
            let want: BTreeSet<(i32, i64)> = received[who]
                .iter()
                .filter(|(_, _, k)| k == subject)
                .map(|(p, o, _)| (*p, *o))
                .collect();
            ensure!(
                delivered[who] == want,
                "{subject} to {who}: {:?} vs {want:?}",
                delivered[who]
            );
        }
        ensure!(produced >= 1, "no produce event for {subject}");
    }

    // The refusal is on record, with the policy that decided it.
    let denied = gatehouse_audit::query(
        &dirs,
        &Query {
            principal: Some("marketing-us".into()),
            decision: Some(Decision::Deny),
            ..Query::default()
        },
    )?;
    ensure!(
        denied.iter().any(
            |e| matches!(&e.kind, EventKind::Decision { resource, policies, .. }
            if resource == "social.posts" && policies.iter().any(|p| p == "residency-topic"))
        ),
        "{denied:?}"
    );
    // Authentications are recorded too.
    let auth = gatehouse_audit::query(
        &dirs,
        &Query {
            principal: Some("analytics".into()),
            ..Query::default()
        },
    )?;
    ensure!(auth
        .iter()
        .any(|e| matches!(e.kind, EventKind::AuthOk { .. })));

    // A governed topic with no protected field (social.* names the subject
    // in the key): the consent filter's pass names the subjects of what it
    // delivered, at the offsets delivered.
    crate::support::create_topic(&w.broker.broker_addr().to_string(), "social.likes", 1, &[])
        .await?;
    let ingest = w.producer("ingest")?;
    for subject in ["u-000042", "u-000007", "u-000007"] {
        send(&ingest, "social.likes", subject, Some("like"), None).await?;
    }
    let likes = read_records(addr, "trust-safety", "social.likes", 1).await?;
    let want: BTreeSet<i64> = likes
        .iter()
        .filter(|r| r.key == "u-000007")
        .map(|r| r.offset)
        .collect();
    ensure!(want.len() == 2, "{likes:?}");
    let covered: BTreeSet<i64> = trail("u-000007")?
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Delivery {
                principal,
                topic,
                first_offset,
                last_offset,
                ..
            } if principal == "trust-safety" && topic == "social.likes" => {
                Some(*first_offset..=*last_offset)
            }
            _ => None,
        })
        .flatten()
        .filter(|o| want.contains(o))
        .collect();
    ensure!(covered == want, "delivered {want:?}, on record {covered:?}");
    // And the audit filter's own reading of the produced batches names the
    // subject: two records of u-000007 went in, in one or two produces.
    let produced: u64 = trail("u-000007")?
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Produce { topic, records, .. } if topic == "social.likes" => Some(*records),
            _ => None,
        })
        .sum();
    ensure!(
        (2..=3).contains(&produced),
        "{produced} social.likes records of u-000007 on record"
    );

    // The data keys created for the two subjects were published to the
    // key topic, on the record.
    let all = gatehouse_audit::query(&dirs, &Query::default())?;
    let published = all
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::KeyOperation { operation, key_id: Some(_), .. } if operation == "publish"))
        .count();
    ensure!(published >= 2, "{published} key publications recorded");

    // Shut down cleanly (a signed checkpoint) and verify the chain.
    w.proxy.shutdown().await;
    let report = gatehouse_audit::verify(&dirs)?;
    ensure!(report.is_clean(), "{report:?}");
    let table = gatehouse::audit::render(&trail("u-000042")?, gatehouse::audit::Format::Table)?;
    ensure!(
        !table.contains("u-000042"),
        "a subject id in the trail: {table}"
    );
    drop(w.broker);
    Ok(())
}

/// A runtime shut down in the background when dropped.
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A crash under load: the proxy's runtime is torn down mid-stream (no
/// shutdown, no closing checkpoint, a batch possibly in flight). On restart
/// the log recovers and verifies, and every record a consumer received is
/// covered by a delivery event: nothing reached a client unrecorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_no_delivery_event() -> Result<()> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    let w = World::start().await?;
    let cluster = w.broker.broker_addr().to_string();
    // The replica that will crash runs on a runtime of its own.
    let config = World::proxy_config(w.dir.path(), &w.policy_dir, &cluster, "c");
    let cfg = config.clone();
    let (rt, crashing) = std::thread::spawn(move || -> Result<_> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let proxy = rt.block_on(gatehouse_proxy::Proxy::start(cfg))?;
        Ok((rt, proxy))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the replica's thread panicked"))??;
    // Dropping a runtime inside this test's runtime would panic: any early
    // return tears it down in the background instead.
    let rt = Background(Some(rt));
    let addr = crashing.local_addr();

    let ingest = w.producer("ingest")?;
    for i in 0..300 {
        let subject = format!("u-{:06}", i % 10);
        send(
            &ingest,
            "social.posts",
            &subject,
            Some(&post(&format!("p-{i}"), &subject)),
            None,
        )
        .await?;
    }
    // trust-safety consumes through the doomed replica.
    let creds = World::creds("trust-safety");
    let creds: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut c = creds.clone();
    // Small fetches: many deliveries, so the crash lands among them.
    c.push(("message.max.bytes", "4096"));
    c.push(("fetch.max.bytes", "4096"));
    c.push(("max.partition.fetch.bytes", "1024"));
    let consumer: StreamConsumer = crate::support::consumer(&addr.to_string(), "crash-reader", &c)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("social.posts", p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut received = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while received.len() < 100 {
        let m = tokio::time::timeout_at(deadline, consumer.recv()).await??;
        received.insert((m.partition(), m.offset()));
    }
    // Crash: every task of the replica dropped where it stands.
    drop(rt);
    drop(crashing);
    // Whatever the consumer still had buffered was delivered before the
    // crash too.
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
        received.insert((m.partition(), m.offset()));
    }
    drop(consumer);

    // Restart on the same audit chain (new consent and key state: sled may
    // hold the old files' locks for a moment after a crash).
    let mut restart = World::proxy_config(w.dir.path(), &w.policy_dir, &cluster, "c2");
    restart.audit = config.audit.clone();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let proxy = loop {
        match gatehouse_proxy::Proxy::start(restart.clone()).await {
            Ok(p) => break p,
            Err(e) if tokio::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                tokio::task::yield_now().await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    proxy.shutdown().await;
    let dirs = vec![w.dir.path().join("audit-c")];
    let report = gatehouse_audit::verify(&dirs)?;
    ensure!(report.is_clean(), "{report:?}");
    let delivered = gatehouse_audit::query(
        &dirs,
        &Query {
            principal: Some("trust-safety".into()),
            ..Query::default()
        },
    )?;
    let covered = |p: i32, o: i64| {
        delivered.iter().any(|e| {
            matches!(&e.kind, EventKind::Delivery { partition, first_offset, last_offset, .. }
                if *partition == p && *first_offset <= o && o <= *last_offset)
        })
    };
    let missing: Vec<_> = received.iter().filter(|(p, o)| !covered(*p, *o)).collect();
    ensure!(
        missing.is_empty(),
        "{} of {} received records have no delivery event: {missing:?}",
        missing.len(),
        received.len()
    );
    drop(w.broker);
    Ok(())
}
