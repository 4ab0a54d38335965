#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatehouse_audit::{
    export_cloudevents, hash_subject, query, verify, AuditError, AuditLog, Decision, EventKind,
    Query, SigningKey,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_chain() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path(), "r1");
    let dir = cfg.dir.clone();
    let log = AuditLog::open(cfg).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..500 {
                let p = format!("p{t}");
                let s = format!("s{i}");
                seqs.push(
                    log.append(delivery(&p, "orders", &[s.as_str()]))
                        .await
                        .unwrap(),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    log.close().await.unwrap();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4000, "every append got its own seq");
    let report = verify(std::slice::from_ref(&dir)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    // 4000 events + 4 periodic checkpoints (every 1000) and none extra on close.
    assert_eq!(report.replicas[0].events, 4004);
    let p3 = query(
        &[dir],
        &Query {
            principal: Some("p3".into()),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(p3.len(), 500);
    assert!(p3.windows(2).all(|w| w[0].seq < w[1].seq));
}

const TORN: &[u8] = b"{\"replica\":\"r1\",\"seq\":99,\"time_ms\":12";

#[test]
fn crash_without_close_and_torn_line_recovers() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Vec<u64> = rt.block_on(async {
        let mut cfg = config(root.path(), "r1");
        cfg.checkpoint_every = 7;
        let log = AuditLog::open(cfg).await.unwrap();
        let mut acked = Vec::new();
        for i in 0..30 {
            acked.push(
                log.append(delivery("alice", "orders", &[&format!("s{i}")]))
                    .await
                    .unwrap(),
            );
        }
        acked
    });
    // "Crash": the runtime goes away with the writer task, no close, no final checkpoint.
    drop(rt);
    let seg = segment(&dir, 1);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(TORN).unwrap();
    drop(f);
    // verify sees the torn line before recovery.
    let before = verify(std::slice::from_ref(&dir)).unwrap();
    assert!(before.replicas[0]
        .first_problem
        .as_ref()
        .unwrap()
        .reason
        .contains("incomplete"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = AuditLog::open(config(root.path(), "r1")).await.unwrap();
        let report = verify(std::slice::from_ref(&dir)).unwrap();
        assert!(report.is_clean(), "{report:?}");
        let all = query(std::slice::from_ref(&dir), &Query::default()).unwrap();
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        for s in &acked {
            assert!(seqs.contains(s), "acknowledged seq {s} lost");
        }
        let recovery: Vec<_> = all
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Recovery { .. }))
            .collect();
        assert_eq!(recovery.len(), 1);
        match &recovery[0].kind {
            EventKind::Recovery {
                segment, bytes_cut, ..
            } => {
                assert_eq!(segment, "segment-000000000001.jsonl");
                assert_eq!(*bytes_cut, TORN.len() as u64);
            }
            _ => unreachable!(),
        }
        let next = log.append(delivery("bob", "orders", &[])).await.unwrap();
        assert_eq!(next, recovery[0].seq + 1);
        log.close().await.unwrap();
        assert!(verify(std::slice::from_ref(&dir)).unwrap().is_clean());
    });
}

#[tokio::test]
async fn reopen_continues_the_chain_across_segments() {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path(), "r1");
    cfg.segment_max_bytes = 1500;
    cfg.checkpoint_every = 4;
    let dir = cfg.dir.clone();
    let log = AuditLog::open(cfg).await.unwrap();
    log.append_all((0..10).map(|_| delivery("a", "t", &["x"])).collect())
        .await
        .unwrap();
    log.close().await.unwrap();
    assert!(matches!(
        log.append(delivery("a", "t", &[])).await,
        Err(AuditError::Closed)
    ));
    let mut cfg = config(root.path(), "r1");
    cfg.segment_max_bytes = 1500;
    let log = AuditLog::open(cfg).await.unwrap();
    let seq = log.append(delivery("a", "t", &["x"])).await.unwrap();
    // 10 events with checkpoints at seqs 5 and 10 (after every 4 events) and 13 (close).
    assert_eq!(seq, 14);
    log.close().await.unwrap();
    assert!(segment(&dir, 3).exists());
    let report = verify(std::slice::from_ref(&dir)).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        query(
            &[dir],
            &Query {
                subject_hash: Some("x".into()),
                ..Query::default()
            }
        )
        .unwrap()
        .len(),
        11
    );
}

