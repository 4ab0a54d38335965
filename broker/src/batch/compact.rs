//! Compaction of one stored batch: keep the records that are the newest of
//! their key, drop tombstones whose delete horizon has passed, and write
//! what is left as a batch with the same base offset and last offset delta
//! (so the offsets of everything kept, and the next offset after the batch,
//! stay what they were; the records dropped leave gaps, as in Kafka).
//!
//! Records are not decoded into structs and re-encoded: the batch is
//! decompressed, each record's framing is read, and kept records are copied
//! byte for byte (headers included, duplicates and all). Only the timestamp
//! delta is rewritten when the batch's base timestamp changes because it
//! now carries a delete horizon (KIP-534: attribute bit 6 set, base
//! timestamp = the time after which its tombstones may go).
//!
//! Transactional and control batches (which the broker does not accept
//! today) and batches without keyed records are left as they are.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};

use super::{parse_header, BatchHeader, ATTRIBUTES_OFFSET, CRC_OFFSET, HEADER_LEN};

/// Attribute bit: the base timestamp is the batch's delete horizon.
pub const DELETE_HORIZON: i16 = 0x40;
const COMPRESSION_MASK: i16 = 0x07;

/// Why a stored batch could not be compacted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactError {
    /// The stored batch does not parse or decompress.
    #[error("stored batch at offset {base}: {reason}")]
    Decode {
        /// Base offset of the batch.
        base: i64,
        /// What was wrong.
        reason: String,
    },
    /// The compacted batch could not be compressed.
    #[error("cannot compress compacted batch at offset {base}: {reason}")]
    Encode {
        /// Base offset of the batch.
        base: i64,
        /// What went wrong.
        reason: String,
    },
}

/// The newest offset of every key in the part of a partition being
/// compacted.
pub type LatestOffsets = HashMap<Bytes, i64>;

/// One record's place in a decompressed records section.
#[derive(Debug, Clone)]
struct RawRecord {
    /// The record's body (after its length prefix).
    body: Bytes,
    /// Where the offset delta starts in `body` (after attributes and the
    /// timestamp delta).
    after_ts: usize,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Bytes>,
    /// The value is null.
    tombstone: bool,
}

/// A batch taken apart: header plus records.
#[derive(Debug)]
struct Parsed {
    header: BatchHeader,
    leader_epoch: i32,
    records: Vec<RawRecord>,
}

fn decode_err(base: i64, reason: impl Into<String>) -> CompactError {
    CompactError::Decode {
        base,
        reason: reason.into(),
    }
}

