//! Compaction of `cleanup.policy=compact` topics, in the background.
//!
//! A pass looks at every partition of a compacted topic and picks those
//! worth it: the bytes not yet compacted (the *dirty* part) are at least
//! `min.cleanable.dirty.ratio` of the compactable bytes, or a kept
//! tombstone's delete horizon has passed. The compactable part of a
//! partition excludes its active segment (its batches in the newest commit
//! object that holds any of them) and every batch with a record younger
//! than `min.compaction.lag.ms`.
//!
//! For each partition picked:
//!
//! 1. the dirty batches are read and the newest offset of every key noted
//!    (within a memory budget; what does not fit waits for the next pass);
//! 2. every compactable batch from the partition's first is rewritten
//!    (see [`crate::batch::compact`]): a record stays if no newer one of its
//!    key exists, tombstones get a delete horizon and go once it passed,
//!    base offsets and last offset deltas stay, empty batches go;
//! 3. the rewritten batches are appended to a new object, `compacted/<id>`,
//!    whose id was first reserved through the commit log;
//! 4. once the objects are written, one `Compact` command per group of
//!    finished partitions swaps each partition's run of old batches for the
//!    new ones, through the committer like any other change.
//!
//! Produce and fetch never wait for any of this: the CPU work runs on
//! blocking threads, reads are plain range reads, and the committer only
//! sees two small commands per object. A broker killed at any point leaves
//! either the old batches (the swap never committed; the reserved object is
//! deleted by the next broker's passes, as the log says it was never
//! settled) or the
//! new ones: nothing is lost or read twice. Objects no batch points to any
//! more are deleted one pass after they became garbage, so fetches that
//! planned a read just before the swap still find them. (Deleting an
//! unsettled output is safe because a broker's first act is a commit of its
//! own: a swap its dead predecessor still had in flight can no longer land.)

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use crate::batch::compact::{self, LatestOffsets, Rules};
use crate::committer::{AdminOp, AdminOutcome, Committer};
use crate::error::{BrokerError, StorageError};
use crate::log::CompactedRun;
use crate::state::{BatchLoc, State};
use crate::storage::{compacted_object, Storage, COMPACTED};
use crate::topic_config;

/// Bytes of input read and rewritten at a time.
const CHUNK_BYTES: u64 = 4 << 20;
/// A compaction output is written once it holds this much.
const OBJECT_BYTES: usize = 16 << 20;
/// Memory for the newest offsets of the keys of one partition's dirty part.
const KEY_BUDGET: usize = 64 << 20;
/// Estimated bytes of one entry of the key map besides the key.
const KEY_OVERHEAD: usize = 48;

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Partitions whose compacted batches were swapped in.
    pub partitions: usize,
    /// Partitions compacted but not swapped in, because retention or
    /// DeleteRecords changed them meanwhile.
    pub stale: usize,
    /// Batches rewritten.
    pub batches: u64,
    /// Bytes of batches rewritten (read).
    pub bytes_read: u64,
    /// Bytes of compacted batches written.
    pub bytes_written: u64,
    /// Records in the batches rewritten.
    pub records_read: u64,
    /// Records kept.
    pub records_kept: u64,
    /// Compaction outputs written.
    pub objects_written: usize,
    /// Compaction outputs deleted because nothing points to them any more.
    pub objects_deleted: usize,
    /// Of those, outputs reserved by a pass that never committed (the
    /// broker was killed, or the pass failed).
    pub abandoned_deleted: usize,
    /// How long the pass took.
    pub elapsed: Duration,
}

/// Where a test stops a pass, as if the broker were killed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Only the crash tests stop passes.
pub(crate) enum StopAt {
    /// After reserving the first output, before writing it.
    Reserved,
    /// After writing the first output, before committing the swap.
    Written,
}

/// What a pass works with.
pub(crate) struct Deps<'a> {
    pub storage: &'a Storage,
    pub state: &'a RwLock<State>,
    pub committer: &'a Committer,
}

/// Kept between passes: garbage seen by the previous pass, and where this
/// broker's own reservations start.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    dead_seen: BTreeSet<u64>,
    /// The first compaction output id this broker reserved (or will).
    first_own: u64,
}

impl Maintenance {
    /// For a broker whose recovered state (after its start-up commit) is
    /// `state`.
    pub(crate) fn new(state: &State) -> Self {
        Self {
            dead_seen: BTreeSet::new(),
            first_own: compacted_object(state.last_object_id + 1),
        }
    }
}

