//! The broker's HTTP listener (`admin_listen`, `gatehouse broker
//! --admin-addr`): `/metrics`, `/healthz` and `/readyz`, served by
//! [`gatehouse_telemetry::probes`]. Off unless configured. Plain HTTP/1.1
//! without credentials: bind it to a loopback or management address.
//!
//! The checks of `/readyz`: `store` (a HEAD of `cluster.json` answered
//! within 2 s), `not_fenced` (no other broker took this one's log over),
//! `state_loaded` (the log recovered, the catalog mirrored, this broker's
//! partitions and coordinator slots led again) and `not_stopping` (no
//! shutdown under way).
//!
//! The listener starts before the broker recovers its state, so `/healthz`
//! answers during a long recovery while `/readyz` says why it is not ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_telemetry::{Check, Checks, Probe};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::BrokerMetrics;
use crate::error::BrokerError;
use crate::storage::Storage;

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
/// probes.
pub(crate) async fn serve(listener: TcpListener, probes: Arc<Probes>) {
    gatehouse_telemetry::serve_probes(listener, probes).await
}

impl Probe for Probes {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn checks(&self) -> Checks<'_> {
        Box::pin(async move {
            let store = match tokio::time::timeout(STORE_WAIT, self.storage.check_reachable()).await
            {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {STORE_WAIT:?}")),
            };
            let fenced = *self.fenced.borrow();
            let loaded = *self.loaded.borrow();
            let stopping = *self.shutdown.borrow();
            let checks: Vec<Check> = vec![
                ("store".into(), store),
                (
                    "not_fenced".into(),
                    fenced.then(|| "another broker took this broker's log over".to_string()),
                ),
                (
                    "state_loaded".into(),
                    (!loaded).then(|| "recovering its state and leadership".to_string()),
                ),
                (
                    "not_stopping".into(),
                    stopping.then(|| "shutting down".to_string()),
                ),
            ];
            checks
        })
    }
}
