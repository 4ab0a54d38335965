//! Batch re-encoding: records, headers and varints written back in the
//! v2 format, compressed with the batch's codec.

use super::*;

pub(super) fn encode_batch(
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
    let compressed: Result<(), CodecError> = match codec {
        Codec::None => {
            write(out);
            Ok(())
        }
        Codec::Gzip => codecs::Gzip::compress(out, |b| {
            write(b);
            Ok(())
        })
        .map_err(Into::into),
        Codec::Snappy => codecs::Snappy::compress(out, |b| {
            write(b);
            Ok(())
        })
        .map_err(Into::into),
        Codec::Lz4 => lz4_frame(out, write),
        Codec::Zstd => codecs::Zstd::compress(out, |b| {
            write(b);
            Ok(())
        })
        .map_err(Into::into),
    };
    if let Err(e) = compressed {
        out.truncate(start);
        return Err(RecordsError::Compression {
            base_offset,
            codec,
            source: e,
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
pub(super) fn record_body_len(r: &Record) -> Option<usize> {
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
pub(super) fn write_record(out: &mut BytesMut, r: &Record) {
    let body = record_body_len(r).unwrap_or(0);
    put_varint(out, body as i32);
    out.put_i8(r.attributes);
    put_varlong(out, r.timestamp_delta);
    put_varint(out, r.offset_delta);
    put_bytes_field(out, r.key.as_deref());
    put_bytes_field(out, r.value.as_deref());
    r.headers.write(out);
}

pub(super) fn bytes_field_len(b: Option<&[u8]>) -> Option<usize> {
    match b {
        None => Some(1),
        Some(b) => Some(varint_len(i32::try_from(b.len()).ok()?) + b.len()),
    }
}

pub(super) fn put_bytes_field(out: &mut BytesMut, b: Option<&[u8]>) {
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
pub(super) fn read_uvarint(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Option<u64> {
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

pub(super) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let v = read_uvarint(buf, pos, 5)? as u32;
    Some((v >> 1) as i32 ^ -((v & 1) as i32))
}

pub(super) fn read_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let v = read_uvarint(buf, pos, 10)?;
    Some((v >> 1) as i64 ^ -((v & 1) as i64))
}

pub(super) fn put_uvarint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

pub(super) fn put_varint(out: &mut BytesMut, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

pub(super) fn put_varlong(out: &mut BytesMut, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(super) fn uvarint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(super) fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

pub(super) fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// LZ4 at the frame format's fast level (what librdkafka and the Java client
/// write by default). kafka-protocol's codec compresses at level 4, which
/// liblz4 runs as LZ4HC: about two thirds of the proxy's CPU on an lz4 batch
/// it re-encodes went there.
fn lz4_frame(out: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) -> Result<(), CodecError> {
    use std::io::Write as _;
    let mut plain = BytesMut::new();
    write(&mut plain);
    let mut encoder = lz4::EncoderBuilder::new()
        .level(0)
        .block_mode(lz4::BlockMode::Independent)
        // The batch's CRC32C covers the payload already (librdkafka writes
        // no content or block checksums either).
        .checksum(lz4::ContentChecksum::NoChecksum)
        .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
        .build(out.writer())?;
    encoder.write_all(&plain)?;
    let (_, finished) = encoder.finish();
    Ok(finished?)
}
