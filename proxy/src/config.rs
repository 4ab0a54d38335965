//! Proxy configuration, read from TOML.
//!
//! ```toml
//! [listener]
//! bind = "0.0.0.0:9192"            # the bootstrap address clients use
//! advertised_host = "kafka.example.net"
//! node_port_base = 9200            # broker node N is reached on port 9200 + N
//!
//! [upstream]
//! bootstrap_servers = ["broker-1:9092", "broker-2:9092"]
//!
//! [limits]
//! max_connections = 10000
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ProxyError;

/// The whole proxy configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listener: ListenerConfig,
    /// The cluster behind the proxy.
    pub upstream: UpstreamConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Client authentication (SASL); none by default.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
    /// Cedar policies, the topic catalog and consent; without this section
    /// the proxy is transparent.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Field protection keys; with `[policy]` but without this section,
    /// topics with protected fields refuse produce (fail closed).
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    /// The audit trail; needs `[policy]` and `[keys]` (subject ids are
    /// hashed with a secret derived from the key provider, the same on
    /// every replica).
    #[serde(default)]
    pub audit: Option<AuditSection>,
    /// The auditors' HTTP listener; off without this section. Needs
    /// `[audit]` (what it serves) and `[auth]` with a credentials file (who
    /// may ask).
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// Metrics and traces over OTLP (`/metrics` on the admin listener
    /// answers without it).
    #[serde(default)]
    pub telemetry: Option<gatehouse_telemetry::TelemetryConfig>,
}

/// `[admin]`: the HTTP listener auditors use (the audit API and the
/// auditor page, see [`crate::admin`]).
///
/// ```toml
/// [admin]
/// bind = "127.0.0.1:9180"
/// replica_dirs = ["/var/lib/gatehouse/audit-proxy-2"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the listener binds (plain HTTP: bind it to a loopback or
    /// management address, or put TLS in front of it).
    pub bind: SocketAddr,
    /// Audit directories of other replicas, read along with this
    /// replica's own `[audit] dir`.
    #[serde(default)]
    pub replica_dirs: Vec<std::path::PathBuf>,
}

/// `[audit]`: where this replica writes its audit chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// This replica's chain (segments, signed head, index).
    pub dir: std::path::PathBuf,
    /// The replica id written into every event; give each replica its own.
    #[serde(default = "default_replica_id")]
    pub replica_id: String,
    /// The Ed25519 checkpoint signing key (PKCS#8, created 0600 if
    /// missing); default `audit-signing.p8` beside the key file of `[keys]`.
    #[serde(default)]
    pub signing_key_file: Option<std::path::PathBuf>,
    /// A signed checkpoint every N events (and at shutdown).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Events arriving within this window share one write and fsync.
    #[serde(default = "default_audit_flush_ms")]
    pub flush_interval_ms: u64,
    /// The query index is written in blocks of this many events (or of
    /// what a second brought); queries read the newer events from memory.
    #[serde(default = "default_index_block_events")]
    pub index_block_events: usize,
}

fn default_index_block_events() -> usize {
    4096
}

fn default_replica_id() -> String {
    "proxy-1".to_string()
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_audit_flush_ms() -> u64 {
    2
}

/// `[keys]`: the key hierarchy of field protection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The local key-encryption-key file (created with mode 0600 on first
    /// start; refused if group or others may read it).
    pub key_file: std::path::PathBuf,
    /// Where the proxy keeps its copy of the wrapped data keys (sled).
    pub state_dir: std::path::PathBuf,
    /// The compacted topic through which replicas share wrapped data keys
    /// (created if missing).
    #[serde(default = "default_key_topic")]
    pub topic: String,
    /// The compacted topic through which replicas share erasure workflows
    /// (created if missing).
    #[serde(default = "default_erasure_topic")]
    pub erasure_topic: String,
    /// The principal (a user of the credentials file) as which an erasure
    /// workflow reads the governed topics back through the filter chain to
    /// verify that nothing of the subject is readable; without one the
    /// verification step is recorded as skipped.
    #[serde(default)]
    pub erasure_verify_as: Option<String>,
    /// Unwrapped data keys kept in memory.
    #[serde(default = "default_key_cache")]
    pub cache_capacity: usize,
}

fn default_key_topic() -> String {
    "_gatehouse.keys".to_string()
}

fn default_erasure_topic() -> String {
    "_gatehouse.erasure".to_string()
}

