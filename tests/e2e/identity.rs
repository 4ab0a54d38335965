//! Identity at the proxy: TLS termination, mutual TLS naming the principal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse_proxy::filter::{
    Direction, Filter, FilterFuture, Request, RequestAction, SessionContext,
};
use gatehouse_proxy::tls::ServerTlsConfig;
use gatehouse_proxy::{Proxy, ProxyConfig};
use gatehouse_tests::clients::kcat;
use gatehouse_tests::pki::TestPki;
use gatehouse_tests::TestBroker;
use kafka_protocol::messages::ApiKey;

const LIMIT: Duration = Duration::from_secs(60);

/// Records the principal of every Metadata request.
#[derive(Debug, Default)]
struct Witness(Mutex<Vec<Option<String>>>);

impl Filter for Witness {
    fn name(&self) -> &'static str {
        "witness"
    }
    fn wants(&self, api: ApiKey, d: Direction) -> bool {
        api == ApiKey::Metadata && d == Direction::Request
    }
    fn on_request<'a>(
        &'a self,
        s: &'a SessionContext,
        _r: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(s.principal.as_ref().map(|p| p.name.clone()));
        }
        Box::pin(async { RequestAction::Continue })
    }
}

async fn tls_proxy(
    broker: &TestBroker,
    pki: &TestPki,
    mutual: bool,
    witness: Arc<Witness>,
) -> Result<Proxy> {
    let mut config = ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        broker.broker_addr().to_string(),
    );
    config.listener.tls = Some(ServerTlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: mutual.then(|| pki.ca.clone()),
        require_client_cert: true,
        reload_interval_secs: 1,
    });
    Ok(Proxy::start_with_filters(config, vec![witness]).await?)
}

fn ssl_args(b: &str, pki: &TestPki) -> Vec<String> {
    [
        "-b",
        b,
        "-X",
        "security.protocol=ssl",
        "-X",
        &format!("ssl.ca.location={}", pki.ca.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn kcat_s(args: &[String], stdin: Option<&[u8]>) -> Result<String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kcat(&refs, stdin, LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_serves_kcat() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = true).await?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path())?;
    let proxy = tls_proxy(&broker, &pki, false, Arc::new(Witness::default())).await?;
    let b = proxy.local_addr().to_string();
    let mut args = ssl_args(&b, &pki);
    args.extend(["-t", "secure", "-P", "-K:"].map(String::from));
    kcat_s(&args, Some(b"k1:hello over tls\nk2:second\n")).await?;
    let mut args = ssl_args(&b, &pki);
    args.extend(["-t", "secure", "-C", "-e", "-q", "-f", "%k=%s\n"].map(String::from));
    let out = kcat_s(&args, None).await?;
    ensure!(
        out.lines().collect::<Vec<_>>() == ["k1=hello over tls", "k2=second"],
        "kcat read {out}"
    );
    // A client that does not trust the proxy's CA is refused by its own
    // verification; a plaintext client gets nowhere either.
    let plain = kcat(&["-b", &b, "-L", "-m", "3"], None, LIMIT).await;
    ensure!(
        plain.is_err(),
        "a plaintext client got through a TLS listener"
    );
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_names_the_principal_and_refuses_strangers() -> Result<()> {
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path())?;
    let witness = Arc::new(Witness::default());
    let proxy = tls_proxy(&broker, &pki, true, witness.clone()).await?;
    let b = proxy.local_addr().to_string();

    let (cert, key) = pki.client("trust-safety", false)?;
    let mut args = ssl_args(&b, &pki);
    args.extend([
        "-X".to_string(),
        format!("ssl.certificate.location={}", cert.display()),
        "-X".to_string(),
        format!("ssl.key.location={}", key.display()),
        "-L".to_string(),
    ]);
    let listing = kcat_s(&args, None).await?;
    ensure!(listing.contains("1 brokers"), "{listing}");
    let seen = witness.0.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        !seen.is_empty() && seen.iter().all(|p| p.as_deref() == Some("trust-safety")),
        "principals seen: {seen:?}"
    );

    // No certificate, or one from another CA: refused at the handshake.
    let mut args = ssl_args(&b, &pki);
    args.extend(["-L", "-m", "3"].map(String::from));
    ensure!(
        kcat_s(&args, None).await.is_err(),
        "a client without a certificate got through"
    );
    let (cert, key) = pki.client("intruder", true)?;
    let mut args = ssl_args(&b, &pki);
    args.extend([
        "-X".to_string(),
        format!("ssl.certificate.location={}", cert.display()),
        "-X".to_string(),
        format!("ssl.key.location={}", key.display()),
        "-L".to_string(),
        "-m".to_string(),
        "3".to_string(),
    ]);
    ensure!(
        kcat_s(&args, None).await.is_err(),
        "a certificate from another CA got through"
    );
    let seen = witness.0.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        seen.iter().all(|p| p.as_deref() == Some("trust-safety")),
        "a stranger reached the filters: {seen:?}"
    );
    proxy.shutdown().await;
    Ok(())
}
