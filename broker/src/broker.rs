//! Start-up, recovery, housekeeping and compaction; the metrics and the
//! HTTP listener for them and the probes (`admin`, `metrics`).

mod admin;
mod compaction;
mod failover;
mod metrics;

pub use compaction::CompactionStats;
pub(crate) use metrics::Outcome;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::committer::{self, AdminOp, Committer, CommitterDeps};
use crate::error::{BrokerError, KafkaCode, StorageError};
use crate::groups::Coordinator;
use crate::log;
use crate::members::{Member, Membership};
use crate::meta_log::MetaLog;
use crate::state::State;
use crate::storage::Storage;
use crate::topic_config;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Host name clients are told to connect to (default: the listen IP).
    pub advertised_host: Option<String>,
    /// Where data lives: a directory, `file://…` or `s3://bucket/prefix`.
    pub data: String,
    /// Object store settings (`aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, …); `AWS_*` environment variables apply too.
    pub store_options: Vec<(String, String)>,
    /// fsync local files after each commit.
    pub fsync: bool,
    /// How long produce requests are gathered into one commit object.
    pub commit_interval: Duration,
    /// Flush a commit object early once it holds this many bytes.
    pub commit_max_bytes: usize,
    /// Create topics when a client asks for metadata of an unknown one.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: i32,
    /// Largest request accepted.
    pub max_frame_bytes: usize,
    /// Memory for recently written commit objects.
    pub cache_bytes: usize,
    /// Take a snapshot every this many commits.
    pub snapshot_every: u64,
    /// How often retention, snapshots and object clean-up run.
    pub housekeeping_interval: Duration,
    /// How often compaction of `cleanup.policy=compact` topics runs.
    pub compaction_interval: Duration,
    /// Delay before the first rebalance of a new group completes, so that
    /// members starting together land in one generation.
    pub initial_rebalance_delay: Duration,
    /// Require SASL (PLAIN, SCRAM-SHA-256/512) with the users of this
    /// credentials file; none by default.
    pub sasl_credentials: Option<std::path::PathBuf>,
    /// How long a broker's lease in the store lasts without renewal before
    /// the others count it gone (renewed every third of it).
    pub lease: Duration,
    /// Where the HTTP listener for `/metrics`, `/healthz` and `/readyz`
    /// listens; none by default.
    pub admin_listen: Option<SocketAddr>,
    /// Metrics pushed over OTLP (`otlp_endpoint`, `metrics_interval_secs`);
    /// nothing is pushed by default. `/metrics` needs only `admin_listen`.
    pub telemetry: gatehouse_telemetry::TelemetryConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            data: "gatehouse-data/broker".into(),
            store_options: Vec::new(),
            fsync: true,
            commit_interval: Duration::from_millis(2),
            commit_max_bytes: 8 << 20,
            auto_create_topics: false,
            default_partitions: 1,
            max_frame_bytes: 100 << 20,
            cache_bytes: 256 << 20,
            snapshot_every: 1000,
            housekeeping_interval: Duration::from_secs(30),
            compaction_interval: Duration::from_secs(15),
            initial_rebalance_delay: Duration::from_millis(300),
            lease: Duration::from_secs(10),
            sasl_credentials: None,
            admin_listen: None,
            telemetry: gatehouse_telemetry::TelemetryConfig::default(),
        }
    }
}

