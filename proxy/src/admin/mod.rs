//! The auditors' HTTP listener (`[admin]`): the audit trail as JSON, and
//! the auditor page that reads it.
//!
//! Off unless `[admin]` is configured; it needs `[audit]` (what it serves)
//! and `[auth]` with a credentials file (who may ask). Plain HTTP/1.1: bind
//! it to a loopback or management address, or put TLS in front of it.
//!
//! # Who may ask
//!
//! Every request authenticates, with either
//!
//! - `Authorization: Basic` as a user of the proxy's SASL credentials file
//!   (checked exactly like SASL PLAIN), or
//! - `Authorization: Bearer <JWT>`, validated like SASL OAUTHBEARER (only
//!   when OAUTHBEARER is configured).
//!
//! Anything else is answered `401` with `WWW-Authenticate: Basic
//! realm="gatehouse-audit"` (so a browser asks for a password); refused
//! credentials are recorded as `auth_refused` events and answered ever more
//! slowly, like SASL failures. Then Cedar decides `read_audit` on the
//! cluster for the principal (the shipped policy `auditor-reads-audit`
//! permits team `compliance`); a denial is answered `403`.
//!
//! Every decided request is itself recorded, before it is answered, as a
//! `decision` event: api `AdminHttp`, resource type `audit`, the path as
//! resource (for `/api/subject/{id}` with the subject's keyed hash in place
//! of the id, which never enters the log in clear), allow or deny with the
//! deciding policies. If the log cannot record it, nothing is served.
//!
//! # Endpoints
//!
//! | path | answer |
//! |---|---|
//! | `GET /` | the auditor page (HTML) |
//! | `GET /api/events?principal=&topic=&subject=&from=&to=&decision=&limit=` | matching events |
//! | `GET /api/subject/{id}` | the trail of data subject `id` (same parameters) |
//! | `GET /api/verify` | the verification report of every chain |
//!
//! Times (`from`, `to`) are epoch milliseconds or RFC 3339 UTC
//! ([`gatehouse_audit::time::parse_time`]); `subject` is the clear subject
//! id, hashed here; `decision` is `allow` or `deny`. Events come newest
//! first: the newest `limit` (default 500, at most 10000) of those that
//! match, each as stored plus `time` (RFC 3339):
//!
//! ```json
//! {"viewer":"auditor","count":2,"matched":2,"truncated":false,
//!  "events":[{"time":"2026-11-26T08:00:00.000Z","replica":"a","seq":7,...,"kind":{"type":"delivery",...}}]}
//! ```
//!
//! `/api/verify` answers `{"viewer":..,"clean":true,"replicas":[{"replica":"a",
//! "events":12,"checkpoints":1,"first_problem":null}]}`. Errors are JSON
//! `{"error":"..."}`: `400` for a bad parameter, `404`, `405` for another
//! method than GET, `500` when the log cannot be read.
//!
//! The chains read are this replica's `[audit] dir` and
//! `[admin] replica_dirs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use gatehouse_audit::{AuditLog, Decision, Event, EventKind, Query, VerifyReport};
use gatehouse_policy::{Action, Catalog, PolicyStore, Resource};
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

mod health;

pub(crate) use health::{Probes, Readiness};

use crate::auth::principal::Principal;
use crate::auth::{Authenticator, Exchange, Outcome};
use crate::cluster::erasure::{EraseError, Eraser, Workflow};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::tasks::Tasks;

/// The auditor page: one self-contained HTML file.
const PAGE: &str = include_str!("auditor.html");

/// The Basic realm of the `WWW-Authenticate` challenge.
pub const REALM: &str = "gatehouse-audit";

/// The `api` of the `decision` events this listener records.
pub const API_NAME: &str = "AdminHttp";

/// Events answered when the request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 500;

/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;

/// Longest accepted `Authorization` header.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Binds the listener of `[admin]`, if configured (before anything else
/// starts, so a bad address refuses the start cleanly).
pub(crate) async fn bind(config: &ProxyConfig) -> Result<Option<TcpListener>, ProxyError> {
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let listener = TcpListener::bind(admin.bind)
        .await
        .map_err(|source| ProxyError::Bind {
            addr: admin.bind,
            source,
        })?;
    Ok(Some(listener))
}

