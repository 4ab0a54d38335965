//! Event types, canonical encoding and the hash chain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `prev_hash` of the first event of every chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Outcome of an authorisation decision. Serialised lowercase (`"allow"`, `"deny"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Access granted.
    Allow,
    /// Access refused.
    Deny,
}

impl Decision {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// What happened. Serialised internally tagged with snake-case names, e.g.
/// `{"type":"delivery","principal":"alice",...}`.
///
/// Subject fields (`subjects`, `subject`) must hold **subject hashes** from
/// [`crate::AuditLog::subject_hash`] / [`crate::hash_subject`], never clear ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A client authenticated.
    AuthOk {
        /// Authenticated principal.
        principal: String,
        /// SASL mechanism or `mtls`.
        mechanism: String,
        /// Peer address.
        peer: String,
    },
    /// An authentication attempt was refused.
    AuthRefused {
        /// Principal claimed, if any.
        principal: Option<String>,
        /// Mechanism attempted.
        mechanism: String,
        /// Peer address.
        peer: String,
        /// Why it was refused.
        reason: String,
    },
    /// An authorisation decision.
    Decision {
        /// Principal asking.
        principal: String,
        /// Kafka API (e.g. `Fetch`).
        api: String,
        /// Resource type (e.g. `topic`, `group`).
        resource_type: String,
        /// Resource name.
        resource: String,
        /// The outcome.
        decision: Decision,
        /// Policies that decided.
        policies: Vec<String>,
        /// Why, where the policies alone do not tell (a record the proxy
        /// refused, a region header a policy refused). Absent in events
        /// that have none, so older events hash as they did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Records were delivered to a consumer.
    Delivery {
        /// Consumer principal.
        principal: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset delivered.
        first_offset: i64,
        /// Last offset delivered.
        last_offset: i64,
        /// Number of records.
        records: u64,
        /// Field effect -> field paths: what the consumer actually got of
        /// each protected field in these records (`clear`, `masked`,
        /// `pseudonym`, `removed` by policy; `no_key` and `unverified` when
        /// a ciphertext could not be read and the field was removed).
        fields: BTreeMap<String, Vec<String>>,
        /// Subject hashes whose data was in the delivered records.
        subjects: Vec<String>,
        /// Policies applied.
        policies: Vec<String>,
    },
    /// Records were produced.
    Produce {
        /// Producer principal.
        principal: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Base offset assigned by the broker.
        base_offset: i64,
        /// Number of records.
        records: u64,
        /// Subject hashes in the produced records.
        subjects: Vec<String>,
    },
    /// The policy set was (re)loaded.
    PolicyReload {
        /// Hash of the policy set.
        policy_hash: String,
        /// What triggered the reload.
        trigger: String,
        /// Whether the new set was accepted.
        accepted: bool,
        /// Error or note.
        message: Option<String>,
    },
    /// A key-management operation.
    KeyOperation {
        /// Operation name.
        operation: String,
        /// Key id, if any.
        key_id: Option<String>,
        /// Subject hash, if the key belongs to a subject.
        subject: Option<String>,
        /// Who did it.
        actor: String,
        /// What else there is to say (e.g. why a record was rejected, how
        /// many were). Absent from the serialised event when `None`, so the
        /// canonical bytes (and hashes) of events written before this field
        /// existed are unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A step of a data-subject erasure.
    Erasure {
        /// Subject hash.
        subject: String,
        /// Step name.
        step: String,
        /// Detail.
        detail: String,
    },
    /// Written by the log itself: a signed checkpoint over the event just before it.
    /// The Ed25519 signature covers (replica, `upto_seq`, `upto_hash`, this event's `time_ms`).
    Checkpoint {
        /// Sequence number of the event covered (always this event's `seq - 1`).
        upto_seq: u64,
        /// Hash of that event (always this event's `prev_hash`).
        upto_hash: String,
        /// Base64 Ed25519 signature.
        signature: String,
    },
    /// Written by the log itself when [`crate::AuditLog::open`] cut a torn last line.
    Recovery {
        /// Segment whose tail was cut.
        segment: String,
        /// 1-based line number of the torn line.
        line: u64,
        /// Bytes removed.
        bytes_cut: u64,
        /// Explanation.
        reason: String,
    },
}

impl EventKind {
    /// Kind name as serialised in `type` (e.g. `delivery`).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::AuthOk { .. } => "auth_ok",
            EventKind::AuthRefused { .. } => "auth_refused",
            EventKind::Decision { .. } => "decision",
            EventKind::Delivery { .. } => "delivery",
            EventKind::Produce { .. } => "produce",
            EventKind::PolicyReload { .. } => "policy_reload",
            EventKind::KeyOperation { .. } => "key_operation",
            EventKind::Erasure { .. } => "erasure",
            EventKind::Checkpoint { .. } => "checkpoint",
            EventKind::Recovery { .. } => "recovery",
        }
    }

