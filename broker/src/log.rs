//! The commit log: every change to the broker's durable state is a
//! [`Command`] in a numbered commit object.
//!
//! A commit object is
//!
//! ```text
//! b"GHWAL01\n" | u32 header length | header (JSON) | data
//! ```
//!
//! The JSON header lists the commands; `Batch` commands point into the data
//! section, which holds record batches exactly as producers sent them apart
//! from the base offset the broker assigned. Replaying every commit object
//! in order after the newest snapshot rebuilds the whole state, so a
//! restarted broker (or another broker taking over the store) serves
//! everything that was acknowledged.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StorageError;
use crate::state::BatchLoc;

const MAGIC: &[u8; 8] = b"GHWAL01\n";

/// A committed offset of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch the consumer saw, or -1.
    #[serde(default = "minus_one")]
    pub leader_epoch: i32,
    /// Client-supplied metadata.
    #[serde(default)]
    pub metadata: Option<String>,
}

fn minus_one() -> i32 {
    -1
}

/// One durable state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A record batch appended to a partition.
    Batch {
        /// Topic id.
        topic: Uuid,
        /// Partition index.
        partition: i32,
        /// Assigned base offset.
        base: i64,
        /// Offset delta of the last record.
        last_delta: i32,
        /// Largest record timestamp.
        max_ts: i64,
        /// Position of the batch in the commit object.
        pos: u64,
        /// Length of the batch in bytes.
        len: u32,
        /// Idempotent producer id, or -1.
        producer_id: i64,
        /// Producer epoch.
        producer_epoch: i16,
        /// Sequence of the first record.
        first_seq: i32,
    },
    /// A topic was created.
    CreateTopic {
        /// Name.
        name: String,
        /// Id.
        id: Uuid,
        /// Partition count.
        partitions: i32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic was deleted.
    DeleteTopic {
        /// Id.
        id: Uuid,
    },
    /// A topic's partition count grew.
    AddPartitions {
        /// Id.
        id: Uuid,
        /// New total.
        count: i32,
    },
    /// A topic's config overrides were replaced.
    SetConfigs {
        /// Id.
        id: Uuid,
        /// The full new set of overrides.
        configs: BTreeMap<String, String>,
    },
    /// A partition's log start moved forward (retention, DeleteRecords).
    SetLogStart {
        /// Topic id.
        id: Uuid,
        /// Partition.
        partition: i32,
        /// New log start offset.
        offset: i64,
    },
    /// Offsets committed by a consumer group.
    CommitOffsets {
        /// Group id.
        group: String,
        /// The offsets.
        offsets: Vec<CommittedOffset>,
    },
    /// A group's offsets were deleted.
    DeleteGroup {
        /// Group id.
        group: String,
    },
    /// A producer id was handed out.
    AllocateProducerId {
        /// The id.
        id: i64,
    },
    /// A broker started on the store. Its first write: once it is
    /// durable, no write still in flight from a broker that died before
    /// (an S3 PUT can land after its client is gone) can land any more, as
    /// such a write could only be for this sequence number.
    Started {
        /// The broker's node id.
        node_id: i32,
    },
    /// Another broker closed this log when it took over partitions or
    /// coordinator slots this broker led (the plug): every commit before
    /// it is part of what the taker rebuilt, and no write of the broker
    /// that owns the log can land at or after it (it writes its sequence
    /// numbers in order, create-only).
    Fenced {
        /// The broker that took over.
        by: i32,
    },
    /// Partitions and group offsets this broker took over, as rebuilt from
    /// the previous leader's log up to its plug; they replace what this
    /// log held of them.
    Adopt {
        /// The partitions, with their whole state (batches, offsets,
        /// idempotent producers).
        partitions: Vec<AdoptedPartition>,
        /// Committed offsets of the groups whose coordinator moved here.
        groups: BTreeMap<String, Vec<CommittedOffset>>,
    },
    /// Compaction output `id` is about to be written (to
    /// `compacted/<id>`). Until a [`Command::Compact`] settles it, the
    /// object is abandoned work that clean-up may delete: a broker killed
    /// between writing the object and committing the swap leaves nothing
    /// behind that the log does not know about.
    ReserveObject {
        /// The reserved id (not the object id; see
        /// [`crate::storage::compacted_object`]).
        id: u64,
    },
    /// Runs of batches replaced by their compacted versions.
    Compact {
        /// Reserved outputs this compaction settles (written or not, they
        /// are no longer abandoned work).
        objects: Vec<u64>,
        /// The replacements, each applied only if its run still matches.
        runs: Vec<CompactedRun>,
    },
}

/// A partition taken over from another broker, with its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdoptedPartition {
    /// Topic id.
    pub topic: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Its state in the previous leader's log (batches point into that
    /// broker's objects). Kept as JSON text inside the command: its
    /// producer map has integer keys, which a tagged command cannot carry
    /// as a JSON object.
    #[serde(with = "as_json_text")]
    pub state: crate::state::Partition,
}

mod as_json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq for AdoptedPartition {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic
            && self.partition == other.partition
            && self.state.next_offset == other.state.next_offset
            && self.state.log_start == other.state.log_start
            && self.state.batches == other.state.batches
    }
}

impl Eq for AdoptedPartition {}

/// A partition's leading run of batches and the compacted batches that
/// replace it. Offsets are kept: each replacement batch has the base and
/// last offset of the batch it came from; batches left empty are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactedRun {
    /// Topic id.
    pub topic: Uuid,
    /// Partition.
    pub partition: i32,
    /// Base offset of the first replaced batch.
    pub from: i64,
    /// Last offset of the last replaced batch.
    pub to: i64,
    /// How many batches are replaced.
    pub count: u32,
    /// The replacements, in offset order, all within `from..=to`.
    pub batches: Vec<BatchLoc>,
    /// Offsets below this hold at most one record per key.
    pub clean_end: i64,
    /// When the earliest tombstone kept in the run may be removed (ms).
    pub tombstones_due: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    seq: u64,
    /// Who wrote the object: a random id per opened store. It makes every
    /// writer's object differ from every other's, so a writer that reads
    /// back an object it may have created can tell whether it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    writer: String,
    commands: Vec<Command>,
}