/// The listener's state.
struct Admin {
    /// Who may ask (the proxy's SASL users and token settings).
    auth: Arc<Authenticator>,
    /// Where connections run, and the shutdown signal.
    tasks: Arc<Tasks>,
    log: AuditLog,
    dirs: Vec<PathBuf>,
    policies: Arc<PolicyStore>,
    catalog: Arc<Catalog>,
    csp: String,
    /// Erasure workflows, when `[keys]` is configured.
    eraser: Option<Arc<Eraser>>,
    /// What `/readyz` checks.
    readiness: Arc<Readiness>,
    /// What `/metrics` renders.
    metrics: Arc<crate::metrics::ProxyMetrics>,
}

/// What the admin listener serves with.
pub(crate) struct AdminParts {
    /// Where connections run, and the shutdown signal.
    pub tasks: Arc<Tasks>,
    /// Who may ask.
    pub authenticator: Option<Arc<Authenticator>>,
    /// The audit trail (what it serves, and where requests are recorded).
    pub audit: Option<AuditLog>,
    /// Other replicas' audit directories, read too.
    pub replica_dirs: Vec<PathBuf>,
    pub policies: Arc<PolicyStore>,
    pub catalog: Arc<Catalog>,
    /// Erasure workflows, when `[keys]` is configured.
    pub eraser: Option<Arc<Eraser>>,
    /// What `/metrics` renders.
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
    /// What `/readyz` checks.
    pub readiness: Arc<Readiness>,
}

/// Starts serving on `listener` (bound by [`bind`]) until the proxy shuts
/// down; returns the address it serves.
pub(crate) fn serve(listener: TcpListener, parts: AdminParts) -> Result<SocketAddr, ProxyError> {
    let AdminParts {
        tasks,
        authenticator,
        audit,
        replica_dirs,
        policies,
        catalog,
        eraser,
        metrics,
        readiness,
    } = parts;
    let addr = listener
        .local_addr()
        .map_err(|e| ProxyError::Internal(format!("admin listener address: {e}")))?;
    let Some(log) = audit else {
        return Err(ProxyError::Config(
            "[admin] needs [audit]: the admin listener serves the audit trail".into(),
        ));
    };
    let Some(auth) = authenticator else {
        return Err(ProxyError::Config(
            "[admin] needs [auth] with a credentials_file".into(),
        ));
    };
    let mut dirs = vec![log.dir().to_path_buf()];
    dirs.extend(replica_dirs.iter().cloned());
    let admin = Arc::new(Admin {
        auth,
        tasks: tasks.clone(),
        log,
        dirs,
        policies,
        catalog,
        csp: content_security_policy(PAGE),
        eraser,
        readiness,
        metrics,
    });
    tracing::info!(%addr, chains = admin.dirs.len(), "admin listener (audit API) started");
    tasks.spawn(accept_loop(admin, listener));
    Ok(addr)
}

async fn accept_loop(admin: Arc<Admin>, listener: TcpListener) {
    let mut shutdown = admin.tasks.stopping();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "admin listener busy; answering 503");
                        // A short answer a client can act on (Retry-After),
                        // from a bounded number of tasks; beyond those, the
                        // connection is just closed.
                        if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                            admin.tasks.spawn(async move {
                                busy(sock).await;
                                drop(refusal);
                            });
                        }
                        continue;
                    };
                    let a = admin.clone();
                    admin.tasks.spawn(async move {
                        a.connection(sock, peer).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = crate::tasks::stopped(&mut shutdown) => return,
        }
    }
}

