//! The metadata log: [`MetaCommand`]s in numbered objects `meta/<seq>`,
//! appended by any broker with create-only writes and followed by every
//! broker (see `docs/design/broker-cluster.md`, section 4).
//!
//! Appending is optimistic: a writer reads the log to its end, checks its
//! commands against the state there, and creates the next entry. If
//! another writer created that entry first, it reads it, checks again
//! against the new state and tries the next number. No entry is ever
//! written twice or skipped, so every broker that reads the log to the same
//! point holds the same [`Meta`]. The store's create-only write is the only
//! coordination (checked against the test S3 server and local directories
//! by `broker_storage::create_only_writes_have_exactly_one_winner`).
//!
//! Every broker holds one, read to its end at start and followed every
//! 500 ms; request handlers read its latest state without waiting
//! ([`MetaLog::current`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::StorageError;
use crate::meta::{Meta, MetaCommand, Refused};
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"GHMETA1\n";

/// Rounds of "another writer was first" before a writer backs off.
const EAGER_ROUNDS: u32 = 20;

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    /// The writer's id: no two writers' entries are the same bytes.
    writer: String,
    commands: Vec<MetaCommand>,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// A command does not hold against the log's current state.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// This broker's view of the metadata log, and its appends to it.
#[derive(Debug)]
pub struct MetaLog {
    storage: Storage,
    /// The state at the last entry read; held while appending, so that
    /// this broker's appends go one at a time.
    meta: Mutex<Meta>,
    /// The same, for readers that cannot wait (request handlers).
    view: tokio::sync::watch::Sender<Arc<Meta>>,
}

impl MetaLog {
    /// The log of `storage`, not read yet.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            meta: Mutex::new(Meta::default()),
            view: tokio::sync::watch::Sender::new(Arc::new(Meta::default())),
        }
    }

    /// The state as last read, without waiting for an append in progress.
    pub fn current(&self) -> Arc<Meta> {
        self.view.borrow().clone()
    }

    fn publish(&self, meta: &Meta) {
        self.view.send_if_modified(|v| {
            if v.last_seq == meta.last_seq {
                return false;
            }
            *v = Arc::new(meta.clone());
            true
        });
    }

    /// The state as last read.
    pub async fn meta(&self) -> Meta {
        self.meta.lock().await.clone()
    }

    /// Reads the entries written since the last read; the seq read to.
    pub async fn catch_up(&self) -> Result<u64, StorageError> {
        let mut meta = self.meta.lock().await;
        self.read_to_end(&mut meta).await?;
        self.publish(&meta);
        Ok(meta.last_seq)
    }

    async fn read_to_end(&self, meta: &mut Meta) -> Result<(), StorageError> {
        while let Some(bytes) = self.storage.read_meta(meta.last_seq + 1).await? {
            let seq = meta.last_seq + 1;
            let entry = decode(seq, &bytes)?;
            meta.apply(seq, &entry.commands);
        }
        Ok(())
    }

    /// Appends the commands `make` returns for the state at the log's end
    /// (called again whenever another writer got there first); the seq of
    /// the entry and the state after it. Nothing is written when `make`
    /// refuses, or returns no command.
    pub async fn append_with(
        &self,
        mut make: impl FnMut(&Meta) -> Result<Vec<MetaCommand>, Refused>,
    ) -> Result<(u64, Meta), AppendError> {
        let mut meta = self.meta.lock().await;
        let mut round = 0u32;
        loop {
            self.read_to_end(&mut meta).await?;
            self.publish(&meta);
            let commands = make(&meta)?;
            if commands.is_empty() {
                return Ok((meta.last_seq, meta.clone()));
            }
            // Checked in order, each against the state the earlier ones
            // leave, as applying will.
            let mut after = meta.clone();
            let seq = meta.last_seq + 1;
            for r in after.apply(seq, &commands) {
                r?;
            }
            let entry = Entry {
                seq,
                writer: self.storage.writer().to_string(),
                commands,
            };
            if self.storage.create_meta(seq, encode(&entry)?).await? {
                *meta = after;
                self.publish(&meta);
                return Ok((seq, meta.clone()));
            }
            round += 1;
            if round > EAGER_ROUNDS {
                // Contended: step back a random 10-200 ms, so writers in
                // lockstep fall out of it.
                let random = (uuid::Uuid::new_v4().as_u128() % 191) as u64;
                tokio::time::sleep(Duration::from_millis(10 + random)).await;
            }
        }
    }

    /// Appends `commands` as they are.
    pub async fn append(&self, commands: Vec<MetaCommand>) -> Result<(u64, Meta), AppendError> {
        self.append_with(|_| Ok(commands.clone())).await
    }
}

