//! Topic configuration: the keys the broker understands, their defaults,
//! and validation of values set through CreateTopics / AlterConfigs.

use std::collections::BTreeMap;

/// The kind of value a config key takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An integer at or above the bound.
    Long(i64),
    /// A number between 0 and 1.
    Fraction,
    /// One of a list of words (comma-separated lists allowed when `list`).
    Choice(&'static [&'static str], bool),
}

/// (name, default, kind, description)
const KEYS: &[(&str, &str, Kind, &str)] = &[
    (
        "cleanup.policy",
        "delete",
        Kind::Choice(&["delete", "compact"], true),
        "delete old data by time/size, or keep the newest record per key",
    ),
    (
        "retention.ms",
        "604800000",
        Kind::Long(-1),
        "how long records are kept (-1: forever)",
    ),
    (
        "retention.bytes",
        "-1",
        Kind::Long(-1),
        "size a partition may grow to before old data is deleted (-1: no limit)",
    ),
    (
        "max.message.bytes",
        "1048588",
        Kind::Long(0),
        "largest record batch accepted",
    ),
    (
        "delete.retention.ms",
        "86400000",
        Kind::Long(0),
        "how long tombstones are kept on compacted topics",
    ),
    (
        "min.compaction.lag.ms",
        "0",
        Kind::Long(0),
        "records younger than this are never compacted",
    ),
    (
        "min.cleanable.dirty.ratio",
        "0.5",
        Kind::Fraction,
        "share of not yet compacted bytes that makes a partition worth compacting",
    ),
    (
        "segment.bytes",
        "1073741824",
        Kind::Long(14),
        "accepted for compatibility; storage is object-based",
    ),
    (
        "segment.ms",
        "604800000",
        Kind::Long(1),
        "accepted for compatibility; storage is object-based",
    ),
    (
        "min.insync.replicas",
        "1",
        Kind::Long(1),
        "accepted for compatibility; durability comes from the object store",
    ),
    (
        "compression.type",
        "producer",
        Kind::Choice(
            &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
            false,
        ),
        "batches are stored as the producer compressed them",
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        Kind::Choice(&["CreateTime"], false),
        "record timestamps come from the producer",
    ),
];

/// The default value of a known key.
pub fn default_of(key: &str) -> Option<&'static str> {
    KEYS.iter().find(|(k, ..)| *k == key).map(|(_, d, ..)| *d)
}

/// Every known key with its default.
pub fn all_keys() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    KEYS.iter().map(|(k, d, _, doc)| (*k, *d, *doc))
}

/// Checks one key/value; returns a message for the client on error.
pub fn validate(key: &str, value: &str) -> Result<(), String> {
    let Some((_, _, kind, _)) = KEYS.iter().find(|(k, ..)| *k == key) else {
        return Err(format!("unknown topic config '{key}'"));
    };
    match kind {
        Kind::Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= *min => Ok(()),
            _ => Err(format!(
                "'{key}' must be an integer >= {min}, not '{value}'"
            )),
        },
        Kind::Fraction => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!(
                "'{key}' must be a number between 0 and 1, not '{value}'"
            )),
        },
        Kind::Choice(words, list) => {
            let ok = if *list {
                value.split(',').all(|w| words.contains(&w.trim()))
            } else {
                words.contains(&value.trim())
            };
            if ok {
                Ok(())
            } else {
                Err(format!("'{key}' must be one of {words:?}, not '{value}'"))
            }
        }
    }
}

/// Validates a whole set of overrides.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// The effective value of `key` for a topic with `overrides`.
pub fn effective_i64(overrides: &BTreeMap<String, String>, key: &str) -> i64 {
    overrides
        .get(key)
        .map(String::as_str)
        .or_else(|| default_of(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// The effective value of a fractional `key` for a topic with `overrides`.
pub fn effective_f64(overrides: &BTreeMap<String, String>, key: &str) -> f64 {
    overrides
        .get(key)
        .map(String::as_str)
        .or_else(|| default_of(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.5)
}

/// Whether the topic's `cleanup.policy` includes `policy`.
pub fn has_policy(overrides: &BTreeMap<String, String>, policy: &str) -> bool {
    overrides
        .get("cleanup.policy")
        .map(String::as_str)
        .or_else(|| default_of("cleanup.policy"))
        .is_some_and(|v| v.split(',').any(|p| p.trim() == policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such.key", "1").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.01").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("min.compaction.lag.ms", "-1").is_err());
        let c = BTreeMap::from([("cleanup.policy".to_string(), "compact, delete".to_string())]);
        assert!(has_policy(&c, "compact") && has_policy(&c, "delete"));
        assert!(!has_policy(&BTreeMap::new(), "compact"));
        assert_eq!(
            effective_f64(&BTreeMap::new(), "min.cleanable.dirty.ratio"),
            0.5
        );
        let o = BTreeMap::from([("retention.bytes".to_string(), "10".to_string())]);
        assert_eq!(effective_i64(&o, "retention.bytes"), 10);
        assert_eq!(effective_i64(&o, "retention.ms"), 604_800_000);
    }
}