/// State shared by every task of one broker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub storage: Storage,
    /// Shared with the committer, which alone writes it.
    pub state: Arc<RwLock<State>>,
    /// Bumped after every commit: long-polling fetches wait on it.
    pub commits: watch::Sender<u64>,
    /// Where produce, offset commits and admin ops go.
    pub committer: Committer,
    /// The shared metadata log (the catalog, leaders, producer-id blocks).
    pub meta: Arc<MetaLog>,
    /// The live brokers, by id (this one always among them).
    pub members: watch::Receiver<BTreeMap<i32, Member>>,
    /// Set once another broker took this one's log over: it must stop.
    pub fenced: watch::Sender<bool>,
    /// Keys this broker stopped serving to hand them to another broker
    /// (until the metadata log records the handoff).
    pub released: std::sync::Mutex<std::collections::BTreeSet<crate::meta::Key>>,
    /// Set when a clean stop begins: the broker takes no more keys.
    pub leaving: std::sync::atomic::AtomicBool,
    pub groups: Coordinator,
    pub cluster_id: String,
    pub shutdown: watch::Sender<bool>,
    /// Users allowed in, when SASL is required.
    pub sasl: Option<gatehouse_sasl::CredentialStore>,
    /// Held by housekeeping and compaction passes: one at a time, so
    /// clean-up never deletes an object a pass is still writing or reading.
    pub maintenance: tokio::sync::Mutex<compaction::Maintenance>,
    /// The broker's instruments (requests; the store and the committer
    /// have theirs, made from the same meter).
    pub metrics: Arc<metrics::BrokerMetrics>,
}

impl Shared {
    /// This broker's id.
    pub fn node(&self) -> i32 {
        self.config.node_id
    }

    /// The live brokers, by id.
    pub fn live(&self) -> BTreeMap<i32, Member> {
        self.members.borrow().clone()
    }

    /// The leader of a partition and its epoch, as the metadata log says.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        self.meta
            .current()
            .partition_leader(topic, partition)
            .map(|l| (l.node, l.epoch))
    }

    /// Whether this broker serves `key` now: it leads it, and is not
    /// handing it over.
    fn serves(&self, meta: &crate::meta::Meta, key: crate::meta::Key) -> Option<bool> {
        let l = meta.leadership(key)?;
        let released = self
            .released
            .lock()
            .map(|r| r.contains(&key))
            .unwrap_or(true);
        Some(l.node == self.node() && l.handoff.is_none() && !released)
    }

    /// Whether this broker leads the partition; if not, the error that
    /// sends the client to the leader (after a metadata refresh).
    pub fn check_leader(&self, topic: &str, partition: i32) -> Result<(), KafkaCode> {
        let meta = self.meta.current();
        let Some(id) = meta.names.get(topic) else {
            return Err(KafkaCode::UnknownTopicOrPartition);
        };
        let key = crate::meta::Key::Partition {
            topic: *id,
            partition,
        };
        match self.serves(&meta, key) {
            Some(true) => Ok(()),
            Some(false) => Err(KafkaCode::NotLeaderOrFollower),
            None => Err(KafkaCode::UnknownTopicOrPartition),
        }
    }

    /// The broker coordinating `group` (the leader of its slot).
    pub fn coordinator(&self, group: &str) -> Option<i32> {
        self.meta.current().coordinator_of(group).map(|l| l.node)
    }

    /// Whether this broker coordinates `group`; if not, `NOT_COORDINATOR`,
    /// which sends the client to FindCoordinator again.
    pub fn check_coordinator(&self, group: &str) -> Result<(), KafkaCode> {
        let meta = self.meta.current();
        let serves = meta
            .slot_of(group)
            .and_then(|s| self.serves(&meta, crate::meta::Key::Slot(s)));
        match serves {
            Some(true) => Ok(()),
            _ => Err(KafkaCode::NotCoordinator),
        }
    }
}

/// A request for a compaction pass now, with where its result goes.
type CompactRequest = oneshot::Sender<Result<CompactionStats, BrokerError>>;

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    compact: mpsc::Sender<CompactRequest>,
}

