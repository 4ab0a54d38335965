//! Field protection: personal fields encrypted on produce, and on fetch
//! decrypted, masked, pseudonymized or removed per consumer.
//!
//! The topic catalog says which JSON paths of a topic hold personal data
//! (and of which category), and where the record's data subject is. On
//! **produce**, every such field of every record is replaced by a field
//! ciphertext under its subject's data key ([`gatehouse_keys`]), bound to
//! the topic, the field path and the record's subject, so the cluster and
//! its object storage never hold it in clear. A record that is not valid
//! JSON, that does not have the shape the catalog declares (a protected
//! path crossing an array it does not declare, a string where an object is
//! declared, a top-level array: see [`crate::codec::json`]), that repeats a member
//! name on a protected path, or whose subject cannot be found, is refused
//! (`INVALID_RECORD`, with a message naming the record, and a denial in the
//! audit trail) and its partition's batch is not forwarded: nothing is ever
//! stored in clear by mistake. Keys created for new subjects are published
//! to the key topic before the batch goes on, so that every replica can
//! find them.
//!
//! On **fetch**, the consumer's plan decides each field: `read_clear`
//! decrypts, `read_masked` decrypts then masks keeping the shape,
//! `read_pseudonym` gives a keyed deterministic token, anything else
//! removes the member. A field whose key is gone (an erased subject) or
//! whose ciphertext does not verify (tampered, or moved from another
//! subject's record, topic or field) is removed, never shown and never an
//! error; the delivery's audit event says so (`no_key`, `unverified`). A
//! value that is not a ciphertext (written before protection was on, or
//! straight to the cluster) gets the same treatment from its clear value. A
//! record that is not valid JSON, or not of the declared shape, reaches
//! only consumers allowed every field in clear; for the others it is
//! withheld (its offset stays valid, as for consent).
//!
//! The records of an erased subject ([`crate::cluster::erasure`]) are
//! withheld on fetch with the consent decision, and refused on produce
//! (`POLICY_VIOLATION`) unless the catalog accepts a returning subject.
//!
//! Documents are never rebuilt: [`crate::codec::json::scan`] finds the fields'
//! byte spans and the new bytes are spliced in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_keys::{FieldBinding, CIPHERTEXT_PREFIX};
use gatehouse_policy::{
    AfterErasure, Catalog, FieldEffect, PolicyStore, RecordFormat, SubjectLocator,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::auth::principal::principal_info;
use crate::cluster::consent::ConsentStore;
use crate::cluster::erasure::Erasures;
use crate::cluster::keys::Keys;
use crate::codec::json::{scan, splice, Edit, ScanError, Targets};
use crate::codec::records::{rewrite_records, Headers, RecordsError, RecordsOptions, Verdict};
use crate::codec::subject::subject_id;
use crate::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, Response, ResponseAction,
    SessionContext,
};

use crate::filter::view_cache::{self, ViewCache, ViewId};

const NAME: &str = "fields";
const INVALID_RECORD: i16 = 87;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const POLICY_VIOLATION: i16 = 44;
/// How long a fetch waits for the key topic when a ciphertext names a key
/// this replica has not seen yet.
const KEY_CATCH_UP: Duration = Duration::from_secs(3);

/// One protected topic's fields, compiled.
#[derive(Debug)]
struct TopicFields {
    targets: Targets,
    /// (path, category) by field index.
    fields: Vec<(String, String)>,
    subject: Option<SubjectLocator>,
}

/// The field protection filter.
#[derive(Debug)]
pub struct Protection {
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
    keys: Option<Arc<Keys>>,
    consent: Option<Arc<ConsentStore>>,
    /// Erased subjects: withheld on fetch, refused on produce unless the
    /// catalog accepts a returning subject.
    erasures: Option<Arc<Erasures>>,
    compiled: RwLock<HashMap<String, Option<Arc<TopicFields>>>>,
    /// Where refused records are recorded.
    audit: Option<gatehouse_audit::AuditLog>,
    /// Field effects and withheld records are counted here.
    metrics: Option<Arc<crate::metrics::ProxyMetrics>>,
    /// What fetches delivered of each batch, by view (fan-out).
    views: Option<Arc<ViewCache>>,
}

/// Refused partitions of a produce: (topic, partition, code, message).
pub(crate) type RefusedParts = Vec<(TopicName, i32, i16, String)>;

