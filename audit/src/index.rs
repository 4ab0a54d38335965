//! The index (a redb database: derived data, rebuildable from the segments) and the
//! in-process registry that lets queries share the writer's open database.
//!
//! redb keeps what it caches within a set size ([`INDEX_CACHE_BYTES`]) whatever the
//! size of the index. The index was a sled database until format 2; sled's memory
//! grew with the number of entries written, whatever its cache capacity (a proxy
//! under steady load grew by about 1 MB every 10 s, most of it sled's nodes).
//!
//! # Postings blocks (index format 2)
//!
//! Events are indexed in **blocks** of consecutive seqs, one entry per (table,
//! value) per block rather than one per event. The writer keeps the index items of
//! committed events in memory ([`Pending`]) and writes them as one block once
//! [`crate::AuditConfig::index_block_events`] are pending, or at a commit when the
//! oldest pending one is [`BLOCK_MAX_AGE`] old, and on close. Trees:
//!
//! - `principal`, `topic`, `subject`, `decision`: key
//!   `value \0 first_time_ms(BE u64) first_seq(BE u64)`, value the postings of
//!   `value` in the block: its `(time_ms, seq)` pairs, sorted and deduplicated; the
//!   key names the first (earliest) pair.
//! - `time`: key `first_time_ms(BE u64) first_seq(BE u64)`, value the postings of
//!   every event of the block.
//! - `events`: key `first_seq(BE u64)`, value the locators (segment, offset, len,
//!   line) of the block's consecutive events. The locator of seq `s` is entry
//!   `s - first_seq` of the last block whose key is `<= s`.
//! - `meta`: `format` ([`FORMAT`], BE u32) and `upto`: seq (BE u64) and hash of the
//!   last indexed event, with the greatest indexed `time_ms` and an "out of time
//!   order" flag (see [`State`]).
//!
//! Encodings (varints are LEB128). Postings: the first pair (time, seq) as varints,
//! then per pair the time delta (never negative, the pairs are sorted) and the zigzag
//! seq delta — 2-3 bytes per pair typically. Locators: the runs of lines that directly
//! follow each other (a varint count, then per run the index of its first event,
//! segment, offset and line, as varints), then every event's len as a fixed-width u32
//! LE — about 4 bytes per event, and one entry is found by summing the lens before it
//! in its run (no decoding of the whole block).
//!
//! A block is written tree by tree, then `upto` is moved: everything `<= upto` is
//! indexed; queries take the events after it from the writer's pending items and the
//! segments ([`sync_tail`]). A block written only in part (crash) is written again,
//! with the same keys, when the events after `upto` are indexed again; queries drop
//! duplicate seqs anyway.
//!
//! Time order: `time_ms` never decreases within a chain (the writer enforces it and
//! verification checks it), so a value's blocks in key order are in seq order, and of
//! the blocks that start before a query's `from` only the last can hold entries at or
//! after it. Should the index ever hold events out of time order (the `upto` flag),
//! queries read every block up to `to` and sort what they find.
//!
//! Only one party writes the index at a time: while a writer of the directory is open
//! in this process, queries only read: the blocks up to `upto`, the candidates among
//! the writer's pending items (read with `upto` under the directory's index lock, which
//! holds them), then the segments after the pending events. With no writer, a query
//! may index the tail itself (e.g. the CLI on a closed log), under the index lock and
//! only after checking that no writer registered.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use redb::{Database, ReadOnlyTable, ReadableTable, TableDefinition, TableError};

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
    /// Offset just after this line (and its newline).
    pub(crate) fn end(&self) -> u64 {
        self.offset + u64::from(self.len) + 1
    }
}

/// The index database, in the chain's directory.
pub(crate) const INDEX_FILE: &str = "index.redb";

/// Where formats 1 and 2 kept their sled database: removed once the redb index is
/// open (derived data, rebuilt from the segments).
const SLED_INDEX_DIR: &str = "index";

/// Layout version of the index, kept in `meta`. An index without it or with another
/// one is cleared and rebuilt from the segments. Format 3 is format 2's layout in
/// redb.
pub(crate) const FORMAT: u32 = 3;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// One entry read from a table.
type TableEntry = std::result::Result<
    (
        redb::AccessGuard<'static, &'static [u8]>,
        redb::AccessGuard<'static, &'static [u8]>,
    ),
    redb::StorageError,
>;

const EVENTS: Table = TableDefinition::new("events");
const VALUE_TABLES: [Table; 4] = [
    TableDefinition::new("principal"),
    TableDefinition::new("topic"),
    TableDefinition::new("subject"),
    TableDefinition::new("decision"),
];
const TIME: Table = TableDefinition::new("time");
const META: Table = TableDefinition::new("meta");

/// Every table of the index.
pub(crate) const TABLES: [Table; 7] = [
    EVENTS,
    VALUE_TABLES[0],
    VALUE_TABLES[1],
    VALUE_TABLES[2],
    VALUE_TABLES[3],
    TIME,
    META,
];

/// Events per block when the index is built outside the writer (rebuilds by a query).
pub(crate) const DEFAULT_BLOCK_EVENTS: usize = 4096;

/// The writer writes its pending events as a block at the first commit after the
/// oldest of them is this old.
pub(crate) const BLOCK_MAX_AGE: Duration = Duration::from_secs(1);

const META_FORMAT: &str = "format";
const META_UPTO: &str = "upto";

fn malformed(what: &str) -> AuditError {
    AuditError::Config(format!("malformed audit index: {what}"))
}

