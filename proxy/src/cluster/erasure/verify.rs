//! Step 5 of the workflow: every governed topic of the cluster is read back
//! from each partition's start through the filter chain, as a consumer of
//! the proxy would read it, and for each erased subject the read-back
//! counts what the cluster still holds of it and what the chain delivered
//! (nothing, when erasure holds).
//!
//! Workflows that reach the step while a read-back runs are verified
//! together by the next one: a thousand erasures at once cost a few scans
//! of the topics, not a thousand.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_policy::{AfterErasure, Catalog, Erasure as TopicErasure};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::cluster::client::{
    earliest_offset, error_name, metadata, topic_listing, Conn, Upstream,
};
use crate::codec::records::{decode_record_set, RecordsOptions};
use crate::codec::subject::SubjectFinder;

/// Bytes read back per topic (as the cluster stores them) before the
/// verification stops reading it (and reports it incomplete).
const MAX_BYTES_PER_TOPIC: usize = 256 << 20;

/// How long a verification waits for the filter chain to exist (the proxy
/// starting) before it gives up for this round.
const READ_BACK_WAIT: Duration = Duration::from_secs(30);

/// One erased subject a read-back looks for.
#[derive(Debug, Clone)]
struct Sought {
    id: String,
    /// When its erasure was requested (epoch ms): on topics that take a
    /// returning subject, records written later are its new ones.
    erased_at: Option<i64>,
}

/// What the verification step concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every governed topic was read to its end and nothing of the subject
    /// was delivered.
    Passed,
    /// Nothing of the subject was delivered, but some topic or partition
    /// could not be read to its end (refused to the verifying principal,
    /// listed with an error, leaderless, or beyond the read-back's budget).
    Partial,
    /// Records of the subject were delivered: suppression does not hold.
    Failed,
    /// No verifying principal is configured (`[keys] erasure_verify_as`).
    Skipped,
}

/// What the read-back found on one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCheck {
    /// The topic.
    pub topic: String,
    /// Records read back (every partition, from its start).
    pub scanned: u64,
    /// Records of the subject the cluster still holds (tombstones not
    /// counted).
    pub held: u64,
    /// Of those, how many the filter chain delivered: 0 when erasure holds.
    pub readable: u64,
    /// Records of other subjects delivered (shows that the read-back reads).
    pub others_readable: u64,
    /// On topics that take tombstones: whether the subject's tombstone is
    /// there, after which compaction removes the `held` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<bool>,
    /// Whether every partition was read to its end.
    pub complete: bool,
    /// Why the verifying principal could not read the topic, if it could
    /// not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Why a partition could not be read to its end, if one could not
    /// (the cluster's error, or a leaderless partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The verification step's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The conclusion.
    pub outcome: Outcome,
    /// The principal the topics were read as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Per governed topic.
    pub topics: Vec<TopicCheck>,
}

impl Verification {
    fn skipped() -> Self {
        Self {
            outcome: Outcome::Skipped,
            principal: None,
            topics: Vec::new(),
        }
    }

    /// One line for the workflow's step and the audit event.
    pub fn summary(&self) -> String {
        let held: u64 = self.topics.iter().map(|t| t.held).sum();
        let readable: u64 = self.topics.iter().map(|t| t.readable).sum();
        let awaiting: u64 = self
            .topics
            .iter()
            .filter(|t| t.tombstone == Some(true))
            .map(|t| t.held)
            .sum();
        let outcome = match self.outcome {
            Outcome::Skipped => {
                return "skipped: no verifying principal ([keys] erasure_verify_as)".to_string()
            }
            Outcome::Passed => "passed",
            Outcome::Partial => "partial",
            Outcome::Failed => "FAILED",
        };
        format!(
            "{outcome}: {} topics read back as {}; of the subject: {held} held, {readable} readable, {awaiting} awaiting compaction after its tombstone",
            self.topics.len(),
            self.principal.as_deref().unwrap_or("?"),
        )
    }
}

/// One fetch of a read-back: what the cluster holds and what the filter
/// chain delivers of it.
#[derive(Debug, Default)]
pub(crate) struct ReadPage {
    /// The record set as the cluster answered.
    pub held: bytes::Bytes,
    /// The record set as the chain delivered it.
    pub delivered: bytes::Bytes,
    /// The partition error the chain answered with (0: none).
    pub error: i16,
    /// The partition error the cluster answered with (0: none); the page
    /// is empty then.
    pub cluster_error: i16,
    /// The partition's high watermark.
    pub high_watermark: i64,
}

