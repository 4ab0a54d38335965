//! The broker's metrics, through the OpenTelemetry metrics API
//! ([`gatehouse_telemetry`]): each broker owns its meter provider (several
//! brokers in one process keep their figures apart), rendered for
//! Prometheus on the admin listener (`GET /metrics`) and pushed over OTLP
//! when `telemetry.otlp_endpoint` is set. The reference (every name as
//! `/metrics` prints it, with its labels) is in `docs/broker.md`.
//!
//! Labels are bounded: API names, outcomes, object store operations. Never
//! a topic (clients choose topic names here), a client id or a key.
//!
//! Per request: one counter add and one histogram record, on label sets
//! made at start. Per commit (in the committer): one counter add and two
//! histogram records. Per object store request: one or two counter adds.
//! Figures the broker keeps anyway (leadership, live brokers, rebalances,
//! the cache's size) are read only when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gatehouse_telemetry::{Counter, Histogram, KeyValue, Metrics};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use opentelemetry::metrics::Meter;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered without an error code.
    Ok,
    /// Answered with an error code (at the top or for a partition, topic,
    /// group or resource in it).
    Error,
    /// The connection was closed because of it (an unsupported version, a
    /// malformed body, a request before authentication, failed SASL).
    Closed,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::Closed];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Closed => "closed",
        }
    }

    /// `Ok` or `Error`, as the response says.
    pub(crate) fn of(resp: &ResponseKind) -> Self {
        if failed(resp) {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}

/// The `api` label, and the `api` + `outcome` labels, of one API key.
struct ApiLabels {
    api: [KeyValue; 1],
    outcomes: [[KeyValue; 2]; 3],
}

impl ApiLabels {
    fn new(name: String) -> Self {
        let api = KeyValue::new("api", name);
        Self {
            outcomes: Outcome::ALL.map(|o| [api.clone(), KeyValue::new("outcome", o.name())]),
            api: [api],
        }
    }
}

/// The instruments of one broker.
pub(crate) struct BrokerMetrics {
    export: Metrics,
    meter: Meter,
    /// Labels by API key (index: the key).
    labels: Vec<ApiLabels>,
    unknown: ApiLabels,
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
}

impl std::fmt::Debug for BrokerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerMetrics").finish_non_exhaustive()
    }
}

/// Latency buckets (seconds): 100 µs to 30 s (a long-polling fetch waits
/// up to its `max_wait_ms`).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

impl BrokerMetrics {
    /// The instruments, made from `export`'s meter.
    pub(crate) fn new(export: Metrics) -> Arc<Self> {
        let meter = export.meter("gatehouse-broker");
        let labels: Vec<ApiLabels> = (0..=i16::from(u8::MAX))
            .map(|key| {
                ApiLabels::new(match ApiKey::try_from(key) {
                    Ok(a) => format!("{a:?}"),
                    Err(()) => "unknown".to_string(),
                })
            })
            .collect();
        Arc::new(Self {
            labels,
            unknown: ApiLabels::new("unknown".to_string()),
            requests: meter
                .u64_counter("gatehouse.broker.requests")
                .with_description(
                    "Kafka requests by API and outcome (ok, error: an error code in the answer, closed: the connection was closed)",
                )
                .build(),
            request_duration: meter
                .f64_histogram("gatehouse.broker.request.duration")
                .with_unit("s")
                .with_description(
                    "From a request's arrival to its response being ready, by API (a fetch includes its long-poll wait)",
                )
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            meter,
            export,
        })
    }

    /// The meter other instruments of this broker are made from.
    pub(crate) fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Everything, in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        self.export.render()
    }

    /// Stops the OTLP push (after a last one).
    pub(crate) fn shutdown(&self) {
        self.export.shutdown();
    }

    fn labels(&self, api: ApiKey) -> &ApiLabels {
        usize::try_from(api as i16)
            .ok()
            .and_then(|i| self.labels.get(i))
            .unwrap_or(&self.unknown)
    }

    /// A request answered (or closed): counted, and its time since
    /// `arrived` recorded unless it closed the connection.
    pub(crate) fn request(&self, api: ApiKey, outcome: Outcome, arrived: Instant) {
        let labels = self.labels(api);
        self.requests.add(1, &labels.outcomes[outcome as usize]);
        if outcome != Outcome::Closed {
            self.request_duration
                .record(arrived.elapsed().as_secs_f64(), &labels.api);
        }
    }

    /// A gauge read when scraped.
    pub(crate) fn gauge(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.export
            .gauge(name, description, move || vec![(read(), Vec::new())]);
    }

    /// A counter kept elsewhere (an atomic), read when scraped.
    pub(crate) fn counted(
        &self,
        name: &'static str,
        description: &'static str,
        count: Arc<AtomicU64>,
    ) {
        self.export.counted(name, description, move || {
            vec![(count.load(Ordering::Relaxed), Vec::new())]
        });
    }
}

/// Whether the response carries an error code, at its top or for any
/// partition, topic, group or resource in it.
fn failed(resp: &ResponseKind) -> bool {
    match resp {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .any(|p| p.error_code != 0),
        ResponseKind::Fetch(r) => {
            r.error_code != 0
                || r.responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .any(|p| p.error_code != 0)
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0),
        ResponseKind::Metadata(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0),
        ResponseKind::OffsetFetch(r) => {
            r.error_code != 0
                || r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .any(|p| p.error_code != 0)
                || r.groups.iter().any(|g| {
                    g.error_code != 0
                        || g.topics
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .any(|p| p.error_code != 0)
                })
        }
        ResponseKind::FindCoordinator(r) => {
            r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0)
        }
        ResponseKind::JoinGroup(r) => r.error_code != 0,
        ResponseKind::Heartbeat(r) => r.error_code != 0,
        ResponseKind::LeaveGroup(r) => {
            r.error_code != 0 || r.members.iter().any(|m| m.error_code != 0)
        }
        ResponseKind::SyncGroup(r) => r.error_code != 0,
        ResponseKind::DescribeGroups(r) => r.groups.iter().any(|g| g.error_code != 0),
        ResponseKind::ListGroups(r) => r.error_code != 0,
        ResponseKind::ApiVersions(r) => r.error_code != 0,
        ResponseKind::CreateTopics(r) => r.topics.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteTopics(r) => r.responses.iter().any(|t| t.error_code != 0),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0),
        ResponseKind::InitProducerId(r) => r.error_code != 0,
        ResponseKind::DescribeConfigs(r) => r.results.iter().any(|c| c.error_code != 0),
        ResponseKind::AlterConfigs(r) => r.responses.iter().any(|c| c.error_code != 0),
        ResponseKind::IncrementalAlterConfigs(r) => r.responses.iter().any(|c| c.error_code != 0),
        ResponseKind::CreatePartitions(r) => r.results.iter().any(|c| c.error_code != 0),
        ResponseKind::DeleteGroups(r) => r.results.iter().any(|g| g.error_code != 0),
        ResponseKind::DescribeCluster(r) => r.error_code != 0,
        ResponseKind::SaslHandshake(r) => r.error_code != 0,
        ResponseKind::SaslAuthenticate(r) => r.error_code != 0,
        _ => false,
    }
}
