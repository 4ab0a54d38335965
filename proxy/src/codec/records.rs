//! Record batch decode and re-encode, for rewriting the records of governed
//! topics in Produce requests and Fetch responses.
//!
//! # The format
//!
//! The `records` field of a Produce request partition and of a Fetch
//! response partition holds record batches back to back. Only magic v2
//! batches exist on the wire today (Kafka 0.11+); the layout, big-endian:
//!
//! ```text
//! offset  field                   notes
//!      0  base_offset      i64    clients send 0; the broker assigns it
//!      8  batch_length     i32    bytes after this field
//!     12  partition_leader_epoch i32
//!     16  magic            i8     2
//!     17  crc              u32    CRC-32C (Castagnoli) of bytes 21..end
//!     21  attributes       i16    bits 0-2 codec (0 none, 1 gzip, 2 snappy,
//!                                 3 lz4, 4 zstd), 3 log-append time,
//!                                 4 transactional, 5 control,
//!                                 6 delete horizon
//!     23  last_offset_delta i32
//!     27  base_timestamp   i64
//!     35  max_timestamp    i64
//!     43  producer_id      i64    -1 unless idempotent / transactional
//!     51  producer_epoch   i16
//!     53  base_sequence    i32
//!     57  record_count     i32
//!     61  records …               compressed as a whole by the codec
//! ```
//!
//! Each record is `length varint | attributes i8 | timestamp_delta varlong |
//! offset_delta varint | key_len varint | key | value_len varint | value |
//! header_count varint | (key_len varint | key | value_len varint | value)*`,
//! with zigzag varints and -1 for a null key, value or header value.
//! Snappy payloads use the snappy-java ("xerial") framing that the Java
//! client writes and every client reads; LZ4 payloads are LZ4 frames with
//! independent blocks (what the Java client writes and can read). The codecs
//! are `kafka_protocol::compression`'s, so what this module writes is what
//! that crate writes.
//!
//! # What this module offers
//!
//! - [`rewrite_records`], the operation filters use: it shows every record
//!   of every data batch to a closure, which may change the key, value and
//!   headers or drop the record, and re-encodes only the batches in which
//!   something changed. Other batches are copied byte for byte, and a set in
//!   which nothing changed is returned as the very same [`Bytes`].
//! - [`decode_record_set`], [`RecordBatch::encode`] and
//!   [`RecordSet::encode`] for everything else (and for tests).
//!
//! Both check the set with [`gatehouse_wire::check_record_batches`] (or its
//! partial-tail variant for fetch responses) before decoding anything, and
//! verify a batch's CRC before trusting any field of it.
//!
//! # Pitfalls (and what the module does about them)
//!
//! - **Offsets come from the header.** Consumers compute the next fetch
//!   offset as `base_offset + last_offset_delta + 1`, not from the last
//!   record they saw (KAFKA-5443). A re-encoded batch keeps `base_offset`
//!   and `last_offset_delta` as they were, even when records were dropped,
//!   and records keep their own `offset_delta` and `timestamp_delta`: there
//!   is no renumbering. This is what the log cleaner does to compacted
//!   batches, so every client copes with the resulting gaps.
//! - **Empty batches stay.** A fetched batch whose records were all dropped
//!   is still written, with `record_count` 0 and the same offsets, so the
//!   consumer moves past it. Like the log cleaner's empty batches it is
//!   written *uncompressed* (codec bits cleared, no payload): librdkafka,
//!   for one, refuses a snappy payload that holds only the xerial header,
//!   which is what compressing nothing produces. Every other header field
//!   is kept.
//! - **Idempotent and transactional producers.** `producer_id`,
//!   `producer_epoch` and `base_sequence` are written back unchanged, so
//!   the broker's duplicate detection and sequence checks see exactly what
//!   the producer sent. A retried produce is re-encoded again (possibly to
//!   different bytes, if the closure is not deterministic); the broker
//!   deduplicates on sequence numbers, not bytes, so that is fine.
//! - **Produce batches cannot lose records.** Brokers (Kafka's
//!   `LogValidator`, and ours) require a produce batch to hold exactly
//!   `last_offset_delta + 1` records with consecutive offset deltas, and
//!   renumbering would move the producer's sequence numbers out of step
//!   with its own count. So with [`Origin::Produce`] a
//!   [`Verdict::Drop`] fails the call with [`RecordsError::DropInProduce`];
//!   refuse the partition (or the request) instead.
//! - **Control and transactional batches.** Control batches (commit and
//!   abort markers) are never shown to the closure and are copied through
//!   untouched. The transactional bit, the control bit, the timestamp type
//!   and the delete-horizon bit are preserved on re-encode.
//! - **Partial tails.** A fetch response may end with a batch cut short by
//!   the broker's size limit. With [`Origin::Fetch`] such a tail is kept as
//!   raw bytes and emitted unchanged (the client ignores it and fetches it
//!   again); with [`Origin::Produce`] it is an error.
//! - **Re-encoded compressed batches differ byte-wise** from the input
//!   (compressors differ in their output), but decode to the same records.
//!   Uncompressed batches re-encode byte-identically, since every client
//!   writes canonical varints.
//! - **Decompression bombs.** The wire guard bounds record counts but cannot
//!   see the decompressed size. Before decompressing, this module computes
//!   an upper bound from the codec's framing where one exists (snappy block
//!   lengths, LZ4 block sizes, zstd block headers) and refuses a batch whose
//!   bound exceeds [`RecordsOptions::max_batch_decompressed_bytes`] or what
//!   is left of [`RecordsOptions::max_total_decompressed_bytes`]; gzip has
//!   no such framing, so a gzip batch is only checked after decompression
//!   (deflate expands at most about 1032×). The actual size is checked
//!   against both limits after decompression for every codec.
//!
//! # Costs
//!
//! Keys, values and headers are [`Bytes`] slices of the decompressed
//! payload (of the input itself for uncompressed batches); headers stay in
//! their encoded form until a closure asks for them as a `Vec`
//! ([`Headers::to_mut`]), so decoding allocates one vector of records per
//! batch (reused across batches by [`rewrite_records`]) plus the
//! decompressed payload. [`rewrite_records`] writes into one output buffer,
//! allocated when the first batch changes; the `kafka_protocol` compressors
//! stage each re-encoded compressed batch in a buffer of their own. A key
//! or value kept beyond the call keeps its whole decompressed payload
//! alive; copy it if it is to live long.

