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
//! - Repeated failures are answered ever more slowly, counted both per
//!   address and per claimed principal ([`Throttle`]).

pub mod oauth;
pub mod principal;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use gatehouse_sasl::{CredentialStore, Mechanism, ScramServer, Step, User};
use serde::Deserialize;

use crate::auth::principal::{AttributeValue, AuthMethod, Principal};
use crate::error::ProxyError;

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
    /// The credentials file's users, replaced when the file changes
    /// ([`Authenticator::reload_credentials_if_changed`]).
    store: RwLock<Option<Arc<CredentialStore>>>,
    /// The credentials file, and its modification time and length as last
    /// read.
    credentials_file: Option<PathBuf>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
    oauth: Option<oauth::OAuthValidator>,
    lifetime: Option<Duration>,
    max_delay: Duration,
    accept_certificates: bool,
    failures: Mutex<Throttle>,
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
    Failed {
        reason: String,
        /// The principal the attempt claimed, unverified (none if the
        /// message did not name one); never a password or a token.
        claimed: Option<String>,
    },
}

/// The longest claimed principal name recorded (longer names are cut at a
/// character boundary): the audit trail and the throttle stay bounded
/// whatever a client sends.
const MAX_CLAIMED_LEN: usize = 255;

fn claimed(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut end = name.len().min(MAX_CLAIMED_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Some(name[..end].to_string())
}

impl Exchange<'_> {
    /// The SASL mechanism name of this exchange, as the client asked for it.
    pub(crate) fn mechanism(&self) -> &'static str {
        match self {
            Exchange::Plain => Mechanism::Plain.name(),
            Exchange::Scram(s) => s.mechanism().name(),
            Exchange::OAuthBearer => OAUTHBEARER,
        }
    }
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
        let stamp = config.credentials_file.as_deref().and_then(file_stamp);
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
            store: RwLock::new(store.map(Arc::new)),
            credentials_file: config.credentials_file.clone(),
            stamp: Mutex::new(stamp),
            oauth,
            lifetime: config.session_lifetime_secs.map(Duration::from_secs),
            max_delay: Duration::from_millis(config.max_failure_delay_ms),
            accept_certificates: config.accept_client_certificates,
            failures: Mutex::new(Throttle::new(THROTTLE_CAPACITY)),
        })
    }

    /// The user `name` of the credentials file as a principal the proxy
    /// itself acts as ([`AuthMethod::Internal`]), if there is such a user.
    pub fn internal_principal(&self, name: &str) -> Option<Principal> {
        let store = self.credentials()?;
        let user = store.user(name)?;
        Some(user_principal(user, AuthMethod::Internal))
    }

    /// The credentials file's users as now in force. An exchange runs
    /// against one such snapshot from start to end.
    pub fn credentials(&self) -> Option<Arc<CredentialStore>> {
        self.store
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `snapshot` is still the credentials in force.
    pub(crate) fn is_current(&self, snapshot: Option<&Arc<CredentialStore>>) -> bool {
        match (snapshot, self.credentials()) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, &b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Re-reads the credentials file if it changed (modification time or
    /// length): `Ok(Some(what changed))` when new users are in force,
    /// `Ok(None)` when nothing changed, `Err` (the old users stay in force)
    /// when the new file cannot be read.
    pub fn reload_credentials_if_changed(&self) -> Result<Option<String>, ProxyError> {
        let Some(path) = &self.credentials_file else {
            return Ok(None);
        };
        let now = file_stamp(path);
        {
            let mut stamp = self
                .stamp
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *stamp == now {
                return Ok(None);
            }
            *stamp = now;
        }
        let fresh = CredentialStore::load(path).map_err(|e| {
            ProxyError::Config(format!("auth.credentials_file {}: {e}", path.display()))
        })?;
        let old = self.credentials();
        let changes = credential_changes(old.as_deref(), &fresh);
        *self
            .store
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(fresh));
        Ok(Some(changes))
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

    /// Starts an exchange for `mechanism`, if enabled, against `store` (a
    /// snapshot from [`Authenticator::credentials`]).
    pub(crate) fn begin<'a>(
        &self,
        mechanism: &str,
        store: Option<&'a CredentialStore>,
    ) -> Option<Exchange<'a>> {
        if mechanism == OAUTHBEARER {
            return self.oauthbearer.then_some(Exchange::OAuthBearer);
        }
        let m = Mechanism::from_name(mechanism)?;
        if !self.mechanisms.contains(&m) {
            return None;
        }
        let store = store?;
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
    pub(crate) fn step<'a>(
        &self,
        exchange: &mut Exchange<'a>,
        store: Option<&'a CredentialStore>,
        message: &[u8],
    ) -> Outcome {
        match exchange {
            Exchange::Plain => {
                let claim = gatehouse_sasl::parse_plain(message)
                    .ok()
                    .and_then(|m| claimed(m.authcid()));
                let Some(store) = store else {
                    return Outcome::Failed {
                        reason: "no credentials".into(),
                        claimed: claim,
                    };
                };
                match gatehouse_sasl::verify_plain(store, message) {
                    Ok(user) => Outcome::Authenticated {
                        principal: user_principal(user, AuthMethod::Plain),
                        reply: Vec::new(),
                        expires: self.expiry(),
                    },
                    Err(e) => Outcome::Failed {
                        reason: e.to_string(),
                        claimed: claim,
                    },
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
                    Err(e) => Outcome::Failed {
                        reason: e.to_string(),
                        claimed: server.claimed_username().and_then(claimed),
                    },
                }
            }
            Exchange::OAuthBearer => {
                let Some(v) = &self.oauth else {
                    return Outcome::Failed {
                        reason: "OAUTHBEARER is not configured".into(),
                        claimed: None,
                    };
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
                    Err(e) => Outcome::Failed {
                        reason: e.to_string(),
                        claimed: v.claimed_principal(message).as_deref().and_then(claimed),
                    },
                }
            }
        }
    }

    /// Records a failed attempt from `ip` claiming `principal` (if it named
    /// one) and returns how long to wait before answering it: see
    /// [`Throttle::failed`].
    pub(crate) fn failure_delay(&self, ip: IpAddr, principal: Option<&str>) -> Duration {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(ip, principal, Instant::now(), self.max_delay)
    }

    /// Clears the failures of `principal` after it authenticated (not its
    /// address's: see [`Throttle::succeeded`]).
    pub(crate) fn succeeded(&self, principal: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .succeeded(principal);
    }
}

