//! Group commit: the single writer of the commit log.
//!
//! Request handlers send [`Op`]s; the committer gathers the data ops that
//! arrive within `commit_interval` (and whatever queued up while the
//! previous object was being written) into one commit object, assigns
//! offsets, checks idempotent-producer sequences, writes the object with a
//! create-only put, and only then applies it to the in-memory state and
//! answers the handlers. Nothing is acknowledged before it is durable.
//!
//! Admin ops (topic changes, log start moves, compaction swaps) are rare
//! and validated against the state, so each gets a commit object of its
//! own: they never interleave with data ops validated against older state.
//! Topic changes are decided in the shared metadata log first and then
//! mirrored into this log ([`crate::catalog`]); producer ids come from
//! blocks the metadata log hands this broker.
//!
//! The committer sees only what [`CommitterDeps`] hands it (the store, the
//! state it keeps in step with the log, the commit counter and two
//! settings); everyone else reaches it through the [`Committer`] handle,
//! whose methods are the only way to build and send an [`Op`].

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_telemetry::{Counter, Histogram, KeyValue};
use opentelemetry::metrics::Meter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::batch::{self, BatchHeader};
use crate::catalog::{self, CatalogOp};
use crate::error::{KafkaCode, StorageError};
use crate::log::{Command, CommitBuilder, CommittedOffset, CompactedRun};
use crate::meta::{MetaCommand, Refused};
use crate::meta_log::{AppendError, MetaLog};
use crate::state::{ProducerBatch, ProducerState, State};
use crate::storage::Storage;
use crate::topic_config;

/// The outcome of appending one batch.
pub type ProduceResult = Result<i64, KafkaCode>;

/// An error for an admin op: code plus a message for the client.
pub type AdminError = (KafkaCode, String);

/// Work for the committer; built only by [`Committer`]'s methods.
#[derive(Debug)]
enum Op {
    /// Append a validated batch.
    Produce {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: i32,
        /// Parsed header.
        header: BatchHeader,
        /// The batch as sent.
        batch: Bytes,
        /// Where the base offset goes.
        reply: oneshot::Sender<ProduceResult>,
    },
    /// Commit consumer offsets.
    CommitOffsets {
        /// Group.
        group: String,
        /// Offsets.
        offsets: Vec<CommittedOffset>,
        /// Per-offset result, in order.
        reply: oneshot::Sender<Vec<KafkaCode>>,
    },
    /// A metadata change.
    Admin {
        /// What to do.
        op: AdminOp,
        /// The result.
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
    },
}

/// Metadata changes.
#[derive(Debug)]
pub enum AdminOp {
    /// Create a topic.
    CreateTopic {
        /// Name.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Overrides.
        configs: BTreeMap<String, String>,
        /// Only validate.
        validate_only: bool,
    },
    /// Delete a topic.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// Grow a topic.
    AddPartitions {
        /// Name.
        name: String,
        /// New total.
        count: i32,
        /// Only validate.
        validate_only: bool,
    },
    /// Replace a topic's overrides.
    SetConfigs {
        /// Name.
        name: String,
        /// New overrides.
        configs: BTreeMap<String, String>,
        /// Only validate.
        validate_only: bool,
    },
    /// Move log starts forward; offset -1 means the high watermark.
    SetLogStart {
        /// (topic, partition, offset)
        entries: Vec<(String, i32, i64)>,
    },
    /// Delete a group's offsets.
    DeleteGroup {
        /// Group.
        group: String,
    },
    /// Hand out a producer id.
    AllocateProducerId,
    /// Bring this log's topic catalog up to the metadata log's.
    Mirror,
    /// Install partitions and group offsets taken over from another
    /// broker's log.
    Adopt {
        /// The partitions, with their state.
        partitions: Vec<crate::log::AdoptedPartition>,
        /// The groups' committed offsets.
        groups: BTreeMap<String, Vec<CommittedOffset>>,
    },
    /// Reserve the id of a compaction output about to be written.
    ReserveObject,
    /// Swap runs of batches for their compacted versions; settles the
    /// reserved `objects` whatever happens to the runs.
    Compact {
        /// Reserved ids the compaction wrote (or gave up on).
        objects: Vec<u64>,
        /// The replacements.
        runs: Vec<CompactedRun>,
    },
}