use std::fmt;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gatehouse_wire::{check_record_batches, check_record_batches_allow_partial_tail, GuardError};
use kafka_protocol::compression::{self as codecs, Compressor, Decompressor};

/// Bytes in a magic-v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// The only record batch format this module reads and writes.
pub const MAGIC_V2: i8 = 2;

/// Attribute bits 0-2: the compression codec.
pub const ATTR_CODEC_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are log-append times.
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch holds control records.
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bit 6: the batch has a delete horizon (set by compaction).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Default of [`RecordsOptions::max_batch_decompressed_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES: u64 = 64 << 20;
/// Default of [`RecordsOptions::max_total_decompressed_bytes`]: 512 MiB.
pub const DEFAULT_MAX_TOTAL_DECOMPRESSED_BYTES: u64 = 512 << 20;

/// Offset of the byte after the batch length field.
const LENGTH_END: usize = 12;
const OFFSET_LENGTH: usize = 8;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
/// The smallest possible record: seven one-byte fields.
const MIN_RECORD_LEN: usize = 7;
/// A header takes at least a key length and a value length.
const MIN_HEADER_LEN: usize = 2;

/// The error a compression codec reports.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `MESSAGE_TOO_LARGE`: a batch over a size limit. Clients do not retry it.
pub const MESSAGE_TOO_LARGE: i16 = 10;
/// `INVALID_RECORD`: a batch or record that cannot be right. Clients do
/// not retry it (unlike `CORRUPT_MESSAGE`, which librdkafka resends until
/// its message timeout).
pub const INVALID_RECORD: i16 = 87;

impl RecordsError {
    /// The Kafka error a produce refused for this reason is answered with:
    /// one that makes the client fail at once, not retry.
    pub fn produce_error_code(&self) -> i16 {
        match self {
            RecordsError::DecompressedTooLarge { .. } => MESSAGE_TOO_LARGE,
            _ => INVALID_RECORD,
        }
    }
}

/// Why a record set could not be decoded, rewritten or encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordsError {
    /// A batch, or the header of one, runs past the end of the record set,
    /// and the set may not end with a partial batch ([`Origin::Produce`]).
    #[error("record batch at byte {at} needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// Offset of the batch in the record set.
        at: usize,
        /// Bytes the batch (or its length field) needs.
        needed: usize,
        /// Bytes left from the batch start.
        remaining: usize,
    },
    /// A batch length too small to hold the batch header, or negative.
    #[error("record batch at byte {at} has invalid length {length}")]
    InvalidLength {
        /// Offset of the batch in the record set.
        at: usize,
        /// The batch length as sent.
        length: i32,
    },
    /// A batch whose magic byte is not 2.
    #[error("record batch magic {magic} at byte {at} is not 2")]
    BadMagic {
        /// Offset of the magic byte in the record set.
        at: usize,
        /// The magic byte.
        magic: i8,
    },
    /// A batch whose codec bits are not 0..=4.
    #[error("record batch at byte {at} uses unknown compression codec {codec}")]
    UnknownCodec {
        /// Offset of the attributes in the record set.
        at: usize,
        /// The codec bits.
        codec: u8,
    },
    /// A batch whose CRC-32C does not match its content: it was corrupted
    /// (or tampered with) and none of its fields can be trusted.
    #[error(
        "record batch at byte {at} (base offset {base_offset}) fails its CRC-32C check: \
         stored {stored:#010x}, computed {computed:#010x}"
    )]
    CrcMismatch {
        /// Offset of the batch in the record set.
        at: usize,
        /// The base offset as sent.
        base_offset: i64,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the content.
        computed: u32,
    },
    /// The codec could not decompress the batch's records.
    #[error("cannot decompress the {codec} batch at base offset {base_offset}: {source}")]
    Decompression {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec.
        codec: Codec,
        /// What the codec (or the framing check before it) reported.
        source: CodecError,
    },
    /// A compressed batch would decompress to more than the limits allow.
    /// `size` is an upper bound computed from the codec's framing when the
    /// batch was refused before decompression, the actual size otherwise.
    #[error(
        "the {codec} batch at base offset {base_offset} decompresses to up to {size} bytes, \
         over the limit of {limit}"
    )]
    DecompressedTooLarge {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec.
        codec: Codec,
        /// The (bound on the) decompressed size.
        size: u64,
        /// The smaller of the per-batch limit and what was left of the
        /// per-call limit.
        limit: u64,
    },
    /// A batch whose record count cannot be right: more records than its
    /// payload can hold, or bytes left over after the last record.
    #[error("record batch at base offset {base_offset} declares {declared} records: {reason}")]
    RecordCount {
        /// The batch's base offset.
        base_offset: i64,
        /// The record count as sent.
        declared: i32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record that does not parse.
    #[error("record {index} of the batch at base offset {base_offset} is malformed: {reason}")]
    MalformedRecord {
        /// The batch's base offset.
        base_offset: i64,
        /// Position of the record in its batch.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Any other rejection by the pre-decode guard
    /// ([`gatehouse_wire::check_record_batches`]), such as a record count
    /// too large for the batch.
    #[error("record set refused by the guard: {0}")]
    Guard(GuardError),
    /// The closure dropped a record of a produce batch (see the module
    /// docs: brokers refuse produce batches with missing records).
    #[error(
        "cannot drop the record at offset delta {offset_delta} of the produce batch at base \
         offset {base_offset}: produce batches must keep all their records"
    )]
    DropInProduce {
        /// The batch's base offset.
        base_offset: i64,
        /// The record's offset delta.
        offset_delta: i32,
    },
    /// The codec could not compress a re-encoded batch.
    #[error("cannot compress the batch at base offset {base_offset} with {codec}: {source}")]
    Compression {
        /// The batch's base offset.
        base_offset: i64,
        /// The codec.
        codec: Codec,
        /// What the codec reported.
        source: CodecError,
    },
    /// A batch that cannot be written: a field too long for its length
    /// prefix, too many records, or codec bits that name no codec.
    #[error("cannot encode the batch at base offset {base_offset}: {reason}")]
    Encode {
        /// The batch's base offset.
        base_offset: i64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl RecordsError {
    /// Translates a guard rejection, using this module's variants where
    /// they say the same thing.
    fn from_guard(e: GuardError) -> Self {
        match e {
            GuardError::BatchTruncated {
                at,
                needed,
                remaining,
            } => Self::Truncated {
                at,
                needed,
                remaining,
            },
            GuardError::BatchLengthInvalid { at, length } => Self::InvalidLength { at, length },
            GuardError::UnsupportedMagic { at, magic } => Self::BadMagic { at, magic },
            GuardError::UnknownCompression { at, codec } => Self::UnknownCodec { at, codec },
            other => Self::Guard(other),
        }
    }
}

/// A batch's compression codec (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Uncompressed.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// Snappy, in snappy-java ("xerial") framing.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    /// The codec the attribute bits name, if any.
    pub fn from_attributes(attributes: i16) -> Option<Self> {
        match attributes & ATTR_CODEC_MASK {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The attribute bits for this codec.
    pub fn bits(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        })
    }
}

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker on append; every record's timestamp is the
    /// batch's `max_timestamp`.
    LogAppendTime,
}

/// Every field of a magic-v2 batch header except those derived from the
/// content (length, CRC, record count). Written back exactly as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record (clients send 0 in produce requests).
    pub base_offset: i64,
    /// Leader epoch when the batch was appended (-1 from producers).
    pub partition_leader_epoch: i32,
    /// Attribute bits; see the `ATTR_*` constants.
    pub attributes: i16,
    /// Offset delta of the last record *as written by the producer*: kept
    /// even when records are dropped, as consumers resume from
    /// `base_offset + last_offset_delta + 1`.
    pub last_offset_delta: i32,
    /// Timestamp the record timestamp deltas are relative to.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent or transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
}

impl BatchHeader {
    /// The codec the attributes name (`None` if the bits name no codec,
    /// which a decoded batch never has).
    pub fn codec(&self) -> Option<Codec> {
        Codec::from_attributes(self.attributes)
    }

    /// What the timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the delete-horizon bit is set.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTR_DELETE_HORIZON != 0
    }

    /// Offset of the last record the batch covers (whether or not that
    /// record is still in it).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset a consumer fetches next after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The absolute offset of a record of this batch.
    pub fn offset_of(&self, record: &Record) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(record.offset_delta))
    }

    /// The timestamp of a record of this batch, as consumers see it.
    pub fn timestamp_of(&self, record: &Record) -> i64 {
        match self.timestamp_type() {
            TimestampType::LogAppendTime => self.max_timestamp,
            TimestampType::CreateTime => self.base_timestamp.wrapping_add(record.timestamp_delta),
        }
    }

    /// The producer sequence number of a record of this batch, if the
    /// batch has one. Sequences wrap from `i32::MAX` to 0.
    pub fn sequence_of(&self, record: &Record) -> Option<i32> {
        if self.base_sequence < 0 {
            return None;
        }
        let seq =
            (i64::from(self.base_sequence) + i64::from(record.offset_delta)).rem_euclid(1 << 31);
        i32::try_from(seq).ok()
    }
}

/// One record of a batch. The key, value and headers are public; the
/// offset and timestamp deltas and the attributes are fixed once the
/// record exists, so a rewrite cannot move records around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    /// The key; `None` is a null key.
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on compacted
    /// topics).
    pub value: Option<Bytes>,
    /// The headers, in wire order (keys may repeat).
    pub headers: Headers,
}

impl Record {
    /// A record with attributes 0 (the only value v2 defines).
    pub fn new(
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Headers,
    ) -> Self {
        Self {
            attributes: 0,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        }
    }

    /// The record's attribute byte (unused in v2, preserved).
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// Timestamp relative to the batch's `base_timestamp`.
    pub fn timestamp_delta(&self) -> i64 {
        self.timestamp_delta
    }

    /// Offset relative to the batch's `base_offset`.
    pub fn offset_delta(&self) -> i32 {
        self.offset_delta
    }

    /// Whether `self` and `other` would encode to the same bytes. Cheap
    /// when nothing was touched: fields still pointing at the same bytes
    /// are not compared byte by byte.
    fn same_as(&self, other: &Record) -> bool {
        self.attributes == other.attributes
            && self.timestamp_delta == other.timestamp_delta
            && self.offset_delta == other.offset_delta
            && opt_bytes_eq(self.key.as_ref(), other.key.as_ref())
            && opt_bytes_eq(self.value.as_ref(), other.value.as_ref())
            && self.headers == other.headers
    }
}

fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

fn opt_bytes_eq(a: Option<&Bytes>, b: Option<&Bytes>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => bytes_eq(a, b),
        _ => false,
    }
}

// The record headers: [`Header`], [`Headers`] and their iterator.
mod headers;
pub use headers::{Header, HeaderIter, HeaderRef, Headers};

/// One batch: its header and its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    /// The header fields, written back as they are.
    pub header: BatchHeader,
    /// The records, in order. May be empty.
    pub records: Vec<Record>,
}

impl RecordBatch {
    /// Appends the batch to `out`: the header as stored (record count,
    /// length and CRC computed), the records compressed with the header's
    /// codec. An empty batch is written uncompressed (see the module docs).
    /// On error `out` is left as it was.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordsError> {
        encode_batch(&self.header, &self.records, out)
    }
}

/// A decoded record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// The complete batches, in order.
    pub batches: Vec<RecordBatch>,
    /// The incomplete batch a fetch response may end with, as raw bytes
    /// (empty if there is none).
    pub partial_tail: Bytes,
}

impl RecordSet {
    /// Appends every batch, then the partial tail, to `out`. On error `out`
    /// may hold the batches before the failing one.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RecordsError> {
        for batch in &self.batches {
            batch.encode(out)?;
        }
        out.extend_from_slice(&self.partial_tail);
        Ok(())
    }
}

/// Where a record set comes from, which decides what it may contain and
/// what a rewrite may do to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The `records` of a Produce request partition: every batch must be
    /// complete, and records may be changed but not dropped.
    Produce,
    /// The `records` of a Fetch response partition: the last batch may be
    /// incomplete (it is passed through as raw bytes), and records may be
    /// dropped.
    Fetch,
}

/// How to decode a record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsOptions {
    /// Where the set comes from.
    pub origin: Origin,
    /// Largest decompressed payload of one compressed batch.
    pub max_batch_decompressed_bytes: u64,
    /// Largest decompressed payload of all compressed batches of one call
    /// together.
    pub max_total_decompressed_bytes: u64,
}

impl RecordsOptions {
    /// Options for a Produce request's records, with the default limits.
    pub fn produce() -> Self {
        Self::new(Origin::Produce)
    }

    /// Options for a Fetch response's records, with the default limits.
    pub fn fetch() -> Self {
        Self::new(Origin::Fetch)
    }

    /// Options for `origin` with the default limits.
    pub fn new(origin: Origin) -> Self {
        Self {
            origin,
            max_batch_decompressed_bytes: DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES,
            max_total_decompressed_bytes: DEFAULT_MAX_TOTAL_DECOMPRESSED_BYTES,
        }
    }
}

/// What to do with a record after the closure of [`rewrite_records`] saw
/// (and possibly changed) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Keep the record, with whatever changes the closure made.
    Keep,
    /// Remove the record from its batch (fetch only; see
    /// [`RecordsError::DropInProduce`]).
    Drop,
}

/// What [`rewrite_records`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewriteStats {
    /// Complete batches in the set, control batches included.
    pub batches: usize,
    /// Control batches, passed through without being decoded.
    pub control_batches: usize,
    /// Batches re-encoded because a record changed or was dropped.
    pub batches_rewritten: usize,
    /// Records shown to the closure.
    pub records_seen: usize,
    /// Records the closure changed and kept.
    pub records_changed: usize,
    /// Records the closure dropped.
    pub records_dropped: usize,
    /// Size of the partial batch at the end of a fetch response (0 if
    /// none).
    pub partial_tail_bytes: usize,
}

/// The result of [`rewrite_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The record set to send on: the input itself if nothing changed.
    pub records: Bytes,
    /// What happened.
    pub stats: RewriteStats,
}

