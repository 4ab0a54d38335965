//! Reading side: [`query`], [`verify`], [`export_cloudevents`].

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{AuditError, Result};
use crate::event::{Decision, Event};
use crate::index::{read_at, sync_tail, Access, Index, Locator, ReaderGuard, DEFAULT_BLOCK_EVENTS};
use crate::key::{read_head, read_verifying_key, HEAD_FILE, VERIFYING_KEY_FILE};
use crate::segment::{list_segments, scan_segment, segment_name, Chain};

/// What to look for. Every field that is set must match (AND); `Default` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Matches [`crate::EventKind::principal`].
    pub principal: Option<String>,
    /// Matches [`crate::EventKind::topic`].
    pub topic: Option<String>,
    /// Matches one of [`crate::EventKind::subjects`] (a hash, see [`crate::hash_subject`]).
    pub subject_hash: Option<String>,
    /// Events at or after this time (ms since the epoch).
    pub from_ms: Option<u64>,
    /// Events at or before this time (ms since the epoch).
    pub to_ms: Option<u64>,
    /// Matches [`crate::EventKind::decision`]: `Deny` finds denied `decision` events;
    /// `Allow` finds allowed `decision` events plus `delivery` and `produce`.
    pub decision: Option<Decision>,
    /// At most this many events (the earliest ones).
    pub limit: Option<usize>,
}

impl Query {
    /// Whether `ev` satisfies every filter (ignores `limit`).
    pub fn matches(&self, ev: &Event) -> bool {
        let k = &ev.kind;
        self.principal
            .as_deref()
            .is_none_or(|p| k.principal() == Some(p))
            && self.topic.as_deref().is_none_or(|t| k.topic() == Some(t))
            && self
                .subject_hash
                .as_deref()
                .is_none_or(|s| k.subjects().contains(&s))
            && self.from_ms.is_none_or(|f| ev.time_ms >= f)
            && self.to_ms.is_none_or(|t| ev.time_ms <= t)
            && self.decision.is_none_or(|d| k.decision() == Some(d))
    }
}

/// Queries the chains in `dirs` (read-only on the segments). Results are in time
/// order across replicas (ties: replica id, then seq), truncated to `limit`.
///
/// Each directory's index is used when it can be opened — shared with a writer
/// running in this process, or opened here when no writer holds it, in which case an
/// index that is behind is caught up and a missing, inconsistent or older-format one
/// is rebuilt from the segments (a query never writes the index while a writer in
/// this process has it open). Events not yet indexed are taken from the writer's
/// pending index items or read from the segments. When the index is locked by another
/// process the segments are scanned instead.
pub fn query(dirs: &[PathBuf], q: &Query) -> Result<Vec<Event>> {
    let mut all = Vec::new();
    for dir in dirs {
        all.extend(query_dir(dir, q)?);
    }
    all.sort_by(|a, b| (a.time_ms, &a.replica, a.seq).cmp(&(b.time_ms, &b.replica, b.seq)));
    if let Some(limit) = q.limit {
        all.truncate(limit);
    }
    Ok(all)
}

/// Like [`query`], reading every segment instead of the indexes: slower,
/// but it also sees events a writer has not indexed yet (just after it
/// reopened a chain), so it fits a check that must not miss one.
pub fn scan(dirs: &[PathBuf], q: &Query) -> Result<Vec<Event>> {
    let mut all = Vec::new();
    for dir in dirs {
        all.extend(scan_all(&list_segments(dir)?, q)?);
    }
    all.sort_by(|a, b| (a.time_ms, &a.replica, a.seq).cmp(&(b.time_ms, &b.replica, b.seq)));
    if let Some(limit) = q.limit {
        all.truncate(limit);
    }
    Ok(all)
}

