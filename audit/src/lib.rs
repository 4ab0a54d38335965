//! Gatehouse audit trail: an append-only, tamper-evident log of who read whose data,
//! when, through which policy, and what they saw — and proof that nothing was
//! edited, removed, reordered or truncated.
//!
//! Each proxy replica writes its own chain into its own directory with an
//! [`AuditLog`]; [`query`], [`verify`] and [`export_cloudevents`] read the chains of
//! every replica directory given to them.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/segment-000000000001.jsonl   events, one JSON object per line (the truth)
//! <dir>/segment-000000000002.jsonl   ... the chain continues across segments
//! <dir>/head.json                    signed head record, rewritten after each flush
//! <dir>/verifying_key.pub            base64 of the raw Ed25519 public key
//! <dir>/index.redb                   redb index (derived, rebuildable)
//! ```
//!
//! # Segment format
//!
//! A segment is UTF-8 JSON lines, each an [`Event`] serialised compactly with the
//! fields in this order: `replica`, `seq`, `time_ms`, `prev_hash`, `hash`, `kind`
//! (`kind` is internally tagged: `{"type":"delivery",...}`, maps sorted by key).
//! Lines are only ever appended. A new segment (`segment-<n+1>`, 12 digits) is
//! started when the current one would exceed
//! [`AuditConfig::segment_max_bytes`]. [`verify`] requires every line to be exactly
//! this canonical serialisation of the event it parses to, so that no byte can be
//! changed without detection (not even one that JSON would ignore).
//!
//! # Hash chain
//!
//! `seq` starts at 1 and has no gaps. `time_ms` never decreases within a chain.
//! For every event:
//!
//! ```text
//! hash = hex(SHA-256( prev_hash || canonical ))
//! ```
//!
//! where `prev_hash` is the previous event's `hash` as its 64 ASCII hex characters
//! (64 `0`s for seq 1, [`GENESIS_HASH`]) and `canonical` is the compact JSON of
//! `{"replica","seq","time_ms","prev_hash","kind"}` — the event without `hash`.
//!
//! # Checkpoints and the signed head
//!
//! Every [`AuditConfig::checkpoint_every`] events, and on [`AuditLog::close`], the
//! writer appends an [`EventKind::Checkpoint`] event that covers the event before it
//! with an Ed25519 signature over
//! `"gatehouse-audit checkpoint v1\n{replica}\n{upto_seq}\n{upto_hash}\n{time_ms}\n"`.
//! After every fsync'd batch it also rewrites `head.json` (temp file + rename):
//! `{replica, seq, hash, time_ms, checkpoint, signature}`, signed over
//! `"gatehouse-audit head v1\n{replica}\n{seq}\n{hash}\n{time_ms}\n"`; its
//! `checkpoint` field is an unsigned hint (segment, offset, line of the newest
//! checkpoint) that lets [`AuditLog::open`] verify from there rather than from seq 1.
//! The signing key is the PKCS#8 file [`AuditConfig::signing_key_path`] (mode 0600,
//! refused if group or other can read it, redacted in `Debug`, held by aws-lc which
//! cleanses it on drop); [`verify`] uses `verifying_key.pub`, and
//! [`verify_with_trusted_keys`] additionally pins it.
//!
//! # What verification detects
//!
//! - a byte changed anywhere in an event: that event (bad JSON, non-canonical line,
//!   or hash mismatch);
//! - an event deleted: the event after the gap (`seq` jumps);
//! - two events swapped: the first of them (`seq` out of order);
//! - an older segment truncated or deleted: the first event after the gap;
//! - the **tail** truncated (events removed from the end of the newest segment, or
//!   whole newest segments deleted): detected whenever the signed head names a seq
//!   the segments no longer hold — "log ends at seq X but the signed head says Y" —
//!   or when `head.json` is missing while events exist. Because the head is
//!   rewritten after every flush, any truncation of acknowledged events is detected
//!   as long as `head.json` itself is intact.
//!
//! [`AuditLog::open`] checks the chain only from the newest checkpoint named by the
//! head (from seq 1 without one), plus the head itself, so that opening stays fast;
//! damage before that checkpoint is found by [`verify`], which recomputes everything.
//!
//! What cannot be detected from the directory alone: a tail truncation combined with
//! replacing `head.json` by an **older** genuine head (a rollback to an earlier,
//! consistent, signed state), or the truncation of events after the newest signed
//! statement (the last head write). Signed in-chain checkpoints do not help at the
//! tail: cutting the chain before a checkpoint removes the checkpoint too. Detecting
//! rollback needs a signed seq kept elsewhere (e.g. ship `head.json` or exported
//! checkpoints off the host). Likewise, whoever holds the signing key can rewrite
//! everything; keep the key outside the audit directory.
//!
//! # Durability
//!
//! A background task receives appends over a bounded channel, waits up to
//! [`AuditConfig::flush_interval`] for more (group commit; it stops waiting once as
//! many appends as in the previous batch are in, and appends that queue up during an
//! fsync form the next batch), assigns seq / time / hashes in arrival order, writes
//! the batch, `fsync`s the segment (and the directory after creating a segment),
//! rewrites the head, and then completes each waiting [`AuditLog::append`] (the
//! index is updated after that, see below). `head.json` is replaced by rename
//! without its own fsync; a head lost in a power failure is rewritten at the next
//! open. After a crash, [`AuditLog::open`] cuts a torn (newline-less) last line of
//! the newest segment — never an acknowledged event — and records an
//! [`EventKind::Recovery`] event.
//!
//! # Fail closed
//!
//! When a write or fsync fails (I/O error, disk full), the failing appends and
//! **every later append** return `Err`; callers must refuse the data access they
//! were about to record. At most once a second an append tries the disk again:
//! when it takes writes, whatever the failed batch left in the segments is cut
//! (torn lines, segments it began), the chain continues from its last durable
//! event, an [`EventKind::Recovery`] event records the cut and the error, and
//! appends resume; events whose append returned `Err` are then not in the chain.
//! A process that dies before resuming may leave complete lines of a failed batch,
//! which the next open keeps (it cuts only a torn last line): an `Err` means "not
//! known durable".
//!
//! # Index
//!
//! A redb database of **postings blocks** (format 3, version kept in the index;
//! formats 1 and 2 were sled databases, removed when found): events are indexed in
//! blocks of consecutive seqs, with one entry per (table, value) per block, each
//! block written in one transaction — tables `principal`, `topic`, `subject` (hash), `decision` keyed
//! `value\0<first time_ms BE><first seq BE>` holding that value's sorted
//! `(time_ms, seq)` pairs in the block, `time` keyed `<first time_ms><first seq>`
//! holding every event's pair, and `events` keyed `<first seq>` holding the locators
//! (segment, offset, len, line) of the block's events (layout and encodings in the
//! `index` module). The writer keeps the index items of committed events in memory
//! and writes a block once [`AuditConfig::index_block_events`] are pending, at the
//! first commit a second after the oldest of them, and on close; `meta/upto` names
//! the last indexed event. The index is derived data: a query in the writer's process
//! takes the events after `upto` from the writer's pending items and reads the rest
//! from the segments, a query on a log whose writer is not open catches the index up,
//! and an index of an older format or that disagrees with the segments is rebuilt
//! from them.

mod error;
mod event;
mod index;
mod key;
mod log;
mod query;
mod segment;
pub mod time;

pub use error::AuditError;
pub use event::{hash_subject, Decision, Event, EventKind, GENESIS_HASH, SUBJECT_SECRET_LABEL};
pub use key::{verify_document, SigningKey, HEAD_FILE, VERIFYING_KEY_FILE};
pub use log::{AuditConfig, AuditLog, AuditObserver};
pub use query::{
    export_cloudevents, query, scan, verify, verify_with_trusted_keys, Problem, Query,
    ReplicaReport, VerifyReport,
};
pub use segment::segment_file_name;

#[cfg(test)]
mod unit_tests;