/// One partition to compact.
struct Plan {
    topic: Uuid,
    name: String,
    partition: i32,
    /// The compactable batches, from the partition's first.
    locs: Vec<BatchLoc>,
    /// Index of the first dirty batch.
    dirty_from: usize,
    delete_retention_ms: i64,
}

fn lock_err() -> BrokerError {
    BrokerError::Config("state lock poisoned".into())
}

/// Partitions worth compacting now.
fn plans(state: &State, now: i64) -> Vec<Plan> {
    let mut topics: Vec<_> = state
        .topics
        .values()
        .filter(|t| topic_config::has_policy(&t.configs, "compact"))
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for t in topics {
        let lag = topic_config::effective_i64(&t.configs, "min.compaction.lag.ms");
        let ratio = topic_config::effective_f64(&t.configs, "min.cleanable.dirty.ratio");
        let delete_retention_ms = topic_config::effective_i64(&t.configs, "delete.retention.ms");
        for (index, p) in t.partitions.iter().enumerate() {
            let Some(last) = p.batches.back() else {
                continue;
            };
            // The active segment: the batches in the newest object holding
            // the partition's data.
            let mut end = p.batches.len();
            while end > 0 && p.batches[end - 1].object == last.object {
                end -= 1;
            }
            // Nothing younger than min.compaction.lag.ms.
            if lag > 0 {
                if let Some(young) = p
                    .batches
                    .iter()
                    .take(end)
                    .position(|b| b.max_ts > now.saturating_sub(lag))
                {
                    end = young;
                }
            }
            if end == 0 {
                continue;
            }
            let dirty_from = p.batch_index(p.clean_end).min(end);
            let total: u64 = p.batches.iter().take(end).map(|b| b.len as u64).sum();
            let dirty: u64 = p.batches.range(dirty_from..end).map(|b| b.len as u64).sum();
            let due = p.tombstones_due.is_some_and(|d| d <= now);
            if (dirty > 0 && dirty as f64 >= ratio * total as f64) || due {
                out.push(Plan {
                    topic: t.id,
                    name: t.name.clone(),
                    partition: index as i32,
                    locs: p.batches.range(..end).copied().collect(),
                    dirty_from,
                    delete_retention_ms,
                });
            }
        }
    }
    out
}

/// Consecutive slices of `locs` of about [`CHUNK_BYTES`] each.
fn chunks(locs: &[BatchLoc]) -> Vec<&[BatchLoc]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, l) in locs.iter().enumerate() {
        bytes += l.len as u64;
        if bytes >= CHUNK_BYTES {
            out.push(&locs[start..=i]);
            start = i + 1;
            bytes = 0;
        }
    }
    if start < locs.len() {
        out.push(&locs[start..]);
    }
    out
}

/// Reads the batches at `locs`, one range read per adjacent run.
async fn read(storage: &Storage, locs: &[BatchLoc]) -> Result<Vec<Bytes>, StorageError> {
    let mut out = Vec::with_capacity(locs.len());
    let mut i = 0;
    while i < locs.len() {
        let first = locs[i];
        let mut j = i + 1;
        let mut len = first.len as u64;
        while j < locs.len() && locs[j].object == first.object && locs[j].pos == first.pos + len {
            len += locs[j].len as u64;
            j += 1;
        }
        let data = storage.read_range(first.object, first.pos, len).await?;
        if data.len() as u64 != len {
            return Err(StorageError::Corrupt(format!(
                "object {}: short read at {}",
                first.object, first.pos
            )));
        }
        let mut at = 0usize;
        for l in &locs[i..j] {
            out.push(data.slice(at..at + l.len as usize));
            at += l.len as usize;
        }
        i = j;
    }
    Ok(out)
}

/// Runs CPU work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Config(format!("compaction worker failed: {e}")))
}

/// The output object being filled, and the swaps waiting for it.
#[derive(Default)]
struct Output {
    /// Reserved id and contents of the object being filled.
    current: Option<(u64, BytesMut)>,
    /// Written ids not yet settled by a commit.
    written: Vec<u64>,
    /// Finished partitions whose swap waits for the objects to be written.
    runs: Vec<CompactedRun>,
}

/// A compaction pass in progress.
struct Pass<'a> {
    deps: &'a Deps<'a>,
    out: Output,
    stats: CompactionStats,
    stop: Option<StopAt>,
    stopped: bool,
}

