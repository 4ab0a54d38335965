//! Shared helpers: the shipped policy directory, the demo principals, and
//! scratch copies of the policies for reload tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gatehouse_policy::PrincipalInfo;

/// `policies/default`.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("default")
}

/// A principal of SCENARIO.md's table, by name.
pub fn principal(name: &str) -> PrincipalInfo {
    let (team, region, purposes): (&str, &str, &[&str]) = match name {
        "ingest" => ("platform", "eu", &[]),
        "trust-safety" => ("trust_safety", "eu", &["moderation"]),
        "analytics" => ("analytics", "eu", &["analytics"]),
        "marketing-us" => ("marketing", "us", &["marketing"]),
        "support" => ("support", "eu", &["support"]),
        "auditor" => ("compliance", "eu", &["audit"]),
        other => panic!("no demo principal {other}"),
    };
    PrincipalInfo::new(name, team, region, purposes.iter().copied())
}

/// A fresh directory holding a copy of the shipped `*.cedar` files and
/// catalog (no fixtures).
pub fn scratch_copy(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "policies-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    for entry in std::fs::read_dir(shipped_dir()).expect("read shipped dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}
