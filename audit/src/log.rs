//! The writing side: [`AuditConfig`], [`AuditLog`] and its background writer task.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::error::{AuditError, Result};
use crate::event::{hex, Event, EventKind};
use crate::index::{self, Index, Locator};
use crate::key::{
    read_head, read_verifying_key, signed_message, write_atomic, CheckpointHint, Head, PublicKey,
    SigningKey, HEAD_FILE, VERIFYING_KEY_FILE,
};
use crate::segment::{check_standalone, list_segments, scan_segment, segment_name, Chain};

/// Configuration of one replica's audit log.
pub struct AuditConfig {
    /// This replica's chain: segments, `head.json`, `verifying_key.pub` and the
    /// index (`index.redb`) live here.
    pub dir: PathBuf,
    /// Replica id, written into every event.
    pub replica_id: String,
    /// Ed25519 PKCS#8 key file; created with mode 0600 if missing, refused if group
    /// or other can read it.
    pub signing_key_path: PathBuf,
    /// Secret for [`AuditLog::subject_hash`].
    pub subject_secret: Zeroizing<[u8; 32]>,
    /// A signed checkpoint every N events (0: only on close). Default 1000.
    pub checkpoint_every: u64,
    /// Roll to a new segment file when the current one would exceed this. Default 64 MiB.
    pub segment_max_bytes: u64,
    /// Group-commit window: appends arriving within it share one write + fsync.
    /// The writer waits at most this long after the first append of a batch, and
    /// stops waiting early once as many appends as in the previous batch have
    /// arrived (so closed-loop appenders do not idle out the window). Default 2 ms.
    pub flush_interval: Duration,
    /// The index is written in blocks: the writer keeps the index items of committed
    /// events in memory and writes them as one block once this many are pending, at
    /// the first commit a second or more after the oldest of them, and on close.
    /// Queries read the events not yet indexed from the segments. Must not be 0.
    /// Default 4096.
    pub index_block_events: usize,
}

impl AuditConfig {
    /// A configuration with the default checkpoint interval (1000), segment size
    /// (64 MiB), flush window (2 ms) and index block size (4096 events).
    pub fn new(
        dir: impl Into<PathBuf>,
        replica_id: impl Into<String>,
        signing_key_path: impl Into<PathBuf>,
        subject_secret: Zeroizing<[u8; 32]>,
    ) -> Self {
        AuditConfig {
            dir: dir.into(),
            replica_id: replica_id.into(),
            signing_key_path: signing_key_path.into(),
            subject_secret,
            checkpoint_every: 1000,
            segment_max_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_millis(2),
            index_block_events: index::DEFAULT_BLOCK_EVENTS,
        }
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("dir", &self.dir)
            .field("replica_id", &self.replica_id)
            .field("signing_key_path", &self.signing_key_path)
            .field("subject_secret", &"<redacted>")
            .field("checkpoint_every", &self.checkpoint_every)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("index_block_events", &self.index_block_events)
            .finish()
    }
}

enum Request {
    Append {
        kinds: Vec<EventKind>,
        done: oneshot::Sender<Result<u64>>,
    },
    Close {
        done: oneshot::Sender<Result<()>>,
    },
    /// Test hook: replace the writer's open segment file (e.g. with `/dev/full`).
    #[cfg(test)]
    SwapFile {
        file: File,
        done: oneshot::Sender<()>,
    },
}

/// Told how the log is keeping up (metrics): every append's wait until
/// durable, every batch written. Called on the appending task and on the
/// writer task; must be quick.
pub trait AuditObserver: Send + Sync {
    /// An append of `events` events resolved (durable or failed) after `wait`.
    fn appended(&self, events: usize, wait: Duration, ok: bool);
    /// A batch of `events` events, from `appends` appends, was written.
    fn batch(&self, appends: usize, events: usize);
}

type Observer = Arc<std::sync::OnceLock<Arc<dyn AuditObserver>>>;

struct Inner {
    tx: mpsc::Sender<Request>,
    observer: Observer,
    replica: String,
    dir: PathBuf,
    subject_key: aws_lc_rs::hmac::Key,
    /// Recently hashed subjects: a delivery event names every subject of a
    /// batch, and the same subjects recur batch after batch.
    subject_hashes: std::sync::Mutex<std::collections::HashMap<Box<str>, Box<str>>>,
    /// The chain's signing key, for documents (the writer holds its own).
    signer: SigningKey,
}

/// Subjects whose hashes are remembered; the memo starts over when full.
pub(crate) const SUBJECT_HASH_MEMO: usize = 16_384;

/// Handle on one replica's audit log. Cheap to clone; a background writer task owns
/// the files. Dropping every handle without [`AuditLog::close`] stops the writer
/// after the appends already queued, without a closing checkpoint.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("replica", &self.inner.replica)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

