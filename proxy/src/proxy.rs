//! The composition root: [`Proxy::start`] reads the configuration, loads
//! every part (TLS, identity, policies, consent, keys, audit), builds the
//! filter chain, and starts the listeners and the followers of the
//! cluster's internal topics. The only module that names every other one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::auth::Authenticator;
use crate::cluster::client::Upstream;
use crate::cluster::consent::{ConsentFollower, ConsentStore};
use crate::cluster::dial::Dialer;
use crate::cluster::erasure::{Eraser, EraserParts, Erasures, TAKEOVER_AFTER};
use crate::cluster::follower::{self, Settings};
use crate::cluster::keys::{KeyTopic, KeyTopicState, Keys};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::filter::{Filter, Governed, Parts, Target};
use crate::net::routes::Routes;
use crate::net::{listener, Front};
use crate::tasks::Tasks;
use crate::tls::TlsServer;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    front: Arc<Front>,
    tasks: Arc<Tasks>,
    eraser: Option<Arc<Eraser>>,
    governance: Option<GovernanceHandles>,
    audit: Option<gatehouse_audit::AuditLog>,
    bootstrap: SocketAddr,
    admin: Option<SocketAddr>,
    /// The metrics and probes listener (`[telemetry] listen`).
    metrics_addr: Option<SocketAddr>,
    grace: Duration,
}

impl Proxy {
    /// Starts the proxy with the built-in filters.
    pub async fn start(config: ProxyConfig) -> Result<Self, ProxyError> {
        Self::start_with_filters(config, Vec::new()).await
    }

