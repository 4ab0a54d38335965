//! A small HTTP/1.1 listener for Prometheus and orchestrators, shared by
//! the broker (`--admin-addr`) and the proxy (`[telemetry] listen`):
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | every metric, Prometheus text format 0.0.4 |
//! | `GET /healthz` | `200 {"live":true}` while the process serves HTTP |
//! | `GET /readyz` | `200` when every check passes, else `503`; the checks as JSON |
//!
//! `/readyz` answers `{"ready":false,"checks":[{"check":"store","ok":false,
//! "reason":"…"},…]}`. Plain HTTP without credentials: bind it to a
//! loopback or management address. At most [`MAX_CONNECTIONS`] connections
//! at once (more are closed at accept), one request each, headers of at
//! most 16 KiB read within 10 s, and a connection lasts at most
//! [`CONNECTION_LIMIT`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 16;

/// Longest a connection is kept, whatever the client does.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// One readiness check: its name, and why it fails (`None` when it
/// passes).
pub type Check = (String, Option<String>);

/// The readiness checks, run on each `/readyz`.
pub type Checks<'a> = Pin<Box<dyn Future<Output = Vec<Check>> + Send + 'a>>;

/// What the listener serves from.
pub trait Probe: Send + Sync + 'static {
    /// Every metric, in the Prometheus text format.
    fn metrics(&self) -> String;
    /// The readiness checks.
    fn checks(&self) -> Checks<'_>;
}

/// The `/readyz` body for `checks`, and whether all passed.
pub fn readiness_report(checks: Vec<Check>) -> (bool, Value) {
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

/// Serves `listener` until the task is aborted or dropped. Connections run
/// in a set the task owns, so they end with it.
pub async fn serve_probes(listener: TcpListener, probe: Arc<dyn Probe>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        tracing::debug!(%peer, "metrics listener busy; connection closed");
                        continue;
                    }
                    connections.spawn(connection(probe.clone(), sock, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(probe: Arc<dyn Probe>, sock: TcpStream, peer: SocketAddr) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let p = probe.clone();
        async move { Ok::<_, Infallible>(handle(p.as_ref(), &req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .keep_alive(false)
        .serve_connection(TokioIo::new(sock), service);
    match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection ended"),
        Err(_) => tracing::debug!(%peer, "metrics connection closed after its time limit"),
        Ok(Ok(())) => {}
    }
}

async fn handle(probe: &dyn Probe, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = json_response(json!({"error": "only GET is served"}));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => metrics_response(probe.metrics()),
        "/healthz" => json_response(json!({"live": true})),
        "/readyz" => {
            let (ready, body) = readiness_report(probe.checks().await);
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

/// A `/metrics` answer: `text` in the Prometheus text format 0.0.4.
pub fn metrics_response(text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn json_response(body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
