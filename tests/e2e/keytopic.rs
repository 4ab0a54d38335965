//! The key topic under attack: records written straight to the cluster,
//! bypassing the proxy, by a client that can produce to `_gatehouse.keys`
//! but holds no key provider. They must not destroy (or replace) anyone's
//! keys, and they must be on the audit trail; a legitimate destruction must
//! be too, and replaying a destroyed key's old record must not bring it
//! back.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse_audit::{EventKind, Query};
use gatehouse_keys::KeyId;
use gatehouse_proxy::Proxy;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::policy::{post, read_records, send, World};

const LIMIT: Duration = Duration::from_secs(30);
const KEY_TOPIC: &str = "_gatehouse.keys";
const MAC_HEADER: &str = "gatehouse-mac";

/// A record of the key topic as stored: key, value, MAC header.
#[derive(Debug, Clone)]
struct KeyRecord {
    key: String,
    value: Option<Vec<u8>>,
    mac: Option<Vec<u8>>,
}

/// Every record of the key topic, read straight from the broker.
async fn read_key_topic(broker: &str) -> Result<Vec<KeyRecord>> {
    let group = format!("keys-reader-{}", crate::policy::rand_suffix());
    let consumer: StreamConsumer =
        crate::support::consumer(broker, &group, &[("enable.partition.eof", "true")])?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(KEY_TOPIC, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .context("reading the key topic timed out")?
        {
            Ok(m) => out.push(KeyRecord {
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: m.payload().map(<[u8]>::to_vec),
                mac: m.headers().and_then(|hs| {
                    hs.iter()
                        .filter(|h| h.key == MAC_HEADER)
                        .last()
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                }),
            }),
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => return Ok(out),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes one record to the key topic straight to the broker.
async fn write_direct(
    p: &FutureProducer,
    key: &str,
    value: Option<&[u8]>,
    mac: Option<&[u8]>,
) -> Result<()> {
    let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(KEY_TOPIC).key(key);
    if let Some(v) = value {
        r = r.payload(v);
    }
    if let Some(m) = mac {
        r = r.headers(OwnedHeaders::new().insert(Header {
            key: MAC_HEADER,
            value: Some(m),
        }));
    }
    p.send(r, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// The key topic's end offset, from the broker.
fn key_topic_end(broker: &str) -> Result<i64> {
    let c: StreamConsumer = crate::support::consumer(broker, "watermarks", &[])?;
    Ok(c.fetch_watermarks(KEY_TOPIC, 0, Duration::from_secs(10))?.1)
}

/// Waits until `proxy`'s key topic follower has read up to `end`.
async fn follower_reaches(proxy: &Proxy, end: i64) -> Result<()> {
    let keys = proxy.keys().context("keys")?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let next = keys
            .key_topic_status()
            .and_then(|s| s.partitions.get(&0).map(|p| p.next_offset))
            .unwrap_or(-1);
        if next >= end {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the key topic follower stayed at {next}, not {end}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Key operations on `dir`'s audit trail: (operation, key id, subject hash, detail).
type KeyOps = Vec<(String, Option<String>, Option<String>, Option<String>)>;

fn key_operations(dir: &PathBuf) -> Result<KeyOps> {
    Ok(
        gatehouse_audit::query(std::slice::from_ref(dir), &Query::default())?
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::KeyOperation {
                    operation,
                    key_id,
                    subject,
                    detail,
                    ..
                } => Some((operation, key_id, subject, detail)),
                _ => None,
            })
            .collect(),
    )
}

/// Waits until `dir`'s audit trail has a key operation matching `want`.
async fn audited(dir: &PathBuf, what: &str, want: impl Fn(&KeyOps) -> bool) -> Result<KeyOps> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let ops = key_operations(dir)?;
        if want(&ops) {
            return Ok(ops);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no {what} on the audit trail: {ops:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The author email of post `id` as `who` reads it through `proxy`.
async fn email_of(proxy: &Proxy, who: &str, id: &str) -> Result<Option<String>> {
    let seen = read_records(proxy.local_addr(), who, "social.posts", 3).await?;
    for r in seen {
        let v: serde_json::Value = serde_json::from_str(&r.value)?;
        if v["id"] == id {
            return Ok(v
                .pointer("/author/email")
                .and_then(|e| e.as_str())
                .map(str::to_string));
        }
    }
    anyhow::bail!("post {id} not read")
}

fn live_keys(proxy: &Proxy, subject: &str) -> Result<Vec<KeyId>> {
    let keys = proxy.keys().context("keys")?;
    Ok(keys
        .store()
        .subject_keys(subject)?
        .into_iter()
        .filter(|k| !k.destroyed)
        .map(|k| k.id)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_key_records_are_rejected_and_destruction_is_audited() -> Result<()> {
    let w = World::start().await?;
    let broker = w.broker.broker_addr().to_string();
    let audit_a = w.dir.path().join("audit-a");
    let ingest = w.producer("ingest")?;
    for (id, subject) in [("p-0", "u-000042"), ("p-1", "u-000007")] {
        send(
            &ingest,
            "social.posts",
            subject,
            Some(&post(id, subject)),
            None,
        )
        .await?;
    }
    let victim_email = Some("u-000007@example.com".to_string());
    ensure!(email_of(&w.proxy, "trust-safety", "p-1").await? == victim_email);
    let victim = live_keys(&w.proxy, "u-000007")?;
    let bystander = live_keys(&w.proxy, "u-000042")?;
    ensure!(
        victim.len() == 1 && bystander.len() == 1,
        "{victim:?} {bystander:?}"
    );
    let (victim, bystander) = (victim[0].to_string(), bystander[0].to_string());

    // The proxy published both keys, signed, before forwarding the posts.
    let published = read_key_topic(&broker).await?;
    let original = |id: &str| -> Result<KeyRecord> {
        published
            .iter()
            .find(|r| r.key == id)
            .cloned()
            .with_context(|| format!("key {id} not on the key topic: {published:?}"))
    };
    let (victim_record, bystander_record) = (original(&victim)?, original(&bystander)?);
    ensure!(
        victim_record.mac.as_ref().is_some_and(|m| m.len() == 32),
        "published without a MAC: {victim_record:?}"
    );

    // The attack, straight to the broker with no credentials at all: a
    // tombstone for the victim's key id, a forged destroyed marker with a
    // made-up MAC, and the bystander's authentic record and MAC moved to
    // the victim's key id.
    let attacker = crate::support::producer(&broker, &[])?;
    write_direct(&attacker, &victim, None, None).await?;
    let marker = br#"{"v":1,"subject_tag":"","created_ms":0,"destroyed":true}"#;
    write_direct(&attacker, &victim, Some(&marker[..]), Some(&[0u8; 32][..])).await?;
    write_direct(
        &attacker,
        &victim,
        bystander_record.value.as_deref(),
        bystander_record.mac.as_deref(),
    )
    .await?;
    follower_reaches(&w.proxy, key_topic_end(&broker)?).await?;

    // Nothing was applied: the victim's fields still decrypt.
    ensure!(
        live_keys(&w.proxy, "u-000007")? == vec![victim.parse::<KeyId>()?],
        "the victim's key changed"
    );
    let seen = email_of(&w.proxy, "trust-safety", "p-1").await?;
    ensure!(
        seen == victim_email,
        "after the attack trust-safety sees {seen:?}"
    );
    // And the rejection is on the audit trail (one event for the first of
    // the records at once, the others counted at the end of the window).
    audited(&audit_a, "rejected_record", |ops| {
        ops.iter().any(|(op, _, _, detail)| {
            op == "rejected_record" && detail.as_deref().is_some_and(|d| d.contains(KEY_TOPIC))
        })
    })
    .await?;

    // A legitimate destruction, through the proxy: on the audit trail with
    // the key id and the subject's hash, published, and applied.
    let keys = w.proxy.keys().context("keys")?;
    let destroyed = keys.destroy_subject("u-000007").await?;
    ensure!(
        destroyed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            == vec![victim.clone()],
        "{destroyed:?}"
    );
    let hash = gatehouse::audit::subject_hash(&w.dir.path().join("kek.toml"), "u-000007")?;
    audited(&audit_a, "destroy and publish_destroyed", |ops| {
        ops.iter().any(|(op, id, subject, _)| {
            op == "destroy"
                && id.as_deref() == Some(victim.as_str())
                && subject.as_deref() == Some(hash.as_str())
        }) && ops.iter().any(|(op, id, _, _)| {
            op == "publish_destroyed" && id.as_deref() == Some(victim.as_str())
        })
    })
    .await?;
    let seen = email_of(&w.proxy, "trust-safety", "p-1").await?;
    ensure!(seen.is_none(), "after erasure trust-safety sees {seen:?}");

    // Replay: the victim's authentic original record, MAC and all, written
    // again after its destruction. It verifies, but a destroyed key never
    // comes back.
    write_direct(
        &attacker,
        &victim,
        victim_record.value.as_deref(),
        victim_record.mac.as_deref(),
    )
    .await?;
    let end = key_topic_end(&broker)?;
    follower_reaches(&w.proxy, end).await?;
    ensure!(
        live_keys(&w.proxy, "u-000007")?.is_empty(),
        "the key came back"
    );
    let seen = email_of(&w.proxy, "trust-safety", "p-1").await?;
    ensure!(
        seen.is_none(),
        "after the replay trust-safety sees {seen:?}"
    );

    // A new replica reads the whole topic (nothing compacted yet): it
    // rejects the forgeries, applies the destruction (on its own audit
    // trail), ignores the replay, and still reads the bystander's fields.
    let b = w.replica("b").await?;
    follower_reaches(&b, end).await?;
    ensure!(
        live_keys(&b, "u-000007")?.is_empty(),
        "replica b has the key"
    );
    let seen = email_of(&b, "trust-safety", "p-1").await?;
    ensure!(seen.is_none(), "via b trust-safety sees {seen:?}");
    let seen = email_of(&b, "trust-safety", "p-0").await?;
    ensure!(
        seen.as_deref() == Some("u-000042@example.com"),
        "via b the bystander reads {seen:?}"
    );
    audited(
        &w.dir.path().join("audit-b"),
        "destroy_applied and rejected_record",
        |ops| {
            ops.iter().any(|(op, id, _, _)| {
                op == "destroy_applied" && id.as_deref() == Some(victim.as_str())
            }) && ops.iter().any(|(op, _, _, _)| op == "rejected_record")
        },
    )
    .await?;
    b.shutdown().await;
    w.proxy.shutdown().await;
    let report = gatehouse_audit::verify(&[audit_a])?;
    ensure!(report.is_clean(), "{report:?}");
    drop(w.broker);
    Ok(())
}
