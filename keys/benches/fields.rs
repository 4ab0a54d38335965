//! Hot-path costs: field encryption/decryption, masking, pseudonyms.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatehouse_keys::{
    decrypt_field_into, encrypt_field_into, mask_into, DataKey, FieldBinding, KeyId, LocalKeyFile,
    Pseudonymizer,
};
use std::hint::black_box;

/// A post's email field, bound to its topic, path and subject.
const BINDING: FieldBinding<'static> = FieldBinding {
    topic: "social.posts",
    path: "$.author.email",
    subject: "u-000042",
};

fn fields(c: &mut Criterion) {
    // 64-byte JSON string field (quotes included).
    let value = format!("\"{}\"", "a".repeat(62));
    let value = value.as_bytes();
    let Ok(key) = DataKey::from_bytes(KeyId([1; 16]), &[7; 32]) else {
        return;
    };
    let mut token = Vec::new();
    if encrypt_field_into(&key, &BINDING, value, &mut token).is_err() {
        return;
    }

    let mut g = c.benchmark_group("field");
    g.throughput(Throughput::Bytes(value.len() as u64));
    let mut out = Vec::with_capacity(256);
    g.bench_function("encrypt_64B", |b| {
        b.iter(|| {
            out.clear();
            let r = encrypt_field_into(&key, &BINDING, black_box(value), &mut out);
            black_box((r.is_ok(), out.len()))
        })
    });
    g.bench_function("decrypt_64B", |b| {
        b.iter(|| {
            out.clear();
            let r = decrypt_field_into(&key, &BINDING, black_box(&token), &mut out);
            black_box((r.is_ok(), out.len()))
        })
    });
    let email = br#""jane.doe@example.com""#;
    g.throughput(Throughput::Bytes(email.len() as u64));
    g.bench_function("mask_email", |b| {
        b.iter(|| {
            out.clear();
            mask_into("email", black_box(email), &mut out);
            black_box(out.len())
        })
    });
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(provider) = LocalKeyFile::open_or_create(&dir.path().join("kek.json")) else {
        return;
    };
    let Ok(ps) = Pseudonymizer::new(&provider) else {
        return;
    };
    let handle = br#""@janedoe""#;
    g.throughput(Throughput::Bytes(handle.len() as u64));
    g.bench_function("token_handle", |b| {
        b.iter(|| {
            out.clear();
            ps.token_into("handle", black_box(handle), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, fields);
criterion_main!(benches);