    /// Starts the proxy with the built-in filters followed by `extra`.
    pub async fn start_with_filters(
        config: ProxyConfig,
        extra: Vec<Arc<dyn Filter>>,
    ) -> Result<Self, ProxyError> {
        config.validate()?;
        let tls_server = config
            .listener
            .tls
            .as_ref()
            .map(|t| TlsServer::load(t).map(Arc::new))
            .transpose()?;
        let authenticator = config
            .auth
            .as_ref()
            .map(|a| Authenticator::load(a).map(Arc::new))
            .transpose()?;
        let dialer = Arc::new(Dialer::new(&config)?);
        let bind = config.listener.bind;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| ProxyError::Bind { addr: bind, source })?;
        let bootstrap = listener
            .local_addr()
            .map_err(|source| ProxyError::Bind { addr: bind, source })?;
        let admin_listener = crate::admin::bind(&config).await?;
        let metrics_listener = match config.telemetry.as_ref().and_then(|t| t.listen) {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ProxyError::Bind { addr, source })?,
            ),
            None => None,
        };
        let metrics = crate::metrics::ProxyMetrics::new(
            gatehouse_telemetry::Metrics::new(
                "gatehouse-proxy",
                &config.telemetry.clone().unwrap_or_default(),
            )
            .map_err(|e| ProxyError::Config(e.to_string()))?,
        );
        let governance = match &config.policy {
            Some(p) => Some(Governance::load(p, config.keys.as_ref())?),
            None => None,
        };
        let audit = open_audit(&config, governance.as_ref()).await?;
        if let Some(log) = &audit {
            log.observe(metrics.clone());
        }
        let tasks = Arc::new(Tasks::new());
        let max_frame_bytes = config.limits.max_frame_bytes;

        // The key topic and the erasure state, followed by every replica.
        let mut eraser = None;
        let mut followers = Vec::new();
        if let (Some(g), Some(kc)) = (&governance, &config.keys) {
            if let Some(k) = &g.keys {
                let keys = start_key_topic(k, kc, &dialer, &audit, &tasks, max_frame_bytes)?;
                followers.push(("keys", keys));
                let (started, status) =
                    start_erasure(g, k, kc, &dialer, &audit, &tasks, max_frame_bytes)?;
                eraser = Some(started);
                followers.push(("erasure", status));
            }
        }

        let (new_listeners, listeners_rx) = mpsc::unbounded_channel();
        let routes = Arc::new(Routes::new(
            bind.ip(),
            config.listener.node_port_base,
            config.advertised_host(),
            new_listeners,
        ));
        let consent_topic = config
            .policy
            .as_ref()
            .map(|p| p.consent_topic.clone())
            .unwrap_or_default();
        let views = governance.as_ref().and_then(|_| {
            crate::filter::view_cache::ViewCache::with_bytes(config.limits.view_cache_bytes)
        });
        let chain = crate::filter::chain(
            Parts {
                sasl: authenticator.is_some(),
                routes: routes.clone(),
                governance: governance.as_ref().map(|g| Governed {
                    policies: g.policies.clone(),
                    catalog: g.catalog.clone(),
                    consent: g.consent.clone(),
                    keys: g.keys.as_ref().map(|k| k.keys.clone()),
                    consent_topic: consent_topic.clone(),
                    erasures: eraser.as_ref().map(|e| e.erasures().clone()),
                    views: views.clone(),
                }),
                audit: audit.clone(),
                metrics: metrics.clone(),
            },
            extra,
        );
        if let (Some(eraser), Some(name)) = (
            &eraser,
            config
                .keys
                .as_ref()
                .and_then(|k| k.erasure_verify_as.as_ref()),
        ) {
            let principal = authenticator
                .as_ref()
                .and_then(|a| a.internal_principal(name))
                .ok_or_else(|| {
                    ProxyError::Config(format!(
                        "keys.erasure_verify_as: {name} is not a user of the credentials file ([auth] credentials)"
                    ))
                })?;
            eraser.set_read_back(Arc::new(crate::net::loopback::Loopback::new(
                chain.clone(),
                principal,
            )));
        }
        tracing::info!(
            %bootstrap,
            upstream = ?config.upstream.bootstrap_servers,
            filters = ?chain.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "proxy started"
        );
        let front = Arc::new(Front {
            chain,
            authenticator: authenticator.clone(),
            audit: audit.clone(),
            dialer: dialer.clone(),
            routes,
            limits: config.limits.clone(),
            tls: tls_server.clone(),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            buffered: Arc::new(Semaphore::new(config.limits.max_buffered_bytes)),
            per_ip: config
                .limits
                .max_connections_per_ip
                .map(|n| Arc::new(crate::net::listener::PerIp::new(n))),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
        });
        if let Some(tls) = tls_server {
            tasks.spawn(listener::watch_certificates(tls, tasks.stopping()));
        }
        tasks.spawn(listener::serve_new_listeners(front.clone(), listeners_rx));
        if let Some(auth) = &authenticator {
            tasks.spawn(watch_credentials(
                auth.clone(),
                CREDENTIALS_CHECK,
                tasks.stopping(),
            ));
        }

        let mut handles = None;
        let mut admin_parts = None;
        if let Some(g) = governance {
            let (follower, task) = ConsentFollower::new(
                dialer.clone(),
                Settings {
                    max_frame_bytes,
                    shutdown: tasks.stopping(),
                },
                consent_topic,
                g.consent.clone(),
            );
            tasks.spawn(task);
            followers.push(("consent", follower.subscribe()));
            let interval = config
                .policy
                .as_ref()
                .map(|p| Duration::from_secs(p.reload_interval_secs.max(1)))
                .unwrap_or(Duration::from_secs(2));
            tasks.spawn(watch_policies(
                g.policies.clone(),
                interval,
                tasks.stopping(),
                audit.clone(),
            ));
            admin_parts = Some((g.policies.clone(), g.catalog.clone()));
            handles = Some(GovernanceHandles {
                policies: g.policies,
                follower,
                keys: g.keys.map(|k| k.keys),
                views: views.clone(),
            });
        }
        observe(
            &metrics,
            &front,
            handles.as_ref().map(|h| h.policies.clone()),
            &followers,
            audit.clone(),
        );
        listener::spawn(&front, listener, Target::Bootstrap);
        let readiness = Arc::new(crate::admin::Readiness {
            upstream: dialer.clone(),
            max_frame_bytes,
            followers,
            dirs: readiness_dirs(&config),
        });
        let mut metrics_addr = None;
        if let Some(l) = metrics_listener {
            metrics_addr = l.local_addr().ok();
            let probes = Arc::new(crate::admin::Probes {
                metrics: metrics.clone(),
                readiness: readiness.clone(),
            });
            let mut stopping = tasks.stopping();
            tasks.spawn(async move {
                tokio::select! {
                    () = gatehouse_telemetry::serve_probes(l, probes) => {}
                    _ = crate::tasks::stopped(&mut stopping) => {}
                }
            });
            tracing::info!(addr = ?metrics_addr, "metrics and probes listener started");
        }
        let admin = match (admin_listener, admin_parts) {
            (Some(l), Some((policies, catalog))) => {
                let replica_dirs = config
                    .admin
                    .as_ref()
                    .map(|a| a.replica_dirs.clone())
                    .unwrap_or_default();
                match crate::admin::serve(
                    l,
                    crate::admin::AdminParts {
                        tasks: tasks.clone(),
                        authenticator,
                        audit: audit.clone(),
                        replica_dirs,
                        policies,
                        catalog,
                        eraser: eraser.clone(),
                        metrics: metrics.clone(),
                        readiness,
                    },
                ) {
                    Ok(addr) => Some(addr),
                    Err(e) => {
                        tasks.stop();
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        Ok(Self {
            front,
            tasks,
            eraser,
            governance: handles,
            audit,
            bootstrap,
            admin,
            metrics_addr,
            grace: Duration::from_secs(config.limits.shutdown_grace_secs),
        })
    }

    /// The bootstrap address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.bootstrap
    }

    /// The address of the auditors' HTTP listener, when `[admin]` is
    /// configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The metrics and probes listener's address (`[telemetry] listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Broker nodes seen so far: (node id, proxy port, upstream address).
    pub fn node_routes(&self) -> Vec<(i32, u16, String)> {
        self.front
            .routes
            .snapshot()
            .into_iter()
            .map(|(n, r)| (n, r.proxy_port, r.upstream))
            .collect()
    }

    /// Waits (up to `limit`) until the consent follower has read the
    /// consent topic up to its end; `false` on timeout or without `[policy]`.
    pub async fn consent_caught_up(&self, limit: Duration) -> bool {
        let Some(g) = &self.governance else {
            return false;
        };
        tokio::time::timeout(limit, g.follower.wait_caught_up())
            .await
            .is_ok_and(|()| g.follower.status().caught_up())
    }

    /// The policy store, when `[policy]` is configured.
    pub fn policies(&self) -> Option<Arc<gatehouse_policy::PolicyStore>> {
        self.governance.as_ref().map(|g| g.policies.clone())
    }

    /// Field protection's keys, when `[policy]` and `[keys]` are
    /// configured.
    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.governance.as_ref().and_then(|g| g.keys.clone())
    }

    /// What the view cache of protected topics holds and has served, when
    /// `[policy]` is configured and `[limits] view_cache_bytes` is not 0.
    pub fn view_cache(&self) -> Option<crate::filter::view_cache::ViewCacheStats> {
        self.governance
            .as_ref()
            .and_then(|g| g.views.as_ref())
            .map(|v| v.stats())
    }

    /// The erasure workflows, when `[policy]` and `[keys]` are configured.
    pub fn eraser(&self) -> Option<Arc<Eraser>> {
        self.eraser.clone()
    }

    /// Bytes of large client requests held now (see
    /// [`crate::config::Limits::max_buffered_bytes`]).
    pub fn buffered_bytes(&self) -> usize {
        self.front.buffered_bytes()
    }

    /// Client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.front.open_connections()
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace
    /// period), then closes every connection.
    pub async fn shutdown(self) {
        self.tasks.stop();
        let mut tasks = self.tasks.take();
        let drained = tokio::time::timeout(self.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            tasks.shutdown().await;
        }
        if let Some(log) = &self.audit {
            if let Err(e) = log.close().await {
                tracing::error!(error = %e, "audit log not closed cleanly");
            }
        }
        if let Some(policies) = self.policies() {
            let c = policies.counters();
            tracing::info!(
                evaluations = c.evaluations,
                plan_hits = c.plan_hits,
                plan_misses = c.plan_misses,
                plan_hit_rate = c.plan_hit_rate(),
                records_decided = c.records_decided,
                "policy decision counters"
            );
        }
        // A last OTLP push; it blocks, so off the async threads.
        let metrics = self.front.metrics.clone();
        let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
        tracing::info!("proxy stopped");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks.stop();
    }
}