impl Broker {
    /// Recovers state from the store and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        if !(0..=crate::storage::MAX_NODE_ID).contains(&config.node_id) {
            return Err(BrokerError::Config(format!(
                "node id {} is outside 0..={}",
                config.node_id,
                crate::storage::MAX_NODE_ID
            )));
        }
        if config.default_partitions < 1 {
            return Err(BrokerError::Config(
                "default partitions must be at least 1".into(),
            ));
        }
        let sasl = match &config.sasl_credentials {
            Some(path) => Some(gatehouse_sasl::CredentialStore::load(path).map_err(|e| {
                BrokerError::Config(format!("SASL credentials {}: {e}", path.display()))
            })?),
            None => None,
        };
        let metrics = metrics::BrokerMetrics::new(
            gatehouse_telemetry::Metrics::new("gatehouse-broker", &config.telemetry)
                .map_err(|e| BrokerError::Config(e.to_string()))?,
        );
        let admin_listener = match config.admin_listen {
            Some(addr) => Some(admin::bind(addr).await?),
            None => None,
        };
        let storage = Storage::open(
            &config.data,
            config.fsync,
            config.cache_bytes,
            &config.store_options,
        )?
        .instrument(metrics.meter())
        .for_node(config.node_id)
        .await?;
        let (shutdown, _) = watch::channel(false);
        let fenced = watch::Sender::new(false);
        let loaded = watch::Sender::new(false);
        // The probes answer from here on: `/readyz` says what is missing
        // while the state is recovered.
        let (admin_addr, admin_task) = match admin_listener {
            Some(listener) => {
                let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
                    addr: config.admin_listen.unwrap_or(config.listen),
                    source,
                })?;
                let probes = Arc::new(admin::Probes {
                    metrics: metrics.clone(),
                    storage: storage.clone(),
                    fenced: fenced.subscribe(),
                    loaded: loaded.subscribe(),
                    shutdown: shutdown.subscribe(),
                });
                tracing::info!(%addr, "broker admin listener (/metrics, /healthz, /readyz) started");
                let task = AbortOnDrop(Some(tokio::spawn(admin::serve(listener, probes))));
                (Some(addr), task)
            }
            None => (None, AbortOnDrop(None)),
        };
        storage.check_create_only().await?;
        let cluster_id = storage.cluster_id().await?;
        let state = claim(&storage, config.node_id).await?;
        let meta = Arc::new(open_meta(&storage, &state, config.node_id).await?);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.listen,
            source,
        })?;
        let host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| addr.ip().to_string());
        tracing::info!(
            node_id = config.node_id,
            %addr,
            store = storage.describe(),
            topics = state.topics.len(),
            last_commit = state.last_seq,
            "broker started"
        );
        let port = i32::from(addr.port());
        let mut membership = Membership::new(
            storage.clone(),
            Member {
                node: config.node_id,
                host: host.clone(),
                port,
                incarnation: storage.writer().to_string(),
                counter: 0,
            },
            config.lease,
        );
        membership.join().await?;
        let members = membership.subscribe();
        let commits = watch::channel(state.last_seq).0;
        let maintenance = compaction::Maintenance::new(&state);
        let state = Arc::new(RwLock::new(state));
        let (committer, commit_loop) = committer::start(CommitterDeps {
            storage: storage.clone(),
            state: state.clone(),
            commits: commits.clone(),
            commit_interval: config.commit_interval,
            commit_max_bytes: config.commit_max_bytes,
            meta: meta.clone(),
            node_id: config.node_id,
            live: members.clone(),
            fenced: fenced.clone(),
            metrics: committer::CommitMetrics::new(metrics.meter()),
        });
        let shared = Arc::new(Shared {
            groups: Coordinator::new(config.initial_rebalance_delay),
            config,
            storage,
            commits,
            state,
            committer,
            meta,
            members,
            fenced,
            released: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            cluster_id,

            shutdown,
            sasl,
            maintenance: tokio::sync::Mutex::new(maintenance),
            metrics,
        });
        observe(&shared);
        let (compact, compact_requests) = mpsc::channel(16);
        let commit_task = tokio::spawn(commit_loop);
        // Whatever of the catalog this log has not mirrored yet (a stop
        // between the metadata log's append and this log's commit) is
        // mirrored before anything is served.
        shared
            .committer
            .admin(AdminOp::Mirror)
            .await
            .map_err(|(code, message)| BrokerError::Refused { code, message })?;
        failover::relead(&shared).await?;
        let mut tasks = vec![
            commit_task,
            tokio::spawn(crate::server::accept_loop(shared.clone(), listener)),
            tokio::spawn(housekeeping(shared.clone())),
            tokio::spawn(follow_meta(shared.clone())),
            tokio::spawn(membership.run(shared.shutdown.subscribe())),
            tokio::spawn(failover::follow(shared.clone())),
            tokio::spawn({
                // Taken over: stop serving and leave the cluster (the
                // lease goes); `Broker::fenced` tells the process.
                let shared = shared.clone();
                async move {
                    let mut fenced = shared.fenced.subscribe();
                    if fenced.wait_for(|f| *f).await.is_ok() {
                        tracing::error!(
                            "another broker took over this broker's partitions (its log is closed): stopping"
                        );
                        shared.shutdown.send_replace(true);
                    }
                }
            }),
            tokio::spawn(compaction_loop(shared.clone(), compact_requests)),
            tokio::spawn({
                let shared = shared.clone();
                async move { shared.groups.expiry_loop().await }
            }),
        ];
        tasks.extend(admin_task.release());
        loaded.send_replace(true);
        Ok(Self {
            shared,
            addr,
            admin_addr,
            tasks,
            compact,
        })
    }

    /// The address of the HTTP listener for `/metrics`, `/healthz` and
    /// `/readyz`, when `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Every metric of this broker, in the Prometheus text format (what
    /// `GET /metrics` answers).
    pub fn render_metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Resolves once another broker has taken this one's log over (a
    /// broker paused past its lease): it no longer serves, and its process
    /// should exit and be started again.
    pub fn fenced(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut fenced = self.shared.fenced.subscribe();
        async move {
            if fenced.wait_for(|f| *f).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The brokers this one counts live (itself among them).
    pub fn live_brokers(&self) -> Vec<i32> {
        self.shared.live().keys().copied().collect()
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster id kept in the store.
    pub fn cluster_id(&self) -> &str {
        &self.shared.cluster_id
    }

    /// Creates a topic, as a CreateTopics request would. Creating a topic
    /// that exists already is refused with `TOPIC_ALREADY_EXISTS`.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        self.shared
            .committer
            .admin(AdminOp::CreateTopic {
                name: name.to_string(),
                partitions,
                configs,
                validate_only: false,
            })
            .await
            .map(|_| ())
            .map_err(|(code, message)| BrokerError::Refused { code, message })
    }

    /// Runs retention, snapshot and clean-up once, now.
    pub async fn housekeep(&self) -> Result<(), BrokerError> {
        housekeep_once(&self.shared).await
    }

    /// Runs a compaction pass now (in the broker's compaction task, after
    /// any pass in progress) and returns what it did. The returned future
    /// does not borrow the broker: a test can drop (kill) the broker while
    /// the pass runs, and the future then fails with
    /// [`BrokerError::Stopped`].
    pub fn compact_now(
        &self,
    ) -> impl std::future::Future<Output = Result<CompactionStats, BrokerError>> + Send + 'static
    {
        let requests = self.compact.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            requests.send(tx).await.map_err(|_| BrokerError::Stopped)?;
            rx.await.map_err(|_| BrokerError::Stopped)?
        }
    }

    /// Hands this broker's partitions and coordinator slots to the other
    /// live brokers (waiting, at most three leases, until they lead them),
    /// then stops accepting, closes connections, writes a final snapshot
    /// and deletes its lease.
    pub async fn shutdown(mut self) -> Result<(), BrokerError> {
        // In a cluster, the others take this broker's keys over first.
        if !*self.shared.fenced.borrow() {
            if let Err(e) =
                failover::hand_everything_off(&self.shared, self.shared.config.lease * 3).await
            {
                tracing::warn!(error = %e, "handing keys over at shutdown failed");
            }
        }
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks[1..] {
            t.abort();
        }
        let snap = take_snapshot(&self.shared).await;
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            let _ = t.await;
        }
        // Gone at once for the others, not after a lease.
        if let Err(e) = self
            .shared
            .storage
            .delete_lease(self.shared.config.node_id)
            .await
        {
            tracing::warn!(error = %e, "cannot delete this broker's lease");
        }
        self.shared.metrics.shutdown();
        snap?;
        tracing::info!("broker stopped");
        Ok(())
    }
}

