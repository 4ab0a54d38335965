//! Tests that need crate internals (fault injection).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use zeroize::Zeroizing;

use crate::index::{sync_tail, Access, Index, Pending, ReaderGuard};
use crate::segment::list_segments;
use crate::{query, verify, AuditConfig, AuditError, AuditLog, EventKind, Query};

fn kind() -> EventKind {
    EventKind::PolicyReload {
        policy_hash: "abc".into(),
        trigger: "test".into(),
        accepted: true,
        message: None,
    }
}

/// Disk full for real: the writer's segment file is swapped for `/dev/full`, whose
/// writes fail with ENOSPC, after a torn write left bytes in the segment. Appends
/// fail closed, then resume once the disk takes writes again: the torn bytes are
/// cut, a `recovery` event records it, and the chain verifies.
#[tokio::test]
async fn disk_full_fails_closed_then_resumes_when_writable() {
    let root = tempfile::tempdir().unwrap();
    let mk = || {
        let mut c = AuditConfig::new(
            root.path().join("r1"),
            "r1",
            root.path().join("key.pk8"),
            Zeroizing::new([1u8; 32]),
        );
        c.flush_interval = Duration::ZERO;
        c
    };
    let log = AuditLog::open(mk()).await.unwrap();
    assert_eq!(log.append(kind()).await.unwrap(), 1);
    // What a write cut short by a full disk leaves: part of a line.
    let segment = root.path().join("r1").join(crate::segment::segment_name(1));
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut torn, b"{\"replica\":\"r1\",\"se").unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    log.swap_file_for_test(full).await;
    let err = log.append(kind()).await.unwrap_err();
    assert!(
        matches!(err, AuditError::Unavailable(ref m) if m.contains("No space")),
        "{err}"
    );
    // Fail closed: the next ones fail too, concurrently or not.
    let (a, b) = tokio::join!(log.append(kind()), log.append_all(vec![kind(), kind()]));
    assert!(matches!(a, Err(AuditError::Unavailable(_))));
    assert!(matches!(b, Err(AuditError::Unavailable(_))));
    // The writer tries the segment again (at most once a second) and finds
    // it writable: the recovery event is seq 2, this append seq 3.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seq = loop {
        match log.append(kind()).await {
            Ok(seq) => break seq,
            Err(AuditError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("appends did not resume: {e}"),
        }
    };
    assert_eq!(seq, 3);
    log.close().await.unwrap();
    let report = verify(&[root.path().join("r1")]).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let text = std::fs::read_to_string(&segment).unwrap();
    let recovery = text
        .lines()
        .find(|l| l.contains("\"recovery\""))
        .expect("a recovery event");
    assert!(recovery.contains("\"bytes_cut\":19"), "{recovery}");
    assert!(recovery.contains("No space"), "{recovery}");

    let log = AuditLog::open(mk()).await.unwrap();
    assert!(log.append(kind()).await.unwrap() > 3);
    log.close().await.unwrap();
    assert!(verify(&[root.path().join("r1")]).unwrap().is_clean());
}

fn config(root: &std::path::Path, block: usize) -> AuditConfig {
    let mut c = AuditConfig::new(
        root.join("r1"),
        "r1",
        root.join("key.pk8"),
        Zeroizing::new([1u8; 32]),
    );
    c.flush_interval = Duration::ZERO;
    c.index_block_events = block;
    c
}

fn delivery(i: u64) -> EventKind {
    EventKind::Delivery {
        principal: format!("p{}", i % 2),
        topic: "orders".into(),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
        records: 1,
        fields: Default::default(),
        subjects: vec![format!("s{}", i % 3)],
        policies: vec![],
    }
}

fn by_principal(p: &str) -> Query {
    Query {
        principal: Some(p.into()),
        ..Query::default()
    }
}

