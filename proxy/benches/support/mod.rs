//! What the proxy's benchmarks share: social posts and the record batches
//! a producer would write of them. (`mod support;` in each bench.)

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

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

/// Post `i` by `subject`, about 1 KB: five personal fields (email, name,
/// handle, ip, geo) and free text of words drawn at random (the same for
/// every run), so that a batch compresses like text (3.6:1 with lz4, 5:1
/// with gzip) rather than 40:1 like one sentence repeated.
pub fn post(i: usize, subject: &str) -> String {
    let mut v = format!(
        r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"{subject}","email":"jane.doe.{i}@example.com","name":"Jane Doe","handle":"@janedoe{i}","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"campaign":"cmp-2026-11","sentiment":null,"text":""#
    );
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

/// One batch of (key, value) records as a producer writes it with
/// `compression` (kafka-protocol's encoder, the codecs the proxy uses).
pub fn batch(records: &[(String, String)], compression: Compression) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
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
            key: Some(Bytes::from(k.clone())),
            value: Some(Bytes::from(v.clone())),
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

/// `n` posts by `subjects` authors (keyed by their author), as one batch.
#[allow(dead_code)] // not every bench uses it
pub fn posts(n: usize, subjects: usize, compression: Compression) -> Bytes {
    let records: Vec<(String, String)> = (0..n)
        .map(|i| {
            let subject = format!("u-{:06}", i % subjects);
            let value = post(i, &subject);
            (subject, value)
        })
        .collect();
    batch(&records, compression)
}