impl Protection {
    /// A filter protecting the catalog's fields with `keys` (`None`: no
    /// keys configured, so protected topics refuse produce and show no
    /// encrypted field: fail closed).
    pub fn new(policies: Arc<PolicyStore>, catalog: Arc<Catalog>, keys: Option<Arc<Keys>>) -> Self {
        Self {
            policies,
            catalog,
            keys,
            consent: None,
            erasures: None,
            compiled: RwLock::new(HashMap::new()),
            audit: None,
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

    /// Records refused produces in `log` (before the refusal is answered).
    pub fn with_audit(mut self, log: Option<gatehouse_audit::AuditLog>) -> Self {
        self.audit = log;
        self
    }

    /// Field effects and withheld records are counted in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::ProxyMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Also decides consent (`consume_record`) for the records of
    /// protected topics, in the same pass as their fields; the consent
    /// filter then leaves those topics alone.
    pub fn with_consent(mut self, store: Arc<ConsentStore>) -> Self {
        self.consent = Some(store);
        self
    }

    /// Withholds the records of the subjects `erasures` names (with the
    /// consent decision: see [`Protection::with_consent`]) and refuses new
    /// ones where the catalog says so.
    pub fn with_erasures(mut self, erasures: Option<Arc<Erasures>>) -> Self {
        self.erasures = erasures;
        self
    }

    /// Whether fetches of `topic` are handled here (consent included, when
    /// [`Protection::with_consent`] was given).
    pub fn handles(&self, topic: &str) -> bool {
        self.fields_of(topic).is_some()
    }

    /// The topic's protected fields, `None` if it has none.
    fn fields_of(&self, topic: &str) -> Option<Arc<TopicFields>> {
        if let Some(hit) = self
            .compiled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return hit.clone();
        }
        let info = self.catalog.lookup(topic);
        let compiled =
            (info.format() == RecordFormat::Json && !info.fields().is_empty()).then(|| {
                let subject_path = match info.subject() {
                    Some(SubjectLocator::Json(p)) => Some(p.steps().collect::<Vec<_>>()),
                    _ => None,
                };
                Arc::new(TopicFields {
                    targets: Targets::new(
                        info.fields().iter().map(|f| f.path.steps().collect()),
                        subject_path,
                    ),
                    fields: info
                        .fields()
                        .iter()
                        .map(|f| (f.path.to_string(), f.category.clone()))
                        .collect(),
                    subject: info.subject().cloned(),
                })
            });
        let mut map = self.compiled.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(topic.to_string(), compiled.clone());
        compiled
    }
}

/// Why a produced record is refused.
#[derive(Debug, thiserror::Error)]
enum ProduceRefusal {
    #[error("{0}")]
    Record(String),
    /// A record of an erased subject, on a topic that refuses them.
    #[error("{0}")]
    Erased(String),
    #[error("{0}")]
    Batch(#[from] RecordsError),
}

/// Why one record value is refused.
#[derive(Debug)]
enum ValueRefusal {
    /// Not what the catalog declares, or no data subject.
    Invalid(String),
    /// Its data subject was erased.
    Erased,
}

impl From<String> for ValueRefusal {
    fn from(why: String) -> Self {
        ValueRefusal::Invalid(why)
    }
}

/// Encrypts the protected fields of one record value; `None` if it has
/// none.
fn protect_value(
    keys: &Keys,
    topic: &str,
    tf: &TopicFields,
    rec: &crate::codec::records::Record,
    value: &Bytes,
    scratch: &mut Vec<u8>,
    erased: Option<&Erasures>,
) -> Result<(Option<Bytes>, Option<String>), ValueRefusal> {
    let (key, headers) = (rec.key.as_ref(), &rec.headers);
    let found = scan(value, &tf.targets).map_err(|e| match e {
        ScanError::Json(e) => format!("the value is not valid JSON ({e})"),
        other => format!("the value does not have the shape the catalog declares: {other}"),
    })?;
    let subject = subject_id(
        tf.subject.as_ref(),
        key,
        headers,
        value,
        found.subject.as_ref(),
    );
    if let (Some(e), Some(s)) = (erased, subject.as_deref()) {
        if e.is_erased(s) {
            return Err(ValueRefusal::Erased);
        }
    }
    if found.fields.is_empty() {
        return Ok((None, subject));
    }
    let subject = subject.ok_or_else(|| -> ValueRefusal {
        match &tf.subject {
            Some(SubjectLocator::Key) => "no data subject: the record has no UTF-8 key".to_string(),
            Some(SubjectLocator::Header(h)) => format!("no data subject: no header {h}"),
            Some(SubjectLocator::Json(p)) => format!("no data subject: no string at {p}"),
            None => "the catalog names no data subject for this topic".to_string(),
        }
        .into()
    })?;
    let dk = keys
        .store
        .key_for_write(&subject)
        .map_err(|e| ValueRefusal::Invalid(format!("no data key: {e}")))?;
    scratch.clear();
    let mut ranges = Vec::with_capacity(found.fields.len());
    for span in &found.fields {
        let start = scratch.len();
        let (path, _) = &tf.fields[span.field];
        let binding = FieldBinding {
            topic,
            path,
            subject: &subject,
        };
        gatehouse_keys::encrypt_field_into(&dk, &binding, &value[span.value.clone()], scratch)
            .map_err(|e| ValueRefusal::Invalid(format!("cannot encrypt {path}: {e}")))?;
        ranges.push(start..scratch.len());
    }
    let edits: Vec<Edit<'_>> = found
        .fields
        .iter()
        .zip(&ranges)
        .map(|(span, r)| Edit {
            range: span.value.clone(),
            with: &scratch[r.clone()],
        })
        .collect();
    let mut out = Vec::with_capacity(value.len() + scratch.len());
    splice(value, &edits, &mut out);
    Ok((Some(Bytes::from(out)), Some(subject)))
}

/// What a consumer gets of each field of a topic, by field index.
struct View<'a> {
    topic: &'a str,
    tf: &'a TopicFields,
    effects: Vec<FieldEffect>,
}

impl View<'_> {
    fn all_clear(&self) -> bool {
        self.effects.iter().all(|e| *e == FieldEffect::Clear)
    }
}

