//! The `consent` filter: records of subjects who did not consent to the
//! consumer's purpose (or whose region the policies refuse, or who were
//! erased: [`crate::cluster::erasure`]) are removed from fetched batches;
//! records produced to the consent topic are checked, and records of erased
//! subjects refused where the catalog says so.

use std::sync::Arc;

use bytes::Bytes;
use gatehouse_policy::{AfterErasure, Catalog, PolicyStore};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind};

use crate::auth::principal::principal_info;
use crate::cluster::consent::ConsentStore;
use crate::cluster::erasure::Erasures;
use crate::codec::records::{rewrite_records, RecordsError, RecordsOptions, Verdict};
use crate::codec::subject::SubjectFinder;
use crate::filter::view_cache::{self, ViewCache, ViewId};
use crate::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, Response, ResponseAction,
    SessionContext,
};

const INVALID_RECORD: i16 = 87;
const POLICY_VIOLATION: i16 = 44;

/// Removes fetched records whose data subject did not consent to the
/// consumer's purpose (or whose region the policies refuse), as the
/// `consume_record` policies decide.
#[derive(Debug)]
pub struct Consent {
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
    store: Arc<ConsentStore>,
    /// Topics whose records the field protection filter decides (consent
    /// included, in its single pass over them).
    protection: Option<Arc<crate::filter::fields::Protection>>,
    /// The consent topic, whose produced records are checked before the
    /// cluster stores them.
    consent_topic: Option<String>,
    /// Where refused consent records are recorded.
    audit: Option<gatehouse_audit::AuditLog>,
    /// Erased subjects: withheld on fetch, refused on produce unless the
    /// catalog accepts a returning subject.
    erasures: Option<Arc<Erasures>>,
    /// Withheld records are counted here.
    metrics: Option<Arc<crate::metrics::ProxyMetrics>>,
    /// What fetches delivered of each batch, by view (fan-out).
    views: Option<Arc<ViewCache>>,
}

/// What the consent pass noted of a batch (or a partition's batches).
#[derive(Debug, Default)]
struct Noted {
    /// What was delivered, for the audit trail.
    part: crate::filter::audit::DeliveredPart,
    /// Records withheld.
    dropped: usize,
}

impl Noted {
    fn merge(&mut self, other: &Noted) {
        self.part.merge(&other.part);
        self.dropped += other.dropped;
    }
}

const CONSENT: &str = "consent";
/// Notes key of the consent topic's refused partitions of a produce.
const CONSENT_REFUSED: &str = "consent-refused";

impl Consent {
    /// A filter deciding with `policies` over the subjects in `store`.
    pub fn new(
        policies: Arc<PolicyStore>,
        catalog: Arc<Catalog>,
        store: Arc<ConsentStore>,
    ) -> Self {
        Self {
            policies,
            catalog,
            store,
            protection: None,
            consent_topic: None,
            audit: None,
            erasures: None,
            metrics: None,
            views: None,
        }
    }

    /// Keeps what fetches delivered of each batch in `views`, for later
    /// fetches of it with the same view.
    pub fn with_view_cache(mut self, views: Option<Arc<ViewCache>>) -> Self {
        self.views = views;
        self
    }

    /// The consent pass over one record set: what is delivered, what was
    /// noted (`record`: the delivered part too) and the records decided.
    fn decide(
        gate: &crate::filter::fields::ConsentGate<'_>,
        finder: &SubjectFinder,
        records: &Bytes,
        record: bool,
    ) -> Result<(Bytes, Noted, usize), RecordsError> {
        let mut noted = Noted::default();
        let rw = rewrite_records(records, &RecordsOptions::fetch(), |h, rec| {
            let subject = finder.find(rec.key.as_ref(), rec.value.as_ref(), &rec.headers);
            if !gate.allows(subject.as_deref(), &rec.headers, h.timestamp_of(rec)) {
                return Ok::<_, RecordsError>(Verdict::Drop);
            }
            if record {
                noted.part.add(h.offset_of(rec), subject);
            }
            Ok(Verdict::Keep)
        })?;
        noted.dropped = rw.stats.records_dropped;
        Ok((rw.records, noted, rw.stats.records_seen))
    }

    /// Withholds the records of the subjects `erasures` names, and refuses
    /// new ones where the catalog says so.
    pub fn with_erasures(mut self, erasures: Option<Arc<Erasures>>) -> Self {
        self.erasures = erasures;
        self
    }

