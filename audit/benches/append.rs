//! Audit benchmarks: append throughput with 16 concurrent appenders (fsync group
//! commit) and query latency for one subject over a pre-built log.
//!
//! `GATEHOUSE_AUDIT_BENCH_EVENTS` sets the size of the pre-built log (default 100000).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_audit::{query, AuditConfig, AuditLog, EventKind, Query};
use zeroize::Zeroizing;

const APPENDERS: u64 = 16;

fn config(root: &Path) -> AuditConfig {
    AuditConfig::new(
        root.join("r1"),
        "r1",
        root.join("key.pk8"),
        Zeroizing::new([9u8; 32]),
    )
}

fn delivery(log: &AuditLog, i: u64) -> EventKind {
    let mut fields = BTreeMap::new();
    fields.insert(
        "mask".to_string(),
        vec!["$.email".to_string(), "$.phone".to_string()],
    );
    EventKind::Delivery {
        principal: format!("svc-{}", i % 20),
        topic: format!("topic-{}", i % 10),
        partition: (i % 12) as i32,
        first_offset: i as i64 * 100,
        last_offset: i as i64 * 100 + 99,
        records: 100,
        fields,
        subjects: vec![log.subject_hash(&format!("customer-{}", i % 1000))],
        policies: vec!["pii-mask".into()],
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let log = rt.block_on(AuditLog::open(config(root.path()))).unwrap();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("delivery_16_appenders", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(APPENDERS);
            rt.block_on(async {
                let start = Instant::now();
                let mut tasks = Vec::new();
                for t in 0..APPENDERS {
                    let log = log.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0..per {
                            log.append(delivery(&log, t * per + i)).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    rt.block_on(log.close()).unwrap();
}

fn bench_query(c: &mut Criterion) {
    let n: u64 = std::env::var("GATEHOUSE_AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("r1")];
    let log = rt.block_on(AuditLog::open(config(root.path()))).unwrap();
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let end = (i + 1000).min(n);
            let kinds = (i..end).map(|j| delivery(&log, j)).collect();
            log.append_all(kinds).await.unwrap();
            i = end;
        }
    });
    let q = Query {
        subject_hash: Some(log.subject_hash("customer-42")),
        ..Query::default()
    };
    let expected = n / 1000 + u64::from(n % 1000 > 42);
    let mut g = c.benchmark_group("query");
    g.sample_size(20);
    g.bench_function(format!("one_subject_{n}_events_writer_open"), |b| {
        b.iter(|| {
            let found = query(&dirs, &q).unwrap();
            assert_eq!(found.len() as u64, expected);
        })
    });
    rt.block_on(log.close()).unwrap();
    g.bench_function(format!("one_subject_{n}_events_closed_log"), |b| {
        b.iter(|| {
            let found = query(&dirs, &q).unwrap();
            assert_eq!(found.len() as u64, expected);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_query);
criterion_main!(benches);
