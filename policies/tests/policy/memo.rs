//! Plans are cached, and record decisions are memoized: in steady state no
//! Cedar evaluation happens per record.

use std::sync::Arc;

use gatehouse_policy::{Catalog, ConsentSet, PolicyStore, MAX_MEMOIZED_RECORD_DECISIONS};

use super::common::{principal, shipped_dir};

#[test]
fn record_decisions_cost_no_evaluation_after_warm_up() {
    let store = PolicyStore::load(shipped_dir()).expect("policies");
    let catalog = Catalog::demo().expect("catalog");
    let plan = store.plan(&principal("analytics"), "social.posts", &catalog);

    // As the consent store would hand them out: a few distinct sets, each
    // built many times over (not shared), so equality by content is used.
    let purposes: [&[&str]; 4] = [
        &["analytics"],
        &["marketing"],
        &["analytics", "personalization"],
        &[],
    ];
    let subjects: Vec<Option<ConsentSet>> = (0..1000)
        .map(|i| match i % 5 {
            4 => None,
            k => Some(ConsentSet::new(purposes[k].iter().copied())),
        })
        .collect();
    let expected = |s: &Option<ConsentSet>| s.as_ref().is_some_and(|s| s.contains("analytics"));

    // Warm-up: one pass over every distinct (consent, region).
    for subject in &subjects[..5] {
        for region in ["eu", "us"] {
            plan.consume_record_allowed(subject.as_ref(), region);
        }
    }
    let warm = store.counters().evaluations;

    let mut delivered = 0;
    for _ in 0..20 {
        for subject in &subjects {
            let allowed = plan.consume_record_allowed(subject.as_ref(), "eu");
            assert_eq!(allowed, expected(subject));
            delivered += usize::from(allowed);
            // A record of another region than the consumer's: withheld.
            assert!(!plan.consume_record_allowed(subject.as_ref(), "us"));
        }
    }
    assert_eq!(delivered, 20 * 400);
    assert_eq!(
        store.counters().evaluations,
        warm,
        "40 000 record decisions, no Cedar call"
    );

    let ingest = store.plan(&principal("ingest"), "social.posts", &catalog);
    ingest.produce_record_allowed("eu");
    ingest.produce_record_allowed("us");
    let warm = store.counters().evaluations;
    for _ in 0..10_000 {
        assert!(ingest.produce_record_allowed("eu"));
        assert!(!ingest.produce_record_allowed("us"));
    }
    assert_eq!(store.counters().evaluations, warm);
}

#[test]
fn plans_are_cached_per_principal_topic_and_catalog() {
    let store = PolicyStore::load(shipped_dir()).expect("policies");
    let catalog = Catalog::demo().expect("catalog");
    let analytics = principal("analytics");

    let first = store.plan(&analytics, "social.posts", &catalog);
    let before = store.counters();
    let evaluations = before.evaluations;
    for _ in 0..100 {
        assert!(Arc::ptr_eq(
            &first,
            &store.plan(&analytics, "social.posts", &catalog)
        ));
    }
    let after = store.counters();
    assert_eq!(after.plan_hits, before.plan_hits + 100);
    assert_eq!(after.plan_misses, before.plan_misses);
    assert_eq!(after.evaluations, evaluations);

    // Another topic, other attributes, another catalog: other plans.
    assert!(!Arc::ptr_eq(
        &first,
        &store.plan(&analytics, "social.profiles", &catalog)
    ));
    let mut changed = analytics.clone();
    changed.purposes.push("marketing".to_owned());
    assert!(!Arc::ptr_eq(
        &first,
        &store.plan(&changed, "social.posts", &catalog)
    ));
    let reloaded_catalog = Catalog::demo().expect("catalog");
    let again = store.plan(&analytics, "social.posts", &reloaded_catalog);
    assert!(
        !Arc::ptr_eq(&first, &again),
        "a new catalog value invalidates the plan"
    );
    assert!(Arc::ptr_eq(
        &again,
        &store.plan(&analytics, "social.posts", &reloaded_catalog)
    ));
    assert_eq!(store.counters().plan_misses, before.plan_misses + 3);
}

#[test]
fn the_memo_is_bounded_and_stays_correct_past_the_bound() {
    let store = PolicyStore::load(shipped_dir()).expect("policies");
    let catalog = Catalog::demo().expect("catalog");
    let plan = store.plan(&principal("analytics"), "social.posts", &catalog);
    // Hostile or odd consent data: many distinct sets.
    let n = MAX_MEMOIZED_RECORD_DECISIONS + 100;
    for i in 0..n {
        let set = ConsentSet::new(["analytics".to_owned(), format!("p{i}")]);
        assert!(plan.consume_record_allowed(Some(&set), "eu"));
    }
    // Past the bound, decisions are made but not remembered.
    let beyond = ConsentSet::new(["marketing", "x-beyond"]);
    let before = store.counters().evaluations;
    assert!(!plan.consume_record_allowed(Some(&beyond), "eu"));
    assert!(!plan.consume_record_allowed(Some(&beyond), "eu"));
    assert_eq!(store.counters().evaluations, before + 2);
    // Early sets are still memoized.
    let early = ConsentSet::new(["analytics", "p0"]);
    let before = store.counters().evaluations;
    assert!(plan.consume_record_allowed(Some(&early), "eu"));
    assert_eq!(store.counters().evaluations, before);
}

#[test]
fn denied_topics_decide_records_without_cedar() {
    let store = PolicyStore::load(shipped_dir()).expect("policies");
    let catalog = Catalog::demo().expect("catalog");
    let plan = store.plan(&principal("auditor"), "social.posts", &catalog);
    let before = store.counters().evaluations;
    assert!(!plan.consume_record_allowed(Some(&ConsentSet::new(["analytics"])), "eu"));
    assert!(!plan.produce_record_allowed("eu"));
    assert_eq!(store.counters().evaluations, before);
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PolicyStore>();
    check::<gatehouse_policy::PolicySet>();
    check::<gatehouse_policy::TopicPlan>();
    check::<Catalog>();
    check::<ConsentSet>();
}
