//! Kafka wire framing shared by the Gatehouse broker and proxy.
//!
//! Everything here is a pure function of a buffer: no sockets, no tasks, no
//! clocks. That keeps the parsing code easy to property-test and fuzz, and
//! lets the proxy and the broker share one definition of what a well-formed
//! frame is.
//!
//! - [`frame`] splits a byte stream into length-prefixed frames and refuses a
//!   frame whose claimed size is over the limit *before* anything is
//!   allocated for it.
//! - [`header`] reads the fixed part of a request header without trusting
//!   the frame to be long enough, decodes full headers through
//!   `kafka-protocol`, and encodes responses with the header version that the
//!   request's API key and version call for.
//! - [`guard`] checks request bodies, response bodies and record batches
//!   before they reach `kafka-protocol`'s decoders, whose allocations trust
//!   counts read off the wire.

pub mod frame;
pub mod guard;
pub mod header;

pub use frame::{FrameError, FrameSplitter};
pub use guard::{
    check_record_batches, check_record_batches_allow_partial_tail, check_request, check_response,
    GuardError,
};
pub use header::{
    decode_request, encode_response, peek_header, produce_acks, request_header_len, HeaderError,
    RawHeader,
};
