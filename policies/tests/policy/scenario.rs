//! SCENARIO.md's principal table, checked through plans and decisions.

use gatehouse_policy::{
    Action, Catalog, ConsentSet, FieldEffect, PolicyStore, PrincipalInfo, Resource, TopicPlan,
};

use super::common::{principal, shipped_dir};

const EU_TOPICS: [&str; 4] = [
    "social.posts",
    "social.profiles",
    "support.tickets",
    "consent.events",
];
const ALL_TOPICS: [&str; 5] = [
    "social.posts",
    "social.profiles",
    "support.tickets",
    "consent.events",
    "enrich.sentiment",
];

struct World {
    store: PolicyStore,
    catalog: Catalog,
}

fn world() -> World {
    World {
        store: PolicyStore::load(shipped_dir()).expect("shipped policies"),
        catalog: Catalog::demo().expect("demo catalog"),
    }
}

impl World {
    fn plan(&self, who: &str, topic: &str) -> std::sync::Arc<TopicPlan> {
        self.store.plan(&principal(who), topic, &self.catalog)
    }

    /// (produce, consume, describe) of `who` on `topic`.
    fn rights(&self, who: &str, topic: &str) -> (bool, bool, bool) {
        let plan = self.plan(who, topic);
        (
            plan.produce().allowed,
            plan.consume().allowed,
            plan.describe().allowed,
        )
    }

    fn effects(&self, who: &str, topic: &str) -> Vec<(String, FieldEffect)> {
        self.plan(who, topic)
            .fields()
            .iter()
            .map(|f| (f.path.to_string(), f.effect))
            .collect()
    }

    fn allowed(&self, who: &str, action: Action, resource: Resource<'_>) -> bool {
        self.store
            .authorize(&principal(who), action, resource, &self.catalog)
            .allowed
    }
}

fn effects(list: &[(&str, FieldEffect)]) -> Vec<(String, FieldEffect)> {
    list.iter().map(|(p, e)| ((*p).to_owned(), *e)).collect()
}

#[test]
fn ingest_produces_to_the_streams_and_reads_nothing() {
    let w = world();
    for topic in EU_TOPICS {
        assert_eq!(w.rights("ingest", topic), (true, false, true), "{topic}");
    }
    assert_eq!(w.rights("ingest", "social.comments"), (true, false, true));
    assert_eq!(
        w.rights("ingest", "enrich.sentiment"),
        (false, false, false)
    );
    // A producer's plan never exposes a field.
    assert!(w
        .plan("ingest", "social.posts")
        .fields()
        .iter()
        .all(|f| f.effect == FieldEffect::Redacted));
    assert!(w.allowed("ingest", Action::IdempotentWrite, Resource::Cluster));
}

#[test]
fn trust_safety_reads_social_in_clear_without_consent() {
    let w = world();
    for topic in ["social.posts", "social.profiles"] {
        assert_eq!(
            w.rights("trust-safety", topic),
            (false, true, true),
            "{topic}"
        );
        let plan = w.plan("trust-safety", topic);
        assert!(
            plan.fields().iter().all(|f| f.effect == FieldEffect::Clear),
            "{plan:?}"
        );
        // Legitimate interest: whatever the subject granted, even unknown.
        assert!(plan.consume_record_allowed(Some(&ConsentSet::empty()), "eu"));
        assert!(plan.consume_record_allowed(Some(&ConsentSet::new(["marketing"])), "eu"));
        assert!(plan.consume_record_allowed(None, "eu"));
    }
    for topic in ["support.tickets", "consent.events", "enrich.sentiment"] {
        assert!(!w.rights("trust-safety", topic).1, "{topic}");
    }
}

