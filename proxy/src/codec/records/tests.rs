//! Unit and property tests of the record batch codec.

use super::*;
use compress::{XERIAL_MAGIC, ZSTD_MAGIC};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KpRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KpTimestampType,
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
            let again = decode_record_set(&output, &RecordsOptions::produce()).expect("decodes");
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
        let out = rewrite_records(&input, &RecordsOptions::produce(), uppercase).expect("rewrites");
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

        let out = rewrite_records(&input, &RecordsOptions::fetch(), uppercase).expect("rewrites");
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
        let err = rewrite_records(&input, &RecordsOptions::produce(), no_op).expect_err("refused");
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
    let err = decode_record_set(&Bytes::from(bad), &RecordsOptions::fetch()).expect_err("magic");
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

#[test]
fn a_gzip_bomb_is_inflated_only_to_the_limit() {
    use std::io::Write;
    // 64 MiB of zeros in about 64 KiB of gzip: inflation stops one byte
    // past the 1 MiB limit instead of producing all 64 MiB first.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).expect("compress");
    }
    let payload = gz.finish().expect("compress");
    assert!(payload.len() < 1 << 17, "{} bytes", payload.len());
    let bad = raw_batch(1, 1, &payload);
    let opts = RecordsOptions {
        max_batch_decompressed_bytes: 1 << 20,
        ..RecordsOptions::produce()
    };
    let err = decode_record_set(&bad, &opts).expect_err("bomb");
    assert!(
        matches!(
            err,
            RecordsError::DecompressedTooLarge {
                codec: Codec::Gzip,
                size: 1_048_577,
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.produce_error_code(), MESSAGE_TOO_LARGE);
    assert!(
        err.to_string().contains("over the limit of 1048576"),
        "{err}"
    );
}
