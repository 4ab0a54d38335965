//! The filter model, the chain, and one file per built-in filter.
//!
//! A filter declares which APIs it needs to see, per direction; only those
//! messages are decoded, everything else crosses the proxy as raw bytes.
//! Filters run in order on requests and in reverse order on responses. On
//! a request a filter may let it continue (possibly changed), answer the
//! client itself, or close the connection; on a response it may change it
//! or close the connection.
//!
//! The chain, in request order ([`chain`] builds it):
//!
//! | filter | file | what it does |
//! |---|---|---|
//! | `api_versions` | [`api_versions`] | advertises only versions the proxy can carry |
//! | `broker_address` | [`broker_address`] | rewrites broker addresses to the proxy's listeners |
//! | `audit` | [`audit`] | records decisions, produces and deliveries before the client sees them |
//! | `authz` | [`authz`] | Cedar decisions for every resource of every request |
//! | `fields` | [`fields`] | protected topics: encrypts fields on produce; consent, erasure and field views on fetch |
//! | `consent` | [`consent`] | the other governed topics: consent, residency and erasure per record; checks consent records |
//!
//! The governance filters (`audit` to `consent`) join when `[policy]` is
//! configured, `audit` when `[audit]` is too. A filter reaches the rest of
//! the proxy only through what it is handed when the chain is built (the
//! policy store, the catalog, the consent store, the keys, the audit log,
//! [`broker_address::NodeRoutes`]); it never sees sessions or listeners.
//!
//! A new filter is one file here and one line in [`chain`]; see
//! `docs/adding-a-filter.md`.

pub mod api_versions;
pub mod audit;
pub mod authz;
pub mod broker_address;
pub mod consent;
pub mod fields;
pub(crate) mod parallel;
pub mod view_cache;

// The worked example of docs/adding-a-filter.md, compiled and tested here
// so that the guide stays true; it is not part of the chain.
#[cfg(test)]
#[path = "../../../docs/examples/stamp.rs"]
mod guide_example;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use gatehouse_policy::{Catalog, PolicyStore};

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to cluster.
    Request,
    /// Cluster to client.
    Response,
}

/// Where a client connection came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The bootstrap listener: forwarded to any bootstrap server.
    Bootstrap,
    /// The listener of one broker node.
    Node(i32),
}

/// What filters know about the connection a message belongs to.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener the client used.
    pub target: Target,
    /// Client id of the most recent request.
    pub client_id: Option<String>,
    /// Who the client proved to be, once it authenticated (or presented a
    /// client certificate).
    pub principal: Option<crate::auth::principal::Principal>,
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub api: ApiKey,
    /// Its version.
    pub version: i16,
    /// The request header.
    pub header: RequestHeader,
    /// The body.
    pub body: RequestKind,
    /// What filters want to remember until the response: a filter that
    /// leaves a note here sees the response decoded, even for an API whose
    /// responses it does not always want.
    pub notes: Notes,
}

/// The note a filter leaves for the request's trace span (taken by the
/// session before the request goes on; it does not make the response
/// decoded).
pub(crate) const TRACE_NOTE: &str = "trace";

/// A decision for the request's trace span.
#[derive(Debug)]
pub(crate) struct Traced {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The policies that decided, comma-separated.
    pub policy_ids: String,
}

/// Per-request notes, one per filter, handed from the request to its
/// response.
#[derive(Default)]
pub struct Notes(Vec<(&'static str, Box<dyn std::any::Any + Send + Sync>)>);

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Notes {
    /// Leaves a note for `filter` (replacing an earlier one).
    pub fn insert<T: std::any::Any + Send + Sync>(&mut self, filter: &'static str, note: T) {
        self.0.retain(|(k, _)| *k != filter);
        self.0.push((filter, Box::new(note)));
    }

    /// Takes `filter`'s note, if it is a `T`.
    pub fn take<T: std::any::Any>(&mut self, filter: &'static str) -> Option<T> {
        let i = self
            .0
            .iter()
            .position(|(k, v)| *k == filter && v.is::<T>())?;
        let (_, v) = self.0.swap_remove(i);
        v.downcast::<T>().ok().map(|b| *b)
    }

    /// Whether `filter` left a note.
    pub fn has(&self, filter: &str) -> bool {
        self.0.iter().any(|(k, _)| *k == filter)
    }

    /// Whether there are no notes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A decoded response.
#[derive(Debug)]
pub struct Response {
    /// The API of the request it answers.
    pub api: ApiKey,
    /// The version it is encoded at.
    pub version: i16,
    /// The correlation id.
    pub correlation_id: i32,
    /// The body.
    pub body: ResponseKind,
    /// The notes filters left on the request.
    pub notes: Notes,
}

/// A filter's verdict on a request.
#[derive(Debug)]
pub enum RequestAction {
    /// Pass it on (filters may have changed it in place).
    Continue,
    /// Answer the client with this response; the cluster never sees the
    /// request.
    Respond(Box<ResponseKind>),
    /// Close the client connection.
    Close(String),
    /// Swallow the request: nothing is forwarded and nothing answered
    /// (for requests that expect no response, such as `acks=0` produce).
    Drop,
}

/// A filter's verdict on a response.
pub enum ResponseAction {
    /// Pass it on (possibly changed).
    Continue,
    /// Pass it on, but send it to the client only once `gate` resolves
    /// (the audit filter: once the response's events are durable). The
    /// connection goes on meanwhile: later requests are forwarded and later
    /// responses filtered, and everything after this response waits behind
    /// it, in order. A gate that fails closes the connection, and neither
    /// this response nor any after it is sent.
    Hold(Gate),
    /// Close the client connection.
    Close(String),
}

impl std::fmt::Debug for ResponseAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseAction::Continue => f.write_str("Continue"),
            ResponseAction::Hold(_) => f.write_str("Hold"),
            ResponseAction::Close(r) => f.debug_tuple("Close").field(r).finish(),
        }
    }
}