#[tokio::test]
async fn subject_query_spans_replicas_in_time_order() {
    let root = tempfile::tempdir().unwrap();
    let a = AuditLog::open(config(root.path(), "ra")).await.unwrap();
    let b = AuditLog::open(config(root.path(), "rb")).await.unwrap();
    let subject = a.subject_hash("customer-42");
    assert_eq!(subject, b.subject_hash("customer-42"));
    assert_eq!(subject, hash_subject(&SECRET, "customer-42"));
    assert_ne!(subject, a.subject_hash("customer-43"));
    assert_eq!(subject.len(), 64);
    let other = a.subject_hash("customer-43");
    for i in 0..6 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.append(delivery("alice", "orders", &[subject.as_str()]))
            .await
            .unwrap();
        log.append(delivery("alice", "orders", &[other.as_str()]))
            .await
            .unwrap();
    }
    b.append(EventKind::Erasure {
        subject: subject.clone(),
        step: "keys-shredded".into(),
        detail: "".into(),
    })
    .await
    .unwrap();
    let dirs = vec![root.path().join("ra"), root.path().join("rb")];
    // While the writers run: served from their indexes.
    let q = Query {
        subject_hash: Some(subject.clone()),
        ..Query::default()
    };
    let found = query(&dirs, &q).unwrap();
    assert_eq!(found.len(), 7);
    assert_eq!(found.iter().filter(|e| e.replica == "ra").count(), 3);
    assert_eq!(found.iter().filter(|e| e.replica == "rb").count(), 4);
    assert!(found.windows(2).all(
        |w| (w[0].time_ms, &w[0].replica, w[0].seq) <= (w[1].time_ms, &w[1].replica, w[1].seq)
    ));
    assert!(matches!(
        found.last().unwrap().kind,
        EventKind::Erasure { .. }
    ));
    let limited = query(
        &dirs,
        &Query {
            limit: Some(2),
            ..q.clone()
        },
    )
    .unwrap();
    assert_eq!(limited, found[..2].to_vec());
    a.close().await.unwrap();
    b.close().await.unwrap();
    // After close, and with the indexes deleted: rebuilt from the segments.
    assert_eq!(query(&dirs, &q).unwrap(), found);
    for d in &dirs {
        std::fs::remove_file(d.join("index.redb")).unwrap();
    }
    assert_eq!(query(&dirs, &q).unwrap(), found);
    assert!(verify(&dirs).unwrap().is_clean());
}

