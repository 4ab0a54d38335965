//! Produce, Fetch and ListOffsets.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse, ResponseKind,
};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{str, HandlerFuture};
use crate::batch::{self, BatchError};
use crate::broker::Shared;
use crate::committer::{ProduceResult, REPLY_TIMEOUT};
use crate::error::KafkaCode;
use crate::state::BatchLoc;

/// Longest a fetch may wait for data, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);

enum Slot {
    Done(KafkaCode, Option<String>),
    Waiting(oneshot::Receiver<ProduceResult>),
}

/// Validates each partition's batch and hands it to the committer now; the
/// returned future waits for durability.
pub(super) fn produce(
    shared: Arc<Shared>,
    req: ProduceRequest,
    _version: i16,
) -> Option<HandlerFuture> {
    let acks = req.acks;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let slot = if !matches!(acks, -1..=1) {
                Slot::Done(
                    KafkaCode::InvalidRequest,
                    Some(format!("invalid acks {acks}")),
                )
            } else {
                match submit(&shared, &name, p.index, p.records) {
                    Ok(rx) => Slot::Waiting(rx),
                    Err((code, msg)) => {
                        tracing::debug!(topic = %name, partition = p.index, ?code, msg, "produce refused");
                        Slot::Done(code, Some(msg))
                    }
                }
            };
            parts.push((p.index, slot));
        }
        topics.push((t.name, parts));
    }
    if acks == 0 {
        // Nobody waits for the answer; the appends proceed regardless.
        return None;
    }
    Some(Box::pin(async move {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, parts) in topics {
            let mut out = Vec::with_capacity(parts.len());
            for (index, slot) in parts {
                let (code, base, msg) = match slot {
                    Slot::Done(code, msg) => (code, -1, msg),
                    Slot::Waiting(rx) => match tokio::time::timeout_at(deadline, rx).await {
                        Ok(Ok(Ok(base))) => (KafkaCode::None, base, None),
                        Ok(Ok(Err(code))) => (code, -1, None),
                        Ok(Err(_)) => (KafkaCode::KafkaStorageError, -1, None),
                        Err(_) => (KafkaCode::RequestTimedOut, -1, None),
                    },
                };
                let log_start = shared
                    .state
                    .read()
                    .ok()
                    .and_then(|s| s.partition(name.0.as_str(), index).map(|p| p.log_start))
                    .unwrap_or(-1);
                out.push(
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(code.code())
                        .with_base_offset(base)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(log_start)
                        .with_error_message(msg.map(|m| str(&m))),
                );
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(out),
            );
        }
        ResponseKind::Produce(ProduceResponse::default().with_responses(responses))
    }))
}

fn submit(
    shared: &Shared,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
) -> Result<oneshot::Receiver<ProduceResult>, (KafkaCode, String)> {
    shared.check_leader(topic, partition).map_err(|code| {
        (
            code,
            format!("this broker does not lead {topic}-{partition}"),
        )
    })?;
    let records = records.ok_or((KafkaCode::InvalidRecord, "no records".to_string()))?;
    let header = batch::validate_single(&records).map_err(|e| {
        let code = match e {
            BatchError::Crc { .. } => KafkaCode::CorruptMessage,
            BatchError::Magic(_) => KafkaCode::UnsupportedForMessageFormat,
            _ => KafkaCode::InvalidRecord,
        };
        (code, e.to_string())
    })?;
    // Record counts must be plausible for the bytes sent: stored batches are
    // decoded later (ListOffsets by time) by a codec that sizes its buffers
    // from the count.
    gatehouse_wire::check_record_batches(&records)
        .map_err(|e| (KafkaCode::InvalidRecord, e.to_string()))?;
    if header.is_control() || header.is_transactional() {
        return Err((
            KafkaCode::InvalidRecord,
            "transactional and control batches are not supported".to_string(),
        ));
    }
    shared
        .committer
        .produce(topic, partition, header, records)
        .map_err(|_| {
            (
                KafkaCode::NotLeaderOrFollower,
                "broker is shutting down".to_string(),
            )
        })
}

struct PartitionPlan {
    error: KafkaCode,
    high_watermark: i64,
    log_start: i64,
    locs: Vec<BatchLoc>,
}

/// Serves a fetch, waiting up to `max_wait_ms` for `min_bytes` of data.
pub(super) async fn fetch(shared: Arc<Shared>, req: FetchRequest, _version: i16) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + wait;
    let mut commits = shared.commits.subscribe();
    loop {
        commits.borrow_and_update();
        let (resp, bytes, errors) = gather(&shared, &req).await;
        if bytes >= req.min_bytes.max(1) as usize || errors || Instant::now() >= deadline {
            return resp;
        }
        match tokio::time::timeout_at(deadline, commits.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return resp,
            Err(_) => return resp,
        }
    }
}

fn plan(shared: &Shared, req: &FetchRequest) -> Vec<Vec<PartitionPlan>> {
    let Ok(state) = shared.state.read() else {
        return Vec::new();
    };
    let mut budget = req.max_bytes.max(0) as usize;
    let mut first = true;
    req.topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|fp| {
                    if let Err(error) = shared.check_leader(t.topic.0.as_str(), fp.partition) {
                        return PartitionPlan {
                            error,
                            high_watermark: -1,
                            log_start: -1,
                            locs: Vec::new(),
                        };
                    }
                    let Some(p) = state.partition(t.topic.0.as_str(), fp.partition) else {
                        return PartitionPlan {
                            error: KafkaCode::UnknownTopicOrPartition,
                            high_watermark: -1,
                            log_start: -1,
                            locs: Vec::new(),
                        };
                    };
                    let mut plan = PartitionPlan {
                        error: KafkaCode::None,
                        high_watermark: p.next_offset,
                        log_start: p.log_start,
                        locs: Vec::new(),
                    };
                    if fp.fetch_offset < p.log_start || fp.fetch_offset > p.next_offset {
                        plan.error = KafkaCode::OffsetOutOfRange;
                        return plan;
                    }
                    let mut part_budget = fp.partition_max_bytes.max(0) as usize;
                    for loc in p.batches.range(p.batch_index(fp.fetch_offset)..) {
                        let len = loc.len as usize;
                        // The first batch of the response always goes out,
                        // however large, so a consumer can never get stuck.
                        if !(first || (len <= part_budget && len <= budget)) {
                            break;
                        }
                        first = false;
                        part_budget = part_budget.saturating_sub(len);
                        budget = budget.saturating_sub(len);
                        plan.locs.push(*loc);
                    }
                    plan
                })
                .collect()
        })
        .collect()
}

