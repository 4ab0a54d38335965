//! Loading, validating and swapping policy sets; one-off decisions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cedar_policy as cedar;

use crate::catalog::Catalog;
use crate::error::{PolicyError, ValidationIssue};
use crate::plan::{PlanCache, TopicPlan};
use crate::principal::PrincipalInfo;
use crate::request::{self, Action, Decision, Names, RecordContext, Resource};

/// The Cedar schema, built in (see [`PolicyError::SchemaOverride`]).
pub const SCHEMA: &str = include_str!("../schema/gatehouse.cedarschema");

/// One policy file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The file name (no directory), e.g. `residency.cedar`.
    pub file: String,
    /// The file's text.
    pub text: String,
}

/// Decision counters, shared by every policy set of a store, for
/// benchmarks and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    evaluations: AtomicU64,
    plan_hits: AtomicU64,
    plan_misses: AtomicU64,
    records_decided: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    /// Cedar authorization calls (one per decision actually evaluated).
    pub evaluations: u64,
    /// Plans served from the cache.
    pub plan_hits: u64,
    /// Plans computed.
    pub plan_misses: u64,
    /// Record decisions made (consume and produce), as counted by the
    /// callers with [`PolicyStore::count_record_decisions`]: a record
    /// decision costs a Cedar evaluation only on a memo miss, so
    /// `evaluations` staying flat while this grows is the memo at work.
    pub records_decided: u64,
}

impl CounterSnapshot {
    /// The share of plan lookups served from the cache (1.0 with none).
    pub fn plan_hit_rate(&self) -> f64 {
        let total = self.plan_hits + self.plan_misses;
        if total == 0 {
            1.0
        } else {
            self.plan_hits as f64 / total as f64
        }
    }

    /// The counts since `earlier` (saturating).
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            evaluations: self.evaluations.saturating_sub(earlier.evaluations),
            plan_hits: self.plan_hits.saturating_sub(earlier.plan_hits),
            plan_misses: self.plan_misses.saturating_sub(earlier.plan_misses),
            records_decided: self.records_decided.saturating_sub(earlier.records_decided),
        }
    }
}

impl Counters {
    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            evaluations: self.evaluations.load(Ordering::Relaxed),
            plan_hits: self.plan_hits.load(Ordering::Relaxed),
            plan_misses: self.plan_misses.load(Ordering::Relaxed),
            records_decided: self.records_decided.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn plan_hit(&self) {
        self.plan_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn plan_miss(&self) {
        self.plan_misses.fetch_add(1, Ordering::Relaxed);
    }
}

/// The validated policies of one version, what a [`TopicPlan`] evaluates
/// against. Kept apart from the plan cache so that plans can hold it
/// without a reference cycle.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) version: u64,
    pub(crate) names: Names,
    policies: cedar::PolicySet,
    schema: cedar::Schema,
    authorizer: cedar::Authorizer,
    counters: Arc<Counters>,
}

impl Compiled {
    /// Builds a schema-conforming entity store.
    pub(crate) fn entities(&self, entities: Vec<cedar::Entity>) -> Result<cedar::Entities, String> {
        cedar::Entities::from_entities(entities, Some(&self.schema)).map_err(|e| e.to_string())
    }

    /// One Cedar evaluation. Any error (a request that does not conform to
    /// the schema, a policy that errs) denies.
    pub(crate) fn decide(
        &self,
        principal: &cedar::EntityUid,
        action: Action,
        resource: &cedar::EntityUid,
        context: Result<cedar::Context, String>,
        entities: &cedar::Entities,
    ) -> Decision {
        let request = context.and_then(|context| {
            cedar::Request::new(
                principal.clone(),
                self.names.action(action),
                resource.clone(),
                context,
                Some(&self.schema),
            )
            .map_err(|e| e.to_string())
        });
        let request = match request {
            Ok(request) => request,
            Err(message) => {
                tracing::warn!(action = action.name(), %message, "request refused by the schema: denied");
                return Decision::deny();
            }
        };
        self.counters.evaluations.fetch_add(1, Ordering::Relaxed);
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, entities);
        let diagnostics = response.diagnostics();
        for error in diagnostics.errors() {
            // Names the policy and the error; never attribute values.
            tracing::warn!(action = action.name(), %error, "policy evaluation error (policy skipped)");
        }
        Decision {
            allowed: response.decision() == cedar::Decision::Allow,
            policies: diagnostics.reason().map(|id| id.to_string()).collect(),
        }
    }
}