impl Pass<'_> {
    async fn admin(&self, op: AdminOp) -> Result<AdminOutcome, BrokerError> {
        self.deps
            .committer
            .admin(op)
            .await
            .map_err(|(code, message)| BrokerError::Refused { code, message })
    }

    /// Appends a batch to the current output; returns its object and
    /// position.
    async fn append(&mut self, batch: &[u8]) -> Result<(u64, u64), BrokerError> {
        if self.out.current.is_none() {
            let AdminOutcome::Reserved(id) = self.admin(AdminOp::ReserveObject).await? else {
                return Err(BrokerError::Config("unexpected reservation answer".into()));
            };
            self.out.current = Some((id, BytesMut::with_capacity(OBJECT_BYTES)));
            if self.stop == Some(StopAt::Reserved) {
                self.stopped = true;
            }
        }
        let Some((id, buf)) = self.out.current.as_mut() else {
            return Err(BrokerError::Config("no output object".into()));
        };
        let pos = buf.len() as u64;
        buf.extend_from_slice(batch);
        Ok((compacted_object(*id), pos))
    }

    /// Writes the current output, if any.
    async fn flush(&mut self) -> Result<(), BrokerError> {
        if let Some((id, buf)) = self.out.current.take() {
            let len = buf.len();
            self.deps
                .storage
                .put_object(compacted_object(id), buf.freeze())
                .await?;
            self.out.written.push(id);
            self.stats.objects_written += 1;
            self.stats.bytes_written += len as u64;
            if self.stop == Some(StopAt::Written) {
                self.stopped = true;
            }
        }
        Ok(())
    }

    /// Writes the current output and swaps in every finished partition.
    async fn commit(&mut self) -> Result<(), BrokerError> {
        if self.stopped {
            return Ok(());
        }
        self.flush().await?;
        if self.stopped || (self.out.written.is_empty() && self.out.runs.is_empty()) {
            return Ok(());
        }
        let objects = std::mem::take(&mut self.out.written);
        let runs = std::mem::take(&mut self.out.runs);
        let AdminOutcome::Compacted(applied) =
            self.admin(AdminOp::Compact { objects, runs }).await?
        else {
            return Err(BrokerError::Config("unexpected compaction answer".into()));
        };
        for ok in applied {
            if ok {
                self.stats.partitions += 1;
            } else {
                self.stats.stale += 1;
            }
        }
        Ok(())
    }

    /// The newest offset of each key in the dirty part, and where the
    /// part that fit in the budget ends (an index into `plan.locs`).
    async fn index(&mut self, plan: &Plan) -> Result<(LatestOffsets, usize), BrokerError> {
        let mut latest = LatestOffsets::new();
        let mut used = 0usize;
        let mut end = plan.dirty_from;
        for chunk in chunks(&plan.locs[plan.dirty_from..]) {
            let raws = read(self.deps.storage, chunk).await?;
            let fitted = end > plan.dirty_from;
            let (back, added, n) = blocking(move || {
                let mut used = used;
                let mut n = 0;
                for raw in &raws {
                    if (fitted || n > 0) && used >= KEY_BUDGET {
                        break;
                    }
                    let before = latest.len();
                    match compact::index_keys(raw, &mut latest) {
                        Ok(bytes) => used += bytes + (latest.len() - before) * KEY_OVERHEAD,
                        // Its keys stay unknown: older records of them are
                        // kept, which loses nothing.
                        Err(e) => tracing::warn!(error = %e, "cannot index stored batch"),
                    }
                    n += 1;
                }
                (latest, used, n)
            })
            .await?;
            latest = back;
            used = added;
            end += n;
            if n < chunk.len() {
                break;
            }
        }
        Ok((latest, end))
    }

    async fn partition(&mut self, plan: Plan, now: i64) -> Result<(), BrokerError> {
        let (latest, end) = self.index(&plan).await?;
        let latest = Arc::new(latest);
        let rules = Rules {
            now,
            delete_retention_ms: plan.delete_retention_ms,
        };
        let locs = &plan.locs[..end];
        let (Some(first), Some(last)) = (locs.first(), locs.last()) else {
            return Ok(());
        };
        let mut run = CompactedRun {
            topic: plan.topic,
            partition: plan.partition,
            from: first.base,
            to: last.last,
            count: locs.len() as u32,
            batches: Vec::new(),
            clean_end: last.last + 1,
            tombstones_due: None,
        };
        for chunk in chunks(locs) {
            let raws = read(self.deps.storage, chunk).await?;
            let latest = latest.clone();
            let results = blocking(move || {
                raws.iter()
                    .map(|raw| match compact::compact_batch(raw, &latest, &rules) {
                        Ok(c) => c,
                        Err(e) => {
                            // Kept as it is: compaction never loses data.
                            tracing::warn!(error = %e, "cannot compact stored batch; kept");
                            compact::Compacted {
                                batch: Some(raw.clone()),
                                max_ts: i64::MIN,
                                records_in: 0,
                                records_out: 0,
                                tombstones_due: None,
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
            for (loc, c) in chunk.iter().zip(results) {
                self.stats.batches += 1;
                self.stats.bytes_read += loc.len as u64;
                self.stats.records_read += c.records_in as u64;
                self.stats.records_kept += c.records_out as u64;
                if let Some(due) = c.tombstones_due {
                    run.tombstones_due = Some(run.tombstones_due.map_or(due, |d| d.min(due)));
                }
                let Some(batch) = c.batch else {
                    continue;
                };
                let (object, pos) = self.append(&batch).await?;
                if self.stopped {
                    return Ok(());
                }
                run.batches.push(BatchLoc {
                    base: loc.base,
                    last: loc.last,
                    max_ts: if c.max_ts == i64::MIN {
                        loc.max_ts
                    } else {
                        c.max_ts
                    },
                    object,
                    pos,
                    len: batch.len() as u32,
                });
                if self
                    .out
                    .current
                    .as_ref()
                    .is_some_and(|(_, b)| b.len() >= OBJECT_BYTES)
                {
                    // Finished partitions go in with this object; this one
                    // waits for the object holding its last batch.
                    self.commit().await?;
                    if self.stopped {
                        return Ok(());
                    }
                }
            }
        }
        tracing::debug!(
            topic = %plan.name,
            partition = plan.partition,
            batches = run.count,
            kept = run.batches.len(),
            "partition compacted"
        );
        self.out.runs.push(run);
        Ok(())
    }
}

/// Deletes compaction outputs that nothing points to and that were already
/// garbage at the previous pass (a fetch that planned a read before the
/// swap has long finished by then). Reservations a broker that ran before
/// this one left unsettled go at once: nothing ever read them, and its
/// settling commit can no longer land (see `claim`). This broker's own
/// unsettled reservations stay until the next start: after an ambiguous
/// commit failure the swap may be durable without the state knowing, and
/// deleting its output would lose data.
async fn collect_garbage(
    deps: &Deps<'_>,
    maintenance: &mut Maintenance,
    stats: &mut CompactionStats,
) -> Result<(), BrokerError> {
    let node = {
        let s = deps.state.read().map_err(|_| lock_err())?;
        crate::storage::object_node(s.last_seq)
    };
    if crate::broker::keeps_objects(deps.storage, node).await? {
        return Ok(());
    }
    let (dead, reserved) = {
        let s = deps.state.read().map_err(|_| lock_err())?;
        (s.dead_compacted(), s.reserved.clone())
    };
    let mut gone = Vec::new();
    for object in &dead {
        let abandoned = reserved.contains(object);
        if abandoned && *object >= maintenance.first_own {
            continue;
        }
        if abandoned || maintenance.dead_seen.contains(object) {
            deps.storage.delete_commit(*object).await?;
            gone.push(*object);
            stats.objects_deleted += 1;
            if abandoned {
                stats.abandoned_deleted += 1;
            }
        }
    }
    // Settle the abandoned reservations in the log too, so that replaying
    // it after a restart does not bring them back.
    let settled: Vec<u64> = gone
        .iter()
        .filter(|o| reserved.contains(o))
        .map(|o| o - COMPACTED)
        .collect();
    if !settled.is_empty() {
        deps.committer
            .admin(AdminOp::Compact {
                objects: settled,
                runs: Vec::new(),
            })
            .await
            .map_err(|(code, message)| BrokerError::Refused { code, message })?;
    }
    if !gone.is_empty() {
        let mut s = deps.state.write().map_err(|_| lock_err())?;
        for object in &gone {
            s.objects.remove(object);
            s.reserved.remove(object);
        }
    }
    maintenance.dead_seen = dead
        .into_iter()
        .filter(|o| !gone.contains(o) && !reserved.contains(o))
        .collect();
    Ok(())
}

/// Runs one pass; the caller holds the maintenance lock, so no other pass
/// or clean-up runs meanwhile.
pub(crate) async fn pass(
    deps: &Deps<'_>,
    maintenance: &mut Maintenance,
    now: i64,
    stop: Option<StopAt>,
) -> Result<CompactionStats, BrokerError> {
    let started = Instant::now();
    let mut stats = CompactionStats::default();
    collect_garbage(deps, maintenance, &mut stats).await?;
    let plans = {
        let s = deps.state.read().map_err(|_| lock_err())?;
        plans(&s, now)
    };
    let mut pass = Pass {
        deps,
        out: Output::default(),
        stats,
        stop,
        stopped: false,
    };
    for plan in plans {
        pass.partition(plan, now).await?;
        if pass.stopped {
            break;
        }
    }
    pass.commit().await?;
    pass.stats.elapsed = started.elapsed();
    Ok(pass.stats)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::*;
    use crate::batch;
    use crate::broker::{now_ms, Broker, BrokerConfig};

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: dir.join("store").to_string_lossy().into_owned(),
            fsync: false,
            housekeeping_interval: Duration::from_secs(3600),
            compaction_interval: Duration::from_secs(3600),
            ..BrokerConfig::default()
        }
    }

    /// A batch of `(key, value)` records; `None` values are tombstones.
    fn keyed(records: &[(String, Option<String>)], compression: Compression) -> Bytes {
        let now = now_ms();
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1 + i as i32,
                timestamp: now,
                key: Some(Bytes::from(k.clone())),
                value: v.clone().map(Bytes::from),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.freeze()
    }

    async fn produce(b: &Broker, topic: &str, batch: Bytes) -> i64 {
        let header = batch::validate_single(&batch).expect("valid batch");
        let rx = b
            .shared
            .committer
            .produce(topic, 0, header, batch)
            .expect("committer running");
        rx.await.expect("answered").expect("stored")
    }

    /// Every record of partition 0 from its log start: (offset, key, value).
    async fn read_all(b: &Broker, topic: &str) -> Vec<(i64, String, Option<String>)> {
        let (locs, start) = {
            let s = b.shared.state.read().expect("state");
            let p = s.partition(topic, 0).expect("partition");
            (p.batches.iter().copied().collect::<Vec<_>>(), p.log_start)
        };
        let mut out = Vec::new();
        for l in locs {
            let mut data = b
                .shared
                .storage
                .read_range(l.object, l.pos, l.len as u64)
                .await
                .expect("batch readable");
            let set = RecordBatchDecoder::decode(&mut data).expect("batch decodes");
            for r in set.records.into_iter().filter(|r| r.offset >= start) {
                let key = String::from_utf8(r.key.expect("keyed").to_vec()).expect("utf8");
                let value = r
                    .value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
                out.push((r.offset, key, value));
            }
        }
        out
    }

    /// Newest value per key, tombstones deleting.
    fn fold(records: &[(i64, String, Option<String>)]) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (_, k, v) in records {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    }

    async fn pass_with_stop(b: &Broker, stop: Option<StopAt>) -> CompactionStats {
        let mut m = b.shared.maintenance.lock().await;
        let deps = Deps {
            storage: &b.shared.storage,
            state: &b.shared.state,
            committer: &b.shared.committer,
        };
        pass(&deps, &mut m, now_ms(), stop).await.expect("pass")
    }

    /// A pass stopped after reserving its output, after writing it, or
    /// not at all, then the broker killed: the restarted broker serves the
    /// same newest value per key at the same offsets, and clean-up removes
    /// the abandoned output so the store holds only referenced objects.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_killed_anywhere_loses_and_duplicates_nothing() {
        for stop in [None, Some(StopAt::Reserved), Some(StopAt::Written)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let b = Broker::start(config(dir.path())).await.expect("start");
            let configs = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("min.cleanable.dirty.ratio".to_string(), "0".to_string()),
                ("delete.retention.ms".to_string(), "0".to_string()),
            ]);
            b.create_topic("c", 1, configs).await.expect("create");
            for round in 0..12 {
                let records: Vec<(String, Option<String>)> = (0..6)
                    .map(|k| {
                        let v = (round + k) % 5 != 0;
                        (format!("k{k}"), v.then(|| format!("r{round}k{k}")))
                    })
                    .collect();
                let codec = [Compression::None, Compression::Zstd, Compression::Gzip][round % 3];
                produce(&b, "c", keyed(&records, codec)).await;
            }
            // The active segment: never compacted.
            produce(
                &b,
                "c",
                keyed(&[("k0".into(), Some("last".into()))], Compression::None),
            )
            .await;
            let before = read_all(&b, "c").await;
            let model = fold(&before);

            let stats = pass_with_stop(&b, stop).await;
            if stop.is_none() {
                assert_eq!(stats.partitions, 1, "{stats:?}");
                assert!(stats.records_kept < stats.records_read, "{stats:?}");
            }
            drop(b); // killed: no final snapshot
            let b = Broker::start(config(dir.path())).await.expect("restart");
            let after = read_all(&b, "c").await;
            assert_eq!(fold(&after), model, "stop {stop:?}");
            for r in &after {
                assert!(before.contains(r), "{r:?} was not written at that offset");
            }
            let offsets: Vec<i64> = after.iter().map(|r| r.0).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "offsets kept in order"
            );
            match stop {
                None => {
                    // Below the active segment, one record per key.
                    let compacted = &after[..after.len() - 1];
                    let keys: BTreeSet<&String> = compacted.iter().map(|r| &r.1).collect();
                    assert_eq!(keys.len(), compacted.len(), "{after:?}");
                }
                Some(_) => assert_eq!(after, before, "the swap never happened"),
            }

            // Later passes finish the job and clean up.
            let first = b.compact_now().await.expect("pass");
            if stop.is_some() {
                assert_eq!(first.abandoned_deleted, 1, "{first:?}");
            }
            // Tombstones got a horizon of now + 0; a later pass drops them,
            // and garbage goes one pass after it became garbage.
            for _ in 0..4 {
                b.compact_now().await.expect("pass");
            }
            let done = read_all(&b, "c").await;
            assert_eq!(fold(&done), model);
            assert!(
                done.iter()
                    .all(|r| r.2.is_some() || r.0 == before.last().map_or(-1, |l| l.0)),
                "tombstones past delete.retention.ms are gone: {done:?}"
            );
            let referenced: BTreeSet<u64> = {
                let s = b.shared.state.read().expect("state");
                s.objects
                    .iter()
                    .filter(|(o, n)| crate::storage::is_compacted(**o) && **n > 0)
                    .map(|(o, _)| *o)
                    .collect()
            };
            let stored: BTreeSet<u64> = b
                .shared
                .storage
                .list_compacted()
                .await
                .expect("list")
                .into_iter()
                .collect();
            assert_eq!(stored, referenced, "only referenced outputs remain");
            b.shutdown().await.expect("shutdown");
            let b = Broker::start(config(dir.path())).await.expect("restart");
            assert_eq!(read_all(&b, "c").await, done, "from the snapshot");
            b.shutdown().await.expect("shutdown");
        }
    }

    /// A run is swapped in only if the partition still holds the batches
    /// it replaces: DeleteRecords moving the log start meanwhile makes it
    /// stale, and the partition keeps what DeleteRecords left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_runs_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = Broker::start(config(dir.path())).await.expect("start");
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("min.cleanable.dirty.ratio".to_string(), "0".to_string()),
        ]);
        b.create_topic("s", 1, configs).await.expect("create");
        for i in 0..4 {
            produce(
                &b,
                "s",
                keyed(&[("k".into(), Some(format!("v{i}")))], Compression::None),
            )
            .await;
        }
        let run = {
            let s = b.shared.state.read().expect("state");
            let p = s.partition("s", 0).expect("partition");
            let t = s.topic("s").expect("topic");
            CompactedRun {
                topic: t.id,
                partition: 0,
                from: 0,
                to: 2,
                count: 3,
                batches: vec![p.batches[2]],
                clean_end: 3,
                tombstones_due: None,
            }
        };
        b.shared
            .committer
            .admin(AdminOp::SetLogStart {
                entries: vec![("s".into(), 0, 1)],
            })
            .await
            .expect("delete records");
        let out = b
            .shared
            .committer
            .admin(AdminOp::Compact {
                objects: vec![],
                runs: vec![run],
            })
            .await
            .expect("compact");
        assert!(matches!(out, AdminOutcome::Compacted(v) if v == [false]));
        let offsets: Vec<i64> = read_all(&b, "s").await.iter().map(|r| r.0).collect();
        assert_eq!(offsets, [1, 2, 3]);
    }
}