/// Reading a governed topic back through the filter chain, as a consumer
/// of the proxy would (implemented where the chain is: `net::loopback`).
pub(crate) trait ReadBack: Send + Sync {
    /// The principal the chain reads as.
    fn principal(&self) -> &str;

    /// One fetch of `topic`/`partition` from `offset` on `conn`, a
    /// connection to the partition's leader.
    fn fetch<'a>(
        &'a self,
        conn: &'a mut Conn,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Pin<Box<dyn Future<Output = Result<ReadPage, String>> + Send + 'a>>;
}

type Waiting = (Sought, oneshot::Sender<Result<Verification, String>>);

/// Runs read-backs, several subjects at a time.
pub(crate) struct Verifier {
    /// How topics are read back: `None` until the filter chain exists.
    read_back: watch::Sender<Option<Arc<dyn ReadBack>>>,
    /// Whether a verifying principal is configured (if not, verification
    /// is skipped; if so, it waits for the chain).
    configured: bool,
    upstream: Arc<dyn Upstream>,
    max_frame_bytes: usize,
    catalog: Arc<Catalog>,
    stopping: watch::Receiver<bool>,
    /// Subjects waiting for the next read-back, and whether one runs.
    queue: Mutex<(Vec<Waiting>, bool)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "principal",
                &self
                    .read_back
                    .borrow()
                    .as_ref()
                    .map(|r| r.principal().to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// Marks the read-back stopped if its task ends without saying so (a
/// panic): the next verification starts a new one instead of waiting for
/// ever, and those queued meanwhile get an error and retry.
struct Running<'a> {
    verifier: &'a Verifier,
    armed: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut q = self
                .verifier
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            q.0.clear();
            q.1 = false;
        }
    }
}