/// Starts following the key topic: every replica publishes the keys it
/// creates (first those changed while it was down) and follows the others'.
fn start_key_topic(
    k: &KeyParts,
    kc: &crate::config::KeysConfig,
    dialer: &Arc<Dialer>,
    audit: &Option<gatehouse_audit::AuditLog>,
    tasks: &Arc<Tasks>,
    max_frame_bytes: usize,
) -> Result<tokio::sync::watch::Receiver<follower::FollowerStatus>, ProxyError> {
    let key_topic = Arc::new(KeyTopic::new(
        dialer.clone() as Arc<dyn Upstream>,
        max_frame_bytes,
        audit.clone(),
        kc.topic.clone(),
        k.keys.store().clone(),
        k.record_mac.clone(),
    ));
    let state = KeyTopicState::new(
        k.keys.store().clone(),
        &k.db,
        kc.topic.clone(),
        k.record_mac.clone(),
        audit.clone(),
    )
    .map_err(|e| ProxyError::Config(format!("key store: {e}")))?;
    let settings = Settings {
        max_frame_bytes,
        shutdown: tasks.stopping(),
    };
    let (status, task) =
        follower::follow(dialer.clone(), settings, kc.topic.clone(), Arc::new(state));
    key_topic.set_status(status.clone());
    let _ = k.keys.topic.set(key_topic.clone());
    let mut shutdown = tasks.stopping();
    tasks.spawn(async move {
        // Create the topic first (the follower would otherwise retry until
        // a produce creates it), then follow it.
        tokio::select! {
            r = key_topic.ensure_topic() => if let Err(e) = r {
                tracing::warn!(error = %e, "key topic not ready; produce to protected topics waits for it");
            },
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
        // Keys changed while the proxy was down (a KEK rotation) go out
        // before anything else.
        match key_topic.publish_pending().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "pending data keys published"),
            Err(e) => tracing::warn!(error = %e, "pending data keys not published yet"),
        }
        task.await;
    });
    Ok(status)
}

