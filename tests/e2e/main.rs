//! End-to-end tests: real Kafka clients against the broker we ship.
//!
//! One test binary (one link step); each module is one area. Every test
//! starts its own broker on `127.0.0.1:0`, so tests run in parallel.

mod broker_admin;
mod broker_bad_input;
mod broker_clients;
mod broker_protocol;
mod broker_rdkafka;
mod broker_storage;
mod demo;
mod support;