    /// The partitions of `p`, on governed topics this filter decides, that
    /// carry a record of an erased subject (a tombstone aside: it only
    /// removes), taken out of the request.
    fn take_erased(&self, p: &mut ProduceRequest) -> crate::filter::fields::RefusedParts {
        let mut refused = crate::filter::fields::RefusedParts::new();
        let Some(erasures) = self.erasures.as_deref() else {
            return refused;
        };
        if erasures.is_empty() {
            return refused;
        }
        for t in &mut p.topic_data {
            let topic = t.name.0.to_string();
            if self.handled_elsewhere(&topic) {
                continue;
            }
            let info = self.catalog.lookup(&topic);
            let Some(entry) = info.entry() else { continue };
            if entry.after_erasure == AfterErasure::Accept {
                continue;
            }
            let Some(locator) = entry.subject.clone() else {
                continue;
            };
            let finder = SubjectFinder::new(locator);
            take_partitions(t, POLICY_VIOLATION, false, &mut refused, |at, rec| {
                rec.value.as_ref()?;
                let s = finder.find(rec.key.as_ref(), rec.value.as_ref(), &rec.headers)?;
                erasures
                    .is_erased(&s)
                    .then(|| format!("record {at} of the batch: its data subject was erased"))
            });
        }
        p.topic_data.retain(|t| !t.partition_data.is_empty());
        refused
    }

    /// Withheld records are counted in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::ProxyMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks every record produced to `topic` (the consent topic): a
    /// record the consent store could not read is refused with
    /// `INVALID_RECORD`, and recorded in `audit`.
    pub fn validating(mut self, topic: &str, audit: Option<gatehouse_audit::AuditLog>) -> Self {
        self.consent_topic = (!topic.is_empty()).then(|| topic.to_string());
        self.audit = audit;
        self
    }

    /// The consent topic's partitions of `p` whose records the consent
    /// store could not read, taken out of the request.
    fn take_unreadable(&self, p: &mut ProduceRequest) -> crate::filter::fields::RefusedParts {
        let mut refused = crate::filter::fields::RefusedParts::new();
        let Some(topic) = &self.consent_topic else {
            return refused;
        };
        for t in p
            .topic_data
            .iter_mut()
            .filter(|t| t.name.0.as_str() == topic)
        {
            take_partitions(t, INVALID_RECORD, true, &mut refused, |at, rec| {
                crate::cluster::consent::validate_record(rec.key.as_deref(), rec.value.as_deref())
                    .err()
                    .map(|why| format!("record {at} of the batch is not a consent record: {why}"))
            });
        }
        p.topic_data.retain(|t| !t.partition_data.is_empty());
        refused
    }

    /// Leaves the topics `protection` handles to it.
    pub fn leaving_to(mut self, protection: Arc<crate::filter::fields::Protection>) -> Self {
        self.protection = Some(protection);
        self
    }

    fn handled_elsewhere(&self, topic: &str) -> bool {
        self.protection.as_ref().is_some_and(|p| p.handles(topic))
    }
}

/// Takes out of `t` the partitions in which `judge` refuses a record (it
/// gives the first record's reason), and lists them in `refused` with
/// `code`; a batch that cannot be decoded is refused too when
/// `refuse_unreadable`, else left to the broker to answer.
fn take_partitions(
    t: &mut TopicProduceData,
    code: i16,
    refuse_unreadable: bool,
    refused: &mut crate::filter::fields::RefusedParts,
    judge: impl Fn(usize, &crate::codec::records::Record) -> Option<String>,
) {
    let name = t.name.clone();
    t.partition_data.retain(|part| {
        let Some(records) = &part.records else {
            return true;
        };
        let why =
            match crate::codec::records::decode_record_set(records, &RecordsOptions::produce()) {
                Err(e) => refuse_unreadable.then(|| {
                    (
                        e.produce_error_code(),
                        format!("the record batch cannot be read: {e}"),
                    )
                }),
                Ok(set) => set
                    .batches
                    .iter()
                    .filter(|b| !b.header.is_control())
                    .flat_map(|b| b.records.iter())
                    .enumerate()
                    .find_map(|(at, rec)| judge(at, rec))
                    .map(|why| (code, why)),
            };
        match why {
            None => true,
            Some((code, why)) => {
                refused.push((name.clone(), part.index, code, why));
                false
            }
        }
    });
}