fn encode(entry: &Entry) -> Result<Bytes, StorageError> {
    let json = serde_json::to_vec(entry)
        .map_err(|e| StorageError::Corrupt(format!("cannot encode a metadata entry: {e}")))?;
    let mut out = BytesMut::with_capacity(MAGIC.len() + json.len());
    out.put_slice(MAGIC);
    out.put_slice(&json);
    Ok(out.freeze())
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let corrupt = |why: String| StorageError::Corrupt(format!("metadata entry {seq}: {why}"));
    let json = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("bad magic".into()))?;
    let entry: Entry = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    if entry.seq != seq {
        return Err(corrupt(format!("it says it is entry {}", entry.seq)));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn open(dir: &std::path::Path) -> Result<MetaLog, StorageError> {
        Ok(MetaLog::new(Storage::open(
            &dir.to_string_lossy(),
            false,
            0,
            &[],
        )?))
    }

    /// Two writers (two opened stores on one directory, as two brokers
    /// would be) race 200 appends each: the log holds 401 entries, none
    /// twice, none lost; every block of producer ids is distinct and they
    /// follow each other; both end with the same state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_writers_append_every_entry_exactly_once() -> Result<(), AppendError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let a = Arc::new(open(dir.path())?);
        let b = Arc::new(open(dir.path())?);
        a.append(vec![MetaCommand::Init {
            slots: 2,
            leaders: vec![0, 1],
        }])
        .await?;
        let run = |log: Arc<MetaLog>, node: i32| async move {
            let mut mine = Vec::new();
            for _ in 0..200 {
                let (seq, _) = log
                    .append_with(|m| {
                        Ok(vec![MetaCommand::AllocateProducerIds {
                            node,
                            first: m.last_producer_id + 1,
                            count: 10,
                        }])
                    })
                    .await?;
                mine.push(seq);
            }
            Ok::<_, AppendError>(mine)
        };
        let (ra, rb) = tokio::join!(
            tokio::spawn(run(a.clone(), 0)),
            tokio::spawn(run(b.clone(), 1))
        );
        let (sa, sb) = (
            ra.map_err(|e| StorageError::Corrupt(e.to_string()))??,
            rb.map_err(|e| StorageError::Corrupt(e.to_string()))??,
        );
        let mut all: Vec<u64> = sa.iter().chain(&sb).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (2..=401).collect::<Vec<u64>>(), "every entry once");
        assert_eq!(a.catch_up().await?, 401);
        assert_eq!(b.catch_up().await?, 401);
        let (ma, mb) = (a.meta().await, b.meta().await);
        assert_eq!(ma, mb);
        assert_eq!(ma.last_producer_id, 4000);
        // Read from scratch, the log gives the same state, and each entry
        // names the writer that won it.
        let fresh = open(dir.path())?;
        fresh.catch_up().await?;
        assert_eq!(fresh.meta().await, ma);
        let mut nodes = std::collections::BTreeMap::new();
        for seq in 2..=401 {
            let bytes = fresh
                .storage
                .read_meta(seq)
                .await?
                .ok_or_else(|| StorageError::Corrupt(format!("entry {seq} missing")))?;
            for c in decode(seq, &bytes)?.commands {
                if let MetaCommand::AllocateProducerIds { node, .. } = c {
                    *nodes.entry(node).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(
            nodes,
            std::collections::BTreeMap::from([(0, 200), (1, 200)])
        );
        Ok(())
    }

    /// A command refused against the current state writes nothing.
    #[tokio::test]
    async fn a_refused_append_writes_nothing() -> Result<(), AppendError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let log = open(dir.path())?;
        let early = log
            .append(vec![MetaCommand::DeleteTopic {
                id: uuid::Uuid::nil(),
            }])
            .await;
        assert!(matches!(early, Err(AppendError::Refused(Refused::Init(_)))));
        assert_eq!(log.catch_up().await?, 0);
        log.append(vec![MetaCommand::Init {
            slots: 1,
            leaders: vec![0],
        }])
        .await?;
        let twice = log
            .append(vec![MetaCommand::Init {
                slots: 1,
                leaders: vec![0],
            }])
            .await;
        assert!(matches!(twice, Err(AppendError::Refused(Refused::Init(_)))));
        assert!(log.storage.read_meta(2).await?.is_none());
        Ok(())
    }
}