#[test]
fn analytics_reads_posts_masked_and_only_with_consent() {
    let w = world();
    assert_eq!(w.rights("analytics", "social.posts"), (false, true, true));
    for topic in [
        "social.profiles",
        "support.tickets",
        "consent.events",
        "enrich.sentiment",
    ] {
        assert!(!w.rights("analytics", topic).1, "{topic}");
    }
    assert_eq!(
        w.effects("analytics", "social.posts"),
        effects(&[
            ("$.author.email", FieldEffect::Masked),
            ("$.author.name", FieldEffect::Redacted),
            ("$.author.handle", FieldEffect::Pseudonym),
            ("$.author.ip", FieldEffect::Masked),
            ("$.geo", FieldEffect::Redacted),
        ])
    );
    let plan = w.plan("analytics", "social.posts");
    let email = &plan.fields()[0];
    assert_eq!(email.policies, ["analytics-posts-masked"]);

    // Consent: allowed iff the subject granted analytics.
    for (granted, expected) in [
        (vec!["analytics"], true),
        (vec!["analytics", "marketing", "personalization"], true),
        (vec!["marketing"], false),
        (vec![], false),
    ] {
        let set = ConsentSet::new(granted.clone());
        assert_eq!(
            plan.consume_record_allowed(Some(&set), "eu"),
            expected,
            "{granted:?}"
        );
    }
    assert!(!plan.consume_record_allowed(None, "eu"), "unknown subject");
}

#[test]
fn marketing_us_gets_nothing_on_eu_topics_but_sentiment() {
    let w = world();
    let marketing = principal("marketing-us");
    for topic in EU_TOPICS {
        assert_eq!(
            w.rights("marketing-us", topic),
            (false, false, false),
            "{topic}"
        );
        let d = w.store.authorize(
            &marketing,
            Action::Consume,
            Resource::Topic(topic),
            &w.catalog,
        );
        assert_eq!(d.policies, ["residency-topic"], "{topic}");
    }
    let plan = w.plan("marketing-us", "enrich.sentiment");
    assert_eq!(
        (plan.produce().allowed, plan.consume().allowed),
        (false, true)
    );
    assert!(!plan.governed());
    assert_eq!(plan.residency(), "global");
    assert!(plan.fields().is_empty());
    assert!(plan.consume_record_allowed(None, plan.residency()));

    // The same rights for an eu colleague of marketing do not reach eu
    // topics either: marketing has no grant there, residency aside.
    let eu_marketing = PrincipalInfo::new("marketing-eu", "marketing", "eu", ["marketing"]);
    let d = w.store.authorize(
        &eu_marketing,
        Action::Consume,
        Resource::Topic("social.posts"),
        &w.catalog,
    );
    assert!(!d.allowed);
    assert!(d.policies.is_empty(), "default deny, not residency: {d:?}");
}

#[test]
fn support_reads_tickets_clear_and_profiles_partly_masked() {
    let w = world();
    assert_eq!(w.rights("support", "support.tickets"), (false, true, true));
    assert_eq!(w.rights("support", "social.profiles"), (false, true, true));
    // Public posts, to answer complaints, but none of their personal fields.
    assert_eq!(w.rights("support", "social.posts"), (false, true, true));
    let posts = w.effects("support", "social.posts");
    assert_eq!(posts.len(), 5);
    assert!(posts.iter().all(|(_, e)| *e == FieldEffect::Redacted));
    for topic in ["consent.events", "enrich.sentiment"] {
        assert!(!w.rights("support", topic).1, "{topic}");
    }
    assert_eq!(
        w.effects("support", "support.tickets"),
        effects(&[
            ("$.customer.email", FieldEffect::Clear),
            ("$.customer.phone", FieldEffect::Clear),
            ("$.body", FieldEffect::Clear),
            ("$.messages[*].body", FieldEffect::Clear),
        ])
    );
    assert_eq!(
        w.effects("support", "social.profiles"),
        effects(&[
            ("$.email", FieldEffect::Clear),
            ("$.phone", FieldEffect::Clear),
            ("$.name", FieldEffect::Masked),
            ("$.birthdate", FieldEffect::Masked),
            ("$.address", FieldEffect::Masked),
        ])
    );
    // Contract, not consent.
    let plan = w.plan("support", "support.tickets");
    assert!(plan.consume_record_allowed(Some(&ConsentSet::empty()), "eu"));
    assert!(plan.consume_record_allowed(None, "eu"));
}

#[test]
fn auditor_reads_no_topic_data() {
    let w = world();
    for topic in ALL_TOPICS {
        assert_eq!(w.rights("auditor", topic), (false, false, false), "{topic}");
    }
    assert!(w.allowed("auditor", Action::DescribeCluster, Resource::Cluster));
}