/// Answers a connection the listener has no room for: `503` with
/// `Retry-After: 1`, then closes it (within a second whatever the client
/// does).
async fn busy(mut sock: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = r#"{"error":"the admin listener is busy; retry in a second"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sock.write_all(answer.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// Why a request is not authenticated.
enum Unauthenticated {
    /// No (usable) `Authorization` header: just challenge.
    Missing,
    /// Credentials given and refused (recorded).
    Refused {
        principal: Option<String>,
        mechanism: &'static str,
        reason: String,
    },
}

/// The credentials of a request.
enum Credentials {
    /// A SASL PLAIN message built from Basic credentials.
    Basic {
        user: String,
        plain: Zeroizing<Vec<u8>>,
    },
    /// An OAUTHBEARER client message carrying the token.
    Bearer { message: Zeroizing<Vec<u8>> },
}

/// What a request asks for.
enum Route {
    Page,
    Events,
    Subject(String),
    Verify,
    /// `POST /api/erase`: start an erasure.
    Erase,
    /// `GET /api/erasures`: every workflow.
    Erasures,
    /// `GET /api/erasures/{id}`: one subject's workflow.
    Erasure(String),
    /// `GET /api/erasures/{id}/report`: its signed report.
    ErasureReport(String),
    /// `POST /api/erasures/{id}/verify`: read the topics back again now.
    ErasureVerify(String),
    NotFound,
}

impl Route {
    /// The action a request for this route needs.
    fn action(&self) -> Action {
        match self {
            Route::Erase
            | Route::Erasures
            | Route::Erasure(_)
            | Route::ErasureReport(_)
            | Route::ErasureVerify(_) => Action::EraseSubject,
            _ => Action::ReadAudit,
        }
    }

    /// The method it is served for.
    fn method(&self) -> Method {
        match self {
            Route::Erase | Route::ErasureVerify(_) => Method::POST,
            _ => Method::GET,
        }
    }
}

type Body = Full<Bytes>;

impl Admin {
    async fn connection(self: Arc<Self>, sock: TcpStream, peer: SocketAddr) {
        let _ = sock.set_nodelay(true);
        let me = self.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req, peer).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(sock), service);
        tokio::pin!(conn);
        let mut shutdown = self.tasks.stopping();
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            r = conn.as_mut() => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "admin connection ended");
            },
            _ = crate::tasks::stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        // Probes and metrics: no credentials, no audit event; nothing but
        // check names and counts (no subject, principal or client id).
        match req.uri().path() {
            "/healthz" => return ok_json(json!({"live": true})),
            "/metrics" => {
                return gatehouse_telemetry::probes::metrics_response(self.metrics.render())
            }
            "/readyz" => {
                let (ready, body) = self.readiness.report().await;
                let mut r = ok_json(body);
                if !ready {
                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                return r;
            }
            _ => {}
        }
        let who = match self.authenticate(req.headers()).await {
            Ok(p) => p,
            Err(Unauthenticated::Missing) => return unauthorized(),
            Err(Unauthenticated::Refused {
                principal,
                mechanism,
                reason,
            }) => {
                tracing::info!(%peer, mechanism, principal = principal.as_deref().unwrap_or("-"), %reason, "admin authentication refused");
                tokio::time::sleep(self.auth.failure_delay(peer.ip(), principal.as_deref())).await;
                let event = EventKind::AuthRefused {
                    principal,
                    mechanism: mechanism.to_string(),
                    peer: peer.to_string(),
                    reason,
                };
                if let Err(e) = self.log.append(event).await {
                    tracing::error!(error = %e, "audit log unavailable: refused admin login not recorded");
                }
                return unauthorized();
            }
        };
        let info = crate::auth::principal::principal_info(Some(&who));
        let path = req.uri().path().to_string();
        let route = route(&path);
        let resource = match &route {
            Route::Subject(id) => format!("/api/subject/{}", self.log.subject_hash(id)),
            Route::Erasure(id) => format!("/api/erasures/{}", self.log.subject_hash(id)),
            Route::ErasureReport(id) => {
                format!("/api/erasures/{}/report", self.log.subject_hash(id))
            }
            Route::ErasureVerify(id) => {
                format!("/api/erasures/{}/verify", self.log.subject_hash(id))
            }
            _ => path.clone(),
        };
        let action = route.action();
        let decided = self
            .policies
            .authorize(&info, action, Resource::Cluster, &self.catalog);
        let event = EventKind::Decision {
            principal: info.name.clone(),
            api: API_NAME.to_string(),
            resource_type: if action == Action::EraseSubject {
                "erasure"
            } else {
                "audit"
            }
            .to_string(),
            resource,
            decision: if decided.allowed {
                Decision::Allow
            } else {
                Decision::Deny
            },
            policies: decided.policies.clone(),
            reason: None,
        };
        if let Err(e) = self.log.append(event).await {
            tracing::error!(error = %e, "audit log unavailable: admin request refused");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit log unavailable; nothing is served",
            );
        }
        if !decided.allowed {
            tracing::info!(%peer, principal = %info.name, path = %path, "admin request denied");
            let what = if action == Action::EraseSubject {
                "erase data subjects (erase_subject)"
            } else {
                "read the audit trail (read_audit)"
            };
            return error(
                StatusCode::FORBIDDEN,
                &format!("{} may not {what}", info.name),
            );
        }
        let method = route.method();
        if req.method() != method {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("only {method} is served here"),
            );
            let allow = if method == Method::POST {
                "POST"
            } else {
                "GET"
            };
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return r;
        }
        let viewer = info.name;
        match route {
            Route::Erase
            | Route::Erasures
            | Route::Erasure(_)
            | Route::ErasureReport(_)
            | Route::ErasureVerify(_) => {
                let Some(eraser) = self.eraser.clone() else {
                    return error(
                        StatusCode::NOT_FOUND,
                        "erasure needs [keys]: this proxy has no data keys to destroy",
                    );
                };
                match route {
                    Route::Erase => erase(&eraser, &viewer, req).await,
                    Route::ErasureReport(id) => match eraser.report(&id) {
                        // Sent as signed, byte for byte.
                        Ok(Some(report)) => {
                            let mut r = Response::new(Full::new(Bytes::from(report)));
                            common_headers(r.headers_mut());
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            );
                            r
                        }
                        Ok(None) => error(StatusCode::NOT_FOUND, "no erasure of this subject"),
                        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
                    },
                    Route::ErasureVerify(id) => {
                        if !eraser.erasures().is_erased(&id) {
                            return error(StatusCode::NOT_FOUND, "no erasure of this subject");
                        }
                        match eraser.verify(&id).await {
                            Ok(v) => ok_json(json!({
                                "viewer": viewer,
                                "subject_hash": eraser.erasures().hash(&id),
                                "verification": v,
                            })),
                            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
                        }
                    }
                    Route::Erasure(id) => {
                        let hash = eraser.erasures().hash(&id);
                        match eraser.erasures().get(&hash) {
                            Some(w) => ok_json(json!({"viewer": viewer, "workflow": w.to_json()})),
                            None => error(StatusCode::NOT_FOUND, "no erasure of this subject"),
                        }
                    }
                    _ => {
                        let all: Vec<Value> = eraser
                            .erasures()
                            .list()
                            .iter()
                            .map(Workflow::to_json)
                            .collect();
                        ok_json(json!({"viewer": viewer, "count": all.len(), "workflows": all}))
                    }
                }
            }
            Route::Page => self.page(),
            Route::NotFound => error(StatusCode::NOT_FOUND, "no such endpoint"),
            Route::Verify => {
                let dirs = self.dirs.clone();
                match tokio::task::spawn_blocking(move || gatehouse_audit::verify(&dirs)).await {
                    Ok(Ok(report)) => ok_json(verify_json(&viewer, &report)),
                    Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("verify: {e}")),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("verify: {e}")),
                }
            }
            Route::Events | Route::Subject(_) => {
                let params = match Params::parse(req.uri().query().unwrap_or("")) {
                    Ok(p) => p,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                let subject = match &route {
                    Route::Subject(id) => Some(id.as_str()),
                    _ => params.subject.as_deref(),
                };
                let q = Query {
                    principal: params.principal.clone(),
                    topic: params.topic.clone(),
                    subject_hash: subject.map(|s| self.log.subject_hash(s)),
                    from_ms: params.from_ms,
                    to_ms: params.to_ms,
                    decision: params.decision,
                    limit: None,
                };
                let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
                let dirs = self.dirs.clone();
                let found =
                    tokio::task::spawn_blocking(move || gatehouse_audit::query(&dirs, &q)).await;
                match found {
                    Ok(Ok(events)) => {
                        let mut body = events_json(&viewer, events, limit);
                        if let (Route::Subject(id), Some(obj)) = (&route, body.as_object_mut()) {
                            obj.insert(
                                "subject_hash".into(),
                                Value::String(self.log.subject_hash(id)),
                            );
                        }
                        ok_json(body)
                    }
                    Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("query: {e}")),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("query: {e}")),
                }
            }
        }
    }

    /// Authenticates the request's `Authorization` header.
    async fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
    ) -> Result<Principal, Unauthenticated> {
        let creds = credentials(headers)?;
        let (claimed, mechanism) = match &creds {
            Credentials::Basic { user, .. } => (Some(user.clone()), "http-basic"),
            Credentials::Bearer { .. } => (None, "http-bearer"),
        };
        let me = self.clone();
        // PBKDF2 and signature checks: off the async workers.
        let outcome = tokio::task::spawn_blocking(move || {
            let auth = &me.auth;
            let (mut exchange, message) = match &creds {
                Credentials::Basic { plain, .. } => (Exchange::Plain, plain),
                Credentials::Bearer { message } => (Exchange::OAuthBearer, message),
            };
            let store = auth.credentials();
            match auth.step(&mut exchange, store.as_deref(), message) {
                Outcome::Authenticated { principal, .. } => Ok(principal),
                Outcome::Failed { reason, claimed } => Err((reason, claimed)),
                Outcome::Challenge(_) => Err(("authentication needs more steps".to_string(), None)),
            }
        })
        .await
        .unwrap_or_else(|e| Err((format!("authentication task failed: {e}"), None)));
        match outcome {
            Ok(p) => {
                self.auth.succeeded(&p.name);
                Ok(p)
            }
            // Basic names its user; a bearer token claims its subject.
            Err((reason, from_token)) => Err(Unauthenticated::Refused {
                principal: claimed.or(from_token),
                mechanism,
                reason,
            }),
        }
    }

    fn page(&self) -> Response<Body> {
        let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&self.csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        common_headers(h);
        r
    }
}