impl Drop for Broker {
    /// Dropping a broker without [`Broker::shutdown`] stops it at once, as a
    /// crash would: no final snapshot; everything acknowledged is already in
    /// the commit log.
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A task aborted when dropped, unless released first: the admin listener
/// while the rest of the broker starts (a failed start stops it).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn release(mut self) -> Option<JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// The figures read when metrics are scraped: partitions led, live
/// brokers, rebalances, the cache's size. The callbacks hold what they
/// read (the metadata log, the member list, a counter, the storage), never
/// the broker's shared state: the meter provider lives in it.
fn observe(shared: &Shared) {
    let m = &shared.metrics;
    let (meta, node) = (shared.meta.clone(), shared.node());
    m.gauge(
        "gatehouse.broker.partitions.led",
        "Partitions this broker leads, as the metadata log says (handoffs under way excluded)",
        move || {
            let meta = meta.current();
            let led = meta
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|l| l.node == node && l.handoff.is_none())
                .count();
            i64::try_from(led).unwrap_or(i64::MAX)
        },
    );
    let members = shared.members.clone();
    m.gauge(
        "gatehouse.broker.brokers.live",
        "Brokers this broker counts live, itself included",
        move || i64::try_from(members.borrow().len()).unwrap_or(i64::MAX),
    );
    m.counted(
        "gatehouse.broker.group.rebalances",
        "Consumer group rebalances started on this broker (a member joined, left or expired)",
        shared.groups.rebalance_counter(),
    );
    let storage = shared.storage.clone();
    m.gauge(
        "gatehouse.broker.cache.size",
        "Bytes of recent objects held in the read cache",
        move || i64::try_from(storage.cached_bytes()).unwrap_or(i64::MAX),
    );
}