fn default_key_cache() -> usize {
    100_000
}

/// `[policy]`: authorization, consent and residency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory of `*.cedar` policies (watched; a valid new set replaces
    /// the old atomically, an invalid one is refused).
    pub dir: std::path::PathBuf,
    /// The topic catalog (default: `catalog.toml` in `dir`).
    #[serde(default)]
    pub catalog_file: Option<std::path::PathBuf>,
    /// How often the directory is checked for changes, in seconds.
    #[serde(default = "default_reload_secs")]
    pub reload_interval_secs: u64,
    /// The compacted topic consent records arrive on.
    #[serde(default = "default_consent_topic")]
    pub consent_topic: String,
    /// Where the proxy keeps its consent state (sled).
    pub state_dir: std::path::PathBuf,
}

fn default_reload_secs() -> u64 {
    2
}

fn default_consent_topic() -> String {
    "consent.events".to_string()
}

/// Client-facing listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Bootstrap address.
    pub bind: SocketAddr,
    /// Host name put in metadata responses (default: the bind IP).
    #[serde(default)]
    pub advertised_host: Option<String>,
    /// Broker node `N` is served on `node_port_base + N`. With 0 (the
    /// default), each node gets a free port chosen by the OS.
    #[serde(default)]
    pub node_port_base: u16,
    /// TLS for client connections.
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsConfig>,
}

/// The upstream cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Bootstrap servers of the cluster, `host:port`.
    pub bootstrap_servers: Vec<String>,
    /// Connect timeout in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// TLS towards the cluster.
    #[serde(default)]
    pub tls: Option<crate::tls::ClientTlsConfig>,
    /// The proxy's own SASL credentials for the cluster.
    #[serde(default)]
    pub sasl: Option<UpstreamSasl>,
}