#[test]
fn residency_of_records_on_produce() {
    let w = world();
    let plan = w.plan("ingest", "social.posts");
    assert!(plan.produce_record_allowed("eu"));
    assert!(
        plan.produce_record_allowed(plan.residency()),
        "no header: topic residency"
    );
    assert!(!plan.produce_record_allowed("us"));
    let d = w.store.authorize_with(
        &principal("ingest"),
        Action::ProduceRecord,
        Resource::Topic("social.posts"),
        &gatehouse_policy::RecordContext {
            subject_purposes: None,
            record_region: Some("us"),
        },
        &w.catalog,
    );
    assert_eq!(d.policies, ["residency-record-produce"]);
    // Nobody else may produce at all, so their record decisions are false
    // without asking Cedar.
    assert!(!w
        .plan("trust-safety", "social.posts")
        .produce_record_allowed("eu"));
}

#[test]
fn groups_cluster_and_administration() {
    let w = world();
    for who in ["trust-safety", "analytics", "marketing-us", "support"] {
        let own = format!("{who}-app");
        for action in [
            Action::JoinGroup,
            Action::CommitOffset,
            Action::DescribeGroup,
        ] {
            assert!(
                w.allowed(who, action, Resource::Group(who)),
                "{who} {action:?}"
            );
            assert!(
                w.allowed(who, action, Resource::Group(&own)),
                "{who} {action:?}"
            );
            assert!(
                !w.allowed(who, action, Resource::Group("shared")),
                "{who} {action:?}"
            );
        }
        assert!(!w.allowed(who, Action::DeleteGroup, Resource::Group(&own)));
    }
    assert!(!w.allowed(
        "analytics",
        Action::JoinGroup,
        Resource::Group("support-app")
    ));
    assert!(!w.allowed("ingest", Action::JoinGroup, Resource::Group("ingest")));
    for who in [
        "ingest",
        "trust-safety",
        "analytics",
        "marketing-us",
        "support",
        "auditor",
    ] {
        assert!(
            w.allowed(who, Action::DescribeCluster, Resource::Cluster),
            "{who}"
        );
        assert!(
            !w.allowed(who, Action::ClusterAdmin, Resource::Cluster),
            "{who}"
        );
        for action in [
            Action::CreateTopic,
            Action::DeleteTopic,
            Action::AlterTopic,
            Action::DeleteRecords,
        ] {
            assert!(
                !w.allowed(who, action, Resource::Topic("social.posts")),
                "{who} {action:?}"
            );
        }
    }
    assert!(w.allowed(
        "ingest",
        Action::TransactionalWrite,
        Resource::TransactionalId("ingest-1")
    ));
    assert!(!w.allowed(
        "ingest",
        Action::TransactionalWrite,
        Resource::TransactionalId("other")
    ));
}

#[test]
fn mismatched_action_and_resource_is_denied() {
    let w = world();
    // Produce applies to topics; the schema refuses it on a group: deny.
    assert!(!w.allowed("ingest", Action::Produce, Resource::Group("social.posts")));
    // A field the catalog does not protect cannot be asked about.
    let field = Resource::Field {
        topic: "social.posts",
        path: "$.text",
    };
    assert!(!w.allowed("trust-safety", Action::ReadClear, field));
}

#[test]
fn identity_attributes_reach_policies_as_tags() {
    // A principal built from authentication attributes behaves like the
    // hand-built one; extra attributes become tags and part of the cache key.
    let w = world();
    let attrs = [
        ("team", vec!["analytics"]),
        ("region", vec!["eu"]),
        ("purposes", vec!["analytics"]),
        ("cost_center", vec!["cc-42"]),
    ];
    let from_auth = PrincipalInfo::from_attributes("analytics", attrs).expect("principal");
    assert_eq!(from_auth.attributes["cost_center"], ["cc-42"]);
    let plan = w.store.plan(&from_auth, "social.posts", &w.catalog);
    assert!(plan.consume().allowed);
    let plain = w.plan("analytics", "social.posts");
    assert!(
        !std::sync::Arc::ptr_eq(&plan, &plain),
        "attributes are part of the key"
    );
}