impl Rewritten {
    /// Whether any batch was re-encoded.
    pub fn changed(&self) -> bool {
        self.stats.batches_rewritten > 0
    }
}

/// The complete batches of a fetched record set, as slices of it, and the
/// incomplete batch that may end it (empty if none). Nothing is decoded
/// beyond the batches' lengths (the set is checked by the wire guard).
pub fn split_fetched(set: &Bytes) -> Result<(Vec<Bytes>, Bytes), RecordsError> {
    guard(set, Origin::Fetch)?;
    let mut batches = Vec::new();
    let mut at = 0;
    loop {
        match next_piece(set, at, Origin::Fetch)? {
            Piece::End => return Ok((batches, Bytes::new())),
            Piece::Tail => return Ok((batches, set.slice(at..))),
            Piece::Batch(len) => {
                batches.push(set.slice(at..at + len));
                at += len;
            }
        }
    }
}

/// Decodes every batch of a record set (control batches included).
///
/// The set is checked by the wire guard first, and each batch's CRC is
/// verified before any of its fields is used. With [`Origin::Fetch`] an
/// incomplete last batch ends up in [`RecordSet::partial_tail`].
pub fn decode_record_set(set: &Bytes, opts: &RecordsOptions) -> Result<RecordSet, RecordsError> {
    guard(set, opts.origin)?;
    let mut budget = Budget::new(opts);
    let mut batches = Vec::new();
    let mut at = 0;
    loop {
        match next_piece(set, at, opts.origin)? {
            Piece::End => {
                return Ok(RecordSet {
                    batches,
                    partial_tail: Bytes::new(),
                })
            }
            Piece::Tail => {
                return Ok(RecordSet {
                    batches,
                    partial_tail: set.slice(at..),
                })
            }
            Piece::Batch(len) => {
                let raw = set.slice(at..at + len);
                let (header, codec, count) = read_header(&raw, at)?;
                let payload =
                    decompress(codec, raw.slice(BATCH_HEADER_LEN..), &header, &mut budget)?;
                let mut records = Vec::new();
                parse_records(&payload, count, &header, &mut records)?;
                batches.push(RecordBatch { header, records });
                at += len;
            }
        }
    }
}

