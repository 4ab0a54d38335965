//! The consent filter's cost per fetched record: subject lookup in the JSON
//! value, consent lookup, the memoized `consume_record` decision, and the
//! batch re-encoded without the withheld records; and the steady state
//! where every record may be delivered (the batch goes on as it came).
//!
//! With 10,000 erased subjects (none of them in the batch), the same
//! filter also asks the erasure state for every record: the difference is
//! the cost of suppression per record.
//!
//! `cargo bench -p gatehouse-proxy --bench consent`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_keys::{LocalKeyFile, StateRecordMac, Zeroizing};
use gatehouse_proxy::auth::principal::{AttributeValue, AuthMethod, Principal};
use gatehouse_proxy::cluster::consent::ConsentStore;
use gatehouse_proxy::cluster::erasure::{Erasures, Workflow};
use gatehouse_proxy::filter::consent::Consent;
use gatehouse_proxy::filter::{Filter, Response, SessionContext, Target};
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    ApiKey, FetchResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

mod support;

const RECORDS: usize = 1_000;

/// Short posts (about 330 bytes) by subjects `first..first + 100`.
fn batch(first: usize) -> Bytes {
    let records: Vec<(String, String)> = (0..RECORDS)
        .map(|i| {
            let subject = format!("u-{:06}", first + i % 100);
            let value = format!(
                r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"{subject}","email":"{subject}@example.com","name":"Jane Doe","handle":"@jd","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"text":"The new campaign is great, support answered in minutes #brand","campaign":"cmp-2026-11","sentiment":null}}"#
            );
            (subject, value)
        })
        .collect();
    support::batch(&records, Compression::None)
}

fn bench(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    let Ok(policies) = gatehouse_policy::PolicyStore::load(&root) else {
        return;
    };
    let Ok(catalog) = gatehouse_policy::Catalog::load(&root.join("catalog.toml")) else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(store) = ConsentStore::open(dir.path().join("consent")) else {
        return;
    };
    // Half of subjects 0..100 consent to analytics; all of 100..200 do.
    for s in 0..200 {
        let purposes = if s % 2 == 0 || s >= 100 {
            vec!["analytics".to_string()]
        } else {
            vec![]
        };
        let _ = store.apply(0, s, &format!("u-{s:06}"), Some(purposes));
    }
    let (policies, catalog, store) = (Arc::new(policies), Arc::new(catalog), Arc::new(store));
    let filter = Consent::new(policies.clone(), catalog.clone(), store.clone());
    let Some(erasures) = erased(dir.path(), 10_000) else {
        return;
    };
    let erasing = Consent::new(policies, catalog, store).with_erasures(Some(erasures.clone()));
    let session = SessionContext {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        target: Target::Bootstrap,
        client_id: None,
        principal: Some(Principal {
            name: "analytics".into(),
            method: AuthMethod::Plain,
            attributes: [
                (
                    "team".to_string(),
                    AttributeValue::String("analytics".into()),
                ),
                ("region".to_string(), AttributeValue::String("eu".into())),
                (
                    "purposes".to_string(),
                    AttributeValue::List(vec!["analytics".into()]),
                ),
            ]
            .into_iter()
            .collect(),
        }),
    };
    let half = batch(0);
    let all = batch(100);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let mut g = c.benchmark_group("consent");
    g.throughput(Throughput::Elements(RECORDS as u64));
    for (name, filter, records) in [
        ("filter 1000 posts, half withheld", &filter, &half),
        ("filter 1000 posts, all delivered", &filter, &all),
        (
            "filter 1000 posts, all delivered, 10000 subjects erased",
            &erasing,
            &all,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let body =
                    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default(
                    )
                    .with_topic(TopicName(StrBytes::from_static_str("social.posts")))
                    .with_partitions(vec![
                        PartitionData::default().with_records(Some(records.clone()))
                    ])]);
                let mut resp = Response {
                    api: ApiKey::Fetch,
                    version: 12,
                    correlation_id: 1,
                    body: ResponseKind::Fetch(body),
                    notes: Default::default(),
                };
                rt.block_on(filter.on_response(&session, &mut resp));
                resp
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("erasure");
    g.throughput(Throughput::Elements(1));
    g.bench_function("is_erased, 10000 erased, subject seen before", |b| {
        b.iter(|| erasures.is_erased("u-000150"))
    });
    g.finish();
}

/// An erasure state with `n` erased subjects (`e-000000`…).
fn erased(dir: &std::path::Path, n: usize) -> Option<Arc<Erasures>> {
    let provider = LocalKeyFile::open_or_create(&dir.join("kek.toml")).ok()?;
    let mac = Arc::new(StateRecordMac::new(&provider).ok()?);
    let db = sled::Config::new().path(dir.join("erasure")).open().ok()?;
    let state = Erasures::open(
        db.open_tree("erasure").ok()?,
        Zeroizing::new([7u8; 32]),
        "_gatehouse.erasure".into(),
        mac,
    )
    .ok()?;
    for i in 0..n {
        let subject = state.hash(&format!("e-{i:06}"));
        state
            .put(Workflow {
                subject,
                requested_by: "privacy".into(),
                reason: "bench".into(),
                requested_at: 0,
                owner: "bench".into(),
                updated_at: 0,
                sealed: None,
                steps: Vec::new(),
                verification: None,
            })
            .ok()?;
    }
    Some(Arc::new(state))
}

criterion_group!(benches, bench);
criterion_main!(benches);
