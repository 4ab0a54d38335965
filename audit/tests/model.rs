#![allow(clippy::unwrap_used)]

//! Model test: random appends, reopens and queries against a plain `Vec<EventKind>`.

mod common;

use common::*;
use gatehouse_audit::{query, verify, AuditLog, Decision, EventKind, Query};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<EventKind>),
    Reopen,
    Query(Query),
}

fn name(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(pool).prop_map(str::to_string)
}

fn kind() -> impl Strategy<Value = EventKind> {
    let p = || name(&["alice", "bob", "carol"]);
    let t = || name(&["orders", "users"]);
    let s = || name(&["s1", "s2", "s3"]);
    prop_oneof![
        (p(), t(), proptest::collection::vec(s(), 0..3)).prop_map(|(p, t, s)| delivery(
            &p,
            &t,
            &s.iter().map(String::as_str).collect::<Vec<_>>()
        )),
        (p(), t(), any::<bool>()).prop_map(|(p, t, allow)| decision(
            &p,
            &t,
            if allow {
                Decision::Allow
            } else {
                Decision::Deny
            }
        )),
        (p(), t(), proptest::collection::vec(s(), 0..2)).prop_map(|(p, t, s)| EventKind::Produce {
            principal: p,
            topic: t,
            partition: 1,
            base_offset: 5,
            records: 2,
            subjects: s
        }),
        (proptest::option::of(p()), p()).prop_map(|(pr, peer)| EventKind::AuthRefused {
            principal: pr,
            mechanism: "SCRAM-SHA-256".into(),
            peer,
            reason: "bad password".into()
        }),
        (s(), p()).prop_map(|(s, actor)| EventKind::KeyOperation {
            operation: "rotate".into(),
            key_id: None,
            subject: Some(s),
            actor,
            detail: None
        }),
    ]
}

fn query_strategy() -> impl Strategy<Value = Query> {
    (
        proptest::option::of(name(&["alice", "bob", "carol", "nobody"])),
        proptest::option::of(name(&["orders", "users"])),
        proptest::option::of(name(&["s1", "s2", "s3"])),
        proptest::option::of(prop_oneof![Just(Decision::Allow), Just(Decision::Deny)]),
        proptest::option::of(1usize..6),
    )
        .prop_map(|(principal, topic, subject_hash, decision, limit)| {
            let filtered = principal.is_some()
                || topic.is_some()
                || subject_hash.is_some()
                || decision.is_some();
            Query {
                principal,
                topic,
                subject_hash,
                decision,
                // The log's own checkpoint/recovery events only match unfiltered queries.
                limit: if filtered { limit } else { None },
                ..Query::default()
            }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(kind(), 1..4).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        3 => query_strategy().prop_map(Op::Query),
    ]
}

/// The model's reading of the query semantics, written independently of the crate.
fn model_matches(k: &EventKind, q: &Query) -> bool {
    let (principal, topic, subjects, dec): (
        Option<&str>,
        Option<&str>,
        Vec<&str>,
        Option<Decision>,
    ) = match k {
        EventKind::Delivery {
            principal,
            topic,
            subjects,
            ..
        } => (
            Some(principal),
            Some(topic),
            subjects.iter().map(String::as_str).collect(),
            Some(Decision::Allow),
        ),
        EventKind::Produce {
            principal,
            topic,
            subjects,
            ..
        } => (
            Some(principal),
            Some(topic),
            subjects.iter().map(String::as_str).collect(),
            Some(Decision::Allow),
        ),
        EventKind::Decision {
            principal,
            resource,
            decision,
            ..
        } => (Some(principal), Some(resource), vec![], Some(*decision)),
        EventKind::AuthRefused { principal, .. } => (principal.as_deref(), None, vec![], None),
        EventKind::KeyOperation { subject, .. } => (
            None,
            None,
            subject.iter().map(String::as_str).collect(),
            None,
        ),
        _ => (None, None, vec![], None),
    };
    q.principal.as_deref().is_none_or(|p| principal == Some(p))
        && q.topic.as_deref().is_none_or(|t| topic == Some(t))
        && q.subject_hash
            .as_deref()
            .is_none_or(|s| subjects.contains(&s))
        && q.decision.is_none_or(|d| dec == Some(d))
}

fn own(k: &EventKind) -> bool {
    matches!(k, EventKind::Checkpoint { .. } | EventKind::Recovery { .. })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mk = || {
            let mut c = config(root.path(), "r1");
            c.checkpoint_every = 3;
            c.segment_max_bytes = 4000;
            c.flush_interval = std::time::Duration::ZERO;
            c
        };
        let dirs = vec![root.path().join("r1")];
        rt.block_on(async {
            let mut model: Vec<EventKind> = Vec::new();
            let mut log = AuditLog::open(mk()).await.unwrap();
            for op in ops {
                match op {
                    Op::Append(kinds) => {
                        model.extend(kinds.iter().cloned());
                        log.append_all(kinds).await.unwrap();
                    }
                    Op::Reopen => {
                        log.close().await.unwrap();
                        log = AuditLog::open(mk()).await.unwrap();
                    }
                    Op::Query(q) => {
                        let got: Vec<EventKind> = query(&dirs, &q)
                            .unwrap()
                            .into_iter()
                            .map(|e| e.kind)
                            .filter(|k| !own(k))
                            .collect();
                        let mut want: Vec<EventKind> =
                            model.iter().filter(|k| model_matches(k, &q)).cloned().collect();
                        if let Some(l) = q.limit {
                            want.truncate(l);
                        }
                        prop_assert_eq!(got, want, "query {:?}", q);
                    }
                }
            }
            log.close().await.unwrap();
            let all: Vec<EventKind> = query(&dirs, &Query::default())
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .filter(|k| !own(k))
                .collect();
            prop_assert_eq!(all, model);
            let report = verify(&dirs).unwrap();
            prop_assert!(report.is_clean(), "{:?}", report);
            Ok(())
        })?;
    }
}
