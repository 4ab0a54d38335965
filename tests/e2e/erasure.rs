//! The right to erasure end to end: the privacy team asks one proxy
//! replica's admin API to forget a data subject; every replica withholds
//! the subject within seconds, refuses new records of it, its data keys are
//! destroyed, its records on the topics keyed by subject get tombstones,
//! and each step is one event of the audit trail.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::config::AdminSection;
use gatehouse_proxy::Proxy;
use rdkafka::producer::FutureProducer;

use crate::admin::{basic, get, request};
use crate::fields::audit_events;
use crate::policy::{post, read_from, read_records, send, World};

const LIMIT: Duration = Duration::from_secs(30);
const SUBJECTS: [&str; 4] = ["u-000001", "u-000002", "u-000003", "u-000004"];
const ERASED: &str = "u-000003";

fn profile(subject: &str) -> String {
    format!(
        r#"{{"email":"{subject}@example.com","phone":"+33 1 23 45 67 89","name":"Name {subject}","birthdate":"1990-01-01","address":"1 rue de {subject}"}}"#
    )
}

fn producer_at(proxy: &Proxy, who: &str) -> Result<FutureProducer> {
    let c = World::creds(who);
    let c: Vec<(&str, &str)> = c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::support::producer(&proxy.local_addr().to_string(), &c)
}