// ---------------------------------------------------------------------------------
// Encodings

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn zigzag(d: u64) -> u64 {
    // `d` is a wrapping difference, read as signed.
    let i = d as i64;
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(z: u64) -> u64 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

/// Sorted `(time_ms, seq)` pairs.
fn encode_postings(pairs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 3 + 16);
    let mut prev = (0u64, 0u64);
    for (i, &(t, s)) in pairs.iter().enumerate() {
        if i == 0 {
            put_varint(&mut out, t);
            put_varint(&mut out, s);
        } else {
            put_varint(&mut out, t.wrapping_sub(prev.0));
            put_varint(&mut out, zigzag(s.wrapping_sub(prev.1)));
        }
        prev = (t, s);
    }
    out
}

fn decode_postings(b: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut prev = (0u64, 0u64);
    while pos < b.len() {
        let (a, c) = (get_varint(b, &mut pos)?, get_varint(b, &mut pos)?);
        prev = if out.is_empty() {
            (a, c)
        } else {
            (prev.0.checked_add(a)?, prev.1.wrapping_add(unzigzag(c)))
        };
        out.push(prev);
    }
    Some(out)
}

/// Locators of consecutive events: the runs of lines that directly follow each other
/// (varint count, then per run: index of its first event, segment, offset, line),
/// then every event's len (u32 LE, fixed width so that entry `i` needs no decoding
/// of the others).
fn encode_locators(locs: &[Locator]) -> Vec<u8> {
    let follows = |p: &Locator, l: &Locator| {
        l.segment == p.segment && l.offset == p.end() && Some(l.line) == p.line.checked_add(1)
    };
    let runs: Vec<usize> = (0..locs.len())
        .filter(|&i| i == 0 || !follows(&locs[i - 1], &locs[i]))
        .collect();
    let mut out = Vec::with_capacity(locs.len() * 4 + runs.len() * 16 + 4);
    put_varint(&mut out, runs.len() as u64);
    for &i in &runs {
        let l = &locs[i];
        put_varint(&mut out, i as u64);
        put_varint(&mut out, l.segment);
        put_varint(&mut out, l.offset);
        put_varint(&mut out, l.line);
    }
    for l in locs {
        out.extend_from_slice(&l.len.to_le_bytes());
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Run {
    first: usize,
    segment: u64,
    offset: u64,
    line: u64,
}

/// One decoded `events` entry: the locators of seqs `first_seq..first_seq + len`.
#[derive(Debug)]
pub(crate) struct LocatorBlock {
    first_seq: u64,
    runs: Vec<Run>,
    value: Vec<u8>,
    /// Where the lens start in `value`.
    lens_at: usize,
    count: usize,
    /// Last entry resolved and its offset: the next one in the same run continues
    /// from there (candidates come in seq order).
    cursor: Option<(usize, u64)>,
}

impl LocatorBlock {
    fn decode(first_seq: u64, value: Vec<u8>) -> Option<Self> {
        let mut pos = 0;
        let n = get_varint(&value, &mut pos)?;
        let mut runs = Vec::new();
        for _ in 0..n {
            runs.push(Run {
                first: usize::try_from(get_varint(&value, &mut pos)?).ok()?,
                segment: get_varint(&value, &mut pos)?,
                offset: get_varint(&value, &mut pos)?,
                line: get_varint(&value, &mut pos)?,
            });
        }
        let rest = value.len().checked_sub(pos)?;
        let count = rest / 4;
        let well_formed = rest % 4 == 0
            && runs.first().is_some_and(|r| r.first == 0)
            && runs.windows(2).all(|w| w[0].first < w[1].first)
            && runs.last().is_some_and(|r| r.first < count);
        well_formed.then_some(LocatorBlock {
            first_seq,
            runs,
            value,
            lens_at: pos,
            count,
            cursor: None,
        })
    }

    fn len_at(&self, i: usize) -> Option<u32> {
        let at = self.lens_at.checked_add(i.checked_mul(4)?)?;
        Some(u32::from_le_bytes(
            self.value.get(at..at + 4)?.try_into().ok()?,
        ))
    }

    /// The locator of `seq`, if this block holds it.
    fn get(&mut self, seq: u64) -> Option<Locator> {
        let i = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        if i >= self.count {
            return None;
        }
        let run = self.runs[self.runs.partition_point(|r| r.first <= i).checked_sub(1)?];
        let (mut j, mut offset) = match self.cursor {
            Some((c, off)) if run.first <= c && c <= i => (c, off),
            _ => (run.first, run.offset),
        };
        while j < i {
            offset = offset.checked_add(u64::from(self.len_at(j)?) + 1)?;
            j += 1;
        }
        self.cursor = Some((i, offset));
        Some(Locator {
            segment: run.segment,
            offset,
            len: self.len_at(i)?,
            line: run.line.checked_add((i - run.first) as u64)?,
        })
    }
}

#[cfg(test)]
fn decode_locators(b: &[u8]) -> Option<Vec<Locator>> {
    let mut block = LocatorBlock::decode(1, b.to_vec())?;
    (1..=block.count as u64).map(|s| block.get(s)).collect()
}

/// Key of a block of `value` (or, with an empty `prefix`, of a `time` block):
/// `prefix first_time first_seq`, where `prefix` is `value \0`.
fn block_key(prefix: &[u8], time: u64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 16);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&time.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn value_prefix(value: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(value.len() + 17);
    p.extend_from_slice(value);
    p.push(0);
    p
}

// ---------------------------------------------------------------------------------
// Registry

/// One directory's index lock, shared by its writer and the queries of this process.
/// It serialises the writes to the index (the writer's blocks, a query's catch-up or
/// rebuild) and holds the writer's [`Pending`] items, so that a query reads `upto`
/// and the pending items together, then reads the index and the segments after the
/// pending events without the lock.
pub(crate) type IndexLock = Arc<Mutex<Pending>>;

pub(crate) fn lock_index(lock: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Entry {
    db: Arc<Database>,
    writer: bool,
    users: usize,
    lock: IndexLock,
}

fn registry() -> MutexGuard<'static, HashMap<PathBuf, Entry>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Entry>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Directories whose database this process closed lately, and when. A reader that
/// finds the database's file lock taken within [`RELEASE_GRACE`] of such a close (a
/// handle still being dropped elsewhere in the process) waits for it rather than
/// scanning the segments.
fn released() -> MutexGuard<'static, HashMap<PathBuf, Instant>> {
    static RELEASED: OnceLock<Mutex<HashMap<PathBuf, Instant>>> = OnceLock::new();
    RELEASED
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

const RELEASE_GRACE: Duration = Duration::from_secs(5);
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The registry entry of `key` is gone (its database is being closed).
fn note_released(key: &Path) {
    let mut r = released();
    r.retain(|_, at| at.elapsed() < RELEASE_GRACE);
    r.insert(key.to_path_buf(), Instant::now());
}

fn released_lately(key: &Path) -> bool {
    released()
        .get(key)
        .is_some_and(|at| at.elapsed() < RELEASE_GRACE)
}

fn registry_key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// What redb may cache of the index (its default, 1 GiB, is for databases that
/// are the application's main store; queries read few blocks).
pub(crate) const INDEX_CACHE_BYTES: usize = 16 << 20;

fn open_db(dir: &Path) -> std::result::Result<Arc<Database>, redb::DatabaseError> {
    let path = dir.join(INDEX_FILE);
    // redb asserts on some malformed headers instead of returning an error: a
    // damaged index file must not take the process down.
    let opened = std::panic::catch_unwind(|| {
        redb::Builder::new()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(&path)
    })
    .unwrap_or_else(|_| {
        Err(redb::StorageError::Corrupted("the database header is malformed".into()).into())
    });
    Ok(Arc::new(opened?))
}

/// The writer's index: opened, or recreated when the file is not a usable redb
/// database (derived data: it is rebuilt from the segments).
fn open_writer_db(dir: &Path) -> std::result::Result<Arc<Database>, redb::DatabaseError> {
    let unusable = |e: &redb::DatabaseError| match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::UpgradeRequired(_) => true,
        // Not a redb file at all.
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
    };
    match open_db(dir) {
        Err(e) if unusable(&e) => {
            let path = dir.join(INDEX_FILE);
            tracing::warn!(path = %path.display(), error = %e, "the audit index is unusable; it is recreated and rebuilt from the segments");
            std::fs::remove_file(&path).map_err(redb::DatabaseError::from)?;
            open_db(dir)
        }
        r => r,
    }
}

/// The file whose advisory lock a writer of the directory holds while it is open,
/// whatever the index's backend (the index's own lock excluded a second writer
/// only while every binary used the same index file).
pub(crate) const WRITER_LOCK_FILE: &str = "writer.lock";

/// Takes the directory's writer lock, or refuses: another process writes the chain.
fn lock_writer(dir: &Path) -> Result<File> {
    let path = dir.join(WRITER_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(AuditError::WrittenElsewhere(dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(AuditError::io(&path, e)),
    }
}

/// Removes the sled index of formats 1 and 2 (derived data, rebuilt from the
/// segments), unless a process of an older version holds it: sled locks its `db`
/// file while open, and such a process writes the chain (it knows no
/// [`WRITER_LOCK_FILE`]).
fn remove_sled_index(dir: &Path) -> Result<()> {
    let old = dir.join(SLED_INDEX_DIR);
    if !old.is_dir() {
        return Ok(());
    }
    let db = old.join("db");
    let _held = match std::fs::OpenOptions::new().write(true).open(&db) {
        Ok(f) => match f.try_lock() {
            Ok(()) => Some(f),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::WrittenElsewhere(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(&db, e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(AuditError::io(&db, e)),
    };
    match std::fs::remove_dir_all(&old) {
        Ok(()) => {
            tracing::info!(dir = %dir.display(), "removed the audit index of an older format (sled); the index is rebuilt from the segments")
        }
        Err(e) => {
            tracing::warn!(dir = %old.display(), error = %e, "cannot remove the audit index of an older format")
        }
    }
    Ok(())
}

fn is_lock_error(e: &redb::DatabaseError) -> bool {
    matches!(e, redb::DatabaseError::DatabaseAlreadyOpen)
}

/// What [`acquire_writer`] hands the writer.
pub(crate) struct WriterHold {
    pub db: Arc<Database>,
    /// The registry key to pass to [`release_writer`].
    pub key: PathBuf,
    /// The directory's index lock, to hold while writing the index.
    pub lock: IndexLock,
    /// Holds [`WRITER_LOCK_FILE`]'s lock: dropped before [`release_writer`].
    pub file: File,
}

/// Opens the index for the writer of `dir`. Waits (bounded) for a lock still held by
/// a just-closed database in this process; refuses a second writer, in this process
/// ([`AuditError::AlreadyOpen`]) or another ([`AuditError::WrittenElsewhere`]).
pub(crate) fn acquire_writer(dir: &Path) -> Result<WriterHold> {
    let key = registry_key(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        {
            let mut reg = registry();
            if reg.get(&key).is_some_and(|e| e.writer) {
                return Err(AuditError::AlreadyOpen(dir.to_path_buf()));
            }
            let file = lock_writer(dir)?;
            remove_sled_index(dir)?;
            if let Some(entry) = reg.get_mut(&key) {
                entry.writer = true;
                return Ok(WriterHold {
                    db: entry.db.clone(),
                    key,
                    lock: entry.lock.clone(),
                    file,
                });
            }
            match open_writer_db(dir) {
                Ok(db) => {
                    let lock = IndexLock::default();
                    reg.insert(
                        key.clone(),
                        Entry {
                            db: db.clone(),
                            writer: true,
                            users: 0,
                            lock: lock.clone(),
                        },
                    );
                    return Ok(WriterHold {
                        db,
                        key,
                        lock,
                        file,
                    });
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
            note_released(key);
        }
    }
}

/// A reader's hold on a directory's index.
pub(crate) struct ReaderGuard {
    key: PathBuf,
    pub db: Arc<Database>,
    /// False when a writer in this process owned the index when the guard was taken:
    /// the reader must not write. When true, [`Self::write_lock`] decides.
    pub writable: bool,
    lock: IndexLock,
}

impl ReaderGuard {
    /// `None` when the index cannot be opened (e.g. another process holds it).
    pub(crate) fn acquire(dir: &Path) -> Option<Self> {
        let key = registry_key(dir);
        let deadline = Instant::now() + RELEASE_WAIT;
        loop {
            {
                let mut reg = registry();
                if let Some(entry) = reg.get_mut(&key) {
                    entry.users += 1;
                    return Some(ReaderGuard {
                        key,
                        db: entry.db.clone(),
                        writable: !entry.writer,
                        lock: entry.lock.clone(),
                    });
                }
                match open_db(dir) {
                    Ok(db) => {
                        let lock = IndexLock::default();
                        reg.insert(
                            key.clone(),
                            Entry {
                                db: db.clone(),
                                writer: false,
                                users: 1,
                                lock: lock.clone(),
                            },
                        );
                        return Some(ReaderGuard {
                            key,
                            db,
                            writable: true,
                            lock,
                        });
                    }
                    // Still held by a database this process just closed.
                    Err(e)
                        if is_lock_error(&e)
                            && Instant::now() < deadline
                            && released_lately(&key) => {}
                    Err(e) => {
                        tracing::debug!(dir = %dir.display(), error = %e, "audit index unavailable, scanning segments");
                        return None;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The directory's index lock, when this reader may write the index: it was
    /// writable when acquired and no writer has registered since. Checked under the
    /// lock, so a writer that registers later waits for this reader's writes before
    /// it reads `upto` and writes blocks of its own.
    pub(crate) fn write_lock(&self) -> Option<MutexGuard<'_, Pending>> {
        if !self.writable {
            return None;
        }
        let guard = lock_index(&self.lock);
        let writer = registry().get(&self.key).is_some_and(|e| e.writer);
        (!writer).then_some(guard)
    }

    /// The directory's index lock (for [`Access::Read`]).
    pub(crate) fn index_lock(&self) -> &Mutex<Pending> {
        &self.lock
    }
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(entry) = reg.get_mut(&self.key) {
            entry.users = entry.users.saturating_sub(1);
            if entry.users == 0 && !entry.writer {
                reg.remove(&self.key);
                note_released(&self.key);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Blocks

const PRINCIPAL: usize = 0;
const TOPIC: usize = 1;
const SUBJECT: usize = 2;
const DECISION: usize = 3;

type Postings = HashMap<Vec<u8>, Vec<(u64, u64)>>;

/// The most selective value tree for `q` (`PRINCIPAL`...) and the value; `None`:
/// the `time` tree.
fn pick(q: &Query) -> Option<(usize, &[u8])> {
    if let Some(s) = &q.subject_hash {
        Some((SUBJECT, s.as_bytes()))
    } else if let Some(p) = &q.principal {
        Some((PRINCIPAL, p.as_bytes()))
    } else if let Some(t) = &q.topic {
        Some((TOPIC, t.as_bytes()))
    } else {
        q.decision.map(|d| (DECISION, d.as_str().as_bytes()))
    }
}

/// What a query takes from the writer's [`Pending`] items.
#[derive(Debug, Default)]
pub(crate) struct PendingView {
    /// First pending seq and the last pending locator; `None` when nothing is pending.
    span: Option<(u64, Locator)>,
    /// Candidates for the query (see [`Index::candidates`]): seq and locator, in
    /// (time, seq) order.
    hits: Vec<(u64, Locator)>,
    /// Pending times never decrease in seq order.
    ordered: bool,
    /// Time of the first pending event (in seq order) and the greatest.
    first_time: u64,
    max_time: u64,
}

/// Index items of consecutive events not yet written: the next block.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    first_seq: u64,
    locators: Vec<Locator>,
    /// `(time_ms, seq)` of every event, in seq order.
    time: Vec<(u64, u64)>,
    /// Per value tree (`PRINCIPAL`...): value -> pairs, in seq order.
    values: [Postings; 4],
    last_hash: String,
    since: Option<Instant>,
}

fn add(map: &mut Postings, value: &[u8], pair: (u64, u64)) {
    if let Some(v) = map.get_mut(value) {
        v.push(pair);
    } else {
        map.insert(value.to_vec(), vec![pair]);
    }
}

impl Pending {
    /// Events pending.
    pub(crate) fn len(&self) -> usize {
        self.locators.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.locators.is_empty()
    }

    /// Whether the pending events should be written now: at least `block_events` of
    /// them, or the oldest pending for [`BLOCK_MAX_AGE`].
    pub(crate) fn due(&self, block_events: usize) -> bool {
        self.len() >= block_events || self.since.is_some_and(|t| t.elapsed() >= BLOCK_MAX_AGE)
    }

    /// Adds an event; `false` (and nothing added) when it does not directly follow
    /// the pending ones (write those first).
    pub(crate) fn push(&mut self, ev: &Event, loc: Locator) -> bool {
        if self.is_empty() {
            self.first_seq = ev.seq;
            self.since = Some(Instant::now());
        } else if Some(ev.seq) != self.first_seq.checked_add(self.len() as u64) {
            return false;
        }
        let pair = (ev.time_ms, ev.seq);
        self.locators.push(loc);
        self.time.push(pair);
        let k = &ev.kind;
        if let Some(p) = k.principal() {
            add(&mut self.values[PRINCIPAL], p.as_bytes(), pair);
        }
        if let Some(t) = k.topic() {
            add(&mut self.values[TOPIC], t.as_bytes(), pair);
        }
        for s in k.subjects() {
            add(&mut self.values[SUBJECT], s.as_bytes(), pair);
        }
        if let Some(d) = k.decision() {
            add(&mut self.values[DECISION], d.as_str().as_bytes(), pair);
        }
        self.last_hash.clone_from(&ev.hash);
        true
    }

    /// The candidates for `q` among the pending events, and where they end.
    pub(crate) fn view(&self, q: &Query) -> PendingView {
        let (Some(last), Some(&(first_time, _))) = (self.locators.last(), self.time.first()) else {
            return PendingView::default();
        };
        let from = q.from_ms.unwrap_or(0);
        let to = q.to_ms.unwrap_or(u64::MAX);
        let pairs: &[(u64, u64)] = match pick(q) {
            Some((i, v)) => self.values[i].get(v).map_or(&[], Vec::as_slice),
            None => &self.time,
        };
        let mut found: Vec<(u64, u64)> = pairs
            .iter()
            .filter(|&&(t, _)| t >= from && t <= to)
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        let hits = found
            .into_iter()
            .filter_map(|(_, s)| {
                let i = usize::try_from(s.checked_sub(self.first_seq)?).ok()?;
                Some((s, *self.locators.get(i)?))
            })
            .collect();
        PendingView {
            span: Some((self.first_seq, *last)),
            hits,
            ordered: self.time.windows(2).all(|w| w[0].0 <= w[1].0),
            first_time,
            max_time: self.time.iter().map(|p| p.0).max().unwrap_or(0),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.locators.clear();
        self.time.clear();
        for m in &mut self.values {
            m.clear();
        }
        self.since = None;
    }
}

/// `meta/upto`: the last indexed event, and the time order of what is indexed.
/// Stored as seq (BE u64), max_time (BE u64), flags (u8, bit 0 = `unordered`), hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// Seq of the last indexed event: every event up to it is indexed.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Greatest `time_ms` indexed.
    pub max_time: u64,
    /// Some indexed event is earlier than one with a smaller seq.
    pub unordered: bool,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17 + self.hash.len());
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.max_time.to_be_bytes());
        v.push(u8::from(self.unordered));
        v.extend_from_slice(self.hash.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        Some(State {
            seq: u64::from_be_bytes(v.get(0..8)?.try_into().ok()?),
            max_time: u64::from_be_bytes(v.get(8..16)?.try_into().ok()?),
            unordered: v.get(16)? & 1 != 0,
            hash: std::str::from_utf8(v.get(17..)?).ok()?.to_string(),
        })
    }
}

/// The index tables of one directory.
pub(crate) struct Index {
    db: Arc<Database>,
    /// When the writer's last commit to reach the disk was made; `None` when every
    /// commit must (indexes built outside the writer).
    synced: Option<Mutex<Instant>>,
}

/// The writer's blocks are committed without waiting for the disk, and at least
/// this often with it (and when it closes). A crash loses at most this much of the
/// index, which the next open rebuilds from the segments (everything after `upto`
/// is indexed again); the data path's writer thread is spared two fsyncs per block.
const INDEX_SYNC_EVERY: Duration = Duration::from_secs(10);

/// `table` of `tx`; `None` when it was never written.
fn open_read(
    tx: &redb::ReadTransaction,
    table: Table,
) -> Result<Option<ReadOnlyTable<&'static [u8], &'static [u8]>>> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Index {
    pub(crate) fn new(db: Arc<Database>) -> Result<Self> {
        Ok(Index { db, synced: None })
    }

    /// The writer's index: blocks reach the disk every [`INDEX_SYNC_EVERY`] and at
    /// [`Self::sync`].
    pub(crate) fn for_writer(db: Arc<Database>) -> Result<Self> {
        Ok(Index {
            db,
            synced: Some(Mutex::new(Instant::now())),
        })
    }

    /// Makes every commit so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        if let Some(at) = &self.synced {
            *at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        Ok(())
    }

    /// The value of `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read()?;
        let Some(t) = open_read(&tx, table)? else {
            return Ok(None);
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Whether nothing was ever written (no `meta`, no `events`).
    fn is_blank(&self) -> Result<bool> {
        let tx = self.db.begin_read()?;
        for table in [META, EVENTS] {
            if let Some(t) = open_read(&tx, table)? {
                if t.first()?.is_some() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether the index has this crate's layout ([`FORMAT`]).
    pub(crate) fn format_ok(&self) -> Result<bool> {
        Ok(self
            .get(META, META_FORMAT.as_bytes())?
            .is_some_and(|v| v == FORMAT.to_be_bytes()))
    }

    /// The indexed state (`None`: nothing indexed).
    pub(crate) fn state(&self) -> Result<Option<State>> {
        match self.get(META, META_UPTO.as_bytes())? {
            None => Ok(None),
            Some(v) => State::decode(&v)
                .map(Some)
                .ok_or_else(|| malformed("meta/upto")),
        }
    }

    /// Empties every table and stamps the current [`FORMAT`].
    pub(crate) fn reset(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        for t in TABLES {
            tx.delete_table(t)?;
        }
        tx.open_table(META)?
            .insert(META_FORMAT.as_bytes(), FORMAT.to_be_bytes().as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// The locator block that holds `seq`, if any.
    pub(crate) fn locator_block(&self, seq: u64) -> Result<Option<LocatorBlock>> {
        let tx = self.db.begin_read()?;
        let Some(t) = open_read(&tx, EVENTS)? else {
            return Ok(None);
        };
        let key = seq.to_be_bytes();
        let Some(r) = t.range::<&[u8]>(..=key.as_slice())?.next_back() else {
            return Ok(None);
        };
        let (k, v) = r?;
        let first = k
            .value()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| malformed("events key"))?;
        LocatorBlock::decode(first, v.value().to_vec())
            .map(Some)
            .ok_or_else(|| malformed("locators"))
    }

    /// The locator of `seq`, through `cache` (the last block read).
    pub(crate) fn locator_cached(
        &self,
        cache: &mut Option<LocatorBlock>,
        seq: u64,
    ) -> Result<Option<Locator>> {
        if let Some(loc) = cache.as_mut().and_then(|b| b.get(seq)) {
            return Ok(Some(loc));
        }
        *cache = self.locator_block(seq)?;
        Ok(cache.as_mut().and_then(|b| b.get(seq)))
    }

    pub(crate) fn locator(&self, seq: u64) -> Result<Option<Locator>> {
        self.locator_cached(&mut None, seq)
    }

    /// Writes `p` as one block, in one transaction (every table and `upto`), made
    /// durable before it returns unless this is the writer's index and its last
    /// durable commit is recent ([`INDEX_SYNC_EVERY`]). The caller clears `p`.
    pub(crate) fn write_block(&self, p: &mut Pending) -> Result<()> {
        if p.is_empty() {
            return Ok(());
        }
        let prev = self.state()?;
        let (mut max_time, mut unordered) = prev
            .as_ref()
            .map_or((0, false), |s| (s.max_time, s.unordered));
        for &(t, _) in &p.time {
            unordered |= t < max_time;
            max_time = max_time.max(t);
        }
        let mut tx = self.db.begin_write()?;
        let lazy = self.synced.as_ref().is_some_and(|at| {
            at.lock().unwrap_or_else(PoisonError::into_inner).elapsed() < INDEX_SYNC_EVERY
        });
        if lazy {
            tx.set_durability(redb::Durability::None);
        }
        for (table, map) in VALUE_TABLES.into_iter().zip(&mut p.values) {
            if map.is_empty() {
                continue;
            }
            let mut t = tx.open_table(table)?;
            for (value, pairs) in map.iter_mut() {
                pairs.sort_unstable();
                pairs.dedup();
                let Some(&(time, seq)) = pairs.first() else {
                    continue;
                };
                t.insert(
                    block_key(&value_prefix(value), time, seq).as_slice(),
                    encode_postings(pairs).as_slice(),
                )?;
            }
        }
        p.time.sort_unstable();
        if let Some(&(t, s)) = p.time.first() {
            tx.open_table(TIME)?.insert(
                block_key(&[], t, s).as_slice(),
                encode_postings(&p.time).as_slice(),
            )?;
        }
        tx.open_table(EVENTS)?.insert(
            p.first_seq.to_be_bytes().as_slice(),
            encode_locators(&p.locators).as_slice(),
        )?;
        let state = State {
            seq: p.first_seq + (p.len() as u64 - 1),
            hash: p.last_hash.clone(),
            max_time,
            unordered,
        };
        tx.open_table(META)?
            .insert(META_UPTO.as_bytes(), state.encode().as_slice())?;
        tx.commit()?;
        if let (false, Some(at)) = (lazy, &self.synced) {
            *at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        Ok(())
    }

    /// Seqs of candidate events for `q` from the most selective table, each at most
    /// once per block, with `from <= time_ms <= to`. In (time, seq) order unless
    /// `unordered` (the index holds events out of time order: every block up to `to`
    /// is read, and the caller must sort). Candidates still need the full predicate.
    /// Blocks are read as the iterator goes (from one read transaction).
    pub(crate) fn candidates(
        &self,
        q: &Query,
        unordered: bool,
    ) -> Box<dyn Iterator<Item = Result<u64>> + '_> {
        match self.candidate_blocks(q, unordered) {
            Ok(blocks) => {
                let from = q.from_ms.unwrap_or(0);
                let to = q.to_ms.unwrap_or(u64::MAX);
                Box::new(blocks.flat_map(move |r| -> Vec<Result<u64>> {
                    match r {
                        Err(e) => vec![Err(e)],
                        Ok(v) => match decode_postings(&v) {
                            Some(pairs) => pairs
                                .into_iter()
                                .filter(|&(t, _)| t >= from && t <= to)
                                .map(|(_, s)| Ok(s))
                                .collect(),
                            None => vec![Err(malformed("postings"))],
                        },
                    }
                }))
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The postings of the blocks [`Self::candidates`] reads.
    fn candidate_blocks(
        &self,
        q: &Query,
        unordered: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<Vec<u8>>>>> {
        let from = q.from_ms.unwrap_or(0);
        let to = q.to_ms.unwrap_or(u64::MAX);
        let (table, prefix) = match pick(q) {
            Some((i, v)) => (VALUE_TABLES[i], value_prefix(v)),
            None => (TIME, Vec::new()),
        };
        let tx = self.db.begin_read()?;
        let Some(t) = open_read(&tx, table)? else {
            return Ok(Box::new(std::iter::empty()));
        };
        // Keys of exactly this value (not of a longer one that starts with `value \0`).
        let key_len = prefix.len() + 16;
        let ours =
            move |r: &TableEntry| r.as_ref().map_or(true, |(k, _)| k.value().len() == key_len);
        let value = |r: TableEntry| -> Result<Vec<u8>> { Ok(r?.1.value().to_vec()) };
        let (lo, hi) = (
            block_key(&prefix, if unordered { 0 } else { from }, 0),
            block_key(&prefix, to, u64::MAX),
        );
        // The last block starting before `from` may hold entries at or after it.
        let before = if unordered || from == 0 || from > to {
            None
        } else {
            t.range::<&[u8]>(prefix.as_slice()..lo.as_slice())?
                .rev()
                .find(ours)
        };
        let blocks = if from <= to {
            Some(t.range::<&[u8]>(lo.as_slice()..=hi.as_slice())?)
        } else {
            None
        };
        Ok(Box::new(
            before
                .into_iter()
                .chain(blocks.into_iter().flatten().filter(ours))
                .map(value),
        ))
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

/// How [`sync_tail`] may use the index.
#[derive(Debug)]
pub(crate) enum Access<'a> {
    /// The caller holds the index lock and no writer owns the index: an index of
    /// another format or that disagrees with the segments is cleared and rebuilt,
    /// and the tail is indexed in blocks of `block_events`.
    Write { block_events: usize },
    /// Read only (a writer owns the index, or did when the reader was acquired):
    /// `upto` and the writer's pending items are read together under `lock`, the
    /// candidates among the pending events come from memory, and only the events
    /// after them are read from the segments. An unusable index yields `None`.
    Read {
        lock: &'a Mutex<Pending>,
        query: &'a Query,
    },
}

/// The index caught up with the segments, as one query sees it.
#[derive(Debug)]
pub(crate) struct Synced {
    /// Last seq the index covered: candidates after it are to be ignored,
    /// [`Self::pending`] and [`Self::tail`] have them.
    pub upto: u64,
    /// The index held events out of time order (see [`Index::candidates`]).
    pub index_unordered: bool,
    /// Candidates (seq, locator) among the writer's pending events, which follow
    /// `upto`, in (time, seq) order. They still need the full predicate.
    pub pending: Vec<(u64, Locator)>,
    /// The events after those (complete, parseable lines) that the caller kept.
    pub tail: Vec<Event>,
    /// Pending events and the kept tail are in time order and no earlier than
    /// anything indexed.
    pub tail_ordered: bool,
}

/// Brings the index up to the segments (when allowed, see [`Access`]) and reads the
/// events it does not cover (the tail), keeping those for which `keep` is true.
pub(crate) fn sync_tail(
    index: &Index,
    dir: &Path,
    segments: &[(u64, PathBuf)],
    access: Access<'_>,
    mut keep: impl FnMut(&Event) -> bool,
) -> Result<Option<Synced>> {
    let (writable, block_events) = match access {
        Access::Write { block_events } => (true, block_events.max(1)),
        Access::Read { .. } => (false, 0),
    };
    if !index.format_ok()? {
        if !writable {
            return Ok(None);
        }
        if index.is_blank()? {
            tracing::debug!(dir = %dir.display(), "creating the audit index");
        } else {
            tracing::warn!(dir = %dir.display(), "audit index has an older format; rebuilding it from the segments");
        }
        index.reset()?;
    }
    let (state, view) = match access {
        Access::Write { .. } => (index.state()?, PendingView::default()),
        Access::Read { lock, query } => {
            let pending = lock_index(lock);
            (index.state()?, pending.view(query))
        }
    };
    let mut start: Option<(u64, u64, u64)> = None; // segment, offset, line
    let mut checked: Option<State> = None;
    if let Some(st) = state {
        let mut files = HashMap::new();
        let ok = match index.locator(st.seq)? {
            Some(loc) => match read_at(dir, &mut files, &loc) {
                Ok(bytes) => match serde_json::from_slice::<Event>(&bytes) {
                    Ok(ev) if ev.seq == st.seq && ev.hash == st.hash => {
                        start = Some((loc.segment, loc.end(), loc.line + 1));
                        true
                    }
                    _ => false,
                },
                Err(_) => false,
            },
            None => false,
        };
        if ok {
            checked = Some(st);
        } else {
            if !writable {
                return Ok(None);
            }
            tracing::warn!(dir = %dir.display(), "audit index does not match the segments; rebuilding");
            index.reset()?;
        }
    }
    let upto = checked.as_ref().map_or(0, |s| s.seq);
    let index_unordered = checked.as_ref().is_some_and(|s| s.unordered);
    let mut max_time = checked.as_ref().map_or(0, |s| s.max_time);
    let mut tail_ordered = true;
    let mut pending_hits = Vec::new();
    // The writer's pending events directly follow `upto`: take their candidates
    // from memory and read the segments only after them.
    if let Some((first, last)) = view.span {
        if first == upto + 1 {
            pending_hits = view.hits;
            tail_ordered = view.ordered && view.first_time >= max_time;
            max_time = max_time.max(view.max_time);
            start = Some((last.segment, last.end(), last.line + 1));
        }
    }
    let mut tail = Vec::new();
    let mut pending = Pending::default();
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
            let ev = match serde_json::from_slice::<Event>(&raw.bytes) {
                Ok(ev) => ev,
                Err(_) => {
                    broken = true;
                    return Ok(false);
                }
            };
            if writable {
                let loc = Locator {
                    segment: *n,
                    offset: raw.offset,
                    len: u32::try_from(raw.bytes.len()).unwrap_or(u32::MAX),
                    line: raw.line,
                };
                if !pending.push(&ev, loc) {
                    // Not consecutive (a damaged chain): start another block.
                    index.write_block(&mut pending)?;
                    pending.clear();
                    pending.push(&ev, loc);
                }
                if pending.len() >= block_events {
                    index.write_block(&mut pending)?;
                    pending.clear();
                }
            }
            if keep(&ev) {
                tail_ordered &= ev.time_ms >= max_time;
                max_time = max_time.max(ev.time_ms);
                tail.push(ev);
            }
            Ok(true)
        })?;
        if broken {
            break;
        }
    }
    if writable {
        index.write_block(&mut pending)?;
    }
    Ok(Some(Synced {
        upto,
        index_unordered,
        pending: pending_hits,
        tail,
        tail_ordered,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::event::EventKind;

    fn delivery(seq: u64, time_ms: u64, principal: &str, subjects: &[&str]) -> Event {
        Event {
            replica: "r".into(),
            seq,
            time_ms,
            prev_hash: String::new(),
            hash: format!("h{seq}"),
            kind: EventKind::Delivery {
                principal: principal.into(),
                topic: "t".into(),
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                records: 1,
                fields: Default::default(),
                subjects: subjects.iter().map(|s| s.to_string()).collect(),
                policies: vec![],
            },
        }
    }

    fn loc(seq: u64) -> Locator {
        // Three events per segment, 100-byte lines.
        Locator {
            segment: 1 + (seq - 1) / 3,
            offset: ((seq - 1) % 3) * 101,
            len: 100,
            line: 1 + (seq - 1) % 3,
        }
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0, 1, 127, 128, 300, u64::MAX / 3, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(0u64.wrapping_sub(1)), 1);
        assert_eq!(get_varint(&[0x80], &mut 0), None);
        assert_eq!(get_varint(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn postings_and_locators_round_trip() {
        let pairs = vec![(5, 9), (5, 10), (7, 3), (1000, 4), (u64::MAX, u64::MAX)];
        assert_eq!(decode_postings(&encode_postings(&pairs)).unwrap(), pairs);
        let mut locs: Vec<Locator> = (1..=10).map(loc).collect();
        // A gap and an odd line inside a segment.
        locs[4].offset += 17;
        locs[5].line = 42;
        assert_eq!(decode_locators(&encode_locators(&locs)).unwrap(), locs);
        // Consecutive lines of one segment: 4 bytes each, plus one run.
        let same: Vec<Locator> = (0..100)
            .map(|i| Locator {
                segment: 7,
                offset: 5000 + i * 401,
                len: 400,
                line: i + 3,
            })
            .collect();
        let enc = encode_locators(&same);
        assert!(enc.len() <= 4 * 100 + 10, "{}", enc.len());
        assert_eq!(decode_locators(&enc).unwrap(), same);
        // Random access, backwards and forwards (the cursor).
        let mut block = LocatorBlock::decode(10, enc).unwrap();
        for i in [99u64, 3, 4, 50, 2, 0, 99, 98] {
            assert_eq!(block.get(10 + i), Some(same[i as usize]));
        }
        assert_eq!(block.get(9), None);
        assert_eq!(block.get(110), None);
        assert!(decode_locators(&[0x80]).is_none());
        assert!(decode_locators(&[1, 0, 1, 0, 1, 0xff]).is_none());
        assert!(decode_locators(&[0]).is_none());
    }

    fn index_of(events: &[Event], block: usize) -> (tempfile::TempDir, Index) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::create(tmp.path().join(INDEX_FILE)).unwrap();
        let ix = Index::new(Arc::new(db)).unwrap();
        ix.reset().unwrap();
        let mut p = Pending::default();
        for ev in events {
            assert!(p.push(ev, loc(ev.seq)));
            if p.len() >= block {
                ix.write_block(&mut p).unwrap();
                p.clear();
            }
        }
        ix.write_block(&mut p).unwrap();
        (tmp, ix)
    }

    fn seqs(ix: &Index, q: &Query, unordered: bool) -> Vec<u64> {
        ix.candidates(q, unordered).map(|r| r.unwrap()).collect()
    }

    #[test]
    fn blocks_answer_ranges_and_locators() {
        // 50 events, two per millisecond, subject "a" on every third one.
        let events: Vec<Event> = (1..=50)
            .map(|s| {
                let subjects: &[&str] = if s % 3 == 0 { &["a", "a", "b"] } else { &["b"] };
                delivery(s, 100 + s / 2, if s % 2 == 0 { "p" } else { "q" }, subjects)
            })
            .collect();
        let (_tmp, ix) = index_of(&events, 7);
        let st = ix.state().unwrap().unwrap();
        assert_eq!(
            (st.seq, st.hash.as_str(), st.max_time, st.unordered),
            (50, "h50", 125, false)
        );
        for s in 1..=50 {
            assert_eq!(ix.locator(s).unwrap(), Some(loc(s)));
        }
        assert_eq!(ix.locator(51).unwrap(), None);
        for from in [
            None,
            Some(99),
            Some(100),
            Some(102),
            Some(104),
            Some(106),
            Some(109),
            Some(111),
            Some(125),
            Some(126),
        ] {
            for to in [None, Some(99), Some(103), Some(110), Some(111), Some(125)] {
                for (subject, principal) in [(Some("a"), None), (None, Some("p")), (None, None)] {
                    let q = Query {
                        subject_hash: subject.map(str::to_string),
                        principal: principal.map(str::to_string),
                        from_ms: from,
                        to_ms: to,
                        ..Query::default()
                    };
                    let want: Vec<u64> = events
                        .iter()
                        .filter(|e| q.matches(e))
                        .map(|e| e.seq)
                        .collect();
                    assert_eq!(seqs(&ix, &q, false), want, "{q:?}");
                    // The unordered reading finds the same (here already in order).
                    assert_eq!(seqs(&ix, &q, true), want, "{q:?}");
                }
            }
        }
    }

    #[test]
    fn time_going_backwards_is_flagged_and_still_found() {
        // Block 1 at t=200.., block 2 at t=100.. (clock set back across blocks).
        let events: Vec<Event> = (1..=8)
            .map(|s| delivery(s, if s <= 4 { 200 + s } else { 100 + s }, "p", &["a"]))
            .collect();
        let (_tmp, ix) = index_of(&events, 4);
        let st = ix.state().unwrap().unwrap();
        assert!(st.unordered);
        assert_eq!(st.max_time, 204);
        let q = Query {
            subject_hash: Some("a".into()),
            from_ms: Some(106),
            ..Query::default()
        };
        let mut got = seqs(&ix, &q, st.unordered);
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 4, 6, 7, 8]);
    }

    #[test]
    fn pending_refuses_a_gap() {
        let mut p = Pending::default();
        assert!(p.push(&delivery(3, 1, "p", &[]), loc(3)));
        assert!(!p.push(&delivery(5, 1, "p", &[]), loc(5)));
        assert!(p.push(&delivery(4, 1, "p", &[]), loc(4)));
        assert_eq!(p.len(), 2);
        assert!(p.due(2) && !p.due(3));
    }
}
