//! Invalid policies are refused by load and by reload (the old set stays);
//! a reload drops the plan cache.

use std::path::Path;
use std::sync::Arc;

use gatehouse_policy::{
    Action, Catalog, FieldEffect, PolicyError, PolicyStore, PrincipalInfo, Resource,
};

use super::common::{principal, scratch_copy};

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).expect("write policy");
}

const SCHEMA_VIOLATION: &str = r#"
@id("uses-an-undeclared-attribute")
permit (principal, action == Gatehouse::Action::"consume", resource is Gatehouse::Topic)
when { principal.department == "sales" };
"#;

const SYNTAX_ERROR: &str = r#"
@id("half-a-policy")
permit (principal, action == Gatehouse::Action::"consume", resource
"#;

#[test]
fn load_refuses_a_schema_violation_with_the_validators_message() {
    let dir = scratch_copy("violation");
    write(&dir, "zz-bad.cedar", SCHEMA_VIOLATION);
    let err = PolicyStore::load(&dir).expect_err("must be refused");
    let PolicyError::Validation { issues } = &err else {
        panic!("expected a validation error, got {err}");
    };
    assert_eq!(issues.len(), 1, "{err}");
    assert_eq!(issues[0].file, "zz-bad.cedar");
    assert_eq!(issues[0].policy, "uses-an-undeclared-attribute");
    assert!(issues[0].message.contains("department"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("zz-bad.cedar") && text.contains("department"),
        "{text}"
    );
}

#[test]
fn load_refuses_syntax_errors_missing_and_duplicate_ids() {
    type Check = fn(&PolicyError) -> bool;
    let cases: [(&str, &str, Check); 5] = [
        (
            "syntax.cedar",
            SYNTAX_ERROR,
            |e| matches!(e, PolicyError::Syntax { file, .. } if file == "syntax.cedar"),
        ),
        (
            "no-id.cedar",
            "permit (principal, action, resource);\n",
            |e| matches!(e, PolicyError::MissingId { file, index: 1 } if file == "no-id.cedar"),
        ),
        (
            "dup.cedar",
            "@id(\"residency-topic\")\npermit (principal, action, resource);\n",
            |e| matches!(e, PolicyError::DuplicateId { id, .. } if id == "residency-topic"),
        ),
        (
            "template.cedar",
            "@id(\"t\")\npermit (principal == ?principal, action, resource);\n",
            |e| matches!(e, PolicyError::Template { .. }),
        ),
        ("schema.cedarschema", "namespace X { entity Y; }\n", |e| {
            matches!(e, PolicyError::SchemaOverride { .. })
        }),
    ];
    for (file, text, check) in cases {
        let dir = scratch_copy("refused");
        write(&dir, file, text);
        let err = PolicyStore::load(&dir).expect_err(file);
        assert!(check(&err), "{file}: {err:?}");
    }
    let empty = scratch_copy("empty");
    for entry in std::fs::read_dir(&empty).expect("dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::remove_file(path).expect("remove");
        }
    }
    assert!(matches!(
        PolicyStore::load(&empty),
        Err(PolicyError::NoPolicies { .. })
    ));
}

#[test]
fn reload_refuses_invalid_sets_and_keeps_the_old_one() {
    let dir = scratch_copy("reload");
    let store = PolicyStore::load(&dir).expect("valid copy");
    let catalog = Catalog::demo().expect("catalog");
    let analytics = principal("analytics");
    let before = store.current();

    for (file, text) in [
        ("zz-bad.cedar", SCHEMA_VIOLATION),
        ("zz-bad.cedar", SYNTAX_ERROR),
    ] {
        write(&dir, file, text);
        assert!(store.reload().is_err(), "{file}");
        assert!(
            Arc::ptr_eq(&store.current(), &before),
            "the old set stays active"
        );
        assert!(
            store
                .authorize(
                    &analytics,
                    Action::Consume,
                    Resource::Topic("social.posts"),
                    &catalog
                )
                .allowed
        );
    }

    std::fs::remove_file(dir.join("zz-bad.cedar")).expect("remove");
    assert_eq!(store.reload().expect("unchanged"), before.version());
    assert!(
        Arc::ptr_eq(&store.current(), &before),
        "unchanged files keep the set and its plans"
    );
}

#[test]
fn reload_swaps_the_set_and_drops_the_plan_cache() {
    let dir = scratch_copy("plans");
    let store = PolicyStore::load(&dir).expect("valid copy");
    let catalog = Catalog::demo().expect("catalog");
    let analytics = principal("analytics");

    let old_plan = store.plan(&analytics, "social.posts", &catalog);
    assert_eq!(
        old_plan.field_effect("$.author.name"),
        Some(FieldEffect::Redacted)
    );
    assert!(Arc::ptr_eq(
        &old_plan,
        &store.plan(&analytics, "social.posts", &catalog)
    ));
    let old_version = store.version();

    // The security team now lets analytics see names masked.
    let fields = std::fs::read_to_string(dir.join("fields.cedar")).expect("read");
    let widened = fields.replace(
        r#"["email", "ip"].contains"#,
        r#"["email", "ip", "name"].contains"#,
    );
    assert_ne!(fields, widened);
    write(&dir, "fields.cedar", &widened);
    let new_version = store.reload().expect("valid change");
    assert_ne!(new_version, old_version);
    assert_eq!(
        store.current().cached_plans(),
        0,
        "a new set starts with no plan"
    );

    let misses = store.counters().plan_misses;
    let new_plan = store.plan(&analytics, "social.posts", &catalog);
    assert_eq!(store.counters().plan_misses, misses + 1);
    assert!(!Arc::ptr_eq(&old_plan, &new_plan));
    assert_eq!(new_plan.version(), new_version);
    assert_eq!(
        new_plan.field_effect("$.author.name"),
        Some(FieldEffect::Masked)
    );
    // A plan held across the reload keeps deciding with its own version.
    assert_eq!(old_plan.version(), old_version);
    assert_eq!(
        old_plan.field_effect("$.author.name"),
        Some(FieldEffect::Redacted)
    );
}

#[test]
fn policies_can_use_identity_attributes_as_tags() {
    let dir = scratch_copy("tags");
    write(
        &dir,
        "clearance.cedar",
        r#"
@id("pii-clearance-reads-tickets")
permit (principal, action == Gatehouse::Action::"consume", resource is Gatehouse::Topic)
when {
  principal.hasTag("clearance") && principal.getTag("clearance").contains("pii") &&
  resource.name == "support.tickets"
};
"#,
    );
    let store = PolicyStore::load(&dir).expect("valid with tags");
    let catalog = Catalog::demo().expect("catalog");
    let cleared = PrincipalInfo::from_attributes(
        "case-worker",
        [
            ("team", vec!["legal"]),
            ("region", vec!["eu"]),
            ("clearance", vec!["pii", "finance"]),
        ],
    )
    .expect("principal");
    let mut uncleared = cleared.clone();
    uncleared.attributes.clear();
    let tickets = Resource::Topic("support.tickets");
    let d = store.authorize(&cleared, Action::Consume, tickets, &catalog);
    assert_eq!(d.policies, ["pii-clearance-reads-tickets"]);
    assert!(
        !store
            .authorize(&uncleared, Action::Consume, tickets, &catalog)
            .allowed
    );
}

#[test]
fn fixtures_report_failures_and_refuse_malformed_files() {
    let dir = scratch_copy("fixtures");
    let allow = dir.join("fixtures").join("ALLOW");
    std::fs::create_dir_all(&allow).expect("mkdir");
    write(
        &allow,
        "wrong.json",
        r#"{"principal": {"name": "auditor", "attributes": {"team": "compliance", "region": "eu"}},
            "action": "consume", "resource": {"topic": "social.posts"}}"#,
    );
    let report = gatehouse_policy::test_fixtures(&dir).expect("runs");
    assert_eq!(report.results.len(), 1);
    assert!(!report.all_passed());
    assert!(
        report
            .to_string()
            .contains("FAIL fixtures/ALLOW/wrong.json"),
        "{report}"
    );

    write(
        &allow,
        "typo.json",
        r#"{"principal": {"name": "support"}, "action": "read_clear",
            "resource": {"field": {"topic": "social.posts", "path": "$.author.mail"}}}"#,
    );
    let err = gatehouse_policy::test_fixtures(&dir).expect_err("typo refused");
    assert!(matches!(err, PolicyError::Fixture { .. }), "{err}");
}
