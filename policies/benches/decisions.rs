//! What a decision costs: a raw Cedar authorization, a plan lookup that hits
//! the cache, and a memoized record decision.
//!
//! `cargo bench -p gatehouse-policy`

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_policy::{
    Action, Catalog, ConsentSet, PolicyStore, PrincipalInfo, RecordContext, Resource,
};

fn decisions(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("default");
    let Ok(store) = PolicyStore::load(dir) else {
        panic!("the shipped policies must load");
    };
    let Ok(catalog) = Catalog::demo() else {
        panic!("the demo catalog must load");
    };
    let analytics = PrincipalInfo::new("analytics", "analytics", "eu", ["analytics"]);
    let granted = ConsentSet::new(["analytics", "marketing"]);
    let set = store.current();

    c.bench_function("cedar consume_record (entities built per call)", |b| {
        let context = RecordContext {
            subject_purposes: Some(&granted),
            record_region: Some("eu"),
        };
        b.iter(|| {
            set.authorize_with(
                black_box(&analytics),
                Action::ConsumeRecord,
                Resource::Topic(black_box("social.posts")),
                &context,
                &catalog,
            )
            .allowed
        })
    });

    c.bench_function("plan lookup (cache hit)", |b| {
        store.plan(&analytics, "social.posts", &catalog);
        b.iter(|| store.plan(black_box(&analytics), black_box("social.posts"), &catalog))
    });

    // A plan of its own (other attributes, other cache entry) whose memo
    // is filled to its bound, so that the consent set below is decided by
    // Cedar (with the plan's prebuilt entities) on every call.
    let mut other = analytics.clone();
    other
        .attributes
        .insert("bench".to_owned(), vec!["memo-miss".to_owned()]);
    let plan = store.plan(&other, "social.posts", &catalog);
    for i in 0..gatehouse_policy::MAX_MEMOIZED_RECORD_DECISIONS {
        plan.consume_record_allowed(Some(&ConsentSet::new([format!("fill-{i}")])), "eu");
    }
    c.bench_function("consume_record memo miss (Cedar, plan entities)", |b| {
        let miss = ConsentSet::new(["analytics", "not-memoized"]);
        b.iter(|| plan.consume_record_allowed(Some(black_box(&miss)), black_box("eu")))
    });

    let plan = store.plan(&analytics, "social.posts", &catalog);
    // Like the consent store: equal sets, not the same allocation.
    let subjects: Vec<ConsentSet> = (0..64)
        .map(|i| match i % 4 {
            0 => ConsentSet::new(["analytics"]),
            1 => ConsentSet::new(["marketing"]),
            2 => ConsentSet::new(["analytics", "marketing"]),
            _ => ConsentSet::empty(),
        })
        .collect();
    for s in &subjects {
        plan.consume_record_allowed(Some(s), "eu");
    }
    c.bench_function("memoized consume_record", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % subjects.len();
            plan.consume_record_allowed(Some(black_box(&subjects[i])), black_box("eu"))
        })
    });
}

criterion_group!(benches, decisions);
criterion_main!(benches);