/// The headers and record counts of every complete batch of a record set,
/// without decompressing anything: enough to count records and tell offset
/// ranges. The set is checked by the wire guard first.
pub fn batch_headers(
    set: &Bytes,
    opts: &RecordsOptions,
) -> Result<Vec<(BatchHeader, i32)>, RecordsError> {
    guard(set, opts.origin)?;
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match next_piece(set, at, opts.origin)? {
            Piece::End | Piece::Tail => return Ok(out),
            Piece::Batch(len) => {
                let (header, _, count) = read_header(&set[at..at + len], at)?;
                out.push((header, count));
                at += len;
            }
        }
    }
}

/// Shows every record of every data batch of `set` to `f`, and returns the
/// set with the changes `f` made.
///
/// `f` gets the batch header and the record; it may change the record's
/// key, value and headers, and returns whether to keep the record. A batch
/// in which no record changed (by content: assigning an equal value is not
/// a change) and none was dropped is copied through byte for byte; a batch
/// with changes is re-encoded with its own header fields and codec (see
/// the module docs for empty batches). Control batches are copied through
/// without being decoded or shown to `f`, as is the partial tail of a fetch
/// response. If nothing changed at all, the result is `set` itself.
///
/// Errors from `f` abort the call and are returned as they are; decoding
/// and encoding errors are converted with `E: From<RecordsError>` (use
/// `E = RecordsError` if `f` cannot fail).
pub fn rewrite_records<F, E>(set: &Bytes, opts: &RecordsOptions, mut f: F) -> Result<Rewritten, E>
where
    F: FnMut(&BatchHeader, &mut Record) -> Result<Verdict, E>,
    E: From<RecordsError>,
{
    guard(set, opts.origin)?;
    let mut budget = Budget::new(opts);
    let mut stats = RewriteStats::default();
    // Allocated at the first change; then holds everything before `at`.
    let mut out: Option<BytesMut> = None;
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    loop {
        let len = match next_piece(set, at, opts.origin)? {
            Piece::End => break,
            Piece::Tail => {
                stats.partial_tail_bytes = set.len() - at;
                break;
            }
            Piece::Batch(len) => len,
        };
        let raw = set.slice(at..at + len);
        let (header, codec, count) = read_header(&raw, at)?;
        stats.batches += 1;
        if header.is_control() {
            stats.control_batches += 1;
        }
        let mut changed = false;
        if !header.is_control() && count > 0 {
            let payload = decompress(codec, raw.slice(BATCH_HEADER_LEN..), &header, &mut budget)?;
            records.clear();
            parse_records(&payload, count, &header, &mut records)?;
            let mut kept = 0;
            for i in 0..records.len() {
                let before = records[i].clone();
                let verdict = f(&header, &mut records[i])?;
                stats.records_seen += 1;
                match verdict {
                    Verdict::Keep => {
                        if !records[i].same_as(&before) {
                            stats.records_changed += 1;
                            changed = true;
                        }
                        records.swap(kept, i);
                        kept += 1;
                    }
                    Verdict::Drop => {
                        if opts.origin == Origin::Produce {
                            return Err(RecordsError::DropInProduce {
                                base_offset: header.base_offset,
                                offset_delta: before.offset_delta,
                            }
                            .into());
                        }
                        stats.records_dropped += 1;
                        changed = true;
                    }
                }
            }
            records.truncate(kept);
        }
        if changed {
            let buf = out.get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(set.len() + BATCH_HEADER_LEN);
                b.extend_from_slice(&set[..at]);
                b
            });
            encode_batch(&header, &records, buf)?;
            stats.batches_rewritten += 1;
        } else if let Some(buf) = out.as_mut() {
            buf.extend_from_slice(&raw);
        }
        at += len;
    }
    let records = match out {
        Some(mut buf) => {
            buf.extend_from_slice(&set[at..]);
            buf.freeze()
        }
        None => set.clone(),
    };
    Ok(Rewritten { records, stats })
}

