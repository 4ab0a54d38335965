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

/// One record header, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The key (a UTF-8 string by convention; not checked).
    pub key: Bytes,
    /// The value; `None` is null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header.
    pub fn new(key: impl Into<Bytes>, value: Option<Bytes>) -> Self {
        Self {
            key: key.into(),
            value,
        }
    }
}

/// One record header, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value; `None` is null.
    pub value: Option<&'a [u8]>,
}

impl HeaderRef<'_> {
    /// The key as a string, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(self.key).ok()
    }
}

/// A record's headers. Decoded headers stay in their wire form (validated,
/// so reading them cannot fail) until [`Headers::to_mut`] turns them into a
/// vector; untouched headers are written back byte for byte.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// Headers as decoded: their count and their encoding (without the
    /// count). While this is set, `owned` is empty.
    encoded: Option<(usize, Bytes)>,
    owned: Vec<Header>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        match &self.encoded {
            Some((count, _)) => *count,
            None => self.owned.len(),
        }
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The headers in order.
    pub fn iter(&self) -> HeaderIter<'_> {
        HeaderIter {
            inner: match &self.encoded {
                Some((count, entries)) => IterRepr::Encoded {
                    entries,
                    pos: 0,
                    left: *count,
                },
                None => IterRepr::Owned(self.owned.iter()),
            },
        }
    }

    /// The last header with this key (Kafka's `Headers.lastHeader`).
    pub fn last(&self, key: &[u8]) -> Option<HeaderRef<'_>> {
        self.iter().filter(|h| h.key == key).last()
    }

    /// The headers as a vector, to change them. The first call on decoded
    /// headers builds the vector (slices of the same buffer, no copies).
    pub fn to_mut(&mut self) -> &mut Vec<Header> {
        if let Some((count, entries)) = self.encoded.take() {
            self.owned.reserve_exact(count);
            let mut pos = 0;
            for _ in 0..count {
                let Some((key, value)) = next_header(&entries, &mut pos) else {
                    break;
                };
                self.owned.push(Header {
                    key: entries.slice(key),
                    value: value.map(|v| entries.slice(v)),
                });
            }
        }
        &mut self.owned
    }

    /// Appends a header.
    pub fn push(&mut self, key: impl Into<Bytes>, value: Option<Bytes>) {
        self.to_mut().push(Header::new(key, value));
    }

    /// Bytes the header section takes on the wire, count included, or
    /// `None` if something is too long for its length prefix.
    fn encoded_len(&self) -> Option<usize> {
        if let Some((count, entries)) = &self.encoded {
            return Some(varint_len(i32::try_from(*count).ok()?) + entries.len());
        }
        let mut n = varint_len(i32::try_from(self.owned.len()).ok()?);
        for h in &self.owned {
            n += bytes_field_len(Some(&h.key))? + bytes_field_len(h.value.as_deref())?;
        }
        Some(n)
    }

    /// Writes the header section; lengths were checked by `encoded_len`.
    fn write(&self, out: &mut BytesMut) {
        if let Some((count, entries)) = &self.encoded {
            put_varint(out, *count as i32);
            out.put_slice(entries);
            return;
        }
        put_varint(out, self.owned.len() as i32);
        for h in &self.owned {
            put_bytes_field(out, Some(&h.key));
            put_bytes_field(out, h.value.as_deref());
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        if let (Some((a, x)), Some((b, y))) = (&self.encoded, &other.encoded) {
            if a == b && bytes_eq(x, y) {
                return true;
            }
        }
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl From<Vec<Header>> for Headers {
    fn from(owned: Vec<Header>) -> Self {
        Self {
            encoded: None,
            owned,
        }
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = HeaderRef<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a record's headers.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    inner: IterRepr<'a>,
}

#[derive(Debug, Clone)]
enum IterRepr<'a> {
    Encoded {
        entries: &'a [u8],
        pos: usize,
        left: usize,
    },
    Owned(std::slice::Iter<'a, Header>),
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        match &mut self.inner {
            IterRepr::Encoded { entries, pos, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let entries = *entries;
                // Validated when decoded, so this does not fail.
                let (key, value) = next_header(entries, pos)?;
                Some(HeaderRef {
                    key: entries.get(key)?,
                    value: match value {
                        Some(v) => Some(entries.get(v)?),
                        None => None,
                    },
                })
            }
            IterRepr::Owned(it) => it.next().map(|h| HeaderRef {
                key: &h.key,
                value: h.value.as_deref(),
            }),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            IterRepr::Encoded { left, .. } => (0, Some(*left)),
            IterRepr::Owned(it) => it.size_hint(),
        }
    }
}

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

// === decompression ===

struct Budget {
    per_batch: u64,
    remaining: u64,
}

impl Budget {
    fn new(opts: &RecordsOptions) -> Self {
        Self {
            per_batch: opts.max_batch_decompressed_bytes,
            remaining: opts.max_total_decompressed_bytes,
        }
    }

    fn limit(&self) -> u64 {
        self.per_batch.min(self.remaining)
    }
}

fn take_all<E>(buf: &mut Bytes) -> Result<Bytes, E> {
    Ok(std::mem::take(buf))
}

/// Decompresses a batch's payload within the budget.
fn decompress(
    codec: Codec,
    mut payload: Bytes,
    header: &BatchHeader,
    budget: &mut Budget,
) -> Result<Bytes, RecordsError> {
    let base_offset = header.base_offset;
    let limit = budget.limit();
    let too_large = |size: u64| RecordsError::DecompressedTooLarge {
        base_offset,
        codec,
        size,
        limit,
    };
    let failed = |source: CodecError| RecordsError::Decompression {
        base_offset,
        codec,
        source,
    };
    let bound = match codec {
        Codec::None => return Ok(payload),
        Codec::Gzip => None,
        Codec::Snappy => Some(snappy_bound(&payload)),
        Codec::Lz4 => Some(lz4_bound(&payload)),
        Codec::Zstd => Some(zstd_bound(&payload)),
    };
    if let Some(bound) = bound {
        let bound = bound.map_err(|reason| failed(reason.into()))?;
        if bound > limit {
            return Err(too_large(bound));
        }
    }
    let decompressed = match codec {
        Codec::None => Ok(payload),
        Codec::Gzip => <codecs::Gzip as Decompressor<Bytes>>::decompress(&mut payload, take_all),
        Codec::Snappy => {
            <codecs::Snappy as Decompressor<Bytes>>::decompress(&mut payload, take_all)
        }
        Codec::Lz4 => <codecs::Lz4 as Decompressor<Bytes>>::decompress(&mut payload, take_all),
        Codec::Zstd => <codecs::Zstd as Decompressor<Bytes>>::decompress(&mut payload, take_all),
    }
    .map_err(|e| failed(e.into()))?;
    let size = decompressed.len() as u64;
    if size > limit {
        return Err(too_large(size));
    }
    budget.remaining -= size;
    Ok(decompressed)
}

const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The decompressed size a snappy payload claims, framed the way
/// `kafka_protocol`'s decoder reads it (xerial if the 16-byte magic is
/// there, raw otherwise). The codec allocates (and zeroes) what the blocks
/// claim before decoding them, so this must run first.
fn snappy_bound(p: &[u8]) -> Result<u64, &'static str> {
    match p.strip_prefix(XERIAL_MAGIC.as_slice()) {
        Some(mut rest) => {
            let mut total = 0u64;
            while !rest.is_empty() {
                let len = rest
                    .get(..4)
                    .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                    .ok_or("truncated snappy block length")?;
                let block = rest.get(4..4 + len).ok_or("truncated snappy block")?;
                total = total.saturating_add(snappy_block_bound(block)?);
                rest = &rest[4 + len..];
            }
            Ok(total)
        }
        None => snappy_block_bound(p),
    }
}

fn snappy_block_bound(block: &[u8]) -> Result<u64, &'static str> {
    let mut pos = 0;
    let claimed = read_uvarint(block, &mut pos, 5).ok_or("bad snappy length preamble")?;
    // A snappy element produces at most 64 bytes from 3 (a two-byte-offset
    // copy), so a valid block never expands more than 22-fold.
    if claimed > 22 * block.len() as u64 {
        return Err("snappy block claims more than it can hold");
    }
    Ok(claimed)
}

