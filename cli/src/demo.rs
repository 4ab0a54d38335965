//! The embedded default: the broker Gatehouse ships, on a local data
//! directory with the demo world's topics, and the proxy in front of it.
//! Clients use the proxy's address; the broker's own address is printed
//! too, for looking behind the proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use gatehouse_broker::{Broker, BrokerConfig, BrokerError, KafkaCode};
use gatehouse_proxy::{Proxy, ProxyConfig, ProxyError};

/// The demo world's topics: (name, partitions, cleanup policy).
pub const DEMO_TOPICS: &[(&str, i32, &str)] = &[
    ("social.posts", 3, "delete"),
    ("social.profiles", 3, "compact"),
    ("support.tickets", 3, "delete"),
    ("consent.events", 3, "compact"),
    ("enrich.sentiment", 3, "delete"),
];

/// Where the demo listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoAddrs {
    /// The proxy's bootstrap address (what clients use).
    pub proxy: SocketAddr,
    /// The proxy's port for broker node N is `node_port_base + N` (0: any).
    pub node_port_base: u16,
    /// The broker's own address.
    pub broker: SocketAddr,
    /// The proxy's admin listener (the auditor page and API, erasure).
    pub admin: SocketAddr,
}

impl DemoAddrs {
    /// All on 127.0.0.1: the proxy on `port`, node ports right after it,
    /// the broker on `broker_port`, the admin listener on `admin_port`.
    pub fn local(port: u16, broker_port: u16, admin_port: u16) -> Self {
        let ip = [127, 0, 0, 1];
        Self {
            proxy: SocketAddr::from((ip, port)),
            node_port_base: if port == 0 { 0 } else { port.saturating_add(1) },
            broker: SocketAddr::from((ip, broker_port)),
            admin: SocketAddr::from((ip, admin_port)),
        }
    }
}

/// The demo's brokers: how many, and where their data lives.
#[derive(Debug, Clone)]
pub struct DemoCluster {
    /// Brokers (node ids 0..N), in this process, sharing one store.
    pub brokers: i32,
    /// The store: `None` for the demo's data directory, or a URL such as
    /// `s3://bucket/prefix`.
    pub store: Option<String>,
    /// Object store settings (`aws_endpoint=…`, `aws_allow_http=true`).
    pub store_options: Vec<(String, String)>,
    /// The proxy's `[telemetry]`, and the brokers' metrics push: where
    /// metrics (and, with the process's trace exporter, the proxy's
    /// traces) are pushed over OTLP.
    pub telemetry: Option<gatehouse_telemetry::TelemetryConfig>,
}