/// While the writer is open, a query reads the writer's pending items (under the
/// index lock) and the segments after them, and writes nothing to the index.
#[tokio::test]
async fn writer_open_queries_use_pending_items_and_never_write_the_index() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 8)).await.unwrap();
    for i in 0..20 {
        log.append(delivery(i)).await.unwrap();
    }
    // Appenders are answered before their events join the pending items; an empty
    // request is handled after that (the writer takes requests in order).
    log.append_all(Vec::new()).await.unwrap();
    // 20 events in requests of one: blocks of 8 and 8, 4 pending.
    let guard = ReaderGuard::acquire(&dir).unwrap();
    assert!(!guard.writable && guard.write_lock().is_none());
    let ix = Index::new(guard.db.clone()).unwrap();
    assert_eq!(ix.state().unwrap().unwrap().seq, 16);
    let q = by_principal("p1");
    let dirs = vec![dir.clone()];
    let found = query(&dirs, &q).unwrap();
    assert_eq!(
        found.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=20).filter(|s| s % 2 == 0).collect::<Vec<_>>()
    );
    assert_eq!(
        ix.state().unwrap().unwrap().seq,
        16,
        "a query wrote the index"
    );

    let segments = list_segments(&dir).unwrap();
    let keep = |e: &crate::Event| q.matches(e);
    // With the writer's pending items: their candidates come from memory.
    let read = Access::Read {
        lock: guard.index_lock(),
        query: &q,
    };
    let synced = sync_tail(&ix, &dir, &segments, read, keep)
        .unwrap()
        .unwrap();
    assert_eq!(synced.upto, 16);
    let pending: Vec<u64> = synced.pending.iter().map(|p| p.0).collect();
    assert_eq!(pending, vec![18, 20]);
    assert!(synced.tail.is_empty() && synced.tail_ordered);
    // Without them (as if nothing were pending): from the segments.
    let nothing = std::sync::Mutex::new(Pending::default());
    let read = Access::Read {
        lock: &nothing,
        query: &q,
    };
    let synced = sync_tail(&ix, &dir, &segments, read, keep)
        .unwrap()
        .unwrap();
    assert!(synced.pending.is_empty());
    let tail: Vec<u64> = synced.tail.iter().map(|e| e.seq).collect();
    assert_eq!(tail, vec![18, 20]);
    assert_eq!(ix.state().unwrap().unwrap().seq, 16);

    // Close writes the rest (and the closing checkpoint) as a block.
    log.close().await.unwrap();
    assert_eq!(ix.state().unwrap().unwrap().seq, 21);
    drop((ix, guard));
    assert_eq!(query(&dirs, &q).unwrap(), found);
}

/// Replaces the index of a closed log through the registry (so that the next query
/// can open it at once), then checks that a query rebuilds it.
fn rebuilt_by_a_query(dir: &std::path::Path, damage: impl FnOnce(&Index, &redb::WriteTransaction)) {
    let dirs = vec![dir.to_path_buf()];
    let want: Vec<Vec<crate::Event>> = ["p0", "p1"]
        .iter()
        .map(|p| query(&dirs, &by_principal(p)).unwrap())
        .collect();
    assert_eq!(want[0].len() + want[1].len(), 30);
    let last = {
        let guard = ReaderGuard::acquire(dir).unwrap();
        let ix = Index::new(guard.db.clone()).unwrap();
        let last = ix.state().unwrap().unwrap();
        let tx = guard.db.begin_write().unwrap();
        damage(&ix, &tx);
        tx.commit().unwrap();
        last
    };
    for (p, want) in ["p0", "p1"].iter().zip(&want) {
        assert_eq!(&query(&dirs, &by_principal(p)).unwrap(), want);
    }
    let guard = ReaderGuard::acquire(dir).unwrap();
    let ix = Index::new(guard.db.clone()).unwrap();
    assert!(ix.format_ok().unwrap());
    assert_eq!(ix.state().unwrap(), Some(last));
}

/// A table of the index, by name, for writing in a test.
fn table<'t>(
    tx: &'t redb::WriteTransaction,
    name: &str,
) -> redb::Table<'t, &'static [u8], &'static [u8]> {
    tx.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))
        .unwrap()
}