/// What a consumer actually got of a field in one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// As the plan says.
    Planned(FieldEffect),
    /// Removed: its key is gone (an erased subject).
    NoKey,
    /// Removed: its ciphertext does not verify for this record (tampered,
    /// or moved from another subject's record, topic or field).
    Unverified,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Planned(FieldEffect::Clear),
        Outcome::Planned(FieldEffect::Masked),
        Outcome::Planned(FieldEffect::Pseudonym),
        Outcome::Planned(FieldEffect::Redacted),
        Outcome::NoKey,
        Outcome::Unverified,
    ];

    fn bit(self) -> u8 {
        match self {
            Outcome::Planned(FieldEffect::Clear) => 1,
            Outcome::Planned(FieldEffect::Masked) => 2,
            Outcome::Planned(FieldEffect::Pseudonym) => 4,
            Outcome::Planned(FieldEffect::Redacted) => 8,
            Outcome::NoKey => 16,
            Outcome::Unverified => 32,
        }
    }

    /// The name in the audit trail.
    fn name(self) -> &'static str {
        match self {
            Outcome::Planned(e) => crate::filter::audit::effect_name(e),
            Outcome::NoKey => "no_key",
            Outcome::Unverified => "unverified",
        }
    }
}

/// Counts of what happened to fetched fields, for logs.
#[derive(Debug, Default)]
struct FetchStats {
    /// No audit event is written for this fetch: delivered subjects are not
    /// collected.
    unrecorded: bool,
    missing_key: usize,
    undecryptable: usize,
    withheld_records: usize,
    withheld_for_consent: usize,
    /// What was kept, for the audit trail.
    delivered: crate::filter::audit::DeliveredPart,
    /// By field index: the [`Outcome`] bits of what delivered records got.
    outcomes: Vec<u8>,
    /// Field values delivered, by outcome (in [`Outcome::ALL`] order).
    counts: [u64; Outcome::ALL.len()],
}

impl FetchStats {
    /// Adds what `other` noted (of another batch of the same partition).
    fn merge(&mut self, other: &FetchStats) {
        self.missing_key += other.missing_key;
        self.undecryptable += other.undecryptable;
        self.withheld_records += other.withheld_records;
        self.withheld_for_consent += other.withheld_for_consent;
        self.delivered.merge(&other.delivered);
        if self.outcomes.len() < other.outcomes.len() {
            self.outcomes.resize(other.outcomes.len(), 0);
        }
        for (bits, more) in self.outcomes.iter_mut().zip(&other.outcomes) {
            *bits |= more;
        }
        for (n, more) in self.counts.iter_mut().zip(other.counts) {
            *n += more;
        }
    }

