//! Topic plans: every decision one principal needs on one topic, computed
//! once per policy version, and the memo that makes record decisions free in
//! steady state.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy as cedar;

use crate::catalog::{Catalog, JsonPath, RecordFormat, SubjectLocator};
use crate::principal::{ConsentSet, PrincipalInfo};
use crate::request::{self, Action, Decision, RecordContext};
use crate::store::Compiled;

/// The most plans one policy set caches. Past it the cache is emptied and
/// refills with what is in use: plans are cheap to recompute (a few Cedar
/// evaluations) and a connection holds its own `Arc` meanwhile.
pub const MAX_CACHED_PLANS: usize = 4096;

/// The most record decisions one plan memoizes (per action). Consent sets
/// and regions are few distinct values; past the bound, decisions are still
/// made, only not remembered.
pub const MAX_MEMOIZED_RECORD_DECISIONS: usize = 1024;

/// What a consumer receives of one protected field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldEffect {
    /// Decrypted (`read_clear`).
    Clear,
    /// Decrypted, then masked, keeping the shape (`read_masked`).
    Masked,
    /// A keyed deterministic token (`read_pseudonym`).
    Pseudonym,
    /// Removed from the record (no field action permitted).
    Redacted,
}

/// A protected field and what the principal receives of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedField {
    /// Where the field is.
    pub path: JsonPath,
    /// Its category.
    pub category: String,
    /// What the consumer receives.
    pub effect: FieldEffect,
    /// The `@id`s of the policies that granted the effect (empty for
    /// [`FieldEffect::Redacted`]).
    pub policies: Vec<String>,
}

/// Every decision one principal needs on one topic under one policy
/// version.
///
/// Topic-level decisions and field effects are computed when the plan is
/// built; record decisions are computed on first use and memoized. A plan
/// keeps deciding with the version it was built from: callers that hold one
/// across a reload should compare [`TopicPlan::version`] with the store's.
pub struct TopicPlan {
    topic: String,
    version: u64,
    catalog_generation: u64,
    produce: Decision,
    consume: Decision,
    describe: Decision,
    governed: bool,
    classification: String,
    residency: String,
    format: RecordFormat,
    subject: Option<SubjectLocator>,
    fields: Vec<PlannedField>,
    evaluator: Option<RecordEvaluator>,
    consume_memo: RwLock<ConsumeMemo>,
    produce_memo: RwLock<HashMap<Box<str>, bool>>,
}

/// What a memo miss needs to ask Cedar.
struct RecordEvaluator {
    compiled: Arc<Compiled>,
    entities: cedar::Entities,
    principal: cedar::EntityUid,
    topic: cedar::EntityUid,
}

#[derive(Default)]
struct ConsumeMemo {
    by_region: HashMap<Box<str>, RegionMemo>,
    len: usize,
}

#[derive(Default)]
struct RegionMemo {
    unknown_subject: Option<bool>,
    by_consent: HashMap<ConsentSet, bool>,
}

