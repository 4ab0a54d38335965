//! `/healthz` and `/readyz` on the admin listener, for load balancers and
//! orchestrators: unauthenticated, not audited (probes come every few
//! seconds), and they say nothing but which checks pass.
//!
//! Ready means: the upstream cluster answers; the proxy's followers (the
//! consent topic, the key topic, the erasure topic) have read their topic
//! to its end; and the directories it writes (the audit trail, the key and
//! consent state) take a write.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::cluster::client::{Conn, Upstream};
use crate::cluster::follower::FollowerStatus;

/// How long the upstream check waits for the cluster.
const UPSTREAM_WAIT: Duration = Duration::from_secs(3);

/// What readiness is judged by.
pub(crate) struct Readiness {
    pub upstream: Arc<dyn Upstream>,
    pub max_frame_bytes: usize,
    /// Each follower's name and status.
    pub followers: Vec<(&'static str, watch::Receiver<FollowerStatus>)>,
    /// Each directory the proxy writes, by what it holds.
    pub dirs: Vec<(&'static str, PathBuf)>,
}

impl Readiness {
    /// Every check: (name, passed, why not).
    pub(crate) async fn checks(&self) -> Vec<(String, bool, Option<String>)> {
        let mut out = Vec::new();
        let upstream = tokio::time::timeout(
            UPSTREAM_WAIT,
            Conn::open(self.upstream.as_ref(), None, self.max_frame_bytes),
        )
        .await;
        out.push(match upstream {
            Ok(Ok(_)) => ("upstream".to_string(), true, None),
            Ok(Err(e)) => ("upstream".to_string(), false, Some(e.to_string())),
            Err(_) => (
                "upstream".to_string(),
                false,
                Some(format!("no answer within {UPSTREAM_WAIT:?}")),
            ),
        });
        for (name, status) in &self.followers {
            let caught_up = status.borrow().caught_up();
            out.push((
                format!("follower:{name}"),
                caught_up,
                (!caught_up).then(|| "not read to its end yet".to_string()),
            ));
        }
        for (name, dir) in &self.dirs {
            let probe = dir.join(".gatehouse-ready-probe");
            let written =
                std::fs::write(&probe, b"ready").and_then(|()| std::fs::remove_file(&probe));
            out.push(match written {
                Ok(()) => (format!("writable:{name}"), true, None),
                Err(e) => (format!("writable:{name}"), false, Some(e.to_string())),
            });
        }
        out
    }

    /// The checks as the response body, and whether all passed.
    pub(crate) async fn report(&self) -> (bool, Value) {
        gatehouse_telemetry::readiness_report(self.failures().await)
    }

    /// Every check with why it fails (`None` when it passes).
    async fn failures(&self) -> Vec<gatehouse_telemetry::Check> {
        self.checks()
            .await
            .into_iter()
            .map(|(name, ok, why)| {
                let why = (!ok).then(|| why.unwrap_or_else(|| "failed".to_string()));
                (name, why)
            })
            .collect()
    }
}

/// What the proxy's metrics listener (`[telemetry] listen`) serves: the
/// metrics, and the same readiness as the admin listener's `/readyz`.
pub(crate) struct Probes {
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
    pub readiness: Arc<Readiness>,
}

impl gatehouse_telemetry::Probe for Probes {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn checks(&self) -> gatehouse_telemetry::Checks<'_> {
        Box::pin(self.readiness.failures())
    }
}