const CHANNEL_CAPACITY: usize = 1024;
const MAX_REQUESTS_PER_BATCH: usize = 4096;
/// After a failed write, how often appends try the disk again.
const RESUME_RETRY: Duration = Duration::from_secs(1);

impl AuditLog {
    /// Opens the log (creating the directory, the signing key, `verifying_key.pub` and
    /// the first segment as needed) and recovers it:
    ///
    /// - the chain is verified from the last checkpoint named by `head.json` (from
    ///   seq 1 when there is no usable head);
    /// - a torn last line of the newest segment (crash mid-write) is cut, and a
    ///   [`EventKind::Recovery`] event records it;
    /// - anything else broken — an edited, missing or reordered event, a torn line
    ///   elsewhere, a signed head naming a later seq than the segments hold — refuses
    ///   to open with [`AuditError::Corrupt`] naming the location.
    ///
    /// Spawns the writer task on the current tokio runtime.
    pub async fn open(cfg: AuditConfig) -> Result<Self> {
        if cfg.replica_id.is_empty() {
            return Err(AuditError::Config("replica_id is empty".into()));
        }
        if cfg.segment_max_bytes == 0 {
            return Err(AuditError::Config("segment_max_bytes is 0".into()));
        }
        if cfg.index_block_events == 0 {
            return Err(AuditError::Config("index_block_events is 0".into()));
        }
        let subject_key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &cfg.subject_secret[..]);
        let replica = cfg.replica_id.clone();
        let dir = cfg.dir.clone();
        let flush = cfg.flush_interval;
        let key_path = cfg.signing_key_path.clone();
        let writer = tokio::task::spawn_blocking(move || Writer::open(cfg))
            .await
            .map_err(|e| AuditError::Unavailable(format!("open task failed: {e}")))??;
        // The writer created the key if it had to; this is a second handle.
        let signer = SigningKey::load_or_create(&key_path)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let observer = Observer::default();
        tokio::spawn(run(writer, rx, flush, observer.clone()));
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                observer,
                replica,
                dir,
                subject_key,
                subject_hashes: std::sync::Mutex::new(std::collections::HashMap::new()),
                signer,
            }),
        })
    }

    /// Signs a document of kind `kind` with this chain's key (see
    /// [`SigningKey::sign_document`]); the signature in base64.
    pub fn sign_document(&self, kind: &str, body: &[u8]) -> String {
        self.inner.signer.sign_document(kind, body)
    }

    /// This chain's public key, as in its `verifying_key.pub`.
    pub fn verifying_key(&self) -> String {
        self.inner.signer.public_base64()
    }

    /// Appends one event; resolves with its seq once it is durable (written and
    /// fsync'd, batched with the other appends of the same flush window).
    ///
    /// `Err` means the event is not known to be durable: the log cannot be written
    /// (I/O error, disk full) or is closed. Callers must then refuse the data access
    /// (fail closed). After a write failure every later append fails too, until
    /// one (at most once a second) finds the disk writable again: what the failed
    /// writes left is cut, a `recovery` event records it, and appends resume.
    pub async fn append(&self, kind: EventKind) -> Result<u64> {
        self.append_all(vec![kind]).await
    }

    /// Appends several events (consecutive seqs) with one durability wait; resolves
    /// with the last seq. An empty list writes nothing and returns the current last seq.
    pub async fn append_all(&self, kinds: Vec<EventKind>) -> Result<u64> {
        self.submit(kinds).await.await
    }

    /// Hands `kinds` to the writer (waiting only while its queue is full) and
    /// returns the wait for their durability: what [`Self::append_all`] awaits, for
    /// callers with other work to do meanwhile (the proxy encodes and queues a
    /// response while its events are written, and sends it once they are
    /// durable).
    pub async fn submit(
        &self,
        kinds: Vec<EventKind>,
    ) -> impl std::future::Future<Output = Result<u64>> + Send + Sync + 'static {
        let started = std::time::Instant::now();
        let events = kinds.len();
        let (done, rx) = oneshot::channel();
        let sent = self.inner.tx.send(Request::Append { kinds, done }).await;
        let observer = self.inner.observer.clone();
        async move {
            let res = match sent {
                Ok(()) => rx.await.map_err(|_| AuditError::Closed).and_then(|r| r),
                Err(_) => Err(AuditError::Closed),
            };
            if let Some(o) = observer.get() {
                o.appended(events, started.elapsed(), res.is_ok());
            }
            res
        }
    }

    /// Sets who is told how the log keeps up (once; later calls are ignored).
    pub fn observe(&self, observer: Arc<dyn AuditObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Appends waiting for the writer (queued, not yet in a batch).
    pub fn backlog(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Hex HMAC-SHA256 of a data-subject id under the configured secret. Put this,
    /// never the clear id, into events.
    pub fn subject_hash(&self, subject: &str) -> String {
        let memo = || {
            self.inner
                .subject_hashes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(h) = memo().get(subject) {
            return h.to_string();
        }
        let h = hex(aws_lc_rs::hmac::sign(&self.inner.subject_key, subject.as_bytes()).as_ref());
        let mut m = memo();
        if m.len() >= SUBJECT_HASH_MEMO {
            m.clear();
        }
        m.insert(subject.into(), h.as_str().into());
        h
    }

    /// Writes a signed checkpoint (unless the last event already is one), flushes,
    /// and stops the writer. Later appends fail with [`AuditError::Closed`]. Closing
    /// a closed log is `Ok`; closing a log that had a write failure is `Err`.
    pub async fn close(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Close { done }).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.inner.replica
    }

    /// Directory of this replica's chain.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    #[cfg(test)]
    pub(crate) async fn swap_file_for_test(&self, file: File) {
        let (done, rx) = oneshot::channel();
        if self
            .inner
            .tx
            .send(Request::SwapFile { file, done })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

type Waiter = (Vec<EventKind>, oneshot::Sender<Result<u64>>);

#[cfg_attr(not(test), allow(unused_variables, clippy::needless_pass_by_ref_mut))]
fn take(
    req: Request,
    writer: &mut Writer,
    appends: &mut Vec<Waiter>,
    close: &mut Option<oneshot::Sender<Result<()>>>,
) {
    match req {
        Request::Append { kinds, done } => appends.push((kinds, done)),
        Request::Close { done } => *close = Some(done),
        #[cfg(test)]
        Request::SwapFile { file, done } => {
            writer.file = file;
            let _ = done.send(());
        }
    }
}

async fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Request>,
    flush: Duration,
    observer: Observer,
) {
    // Why appends fail, since when, the last attempt, how many were refused.
    let mut failed: Option<(String, std::time::Instant, std::time::Instant, u64)> = None;
    // Answered only once the writer has released the directory, so that a reopen
    // right after `close` succeeds.
    let mut close_reply: Option<(oneshot::Sender<Result<()>>, Result<()>)> = None;
    // Requests in the previous batch; starts high so that the first batch waits for
    // the whole window.
    let mut prev_batch_len = usize::MAX;
    while let Some(first) = rx.recv().await {
        let mut appends: Vec<Waiter> = Vec::new();
        let mut close: Option<oneshot::Sender<Result<()>>> = None;
        take(first, &mut writer, &mut appends, &mut close);
        if failed.is_none() {
            let deadline = tokio::time::Instant::now() + flush;
            let last_batch_len = std::mem::replace(&mut prev_batch_len, 0);
            let mut count = 1;
            while close.is_none() && count < MAX_REQUESTS_PER_BATCH {
                let next = match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    // Adaptive window: once as many requests as in the previous batch
                    // are in, stop waiting (closed-loop appenders have all arrived).
                    Err(mpsc::error::TryRecvError::Empty)
                        if flush.is_zero() || count >= last_batch_len =>
                    {
                        None
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(req) = next else { break };
                take(req, &mut writer, &mut appends, &mut close);
                count += 1;
            }
            prev_batch_len = count;
        }
        if let Some((reason, since, attempt, refused)) = &mut failed {
            // Try again at most once a second (or at close): the disk may
            // have room again.
            if close.is_some() || attempt.elapsed() >= RESUME_RETRY {
                let why = reason.clone();
                let joined = tokio::task::spawn_blocking(move || {
                    let res = writer.resume(&why);
                    (writer, res)
                })
                .await;
                let Ok((w, res)) = joined else {
                    for (_, done) in appends {
                        let _ = done.send(Err(AuditError::Unavailable(reason.clone())));
                    }
                    return;
                };
                writer = w;
                match res {
                    Ok(()) => {
                        tracing::info!(replica = %writer.replica, refused = *refused, failed_for = ?since.elapsed(), "audit log writable again; appends resume");
                        failed = None;
                    }
                    Err(e) => {
                        tracing::debug!(replica = %writer.replica, error = %e, "audit log still not writable");
                        *attempt = std::time::Instant::now();
                    }
                }
            }
        }
        if let Some((reason, _, _, refused)) = &mut failed {
            *refused += appends.len() as u64;
            for (_, done) in appends {
                let _ = done.send(Err(AuditError::Unavailable(reason.clone())));
            }
            if let Some(done) = close {
                close_reply = Some((done, Err(AuditError::Unavailable(reason.clone()))));
                break;
            }
            continue;
        }
        let is_close = close.is_some();
        if let Some(o) = observer.get() {
            o.batch(appends.len(), appends.iter().map(|(k, _)| k.len()).sum());
        }
        let (kinds, waiters): (Vec<_>, Vec<_>) = appends.into_iter().unzip();
        let joined = tokio::task::spawn_blocking(move || {
            // Appenders are answered as soon as their events are durable;
            // the index is updated after.
            let mut pending = Some(waiters);
            let res = writer.commit_then(&kinds, is_close, |lasts| {
                if let Some(waiters) = pending.take() {
                    for (done, last) in waiters.into_iter().zip(lasts) {
                        let _ = done.send(Ok(*last));
                    }
                }
            });
            if is_close {
                writer.finish();
            }
            (writer, res, pending)
        })
        .await;
        let (res, waiters) = match joined {
            Ok((w, res, pending)) => {
                writer = w;
                (res, pending.unwrap_or_default())
            }
            Err(e) => {
                // The waiters went with the failed task: their receivers
                // see the channel closed, an error.
                let reason = format!("writer task failed: {e}");
                if let Some(done) = close {
                    let _ = done.send(Err(AuditError::Unavailable(reason)));
                }
                return;
            }
        };
        match res {
            Ok(_) => {
                // Already answered when durable.
                debug_assert!(waiters.is_empty());
                if let Some(done) = close {
                    close_reply = Some((done, Ok(())));
                    break;
                }
            }
            Err(e) => {
                let waiters_len = waiters.len() as u64;
                let reason = e.to_string();
                tracing::error!(replica = %writer.replica, error = %reason, "audit log write failed; data access is refused until it can be written again");
                for done in waiters {
                    let _ = done.send(Err(AuditError::Unavailable(reason.clone())));
                }
                if let Some(done) = close {
                    close_reply = Some((done, Err(AuditError::Unavailable(reason.clone()))));
                    break;
                }
                let now = std::time::Instant::now();
                failed = Some((reason, now, now, waiters_len));
            }
        }
    }
    // Writing the last index block (a durable commit) blocks: keep
    // them off the async threads.
    drop(rx);
    let _ = tokio::task::spawn_blocking(move || {
        writer.flush_index();
        drop(writer);
    })
    .await;
    if let Some((done, res)) = close_reply {
        let _ = done.send(res);
    }
}

/// Releases a directory's writer lock, then its in-process registration, on drop
/// (holds the registry key).
struct Registration(PathBuf, Option<File>);

impl Drop for Registration {
    fn drop(&mut self) {
        drop(self.1.take());
        index::release_writer(&self.0);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Blocking-side state, owned by the writer task.
struct Writer {
    dir: PathBuf,
    replica: String,
    key: SigningKey,
    seg_no: u64,
    file: File,
    seg_size: u64,
    seg_lines: u64,
    seq: u64,
    hash: String,
    last_time: u64,
    since_checkpoint: u64,
    last_checkpoint: Option<CheckpointHint>,
    checkpoint_every: u64,
    segment_max: u64,
    index: Option<Index>,
    index_block_events: usize,
    /// Holds the index items of committed events not yet written (the next block);
    /// held while writing the index. Shared with the queries of this process.
    index_lock: index::IndexLock,
    /// The head file, rewritten in place after each batch (see `write_head`):
    /// the open file, its length, and the checkpoint it was last replaced at.
    head: Option<(File, usize, Option<u64>)>,
    /// Where the log stood after its last durable batch, while a failed
    /// batch (a write, fsync or head write that did not complete) may have
    /// left part of itself behind: [`Self::resume`] cuts it off.
    unwritten: Option<Durable>,
    _registration: Registration,
}

/// The writer's position and chain state after a durable batch.
#[derive(Clone)]
struct Durable {
    seg_no: u64,
    seg_size: u64,
    seg_lines: u64,
    seq: u64,
    hash: String,
    last_time: u64,
    since_checkpoint: u64,
    last_checkpoint: Option<CheckpointHint>,
}

struct Recovered {
    chain: Chain,
    last_segment: Option<(u64, u64)>, // number, line count
    last_checkpoint: Option<CheckpointHint>,
    torn: Option<EventKind>,
}

fn corrupt(segment: u64, line: u64, seq: Option<u64>, reason: impl Into<String>) -> AuditError {
    AuditError::Corrupt {
        segment: segment_name(segment),
        line,
        seq,
        reason: reason.into(),
    }
}

impl Writer {
    fn open(cfg: AuditConfig) -> Result<Self> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| AuditError::io(&dir, e))?;
        let key = SigningKey::load_or_create(&cfg.signing_key_path)?;
        match read_verifying_key(&dir)? {
            Some(Ok(pk)) if pk.bytes() == key.public_key() => {}
            Some(Ok(_)) => {
                return Err(AuditError::Key {
                    path: cfg.signing_key_path.clone(),
                    reason: format!("does not match {VERIFYING_KEY_FILE} in {}", dir.display()),
                })
            }
            Some(Err(reason)) => {
                return Err(AuditError::Key {
                    path: dir.join(VERIFYING_KEY_FILE),
                    reason,
                })
            }
            None => write_atomic(
                &dir,
                VERIFYING_KEY_FILE,
                key.public_base64().as_bytes(),
                true,
            )?,
        }
        let public =
            PublicKey::from_base64(&key.public_base64()).ok_or_else(|| AuditError::Key {
                path: cfg.signing_key_path.clone(),
                reason: "unusable public key".into(),
            })?;

        // Exclusive in this process (registry) and across processes (the writer
        // lock, and the index's own).
        let index::WriterHold {
            db,
            key: key_in_registry,
            lock: index_lock,
            file: writer_lock,
        } = index::acquire_writer(&dir)?;
        let registration = Registration(key_in_registry, Some(writer_lock));
        // Items left by a writer of this directory that died without writing them.
        index::lock_index(&index_lock).clear();

        let head = match read_head(&dir)? {
            Some(Ok(h)) => {
                if h.replica != cfg.replica_id {
                    return Err(AuditError::Config(format!(
                        "{} holds the chain of replica {:?}, not {:?}",
                        dir.display(),
                        h.replica,
                        cfg.replica_id
                    )));
                }
                if !h.signature_ok(&public) {
                    return Err(AuditError::Corrupt {
                        segment: HEAD_FILE.into(),
                        line: 1,
                        seq: Some(h.seq),
                        reason: "head signature invalid".into(),
                    });
                }
                Some(h)
            }
            Some(Err(reason)) => {
                tracing::warn!(dir = %dir.display(), %reason, "ignoring unreadable audit head; verifying from seq 1");
                None
            }
            None => None,
        };
        let segments = list_segments(&dir)?;
        let rec = recover(&dir, &segments, &public, head.as_ref(), &cfg.replica_id)?;

        let (seg_no, seg_lines, file) = match rec.last_segment {
            Some((n, lines)) => {
                let path = dir.join(segment_name(n));
                let f = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|e| AuditError::io(&path, e))?;
                (n, lines, f)
            }
            None => (1, 0, create_segment(&dir, 1)?),
        };
        let seg_size = file
            .metadata()
            .map_err(|e| AuditError::io(dir.join(segment_name(seg_no)), e))?
            .len();

        // Catch the index up (or rebuild it: other format, or not matching the
        // segments) before the first block of this session.
        let index = match Index::for_writer(db).and_then(|ix| {
            let segs = list_segments(&dir)?;
            let _pending = index::lock_index(&index_lock);
            let access = index::Access::Write {
                block_events: cfg.index_block_events,
            };
            index::sync_tail(&ix, &dir, &segs, access, |_| false)?;
            Ok(ix)
        }) {
            Ok(ix) => Some(ix),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "audit index unavailable; queries will scan segments");
                None
            }
        };

        let since_checkpoint = rec
            .last_checkpoint
            .as_ref()
            .map_or(rec.chain.seq, |c| rec.chain.seq - c.seq);
        let mut w = Writer {
            dir,
            replica: cfg.replica_id.clone(),
            key,
            seg_no,
            file,
            seg_size,
            seg_lines,
            seq: rec.chain.seq,
            hash: rec.chain.hash.clone(),
            last_time: rec.chain.time_ms,
            since_checkpoint,
            last_checkpoint: rec.last_checkpoint,
            checkpoint_every: cfg.checkpoint_every,
            segment_max: cfg.segment_max_bytes,
            index,
            index_block_events: cfg.index_block_events,
            index_lock,
            head: None,
            unwritten: None,
            _registration: registration,
        };
        match rec.torn {
            Some(kind) => {
                w.commit(&[vec![kind]], false)?;
            }
            None if w.seq > 0 => w.write_head()?,
            None => {}
        }
        Ok(w)
    }

    fn make_event(&mut self, kind: EventKind) -> Result<Event> {
        let time_ms = now_ms().max(self.last_time);
        self.make_event_at(kind, time_ms)
    }

    fn make_event_at(&mut self, kind: EventKind, time_ms: u64) -> Result<Event> {
        let mut ev = Event {
            replica: self.replica.clone(),
            seq: self.seq + 1,
            time_ms,
            prev_hash: self.hash.clone(),
            hash: String::new(),
            kind,
        };
        ev.hash = ev.compute_hash()?;
        self.seq = ev.seq;
        self.hash.clone_from(&ev.hash);
        self.last_time = time_ms;
        Ok(ev)
    }

    fn make_checkpoint(&mut self) -> Result<Event> {
        let time_ms = now_ms().max(self.last_time);
        let msg = signed_message("checkpoint", &self.replica, self.seq, &self.hash, time_ms);
        let kind = EventKind::Checkpoint {
            upto_seq: self.seq,
            upto_hash: self.hash.clone(),
            signature: self.key.sign(&msg),
        };
        self.since_checkpoint = 0;
        self.make_event_at(kind, time_ms)
    }

    /// Assigns seqs, writes, fsyncs, rewrites the head, queues the index items (see
    /// [`Self::commit_then`]). Returns the last seq of each request.
    fn commit(&mut self, requests: &[Vec<EventKind>], checkpoint: bool) -> Result<Vec<u64>> {
        self.commit_then(requests, checkpoint, |_| {})
    }

    /// [`Self::commit`], calling `durable` with the last seq of each request
    /// as soon as the events are written, fsync'd and the head rewritten,
    /// before the index (derived data, rebuilt from the segments if lost) is
    /// updated: waiters need not wait for the index. The events join the pending
    /// index block, which is written when due ([`index::Pending::due`]).
    fn commit_then(
        &mut self,
        requests: &[Vec<EventKind>],
        checkpoint: bool,
        durable: impl FnOnce(&[u64]),
    ) -> Result<Vec<u64>> {
        let mark = self.mark();
        let res = self.commit_inner(requests, checkpoint, durable);
        if res.is_err() && self.unwritten.is_none() {
            self.unwritten = Some(mark);
        }
        res
    }

    fn mark(&self) -> Durable {
        Durable {
            seg_no: self.seg_no,
            seg_size: self.seg_size,
            seg_lines: self.seg_lines,
            seq: self.seq,
            hash: self.hash.clone(),
            last_time: self.last_time,
            since_checkpoint: self.since_checkpoint,
            last_checkpoint: self.last_checkpoint.clone(),
        }
    }

    /// Makes the log writable again after a failed batch: what the batch
    /// left behind is cut off (segments it began removed, the segment it
    /// wrote to truncated to its last durable line, fsync'd), the chain goes
    /// back to its last durable event, and a `recovery` event records the
    /// cut and `why`. `Err` if the disk still refuses; the log stays as it
    /// was, and a later call tries again.
    fn resume(&mut self, why: &str) -> Result<()> {
        let Some(mark) = self.unwritten.clone() else {
            return Ok(());
        };
        let mut cut = 0u64;
        for n in mark.seg_no + 1..=self.seg_no {
            let path = self.dir.join(segment_name(n));
            match std::fs::metadata(&path) {
                Ok(m) => {
                    cut += m.len();
                    std::fs::remove_file(&path).map_err(|e| AuditError::io(&path, e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AuditError::io(&path, e)),
            }
        }
        let path = self.dir.join(segment_name(mark.seg_no));
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AuditError::io(&path, e))?;
        let len = file.metadata().map_err(|e| AuditError::io(&path, e))?.len();
        if len > mark.seg_size {
            cut += len - mark.seg_size;
            file.set_len(mark.seg_size)
                .map_err(|e| AuditError::io(&path, e))?;
        }
        file.sync_all().map_err(|e| AuditError::io(&path, e))?;
        crate::key::sync_dir(&self.dir)?;
        self.file = file;
        self.seg_no = mark.seg_no;
        self.seg_size = mark.seg_size;
        self.seg_lines = mark.seg_lines;
        self.seq = mark.seq;
        self.hash = mark.hash;
        self.last_time = mark.last_time;
        self.since_checkpoint = mark.since_checkpoint;
        self.last_checkpoint = mark.last_checkpoint;
        self.unwritten = None;
        let recovery = EventKind::Recovery {
            segment: segment_name(mark.seg_no),
            line: mark.seg_lines + 1,
            bytes_cut: cut,
            reason: format!("appends failed ({why}); the log is writable again and what the failed writes left was cut"),
        };
        // A failure here marks the same durable point again.
        self.commit(&[vec![recovery]], false)?;
        Ok(())
    }

    fn commit_inner(
        &mut self,
        requests: &[Vec<EventKind>],
        checkpoint: bool,
        durable: impl FnOnce(&[u64]),
    ) -> Result<Vec<u64>> {
        let mut events = Vec::new();
        let mut lasts = Vec::with_capacity(requests.len());
        for kinds in requests {
            for kind in kinds {
                events.push(self.make_event(kind.clone())?);
                self.since_checkpoint += 1;
                if self.checkpoint_every > 0 && self.since_checkpoint >= self.checkpoint_every {
                    events.push(self.make_checkpoint()?);
                }
            }
            lasts.push(self.seq);
        }
        if checkpoint && self.since_checkpoint > 0 {
            events.push(self.make_checkpoint()?);
        }
        if events.is_empty() {
            durable(&lasts);
            return Ok(lasts);
        }
        let locators = self.write(&events)?;
        for (ev, loc) in events.iter().zip(&locators) {
            if matches!(ev.kind, EventKind::Checkpoint { .. }) {
                self.last_checkpoint = Some(CheckpointHint {
                    seq: ev.seq,
                    hash: ev.hash.clone(),
                    segment: loc.segment,
                    offset: loc.offset,
                    line: loc.line,
                });
            }
        }
        self.write_head()?;
        durable(&lasts);
        if let Some(ix) = &self.index {
            let mut pending = index::lock_index(&self.index_lock);
            let mut res = Ok(());
            for (ev, loc) in events.iter().zip(locators) {
                if !pending.push(ev, loc) {
                    // Cannot happen (seqs are consecutive); keep the blocks valid anyway.
                    res = res.and_then(|()| ix.write_block(&mut pending));
                    pending.clear();
                    pending.push(ev, loc);
                }
            }
            if pending.due(self.index_block_events) {
                res = res.and_then(|()| ix.write_block(&mut pending));
                pending.clear();
            }
            if let Err(e) = res {
                pending.clear();
                drop(pending);
                self.index_failed(&e);
            }
        }
        Ok(lasts)
    }

    /// Writes the pending index items as one block (then moves the index's `upto`),
    /// and makes the index durable (the writer is closing).
    fn flush_index(&mut self) {
        let Some(ix) = &self.index else {
            return;
        };
        let mut pending = index::lock_index(&self.index_lock);
        let res = ix.write_block(&mut pending).and_then(|()| ix.sync());
        pending.clear();
        drop(pending);
        if let Err(e) = res {
            self.index_failed(&e);
        }
    }

    /// The index is abandoned for this session: queries read what it lacks from the
    /// segments, and the next open catches it up.
    fn index_failed(&mut self, e: &AuditError) {
        tracing::warn!(replica = %self.replica, error = %e, "audit index update failed; queries will scan the rest");
        self.index = None;
    }

    fn seg_path(&self) -> PathBuf {
        self.dir.join(segment_name(self.seg_no))
    }

    fn write(&mut self, events: &[Event]) -> Result<Vec<Locator>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut locs = Vec::with_capacity(events.len());
        for ev in events {
            let line = ev.to_line()?;
            let need = line.len() as u64 + 1;
            let used = self.seg_size + buf.len() as u64;
            if used > 0 && used + need > self.segment_max {
                self.flush_buf(&mut buf)?;
                self.seg_no += 1;
                self.file = create_segment(&self.dir, self.seg_no)?;
                self.seg_size = 0;
                self.seg_lines = 0;
            }
            self.seg_lines += 1;
            locs.push(Locator {
                segment: self.seg_no,
                offset: self.seg_size + buf.len() as u64,
                len: u32::try_from(line.len())
                    .map_err(|_| AuditError::Config("event larger than 4 GiB".into()))?,
                line: self.seg_lines,
            });
            buf.extend_from_slice(&line);
            buf.push(b'\n');
        }
        self.flush_buf(&mut buf)?;
        Ok(locs)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.seg_path();
        self.file
            .write_all(buf)
            .map_err(|e| AuditError::io(&path, e))?;
        self.file
            .sync_data()
            .map_err(|e| AuditError::io(&path, e))?;
        self.seg_size += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Writes the signed head after a batch. The file is replaced atomically
    /// (write, rename) when the writer starts and at each checkpoint, and in
    /// between rewritten in place with one positioned write, padded with
    /// spaces (which JSON allows) so that a shorter head leaves nothing of a
    /// longer one: creating and renaming a file per batch was the writer's
    /// largest cost after the fsync. Like the renamed file, the head is not
    /// fsync'd (the segments are); a reader retries a head it caught being
    /// written.
    fn write_head(&mut self) -> Result<()> {
        let msg = signed_message("head", &self.replica, self.seq, &self.hash, self.last_time);
        let head = Head {
            replica: self.replica.clone(),
            seq: self.seq,
            hash: self.hash.clone(),
            time_ms: self.last_time,
            checkpoint: self.last_checkpoint.clone(),
            signature: self.key.sign(&msg),
        };
        let mut bytes = serde_json::to_vec(&head)?;
        let checkpoint = self.last_checkpoint.as_ref().map(|c| c.seq);
        match &mut self.head {
            Some((file, len, at)) if *at == checkpoint => {
                if bytes.len() < *len {
                    bytes.resize(*len, b' ');
                }
                let path = self.dir.join(HEAD_FILE);
                std::os::unix::fs::FileExt::write_all_at(file, &bytes, 0)
                    .map_err(|e| AuditError::io(&path, e))?;
                *len = bytes.len();
            }
            _ => {
                write_atomic(&self.dir, HEAD_FILE, &bytes, false)?;
                let path = self.dir.join(HEAD_FILE);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| AuditError::io(&path, e))?;
                self.head = Some((file, bytes.len(), checkpoint));
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.flush_index();
    }
}

fn create_segment(dir: &Path, n: u64) -> Result<File> {
    let path = dir.join(segment_name(n));
    let f = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| AuditError::io(&path, e))?;
    crate::key::sync_dir(dir)?;
    Ok(f)
}

/// Verifies the chain from the last checkpoint (or seq 1), cuts a torn last line,
/// and checks the signed head against the result.
fn recover(
    dir: &Path,
    segments: &[(u64, PathBuf)],
    key: &PublicKey,
    head: Option<&Head>,
    replica: &str,
) -> Result<Recovered> {
    let mut chain = Chain::new(Some(key.clone()));
    chain.replica = Some(replica.to_string());
    let mut start = (segments.first().map_or(1, |s| s.0), 0u64, 1u64);
    let mut last_checkpoint = None;
    let mut head_hash: Option<String> = None;

    // Resume at the checkpoint named by the head, if it checks out on its own.
    if let Some(hint) = head.and_then(|h| h.checkpoint.as_ref()) {
        if let Some((_, path)) = segments.iter().find(|(n, _)| *n == hint.segment) {
            let mut found = None;
            scan_segment(path, hint.offset, hint.line, |raw| {
                if raw.complete {
                    found = Some(raw);
                }
                Ok(false)
            })?;
            if let Some(raw) = found {
                if let Ok(ev) = check_standalone(&raw.bytes, Some(key)) {
                    if ev.seq == hint.seq
                        && ev.hash == hint.hash
                        && ev.replica == replica
                        && matches!(ev.kind, EventKind::Checkpoint { .. })
                    {
                        chain.accept(&ev);
                        start = (
                            hint.segment,
                            raw.offset + raw.bytes.len() as u64 + 1,
                            raw.line + 1,
                        );
                        last_checkpoint = Some(hint.clone());
                    }
                }
            }
        }
        if last_checkpoint.is_none() {
            tracing::warn!(dir = %dir.display(), "audit head's checkpoint hint does not check out; verifying from seq 1");
        }
    }
    if let Some(h) = head {
        if h.seq == chain.seq {
            head_hash = Some(chain.hash.clone());
        }
    }

    let last_no = segments.last().map(|s| s.0);
    let mut last_segment = None;
    let mut torn: Option<(u64, u64, u64, u64)> = None; // segment, line, offset, bytes
    for (n, path) in segments {
        if *n < start.0 {
            continue;
        }
        let (offset, line) = if *n == start.0 {
            (start.1, start.2)
        } else {
            (0, 1)
        };
        let mut lines = line - 1;
        let mut err = None;
        scan_segment(path, offset, line, |raw| {
            if !raw.complete {
                if Some(*n) == last_no {
                    torn = Some((*n, raw.line, raw.offset, raw.bytes.len() as u64));
                } else {
                    err = Some(corrupt(
                        *n,
                        raw.line,
                        None,
                        "incomplete line in an older segment",
                    ));
                }
                return Ok(false);
            }
            match chain.check(&raw.bytes) {
                Ok(ev) => {
                    lines = raw.line;
                    if let EventKind::Checkpoint { .. } = ev.kind {
                        last_checkpoint = Some(CheckpointHint {
                            seq: ev.seq,
                            hash: ev.hash.clone(),
                            segment: *n,
                            offset: raw.offset,
                            line: raw.line,
                        });
                    }
                    if head.is_some_and(|h| h.seq == ev.seq) {
                        head_hash = Some(ev.hash);
                    }
                    Ok(true)
                }
                Err((seq, reason)) => {
                    err = Some(corrupt(*n, raw.line, seq, reason));
                    Ok(false)
                }
            }
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        last_segment = Some((*n, lines));
    }

    let mut torn_event = None;
    if let Some((n, line, offset, bytes)) = torn {
        let path = dir.join(segment_name(n));
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| AuditError::io(&path, e))?;
        f.set_len(offset).map_err(|e| AuditError::io(&path, e))?;
        f.sync_all().map_err(|e| AuditError::io(&path, e))?;
        tracing::warn!(segment = %segment_name(n), line, bytes, "cut a torn last audit line (crash mid-write)");
        torn_event = Some(EventKind::Recovery {
            segment: segment_name(n),
            line,
            bytes_cut: bytes,
            reason: "torn last line (crash mid-write) cut when the log was opened".into(),
        });
    }

    if let Some(h) = head {
        let (seg, lines) = last_segment.unwrap_or((1, 0));
        if h.seq > chain.seq {
            return Err(corrupt(
                seg,
                lines + 1,
                Some(chain.seq + 1),
                format!(
                    "log ends at seq {} but the signed head says {} (tail truncated)",
                    chain.seq, h.seq
                ),
            ));
        }
        if head_hash.as_deref().is_some_and(|hh| hh != h.hash) {
            return Err(corrupt(
                seg,
                lines + 1,
                Some(h.seq),
                format!("the signed head names seq {} with a different hash", h.seq),
            ));
        }
    }
    Ok(Recovered {
        chain,
        last_segment,
        last_checkpoint,
        torn: torn_event,
    })
}