// === framing ===

fn guard(set: &[u8], origin: Origin) -> Result<(), RecordsError> {
    match origin {
        Origin::Produce => check_record_batches(set),
        Origin::Fetch => check_record_batches_allow_partial_tail(set),
    }
    .map_err(RecordsError::from_guard)
}

enum Piece {
    /// Nothing left.
    End,
    /// A complete batch of this many bytes.
    Batch(usize),
    /// An incomplete batch, to the end of the set (fetch only).
    Tail,
}

/// Finds the batch starting at `at`.
fn next_piece(set: &[u8], at: usize, origin: Origin) -> Result<Piece, RecordsError> {
    let remaining = set.len().saturating_sub(at);
    if remaining == 0 {
        return Ok(Piece::End);
    }
    let partial = |needed: usize| match origin {
        Origin::Fetch => Ok(Piece::Tail),
        Origin::Produce => Err(RecordsError::Truncated {
            at,
            needed,
            remaining,
        }),
    };
    let Some(length) = set.get(at + OFFSET_LENGTH..at + LENGTH_END) else {
        return partial(LENGTH_END);
    };
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    let total = match usize::try_from(length) {
        Ok(n) if n >= BATCH_HEADER_LEN - LENGTH_END => LENGTH_END + n,
        _ => return Err(RecordsError::InvalidLength { at, length }),
    };
    if total > remaining {
        return partial(total);
    }
    Ok(Piece::Batch(total))
}

