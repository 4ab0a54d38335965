#![allow(clippy::unwrap_used)]

//! The index in postings blocks: queries across many blocks, with events that are
//! only pending in the writer or only in the segments, after reopen, after the index
//! is deleted or has an older format, with time ranges that cut through blocks, and
//! against the segments themselves as the model.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gatehouse_audit::{query, verify, AuditConfig, AuditLog, Decision, Event, EventKind, Query};
use proptest::prelude::*;

fn cfg(root: &Path, block: usize) -> AuditConfig {
    let mut c = config(root, "r1");
    c.index_block_events = block;
    c.checkpoint_every = 10;
    c.segment_max_bytes = 16 * 1024;
    c.flush_interval = Duration::ZERO;
    c
}

/// Every event of the segments (the truth), in seq order.
fn all_events(dir: &Path) -> Vec<Event> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-"))
        })
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|p| read_lines(p))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

fn expected(dir: &Path, q: &Query) -> Vec<Event> {
    let mut v: Vec<Event> = all_events(dir)
        .into_iter()
        .filter(|e| q.matches(e))
        .collect();
    v.sort_by_key(|e| (e.time_ms, e.seq));
    if let Some(l) = q.limit {
        v.truncate(l);
    }
    v
}

fn kind(i: u64) -> EventKind {
    let p = format!("p{}", i % 3);
    match i % 5 {
        0 => decision(
            &p,
            "orders",
            if i.is_multiple_of(2) {
                Decision::Deny
            } else {
                Decision::Allow
            },
        ),
        _ => delivery(
            &p,
            if i.is_multiple_of(4) {
                "users"
            } else {
                "orders"
            },
            &[&format!("s{}", i % 7), &format!("s{}", (i / 7) % 7)],
        ),
    }
}

/// Appends events `start..start + n` in requests of 1 to 4 events, sleeping a
/// millisecond now and then so that times change within and across blocks.
async fn append(log: &AuditLog, start: u64, n: u64) {
    let mut i = start;
    while i < start + n {
        let end = (i + 1 + i % 4).min(start + n);
        log.append_all((i..end).map(kind).collect()).await.unwrap();
        if i.is_multiple_of(3) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        i = end;
    }
}

fn filters() -> Vec<Query> {
    let s = |v: &str| Some(v.to_string());
    vec![
        Query::default(),
        Query {
            subject_hash: s("s3"),
            ..Query::default()
        },
        Query {
            principal: s("p1"),
            ..Query::default()
        },
        Query {
            topic: s("users"),
            ..Query::default()
        },
        Query {
            decision: Some(Decision::Deny),
            ..Query::default()
        },
        Query {
            principal: s("p2"),
            subject_hash: s("s1"),
            ..Query::default()
        },
        Query {
            subject_hash: s("nobody"),
            ..Query::default()
        },
    ]
}

/// Every filter, unbounded and with time ranges at several points of the log.
fn check(dir: &Path) {
    let all = all_events(dir);
    if all.is_empty() {
        assert!(query(&[dir.to_path_buf()], &Query::default())
            .unwrap()
            .is_empty());
        return;
    }
    let t = |f: f64| all[((all.len() - 1) as f64 * f) as usize].time_ms;
    let ranges = [
        (None, None),
        (Some(t(0.3)), None),
        (None, Some(t(0.6))),
        (Some(t(0.25)), Some(t(0.55))),
        (Some(t(0.5)), Some(t(0.5))),
        (Some(t(0.9)), Some(t(0.1))),
    ];
    let dirs = vec![dir.to_path_buf()];
    for f in filters() {
        for (from_ms, to_ms) in ranges {
            for limit in [None, Some(3)] {
                let q = Query {
                    from_ms,
                    to_ms,
                    limit,
                    ..f.clone()
                };
                assert_eq!(query(&dirs, &q).unwrap(), expected(dir, &q), "{q:?}");
            }
        }
    }
}

