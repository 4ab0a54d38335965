//! Field protection's transform per record set: 1 KB JSON posts with five
//! protected fields (email, name, handle, ip, geo; text of random words), encrypted as on
//! produce, then revealed as on fetch for a consumer that reads them clear
//! (trust-safety: five decryptions) and one that gets them masked,
//! pseudonymized or removed (analytics). A passthrough decode of the same
//! set is the baseline.
//!
//! `cargo bench -p gatehouse-proxy --bench fields`

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_keys::{KeyStore, LocalKeyFile, Pseudonymizer};
use gatehouse_policy::{Catalog, PolicyStore, PrincipalInfo};
use gatehouse_proxy::codec::records::{rewrite_records, RecordsError, RecordsOptions, Verdict};
use gatehouse_proxy::{cluster::keys::Keys, filter::fields::Protection};
use kafka_protocol::records::Compression;

mod support;

const RECORDS: usize = 100;
const SUBJECTS: usize = 20;

fn fields(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/default");
    let policies = Arc::new(PolicyStore::load(&root).expect("policies"));
    let catalog = Arc::new(Catalog::load(&root.join("catalog.toml")).expect("catalog"));
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek")).expect("kek"));
    let db = sled::Config::new().temporary(true).open().expect("sled");
    let store = KeyStore::open(
        db.open_tree("keys").expect("tree"),
        provider.clone(),
        10_000,
    )
    .expect("store");
    let pseudonyms = Pseudonymizer::new(provider.as_ref()).expect("pseudonyms");
    let protection = Protection::new(
        policies,
        catalog,
        Some(Arc::new(Keys::new(store, pseudonyms))),
    );
    let who = |name: &str, team: &str, purposes: &[&str]| {
        PrincipalInfo::new(name, team, "eu", purposes.iter().map(|p| p.to_string()))
    };
    let trust_safety = who("trust-safety", "trust_safety", &["moderation"]);
    let analytics = who("analytics", "analytics", &["analytics"]);

    for (codec, compression) in [("none", Compression::None), ("lz4", Compression::Lz4)] {
        let clear = support::posts(RECORDS, SUBJECTS, compression);
        let value_bytes: u64 = (0..RECORDS)
            .map(|i| support::post(i, &format!("u-{:06}", i % SUBJECTS)).len() as u64)
            .sum();
        let stored = protection
            .protect_record_set("social.posts", &clear)
            .expect("protect");
        // Check the work is real: every record changed, and reads back.
        let back = protection
            .reveal_record_set(&trust_safety, "social.posts", &stored)
            .expect("reveal");
        assert_eq!(
            values(&back),
            values(&clear),
            "clear view differs from what was produced"
        );

        eprintln!(
            "fields/{codec}: {} bytes as written (kafka-protocol's encoder), {} re-encoded by the proxy (clear view)",
            clear.len(),
            back.len()
        );
        let mut g = c.benchmark_group(format!("fields/{codec}"));
        g.throughput(Throughput::Bytes(value_bytes));
        g.bench_function("passthrough decode", |b| {
            b.iter(|| {
                rewrite_records(&stored, &RecordsOptions::fetch(), |_, _| {
                    Ok::<_, RecordsError>(Verdict::Keep)
                })
                .expect("decode")
            })
        });
        g.bench_function("produce: encrypt 5 fields", |b| {
            b.iter(|| {
                protection
                    .protect_record_set("social.posts", &clear)
                    .expect("protect")
            })
        });
        g.bench_function("fetch: clear (decrypt 5)", |b| {
            b.iter(|| {
                protection
                    .reveal_record_set(&trust_safety, "social.posts", &stored)
                    .expect("reveal")
            })
        });
        g.bench_function("fetch: masked/pseudonym/removed", |b| {
            b.iter(|| {
                protection
                    .reveal_record_set(&analytics, "social.posts", &stored)
                    .expect("reveal")
            })
        });
        g.finish();
    }
}

/// The record values of a record set (its bytes differ once re-compressed).
fn values(set: &bytes::Bytes) -> Vec<Option<bytes::Bytes>> {
    let mut out = Vec::new();
    rewrite_records(set, &RecordsOptions::fetch(), |_, r| {
        out.push(r.value.clone());
        Ok::<_, RecordsError>(Verdict::Keep)
    })
    .expect("decode");
    out
}

criterion_group!(benches, fields);
criterion_main!(benches);
