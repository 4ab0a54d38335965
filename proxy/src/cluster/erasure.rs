//! The right to erasure: a durable, resumable workflow per data subject,
//! whose state every replica shares through the compacted erasure topic
//! (`_gatehouse.erasure` by default).
//!
//! # The state
//!
//! One record per subject: key = the subject's keyed hash (the audit
//! trail's subject hash, so an auditor can follow a workflow in the trail),
//! value = the [`Workflow`] as JSON, signed like the key topic's records
//! (`gatehouse-mac` header; records that do not verify are not applied).
//! While the workflow runs, the record carries the subject id wrapped by the
//! key-encryption key ([`Workflow::sealed`]) so that any replica can finish
//! it; the last step's record drops it, and compaction then removes the
//! earlier ones. The subject id never travels in clear.
//!
//! Every replica follows the topic into its [`Erasures`] (sled-backed, like
//! the consent store), and from the moment a request's record is applied
//! the subject is erased there: [`Erasures::is_erased`] is what the
//! consent and field filters ask for every record that names a subject
//! (withheld on fetch, refused on produce unless the catalog accepts a
//! returning subject). The lookup memoizes per subject id, so a steady
//! stream costs one hash-map probe per record, not an HMAC.
//!
//! # The steps
//!
//! Each step is done, then recorded as one `erasure` audit event, then
//! published (acks=all) with the step appended:
//!
//! 1. `requested`: who asked, why, when (the request's own record starts
//!    suppression on every replica);
//! 2. `keys_destroyed`: every data key of the subject destroyed and the
//!    destroyed markers published to the key topic (crypto-shredding);
//! 3. `tombstoned`: a tombstone (the subject id as key, a null value) on
//!    every partition of every topic the catalog marks
//!    `erasure = "tombstone"`, so that compaction removes the records;
//! 4. `suppressing`: the subject's records on the other governed topics
//!    stay withheld until retention removes them;
//! 5. `verified`: every governed topic is read back through the filter
//!    chain as the verifying principal ([`verify`]); the workflow records
//!    what the cluster still holds of the subject and how much of it was
//!    delivered; the step completes only when none was (a failed check is
//!    recorded and tried again).
//!
//! The signed report is made on request from the workflow as it stands
//! ([`Eraser::report`]).
//!
//! A replica that stops in the middle resumes its workflows once it has
//! read the erasure topic again; another replica takes over a workflow
//! whose record has not moved for [`TAKEOVER_AFTER`]. Each step is
//! idempotent. A replica killed between a step's audit event and its
//! publication finds that event in its own chain when it resumes and does
//! not record the step again; a replica that takes the workflow over
//! cannot see that chain, and records it a second time.
//!
//! `GATEHOUSE_FAULT=erasure:STEP:recorded` (or `:published`) stops the
//! process dead right after that step's audit event (or its publication):
//! the hook the crash tests use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_audit::EventKind;
use gatehouse_keys::{KekProvider, StateRecordMac, WrappedKey, Zeroizing, MAC_HEADER};
use gatehouse_policy::{Catalog, Erasure as TopicErasure};
use serde::{Deserialize, Serialize};

use crate::cluster::client::Upstream;
use crate::cluster::follower::Materialized;
use crate::cluster::keys::Keys;
use crate::cluster::publish::{tombstone_everywhere, StateTopic};
use crate::codec::records::Headers;

mod verify;
use verify::Verifier;
pub use verify::{Outcome, TopicCheck, Verification};
pub(crate) use verify::{ReadBack, ReadPage};

/// A replica takes over another's workflow whose record has not changed
/// for this long.
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(60);

/// Longest subject id accepted.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Longest reason accepted.
pub const MAX_REASON_LEN: usize = 1000;

/// The kind of signed document an erasure report is (see
/// [`gatehouse_audit::verify_document`]).
pub const REPORT_KIND: &str = "erasure-report";

/// Subjects memoized per replica before the memo starts over.
const MEMO_CAPACITY: usize = 100_000;