impl TopicPlan {
    pub(crate) fn compute(
        compiled: Arc<Compiled>,
        principal: &PrincipalInfo,
        topic: &str,
        catalog: &Catalog,
    ) -> TopicPlan {
        let info = catalog.lookup(topic);
        let names = &compiled.names;
        let built = (|| {
            let mut entities = vec![
                names.principal_entity(principal)?,
                names.topic_entity(topic, &info)?,
            ];
            for field in info.fields() {
                entities.push(names.field_entity(topic, field)?);
            }
            compiled.entities(entities)
        })();
        let evaluator = match built {
            Ok(entities) => Some(RecordEvaluator {
                principal: names.principal_uid(principal),
                topic: names.topic_uid(topic),
                entities,
                compiled: Arc::clone(&compiled),
            }),
            Err(message) => {
                // Cannot happen with the built-in schema; fail closed.
                tracing::error!(topic, %message, "plan entities refused by the schema: everything denied");
                None
            }
        };
        let topic_decision = |action| match &evaluator {
            Some(e) => e.decide(
                action,
                &e.topic,
                &RecordContext::default(),
                info.residency(),
            ),
            None => Decision::deny(),
        };
        let produce = topic_decision(Action::Produce);
        let consume = topic_decision(Action::Consume);
        let describe = topic_decision(Action::Describe);

        let fields = info
            .fields()
            .iter()
            .map(|field| {
                // A field of a topic that cannot be consumed is never
                // delivered: no need to ask.
                let granted = evaluator
                    .as_ref()
                    .filter(|_| consume.allowed)
                    .and_then(|e| {
                        let uid = names.field_uid(topic, field.path.as_str());
                        [
                            (Action::ReadClear, FieldEffect::Clear),
                            (Action::ReadMasked, FieldEffect::Masked),
                            (Action::ReadPseudonym, FieldEffect::Pseudonym),
                        ]
                        .into_iter()
                        .find_map(|(action, effect)| {
                            let d =
                                e.decide(action, &uid, &RecordContext::default(), info.residency());
                            d.allowed.then_some((effect, d.policies))
                        })
                    });
                let (effect, policies) = granted.unwrap_or((FieldEffect::Redacted, Vec::new()));
                PlannedField {
                    path: field.path.clone(),
                    category: field.category.clone(),
                    effect,
                    policies,
                }
            })
            .collect();

        TopicPlan {
            topic: topic.to_owned(),
            version: compiled.version,
            catalog_generation: catalog.generation(),
            produce,
            consume,
            describe,
            governed: info.governed(),
            classification: info.classification().to_owned(),
            residency: info.residency().to_owned(),
            format: info.format(),
            subject: info.subject().cloned(),
            fields,
            evaluator,
            consume_memo: RwLock::default(),
            produce_memo: RwLock::default(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The policy version the plan was computed with.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// May the principal produce to the topic?
    pub fn produce(&self) -> &Decision {
        &self.produce
    }

    /// May the principal consume from the topic?
    pub fn consume(&self) -> &Decision {
        &self.consume
    }

    /// May the principal see the topic's metadata?
    pub fn describe(&self) -> &Decision {
        &self.describe
    }

    /// The planned decision for `action`: `Some` for produce, consume and
    /// describe.
    pub fn decision(&self, action: Action) -> Option<&Decision> {
        match action {
            Action::Produce => Some(&self.produce),
            Action::Consume => Some(&self.consume),
            Action::Describe => Some(&self.describe),
            _ => None,
        }
    }

    /// Whether the topic is in the catalog.
    pub fn governed(&self) -> bool {
        self.governed
    }

    /// The topic's classification.
    pub fn classification(&self) -> &str {
        &self.classification
    }

    /// The topic's residency: the region of a record without a `region`
    /// header.
    pub fn residency(&self) -> &str {
        &self.residency
    }

    /// The topic's record format.
    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// Where the data subject of a record is found.
    pub fn subject(&self) -> Option<&SubjectLocator> {
        self.subject.as_ref()
    }

    /// The protected fields and their effects, in catalog order. All
    /// [`FieldEffect::Redacted`] when the topic cannot be consumed.
    pub fn fields(&self) -> &[PlannedField] {
        &self.fields
    }

    /// The effect for the protected field at `path`, `None` if the path is
    /// not a protected field.
    pub fn field_effect(&self, path: &str) -> Option<FieldEffect> {
        self.fields
            .iter()
            .find(|f| f.path.as_str() == path)
            .map(|f| f.effect)
    }

    /// May this record be delivered? `subject_purposes` is what its data
    /// subject granted (`None`: subject unknown); `record_region` its
    /// `region` header, or [`TopicPlan::residency`] without one.
    ///
    /// Memoized per (region, consent set): after the first record of each
    /// combination this is two hash lookups under a read lock, no Cedar
    /// evaluation. Always `false` when the topic cannot be consumed.
    pub fn consume_record_allowed(
        &self,
        subject_purposes: Option<&ConsentSet>,
        record_region: &str,
    ) -> bool {
        if !self.consume.allowed {
            return false;
        }
        {
            let memo = self
                .consume_memo
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(region) = memo.by_region.get(record_region) {
                let hit = match subject_purposes {
                    None => region.unknown_subject,
                    Some(set) => region.by_consent.get(set).copied(),
                };
                if let Some(allowed) = hit {
                    return allowed;
                }
            }
        }
        let context = RecordContext {
            subject_purposes,
            record_region: Some(record_region),
        };
        let allowed = self.decide_record(Action::ConsumeRecord, &context);
        let mut guard = self
            .consume_memo
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let memo = &mut *guard;
        if memo.len < MAX_MEMOIZED_RECORD_DECISIONS {
            let region = memo.by_region.entry(record_region.into()).or_default();
            let fresh = match subject_purposes {
                None => region.unknown_subject.replace(allowed).is_none(),
                Some(set) => region.by_consent.insert(set.clone(), allowed).is_none(),
            };
            memo.len += usize::from(fresh);
        }
        allowed
    }

    /// May a record with this region be produced? Memoized per region.
    /// Always `false` when the topic cannot be produced to.
    pub fn produce_record_allowed(&self, record_region: &str) -> bool {
        if !self.produce.allowed {
            return false;
        }
        if let Some(&allowed) = self
            .produce_memo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(record_region)
        {
            return allowed;
        }
        let context = RecordContext {
            subject_purposes: None,
            record_region: Some(record_region),
        };
        let allowed = self.decide_record(Action::ProduceRecord, &context);
        let mut memo = self
            .produce_memo
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if memo.len() < MAX_MEMOIZED_RECORD_DECISIONS {
            memo.insert(record_region.into(), allowed);
        }
        allowed
    }

    fn decide_record(&self, action: Action, context: &RecordContext<'_>) -> bool {
        self.evaluator
            .as_ref()
            .is_some_and(|e| e.decide(action, &e.topic, context, &self.residency).allowed)
    }

    /// The generation of the catalog the plan was built from (it changes
    /// with every catalog loaded).
    pub fn catalog_generation(&self) -> u64 {
        self.catalog_generation
    }
}

impl std::fmt::Debug for TopicPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicPlan")
            .field("topic", &self.topic)
            .field("version", &format_args!("{:016x}", self.version))
            .field("produce", &self.produce.allowed)
            .field("consume", &self.consume.allowed)
            .field("describe", &self.describe.allowed)
            .field("residency", &self.residency)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl RecordEvaluator {
    fn decide(
        &self,
        action: Action,
        resource: &cedar::EntityUid,
        context: &RecordContext<'_>,
        residency: &str,
    ) -> Decision {
        self.compiled.decide(
            &self.principal,
            action,
            resource,
            request::context(action, context, residency),
            &self.entities,
        )
    }
}

/// The plans of one policy set, by principal then topic (two lookups by
/// reference, so a hit allocates nothing).
#[derive(Debug, Default)]
pub(crate) struct PlanCache {
    inner: RwLock<PlanMap>,
}

#[derive(Debug, Default)]
struct PlanMap {
    plans: HashMap<PrincipalInfo, HashMap<String, Arc<TopicPlan>>>,
    len: usize,
}

impl PlanCache {
    pub(crate) fn get(
        &self,
        principal: &PrincipalInfo,
        topic: &str,
        catalog_generation: u64,
    ) -> Option<Arc<TopicPlan>> {
        let map = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        map.plans
            .get(principal)?
            .get(topic)
            .filter(|plan| plan.catalog_generation() == catalog_generation)
            .cloned()
    }

    pub(crate) fn insert(&self, principal: &PrincipalInfo, topic: &str, plan: Arc<TopicPlan>) {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let map = &mut *guard;
        if map.len >= MAX_CACHED_PLANS {
            tracing::debug!(plans = map.len, "plan cache full: emptied");
            map.plans.clear();
            map.len = 0;
        }
        // A miss path: cloning the principal here is fine.
        let topics = map.plans.entry(principal.clone()).or_default();
        let fresh = topics.insert(topic.to_owned(), plan).is_none();
        map.len += usize::from(fresh);
    }

    pub(crate) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len
    }
}