/// Reads the `Authorization` header.
fn credentials(headers: &HeaderMap) -> Result<Credentials, Unauthenticated> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Unauthenticated::Missing);
    };
    let refused = |mechanism: &'static str, principal: Option<String>, reason: &str| {
        Unauthenticated::Refused {
            principal,
            mechanism,
            reason: reason.to_string(),
        }
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(refused("http", None, "Authorization header too long"));
    }
    let Ok(text) = value.to_str() else {
        return Err(refused("http", None, "Authorization header is not ASCII"));
    };
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| refused("http-basic", None, "Basic credentials are not base64"))?,
        );
        let Ok(pair) = std::str::from_utf8(&decoded) else {
            return Err(refused(
                "http-basic",
                None,
                "Basic credentials are not UTF-8",
            ));
        };
        let Some((user, password)) = pair.split_once(':') else {
            return Err(refused("http-basic", None, "Basic credentials lack ':'"));
        };
        let user = user.to_string();
        let plain = gatehouse_sasl::plain::client_initial_response(&user, password)
            .map_err(|e| refused("http-basic", Some(user.clone()), &e.to_string()))?;
        Ok(Credentials::Basic { user, plain })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.contains('\u{1}') {
            return Err(refused("http-bearer", None, "malformed bearer token"));
        }
        // The OAUTHBEARER client message (RFC 7628) carrying the token, so
        // the token is validated exactly as on the Kafka listener.
        let mut message = Zeroizing::new(Vec::with_capacity(rest.len() + 24));
        message.extend_from_slice(b"n,,\x01auth=Bearer ");
        message.extend_from_slice(rest.as_bytes());
        message.extend_from_slice(b"\x01\x01");
        Ok(Credentials::Bearer { message })
    } else {
        Err(Unauthenticated::Missing)
    }
}