/// Successful admin results.
#[derive(Debug)]
pub enum AdminOutcome {
    /// Done.
    Done,
    /// A topic was created.
    Created(Uuid),
    /// New log starts, per entry.
    LogStarts(Vec<Result<i64, KafkaCode>>),
    /// A producer id.
    ProducerId(i64),
    /// A reserved compaction output id.
    Reserved(u64),
    /// For each compacted run, in order: whether it applied (a run that no
    /// longer matches the partition, after retention or DeleteRecords moved
    /// on, is skipped).
    Compacted(Vec<bool>),
}

enum Reply {
    Produce(oneshot::Sender<ProduceResult>, ProduceResult),
    Offsets(oneshot::Sender<Vec<KafkaCode>>, Vec<KafkaCode>),
    Admin(
        oneshot::Sender<Result<AdminOutcome, AdminError>>,
        Result<AdminOutcome, AdminError>,
    ),
}

impl Reply {
    fn send(self) {
        // A handler that went away (client disconnected) no longer needs
        // its answer; the data is durable either way.
        match self {
            Reply::Produce(tx, r) => drop(tx.send(r)),
            Reply::Offsets(tx, r) => drop(tx.send(r)),
            Reply::Admin(tx, r) => drop(tx.send(r)),
        }
    }
    fn fail(self, code: KafkaCode) {
        match self {
            Reply::Produce(tx, _) => drop(tx.send(Err(code))),
            Reply::Offsets(tx, r) => drop(tx.send(vec![code; r.len()])),
            Reply::Admin(tx, _) => {
                drop(tx.send(Err((code, "the write did not become durable".into()))))
            }
        }
    }
}

/// Per-partition view of offsets and producers while a commit is built.
#[derive(Default)]
struct Overlay {
    partitions: HashMap<(Uuid, i32), (i64, HashMap<i64, ProducerState>)>,
}

/// What the committer works on, and nothing more.
#[derive(Debug)]
pub(crate) struct CommitterDeps {
    /// Where commit objects go.
    pub storage: Storage,
    /// The state, updated only after a commit object is durable.
    pub state: Arc<RwLock<State>>,
    /// Bumped after every commit: long-polling fetches wait on it.
    pub commits: watch::Sender<u64>,
    /// How long data ops are gathered into one commit object.
    pub commit_interval: Duration,
    /// Flush a commit object early once it holds this many bytes.
    pub commit_max_bytes: usize,
    /// The shared metadata log: the catalog and producer-id blocks.
    pub meta: Arc<MetaLog>,
    /// This broker's id.
    pub node_id: i32,
    /// The live brokers, over which new partitions are spread.
    pub live: watch::Receiver<BTreeMap<i32, crate::members::Member>>,
    /// Set once another writer took this log over (the broker must stop).
    pub fenced: watch::Sender<bool>,
    /// What commits count.
    pub metrics: CommitMetrics,
}

/// The committer's instruments: commit objects written, their size and
/// how long their write took.
#[derive(Debug, Clone)]
pub(crate) struct CommitMetrics {
    commits: Counter<u64>,
    size: Histogram<u64>,
    duration: Histogram<f64>,
    /// The `outcome` label: `ok`, `fenced`, `error`.
    outcomes: [[KeyValue; 1]; 3],
}