#[tokio::test]
async fn decision_time_and_topic_filters() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path(), "r1");
    let dir = vec![cfg.dir.clone()];
    let log = AuditLog::open(cfg).await.unwrap();
    log.append(decision("alice", "orders", Decision::Deny))
        .await
        .unwrap();
    log.append(decision("alice", "orders", Decision::Allow))
        .await
        .unwrap();
    log.append(delivery("alice", "orders", &[])).await.unwrap();
    log.append(EventKind::AuthOk {
        principal: "bob".into(),
        mechanism: "PLAIN".into(),
        peer: "127.0.0.1:1".into(),
    })
    .await
    .unwrap();
    let deny = query(
        &dir,
        &Query {
            decision: Some(Decision::Deny),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(deny.len(), 1);
    assert_eq!(deny[0].seq, 1);
    let allow = query(
        &dir,
        &Query {
            decision: Some(Decision::Allow),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(allow.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    let topic = query(
        &dir,
        &Query {
            topic: Some("orders".into()),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(topic.len(), 3);
    let all = query(&dir, &Query::default()).unwrap();
    let t2 = all[1].time_ms;
    let after = query(
        &dir,
        &Query {
            from_ms: Some(t2),
            ..Query::default()
        },
    )
    .unwrap();
    assert!(after.iter().all(|e| e.time_ms >= t2) && after.iter().any(|e| e.seq == 2));
    let none = query(
        &dir,
        &Query {
            to_ms: Some(all[0].time_ms.saturating_sub(1)),
            ..Query::default()
        },
    )
    .unwrap();
    assert!(none.is_empty());
    let bob = query(
        &dir,
        &Query {
            principal: Some("bob".into()),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(bob.len(), 1);

    let mut out = Vec::new();
    let n = export_cloudevents(&dir, &Query::default(), &mut out).unwrap();
    assert_eq!(n, 4);
    let first: serde_json::Value =
        serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["specversion"], "1.0");
    assert_eq!(first["id"], "r1/1");
    assert_eq!(first["type"], "dev.gatehouse.audit.decision");
    assert_eq!(first["datacontenttype"], "application/json");
    assert_eq!(first["data"]["kind"]["decision"], "deny");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    log.close().await.unwrap();
}

#[tokio::test]
async fn signing_key_is_private_and_redacted() {
    let root = tempfile::tempdir().unwrap();
    let cfg = config(root.path(), "r1");
    let key_path = cfg.signing_key_path.clone();
    let log = AuditLog::open(cfg).await.unwrap();
    log.close().await.unwrap();
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = SigningKey::load_or_create(&key_path).unwrap();
    let dbg = format!("{key:?}");
    assert!(dbg.contains("redacted"));
    let pkcs8 = std::fs::read(&key_path).unwrap();
    let b64 = base64_of(&pkcs8);
    assert!(!dbg.contains(&b64[..20]));
    let cfg_dbg = format!("{:?}", config(root.path(), "r1"));
    assert!(cfg_dbg.contains("redacted") && !cfg_dbg.contains("7, 7, 7"));

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        SigningKey::load_or_create(&key_path),
        Err(AuditError::Key { .. })
    ));
    assert!(matches!(
        AuditLog::open(config(root.path(), "r1")).await,
        Err(AuditError::Key { .. })
    ));
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A different key for an existing chain is refused.
    let mut cfg = config(root.path(), "r1");
    cfg.signing_key_path = root.path().join("keys/other.pk8");
    assert!(matches!(
        AuditLog::open(cfg).await,
        Err(AuditError::Key { .. })
    ));
    // Pinning: the right key verifies, another is refused.
    let dir = vec![root.path().join("r1")];
    let trusted = vec![key.public_base64()];
    assert!(gatehouse_audit::verify_with_trusted_keys(&dir, &trusted)
        .unwrap()
        .is_clean());
    let other = SigningKey::load_or_create(&root.path().join("keys/other.pk8")).unwrap();
    assert!(
        !gatehouse_audit::verify_with_trusted_keys(&dir, &[other.public_base64()])
            .unwrap()
            .is_clean()
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn second_writer_on_a_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(root.path(), "r1")).await.unwrap();
    assert!(matches!(
        AuditLog::open(config(root.path(), "r1")).await,
        Err(AuditError::AlreadyOpen(_))
    ));
    log.close().await.unwrap();
    let again = AuditLog::open(config(root.path(), "r1")).await.unwrap();
    again.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_segment_roll_fails_closed_then_resumes() {
    // A real OS error: the next segment's path is taken (by a directory), so rolling
    // to it fails; as root, permission bits would not stop the writer.
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path(), "r1");
    cfg.segment_max_bytes = 1200;
    let dir = cfg.dir.clone();
    let log = Arc::new(AuditLog::open(cfg).await.unwrap());
    let first = log.append(delivery("a", "t", &[])).await.unwrap();
    std::fs::create_dir(segment(&dir, 2)).unwrap();
    let mut failed = None;
    for _ in 0..20 {
        if let Err(e) = log.append(delivery("a", "t", &[])).await {
            failed = Some(e);
            break;
        }
    }
    assert!(
        matches!(failed, Some(AuditError::Unavailable(_))),
        "{failed:?}"
    );
    // While the path is taken, appends keep failing (the writer tries again
    // at most once a second).
    assert!(matches!(
        log.append(delivery("a", "t", &[])).await,
        Err(AuditError::Unavailable(_))
    ));
    // Once it is free, they resume.
    std::fs::remove_dir(segment(&dir, 2)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let resumed = loop {
        match log.append(delivery("a", "t", &[])).await {
            Ok(seq) => break seq,
            Err(AuditError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("appends did not resume: {e}"),
        }
    };
    assert!(resumed > first + 1);
    log.close().await.unwrap();
    drop(log);
    // close() returns once the writer has let go of the directory: reopen at once.
    let mut cfg = config(root.path(), "r1");
    cfg.segment_max_bytes = 1200;
    let log = AuditLog::open(cfg).await.unwrap();
    assert!(log.append(delivery("a", "t", &[])).await.unwrap() > resumed);
    log.close().await.unwrap();
    assert!(verify(&[dir]).unwrap().is_clean());
}
