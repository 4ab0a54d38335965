//! Decompression with the size of every codec's output bounded before
//! anything is inflated.

use super::*;

pub(super) struct Budget {
    per_batch: u64,
    remaining: u64,
}

impl Budget {
    pub(super) fn new(opts: &RecordsOptions) -> Self {
        Self {
            per_batch: opts.max_batch_decompressed_bytes,
            remaining: opts.max_total_decompressed_bytes,
        }
    }

    fn limit(&self) -> u64 {
        self.per_batch.min(self.remaining)
    }
}

pub(super) fn take_all<E>(buf: &mut Bytes) -> Result<Bytes, E> {
    Ok(std::mem::take(buf))
}

/// Decompresses a batch's payload within the budget.
pub(super) fn decompress(
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
    if codec == Codec::Gzip {
        // Gzip's framing gives no size to check first: inflate as a stream
        // and stop one byte past the limit, so that a bomb costs the limit,
        // not what it inflates to.
        let mut out = Vec::new();
        let mut inflater =
            std::io::Read::take(flate2::read::MultiGzDecoder::new(&payload[..]), limit + 1);
        std::io::Read::read_to_end(&mut inflater, &mut out).map_err(|e| failed(e.into()))?;
        let size = out.len() as u64;
        if size > limit {
            return Err(too_large(size));
        }
        budget.remaining -= size;
        return Ok(Bytes::from(out));
    }
    let decompressed = match codec {
        Codec::None | Codec::Gzip => Ok(payload),
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

pub(super) const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The decompressed size a snappy payload claims, framed the way
/// `kafka_protocol`'s decoder reads it (xerial if the 16-byte magic is
/// there, raw otherwise). The codec allocates (and zeroes) what the blocks
/// claim before decoding them, so this must run first.
pub(super) fn snappy_bound(p: &[u8]) -> Result<u64, &'static str> {
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

pub(super) fn snappy_block_bound(block: &[u8]) -> Result<u64, &'static str> {
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
pub(super) const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames (both LZ4 and zstd) have magics 0x184D2A50..=0x184D2A5F.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
const ZSTD_MAX_BLOCK: u64 = 128 << 10;

pub(super) fn le_u32(p: &[u8], at: usize) -> Result<u32, &'static str> {
    p.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("truncated frame")
}

/// Skips `n` bytes from `pos`, which must stay within `p`.
pub(super) fn skip(p: &[u8], pos: usize, n: usize) -> Result<usize, &'static str> {
    pos.checked_add(n)
        .filter(|&end| end <= p.len())
        .ok_or("truncated frame")
}

/// An upper bound of what an LZ4 frame sequence decompresses to: each
/// block yields at most its frame's block size, and at most 255 bytes per
/// compressed byte (plus slack).
pub(super) fn lz4_bound(p: &[u8]) -> Result<u64, &'static str> {
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
pub(super) fn zstd_bound(p: &[u8]) -> Result<u64, &'static str> {
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