/// Starts following the erasure topic, and the eraser that runs the
/// workflows this replica is asked for (or takes over).
fn start_erasure(
    g: &Governance,
    k: &KeyParts,
    kc: &crate::config::KeysConfig,
    dialer: &Arc<Dialer>,
    audit: &Option<gatehouse_audit::AuditLog>,
    tasks: &Arc<Tasks>,
    max_frame_bytes: usize,
) -> Result<
    (
        Arc<Eraser>,
        tokio::sync::watch::Receiver<follower::FollowerStatus>,
    ),
    ProxyError,
> {
    let tree =
        k.db.open_tree("erasure")
            .map_err(|e| ProxyError::Config(format!("erasure state: {e}")))?;
    let state = Arc::new(
        Erasures::open(
            tree,
            k.audit_secret.clone(),
            kc.erasure_topic.clone(),
            k.record_mac.clone(),
        )
        .map_err(ProxyError::Config)?,
    );
    let eraser = Arc::new(Eraser::new(EraserParts {
        erasures: state.clone(),
        upstream: dialer.clone(),
        max_frame_bytes,
        mac: k.record_mac.clone(),
        keys: k.keys.clone(),
        provider: k.provider.clone(),
        catalog: g.catalog.clone(),
        audit: audit.clone(),
        replica: audit
            .as_ref()
            .map(|a| a.replica_id().to_string())
            .unwrap_or_else(|| "proxy".to_string()),
        stopping: tasks.stopping(),
        verify: kc.erasure_verify_as.is_some(),
    }));
    let settings = Settings {
        max_frame_bytes,
        shutdown: tasks.stopping(),
    };
    let (mut status, task) =
        follower::follow(dialer.clone(), settings, kc.erasure_topic.clone(), state);
    let watched = status.clone();
    let runner = eraser.clone();
    let mut shutdown = tasks.stopping();
    tasks.spawn(async move {
        if let Err(e) = runner.ensure_topic().await {
            tracing::warn!(error = %e, "erasure topic not ready yet");
        }
        let follow = tokio::spawn(task);
        // Once this replica has read every erasure, it resumes the
        // workflows left unfinished...
        tokio::select! {
            r = status.wait_for(|s| s.caught_up()) => if r.is_ok() {
                runner.resume();
            },
            _ = crate::tasks::stopped(&mut shutdown) => {},
        }
        // ...and from then on takes over those a replica that went away
        // left behind.
        let mut tick = tokio::time::interval(TAKEOVER_AFTER / 2);
        while !*shutdown.borrow() {
            tokio::select! {
                _ = tick.tick() => runner.resume(),
                _ = crate::tasks::stopped(&mut shutdown) => break,
            }
        }
        let _ = follow.await;
    });
    Ok((eraser, watched))
}