#[tokio::test]
async fn many_blocks_pending_reopen_and_rebuild() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(cfg(root.path(), 7)).await.unwrap();
    append(&log, 0, 300).await;
    // Writer open: ~40 blocks, plus the events still pending in the writer.
    check(&dir);
    log.close().await.unwrap();
    // Closed: everything in blocks.
    check(&dir);

    let log = AuditLog::open(cfg(root.path(), 7)).await.unwrap();
    append(&log, 300, 45).await;
    check(&dir);
    log.close().await.unwrap();

    // Index deleted: a query on the closed log rebuilds it (blocks of 4096)...
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    check(&dir);
    // ...and the writer continues it with its own blocks.
    let log = AuditLog::open(cfg(root.path(), 7)).await.unwrap();
    append(&log, 345, 20).await;
    check(&dir);
    log.close().await.unwrap();

    // Index deleted while closed, rebuilt by the writer on open.
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    let log = AuditLog::open(cfg(root.path(), 7)).await.unwrap();
    check(&dir);
    log.close().await.unwrap();
    check(&dir);
    assert!(verify(&[dir]).unwrap().is_clean());
}

#[tokio::test]
async fn events_only_in_the_segments_are_found_and_indexed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(cfg(root.path(), 5)).await.unwrap();
    append(&log, 0, 60).await;
    log.close().await.unwrap();
    let behind = root.path().join("index-behind");
    std::fs::copy(dir.join("index.redb"), &behind).unwrap();

    let log = AuditLog::open(cfg(root.path(), 5)).await.unwrap();
    append(&log, 60, 50).await;
    log.close().await.unwrap();
    // An index that is consistent but behind: 50+ events only in the segments.
    std::fs::remove_file(dir.join("index.redb")).unwrap();
    std::fs::copy(&behind, dir.join("index.redb")).unwrap();
    check(&dir);
    // The first query caught it up; again from the index alone.
    check(&dir);
    // And the writer takes it from there.
    let log = AuditLog::open(cfg(root.path(), 5)).await.unwrap();
    append(&log, 110, 12).await;
    check(&dir);
    log.close().await.unwrap();
    check(&dir);
}

#[tokio::test]
async fn time_ranges_cut_through_blocks() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(cfg(root.path(), 6)).await.unwrap();
    append(&log, 0, 80).await;
    let dirs = vec![dir.clone()];
    let mut times: Vec<u64> = all_events(&dir).iter().map(|e| e.time_ms).collect();
    times.dedup();
    assert!(times.len() >= 5, "{times:?}");
    // Every pair of distinct times (and one past each end), writer open then closed:
    // blocks of 6 to 9 events over ~30 distinct times, so most bounds fall inside a
    // block.
    let step = times.len().div_ceil(12);
    let mut bounds: Vec<u64> = times.iter().step_by(step).copied().collect();
    bounds.push(times[0] - 1);
    bounds.push(times[times.len() - 1] + 1);
    for round in 0..2 {
        if round == 1 {
            log.close().await.unwrap();
        }
        for &from in &bounds {
            for &to in &bounds {
                for f in [Query::default(), filters()[2].clone()] {
                    let q = Query {
                        from_ms: Some(from),
                        to_ms: Some(to),
                        ..f
                    };
                    assert_eq!(query(&dirs, &q).unwrap(), expected(&dir, &q), "{q:?}");
                }
            }
        }
    }
}

/// Opens the index database directly, once the log just closed has let go of it.
fn open_when_released(path: &std::path::Path) -> redb::Database {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match redb::Database::create(path) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("the index stays locked: {e}"),
        }
    }
}