/// One validated, immutable version of the policies, with its plan cache.
///
/// Obtained from [`PolicyStore::current`]. Everything decided through one
/// `PolicySet` is decided by one version, even while the store reloads.
pub struct PolicySet {
    compiled: Arc<Compiled>,
    sources: Vec<PolicySource>,
    ids: Vec<String>,
    warnings: Vec<String>,
    plans: PlanCache,
}

impl PolicySet {
    /// Reads, parses and validates the `*.cedar` files of `dir`.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::load_with(dir, Arc::default())
    }

    fn load_with(dir: &Path, counters: Arc<Counters>) -> Result<Self, PolicyError> {
        Self::from_sources(read_sources(dir)?, counters)
    }

    /// Parses and validates policy files given in memory (in any order:
    /// they are sorted by file name, as read from a directory).
    pub fn from_sources(
        mut sources: Vec<PolicySource>,
        counters: Arc<Counters>,
    ) -> Result<Self, PolicyError> {
        sources.sort_by(|a, b| a.file.cmp(&b.file));
        let (schema, _warnings) =
            cedar::Schema::from_cedarschema_str(SCHEMA).map_err(|e| PolicyError::Schema {
                file: "gatehouse.cedarschema".to_owned(),
                message: e.to_string(),
            })?;
        let mut policies = cedar::PolicySet::new();
        let mut file_of: HashMap<String, String> = HashMap::new();
        let mut ids = Vec::new();
        for source in &sources {
            for policy in parse_file(source)? {
                let id = policy.id().to_string();
                if let Some(first) = file_of.insert(id.clone(), source.file.clone()) {
                    return Err(PolicyError::DuplicateId {
                        id,
                        first,
                        second: source.file.clone(),
                    });
                }
                // Only a duplicate id can make `add` fail, and that was
                // refused above with both file names.
                policies.add(policy).map_err(|_| PolicyError::DuplicateId {
                    id: id.clone(),
                    first: source.file.clone(),
                    second: source.file.clone(),
                })?;
                ids.push(id);
            }
        }

        let validator = cedar::Validator::new(schema.clone());
        let result = validator.validate(&policies, cedar::ValidationMode::Strict);
        let issues: Vec<ValidationIssue> = result
            .validation_errors()
            .map(|e| {
                let policy = e.policy_id().to_string();
                ValidationIssue {
                    file: file_of.get(&policy).cloned().unwrap_or_default(),
                    policy,
                    message: e.to_string(),
                }
            })
            .collect();
        if !issues.is_empty() {
            return Err(PolicyError::Validation { issues });
        }
        let warnings: Vec<String> = result
            .validation_warnings()
            .map(|w| {
                let policy = w.policy_id().to_string();
                let file = file_of.get(&policy).map_or("", String::as_str);
                format!("{file}: {w}")
            })
            .collect();
        for warning in &warnings {
            tracing::warn!(%warning, "policy validation warning");
        }

        let compiled = Compiled {
            version: version_of(&sources),
            names: Names::new()?,
            policies,
            schema,
            authorizer: cedar::Authorizer::new(),
            counters,
        };
        Ok(PolicySet {
            compiled: Arc::new(compiled),
            sources,
            ids,
            warnings,
            plans: PlanCache::default(),
        })
    }

    /// The version: a hash (64-bit FNV-1a, stable across builds and
    /// replicas) of the schema and of every file's name and text. Not a
    /// cryptographic digest; the audit log hashes [`PolicySet::sources`]
    /// itself if it needs one.
    pub fn version(&self) -> u64 {
        self.compiled.version
    }

    /// The policy files, sorted by name.
    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    /// The policies' `@id`s, in file order.
    pub fn policy_ids(&self) -> &[String] {
        &self.ids
    }

    /// The validator's warnings (e.g. a policy that can never apply).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Decides one request (non-record actions; see
    /// [`PolicySet::authorize_with`] for per-record context).
    pub fn authorize(
        &self,
        principal: &PrincipalInfo,
        action: Action,
        resource: Resource<'_>,
        catalog: &Catalog,
    ) -> Decision {
        self.authorize_with(
            principal,
            action,
            resource,
            &RecordContext::default(),
            catalog,
        )
    }

    /// Decides one request with a record context.
    ///
    /// `produce`, `consume` and `describe` on a topic are answered from the
    /// topic's plan (cached). Any other request builds its entities and asks
    /// Cedar (tens of microseconds with the shipped policies): fine for
    /// group, cluster and administration requests, too slow per record — use
    /// [`PolicySet::plan`] there.
    pub fn authorize_with(
        &self,
        principal: &PrincipalInfo,
        action: Action,
        resource: Resource<'_>,
        context: &RecordContext<'_>,
        catalog: &Catalog,
    ) -> Decision {
        // The topic-level decisions are in the plan: a cache hit instead of
        // a Cedar evaluation for the request-level checks of every Produce,
        // Fetch and Metadata request.
        if let Resource::Topic(topic) = resource {
            if matches!(action, Action::Produce | Action::Consume | Action::Describe) {
                let plan = self.plan(principal, topic, catalog);
                return plan
                    .decision(action)
                    .cloned()
                    .unwrap_or_else(Decision::deny);
            }
        }
        let compiled = &self.compiled;
        let names = &compiled.names;
        let built = (|| {
            let mut entities = vec![names.principal_entity(principal)?];
            let mut residency = "global";
            match resource {
                Resource::Topic(topic) => {
                    let info = catalog.lookup(topic);
                    residency = info.residency();
                    entities.push(names.topic_entity(topic, &info)?);
                }
                Resource::Field { topic, path } => {
                    let info = catalog.lookup(topic);
                    let field = info
                        .fields()
                        .iter()
                        .find(|f| f.path.as_str() == path)
                        .ok_or_else(|| format!("{path} is not a protected field of {topic}"))?;
                    entities.push(names.topic_entity(topic, &info)?);
                    entities.push(names.field_entity(topic, field)?);
                }
                _ => entities.push(names.named_entity(&resource)?),
            }
            let entities = compiled.entities(entities)?;
            Ok::<_, String>((entities, residency))
        })();
        let (entities, residency) = match built {
            Ok(built) => built,
            Err(message) => {
                tracing::warn!(action = action.name(), %message, "request cannot be evaluated: denied");
                return Decision::deny();
            }
        };
        compiled.decide(
            &names.principal_uid(principal),
            action,
            &names.resource_uid(&resource),
            request::context(action, context, residency),
            &entities,
        )
    }

    /// The plan for `principal` on `topic`: the topic-level decisions, the
    /// field effects, and memoized record decisions. Cached per (principal,
    /// topic) for this version and `catalog`.
    pub fn plan(
        &self,
        principal: &PrincipalInfo,
        topic: &str,
        catalog: &Catalog,
    ) -> Arc<TopicPlan> {
        if let Some(plan) = self.plans.get(principal, topic, catalog.generation()) {
            self.compiled.counters.plan_hit();
            return plan;
        }
        self.compiled.counters.plan_miss();
        let plan = Arc::new(TopicPlan::compute(
            Arc::clone(&self.compiled),
            principal,
            topic,
            catalog,
        ));
        self.plans.insert(principal, topic, Arc::clone(&plan));
        plan
    }

    /// The number of cached plans.
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("version", &format_args!("{:016x}", self.version()))
            .field("policies", &self.ids)
            .field("cached_plans", &self.plans.len())
            .finish_non_exhaustive()
    }
}

