//! The sled index (derived data, rebuildable from the segments) and the in-process
//! registry that lets queries share the writer's open database.
//!
//! Trees: `events` (seq -> locator), `principal`, `topic`, `subject`, `decision`
//! (keys `value \0 time_ms(BE u64) seq(BE u64)`), `time` (keys `time_ms seq`) and
//! `meta` (`upto` -> seq(BE) + hash of the last indexed event).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{AuditError, Result};
use crate::event::Event;
use crate::segment::{scan_segment, segment_name};
use crate::Query;

/// Where an event's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Locator {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub line: u64,
}

impl Locator {
    fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[0..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..20].copy_from_slice(&self.len.to_be_bytes());
        b[20..28].copy_from_slice(&self.line.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        Some(Locator {
            segment: u64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
            len: u32::from_be_bytes(b.get(16..20)?.try_into().ok()?),
            line: u64::from_be_bytes(b.get(20..28)?.try_into().ok()?),
        })
    }

    /// Offset just after this line (and its newline).
    pub(crate) fn end(&self) -> u64 {
        self.offset + u64::from(self.len) + 1
    }
}

pub(crate) const INDEX_DIR: &str = "index";

struct Entry {
    db: sled::Db,
    writer: bool,
    users: usize,
}

fn registry() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Entry>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Entry>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn registry_key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn open_db(dir: &Path) -> sled::Result<sled::Db> {
    sled::Config::new()
        .path(dir.join(INDEX_DIR))
        .flush_every_ms(Some(500))
        .open()
}

fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
        }
        _ => false,
    }
}