/// The record keys of `topic` as `who` reads them through `proxy`.
async fn keys_seen(proxy: &Proxy, who: &str, topic: &str) -> Result<Vec<String>> {
    let mut keys: Vec<String> = read_records(proxy.local_addr(), who, topic, 3)
        .await?
        .into_iter()
        .map(|r| r.key)
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_subject_hides_it_on_every_replica_and_shreds_its_keys() -> Result<()> {
    let w = World::start_with(|c| {
        c.admin = Some(AdminSection {
            bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            replica_dirs: Vec::new(),
        })
    })
    .await?;
    let direct = w.broker.broker_addr().to_string();
    crate::support::create_topic(
        &direct,
        "social.profiles",
        3,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    let b = w.replica("b").await?;
    let ingest = w.producer("ingest")?;
    for (i, s) in SUBJECTS.iter().enumerate() {
        send(
            &ingest,
            "social.posts",
            s,
            Some(&post(&format!("p-{i}"), s)),
            None,
        )
        .await?;
        send(&ingest, "social.profiles", s, Some(&profile(s)), None).await?;
        send(
            &ingest,
            "consent.events",
            s,
            Some(r#"{"purposes":["analytics"]}"#),
            None,
        )
        .await?;
    }
    let everyone: Vec<String> = SUBJECTS.iter().map(|s| s.to_string()).collect();
    ensure!(keys_seen(&b, "trust-safety", "social.posts").await? == everyone);

    // Only the privacy team may erase; the auditor reads, and is refused.
    let admin = w.proxy.admin_addr().context("admin listener")?;
    let body = format!(r#"{{"subject":"{ERASED}","reason":"customer request 4711"}}"#);
    let refused = request(
        admin,
        "POST",
        "/api/erase",
        Some(&basic("auditor")),
        Some(&body),
    )
    .await?;
    ensure!(
        refused.status == 403,
        "auditor: {} {}",
        refused.status,
        refused.body
    );
    let bad = request(
        admin,
        "POST",
        "/api/erase",
        Some(&basic("privacy")),
        Some("{}"),
    )
    .await?;
    ensure!(
        bad.status == 400,
        "empty request: {} {}",
        bad.status,
        bad.body
    );

    let asked = Instant::now();
    let started = request(
        admin,
        "POST",
        "/api/erase",
        Some(&basic("privacy")),
        Some(&body),
    )
    .await?;
    ensure!(started.status == 202, "{} {}", started.status, started.body);
    let workflow = &started.json()?["workflow"];
    ensure!(workflow["requested_by"] == "privacy", "{workflow}");
    ensure!(workflow["steps"][0]["step"] == "requested", "{workflow}");
    let hash = workflow["subject_hash"]
        .as_str()
        .context("subject hash")?
        .to_string();
    ensure!(
        !started.body.contains(ERASED),
        "the answer names the subject: {}",
        started.body
    );

    // The other replica withholds the subject within seconds.
    let other = b.eraser().context("replica b erases")?;
    while !other.erasures().is_erased(ERASED) {
        ensure!(
            asked.elapsed() < LIMIT,
            "replica b never learned of the erasure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let suppressed_after = asked.elapsed();

    // The workflow finishes: every step done, one audit event each.
    let eraser = w.proxy.eraser().context("replica a erases")?;
    while !eraser.erasures().get(&hash).is_some_and(|w| w.done()) {
        ensure!(
            asked.elapsed() < LIMIT,
            "the workflow did not finish: {:?}",
            eraser.erasures().get(&hash)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished_after = asked.elapsed();
    let done = eraser.erasures().get(&hash).context("workflow")?;
    ensure!(
        done.sealed.is_none(),
        "the finished workflow still carries the sealed subject id"
    );
    let steps: Vec<String> = audit_events(&w)?
        .into_iter()
        .filter_map(|e| match e.kind {
            gatehouse_audit::EventKind::Erasure { subject, step, .. } if subject == hash => {
                Some(step)
            }
            _ => None,
        })
        .collect();
    ensure!(
        steps == ["requested", "keys_destroyed", "tombstoned", "suppressing"],
        "audited steps: {steps:?}"
    );
    let status = get(
        admin,
        &format!("/api/erasures/{ERASED}"),
        Some(&basic("privacy")),
    )
    .await?;
    ensure!(status.status == 200, "{} {}", status.status, status.body);
    ensure!(
        status.json()?["workflow"]["done"] == true,
        "{}",
        status.body
    );

    // Nothing of the subject reaches anyone, through either replica; the
    // other subjects' records are all there.
    let rest: Vec<String> = everyone.iter().filter(|s| *s != ERASED).cloned().collect();
    for proxy in [&w.proxy, &b] {
        ensure!(keys_seen(proxy, "trust-safety", "social.posts").await? == rest);
        ensure!(keys_seen(proxy, "trust-safety", "social.profiles").await? == rest);
    }

    // New records of the subject are refused, on both replicas.
    for proxy in [&w.proxy, &b] {
        let p = producer_at(proxy, "ingest")?;
        let e = send(
            &p,
            "social.posts",
            ERASED,
            Some(&post("p-new", ERASED)),
            None,
        )
        .await
        .err()
        .context("a post of an erased subject was accepted")?;
        ensure!(e.to_string().contains("olicy"), "{e}");
        let e = send(
            &p,
            "consent.events",
            ERASED,
            Some(r#"{"purposes":[]}"#),
            None,
        )
        .await
        .err()
        .context("consent of an erased subject was accepted")?;
        ensure!(e.to_string().contains("olicy"), "{e}");
    }

    // Its data keys are destroyed, and its profile has a tombstone on every
    // partition of the compacted topic (so compaction removes it).
    let keys = w.proxy.keys().context("keys")?;
    let infos = keys.store().subject_keys(ERASED)?;
    ensure!(
        !infos.is_empty() && infos.iter().all(|k| k.destroyed),
        "{infos:?}"
    );
    let behind = read_from(&direct, "erasure-check", &[], "social.profiles", 3).await?;
    let tombstones: Vec<i32> = behind
        .iter()
        .filter(|r| r.key == ERASED && r.value.is_empty())
        .map(|r| r.partition)
        .collect();
    ensure!(
        tombstones.len() == 3,
        "tombstones on partitions {tombstones:?}"
    );
    println!(
        "erasure of one subject: replica b withholding after {suppressed_after:?}, workflow done after {finished_after:?}"
    );
    b.shutdown().await;
    Ok(())
}