/// The directories the proxy writes, for `/readyz`: a full or read-only
/// disk there makes it not ready.
fn readiness_dirs(config: &ProxyConfig) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut dirs = Vec::new();
    if let Some(a) = &config.audit {
        dirs.push(("audit", a.dir.clone()));
    }
    if let Some(k) = &config.keys {
        dirs.push(("keys", k.state_dir.clone()));
    }
    if let Some(p) = &config.policy {
        dirs.push(("consent", p.state_dir.clone()));
    }
    dirs
}

/// Opens the audit trail of `[audit]`, if configured: it needs the key
/// provider of `[keys]`, which derives the subject-hash secret.
async fn open_audit(
    config: &ProxyConfig,
    governance: Option<&Governance>,
) -> Result<Option<gatehouse_audit::AuditLog>, ProxyError> {
    let Some(a) = &config.audit else {
        return Ok(None);
    };
    let (keys_config, secret) = match (&config.keys, governance.and_then(|g| g.keys.as_ref())) {
        (Some(kc), Some(k)) => (kc, k.audit_secret.clone()),
        _ => {
            return Err(ProxyError::Config(
                "[audit] needs [policy] and [keys]: subject ids are hashed with a secret of the key provider".into(),
            ))
        }
    };
    let signing = a.signing_key_file.clone().unwrap_or_else(|| {
        keys_config
            .key_file
            .parent()
            .map(|d| d.join("audit-signing.p8"))
            .unwrap_or_else(|| "audit-signing.p8".into())
    });
    let mut cfg = gatehouse_audit::AuditConfig::new(&a.dir, &a.replica_id, signing, secret);
    cfg.checkpoint_every = a.checkpoint_every;
    cfg.flush_interval = Duration::from_millis(a.flush_interval_ms.max(1));
    cfg.index_block_events = a.index_block_events;
    let log = gatehouse_audit::AuditLog::open(cfg)
        .await
        .map_err(|e| ProxyError::Config(format!("audit log {}: {e}", a.dir.display())))?;
    tracing::info!(dir = %a.dir.display(), replica = %a.replica_id, "audit trail open");
    Ok(Some(log))
}

/// What `[policy]` loads at start-up.
struct Governance {
    policies: Arc<gatehouse_policy::PolicyStore>,
    catalog: Arc<gatehouse_policy::Catalog>,
    consent: Arc<ConsentStore>,
    keys: Option<KeyParts>,
}

/// Field protection's keys and the sled database they live in.
struct KeyParts {
    keys: Arc<Keys>,
    db: sled::Db,
    /// The audit trail's subject-hash secret, derived from the provider.
    audit_secret: gatehouse_keys::Zeroizing<[u8; 32]>,
    /// Signs and verifies the key topic's records.
    record_mac: Arc<gatehouse_keys::StateRecordMac>,
    /// The key-encryption-key provider (it also seals subject ids while an
    /// erasure needs them).
    provider: Arc<dyn gatehouse_keys::KekProvider>,
}

impl KeyParts {
    fn open(k: &crate::config::KeysConfig) -> Result<Self, ProxyError> {
        let provider = gatehouse_keys::LocalKeyFile::open_or_create(&k.key_file)
            .map_err(|e| ProxyError::Config(format!("[keys] {e}")))?;
        let provider: Arc<dyn gatehouse_keys::KekProvider> = Arc::new(provider);
        std::fs::create_dir_all(&k.state_dir).map_err(|e| {
            ProxyError::Config(format!("keys state_dir {}: {e}", k.state_dir.display()))
        })?;
        // sled's page cache is bounded (its default is 1 GiB); the
        // unwrapped keys have their own bound (`cache_capacity`).
        let db = crate::cluster::open_sled(
            &sled::Config::new()
                .path(&k.state_dir)
                .cache_capacity(32 << 20),
        )
        .map_err(|e| ProxyError::Config(format!("key store {}: {e}", k.state_dir.display())))?;
        let tree = db
            .open_tree("keys")
            .map_err(|e| ProxyError::Config(format!("key store: {e}")))?;
        let store = gatehouse_keys::KeyStore::open(tree, provider.clone(), k.cache_capacity.max(1))
            .map_err(|e| ProxyError::Config(format!("key store: {e}")))?;
        let pseudonyms = gatehouse_keys::Pseudonymizer::new(provider.as_ref())
            .map_err(|e| ProxyError::Config(format!("pseudonym secret: {e}")))?;
        let audit_secret = gatehouse_keys::Zeroizing::new(
            provider
                .mac(gatehouse_audit::SUBJECT_SECRET_LABEL)
                .map_err(|e| ProxyError::Config(format!("audit subject secret: {e}")))?,
        );
        let record_mac = Arc::new(
            gatehouse_keys::StateRecordMac::new(provider.as_ref())
                .map_err(|e| ProxyError::Config(format!("key topic record MAC secret: {e}")))?,
        );
        Ok(Self {
            keys: Arc::new(Keys::new(store, pseudonyms)),
            db,
            audit_secret,
            record_mac,
            provider,
        })
    }
}