impl CommitMetrics {
    /// The instruments, made from `meter`.
    pub fn new(meter: &Meter) -> Self {
        let metrics = Self {
            commits: meter
                .u64_counter("gatehouse.broker.commits")
                .with_description(
                    "Commit object writes by outcome (ok, fenced: another writer has the number, error: not durable)",
                )
                .build(),
            size: meter
                .u64_histogram("gatehouse.broker.commit.size")
                .with_unit("By")
                .with_description("Size of the commit objects written")
                .with_boundaries(vec![
                    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0,
                    16_777_216.0, 67_108_864.0,
                ])
                .build(),
            duration: meter
                .f64_histogram("gatehouse.broker.commit.duration")
                .with_unit("s")
                .with_description(
                    "Time to write a commit object to the store (and settle an unclear outcome), by outcome",
                )
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ])
                .build(),
            outcomes: ["ok", "fenced", "error"].map(|o| [KeyValue::new("outcome", o)]),
        };
        for outcome in &metrics.outcomes {
            metrics.commits.add(0, outcome);
        }
        metrics
    }

    fn written(&self, started: Instant, bytes: usize, result: &Result<(), StorageError>) {
        let outcome = &self.outcomes[match result {
            Ok(()) => 0,
            Err(StorageError::Fenced(_)) => 1,
            Err(_) => 2,
        }];
        self.commits.add(1, outcome);
        self.duration
            .record(started.elapsed().as_secs_f64(), outcome);
        if result.is_ok() {
            self.size.record(bytes as u64, &[]);
        }
    }
}

/// Producer ids handed out per block the metadata log gives a broker.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The rest of this broker's current block of producer ids: the next one,
/// and one past the last.
#[derive(Debug, Default)]
struct ProducerIds {
    next: i64,
    end: i64,
}

/// Why an op got no answer from the committer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unanswered {
    /// The committer is gone (the broker is shutting down).
    #[error("the committer has stopped")]
    Stopped,
    /// No answer within [`REPLY_TIMEOUT`], or the answer was dropped.
    #[error("no answer from the committer in time")]
    TimedOut,
}

/// The handle through which handlers and housekeeping send work to the
/// committer.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    ops: mpsc::UnboundedSender<Op>,
}

impl Committer {
    /// Sends an admin op and waits for its result. A committer that has
    /// stopped or does not answer in time yields `REQUEST_TIMED_OUT`.
    pub async fn admin(&self, op: AdminOp) -> Result<AdminOutcome, AdminError> {
        let (tx, rx) = oneshot::channel();
        let timeout = (
            KafkaCode::RequestTimedOut,
            "the broker is shutting down".to_string(),
        );
        self.ops
            .send(Op::Admin { op, reply: tx })
            .map_err(|_| timeout.clone())?;
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(timeout),
        }
    }

    /// Hands a validated batch to the committer now; the receiver yields
    /// its base offset once it is durable.
    pub fn produce(
        &self,
        topic: &str,
        partition: i32,
        header: BatchHeader,
        batch: Bytes,
    ) -> Result<oneshot::Receiver<ProduceResult>, Unanswered> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::Produce {
                topic: topic.to_string(),
                partition,
                header,
                batch,
                reply: tx,
            })
            .map_err(|_| Unanswered::Stopped)?;
        Ok(rx)
    }

    /// Commits a group's offsets and waits for one code per offset, in
    /// order.
    pub async fn commit_offsets(
        &self,
        group: String,
        offsets: Vec<CommittedOffset>,
    ) -> Result<Vec<KafkaCode>, Unanswered> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::CommitOffsets {
                group,
                offsets,
                reply: tx,
            })
            .map_err(|_| Unanswered::Stopped)?;
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(codes)) => Ok(codes),
            _ => Err(Unanswered::TimedOut),
        }
    }
}

/// Creates the committer: the handle to send it work, and the task to
/// spawn. The task ends once every handle is dropped.
pub(crate) fn start(deps: CommitterDeps) -> (Committer, impl Future<Output = ()>) {
    let (ops, rx) = mpsc::unbounded_channel();
    (Committer { ops }, run(deps, rx))
}

