//! # gatehouse-telemetry
//!
//! What the proxy and the broker tell operators, through OpenTelemetry:
//!
//! - **Metrics** ([`Metrics`]): instruments made from an OpenTelemetry
//!   [`Meter`], read by Prometheus from `GET /metrics` (the text format,
//!   rendered by [`Metrics::render`]) and pushed over OTLP/HTTP when an
//!   endpoint is configured. Each proxy and each broker owns its meter
//!   provider: two of them in one process (the demo, the tests) keep their
//!   figures apart.
//! - **Traces** ([`Tracing`]): `tracing` spans of the target [`SPANS`]
//!   exported over OTLP/HTTP with a parent-based ratio sampler. Spans of
//!   that target are never written to the log, and cost nothing when no
//!   exporter is configured (no layer is interested in them).
//!
//! ```toml
//! [telemetry]
//! otlp_endpoint = "http://otel-collector:4318"  # metrics and traces; off by default
//! trace_sample_ratio = 0.01                      # of requests not already traced
//! metrics_interval_secs = 30                     # OTLP metrics push interval
//! listen = "127.0.0.1:9464"                      # the proxy's /metrics, /healthz, /readyz
//! ```
//!
//! Labels never carry personal data nor anything a client chooses beyond
//! the names the catalog knows: API names, outcomes, mechanisms, actions,
//! effects, topic names of the catalog, broker addresses of the cluster.

use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;

pub mod probes;

pub use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
pub use opentelemetry::KeyValue;
pub use probes::{readiness_report, serve_probes, Check, Checks, Probe};

/// The `tracing` target of the spans exported as traces.
pub const SPANS: &str = "gatehouse::trace";

/// Errors setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid [telemetry] setting: {0}")]
    Config(String),
    #[error("cannot set up the OTLP exporter for {signal}: {message}")]
    Exporter {
        signal: &'static str,
        message: String,
    },
    #[error("cannot set up the Prometheus registry: {0}")]
    Prometheus(String),
}

/// `[telemetry]` of a configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint (a collector's base URL, e.g.
    /// `http://otel-collector:4318`); `/v1/metrics` and `/v1/traces` are
    /// appended. Without it nothing is pushed; `/metrics` still answers.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The share of requests traced when the client did not already decide
    /// (a `traceparent` header's sampled flag is followed), 0.0 to 1.0.
    #[serde(default = "default_ratio")]
    pub trace_sample_ratio: f64,
    /// How often metrics are pushed over OTLP.
    #[serde(default = "default_interval")]
    pub metrics_interval_secs: u64,
    /// The proxy's metrics and probes listener (`/metrics`, `/healthz`,
    /// `/readyz`, plain HTTP, no credentials), for proxies without
    /// `[admin]`; off by default. (A broker's is `--admin-addr`.)
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
}

fn default_ratio() -> f64 {
    0.01
}

fn default_interval() -> u64 {
    30
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            trace_sample_ratio: default_ratio(),
            metrics_interval_secs: default_interval(),
            listen: None,
        }
    }
}

impl TelemetryConfig {
    /// Checks the values: a sampling ratio within 0..=1, an `http(s)`
    /// endpoint, a non-zero interval.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(TelemetryError::Config(format!(
                "trace_sample_ratio = {} is not between 0.0 and 1.0",
                self.trace_sample_ratio
            )));
        }
        if self.metrics_interval_secs == 0 {
            return Err(TelemetryError::Config(
                "metrics_interval_secs must be at least 1".into(),
            ));
        }
        if let Some(e) = &self.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(TelemetryError::Config(format!(
                    "otlp_endpoint = {e:?} is not an http:// or https:// URL"
                )));
            }
        }
        Ok(())
    }

    fn signal_url(&self, path: &str) -> Option<String> {
        self.otlp_endpoint
            .as_ref()
            .map(|e| format!("{}/{path}", e.trim_end_matches('/')))
    }
}

