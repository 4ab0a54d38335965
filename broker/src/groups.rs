//! The group coordinator for the classic consumer group protocol:
//! JoinGroup / SyncGroup / Heartbeat / LeaveGroup, rebalances with timeouts,
//! session expiry. Membership lives in memory (members rejoin after a
//! broker restart, as with Kafka's coordinator failover); committed offsets
//! are durable and live in [`crate::state::State`].
//!
//! Group life cycle:
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
//!   ▲                  ▲                                          │ leader's SyncGroup
//!   └──last member─────┴──join / leave / expiry───────────── Stable ◀┘
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::KafkaCode;

/// Phase of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment handed out.
    Stable,
}

impl Phase {
    /// Kafka's name for the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinResult {
    /// Error code.
    pub error: KafkaCode,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Members and their metadata (only for the leader).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: KafkaCode, member_id: String) -> Self {
        Self {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// Error code.
    pub error: KafkaCode,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: KafkaCode) -> Self {
        Self {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A JoinGroup request, as the coordinator needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group.
    pub group: String,
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Supported protocols with metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether the client understands MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub require_known_member_id: bool,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

#[derive(Debug)]
struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, awaiting their join.
    pending: HashMap<String, Instant>,
    rebalance_id: u64,
    not_before: Instant,
}

impl Group {
    fn new() -> Self {
        Self {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_id: 0,
            not_before: Instant::now(),
        }
    }
}

/// A snapshot of a group for DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Phase name.
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol.
    pub protocol: String,
    /// Members: id, instance id, client id, host, metadata, assignment.
    pub members: Vec<MemberDescription>,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata of the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// Outcome of validating an offset commit against membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCheck {
    /// Commit allowed.
    Ok,
    /// Refused with this code.
    Refused(KafkaCode),
}

/// The coordinator: every group's membership.
#[derive(Debug)]
pub struct Coordinator {
    groups: Arc<Mutex<HashMap<String, Group>>>,
    initial_delay: Duration,
    /// Rebalances started, for the metrics.
    rebalances: Arc<std::sync::atomic::AtomicU64>,
}

/// Pending answer of a join or sync.
pub type Waiter<T> = oneshot::Receiver<T>;

fn ready<T>(v: T) -> Waiter<T> {
    let (tx, rx) = oneshot::channel();
    drop(tx.send(v));
    rx
}

impl Coordinator {
    /// A coordinator whose new groups wait `initial_delay` before their
    /// first rebalance completes.
    pub fn new(initial_delay: Duration) -> Self {
        Self {
            groups: Arc::new(Mutex::new(HashMap::new())),
            initial_delay,
            rebalances: Arc::default(),
        }
    }

    /// The count of rebalances started (a member joining, leaving or
    /// expiring), read when metrics are scraped.
    pub fn rebalance_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.rebalances.clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic while holding the lock would be a bug; keep serving the
        // other groups rather than poisoning the coordinator for good.
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles a JoinGroup.
    pub fn join(&self, req: JoinRequest) -> Waiter<JoinResult> {
        if req.group.is_empty() {
            return ready(JoinResult::error(KafkaCode::InvalidGroupId, req.member_id));
        }
        let session_ok = (Duration::from_millis(1000)..=Duration::from_secs(1800))
            .contains(&req.session_timeout);
        if !session_ok {
            return ready(JoinResult::error(
                KafkaCode::InvalidSessionTimeout,
                req.member_id,
            ));
        }
        let mut groups = self.lock();
        let g = groups.entry(req.group.clone()).or_insert_with(Group::new);
        if !g.members.is_empty() {
            let type_ok = g.protocol_type.as_deref() == Some(req.protocol_type.as_str());
            let common = g.members.values().all(|m| {
                m.protocols
                    .iter()
                    .any(|(p, _)| req.protocols.iter().any(|(q, _)| q == p))
            });
            if !type_ok || !common || req.protocols.is_empty() {
                return ready(JoinResult::error(
                    KafkaCode::InconsistentGroupProtocol,
                    req.member_id,
                ));
            }
        }
        let member_id = if req.member_id.is_empty() {
            let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if req.require_known_member_id {
                g.pending.insert(id.clone(), Instant::now());
                return ready(JoinResult::error(KafkaCode::MemberIdRequired, id));
            }
            id
        } else if g.members.contains_key(&req.member_id) || g.pending.contains_key(&req.member_id) {
            req.member_id.clone()
        } else {
            return ready(JoinResult::error(KafkaCode::UnknownMemberId, req.member_id));
        };
        g.pending.remove(&member_id);
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let m = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                join_waiter: None,
                sync_waiter: None,
            });
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.last_seen = now;
        if let Some(old) = m.join_waiter.replace(tx) {
            drop(old.send(JoinResult::error(
                KafkaCode::UnknownMemberId,
                member_id.clone(),
            )));
        }
        g.protocol_type = Some(req.protocol_type);
        if g.phase != Phase::PreparingRebalance {
            self.start_rebalance(&req.group, g);
        }
        Self::try_complete(g);
        rx
    }

    fn start_rebalance(&self, name: &str, g: &mut Group) {
        let was_empty = g.phase == Phase::Empty;
        self.rebalances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        g.phase = Phase::PreparingRebalance;
        g.rebalance_id += 1;
        for m in g.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                drop(w.send(SyncResult::error(KafkaCode::RebalanceInProgress)));
            }
        }
        let now = Instant::now();
        g.not_before = if was_empty {
            now + self.initial_delay
        } else {
            now
        };
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let groups = self.groups.clone();
        let name = name.to_string();
        let id = g.rebalance_id;
        let delay = g.not_before - now;
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                let mut all = groups.lock().unwrap_or_else(|p| p.into_inner());
                match all.get_mut(&name) {
                    Some(g) if g.rebalance_id == id && g.phase == Phase::PreparingRebalance => {
                        Self::try_complete(g)
                    }
                    _ => return,
                }
            }
            tokio::time::sleep(timeout.saturating_sub(delay)).await;
            let mut all = groups.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(g) = all.get_mut(&name) {
                if g.rebalance_id == id && g.phase == Phase::PreparingRebalance {
                    // Members that did not rejoin in time are dropped.
                    g.members.retain(|_, m| m.join_waiter.is_some());
                    Self::complete_join(g);
                }
            }
        });
    }

    fn try_complete(g: &mut Group) {
        if g.phase == Phase::PreparingRebalance
            && Instant::now() >= g.not_before
            && g.members.values().all(|m| m.join_waiter.is_some())
        {
            Self::complete_join(g);
        }
    }

    fn complete_join(g: &mut Group) {
        g.generation += 1;
        if g.members.is_empty() {
            g.phase = Phase::Empty;
            g.leader = None;
            g.protocol = None;
            return;
        }
        let leader = match &g.leader {
            Some(l) if g.members.contains_key(l) => l.clone(),
            _ => g.members.keys().next().cloned().unwrap_or_default(),
        };
        let candidates: Vec<String> = g
            .members
            .get(&leader)
            .map(|m| m.protocols.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default();
        let protocol = candidates.into_iter().find(|p| {
            g.members
                .values()
                .all(|m| m.protocols.iter().any(|(q, _)| q == p))
        });
        g.protocol = protocol.clone();
        g.leader = Some(leader.clone());
        g.phase = Phase::CompletingRebalance;
        let metadata: Vec<(String, Option<String>, Bytes)> = g
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(p, _)| Some(p) == protocol.as_ref())
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default();
                (id.clone(), m.instance_id.clone(), meta)
            })
            .collect();
        let now = Instant::now();
        for (id, m) in g.members.iter_mut() {
            m.last_seen = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                drop(w.send(JoinResult {
                    error: KafkaCode::None,
                    generation: g.generation,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: id.clone(),
                    members: if *id == leader {
                        metadata.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
    }

    /// Handles a SyncGroup.
    pub fn sync(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Waiter<SyncResult> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return ready(SyncResult::error(KafkaCode::UnknownMemberId));
        };
        if !g.members.contains_key(member_id) {
            return ready(SyncResult::error(KafkaCode::UnknownMemberId));
        }
        if generation != g.generation {
            return ready(SyncResult::error(KafkaCode::IllegalGeneration));
        }
        let ok = |g: &Group, assignment: Bytes| SyncResult {
            error: KafkaCode::None,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            assignment,
        };
        match g.phase {
            Phase::Empty | Phase::PreparingRebalance => {
                ready(SyncResult::error(KafkaCode::RebalanceInProgress))
            }
            Phase::Stable => {
                let a = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                ready(ok(g, a))
            }
            Phase::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_seen = Instant::now();
                }
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    g.phase = Phase::Stable;
                    let pt = g.protocol_type.clone();
                    let pn = g.protocol.clone();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            drop(w.send(SyncResult {
                                error: KafkaCode::None,
                                protocol_type: pt.clone(),
                                protocol_name: pn.clone(),
                                assignment: m.assignment.clone(),
                            }));
                        }
                    }
                }
                rx
            }
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(&self, group: &str, member_id: &str, generation: i32) -> KafkaCode {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return KafkaCode::UnknownMemberId;
        };
        let phase = g.phase;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return KafkaCode::UnknownMemberId;
        };
        m.last_seen = Instant::now();
        if generation != current {
            return KafkaCode::IllegalGeneration;
        }
        match phase {
            Phase::PreparingRebalance => KafkaCode::RebalanceInProgress,
            _ => KafkaCode::None,
        }
    }

    /// Handles a LeaveGroup for several members; one code per member.
    pub fn leave(&self, group: &str, members: &[String]) -> Vec<KafkaCode> {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else {
            return vec![KafkaCode::UnknownMemberId; members.len()];
        };
        let codes: Vec<KafkaCode> = members
            .iter()
            .map(|id| match g.members.remove(id) {
                Some(m) => {
                    if let Some(w) = m.join_waiter {
                        drop(w.send(JoinResult::error(KafkaCode::UnknownMemberId, id.clone())));
                    }
                    if let Some(w) = m.sync_waiter {
                        drop(w.send(SyncResult::error(KafkaCode::UnknownMemberId)));
                    }
                    KafkaCode::None
                }
                None => KafkaCode::UnknownMemberId,
            })
            .collect();
        if codes.contains(&KafkaCode::None) {
            self.after_departure(group, g);
        }
        codes
    }

    fn after_departure(&self, name: &str, g: &mut Group) {
        if g.members.is_empty() {
            g.phase = Phase::Empty;
            g.generation += 1;
            g.leader = None;
            g.protocol = None;
        } else if g.phase == Phase::PreparingRebalance {
            Self::try_complete(g);
        } else {
            self.start_rebalance(name, g);
            Self::try_complete(g);
        }
    }

    /// Checks an offset commit's member and generation.
    pub fn check_commit(&self, group: &str, member_id: &str, generation: i32) -> CommitCheck {
        let groups = self.lock();
        let Some(g) = groups.get(group) else {
            return if generation < 0 {
                CommitCheck::Ok
            } else {
                CommitCheck::Refused(KafkaCode::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if g.members.is_empty() {
                CommitCheck::Ok
            } else {
                CommitCheck::Refused(KafkaCode::IllegalGeneration)
            };
        }
        if !g.members.contains_key(member_id) {
            return CommitCheck::Refused(KafkaCode::UnknownMemberId);
        }
        if generation != g.generation {
            return CommitCheck::Refused(KafkaCode::IllegalGeneration);
        }
        if g.phase == Phase::CompletingRebalance {
            return CommitCheck::Refused(KafkaCode::RebalanceInProgress);
        }
        CommitCheck::Ok
    }

    /// Describes a group, if it has membership state.
    pub fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.lock();
        let g = groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.phase.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(p, _)| *p == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Groups with membership state: (name, phase name, protocol type).
    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        self.lock()
            .iter()
            .map(|(n, g)| {
                (
                    n.clone(),
                    g.phase.name(),
                    g.protocol_type.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Removes an empty group's membership state; `Err` if it has members.
    pub fn remove_if_empty(&self, group: &str) -> Result<bool, KafkaCode> {
        let mut groups = self.lock();
        match groups.get(group) {
            Some(g) if !g.members.is_empty() => Err(KafkaCode::NonEmptyGroup),
            Some(_) => {
                groups.remove(group);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops members whose session expired; returns how many.
    pub fn expire(&self) -> usize {
        let mut groups = self.lock();
        let now = Instant::now();
        let mut expired = 0;
        let names: Vec<String> = groups.keys().cloned().collect();
        for name in names {
            let Some(g) = groups.get_mut(&name) else {
                continue;
            };
            g.pending
                .retain(|_, since| now.duration_since(*since) < Duration::from_secs(300));
            let dead: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.join_waiter.is_none() && now.duration_since(m.last_seen) > m.session_timeout
                })
                .map(|(id, _)| id.clone())
                .collect();
            if dead.is_empty() {
                continue;
            }
            for id in &dead {
                tracing::info!(group = %name, member = %id, "member session expired");
                if let Some(m) = g.members.remove(id) {
                    if let Some(w) = m.sync_waiter {
                        drop(w.send(SyncResult::error(KafkaCode::UnknownMemberId)));
                    }
                }
            }
            expired += dead.len();
            self.after_departure(&name, g);
        }
        expired
    }

    /// Expires members whose sessions ran out, every 250 ms, forever.
    pub(crate) async fn expiry_loop(&self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            self.expire();
        }
    }
}