impl Filter for Consent {
    fn name(&self) -> &'static str {
        CONSENT
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        let produce =
            api == ApiKey::Produce && (self.consent_topic.is_some() || self.erasures.is_some());
        (api == ApiKey::Fetch || produce) && direction == Direction::Request
    }

    fn on_request<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        if let RequestKind::Produce(p) = &mut r.body {
            let mut refused = self.take_unreadable(p);
            refused.extend(self.take_erased(p));
            if refused.is_empty() {
                return Box::pin(async { RequestAction::Continue });
            }
            for (topic, partition, _, why) in &refused {
                tracing::info!(peer = %s.peer, topic = %topic.0, partition, reason = %why, "produce refused");
            }
            return Box::pin(async move {
                if let Err(e) =
                    crate::filter::fields::record_refusals(self.audit.as_ref(), s, &refused).await
                {
                    return RequestAction::Close(e);
                }
                let RequestKind::Produce(p) = &mut r.body else {
                    return RequestAction::Continue;
                };
                crate::filter::fields::answer_refused(p, &mut r.notes, CONSENT_REFUSED, refused)
            });
        }
        if let RequestKind::Fetch(f) = &r.body {
            let governed = f.topics.iter().any(|t| {
                let topic = t.topic.0.as_str();
                self.catalog.lookup(topic).subject().is_some() && !self.handled_elsewhere(topic)
            });
            if governed {
                r.notes.insert(CONSENT, ());
            }
        }
        Box::pin(async { RequestAction::Continue })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        let _: Option<()> = r.notes.take(CONSENT);
        if let ResponseKind::Produce(p) = &mut r.body {
            let refused: crate::filter::fields::RefusedParts =
                r.notes.take(CONSENT_REFUSED).unwrap_or_default();
            crate::filter::fields::merge_refused(p, refused);
            return Box::pin(async { ResponseAction::Continue });
        }
        let who = principal_info(s.principal.as_ref());
        let mut outcome = ResponseAction::Continue;
        // What was delivered, for the audit filter (which then need not
        // read the records again).
        let mut delivered = crate::filter::audit::Delivered::new();
        let recording = crate::filter::audit::recording(&r.notes);
        if let ResponseKind::Fetch(f) = &mut r.body {
            for t in &mut f.responses {
                let topic = t.topic.0.to_string();
                if self.handled_elsewhere(&topic) {
                    continue;
                }
                let info = self.catalog.lookup(&topic);
                let Some(locator) = info.subject().cloned() else {
                    continue;
                };
                let plan = self.policies.plan(&who, &topic, &self.catalog);
                let residency = info.residency().to_string();
                let gate = crate::filter::fields::ConsentGate {
                    store: &self.store,
                    plan: &plan,
                    residency: &residency,
                    erased: self.erasures.as_deref(),
                    returning: info
                        .entry()
                        .is_some_and(|e| e.after_erasure == AfterErasure::Accept),
                };
                let finder = SubjectFinder::new(locator);
                // Read before any record is: see the view cache.
                let view_id = self.views.as_ref().map(|_| {
                    Arc::new(ViewId {
                        // What is kept of a batch differs when its delivery
                        // is not recorded (no subjects).
                        filter: if recording {
                            CONSENT
                        } else {
                            "consent-unrecorded"
                        },
                        principal: who.clone(),
                        topic: topic.clone(),
                        topic_id: *t.topic_id.as_bytes(),
                        policies: plan.version(),
                        catalog: plan.catalog_generation(),
                        consent: self.store.generation(),
                        keys_destroyed: 0,
                        erasures: self.erasures.as_ref().map_or(0, |e| e.generation()),
                    })
                });
                let work = crate::filter::parallel::with_records(&t.partitions);
                // On several threads when the response is large and the
                // machine has cores to spare; results are taken in order.
                let results = crate::filter::parallel::map(
                    &work,
                    |(_, _, records)| records.len(),
                    |(_, partition, records), _| match (self.views.as_deref(), &view_id) {
                        (Some(cache), Some(view_id)) => {
                            let (mut noted, mut decided) = (Noted::default(), 0);
                            view_cache::through(
                                cache,
                                view_id,
                                *partition,
                                records,
                                |batch| {
                                    let (out, n, seen) =
                                        Self::decide(&gate, &finder, batch, recording)?;
                                    decided += seen;
                                    Ok::<_, RecordsError>((out, n))
                                },
                                |n| noted.merge(n),
                                |n| Some(n.part.subjects.iter().map(|s| s.len() + 48).sum()),
                            )
                            .map(|(out, hits, misses)| {
                                if let Some(m) = &self.metrics {
                                    m.view_cache(hits, misses);
                                }
                                (out, noted, decided)
                            })
                        }
                        _ => Self::decide(&gate, &finder, records, recording),
                    },
                );
                for ((i, partition, _), result) in work.into_iter().zip(results) {
                    match result {
                        Ok((out, noted, decided)) => {
                            self.policies.count_record_decisions(decided as u64);
                            if let Some(m) = &self.metrics {
                                m.withheld(&topic, noted.dropped as u64);
                            }
                            if noted.dropped > 0 {
                                tracing::debug!(
                                    topic,
                                    partition,
                                    dropped = noted.dropped,
                                    "records withheld for consent"
                                );
                            }
                            if let Some(p) = t.partitions.get_mut(i) {
                                p.records = Some(out);
                            }
                            if recording {
                                delivered.insert((topic.clone(), partition), noted.part);
                            }
                        }
                        Err(e) => {
                            outcome = ResponseAction::Close(format!("cannot filter {topic}: {e}"))
                        }
                    }
                }
            }
        }
        if !delivered.is_empty() {
            crate::filter::audit::hand_over(&mut r.notes, delivered);
        }
        Box::pin(async move { outcome })
    }
}
