//! End-to-end tests: real Kafka clients against the broker we ship, both
//! directly and through the Gatehouse proxy.
//!
//! One test binary (one link step); each module is one area. Every test
//! starts its own broker (and proxy) on `127.0.0.1:0`, so tests run in
//! parallel.

/// Runs each named `async fn(Via) -> Result<()>` twice: straight to the
/// broker (`name::direct`) and through the proxy (`name::proxied`), so every
/// client scenario proves the proxy transparent.
macro_rules! direct_and_proxied {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn direct() -> anyhow::Result<()> {
                    super::$name(gatehouse_tests::Via::Direct).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn proxied() -> anyhow::Result<()> {
                    super::$name(gatehouse_tests::Via::Proxy).await
                }
            }
        )*
    };
}

mod admin;
mod audit;
mod broker_admin;
mod broker_bad_input;
mod broker_clients;
mod broker_cluster;
mod broker_protocol;
mod broker_rdkafka;
mod broker_storage;
mod demo;
mod erasure;
mod faults;
mod fields;
mod identity;
mod keytopic;
mod layering;
mod load;
mod policy;
mod proxy;
mod readme;
mod security;
mod support;