    /// Notes what a delivered record's field `field` got.
    fn saw(&mut self, field: usize, outcome: Outcome) {
        if let Some(bits) = self.outcomes.get_mut(field) {
            *bits |= outcome.bit();
        }
        let i = outcome.bit().trailing_zeros() as usize;
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    /// Effect → paths, for the delivery's audit event.
    fn outcome_names(&self, fields: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (field, bits) in self.outcomes.iter().enumerate() {
            for o in Outcome::ALL.iter().filter(|o| bits & o.bit() != 0) {
                if let Some((path, _)) = fields.get(field) {
                    names
                        .entry(o.name().to_string())
                        .or_default()
                        .push(path.clone());
                }
            }
        }
        names
    }
}

/// Rewrites one fetched record value of `subject` for `view`.
/// `Ok(None)`: unchanged. `Err(())`: withhold the record (decided before
/// any field is looked at). What the consumer gets of each field is noted
/// in `stats`.
#[allow(clippy::too_many_arguments)]
fn reveal_value(
    keys: Option<&Keys>,
    view: &View<'_>,
    subject: Option<&str>,
    value: &Bytes,
    scanned: Result<crate::codec::json::Found, ScanError>,
    buf: &mut Vec<u8>,
    clear: &mut Vec<u8>,
    stats: &mut FetchStats,
) -> Result<Option<Bytes>, ()> {
    let found = match scanned {
        Ok(f) => f,
        // Fields cannot be found in it: only a consumer allowed every
        // field in clear may have it.
        Err(_) if view.all_clear() => return Ok(None),
        Err(_) => return Err(()),
    };
    if found.fields.is_empty() {
        return Ok(None);
    }
    buf.clear();
    // (span of the document to replace, range of `buf` holding the new
    // bytes; an empty range removes the member).
    let mut plan: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> =
        Vec::with_capacity(found.fields.len());
    for span in &found.fields {
        let effect = view.effects[span.field];
        let (path, category) = &view.tf.fields[span.field];
        let remove = (span.member.clone(), 0..0);
        if effect == FieldEffect::Redacted {
            stats.saw(span.field, Outcome::Planned(effect));
            plan.push(remove);
            continue;
        }
        let stored = &value[span.value.clone()];
        let encrypted = stored.len() > CIPHERTEXT_PREFIX.len()
            && stored[0] == b'"'
            && stored[1..].starts_with(CIPHERTEXT_PREFIX.as_bytes());
        clear.clear();
        let plain: &[u8] = if encrypted {
            let Some(keys) = keys else {
                stats.saw(span.field, Outcome::NoKey);
                plan.push(remove);
                continue;
            };
            let key = gatehouse_keys::ciphertext_key_id(stored)
                .ok()
                .and_then(|id| keys.store.key(id).ok().flatten());
            let Some(key) = key else {
                stats.missing_key += 1;
                stats.saw(span.field, Outcome::NoKey);
                plan.push(remove);
                continue;
            };
            // Bound to its record's subject: a ciphertext moved into
            // another subject's record does not decrypt there.
            let decrypted = subject.is_some_and(|subject| {
                let binding = FieldBinding {
                    topic: view.topic,
                    path,
                    subject,
                };
                gatehouse_keys::decrypt_field_into(&key, &binding, stored, clear).is_ok()
            });
            if !decrypted {
                stats.undecryptable += 1;
                stats.saw(span.field, Outcome::Unverified);
                plan.push(remove);
                continue;
            }
            clear
        } else {
            stored
        };
        let start = buf.len();
        match effect {
            FieldEffect::Clear => buf.extend_from_slice(plain),
            FieldEffect::Masked => gatehouse_keys::mask_into(category, plain, buf),
            FieldEffect::Pseudonym => match keys {
                Some(k) => k.pseudonyms.token_into(category, plain, buf),
                None => {
                    stats.saw(span.field, Outcome::NoKey);
                    plan.push(remove);
                    continue;
                }
            },
            FieldEffect::Redacted => {}
        }
        stats.saw(span.field, Outcome::Planned(effect));
        if !encrypted && effect == FieldEffect::Clear {
            // Unchanged bytes: no edit.
            buf.truncate(start);
            continue;
        }
        plan.push((span.value.clone(), start..buf.len()));
    }
    if plan.is_empty() {
        return Ok(None);
    }
    let edits: Vec<Edit<'_>> = plan
        .into_iter()
        .map(|(range, r)| Edit {
            range,
            with: &buf[r],
        })
        .collect();
    let mut out = Vec::with_capacity(value.len());
    splice(value, &edits, &mut out);
    Ok(Some(Bytes::from(out)))
}

/// Encryption grows each protected field (base64, key id, nonce, tag):
/// an uncompressed batch the producer filled close to the cluster's
/// message size limit (1 MiB by default) would come out above it and be
/// refused. Above this size, an uncompressed rewritten batch is compressed
/// with lz4 (consumers decompress any codec; ciphertext is base64, the rest
/// JSON, both compress well). A batch still above the cluster's limit is
/// refused by the cluster, as it would have been without the proxy.
pub const COMPRESS_ABOVE_BYTES: usize = 1_000_000;

/// The record set, compressed if it grew past [`COMPRESS_ABOVE_BYTES`]
/// uncompressed.
fn fit(records: Bytes) -> Bytes {
    if records.len() <= COMPRESS_ABOVE_BYTES {
        return records;
    }
    let Ok(mut set) =
        crate::codec::records::decode_record_set(&records, &RecordsOptions::produce())
    else {
        return records;
    };
    let mut changed = false;
    for b in &mut set.batches {
        if !b.header.is_control() && b.header.codec() == Some(crate::codec::records::Codec::None) {
            b.header.attributes = (b.header.attributes & !crate::codec::records::ATTR_CODEC_MASK)
                | crate::codec::records::Codec::Lz4.bits();
            changed = true;
        }
    }
    if !changed {
        return records;
    }
    let mut out = bytes::BytesMut::with_capacity(records.len() / 2);
    match set.encode(&mut out) {
        Ok(()) => {
            tracing::debug!(
                before = records.len(),
                after = out.len(),
                "grown batch compressed"
            );
            out.freeze()
        }
        Err(_) => records,
    }
}

/// Encrypts the protected fields of every record of a produced record
/// set.
fn protect_records(
    keys: &Keys,
    topic: &str,
    tf: &TopicFields,
    records: &Bytes,
    scratch: &mut Vec<u8>,
    produced: &mut crate::filter::audit::DeliveredPart,
    erased: Option<&Erasures>,
) -> Result<crate::codec::records::Rewritten, ProduceRefusal> {
    let mut index = 0usize;
    rewrite_records(
        records,
        &RecordsOptions::produce(),
        |_, rec| -> Result<Verdict, ProduceRefusal> {
            let at = index;
            index += 1;
            produced.records += 1;
            let Some(value) = &rec.value else {
                if let Some(s) = subject_id(
                    tf.subject.as_ref(),
                    rec.key.as_ref(),
                    &rec.headers,
                    &[],
                    None,
                ) {
                    produced.subjects.insert(s);
                }
                return Ok(Verdict::Keep);
            };
            match protect_value(keys, topic, tf, rec, value, scratch, erased) {
                Ok((v, subject)) => {
                    if let Some(v) = v {
                        rec.value = Some(v);
                    }
                    if let Some(s) = subject {
                        produced.subjects.insert(s);
                    }
                }
                Err(ValueRefusal::Invalid(why)) => {
                    return Err(ProduceRefusal::Record(format!(
                        "record {at} of the batch: {why}"
                    )))
                }
                Err(ValueRefusal::Erased) => {
                    return Err(ProduceRefusal::Erased(format!(
                        "record {at} of the batch: its data subject was erased"
                    )))
                }
            }
            Ok(Verdict::Keep)
        },
    )
}

/// Rewrites every record of a fetched record set for `view`.
/// The `consume_record` decision on a record's subject consent and
/// region (its `region` header, else the topic's residency). The fields
/// filter applies it in its single pass over protected topics, the consent
/// filter to the other governed topics.
pub(crate) struct ConsentGate<'a> {
    pub(crate) store: &'a ConsentStore,
    pub(crate) plan: &'a gatehouse_policy::TopicPlan,
    pub(crate) residency: &'a str,
    /// Erased subjects, whose records nobody gets.
    pub(crate) erased: Option<&'a Erasures>,
    /// The topic takes records of a returning (erased) subject: those
    /// written after the erasure are delivered.
    pub(crate) returning: bool,
}

