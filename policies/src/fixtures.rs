//! `gatehouse policy validate DIR` and `gatehouse policy test DIR`.
//!
//! A fixture is one request and its expected outcome, in the style of
//! cedar-examples: `DIR/fixtures/ALLOW/*.json` must be allowed,
//! `DIR/fixtures/DENY/*.json` denied. Requests are decided exactly as the
//! proxy decides them (same entities, same catalog lookup), against
//! `DIR/catalog.toml` when there is one (otherwise every topic is
//! ungoverned).
//!
//! ```json
//! {
//!   "description": "analytics reads a post whose author granted analytics",
//!   "principal": {"name": "analytics",
//!                 "attributes": {"team": "analytics", "region": "eu", "purposes": ["analytics"]}},
//!   "action": "consume_record",
//!   "resource": {"topic": "social.posts"},
//!   "context": {"subject_purposes": ["analytics"], "record_region": "eu"},
//!   "decided_by": ["analytics-consent-required"]
//! }
//! ```
//!
//! `resource` is one of `{"topic": NAME}`, `{"group": ID}`, `"cluster"`,
//! `{"transactional_id": ID}`, `{"field": {"topic": NAME, "path": "$.a.b"}}`.
//! In `context` (record actions only), a missing `subject_purposes` means
//! the subject is unknown, and a missing `record_region` means the topic's
//! residency. `decided_by`, optional, lists policy ids that must be among
//! those that decided.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::error::PolicyError;
use crate::principal::{ConsentSet, PrincipalInfo};
use crate::request::{Action, Decision, RecordContext, Resource};
use crate::store::PolicySet;

/// What `gatehouse policy validate` reports.
#[derive(Debug, Clone)]
pub struct ValidationReport {
    /// The policy set's version.
    pub version: u64,
    /// The policy files, sorted.
    pub files: Vec<String>,
    /// The policies' `@id`s.
    pub policies: Vec<String>,
    /// Validator warnings (not errors: the set is valid).
    pub warnings: Vec<String>,
    /// The number of entries of `catalog.toml`, if the directory has one.
    pub catalog_entries: Option<usize>,
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "valid: {} policies in {} files, version {:016x}",
            self.policies.len(),
            self.files.len(),
            self.version
        )?;
        if let Some(n) = self.catalog_entries {
            write!(f, "; catalog: {n} entries")?;
        }
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}

/// Validates the policies of `dir` against the schema, and its
/// `catalog.toml` if there is one.
pub fn validate(dir: impl AsRef<Path>) -> Result<ValidationReport, PolicyError> {
    let dir = dir.as_ref();
    let set = PolicySet::load(dir)?;
    let catalog = load_catalog(dir)?;
    Ok(ValidationReport {
        version: set.version(),
        files: set.sources().iter().map(|s| s.file.clone()).collect(),
        policies: set.policy_ids().to_vec(),
        warnings: set.warnings().to_vec(),
        catalog_entries: catalog.map(|c| c.len()),
    })
}

/// The expected outcome of a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Under `fixtures/ALLOW`.
    Allow,
    /// Under `fixtures/DENY`.
    Deny,
}

/// One fixture's outcome.
#[derive(Debug, Clone)]
pub struct FixtureResult {
    /// The fixture's path relative to the policy directory.
    pub file: String,
    /// Its description.
    pub description: String,
    /// What it expects.
    pub expected: Expected,
    /// What the policies decided.
    pub decision: Decision,
    /// Why it failed, `None` if it passed.
    pub failure: Option<String>,
}

/// What `gatehouse policy test` reports.
#[derive(Debug, Clone)]
pub struct FixtureReport {
    /// The policy set's version.
    pub version: u64,
    /// Every fixture, ALLOW first, each sorted by file name.
    pub results: Vec<FixtureResult>,
}

impl FixtureReport {
    /// The number of fixtures that passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_none()).count()
    }

    /// The fixtures that failed.
    pub fn failures(&self) -> impl Iterator<Item = &FixtureResult> + '_ {
        self.results.iter().filter(|r| r.failure.is_some())
    }

    /// Whether every fixture passed.
    pub fn all_passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

impl fmt::Display for FixtureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for result in self.failures() {
            writeln!(
                f,
                "FAIL {}: {} ({})",
                result.file,
                result.failure.as_deref().unwrap_or_default(),
                result.description
            )?;
        }
        write!(
            f,
            "{} of {} fixtures passed (policy version {:016x})",
            self.passed(),
            self.results.len(),
            self.version
        )
    }
}