impl Default for DemoCluster {
    fn default() -> Self {
        Self {
            brokers: 1,
            store: None,
            store_options: Vec::new(),
            telemetry: None,
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The broker failed.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The proxy failed.
    #[error("proxy: {0}")]
    Proxy(#[from] ProxyError),
    /// The demo's identities could not be set up.
    #[error("demo identities: {0}")]
    Identities(String),
}

/// The demo world's principals: (name, team, region, purposes).
pub const DEMO_PRINCIPALS: &[(&str, &str, &str, &[&str])] = &[
    ("ingest", "platform", "eu", &[]),
    ("trust-safety", "trust_safety", "eu", &["moderation"]),
    ("analytics", "analytics", "eu", &["analytics"]),
    ("marketing-us", "marketing", "us", &["marketing"]),
    ("support", "support", "eu", &["support"]),
    ("auditor", "compliance", "eu", &["audit"]),
    ("privacy", "privacy", "eu", &["erasure"]),
];

/// The principal the erasure workflow verifies as (policies/default/
/// erasure.cedar): in the credentials file without a password, so that no
/// PLAIN or SCRAM login as it succeeds; its permits also require the
/// `auth` tag "internal", which only the proxy's own reads carry.
pub const ERASURE_VERIFIER: &str = "erasure-verifier";

/// Issuer and audience of the demo's JWTs.
pub const DEMO_ISSUER: &str = "https://gatehouse.demo";
/// Audience of the demo's JWTs.
pub const DEMO_AUDIENCE: &str = "gatehouse";

fn id_err(what: &str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Identities(format!("{what}: {e}"))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), DemoError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).map_err(|e| id_err(&path.display().to_string(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| id_err(&path.display().to_string(), e))
}

fn random_password() -> Result<String, DemoError> {
    use base64::Engine;
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|e| id_err("random", e))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Creates (once) the demo's users with random passwords, a client
/// settings file per principal (`clients/<name>.properties`, for `kcat -F`),
/// an ES256 key for the demo's token issuer, and a JWT for `analytics`
/// (`clients/analytics.jwt`, valid for a day, renewed at every start).
pub fn ensure_identities(data: &Path) -> Result<(), DemoError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let clients = data.join("clients");
    std::fs::create_dir_all(&clients).map_err(|e| id_err("clients directory", e))?;
    let users = data.join("users.toml");
    if !users.exists() {
        let mut store = gatehouse_sasl::CredentialStore::new();
        for (name, team, region, purposes) in DEMO_PRINCIPALS {
            let password = random_password()?;
            let attributes = BTreeMap::from([
                (
                    "team".to_string(),
                    gatehouse_sasl::AttributeValue::String(team.to_string()),
                ),
                (
                    "region".to_string(),
                    gatehouse_sasl::AttributeValue::String(region.to_string()),
                ),
                (
                    "purposes".to_string(),
                    gatehouse_sasl::AttributeValue::List(
                        purposes.iter().map(|p| p.to_string()).collect(),
                    ),
                ),
            ]);
            let user = gatehouse_sasl::User::new_with_password(*name, &password, 4096, attributes)
                .map_err(|e| id_err(name, e))?;
            store.insert(user).map_err(|e| id_err(name, e))?;
            let settings = format!(
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username={name}\nsasl.password={password}\n"
            );
            write_private(
                &clients.join(format!("{name}.properties")),
                settings.as_bytes(),
            )?;
        }
        let text = store.to_toml().map_err(|e| id_err("users.toml", e))?;
        write_private(&users, text.as_bytes())?;
    }
    // The erasure verifier, added to demo data made before it existed too.
    let mut store =
        gatehouse_sasl::CredentialStore::load(&users).map_err(|e| id_err("users.toml", e))?;
    if store.user(ERASURE_VERIFIER).is_none() {
        let attributes = BTreeMap::from([
            ("team".to_string(), "privacy".into()),
            ("region".to_string(), "eu".into()),
            (
                "purposes".to_string(),
                vec!["erasure_verification".to_string()].into(),
            ),
        ]);
        store
            .insert(gatehouse_sasl::User {
                name: ERASURE_VERIFIER.to_string(),
                attributes,
                scram_sha_256: None,
                scram_sha_512: None,
            })
            .map_err(|e| id_err(ERASURE_VERIFIER, e))?;
        let text = store.to_toml().map_err(|e| id_err("users.toml", e))?;
        write_private(&users, text.as_bytes())?;
    }
    let key_path = data.join("jwt-issuer.p8");
    if !key_path.exists() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| id_err("issuer key", e))?;
        write_private(&key_path, pkcs8.as_ref())?;
    }
    let pkcs8 = std::fs::read(&key_path).map_err(|e| id_err("issuer key", e))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
        .map_err(|e| id_err("issuer key", e))?;
    let spki = pair
        .public_key()
        .as_der()
        .map_err(|e| id_err("issuer key", e))?;
    std::fs::write(
        data.join("jwt-issuer.pub.pem"),
        pem("PUBLIC KEY", spki.as_ref()),
    )
    .map_err(|e| id_err("issuer public key", e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "sub": "analytics", "iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE,
        "iat": now, "exp": now + 86_400,
        "team": "analytics", "region": "eu", "purposes": ["analytics"],
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&pkcs8),
    )
    .map_err(|e| id_err("analytics token", e))?;
    write_private(&clients.join("analytics.jwt"), token.as_bytes())?;
    Ok(())
}

fn demo_auth(data: &Path) -> Result<gatehouse_proxy::auth::AuthConfig, DemoError> {
    let oauth = format!(
        "issuer = \"{DEMO_ISSUER}\"\naudience = [\"{DEMO_AUDIENCE}\"]\n\
         [attribute_claims]\nteam = \"team\"\nregion = \"region\"\npurposes = \"purposes\"\n\
         [[keys]]\nalgorithm = \"ES256\"\npem_file = {:?}\n",
        data.join("jwt-issuer.pub.pem").to_string_lossy()
    );
    let oauthbearer = toml::from_str(&oauth).map_err(|e| id_err("oauth config", e))?;
    Ok(gatehouse_proxy::auth::AuthConfig {
        mechanisms: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
            .map(String::from)
            .to_vec(),
        credentials_file: Some(data.join("users.toml")),
        oauthbearer: Some(oauthbearer),
        session_lifetime_secs: None,
        max_failure_delay_ms: 5_000,
        accept_client_certificates: false,
    })
}

/// A running demo.
#[derive(Debug)]
pub struct Demo {
    /// The broker (node 0).
    pub broker: Broker,
    /// The other brokers of the cluster, if more than one.
    pub others: Vec<Broker>,
    /// The proxy in front of it.
    pub proxy: Proxy,
}

impl Demo {
    /// The address clients use: the proxy.
    pub fn bootstrap(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The broker's own address (bypassing Gatehouse).
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// The admin listener's address: the auditor page and API, erasure.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.proxy.admin_addr()
    }

    /// The HTTP listener of broker 0: its `/metrics`, `/healthz` and
    /// `/readyz`.
    pub fn broker_admin_addr(&self) -> Option<SocketAddr> {
        self.broker.admin_addr()
    }