fn read_varlong(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            // Zig-zag.
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<i32> {
    read_varlong(b, pos).and_then(|v| i32::try_from(v).ok())
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Reads one record body; `None` if it is malformed.
fn parse_record(body: Bytes) -> Option<RawRecord> {
    let b = &body[..];
    let mut pos = 1; // attributes
    let timestamp_delta = read_varlong(b, &mut pos)?;
    let after_ts = pos;
    let offset_delta = read_varint(b, &mut pos)?;
    let key_len = read_varint(b, &mut pos)?;
    let key = match key_len {
        -1 => None,
        n if n >= 0 => {
            let end = pos.checked_add(n as usize)?;
            let k = body.get(pos..end).map(|_| body.slice(pos..end))?;
            pos = end;
            Some(k)
        }
        _ => return None,
    };
    let value_len = read_varint(b, &mut pos)?;
    if value_len < -1 {
        return None;
    }
    Some(RawRecord {
        body,
        after_ts,
        timestamp_delta,
        offset_delta,
        key,
        tombstone: value_len == -1,
    })
}

fn decompress(base: i64, codec_id: i16, data: Bytes) -> Result<Bytes, CompactError> {
    let mut data = data;
    let copy = |b: &mut Bytes| Ok(b.clone());
    let out = match codec_id {
        0 => Ok(data),
        1 => <codec::Gzip as Decompressor<Bytes>>::decompress(&mut data, copy),
        2 => <codec::Snappy as Decompressor<Bytes>>::decompress(&mut data, copy),
        3 => <codec::Lz4 as Decompressor<Bytes>>::decompress(&mut data, copy),
        4 => <codec::Zstd as Decompressor<Bytes>>::decompress(&mut data, copy),
        other => return Err(decode_err(base, format!("unknown compression {other}"))),
    };
    out.map_err(|e| decode_err(base, e.to_string()))
}

fn compress(base: i64, codec_id: i16, raw: &[u8], out: &mut BytesMut) -> Result<(), CompactError> {
    let write = |b: &mut BytesMut| {
        b.put_slice(raw);
        Ok(())
    };
    let r = match codec_id {
        0 => {
            out.put_slice(raw);
            Ok(())
        }
        1 => <codec::Gzip as Compressor<BytesMut>>::compress(out, write),
        2 => <codec::Snappy as Compressor<BytesMut>>::compress(out, write),
        3 => <codec::Lz4 as Compressor<BytesMut>>::compress(out, write),
        4 => <codec::Zstd as Compressor<BytesMut>>::compress(out, write),
        other => {
            return Err(CompactError::Encode {
                base,
                reason: format!("unknown compression {other}"),
            })
        }
    };
    r.map_err(|e| CompactError::Encode {
        base,
        reason: e.to_string(),
    })
}

fn parse(batch: &Bytes) -> Result<Parsed, CompactError> {
    let header = parse_header(batch).map_err(|e| decode_err(-1, e.to_string()))?;
    let base = header.base_offset;
    let total = header.total_len();
    if header.batch_length < (HEADER_LEN as i32 - 12) || total > batch.len() {
        return Err(decode_err(base, "length runs past the stored bytes"));
    }
    let stored = u32::from_be_bytes([
        batch[CRC_OFFSET],
        batch[CRC_OFFSET + 1],
        batch[CRC_OFFSET + 2],
        batch[CRC_OFFSET + 3],
    ]);
    if crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..total]) != stored {
        return Err(decode_err(base, "CRC mismatch"));
    }
    let leader_epoch = i32::from_be_bytes([batch[12], batch[13], batch[14], batch[15]]);
    let raw = decompress(
        base,
        header.attributes & COMPRESSION_MASK,
        batch.slice(HEADER_LEN..total),
    )?;
    let count = usize::try_from(header.record_count)
        .map_err(|_| decode_err(base, "negative record count"))?;
    let mut records = Vec::with_capacity(count.min(raw.len()));
    let mut pos = 0usize;
    for _ in 0..count {
        let len = read_varint(&raw, &mut pos)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| decode_err(base, "bad record length"))?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= raw.len() && len > 0)
            .ok_or_else(|| decode_err(base, "record runs past the batch"))?;
        let r = parse_record(raw.slice(pos..end)).ok_or_else(|| decode_err(base, "bad record"))?;
        records.push(r);
        pos = end;
    }
    Ok(Parsed {
        header,
        leader_epoch,
        records,
    })
}

/// Adds the offset of every keyed record of `batch` to `latest` (later
/// batches must come later). Returns the bytes of keys newly added, for the
/// caller's memory budget.
pub fn index_keys(batch: &Bytes, latest: &mut LatestOffsets) -> Result<usize, CompactError> {
    let p = parse(batch)?;
    if p.header.is_control() || p.header.is_transactional() {
        return Ok(0);
    }
    let mut added = 0;
    for r in p.records {
        if let Some(k) = r.key {
            let offset = p.header.base_offset + r.offset_delta as i64;
            let len = k.len();
            if latest.insert(k, offset).is_none() {
                added += len;
            }
        }
    }
    Ok(added)
}

/// What compaction rules apply.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Now, in ms since the epoch.
    pub now: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// The result of compacting one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// The batch to store instead, or `None` when nothing is left.
    pub batch: Option<Bytes>,
    /// Largest timestamp of the records kept (the old one if unchanged).
    pub max_ts: i64,
    /// Records in the batch before.
    pub records_in: usize,
    /// Records kept.
    pub records_out: usize,
    /// The kept batch's delete horizon, when it keeps tombstones.
    pub tombstones_due: Option<i64>,
}

