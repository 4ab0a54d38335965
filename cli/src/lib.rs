//! The `gatehouse` command's building blocks, shared by the binary and the
//! end-to-end tests (so the tests exercise exactly what `gatehouse demo`
//! runs).

pub mod admin_client;
pub mod audit;
pub mod config_check;
pub mod demo;
pub mod keys;