fn query_dir(dir: &Path, q: &Query) -> Result<Vec<Event>> {
    let segments = list_segments(dir)?;
    if segments.is_empty() || q.limit == Some(0) {
        return Ok(Vec::new());
    }
    if let Some(guard) = ReaderGuard::acquire(dir) {
        match query_indexed(dir, &segments, q, &guard) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "audit index query failed; scanning segments");
            }
        }
    }
    scan_all(&segments, q)
}

fn query_indexed(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    q: &Query,
    guard: &ReaderGuard,
) -> Result<Option<Vec<Event>>> {
    let index = Index::new(guard.db.clone())?;
    let keep = |ev: &Event| q.matches(ev);
    let synced = match guard.write_lock() {
        // No writer: catch the index up (or rebuild it) under the lock.
        Some(_lock) => sync_tail(
            &index,
            dir,
            segments,
            Access::Write {
                block_events: DEFAULT_BLOCK_EVENTS,
            },
            keep,
        )?,
        // A writer owns the index: read its blocks, its pending items, and the
        // segments after them.
        None => sync_tail(
            &index,
            dir,
            segments,
            Access::Read {
                lock: guard.index_lock(),
                query: q,
            },
            keep,
        )?,
    };
    let Some(synced) = synced else {
        return Ok(None);
    };
    let upto = synced.upto;
    // Index and tail in (time, seq) order: the first `limit` found are the earliest.
    // Otherwise collect everything, then sort.
    let ordered = !synced.index_unordered && synced.tail_ordered;
    let limit = q.limit.unwrap_or(usize::MAX);
    let stop_at = if ordered { limit } else { usize::MAX };
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut files = HashMap::new();
    let mut locators = None;
    for seq in index.candidates(q, synced.index_unordered) {
        if out.len() >= stop_at {
            break;
        }
        let seq = seq?;
        if seq > upto || !seen.insert(seq) {
            continue;
        }
        let Some(loc) = index.locator_cached(&mut locators, seq)? else {
            return Ok(None);
        };
        let Some(ev) = read_event(dir, &mut files, &loc, seq)? else {
            return Ok(None);
        };
        if q.matches(&ev) {
            out.push(ev);
        }
    }
    for (seq, loc) in synced.pending {
        if out.len() >= stop_at {
            break;
        }
        if !seen.insert(seq) {
            continue;
        }
        let Some(ev) = read_event(dir, &mut files, &loc, seq)? else {
            return Ok(None);
        };
        if q.matches(&ev) {
            out.push(ev);
        }
    }
    // The tail holds only matching events (`keep` above).
    let room = stop_at.saturating_sub(out.len());
    out.extend(synced.tail.into_iter().take(room));
    if !ordered {
        out.sort_by_key(|e| (e.time_ms, e.seq));
        out.truncate(limit);
    }
    Ok(Some(out))
}

/// The event at `loc`, which the index says is `seq`; `None` when it is not (the
/// index does not match the segments).
fn read_event(
    dir: &Path,
    files: &mut HashMap<u64, std::fs::File>,
    loc: &Locator,
    seq: u64,
) -> Result<Option<Event>> {
    let bytes = read_at(dir, files, loc)?;
    Ok(serde_json::from_slice::<Event>(&bytes)
        .ok()
        .filter(|ev| ev.seq == seq))
}

fn scan_all(segments: &[(u64, PathBuf)], q: &Query) -> Result<Vec<Event>> {
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut stop = false;
    for (_, path) in segments {
        scan_segment(path, 0, 1, |raw| {
            if !raw.complete || out.len() >= limit {
                stop = out.len() >= limit;
                return Ok(false);
            }
            match serde_json::from_slice::<Event>(&raw.bytes) {
                Ok(ev) => {
                    if q.matches(&ev) {
                        out.push(ev);
                    }
                    Ok(true)
                }
                Err(_) => {
                    stop = true;
                    Ok(false)
                }
            }
        })?;
        if stop {
            break;
        }
    }
    Ok(out)
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// One entry per directory, in the order given.
    pub replicas: Vec<ReplicaReport>,
}