impl Verifier {
    pub(crate) fn new(
        upstream: Arc<dyn Upstream>,
        max_frame_bytes: usize,
        catalog: Arc<Catalog>,
        configured: bool,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            read_back: watch::Sender::new(None),
            configured,
            upstream,
            max_frame_bytes,
            catalog,
            stopping,
            queue: Mutex::new((Vec::new(), false)),
        }
    }

    /// How topics are read back (set once, when the chain exists).
    pub(crate) fn set_read_back(&self, read_back: Arc<dyn ReadBack>) {
        self.read_back.send_replace(Some(read_back));
    }

    /// The read-back, once the chain exists; `None` if no verifying
    /// principal is configured.
    async fn ready(&self) -> Result<Option<Arc<dyn ReadBack>>, String> {
        if !self.configured {
            return Ok(None);
        }
        let mut rx = self.read_back.subscribe();
        let found = tokio::time::timeout(READ_BACK_WAIT, rx.wait_for(Option::is_some))
            .await
            .map_err(|_| "the proxy's filter chain is not ready yet".to_string())?
            .map_err(|_| "the proxy is stopping".to_string())?
            .clone();
        Ok(found)
    }

    /// Verifies `subject` (erased at `erased_at`) with the next read-back.
    pub(crate) async fn verify(
        self: &Arc<Self>,
        subject: &str,
        erased_at: Option<i64>,
    ) -> Result<Verification, String> {
        if self.ready().await?.is_none() {
            return Ok(Verification::skipped());
        }
        let (tx, rx) = oneshot::channel();
        let sought = Sought {
            id: subject.to_string(),
            erased_at,
        };
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.0.push((sought, tx));
            !std::mem::replace(&mut q.1, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move {
                let mut stopping = me.stopping.clone();
                tokio::select! {
                    () = me.run() => {}
                    _ = stopping.wait_for(|s| *s) => {}
                }
            });
        }
        rx.await
            .map_err(|_| "the read-back stopped before it finished".to_string())?
    }

    /// Read-backs until nobody waits.
    async fn run(&self) {
        let mut running = Running {
            verifier: self,
            armed: true,
        };
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                // Those who stopped waiting (a client that went away) are
                // not read back for.
                q.0.retain(|(_, tx)| !tx.is_closed());
                if q.0.is_empty() {
                    q.1 = false;
                    running.armed = false;
                    return;
                }
                std::mem::take(&mut q.0)
            };
            // The same subject asked for twice (its workflow, and a
            // `gatehouse erase verify` meanwhile) is looked for once.
            let mut distinct: Vec<Sought> = Vec::new();
            let mut at: HashMap<String, usize> = HashMap::new();
            let slots: Vec<usize> = batch
                .iter()
                .map(|(s, _)| {
                    *at.entry(s.id.clone()).or_insert_with(|| {
                        distinct.push(s.clone());
                        distinct.len() - 1
                    })
                })
                .collect();
            match self.read_back_all(&distinct).await {
                Ok(found) => {
                    for ((_, tx), slot) in batch.into_iter().zip(slots) {
                        let _ =
                            tx.send(found.get(slot).cloned().ok_or_else(|| {
                                "the read-back lost track of a subject".to_string()
                            }));
                    }
                }
                Err(e) => {
                    for (_, tx) in batch {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// One read-back of every governed topic for `subjects` (distinct).
    async fn read_back_all(&self, subjects: &[Sought]) -> Result<Vec<Verification>, String> {
        let Some(rb) = self.ready().await? else {
            return Ok(subjects.iter().map(|_| Verification::skipped()).collect());
        };
        let index: HashMap<&str, usize> = subjects
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let erased_at: Vec<Option<i64>> = subjects.iter().map(|s| s.erased_at).collect();
        let mut boot = Conn::open(self.upstream.as_ref(), None, self.max_frame_bytes)
            .await
            .map_err(|e| e.to_string())?;
        let mut listing = topic_listing(&mut boot).await?;
        listing.sort();
        let mut per_subject: Vec<Vec<TopicCheck>> = vec![Vec::new(); subjects.len()];
        for (name, listed_error) in listing {
            let info = self.catalog.lookup(&name);
            let (Some(entry), Some(locator)) = (info.entry(), info.subject()) else {
                continue;
            };
            let checks = if listed_error != 0 {
                // Listed, but not readable now: not read, and said so.
                let check = TopicCheck {
                    topic: name.clone(),
                    complete: false,
                    error: Some(format!("listed with {}", error_name(listed_error))),
                    ..TopicCheck::default()
                };
                vec![check; subjects.len()]
            } else {
                let scan = Scan {
                    topic: &name,
                    finder: SubjectFinder::new(locator.clone()),
                    tombstones: entry.erasure == TopicErasure::Tombstone,
                    returning: entry.after_erasure == AfterErasure::Accept,
                    index: &index,
                    erased_at: &erased_at,
                };
                self.scan_topic(rb.as_ref(), &mut boot, &scan).await?
            };
            for (all, check) in per_subject.iter_mut().zip(checks) {
                all.push(check);
            }
        }
        let principal = rb.principal().to_string();
        Ok(per_subject
            .into_iter()
            .map(|topics| {
                let readable = topics.iter().any(|t| t.readable > 0);
                let whole = topics
                    .iter()
                    .all(|t| t.complete && t.refused.is_none() && t.error.is_none());
                Verification {
                    outcome: if readable {
                        Outcome::Failed
                    } else if whole {
                        Outcome::Passed
                    } else {
                        Outcome::Partial
                    },
                    principal: Some(principal.clone()),
                    topics,
                }
            })
            .collect())
    }

    /// Reads one topic back; one check per subject of `scan.index`.
    async fn scan_topic(
        &self,
        rb: &dyn ReadBack,
        boot: &mut Conn,
        scan: &Scan<'_>,
    ) -> Result<Vec<TopicCheck>, String> {
        let topic = scan.topic;
        let n = scan.index.len();
        let mut held = vec![0u64; n];
        let mut readable = vec![0u64; n];
        let mut tombstoned = vec![false; n];
        let mut delivered_total = 0u64;
        let mut scanned = 0u64;
        let mut complete = true;
        let mut refused = None;
        let mut error = None;
        let layout = metadata(boot, topic)
            .await
            .map_err(|e| format!("{topic}: {e}"))?;
        if let Some(p) = layout.leaderless.first() {
            complete = false;
            error = Some(format!("partition {p} has no leader"));
        }
        let page_max = i32::try_from(self.max_frame_bytes / 2)
            .unwrap_or(i32::MAX)
            .clamp(1024, 4 << 20);
        // Never more than a frame can carry back.
        let most = i32::try_from(self.max_frame_bytes.saturating_sub(64 << 10))
            .unwrap_or(i32::MAX)
            .max(page_max);
        let mut budget = MAX_BYTES_PER_TOPIC;
        // One connection per leader, shared by its partitions.
        let mut conns: HashMap<i32, Conn> = HashMap::new();
        'partitions: for (&partition, leader) in &layout.leaders {
            let conn = match conns.entry(*leader) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let (host, port) = layout
                        .brokers
                        .get(leader)
                        .cloned()
                        .ok_or_else(|| format!("{topic}: leader {leader} unknown"))?;
                    let conn = Conn::open(
                        self.upstream.as_ref(),
                        Some((*leader, &host, port)),
                        self.max_frame_bytes,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    v.insert(conn)
                }
            };
            let mut offset = earliest_offset(conn, topic, partition)
                .await
                .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            let mut max = page_max;
            let mut moved_start = false;
            loop {
                let page = rb.fetch(conn, topic, partition, offset, max).await?;
                if page.error != 0 {
                    refused = Some(error_name(page.error));
                    complete = false;
                    break 'partitions;
                }
                if page.cluster_error != 0 {
                    // Retention moved the log's start past us: go on
                    // from the new start (once).
                    if page.cluster_error == OFFSET_OUT_OF_RANGE && !moved_start {
                        moved_start = true;
                        offset = earliest_offset(conn, topic, partition)
                            .await
                            .map_err(|e| format!("{topic}/{partition}: {e}"))?;
                        continue;
                    }
                    complete = false;
                    error = Some(format!(
                        "partition {partition}: {}",
                        error_name(page.cluster_error)
                    ));
                    continue 'partitions;
                }
                let set = decode_record_set(&page.held, &RecordsOptions::fetch())
                    .map_err(|e| format!("{topic}/{partition}: {e}"))?;
                let next = set.batches.last().map(|b| b.header.next_offset());
                let Some(next) = next.filter(|n| *n > offset) else {
                    if next.is_some() || offset >= page.high_watermark {
                        // Done, or a broker that does not move on.
                        if next.is_some() {
                            complete = false;
                            error = Some(format!(
                                "partition {partition}: no progress at offset {offset}"
                            ));
                        }
                        continue 'partitions;
                    }
                    if set.partial_tail.is_empty() {
                        // Nothing left below the high watermark: the log
                        // ends in a gap (records compacted away).
                        continue 'partitions;
                    }
                    if max >= most {
                        complete = false;
                        error = Some(format!(
                            "partition {partition}: a batch at offset {offset} is larger than a frame"
                        ));
                        continue 'partitions;
                    }
                    // Only part of a batch fit: ask for more.
                    max = max.saturating_mul(2).min(most);
                    continue;
                };
                for b in set.batches.iter().filter(|b| !b.header.is_control()) {
                    for r in &b.records {
                        scanned += 1;
                        let Some(i) = scan.subject_index(r, b.header.timestamp_of(r)) else {
                            continue;
                        };
                        if r.value.is_some() {
                            held[i] += 1;
                        } else if scan.tombstones {
                            tombstoned[i] = true;
                        }
                    }
                }
                let out = decode_record_set(&page.delivered, &RecordsOptions::fetch())
                    .map_err(|e| format!("{topic}/{partition}: delivered: {e}"))?;
                for b in out.batches.iter().filter(|b| !b.header.is_control()) {
                    for r in b.records.iter().filter(|r| r.value.is_some()) {
                        delivered_total += 1;
                        if let Some(i) = scan.subject_index(r, b.header.timestamp_of(r)) {
                            readable[i] += 1;
                        }
                    }
                }
                budget = budget.saturating_sub(page.held.len());
                offset = next;
                max = page_max;
                if offset >= page.high_watermark {
                    break;
                }
                if budget == 0 {
                    complete = false;
                    break 'partitions;
                }
            }
        }
        Ok((0..n)
            .map(|i| TopicCheck {
                topic: topic.to_string(),
                scanned,
                held: held[i],
                readable: readable[i],
                others_readable: delivered_total - readable[i],
                tombstone: scan.tombstones.then_some(tombstoned[i]),
                complete,
                refused: refused.clone(),
                error: error.clone(),
            })
            .collect())
    }
}

/// The partition error of a fetch below the log's start.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// One topic's read-back: where its records name their subject, and the
/// subjects looked for.
struct Scan<'a> {
    topic: &'a str,
    finder: SubjectFinder,
    tombstones: bool,
    /// The topic takes records of a returning subject: those written after
    /// its erasure are its new ones, delivered, and not counted.
    returning: bool,
    index: &'a HashMap<&'a str, usize>,
    erased_at: &'a [Option<i64>],
}

impl Scan<'_> {
    /// Which sought subject `r` (written at `timestamp`) belongs to.
    fn subject_index(&self, r: &crate::codec::records::Record, timestamp: i64) -> Option<usize> {
        let s = self
            .finder
            .find(r.key.as_ref(), r.value.as_ref(), &r.headers)?;
        let i = self.index.get(s.as_str()).copied()?;
        if self.returning
            && self
                .erased_at
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|at| timestamp > at)
        {
            return None;
        }
        Some(i)
    }
}
