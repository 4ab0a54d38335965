//! Authentication at the proxy: SASL PLAIN, SCRAM-SHA-256/512 and
//! OAUTHBEARER (JWT), and client certificates.
//!
//! The proxy terminates authentication: a client's SASL exchange never
//! reaches the cluster (the proxy talks to the cluster with its own
//! credentials), and before a connection has authenticated only ApiVersions
//! and the SASL requests are served; anything else closes it.
//!
//! - PLAIN and SCRAM check users of a credentials file
//!   ([`gatehouse_sasl::CredentialStore`]: salted SCRAM verifiers, never
//!   passwords) whose attributes become the principal's.
//! - OAUTHBEARER verifies a JWT ([`oauth`]) and maps configured claims to
//!   attributes; the session ends when the token expires unless the client
//!   re-authenticates (KIP-368).
//! - Repeated failures from one address are answered ever more slowly.

pub mod oauth;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use gatehouse_sasl::{CredentialStore, Mechanism, ScramServer, Step, User};
use serde::Deserialize;

use crate::error::ProxyError;
use crate::principal::{AttributeValue, AuthMethod, Principal};

/// `[auth]` in the proxy configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Enabled SASL mechanisms: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`,
    /// `OAUTHBEARER`.
    pub mechanisms: Vec<String>,
    /// Users for PLAIN and SCRAM (see `gatehouse users`).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// JWT validation for OAUTHBEARER.
    #[serde(default)]
    pub oauthbearer: Option<oauth::OAuthConfig>,
    /// Sessions authenticated with PLAIN or SCRAM must re-authenticate
    /// (KIP-368) after this many seconds; none by default. OAUTHBEARER
    /// sessions end with their token.
    #[serde(default)]
    pub session_lifetime_secs: Option<u64>,
    /// Longest delay before answering a failed attempt, in milliseconds.
    #[serde(default = "default_max_failure_delay_ms")]
    pub max_failure_delay_ms: u64,
    /// Accept a verified client certificate (mutual TLS) instead of SASL.
    #[serde(default)]
    pub accept_client_certificates: bool,
}

fn default_max_failure_delay_ms() -> u64 {
    5_000
}

/// The verifiers of every enabled mechanism.
#[derive(Debug)]
pub struct Authenticator {
    mechanisms: Vec<Mechanism>,
    oauthbearer: bool,
    store: Option<CredentialStore>,
    oauth: Option<oauth::OAuthValidator>,
    lifetime: Option<Duration>,
    max_delay: Duration,
    accept_certificates: bool,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// One SASL exchange in progress.
pub(crate) enum Exchange<'a> {
    Plain,
    Scram(Box<ScramServer<'a>>),
    OAuthBearer,
}

/// What a step of an exchange produced.
pub(crate) enum Outcome {
    /// Send these bytes and wait for the client's next message.
    Challenge(Vec<u8>),
    /// Done: the principal, the last server message, and when the session
    /// must re-authenticate by.
    Authenticated {
        principal: Principal,
        reply: Vec<u8>,
        expires: Option<SystemTime>,
    },
    /// Failed; the reason is for the log, never for the client.
    Failed(String),
}

const OAUTHBEARER: &str = "OAUTHBEARER";

fn user_principal(user: &User, method: AuthMethod) -> Principal {
    Principal {
        name: user.name.clone(),
        method,
        attributes: user
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = match v.as_list() {
                    Some(list) => AttributeValue::List(list.to_vec()),
                    None => AttributeValue::String(v.as_str().unwrap_or_default().to_string()),
                };
                (k.clone(), v)
            })
            .collect(),
    }
}