impl Governance {
    fn load(
        p: &crate::config::PolicyConfig,
        keys: Option<&crate::config::KeysConfig>,
    ) -> Result<Self, ProxyError> {
        let policies = gatehouse_policy::PolicyStore::load(&p.dir)
            .map_err(|e| ProxyError::Config(format!("policies in {}: {e}", p.dir.display())))?;
        let catalog_file = p
            .catalog_file
            .clone()
            .unwrap_or_else(|| p.dir.join("catalog.toml"));
        let catalog = gatehouse_policy::Catalog::load(&catalog_file)
            .map_err(|e| ProxyError::Config(format!("catalog {}: {e}", catalog_file.display())))?;
        std::fs::create_dir_all(&p.state_dir)
            .map_err(|e| ProxyError::Config(format!("state_dir {}: {e}", p.state_dir.display())))?;
        let consent = ConsentStore::open(p.state_dir.join("consent"))
            .map_err(|e| ProxyError::Config(format!("consent store: {e}")))?;
        tracing::info!(
            policies = %p.dir.display(),
            version = format!("{:016x}", policies.version()),
            topics = catalog.len(),
            subjects = consent.len(),
            "governance loaded"
        );
        let keys = keys.map(KeyParts::open).transpose()?;
        Ok(Self {
            policies: Arc::new(policies),
            catalog: Arc::new(catalog),
            consent: Arc::new(consent),
            keys,
        })
    }
}

/// Handles on the running governance parts, for status and tests.
#[derive(Debug)]
struct GovernanceHandles {
    /// The policy store.
    policies: Arc<gatehouse_policy::PolicyStore>,
    /// The consent follower.
    follower: ConsentFollower,
    /// Field protection keys, when `[keys]` is configured.
    keys: Option<Arc<Keys>>,
    /// The view cache of protected topics (`[limits] view_cache_bytes`).
    views: Option<Arc<crate::filter::view_cache::ViewCache>>,
}

/// Reloads the policy directory when its files change; an invalid set is
/// refused (logged) and the old one stays in force.
/// How often the credentials file is looked at (its metadata; it is read
/// only when that changed).
const CREDENTIALS_CHECK: Duration = Duration::from_secs(2);

/// Puts a changed credentials file in force, and says what changed (user
/// names added, removed, changed); a file that cannot be read leaves the
/// old users in force.
async fn watch_credentials(
    auth: Arc<crate::auth::Authenticator>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let a = auth.clone();
                let reloaded = tokio::task::spawn_blocking(move || a.reload_credentials_if_changed()).await;
                match reloaded {
                    Ok(Ok(Some(changes))) => tracing::info!(%changes, "credentials file reloaded"),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "new credentials file refused; keeping the old users"),
                    Err(e) => tracing::error!(error = %e, "credentials reload task failed"),
                }
            }
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}

