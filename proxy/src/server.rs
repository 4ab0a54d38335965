//! Listeners, the connection limit, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::filter::{Filter, Target};
use crate::filters;
use crate::routes::Routes;
use crate::session;

/// State shared by all listeners and sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub filters: Vec<Arc<dyn Filter>>,
    pub routes: Routes,
    pub connections: Arc<Semaphore>,
    /// `true` once shutdown began: listeners stop, sessions drain.
    pub shutdown: watch::Sender<bool>,
    pub tasks: std::sync::Mutex<JoinSet<()>>,
    /// SASL at the proxy, if configured.
    pub authenticator: Option<crate::auth::Authenticator>,
    /// Policies, consent and its follower, when `[policy]` is configured.
    pub governance: std::sync::Mutex<Option<GovernanceHandles>>,
    /// TLS on the client listeners, if configured.
    pub tls_server: Option<Arc<crate::tls::TlsServer>>,
    /// The proxy's SASL credentials for the cluster, if configured.
    pub upstream_sasl: Option<crate::upstream::Credentials>,
    /// TLS towards the cluster, if configured.
    pub upstream_tls: Option<crate::tls::UpstreamTls>,
    /// The audit trail, if configured.
    pub audit: Option<gatehouse_audit::AuditLog>,
}

impl Shared {
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so the set does not grow with every connection.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    bootstrap: SocketAddr,
    admin: Option<SocketAddr>,
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
        let tls_server = match &config.listener.tls {
            Some(t) => Some(Arc::new(crate::tls::TlsServer::load(t)?)),
            None => None,
        };
        let authenticator = match &config.auth {
            Some(a) => Some(crate::auth::Authenticator::load(a)?),
            None => None,
        };
        let sasl_enabled = authenticator.is_some();
        let upstream_sasl = match &config.upstream.sasl {
            Some(s) => Some(crate::upstream::Credentials::load(s)?),
            None => None,
        };
        let upstream_tls = match &config.upstream.tls {
            Some(t) => Some(crate::tls::connector(t)?),
            None => None,
        };
        let bind = config.listener.bind;
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| ProxyError::Bind { addr: bind, source })?;
        let bootstrap = listener
            .local_addr()
            .map_err(|source| ProxyError::Bind { addr: bind, source })?;
        let admin_listener = crate::admin::bind(&config).await?;
        let governance = match &config.policy {
            Some(p) => Some(Governance::load(p, config.keys.as_ref())?),
            None => None,
        };
        let audit = match &config.audit {
            Some(a) => {
                let (keys_config, secret) = match (&config.keys, governance.as_ref().and_then(|g| g.keys.as_ref())) {
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
                let mut cfg =
                    gatehouse_audit::AuditConfig::new(&a.dir, &a.replica_id, signing, secret);
                cfg.checkpoint_every = a.checkpoint_every;
                cfg.flush_interval = Duration::from_millis(a.flush_interval_ms.max(1));
                cfg.index_block_events = a.index_block_events;
                let log = gatehouse_audit::AuditLog::open(cfg).await.map_err(|e| {
                    ProxyError::Config(format!("audit log {}: {e}", a.dir.display()))
                })?;
                tracing::info!(dir = %a.dir.display(), replica = %a.replica_id, "audit trail open");
                Some(log)
            }
            None => None,
        };
        let shared = Arc::new_cyclic(|weak| {
            let mut chain: Vec<Arc<dyn Filter>> = vec![
                Arc::new(filters::ApiVersions::new(Vec::new(), sasl_enabled)),
                Arc::new(filters::BrokerAddress::new(weak.clone())),
            ];
            if let Some(g) = &governance {
                if let Some(log) = &audit {
                    // Early in the chain: its response half runs last, on
                    // what the client will actually receive.
                    chain.push(Arc::new(crate::audit::Audit::new(
                        log.clone(),
                        Some(g.policies.clone()),
                        g.catalog.clone(),
                    )));
                }
                chain.push(Arc::new(
                    crate::governance::Authz::new(g.policies.clone(), g.catalog.clone())
                        .with_audit(audit.clone()),
                ));
                // Protected topics: consent and fields in one pass over
                // their records; the consent filter does the other
                // governed topics.
                let protection = Arc::new(
                    crate::protect::Protection::new(
                        g.policies.clone(),
                        g.catalog.clone(),
                        g.keys.as_ref().map(|k| k.keys.clone()),
                    )
                    .with_consent(g.consent.clone())
                    .with_audit(audit.clone()),
                );
                chain.push(protection.clone());
                chain.push(Arc::new(
                    crate::governance::Consent::new(
                        g.policies.clone(),
                        g.catalog.clone(),
                        g.consent.clone(),
                    )
                    .leaving_to(protection)
                    .validating(
                        config
                            .policy
                            .as_ref()
                            .map_or("", |p| p.consent_topic.as_str()),
                        audit.clone(),
                    ),
                ));
            }
            chain.extend(extra);
            // The ApiVersions filter caps versions for the APIs that any
            // filter decodes; it is rebuilt with the full chain's needs.
            let decoded = filters::decoded_apis(&chain);
            chain[0] = Arc::new(filters::ApiVersions::new(decoded, sasl_enabled).with_caps(&chain));
            Shared {
                connections: Arc::new(Semaphore::new(config.limits.max_connections)),
                config,
                filters: chain,
                routes: Routes::default(),
                shutdown: watch::channel(false).0,
                tasks: std::sync::Mutex::new(JoinSet::new()),
                tls_server,
                upstream_tls,
                authenticator,
                upstream_sasl,
                governance: std::sync::Mutex::new(None),
                audit: audit.clone(),
            }
        });
        if let Some(tls) = shared.tls_server.clone() {
            shared.spawn(watch_certificates(tls, shared.shutdown.subscribe()));
        }
        let admin_parts = governance
            .as_ref()
            .map(|g| (g.policies.clone(), g.catalog.clone()));
        if let Some(g) = governance {
            if let Some(k) = &g.keys {
                let kc = shared.config.keys.as_ref().map(|c| c.topic.clone());
                let topic = kc.unwrap_or_default();
                let key_topic = Arc::new(crate::keytopic::KeyTopic::new(
                    shared.clone(),
                    topic.clone(),
                    k.keys.store().clone(),
                    k.record_mac.clone(),
                ));
                let state = crate::keytopic::KeyTopicState::new(
                    k.keys.store().clone(),
                    &k.db,
                    topic.clone(),
                    k.record_mac.clone(),
                    shared.audit.clone(),
                )
                .map_err(|e| ProxyError::Config(format!("key store: {e}")))?;
                let (status, task) = crate::consent::follow(shared.clone(), topic, Arc::new(state));
                key_topic.set_status(status);
                let _ = k.keys.topic.set(key_topic.clone());
                let mut shutdown = shared.shutdown.subscribe();
                shared.spawn(async move {
                    // Create the topic first (the follower would otherwise
                    // retry until a produce creates it), then follow it.
                    tokio::select! {
                        r = key_topic.ensure_topic() => if let Err(e) = r {
                            tracing::warn!(error = %e, "key topic not ready; produce to protected topics waits for it");
                        },
                        _ = shutdown.changed() => return,
                    }
                    // Keys changed while the proxy was down (a KEK rotation)
                    // go out before anything else.
                    match key_topic.publish_pending().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(keys = n, "pending data keys published"),
                        Err(e) => tracing::warn!(error = %e, "pending data keys not published yet"),
                    }
                    task.await;
                });
            }
            let topic = shared
                .config
                .policy
                .as_ref()
                .map(|p| p.consent_topic.clone())
                .unwrap_or_default();
            let (follower, task) =
                crate::consent::ConsentFollower::new(shared.clone(), topic, g.consent.clone());
            shared.spawn(task);
            let interval = shared
                .config
                .policy
                .as_ref()
                .map(|p| Duration::from_secs(p.reload_interval_secs.max(1)))
                .unwrap_or(Duration::from_secs(2));
            shared.spawn(watch_policies(
                g.policies.clone(),
                interval,
                shared.shutdown.subscribe(),
                shared.audit.clone(),
            ));
            *shared.governance.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(GovernanceHandles {
                    policies: g.policies,
                    consent: g.consent,
                    follower,
                    keys: g.keys.map(|k| k.keys),
                });
        }
        tracing::info!(
            %bootstrap,
            upstream = ?shared.config.upstream.bootstrap_servers,
            filters = ?shared.filters.iter().map(|f| f.name()).collect::<Vec<_>>(),
            "proxy started"
        );
        spawn_listener(shared.clone(), listener, Target::Bootstrap);
        let admin = match (admin_listener, admin_parts) {
            (Some(l), Some((policies, catalog))) => {
                match crate::admin::serve(shared.clone(), l, policies, catalog) {
                    Ok(addr) => Some(addr),
                    Err(e) => {
                        shared.shutdown.send_replace(true);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        Ok(Self {
            shared,
            bootstrap,
            admin,
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

    /// Broker nodes seen so far: (node id, proxy port, upstream address).
    pub fn node_routes(&self) -> Vec<(i32, u16, String)> {
        self.shared
            .routes
            .snapshot()
            .into_iter()
            .map(|(n, r)| (n, r.proxy_port, r.upstream))
            .collect()
    }

    /// Waits (up to `limit`) until the consent follower has read the
    /// consent topic up to its end; `false` on timeout or without `[policy]`.
    pub async fn consent_caught_up(&self, limit: Duration) -> bool {
        let rx = self
            .shared
            .governance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|g| g.follower.subscribe());
        let Some(mut rx) = rx else {
            return false;
        };
        tokio::time::timeout(limit, async {
            loop {
                if rx.borrow_and_update().caught_up() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// The policy store, when `[policy]` is configured.
    pub fn policies(&self) -> Option<Arc<gatehouse_policy::PolicyStore>> {
        self.shared
            .governance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|g| g.policies.clone())
    }

    /// Field protection's keys, when `[policy]` and `[keys]` are
    /// configured.
    pub fn keys(&self) -> Option<Arc<crate::protect::Keys>> {
        self.shared
            .governance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|g| g.keys.clone())
    }

    /// Client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.shared.config.limits.max_connections - self.shared.connections.available_permits()
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace
    /// period), then closes every connection.
    pub async fn shutdown(self) {
        self.shared.shutdown.send_replace(true);
        let grace = Duration::from_secs(self.shared.config.limits.shutdown_grace_secs);
        let mut tasks =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            tasks.shutdown().await;
        }
        if let Some(log) = &self.shared.audit {
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
        tracing::info!("proxy stopped");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

pub(crate) fn spawn_listener(shared: Arc<Shared>, listener: TcpListener, target: Target) {
    let s = shared.clone();
    shared.spawn(accept_loop(s, listener, target));
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, target: Target) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = shared.config.limits.max_connections, "connection limit reached; closing new connection");
                        drop(sock);
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    let s = shared.clone();
                    shared.spawn(async move {
                        if let Some((stream, principal)) = handshake(&s, sock, peer).await {
                            session::run(s, stream, peer, target, principal).await;
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// TLS handshake (when configured); a client certificate names the
/// principal. `None` when the handshake failed (logged).
async fn handshake(
    shared: &Shared,
    sock: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(session::BoxStream, Option<crate::principal::Principal>)> {
    let Some(tls) = &shared.tls_server else {
        return Some((Box::new(sock), None));
    };
    let accepted = tokio::time::timeout(Duration::from_secs(10), tls.acceptor().accept(sock)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(crate::tls::certificate_principal)
        .map(|name| crate::principal::Principal {
            name,
            method: crate::principal::AuthMethod::Certificate,
            attributes: Default::default(),
        });
    if let Some(p) = &principal {
        tracing::info!(%peer, principal = %p.name, "client certificate accepted");
    }
    Some((Box::new(stream), principal))
}

async fn watch_certificates(tls: Arc<crate::tls::TlsServer>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(tls.reload_interval());
    loop {
        tokio::select! {
            _ = tick.tick() => match tls.reload_if_changed() {
                Ok(true) => tracing::info!("TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "new TLS certificate refused; keeping the old one"),
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// What `[policy]` loads at start-up.
struct Governance {
    policies: Arc<gatehouse_policy::PolicyStore>,
    catalog: Arc<gatehouse_policy::Catalog>,
    consent: Arc<crate::consent::ConsentStore>,
    keys: Option<KeyParts>,
}

/// The label the audit trail's subject-hash secret is derived from (with
/// the key provider's MAC): the same on every replica and for
/// `gatehouse audit`.
pub const AUDIT_SUBJECT_LABEL: &[u8] = b"gatehouse audit subject v1";

/// Field protection's keys and the sled database they live in.
struct KeyParts {
    keys: Arc<crate::protect::Keys>,
    db: sled::Db,
    /// The audit trail's subject-hash secret, derived from the provider.
    audit_secret: gatehouse_keys::Zeroizing<[u8; 32]>,
    /// Signs and verifies the key topic's records.
    record_mac: Arc<gatehouse_keys::StateRecordMac>,
}

impl KeyParts {
    fn open(k: &crate::config::KeysConfig) -> Result<Self, ProxyError> {
        let provider = gatehouse_keys::LocalKeyFile::open_or_create(&k.key_file)
            .map_err(|e| ProxyError::Config(format!("key file {}: {e}", k.key_file.display())))?;
        let provider: Arc<dyn gatehouse_keys::KekProvider> = Arc::new(provider);
        std::fs::create_dir_all(&k.state_dir).map_err(|e| {
            ProxyError::Config(format!("keys state_dir {}: {e}", k.state_dir.display()))
        })?;
        let db = crate::consent::open_sled(&sled::Config::new().path(&k.state_dir))
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
                .mac(AUDIT_SUBJECT_LABEL)
                .map_err(|e| ProxyError::Config(format!("audit subject secret: {e}")))?,
        );
        let record_mac = Arc::new(
            gatehouse_keys::StateRecordMac::new(provider.as_ref())
                .map_err(|e| ProxyError::Config(format!("key topic record MAC secret: {e}")))?,
        );
        Ok(Self {
            keys: Arc::new(crate::protect::Keys::new(store, pseudonyms)),
            db,
            audit_secret,
            record_mac,
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
        let consent = crate::consent::ConsentStore::open(p.state_dir.join("consent"))
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
pub struct GovernanceHandles {
    /// The policy store.
    pub policies: Arc<gatehouse_policy::PolicyStore>,
    /// The consent store.
    pub consent: Arc<crate::consent::ConsentStore>,
    /// The consent follower.
    pub follower: crate::consent::ConsentFollower,
    /// Field protection keys, when `[keys]` is configured.
    pub keys: Option<Arc<crate::protect::Keys>>,
}

/// Reloads the policy directory when its files change; an invalid set is
/// refused (logged) and the old one stays in force.
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
            _ = shutdown.changed() => return,
        }
    }
}
