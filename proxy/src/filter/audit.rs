//! The audit trail of the proxy: what was decided and delivered, written to
//! the hash-chained log of [`gatehouse_audit`] before the client sees it.
//!
//! - **Authentication**: every SASL success and failure, with the SASL
//!   mechanism and, for a failure, the principal the attempt claimed
//!   (unverified), and every refused re-authentication (the session writes
//!   these).
//! - **Denials**: every resource a request was refused, with the policies
//!   that decided (empty for deny-by-default), collected while the `authz`
//!   filter decides and written before the refusal is answered; where the
//!   proxy refuses what the policies alone do not explain (a transactional
//!   producer, a region header a policy refuses, a record not of its
//!   topic's declared shape, an unreadable consent record), the reason.
//! - **Produce**: per partition the cluster accepted, the base offset, the
//!   record count and the data subjects (keyed hashes).
//! - **Delivery**: per fetched partition that carries records, the offset
//!   range, the record count, what the consumer actually got of each
//!   protected field (as the field protection filter applied it, unreadable
//!   ciphertexts included), the data subjects (keyed hashes) and the
//!   policies that allowed it.
//! - **Policy reloads**: the new set's version, accepted or refused.
//!
//! Fail closed: the response is only sent once its events are durable; if
//! the log cannot be written, the connection is closed instead and nothing
//! is delivered. The wait is off the data path: the filter hands the events
//! to the log's writer and holds the response ([`ResponseAction::Hold`]);
//! the connection goes on with later requests and responses meanwhile, and
//! sends everything in order as the events become durable.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use gatehouse_audit::{AuditLog, Decision, EventKind};
use gatehouse_policy::{Catalog, FieldEffect, PolicyStore, PrincipalInfo};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::auth::principal::principal_info;
use crate::codec::records::{decode_record_set, RecordsOptions};
use crate::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, Response, ResponseAction,
    SessionContext,
};

const NAME: &str = "audit";

/// The notes key under which a filter that already read a fetch response's
/// records hands their summary to the audit filter (so it need not read
/// them again).
pub(crate) const DELIVERED: &str = "audit-delivered";

/// What a filter saw delivered of one fetched partition: records kept,
/// their offset range and their data subjects (clear ids, hashed here).
#[derive(Debug, Default, Clone)]
pub(crate) struct DeliveredPart {
    pub(crate) records: u64,
    pub(crate) range: Option<(i64, i64)>,
    pub(crate) subjects: BTreeSet<String>,
    /// What the consumer actually got of each protected field (effect →
    /// paths), where the filter that read the records knows it; `None`:
    /// the plan's effects are recorded.
    pub(crate) fields: Option<BTreeMap<String, Vec<String>>>,
}

impl DeliveredPart {
    /// Counts one delivered record at `offset`, of `subject` if known.
    pub(crate) fn add(&mut self, offset: i64, subject: Option<String>) {
        self.add_records(1, offset, offset);
        if let Some(s) = subject {
            self.subjects.insert(s);
        }
    }

    /// Adds what `other` counted (another batch of the partition).
    pub(crate) fn merge(&mut self, other: &DeliveredPart) {
        if let Some((first, last)) = other.range {
            self.add_records(other.records, first, last);
        } else {
            self.records += other.records;
        }
        self.subjects.extend(other.subjects.iter().cloned());
    }

    /// Counts `n` records at offsets `first..=last`.
    fn add_records(&mut self, n: u64, first: i64, last: i64) {
        self.records += n;
        self.range = Some(match self.range {
            None => (first, last),
            Some((lo, hi)) => (lo.min(first), hi.max(last)),
        });
    }
}

/// Summaries by (topic, partition).
pub(crate) type Delivered = BTreeMap<(String, i32), DeliveredPart>;

/// Whether the audit filter will record this response (so that a filter
/// reading its records should summarise them with [`hand_over`]).
pub(crate) fn recording(notes: &crate::filter::Notes) -> bool {
    notes.has(NAME)
}

/// Adds `delivered` to what earlier filters handed over for this response
/// (the consent and the field protection filters each summarise the topics
/// they read).
pub(crate) fn hand_over(notes: &mut crate::filter::Notes, delivered: Delivered) {
    let mut all: Delivered = notes.take(DELIVERED).unwrap_or_default();
    all.extend(delivered);
    notes.insert(DELIVERED, all);
}

/// The notes key under which the field protection filter hands the audit
/// filter what it read of a produce request's protected partitions.
pub(crate) const PRODUCED: &str = "audit-produced";