    /// The principal this event is about, as matched by [`crate::Query::principal`]:
    /// `auth_ok`, `auth_refused` (when claimed), `decision`, `delivery`, `produce`.
    pub fn principal(&self) -> Option<&str> {
        match self {
            EventKind::AuthOk { principal, .. }
            | EventKind::Decision { principal, .. }
            | EventKind::Delivery { principal, .. }
            | EventKind::Produce { principal, .. } => Some(principal),
            EventKind::AuthRefused { principal, .. } => principal.as_deref(),
            _ => None,
        }
    }

    /// The topic this event is about, as matched by [`crate::Query::topic`]:
    /// `delivery`, `produce`, and `decision` whose `resource_type` is `topic`.
    pub fn topic(&self) -> Option<&str> {
        match self {
            EventKind::Delivery { topic, .. } | EventKind::Produce { topic, .. } => Some(topic),
            EventKind::Decision {
                resource_type,
                resource,
                ..
            } if resource_type == "topic" => Some(resource),
            _ => None,
        }
    }

    /// Subject hashes named by this event, as matched by [`crate::Query::subject_hash`]:
    /// `delivery` and `produce` subjects, `key_operation` and `erasure` subject.
    pub fn subjects(&self) -> Vec<&str> {
        match self {
            EventKind::Delivery { subjects, .. } | EventKind::Produce { subjects, .. } => {
                subjects.iter().map(String::as_str).collect()
            }
            EventKind::KeyOperation {
                subject: Some(s), ..
            }
            | EventKind::Erasure { subject: s, .. } => vec![s.as_str()],
            _ => Vec::new(),
        }
    }

    /// The decision this event stands for, as matched by [`crate::Query::decision`]:
    /// a `decision` event's own, `Allow` for `delivery` and `produce`, none otherwise.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            EventKind::Decision { decision, .. } => Some(*decision),
            EventKind::Delivery { .. } | EventKind::Produce { .. } => Some(Decision::Allow),
            _ => None,
        }
    }
}

/// One line of a segment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Replica that wrote it.
    pub replica: String,
    /// Position in that replica's chain, from 1, without gaps.
    pub seq: u64,
    /// Milliseconds since the Unix epoch; never decreases within a chain.
    pub time_ms: u64,
    /// `hash` of the previous event ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// `hex(SHA-256(prev_hash || canonical bytes without hash))`, see the crate docs.
    pub hash: String,
    /// What happened.
    pub kind: EventKind,
}

/// The hashed part of an event: everything but `hash`, in this field order.
#[derive(Serialize)]
struct Unhashed<'a> {
    replica: &'a str,
    seq: u64,
    time_ms: u64,
    prev_hash: &'a str,
    kind: &'a EventKind,
}

impl Event {
    /// Canonical bytes that the hash covers: compact JSON of
    /// `{"replica","seq","time_ms","prev_hash","kind"}` in that order.
    pub fn canonical_unhashed(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Unhashed {
            replica: &self.replica,
            seq: self.seq,
            time_ms: self.time_ms,
            prev_hash: &self.prev_hash,
            kind: &self.kind,
        })
    }

    /// Recomputes the hash from the other fields.
    pub fn compute_hash(&self) -> Result<String, serde_json::Error> {
        let body = self.canonical_unhashed()?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(&body);
        Ok(hex(ctx.finish().as_ref()))
    }

    /// The segment line for this event (compact JSON, no trailing newline).
    pub fn to_line(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The label the subject-hash secret is derived from with the key
/// provider's MAC (`provider.mac(SUBJECT_SECRET_LABEL)`): the same on every
/// proxy replica and for `gatehouse audit`, so a subject's hash is the same
/// in every chain.
pub const SUBJECT_SECRET_LABEL: &[u8] = b"gatehouse audit subject v1";

/// HMAC-SHA256 of a data-subject id under `secret`, hex encoded.
///
/// This is what [`crate::AuditLog::subject_hash`] computes; auditors who hold the
/// secret use it to turn the id they are asked about into a [`crate::Query::subject_hash`].
pub fn hash_subject(secret: &[u8; 32], subject: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    hex(aws_lc_rs::hmac::sign(&key, subject.as_bytes()).as_ref())
}
