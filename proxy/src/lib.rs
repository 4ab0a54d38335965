//! # gatehouse-proxy
//!
//! The Kafka proxy at the heart of Gatehouse. Clients connect to it
//! unchanged; it speaks the Kafka protocol on both sides and passes every
//! request through a chain of filters on the way.
//!
//! ## The request path
//!
//! ```text
//!  client ──frame──▶ session ──▶ filters (in order) ──▶ upstream broker
//!    ▲               │  decode only if a filter          │
//!    │               │  wants this API, else raw bytes   │
//!    └──in order─────┴──◀ filters (reverse order) ◀──────┘
//!                       decode at the request's version
//! ```
//!
//! 1. **frame** ([`gatehouse_wire::FrameSplitter`]): length-prefixed frames;
//!    an oversized claim is refused before anything is allocated.
//! 2. **header**: API key, version and correlation id are read from the
//!    first eight bytes; the proxy remembers what it owes the client.
//! 3. **filters** ([`filter::Filter`]): only APIs some filter wants are
//!    decoded (after [`gatehouse_wire::check_request`] made sure every
//!    count is backed by bytes). A filter continues, answers the client
//!    itself, or closes the connection.
//! 4. **upstream**: one connection to the cluster per client connection,
//!    to the broker the client meant ([`routes`]: port per broker).
//! 5. **response**: decoded only if a filter wants it, changed by the
//!    filters in reverse order, re-encoded at the same version; responses
//!    go back strictly in request order, filter-made ones included.
//!
//! Built-in filters ([`filters`]): `api_versions` and `broker_address`.
//! Identity, authorization, consent, field protection and audit join the
//! chain as filters of their own.
//!
//! ## Modules
//! - [`config`]: the TOML configuration.
//! - [`server`]: listeners, the connection limit, graceful shutdown.
//! - [`admin`]: the auditors' HTTP listener (audit API and page).
//! - `session`: one client connection and its upstream connection.
//! - [`routes`]: node id → proxy port and upstream address.
//! - [`records`]: record batch decode / re-encode for governed topics.
//!
//! Nothing here knows the broker Gatehouse ships: the proxy works in front
//! of any Kafka-compatible cluster.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod config;
pub mod consent;
pub mod error;
pub mod filter;
pub mod filters;
pub mod governance;
pub mod json;
mod keytopic;
pub mod principal;
pub mod protect;
pub mod records;
pub mod routes;
pub mod server;
mod session;
pub mod tls;
pub mod upstream;

pub use config::ProxyConfig;
pub use error::ProxyError;
pub use keytopic::KeyDestroyError;
pub use server::Proxy;
