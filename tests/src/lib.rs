//! Test harness for Gatehouse's end-to-end tests.
//!
//! - [`TestBroker`]: the broker we ship, on a temporary data directory,
//!   bound to `127.0.0.1:0`, restartable on the same data and port.
//! - [`RawClient`]: a minimal Kafka client on `kafka-protocol`, for
//!   requests that real clients never send (bad frames, exact sequence
//!   numbers).
//! - [`clients`]: the Python, Node and kcat clients the tests drive as
//!   subprocesses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use gatehouse_broker::{Broker, BrokerConfig};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod clients;
pub mod otlp;
pub mod pki;
pub mod relay;

/// Logs for tests, once per process (`GATEHOUSE_TEST_LOG=debug` for more).
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("GATEHOUSE_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
}

/// The repository root (for client scripts).
pub fn repo_root() -> PathBuf {
    // The runner's CARGO_MANIFEST_DIR first: clones that share one target
    // directory may run a library built from another clone's path.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("Cargo.toml").exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// How a test reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight to the broker.
    Direct,
    /// Through the Gatehouse proxy in front of it.
    Proxy,
}

/// A broker on a temporary directory, optionally behind the proxy.
#[derive(Debug)]
pub struct TestBroker {
    broker: Option<Broker>,
    proxy: Option<gatehouse_proxy::Proxy>,
    config: BrokerConfig,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker with test defaults.
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker reached `via` the proxy or directly.
    pub async fn start_via(via: Via) -> Result<Self> {
        Self::start_via_with(via, |_| {}).await
    }

    /// Starts a broker after `tweak`, reached `via` the proxy or directly.
    pub async fn start_via_with(via: Via, tweak: impl FnOnce(&mut BrokerConfig)) -> Result<Self> {
        let mut b = Self::start_with(tweak).await?;
        if via == Via::Proxy {
            let config = gatehouse_proxy::ProxyConfig::new(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                b.config.listen.to_string(),
            );
            b.proxy = Some(gatehouse_proxy::Proxy::start(config).await?);
        }
        Ok(b)
    }

    /// Starts a broker after letting `tweak` adjust the config.
    pub async fn start_with(tweak: impl FnOnce(&mut BrokerConfig)) -> Result<Self> {
        init_logging();
        let dir = tempfile::tempdir().context("temp dir")?;
        let mut config = BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: dir.path().join("store").to_string_lossy().into_owned(),
            initial_rebalance_delay: Duration::from_millis(100),
            // Housekeeping is driven by the tests that need it.
            housekeeping_interval: Duration::from_secs(3600),
            ..BrokerConfig::default()
        };
        tweak(&mut config);
        let broker = Broker::start(config.clone()).await?;
        // Restarts come back on the same port, as a real broker would.
        config.listen = broker.local_addr();
        Ok(Self {
            broker: Some(broker),
            proxy: None,
            config,
            _dir: dir,
        })
    }

    /// `host:port` for `bootstrap.servers`: the proxy when there is one.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// The address clients use: the proxy when there is one.
    pub fn addr(&self) -> SocketAddr {
        match &self.proxy {
            Some(p) => p.local_addr(),
            None => self.config.listen,
        }
    }

    /// The broker's own address, whether or not a proxy is in front.
    pub fn broker_addr(&self) -> SocketAddr {
        self.config.listen
    }

    /// The proxy, if the test goes through one.
    pub fn proxy(&self) -> Option<&gatehouse_proxy::Proxy> {
        self.proxy.as_ref()
    }

    /// The running broker.
    pub fn broker(&self) -> Result<&Broker> {
        self.broker
            .as_ref()
            .ok_or_else(|| anyhow!("broker is stopped"))
    }

    /// Stops the broker (clean shutdown) and starts a new one on the same
    /// data and port.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(b) = self.broker.take() {
            b.shutdown().await?;
        }
        let mut attempts = 0;
        loop {
            match Broker::start(self.config.clone()).await {
                Ok(b) => {
                    self.broker = Some(b);
                    return Ok(());
                }
                // The old listener's socket may take a moment to go away.
                Err(gatehouse_broker::BrokerError::Bind { .. }) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stops the broker cleanly; once this returns it no longer listens
    /// (dropping a broker aborts its tasks, and its listener may accept a
    /// moment longer).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(b) = self.broker.take() {
            b.shutdown().await?;
        }
        Ok(())
    }

    /// Drops the broker without a clean shutdown (no final snapshot), as a
    /// crash would, then starts a new one on the same data and port.
    pub async fn crash_and_restart(&mut self) -> Result<()> {
        drop(self.broker.take());
        self.restart().await
    }
}

