//! The consent filter's cost per fetched record: subject lookup in the JSON
//! value, consent lookup, the memoized `consume_record` decision, and the
//! batch re-encoded without the withheld records; and the steady state
//! where every record may be delivered (the batch goes on as it came).
//!
//! `cargo bench -p gatehouse-proxy --bench consent`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_proxy::auth::principal::{AttributeValue, AuthMethod, Principal};
use gatehouse_proxy::cluster::consent::ConsentStore;
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
    let filter = Consent::new(Arc::new(policies), Arc::new(catalog), Arc::new(store));
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
    for (name, records) in [
        ("filter 1000 posts, half withheld", &half),
        ("filter 1000 posts, all delivered", &all),
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