async fn read_locs(
    shared: &Shared,
    locs: &[BatchLoc],
) -> Result<Bytes, crate::error::StorageError> {
    // Batches written in the same commit object are usually adjacent: read
    // each run with one range request.
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for l in locs {
        match runs.last_mut() {
            Some((obj, pos, len)) if *obj == l.object && *pos + *len == l.pos => {
                *len += l.len as u64
            }
            _ => runs.push((l.object, l.pos, l.len as u64)),
        }
    }
    if let [(obj, pos, len)] = runs[..] {
        return shared.storage.read_range(obj, pos, len).await;
    }
    let mut out = BytesMut::new();
    for (obj, pos, len) in runs {
        out.extend_from_slice(&shared.storage.read_range(obj, pos, len).await?);
    }
    Ok(out.freeze())
}

async fn gather(shared: &Shared, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let plans = plan(shared, req);
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(req.topics.len());
    for (t, parts) in req.topics.iter().zip(plans) {
        let mut out = Vec::with_capacity(parts.len());
        for (fp, plan) in t.partitions.iter().zip(parts) {
            let mut error = plan.error;
            let records = if plan.locs.is_empty() {
                Bytes::new()
            } else {
                match read_locs(shared, &plan.locs).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(topic = %t.topic.0.as_str(), partition = fp.partition, error = %e, "read failed");
                        error = KafkaCode::KafkaStorageError;
                        Bytes::new()
                    }
                }
            };
            errors |= error != KafkaCode::None;
            total += records.len();
            out.push(
                PartitionData::default()
                    .with_partition_index(fp.partition)
                    .with_error_code(error.code())
                    .with_high_watermark(plan.high_watermark)
                    .with_last_stable_offset(plan.high_watermark)
                    .with_log_start_offset(plan.log_start)
                    .with_records(Some(records)),
            );
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(out),
        );
    }
    (
        FetchResponse::default().with_responses(responses),
        total,
        errors,
    )
}

/// Largest batch (in records) ListOffsets decodes to find an exact offset.
const MAX_DECODED_RECORDS: i64 = 1_000_000;

/// Timestamps with a special meaning in ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) async fn list_offsets(
    shared: Arc<Shared>,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let (error, offset, timestamp) =
                match lookup_offset(&shared, t.name.0.as_str(), p.partition_index, p.timestamp)
                    .await
                {
                    Ok((o, ts)) => (KafkaCode::None, o, ts),
                    Err(code) => (code, -1, -1),
                };
            parts.push(
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.code())
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(if version >= 4 {
                        shared
                            .leader(t.name.0.as_str(), p.partition_index)
                            .map_or(-1, |(_, epoch)| epoch)
                    } else {
                        -1
                    }),
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup_offset(
    shared: &Shared,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<(i64, i64), KafkaCode> {
    shared.check_leader(topic, partition)?;
    let candidate = {
        let state = shared
            .state
            .read()
            .map_err(|_| KafkaCode::UnknownServerError)?;
        let p = state
            .partition(topic, partition)
            .ok_or(KafkaCode::UnknownTopicOrPartition)?;
        match ts {
            LATEST => return Ok((p.next_offset, -1)),
            EARLIEST | EARLIEST_LOCAL => return Ok((p.log_start, -1)),
            MAX_TIMESTAMP => p
                .batches
                .iter()
                .filter(|b| b.last >= p.log_start)
                .max_by_key(|b| b.max_ts)
                .copied(),
            t if t >= 0 => p
                .batches
                .iter()
                .find(|b| b.last >= p.log_start && b.max_ts >= t)
                .copied(),
            _ => return Err(KafkaCode::InvalidRequest),
        }
    };
    let Some(loc) = candidate else {
        return Ok((-1, -1));
    };
    if loc.last - loc.base + 1 > MAX_DECODED_RECORDS {
        // Too many records to decode for one answer: the batch's first
        // offset is a safe (earlier) answer for a timestamp search.
        return Ok((loc.base.max(0), loc.max_ts));
    }
    // Only the one batch that holds the answer is decompressed.
    let mut data = shared
        .storage
        .read_range(loc.object, loc.pos, loc.len as u64)
        .await
        .map_err(|_| KafkaCode::KafkaStorageError)?;
    let set = RecordBatchDecoder::decode(&mut data).map_err(|_| KafkaCode::CorruptMessage)?;
    let log_start = shared
        .state
        .read()
        .ok()
        .and_then(|s| s.partition(topic, partition).map(|p| p.log_start))
        .unwrap_or(0);
    let live = set.records.iter().filter(|r| r.offset >= log_start);
    let found = if ts == MAX_TIMESTAMP {
        live.max_by_key(|r| (r.timestamp, -r.offset))
    } else {
        live.filter(|r| r.timestamp >= ts).min_by_key(|r| r.offset)
    };
    Ok(found.map(|r| (r.offset, r.timestamp)).unwrap_or((-1, -1)))
}