    /// Every broker's metrics and probes listener, node 0 first.
    pub fn broker_admin_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(&self.broker)
            .chain(&self.others)
            .filter_map(Broker::admin_addr)
            .collect()
    }

    /// Every broker's own address, node 0 first.
    pub fn broker_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(&self.broker)
            .chain(&self.others)
            .map(Broker::local_addr)
            .collect()
    }

    /// Stops the proxy (draining in-flight requests), then the brokers.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        self.proxy.shutdown().await;
        for b in self.others.into_iter().rev() {
            b.shutdown().await?;
        }
        self.broker.shutdown().await?;
        Ok(())
    }
}

/// Starts the broker with its data under `data`, creates the demo topics
/// that do not exist yet, and starts the proxy in front of it.
pub async fn start(data: &Path, addrs: DemoAddrs) -> Result<Demo, DemoError> {
    start_cluster(data, addrs, &DemoCluster::default()).await
}

/// The demo on `cluster.brokers` brokers sharing one store (broker N on
/// the broker port + N), with partitions spread over them.
pub async fn start_cluster(
    data: &Path,
    addrs: DemoAddrs,
    cluster: &DemoCluster,
) -> Result<Demo, DemoError> {
    let lease = if cluster.brokers > 1 {
        std::time::Duration::from_secs(3)
    } else {
        BrokerConfig::default().lease
    };
    let config = |node: i32| BrokerConfig {
        node_id: node,
        listen: if addrs.broker.port() == 0 {
            addrs.broker
        } else {
            SocketAddr::new(
                addrs.broker.ip(),
                addrs
                    .broker
                    .port()
                    .saturating_add(u16::try_from(node).unwrap_or(0)),
            )
        },
        data: cluster
            .store
            .clone()
            .unwrap_or_else(|| data.join("broker").to_string_lossy().into_owned()),
        store_options: cluster.store_options.clone(),
        auto_create_topics: true,
        default_partitions: 3,
        lease,
        // Metrics and probes of each broker, on a free port.
        admin_listen: Some(SocketAddr::new(addrs.broker.ip(), 0)),
        // The brokers push their metrics where the proxy pushes its own.
        telemetry: cluster.telemetry.clone().unwrap_or_default(),
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config(0)).await?;
    let mut others = Vec::new();
    for node in 1..cluster.brokers.max(1) {
        others.push(Broker::start(config(node)).await?);
    }
    // Topics are spread over the brokers live when they are created.
    let want = usize::try_from(cluster.brokers.max(1)).unwrap_or(1);
    let deadline = tokio::time::Instant::now() + lease * 2;
    while broker.live_brokers().len() < want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (name, partitions, policy) in DEMO_TOPICS {
        let configs = BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())]);
        match broker.create_topic(name, *partitions, configs).await {
            Ok(()) => tracing::info!(topic = name, "demo topic created"),
            Err(BrokerError::Refused {
                code: KafkaCode::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    ensure_identities(data)?;
    let policies = data.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(&policies).map_err(|e| id_err("policies directory", e))?;
        for (name, text) in gatehouse_policy::DEFAULT_POLICY_FILES {
            std::fs::write(policies.join(name), text).map_err(|e| id_err(name, e))?;
        }
    }
    let mut proxy_config = ProxyConfig::new(addrs.proxy, broker.local_addr().to_string());
    proxy_config.upstream.bootstrap_servers = std::iter::once(&broker)
        .chain(&others)
        .map(|b| b.local_addr().to_string())
        .collect();
    proxy_config.listener.node_port_base = addrs.node_port_base;
    proxy_config.auth = Some(demo_auth(data)?);
    proxy_config.policy = Some(gatehouse_proxy::config::PolicyConfig {
        dir: policies,
        catalog_file: None,
        reload_interval_secs: 2,
        consent_topic: "consent.events".to_string(),
        state_dir: data.join("proxy"),
    });
    proxy_config.keys = Some(gatehouse_proxy::config::KeysConfig {
        key_file: data.join("keys").join("kek.toml"),
        state_dir: data.join("proxy").join("keys"),
        topic: "_gatehouse.keys".to_string(),
        erasure_topic: "_gatehouse.erasure".to_string(),
        erasure_verify_as: Some(ERASURE_VERIFIER.to_string()),
        cache_capacity: 100_000,
    });
    proxy_config.audit = Some(gatehouse_proxy::config::AuditSection {
        dir: data.join("audit"),
        replica_id: "demo".to_string(),
        signing_key_file: None,
        checkpoint_every: 1000,
        flush_interval_ms: 2,
        index_block_events: 4096,
    });
    proxy_config.admin = Some(gatehouse_proxy::config::AdminSection {
        bind: addrs.admin,
        replica_dirs: Vec::new(),
    });
    proxy_config.telemetry = cluster.telemetry.clone();
    let proxy = Proxy::start(proxy_config).await?;
    Ok(Demo {
        broker,
        others,
        proxy,
    })
}