fn resource(service: &'static str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The reader `/metrics` renders from: no `target_info` or scope labels
/// (one provider per component, named in the resource).
fn prometheus_reader(
    registry: &prometheus::Registry,
) -> Result<opentelemetry_prometheus::PrometheusExporter, TelemetryError> {
    opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .scope_info_enabled(false)
        .build()
        .map_err(|e| TelemetryError::Prometheus(e.to_string()))
}

/// One component's metrics: its meter provider, the Prometheus registry
/// `/metrics` renders, and the OTLP push when configured.
#[derive(Clone)]
pub struct Metrics {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    service: &'static str,
    /// Instruments read when scraped, kept with their callbacks.
    observed: std::sync::Arc<std::sync::Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// What an instrument read when scraped reports: values with their labels.
pub type Readings<T> = Vec<(T, Vec<KeyValue>)>;

impl Metrics {
    /// Metrics of `service` (`gatehouse-proxy`, `gatehouse-broker`).
    pub fn new(service: &'static str, config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        config.validate()?;
        let registry = prometheus::Registry::new();
        let prometheus = prometheus_reader(&registry)?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource(service))
            .with_reader(prometheus);
        if let Some(url) = config.signal_url("v1/metrics") {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| TelemetryError::Exporter {
                    signal: "metrics",
                    message: e.to_string(),
                })?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(Duration::from_secs(config.metrics_interval_secs))
                .build();
            builder = builder.with_reader(reader);
        }
        Ok(Self {
            provider: builder.build(),
            registry,
            service,
            observed: Default::default(),
        })
    }

    /// Metrics that go nowhere but `/metrics` (tests, tools).
    pub fn local(service: &'static str) -> Self {
        let registry = prometheus::Registry::new();
        let provider = match prometheus_reader(&registry) {
            Ok(reader) => SdkMeterProvider::builder()
                .with_resource(resource(service))
                .with_reader(reader)
                .build(),
            // Registering a new exporter in a new registry cannot collide;
            // without it, the instruments still work and render nothing.
            Err(_) => SdkMeterProvider::builder().build(),
        };
        Self {
            provider,
            registry,
            service,
            observed: Default::default(),
        }
    }

    /// The meter instruments are made from.
    pub fn meter(&self, scope: &'static str) -> Meter {
        self.provider.meter(scope)
    }

    fn keep(&self, instrument: Box<dyn std::any::Any + Send + Sync>) {
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(instrument);
    }

    /// A gauge whose values `read` gives when scraped (or pushed).
    pub fn gauge(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> Readings<i64> + Send + Sync + 'static,
    ) {
        let g = self
            .meter(self.service)
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |o| {
                for (v, labels) in read() {
                    o.observe(v, &labels);
                }
            })
            .build();
        self.keep(Box::new(g));
    }

    /// A counter kept elsewhere (an atomic, a store's counters), read when
    /// scraped (or pushed).
    pub fn counted(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> Readings<u64> + Send + Sync + 'static,
    ) {
        let c = self
            .meter(self.service)
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |o| {
                for (v, labels) in read() {
                    o.observe(v, &labels);
                }
            })
            .build();
        self.keep(Box::new(c));
    }

    /// Every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        use prometheus::Encoder as _;
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "cannot render metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Pushes what is left over OTLP and stops the exporters.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "metrics shutdown");
        }
    }
}

/// The trace exporter of a process: a tracer provider sending spans of the
/// target [`SPANS`] over OTLP/HTTP. Dropping it (or [`Tracing::shutdown`])
/// flushes what is batched.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// An exporter for `config`, or `None` when no endpoint is configured.
    pub fn new(
        service: &'static str,
        config: &TelemetryConfig,
    ) -> Result<Option<Self>, TelemetryError> {
        config.validate()?;
        let Some(url) = config.signal_url("v1/traces") else {
            return Ok(None);
        };
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TelemetryError::Exporter {
                signal: "traces",
                message: e.to_string(),
            })?;
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.trace_sample_ratio,
        )));
        let provider = SdkTracerProvider::builder()
            .with_resource(resource(service))
            .with_sampler(sampler)
            .with_batch_exporter(exporter)
            .build();
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that turns spans of the target [`SPANS`] into
    /// OpenTelemetry spans; it sees nothing else.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("gatehouse"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(SPANS, tracing::Level::TRACE),
            )
    }

    /// Sends what is batched now.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::debug!(error = %e, "trace exporter flush");
        }
    }

    /// Sends what is batched and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
    }
}

/// Installs the process's `tracing` subscriber: log lines on stderr (text
/// or JSON, level from `GATEHOUSE_LOG`, default `info`), and, with an
/// exporter, the spans of the target [`SPANS`] as OpenTelemetry traces.
/// Spans of that target never reach the log lines.
pub fn init_logging(json: bool, traces: Option<&Tracing>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter = || {
        let base = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        match format!("{SPANS}=off").parse() {
            Ok(directive) => base.add_directive(directive),
            Err(_) => base,
        }
    };
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(traces.map(|t| t.layer()))
        .try_init();
}

/// Makes `span` a child of the W3C trace context `traceparent` (a record
/// header's value), when it parses. Returns whether it did.
pub fn follow_traceparent(span: &tracing::Span, traceparent: &str) -> bool {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    struct One<'a>(&'a str);
    impl opentelemetry::propagation::Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            (key == "traceparent").then_some(self.0)
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent"]
        }
    }
    let cx =
        opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&One(traceparent));
    {
        use opentelemetry::trace::TraceContextExt as _;
        if !cx.span().span_context().is_valid() {
            return false;
        }
    }
    span.set_parent(cx).is_ok()
}

/// Whether a span of the target [`SPANS`] would be recorded at all: false
/// when no trace exporter is installed, so callers skip the work of
/// filling its fields.
pub fn tracing_enabled() -> bool {
    tracing::enabled!(target: "gatehouse::trace", tracing::Level::INFO)
}

/// Seconds since `start`, for duration histograms (OpenTelemetry's
/// convention is seconds as f64).
pub fn seconds_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_format() {
        let m = Metrics::local("gatehouse-test");
        let c = m
            .meter("t")
            .u64_counter("gatehouse.test.requests")
            .with_description("Requests")
            .build();
        c.add(3, &[KeyValue::new("api", "Fetch")]);
        let text = m.render();
        assert!(
            text.contains("gatehouse_test_requests_total{api=\"Fetch\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let bad = TelemetryConfig {
            trace_sample_ratio: 1.5,
            ..Default::default()
        };
        assert!(Metrics::new("t", &bad)
            .unwrap_err()
            .to_string()
            .contains("trace_sample_ratio = 1.5"));
        let bad = TelemetryConfig {
            otlp_endpoint: Some("collector:4318".into()),
            ..Default::default()
        };
        assert!(Tracing::new("t", &bad)
            .unwrap_err()
            .to_string()
            .contains("not an http"));
        assert!(Tracing::new("t", &TelemetryConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_traceparent_is_parsed_or_ignored() {
        let span = tracing::Span::none();
        assert!(!follow_traceparent(&span, "not a trace context"));
    }
}
