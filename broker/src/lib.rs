//! # gatehouse-broker
//!
//! The Kafka-compatible broker that Gatehouse ships. Brokers are stateless
//! compute in front of an object store; every durable byte (record batches,
//! topic metadata, committed offsets, producer ids) lives in the store, so a
//! restarted broker serves everything it acknowledged.
//!
//! How a produce becomes durable:
//!
//! ```text
//! client ─Produce─▶ server (frame, decode, CRC check) ─Op─▶ committer
//!                                                             │ gathers ops for
//!                                                             │ `commit_interval`
//!                       object store ◀─ put wal/<seq> (create-only) ┘
//!                                                             │ then applies to
//! client ◀─ response (base offset) ◀───── state (offsets) ◀───┘ in-memory state
//! ```
//!
//! Modules:
//! - [`storage`]: the object store (local directory, `file://`, `s3://`)
//!   and the cache of recently written objects.
//! - [`log`]: the commit object format and the [`log::Command`]s it holds.
//! - [`state`]: topics, partitions and the location of every batch,
//!   rebuilt by replaying commands after the newest snapshot.
//! - [`committer`]: the single writer: group commit, offset assignment,
//!   idempotent producer checks. Everything else reaches it through its
//!   handle's methods (produce, commit offsets, admin ops).
//! - [`meta`] and [`meta_log`]: the cluster's shared control state
//!   (topics, leaders and epochs, producer id blocks) and the log of it
//!   that any broker appends to with create-only writes
//!   (`docs/design/broker-cluster.md`): topic changes, producer-id blocks,
//!   and who leads each partition and coordinator slot at which epoch.
//! - [`catalog`]: validating topic changes against the metadata log and
//!   mirroring its catalog into the broker's own log.
//! - [`members`]: leases in the store, and who is live; rendezvous hashing
//!   of keys over the live brokers.
//! - [`groups`]: the consumer group coordinator (membership in memory,
//!   offsets durable through the log).
//! - [`batch`]: record batch header parsing and validation; batches are
//!   never decompressed on the produce path. [`batch::compact`] rewrites a
//!   stored batch for compaction.
//! - `server` and `handlers`: connections, pipelining, one handler per API.
//! - `broker`: start-up, recovery, housekeeping, compaction passes (its
//!   `compaction` submodule), taking over and handing over partitions and
//!   coordinator slots (its `failover` submodule), the metrics (`metrics`;
//!   the store and the committer count through instruments they are
//!   handed) and the HTTP listener for `/metrics`, `/healthz` and
//!   `/readyz` (`admin`), and the state shared by the server and handlers.
//!
//! The lower modules (those above, plus `topic_config` and `error`) get
//! what they use passed in and never import `broker`, `server` or
//! `handlers`; the end-to-end suite's `layering` tests check it.
//!
//! The broker imports nothing of Gatehouse's governance crates: it is a
//! plain Kafka-compatible cluster, and the proxy treats it as any other.

pub mod batch;
mod broker;
pub mod catalog;
pub mod committer;
pub mod error;
pub mod groups;
mod handlers;
pub mod log;
pub mod members;
pub mod meta;
pub mod meta_log;
mod server;
pub mod state;
pub mod storage;
pub mod topic_config;

pub use broker::{Broker, BrokerConfig, CompactionStats};
pub use error::{BrokerError, KafkaCode, StorageError};
pub use handlers::{supported_range, supports};
