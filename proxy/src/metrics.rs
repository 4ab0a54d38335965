//! The proxy's metrics, through the OpenTelemetry metrics API
//! ([`gatehouse_telemetry`]): rendered for Prometheus on the admin
//! listener (`GET /metrics`) and pushed over OTLP when `[telemetry]
//! otlp_endpoint` is set. The reference (every name as `/metrics` prints
//! it, with its labels) is in `docs/operations.md`.
//!
//! Labels are bounded: API names, outcomes, SASL mechanisms, policy
//! actions and effects, field effects, the catalog's topic names, the
//! cluster's broker addresses. No subject, principal or client id.
//!
//! Counters the proxy keeps anyway (the policy store's plan cache, the
//! connection semaphore, the followers' offsets, the audit queue) are read
//! only when scraped; the per-request cost is one counter add and two
//! histogram records.

use std::sync::Arc;
use std::time::Instant;

use gatehouse_telemetry::{Counter, Histogram, KeyValue, Metrics, Readings};
use kafka_protocol::messages::ApiKey;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Forwarded to the cluster and answered from there.
    Forwarded,
    /// Answered by the proxy itself (a refusal, SASL, a filter's answer).
    Answered,
    /// The connection was closed because of it.
    Closed,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Answered => "answered",
            Outcome::Closed => "closed",
        }
    }
}

/// The instruments of one proxy.
pub struct ProxyMetrics {
    export: Metrics,
    /// `api` label by API key.
    api: Vec<KeyValue>,
    unknown_api: KeyValue,
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
    upstream_duration: Histogram<f64>,
    filter_duration: Histogram<f64>,
    bytes: Counter<u64>,
    connections_refused: Counter<u64>,
    authentications: Counter<u64>,
    decisions: Counter<u64>,
    refusals: Counter<u64>,
    fields: Counter<u64>,
    withheld: Counter<u64>,
    view_cache: Counter<u64>,
    upstream_errors: Counter<u64>,
    audit_append: Histogram<f64>,
    audit_batch: Histogram<u64>,
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics").finish_non_exhaustive()
    }
}

const SECONDS: &str = "s";

/// Latency buckets (seconds): 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

