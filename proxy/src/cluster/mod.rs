//! The proxy as a client of the cluster: dialing a broker (TLS and the
//! proxy's own SASL), a small Kafka client, and the followers that keep the
//! cluster's internal topics materialized on every replica: the consent
//! topic ([`consent`]), the key topic ([`keys`]) and the erasure topic
//! ([`erasure`], which also runs the right-to-erasure workflow).
//!
//! Nothing here knows about filters, sessions or listeners.

pub mod client;
pub mod consent;
pub mod dial;
pub mod erasure;
pub mod follower;
pub mod keys;
pub(crate) mod publish;

/// Opens a sled database, waiting a moment for a lock that a database of
/// the same directory, just dropped in this process, still holds: sled
/// releases it from a background thread (a proxy restarted in the same
/// process would otherwise fail now and then). A lock held by another
/// process is still an error, after the wait.
pub(crate) fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("lock"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other,
        }
    }
}