fn route(path: &str) -> Route {
    let id = |rest: &str| match percent_decode(rest, false) {
        Some(id) if !id.is_empty() => Some(id),
        _ => None,
    };
    match path {
        "/" | "/index.html" => Route::Page,
        "/api/events" => Route::Events,
        "/api/verify" => Route::Verify,
        "/api/erase" => Route::Erase,
        "/api/erasures" => Route::Erasures,
        _ => {
            if let Some(rest) = path.strip_prefix("/api/subject/") {
                id(rest).map_or(Route::NotFound, Route::Subject)
            } else if let Some(rest) = path.strip_prefix("/api/erasures/") {
                if let Some(subject) = rest.strip_suffix("/report") {
                    id(subject).map_or(Route::NotFound, Route::ErasureReport)
                } else if let Some(subject) = rest.strip_suffix("/verify") {
                    id(subject).map_or(Route::NotFound, Route::ErasureVerify)
                } else {
                    id(rest).map_or(Route::NotFound, Route::Erasure)
                }
            } else {
                Route::NotFound
            }
        }
    }
}

/// The query parameters of `/api/events` and `/api/subject/{id}`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    principal: Option<String>,
    topic: Option<String>,
    subject: Option<String>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    decision: Option<Decision>,
    limit: Option<usize>,
}