#[tokio::test]
async fn older_format_index_is_rebuilt_by_a_query() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    for i in 0..30 {
        log.append(delivery(i)).await.unwrap();
    }
    log.close().await.unwrap();

    // Format 1: per-event keys, `upto` = seq + hash, no `format`.
    rebuilt_by_a_query(&dir, |ix, tx| {
        let last = ix.state().unwrap().unwrap();
        for t in crate::index::TABLES {
            tx.delete_table(t).unwrap();
        }
        let mut upto = last.seq.to_be_bytes().to_vec();
        upto.extend_from_slice(last.hash.as_bytes());
        table(tx, "meta")
            .insert(b"upto".as_slice(), upto.as_slice())
            .unwrap();
        for seq in 1..=last.seq {
            let mut k = b"p1\0".to_vec();
            k.extend_from_slice(&0u64.to_be_bytes());
            k.extend_from_slice(&seq.to_be_bytes());
            table(tx, "principal")
                .insert(k.as_slice(), [].as_slice())
                .unwrap();
            table(tx, "events")
                .insert(seq.to_be_bytes().as_slice(), [0u8; 28].as_slice())
                .unwrap();
        }
    });
    // The current layout stamped with another format, and missing entries: only
    // the format number tells.
    rebuilt_by_a_query(&dir, |_, tx| {
        table(tx, "meta")
            .insert(b"format".as_slice(), 2u32.to_be_bytes().as_slice())
            .unwrap();
        tx.delete_table(crate::index::TABLES[1]).unwrap();
    });
    // No format at all.
    rebuilt_by_a_query(&dir, |_, tx| {
        table(tx, "meta").remove(b"format".as_slice()).unwrap();
        tx.delete_table(crate::index::TABLES[1]).unwrap();
    });
}

/// The sled index of formats 1 and 2 (a directory `index/`) is removed by the next
/// writer, unless a process of the older version holds it (sled locks its `db` file
/// while open, and that process writes the chain): then the writer is refused.
/// Readers answer from the new index and leave the old one alone.
#[tokio::test]
async fn a_sled_index_of_an_older_version_is_removed_unless_in_use() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    for i in 0..10 {
        log.append(delivery(i)).await.unwrap();
    }
    log.close().await.unwrap();
    std::fs::remove_file(dir.join(crate::index::INDEX_FILE)).unwrap();
    let old = dir.join("index");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("conf"), b"segment_size: 524288").unwrap();
    std::fs::write(old.join("db"), vec![0u8; 4096]).unwrap();
    let dirs = vec![dir.clone()];
    let found = query(&dirs, &by_principal("p0")).unwrap();
    assert_eq!(found.len(), 5);
    assert!(old.exists(), "a reader leaves the sled directory");

    let older_version = std::fs::OpenOptions::new()
        .write(true)
        .open(old.join("db"))
        .unwrap();
    older_version.try_lock().unwrap();
    match AuditLog::open(config(root.path(), 4)).await {
        Err(AuditError::WrittenElsewhere(d)) => assert_eq!(d, dir),
        other => panic!("expected WrittenElsewhere, got {:?}", other.map(|_| ())),
    }
    assert!(old.exists(), "a sled index in use is not removed");
    drop(older_version);

    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    assert!(!old.exists(), "the sled directory is gone");
    log.close().await.unwrap();
    assert!(dir.join(crate::index::INDEX_FILE).is_file());
    assert_eq!(query(&dirs, &by_principal("p0")).unwrap().len(), 5);
}