async fn run(deps: CommitterDeps, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut next_seq = deps.state.read().map(|s| s.last_seq + 1).unwrap_or(1);
    let mut held: Option<Op> = None;
    let mut fenced = false;
    // A commit whose write ended unclear: it is written again, the same
    // bytes at the same seq, before anything else is.
    let mut unsettled: Option<Unsettled> = None;
    let mut producer_ids = ProducerIds::default();
    loop {
        let first = match held.take() {
            Some(op) => op,
            None => match rx.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        if fenced {
            fail_op(first, KafkaCode::NotLeaderOrFollower);
            continue;
        }
        if let Some(u) = unsettled.take() {
            match store(&deps, u.seq, u.object.clone(), &u.commands).await {
                Ok(()) => {
                    tracing::info!(seq = u.seq, "an unclear commit is settled: it is durable");
                    next_seq += 1;
                }
                Err(StorageError::Fenced(_)) => {
                    tracing::error!(
                        seq = u.seq,
                        "another broker wrote to this store: refusing further writes"
                    );
                    fenced = true;
                    deps.fenced.send_replace(true);
                    fail_op(first, KafkaCode::NotLeaderOrFollower);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(seq = u.seq, error = %e, "an unclear commit is still unsettled");
                    unsettled = Some(u);
                    fail_op(first, KafkaCode::KafkaStorageError);
                    continue;
                }
            }
        }
        let mut builder = CommitBuilder::default();
        let mut replies = Vec::new();
        let mut pending = Vec::new();
        if let Op::Admin { op, reply } = first {
            let prepared = match op {
                AdminOp::CreateTopic { .. }
                | AdminOp::DeleteTopic { .. }
                | AdminOp::AddPartitions { .. }
                | AdminOp::SetConfigs { .. }
                | AdminOp::Mirror => prepare_catalog(&deps, op, &mut builder).await,
                AdminOp::AllocateProducerId => producer_id(&deps, &mut producer_ids).await,
                op => prepare_admin(&deps, op, &mut builder),
            };
            match prepared {
                Ok(outcome) if builder.is_empty() => {
                    // validate_only, or nothing to change.
                    drop(reply.send(Ok(outcome)));
                    continue;
                }
                Ok(outcome) => replies.push(Reply::Admin(reply, Ok(outcome))),
                Err(e) => {
                    drop(reply.send(Err(e)));
                    continue;
                }
            }
        } else {
            // Gather data ops for a short while (group commit).
            pending.push(first);
            let deadline = Instant::now() + deps.commit_interval;
            let max_bytes = deps.commit_max_bytes;
            let mut gathered = 0usize;
            loop {
                if gathered >= max_bytes {
                    break;
                }
                let next = match rx.try_recv() {
                    Ok(op) => Some(op),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(op) => op,
                            Err(_) => break,
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                };
                match next {
                    Some(op @ Op::Admin { .. }) => {
                        held = Some(op);
                        break;
                    }
                    Some(op) => {
                        if let Op::Produce { batch, .. } = &op {
                            gathered += batch.len();
                        }
                        pending.push(op);
                    }
                    None => break,
                }
            }
            prepare_data(&deps, pending.drain(..), &mut builder, &mut replies);
        }

        if builder.is_empty() {
            replies.into_iter().for_each(Reply::send);
            continue;
        }
        let seq = next_seq;
        let (object, commands) = match builder.finish(seq, deps.storage.writer()) {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(seq, error = %e, "commit could not be built");
                replies
                    .into_iter()
                    .for_each(|r| r.fail(KafkaCode::KafkaStorageError));
                continue;
            }
        };
        match store(&deps, seq, object.clone(), &commands).await {
            Ok(()) => {
                next_seq += 1;
                replies.into_iter().for_each(Reply::send);
            }
            Err(StorageError::Fenced(_)) => {
                tracing::error!(
                    seq,
                    "another broker wrote to this store: refusing further writes"
                );
                fenced = true;
                deps.fenced.send_replace(true);
                replies
                    .into_iter()
                    .for_each(|r| r.fail(KafkaCode::NotLeaderOrFollower));
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "commit failed; producers will retry");
                // The write may still land (a request the store answered
                // late): the seq is kept for these bytes only.
                unsettled = Some(Unsettled {
                    seq,
                    object,
                    commands,
                });
                replies
                    .into_iter()
                    .for_each(|r| r.fail(KafkaCode::KafkaStorageError));
            }
        }
    }
}