/// Runs the fixtures of `dir` against its policies. Malformed fixtures are
/// errors; fixtures whose outcome differs are failures in the report.
pub fn test_fixtures(dir: impl AsRef<Path>) -> Result<FixtureReport, PolicyError> {
    let dir = dir.as_ref();
    let set = PolicySet::load(dir)?;
    let catalog = load_catalog(dir)?.unwrap_or_else(Catalog::empty);
    let mut results = Vec::new();
    for (sub, expected) in [("ALLOW", Expected::Allow), ("DENY", Expected::Deny)] {
        let fixture_dir = dir.join("fixtures").join(sub);
        if !fixture_dir.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&fixture_dir)
            .map_err(|source| PolicyError::Io {
                path: fixture_dir.clone(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let name = format!(
                "fixtures/{sub}/{}",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            );
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            results.push(run_fixture(&set, &catalog, &name, &text, expected)?);
        }
    }
    if results.is_empty() {
        return Err(PolicyError::NoFixtures {
            dir: dir.to_owned(),
        });
    }
    Ok(FixtureReport {
        version: set.version(),
        results,
    })
}

fn load_catalog(dir: &Path) -> Result<Option<Catalog>, PolicyError> {
    let path = dir.join("catalog.toml");
    if path.is_file() {
        Catalog::load(&path).map(Some)
    } else {
        Ok(None)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    description: String,
    principal: FixturePrincipal,
    action: String,
    resource: FixtureResource,
    #[serde(default)]
    context: FixtureContext,
    #[serde(default)]
    decided_by: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixturePrincipal {
    name: String,
    #[serde(default)]
    attributes: BTreeMap<String, AttributeValue>,
}

/// An identity attribute, as the authentication layer has it.
#[derive(Deserialize)]
#[serde(untagged)]
enum AttributeValue {
    One(String),
    Many(Vec<String>),
}

impl AttributeValue {
    fn values(&self) -> &[String] {
        match self {
            AttributeValue::One(value) => std::slice::from_ref(value),
            AttributeValue::Many(values) => values,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum FixtureResource {
    Topic(String),
    Group(String),
    Cluster,
    TransactionalId(String),
    Field { topic: String, path: String },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FixtureContext {
    #[serde(default)]
    subject_purposes: Option<Vec<String>>,
    #[serde(default)]
    record_region: Option<String>,
}

fn run_fixture(
    set: &PolicySet,
    catalog: &Catalog,
    file: &str,
    text: &str,
    expected: Expected,
) -> Result<FixtureResult, PolicyError> {
    let malformed = |message: String| PolicyError::Fixture {
        file: file.to_owned(),
        message,
    };
    let fixture: Fixture = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    let action = Action::from_name(&fixture.action)
        .ok_or_else(|| malformed(format!("unknown action {:?}", fixture.action)))?;
    let principal = PrincipalInfo::from_attributes(
        &fixture.principal.name,
        fixture
            .principal
            .attributes
            .iter()
            .map(|(k, v)| (k, v.values())),
    )?;
    let resource = match &fixture.resource {
        FixtureResource::Topic(name) => Resource::Topic(name),
        FixtureResource::Group(name) => Resource::Group(name),
        FixtureResource::Cluster => Resource::Cluster,
        FixtureResource::TransactionalId(name) => Resource::TransactionalId(name),
        FixtureResource::Field { topic, path } => Resource::Field { topic, path },
    };
    if resource.kind() != action.resource_kind() {
        return Err(malformed(format!(
            "action {} applies to a {:?}, not a {:?}",
            action.name(),
            action.resource_kind(),
            resource.kind()
        )));
    }
    if let Resource::Field { topic, path } = resource {
        // A typo in a path would otherwise pass every DENY fixture.
        if !catalog
            .lookup(topic)
            .fields()
            .iter()
            .any(|f| f.path.as_str() == path)
        {
            return Err(malformed(format!(
                "{path} is not a protected field of {topic} in the catalog"
            )));
        }
    }
    let consent = fixture
        .context
        .subject_purposes
        .as_ref()
        .map(ConsentSet::new);
    let context = RecordContext {
        subject_purposes: consent.as_ref(),
        record_region: fixture.context.record_region.as_deref(),
    };
    let decision = set.authorize_with(&principal, action, resource, &context, catalog);
    let mut failure = match (expected, decision.allowed) {
        (Expected::Allow, false) => Some("expected ALLOW, got DENY".to_owned()),
        (Expected::Deny, true) => Some(format!(
            "expected DENY, got ALLOW by {:?}",
            decision.policies
        )),
        _ => None,
    };
    if failure.is_none() {
        let missing: Vec<&String> = fixture
            .decided_by
            .iter()
            .filter(|id| !decision.policies.contains(id))
            .collect();
        if !missing.is_empty() {
            failure = Some(format!(
                "decided by {:?}, expected also {missing:?}",
                decision.policies
            ));
        }
    }
    Ok(FixtureResult {
        file: file.to_owned(),
        description: fixture.description,
        expected,
        decision,
        failure,
    })
}
