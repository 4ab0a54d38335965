//! Segment files: naming, listing, line scanning, and the chain checker shared by
//! `open` (recovery) and `verify`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{AuditError, Result};
use crate::event::{Event, EventKind, GENESIS_HASH};
use crate::key::{signed_message, PublicKey};

/// File name of segment number `n` (from 1).
pub(crate) fn segment_name(n: u64) -> String {
    format!("segment-{n:012}.jsonl")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".jsonl")?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segments of `dir`, in number order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))? {
        let entry = entry.map_err(|e| AuditError::io(dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// One line read from a segment.
#[derive(Debug)]
pub(crate) struct RawLine {
    /// 1-based line number in the segment.
    pub line: u64,
    /// Byte offset of the line start.
    pub offset: u64,
    /// The line without its newline.
    pub bytes: Vec<u8>,
    /// Whether a newline ended it (false only for the last bytes of a file).
    pub complete: bool,
}

/// Calls `f` for every line of `path` from `offset` (which starts line `line`).
/// `f` returns `false` to stop.
pub(crate) fn scan_segment(
    path: &Path,
    offset: u64,
    line: u64,
    mut f: impl FnMut(RawLine) -> Result<bool>,
) -> Result<()> {
    let mut file = File::open(path).map_err(|e| AuditError::io(path, e))?;
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| AuditError::io(path, e))?;
    }
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut pos = offset;
    let mut line_no = line;
    loop {
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| AuditError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        let raw = RawLine {
            line: line_no,
            offset: pos,
            bytes: buf,
            complete,
        };
        pos += n as u64;
        line_no += 1;
        if !f(raw)? {
            return Ok(());
        }
    }
}

/// Running state of a hash chain being checked line by line.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub seq: u64,
    pub hash: String,
    pub time_ms: u64,
    pub replica: Option<String>,
    pub events: u64,
    pub checkpoints: u64,
    pub key: Option<PublicKey>,
}

impl Chain {
    /// A chain checked from its first event.
    pub(crate) fn new(key: Option<PublicKey>) -> Self {
        Chain {
            seq: 0,
            hash: GENESIS_HASH.to_string(),
            time_ms: 0,
            replica: None,
            events: 0,
            checkpoints: 0,
            key,
        }
    }

    /// Checks the next line; on success the chain advances and the event is returned.
    /// On failure: (seq of the line if readable, reason).
    pub(crate) fn check(&mut self, bytes: &[u8]) -> Result<Event, (Option<u64>, String)> {
        let ev = check_standalone(bytes, self.key.as_ref())?;
        let seq = Some(ev.seq);
        if let Some(r) = &self.replica {
            if *r != ev.replica {
                return Err((
                    seq,
                    format!("replica {:?} in a chain of replica {r:?}", ev.replica),
                ));
            }
        }
        if ev.seq != self.seq + 1 {
            let what = if ev.seq <= self.seq {
                "out of order or duplicated"
            } else {
                "events missing before it"
            };
            return Err((
                seq,
                format!("expected seq {} but found {}: {what}", self.seq + 1, ev.seq),
            ));
        }
        if ev.prev_hash != self.hash {
            return Err((
                seq,
                "prev_hash does not match the previous event's hash".into(),
            ));
        }
        if ev.time_ms < self.time_ms {
            return Err((seq, "time goes backwards".into()));
        }
        self.accept(&ev);
        Ok(ev)
    }

    /// Advances the chain to `ev` without linkage checks (used when resuming at a
    /// checkpoint that was verified on its own).
    pub(crate) fn accept(&mut self, ev: &Event) {
        self.seq = ev.seq;
        self.hash.clone_from(&ev.hash);
        self.time_ms = ev.time_ms;
        if self.replica.is_none() {
            self.replica = Some(ev.replica.clone());
        }
        self.events += 1;
        if matches!(ev.kind, EventKind::Checkpoint { .. }) {
            self.checkpoints += 1;
        }
    }
}

/// Checks everything about one line that does not need its neighbours: JSON,
/// canonical form, hash, checkpoint signature.
pub(crate) fn check_standalone(
    bytes: &[u8],
    key: Option<&PublicKey>,
) -> Result<Event, (Option<u64>, String)> {
    let ev: Event =
        serde_json::from_slice(bytes).map_err(|e| (None, format!("not a valid event: {e}")))?;
    let seq = Some(ev.seq);
    match ev.to_line() {
        Ok(line) if line == bytes => {}
        _ => return Err((seq, "line is not in canonical form (edited)".into())),
    }
    match ev.compute_hash() {
        Ok(h) if h == ev.hash => {}
        _ => {
            return Err((
                seq,
                "hash does not match the event's content (edited)".into(),
            ))
        }
    }
    if let EventKind::Checkpoint {
        upto_seq,
        upto_hash,
        signature,
    } = &ev.kind
    {
        if *upto_seq + 1 != ev.seq || *upto_hash != ev.prev_hash {
            return Err((seq, "checkpoint does not cover the event before it".into()));
        }
        let Some(key) = key else {
            return Err((seq, "no verifying key to check this checkpoint".into()));
        };
        let msg = signed_message("checkpoint", &ev.replica, *upto_seq, upto_hash, ev.time_ms);
        if !key.verify(&msg, signature) {
            return Err((seq, "checkpoint signature invalid".into()));
        }
    }
    Ok(ev)
}

/// File name of segment number `n` (from 1): `segment-000000000001.jsonl`.
pub fn segment_file_name(n: u64) -> String {
    segment_name(n)
}