/// A commit whose write failed without the store saying whether it
/// landed (a timeout, or an error with no object found when read back).
/// Writing other bytes at its seq could find it there later, taken for
/// another writer's: so it is written again, unchanged, and applied once
/// it is durable. Its ops were answered `KAFKA_STORAGE_ERROR`; producers
/// retry, and idempotent ones find their batch already stored.
struct Unsettled {
    seq: u64,
    object: Bytes,
    commands: Vec<Command>,
}

fn fail_op(op: Op, code: KafkaCode) {
    match op {
        Op::Produce { reply, .. } => drop(reply.send(Err(code))),
        Op::CommitOffsets { offsets, reply, .. } => drop(reply.send(vec![code; offsets.len()])),
        Op::Admin { reply, .. } => drop(reply.send(Err((code, "this broker is fenced".into())))),
    }
}

/// Writes the object, then applies it. An ambiguous outcome is settled by
/// [`crate::storage::Storage::create_commit`], so state never diverges from
/// what the log holds.
async fn store(
    deps: &CommitterDeps,
    seq: u64,
    object: Bytes,
    commands: &[Command],
) -> Result<(), StorageError> {
    let started = Instant::now();
    let bytes = object.len();
    let written = deps.storage.create_commit(seq, object).await;
    deps.metrics.written(started, bytes, &written);
    written?;
    if let Ok(mut state) = deps.state.write() {
        state.apply(seq, commands);
    }
    deps.commits.send_replace(seq);
    Ok(())
}

fn prepare_data(
    deps: &CommitterDeps,
    ops: impl Iterator<Item = Op>,
    builder: &mut CommitBuilder,
    replies: &mut Vec<Reply>,
) {
    let Ok(state) = deps.state.read() else {
        return;
    };
    let mut overlay = Overlay::default();
    for op in ops {
        match op {
            Op::Produce {
                topic,
                partition,
                header,
                batch,
                reply,
            } => {
                let r = prepare_batch(
                    &state,
                    &mut overlay,
                    &topic,
                    partition,
                    &header,
                    &batch,
                    builder,
                );
                replies.push(Reply::Produce(reply, r));
            }
            Op::CommitOffsets {
                group,
                offsets,
                reply,
            } => {
                let codes: Vec<KafkaCode> = offsets
                    .iter()
                    .map(|o| match state.partition(&o.topic, o.partition) {
                        Some(_) => KafkaCode::None,
                        None => KafkaCode::UnknownTopicOrPartition,
                    })
                    .collect();
                let ok: Vec<CommittedOffset> = offsets
                    .into_iter()
                    .zip(&codes)
                    .filter(|(_, c)| **c == KafkaCode::None)
                    .map(|(o, _)| o)
                    .collect();
                if !ok.is_empty() {
                    builder.push(Command::CommitOffsets { group, offsets: ok });
                }
                replies.push(Reply::Offsets(reply, codes));
            }
            Op::Admin { reply, .. } => {
                // Never gathered with data ops; answer defensively.
                drop(reply.send(Err((
                    KafkaCode::UnknownServerError,
                    "misrouted admin op".into(),
                ))));
            }
        }
    }
}

fn prepare_batch(
    state: &State,
    overlay: &mut Overlay,
    topic: &str,
    partition: i32,
    h: &BatchHeader,
    batch: &[u8],
    builder: &mut CommitBuilder,
) -> ProduceResult {
    let t = state
        .topic(topic)
        .ok_or(KafkaCode::UnknownTopicOrPartition)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or(KafkaCode::UnknownTopicOrPartition)?;
    let max = topic_config::effective_i64(&t.configs, "max.message.bytes");
    if batch.len() as i64 > max {
        return Err(KafkaCode::MessageTooLarge);
    }
    let (next_offset, producers) = overlay
        .partitions
        .entry((t.id, partition))
        .or_insert_with(|| (p.next_offset, HashMap::new()));
    if h.producer_id >= 0 {
        let ps = producers
            .entry(h.producer_id)
            .or_insert_with(|| p.producers.get(&h.producer_id).cloned().unwrap_or_default());
        let known = !ps.recent.is_empty();
        if known && h.producer_epoch < ps.epoch {
            return Err(KafkaCode::InvalidProducerEpoch);
        }
        if known && h.producer_epoch == ps.epoch {
            if let Some(dup) = ps
                .recent
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == h.last_sequence())
            {
                // A retry of a batch we stored: answer with its offset.
                return Ok(dup.base);
            }
            if Some(h.base_sequence) != ps.next_seq() {
                return Err(KafkaCode::OutOfOrderSequenceNumber);
            }
        } else if h.base_sequence != 0 {
            return Err(KafkaCode::OutOfOrderSequenceNumber);
        }
        ps.push(
            h.producer_epoch,
            ProducerBatch {
                first_seq: h.base_sequence,
                last_seq: h.last_sequence(),
                base: *next_offset,
            },
        );
    }
    let base = *next_offset;
    *next_offset += h.last_offset_delta as i64 + 1;
    let stored = batch::with_base_offset(batch, base);
    let pos = builder.push_data(&stored);
    builder.push(Command::Batch {
        topic: t.id,
        partition,
        base,
        last_delta: h.last_offset_delta,
        max_ts: h.max_timestamp,
        pos,
        len: stored.len() as u32,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        first_seq: h.base_sequence,
    });
    Ok(base)
}