impl Params {
    /// Parses `a=b&c=d` (empty values mean "not given").
    fn parse(query: &str) -> Result<Self, String> {
        let mut p = Params::default();
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k, true).ok_or("bad percent-encoding in the query")?;
            let value = percent_decode(v, true).ok_or("bad percent-encoding in the query")?;
            if value.is_empty() {
                continue;
            }
            let time =
                |v: &str| gatehouse_audit::time::parse_time(v).map_err(|e| format!("{key}: {e}"));
            match key.as_str() {
                "principal" => p.principal = Some(value),
                "topic" => p.topic = Some(value),
                "subject" => p.subject = Some(value),
                "from" => p.from_ms = Some(time(&value)?),
                "to" => p.to_ms = Some(time(&value)?),
                "decision" => {
                    p.decision = Some(match value.as_str() {
                        "allow" => Decision::Allow,
                        "deny" => Decision::Deny,
                        _ => return Err("decision: expected allow or deny".into()),
                    })
                }
                "limit" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| "limit: expected a number".to_string())?;
                    if n == 0 || n > MAX_LIMIT {
                        return Err(format!("limit: expected 1 to {MAX_LIMIT}"));
                    }
                    p.limit = Some(n);
                }
                other => {
                    return Err(format!(
                        "unknown parameter {:?}",
                        other.chars().take(40).collect::<String>()
                    ))
                }
            }
        }
        Ok(p)
    }
}