impl ConsentGate<'_> {
    /// May a record of `subject` (with these headers, written at
    /// `timestamp`) be delivered?
    pub(crate) fn allows(&self, subject: Option<&str>, headers: &Headers, timestamp: i64) -> bool {
        if let (Some(erased), Some(s)) = (self.erased, subject) {
            if let Some(at) = erased.erased_at(s) {
                if !(self.returning && timestamp > at) {
                    return false;
                }
            }
        }
        let consent = subject.and_then(|s| self.store.get(s));
        // A region header that is not UTF-8 is no region any policy
        // allows, not the topic's residency.
        let region = headers
            .last(b"region")
            .and_then(|h| h.value)
            .map(|v| std::str::from_utf8(v).unwrap_or("(not UTF-8)"))
            .unwrap_or(self.residency);
        self.plan
            .consume_record_allowed(consent.as_ref().map(|c| c.policy()), region)
    }
}

/// Rewrites every record of a fetched record set for `view`, withholding
/// the records `gate` refuses.
#[allow(clippy::too_many_arguments)]
fn reveal_records(
    keys: Option<&Keys>,
    view: &View<'_>,
    gate: Option<&ConsentGate<'_>>,
    records: &Bytes,
    buf: &mut Vec<u8>,
    clear: &mut Vec<u8>,
    stats: &mut FetchStats,
) -> Result<crate::codec::records::Rewritten, RecordsError> {
    stats.outcomes = vec![0; view.tf.fields.len()];
    let result = rewrite_records(
        records,
        &RecordsOptions::fetch(),
        |header, rec| -> Result<Verdict, RecordsError> {
            let scanned = rec.value.as_ref().map(|v| scan(v, &view.tf.targets));
            let json_subject = scanned
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|f| f.subject.clone());
            let subject = subject_id(
                view.tf.subject.as_ref(),
                rec.key.as_ref(),
                &rec.headers,
                rec.value.as_deref().unwrap_or_default(),
                json_subject.as_ref(),
            );
            if let Some(gate) = gate {
                if !gate.allows(subject.as_deref(), &rec.headers, header.timestamp_of(rec)) {
                    stats.withheld_for_consent += 1;
                    return Ok(Verdict::Drop);
                }
            }
            if let (Some(value), Some(scanned)) = (&rec.value, scanned) {
                match reveal_value(
                    keys,
                    view,
                    subject.as_deref(),
                    value,
                    scanned,
                    buf,
                    clear,
                    stats,
                ) {
                    Ok(Some(v)) => rec.value = Some(v),
                    Ok(None) => {}
                    Err(()) => {
                        stats.withheld_records += 1;
                        return Ok(Verdict::Drop);
                    }
                }
            }
            // Subjects are named only for the audit trail.
            let subject = if stats.unrecorded { None } else { subject };
            stats.delivered.add(header.offset_of(rec), subject);
            Ok(Verdict::Keep)
        },
    );
    stats.delivered.fields = Some(stats.outcome_names(&view.tf.fields));
    result
}

/// How a partition's records are revealed: the transform's inputs.
struct Reveal<'a> {
    keys: Option<&'a Keys>,
    view: &'a View<'a>,
    gate: Option<&'a ConsentGate<'a>>,
    /// With a view cache: this fetch's view, and the partition.
    cached: Option<(&'a ViewCache, &'a Arc<ViewId>, i32)>,
}

