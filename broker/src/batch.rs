//! The record batch (magic v2) header: validation on produce, and the
//! fields the broker needs (offsets, timestamps, producer identity) without
//! decompressing anything.
//!
//! Layout (big-endian):
//! `base_offset i64 | batch_length i32 | leader_epoch i32 | magic i8 |
//! crc u32 | attributes i16 | last_offset_delta i32 | base_ts i64 |
//! max_ts i64 | producer_id i64 | producer_epoch i16 | base_seq i32 |
//! record_count i32 | records…`. The CRC-32C covers everything from the
//! attributes to the end, so the broker can rewrite the base offset (and
//! leader epoch) without recomputing it.

use bytes::{Bytes, BytesMut};

pub mod compact;

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
const LENGTH_OFFSET: usize = 8;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (as stored; clients send 0).
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size in bytes of the batch, header included.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + 12
    }
    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
    /// Whether the batch holds control records.
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    /// Sequence number of the last record.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        // Sequences wrap around at i32::MAX.
        ((self.base_sequence as i64 + self.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
    }
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than a header.
    #[error("record batch truncated: {0} bytes")]
    Truncated(usize),
    /// Not a v2 batch.
    #[error("unsupported record batch magic {0}")]
    Magic(i8),
    /// Length field disagrees with the bytes present.
    #[error("record batch length {claimed} does not match the {actual} bytes sent")]
    Length {
        /// Claimed by the batch.
        claimed: i64,
        /// Present.
        actual: usize,
    },
    /// CRC mismatch.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// In the header.
        stored: u32,
        /// Over the bytes.
        computed: u32,
    },
    /// Record count and offset delta disagree, or are negative.
    #[error("record batch has {count} records but last offset delta {delta}")]
    Count {
        /// Record count.
        count: i32,
        /// Last offset delta.
        delta: i32,
    },
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Reads a batch header from the front of `b` (which must hold at least the
/// header); does not check the CRC.
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, BatchError> {
    if b.len() < HEADER_LEN {
        return Err(BatchError::Truncated(b.len()));
    }
    let magic = b[MAGIC_OFFSET] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    Ok(BatchHeader {
        base_offset: i64_at(b, 0),
        batch_length: i32_at(b, LENGTH_OFFSET),
        attributes: i16_at(b, ATTRIBUTES_OFFSET),
        last_offset_delta: i32_at(b, 23),
        base_timestamp: i64_at(b, 27),
        max_timestamp: i64_at(b, 35),
        producer_id: i64_at(b, 43),
        producer_epoch: i16_at(b, 51),
        base_sequence: i32_at(b, 53),
        record_count: i32_at(b, 57),
    })
}

/// Validates a produced record set holding exactly one v2 batch: length,
/// magic, CRC-32C, and record count.
pub fn validate_single(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(b)?;
    let claimed = h.batch_length as i64 + 12;
    if h.batch_length < (HEADER_LEN as i32 - 12) || claimed != b.len() as i64 {
        return Err(BatchError::Length {
            claimed,
            actual: b.len(),
        });
    }
    let stored = u32::from_be_bytes([
        b[CRC_OFFSET],
        b[CRC_OFFSET + 1],
        b[CRC_OFFSET + 2],
        b[CRC_OFFSET + 3],
    ]);
    let computed = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    if stored != computed {
        return Err(BatchError::Crc { stored, computed });
    }
    if h.record_count <= 0 || h.last_offset_delta != h.record_count - 1 {
        return Err(BatchError::Count {
            count: h.record_count,
            delta: h.last_offset_delta,
        });
    }
    Ok(h)
}

/// Returns a copy of `batch` with its base offset set to `base_offset`.
pub fn with_base_offset(batch: &[u8], base_offset: i64) -> Bytes {
    let mut out = BytesMut::from(batch);
    out[..8].copy_from_slice(&base_offset.to_be_bytes());
    out.freeze()
}

/// Walks the batches of a stored record set (several batches back to back),
/// yielding each header and its byte range. Stops at the first incomplete
/// batch.
pub fn walk(b: &[u8]) -> impl Iterator<Item = (BatchHeader, std::ops::Range<usize>)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = parse_header(b.get(pos..)?).ok()?;
        let end = pos.checked_add(h.total_len())?;
        if end > b.len() || h.batch_length < 0 {
            return None;
        }
        let range = pos..end;
        pos = end;
        Some((h, range))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(crate) fn sample_batch(n: i64, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
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

    #[test]
    fn valid_batches_pass_for_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = sample_batch(5, c);
            let h = validate_single(&b).expect("valid");
            assert_eq!(h.record_count, 5);
            assert_eq!(h.last_offset_delta, 4);
            assert_eq!(h.producer_id, 7);
            assert_eq!(h.max_timestamp, 1_004);
        }
    }

    #[test]
    fn rebasing_keeps_the_crc_valid() {
        let b = sample_batch(3, Compression::None);
        let moved = with_base_offset(&b, 1234);
        let h = validate_single(&moved).expect("still valid");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.last_offset(), 1236);
    }

    #[test]
    fn corruption_is_detected() {
        let b = sample_batch(3, Compression::None);
        let mut bad = b.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(validate_single(&bad), Err(BatchError::Crc { .. })));
        assert!(matches!(
            validate_single(&b[..30]),
            Err(BatchError::Truncated(30))
        ));
        assert!(matches!(
            validate_single(&b[..b.len() - 1]),
            Err(BatchError::Length { .. })
        ));
        let mut old = b.to_vec();
        old[MAGIC_OFFSET] = 1;
        assert_eq!(validate_single(&old), Err(BatchError::Magic(1)));
    }

    #[test]
    fn walk_yields_each_batch() {
        let a = with_base_offset(&sample_batch(2, Compression::None), 0);
        let b = with_base_offset(&sample_batch(3, Compression::Gzip), 2);
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        let got: Vec<_> = walk(&both).map(|(h, r)| (h.base_offset, r)).collect();
        assert_eq!(got, vec![(0, 0..a.len()), (2, a.len()..a.len() + b.len())]);
    }
}
