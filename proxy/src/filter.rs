//! The filter model.
//!
//! A filter declares which APIs it needs to see, per direction; only those
//! messages are decoded, everything else crosses the proxy as raw bytes.
//! Filters run in order on requests and in reverse order on responses. On
//! a request a filter may let it continue (possibly changed), answer the
//! client itself, or close the connection; on a response it may change it
//! or close the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

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
    pub principal: Option<crate::principal::Principal>,
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
#[derive(Debug)]
pub enum ResponseAction {
    /// Pass it on (possibly changed).
    Continue,
    /// Close the client connection.
    Close(String),
}

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
    /// id only). ApiVersions advertises the lowest cap of the chain.
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