/// How the proxy authenticates to the cluster (clients never hold the
/// cluster's credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// User name.
    pub username: String,
    /// A file holding the password (first line).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// Resource limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame accepted from a client or the cluster.
    pub max_frame_bytes: usize,
    /// Client connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Client connections served at once from one IP address; more from
    /// that address are closed on accept (unset: no limit per address).
    /// One host opening connections in bulk then cannot take every place
    /// of `max_connections` from the others.
    pub max_connections_per_ip: Option<usize>,
    /// Requests in flight per connection before the proxy stops reading.
    pub max_in_flight: usize,
    /// Bytes of large client requests (1 MiB or more) being read or waiting
    /// to be forwarded, all connections together. A connection whose next
    /// request would pass it waits (stops reading) until others are
    /// forwarded, so many clients sending large batches to a slow cluster
    /// hold this much, not connections × frame size. At least
    /// `max_frame_bytes`.
    pub max_buffered_bytes: usize,
    /// Bytes of delivered batches of protected topics kept for reuse: a
    /// batch fetched again with the same view (principal and attributes,
    /// policies, catalog, consent, keys and erasures as they were) is copied
    /// from here instead of transformed again (0: nothing kept).
    pub view_cache_bytes: usize,
    /// A client connection idle this long (seconds) is closed.
    pub idle_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests (seconds).
    pub shutdown_grace_secs: u64,
    /// With `[auth]`, a connection that has not authenticated this long
    /// after it opened (seconds) is closed: idle connections that never
    /// log in do not hold places of the connection limit.
    pub auth_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 100 << 20,
            max_connections: 10_000,
            max_connections_per_ip: None,
            max_in_flight: 128,
            max_buffered_bytes: 512 << 20,
            view_cache_bytes: 64 << 20,
            idle_timeout_secs: 600,
            shutdown_grace_secs: 30,
            auth_timeout_secs: 10,
        }
    }
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl ProxyConfig {
    /// A configuration for `bind` in front of `bootstrap`, with defaults.
    pub fn new(bind: SocketAddr, bootstrap: impl Into<String>) -> Self {
        Self {
            listener: ListenerConfig {
                bind,
                advertised_host: None,
                node_port_base: 0,
                tls: None,
            },
            upstream: UpstreamConfig {
                bootstrap_servers: vec![bootstrap.into()],
                connect_timeout_ms: default_connect_timeout_ms(),
                tls: None,
                sasl: None,
            },
            limits: Limits::default(),
            auth: None,
            policy: None,
            keys: None,
            audit: None,
            admin: None,
            telemetry: None,
        }
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ProxyError> {
        let c: Self = toml::from_str(text).map_err(|e| ProxyError::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ProxyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProxyError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text)
    }

    /// Checks values that TOML types cannot.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if let Some(t) = &self.telemetry {
            t.validate()
                .map_err(|e| ProxyError::Config(e.to_string()))?;
        }
        if self.upstream.bootstrap_servers.is_empty() {
            return Err(ProxyError::Config(
                "upstream.bootstrap_servers is empty".into(),
            ));
        }
        if self.limits.max_connections == 0 || self.limits.max_in_flight == 0 {
            return Err(ProxyError::Config(
                "limits.max_connections and limits.max_in_flight must be positive".into(),
            ));
        }
        if self.limits.max_connections_per_ip == Some(0) {
            return Err(ProxyError::Config(
                "limits.max_connections_per_ip must be positive (leave it out for no limit per address)".into(),
            ));
        }
        if self.limits.max_buffered_bytes < self.limits.max_frame_bytes
            || self.limits.max_buffered_bytes > u32::MAX as usize
        {
            return Err(ProxyError::Config(format!(
                "limits.max_buffered_bytes ({}) must be at least limits.max_frame_bytes ({}) and at most 4 GiB",
                self.limits.max_buffered_bytes, self.limits.max_frame_bytes
            )));
        }
        if self.limits.max_frame_bytes < 1024 {
            return Err(ProxyError::Config(
                "limits.max_frame_bytes is below 1 KiB".into(),
            ));
        }
        if self.admin.is_some() {
            if self.audit.is_none() {
                return Err(ProxyError::Config(
                    "[admin] needs [audit]: the admin listener serves the audit trail".into(),
                ));
            }
            if self
                .auth
                .as_ref()
                .and_then(|a| a.credentials_file.as_ref())
                .is_none()
            {
                return Err(ProxyError::Config(
                    "[admin] needs [auth] with a credentials_file: auditors sign in as users of it"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.connect_timeout_ms)
    }

    /// The host written into metadata responses.
    pub fn advertised_host(&self) -> String {
        self.listener
            .advertised_host
            .clone()
            .unwrap_or_else(|| self.listener.bind.ip().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_refuses_unknown_keys() {
        let c = ProxyConfig::from_toml(
            r#"
            [listener]
            bind = "127.0.0.1:9192"
            node_port_base = 9200
            [upstream]
            bootstrap_servers = ["127.0.0.1:9092"]
            [limits]
            max_connections = 5
            "#,
        )
        .expect("valid");
        assert_eq!(c.listener.node_port_base, 9200);
        assert_eq!(c.limits.max_connections, 5);
        assert_eq!(c.limits.max_in_flight, 128);
        let bad = ProxyConfig::from_toml(
            "[listener]\nbind = \"127.0.0.1:1\"\nbogus = 1\n[upstream]\nbootstrap_servers = [\"a:1\"]\n",
        );
        assert!(bad.is_err());
        let empty = ProxyConfig::from_toml(
            "[listener]\nbind = \"127.0.0.1:1\"\n[upstream]\nbootstrap_servers = []\n",
        );
        assert!(empty.is_err());
    }

    #[test]
    fn admin_needs_audit_and_a_credentials_file() {
        let base = "[listener]\nbind = \"127.0.0.1:1\"\n[upstream]\nbootstrap_servers = [\"a:1\"]\n[admin]\nbind = \"127.0.0.1:0\"\n";
        let e = ProxyConfig::from_toml(base).expect_err("no [audit]");
        assert!(e.to_string().contains("[admin] needs [audit]"), "{e}");
        let audit = "[audit]\ndir = \"/tmp/a\"\n";
        let e = ProxyConfig::from_toml(&format!("{base}{audit}")).expect_err("no [auth]");
        assert!(e.to_string().contains("credentials_file"), "{e}");
        let auth = "[auth]\nmechanisms = [\"PLAIN\"]\ncredentials_file = \"/tmp/users.toml\"\n";
        let c = ProxyConfig::from_toml(&format!("{base}{audit}{auth}")).expect("valid");
        let admin = c.admin.expect("admin section");
        assert!(admin.replica_dirs.is_empty());
        let bad = ProxyConfig::from_toml(&format!("{base}colour = \"red\"\n{audit}{auth}"));
        assert!(bad.is_err());
    }
}