#[tokio::test]
async fn index_of_an_older_format_is_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("r1");
    let log = AuditLog::open(cfg(root.path(), 8)).await.unwrap();
    append(&log, 0, 40).await;
    log.close().await.unwrap();
    let events = all_events(&dir);
    let last = events.last().unwrap();
    // What the format-1 index looked like: per-event keys, `upto` = seq + hash, no
    // `format`. Read as blocks, these entries would be garbage.
    let old_format = |format: Option<&[u8]>| {
        let db = open_when_released(&dir.join("index.redb"));
        let tx = db.begin_write().unwrap();
        let table = |name: &str| {
            tx.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))
                .unwrap()
        };
        for name in [
            "events",
            "principal",
            "topic",
            "subject",
            "decision",
            "time",
            "meta",
        ] {
            tx.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))
                .unwrap();
        }
        let mut upto = last.seq.to_be_bytes().to_vec();
        upto.extend_from_slice(last.hash.as_bytes());
        table("meta")
            .insert(b"upto".as_slice(), upto.as_slice())
            .unwrap();
        if let Some(f) = format {
            table("meta").insert(b"format".as_slice(), f).unwrap();
        }
        for ev in &events {
            let mut k = b"s3\0".to_vec();
            k.extend_from_slice(&ev.time_ms.to_be_bytes());
            k.extend_from_slice(&ev.seq.to_be_bytes());
            table("subject")
                .insert(k.as_slice(), [].as_slice())
                .unwrap();
        }
        table("events")
            .insert(1u64.to_be_bytes().as_slice(), [0u8; 28].as_slice())
            .unwrap();
        tx.commit().unwrap();
    };
    // Rebuilt by the writer on open.
    old_format(None);
    let log = AuditLog::open(cfg(root.path(), 8)).await.unwrap();
    check(&dir);
    log.close().await.unwrap();
    check(&dir);
    // Another format number, also rebuilt on open. (Rebuilds by a query are in the
    // crate's unit tests, which can reach the index through the registry.)
    old_format(Some(&1u32.to_be_bytes()));
    let log = AuditLog::open(cfg(root.path(), 8)).await.unwrap();
    check(&dir);
    log.close().await.unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    /// Append this many events (from the next index), then maybe sleep 1 ms.
    Append(u64, bool),
    /// Close, query the closed log, reopen.
    Reopen,
    /// Close, delete the index, maybe query (the query rebuilds), reopen.
    DropIndex(bool),
    /// A filter (index into `filters()`), from/to as fractions of the log, limit.
    Query(usize, Option<f64>, Option<f64>, Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u64..12, any::<bool>()).prop_map(|(n, s)| Op::Append(n, s)),
        1 => Just(Op::Reopen),
        1 => any::<bool>().prop_map(Op::DropIndex),
        4 => (
            0..filters().len(),
            proptest::option::of(0.0..1.0f64),
            proptest::option::of(0.0..1.0f64),
            proptest::option::of(1usize..5),
        )
            .prop_map(|(f, a, b, l)| Op::Query(f, a, b, l)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Queries agree with the segments whatever the block size and wherever the
    /// blocks, the pending items and the reopen points fall.
    #[test]
    fn queries_match_the_segments_over_block_boundaries(
        block in 1usize..7,
        ops in proptest::collection::vec(op(), 1..20),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r1");
        let dirs = vec![dir.clone()];
        rt.block_on(async {
            let mut log = AuditLog::open(cfg(root.path(), block)).await.unwrap();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Append(n, sleep) => {
                        append(&log, next, n).await;
                        next += n;
                        if sleep {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    Op::Reopen => {
                        log.close().await.unwrap();
                        let q = Query::default();
                        prop_assert_eq!(query(&dirs, &q).unwrap(), expected(&dir, &q));
                        log = AuditLog::open(cfg(root.path(), block)).await.unwrap();
                    }
                    Op::DropIndex(query_first) => {
                        log.close().await.unwrap();
                        std::fs::remove_file(dir.join("index.redb")).unwrap();
                        if query_first {
                            let q = filters()[1].clone();
                            prop_assert_eq!(query(&dirs, &q).unwrap(), expected(&dir, &q));
                        }
                        log = AuditLog::open(cfg(root.path(), block)).await.unwrap();
                    }
                    Op::Query(f, a, b, limit) => {
                        let all = all_events(&dir);
                        let t = |x: f64| {
                            all.get(((all.len().max(1) - 1) as f64 * x) as usize)
                                .map_or(0, |e| e.time_ms)
                        };
                        let q = Query {
                            from_ms: a.map(t),
                            to_ms: b.map(t),
                            limit,
                            ..filters()[f].clone()
                        };
                        prop_assert_eq!(query(&dirs, &q).unwrap(), expected(&dir, &q), "{:?}", q);
                    }
                }
            }
            log.close().await.unwrap();
            check(&dir);
            Ok(())
        })?;
    }
}