/// Compacts one stored batch: a keyed record stays if `latest` has no
/// newer offset for its key; a tombstone that stays is dropped once its
/// batch's delete horizon has passed, and a batch that keeps tombstones
/// without a horizon gets one (`now + delete.retention.ms`).
pub fn compact_batch(
    batch: &Bytes,
    latest: &LatestOffsets,
    rules: &Rules,
) -> Result<Compacted, CompactError> {
    let p = parse(batch)?;
    let h = p.header;
    let unchanged = |n: usize| Compacted {
        batch: Some(batch.slice(..h.total_len())),
        max_ts: h.max_timestamp,
        records_in: n,
        records_out: n,
        tombstones_due: None,
    };
    if h.is_control() || h.is_transactional() {
        return Ok(unchanged(p.records.len()));
    }
    let horizon = (h.attributes & DELETE_HORIZON != 0).then_some(h.base_timestamp);
    let records_in = p.records.len();
    let kept: Vec<&RawRecord> = p
        .records
        .iter()
        .filter(|r| match &r.key {
            None => true,
            Some(k) => {
                let offset = h.base_offset + r.offset_delta as i64;
                let newest = latest.get(k).is_none_or(|o| *o <= offset);
                let expired = r.tombstone && horizon.is_some_and(|t| t <= rules.now);
                newest && !expired
            }
        })
        .collect();
    let keeps_tombstones = kept.iter().any(|r| r.tombstone && r.key.is_some());
    let new_horizon = keeps_tombstones
        .then(|| horizon.unwrap_or_else(|| rules.now.saturating_add(rules.delete_retention_ms)));
    if kept.len() == records_in && new_horizon == horizon {
        let mut same = unchanged(records_in);
        same.tombstones_due = new_horizon;
        return Ok(same);
    }
    if kept.is_empty() {
        return Ok(Compacted {
            batch: None,
            max_ts: h.max_timestamp,
            records_in,
            records_out: 0,
            tombstones_due: None,
        });
    }
    // Record timestamps are deltas from the base timestamp, which becomes
    // the delete horizon when one is set.
    let old_base_ts = h.base_timestamp;
    let new_base_ts = new_horizon.unwrap_or(old_base_ts);
    let log_append = h.attributes & 0x08 != 0;
    let mut max_ts = i64::MIN;
    let mut raw = BytesMut::new();
    let mut body = BytesMut::new();
    for r in &kept {
        let ts = old_base_ts.wrapping_add(r.timestamp_delta);
        max_ts = max_ts.max(ts);
        body.clear();
        body.put_u8(r.body[0]);
        put_varlong(&mut body, ts.wrapping_sub(new_base_ts));
        body.put_slice(&r.body[r.after_ts..]);
        put_varlong(&mut raw, body.len() as i64);
        raw.put_slice(&body);
    }
    if log_append {
        max_ts = h.max_timestamp;
    }
    let attributes = (h.attributes & !DELETE_HORIZON)
        | if new_horizon.is_some() {
            DELETE_HORIZON
        } else {
            0
        };
    let mut out = BytesMut::with_capacity(HEADER_LEN + raw.len());
    out.put_i64(h.base_offset);
    out.put_i32(0); // length, below
    out.put_i32(p.leader_epoch);
    out.put_i8(2);
    out.put_u32(0); // CRC, below
    out.put_i16(attributes);
    out.put_i32(h.last_offset_delta);
    out.put_i64(new_base_ts);
    out.put_i64(max_ts);
    out.put_i64(h.producer_id);
    out.put_i16(h.producer_epoch);
    out.put_i32(h.base_sequence);
    out.put_i32(kept.len() as i32);
    compress(
        h.base_offset,
        h.attributes & COMPRESSION_MASK,
        &raw,
        &mut out,
    )?;
    let length = i32::try_from(out.len() - 12).map_err(|_| CompactError::Encode {
        base: h.base_offset,
        reason: "batch too large".into(),
    })?;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Compacted {
        batch: Some(out.freeze()),
        max_ts,
        records_in,
        records_out: kept.len(),
        tombstones_due: new_horizon,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use proptest::prelude::*;

    /// (key, value or tombstone, timestamp offset, header count)
    type Spec = (Option<u8>, Option<u16>, i64, u8);

    fn encode(base: i64, specs: &[Spec], compression: Compression) -> Bytes {
        let records: Vec<Record> = specs
            .iter()
            .enumerate()
            .map(|(i, (k, v, ts, hdrs))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 3,
                producer_id: 9,
                producer_epoch: 2,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: 100 + i as i32,
                timestamp: 1_000_000 + ts,
                key: k.map(|k| Bytes::from(format!("key-{k}"))),
                value: v.map(|v| Bytes::from(format!("value-{v}"))),
                headers: (0..*hdrs)
                    .map(|h| {
                        (
                            StrBytes::from_string(format!("h{h}")),
                            Some(Bytes::from(vec![h; 3])),
                        )
                    })
                    .collect::<IndexMap<_, _>>(),
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

    fn codec(i: u8) -> Compression {
        match i % 5 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            _ => Compression::Zstd,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the records, codec and newer offsets elsewhere, the
        /// compacted batch decodes (CRC and all), keeps base offset, last
        /// offset delta, producer fields and every kept record's offset,
        /// key, value, timestamp and headers, and keeps exactly the records
        /// the rules say.
        #[test]
        fn compacted_batches_keep_exactly_what_the_rules_say(
            specs in prop::collection::vec(
                (prop::option::weighted(0.9, 0u8..6), prop::option::weighted(0.8, any::<u16>()), 0i64..50, 0u8..3),
                1..20,
            ),
            newer in prop::collection::vec((0u8..6, 0i64..40), 0..6),
            c in 0u8..5,
            base in 0i64..1_000_000,
            horizon_passed in any::<bool>(),
        ) {
            let batch = encode(base, &specs, codec(c));
            let mut latest = LatestOffsets::new();
            // The batch's own newest offsets, then some newer ones elsewhere.
            index_keys(&batch, &mut latest).expect("index");
            for (k, delta) in &newer {
                let key = Bytes::from(format!("key-{k}"));
                let o = latest.get(&key).copied().unwrap_or(0).max(base + delta);
                latest.insert(key, o);
            }
            let rules = Rules { now: 5_000_000, delete_retention_ms: 1_000 };
            let first = compact_batch(&batch, &latest, &rules).expect("compact");
            // A second pass after the horizon drops kept tombstones.
            let (out, rules) = match (&first.batch, horizon_passed) {
                (Some(b), true) => {
                    let later = Rules { now: rules.now + 2_000, ..rules };
                    (compact_batch(b, &latest, &later).expect("compact again"), later)
                }
                _ => (first.clone(), rules),
            };
            let original = RecordBatchDecoder::decode(&mut batch.clone()).expect("decode").records;
            let expected: Vec<&Record> = original
                .iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => latest.get(k).is_none_or(|o| *o <= r.offset)
                        && !(r.value.is_none() && rules.now > 5_000_000),
                })
                .collect();
            let orig_h = parse_header(&batch).expect("header");
            match out.batch {
                None => prop_assert!(expected.is_empty()),
                Some(b) => {
                    let h = parse_header(&b).expect("header");
                    prop_assert_eq!(h.base_offset, orig_h.base_offset);
                    prop_assert_eq!(h.last_offset_delta, orig_h.last_offset_delta);
                    prop_assert_eq!(h.producer_id, orig_h.producer_id);
                    prop_assert_eq!(h.base_sequence, orig_h.base_sequence);
                    prop_assert_eq!(h.attributes & COMPRESSION_MASK, orig_h.attributes & COMPRESSION_MASK);
                    prop_assert_eq!(h.total_len(), b.len());
                    let got = RecordBatchDecoder::decode(&mut b.clone()).expect("decodes").records;
                    prop_assert_eq!(got.len(), expected.len());
                    for (g, e) in got.iter().zip(&expected) {
                        prop_assert_eq!(g.offset, e.offset);
                        prop_assert_eq!(&g.key, &e.key);
                        prop_assert_eq!(&g.value, &e.value);
                        prop_assert_eq!(g.timestamp, e.timestamp);
                        prop_assert_eq!(&g.headers, &e.headers);
                        prop_assert_eq!(g.sequence, e.sequence);
                    }
                    let tombstones = got.iter().any(|r| r.key.is_some() && r.value.is_none());
                    prop_assert_eq!(tombstones, out.tombstones_due.is_some());
                    prop_assert_eq!(tombstones, h.attributes & DELETE_HORIZON != 0);
                    if let Some(due) = out.tombstones_due {
                        prop_assert_eq!(due, 5_000_000 + 1_000);
                        prop_assert_eq!(h.base_timestamp, due);
                    }
                    prop_assert_eq!(out.max_ts, h.max_timestamp);
                    if let Some(m) = got.iter().map(|r| r.timestamp).max() {
                        prop_assert_eq!(h.max_timestamp, m);
                    }
                }
            }
        }
    }

    #[test]
    fn a_batch_with_nothing_to_drop_is_kept_byte_for_byte() {
        let batch = encode(
            40,
            &[(Some(1), Some(1), 0, 0), (Some(2), Some(2), 1, 1)],
            Compression::Lz4,
        );
        let mut latest = LatestOffsets::new();
        index_keys(&batch, &mut latest).expect("index");
        let rules = Rules {
            now: 0,
            delete_retention_ms: 10,
        };
        let out = compact_batch(&batch, &latest, &rules).expect("compact");
        assert_eq!(out.batch.as_ref(), Some(&batch));
        assert_eq!((out.records_in, out.records_out), (2, 2));
    }

    #[test]
    fn corrupt_batches_are_refused_not_panicked_on() {
        let batch = encode(0, &[(Some(1), Some(1), 0, 0)], Compression::Gzip);
        let mut bad = batch.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let rules = Rules {
            now: 0,
            delete_retention_ms: 0,
        };
        assert!(compact_batch(&Bytes::from(bad), &LatestOffsets::new(), &rules).is_err());
        assert!(compact_batch(&batch.slice(..30), &LatestOffsets::new(), &rules).is_err());
    }
}