/// What a held response waits for (see [`ResponseAction::Hold`]): `Err`
/// says why the connection is closed instead.
pub type Gate = Pin<Box<dyn Future<Output = Result<(), String>> + Send + Sync>>;

/// A boxed future, so filters stay object-safe.
pub type FilterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step of the request path.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// Name for logs.
    fn name(&self) -> &'static str;

    /// Whether this filter needs `api` decoded in `direction`.
    fn wants(&self, api: ApiKey, direction: Direction) -> bool;

    /// The highest version of `api` this filter can handle, when it is
    /// lower than what the codec knows (e.g. versions that name topics by
    /// id only); `Some(-1)` for an API it cannot carry at all. ApiVersions
    /// advertises the lowest cap of the chain (and not the API at all
    /// below its lowest version).
    fn max_version(&self, _api: ApiKey) -> Option<i16> {
        None
    }

    /// Called for each wanted request, in filter order.
    fn on_request<'a>(
        &'a self,
        _session: &'a SessionContext,
        _request: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        Box::pin(async { RequestAction::Continue })
    }

    /// Called for each wanted response, in reverse filter order.
    fn on_response<'a>(
        &'a self,
        _session: &'a SessionContext,
        _response: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        Box::pin(async { ResponseAction::Continue })
    }
}

/// What the built-in filters are made of.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The proxy authenticates clients (SASL).
    pub sasl: bool,
    /// The proxy's listeners per broker node.
    pub routes: Arc<dyn broker_address::NodeRoutes>,
    /// Policies, catalog, consent and keys, when `[policy]` is configured.
    pub governance: Option<Governed>,
    /// The audit trail, when `[audit]` is configured.
    pub audit: Option<gatehouse_audit::AuditLog>,
    /// The proxy's metrics.
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
}

/// The governance parts the filters decide with.
#[derive(Debug)]
pub(crate) struct Governed {
    pub policies: Arc<PolicyStore>,
    pub catalog: Arc<Catalog>,
    pub consent: Arc<crate::cluster::consent::ConsentStore>,
    /// Field protection's keys, when `[keys]` is configured.
    pub keys: Option<Arc<crate::cluster::keys::Keys>>,
    /// The topic consent records are produced to.
    pub consent_topic: String,
    /// Erased data subjects, when `[keys]` is configured.
    pub erasures: Option<Arc<crate::cluster::erasure::Erasures>>,
    /// The view cache of protected topics (`[limits] view_cache_bytes`).
    pub views: Option<Arc<view_cache::ViewCache>>,
}

/// The chain: the built-in filters in order, then `extra`.
pub(crate) fn chain(parts: Parts, extra: Vec<Arc<dyn Filter>>) -> Vec<Arc<dyn Filter>> {
    let Parts {
        sasl,
        routes,
        governance,
        audit: log,
        metrics,
    } = parts;
    let mut chain: Vec<Arc<dyn Filter>> = vec![
        Arc::new(api_versions::ApiVersions::new(Vec::new(), sasl)),
        Arc::new(broker_address::BrokerAddress::new(routes)),
    ];
    if let Some(g) = governance {
        if let Some(log) = &log {
            // Early in the chain: its response half runs last, on what the
            // client will actually receive.
            chain.push(Arc::new(audit::Audit::new(
                log.clone(),
                Some(g.policies.clone()),
                g.catalog.clone(),
            )));
        }
        chain.push(Arc::new(
            authz::Authz::new(g.policies.clone(), g.catalog.clone())
                .with_audit(log.clone())
                .with_metrics(metrics.clone()),
        ));
        // Protected topics: consent and fields in one pass over their
        // records; the consent filter does the other governed topics.
        let protection = Arc::new(
            fields::Protection::new(g.policies.clone(), g.catalog.clone(), g.keys)
                .with_consent(g.consent.clone())
                .with_erasures(g.erasures.clone())
                .with_audit(log.clone())
                .with_metrics(metrics.clone())
                .with_view_cache(g.views.clone()),
        );
        chain.push(protection.clone());
        chain.push(Arc::new(
            consent::Consent::new(g.policies, g.catalog, g.consent)
                .leaving_to(protection)
                .with_erasures(g.erasures)
                .with_metrics(metrics)
                .with_view_cache(g.views)
                .validating(&g.consent_topic, log),
        ));
    }
    chain.extend(extra);
    // ApiVersions caps versions for the APIs that any filter decodes; it is
    // rebuilt with the full chain's needs.
    let decoded = api_versions::decoded_apis(&chain);
    chain[0] = Arc::new(api_versions::ApiVersions::new(decoded, sasl).with_caps(&chain));
    chain
}