/// A recorded decision: (resource type, resource, allowed, policies that
/// decided, why where the policies alone do not tell).
pub(crate) type Denial = (&'static str, String, bool, Vec<String>, Option<String>);

/// What a consumer got of each field (effect → paths), and the policies.
type FieldsAndPolicies = (BTreeMap<String, Vec<String>>, Vec<String>);

tokio::task_local! {
    /// Denials of the request being decided.
    static DENIALS: RefCell<Vec<Denial>>;
}

/// Records a decision about the request being decided (no-op outside
/// [`collect_denials`]): every denial, and the allowed administrative
/// actions (topic creation and deletion, config changes, record and group
/// deletion, cluster administration). Allowed data access is recorded as
/// produce and delivery events instead.
pub(crate) fn note_decision(
    resource_type: &'static str,
    resource: &str,
    allowed: bool,
    policies: &[String],
) {
    let _ = DENIALS.try_with(|d| {
        d.borrow_mut().push((
            resource_type,
            resource.to_string(),
            allowed,
            policies.to_vec(),
            None,
        ))
    });
}

/// Records a refusal of the request being decided that the policies alone
/// do not explain (no-op outside [`collect_denials`]): `reason` says why,
/// `policies` are those that decided, if any did.
pub(crate) fn note_refusal(
    resource_type: &'static str,
    resource: &str,
    policies: &[String],
    reason: &str,
) {
    let _ = DENIALS.try_with(|d| {
        d.borrow_mut().push((
            resource_type,
            resource.to_string(),
            false,
            policies.to_vec(),
            Some(reason.to_string()),
        ))
    });
}

/// The event of a refusal the proxy made itself (a record it cannot
/// accept): a denial with no policy and the reason.
pub(crate) fn refusal_event(
    who: &PrincipalInfo,
    api: ApiKey,
    resource_type: &str,
    resource: &str,
    reason: String,
) -> EventKind {
    EventKind::Decision {
        principal: who.name.clone(),
        api: format!("{api:?}"),
        resource_type: resource_type.to_string(),
        resource: resource.to_string(),
        decision: Decision::Deny,
        policies: Vec::new(),
        reason: Some(reason),
    }
}

/// Runs `decide`, returning what it returned and the denials it noted.
pub(crate) fn collect_denials<T>(decide: impl FnOnce() -> T) -> (T, Vec<Denial>) {
    DENIALS.sync_scope(RefCell::new(Vec::new()), || {
        let out = decide();
        let denials = DENIALS.with(|d| std::mem::take(&mut *d.borrow_mut()));
        (out, denials)
    })
}

/// The events of a request's denials.
pub(crate) fn denial_events(
    who: &PrincipalInfo,
    api: ApiKey,
    denials: Vec<Denial>,
) -> Vec<EventKind> {
    denials
        .into_iter()
        .map(
            |(resource_type, resource, allowed, policies, reason)| EventKind::Decision {
                principal: who.name.clone(),
                api: format!("{api:?}"),
                resource_type: resource_type.to_string(),
                resource,
                decision: if allowed {
                    Decision::Allow
                } else {
                    Decision::Deny
                },
                policies,
                reason,
            },
        )
        .collect()
}

/// One produced partition, counted before the request went on.
#[derive(Debug)]
struct Produced {
    topic: String,
    partition: i32,
    /// What the audit filter read itself; `None` for protected topics,
    /// whose summary the field protection filter hands over.
    summary: Option<DeliveredPart>,
}

/// The audit filter: produce and delivery events.
#[derive(Debug)]
pub struct Audit {
    log: AuditLog,
    policies: Option<Arc<PolicyStore>>,
    catalog: Arc<Catalog>,
}

impl Audit {
    /// Writes to `log`; `policies` and `catalog` tell subjects and field
    /// effects (without them, deliveries are recorded without either).
    pub fn new(log: AuditLog, policies: Option<Arc<PolicyStore>>, catalog: Arc<Catalog>) -> Self {
        Self {
            log,
            policies,
            catalog,
        }
    }

    /// What a record set holds: records, offsets and (clear) subjects, by
    /// the catalog's locator for `topic`.
    fn summarize(&self, topic: &str, records: &Bytes, origin: RecordsOptions) -> DeliveredPart {
        let mut part = DeliveredPart::default();
        let Some(locator) = self.catalog.lookup(topic).subject().cloned() else {
            // No data subjects to name: the batch headers tell the count
            // and the offsets, nothing needs decompressing.
            if let Ok(headers) = crate::codec::records::batch_headers(records, &origin) {
                for (h, n) in headers.iter().filter(|(h, n)| !h.is_control() && *n > 0) {
                    part.add_records(
                        u64::try_from(*n).unwrap_or(0),
                        h.base_offset,
                        h.last_offset(),
                    );
                }
            }
            return part;
        };
        let Ok(set) = decode_record_set(records, &origin) else {
            return part;
        };
        let finder = crate::codec::subject::SubjectFinder::new(locator);
        for b in set.batches.iter().filter(|b| !b.header.is_control()) {
            for r in &b.records {
                let subject = finder.find(r.key.as_ref(), r.value.as_ref(), &r.headers);
                part.add(b.header.offset_of(r), subject);
            }
        }
        part
    }

    /// The keyed hashes of distinct subjects, in order.
    fn hashed(&self, subjects: &BTreeSet<String>) -> Vec<String> {
        let hashed: BTreeSet<String> = subjects.iter().map(|s| self.log.subject_hash(s)).collect();
        hashed.into_iter().collect()
    }
}

pub(crate) fn effect_name(e: FieldEffect) -> &'static str {
    match e {
        FieldEffect::Clear => "clear",
        FieldEffect::Masked => "masked",
        FieldEffect::Pseudonym => "pseudonym",
        FieldEffect::Redacted => "removed",
    }
}