/// The active policy set of a directory, reloadable.
///
/// Readers take the current set with [`PolicyStore::current`] (an `Arc`
/// clone under a read lock); [`PolicyStore::reload`] validates a new set
/// completely before swapping it in, so readers see the old set or the new
/// one, never a mix, and never an invalid one.
#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    current: RwLock<Arc<PolicySet>>,
    counters: Arc<Counters>,
    reloading: Mutex<()>,
}

impl PolicyStore {
    /// Loads and validates the policies of `dir`; refuses an invalid set.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let dir = dir.as_ref().to_owned();
        let counters = Arc::<Counters>::default();
        let set = PolicySet::load_with(&dir, Arc::clone(&counters))?;
        tracing::info!(dir = %dir.display(), version = format_args!("{:016x}", set.version()), policies = set.ids.len(), "policies loaded");
        Ok(PolicyStore {
            dir,
            current: RwLock::new(Arc::new(set)),
            counters,
            reloading: Mutex::new(()),
        })
    }

    /// Re-reads the directory. On success the new set replaces the old one
    /// (and with it the plan cache) and its version is returned; when the
    /// files did not change, the current set and its plans are kept. On
    /// error the old set stays active.
    pub fn reload(&self) -> Result<u64, PolicyError> {
        // One reload at a time, so two concurrent reloads cannot swap in
        // their sets out of order.
        let _guard = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.current();
        let new = match PolicySet::load_with(&self.dir, Arc::clone(&self.counters)) {
            Ok(new) => new,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, version = format_args!("{:016x}", old.version()), "policy reload refused; keeping the active set");
                return Err(error);
            }
        };
        let version = new.version();
        if version != old.version() {
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
            tracing::info!(
                old = format_args!("{:016x}", old.version()),
                new = format_args!("{version:016x}"),
                "policies reloaded"
            );
        }
        Ok(version)
    }

    /// The active set.
    pub fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The active set's version.
    pub fn version(&self) -> u64 {
        self.current().version()
    }

    /// The policy directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Decides one request against the active set.
    pub fn authorize(
        &self,
        principal: &PrincipalInfo,
        action: Action,
        resource: Resource<'_>,
        catalog: &Catalog,
    ) -> Decision {
        self.current()
            .authorize(principal, action, resource, catalog)
    }

    /// Decides one request with a record context against the active set.
    pub fn authorize_with(
        &self,
        principal: &PrincipalInfo,
        action: Action,
        resource: Resource<'_>,
        context: &RecordContext<'_>,
        catalog: &Catalog,
    ) -> Decision {
        self.current()
            .authorize_with(principal, action, resource, context, catalog)
    }

    /// The plan for `principal` on `topic` under the active set.
    pub fn plan(
        &self,
        principal: &PrincipalInfo,
        topic: &str,
        catalog: &Catalog,
    ) -> Arc<TopicPlan> {
        self.current().plan(principal, topic, catalog)
    }

    /// The decision counters (shared by every version).
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// The live counters, for metrics that read them when scraped.
    pub fn live_counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Counts `n` record decisions (one atomic add per batch, not per
    /// record, on the hot path).
    pub fn count_record_decisions(&self, n: u64) {
        if n > 0 {
            self.counters
                .records_decided
                .fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Reads every `*.cedar` of `dir`, sorted by name; refuses schema files.
pub(crate) fn read_sources(dir: &Path) -> Result<Vec<PolicySource>, PolicyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PolicyError::Io { path, source }
    };
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".cedarschema") || name.ends_with(".cedarschema.json") {
            return Err(PolicyError::SchemaOverride { path });
        }
        // Editors' lock and backup files (`.#x.cedar`) are not policies.
        if name.starts_with('.') || !name.ends_with(".cedar") || !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        sources.push(PolicySource {
            file: name.to_owned(),
            text,
        });
    }
    if sources.is_empty() {
        return Err(PolicyError::NoPolicies {
            dir: dir.to_owned(),
        });
    }
    Ok(sources)
}