/// Decodes `%XX` (and `+` as a space when `form`); `None` when malformed or
/// not UTF-8.
fn percent_decode(text: &str, form: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The newest `limit` of `events` (in time order), newest first, as JSON.
/// Longest erase request body.
const MAX_ERASE_BODY: usize = 16 * 1024;

/// `POST /api/erase` with `{"subject": "...", "reason": "..."}`: starts the
/// workflow (the request is recorded before this answers) and answers
/// `202` with the workflow as it stands.
async fn erase(
    eraser: &Arc<Eraser>,
    viewer: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_ERASE_BODY);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body could not be read (at most {MAX_ERASE_BODY} bytes): {e}"),
            )
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EraseRequest {
        subject: String,
        reason: String,
    }
    let asked: EraseRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"subject\": \"...\", \"reason\": \"...\"}}: {e}"),
            )
        }
    };
    match eraser.request(&asked.subject, viewer, &asked.reason).await {
        Ok(w) => json_response(
            StatusCode::ACCEPTED,
            &json!({"viewer": viewer, "workflow": w.to_json()}),
        ),
        Err(EraseError::Invalid(e)) => error(StatusCode::BAD_REQUEST, &e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn events_json(viewer: &str, events: Vec<Event>, limit: usize) -> Value {
    let matched = events.len();
    let skip = matched.saturating_sub(limit);
    let list: Vec<Value> = events
        .into_iter()
        .skip(skip)
        .rev()
        .map(|e| {
            let time = gatehouse_audit::time::format_time(e.time_ms);
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("time".into(), Value::String(time));
            }
            v
        })
        .collect();
    json!({
        "viewer": viewer,
        "count": list.len(),
        "matched": matched,
        "truncated": skip > 0,
        "events": list,
    })
}

fn verify_json(viewer: &str, report: &VerifyReport) -> Value {
    let replicas: Vec<Value> = report
        .replicas
        .iter()
        .map(|r| {
            json!({
                "replica": r.replica,
                "events": r.events,
                "checkpoints": r.checkpoints,
                "first_problem": r.first_problem.as_ref().map(|p| json!({
                    "segment": p.segment,
                    "line": p.line,
                    "seq": p.seq,
                    "reason": p.reason,
                })),
            })
        })
        .collect();
    json!({
        "viewer": viewer,
        "clean": report.is_clean(),
        "replicas": replicas,
    })
}

fn common_headers(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    common_headers(h);
    r
}

fn ok_json(body: Value) -> Response<Body> {
    json_response(StatusCode::OK, &body)
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn unauthorized() -> Response<Body> {
    let mut r = error(StatusCode::UNAUTHORIZED, "authentication required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"gatehouse-audit\""),
    );
    r
}

/// A CSP that allows exactly the page's own inline script and style (by
/// hash) and requests to this origin.
fn content_security_policy(page: &str) -> String {
    let hash = |open: &str, close: &str| -> Option<String> {
        let start = page.find(open)? + open.len();
        let end = start + page[start..].find(close)?;
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &page.as_bytes()[start..end]);
        Some(format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        ))
    };
    let script = hash("<script>", "</script>").unwrap_or_else(|| "'none'".into());
    let style = hash("<style>", "</style>").unwrap_or_else(|| "'none'".into());
    format!(
        "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let p = Params::parse(
            "principal=trust-safety&topic=social.posts&from=2026-11-26T08%3A00%3A00Z&to=5&decision=deny&limit=10&subject=",
        )
        .unwrap();
        assert_eq!(p.principal.as_deref(), Some("trust-safety"));
        assert_eq!(p.topic.as_deref(), Some("social.posts"));
        assert_eq!(p.from_ms, Some(1_795_680_000_000));
        assert_eq!(p.to_ms, Some(5));
        assert_eq!(p.decision, Some(Decision::Deny));
        assert_eq!(p.limit, Some(10));
        assert_eq!(p.subject, None);
        assert_eq!(Params::parse("").unwrap(), Params::default());
        for bad in [
            "decision=maybe",
            "limit=0",
            "limit=x",
            "from=yesterday",
            "colour=red",
            "principal=%zz",
            "principal=%c3",
        ] {
            assert!(Params::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_and_decoding() {
        assert!(matches!(route("/"), Route::Page));
        assert!(matches!(route("/api/verify"), Route::Verify));
        assert!(matches!(route("/api/subject/u%2D000042"), Route::Subject(s) if s == "u-000042"));
        assert!(matches!(route("/api/subject/"), Route::NotFound));
        assert!(matches!(route("/etc/passwd"), Route::NotFound));
        assert_eq!(percent_decode("a+b%20c", true).as_deref(), Some("a b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%4", true), None);
    }

    #[test]
    fn credentials_are_read_without_echoing_secrets() {
        let mut h = HeaderMap::new();
        assert!(matches!(credentials(&h), Err(Unauthenticated::Missing)));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YXVkaXRvcjpzM2NyZXQ="),
        );
        match credentials(&h) {
            Ok(Credentials::Basic { user, plain }) => {
                assert_eq!(user, "auditor");
                assert_eq!(&plain[..], b"\0auditor\0s3cret");
            }
            _ => panic!("basic credentials not read"),
        }
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        match credentials(&h) {
            Err(Unauthenticated::Refused { reason, .. }) => assert!(!reason.contains("!!!")),
            _ => panic!("bad base64 accepted"),
        }
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer a.b.c"),
        );
        match credentials(&h) {
            Ok(Credentials::Bearer { message }) => {
                assert_eq!(&message[..], b"n,,\x01auth=Bearer a.b.c\x01\x01")
            }
            _ => panic!("bearer not read"),
        }
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Negotiate x"),
        );
        assert!(matches!(credentials(&h), Err(Unauthenticated::Missing)));
    }

    #[test]
    fn the_page_is_allowed_exactly_its_own_script_and_style() {
        let csp = content_security_policy(PAGE);
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(
            !PAGE.contains("innerHTML"),
            "the page must insert text with textContent"
        );
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "no external resources"
        );
    }
}