/// How many addresses, and how many claimed principals, the throttle
/// remembers at most.
const THROTTLE_CAPACITY: usize = 10_000;

/// Failures are forgotten after this long without another one.
const THROTTLE_WINDOW: Duration = Duration::from_secs(60);

/// Failed attempts, counted per address and per claimed principal.
///
/// A failure is answered after 100 ms, doubling with each further failure
/// within [`THROTTLE_WINDOW`] of the previous one, up to a maximum; the
/// delay is the larger of the address's and the claimed principal's. So
/// guessing one user's password from many addresses is slowed by the
/// principal's count, and spraying many names from one address by the
/// address's.
///
/// A success clears only the count of the principal that succeeded: never
/// the address's, which would let anyone holding one valid account reset
/// the throttle of every name guessed from that address (a login between
/// guesses). The address's count decays on its own after a quiet window;
/// successes are never delayed, so a legitimate user sharing the address is
/// only slowed in answering *failures*.
///
/// Both maps hold at most `capacity` entries: when one is full, entries
/// quiet for the window are dropped first, then the entry with the fewest
/// failures (the oldest among those), so a flood of one-off names cannot
/// push out a name being guessed at persistently.
#[derive(Debug)]
pub(crate) struct Throttle {
    capacity: usize,
    by_address: HashMap<IpAddr, (u32, Instant)>,
    by_principal: HashMap<String, (u32, Instant)>,
}

impl Throttle {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_address: HashMap::new(),
            by_principal: HashMap::new(),
        }
    }

    /// Counts a failure at `now` and returns the delay before answering it.
    pub(crate) fn failed(
        &mut self,
        ip: IpAddr,
        principal: Option<&str>,
        now: Instant,
        max: Duration,
    ) -> Duration {
        let capacity = self.capacity;
        let mut count = bump(&mut self.by_address, ip, now, capacity);
        if let Some(p) = principal {
            let n = match self.by_principal.get_mut(p) {
                Some(entry) => count_at(entry, now),
                None => bump(&mut self.by_principal, p.to_string(), now, capacity),
            };
            count = count.max(n);
        }
        let delay = Duration::from_millis(100u64.saturating_mul(1u64 << (count - 1).min(16)));
        delay.min(max)
    }

    /// Forgets the failures of `principal`, which just authenticated.
    pub(crate) fn succeeded(&mut self, principal: &str) {
        self.by_principal.remove(principal);
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_principal.len())
    }
}

/// Adds a failure at `now` to an entry, restarting a count whose last
/// failure is older than the window; returns the new count (at least 1).
fn count_at(entry: &mut (u32, Instant), now: Instant) -> u32 {
    if now.saturating_duration_since(entry.1) > THROTTLE_WINDOW {
        entry.0 = 0;
    }
    entry.0 = entry.0.saturating_add(1);
    entry.1 = now;
    entry.0
}