/// Parses one file into policies renamed after their `@id`.
fn parse_file(source: &PolicySource) -> Result<Vec<cedar::Policy>, PolicyError> {
    let file = &source.file;
    let parsed =
        cedar::PolicySet::from_str(&source.text).map_err(|errors| PolicyError::Syntax {
            file: file.clone(),
            message: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    if parsed.num_of_templates() > 0 {
        return Err(PolicyError::Template { file: file.clone() });
    }
    // The parser names policies policy0, policy1, ... in file order; sort
    // by that number so errors can say "policy #n".
    let mut policies: Vec<&cedar::Policy> = parsed.policies().collect();
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .strip_prefix("policy")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    });
    policies
        .into_iter()
        .enumerate()
        .map(|(i, policy)| match policy.annotation("id") {
            Some(id) if !id.trim().is_empty() => Ok(policy.new_id(cedar::PolicyId::new(id))),
            _ => Err(PolicyError::MissingId {
                file: file.clone(),
                index: i + 1,
            }),
        })
        .collect()
}

/// FNV-1a 64 over the schema and each file's name and text (lengths
/// included, so no two different directories hash the same way by
/// concatenation).
fn version_of(sources: &[PolicySource]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for chunk in [&(bytes.len() as u64).to_le_bytes()[..], bytes] {
            for &b in chunk {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(PRIME);
            }
        }
    };
    feed(SCHEMA.as_bytes());
    for source in sources {
        feed(source.file.as_bytes());
        feed(source.text.as_bytes());
    }
    hash
}
