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

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_proxy::codec::records::{decode_record_set, RecordsOptions, BATCH_HEADER_LEN};
use kafka_protocol::records::Compression;

mod support;

const RECORDS: usize = 100;
const SUBJECTS: usize = 20;

fn records(c: &mut Criterion) {
    let opts = RecordsOptions::produce();
    let payload =
        (support::posts(RECORDS, SUBJECTS, Compression::None).len() - BATCH_HEADER_LEN) as u64;
    for (codec, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let input = support::posts(RECORDS, SUBJECTS, compression);
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