/// A step of the workflow, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The request is recorded; suppression starts.
    Requested,
    /// Every data key of the subject is destroyed and published destroyed.
    KeysDestroyed,
    /// Tombstones are on the topics that take them.
    Tombstoned,
    /// The subject's records stay withheld until retention removes them.
    Suppressing,
    /// The governed topics were read back through the filter chain and
    /// nothing of the subject was readable (`passed`, or `partial` when
    /// some topic could not be read to its end, or `skipped`).
    Verified,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Requested,
        Step::KeysDestroyed,
        Step::Tombstoned,
        Step::Suppressing,
        Step::Verified,
    ];

    /// The step's name, as in the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Step::Requested => "requested",
            Step::KeysDestroyed => "keys_destroyed",
            Step::Tombstoned => "tombstoned",
            Step::Suppressing => "suppressing",
            Step::Verified => "verified",
        }
    }
}

/// One completed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDone {
    /// Which step.
    pub step: Step,
    /// When it completed (epoch ms).
    pub at: i64,
    /// The replica that did it.
    pub replica: String,
    /// What it did, e.g. "2 data keys destroyed".
    pub detail: String,
    /// The seq of its `erasure` event in `replica`'s audit chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
}

/// An erasure workflow, as the erasure topic carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// The subject's keyed hash (the audit trail's subject hash).
    pub subject: String,
    /// Who asked.
    pub requested_by: String,
    /// Why.
    pub reason: String,
    /// When (epoch ms).
    pub requested_at: i64,
    /// The replica running it now.
    pub owner: String,
    /// When the record last changed (epoch ms).
    pub updated_at: i64,
    /// The subject id wrapped by the key-encryption key, while the
    /// workflow needs it; `None` once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<WrappedKey>,
    /// The steps done so far, in order.
    pub steps: Vec<StepDone>,
    /// What the verification step found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl Workflow {
    /// The next step to do, `None` once every step is done.
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL
            .into_iter()
            .filter(|s| *s != Step::Verified || !self.finished_unverified())
            .find(|s| !self.steps.iter().any(|d| d.step == *s))
    }

    /// A workflow finished before verification was a step (a version
    /// with four steps, which drops the sealed subject id at the end):
    /// done, and never verified, since nothing can say whose records to
    /// look for.
    pub fn finished_unverified(&self) -> bool {
        self.sealed.is_none()
            && self.steps.iter().any(|d| d.step == Step::Suppressing)
            && !self.steps.iter().any(|d| d.step == Step::Verified)
    }

    /// Whether every step is done.
    pub fn done(&self) -> bool {
        self.next_step().is_none()
    }

    /// The last step done.
    pub fn current(&self) -> Option<Step> {
        self.steps.last().map(|d| d.step)
    }

    /// The workflow as the admin API and `gatehouse erase status` show it
    /// (never the sealed subject id).
    pub fn to_json(&self) -> serde_json::Value {
        let time = |ms: i64| gatehouse_audit::time::format_time(u64::try_from(ms).unwrap_or(0));
        serde_json::json!({
            "subject_hash": self.subject,
            "requested_by": self.requested_by,
            "reason": self.reason,
            "requested_at": time(self.requested_at),
            "step": self.current().map(|s| s.name()),
            "done": self.done(),
            "owner": self.owner,
            "steps": self.steps.iter().map(|d| serde_json::json!({
                "step": d.step.name(),
                "at": time(d.at),
                "replica": d.replica,
                "detail": d.detail,
                "audit_event": d.audit_seq.map(|seq| format!("{}:{seq}", d.replica)),
            })).collect::<Vec<_>>(),
            "verification": self.verification,
        })
    }
}