impl Reveal<'_> {
    /// The partition's records as the view gets them. Batches the cache
    /// holds for this view are copied from it; the others are transformed
    /// and kept.
    fn records(
        &self,
        records: &Bytes,
        buf: &mut Vec<u8>,
        clear: &mut Vec<u8>,
        stats: &mut FetchStats,
    ) -> Result<Revealed, RecordsError> {
        let Some((cache, view_id, partition)) = self.cached else {
            let rw = reveal_records(self.keys, self.view, self.gate, records, buf, clear, stats)?;
            return Ok(Revealed {
                records: rw.records,
                decided: rw.stats.records_seen,
                hits: 0,
                misses: 0,
            });
        };
        stats.outcomes = vec![0; self.view.tf.fields.len()];
        let unrecorded = stats.unrecorded;
        let mut decided = 0;
        let (records, hits, misses) = view_cache::through(
            cache,
            view_id,
            partition,
            records,
            |batch| {
                let mut one = FetchStats {
                    unrecorded,
                    ..FetchStats::default()
                };
                let rw =
                    reveal_records(self.keys, self.view, self.gate, batch, buf, clear, &mut one)?;
                decided += rw.stats.records_seen;
                one.delivered.fields = None;
                Ok::<_, RecordsError>((rw.records, one))
            },
            |one| stats.merge(one),
            // A key not seen yet may arrive: decide again next time.
            |one| {
                (one.missing_key == 0)
                    .then(|| one.delivered.subjects.iter().map(|s| s.len() + 48).sum())
            },
        )?;
        stats.delivered.fields = Some(stats.outcome_names(&self.view.tf.fields));
        Ok(Revealed {
            records,
            decided,
            hits,
            misses,
        })
    }
}

/// A partition's records as a view gets them.
struct Revealed {
    records: Bytes,
    /// Records decided (not taken from the view cache).
    decided: usize,
    /// Batches taken from the view cache, and batches transformed for it.
    hits: usize,
    misses: usize,
}

impl Protection {
    /// Encrypts the protected fields of a record set as a produce through
    /// the proxy would (without publishing new keys). For benchmarks and
    /// tools; the filter does the same per partition.
    pub fn protect_record_set(&self, topic: &str, records: &Bytes) -> Result<Bytes, String> {
        let keys = self.keys.as_deref().ok_or("no keys configured")?;
        let Some(tf) = self.fields_of(topic) else {
            return Ok(records.clone());
        };
        let mut scratch = Vec::new();
        let mut summary = crate::filter::audit::DeliveredPart::default();
        protect_records(keys, topic, &tf, records, &mut scratch, &mut summary, None)
            .map(|rw| rw.records)
            .map_err(|e| e.to_string())
    }

    /// What `who` receives of a stored record set, as a fetch through the
    /// proxy would deliver it. For benchmarks and tools.
    pub fn reveal_record_set(
        &self,
        who: &gatehouse_policy::PrincipalInfo,
        topic: &str,
        records: &Bytes,
    ) -> Result<Bytes, String> {
        let Some(tf) = self.fields_of(topic) else {
            return Ok(records.clone());
        };
        let plan = self.policies.plan(who, topic, &self.catalog);
        let view = View {
            topic,
            effects: tf
                .fields
                .iter()
                .map(|(path, _)| plan.field_effect(path).unwrap_or(FieldEffect::Redacted))
                .collect(),
            tf: &tf,
        };
        let (mut buf, mut clear, mut stats) = (Vec::new(), Vec::new(), FetchStats::default());
        reveal_records(
            self.keys.as_deref(),
            &view,
            None,
            records,
            &mut buf,
            &mut clear,
            &mut stats,
        )
        .map(|rw| rw.records)
        .map_err(|e| e.to_string())
    }
}