/// Another process writing the directory (holding `writer.lock`) refuses a writer,
/// whatever index either uses; the lock is free again once the writer closes.
#[tokio::test]
async fn a_writer_in_another_process_refuses_the_writer() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    log.append(delivery(0)).await.unwrap();
    // A second open file description conflicts like another process's.
    let elsewhere = std::fs::File::open(dir.join(crate::index::WRITER_LOCK_FILE)).unwrap();
    assert!(matches!(
        elsewhere.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    log.close().await.unwrap();
    elsewhere.try_lock().unwrap();
    match AuditLog::open(config(root.path(), 4)).await {
        Err(AuditError::WrittenElsewhere(d)) => assert_eq!(d, dir),
        other => panic!("expected WrittenElsewhere, got {:?}", other.map(|_| ())),
    }
    drop(elsewhere);
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    log.close().await.unwrap();
}

/// An index file that is not a redb database is recreated by the writer and rebuilt
/// from the segments.
#[tokio::test]
async fn a_corrupt_index_is_rebuilt_by_the_writer() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    for i in 0..10 {
        log.append(delivery(i)).await.unwrap();
    }
    log.close().await.unwrap();
    std::fs::write(dir.join(crate::index::INDEX_FILE), vec![0x5a; 8192]).unwrap();
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    log.append(delivery(10)).await.unwrap();
    log.close().await.unwrap();
    let dirs = vec![dir.clone()];
    assert_eq!(query(&dirs, &by_principal("p0")).unwrap().len(), 6);
}

/// A reader that found no writer may index the tail, until a writer registers.
#[tokio::test]
async fn a_reader_stops_writing_once_a_writer_registers() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    log.append(delivery(0)).await.unwrap();
    log.close().await.unwrap();
    let guard = ReaderGuard::acquire(&dir).unwrap();
    assert!(guard.writable && guard.write_lock().is_some());
    let log = AuditLog::open(config(root.path(), 4)).await.unwrap();
    assert!(guard.write_lock().is_none());
    log.close().await.unwrap();
}

/// The head is rewritten in place between checkpoints: after every batch it
/// names the last event, it is replaced at checkpoints, and a head left
/// longer than its content (space padding) still reads and verifies.
#[tokio::test]
async fn head_follows_every_batch_in_place() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let mut c = AuditConfig::new(
        dir.clone(),
        "r1",
        root.path().join("key.pk8"),
        Zeroizing::new([1u8; 32]),
    );
    c.flush_interval = Duration::ZERO;
    c.checkpoint_every = 5;
    let log = AuditLog::open(c).await.unwrap();
    let mut last = 0;
    for _ in 0..12 {
        last = log.append_all(vec![kind(), kind()]).await.unwrap();
        let head = crate::key::read_head(&dir).unwrap().unwrap().unwrap();
        assert_eq!(head.seq, last);
    }
    // Padding as a shorter head would leave it: still one valid head.
    let path = dir.join(crate::HEAD_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[b' '; 300]);
    std::fs::write(&path, &bytes).unwrap();
    let head = crate::key::read_head(&dir).unwrap().unwrap().unwrap();
    assert_eq!(head.seq, last);
    assert!(verify(std::slice::from_ref(&dir)).unwrap().is_clean());
    log.close().await.unwrap();
    assert!(verify(&[dir]).unwrap().is_clean());
}

