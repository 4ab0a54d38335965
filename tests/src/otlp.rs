//! An OTLP/HTTP receiver for the telemetry tests: it speaks the collector
//! protocol (`POST /v1/traces`, `POST /v1/metrics`, protobuf bodies, as
//! the OpenTelemetry collector accepts them) and keeps what it received,
//! decoded with the protocol's own message types.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One span as received, with its string attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub attributes: Vec<(String, String)>,
    pub service: String,
}

impl ReceivedSpan {
    /// The attribute `key`, as a string.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metric_names: Vec<String>,
    requests: usize,
}

/// The receiver, serving until dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

fn value(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn span(s: &Span, service: &str) -> ReceivedSpan {
    ReceivedSpan {
        name: s.name.clone(),
        trace_id: s.trace_id.clone(),
        span_id: s.span_id.clone(),
        parent_span_id: s.parent_span_id.clone(),
        attributes: s
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), value(kv)))
            .collect(),
        service: service.to_string(),
    }
}

impl OtlpReceiver {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let r = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let r = r.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &r).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// The base URL to configure as the OTLP endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .lock()
            .map(|r| r.spans.clone())
            .unwrap_or_default()
    }

    /// The names of every metric received so far.
    pub fn metric_names(&self) -> Vec<String> {
        self.received
            .lock()
            .map(|r| r.metric_names.clone())
            .unwrap_or_default()
    }

    /// Waits until `found` picks something from what was received.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut found: impl FnMut(&OtlpReceiver) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(t) = found(self) {
                return Ok(t);
            }
            if tokio::time::Instant::now() > deadline {
                let requests = self.received.lock().map(|r| r.requests).unwrap_or(0);
                bail!(
                    "no {what} within {within:?} ({requests} export requests; spans: {:?})",
                    self.spans()
                        .iter()
                        .map(|s| (&s.name, &s.attributes))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    received: &Mutex<Received>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let mut r = match received.lock() {
        Ok(r) => r,
        Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR),
    };
    r.requests += 1;
    match path.as_str() {
        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(export) => {
                for rs in &export.resource_spans {
                    let service = rs
                        .resource
                        .as_ref()
                        .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                        .map(value)
                        .unwrap_or_default();
                    for ss in &rs.scope_spans {
                        r.spans.extend(ss.spans.iter().map(|s| span(s, &service)));
                    }
                }
                protobuf(ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(_) => status(StatusCode::BAD_REQUEST),
        },
        "/v1/metrics" => match ExportMetricsServiceRequest::decode(body) {
            Ok(export) => {
                for rm in &export.resource_metrics {
                    for sm in &rm.scope_metrics {
                        r.metric_names
                            .extend(sm.metrics.iter().map(|m| m.name.clone()));
                    }
                }
                protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
            }
            Err(_) => status(StatusCode::BAD_REQUEST),
        },
        _ => status(StatusCode::NOT_FOUND),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

fn protobuf(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    r
}