impl Filter for Protection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        matches!(api, ApiKey::Produce | ApiKey::Fetch) && direction == Direction::Request
    }

    fn on_request<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        Box::pin(async move {
            match &mut r.body {
                RequestKind::Fetch(f) => {
                    if f.topics
                        .iter()
                        .any(|t| self.fields_of(t.topic.0.as_str()).is_some())
                    {
                        r.notes.insert(NAME, RefusedParts::new());
                    }
                    RequestAction::Continue
                }
                RequestKind::Produce(p) => {
                    let mut refused = RefusedParts::new();
                    let mut produced = crate::filter::audit::Delivered::new();
                    let mut protected_any = false;
                    let mut scratch = Vec::new();
                    for t in &mut p.topic_data {
                        let topic = t.name.0.to_string();
                        let Some(tf) = self.fields_of(&topic) else {
                            continue;
                        };
                        let Some(keys) = &self.keys else {
                            for part in t.partition_data.drain(..) {
                                refused.push((
                                    t.name.clone(),
                                    part.index,
                                    POLICY_VIOLATION,
                                    "the topic has protected fields and the proxy has no keys configured".into(),
                                ));
                            }
                            continue;
                        };
                        protected_any = true;
                        let refuse_erased = match self.catalog.lookup(&topic).entry() {
                            Some(e) if e.after_erasure == AfterErasure::Accept => None,
                            _ => self.erasures.as_deref(),
                        };
                        t.partition_data.retain_mut(|part| {
                            let Some(records) = &part.records else {
                                return true;
                            };
                            let mut summary = crate::filter::audit::DeliveredPart::default();
                            let result = protect_records(
                                keys,
                                &topic,
                                &tf,
                                records,
                                &mut scratch,
                                &mut summary,
                                refuse_erased,
                            );
                            match result {
                                Ok(rw) => {
                                    produced.insert((topic.clone(), part.index), summary);
                                    part.records = Some(fit(rw.records));
                                    true
                                }
                                Err(e) => {
                                    tracing::info!(
                                        peer = %s.peer,
                                        topic,
                                        partition = part.index,
                                        reason = %e,
                                        "produce refused: field protection"
                                    );
                                    let code = match &e {
                                        ProduceRefusal::Erased(_) => POLICY_VIOLATION,
                                        ProduceRefusal::Batch(b) => b.produce_error_code(),
                                        ProduceRefusal::Record(_) => INVALID_RECORD,
                                    };
                                    refused.push((t.name.clone(), part.index, code, e.to_string()));
                                    false
                                }
                            }
                        });
                    }
                    p.topic_data.retain(|t| !t.partition_data.is_empty());
                    // What the audit filter records of these partitions once
                    // the cluster answers (it does not read them again).
                    if !produced.is_empty() {
                        r.notes.insert(crate::filter::audit::PRODUCED, produced);
                    }
                    // Keys first: a record may only reach the cluster once
                    // every replica can find its key.
                    if protected_any {
                        if let Some(topic) = self.keys.as_ref().and_then(|k| k.topic.get()) {
                            if let Err(e) = topic.publish_pending().await {
                                tracing::warn!(error = %e, "produce refused: data keys not published");
                                for t in p.topic_data.drain(..) {
                                    for part in t.partition_data {
                                        refused.push((
                                            t.name.clone(),
                                            part.index,
                                            NOT_ENOUGH_REPLICAS,
                                            "data keys could not be published; retry".into(),
                                        ));
                                    }
                                }
                            }
                        }
                    }
                    if refused.is_empty() {
                        return RequestAction::Continue;
                    }
                    // Refused records are on the record before the refusal
                    // is answered (a transient key-topic failure is not a
                    // refusal of the data).
                    if let Err(e) = record_refusals(self.audit.as_ref(), s, &refused).await {
                        return RequestAction::Close(e);
                    }
                    answer_refused(p, &mut r.notes, NAME, refused)
                }
                _ => RequestAction::Continue,
            }
        })
    }

    fn on_response<'a>(
        &'a self,
        s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        Box::pin(async move {
            let refused: RefusedParts = r.notes.take(NAME).unwrap_or_default();
            match &mut r.body {
                ResponseKind::Produce(p) => merge_refused(p, refused),
                ResponseKind::Fetch(f) => {
                    let who = principal_info(s.principal.as_ref());
                    let recording = crate::filter::audit::recording(&r.notes);
                    let keys = self.keys.as_deref();
                    let mut waited = false;
                    let (mut buf, mut clear) = (Vec::new(), Vec::new());
                    let mut delivered = crate::filter::audit::Delivered::new();
                    for t in &mut f.responses {
                        let topic = t.topic.0.to_string();
                        let Some(tf) = self.fields_of(&topic) else {
                            continue;
                        };
                        let plan = self.policies.plan(&who, &topic, &self.catalog);
                        let view = View {
                            topic: &topic,
                            effects: tf
                                .fields
                                .iter()
                                .map(|(path, _)| {
                                    plan.field_effect(path).unwrap_or(FieldEffect::Redacted)
                                })
                                .collect(),
                            tf: &tf,
                        };
                        // Read before any record is: see the view cache.
                        let view_id = self.views.as_ref().map(|_| {
                            Arc::new(ViewId {
                                // What is kept of a batch differs when its
                                // delivery is not recorded (no subjects).
                                filter: if recording { NAME } else { "fields-unrecorded" },
                                principal: who.clone(),
                                topic: topic.clone(),
                                topic_id: *t.topic_id.as_bytes(),
                                policies: plan.version(),
                                catalog: plan.catalog_generation(),
                                consent: self.consent.as_ref().map_or(0, |c| c.generation()),
                                keys_destroyed: keys.map_or(0, |k| k.store.destructions()),
                                erasures: self.erasures.as_ref().map_or(0, |e| e.generation()),
                            })
                        });
                        let residency = self.catalog.lookup(&topic).residency().to_string();
                        let gate = self.consent.as_deref().map(|store| ConsentGate {
                            store,
                            plan: &plan,
                            residency: &residency,
                            erased: self.erasures.as_deref(),
                            returning: self
                                .catalog
                                .lookup(&topic)
                                .entry()
                                .is_some_and(|e| e.after_erasure == AfterErasure::Accept),
                        });
                        // Every partition's records, on several threads
                        // when the response is large and the machine has
                        // cores to spare; results are taken in order.
                        let work = crate::filter::parallel::with_records(&t.partitions);
                        let reveal = |partition: i32| Reveal {
                            keys,
                            view: &view,
                            gate: gate.as_ref(),
                            cached: self
                                .views
                                .as_deref()
                                .zip(view_id.as_ref())
                                .map(|(c, v)| (c, v, partition)),
                        };
                        let first = crate::filter::parallel::map(
                            &work,
                            |(_, _, records)| records.len(),
                            |(_, partition, records), (buf, clear)| {
                                let mut stats = FetchStats {
                                    unrecorded: !recording,
                                    ..FetchStats::default()
                                };
                                let result =
                                    reveal(*partition).records(records, buf, clear, &mut stats);
                                (result, stats)
                            },
                        );
                        let mut caught_up = false;
                        for ((i, partition, records), (mut result, mut stats)) in
                            work.into_iter().zip(first)
                        {
                            // A key this replica has not seen may be on its
                            // way through the key topic: wait for it once per
                            // response, then decide again.
                            if stats.missing_key > 0 {
                                if !waited {
                                    waited = true;
                                    if let Some(kt) = keys.and_then(|k| k.topic.get()) {
                                        caught_up = kt.caught_up(KEY_CATCH_UP).await;
                                    }
                                }
                                if caught_up {
                                    stats = FetchStats {
                                        unrecorded: !recording,
                                        ..FetchStats::default()
                                    };
                                    result = reveal(partition)
                                        .records(&records, &mut buf, &mut clear, &mut stats);
                                }
                            }
                            if stats.missing_key + stats.undecryptable + stats.withheld_records > 0
                            {
                                tracing::debug!(
                                    topic,
                                    partition,
                                    missing_key = stats.missing_key,
                                    undecryptable = stats.undecryptable,
                                    withheld = stats.withheld_records,
                                    "protected fields removed"
                                );
                            }
                            if let Some(m) = &self.metrics {
                                for (o, n) in Outcome::ALL.iter().zip(stats.counts) {
                                    m.fields(&topic, o.name(), n);
                                }
                                m.withheld(
                                    &topic,
                                    (stats.withheld_for_consent + stats.withheld_records) as u64,
                                );
                            }
                            match result {
                                Ok(revealed) => {
                                    if gate.is_some() {
                                        self.policies
                                            .count_record_decisions(revealed.decided as u64);
                                    }
                                    if let Some(m) = &self.metrics {
                                        m.view_cache(revealed.hits, revealed.misses);
                                    }
                                    delivered.insert(
                                        (topic.clone(), partition),
                                        std::mem::take(&mut stats.delivered),
                                    );
                                    if let Some(p) = t.partitions.get_mut(i) {
                                        p.records = Some(revealed.records);
                                    }
                                }
                                Err(e) => {
                                    return ResponseAction::Close(format!(
                                        "cannot protect {topic}: {e}"
                                    ))
                                }
                            }
                        }
                    }
                    // The audit filter, later on the way back, takes what
                    // was delivered from here instead of reading it again.
                    crate::filter::audit::hand_over(&mut r.notes, delivered);
                }
                _ => {}
            }
            ResponseAction::Continue
        })
    }
}