impl VerifyReport {
    /// True when no replica has a problem.
    pub fn is_clean(&self) -> bool {
        self.replicas.iter().all(|r| r.first_problem.is_none())
    }
}

/// Verification of one replica's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Replica id (from the events, else the head, else the directory name).
    pub replica: String,
    /// Events (checkpoints included) that verified before the first problem.
    pub events: u64,
    /// Checkpoints among them, each with a valid signature.
    pub checkpoints: u64,
    /// The first problem found; verification of this replica stops there.
    pub first_problem: Option<Problem>,
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Segment file name (or `head.json` / `verifying_key.pub`).
    pub segment: String,
    /// 1-based line in that segment. For a log that ends too early, the line after
    /// the last one.
    pub line: u64,
    /// Seq stored on that line, when readable. For a log that ends too early, the
    /// first missing seq.
    pub seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Recomputes every chain and checks every checkpoint signature and the signed head,
/// with the public key from each directory's `verifying_key.pub`.
///
/// Detects an edited byte anywhere (reports that event), a deleted event (reports
/// the event after the gap), reordered events, a truncated older segment, and a
/// truncated tail up to the seq named by `head.json` (see the crate docs for what
/// tail truncation cannot be detected).
pub fn verify(dirs: &[PathBuf]) -> Result<VerifyReport> {
    verify_inner(dirs, None)
}

/// Like [`verify`], but each directory's `verifying_key.pub` must also be one of
/// `trusted_keys` (standard base64 of the raw 32-byte Ed25519 public key, as
/// [`crate::SigningKey::public_base64`] prints it). Use this when the directories
/// themselves are not trusted: otherwise whoever can rewrite them can re-sign them
/// with a key of their own.
pub fn verify_with_trusted_keys(dirs: &[PathBuf], trusted_keys: &[String]) -> Result<VerifyReport> {
    verify_inner(dirs, Some(trusted_keys))
}

fn verify_inner(dirs: &[PathBuf], trusted: Option<&[String]>) -> Result<VerifyReport> {
    let mut replicas = Vec::with_capacity(dirs.len());
    for dir in dirs {
        replicas.push(verify_dir(dir, trusted)?);
    }
    Ok(VerifyReport { replicas })
}