impl Filter for Audit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        matches!(api, ApiKey::Produce | ApiKey::Fetch) && direction == Direction::Request
    }

    fn on_request<'a>(
        &'a self,
        _s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        match &r.body {
            RequestKind::Produce(p) => {
                let mut produced = Vec::new();
                for t in &p.topic_data {
                    let topic = t.name.0.to_string();
                    // Protected topics are read by the field protection
                    // filter, which hands over what it saw.
                    let info = self.catalog.lookup(&topic);
                    let protected = info.format() == gatehouse_policy::RecordFormat::Json
                        && !info.fields().is_empty();
                    for part in &t.partition_data {
                        let Some(records) = &part.records else {
                            continue;
                        };
                        produced.push(Produced {
                            topic: topic.clone(),
                            partition: part.index,
                            summary: (!protected).then(|| {
                                self.summarize(&topic, records, RecordsOptions::produce())
                            }),
                        });
                    }
                }
                // acks=0 gets no response: nothing to wait for, nothing is
                // recorded (the cluster never says what it stored).
                if p.acks != 0 {
                    r.notes.insert(NAME, produced);
                }
            }
            RequestKind::Fetch(_) => r.notes.insert(NAME, Vec::<Produced>::new()),
            _ => {}
        }
        Box::pin(async { RequestAction::Continue })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        let produced: Vec<Produced> = r.notes.take(NAME).unwrap_or_default();
        let from_fields: Delivered = r.notes.take(PRODUCED).unwrap_or_default();
        let who = principal_info(s.principal.as_ref());
        let mut events = Vec::new();
        match &r.body {
            ResponseKind::Produce(p) => {
                for t in &p.responses {
                    for part in &t.partition_responses {
                        if part.error_code != 0 {
                            continue;
                        }
                        let Some(done) = produced
                            .iter()
                            .find(|d| d.topic == t.name.0.as_str() && d.partition == part.index)
                        else {
                            continue;
                        };
                        let none = DeliveredPart::default();
                        let summary = done
                            .summary
                            .as_ref()
                            .or_else(|| from_fields.get(&(done.topic.clone(), done.partition)))
                            .unwrap_or(&none);
                        events.push(EventKind::Produce {
                            principal: who.name.clone(),
                            topic: done.topic.clone(),
                            partition: done.partition,
                            base_offset: part.base_offset,
                            records: summary.records,
                            subjects: self.hashed(&summary.subjects),
                        });
                    }
                }
            }
            ResponseKind::Fetch(f) => {
                let mut summaries: Delivered = r.notes.take(DELIVERED).unwrap_or_default();
                for t in &f.responses {
                    let topic = t.topic.0.to_string();
                    let mut plan_parts: Option<FieldsAndPolicies> = None;
                    for p in &t.partitions {
                        let Some(records) = &p.records else { continue };
                        if records.is_empty() || p.error_code != 0 {
                            continue;
                        }
                        let summary = summaries
                            .remove(&(topic.clone(), p.partition_index))
                            .unwrap_or_else(|| {
                                self.summarize(&topic, records, RecordsOptions::fetch())
                            });
                        let Some((first, last)) = summary.range else {
                            continue;
                        };
                        let (planned, policies) = plan_parts
                            .get_or_insert_with(|| match &self.policies {
                                Some(ps) => {
                                    let plan = ps.plan(&who, &topic, &self.catalog);
                                    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
                                    let mut policies: BTreeSet<String> =
                                        plan.consume().policies.iter().cloned().collect();
                                    for f in plan.fields() {
                                        fields
                                            .entry(effect_name(f.effect).to_string())
                                            .or_default()
                                            .push(f.path.to_string());
                                        policies.extend(f.policies.iter().cloned());
                                    }
                                    (fields, policies.into_iter().collect())
                                }
                                None => (BTreeMap::new(), Vec::new()),
                            })
                            .clone();
                        // What was actually sent, where the filter that
                        // rewrote the records knows it.
                        let fields = summary.fields.unwrap_or(planned);
                        events.push(EventKind::Delivery {
                            principal: who.name.clone(),
                            topic: topic.clone(),
                            partition: p.partition_index,
                            first_offset: first,
                            last_offset: last,
                            records: summary.records,
                            fields,
                            subjects: self.hashed(&summary.subjects),
                            policies,
                        });
                    }
                }
            }
            _ => {}
        }
        Box::pin(async move {
            if events.is_empty() {
                return ResponseAction::Continue;
            }
            // The response is encoded and queued while its events are
            // written; it reaches the client once they are durable.
            let durable = self.log.submit(events).await;
            ResponseAction::Hold(Box::pin(async move {
                durable.await.map(|_| ()).map_err(|e| {
                    tracing::error!(error = %e, "audit log unavailable: response withheld");
                    format!("audit log unavailable: {e}")
                })
            }))
        })
    }
}