/// Subject hashes are remembered, and the memo never changes an answer:
/// the same as before it filled and started over, and as another log with
/// the same secret computes without a memo.
#[tokio::test]
async fn subject_hashes_are_stable_across_the_memo() {
    let root = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        AuditLog::open(AuditConfig::new(
            root.path().join(name),
            name,
            root.path().join("key.pk8"),
            Zeroizing::new([3u8; 32]),
        ))
    };
    let a = open("a").await.unwrap();
    let first = a.subject_hash("u-000001");
    assert_eq!(first.len(), 64);
    assert_eq!(a.subject_hash("u-000001"), first);
    for i in 0..(super::log::SUBJECT_HASH_MEMO + 10) {
        let _ = a.subject_hash(&format!("s-{i}"));
    }
    assert_eq!(a.subject_hash("u-000001"), first);
    let b = open("b").await.unwrap();
    assert_eq!(b.subject_hash("u-000001"), first);
    assert_ne!(b.subject_hash("u-000002"), first);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A `key_operation` event written before `detail` existed (its line has no
/// `detail`) reads back with `None` and keeps its hash; one with a detail
/// round-trips it.
#[test]
fn key_operation_detail_keeps_old_hashes() {
    use crate::event::{Event, GENESIS_HASH};
    let old_kind = r#"{"type":"key_operation","operation":"publish","key_id":"k1","subject":null,"actor":"proxy a"}"#;
    let unhashed = format!(
        r#"{{"replica":"a","seq":1,"time_ms":5,"prev_hash":"{GENESIS_HASH}","kind":{old_kind}}}"#
    );
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(GENESIS_HASH.as_bytes());
    ctx.update(unhashed.as_bytes());
    let hash = crate::event::hex(ctx.finish().as_ref());
    let line = format!(
        r#"{{"replica":"a","seq":1,"time_ms":5,"prev_hash":"{GENESIS_HASH}","hash":"{hash}","kind":{old_kind}}}"#
    );
    let event: Event = serde_json::from_str(&line).expect("an old line parses");
    assert!(matches!(
        &event.kind,
        EventKind::KeyOperation { detail: None, .. }
    ));
    assert_eq!(event.compute_hash().expect("hash"), hash);
    assert_eq!(
        event.canonical_unhashed().expect("canonical"),
        unhashed.as_bytes()
    );

    let with = Event {
        kind: EventKind::KeyOperation {
            operation: "rejected_record".into(),
            key_id: None,
            subject: None,
            actor: "proxy a".into(),
            detail: Some("3 records".into()),
        },
        ..event
    };
    let back: Event = serde_json::from_slice(&with.to_line().expect("line")).expect("round trip");
    assert_eq!(back, with);
}

/// A measurement, run by hand (`cargo test -p gatehouse-audit --release --lib
/// -- --ignored --nocapture writer_memory`): the process's resident memory
/// while one writer appends delivery events in batches of 50, as the proxy
/// does under load. Prints RSS eight times along the way and the index
/// file's size. `GATEHOUSE_MEM_EVENTS` (default 400,000),
/// `GATEHOUSE_MEM_SUBJECTS` (distinct subjects, cycled; default 200) and
/// `GATEHOUSE_MEM_BLOCK` (events per index block; default 4096, the soak's
/// blocks are about 300 events, one second's) shape the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn writer_memory_while_appending() {
    fn rss_mb() -> f64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }
    let root = tempfile::tempdir().unwrap();
    let mut c = AuditConfig::new(
        root.path().join("r1"),
        "r1",
        root.path().join("key.pk8"),
        Zeroizing::new([1u8; 32]),
    );
    c.checkpoint_every = 100;
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let subjects = var("GATEHOUSE_MEM_SUBJECTS", 200);
    c.index_block_events = var("GATEHOUSE_MEM_BLOCK", 4096) as usize;
    let log = AuditLog::open(c).await.unwrap();
    let mut line = vec![format!("0: {:.1} MB", rss_mb())];
    let batches = var("GATEHOUSE_MEM_EVENTS", 400_000) / 50;
    for batch in 0..batches {
        let kinds = (0..50)
            .map(|i| {
                let n = batch * 50 + i;
                EventKind::Delivery {
                    principal: "analytics".into(),
                    topic: "social.posts".into(),
                    partition: (n % 3) as i32,
                    first_offset: n as i64,
                    last_offset: n as i64,
                    records: 1,
                    fields: Default::default(),
                    subjects: vec![log.subject_hash(&format!("u-{}", n % subjects))],
                    policies: vec!["analytics-consented".into()],
                }
            })
            .collect();
        log.append_all(kinds).await.unwrap();
        if (batch + 1) % (batches / 8).max(1) == 0 {
            line.push(format!("{}: {:.1} MB", (batch + 1) * 50, rss_mb()));
        }
    }
    log.close().await.unwrap();
    let dir = root.path().join("r1");
    let index = std::fs::metadata(dir.join(crate::index::INDEX_FILE)).map_or(0, |m| m.len());
    let segments: u64 = crate::segment::list_segments(&dir)
        .unwrap()
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    eprintln!(
        "RSS by events appended: {}; index file {:.1} MB, segments {:.1} MB",
        line.join(", "),
        index as f64 / 1e6,
        segments as f64 / 1e6
    );
}
