//! # gatehouse-proxy
//!
//! The Kafka proxy at the heart of Gatehouse. Clients connect to it
//! unchanged; it speaks the Kafka protocol on both sides and passes every
//! request through a chain of filters on the way.
//!
//! ## The request path
//!
//! ```text
//!  client ──frame──▶ net::session ──▶ filter chain (in order) ──▶ cluster::dial ──▶ broker
//!    ▲               │  decode only if a filter              │
//!    │               │  wants this API, else raw bytes       │
//!    └──in order─────┴──◀ filter chain (reverse order) ◀─────┘
//!                       decode at the request's version
//! ```
//!
//! 1. **accept** ([`net`]): the bootstrap listener and one listener per
//!    broker node ([`net::routes`]), the connection limit, TLS
//!    termination; a client certificate names the principal.
//! 2. **frame** ([`gatehouse_wire::FrameSplitter`]): length-prefixed frames;
//!    an oversized claim is refused before anything is allocated.
//! 3. **authenticate** ([`auth`]): SASL PLAIN, SCRAM and OAUTHBEARER are
//!    answered by the proxy itself; nothing else is served before.
//! 4. **filters** ([`filter`]): only APIs some filter wants are decoded
//!    (after [`gatehouse_wire::check_request`] made sure every count is
//!    backed by bytes). A filter continues, answers the client itself, or
//!    closes the connection. Filters that look inside records use
//!    [`codec`] (record batches, JSON spans) and the state the proxy
//!    follows from the cluster ([`cluster`]: consent, keys, erasures).
//! 5. **upstream** ([`cluster::dial`]): one connection to the cluster per
//!    client connection, to the broker the client meant, with the proxy's
//!    own TLS and SASL.
//! 6. **response**: decoded only if a filter wants it, changed by the
//!    filters in reverse order, re-encoded at the same version; responses
//!    go back strictly in request order, filter-made ones included.
//!
//! ## The filters
//!
//! In request order: `api_versions`, `broker_address`, then with
//! `[policy]`: `audit` (with `[audit]`), `authz`, `fields`, `consent`. One
//! file each in [`filter`]; the table there says what each does. A new
//! filter is one file in `filter/` and one line in [`filter::chain`]
//! (`docs/adding-a-filter.md`); filters outside the crate join with
//! [`Proxy::start_with_filters`].
//!
//! ## Layers
//!
//! Each folder imports only from the folders below it (the end-to-end
//! suite's `layering` tests fail on any other import):
//!
//! | folder | what | may import |
//! |---|---|---|
//! | [`proxy`](Proxy) (`proxy.rs`) | the composition root: builds every part and wires them | everything |
//! | [`admin`] | the auditors' HTTP listener and page, the erasure API | cluster, auth, base |
//! | [`net`] | listeners, sessions, node routes | filter, cluster, auth, codec, base |
//! | [`filter`] | the `Filter` trait, the chain, the built-in filters | cluster, auth, codec, base |
//! | [`cluster`] | the proxy as a client of the cluster: dialing, its small Kafka client, the followers of internal topics (consent, keys) | codec, base |
//! | [`auth`] | who a client is: SASL, OAuth, principals | base |
//! | [`codec`] | record batches and JSON spans; no I/O | nothing of the crate |
//! | base: [`config`], [`error`], [`tls`], [`metrics`], `tasks` | configuration, errors, rustls set-up, metrics, the task set | each other only |
//!
//! Nothing here knows the broker Gatehouse ships: the proxy works in front
//! of any Kafka-compatible cluster (and the crate does not depend on it).

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod net;
mod proxy;
mod tasks;
pub mod tls;

pub use cluster::keys::KeyDestroyError;
pub use config::ProxyConfig;
pub use error::ProxyError;
pub use proxy::Proxy;