/// Writes a denial for each refused partition (a record the proxy could
/// not accept, or a protected topic without keys) to `log`; `Err` (the
/// connection must close) if the log cannot be written.
pub(crate) async fn record_refusals(
    log: Option<&gatehouse_audit::AuditLog>,
    s: &SessionContext,
    refused: &RefusedParts,
) -> Result<(), String> {
    let Some(log) = log else {
        return Ok(());
    };
    let who = principal_info(s.principal.as_ref());
    let events: Vec<_> = refused
        .iter()
        // Every refusal of what the client sent; not the proxy's own
        // trouble (keys not ready), which the client retries.
        .filter(|(_, _, code, _)| *code != NOT_ENOUGH_REPLICAS)
        .map(|(topic, partition, _, why)| {
            crate::filter::audit::refusal_event(
                &who,
                ApiKey::Produce,
                "topic",
                topic.0.as_str(),
                format!("partition {partition}: {why}"),
            )
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    log.append_all(events).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "audit log unavailable: produce refused");
        format!("audit log unavailable: {e}")
    })
}

/// Answers the refused partitions of a produce: at once when nothing of
/// the request is left to forward, else through `notes` (under `name`) for
/// the filter's response half to merge into the cluster's answer.
pub(crate) fn answer_refused(
    p: &mut kafka_protocol::messages::ProduceRequest,
    notes: &mut crate::filter::Notes,
    name: &'static str,
    refused: RefusedParts,
) -> RequestAction {
    if !p.topic_data.is_empty() {
        notes.insert(name, refused);
        return RequestAction::Continue;
    }
    if p.acks == 0 {
        return RequestAction::Drop;
    }
    let mut resp = ProduceResponse::default();
    merge_refused(&mut resp, refused);
    RequestAction::Respond(Box::new(ResponseKind::Produce(resp)))
}

/// Adds refused partitions to a produce response.
pub(crate) fn merge_refused(resp: &mut ProduceResponse, refused: RefusedParts) {
    for (name, index, code, message) in refused {
        let part = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_error_message(Some(StrBytes::from_string(message)));
        match resp.responses.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partition_responses.push(part),
            None => resp.responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(vec![part]),
            ),
        }
    }
}