/// Reads the header of the complete batch `raw` (at least
/// `BATCH_HEADER_LEN` bytes, which `next_piece` ensures), after checking
/// its magic and CRC.
fn read_header(raw: &[u8], at: usize) -> Result<(BatchHeader, Codec, i32), RecordsError> {
    let mut b = raw;
    let base_offset = b.get_i64();
    let _length = b.get_i32();
    let partition_leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != MAGIC_V2 {
        return Err(RecordsError::BadMagic {
            at: at + OFFSET_MAGIC,
            magic,
        });
    }
    let stored = b.get_u32();
    let computed = crc32c::crc32c(b);
    if stored != computed {
        return Err(RecordsError::CrcMismatch {
            at,
            base_offset,
            stored,
            computed,
        });
    }
    let header = BatchHeader {
        base_offset,
        partition_leader_epoch,
        attributes: b.get_i16(),
        last_offset_delta: b.get_i32(),
        base_timestamp: b.get_i64(),
        max_timestamp: b.get_i64(),
        producer_id: b.get_i64(),
        producer_epoch: b.get_i16(),
        base_sequence: b.get_i32(),
    };
    let count = b.get_i32();
    let codec = header.codec().ok_or(RecordsError::UnknownCodec {
        at: at + OFFSET_ATTRIBUTES,
        codec: (header.attributes & ATTR_CODEC_MASK) as u8,
    })?;
    if count < 0 {
        return Err(RecordsError::RecordCount {
            base_offset,
            declared: count,
            reason: "negative",
        });
    }
    Ok((header, codec, count))
}