/// The metadata log, read to its end. The first broker on a store writes
/// its first entry: on a store whose broker kept its catalog in its own
/// log, that entry adopts the catalog and producer ids it has.
async fn open_meta(storage: &Storage, state: &State, node_id: i32) -> Result<MetaLog, BrokerError> {
    let log = MetaLog::new(storage.clone());
    log.append_with(|meta| {
        Ok(if meta.slots.is_empty() {
            crate::catalog::adopt(state, node_id, COORDINATOR_SLOTS)
        } else {
            Vec::new()
        })
    })
    .await
    .map_err(|e| BrokerError::Config(format!("the metadata log: {e}")))?;
    Ok(log)
}

/// Group coordinator slots of a new cluster (fixed for its life).
const COORDINATOR_SLOTS: u32 = 16;

/// Broker `node`'s state from its log in `storage` (its newest readable
/// snapshot, then the commits after it, in order), up to commit `upto` if
/// given.
pub(crate) async fn recover(
    storage: &Storage,
    node: i32,
    upto: Option<u64>,
) -> Result<State, StorageError> {
    let base = crate::storage::node_base(node);
    let mut state = State {
        last_seq: base,
        last_object_id: base,
        ..State::default()
    };
    let snapshots = storage.list_snapshots().await?;
    for seq in snapshots.iter().rev() {
        let data = storage.read_snapshot(*seq).await?;
        match State::from_snapshot(&data) {
            Ok(s) => {
                state = s;
                break;
            }
            Err(e) => tracing::warn!(seq, error = %e, "skipping unreadable snapshot"),
        }
    }
    let from_snapshot = state.last_seq;
    let commits = storage.list_commits().await?;
    let mut replayed = 0u64;
    let pending = commits
        .into_iter()
        .filter(|s| *s > from_snapshot && upto.is_none_or(|u| *s <= u));
    for (expected, seq) in (from_snapshot + 1..).zip(pending) {
        if seq != expected {
            return Err(StorageError::Corrupt(format!(
                "commit log has a gap: expected commit {expected}, found {seq}"
            )));
        }
        let object = storage.read_commit(seq).await?;
        let commands = log::parse(seq, &object)?;
        state.apply(seq, &commands);
        replayed += 1;
    }
    tracing::info!(snapshot = from_snapshot, replayed, "state recovered");
    Ok(state)
}