async fn watch_policies(
    policies: Arc<gatehouse_policy::PolicyStore>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    audit: Option<gatehouse_audit::AuditLog>,
) {
    let fingerprint =
        |dir: &std::path::Path| -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>, u64)> {
            let mut v: Vec<_> = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| {
                            let m = e.metadata().ok();
                            (
                                e.path(),
                                m.as_ref().and_then(|m| m.modified().ok()),
                                m.map(|m| m.len()).unwrap_or(0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
    // No fingerprint yet: the first tick re-reads the directory, so a change
    // made between the initial load and this task's start is not missed (a
    // reload of unchanged files keeps the active set and its plans).
    let mut last = None;
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Some(fingerprint(policies.dir()));
                if now == last {
                    continue;
                }
                last = now;
                let before = policies.version();
                let event = match policies.reload() {
                    Ok(version) if version == before => None,
                    Ok(version) => {
                        tracing::info!(version = format!("{version:016x}"), "policies reloaded");
                        Some(gatehouse_audit::EventKind::PolicyReload {
                            policy_hash: format!("{version:016x}"),
                            trigger: "policy directory changed".into(),
                            accepted: true,
                            message: None,
                        })
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "new policies refused; the previous set stays in force");
                        Some(gatehouse_audit::EventKind::PolicyReload {
                            policy_hash: format!("{before:016x}"),
                            trigger: "policy directory changed".into(),
                            accepted: false,
                            message: Some(e.to_string()),
                        })
                    }
                };
                if let (Some(log), Some(event)) = (&audit, event) {
                    if let Err(e) = log.append(event).await {
                        tracing::error!(error = %e, "audit log unavailable: policy reload not recorded");
                    }
                }
            }
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}

/// The metrics read when scraped: open connections, the policy store's
/// plan cache and record decisions, each follower's lag, the audit queue.
fn observe(
    metrics: &crate::metrics::ProxyMetrics,
    front: &Arc<Front>,
    policies: Option<Arc<gatehouse_policy::PolicyStore>>,
    followers: &[(
        &'static str,
        tokio::sync::watch::Receiver<crate::cluster::follower::FollowerStatus>,
    )],
    audit: Option<gatehouse_audit::AuditLog>,
) {
    use gatehouse_telemetry::KeyValue;
    // The gauges hold the semaphores only, not the front (whose filters
    // hold stores that must close when the proxy stops).
    let in_use = |sem: &Arc<tokio::sync::Semaphore>, max: usize| {
        let sem = sem.clone();
        move || vec![(max.saturating_sub(sem.available_permits()) as i64, vec![])]
    };
    metrics.gauge(
        "gatehouse.proxy.connections",
        "Client connections open",
        in_use(&front.connections, front.limits.max_connections),
    );
    metrics.gauge(
        "gatehouse.proxy.buffered_bytes",
        "Bytes of large client requests held (read or waiting to be forwarded), against limits.max_buffered_bytes",
        in_use(&front.buffered, front.limits.max_buffered_bytes),
    );
    if let Some(p) = policies {
        let counters = p.live_counters();
        metrics.counted(
            "gatehouse.proxy.policy.plans",
            "Topic plan lookups, by cache result (hit, miss)",
            move || {
                let s = counters.snapshot();
                vec![
                    (s.plan_hits, vec![KeyValue::new("cache", "hit")]),
                    (s.plan_misses, vec![KeyValue::new("cache", "miss")]),
                ]
            },
        );
        let counters = p.live_counters();
        metrics.counted(
            "gatehouse.proxy.policy.evaluations",
            "Cedar evaluations (decisions not served from a plan or memo)",
            move || vec![(counters.snapshot().evaluations, vec![])],
        );
        let counters = p.live_counters();
        metrics.counted(
            "gatehouse.proxy.policy.record_decisions",
            "Per-record consent and residency decisions",
            move || vec![(counters.snapshot().records_decided, vec![])],
        );
    }
    for (name, status) in followers {
        let status = status.clone();
        let name = *name;
        metrics.gauge(
            "gatehouse.proxy.follower.lag",
            "Records of an internal topic not yet read (consent, keys, erasure)",
            move || {
                let s = status.borrow();
                let lag: i64 = s
                    .partitions
                    .values()
                    .map(|p| (p.end_offset - p.next_offset).max(0))
                    .sum();
                vec![(lag, vec![KeyValue::new("follower", name)])]
            },
        );
        let status = followers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone());
        if let Some(status) = status {
            metrics.gauge(
                "gatehouse.proxy.follower.caught_up",
                "1 when a follower has read its topic to the end",
                move || {
                    vec![(
                        i64::from(status.borrow().caught_up()),
                        vec![KeyValue::new("follower", name)],
                    )]
                },
            );
        }
    }
    if let Some(log) = audit {
        metrics.gauge(
            "gatehouse.proxy.audit.backlog",
            "Audit appends queued for the writer",
            move || vec![(log.backlog() as i64, vec![])],
        );
    }
}
