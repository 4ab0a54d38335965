//! The `broker_address` filter: rewrites every broker address in Metadata,
//! FindCoordinator and DescribeCluster responses to the proxy's own
//! listener for that node, so clients keep coming back through the proxy.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, BrokerId, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::filter::{Direction, Filter, FilterFuture, Response, ResponseAction, SessionContext};

/// Where clients reach a broker node through the proxy: the proxy's
/// listener for that node, started the first time the node is seen
/// (implemented by the proxy's node routes, [`crate::net::routes`]).
pub trait NodeRoutes: Send + Sync + std::fmt::Debug {
    /// The host and port to advertise for node `node`, which the cluster
    /// says is at `host:port`.
    fn advertise<'a>(
        &'a self,
        node: i32,
        host: &'a str,
        port: i32,
    ) -> FilterFuture<'a, Result<(String, u16), String>>;
}

/// Rewrites broker addresses to the proxy's per-node listeners.
#[derive(Debug)]
pub struct BrokerAddress {
    routes: Arc<dyn NodeRoutes>,
}

impl BrokerAddress {
    /// Rewrites addresses to the listeners `routes` gives.
    pub fn new(routes: Arc<dyn NodeRoutes>) -> Self {
        Self { routes }
    }
}

async fn rewrite(
    routes: &dyn NodeRoutes,
    node: BrokerId,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<(), String> {
    if node.0 < 0 {
        return Ok(());
    }
    let (h, p) = routes.advertise(node.0, host.as_str(), *port).await?;
    *host = StrBytes::from_string(h);
    *port = i32::from(p);
    Ok(())
}

impl Filter for BrokerAddress {
    fn name(&self) -> &'static str {
        "broker_address"
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        direction == Direction::Response
            && matches!(
                api,
                ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster
            )
    }

    fn on_response<'a>(
        &'a self,
        _s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        Box::pin(async move {
            let routes = self.routes.as_ref();
            let result = match &mut r.body {
                ResponseKind::Metadata(m) => {
                    let mut res = Ok(());
                    for b in &mut m.brokers {
                        res = res.and(rewrite(routes, b.node_id, &mut b.host, &mut b.port).await);
                    }
                    res
                }
                ResponseKind::DescribeCluster(d) => {
                    let mut res = Ok(());
                    for b in &mut d.brokers {
                        res = res.and(rewrite(routes, b.broker_id, &mut b.host, &mut b.port).await);
                    }
                    res
                }
                ResponseKind::FindCoordinator(f) => {
                    let mut res = Ok(());
                    if r.version >= 4 {
                        for c in &mut f.coordinators {
                            if c.error_code == 0 {
                                res = res.and(
                                    rewrite(routes, c.node_id, &mut c.host, &mut c.port).await,
                                );
                            }
                        }
                    } else if f.error_code == 0 {
                        res = rewrite(routes, f.node_id, &mut f.host, &mut f.port).await;
                    }
                    res
                }
                _ => Ok(()),
            };
            match result {
                Ok(()) => ResponseAction::Continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot route a broker node");
                    ResponseAction::Close(e)
                }
            }
        })
    }
}
