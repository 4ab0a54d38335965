//! The broker's HTTP listener (`admin_listen`, `gatehouse broker
//! --admin-addr`): metrics and probes, for Prometheus and orchestrators.
//! Off unless configured. Plain HTTP/1.1 without credentials: bind it to a
//! loopback or management address.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format 0.0.4 |
//! | `GET /healthz` | `200 {"live":true}` while the process serves HTTP |
//! | `GET /readyz` | `200` when every check passes, else `503`; the checks as JSON |
//!
//! `/readyz` answers `{"ready":false,"checks":[{"check":"store","ok":false,
//! "reason":"…"},…]}` with the checks `store` (a HEAD of `cluster.json`
//! answered within 2 s), `not_fenced` (no other broker took this one's log
//! over), `state_loaded` (the log recovered, the catalog mirrored, this
//! broker's partitions and coordinator slots led again) and `not_stopping`
//! (no shutdown under way).
//!
//! The listener starts before the broker recovers its state, so `/healthz`
//! answers during a long recovery while `/readyz` says why it is not ready.
//! At most [`MAX_CONNECTIONS`] connections at once (more are closed at
//! accept), one request each, headers of at most 16 KiB read within 10 s,
//! and a connection lasts at most [`CONNECTION_LIMIT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::metrics::BrokerMetrics;
use crate::error::BrokerError;
use crate::storage::Storage;

/// Connections served at once; more are closed on accept.
pub(crate) const MAX_CONNECTIONS: usize = 16;

/// Longest a connection is kept, whatever the client does.
pub(crate) const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// How long the `store` check waits for the object store.
pub(crate) const STORE_WAIT: Duration = Duration::from_secs(2);

/// What the listener serves from.
pub(crate) struct Probes {
    pub metrics: Arc<BrokerMetrics>,
    pub storage: Storage,
    pub fenced: watch::Receiver<bool>,
    /// Set once the broker has recovered and leads its keys again.
    pub loaded: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
}

/// Binds the listener (before anything else starts, so a bad address
/// refuses the start cleanly).
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Serves `listener` until the task is aborted (when the broker is
/// dropped or shut down): a fenced or stopping broker still answers its
/// probes. Connections run in a set the task owns, so they end with it.
pub(crate) async fn serve(listener: TcpListener, probes: Arc<Probes>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::debug!(%peer, "broker admin listener busy; connection closed");
                        continue;
                    }
                    connections.spawn(connection(probes.clone(), sock, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(probes: Arc<Probes>, sock: TcpStream, peer: SocketAddr) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let p = probes.clone();
        async move { Ok::<_, Infallible>(handle(&p, &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .keep_alive(false)
        .serve_connection(TokioIo::new(sock), service);
    match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin connection ended"),
        Err(_) => tracing::debug!(%peer, "admin connection closed after its time limit"),
        Ok(Ok(())) => {}
    }
}

async fn handle(probes: &Probes, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = json_response(json!({"error": "only GET is served"}));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(probes.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => json_response(json!({"live": true})),
        "/readyz" => {
            let (ready, body) = readiness(probes).await;
            let mut r = json_response(body);
            if !ready {
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            r
        }
        _ => {
            let mut r = json_response(json!({"error": "not found"}));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}

/// Every check, as the `/readyz` body, and whether all passed.
async fn readiness(probes: &Probes) -> (bool, Value) {
    let store = match tokio::time::timeout(STORE_WAIT, probes.storage.check_reachable()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {STORE_WAIT:?}")),
    };
    let fenced = *probes.fenced.borrow();
    let loaded = *probes.loaded.borrow();
    let stopping = *probes.shutdown.borrow();
    let checks = [
        ("store", store),
        (
            "not_fenced",
            fenced.then(|| "another broker took this broker's log over".to_string()),
        ),
        (
            "state_loaded",
            (!loaded).then(|| "recovering its state and leadership".to_string()),
        ),
        (
            "not_stopping",
            stopping.then(|| "shutting down".to_string()),
        ),
    ];
    let ready = checks.iter().all(|(_, why)| why.is_none());
    let body = json!({
        "ready": ready,
        "checks": checks
            .into_iter()
            .map(|(name, why)| json!({"check": name, "ok": why.is_none(), "reason": why}))
            .collect::<Vec<_>>(),
    });
    (ready, body)
}

fn json_response(body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
