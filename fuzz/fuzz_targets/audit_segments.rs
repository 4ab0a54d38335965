//! The audit segment reader: the input becomes the one segment of a chain
//! directory (with the chain's verifying key and head when the seed
//! corpus has them, split at NUL bytes), which `gatehouse_audit::verify`
//! reads line by line (JSON, hashes, links, checkpoints, head) and
//! `gatehouse_audit::query` reads (building its index first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("gatehouse-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let d = dir();
    let mut parts = data.splitn(3, |&b| b == 0).collect::<Vec<_>>();
    // segment NUL key NUL head: the seeds are real chains in that form.
    parts.resize(3, &[]);
    // Each input alone: no head or index left by the one before (`query`
    // builds a redb index in the directory).
    let _ = std::fs::remove_file(d.join("index.redb"));
    let _ = std::fs::remove_file(d.join("head.json"));
    let _ = std::fs::remove_file(d.join("verifying_key.pub"));
    std::fs::write(d.join("segment-000000000001.jsonl"), parts[0]).unwrap();
    if !parts[1].is_empty() {
        std::fs::write(d.join("verifying_key.pub"), parts[1]).unwrap();
    }
    if !parts[2].is_empty() {
        std::fs::write(d.join("head.json"), parts[2]).unwrap();
    }
    let dirs = [d.clone()];
    let _ = gatehouse_audit::verify(&dirs);
    let _ = gatehouse_audit::query(&dirs, &gatehouse_audit::Query::default());
});