const LZ4_MAGIC: u32 = 0x184D_2204;
const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames (both LZ4 and zstd) have magics 0x184D2A50..=0x184D2A5F.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const ZSTD_MAX_BLOCK: u64 = 128 << 10;

fn le_u32(p: &[u8], at: usize) -> Result<u32, &'static str> {
    p.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("truncated frame")
}

/// Skips `n` bytes from `pos`, which must stay within `p`.
fn skip(p: &[u8], pos: usize, n: usize) -> Result<usize, &'static str> {
    pos.checked_add(n)
        .filter(|&end| end <= p.len())
        .ok_or("truncated frame")
}

/// An upper bound of what an LZ4 frame sequence decompresses to: each
/// block yields at most its frame's block size, and at most 255 bytes per
/// compressed byte (plus slack).
fn lz4_bound(p: &[u8]) -> Result<u64, &'static str> {
    let mut pos = 0;
    let mut total = 0u64;
    while pos < p.len() {
        let magic = le_u32(p, pos)?;
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let size = le_u32(p, pos + 4)? as usize;
            pos = skip(p, pos + 8, size)?;
            continue;
        }
        if magic != LZ4_MAGIC {
            return Err("not an LZ4 frame");
        }
        let flg = *p.get(pos + 4).ok_or("truncated frame")?;
        let bd = *p.get(pos + 5).ok_or("truncated frame")?;
        if flg >> 6 != 1 {
            return Err("unsupported LZ4 frame version");
        }
        let block_max: u64 = match (bd >> 4) & 7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            _ => return Err("invalid LZ4 block size"),
        };
        let content_size = if flg & 0x08 != 0 { 8 } else { 0 };
        let dict_id = if flg & 0x01 != 0 { 4 } else { 0 };
        pos = skip(p, pos, 6 + content_size + dict_id + 1)?;
        let block_checksum = if flg & 0x10 != 0 { 4 } else { 0 };
        loop {
            let word = le_u32(p, pos)?;
            pos += 4;
            if word == 0 {
                break;
            }
            let size = u64::from(word & 0x7FFF_FFFF);
            if size > block_max {
                return Err("LZ4 block larger than the frame's block size");
            }
            total = total.saturating_add(if word & 0x8000_0000 != 0 {
                size
            } else {
                block_max.min(size * 255 + 64)
            });
            pos = skip(p, pos, size as usize + block_checksum)?;
        }
        if flg & 0x04 != 0 {
            pos = skip(p, pos, 4)?;
        }
    }
    Ok(total)
}

/// An upper bound of what a zstd frame sequence decompresses to, from the
/// block headers: raw and RLE blocks state their size, a compressed block
/// yields at most 128 KiB.
fn zstd_bound(p: &[u8]) -> Result<u64, &'static str> {
    let mut pos = 0;
    let mut total = 0u64;
    while pos < p.len() {
        let magic = le_u32(p, pos)?;
        if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
            let size = le_u32(p, pos + 4)? as usize;
            pos = skip(p, pos + 8, size)?;
            continue;
        }
        if magic != ZSTD_MAGIC {
            return Err("not a zstd frame");
        }
        let fhd = *p.get(pos + 4).ok_or("truncated frame")?;
        if fhd & 0x08 != 0 {
            return Err("zstd frame header has its reserved bit set");
        }
        let single_segment = fhd & 0x20 != 0;
        let window = usize::from(!single_segment);
        let dict_id = [0, 1, 2, 4][usize::from(fhd & 3)];
        let content_size = match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        pos = skip(p, pos, 5 + window + dict_id + content_size)?;
        loop {
            let h = p.get(pos..pos + 3).ok_or("truncated frame")?;
            let h = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
            pos += 3;
            let size = (h >> 3) as usize;
            let (skipped, produced) = match (h >> 1) & 3 {
                0 => (size, size as u64),
                1 => (1, size as u64),
                2 => (size, ZSTD_MAX_BLOCK),
                _ => return Err("reserved zstd block type"),
            };
            total = total.saturating_add(produced);
            pos = skip(p, pos, skipped)?;
            if h & 1 != 0 {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            pos = skip(p, pos, 4)?;
        }
    }
    Ok(total)
}