impl ProxyMetrics {
    /// The instruments, made from `export`'s meter.
    pub fn new(export: Metrics) -> Arc<Self> {
        let meter = export.meter("gatehouse-proxy");
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit(SECONDS)
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let mut api = Vec::new();
        for key in 0..=i16::from(u8::MAX) {
            let name = match ApiKey::try_from(key) {
                Ok(a) => format!("{a:?}"),
                Err(()) => "unknown".to_string(),
            };
            api.push(KeyValue::new("api", name));
        }
        Arc::new(Self {
            api,
            unknown_api: KeyValue::new("api", "unknown"),
            requests: counter(
                "gatehouse.proxy.requests",
                "Client requests by API and outcome (forwarded, answered by the proxy, closed)",
            ),
            request_duration: latency(
                "gatehouse.proxy.request.duration",
                "From a request's arrival to its response being queued for the client",
            ),
            upstream_duration: latency(
                "gatehouse.proxy.upstream.duration",
                "From a request's forwarding to the cluster's response",
            ),
            filter_duration: latency(
                "gatehouse.proxy.filter.duration",
                "Time in the filter chain, by API and direction",
            ),
            // No unit on purpose: Prometheus would name it
            // `…_bytes_bytes_total`.
            bytes: counter(
                "gatehouse.proxy.client.bytes",
                "Bytes read from (in) and written to (out) clients",
            ),
            connections_refused: counter(
                "gatehouse.proxy.connections.refused",
                "Client connections refused, by reason",
            ),
            authentications: counter(
                "gatehouse.proxy.authentications",
                "SASL authentications by mechanism and outcome",
            ),
            decisions: counter(
                "gatehouse.proxy.policy.decisions",
                "Request-level policy decisions by action and effect",
            ),
            refusals: counter(
                "gatehouse.proxy.refusals",
                "Requests with at least one resource refused by policy, by API",
            ),
            fields: counter(
                "gatehouse.proxy.fields",
                "Protected field values delivered, by topic and effect",
            ),
            withheld: counter(
                "gatehouse.proxy.records.withheld",
                "Fetched records withheld (consent, residency, erasure), by topic",
            ),
            view_cache: counter(
                "gatehouse.proxy.view_cache.batches",
                "Fetched batches of protected topics taken from the view cache (result=hit) or transformed and kept (result=miss)",
            ),
            upstream_errors: counter(
                "gatehouse.proxy.upstream.errors",
                "Cluster connections that failed or ended with an error, by broker",
            ),
            audit_append: latency(
                "gatehouse.proxy.audit.append.duration",
                "Wait for an audit append to be durable",
            ),
            audit_batch: meter
                .u64_histogram("gatehouse.proxy.audit.batch.size")
                .with_unit("{event}")
                .with_description("Events per audit batch written and fsync'd")
                .with_boundaries(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0])
                .build(),
            export,
        })
        .zeroed()
    }

    /// Counters of rare events start at 0 for the label values known in
    /// advance, so that dashboards and alerts see them before the first.
    fn zeroed(self: Arc<Self>) -> Arc<Self> {
        for reason in ["limit", "tls", "auth_timeout"] {
            self.connections_refused
                .add(0, &[KeyValue::new("reason", reason)]);
        }
        self.upstream_errors
            .add(0, &[KeyValue::new("broker", "bootstrap")]);
        self
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        self.export.render()
    }

    /// Stops the OTLP push (after a last one).
    pub fn shutdown(&self) {
        self.export.shutdown();
    }

    /// A gauge read when scraped.
    pub(crate) fn gauge(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> Readings<i64> + Send + Sync + 'static,
    ) {
        self.export.gauge(name, description, read);
    }

    /// A counter kept elsewhere (an atomic), read when scraped.
    pub(crate) fn counted(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> Readings<u64> + Send + Sync + 'static,
    ) {
        self.export.counted(name, description, read);
    }

    fn api(&self, api: ApiKey) -> KeyValue {
        usize::try_from(api as i16)
            .ok()
            .and_then(|i| self.api.get(i))
            .unwrap_or(&self.unknown_api)
            .clone()
    }

    /// A request done: its outcome and the time since it arrived.
    pub(crate) fn request(&self, api: ApiKey, outcome: Outcome, arrived: Instant) {
        let api = self.api(api);
        self.request_duration
            .record(arrived.elapsed().as_secs_f64(), std::slice::from_ref(&api));
        self.requests
            .add(1, &[api, KeyValue::new("outcome", outcome.name())]);
    }

    /// A request closed the connection.
    pub(crate) fn closed(&self, api: ApiKey) {
        self.requests.add(
            1,
            &[
                self.api(api),
                KeyValue::new("outcome", Outcome::Closed.name()),
            ],
        );
    }

    /// A cluster round trip.
    pub(crate) fn upstream(&self, api: ApiKey, sent: Instant) {
        self.upstream_duration
            .record(sent.elapsed().as_secs_f64(), &[self.api(api)]);
    }

    /// Time in the filter chain.
    pub(crate) fn filters(&self, api: ApiKey, direction: &'static str, started: Instant) {
        self.filter_duration.record(
            started.elapsed().as_secs_f64(),
            &[self.api(api), KeyValue::new("direction", direction)],
        );
    }

    /// Bytes read from (`"in"`) or written to (`"out"`) a client.
    pub(crate) fn client_bytes(&self, direction: &'static str, n: usize) {
        self.bytes
            .add(n as u64, &[KeyValue::new("direction", direction)]);
    }

    /// A connection refused (`limit`, `tls`).
    pub(crate) fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// A SASL exchange ended.
    pub(crate) fn authentication(&self, mechanism: &str, ok: bool) {
        let mechanism = match mechanism {
            "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" | "OAUTHBEARER" => mechanism.to_string(),
            _ => "other".to_string(),
        };
        self.authentications.add(
            1,
            &[
                KeyValue::new("mechanism", mechanism),
                KeyValue::new("outcome", if ok { "ok" } else { "failed" }),
            ],
        );
    }

    /// A request-level policy decision.
    pub(crate) fn decision(&self, action: gatehouse_policy::Action, allowed: bool) {
        self.decisions.add(
            1,
            &[
                KeyValue::new("action", action.name()),
                KeyValue::new("effect", if allowed { "allow" } else { "deny" }),
            ],
        );
    }

    /// A request with refused resources.
    pub(crate) fn refusal(&self, api: ApiKey) {
        self.refusals.add(1, &[self.api(api)]);
    }

    /// `n` values of protected fields of `topic` delivered as `effect`.
    pub(crate) fn fields(&self, topic: &str, effect: &'static str, n: u64) {
        if n > 0 {
            self.fields.add(
                n,
                &[
                    KeyValue::new("topic", topic.to_string()),
                    KeyValue::new("effect", effect),
                ],
            );
        }
    }

    /// `n` fetched records of `topic` withheld.
    pub(crate) fn withheld(&self, topic: &str, n: u64) {
        if n > 0 {
            self.withheld
                .add(n, &[KeyValue::new("topic", topic.to_string())]);
        }
    }

    /// Batches of one fetched partition taken from the view cache, and
    /// transformed for it.
    pub(crate) fn view_cache(&self, hits: usize, misses: usize) {
        if hits > 0 {
            self.view_cache
                .add(hits as u64, &[KeyValue::new("result", "hit")]);
        }
        if misses > 0 {
            self.view_cache
                .add(misses as u64, &[KeyValue::new("result", "miss")]);
        }
    }

    /// A cluster connection failed or ended with an error.
    pub(crate) fn upstream_error(&self, broker: &str) {
        self.upstream_errors
            .add(1, &[KeyValue::new("broker", broker.to_string())]);
    }
}

impl gatehouse_audit::AuditObserver for ProxyMetrics {
    fn appended(&self, _events: usize, wait: std::time::Duration, ok: bool) {
        self.audit_append.record(
            wait.as_secs_f64(),
            &[KeyValue::new("outcome", if ok { "ok" } else { "failed" })],
        );
    }

    fn batch(&self, _appends: usize, events: usize) {
        self.audit_batch.record(events as u64, &[]);
    }
}