/// The process stops dead at the fault point named by `GATEHOUSE_FAULT`
/// (e.g. `erasure:tombstoned:recorded`), as a crash would: the hook the
/// crash tests use. Unset, this is one comparison (after the caller
/// formats the name: a workflow step's cost, not a record's).
fn fault_point(name: &str) {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let set = FAULT.get_or_init(|| std::env::var("GATEHOUSE_FAULT").ok());
    if set.as_deref() == Some(name) {
        eprintln!("gatehouse: stopping at fault point {name} (GATEHOUSE_FAULT)");
        std::process::abort();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long a workflow whose verification failed waits before it reads
/// the governed topics back again.
const VERIFY_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// Why a step did not complete this time.
#[derive(Debug)]
struct StepError {
    message: String,
    /// Tried again only after [`VERIFY_AGAIN_AFTER`] (a verification that
    /// found records of the subject readable), not with a short backoff.
    slow: bool,
}

impl StepError {
    fn slow(message: String) -> Self {
        Self {
            message,
            slow: true,
        }
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        Self::from(message.to_string())
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        Self {
            message,
            slow: false,
        }
    }
}

/// Why an erasure could not be started or advanced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EraseError {
    /// The request itself is wrong (empty or oversized subject or reason).
    #[error("{0}")]
    Invalid(String),
    /// Something the workflow needs is not there (audit log, key topic,
    /// the cluster); nothing was changed, or the step is retried.
    #[error("{0}")]
    Unavailable(String),
}

// === the shared state ===

struct Inner {
    workflows: HashMap<String, Workflow>,
    next_offset: BTreeMap<i32, i64>,
}

/// This replica's copy of the erasure topic: which subjects are erased and
/// how their workflows stand.
pub struct Erasures {
    tree: sled::Tree,
    secret: Zeroizing<[u8; 32]>,
    topic: String,
    mac: Arc<StateRecordMac>,
    inner: RwLock<Inner>,
    /// How many subjects are erased: the lookup's fast path when none is.
    count: AtomicUsize,
    /// Moves on once a new erasure is visible to every lookup (see
    /// [`Erasures::generation`]).
    generation: AtomicU64,
    /// Subject id → when it was erased, for subjects seen since the last
    /// change.
    memo: RwLock<HashMap<Box<str>, Option<i64>>>,
}

impl std::fmt::Debug for Erasures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erasures")
            .field("topic", &self.topic)
            .field("erased", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

const WORKFLOW_PREFIX: &[u8] = b"w/";
const OFFSET_PREFIX: &[u8] = b"o/";
const META_TOPIC: &[u8] = b"m/topic";

impl Erasures {
    /// Opens the copy kept in `tree`; `secret` is the audit trail's
    /// subject-hash secret, `mac` verifies the topic's records.
    pub fn open(
        tree: sled::Tree,
        secret: Zeroizing<[u8; 32]>,
        topic: String,
        mac: Arc<StateRecordMac>,
    ) -> Result<Self, String> {
        let mut workflows = HashMap::new();
        let mut next_offset = BTreeMap::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| format!("erasure state: {e}"))?;
            if let Some(hash) = k.strip_prefix(WORKFLOW_PREFIX) {
                let w: Workflow = serde_json::from_slice(&v)
                    .map_err(|e| format!("erasure state: a stored workflow: {e}"))?;
                workflows.insert(String::from_utf8_lossy(hash).into_owned(), w);
            } else if let Some(p) = k.strip_prefix(OFFSET_PREFIX) {
                let p: [u8; 4] = p.try_into().map_err(|_| "erasure state: offset key")?;
                let o: [u8; 8] = v.as_ref().try_into().map_err(|_| "erasure state: offset")?;
                next_offset.insert(i32::from_be_bytes(p), i64::from_be_bytes(o));
            }
        }
        let count = workflows.len();
        Ok(Self {
            tree,
            secret,
            topic,
            mac,
            inner: RwLock::new(Inner {
                workflows,
                next_offset,
            }),
            count: AtomicUsize::new(count),
            generation: AtomicU64::new(0),
            memo: RwLock::new(HashMap::new()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed hash that names `subject` on the topic and in the audit
    /// trail.
    pub fn hash(&self, subject: &str) -> String {
        gatehouse_audit::hash_subject(&self.secret, subject)
    }

    /// Whether `subject` is erased (a workflow for it was requested): its
    /// records are withheld and, unless the catalog says otherwise,
    /// refused.
    pub fn is_erased(&self, subject: &str) -> bool {
        self.erased_at(subject).is_some()
    }

    /// When `subject`'s erasure was requested (epoch ms), if it was.
    pub fn erased_at(&self, subject: &str) -> Option<i64> {
        let seen = self.count.load(Ordering::Acquire);
        if seen == 0 {
            return None;
        }
        if let Some(at) = self
            .memo
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
        {
            return *at;
        }
        let at = self
            .read()
            .workflows
            .get(&self.hash(subject))
            .map(|w| w.requested_at);
        let mut memo = self.memo.write().unwrap_or_else(|p| p.into_inner());
        // Not when an erasure landed since this lookup began: the memo was
        // cleared after it, and what was read may be older.
        if self.count.load(Ordering::Acquire) == seen {
            if memo.len() >= MEMO_CAPACITY {
                memo.clear();
            }
            memo.insert(subject.into(), at);
        }
        at
    }

    /// Moves on whenever a subject is newly erased, once every lookup sees it:
    /// what was decided with the erasures of one generation holds until it
    /// moves (the view cache's key).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The workflow of the subject with this hash.
    pub fn get(&self, hash: &str) -> Option<Workflow> {
        self.read().workflows.get(hash).cloned()
    }

    /// Every workflow, oldest request first.
    pub fn list(&self) -> Vec<Workflow> {
        let mut v: Vec<Workflow> = self.read().workflows.values().cloned().collect();
        v.sort_by(|a, b| (a.requested_at, &a.subject).cmp(&(b.requested_at, &b.subject)));
        v
    }

    /// Number of erased subjects.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether no subject is erased.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies a workflow record (as the follower does with each verified
    /// record of the topic): stored durably, then visible.
    pub fn put(&self, w: Workflow) -> Result<(), String> {
        let bytes = serde_json::to_vec(&w).map_err(|e| e.to_string())?;
        let mut key = WORKFLOW_PREFIX.to_vec();
        key.extend_from_slice(w.subject.as_bytes());
        self.tree
            .insert(key, bytes)
            .map_err(|e| format!("erasure state: {e}"))?;
        let mut inner = self.write();
        let new = inner.workflows.insert(w.subject.clone(), w).is_none();
        if new {
            self.count.store(inner.workflows.len(), Ordering::Release);
            // A subject memoized as not erased may be this one (a lookup
            // that began before the count moved memoizes nothing).
            self.memo.write().unwrap_or_else(|p| p.into_inner()).clear();
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

impl Materialized for Erasures {
    fn position(&self, partition: i32) -> i64 {
        self.read()
            .next_offset
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }

    /// Only records whose `gatehouse-mac` verifies are applied: anyone
    /// allowed to produce to the cluster could write to the topic, and a
    /// forged record could otherwise hide a subject or show one again. A
    /// tombstone is ignored: an erasure is never taken back.
    fn apply_raw(
        &self,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &Headers,
    ) -> Result<(), String> {
        if offset < self.position(partition) {
            return Ok(());
        }
        let mac = headers.last(MAC_HEADER.as_bytes()).and_then(|h| h.value);
        let verified = self.mac.verify(&self.topic, key, value, mac).is_ok();
        if !verified {
            tracing::warn!(topic = %self.topic, partition, offset, "erasure record without a valid MAC ignored");
            return Ok(());
        }
        let Some(value) = value else { return Ok(()) };
        let w: Workflow = match serde_json::from_slice(value) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition, offset, error = %e, "unreadable erasure record ignored");
                return Ok(());
            }
        };
        if key != Some(w.subject.as_bytes()) {
            tracing::warn!(topic = %self.topic, partition, offset, "erasure record keyed by another subject ignored");
            return Ok(());
        }
        // Records only ever add steps: an older state read after a newer
        // one (a replay) does not take a step back.
        if let Some(have) = self.get(&w.subject) {
            if have.steps.len() > w.steps.len() {
                return Ok(());
            }
        }
        self.put(w)
    }

    fn advance_to(&self, partition: i32, next: i64) -> Result<(), String> {
        let mut inner = self.write();
        let at = inner.next_offset.entry(partition).or_insert(0);
        if next > *at {
            *at = next;
            let mut key = OFFSET_PREFIX.to_vec();
            key.extend_from_slice(&partition.to_be_bytes());
            self.tree
                .insert(key, &next.to_be_bytes())
                .map_err(|e| format!("erasure state: {e}"))?;
        }
        Ok(())
    }

    /// Erasures are never forgotten: the compacted topic still holds every
    /// subject's newest record, so replaying it from the start only moves
    /// the position back.
    fn reset_to(&self, partition: i32, start: i64) -> Result<usize, String> {
        let mut inner = self.write();
        inner.next_offset.insert(partition, start);
        let mut key = OFFSET_PREFIX.to_vec();
        key.extend_from_slice(&partition.to_be_bytes());
        self.tree
            .insert(key, &start.to_be_bytes())
            .map_err(|e| format!("erasure state: {e}"))?;
        Ok(0)
    }

    /// A copy built from another topic keeps its erasures (they are never
    /// taken back) and reads the new topic from its start.
    fn bind_to(&self, topic: &str, _topic_id: Option<&str>) -> Result<bool, String> {
        let before = self
            .tree
            .get(META_TOPIC)
            .map_err(|e| format!("erasure state: {e}"))?;
        if before.as_deref() == Some(topic.as_bytes()) {
            return Ok(false);
        }
        self.tree
            .insert(META_TOPIC, topic.as_bytes())
            .map_err(|e| format!("erasure state: {e}"))?;
        let mut inner = self.write();
        inner.next_offset.clear();
        for (k, _) in self.tree.scan_prefix(OFFSET_PREFIX).flatten() {
            let _ = self.tree.remove(k);
        }
        Ok(before.is_some())
    }

    fn persist(&self) -> Result<(), String> {
        self.tree
            .flush()
            .map(|_| ())
            .map_err(|e| format!("erasure state: {e}"))
    }
}

// === the workflow ===

/// Runs erasure workflows on this replica.
pub struct Eraser {
    erasures: Arc<Erasures>,
    topic: Arc<StateTopic>,
    keys: Arc<Keys>,
    provider: Arc<dyn KekProvider>,
    upstream: Arc<dyn Upstream>,
    max_frame_bytes: usize,
    catalog: Arc<Catalog>,
    audit: Option<gatehouse_audit::AuditLog>,
    replica: String,
    /// Subjects (hashes) whose workflow runs on this replica now.
    running: Mutex<HashSet<String>>,
    /// When this eraser was made (epoch ms): workflows it owned from before
    /// are a previous run's.
    started_at: i64,
    /// The verification step's read-backs.
    verifier: Arc<Verifier>,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for Eraser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eraser")
            .field("topic", &self.topic)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// What an [`Eraser`] is made of.
pub(crate) struct EraserParts {
    pub erasures: Arc<Erasures>,
    pub upstream: Arc<dyn Upstream>,
    pub max_frame_bytes: usize,
    pub mac: Arc<StateRecordMac>,
    pub keys: Arc<Keys>,
    pub provider: Arc<dyn KekProvider>,
    pub catalog: Arc<Catalog>,
    pub audit: Option<gatehouse_audit::AuditLog>,
    pub replica: String,
    /// The proxy's shutdown signal: running workflows stop at it (every
    /// step is safe to repeat when the replica starts again).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Whether a verifying principal is configured (`[keys]
    /// erasure_verify_as`): step 5 then waits for the filter chain.
    pub verify: bool,
}

impl Eraser {
    pub(crate) fn new(p: EraserParts) -> Self {
        let verifier = Arc::new(Verifier::new(
            p.upstream.clone(),
            p.max_frame_bytes,
            p.catalog.clone(),
            p.verify,
            p.stopping.clone(),
        ));
        Self {
            topic: Arc::new(StateTopic::new(
                p.upstream.clone(),
                p.erasures.topic.clone(),
                p.max_frame_bytes,
                p.mac,
            )),
            erasures: p.erasures,
            keys: p.keys,
            provider: p.provider,
            upstream: p.upstream,
            max_frame_bytes: p.max_frame_bytes,
            catalog: p.catalog,
            audit: p.audit,
            replica: p.replica,
            running: Mutex::new(HashSet::new()),
            started_at: now_ms(),
            verifier,
            stopping: p.stopping,
        }
    }

    /// How the verification step reads topics back (set once, when the
    /// filter chain is built).
    pub(crate) fn set_read_back(&self, read_back: Arc<dyn ReadBack>) {
        self.verifier.set_read_back(read_back);
    }

    /// Reads every governed topic back through the filter chain and counts
    /// what of `subject` the cluster holds and what the chain delivers:
    /// the verification step, callable on its own (e.g. to see what
    /// compaction has removed since).
    pub async fn verify(&self, subject: &str) -> Result<Verification, String> {
        self.verifier
            .verify(subject, self.erasures.erased_at(subject))
            .await
    }

    /// The erased subjects and their workflows.
    pub fn erasures(&self) -> &Arc<Erasures> {
        &self.erasures
    }

    /// The workflow of `subject` as a report signed with this replica's
    /// audit key: the JSON text `{"report":{...},"signature":"..."}`, the
    /// signature over the report's text exactly as it stands there. `None`
    /// if the subject was never erased.
    pub fn report(&self, subject: &str) -> Result<Option<String>, EraseError> {
        let Some(w) = self.erasures.get(&self.erasures.hash(subject)) else {
            return Ok(None);
        };
        let log = self.audit.as_ref().ok_or_else(|| {
            EraseError::Unavailable("no audit trail: nothing to sign the report with".into())
        })?;
        let time = |ms: i64| gatehouse_audit::time::format_time(u64::try_from(ms).unwrap_or(0));
        let report = serde_json::json!({
            "kind": REPORT_KIND,
            "version": 1,
            "subject_hash": w.subject,
            "requested_by": w.requested_by,
            "reason": w.reason,
            "requested_at": time(w.requested_at),
            "done": w.done(),
            "steps": w.steps.iter().map(|d| serde_json::json!({
                "step": d.step.name(),
                "at": time(d.at),
                "replica": d.replica,
                "detail": d.detail,
                "audit_event": d.audit_seq.map(|seq| format!("{}:{seq}", d.replica)),
            })).collect::<Vec<_>>(),
            "verification": w.verification,
            "not_yet": if w.done() { Vec::new() } else {
                Step::ALL.iter().filter(|s| !w.steps.iter().any(|d| d.step == **s)).map(|s| s.name()).collect()
            },
            "issued_at": time(now_ms()),
            "issued_by": self.replica,
            "audit": {
                "replica": log.replica_id(),
                "verifying_key": log.verifying_key(),
            },
        });
        let body = serde_json::to_string(&report)
            .map_err(|e| EraseError::Unavailable(format!("report: {e}")))?;
        let signature = log.sign_document(REPORT_KIND, body.as_bytes());
        Ok(Some(format!(
            "{{\"report\":{body},\"signature\":{}}}",
            serde_json::Value::String(signature)
        )))
    }

    /// Creates the erasure topic if the cluster does not have it.
    pub(crate) async fn ensure_topic(&self) -> Result<(), String> {
        self.topic.ensure().await
    }

    /// Starts erasing `subject` at `requested_by`'s request: the request is
    /// recorded (audit event, then the erasure topic, acks=all) before this
    /// returns, which is when every replica starts withholding the
    /// subject; the other steps follow in the background. Asking again for
    /// a subject already erased returns its workflow as it stands.
    pub async fn request(
        self: &Arc<Self>,
        subject: &str,
        requested_by: &str,
        reason: &str,
    ) -> Result<Workflow, EraseError> {
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(EraseError::Invalid(format!(
                "the subject id must be 1 to {MAX_SUBJECT_LEN} bytes"
            )));
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_LEN {
            return Err(EraseError::Invalid(format!(
                "the reason must be 1 to {MAX_REASON_LEN} bytes"
            )));
        }
        let hash = self.erasures.hash(subject);
        if let Some(w) = self.erasures.get(&hash) {
            self.spawn_advance(hash);
            return Ok(w);
        }
        let sealed = self
            .provider
            .wrap(subject.as_bytes())
            .map_err(|e| EraseError::Unavailable(format!("sealing the subject id: {e}")))?;
        let now = now_ms();
        let w = Workflow {
            subject: hash.clone(),
            requested_by: requested_by.to_string(),
            reason: reason.to_string(),
            requested_at: now,
            owner: self.replica.clone(),
            updated_at: now,
            sealed: Some(sealed),
            steps: Vec::new(),
            verification: None,
        };
        let detail =
            serde_json::json!({"requested_by": requested_by, "reason": reason}).to_string();
        let w = self
            .complete(w, Step::Requested, detail, None)
            .await
            .map_err(EraseError::Unavailable)?;
        self.spawn_advance(hash);
        Ok(w)
    }

    /// Resumes, in the background, the unfinished workflows this replica
    /// owns, and takes over those another replica left for
    /// [`TAKEOVER_AFTER`].
    pub(crate) fn resume(self: &Arc<Self>) {
        let now = now_ms();
        let stale = i64::try_from(TAKEOVER_AFTER.as_millis()).unwrap_or(i64::MAX);
        for w in self.erasures.list() {
            if w.done() {
                continue;
            }
            if w.owner == self.replica || now - w.updated_at >= stale {
                self.spawn_advance(w.subject.clone());
            }
        }
    }

    fn spawn_advance(self: &Arc<Self>, hash: String) {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(hash.clone()) {
                return;
            }
        }
        let me = self.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            let work = async {
                loop {
                    match me.advance(&hash).await {
                        Ok(()) => break,
                        Err(e) if e.slow => {
                            tracing::warn!(subject = %hash, error = %e.message, retry_in = ?VERIFY_AGAIN_AFTER, "erasure step failed");
                            tokio::time::sleep(VERIFY_AGAIN_AFTER).await;
                        }
                        Err(e) => {
                            tracing::warn!(subject = %hash, error = %e.message, "erasure step failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            };
            tokio::select! {
                () = work => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            me.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&hash);
        });
    }

    /// Does the remaining steps of `hash`'s workflow.
    async fn advance(&self, hash: &str) -> Result<(), StepError> {
        loop {
            let Some(w) = self.erasures.get(hash) else {
                return Ok(());
            };
            let Some(step) = w.next_step() else {
                return Ok(());
            };
            let (detail, verification) = self.perform(step, &w).await?;
            self.complete(w, step, detail, verification).await?;
        }
    }

    fn unseal(&self, w: &Workflow) -> Result<String, String> {
        let sealed = w
            .sealed
            .as_ref()
            .ok_or("the workflow no longer carries its subject id")?;
        let id = self
            .provider
            .unwrap(sealed)
            .map_err(|e| format!("unsealing the subject id: {e}"))?;
        String::from_utf8(id.to_vec()).map_err(|_| "the sealed subject id is not UTF-8".to_string())
    }

    async fn perform(
        &self,
        step: Step,
        w: &Workflow,
    ) -> Result<(String, Option<Verification>), StepError> {
        if step == Step::Verified {
            let subject = self.unseal(w)?;
            let v = self
                .verifier
                .verify(&subject, self.erasures.erased_at(&subject))
                .await?;
            if v.outcome == Outcome::Failed {
                // Not done: the failure is recorded on the workflow (its
                // status and report show it), the subject id stays sealed
                // in it, and the step is tried again later.
                tracing::error!(subject = %w.subject, summary = %v.summary(), "erasure verification failed: records of the subject are readable");
                let mut w = w.clone();
                w.verification = Some(v.clone());
                w.updated_at = now_ms();
                self.publish(&w).await?;
                return Err(StepError::slow(format!(
                    "verification failed: {}",
                    v.summary()
                )));
            }
            return Ok((v.summary(), Some(v)));
        }
        let detail: Result<String, String> = match step {
            Step::Requested | Step::Verified => Ok(String::new()),
            Step::KeysDestroyed => {
                let subject = self.unseal(w)?;
                // Every key another replica published for the subject must
                // be known here before the destruction, or it would stay.
                if let Some(topic) = self.keys.topic.get() {
                    if !topic.caught_up(Duration::from_secs(10)).await {
                        return Err("the key topic is not read to its end yet".into());
                    }
                }
                let ids = self
                    .keys
                    .destroy_subject(&subject)
                    .await
                    .map_err(|e| format!("destroying the subject's keys: {e}"))?;
                Ok(format!("{} data keys destroyed", ids.len()))
            }
            Step::Tombstoned => {
                let subject = self.unseal(w)?;
                let mut done = Vec::new();
                for entry in self.catalog.entries() {
                    if entry.erasure != TopicErasure::Tombstone || entry.name.contains('*') {
                        continue;
                    }
                    let n = tombstone_everywhere(
                        self.upstream.as_ref(),
                        self.max_frame_bytes,
                        &entry.name,
                        subject.as_bytes(),
                    )
                    .await?;
                    done.push(format!("{}: {n} partitions", entry.name));
                }
                Ok(if done.is_empty() {
                    "no topic takes tombstones".to_string()
                } else {
                    done.join(", ")
                })
            }
            Step::Suppressing => {
                let topics: Vec<&str> = self
                    .catalog
                    .entries()
                    .into_iter()
                    .filter(|e| e.subject.is_some())
                    .map(|e| e.name.as_str())
                    .collect();
                Ok(format!("withheld on {}", topics.join(", ")))
            }
        };
        Ok((detail?, None))
    }

    /// The seq of this replica's `erasure` event for `step` of `hash`, if
    /// its chain already holds one (a step recorded, then not published,
    /// before a crash). A chain that cannot be read counts as none.
    async fn recorded(
        &self,
        log: &gatehouse_audit::AuditLog,
        hash: &str,
        step: Step,
    ) -> Option<u64> {
        let dirs = vec![log.dir().to_path_buf()];
        let query = gatehouse_audit::Query {
            subject_hash: Some(hash.to_string()),
            ..Default::default()
        };
        // Every segment, not the index: just after a restart the writer
        // may not have indexed what the previous run wrote.
        let events = tokio::task::spawn_blocking(move || gatehouse_audit::scan(&dirs, &query))
            .await
            .ok()?
            .ok()?;
        events.iter().find_map(|e| match &e.kind {
            EventKind::Erasure {
                subject, step: s, ..
            } if subject == hash && s == step.name() => Some(e.seq),
            _ => None,
        })
    }

    /// Publishes `w` on the erasure topic (acks=all) and applies it here.
    async fn publish(&self, w: &Workflow) -> Result<(), String> {
        let value = serde_json::to_vec(w).map_err(|e| e.to_string())?;
        let key = w.subject.as_bytes().to_vec();
        self.topic.publish((key, Some(value))).await?;
        self.erasures.put(w.clone())
    }

    /// Records `step` (audit event), then publishes the workflow with it
    /// (acks=all) and applies it here.
    async fn complete(
        &self,
        mut w: Workflow,
        step: Step,
        detail: String,
        verification: Option<Verification>,
    ) -> Result<Workflow, String> {
        // A step this replica recorded before it stopped, without
        // publishing it, is not recorded twice (looked for only in that
        // case: the workflow was this replica's before it started).
        let resumed = w.owner == self.replica && w.updated_at < self.started_at;
        let audit_seq = match &self.audit {
            None => None,
            Some(log) => {
                let already = if resumed {
                    self.recorded(log, &w.subject, step).await
                } else {
                    None
                };
                match already {
                    Some(seq) => Some(seq),
                    None => Some(
                        log.append(EventKind::Erasure {
                            subject: w.subject.clone(),
                            step: step.name().to_string(),
                            detail: detail.clone(),
                        })
                        .await
                        .map_err(|e| format!("audit log unavailable: {e}"))?,
                    ),
                }
            }
        };
        fault_point(&format!("erasure:{}:recorded", step.name()));
        let now = now_ms();
        w.steps.push(StepDone {
            step,
            at: now,
            replica: self.replica.clone(),
            detail,
            audit_seq,
        });
        w.owner = self.replica.clone();
        w.updated_at = now;
        if verification.is_some() {
            w.verification = verification;
        }
        if w.done() {
            w.sealed = None;
        }
        self.publish(&w).await?;
        fault_point(&format!("erasure:{}:published", step.name()));
        tracing::info!(subject = %w.subject, step = step.name(), "erasure step done");
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(steps: &[Step], sealed: bool) -> Workflow {
        Workflow {
            subject: "hash".into(),
            requested_by: "privacy".into(),
            reason: "request".into(),
            requested_at: 1,
            owner: "a".into(),
            updated_at: 1,
            sealed: sealed.then(|| WrappedKey {
                kek_id: "kek-1".into(),
                bytes: vec![0; 40],
            }),
            steps: steps
                .iter()
                .map(|&step| StepDone {
                    step,
                    at: 1,
                    replica: "a".into(),
                    detail: String::new(),
                    audit_seq: None,
                })
                .collect(),
            verification: None,
        }
    }

    /// A workflow a four-step version finished (its sealed id dropped) is
    /// done, not waiting for a verification that could never run; one
    /// still sealed at step 4 goes on to verify.
    #[test]
    fn workflows_finished_before_verification_existed_stay_done() {
        let four = &Step::ALL[..4];
        let old = workflow(four, false);
        assert!(old.finished_unverified());
        assert!(old.done());
        assert_eq!(old.next_step(), None);
        let running = workflow(four, true);
        assert!(!running.done());
        assert_eq!(running.next_step(), Some(Step::Verified));
        let early = workflow(&Step::ALL[..2], true);
        assert_eq!(early.next_step(), Some(Step::Tombstoned));
        let all = workflow(&Step::ALL, false);
        assert!(all.done() && !all.finished_unverified());
    }
}
