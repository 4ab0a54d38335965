//! Gatehouse's policy layer: Cedar policies, the topic catalog, and per-topic
//! decision plans.
//!
//! # The model
//!
//! Gatehouse asks [Cedar](https://www.cedarpolicy.com) every authorization
//! question, against policies a security team edits (`*.cedar` files in one
//! directory) and a schema built into the crate
//! (`schema/gatehouse.cedarschema`, [`SCHEMA`]). Gatehouse has no entity
//! store: it builds the few entities a request needs itself.
//!
//! - `Gatehouse::Principal::"<name>"` — from authentication
//!   ([`PrincipalInfo`]): `team`, `region`, `purposes`, and every other
//!   identity attribute as a tag.
//! - `Gatehouse::Topic::"<name>"` — from the topic catalog ([`Catalog`]):
//!   `name`, `classification`, `residency`, `owner`, `governed`. A topic not
//!   in the catalog is ungoverned (`public`, `global`) but still a topic.
//! - `Gatehouse::Field::"<topic>/<path>"` — a protected field of a topic:
//!   `topic`, `path`, `category`.
//! - `Gatehouse::Group`, `Gatehouse::TransactionalId` (`name`) and
//!   `Gatehouse::Cluster::"kafka"`.
//!
//! Requests come at three levels ([`Action`]): per Kafka request (produce,
//! consume, describe, groups, cluster, administration); per record
//! (`consume_record` with the subject's consent and the record's region,
//! `produce_record` with the record's region); per protected field
//! (`read_clear`, `read_masked`, `read_pseudonym`, asked in that order: the
//! first permitted wins, and a field none permits is removed —
//! [`FieldEffect`]). Decisions deny by default and name the policies that
//! decided ([`Decision`]), by their `@id` annotation, which every policy must
//! have.
//!
//! # Modules
//!
//! - `catalog` — the topic catalog (TOML; exact names before `*` patterns).
//! - `principal` — [`PrincipalInfo`] and [`ConsentSet`], the hashable,
//!   shared set of purposes a data subject granted.
//! - `request` — [`Action`], [`Resource`], [`RecordContext`], [`Decision`]
//!   and the translation into Cedar entities and contexts.
//! - `store` — [`PolicyStore`]: loads a directory, validates it strictly
//!   against the schema (any validator error refuses the whole set, with the
//!   validator's message, file and policy id), versions it (a hash of the
//!   sources) and swaps it atomically on [`PolicyStore::reload`]; a refused
//!   reload keeps the active set. A [`PolicySet`] is one immutable version.
//! - `plan` — [`TopicPlan`]s and their cache.
//! - `fixtures` — [`validate`] and [`test_fixtures`], behind
//!   `gatehouse policy validate` / `gatehouse policy test`.
//!
//! # Why plans
//!
//! A Cedar decision costs microseconds; a fetch response carries thousands
//! of records, each with several protected fields. So the data path never
//! asks Cedar per record. [`PolicyStore::plan`] evaluates, once per
//! (principal, topic, policy version, catalog), the topic-level decisions
//! and the effect of every protected field into a [`TopicPlan`], and caches
//! it. The cache lives inside the [`PolicySet`], so a reload that swaps the
//! set drops every plan with it, atomically; it is bounded
//! ([`MAX_CACHED_PLANS`]: past it, it is emptied and refills). The principal
//! *with its attributes* is the key, so a changed identity never reuses a
//! plan, and a plan remembers the catalog it was computed from.
//!
//! Record decisions depend on per-record values, but only on few distinct
//! ones: the subject's consent set (subsets of a handful of purposes) and
//! the record's region. A plan memoizes `consume_record` per (region,
//! consent set) and `produce_record` per region, so in steady state a record
//! decision is a hash lookup under a read lock and no Cedar evaluation
//! ([`Counters`] count the evaluations, so tests and benchmarks can check
//! it). [`ConsentSet`] carries a precomputed hash and compares by pointer
//! first, which keeps those lookups cheap.
//!
//! [`PolicyStore::authorize`] answers `produce`, `consume` and `describe` on
//! a topic from the plan too, so the request-level check of every Produce,
//! Fetch and Metadata request is a cache hit. Other requests (groups,
//! cluster, administration) are evaluated each time.
//!
//! Orders of magnitude (`benches/decisions.rs`, one core, shipped policies):
//! a Cedar evaluation costs about 25–30 µs (Cedar evaluates each of the 26
//! policies, about 1 µs apiece), building the entities adds a few more; a
//! plan hit costs about 0.1 µs and a memoized record decision about 30 ns.
//! A plan miss asks Cedar 3 times plus up to 3 times per protected field.
//!
//! # Example
//!
//! ```
//! use gatehouse_policy::{Catalog, ConsentSet, FieldEffect, PolicyStore, PrincipalInfo};
//!
//! # fn main() -> Result<(), gatehouse_policy::PolicyError> {
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/default");
//! let store = PolicyStore::load(dir)?;
//! let catalog = Catalog::demo()?;
//! let analytics = PrincipalInfo::new("analytics", "analytics", "eu", ["analytics"]);
//!
//! let plan = store.plan(&analytics, "social.posts", &catalog);
//! assert!(plan.consume().allowed);
//! assert_eq!(plan.field_effect("$.author.email"), Some(FieldEffect::Masked));
//! assert_eq!(plan.field_effect("$.author.name"), Some(FieldEffect::Redacted));
//!
//! let granted = ConsentSet::new(["analytics"]);
//! assert!(plan.consume_record_allowed(Some(&granted), "eu"));
//! assert!(!plan.consume_record_allowed(Some(&ConsentSet::empty()), "eu"));
//! assert!(!plan.consume_record_allowed(None, "eu")); // subject unknown
//! # Ok(())
//! # }
//! ```

mod catalog;
mod error;
mod fixtures;
mod plan;
mod principal;
mod request;
mod store;

pub use catalog::{
    AfterErasure, Catalog, Erasure, JsonPath, ProtectedField, RecordFormat, SubjectLocator,
    TopicEntry, TopicInfo, ELEMENTS,
};
pub use error::{PolicyError, ValidationIssue};
pub use fixtures::{
    test_fixtures, validate, Expected, FixtureReport, FixtureResult, ValidationReport,
};
pub use plan::{
    FieldEffect, PlannedField, TopicPlan, MAX_CACHED_PLANS, MAX_MEMOIZED_RECORD_DECISIONS,
};
pub use principal::{ConsentSet, PrincipalInfo};
pub use request::{Action, Decision, RecordContext, Resource, ResourceKind, CLUSTER_ID};
pub use store::{CounterSnapshot, Counters, PolicySet, PolicySource, PolicyStore, SCHEMA};

/// The policies and catalog Gatehouse ships for the demo world, as
/// (file name, contents): what `gatehouse demo` writes into its policy
/// directory on first start, for a security team to edit.
pub const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[
    (
        "team-access.cedar",
        include_str!("../default/team-access.cedar"),
    ),
    (
        "residency.cedar",
        include_str!("../default/residency.cedar"),
    ),
    ("consent.cedar", include_str!("../default/consent.cedar")),
    ("fields.cedar", include_str!("../default/fields.cedar")),
    (
        "groups-cluster.cedar",
        include_str!("../default/groups-cluster.cedar"),
    ),
    ("erasure.cedar", include_str!("../default/erasure.cedar")),
    ("catalog.toml", include_str!("../default/catalog.toml")),
];
