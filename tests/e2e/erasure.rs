//! The right to erasure end to end: the privacy team asks one proxy
//! replica's admin API to forget a data subject; every replica withholds
//! the subject within seconds, refuses new records of it, its data keys are
//! destroyed, its records on the topics keyed by subject get tombstones,
//! and each step is one event of the audit trail.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::cluster::erasure::{Outcome, Step, StepDone, Workflow};
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

/// The world's proxy with its admin listener on a free loopback port.
fn with_admin(c: &mut gatehouse_proxy::ProxyConfig) {
    c.admin = Some(AdminSection {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        replica_dirs: Vec::new(),
    });
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
    // social.posts takes a returning customer's new posts; the other
    // topics keep refusing an erased subject (the shipped default).
    let w = World::start_with(|c| {
        with_admin(c);
        if let Some(p) = c.policy.as_mut() {
            let shipped = gatehouse_tests::repo_root().join("policies/default/catalog.toml");
            let text = std::fs::read_to_string(shipped)
                .unwrap_or_default()
                .replacen(
                    "subject = \"json:$.author.id\"",
                    "subject = \"json:$.author.id\"\nafter_erasure = \"accept\"",
                    1,
                );
            let file = p.state_dir.with_file_name("catalog-accepting.toml");
            if std::fs::write(&file, text).is_ok() {
                p.catalog_file = Some(file);
            }
        }
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
    // Replica b with the same catalog as a.
    let mut config = World::proxy_config(w.dir.path(), &w.policy_dir, &direct, "b");
    if let Some(p) = config.policy.as_mut() {
        p.catalog_file = Some(w.dir.path().join("catalog-accepting.toml"));
    }
    let b = Proxy::start(config).await?;
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
        steps
            == [
                "requested",
                "keys_destroyed",
                "tombstoned",
                "suppressing",
                "verified"
            ],
        "audited steps: {steps:?}"
    );
    // The verification read every governed topic back through the chain
    // as the verifier: the cluster still holds the subject's records,
    // none was delivered, the others were.
    let v = done.verification.as_ref().context("verification")?;
    ensure!(v.outcome == Outcome::Passed, "{v:?}");
    ensure!(v.principal.as_deref() == Some("erasure-verifier"), "{v:?}");
    let topic = |name: &str| v.topics.iter().find(|t| t.topic == name);
    let posts = topic("social.posts").context("social.posts read back")?;
    ensure!(
        posts.held == 1 && posts.readable == 0 && posts.others_readable == 3 && posts.complete,
        "{posts:?}"
    );
    let profiles = topic("social.profiles").context("social.profiles read back")?;
    ensure!(
        profiles.held == 1 && profiles.readable == 0 && profiles.tombstone == Some(true),
        "{profiles:?}"
    );
    ensure!(
        topic("enrich.sentiment").is_none(),
        "an ungoverned topic was read back: {v:?}"
    );
    // The same read-back for a subject that is not erased finds its
    // records delivered: the check can fail. Asked for three times at
    // once (one subject twice), the read-backs are shared and each caller
    // gets its own subject's findings.
    let (kept, again, erased_again) = tokio::join!(
        eraser.verify(SUBJECTS[1]),
        eraser.verify(SUBJECTS[1]),
        eraser.verify(ERASED),
    );
    let kept = kept.map_err(anyhow::Error::msg)?;
    ensure!(kept.outcome == Outcome::Failed, "{kept:?}");
    ensure!(again.map_err(anyhow::Error::msg)? == kept);
    let erased_again = erased_again.map_err(anyhow::Error::msg)?;
    ensure!(erased_again.outcome == Outcome::Passed, "{erased_again:?}");
    let kept_posts = kept
        .topics
        .iter()
        .find(|t| t.topic == "social.posts")
        .context("social.posts")?;
    ensure!(
        kept_posts.held == 1 && kept_posts.readable == 1,
        "{kept_posts:?}"
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

    // New records of the subject are refused, on both replicas, where the
    // catalog says so (a protected and a consent-only topic)...
    for proxy in [&w.proxy, &b] {
        let p = producer_at(proxy, "ingest")?;
        let e = send(&p, "social.profiles", ERASED, Some(&profile(ERASED)), None)
            .await
            .err()
            .context("a profile of an erased subject was accepted")?;
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
    // ...and social.posts takes the returning customer's new post, under a
    // new data key; only the new post reaches consumers.
    send(
        &ingest,
        "social.posts",
        ERASED,
        Some(&post("p-back", ERASED)),
        None,
    )
    .await?;
    for proxy in [&w.proxy, &b] {
        let theirs: Vec<String> =
            read_records(proxy.local_addr(), "trust-safety", "social.posts", 3)
                .await?
                .into_iter()
                .filter(|r| r.key == ERASED)
                .map(|r| r.value)
                .collect();
        ensure!(
            theirs.len() == 1 && theirs[0].contains("p-back") && theirs[0].contains("@example.com"),
            "{theirs:?}"
        );
    }

    // Its data keys are destroyed, and its profile has a tombstone on every
    // partition of the compacted topic (so compaction removes it).
    let keys = w.proxy.keys().context("keys")?;
    let infos = keys.store().subject_keys(ERASED)?;
    let destroyed = infos.iter().filter(|k| k.destroyed).count();
    ensure!(
        destroyed >= 1 && infos.len() == destroyed + 1,
        "the erased keys and one new key for the returning post: {infos:?}"
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

/// What a replica that died in the middle of a workflow left on the
/// erasure topic, written as that replica would have (signed; the subject
/// id sealed by the key-encryption key).
fn left_half_done(w: &World, subject: &str, done: &[Step]) -> Result<(String, Vec<u8>, Vec<u8>)> {
    left_by(w, subject, done, "ghost", 1)
}

/// Like [`left_half_done`], by replica `owner`, last changed at `updated_at`.
fn left_by(
    w: &World,
    subject: &str,
    done: &[Step],
    owner: &str,
    updated_at: i64,
) -> Result<(String, Vec<u8>, Vec<u8>)> {
    use gatehouse_keys::{KekProvider, LocalKeyFile, StateRecordMac};
    let provider = LocalKeyFile::open_or_create(&w.dir.path().join("kek.toml"))?;
    let secret = provider.mac(gatehouse_audit::SUBJECT_SECRET_LABEL)?;
    let hash = gatehouse_audit::hash_subject(&secret, subject);
    let workflow = Workflow {
        subject: hash.clone(),
        requested_by: "privacy".into(),
        reason: "customer request 99".into(),
        requested_at: 1,
        owner: owner.into(),
        updated_at,
        sealed: Some(provider.wrap(subject.as_bytes())?),
        steps: done
            .iter()
            .map(|s| StepDone {
                step: *s,
                at: 1,
                replica: owner.into(),
                detail: String::new(),
                audit_seq: None,
            })
            .collect(),
        verification: None,
    };
    let value = serde_json::to_vec(&workflow)?;
    let mac = StateRecordMac::new(&provider)?.sign(
        "_gatehouse.erasure",
        Some(hash.as_bytes()),
        Some(&value),
    )?;
    Ok((hash, value, mac.to_vec()))
}

/// Writes records `left_by` made straight to the broker's erasure topic
/// (creating it if no replica has yet), as a dead replica had.
async fn write_left(direct: &str, records: &[&(String, Vec<u8>, Vec<u8>)]) -> Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    if let Err(e) = crate::support::create_topic(
        direct,
        "_gatehouse.erasure",
        1,
        &[("cleanup.policy", "compact")],
    )
    .await
    {
        ensure!(e.to_string().contains("TopicAlreadyExists"), "{e}");
    }
    let raw = crate::support::producer(direct, &[])?;
    for (hash, value, mac) in records {
        raw.send(
            FutureRecord::to("_gatehouse.erasure")
                .key(hash.as_bytes())
                .payload(value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "gatehouse-mac",
                    value: Some(mac),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// A replica killed in the middle of a workflow (after the request, or
/// after the tombstones) leaves it on the erasure topic; the live replicas
/// (one running, one that starts later) take it over: exactly the steps
/// left are done, one audit event each across the replicas, and both
/// withhold the subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_left_half_done_is_finished_by_another_replica() -> Result<()> {
    let w = World::start().await?;
    let direct = w.broker.broker_addr().to_string();
    crate::support::create_topic(
        &direct,
        "social.profiles",
        3,
        &[("cleanup.policy", "compact")],
    )
    .await?;
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
    }
    let early = left_half_done(&w, "u-000001", &[Step::Requested])?;
    let late = left_half_done(
        &w,
        "u-000002",
        &[Step::Requested, Step::KeysDestroyed, Step::Tombstoned],
    )?;
    write_left(&direct, &[&early, &late]).await?;

    let c = w.replica("c").await?;
    let eraser = c.eraser().context("replica c erases")?;
    let deadline = Instant::now() + LIMIT;
    for (hash, _, _) in [&early, &late] {
        while !eraser.erasures().get(hash).is_some_and(|w| w.done()) {
            ensure!(
                Instant::now() < deadline,
                "not taken over: {:?}",
                eraser.erasures().get(hash)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for replica in [&w.proxy, &c] {
        let e = replica.eraser().context("eraser")?;
        ensure!(e.erasures().is_erased("u-000001") && e.erasures().is_erased("u-000002"));
    }
    let events = gatehouse_audit::query(
        &[w.dir.path().join("audit-a"), w.dir.path().join("audit-c")],
        &gatehouse_audit::Query::default(),
    )?;
    let order = |name: &str| Step::ALL.iter().position(|s| s.name() == name);
    let steps_of = |hash: &str| -> Vec<String> {
        let mut steps: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.kind {
                gatehouse_audit::EventKind::Erasure { subject, step, .. } if subject == hash => {
                    Some(step.clone())
                }
                _ => None,
            })
            .collect();
        steps.sort_by_key(|s| order(s));
        steps
    };
    ensure!(
        steps_of(&early.0) == ["keys_destroyed", "tombstoned", "suppressing", "verified"],
        "{:?}",
        steps_of(&early.0)
    );
    ensure!(
        steps_of(&late.0) == ["suppressing", "verified"],
        "{:?}",
        steps_of(&late.0)
    );
    // The early one's keys are destroyed by the replica that took over; the
    // late one's were "destroyed" by the dead replica (here: they were not,
    // so they stay: the step is not done twice).
    let keys = c.keys().context("keys")?;
    ensure!(keys
        .store()
        .subject_keys("u-000001")?
        .iter()
        .all(|k| k.destroyed));
    ensure!(keys
        .store()
        .subject_keys("u-000002")?
        .iter()
        .any(|k| !k.destroyed));
    let seen = keys_seen(&c, "trust-safety", "social.posts").await?;
    ensure!(seen == ["u-000003", "u-000004"], "{seen:?}");
    c.shutdown().await;
    Ok(())
}

fn ticket(i: usize, subject: &str) -> String {
    format!(
        r#"{{"id":"t-{i}","customer":{{"id":"{subject}","email":"{subject}@example.com","phone":"+33 6 00 00 {i:04}"}},"body":"my order {i} is late","messages":[{{"from":"agent","body":"sorry {subject}"}}]}}"#
    )
}

/// Every record of `topic` as `who` reads it through `proxy` with
/// confluent-kafka: (key, value).
async fn read_with_confluent(
    proxy: &Proxy,
    who: &str,
    topic: &str,
    count: usize,
) -> Result<Vec<(String, String)>> {
    use gatehouse_tests::clients::{run_ok, Client};
    let mut args: Vec<String> = vec![
        "consume".into(),
        "--bootstrap".into(),
        proxy.local_addr().to_string(),
        "--topic".into(),
        topic.into(),
        "--group".into(),
        format!("{who}-confluent-{}", crate::policy::rand_suffix()),
        "--count".into(),
        count.to_string(),
        "--timeout".into(),
        "30".into(),
        "--dump".into(),
    ];
    for (k, v) in World::creds(who) {
        args.push("--option".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_ok(Client::Confluent, &args, LIMIT).await?;
    Ok(out["records"]
        .as_array()
        .context("records")?
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// A thousand subjects on a compacted topic (`social.profiles`) and two
/// that are not (`social.posts`, `support.tickets`); ten are erased at
/// once. Read from the beginning through the proxy with kcat and with
/// confluent-kafka, nothing of the ten arrives and everything of the other
/// 990 arrives unchanged; the broker holds only ciphertext of the ten, and
/// after its compaction none of their profile records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_of_a_thousand_subjects_erased_read_back_with_two_clients() -> Result<()> {
    use gatehouse_tests::clients::kcat;
    let w = World::start_with(with_admin).await?;
    let direct = w.broker.broker_addr().to_string();
    crate::support::create_topic(
        &direct,
        "social.profiles",
        3,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    crate::support::create_topic(&direct, "support.tickets", 3, &[]).await?;
    let ingest = w.producer("ingest")?;
    let subjects: Vec<String> = (0..1000).map(|i| format!("u-{i:06}")).collect();
    let mut sends = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (topic, value) in [
            ("social.posts", post(&format!("p-{i}"), s)),
            ("social.profiles", profile(s)),
            ("support.tickets", ticket(i, s)),
        ] {
            let ingest = ingest.clone();
            let s = s.clone();
            sends.push(async move { send(&ingest, topic, &s, Some(&value), None).await });
        }
    }
    for r in futures::future::join_all(sends).await {
        r?;
    }
    let erased: Vec<String> = (0..10).map(|k| format!("u-{:06}", 37 + k * 97)).collect();
    let before_posts =
        read_records(w.proxy.local_addr(), "trust-safety", "social.posts", 3).await?;
    ensure!(before_posts.len() == 1000, "{} posts", before_posts.len());

    let admin = w.proxy.admin_addr().context("admin listener")?;
    let asked = Instant::now();
    let requests = erased.iter().map(|s| {
        let body = format!(r#"{{"subject":"{s}","reason":"batch of requests"}}"#);
        async move {
            request(
                admin,
                "POST",
                "/api/erase",
                Some(&basic("privacy")),
                Some(&body),
            )
            .await
        }
    });
    for answer in futures::future::join_all(requests).await {
        let answer = answer?;
        ensure!(answer.status == 202, "{} {}", answer.status, answer.body);
    }
    let eraser = w.proxy.eraser().context("eraser")?;
    let hashes: Vec<String> = erased.iter().map(|s| eraser.erasures().hash(s)).collect();
    while !hashes
        .iter()
        .all(|h| eraser.erasures().get(h).is_some_and(|w| w.done()))
    {
        ensure!(asked.elapsed() < LIMIT, "the ten workflows did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ten erasures at once: all done after {:?}", asked.elapsed());
    // Each workflow's verification read the three topics back: one record
    // of its subject held on each (its profile awaiting compaction after
    // the tombstone), none delivered, and the other subjects' records
    // delivered (a workflow that finished early read fewer of the other
    // nine as withheld).
    for h in &hashes {
        let v = eraser
            .erasures()
            .get(h)
            .and_then(|w| w.verification)
            .context("verification")?;
        ensure!(v.outcome == Outcome::Passed, "{v:?}");
        for topic in ["social.posts", "social.profiles", "support.tickets"] {
            let t = v
                .topics
                .iter()
                .find(|t| t.topic == topic)
                .with_context(|| format!("{topic} not read back: {v:?}"))?;
            ensure!(
                t.held == 1 && t.readable == 0 && (990..=999).contains(&t.others_readable),
                "{t:?}"
            );
            ensure!(
                t.tombstone == (topic == "social.profiles").then_some(true),
                "{t:?}"
            );
        }
    }

    let kept = |key: &str| !erased.iter().any(|e| e == key);
    // kcat, as trust-safety (every field in clear): the 990 posts exactly
    // as before, none of the ten.
    let creds = World::creds("trust-safety");
    let mut args = vec![
        "-b".to_string(),
        w.proxy.local_addr().to_string(),
        "-C".into(),
        "-t".into(),
        "social.posts".into(),
        "-e".into(),
        "-q".into(),
        "-f".into(),
        "%k\t%s\n".into(),
    ];
    for (k, v) in &creds {
        let k = if k == "sasl.mechanisms" {
            "sasl.mechanism"
        } else {
            k.as_str()
        };
        args.push("-X".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kcat(&args, None, LIMIT).await?;
    let mut after: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut expected: Vec<(String, String)> = before_posts
        .iter()
        .filter(|r| kept(&r.key))
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    after.sort();
    expected.sort();
    ensure!(after.len() == 990, "kcat read {} posts", after.len());
    ensure!(after == expected, "the other subjects' posts changed");

    // confluent-kafka: the 990 profiles as support sees them, none of the
    // ten; and support's tickets likewise.
    let profiles = read_with_confluent(&w.proxy, "support", "social.profiles", 990).await?;
    let keys: std::collections::BTreeSet<&str> = profiles.iter().map(|(k, _)| k.as_str()).collect();
    ensure!(
        keys.len() == 990 && keys.iter().all(|k| kept(k)),
        "{} profiles",
        keys.len()
    );
    let tickets = read_with_confluent(&w.proxy, "support", "support.tickets", 990).await?;
    ensure!(
        tickets.len() == 990
            && tickets
                .iter()
                .all(|(k, v)| kept(k) && v.contains("@example.com")),
        "{} tickets",
        tickets.len()
    );

    // Behind the proxy: the ten's posts and tickets hold only ciphertext.
    for topic in ["social.posts", "support.tickets"] {
        let stored = read_from(&direct, "erasure-check", &[], topic, 3).await?;
        for r in stored.iter().filter(|r| !kept(&r.key)) {
            ensure!(
                !r.value.contains("@example.com") && r.value.contains("gh1."),
                "{topic}: {}",
                r.value
            );
        }
    }
    // After the broker's compaction, only the tombstones remain of the
    // ten's profiles (a record written after them moves the tombstones out
    // of each partition's active part).
    let erased_profiles = |stored: &[crate::policy::Received]| {
        stored
            .iter()
            .filter(|r| !kept(&r.key) && !r.value.is_empty())
            .count()
    };
    let stored = read_from(&direct, "erasure-check", &[], "social.profiles", 3).await?;
    ensure!(
        erased_profiles(&stored) == 10,
        "before compaction: {}",
        erased_profiles(&stored)
    );
    let raw = crate::support::producer(&direct, &[])?;
    for p in 0..3 {
        raw.send(
            rdkafka::producer::FutureRecord::to("social.profiles")
                .partition(p)
                .key("filler")
                .payload("{}"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    }
    // The ten's data keys on the key topic: each published wrapped, then
    // destroyed. A new subject's key moves those records out of the
    // topic's active part, then the broker compacts.
    let store = w.proxy.keys().context("keys")?;
    let ids: Vec<String> = erased
        .iter()
        .map(|s| store.store().subject_keys(s))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|k| k.id.to_string())
        .collect();
    ensure!(ids.len() >= 10, "{} keys of the ten", ids.len());
    let published = read_from(&direct, "keys-check", &[], "_gatehouse.keys", 1).await?;
    for id in &ids {
        let n = published.iter().filter(|r| &r.key == id).count();
        ensure!(n >= 2, "key {id}: {n} records before compaction");
    }
    send(
        &ingest,
        "social.posts",
        "u-filler",
        Some(&post("p-filler", "u-filler")),
        None,
    )
    .await?;
    w.broker.broker()?.compact_now().await?;
    let keys_left = read_from(&direct, "keys-check", &[], "_gatehouse.keys", 1).await?;
    for id in &ids {
        let records: Vec<&str> = keys_left
            .iter()
            .filter(|r| &r.key == id)
            .map(|r| r.value.as_str())
            .collect();
        ensure!(
            records.len() == 1 && records[0].contains("\"destroyed\":true"),
            "key {id} on the key topic after compaction: {records:?}"
        );
    }
    let stored = read_from(&direct, "erasure-check", &[], "social.profiles", 3).await?;
    ensure!(
        erased_profiles(&stored) == 0,
        "profile records of erased subjects after compaction: {}",
        erased_profiles(&stored)
    );
    let tombstones = stored.iter().filter(|r| !kept(&r.key)).count();
    let others = stored
        .iter()
        .filter(|r| kept(&r.key) && r.key != "filler")
        .count();
    ensure!(
        tombstones == 30 && others == 990,
        "{tombstones} tombstones, {others} other profiles"
    );
    // Read back again now (`gatehouse erase verify`): compaction has
    // removed the profile; the post and the ticket are still held, and
    // withheld, until retention removes them.
    let client = gatehouse::admin_client::AdminClient::at(admin, "privacy", "privacy-pw")?;
    let again = client.verify(&erased[0]).await?;
    ensure!(again["outcome"] == "passed", "{again}");
    let held = |topic: &str| {
        again["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic"] == topic)
            .map(|t| (t["held"].as_u64(), t["readable"].as_u64()))
    };
    ensure!(
        held("social.profiles") == Some((Some(0), Some(0)))
            && held("social.posts") == Some((Some(1), Some(0)))
            && held("support.tickets") == Some((Some(1), Some(0))),
        "{again}"
    );
    let text = gatehouse::admin_client::render_verification(&again);
    ensure!(
        text.contains("read back as erasure-verifier: passed") && text.contains("social.profiles"),
        "{text}"
    );
    Ok(())
}

/// A replica that recorded a step in its audit chain and stopped before
/// publishing it does the step again when it restarts, but does not record
/// it a second time: the workflow names the event already in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_recorded_before_a_crash_is_not_recorded_twice() -> Result<()> {
    use gatehouse_keys::{KekProvider, LocalKeyFile};
    let w = World::start().await?;
    let direct = w.broker.broker_addr().to_string();
    crate::support::create_topic(
        &direct,
        "social.profiles",
        3,
        &[("cleanup.policy", "compact")],
    )
    .await?;
    let ingest = w.producer("ingest")?;
    send(
        &ingest,
        "social.posts",
        "u-000001",
        Some(&post("p-1", "u-000001")),
        None,
    )
    .await?;
    // Replica d's chain as it was when d stopped: the request and the key
    // destruction recorded, only the request published.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let (hash, value, mac) = left_by(&w, "u-000001", &[Step::Requested], "d", now)?;
    let provider = LocalKeyFile::open_or_create(&w.dir.path().join("kek.toml"))?;
    let secret =
        gatehouse_keys::Zeroizing::new(provider.mac(gatehouse_audit::SUBJECT_SECRET_LABEL)?);
    let log = gatehouse_audit::AuditLog::open(gatehouse_audit::AuditConfig::new(
        w.dir.path().join("audit-d"),
        "d",
        w.dir.path().join("audit-signing.p8"),
        secret,
    ))
    .await?;
    let recorded = log
        .append(gatehouse_audit::EventKind::Erasure {
            subject: hash.clone(),
            step: "keys_destroyed".into(),
            detail: "0 data keys destroyed".into(),
        })
        .await?;
    log.close().await?;
    drop(log);
    let left = (hash.clone(), value, mac);
    write_left(&direct, &[&left]).await?;

    // d restarts and finishes its workflow (a, running, leaves it to d: it
    // changed just now).
    let d = w.replica("d").await?;
    let eraser = d.eraser().context("replica d erases")?;
    let deadline = Instant::now() + LIMIT;
    while !eraser.erasures().get(&hash).is_some_and(|w| w.done()) {
        ensure!(
            Instant::now() < deadline,
            "not finished: {:?}",
            eraser.erasures().get(&hash)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = eraser.erasures().get(&hash).context("workflow")?;
    let keys_step = done
        .steps
        .iter()
        .find(|s| s.step == Step::KeysDestroyed)
        .context("keys step")?;
    ensure!(
        keys_step.replica == "d" && keys_step.audit_seq == Some(recorded),
        "{keys_step:?} (recorded as seq {recorded})"
    );
    let events = gatehouse_audit::query(
        &[w.dir.path().join("audit-d")],
        &gatehouse_audit::Query::default(),
    )?;
    let keys_events = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, gatehouse_audit::EventKind::Erasure { subject, step, .. }
                if *subject == hash && step == "keys_destroyed")
        })
        .count();
    ensure!(
        keys_events == 1,
        "{keys_events} keys_destroyed events in d's chain"
    );
    // The key really was destroyed on the second run.
    let keys = d.keys().context("keys")?;
    ensure!(keys
        .store()
        .subject_keys("u-000001")?
        .iter()
        .all(|k| k.destroyed));
    d.shutdown().await;
    Ok(())
}

/// A flood of requests to the admin listener: beyond its 64 connections a
/// client gets `503` with `Retry-After` (and `gatehouse erase` retries),
/// not a connection closed without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_admin_listener_answers_503() -> Result<()> {
    let w = World::start_with(with_admin).await?;
    let admin = w.proxy.admin_addr().context("admin listener")?;
    // 64 connections that say nothing hold every slot.
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(tokio::net::TcpStream::connect(admin).await?);
    }
    // Each is accepted in turn; wait until the listener is full.
    let deadline = Instant::now() + LIMIT;
    let answer = loop {
        let a = get(admin, "/api/erasures", Some(&basic("privacy"))).await?;
        if a.status == 503 || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    ensure!(answer.status == 503, "{} {}", answer.status, answer.body);
    ensure!(answer.body.contains("busy"), "{}", answer.body);
    drop(idle);
    Ok(())
}

/// The configuration of replica `name` of `w` as a TOML file, for a proxy
/// in a process of its own (`gatehouse-serve`).
pub(crate) fn process_config(w: &World, name: &str) -> Result<std::path::PathBuf> {
    let d = w.dir.path();
    let p = |rel: &str| toml::Value::String(d.join(rel).to_string_lossy().into_owned());
    let text = format!(
        r#"[listener]
bind = "127.0.0.1:0"

[upstream]
bootstrap_servers = ["{direct}"]

[auth]
mechanisms = ["PLAIN"]
credentials_file = {users}
max_failure_delay_ms = 1000

[policy]
dir = {policies}
reload_interval_secs = 1
consent_topic = "consent.events"
state_dir = {state}

[keys]
key_file = {kek}
state_dir = {keys}
erasure_verify_as = "erasure-verifier"

[audit]
dir = {audit}
replica_id = "{name}"
checkpoint_every = 100
index_block_events = 16

[admin]
bind = "127.0.0.1:0"
"#,
        direct = w.broker.broker_addr(),
        users = p("users.toml"),
        policies = toml::Value::String(w.policy_dir.to_string_lossy().into_owned()),
        state = p(&format!("state-{name}")),
        kek = p("kek.toml"),
        keys = p(&format!("keys-{name}")),
        audit = p(&format!("audit-{name}")),
    );
    let file = d.join(format!("proxy-{name}.toml"));
    std::fs::write(&file, text)?;
    Ok(file)
}

/// Starts `gatehouse-serve` with `config`, crashing at `fault` if given;
/// returns the child and its admin address.
pub(crate) async fn serve_process(
    config: &std::path::Path,
    fault: Option<&str>,
) -> Result<(tokio::process::Child, std::net::SocketAddr)> {
    let (child, _, admin) = serve_process_listening(config, fault).await?;
    Ok((child, admin.context("no admin address")?))
}

/// As [`serve_process`]: the process, its client listener and its admin
/// listener (if configured).
pub(crate) async fn serve_process_listening(
    config: &std::path::Path,
    fault: Option<&str>,
) -> Result<(
    tokio::process::Child,
    std::net::SocketAddr,
    Option<std::net::SocketAddr>,
)> {
    serve_process_logged(config, fault, None).await
}

/// As [`serve_process_listening`], with the process's log (at `info`)
/// written to `log` when given.
pub(crate) async fn serve_process_logged(
    config: &std::path::Path,
    fault: Option<&str>,
    log: Option<&std::path::Path>,
) -> Result<(
    tokio::process::Child,
    std::net::SocketAddr,
    Option<std::net::SocketAddr>,
)> {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-serve"));
    cmd.arg(config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(log) = log {
        cmd.stderr(std::fs::File::create(log)?)
            .env("GATEHOUSE_LOG", "info")
            .env("NO_COLOR", "1");
    }
    match fault {
        Some(f) => cmd.env("GATEHOUSE_FAULT", f),
        None => cmd.env_remove("GATEHOUSE_FAULT"),
    };
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .context("the proxy process did not start")??
        .context("the proxy process ended before it listened")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let listening = words.get(1).context("no client listener")?.parse()?;
    let admin = words.get(3).and_then(|a| a.parse().ok());
    Ok((child, listening, admin))
}

/// A proxy process crashed at every step of a workflow in turn (after the
/// request was published; after each later step was recorded in the audit
/// chain but before it was published) and started again each time: the
/// workflow completes, with exactly one audit event per step, and the
/// chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_crashed_at_every_step_finishes_with_one_audit_event_per_step() -> Result<()> {
    let w = World::start().await?;
    let direct = w.broker.broker_addr().to_string();
    crate::support::create_topic(
        &direct,
        "social.profiles",
        3,
        &[("cleanup.policy", "compact")],
    )
    .await?;
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
    }
    let config = process_config(&w, "k")?;
    let body = format!(r#"{{"subject":"{ERASED}","reason":"customer request 5150"}}"#);
    let faults = [
        "erasure:requested:published",
        "erasure:keys_destroyed:recorded",
        "erasure:tombstoned:recorded",
        "erasure:suppressing:recorded",
        "erasure:verified:recorded",
    ];
    for (i, fault) in faults.iter().enumerate() {
        let (mut child, admin) = serve_process(&config, Some(fault)).await?;
        if i == 0 {
            // The process dies before it answers.
            let _ = request(
                admin,
                "POST",
                "/api/erase",
                Some(&basic("privacy")),
                Some(&body),
            )
            .await;
        }
        let status = tokio::time::timeout(LIMIT, child.wait())
            .await
            .with_context(|| format!("the proxy did not stop at {fault}"))??;
        ensure!(!status.success(), "{fault}: exited with {status}");
    }
    // Started once more without a fault, it finishes the workflow.
    let (mut child, admin) = serve_process(&config, None).await?;
    let deadline = Instant::now() + LIMIT;
    let workflow = loop {
        let r = get(
            admin,
            &format!("/api/erasures/{ERASED}"),
            Some(&basic("privacy")),
        )
        .await?;
        if r.status == 200 && r.json()?["workflow"]["done"] == true {
            break r.json()?["workflow"].clone();
        }
        ensure!(
            Instant::now() < deadline,
            "not finished: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.start_kill()?;
    child.wait().await?;
    ensure!(
        workflow["verification"]["outcome"] == "passed",
        "{workflow}"
    );
    let hash = workflow["subject_hash"].as_str().context("hash")?;
    let chain = vec![w.dir.path().join("audit-k")];
    let mut steps: Vec<String> =
        gatehouse_audit::query(&chain, &gatehouse_audit::Query::default())?
            .into_iter()
            .filter_map(|e| match e.kind {
                gatehouse_audit::EventKind::Erasure { subject, step, .. } if subject == hash => {
                    Some(step)
                }
                _ => None,
            })
            .collect();
    steps.sort_by_key(|s| Step::ALL.iter().position(|x| x.name() == s));
    ensure!(
        steps
            == [
                "requested",
                "keys_destroyed",
                "tombstoned",
                "suppressing",
                "verified"
            ],
        "audited steps: {steps:?}"
    );
    let verified = gatehouse_audit::verify(&chain)?;
    ensure!(verified.is_clean(), "{verified:?}");
    Ok(())
}