/// Counts a failure of `key`, making room first if the map is full.
fn bump<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, (u32, Instant)>,
    key: K,
    now: Instant,
    capacity: usize,
) -> u32 {
    if !map.contains_key(&key) && map.len() >= capacity {
        map.retain(|_, (_, at)| now.saturating_duration_since(*at) <= THROTTLE_WINDOW);
        if map.len() >= capacity {
            let weakest = map
                .iter()
                .min_by_key(|(_, (n, at))| (*n, *at))
                .map(|(k, _)| k.clone());
            if let Some(k) = weakest {
                map.remove(&k);
            }
        }
    }
    count_at(map.entry(key).or_insert((0, now)), now)
}

/// A file's modification time and length, `None` when it cannot be read.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// What differs between two credentials files, by user name: "2 users
/// (added: a; removed: b; changed: c)".
fn credential_changes(old: Option<&CredentialStore>, new: &CredentialStore) -> String {
    let names = |s: &CredentialStore| -> std::collections::BTreeSet<String> {
        s.users().map(|u| u.name.clone()).collect()
    };
    let before = old.map(names).unwrap_or_default();
    let after = names(new);
    let added: Vec<&str> = after.difference(&before).map(String::as_str).collect();
    let removed: Vec<&str> = before.difference(&after).map(String::as_str).collect();
    let changed: Vec<&str> = after
        .intersection(&before)
        .filter(|n| old.and_then(|o| o.user(n)) != new.user(n))
        .map(String::as_str)
        .collect();
    let list = |l: &[&str]| {
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    format!(
        "{} users (added: {}; removed: {}; changed: {})",
        after.len(),
        list(&added),
        list(&removed),
        list(&changed)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(5);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn failures_double_per_address_and_per_principal() {
        let mut t = Throttle::new(100);
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(t.failed(ip(1), Some("alice"), now, MAX)), 100);
        assert_eq!(ms(t.failed(ip(1), Some("alice"), now, MAX)), 200);
        // Another name from the same address: the address's count.
        assert_eq!(ms(t.failed(ip(1), Some("bob"), now, MAX)), 400);
        // The same name from another address: the name's count.
        assert_eq!(ms(t.failed(ip(2), Some("alice"), now, MAX)), 400);
        // Nothing claimed, a fresh address: the first step.
        assert_eq!(ms(t.failed(ip(3), None, now, MAX)), 100);
        // Capped at the maximum.
        for _ in 0..40 {
            t.failed(ip(4), Some("carol"), now, MAX);
        }
        assert_eq!(t.failed(ip(4), Some("carol"), now, MAX), MAX);
        // A quiet window restarts the count.
        let later = now + THROTTLE_WINDOW + Duration::from_secs(1);
        assert_eq!(ms(t.failed(ip(1), Some("alice"), later, MAX)), 100);
    }

    #[test]
    fn a_success_clears_only_its_own_principal() {
        let mut t = Throttle::new(100);
        let now = Instant::now();
        for _ in 0..3 {
            t.failed(ip(1), Some("alice"), now, MAX);
            t.failed(ip(2), Some("bob"), now, MAX);
        }
        // mallory logs in from alice's address: nothing of alice's resets.
        t.succeeded("mallory");
        assert_eq!(t.failed(ip(3), Some("alice"), now, MAX).as_millis(), 800);
        assert_eq!(t.failed(ip(1), None, now, MAX).as_millis(), 800);
        // bob logs in: bob's count is gone, his address's stays.
        t.succeeded("bob");
        assert_eq!(t.failed(ip(9), Some("bob"), now, MAX).as_millis(), 100);
        assert_eq!(t.failed(ip(2), Some("bob"), now, MAX).as_millis(), 800);
    }

    #[test]
    fn memory_is_bounded_and_persistent_guesses_survive_a_flood() {
        let mut t = Throttle::new(50);
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(ip(1), Some("victim"), now, MAX);
        }
        for i in 0..10_000u32 {
            let name = format!("junk-{i}");
            let addr = IpAddr::from(i.to_be_bytes());
            t.failed(addr, Some(&name), now, MAX);
        }
        let (addresses, principals) = t.len();
        assert!(
            addresses <= 50 && principals <= 50,
            "{addresses} {principals}"
        );
        assert_eq!(
            t.failed(ip(200), Some("victim"), now, MAX).as_millis(),
            3_200
        );
    }

    #[test]
    fn claimed_names_are_bounded() {
        assert_eq!(claimed(""), None);
        assert_eq!(claimed("alice").as_deref(), Some("alice"));
        let long = "é".repeat(300);
        let cut = claimed(&long).unwrap();
        assert!(cut.len() <= MAX_CLAIMED_LEN && cut.chars().all(|c| c == 'é'));
    }
}
