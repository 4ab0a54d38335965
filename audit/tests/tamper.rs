#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use gatehouse_audit::{verify, AuditError, AuditLog, Decision, Problem};

/// Writes `n` events into one replica and closes; returns the chain directory.
async fn build(root: &Path, n: u64, segment_max: Option<u64>) -> PathBuf {
    let mut cfg = config(root, "r1");
    cfg.checkpoint_every = 5;
    if let Some(m) = segment_max {
        cfg.segment_max_bytes = m;
    }
    let dir = cfg.dir.clone();
    let log = AuditLog::open(cfg).await.unwrap();
    for i in 0..n {
        let kind = if i % 3 == 0 {
            decision("alice", "orders", Decision::Deny)
        } else {
            delivery("alice", "orders", &["s1"])
        };
        log.append(kind).await.unwrap();
    }
    log.close().await.unwrap();
    dir
}

fn problem(dir: &Path) -> Problem {
    let report = verify(&[dir.to_path_buf()]).unwrap();
    report.replicas[0]
        .first_problem
        .clone()
        .expect("tampering must be detected")
}

#[tokio::test]
async fn clean_log_verifies() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let report = verify(&[dir]).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let r = &report.replicas[0];
    assert_eq!(r.replica, "r1");
    // 20 events + a checkpoint after every 5 (4), none extra on close.
    assert_eq!(r.events, 24);
    assert_eq!(r.checkpoints, 4);
}

#[tokio::test]
async fn flipped_byte_reports_that_event() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let mut lines = read_lines(&seg);
    // Line 8 is seq 8; flip one letter of its principal.
    assert!(lines[7].contains("\"seq\":8,"));
    lines[7] = lines[7].replacen("alice", "alicf", 1);
    write_lines(&seg, &lines);
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (8, Some(8)), "{p:?}");
    assert_eq!(p.segment, "segment-000000000001.jsonl");

    // Any single byte, including in a key name, the hash or the digits.
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 6, None).await;
    let seg = segment(&dir, 1);
    let original = std::fs::read(&seg).unwrap();
    let lines = read_lines(&seg);
    let start: usize = lines[..2].iter().map(|l| l.len() + 1).sum();
    for i in start..start + lines[2].len() {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let p = problem(&dir);
        // Reported at that line; the seq is the one stored there (if still readable).
        assert_eq!(p.line, 3, "byte {i}: {p:?}");
    }
}

#[tokio::test]
async fn deleted_line_reports_the_event_after_the_gap() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let mut lines = read_lines(&seg);
    lines.remove(9); // seq 10
    write_lines(&seg, &lines);
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (10, Some(11)), "{p:?}");
}

#[tokio::test]
async fn swapped_lines_are_reported() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let mut lines = read_lines(&seg);
    lines.swap(11, 12); // seqs 12 and 13
    write_lines(&seg, &lines);
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (12, Some(13)), "{p:?}");
    assert!(p.reason.contains("expected seq 12"), "{p:?}");
}

#[tokio::test]
async fn truncated_older_segment_is_reported_at_the_next_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 40, Some(2000)).await;
    assert!(segment(&dir, 3).exists(), "expected several segments");
    let seg1 = segment(&dir, 1);
    let lines = read_lines(&seg1);
    let kept = lines.len() / 2;
    write_lines(&seg1, &lines[..kept]);
    let first_of_2: u64 = {
        let l = &read_lines(&segment(&dir, 2))[0];
        let ev: gatehouse_audit::Event = serde_json::from_str(l).unwrap();
        ev.seq
    };
    let p = problem(&dir);
    assert_eq!(p.segment, "segment-000000000002.jsonl");
    assert_eq!((p.line, p.seq), (1, Some(first_of_2)), "{p:?}");

    // Cut in the middle of a line instead: that line is reported.
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 40, Some(2000)).await;
    let seg1 = segment(&dir, 1);
    let bytes = std::fs::read(&seg1).unwrap();
    let lines = read_lines(&seg1);
    let cut: usize = lines[..3].iter().map(|l| l.len() + 1).sum::<usize>() + 10;
    std::fs::write(&seg1, &bytes[..cut]).unwrap();
    let p = problem(&dir);
    assert_eq!(
        (p.segment.as_str(), p.line),
        ("segment-000000000001.jsonl", 4),
        "{p:?}"
    );
}

#[tokio::test]
async fn truncated_tail_is_reported_against_the_signed_head() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let lines = read_lines(&seg);
    assert_eq!(lines.len(), 24);
    // Remove the last 6 lines (the closing checkpoint among them): ends at seq 18.
    write_lines(&seg, &lines[..18]);
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (19, Some(19)), "{p:?}");
    assert!(
        p.reason
            .contains("log ends at seq 18 but the signed head says 24"),
        "{p:?}"
    );

    // Deleting the whole newest segment is a tail truncation too.
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 40, Some(2000)).await;
    let segs: Vec<_> = (1..100)
        .map(|n| segment(&dir, n))
        .take_while(|p| p.exists())
        .collect();
    std::fs::remove_file(segs.last().unwrap()).unwrap();
    let p = problem(&dir);
    assert!(p.reason.contains("signed head says"), "{p:?}");

    // And so is deleting head.json with it.
    std::fs::remove_file(dir.join(gatehouse_audit::HEAD_FILE)).unwrap();
    let p = problem(&dir);
    assert!(p.reason.contains("missing"), "{p:?}");
}

#[tokio::test]
async fn forged_checkpoint_signature_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 10, None).await;
    // Replace the verifying key by another one: every signature fails.
    let other =
        gatehouse_audit::SigningKey::load_or_create(&root.path().join("other.pk8")).unwrap();
    std::fs::write(
        dir.join(gatehouse_audit::VERIFYING_KEY_FILE),
        other.public_base64(),
    )
    .unwrap();
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (6, Some(6)), "{p:?}");
    assert!(p.reason.contains("signature"), "{p:?}");
}

#[tokio::test]
async fn open_refuses_a_tampered_chain_with_its_location() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let mut lines = read_lines(&seg);
    lines.remove(21); // after the last periodic checkpoint (seq 18): open verifies it
    write_lines(&seg, &lines);
    match AuditLog::open(config(root.path(), "r1")).await {
        Err(AuditError::Corrupt {
            segment, line, seq, ..
        }) => {
            assert_eq!(
                (segment.as_str(), line, seq),
                ("segment-000000000001.jsonl", 22, Some(23))
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A truncated tail refuses to open too.
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let lines = read_lines(&seg);
    write_lines(&seg, &lines[..20]);
    match AuditLog::open(config(root.path(), "r1")).await {
        Err(AuditError::Corrupt { reason, .. }) => {
            assert!(reason.contains("signed head says 24"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn open_verifies_from_the_last_checkpoint_verify_from_the_start() {
    let root = tempfile::tempdir().unwrap();
    let dir = build(root.path(), 20, None).await;
    let seg = segment(&dir, 1);
    let mut lines = read_lines(&seg);
    // Same length, so the head's checkpoint hint (offset of seq 24) still holds.
    lines[2] = lines[2].replacen("alice", "alicf", 1);
    write_lines(&seg, &lines);
    // Open checks from the newest checkpoint (seq 24) on: it opens.
    let log = AuditLog::open(config(root.path(), "r1")).await.unwrap();
    log.close().await.unwrap();
    // verify recomputes everything.
    let p = problem(&dir);
    assert_eq!((p.line, p.seq), (3, Some(3)), "{p:?}");
}