/// Topic names Kafka accepts.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn prepare_admin(
    deps: &CommitterDeps,
    op: AdminOp,
    builder: &mut CommitBuilder,
) -> Result<AdminOutcome, AdminError> {
    let state = deps.state.read().map_err(|_| {
        (
            KafkaCode::UnknownServerError,
            "state lock poisoned".to_string(),
        )
    })?;
    match op {
        AdminOp::SetLogStart { entries } => {
            let mut results = Vec::with_capacity(entries.len());
            for (name, partition, offset) in entries {
                let found = state.topic(&name).and_then(|t| {
                    let p = t.partitions.get(usize::try_from(partition).ok()?)?;
                    Some((t.id, p))
                });
                let Some((id, p)) = found else {
                    results.push(Err(KafkaCode::UnknownTopicOrPartition));
                    continue;
                };
                let target = if offset == -1 { p.next_offset } else { offset };
                if target < 0 || target > p.next_offset {
                    results.push(Err(KafkaCode::OffsetOutOfRange));
                    continue;
                }
                if target > p.log_start {
                    builder.push(Command::SetLogStart {
                        id,
                        partition,
                        offset: target,
                    });
                }
                results.push(Ok(target.max(p.log_start)));
            }
            Ok(AdminOutcome::LogStarts(results))
        }
        AdminOp::DeleteGroup { group } => {
            if state.groups.contains_key(&group) {
                builder.push(Command::DeleteGroup { group });
            }
            Ok(AdminOutcome::Done)
        }
        AdminOp::CreateTopic { .. }
        | AdminOp::DeleteTopic { .. }
        | AdminOp::AddPartitions { .. }
        | AdminOp::SetConfigs { .. }
        | AdminOp::Mirror
        | AdminOp::AllocateProducerId => Err((
            KafkaCode::UnknownServerError,
            "a metadata change reached the commit log directly".into(),
        )),
        AdminOp::Adopt { partitions, groups } => {
            builder.push(Command::Adopt { partitions, groups });
            Ok(AdminOutcome::Done)
        }
        AdminOp::ReserveObject => {
            let id = state.last_object_id + 1;
            builder.push(Command::ReserveObject { id });
            Ok(AdminOutcome::Reserved(id))
        }
        AdminOp::Compact { objects, runs } => {
            // Checked here against the state the command will apply to; the
            // state checks again when applying (and when replaying), with
            // the same answer.
            let applied: Vec<bool> = runs.iter().map(|r| state.run_applies(r)).collect();
            let runs: Vec<CompactedRun> = runs
                .into_iter()
                .zip(&applied)
                .filter_map(|(r, ok)| ok.then_some(r))
                .collect();
            if !objects.is_empty() || !runs.is_empty() {
                builder.push(Command::Compact { objects, runs });
            }
            Ok(AdminOutcome::Compacted(applied))
        }
    }
}