fn verify_dir(dir: &Path, trusted: Option<&[String]>) -> Result<ReplicaReport> {
    let meta = std::fs::metadata(dir).map_err(|e| AuditError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(AuditError::Config(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let early = |reason: String| ReplicaReport {
        replica: dir_name.clone(),
        events: 0,
        checkpoints: 0,
        first_problem: Some(Problem {
            segment: VERIFYING_KEY_FILE.into(),
            line: 1,
            seq: None,
            reason,
        }),
    };
    let key = match read_verifying_key(dir)? {
        Some(Ok(k)) => Some(k),
        Some(Err(reason)) => return Ok(early(reason)),
        None => None,
    };
    if let Some(trusted) = trusted {
        let ok = key.as_ref().is_some_and(|k| {
            trusted.iter().any(|t| {
                crate::key::PublicKey::from_base64(t).is_some_and(|t| t.bytes() == k.bytes())
            })
        });
        if !ok {
            return Ok(early(
                "verifying key missing or not among the trusted keys".into(),
            ));
        }
    }
    let head = read_head(dir)?;
    let head_seq = head.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.seq);
    let segments = list_segments(dir)?;
    let mut chain = Chain::new(key);
    let mut problem: Option<Problem> = None;
    let mut last = (segment_name(segments.first().map_or(1, |s| s.0)), 0u64);
    let mut hash_at_head: Option<String> = None;
    for (n, path) in &segments {
        let name = segment_name(*n);
        let mut lines = 0;
        scan_segment(path, 0, 1, |raw| {
            if !raw.complete {
                problem = Some(Problem {
                    segment: name.clone(),
                    line: raw.line,
                    seq: None,
                    reason: "incomplete line (torn write; reopening the log cuts a torn last line)"
                        .into(),
                });
                return Ok(false);
            }
            match chain.check(&raw.bytes) {
                Ok(ev) => {
                    lines = raw.line;
                    if Some(ev.seq) == head_seq {
                        hash_at_head = Some(ev.hash);
                    }
                    Ok(true)
                }
                Err((seq, reason)) => {
                    problem = Some(Problem {
                        segment: name.clone(),
                        line: raw.line,
                        seq,
                        reason,
                    });
                    Ok(false)
                }
            }
        })?;
        last = (name, lines);
        if problem.is_some() {
            break;
        }
    }
    if problem.is_none() {
        let end = |reason: String| Problem {
            segment: last.0.clone(),
            line: last.1 + 1,
            seq: Some(chain.seq + 1),
            reason,
        };
        problem = match &head {
            None if chain.seq > 0 => Some(end(format!("signed head record ({HEAD_FILE}) missing"))),
            None => None,
            Some(Err(reason)) => Some(end(reason.clone())),
            Some(Ok(h)) => {
                if chain.replica.as_ref().is_some_and(|r| *r != h.replica) {
                    Some(end(format!(
                        "{HEAD_FILE} belongs to replica {:?}",
                        h.replica
                    )))
                } else if let Some(k) = &chain.key {
                    if !h.signature_ok(k) {
                        Some(end(format!("{HEAD_FILE} signature invalid")))
                    } else if h.seq > chain.seq {
                        Some(end(format!(
                            "log ends at seq {} but the signed head says {} (tail truncated)",
                            chain.seq, h.seq
                        )))
                    } else if hash_at_head.as_deref() != Some(h.hash.as_str()) {
                        Some(end(format!(
                            "the signed head names seq {} with a different hash",
                            h.seq
                        )))
                    } else {
                        None
                    }
                } else {
                    Some(end(format!("no {VERIFYING_KEY_FILE} to check {HEAD_FILE}")))
                }
            }
        };
    }
    let replica = chain
        .replica
        .clone()
        .or_else(|| {
            head.as_ref()
                .and_then(|h| h.as_ref().ok())
                .map(|h| h.replica.clone())
        })
        .unwrap_or(dir_name);
    Ok(ReplicaReport {
        replica,
        events: chain.events,
        checkpoints: chain.checkpoints,
        first_problem: problem,
    })
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    time: String,
    datacontenttype: &'static str,
    data: &'a Event,
}

/// Writes the events matching `q` as CloudEvents 1.0 JSON, one per line:
/// `specversion` `1.0`, `id` `<replica>/<seq>`, `source` `urn:gatehouse:audit:<replica>`,
/// `type` `dev.gatehouse.audit.<kind>`, `time` RFC 3339 (UTC, milliseconds),
/// `datacontenttype` `application/json`, `data` the event. Returns the count.
pub fn export_cloudevents(dirs: &[PathBuf], q: &Query, out: &mut dyn Write) -> Result<u64> {
    let events = query(dirs, q)?;
    let mut n = 0;
    for ev in &events {
        let ce = CloudEvent {
            specversion: "1.0",
            id: format!("{}/{}", ev.replica, ev.seq),
            source: format!("urn:gatehouse:audit:{}", ev.replica),
            ty: format!("dev.gatehouse.audit.{}", ev.kind.type_name()),
            time: crate::time::format_time(ev.time_ms),
            datacontenttype: "application/json",
            data: ev,
        };
        let mut line = serde_json::to_vec(&ce)?;
        line.push(b'\n');
        out.write_all(&line)
            .map_err(|e| AuditError::io("<export output>", e))?;
        n += 1;
    }
    out.flush()
        .map_err(|e| AuditError::io("<export output>", e))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use crate::time::format_time as rfc3339_ms;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
