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
    let ingest = w.producer("ingest")?;
    send(
        &ingest,
        "consent.events",
        "u-000042",
        Some(r#"{"purposes":["analytics"]}"#),
        None,
    )
    .await?;
    for (i, subject) in ["u-000042", "u-000007", "u-000042"].iter().enumerate() {
        send(
            &ingest,
            "social.posts",
            subject,
            Some(&post(&format!("p-{i}"), subject)),
            None,
        )
        .await?;
    }
    ensure!(w.proxy.consent_caught_up(LIMIT).await, "consent lagging");
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
