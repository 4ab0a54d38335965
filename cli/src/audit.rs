//! `gatehouse audit`: the auditor's questions, answered from the chains of
//! every replica given.
//!
//! Subject ids are stored as keyed hashes; the auditor gives the clear id
//! and this module hashes it with the secret the proxies use (derived from
//! the key provider, so it needs the `[keys]` key file).

use std::path::{Path, PathBuf};

use gatehouse_audit::{Decision, Event, EventKind, Query};
use gatehouse_keys::{KekProvider, LocalKeyFile};

/// Why an audit command cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AuditCommandError {
    /// Bad arguments or setup.
    #[error("{0}")]
    Setup(String),
    /// The log refused.
    #[error(transparent)]
    Audit(#[from] gatehouse_audit::AuditError),
    /// The key provider refused.
    #[error(transparent)]
    Keys(#[from] gatehouse_keys::KeyError),
}

/// The demo's audit directory and key file.
pub fn demo_audit_paths(data: &Path) -> (PathBuf, PathBuf) {
    (data.join("audit"), data.join("keys").join("kek.toml"))
}

/// The keyed hash under which the proxies record `subject`.
pub fn subject_hash(key_file: &Path, subject: &str) -> Result<String, AuditCommandError> {
    let provider = LocalKeyFile::open(key_file)?;
    let secret =
        gatehouse_keys::Zeroizing::new(provider.mac(gatehouse_audit::SUBJECT_SECRET_LABEL)?);
    Ok(gatehouse_audit::hash_subject(&secret, subject))
}

/// Parses a time: epoch milliseconds, or RFC 3339 in UTC
/// (`2026-11-26T08:00:00Z`, fractional seconds allowed); see
/// [`gatehouse_audit::time::parse_time`].
pub fn parse_time(text: &str) -> Result<u64, AuditCommandError> {
    gatehouse_audit::time::parse_time(text).map_err(|e| AuditCommandError::Setup(e.to_string()))
}

/// Parses `allow` / `deny`.
pub fn parse_decision(text: &str) -> Result<Decision, AuditCommandError> {
    match text {
        "allow" => Ok(Decision::Allow),
        "deny" => Ok(Decision::Deny),
        other => Err(AuditCommandError::Setup(format!(
            "decision {other}: expected allow or deny"
        ))),
    }
}

/// One line of text about an event (for tables).
pub fn describe(e: &EventKind) -> String {
    match e {
        EventKind::AuthOk {
            mechanism, peer, ..
        } => format!("authenticated ({mechanism}) from {peer}"),
        EventKind::AuthRefused {
            mechanism,
            peer,
            reason,
            ..
        } => {
            format!("authentication refused ({mechanism}) from {peer}: {reason}")
        }
        EventKind::Decision {
            api,
            resource_type,
            resource,
            decision,
            policies,
            reason,
            ..
        } => {
            let outcome = match decision {
                Decision::Allow => "allowed",
                Decision::Deny => "denied",
            };
            let by = match (policies.is_empty(), reason) {
                (true, Some(reason)) => format!("({reason})"),
                (true, None) => "by [default deny]".to_string(),
                (false, None) => format!("by [{}]", policies.join(", ")),
                (false, Some(reason)) => format!("by [{}] ({reason})", policies.join(", ")),
            };
            format!("{api} {resource_type} {resource}: {outcome} {by}")
        }
        EventKind::Delivery {
            topic,
            partition,
            first_offset,
            last_offset,
            records,
            fields,
            subjects,
            policies,
            ..
        } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.join(" ")))
                .collect();
            format!(
                "received {topic}/{partition} offsets {first_offset}-{last_offset} ({records} records, {} subjects) fields {{{}}} by [{}]",
                subjects.len(),
                fields.join("; "),
                policies.join(", ")
            )
        }
        EventKind::Produce {
            topic,
            partition,
            base_offset,
            records,
            subjects,
            ..
        } => format!(
            "produced {topic}/{partition} at offset {base_offset} ({records} records, {} subjects)",
            subjects.len()
        ),
        EventKind::PolicyReload {
            policy_hash,
            trigger,
            accepted,
            message,
        } => format!(
            "policies {policy_hash} {} ({trigger}){}",
            if *accepted { "loaded" } else { "refused" },
            message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        EventKind::KeyOperation {
            operation,
            key_id,
            actor,
            detail,
            ..
        } => {
            format!(
                "key {operation} {} by {actor}{}",
                key_id.as_deref().unwrap_or("-"),
                detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )
        }
        EventKind::Erasure { step, detail, .. } => format!("erasure {step}: {detail}"),
        other => other.type_name().to_string(),
    }
}

/// Output formats of `gatehouse audit query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text.
    Table,
    /// One JSON event per line.
    Json,
    /// Comma-separated: time, replica, seq, type, principal, topic, detail.
    Csv,
}

/// Renders events.
pub fn render(events: &[Event], format: Format) -> Result<String, AuditCommandError> {
    let mut out = String::new();
    match format {
        Format::Json => {
            for e in events {
                out.push_str(
                    &serde_json::to_string(e)
                        .map_err(|e| AuditCommandError::Setup(e.to_string()))?,
                );
                out.push('\n');
            }
        }
        Format::Csv => {
            out.push_str("time,replica,seq,type,principal,topic,detail\n");
            for e in events {
                let cells = [
                    gatehouse_audit::time::format_time(e.time_ms),
                    e.replica.clone(),
                    e.seq.to_string(),
                    e.kind.type_name().to_string(),
                    e.kind.principal().unwrap_or("").to_string(),
                    e.kind.topic().unwrap_or("").to_string(),
                    describe(&e.kind),
                ];
                let quoted: Vec<String> = cells
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect();
                out.push_str(&quoted.join(","));
                out.push('\n');
            }
        }
        Format::Table => {
            for e in events {
                out.push_str(&format!(
                    "{}  {}#{:<6} {:<13} {:<14} {}\n",
                    gatehouse_audit::time::format_time(e.time_ms),
                    e.replica,
                    e.seq,
                    e.kind.type_name(),
                    e.kind.principal().unwrap_or("-"),
                    describe(&e.kind)
                ));
            }
        }
    }
    Ok(out)
}

/// A query over `dirs`.
pub fn run_query(dirs: &[PathBuf], q: &Query) -> Result<Vec<Event>, AuditCommandError> {
    if dirs.is_empty() {
        return Err(AuditCommandError::Setup("no audit directory given".into()));
    }
    Ok(gatehouse_audit::query(dirs, q)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_times_are_setup_errors() {
        assert_eq!(
            parse_time("2026-11-26T08:00:00Z").unwrap(),
            1_795_680_000_000
        );
        assert!(matches!(
            parse_time("yesterday"),
            Err(AuditCommandError::Setup(m)) if m.contains("yesterday")
        ));
    }
}