/// A topic change: decided in the metadata log (validated against it and
/// appended, unless only validating), then mirrored into `builder`, with
/// whatever else of the catalog this log had not mirrored yet.
async fn prepare_catalog(
    deps: &CommitterDeps,
    op: AdminOp,
    builder: &mut CommitBuilder,
) -> Result<AdminOutcome, AdminError> {
    let stored = |e: StorageError| (KafkaCode::KafkaStorageError, e.to_string());
    let (op, validate_only) = match op {
        AdminOp::CreateTopic {
            name,
            partitions,
            configs,
            validate_only,
        } => (
            Some(CatalogOp::Create {
                name,
                partitions,
                configs,
            }),
            validate_only,
        ),
        AdminOp::DeleteTopic { name } => (Some(CatalogOp::Delete { name }), false),
        AdminOp::AddPartitions {
            name,
            count,
            validate_only,
        } => (
            Some(CatalogOp::AddPartitions { name, count }),
            validate_only,
        ),
        AdminOp::SetConfigs {
            name,
            configs,
            validate_only,
        } => (Some(CatalogOp::SetConfigs { name, configs }), validate_only),
        _ => (None, false),
    };
    let live: Vec<i32> = deps.live.borrow().keys().copied().collect();
    let (meta, outcome) = match op {
        None => {
            deps.meta.catch_up().await.map_err(stored)?;
            (deps.meta.meta().await, AdminOutcome::Done)
        }
        Some(op) if validate_only => {
            deps.meta.catch_up().await.map_err(stored)?;
            let meta = deps.meta.meta().await;
            let (_, outcome) = catalog::changes(&meta, &op, &live)?;
            return Ok(outcome);
        }
        Some(op) => {
            let mut decided: Option<Result<AdminOutcome, AdminError>> = None;
            let appended = deps
                .meta
                .append_with(|meta| match catalog::changes(meta, &op, &live) {
                    Ok((commands, outcome)) => {
                        decided = Some(Ok(outcome));
                        Ok(commands)
                    }
                    Err(e) => {
                        let why = e.1.clone();
                        decided = Some(Err(e));
                        Err(Refused::Invalid(why))
                    }
                })
                .await;
            match (appended, decided) {
                (Ok((_, meta)), Some(Ok(outcome))) => (meta, outcome),
                (Err(AppendError::Refused(_)), Some(Err(e))) => return Err(e),
                (Err(AppendError::Refused(r)), _) => {
                    return Err((KafkaCode::InvalidRequest, r.to_string()))
                }
                (Err(AppendError::Storage(e)), _) => return Err(stored(e)),
                (Ok(_), _) => {
                    return Err((
                        KafkaCode::UnknownServerError,
                        "the metadata log decided nothing".into(),
                    ))
                }
            }
        }
    };
    let state = deps.state.read().map_err(|_| {
        (
            KafkaCode::UnknownServerError,
            "state lock poisoned".to_string(),
        )
    })?;
    for command in catalog::mirror(&meta, &state) {
        builder.push(command);
    }
    Ok(outcome)
}

/// The next producer id of this broker's block, after asking the metadata
/// log for a new block when it is used up. Nothing goes to this broker's
/// log: ids are unique across brokers and restarts because each block is
/// handed out once (a restarted broker starts a new block).
async fn producer_id(
    deps: &CommitterDeps,
    ids: &mut ProducerIds,
) -> Result<AdminOutcome, AdminError> {
    if ids.next >= ids.end {
        let node = deps.node_id;
        let (_, meta) = deps
            .meta
            .append_with(|meta| {
                Ok(vec![MetaCommand::AllocateProducerIds {
                    node,
                    first: meta.last_producer_id + 1,
                    count: PRODUCER_ID_BLOCK,
                }])
            })
            .await
            .map_err(|e| (KafkaCode::KafkaStorageError, e.to_string()))?;
        // This append's block is the last one handed out.
        ids.end = meta.last_producer_id + 1;
        ids.next = ids.end - PRODUCER_ID_BLOCK;
    }
    let id = ids.next;
    ids.next += 1;
    Ok(AdminOutcome::ProducerId(id))
}

/// How long handlers wait for the committer before answering with a
/// timeout (the committer itself never gives up on a write).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