// === records ===

/// Parses `count` records filling `payload` exactly.
fn parse_records(
    payload: &Bytes,
    count: i32,
    header: &BatchHeader,
    records: &mut Vec<Record>,
) -> Result<(), RecordsError> {
    let base_offset = header.base_offset;
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n > payload.len() / MIN_RECORD_LEN {
        return Err(RecordsError::RecordCount {
            base_offset,
            declared: count,
            reason: "more records than the batch's bytes can hold",
        });
    }
    records.reserve(n);
    let mut pos = 0;
    for index in 0..n {
        let record =
            parse_record(payload, &mut pos).map_err(|reason| RecordsError::MalformedRecord {
                base_offset,
                index,
                reason,
            })?;
        records.push(record);
    }
    if pos != payload.len() {
        return Err(RecordsError::RecordCount {
            base_offset,
            declared: count,
            reason: "bytes left after the last record",
        });
    }
    Ok(())
}

fn parse_record(buf: &Bytes, pos: &mut usize) -> Result<Record, &'static str> {
    let len = read_varint(buf, pos).ok_or("bad record length")?;
    let len = usize::try_from(len).map_err(|_| "negative record length")?;
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= buf.len())
        .ok_or("record runs past the end of the batch")?;
    let body = buf
        .get(..end)
        .ok_or("record runs past the end of the batch")?;
    let attributes = *body.get(*pos).ok_or("record too short")? as i8;
    *pos += 1;
    let timestamp_delta = read_varlong(body, pos).ok_or("bad timestamp delta")?;
    let offset_delta = read_varint(body, pos).ok_or("bad offset delta")?;
    let key = read_bytes_field(buf, body, pos).ok_or("bad key")?;
    let value = read_bytes_field(buf, body, pos).ok_or("bad value")?;
    let count = read_varint(body, pos).ok_or("bad header count")?;
    let count = usize::try_from(count).map_err(|_| "negative header count")?;
    if count > (end - *pos) / MIN_HEADER_LEN {
        return Err("more headers than the record's bytes can hold");
    }
    let start = *pos;
    for _ in 0..count {
        next_header(body, pos).ok_or("bad header")?;
    }
    let entries = buf.slice(start..*pos);
    if *pos != end {
        return Err("bytes left after the record's headers");
    }
    Ok(Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers: Headers {
            encoded: Some((count, entries)),
            owned: Vec::new(),
        },
    })
}

/// Reads a nullable length-prefixed field of `body` (a prefix of `buf`)
/// as a slice of `buf`. `None` if malformed; `Some(None)` if null.
fn read_bytes_field(buf: &Bytes, body: &[u8], pos: &mut usize) -> Option<Option<Bytes>> {
    let range = read_field_range(body, pos)?;
    Some(range.map(|r| buf.slice(r)))
}

/// Reads a nullable length-prefixed field; returns its range.
fn read_field_range(body: &[u8], pos: &mut usize) -> Option<Option<Range<usize>>> {
    let len = read_varint(body, pos)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len).filter(|&end| end <= body.len())?;
    let range = *pos..end;
    *pos = end;
    Some(Some(range))
}

/// Reads one header entry: the key's range and the value's, if not null.
fn next_header(entries: &[u8], pos: &mut usize) -> Option<(Range<usize>, Option<Range<usize>>)> {
    let key = read_field_range(entries, pos)??;
    let value = read_field_range(entries, pos)?;
    Some((key, value))
}

// Decompression, bounded before anything is inflated.
mod compress;
use compress::{decompress, Budget};
// Re-encoding.
mod encode;
use encode::*;

#[cfg(test)]
mod tests;