/// Opens the index for the writer of `dir`. Waits (bounded) for a lock still held by
/// a just-closed database in this process; refuses a second writer. Returns the
/// registry key to pass to [`release_writer`].
pub(crate) fn acquire_writer(dir: &Path) -> Result<(sled::Db, PathBuf)> {
    let key = registry_key(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let mut reg = registry();
            if let Some(entry) = reg.get_mut(&key) {
                if entry.writer {
                    return Err(AuditError::AlreadyOpen(dir.to_path_buf()));
                }
                entry.writer = true;
                return Ok((entry.db.clone(), key));
            }
            match open_db(dir) {
                Ok(db) => {
                    reg.insert(
                        key.clone(),
                        Entry {
                            db: db.clone(),
                            writer: true,
                            users: 0,
                        },
                    );
                    return Ok((db, key));
                }
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(e.into()),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The writer registered under `key` is gone.
pub(crate) fn release_writer(key: &Path) {
    let mut reg = registry();
    if let Some(entry) = reg.get_mut(key) {
        entry.writer = false;
        if entry.users == 0 {
            reg.remove(key);
        }
    }
}

/// A reader's hold on a directory's index.
pub(crate) struct ReaderGuard {
    key: PathBuf,
    pub db: sled::Db,
    /// False while a writer in this process owns the index: the reader must not write.
    pub writable: bool,
}

impl ReaderGuard {
    /// `None` when the index cannot be opened (e.g. another process holds it).
    pub(crate) fn acquire(dir: &Path) -> Option<Self> {
        let key = registry_key(dir);
        let mut reg = registry();
        if let Some(entry) = reg.get_mut(&key) {
            entry.users += 1;
            return Some(ReaderGuard {
                key,
                db: entry.db.clone(),
                writable: !entry.writer,
            });
        }
        match open_db(dir) {
            Ok(db) => {
                reg.insert(
                    key.clone(),
                    Entry {
                        db: db.clone(),
                        writer: false,
                        users: 1,
                    },
                );
                Some(ReaderGuard {
                    key,
                    db,
                    writable: true,
                })
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "audit index unavailable, scanning segments");
                None
            }
        }
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(entry) = reg.get_mut(&self.key) {
            entry.users = entry.users.saturating_sub(1);
            if entry.users == 0 && !entry.writer {
                reg.remove(&self.key);
            }
        }
    }
}

/// The index trees of one directory.
pub(crate) struct Index {
    db: sled::Db,
    events: sled::Tree,
    principal: sled::Tree,
    topic: sled::Tree,
    subject: sled::Tree,
    decision: sled::Tree,
    time: sled::Tree,
    meta: sled::Tree,
}

fn prefixed(prefix: &[u8], time: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 17);
    k.extend_from_slice(prefix);
    k.push(0);
    k.extend_from_slice(&time.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of_key(k: &[u8]) -> Option<u64> {
    let tail = k.get(k.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

impl Index {
    pub(crate) fn new(db: sled::Db) -> Result<Self> {
        Ok(Index {
            events: db.open_tree("events")?,
            principal: db.open_tree("principal")?,
            topic: db.open_tree("topic")?,
            subject: db.open_tree("subject")?,
            decision: db.open_tree("decision")?,
            time: db.open_tree("time")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Last indexed (seq, hash).
    pub(crate) fn upto(&self) -> Result<Option<(u64, String)>> {
        let Some(v) = self.meta.get("upto")? else {
            return Ok(None);
        };
        let seq = v
            .get(0..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes);
        let hash = v.get(8..).and_then(|b| std::str::from_utf8(b).ok());
        Ok(seq.zip(hash).map(|(s, h)| (s, h.to_string())))
    }

    pub(crate) fn locator(&self, seq: u64) -> Result<Option<Locator>> {
        Ok(self
            .events
            .get(seq.to_be_bytes())?
            .and_then(|v| Locator::decode(&v)))
    }

    pub(crate) fn clear(&self) -> Result<()> {
        for t in [
            &self.events,
            &self.principal,
            &self.topic,
            &self.subject,
            &self.decision,
            &self.time,
            &self.meta,
        ] {
            t.clear()?;
        }
        Ok(())
    }

    /// Indexes events (in seq order) and then moves `upto` to the last of them.
    pub(crate) fn insert(&self, items: &[(Event, Locator)]) -> Result<()> {
        let Some((last, _)) = items.last() else {
            return Ok(());
        };
        let mut events = sled::Batch::default();
        let mut principal = sled::Batch::default();
        let mut topic = sled::Batch::default();
        let mut subject = sled::Batch::default();
        let mut decision = sled::Batch::default();
        let mut time = sled::Batch::default();
        for (ev, loc) in items {
            let (t, s) = (ev.time_ms, ev.seq);
            events.insert(&s.to_be_bytes(), &loc.encode());
            let mut tk = t.to_be_bytes().to_vec();
            tk.extend_from_slice(&s.to_be_bytes());
            time.insert(tk, &[]);
            if let Some(p) = ev.kind.principal() {
                principal.insert(prefixed(p.as_bytes(), t, s), &[]);
            }
            if let Some(tp) = ev.kind.topic() {
                topic.insert(prefixed(tp.as_bytes(), t, s), &[]);
            }
            for sub in ev.kind.subjects() {
                subject.insert(prefixed(sub.as_bytes(), t, s), &[]);
            }
            if let Some(d) = ev.kind.decision() {
                decision.insert(prefixed(d.as_str().as_bytes(), t, s), &[]);
            }
        }
        self.events.apply_batch(events)?;
        self.principal.apply_batch(principal)?;
        self.topic.apply_batch(topic)?;
        self.subject.apply_batch(subject)?;
        self.decision.apply_batch(decision)?;
        self.time.apply_batch(time)?;
        let mut upto = last.seq.to_be_bytes().to_vec();
        upto.extend_from_slice(last.hash.as_bytes());
        self.meta.insert("upto", upto)?;
        Ok(())
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Seqs of candidate events for `q`, in (time, seq) order, from the most
    /// selective tree. Candidates still need the full predicate.
    pub(crate) fn candidates(&self, q: &Query) -> impl Iterator<Item = Result<u64>> {
        let from = q.from_ms.unwrap_or(0);
        let to = q.to_ms.unwrap_or(u64::MAX);
        let pick: Option<(&sled::Tree, Vec<u8>)> = if let Some(s) = &q.subject_hash {
            Some((&self.subject, s.as_bytes().to_vec()))
        } else if let Some(p) = &q.principal {
            Some((&self.principal, p.as_bytes().to_vec()))
        } else if let Some(t) = &q.topic {
            Some((&self.topic, t.as_bytes().to_vec()))
        } else {
            q.decision
                .map(|d| (&self.decision, d.as_str().as_bytes().to_vec()))
        };
        let iter = match pick {
            Some((tree, prefix)) => {
                tree.range(prefixed(&prefix, from, 0)..=prefixed(&prefix, to, u64::MAX))
            }
            None => {
                let mut a = from.to_be_bytes().to_vec();
                a.extend_from_slice(&0u64.to_be_bytes());
                let mut b = to.to_be_bytes().to_vec();
                b.extend_from_slice(&u64::MAX.to_be_bytes());
                self.time.range(a..=b)
            }
        };
        iter.map(|r| {
            let (k, _) = r?;
            seq_of_key(&k).ok_or_else(|| AuditError::Config("malformed index key".into()))
        })
    }
}

/// Reads the line at `loc` (through a cache of open segment files).
pub(crate) fn read_at(
    dir: &Path,
    files: &mut HashMap<u64, File>,
    loc: &Locator,
) -> Result<Vec<u8>> {
    let path = dir.join(segment_name(loc.segment));
    let f = match files.entry(loc.segment) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(File::open(&path).map_err(|e| AuditError::io(&path, e))?)
        }
    };
    let mut buf = vec![0u8; loc.len as usize];
    f.read_exact_at(&mut buf, loc.offset)
        .map_err(|e| AuditError::io(&path, e))?;
    Ok(buf)
}

/// Last seq covered by the index before a sync, and the events after it.
pub(crate) type SyncedTail = (u64, Vec<(Event, Locator)>);

/// Brings the index up to the segments. Returns the last seq that the index covers
/// *before* this call's tail, and the tail events (complete, parseable lines after
/// it). When `writable`, the tail is indexed too and an inconsistent index is cleared
/// and rebuilt; when not, an inconsistent index yields `None`.
pub(crate) fn sync_tail(
    index: &Index,
    dir: &Path,
    segments: &[(u64, PathBuf)],
    writable: bool,
) -> Result<Option<SyncedTail>> {
    let mut start: Option<(u64, u64, u64)> = None; // segment, offset, line
    let mut upto_seq = 0;
    if let Some((seq, hash)) = index.upto()? {
        let mut files = HashMap::new();
        let ok = match index.locator(seq)? {
            Some(loc) => match read_at(dir, &mut files, &loc) {
                Ok(bytes) => match serde_json::from_slice::<Event>(&bytes) {
                    Ok(ev) if ev.seq == seq && ev.hash == hash => {
                        start = Some((loc.segment, loc.end(), loc.line + 1));
                        upto_seq = seq;
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            },
            None => false,
        };
        if !ok {
            if !writable {
                return Ok(None);
            }
            tracing::warn!(dir = %dir.display(), "audit index does not match the segments; rebuilding");
            index.clear()?;
        }
    }
    let mut tail = Vec::new();
    let mut broken = false;
    for (n, path) in segments {
        let (offset, line) = match start {
            Some((s, _, _)) if *n < s => continue,
            Some((s, off, line)) if *n == s => (off, line),
            _ => (0, 1),
        };
        scan_segment(path, offset, line, |raw| {
            if !raw.complete {
                return Ok(false);
            }
            match serde_json::from_slice::<Event>(&raw.bytes) {
                Ok(ev) => {
                    let loc = Locator {
                        segment: *n,
                        offset: raw.offset,
                        len: u32::try_from(raw.bytes.len()).unwrap_or(u32::MAX),
                        line: raw.line,
                    };
                    tail.push((ev, loc));
                    Ok(true)
                }
                Err(_) => {
                    broken = true;
                    Ok(false)
                }
            }
        })?;
        if broken {
            break;
        }
    }
    if writable && !tail.is_empty() {
        index.insert(&tail)?;
    }
    Ok(Some((upto_seq, tail)))
}