// === encoding ===

fn encode_batch(
    header: &BatchHeader,
    records: &[Record],
    out: &mut BytesMut,
) -> Result<(), RecordsError> {
    let base_offset = header.base_offset;
    let encode_err = |reason| RecordsError::Encode {
        base_offset,
        reason,
    };
    let codec = header
        .codec()
        .ok_or_else(|| encode_err("the codec bits name no codec"))?;
    // Empty batches are written uncompressed, like the log cleaner's.
    let (codec, attributes) = if records.is_empty() {
        (Codec::None, header.attributes & !ATTR_CODEC_MASK)
    } else {
        (codec, header.attributes)
    };
    let count = i32::try_from(records.len()).map_err(|_| encode_err("too many records"))?;
    let mut records_len = 0usize;
    for r in records {
        let body = record_body_len(r).ok_or_else(|| encode_err("a record field is too long"))?;
        records_len = records_len.saturating_add(varint_len(body as i32) + body);
    }

    let start = out.len();
    out.reserve(BATCH_HEADER_LEN + if codec == Codec::None { records_len } else { 0 });
    out.put_i64(base_offset);
    out.put_i32(0); // length, filled in below
    out.put_i32(header.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // CRC, filled in below
    out.put_i16(attributes);
    out.put_i32(header.last_offset_delta);
    out.put_i64(header.base_timestamp);
    out.put_i64(header.max_timestamp);
    out.put_i64(header.producer_id);
    out.put_i16(header.producer_epoch);
    out.put_i32(header.base_sequence);
    out.put_i32(count);

    let write = |buf: &mut BytesMut| {
        buf.reserve(records_len);
        for r in records {
            write_record(buf, r);
        }
    };
    let compressed = match codec {
        Codec::None => {
            write(out);
            Ok(())
        }
        Codec::Gzip => codecs::Gzip::compress(out, |b| {
            write(b);
            Ok(())
        }),
        Codec::Snappy => codecs::Snappy::compress(out, |b| {
            write(b);
            Ok(())
        }),
        Codec::Lz4 => codecs::Lz4::compress(out, |b| {
            write(b);
            Ok(())
        }),
        Codec::Zstd => codecs::Zstd::compress(out, |b| {
            write(b);
            Ok(())
        }),
    };
    if let Err(e) = compressed {
        out.truncate(start);
        return Err(RecordsError::Compression {
            base_offset,
            codec,
            source: e.into(),
        });
    }

    let Ok(length) = i32::try_from(out.len() - start - LENGTH_END) else {
        out.truncate(start);
        return Err(encode_err("the batch is larger than 2 GiB"));
    };
    out[start + OFFSET_LENGTH..start + LENGTH_END].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + OFFSET_ATTRIBUTES..]);
    out[start + OFFSET_CRC..start + OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Bytes of a record after its length prefix, or `None` if a field (or
/// the record) is too long for its length prefix.
fn record_body_len(r: &Record) -> Option<usize> {
    let n = 1
        + varlong_len(r.timestamp_delta)
        + varint_len(r.offset_delta)
        + bytes_field_len(r.key.as_deref())?
        + bytes_field_len(r.value.as_deref())?
        + r.headers.encoded_len()?;
    i32::try_from(n).ok()?;
    Some(n)
}

/// Writes a record whose lengths `record_body_len` has checked.
fn write_record(out: &mut BytesMut, r: &Record) {
    let body = record_body_len(r).unwrap_or(0);
    put_varint(out, body as i32);
    out.put_i8(r.attributes);
    put_varlong(out, r.timestamp_delta);
    put_varint(out, r.offset_delta);
    put_bytes_field(out, r.key.as_deref());
    put_bytes_field(out, r.value.as_deref());
    r.headers.write(out);
}

fn bytes_field_len(b: Option<&[u8]>) -> Option<usize> {
    match b {
        None => Some(1),
        Some(b) => Some(varint_len(i32::try_from(b.len()).ok()?) + b.len()),
    }
}

fn put_bytes_field(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.put_slice(b);
        }
    }
}

// === varints (zigzag, as in Kafka's ByteUtils) ===

/// Reads an unsigned LEB128 varint of at most `max_bytes` bytes. Bits past
/// 64 are dropped, as Java drops bits past 32 in a five-byte varint.
fn read_uvarint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let b = *buf.get(*pos + i)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Some(value);
        }
    }
    None
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let v = read_uvarint(buf, pos, 5)? as u32;
    Some((v >> 1) as i32 ^ -((v & 1) as i32))
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let v = read_uvarint(buf, pos, 10)?;
    Some((v >> 1) as i64 ^ -((v & 1) as i64))
}

fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_varint(out: &mut BytesMut, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

fn put_varlong(out: &mut BytesMut, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn uvarint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType as KpTimestampType,
    };
    use proptest::prelude::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn codec_of(c: Compression) -> Codec {
        match c {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
        }
    }

    /// Record `i` of a batch starting at `base_offset`: an idempotent
    /// producer (id 42, epoch 3, base sequence 100), some null keys, some
    /// null values, some headers (one with a null value).
    fn kp_record(base_offset: i64, i: i64, transactional: bool) -> KpRecord {
        let mut headers = IndexMap::new();
        if i % 2 == 0 {
            headers.insert(
                StrBytes::from_static_str("trace-id"),
                Some(Bytes::from(format!("trace-{i}"))),
            );
        }
        if i % 3 == 0 {
            headers.insert(StrBytes::from_static_str("no-value"), None);
        }
        KpRecord {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id: 42,
            producer_epoch: 3,
            timestamp_type: KpTimestampType::Creation,
            offset: base_offset + i,
            sequence: 100 + i as i32,
            timestamp: 1_700_000_000_000 + i * 13,
            key: (i % 4 != 1).then(|| Bytes::from(format!("user-{i}"))),
            value: (i % 5 != 2).then(|| Bytes::from(format!("{{\"email\":\"u{i}@example.com\"}}"))),
            headers,
        }
    }

    fn kp_records(base_offset: i64, n: i64, transactional: bool) -> Vec<KpRecord> {
        (0..n)
            .map(|i| kp_record(base_offset, i, transactional))
            .collect()
    }

    fn kp_encode(records: &[KpRecord], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("kafka-protocol encodes");
        buf.freeze()
    }

    fn kp_decode(set: &Bytes) -> Vec<KpRecord> {
        RecordBatchDecoder::decode_all(&mut set.clone())
            .expect("kafka-protocol decodes (CRC included)")
            .into_iter()
            .flat_map(|s| s.records)
            .collect()
    }

    fn encode_set(set: &RecordSet) -> Bytes {
        let mut out = BytesMut::new();
        set.encode(&mut out).expect("encodes");
        out.freeze()
    }

    fn no_op(_: &BatchHeader, _: &mut Record) -> Result<Verdict, RecordsError> {
        Ok(Verdict::Keep)
    }

    fn uppercase(_: &BatchHeader, r: &mut Record) -> Result<Verdict, RecordsError> {
        if let Some(v) = &r.value {
            r.value = Some(Bytes::from(v.to_ascii_uppercase()));
        }
        Ok(Verdict::Keep)
    }

    /// A batch built by hand (for payloads no encoder would write), with a
    /// valid CRC.
    fn raw_batch(attributes: i16, count: i32, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i64(0);
        b.put_i32((BATCH_HEADER_LEN - LENGTH_END + payload.len()) as i32);
        b.put_i32(-1);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(attributes);
        b.put_i32(count - 1);
        b.put_i64(0);
        b.put_i64(0);
        b.put_i64(-1);
        b.put_i16(-1);
        b.put_i32(-1);
        b.put_i32(count);
        b.put_slice(payload);
        let crc = crc32c::crc32c(&b[OFFSET_ATTRIBUTES..]);
        b[OFFSET_CRC..OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn every_codec_round_trips_with_all_header_fields() {
        for compression in CODECS {
            for transactional in [false, true] {
                let originals = kp_records(0, 17, transactional);
                let input = kp_encode(&originals, compression);
                let set = decode_record_set(&input, &RecordsOptions::produce()).expect("decodes");
                assert!(set.partial_tail.is_empty());
                assert_eq!(set.batches.len(), 1);
                let batch = &set.batches[0];
                let h = &batch.header;
                assert_eq!(h.codec(), Some(codec_of(compression)));
                assert_eq!(h.base_offset, 0);
                assert_eq!(h.partition_leader_epoch, 7);
                assert_eq!(h.last_offset_delta, 16);
                assert_eq!(h.base_timestamp, 1_700_000_000_000);
                assert_eq!(h.max_timestamp, 1_700_000_000_000 + 16 * 13);
                assert_eq!(h.producer_id, 42);
                assert_eq!(h.producer_epoch, 3);
                assert_eq!(h.base_sequence, 100);
                assert_eq!(h.is_transactional(), transactional);
                assert!(!h.is_control());
                assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
                assert_eq!(batch.records.len(), 17);
                for (r, o) in batch.records.iter().zip(&originals) {
                    assert_eq!(h.offset_of(r), o.offset);
                    assert_eq!(h.timestamp_of(r), o.timestamp);
                    assert_eq!(h.sequence_of(r), Some(o.sequence));
                    assert_eq!(r.key, o.key);
                    assert_eq!(r.value, o.value);
                    let headers: Vec<_> = r.headers.iter().collect();
                    let expected: Vec<_> = o
                        .headers
                        .iter()
                        .map(|(k, v)| HeaderRef {
                            key: k.as_bytes(),
                            value: v.as_deref(),
                        })
                        .collect();
                    assert_eq!(headers, expected);
                }

                let output = encode_set(&set);
                if compression == Compression::None {
                    assert_eq!(
                        output, input,
                        "uncompressed batches re-encode byte for byte"
                    );
                }
                assert_eq!(kp_decode(&output), originals, "{compression:?}");
                let again =
                    decode_record_set(&output, &RecordsOptions::produce()).expect("decodes");
                assert_eq!(again, set, "{compression:?}");
            }
        }
    }

    #[test]
    fn values_are_slices_of_the_input_when_uncompressed() {
        let input = kp_encode(&kp_records(0, 3, false), Compression::None);
        let set = decode_record_set(&input, &RecordsOptions::fetch()).expect("decodes");
        let range = input.as_ptr_range();
        for r in &set.batches[0].records {
            if let Some(v) = &r.value {
                assert!(range.contains(&v.as_ptr()));
            }
        }
    }

    #[test]
    fn no_op_rewrite_returns_the_input_itself() {
        for compression in CODECS {
            let mut input = BytesMut::new();
            input.extend_from_slice(&kp_encode(&kp_records(0, 5, false), compression));
            input.extend_from_slice(&kp_encode(&kp_records(5, 4, true), compression));
            let input = input.freeze();
            for opts in [RecordsOptions::produce(), RecordsOptions::fetch()] {
                let out = rewrite_records(&input, &opts, no_op).expect("rewrites");
                assert_eq!(out.records.as_ptr(), input.as_ptr());
                assert_eq!(out.records.len(), input.len());
                assert!(!out.changed());
                assert_eq!(
                    out.stats,
                    RewriteStats {
                        batches: 2,
                        records_seen: 9,
                        ..RewriteStats::default()
                    }
                );
            }
        }
    }

    #[test]
    fn assigning_equal_values_is_not_a_change() {
        let input = kp_encode(&kp_records(0, 5, false), Compression::Gzip);
        let out = rewrite_records(&input, &RecordsOptions::produce(), |_, r| {
            r.value = r.value.as_ref().map(|v| Bytes::copy_from_slice(v));
            r.headers.to_mut();
            Ok::<_, RecordsError>(Verdict::Keep)
        })
        .expect("rewrites");
        assert_eq!(out.records.as_ptr(), input.as_ptr());
        assert_eq!(out.stats.records_changed, 0);
    }

    #[test]
    fn uppercased_values_decode_with_kafka_protocol() {
        for compression in CODECS {
            let originals = kp_records(0, 12, true);
            let input = kp_encode(&originals, compression);
            let out =
                rewrite_records(&input, &RecordsOptions::produce(), uppercase).expect("rewrites");
            assert!(out.changed());
            let expected_changed = originals.iter().filter(|r| r.value.is_some()).count();
            assert_eq!(out.stats.records_changed, expected_changed);
            assert_eq!(out.stats.batches_rewritten, 1);
            let mut expected = originals.clone();
            for r in &mut expected {
                r.value = r
                    .value
                    .as_ref()
                    .map(|v| Bytes::from(v.to_ascii_uppercase()));
            }
            // kafka-protocol checks the CRC while decoding.
            assert_eq!(kp_decode(&out.records), expected, "{compression:?}");
            // And the header is what the producer sent.
            let a = decode_record_set(&input, &RecordsOptions::produce()).expect("decodes");
            let b = decode_record_set(&out.records, &RecordsOptions::produce()).expect("decodes");
            assert_eq!(a.batches[0].header, b.batches[0].header);
        }
    }

    #[test]
    fn header_changes_are_written() {
        let input = kp_encode(&kp_records(0, 4, false), Compression::Lz4);
        let out = rewrite_records(&input, &RecordsOptions::produce(), |_, r| {
            r.headers.to_mut().retain(|h| &h.key[..] != b"trace-id");
            r.headers
                .push("gatehouse", Some(Bytes::from_static(b"enc")));
            Ok::<_, RecordsError>(Verdict::Keep)
        })
        .expect("rewrites");
        for r in kp_decode(&out.records) {
            assert!(!r.headers.contains_key(b"trace-id".as_slice()));
            assert_eq!(
                r.headers.get(b"gatehouse".as_slice()),
                Some(&Some(Bytes::from_static(b"enc")))
            );
        }
    }

    #[test]
    fn duplicate_header_keys_survive() {
        let headers: Headers = vec![
            Header::new("k", Some(Bytes::from_static(b"1"))),
            Header::new("k", None),
            Header::new("k", Some(Bytes::from_static(b"3"))),
        ]
        .into();
        let batch = RecordBatch {
            header: BatchHeader {
                base_offset: 0,
                partition_leader_epoch: -1,
                attributes: 0,
                last_offset_delta: 0,
                base_timestamp: 5,
                max_timestamp: 5,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            },
            records: vec![Record::new(0, 0, None, None, headers)],
        };
        let mut out = BytesMut::new();
        batch.encode(&mut out).expect("encodes");
        let set = decode_record_set(&out.freeze(), &RecordsOptions::produce()).expect("decodes");
        let h = &set.batches[0].records[0].headers;
        assert_eq!(h.len(), 3);
        assert_eq!(h.last(b"k").and_then(|h| h.value), Some(b"3".as_slice()));
        assert_eq!(set.batches[0], batch);
    }

    #[test]
    fn dropping_every_record_leaves_an_empty_batch_with_its_offsets() {
        for compression in CODECS {
            let mut input = BytesMut::new();
            input.extend_from_slice(&kp_encode(&kp_records(100, 6, true), compression));
            input.extend_from_slice(&kp_encode(&kp_records(106, 3, true), compression));
            let input = input.freeze();
            let out = rewrite_records(&input, &RecordsOptions::fetch(), |h, _| {
                Ok::<_, RecordsError>(if h.base_offset == 100 {
                    Verdict::Drop
                } else {
                    Verdict::Keep
                })
            })
            .expect("rewrites");
            assert_eq!(out.stats.records_dropped, 6);
            assert_eq!(out.stats.batches_rewritten, 1);

            let before = decode_record_set(&input, &RecordsOptions::fetch()).expect("decodes");
            let after = decode_record_set(&out.records, &RecordsOptions::fetch()).expect("decodes");
            let (b, a) = (&before.batches[0], &after.batches[0]);
            assert!(a.records.is_empty());
            assert_eq!(a.header.base_offset, 100);
            assert_eq!(a.header.last_offset_delta, 5);
            assert_eq!(a.header.next_offset(), 106);
            assert_eq!(a.header.producer_id, 42);
            assert_eq!(a.header.base_sequence, 100);
            assert!(a.header.is_transactional());
            // Written uncompressed, everything else as it was.
            assert_eq!(a.header.codec(), Some(Codec::None));
            assert_eq!(
                a.header,
                BatchHeader {
                    attributes: b.header.attributes & !ATTR_CODEC_MASK,
                    ..b.header
                }
            );
            // Record count 0 on the wire, and the batch is just a header.
            let raw = &out.records[..BATCH_HEADER_LEN];
            assert_eq!(&raw[57..61], &0i32.to_be_bytes());
            assert_eq!(&raw[8..12], &49i32.to_be_bytes());
            // The second batch is untouched.
            assert_eq!(
                &out.records[BATCH_HEADER_LEN..],
                &input[input.len() - (out.records.len() - BATCH_HEADER_LEN)..]
            );
            assert_eq!(after.batches[1], before.batches[1]);
            // kafka-protocol reads it too.
            assert_eq!(kp_decode(&out.records), kp_records(106, 3, true));
        }
    }

    #[test]
    fn dropping_some_records_keeps_offsets_and_timestamps() {
        let input = kp_encode(&kp_records(50, 10, false), Compression::Zstd);
        let out = rewrite_records(&input, &RecordsOptions::fetch(), |_, r| {
            Ok::<_, RecordsError>(if r.offset_delta() % 3 == 0 {
                Verdict::Drop
            } else {
                Verdict::Keep
            })
        })
        .expect("rewrites");
        let expected: Vec<_> = kp_records(50, 10, false)
            .into_iter()
            .filter(|r| (r.offset - 50) % 3 != 0)
            .collect();
        assert_eq!(kp_decode(&out.records), expected);
        let set = decode_record_set(&out.records, &RecordsOptions::fetch()).expect("decodes");
        assert_eq!(set.batches[0].header.last_offset_delta, 9);
        assert_eq!(set.batches[0].header.next_offset(), 60);
    }

    #[test]
    fn produce_records_cannot_be_dropped() {
        let input = kp_encode(&kp_records(0, 3, false), Compression::None);
        let err = rewrite_records(&input, &RecordsOptions::produce(), |_, r| {
            Ok::<_, RecordsError>(if r.offset_delta() == 1 {
                Verdict::Drop
            } else {
                Verdict::Keep
            })
        })
        .expect_err("refused");
        assert!(matches!(
            err,
            RecordsError::DropInProduce {
                base_offset: 0,
                offset_delta: 1
            }
        ));
    }

    #[test]
    fn unchanged_batches_are_copied_byte_for_byte() {
        let first = kp_encode(&kp_records(0, 5, false), Compression::Snappy);
        let second = kp_encode(&kp_records(5, 5, false), Compression::Gzip);
        let third = kp_encode(&kp_records(10, 5, false), Compression::None);
        let mut input = BytesMut::new();
        for b in [&first, &second, &third] {
            input.extend_from_slice(b);
        }
        let input = input.freeze();
        let out = rewrite_records(&input, &RecordsOptions::produce(), |h, r| {
            if h.base_offset == 5 {
                uppercase(h, r)
            } else {
                Ok(Verdict::Keep)
            }
        })
        .expect("rewrites");
        assert_eq!(out.stats.batches, 3);
        assert_eq!(out.stats.batches_rewritten, 1);
        let out = out.records;
        assert_eq!(&out[..first.len()], &first[..]);
        assert_eq!(&out[out.len() - third.len()..], &third[..]);
        let middle = out.slice(first.len()..out.len() - third.len());
        let mut expected = kp_records(5, 5, false);
        for r in &mut expected {
            r.value = r
                .value
                .as_ref()
                .map(|v| Bytes::from(v.to_ascii_uppercase()));
        }
        assert_eq!(kp_decode(&middle), expected);
    }

    #[test]
    fn a_partial_tail_passes_through_on_fetch() {
        let first = kp_encode(&kp_records(0, 4, false), Compression::Zstd);
        let second = kp_encode(&kp_records(4, 4, false), Compression::Zstd);
        for cut in [3, 11, 12, 40, 61, second.len() - 1] {
            let mut input = BytesMut::new();
            input.extend_from_slice(&first);
            input.extend_from_slice(&second[..cut]);
            let input = input.freeze();

            let out =
                rewrite_records(&input, &RecordsOptions::fetch(), uppercase).expect("rewrites");
            assert_eq!(out.stats.partial_tail_bytes, cut);
            assert_eq!(out.stats.batches, 1);
            assert!(out.records.ends_with(&second[..cut]));
            let set = decode_record_set(&out.records, &RecordsOptions::fetch()).expect("decodes");
            assert_eq!(set.partial_tail, second.slice(..cut));
            assert_eq!(set.batches.len(), 1);

            // Untouched, the whole input comes back.
            let out = rewrite_records(&input, &RecordsOptions::fetch(), no_op).expect("rewrites");
            assert_eq!(out.records.as_ptr(), input.as_ptr());

            // A produce request may not end like that.
            let err =
                rewrite_records(&input, &RecordsOptions::produce(), no_op).expect_err("refused");
            assert!(
                matches!(err, RecordsError::Truncated { at, .. } if at == first.len()),
                "{err:?}"
            );
        }
    }

    /// A transaction marker batch (COMMIT, coordinator epoch 5).
    fn control_batch(base_offset: i64) -> Bytes {
        let marker = KpRecord {
            transactional: true,
            control: true,
            delete_horizon: false,
            partition_leader_epoch: 7,
            producer_id: 42,
            producer_epoch: 3,
            timestamp_type: KpTimestampType::Creation,
            offset: base_offset,
            sequence: -1,
            timestamp: 1_700_000_000_999,
            key: Some(Bytes::from_static(&[0, 0, 0, 1])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 5])),
            headers: IndexMap::new(),
        };
        kp_encode(&[marker], Compression::None)
    }

    #[test]
    fn control_batches_are_not_touched() {
        let data = kp_encode(&kp_records(0, 3, true), Compression::Gzip);
        let marker = control_batch(3);
        let mut input = BytesMut::new();
        input.extend_from_slice(&data);
        input.extend_from_slice(&marker);
        let input = input.freeze();
        let out = rewrite_records(&input, &RecordsOptions::fetch(), |h, r| {
            assert!(!h.is_control(), "control records are never shown");
            r.value = Some(Bytes::from_static(b"x"));
            Ok::<_, RecordsError>(Verdict::Drop)
        })
        .expect("rewrites");
        assert_eq!(out.stats.control_batches, 1);
        assert_eq!(out.stats.records_seen, 3);
        assert!(out.records.ends_with(&marker));
        let set = decode_record_set(&out.records, &RecordsOptions::fetch()).expect("decodes");
        assert!(set.batches[1].header.is_control());
        assert_eq!(set.batches[1].records.len(), 1);
    }

    #[test]
    fn a_bad_crc_is_refused() {
        for compression in CODECS {
            let input = kp_encode(&kp_records(0, 3, false), compression);
            let mut bad = input.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            let bad = Bytes::from(bad);
            let err = rewrite_records(&bad, &RecordsOptions::fetch(), no_op).expect_err("refused");
            assert!(
                matches!(err, RecordsError::CrcMismatch { at: 0, .. }),
                "{err:?}"
            );
            let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("refused");
            assert!(matches!(err, RecordsError::CrcMismatch { .. }), "{err:?}");
            // A corrupted header field is caught too.
            let mut bad = input.to_vec();
            bad[45] ^= 0x01; // producer id
            let err = rewrite_records(&Bytes::from(bad), &RecordsOptions::fetch(), no_op)
                .expect_err("refused");
            assert!(matches!(err, RecordsError::CrcMismatch { .. }), "{err:?}");
        }
    }

    #[test]
    fn framing_errors_are_reported() {
        let input = kp_encode(&kp_records(0, 2, false), Compression::None);
        let mut bad = input.to_vec();
        bad[16] = 1;
        let err =
            decode_record_set(&Bytes::from(bad), &RecordsOptions::fetch()).expect_err("magic");
        assert!(
            matches!(err, RecordsError::BadMagic { at: 16, magic: 1 }),
            "{err:?}"
        );

        let mut bad = input.to_vec();
        bad[8..12].copy_from_slice(&10i32.to_be_bytes());
        let err = decode_record_set(&Bytes::from(bad), &RecordsOptions::fetch()).expect_err("len");
        assert!(
            matches!(err, RecordsError::InvalidLength { at: 0, length: 10 }),
            "{err:?}"
        );

        let bad = raw_batch(6, 0, &[]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("codec");
        assert!(
            matches!(err, RecordsError::UnknownCodec { at: 21, codec: 6 }),
            "{err:?}"
        );

        // Two records claimed, the payload holds one: the guard counts the
        // bytes of uncompressed batches.
        let one = kp_encode(&kp_records(0, 1, false), Compression::None);
        let bad = raw_batch(0, 2, &one[BATCH_HEADER_LEN..]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("count");
        assert!(matches!(err, RecordsError::Guard(_)), "{err:?}");

        // Compressed: the guard cannot look inside, the parser can.
        let gz = kp_encode(&kp_records(0, 1, false), Compression::Gzip);
        let bad = raw_batch(1, 3, &gz[BATCH_HEADER_LEN..]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("count");
        assert!(
            matches!(err, RecordsError::MalformedRecord { index: 1, .. }),
            "{err:?}"
        );
        let bad = raw_batch(1, 100, &gz[BATCH_HEADER_LEN..]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("count");
        assert!(
            matches!(err, RecordsError::RecordCount { declared: 100, .. }),
            "{err:?}"
        );
        let bad = raw_batch(1, 0, &gz[BATCH_HEADER_LEN..]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("count");
        assert!(
            matches!(err, RecordsError::RecordCount { declared: 0, .. }),
            "{err:?}"
        );

        // Garbage that is not gzip.
        let bad = raw_batch(1, 1, b"definitely not gzip");
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("gzip");
        assert!(
            matches!(
                err,
                RecordsError::Decompression {
                    codec: Codec::Gzip,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_snappy_bomb_is_refused_before_decompression() {
        // One xerial block claiming 4 GiB in six bytes: kafka-protocol
        // would zero 4 GiB before finding out.
        let mut payload = XERIAL_MAGIC.to_vec();
        payload.extend_from_slice(&6u32.to_be_bytes());
        payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        let bad = raw_batch(2, 1, &payload);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("bomb");
        assert!(
            matches!(
                err,
                RecordsError::Decompression {
                    codec: Codec::Snappy,
                    ..
                }
            ),
            "{err:?}"
        );
        // Raw snappy (no framing) is checked the same way.
        let bad = raw_batch(2, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("bomb");
        assert!(
            matches!(
                err,
                RecordsError::Decompression {
                    codec: Codec::Snappy,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// A zstd frame of `blocks` RLE blocks of 128 KiB each (four bytes per
    /// block on the wire).
    fn zstd_rle_frame(blocks: usize) -> Vec<u8> {
        let mut f = ZSTD_MAGIC.to_le_bytes().to_vec();
        f.push(0x00); // no content size, window descriptor follows
        f.push(7 << 3); // window 2^17
        for i in 0..blocks {
            let last = u32::from(i + 1 == blocks);
            let h = last | 1 << 1 | (128 << 10) << 3;
            f.extend_from_slice(&h.to_le_bytes()[..3]);
            f.push(b'A');
        }
        f
    }

    #[test]
    fn a_zstd_bomb_is_refused_before_decompression() {
        let frame = zstd_rle_frame(64); // 8 MiB from 262 bytes
        let bad = raw_batch(4, 1, &frame);
        let opts = RecordsOptions {
            max_batch_decompressed_bytes: 1 << 20,
            ..RecordsOptions::fetch()
        };
        let err = decode_record_set(&bad, &opts).expect_err("bomb");
        assert!(
            matches!(
                err,
                RecordsError::DecompressedTooLarge {
                    codec: Codec::Zstd,
                    size: 8_388_608,
                    limit: 1_048_576,
                    ..
                }
            ),
            "{err:?}"
        );
        // Within the limit it is decompressed, and then is no record.
        let err = decode_record_set(&bad, &RecordsOptions::fetch()).expect_err("garbage");
        assert!(
            matches!(err, RecordsError::MalformedRecord { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn decompressed_sizes_are_limited_for_every_codec() {
        for compression in CODECS.into_iter().skip(1) {
            let input = kp_encode(&kp_records(0, 200, false), compression);
            let opts = RecordsOptions {
                max_batch_decompressed_bytes: 1000,
                ..RecordsOptions::fetch()
            };
            let err = decode_record_set(&input, &opts).expect_err("too large");
            assert!(
                matches!(err, RecordsError::DecompressedTooLarge { .. }),
                "{err:?}"
            );
            // The per-call total counts every batch.
            let mut two = BytesMut::new();
            two.extend_from_slice(&kp_encode(&kp_records(0, 20, false), compression));
            two.extend_from_slice(&kp_encode(&kp_records(20, 20, false), compression));
            let two = two.freeze();
            let one_size = {
                let set = decode_record_set(&two, &RecordsOptions::fetch()).expect("decodes");
                let mut b = BytesMut::new();
                for r in &set.batches[0].records {
                    write_record(&mut b, r);
                }
                b.len() as u64
            };
            let opts = RecordsOptions {
                max_total_decompressed_bytes: one_size * 3 / 2,
                ..RecordsOptions::fetch()
            };
            let err = rewrite_records(&two, &opts, no_op).expect_err("total");
            assert!(
                matches!(err, RecordsError::DecompressedTooLarge { .. }),
                "{compression:?} {err:?}"
            );
        }
    }

    #[test]
    fn closure_errors_are_returned() {
        #[derive(Debug)]
        enum MyError {
            Records,
            Policy(i64),
        }
        impl From<RecordsError> for MyError {
            fn from(_: RecordsError) -> Self {
                MyError::Records
            }
        }
        let input = kp_encode(&kp_records(30, 3, false), Compression::None);
        let err = rewrite_records(&input, &RecordsOptions::produce(), |h, r| {
            Err::<Verdict, _>(MyError::Policy(h.offset_of(r)))
        })
        .expect_err("fails");
        assert!(matches!(err, MyError::Policy(30)));
        let err = rewrite_records(&input.slice(..20), &RecordsOptions::produce(), |_, _| {
            Ok::<_, MyError>(Verdict::Keep)
        })
        .expect_err("fails");
        assert!(matches!(err, MyError::Records));
    }

    #[test]
    fn empty_sets_are_fine() {
        let empty = Bytes::new();
        let out = rewrite_records(&empty, &RecordsOptions::produce(), no_op).expect("ok");
        assert!(out.records.is_empty());
        let set = decode_record_set(&empty, &RecordsOptions::fetch()).expect("ok");
        assert!(set.batches.is_empty());
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN, 300, -300] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN, 1 << 40, -(1 << 40)] {
            let mut b = BytesMut::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v));
            let mut pos = 0;
            assert_eq!(read_varlong(&b, &mut pos), Some(v));
        }
        // Six bytes is too long for an i32 varint.
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            None
        );
    }

    /// Key, value, headers and timestamp delta of a random record.
    type ArbRecord = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
        i64,
    );

    fn arb_record() -> impl Strategy<Value = ArbRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                ),
                0..4,
            ),
            -1_000_000i64..1_000_000,
        )
    }

    fn build(recs: &[ArbRecord], base_offset: i64, idempotent: bool) -> Vec<KpRecord> {
        recs.iter()
            .enumerate()
            .map(|(i, (k, v, h, ts))| KpRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 1,
                producer_id: if idempotent { 42 } else { -1 },
                producer_epoch: if idempotent { 3 } else { -1 },
                timestamp_type: KpTimestampType::Creation,
                offset: base_offset + i as i64,
                sequence: if idempotent {
                    100 + i as i32
                } else {
                    -1 + i as i32
                },
                timestamp: 1_600_000_000_000 + ts,
                key: k.clone().map(Bytes::from),
                value: v.clone().map(Bytes::from),
                headers: h
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone().map(Bytes::from)))
                    .collect(),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn random_batches_round_trip(
            recs in proptest::collection::vec(arb_record(), 1..50),
            codec in 0..CODECS.len(),
            base_offset in 0i64..1_000_000,
            idempotent in any::<bool>(),
        ) {
            let compression = CODECS[codec];
            let originals = build(&recs, base_offset, idempotent);
            let input = kp_encode(&originals, compression);
            let set = decode_record_set(&input, &RecordsOptions::produce()).expect("decodes");
            let output = encode_set(&set);
            prop_assert_eq!(kp_decode(&output), originals.clone());
            if compression == Compression::None {
                prop_assert_eq!(&output, &input);
            }

            // A rewrite that reverses every value, read back by kafka-protocol.
            let out = rewrite_records(&input, &RecordsOptions::produce(), |_, r| {
                if let Some(v) = &r.value {
                    let mut v = v.to_vec();
                    v.reverse();
                    r.value = Some(Bytes::from(v));
                }
                Ok::<_, RecordsError>(Verdict::Keep)
            }).expect("rewrites");
            let mut expected = originals;
            for r in &mut expected {
                r.value = r.value.as_ref().map(|v| {
                    let mut v = v.to_vec();
                    v.reverse();
                    Bytes::from(v)
                });
            }
            prop_assert_eq!(kp_decode(&out.records), expected);
        }

        #[test]
        fn mutated_sets_never_panic(
            codec in 0..CODECS.len(),
            n in 1i64..10,
            at in any::<usize>(),
            byte in any::<u8>(),
            resign in any::<bool>(),
        ) {
            let input = kp_encode(&kp_records(0, n, false), CODECS[codec]);
            let mut b = input.to_vec();
            let i = at % b.len();
            b[i] = byte;
            if resign {
                let crc = crc32c::crc32c(&b[OFFSET_ATTRIBUTES..]);
                b[OFFSET_CRC..OFFSET_ATTRIBUTES].copy_from_slice(&crc.to_be_bytes());
            }
            let b = Bytes::from(b);
            for opts in [RecordsOptions::produce(), RecordsOptions::fetch()] {
                let _ = decode_record_set(&b, &opts);
                let _ = rewrite_records(&b, &opts, uppercase);
            }
        }
    }
}