/// Builds one commit object.
#[derive(Debug, Default)]
pub struct CommitBuilder {
    commands: Vec<Command>,
    data: BytesMut,
}

impl CommitBuilder {
    /// Appends a batch to the data section; returns its position relative
    /// to the start of the data section.
    pub fn push_data(&mut self, batch: &[u8]) -> u64 {
        let pos = self.data.len() as u64;
        self.data.extend_from_slice(batch);
        pos
    }

    /// Adds a command.
    pub fn push(&mut self, cmd: Command) {
        self.commands.push(cmd);
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Bytes of record data so far.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Serialises the object, signed off by `writer` (see
    /// [`crate::storage::Storage::writer`]). `Batch` positions become
    /// absolute.
    pub fn finish(mut self, seq: u64, writer: &str) -> Result<(Bytes, Vec<Command>), StorageError> {
        // Positions are only known once the header's length is; the header's
        // length depends on the positions' digits. Absolute positions are
        // therefore stored as relative + `data_start`, fixed up on read.
        let header = Header {
            seq,
            writer: writer.to_string(),
            commands: std::mem::take(&mut self.commands),
        };
        let json = serde_json::to_vec(&header)
            .map_err(|e| StorageError::Corrupt(format!("cannot encode commit header: {e}")))?;
        let mut out = BytesMut::with_capacity(12 + json.len() + self.data.len());
        out.put_slice(MAGIC);
        out.put_u32(json.len() as u32);
        out.put_slice(&json);
        let data_start = out.len() as u64;
        out.put_slice(&self.data);
        let commands = absolute(header.commands, data_start);
        Ok((out.freeze(), commands))
    }
}

fn absolute(mut commands: Vec<Command>, data_start: u64) -> Vec<Command> {
    for c in &mut commands {
        if let Command::Batch { pos, .. } = c {
            *pos += data_start;
        }
    }
    commands
}

/// Parses a commit object; `Batch` positions are absolute in the result.
pub fn parse(seq: u64, object: &[u8]) -> Result<Vec<Command>, StorageError> {
    let corrupt = |why: &str| StorageError::Corrupt(format!("commit object {seq}: {why}"));
    if object.len() < 12 || &object[..8] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let len = u32::from_be_bytes([object[8], object[9], object[10], object[11]]) as usize;
    let json = object
        .get(12..12 + len)
        .ok_or_else(|| corrupt("header runs past the end"))?;
    let header: Header = serde_json::from_slice(json).map_err(|e| corrupt(&e.to_string()))?;
    if header.seq != seq {
        return Err(corrupt(&format!("header says sequence {}", header.seq)));
    }
    let data_start = 12 + len as u64;
    let commands = absolute(header.commands, data_start);
    for c in &commands {
        if let Command::Batch { pos, len, .. } = c {
            if pos + *len as u64 > object.len() as u64 {
                return Err(corrupt("batch runs past the end"));
            }
        }
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_objects_round_trip() {
        let mut b = CommitBuilder::default();
        let id = Uuid::new_v4();
        b.push(Command::CreateTopic {
            name: "t".into(),
            id,
            partitions: 2,
            configs: BTreeMap::new(),
        });
        let pos = b.push_data(b"batch-bytes");
        b.push(Command::Batch {
            topic: id,
            partition: 1,
            base: 0,
            last_delta: 0,
            max_ts: 5,
            pos,
            len: 11,
            producer_id: -1,
            producer_epoch: -1,
            first_seq: -1,
        });
        let (obj, cmds) = b.finish(9, "w").expect("finish");
        let parsed = parse(9, &obj).expect("parse");
        assert_eq!(parsed, cmds);
        let Command::Batch { pos, len, .. } = &parsed[1] else {
            panic!("second command is a batch");
        };
        assert_eq!(
            &obj[*pos as usize..*pos as usize + *len as usize],
            b"batch-bytes"
        );
        assert!(parse(10, &obj).is_err(), "sequence number is checked");
        assert!(
            parse(9, &obj[..obj.len() - 3]).is_err(),
            "truncation is detected"
        );
    }

    /// An adopted partition's idempotent producers (a map with integer
    /// keys) survive the commit object, and with them the dedup of a
    /// retried batch after a takeover.
    #[test]
    fn adopted_partitions_round_trip() {
        let mut state = crate::state::Partition {
            next_offset: 7,
            ..Default::default()
        };
        state.producers.insert(
            1000,
            crate::state::ProducerState {
                epoch: 0,
                recent: [crate::state::ProducerBatch {
                    first_seq: 0,
                    last_seq: 6,
                    base: 0,
                }]
                .into(),
            },
        );
        let mut b = CommitBuilder::default();
        b.push(Command::Adopt {
            partitions: vec![AdoptedPartition {
                topic: Uuid::new_v4(),
                partition: 3,
                state,
            }],
            groups: BTreeMap::new(),
        });
        let (obj, _) = b.finish(4, "w").expect("finish");
        let parsed = parse(4, &obj).expect("parse");
        let Some(Command::Adopt { partitions, .. }) = parsed.first() else {
            panic!("an adopt command");
        };
        let p = &partitions[0].state;
        assert_eq!(p.next_offset, 7);
        assert_eq!(p.producers[&1000].next_seq(), Some(7));
    }
}