impl Authenticator {
    /// Reads the credentials file and keys the configuration names.
    pub fn load(config: &AuthConfig) -> Result<Self, ProxyError> {
        let mut mechanisms = Vec::new();
        let mut oauthbearer = false;
        for name in &config.mechanisms {
            if name == OAUTHBEARER {
                oauthbearer = true;
            } else {
                mechanisms.push(Mechanism::from_name(name).ok_or_else(|| {
                    ProxyError::Config(format!("auth.mechanisms: unknown mechanism {name}"))
                })?);
            }
        }
        if mechanisms.is_empty() && !oauthbearer {
            return Err(ProxyError::Config("auth.mechanisms is empty".into()));
        }
        let store = match (&config.credentials_file, mechanisms.is_empty()) {
            (Some(path), _) => Some(CredentialStore::load(path).map_err(|e| {
                ProxyError::Config(format!("auth.credentials_file {}: {e}", path.display()))
            })?),
            (None, false) => {
                return Err(ProxyError::Config(
                    "PLAIN and SCRAM need auth.credentials_file".into(),
                ))
            }
            (None, true) => None,
        };
        let oauth = match (&config.oauthbearer, oauthbearer) {
            (Some(c), true) => Some(
                oauth::OAuthValidator::from_config(c)
                    .map_err(|e| ProxyError::Config(format!("auth.oauthbearer: {e}")))?,
            ),
            (None, true) => {
                return Err(ProxyError::Config(
                    "OAUTHBEARER needs an [auth.oauthbearer] section".into(),
                ))
            }
            (_, false) => None,
        };
        Ok(Self {
            mechanisms,
            oauthbearer,
            store,
            oauth,
            lifetime: config.session_lifetime_secs.map(Duration::from_secs),
            max_delay: Duration::from_millis(config.max_failure_delay_ms),
            accept_certificates: config.accept_client_certificates,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Names of the enabled mechanisms, as SaslHandshake lists them.
    pub fn mechanism_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.mechanisms.iter().map(|m| m.to_string()).collect();
        if self.oauthbearer {
            names.push(OAUTHBEARER.to_string());
        }
        names
    }

    /// Whether a client certificate is enough on its own.
    pub fn accepts_certificates(&self) -> bool {
        self.accept_certificates
    }

    /// Starts an exchange for `mechanism`, if enabled.
    pub(crate) fn begin(&self, mechanism: &str) -> Option<Exchange<'_>> {
        if mechanism == OAUTHBEARER {
            return self.oauthbearer.then_some(Exchange::OAuthBearer);
        }
        let m = Mechanism::from_name(mechanism)?;
        if !self.mechanisms.contains(&m) {
            return None;
        }
        let store = self.store.as_ref()?;
        match m {
            Mechanism::Plain => Some(Exchange::Plain),
            _ => ScramServer::new(m, store)
                .ok()
                .map(|s| Exchange::Scram(Box::new(s))),
        }
    }

    fn expiry(&self) -> Option<SystemTime> {
        self.lifetime.map(|l| SystemTime::now() + l)
    }

    /// Feeds the client's next message to the exchange.
    pub(crate) fn step<'a>(&'a self, exchange: &mut Exchange<'a>, message: &[u8]) -> Outcome {
        match exchange {
            Exchange::Plain => {
                let Some(store) = &self.store else {
                    return Outcome::Failed("no credentials".into());
                };
                match gatehouse_sasl::verify_plain(store, message) {
                    Ok(user) => Outcome::Authenticated {
                        principal: user_principal(user, AuthMethod::Plain),
                        reply: Vec::new(),
                        expires: self.expiry(),
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Exchange::Scram(server) => {
                let method = match server.mechanism() {
                    Mechanism::ScramSha512 => AuthMethod::ScramSha512,
                    _ => AuthMethod::ScramSha256,
                };
                match server.step(message) {
                    Ok(Step::Continue { response }) => Outcome::Challenge(response),
                    Ok(Step::Done { user, response }) => Outcome::Authenticated {
                        principal: user_principal(user, method),
                        reply: response,
                        expires: self.expiry(),
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Exchange::OAuthBearer => {
                let Some(v) = &self.oauth else {
                    return Outcome::Failed("OAUTHBEARER is not configured".into());
                };
                match v.authenticate(message, SystemTime::now()) {
                    Ok(a) => {
                        let attributes: BTreeMap<String, AttributeValue> = a
                            .token
                            .attributes
                            .iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    oauth::AttributeValue::String(s) => {
                                        AttributeValue::String(s.clone())
                                    }
                                    oauth::AttributeValue::List(l) => {
                                        AttributeValue::List(l.clone())
                                    }
                                };
                                (k.clone(), v)
                            })
                            .collect();
                        Outcome::Authenticated {
                            principal: Principal {
                                name: a.token.principal.clone(),
                                method: AuthMethod::OAuthBearer,
                                attributes,
                            },
                            reply: Vec::new(),
                            expires: Some(a.token.expires_at),
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }

    /// Records a failure from `ip` and returns how long to wait before
    /// answering it: 100 ms, doubling with each further failure within a
    /// minute, up to the configured maximum.
    pub(crate) fn failure_delay(&self, ip: IpAddr) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Forget addresses that have been quiet for a while.
        if f.len() > 10_000 {
            f.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(60));
        }
        let entry = f.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) > Duration::from_secs(60) {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let delay = Duration::from_millis(100u64.saturating_mul(1u64 << (entry.0 - 1).min(16)));
        delay.min(self.max_delay)
    }

    /// Clears the failure count of `ip` after a success.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}