/// Several in-process brokers (node ids 0, 1, …) sharing one store.
#[derive(Debug)]
pub struct TestCluster {
    brokers: Vec<Option<Broker>>,
    configs: Vec<BrokerConfig>,
    dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` brokers over one local directory, one after another,
    /// with leases of `lease`.
    pub async fn start(n: i32, lease: Duration) -> Result<Self> {
        init_logging();
        let dir = tempfile::tempdir().context("temp dir")?;
        let mut brokers = Vec::new();
        let mut configs = Vec::new();
        for node_id in 0..n {
            let mut config = BrokerConfig {
                node_id,
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                data: dir.path().join("store").to_string_lossy().into_owned(),
                initial_rebalance_delay: Duration::from_millis(100),
                housekeeping_interval: Duration::from_secs(3600),
                lease,
                ..BrokerConfig::default()
            };
            let broker = Broker::start(config.clone()).await?;
            config.listen = broker.local_addr();
            brokers.push(Some(broker));
            configs.push(config);
        }
        Ok(Self {
            brokers,
            configs,
            dir,
        })
    }

    /// Waits until every running broker counts all of them live.
    pub async fn formed(&self) -> Result<()> {
        let want = self.brokers.iter().flatten().count();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self
            .brokers
            .iter()
            .flatten()
            .all(|b| b.live_brokers().len() == want)
        {
            if tokio::time::Instant::now() > deadline {
                bail!("the brokers never saw each other");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// A passthrough proxy in front of every broker of the cluster.
    pub async fn proxy(&self) -> Result<gatehouse_proxy::Proxy> {
        let mut config = gatehouse_proxy::ProxyConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            self.bootstrap(),
        );
        config.upstream.bootstrap_servers =
            self.configs.iter().map(|c| c.listen.to_string()).collect();
        Ok(gatehouse_proxy::Proxy::start(config).await?)
    }

    /// Every broker's address, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.configs
            .iter()
            .map(|c| c.listen.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Broker `node`'s address.
    pub fn addr(&self, node: i32) -> Result<SocketAddr> {
        self.configs
            .get(usize::try_from(node)?)
            .map(|c| c.listen)
            .context("no such broker")
    }

    /// The store's local directory.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Starts one more broker (the next node id) on the store.
    pub async fn add(&mut self) -> Result<()> {
        let mut config = self.configs.first().context("an empty cluster")?.clone();
        config.node_id = i32::try_from(self.configs.len())?;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let broker = Broker::start(config.clone()).await?;
        config.listen = broker.local_addr();
        self.brokers.push(Some(broker));
        self.configs.push(config);
        Ok(())
    }

    /// Stops broker `node` cleanly (it hands its partitions over first).
    pub async fn stop(&mut self, node: i32) -> Result<()> {
        let slot = self
            .brokers
            .get_mut(usize::try_from(node)?)
            .context("no such broker")?;
        if let Some(b) = slot.take() {
            b.shutdown().await?;
        }
        Ok(())
    }

    /// Stops broker `node` as a crash would (no clean shutdown).
    pub fn kill(&mut self, node: i32) -> Result<()> {
        let slot = self
            .brokers
            .get_mut(usize::try_from(node)?)
            .context("no such broker")?;
        drop(slot.take());
        Ok(())
    }
}

/// A minimal Kafka client speaking raw `kafka-protocol` messages.
#[derive(Debug)]
pub struct RawClient {
    sock: TcpStream,
    correlation: i32,
}

impl RawClient {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let sock = TcpStream::connect(addr).await.context("connect")?;
        sock.set_nodelay(true)?;
        Ok(Self {
            sock,
            correlation: 0,
        })
    }

    /// Connects from `local` (any port): e.g. `127.0.0.2`, for a test that
    /// needs clients on several addresses (the whole of 127/8 is loopback).
    pub async fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Result<Self> {
        let socket = match local {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket
            .bind(SocketAddr::new(local, 0))
            .with_context(|| format!("bind {local}"))?;
        let sock = socket.connect(addr).await.context("connect")?;
        sock.set_nodelay(true)?;
        Ok(Self {
            sock,
            correlation: 0,
        })
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes).await?;
        Ok(())
    }

    /// Encodes a request frame (length prefix included).
    pub fn frame<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> Result<Bytes> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test-client")));
        let mut body = BytesMut::new();
        header.encode(&mut body, api.request_header_version(version))?;
        req.encode(&mut body, version)?;
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.extend_from_slice(&(body.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out.freeze())
    }

    /// Sends a request and decodes its response.
    pub async fn call<R: Encodable, S: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &R,
    ) -> Result<S> {
        let frame = self.frame(api, version, req)?;
        self.send_raw(&frame).await?;
        let expected = self.correlation;
        let mut body = self.read_frame().await?;
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))?;
        if header.correlation_id != expected {
            bail!(
                "correlation id {} does not match {expected}",
                header.correlation_id
            );
        }
        S::decode(&mut body, version)
    }

    /// Decodes a response frame body read with [`RawClient::read_frame`].
    pub fn decode_response<S: Decodable>(api: ApiKey, version: i16, mut body: Bytes) -> Result<S> {
        ResponseHeader::decode(&mut body, api.response_header_version(version))?;
        S::decode(&mut body, version)
    }

    /// Reads one response frame body.
    pub async fn read_frame(&mut self) -> Result<Bytes> {
        let len = self.sock.read_i32().await.context("read length")?;
        let len = usize::try_from(len).context("negative length")?;
        let mut buf = vec![0u8; len];
        self.sock.read_exact(&mut buf).await.context("read body")?;
        Ok(Bytes::from(buf))
    }

    /// Reads exactly `n` bytes, whatever they are.
    pub async fn read_raw(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.sock.read_exact(&mut buf).await.context("read")?;
        Ok(buf)
    }

    /// Waits until the peer closes the connection; errors if it sends data
    /// or stays open past `within`.
    pub async fn expect_closed(&mut self, within: Duration) -> Result<()> {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(within, self.sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => bail!("expected the connection to close, got {n} bytes"),
            Err(_) => bail!("connection still open after {within:?}"),
        }
    }
}

/// Encodes a v2 record batch of `n` records (keys `k{i}`, values `v{i}`),
/// timestamps `ts0 + i`, as an idempotent producer would when `producer_id`
/// is not -1.
pub fn record_batch(
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    n: usize,
    ts0: i64,
    compression: kafka_protocol::records::Compression,
) -> Result<Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence
            // stays constant; non-idempotent batches carry base sequence -1.
            sequence: if producer_id < 0 {
                -1 + i as i32
            } else {
                base_sequence + i as i32
            },
            timestamp: ts0 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

/// A v2 record batch (no producer id, uncompressed) of `(key, value)`
/// records.
pub fn record_batch_of(records: &[(&str, &str)]) -> Result<Bytes> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

impl TestBroker {
    /// The broker's data directory.
    pub fn data_dir(&self) -> String {
        self.config.data.clone()
    }
}

/// An S3-compatible object store (moto's server) on a free loopback port,
/// with one bucket; stopped when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: tokio::process::Child,
    /// `http://127.0.0.1:port`
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub async fn start(bucket: &str) -> Result<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        // moto, with its create-only writes made atomic as S3's are (see
        // deploy/s3/serial_moto.py).
        let serial = repo_root().join("deploy/s3/serial_moto.py");
        let child = tokio::process::Command::new("python3")
            .arg(serial)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start moto's S3 server: run scripts/install-test-deps")?;
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let req = format!(
                    "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                s.write_all(req.as_bytes()).await?;
                let mut resp = Vec::new();
                s.read_to_end(&mut resp).await?;
                if resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200") {
                    return Ok(server);
                }
                bail!("creating bucket failed: {}", String::from_utf8_lossy(&resp));
            }
            if tokio::time::Instant::now() > deadline {
                bail!("S3 server did not start on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Object store options for a broker using this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
            ("aws_region", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Pauses the server (SIGSTOP): connections are accepted by the
    /// kernel but nothing is answered until [`S3Server::resume`], as with a
    /// store that stopped answering.
    pub fn pause(&self) -> Result<()> {
        self.signal("-STOP")
    }

    /// Resumes a paused server (SIGCONT); requests waiting are answered.
    pub fn resume(&self) -> Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.child.id().context("the S3 server has exited")?;
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill {signal} {pid} failed: {status}");
        }
        Ok(())
    }

    /// Stops the server.
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
