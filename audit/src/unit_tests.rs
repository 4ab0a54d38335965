//! Tests that need crate internals (fault injection).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use zeroize::Zeroizing;

use crate::{verify, AuditConfig, AuditError, AuditLog, EventKind};

fn kind() -> EventKind {
    EventKind::PolicyReload {
        policy_hash: "abc".into(),
        trigger: "test".into(),
        accepted: true,
        message: None,
    }
}

/// Disk full for real: the writer's segment file is swapped for `/dev/full`, whose
/// writes fail with ENOSPC.
#[tokio::test]
async fn disk_full_fails_closed_until_reopened() {
    let root = tempfile::tempdir().unwrap();
    let mk = || {
        let mut c = AuditConfig::new(
            root.path().join("r1"),
            "r1",
            root.path().join("key.pk8"),
            Zeroizing::new([1u8; 32]),
        );
        c.flush_interval = Duration::ZERO;
        c
    };
    let log = AuditLog::open(mk()).await.unwrap();
    assert_eq!(log.append(kind()).await.unwrap(), 1);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    log.swap_file_for_test(full).await;
    let err = log.append(kind()).await.unwrap_err();
    assert!(
        matches!(err, AuditError::Unavailable(ref m) if m.contains("No space")),
        "{err}"
    );
    // Fail closed: the next ones fail too, concurrently or not.
    let (a, b) = tokio::join!(log.append(kind()), log.append_all(vec![kind(), kind()]));
    assert!(matches!(a, Err(AuditError::Unavailable(_))));
    assert!(matches!(b, Err(AuditError::Unavailable(_))));
    assert!(log.close().await.is_err());
    assert!(matches!(log.append(kind()).await, Err(AuditError::Closed)));

    let log = AuditLog::open(mk()).await.unwrap();
    assert_eq!(log.append(kind()).await.unwrap(), 2);
    log.close().await.unwrap();
    assert!(verify(&[root.path().join("r1")]).unwrap().is_clean());
}