/// Recovers the state and takes over the log with a first commit of our
/// own. A write of a broker that died just before (still in flight when it
/// went) can then no longer land behind our back: it would have to be for
/// the sequence number we just took. If such a write took it first, it is
/// recovered too and we try again. Until this commit, nothing is served and
/// nothing deleted.
async fn claim(storage: &Storage, node_id: i32) -> Result<State, StorageError> {
    let mut attempts = 0;
    loop {
        let mut state = recover(storage, node_id, None).await?;
        let seq = state.last_seq + 1;
        let mut builder = log::CommitBuilder::default();
        builder.push(log::Command::Started { node_id });
        let (object, commands) = builder.finish(seq, storage.writer())?;
        match storage.create_commit(seq, object).await {
            Ok(()) => {
                state.apply(seq, &commands);
                return Ok(state);
            }
            Err(StorageError::Fenced(_)) if attempts < 5 => {
                attempts += 1;
                tracing::warn!(seq, "the log moved on while starting; recovering again");
            }
            Err(e) => return Err(e),
        }
    }
}

async fn take_snapshot(shared: &Shared) -> Result<(), BrokerError> {
    let (seq, data) = {
        let state = shared
            .state
            .read()
            .map_err(|_| BrokerError::Config("state lock poisoned".into()))?;
        let data = state
            .to_snapshot()
            .map_err(|e| StorageError::Corrupt(format!("cannot encode snapshot: {e}")))?;
        (state.last_seq, data)
    };
    if seq == 0 {
        return Ok(());
    }
    let existing = shared.storage.list_snapshots().await?;
    if existing.last() == Some(&seq) {
        return Ok(());
    }
    shared.storage.put_snapshot(seq, Bytes::from(data)).await?;
    // Keep the previous snapshot too, in case the newest cannot be read.
    for old in existing.iter().rev().skip(1) {
        shared.storage.delete_snapshot(*old).await?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Computes retention-driven log start moves.
fn retention_moves(state: &State, now: i64) -> Vec<(String, i32, i64)> {
    let mut moves = Vec::new();
    for t in state.topics.values() {
        let policy = t
            .configs
            .get("cleanup.policy")
            .map(String::as_str)
            .unwrap_or("delete");
        if !policy.split(',').any(|p| p.trim() == "delete") {
            continue;
        }
        let retention_ms = topic_config::effective_i64(&t.configs, "retention.ms");
        let retention_bytes = topic_config::effective_i64(&t.configs, "retention.bytes");
        for (i, p) in t.partitions.iter().enumerate() {
            let mut start = p.log_start;
            let mut bytes = p.bytes as i64;
            for b in &p.batches {
                let too_old = retention_ms >= 0 && b.max_ts >= 0 && b.max_ts < now - retention_ms;
                let too_big = retention_bytes >= 0 && bytes > retention_bytes;
                if !(too_old || too_big) {
                    break;
                }
                start = b.last + 1;
                bytes -= b.len as i64;
            }
            if start > p.log_start {
                moves.push((t.name.clone(), i as i32, start));
            }
        }
    }
    moves
}

async fn housekeep_once(shared: &Shared) -> Result<(), BrokerError> {
    let _pass = shared.maintenance.lock().await;
    let moves = {
        let state = shared
            .state
            .read()
            .map_err(|_| BrokerError::Config("state lock poisoned".into()))?;
        retention_moves(&state, now_ms())
    };
    if !moves.is_empty() {
        tracing::info!(partitions = moves.len(), "retention moves log starts");
        if let Err((code, msg)) = shared
            .committer
            .admin(AdminOp::SetLogStart { entries: moves })
            .await
        {
            tracing::warn!(?code, msg, "retention step failed");
        }
    }
    let (last, snap_seq) = {
        let snaps = shared.storage.list_snapshots().await?;
        let last = shared.state.read().map(|s| s.last_seq).unwrap_or(0);
        (last, snaps.last().copied().unwrap_or(0))
    };
    if last >= snap_seq + shared.config.snapshot_every || dead_objects_await_snapshot(shared) {
        take_snapshot(shared).await?;
    }
    if keeps_objects(&shared.storage, shared.node()).await? {
        return Ok(());
    }
    // Objects that no live batch needs and that a snapshot covers can go.
    let snap_seq = shared
        .storage
        .list_snapshots()
        .await?
        .last()
        .copied()
        .unwrap_or(0);
    let dead = shared
        .state
        .read()
        .map(|s| s.dead_objects(snap_seq))
        .unwrap_or_default();
    let mut deleted = 0usize;
    for seq in &dead {
        shared.storage.delete_commit(*seq).await?;
        deleted += 1;
    }
    if deleted > 0 {
        if let Ok(mut s) = shared.state.write() {
            for seq in &dead {
                s.objects.remove(seq);
            }
        }
        tracing::info!(deleted, "removed commit objects no longer needed");
    }
    Ok(())
}

/// Whether this broker must keep its objects although its own state no
/// longer needs them: another broker's log is in the store, and a broker
/// that took partitions over points at the objects of the log it took them
/// from. Clean-up across logs is not built yet, so in a cluster of several
/// brokers nothing is deleted (retention and compaction still hide what
/// they remove; storage is not reclaimed).
pub(crate) async fn keeps_objects(storage: &Storage, node: i32) -> Result<bool, StorageError> {
    Ok(!storage.other_nodes(node).await?.is_empty())
}

/// Whether dead objects are waiting for a snapshot before they can go.
fn dead_objects_await_snapshot(shared: &Shared) -> bool {
    shared
        .state
        .read()
        .map(|s| !s.dead_objects(s.last_seq).is_empty())
        .unwrap_or(false)
}

/// Runs compaction every `compaction_interval`, and whenever asked.
async fn compaction_loop(shared: Arc<Shared>, mut requests: mpsc::Receiver<CompactRequest>) {
    let mut tick = tokio::time::interval(shared.config.compaction_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let reply = tokio::select! {
            _ = tick.tick() => None,
            r = requests.recv() => match r {
                Some(r) => Some(r),
                None => return,
            },
        };
        let result = compact_once(&shared).await;
        match (&result, reply) {
            (_, Some(reply)) => drop(reply.send(result)),
            (Ok(stats), None) if stats.batches > 0 || stats.objects_deleted > 0 => {
                tracing::info!(
                    partitions = stats.partitions,
                    bytes_read = stats.bytes_read,
                    bytes_written = stats.bytes_written,
                    records_read = stats.records_read,
                    records_kept = stats.records_kept,
                    objects_deleted = stats.objects_deleted,
                    elapsed_ms = stats.elapsed.as_millis() as u64,
                    "compaction pass"
                );
            }
            (Ok(_), None) => {}
            (Err(e), None) => tracing::warn!(error = %e, "compaction failed"),
        }
    }
}

async fn compact_once(shared: &Shared) -> Result<CompactionStats, BrokerError> {
    let mut maintenance = shared.maintenance.lock().await;
    let deps = compaction::Deps {
        storage: &shared.storage,
        state: &shared.state,
        committer: &shared.committer,
    };
    compaction::pass(&deps, &mut maintenance, now_ms(), None).await
}

/// How often a broker reads the metadata log for entries other brokers
/// appended (one GET of the next entry when nothing changed).
const META_POLL: Duration = Duration::from_millis(500);

/// Follows the metadata log: when another writer changed the catalog, it
/// is mirrored into this broker's log (outside the commit path: only a
/// change costs a commit).
async fn follow_meta(shared: Arc<Shared>) {
    let mut mirrored = shared.meta.meta().await.last_seq;
    let mut tick = tokio::time::interval(META_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let seq = match shared.meta.catch_up().await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the metadata log");
                continue;
            }
        };
        if seq <= mirrored {
            continue;
        }
        match shared.committer.admin(AdminOp::Mirror).await {
            Ok(_) => mirrored = seq,
            Err((code, message)) => {
                tracing::warn!(?code, %message, "cannot mirror the metadata log");
            }
        }
    }
}

async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.housekeeping_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = housekeep_once(&shared).await {
            tracing::warn!(error = %e, "housekeeping failed");
        }
    }
}
