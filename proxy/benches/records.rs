//! Record batch decode and re-encode per codec, with the proxy's own
//! functions (`records::decode_record_set`, `RecordSet::encode`): one batch
//! of 100 records of ~1 KB JSON posts (text of random words, so it
//! compresses about 3.5-5:1), as a producer writes it with each codec
//! (none, gzip, snappy, lz4, zstd). `decode` is the wire guard, CRC check,
//! decompression and record parsing; `decode + re-encode` adds writing the
//! batch back (compression and CRC) into a reused buffer, which is what a
//! filter that changes a record pays. Throughput is the uncompressed record
//! payload (the records section of the batch before compression), the same
//! for every codec.
//!
//! `cargo bench -p gatehouse-proxy --bench records`

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_proxy::records::{decode_record_set, RecordsOptions, BATCH_HEADER_LEN};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const RECORDS: usize = 100;
const SUBJECTS: usize = 20;

const WORDS: [&str; 64] = [
    "the",
    "campaign",
    "is",
    "great",
    "support",
    "answered",
    "in",
    "minutes",
    "#brand",
    "new",
    "launch",
    "store",
    "order",
    "delivery",
    "late",
    "again",
    "thanks",
    "@helpdesk",
    "refund",
    "price",
    "quality",
    "love",
    "hate",
    "app",
    "update",
    "crashes",
    "on",
    "my",
    "phone",
    "since",
    "yesterday",
    "best",
    "worst",
    "ever",
    "coffee",
    "shoes",
    "size",
    "fits",
    "perfectly",
    "colour",
    "blue",
    "red",
    "weekend",
    "sale",
    "discount",
    "code",
    "works",
    "broken",
    "link",
    "website",
    "checkout",
    "slow",
    "fast",
    "shipping",
    "free",
    "return",
    "policy",
    "customer",
    "service",
    "recommend",
    "friends",
    "family",
    "2026",
    "😀",
];

fn post(i: usize) -> String {
    let subject = format!("u-{:06}", i % SUBJECTS);
    let mut v = format!(
        r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"{subject}","email":"jane.doe.{i}@example.com","name":"Jane Doe","handle":"@janedoe{i}","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"campaign":"cmp-2026-11","sentiment":null,"text":""#
    );
    // Fill the free text up to about 1 KB with words drawn at random (the
    // same for every run), so that the batch compresses like text (3.6:1
    // with lz4, 5:1 with gzip) rather than 40:1 like one sentence repeated.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ i as u64;
    while v.len() < 1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.push_str(WORDS[(seed % WORDS.len() as u64) as usize]);
        v.push(' ');
    }
    v.push_str("\"}");
    v
}

/// The batch a producer writes with `compression` (kafka-protocol's
/// encoder, the same codecs the proxy uses).
fn batch(compression: Compression) -> Bytes {
    let records: Vec<Record> = (0..RECORDS)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("u-{:06}", i % SUBJECTS))),
            value: Some(Bytes::from(post(i))),
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
    .expect("fixed records encode");
    buf.freeze()
}

fn records(c: &mut Criterion) {
    let opts = RecordsOptions::produce();
    let payload = (batch(Compression::None).len() - BATCH_HEADER_LEN) as u64;
    for (codec, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let input = batch(compression);
        // Check the work is real: the set decodes to every record, and
        // what is written back decodes to the same set.
        let set = decode_record_set(&input, &opts).expect("fixed batch decodes");
        assert_eq!(set.batches.len(), 1);
        assert_eq!(set.batches[0].records.len(), RECORDS);
        let mut out = BytesMut::new();
        set.encode(&mut out).expect("decoded set encodes");
        let again = decode_record_set(&out.clone().freeze(), &opts).expect("re-encoded decodes");
        assert_eq!(again, set, "{codec}: re-encoded set differs");
        if compression == Compression::None {
            assert_eq!(
                &out[..],
                &input[..],
                "uncompressed re-encode is not identical"
            );
        }
        println!(
            "records/{codec}: {} bytes on the wire, {payload} bytes of records",
            input.len()
        );

        let mut g = c.benchmark_group(format!("records/{codec}"));
        g.throughput(Throughput::Bytes(payload));
        g.bench_function("decode", |b| {
            b.iter(|| decode_record_set(&input, &opts).expect("fixed batch decodes"))
        });
        g.bench_function("decode + re-encode", |b| {
            b.iter(|| {
                let set = decode_record_set(&input, &opts).expect("fixed batch decodes");
                out.clear();
                set.encode(&mut out).expect("decoded set encodes");
                out.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, records);
criterion_main!(benches);
