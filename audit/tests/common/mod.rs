#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_audit::{AuditConfig, Decision, EventKind};
use zeroize::Zeroizing;

pub const SECRET: [u8; 32] = [7u8; 32];

/// Config with the key outside the chain directory.
pub fn config(root: &Path, replica: &str) -> AuditConfig {
    let mut cfg = AuditConfig::new(
        root.join(replica),
        replica,
        root.join("keys").join(format!("{replica}.pk8")),
        Zeroizing::new(SECRET),
    );
    cfg.flush_interval = Duration::from_millis(1);
    cfg
}

pub fn delivery(principal: &str, topic: &str, subjects: &[&str]) -> EventKind {
    let mut fields = BTreeMap::new();
    fields.insert("mask".to_string(), vec!["$.email".to_string()]);
    EventKind::Delivery {
        principal: principal.into(),
        topic: topic.into(),
        partition: 0,
        first_offset: 10,
        last_offset: 20,
        records: 11,
        fields,
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        policies: vec!["pii-mask".into()],
    }
}

pub fn decision(principal: &str, topic: &str, d: Decision) -> EventKind {
    EventKind::Decision {
        principal: principal.into(),
        api: "Fetch".into(),
        resource_type: "topic".into(),
        resource: topic.into(),
        decision: d,
        policies: vec!["base".into()],
        reason: None,
    }
}

pub fn segment(dir: &Path, n: u64) -> PathBuf {
    dir.join(gatehouse_audit::segment_file_name(n))
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    if !lines.is_empty() {
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}
