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

// === SASL at the proxy ===

use gatehouse_proxy::auth::oauth::{KeyConfig, OAuthConfig, SigningAlgorithm};
use gatehouse_proxy::auth::AuthConfig;
use gatehouse_sasl::{AttributeValue, CredentialStore, User};
use gatehouse_tests::RawClient;
use kafka_protocol::messages::{
    MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

const ISSUER: &str = "https://login.example.net";
const AUDIENCE: &str = "gatehouse";

/// Users, a JWT signing key, and a proxy that authenticates with them.
struct Sasl {
    dir: tempfile::TempDir,
    jwt_key: rcgen::KeyPair,
}

impl Sasl {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut store = CredentialStore::new();
        let attrs = |team: &str, purposes: &[&str]| {
            std::collections::BTreeMap::from([
                ("team".to_string(), AttributeValue::String(team.to_string())),
                (
                    "region".to_string(),
                    AttributeValue::String("eu".to_string()),
                ),
                (
                    "purposes".to_string(),
                    AttributeValue::List(purposes.iter().map(|p| p.to_string()).collect()),
                ),
            ])
        };
        store.insert(User::new_with_password(
            "ingest",
            "ingest-pass",
            4096,
            attrs("platform", &[]),
        )?)?;
        store.insert(User::new_with_password(
            "analytics",
            "analytics-pass",
            4096,
            attrs("analytics", &["analytics"]),
        )?)?;
        std::fs::write(dir.path().join("users.toml"), store.to_toml()?)?;
        let jwt_key = rcgen::KeyPair::generate()?;
        std::fs::write(dir.path().join("jwt.pub.pem"), jwt_key.public_key_pem())?;
        Ok(Self { dir, jwt_key })
    }

    fn auth_config(&self, lifetime: Option<u64>) -> AuthConfig {
        let oauth: OAuthConfig = toml_oauth(&self.dir.path().join("jwt.pub.pem"));
        AuthConfig {
            mechanisms: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
                .map(String::from)
                .to_vec(),
            credentials_file: Some(self.dir.path().join("users.toml")),
            oauthbearer: Some(oauth),
            session_lifetime_secs: lifetime,
            max_failure_delay_ms: 2_000,
            accept_client_certificates: false,
        }
    }

    /// A JWT for `sub`, signed with the configured key (or `other`).
    fn token(
        &self,
        sub: &str,
        exp_offset: i64,
        issuer: &str,
        other: Option<&rcgen::KeyPair>,
    ) -> Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let claims = serde_json::json!({
            "sub": sub, "iss": issuer, "aud": AUDIENCE, "iat": now, "exp": now + exp_offset,
            "team": "analytics", "region": "eu", "purposes": ["analytics"],
        });
        let key = other.unwrap_or(&self.jwt_key);
        let enc = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &enc,
        )?)
    }
}

fn toml_oauth(pem: &std::path::Path) -> OAuthConfig {
    let text = format!(
        "issuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\n[attribute_claims]\nteam = \"team\"\nregion = \"region\"\npurposes = \"purposes\"\n[[keys]]\nalgorithm = \"ES256\"\npem_file = \"{}\"\n",
        pem.display()
    );
    let mut c: OAuthConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("oauth config: {e}"));
    c.keys[0].algorithm = SigningAlgorithm::ES256;
    let _: &KeyConfig = &c.keys[0];
    c
}

async fn sasl_proxy(
    broker: &TestBroker,
    sasl: &Sasl,
    lifetime: Option<u64>,
    witness: Arc<Witness>,
) -> Result<Proxy> {
    let mut config = ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        broker.broker_addr().to_string(),
    );
    config.auth = Some(sasl.auth_config(lifetime));
    Ok(Proxy::start_with_filters(config, vec![witness]).await?)
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One SaslHandshake + single-message SaslAuthenticate; returns the
/// authenticate response.
pub(crate) async fn sasl_once(
    c: &mut RawClient,
    mechanism: &str,
    auth_bytes: Vec<u8>,
) -> Result<SaslAuthenticateResponse> {
    let h: SaslHandshakeResponse = c
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(str(mechanism)),
        )
        .await?;
    ensure!(
        h.error_code == 0,
        "handshake for {mechanism}: {}",
        h.error_code
    );
    let a: SaslAuthenticateResponse = c
        .call(
            ApiKey::SaslAuthenticate,
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(auth_bytes.into()),
        )
        .await?;
    Ok(a)
}

pub(crate) fn plain(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

async fn metadata(c: &mut RawClient) -> Result<MetadataResponse> {
    c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_authenticates_with_scram_and_plain() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = true).await?;
    let sasl = Sasl::new()?;
    let witness = Arc::new(Witness::default());
    let proxy = sasl_proxy(&broker, &sasl, None, witness.clone()).await?;
    let b = proxy.local_addr().to_string();
    let with = |mech: &str, user: &str, pw: &str| -> Vec<String> {
        [
            "-b",
            &b,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            &format!("sasl.mechanisms={mech}"),
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={pw}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut args = with("SCRAM-SHA-512", "ingest", "ingest-pass");
    args.extend(["-t", "authed", "-P", "-K:"].map(String::from));
    kcat_s(&args, Some(b"u-000042:post one\nu-000007:post two\n")).await?;
    let mut args = with("PLAIN", "analytics", "analytics-pass");
    args.extend(["-t", "authed", "-C", "-e", "-q", "-f", "%k=%s\n"].map(String::from));
    let out = kcat_s(&args, None).await?;
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    ensure!(
        lines == ["u-000007=post two", "u-000042=post one"],
        "kcat read {out}"
    );
    let mut args = with("SCRAM-SHA-256", "analytics", "analytics-pass");
    args.push("-L".into());
    ensure!(kcat_s(&args, None).await?.contains("topic \"authed\""));
    let seen = witness.0.lock().map(|s| s.clone()).unwrap_or_default();
    ensure!(
        seen.iter().any(|p| p.as_deref() == Some("ingest"))
            && seen.iter().any(|p| p.as_deref() == Some("analytics")),
        "{seen:?}"
    );
    ensure!(
        seen.iter().all(Option::is_some),
        "an unauthenticated request reached the filters: {seen:?}"
    );

    // A wrong password is refused, quickly and without reaching the cluster.
    let mut args = with("SCRAM-SHA-512", "ingest", "wrong");
    args.extend(["-L", "-m", "5"].map(String::from));
    ensure!(
        kcat_s(&args, None).await.is_err(),
        "a wrong password got through"
    );
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_group_consumer_over_sasl_plain() -> Result<()> {
    use rdkafka::consumer::Consumer;
    let broker = TestBroker::start().await?;
    let sasl = Sasl::new()?;
    let proxy = sasl_proxy(&broker, &sasl, None, Arc::new(Witness::default())).await?;
    let b = proxy.local_addr().to_string();
    let creds = |u: &'static str, p: &'static str| {
        [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", u),
            ("sasl.password", p),
        ]
    };
    crate::support::create_topic(&broker.broker_addr().to_string(), "orders", 2, &[]).await?;
    let p = crate::support::producer(&b, &creds("ingest", "ingest-pass"))?;
    crate::support::produce(&p, "orders", "sasl", 0..300).await?;
    let c = crate::support::consumer(&b, "billing", &creds("analytics", "analytics-pass"))?;
    c.subscribe(&["orders"])?;
    let got = crate::support::consume(&c, 300, LIMIT).await?;
    ensure!(got.len() == 300);
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_bad_credentials_and_slowdown() -> Result<()> {
    let broker = TestBroker::start().await?;
    let sasl = Sasl::new()?;
    let witness = Arc::new(Witness::default());
    let proxy = sasl_proxy(&broker, &sasl, None, witness.clone()).await?;
    let addr = proxy.local_addr();

    // Anything but ApiVersions and SASL before authentication: hung up on.
    let mut c = RawClient::connect(addr).await?;
    let frame = c.frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    c.send_raw(&frame).await?;
    c.expect_closed(Duration::from_secs(5)).await?;
    ensure!(
        witness.0.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the request reached the filters"
    );

    // An unknown mechanism is refused with the list of enabled ones.
    let mut c = RawClient::connect(addr).await?;
    let h: SaslHandshakeResponse = c
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(str("GSSAPI")),
        )
        .await?;
    ensure!(h.error_code == 33 && h.mechanisms.len() == 4, "{h:?}");

    // Wrong passwords: SASL_AUTHENTICATION_FAILED, the connection closed,
    // and each further failure from this address answered more slowly.
    let mut took = Vec::new();
    for _ in 0..3 {
        let mut c = RawClient::connect(addr).await?;
        let started = tokio::time::Instant::now();
        let a = sasl_once(&mut c, "PLAIN", plain("ingest", "nope")).await?;
        took.push(started.elapsed());
        ensure!(
            a.error_code == 58,
            "wrong password answered {}",
            a.error_code
        );
        ensure!(!a.error_message.as_deref().unwrap_or("").contains("nope"));
        c.expect_closed(Duration::from_secs(5)).await?;
    }
    ensure!(
        took[2] >= Duration::from_millis(350) && took[2] > took[0],
        "failures were not slowed down: {took:?}"
    );

    // The right password works and the principal carries the attributes.
    let mut c = RawClient::connect(addr).await?;
    let a = sasl_once(&mut c, "PLAIN", plain("ingest", "ingest-pass")).await?;
    ensure!(a.error_code == 0 && a.session_lifetime_ms == 0, "{a:?}");
    ensure!(metadata(&mut c).await?.brokers.len() == 1);
    proxy.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_jwts_are_verified() -> Result<()> {
    let broker = TestBroker::start().await?;
    let sasl = Sasl::new()?;
    let witness = Arc::new(Witness::default());
    let proxy = sasl_proxy(&broker, &sasl, None, witness.clone()).await?;
    let addr = proxy.local_addr();

    let good = sasl.token("analytics", 300, ISSUER, None)?;
    let mut c = RawClient::connect(addr).await?;
    let a = sasl_once(&mut c, "OAUTHBEARER", bearer(&good)).await?;
    ensure!(a.error_code == 0, "valid token refused: {a:?}");
    // The session lasts as long as the token.
    ensure!(
        (280_000..=300_000).contains(&a.session_lifetime_ms),
        "lifetime {}",
        a.session_lifetime_ms
    );
    ensure!(metadata(&mut c).await?.brokers.len() == 1);
    ensure!(witness
        .0
        .lock()
        .map(|s| s.contains(&Some("analytics".into())))
        .unwrap_or(false));

    let stranger = rcgen::KeyPair::generate()?;
    let none = {
        let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = base64_url(
            format!(
                r#"{{"sub":"analytics","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":9999999999}}"#
            )
            .as_bytes(),
        );
        format!("{header}.{claims}.")
    };
    for (what, token) in [
        ("expired", sasl.token("analytics", -3_600, ISSUER, None)?),
        (
            "wrong issuer",
            sasl.token("analytics", 300, "https://evil.example", None)?,
        ),
        (
            "another key",
            sasl.token("analytics", 300, ISSUER, Some(&stranger))?,
        ),
        ("alg none", none),
    ] {
        let mut c = RawClient::connect(addr).await?;
        let a = sasl_once(&mut c, "OAUTHBEARER", bearer(&token)).await?;
        ensure!(a.error_code == 58, "{what} token answered {}", a.error_code);
        c.expect_closed(Duration::from_secs(5)).await?;
    }
    proxy.shutdown().await;
    Ok(())
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// KIP-368: a session past its lifetime is closed at its next request,
/// unless the client re-authenticated (as the same principal) in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_unless_reauthenticated() -> Result<()> {
    let broker = TestBroker::start().await?;
    let sasl = Sasl::new()?;
    let proxy = sasl_proxy(&broker, &sasl, Some(1), Arc::new(Witness::default())).await?;
    let addr = proxy.local_addr();

    let mut renewing = RawClient::connect(addr).await?;
    let a = sasl_once(&mut renewing, "PLAIN", plain("ingest", "ingest-pass")).await?;
    ensure!(
        a.error_code == 0 && (1..=1_000).contains(&a.session_lifetime_ms),
        "{a:?}"
    );
    let mut lapsing = RawClient::connect(addr).await?;
    ensure!(
        sasl_once(&mut lapsing, "PLAIN", plain("ingest", "ingest-pass"))
            .await?
            .error_code
            == 0
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    ensure!(
        sasl_once(&mut renewing, "PLAIN", plain("ingest", "ingest-pass"))
            .await?
            .error_code
            == 0
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    ensure!(
        metadata(&mut renewing).await?.brokers.len() == 1,
        "the renewed session was closed"
    );
    let frame = lapsing.frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    lapsing.send_raw(&frame).await?;
    lapsing.expect_closed(Duration::from_secs(5)).await?;

    // Re-authenticating as someone else is refused.
    let a = sasl_once(&mut renewing, "PLAIN", plain("analytics", "analytics-pass")).await?;
    ensure!(a.error_code != 0, "re-authentication switched principals");
    renewing.expect_closed(Duration::from_secs(5)).await?;
    proxy.shutdown().await;
    Ok(())
}

/// The broker can be locked to the proxy: it requires SASL, the proxy
/// authenticates with its own credentials, and clients — who never hold
/// the broker's credentials — work through the proxy but not around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_authenticates_upstream_with_its_own_credentials() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker_users = CredentialStore::new();
    broker_users.insert(User::new_with_password(
        "gatehouse-proxy",
        "proxy-secret",
        4096,
        Default::default(),
    )?)?;
    let users_file = dir.path().join("broker-users.toml");
    std::fs::write(&users_file, broker_users.to_toml()?)?;
    std::fs::write(dir.path().join("proxy-password"), "proxy-secret\n")?;
    let broker = TestBroker::start_with(|c| {
        c.sasl_credentials = Some(users_file.clone());
        c.auto_create_topics = true;
    })
    .await?;
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let mut config = ProxyConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            broker.broker_addr().to_string(),
        );
        config.upstream.sasl = Some(gatehouse_proxy::config::UpstreamSasl {
            mechanism: mechanism.to_string(),
            username: "gatehouse-proxy".to_string(),
            password_file: Some(dir.path().join("proxy-password")),
            password_env: None,
        });
        let proxy = Proxy::start(config).await?;
        let b = proxy.local_addr().to_string();
        kcat(
            &["-b", &b, "-t", "locked", "-P"],
            Some(b"through the proxy\n"),
            LIMIT,
        )
        .await?;
        let out = kcat(&["-b", &b, "-t", "locked", "-C", "-e", "-q"], None, LIMIT).await?;
        ensure!(
            out.lines().all(|l| l == "through the proxy") && !out.is_empty(),
            "{mechanism}: {out}"
        );
        proxy.shutdown().await;
    }
    // Around the proxy, without credentials: refused.
    let direct = broker.broker_addr().to_string();
    ensure!(
        kcat(&["-b", &direct, "-L", "-m", "3"], None, LIMIT)
            .await
            .is_err(),
        "the broker served a client without credentials"
    );
    let mut c = RawClient::connect(broker.broker_addr()).await?;
    let frame = c.frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    c.send_raw(&frame).await?;
    c.expect_closed(Duration::from_secs(5)).await?;
    // And with a wrong password: SASL_AUTHENTICATION_FAILED.
    let mut c = RawClient::connect(broker.broker_addr()).await?;
    let a = sasl_once(&mut c, "PLAIN", plain("gatehouse-proxy", "guess")).await?;
    ensure!(a.error_code == 58, "{a:?}");
    Ok(())
}

/// confluent-kafka with an `oauth_cb` returning a signed JWT, kafka-python
/// with PLAIN and SCRAM, and kafkajs with SCRAM over TLS; a wrong password
/// fails fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_clients_authenticate() -> Result<()> {
    use gatehouse_tests::clients::{run, run_ok, Client};
    let broker = TestBroker::start_with(|c| c.auto_create_topics = true).await?;
    let sasl = Sasl::new()?;
    let pki = TestPki::new(sasl.dir.path())?;
    let mut config = ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        broker.broker_addr().to_string(),
    );
    config.auth = Some(sasl.auth_config(None));
    let proxy = Proxy::start(config).await?;
    let b = proxy.local_addr().to_string();
    let mut tls_config = ProxyConfig::new(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        broker.broker_addr().to_string(),
    );
    tls_config.auth = Some(sasl.auth_config(None));
    tls_config.listener.tls = Some(ServerTlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: None,
        require_client_cert: false,
        reload_interval_secs: 10,
    });
    let tls_proxy = Proxy::start(tls_config).await?;
    let tls_b = tls_proxy.local_addr().to_string();
    crate::support::create_topic(&broker.broker_addr().to_string(), "authed", 2, &[]).await?;

    let token_file = sasl.dir.path().join("analytics.jwt");
    std::fs::write(&token_file, sasl.token("analytics", 600, ISSUER, None)?)?;
    let token = token_file.to_string_lossy().into_owned();
    run_ok(
        Client::Confluent,
        &[
            "produce",
            "--bootstrap",
            &b,
            "--topic",
            "authed",
            "--count",
            "100",
            "--oauth-token-file",
            &token,
        ],
        LIMIT,
    )
    .await?;
    let plain_opts = [
        "--option",
        "security.protocol=SASL_PLAINTEXT",
        "--option",
        "sasl.mechanism=PLAIN",
        "--option",
        "sasl.username=ingest",
        "--option",
        "sasl.password=ingest-pass",
    ];
    let mut args = vec![
        "produce",
        "--bootstrap",
        &b,
        "--topic",
        "authed",
        "--count",
        "100",
        "--start",
        "100",
    ];
    args.extend(plain_opts);
    run_ok(Client::KafkaPython, &args, LIMIT).await?;
    let ca = format!("ssl.ca.location={}", pki.ca.display());
    let scram_tls = [
        "--option",
        "security.protocol=SASL_SSL",
        "--option",
        "sasl.mechanism=SCRAM-SHA-512",
        "--option",
        "sasl.username=ingest",
        "--option",
        "sasl.password=ingest-pass",
        "--option",
        &ca,
    ];
    let mut args = vec![
        "produce",
        "--bootstrap",
        &tls_b,
        "--topic",
        "authed",
        "--count",
        "100",
        "--start",
        "200",
    ];
    args.extend(scram_tls);
    run_ok(Client::KafkaJs, &args, LIMIT).await?;

    let scram = [
        "--option",
        "security.protocol=SASL_PLAINTEXT",
        "--option",
        "sasl.mechanism=SCRAM-SHA-256",
        "--option",
        "sasl.username=analytics",
        "--option",
        "sasl.password=analytics-pass",
    ];
    let mut args = vec![
        "consume",
        "--bootstrap",
        &b,
        "--topic",
        "authed",
        "--group",
        "readers",
        "--count",
        "300",
    ];
    args.extend(scram);
    let got = run_ok(Client::KafkaPython, &args, LIMIT).await?;
    ensure!(got["consumed"] == 300, "kafka-python consumed {got}");
    let args = vec![
        "consume",
        "--bootstrap",
        &b,
        "--topic",
        "authed",
        "--group",
        "jwt-readers",
        "--count",
        "300",
        "--oauth-token-file",
        &token,
    ];
    let got = run_ok(Client::Confluent, &args, LIMIT).await?;
    ensure!(got["consumed"] == 300, "confluent consumed {got}");

    let started = tokio::time::Instant::now();
    let bad = [
        "--option",
        "security.protocol=SASL_PLAINTEXT",
        "--option",
        "sasl.mechanism=SCRAM-SHA-512",
        "--option",
        "sasl.username=ingest",
        "--option",
        "sasl.password=wrong",
    ];
    for client in [Client::Confluent, Client::KafkaPython, Client::KafkaJs] {
        let mut args = vec!["metadata", "--bootstrap", &b];
        args.extend(bad);
        let o = run(client, &args, LIMIT).await?;
        ensure!(
            o.code != 0 && o.json["error"] == "authentication",
            "{client:?} with a wrong password: {} {}",
            o.json,
            o.stderr
        );
    }
    ensure!(
        started.elapsed() < Duration::from_secs(45),
        "wrong passwords took {:?}",
        started.elapsed()
    );
    proxy.shutdown().await;
    tls_proxy.shutdown().await;
    Ok(())
}

/// TLS towards the cluster: a proxy whose upstream is a TLS endpoint (here
/// another Gatehouse proxy terminating TLS in front of the broker) verifies
/// it against its own CA; a wrong CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_towards_the_cluster() -> Result<()> {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = true).await?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path())?;
    let tls_front = tls_proxy(&broker, &pki, false, Arc::new(Witness::default())).await?;
    let edge_config = |ca: std::path::PathBuf| {
        let mut c = ProxyConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_front.local_addr().to_string(),
        );
        c.upstream.tls = Some(gatehouse_proxy::tls::ClientTlsConfig {
            ca_file: ca,
            cert_file: None,
            key_file: None,
            server_name: None,
        });
        c
    };
    let edge = Proxy::start(edge_config(pki.ca.clone())).await?;
    let b = edge.local_addr().to_string();
    kcat(
        &["-b", &b, "-t", "chained", "-P"],
        Some(b"over tls upstream\n"),
        LIMIT,
    )
    .await?;
    let out = kcat(&["-b", &b, "-t", "chained", "-C", "-e", "-q"], None, LIMIT).await?;
    ensure!(out.trim() == "over tls upstream", "{out}");
    edge.shutdown().await;

    // An upstream whose certificate does not chain to the configured CA.
    let other = tempfile::tempdir()?;
    let other_pki = TestPki::new(other.path())?;
    let wary = Proxy::start(edge_config(other_pki.ca.clone())).await?;
    let mut c = RawClient::connect(wary.local_addr()).await?;
    let frame = c.frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?;
    c.send_raw(&frame).await?;
    c.expect_closed(Duration::from_secs(10)).await?;
    wary.shutdown().await;
    tls_front.shutdown().await;
    Ok(())
}

/// A rotated certificate is picked up without a restart; a broken one is
/// refused and the old one stays in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_when_their_files_change() -> Result<()> {
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path())?;
    let proxy = tls_proxy(&broker, &pki, false, Arc::new(Witness::default())).await?;
    let b = proxy.local_addr().to_string();
    let list = |ca: &std::path::Path| {
        vec![
            "-b".to_string(),
            b.clone(),
            "-X".into(),
            "security.protocol=ssl".into(),
            "-X".into(),
            format!("ssl.ca.location={}", ca.display()),
            "-L".into(),
            "-m".into(),
            "5".into(),
        ]
    };
    ensure!(kcat_s(&list(&pki.ca), None).await.is_ok());
    // A new CA and server certificate replace the old files.
    let next = tempfile::tempdir()?;
    let next_pki = TestPki::new(next.path())?;
    std::fs::copy(&next_pki.server_cert, &pki.server_cert)?;
    std::fs::copy(&next_pki.server_key, &pki.server_key)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while kcat_s(&list(&next_pki.ca), None).await.is_err() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
    }
    ensure!(
        kcat_s(&list(&pki.ca), None).await.is_err(),
        "the old certificate is still served"
    );
    // A broken certificate file is refused; the current one stays.
    std::fs::write(&pki.server_cert, "not a certificate")?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    ensure!(
        kcat_s(&list(&next_pki.ca), None).await.is_ok(),
        "a broken file replaced the working certificate"
    );
    proxy.shutdown().await;
    Ok(())
}

// === The authentication record and its edges, in the demo world ===

use crate::policy::World;
use gatehouse_audit::{Decision, Event, EventKind, Query};

/// The demo world with every SASL mechanism: PLAIN and SCRAM over its
/// users, OAUTHBEARER with a JWT key of its own (team, region and purposes
/// from the token's claims).
struct AuthWorld {
    w: World,
    jwt_key: rcgen::KeyPair,
    _jwt_dir: tempfile::TempDir,
}

impl AuthWorld {
    async fn start() -> Result<Self> {
        let jwt_dir = tempfile::tempdir()?;
        let jwt_key = rcgen::KeyPair::generate()?;
        let pem = jwt_dir.path().join("jwt.pub.pem");
        std::fs::write(&pem, jwt_key.public_key_pem())?;
        let w = World::start_with(|c| {
            if let Some(auth) = c.auth.as_mut() {
                auth.mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
                    .map(String::from)
                    .to_vec();
                auth.oauthbearer = Some(toml_oauth(&pem));
            }
        })
        .await?;
        Ok(Self {
            w,
            jwt_key,
            _jwt_dir: jwt_dir,
        })
    }

    /// A JWT for `sub` with these attributes, valid for five minutes,
    /// signed with the world's key (or `other`).
    fn token(
        &self,
        sub: &str,
        team: &str,
        purposes: &[&str],
        other: Option<&rcgen::KeyPair>,
    ) -> Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let claims = serde_json::json!({
            "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "team": team, "region": "eu", "purposes": purposes,
        });
        let key = other.unwrap_or(&self.jwt_key);
        let enc = jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der());
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &enc,
        )?)
    }
}

/// The world's audit trail, as an auditor queries it.
fn trail(w: &World, q: Query) -> Result<Vec<Event>> {
    Ok(gatehouse_audit::query(&[w.dir.path().join("audit-a")], &q)?)
}

fn of(principal: &str) -> Query {
    Query {
        principal: Some(principal.into()),
        ..Query::default()
    }
}

/// Every byte the world's audit trail holds on disk.
fn audit_bytes(w: &World) -> Result<String> {
    let mut all = String::new();
    for e in std::fs::read_dir(w.dir.path().join("audit-a"))? {
        let path = e?.path();
        if path.is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(path)?));
        }
    }
    Ok(all)
}

/// Refused logins are recorded with the principal they claimed and the
/// SASL mechanism they used, from real clients (librdkafka through kcat
/// for PLAIN and SCRAM, confluent-kafka with a token callback for
/// OAUTHBEARER), and no password or token reaches the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_record_the_claimed_principal_and_mechanism() -> Result<()> {
    use gatehouse_tests::clients::{run, Client};
    let aw = AuthWorld::start().await?;
    let w = &aw.w;
    let b = w.proxy.local_addr().to_string();
    let login = |mech: &str, user: &str, pw: &str| -> Vec<String> {
        [
            "-b",
            &b,
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            &format!("sasl.mechanisms={mech}"),
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={pw}"),
            "-L",
            "-m",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let attempts = [
        ("PLAIN", "analytics", "plain-guess-7731"),
        ("SCRAM-SHA-256", "support", "scram256-guess-4410"),
        ("SCRAM-SHA-512", "trust-safety", "scram512-guess-9902"),
    ];
    for (mech, user, pw) in attempts {
        ensure!(
            kcat_s(&login(mech, user, pw), None).await.is_err(),
            "{mech} with a wrong password got through"
        );
    }
    // A token for marketing-us signed by a key the proxy does not trust.
    let stranger = rcgen::KeyPair::generate()?;
    let forged = aw.token("marketing-us", "marketing", &["marketing"], Some(&stranger))?;
    let token_file = w.dir.path().join("forged.jwt");
    std::fs::write(&token_file, &forged)?;
    let token_path = token_file.to_string_lossy().into_owned();
    let o = run(
        Client::Confluent,
        &[
            "metadata",
            "--bootstrap",
            &b,
            "--oauth-token-file",
            &token_path,
        ],
        LIMIT,
    )
    .await?;
    ensure!(
        o.code != 0 && o.json["error"] == "authentication",
        "a forged token: {} {}",
        o.json,
        o.stderr
    );
    // A login that works is recorded with its mechanism's name too.
    let _ok = w.raw_as("auditor").await?;

    let expected = attempts
        .iter()
        .map(|(m, u, _)| (*u, *m))
        .chain([("marketing-us", "OAUTHBEARER")]);
    for (user, mech) in expected {
        let events = trail(w, of(user))?;
        ensure!(
            events.iter().any(|e| matches!(&e.kind,
                EventKind::AuthRefused { principal, mechanism, peer, .. }
                    if principal.as_deref() == Some(user) && mechanism == mech
                        && peer.starts_with("127.0.0.1:"))),
            "no refusal of {user} by {mech} on record: {events:?}"
        );
    }
    ensure!(
        trail(w, of("auditor"))?.iter().any(|e| matches!(&e.kind,
            EventKind::AuthOk { mechanism, .. } if mechanism == "PLAIN")),
        "the accepted login is not recorded as PLAIN"
    );
    // Not a single refusal without a name or with the generic "SASL".
    let everything = trail(w, Query::default())?;
    let refusals: Vec<&EventKind> = everything
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::AuthRefused { .. }))
        .collect();
    ensure!(
        !refusals.is_empty()
            && refusals.iter().all(|k| matches!(k,
                EventKind::AuthRefused { principal: Some(_), mechanism, .. } if mechanism != "SASL")),
        "{refusals:?}"
    );
    // Neither the passwords nor the token (nor its signature) is on disk.
    let disk = audit_bytes(w)?;
    for (_, _, pw) in attempts {
        ensure!(!disk.contains(pw), "a password is in the audit trail");
    }
    let signature = forged.rsplit('.').next().unwrap_or(&forged);
    ensure!(
        !disk.contains(&forged) && !disk.contains(signature),
        "the token is in the audit trail"
    );
    let dir = w.dir.path().join("audit-a");
    aw.w.proxy.shutdown().await;
    ensure!(gatehouse_audit::verify(&[dir])?.is_clean());
    Ok(())
}

/// One failed PLAIN login on `c`: how long the answer took.
async fn fail_once(c: &mut RawClient, user: &str) -> Result<Duration> {
    let started = tokio::time::Instant::now();
    let a = sasl_once(c, "PLAIN", plain(user, "not-the-password")).await?;
    let took = started.elapsed();
    ensure!(a.error_code == 58, "a wrong password answered {a:?}");
    c.expect_closed(Duration::from_secs(5)).await?;
    Ok(took)
}

/// Failures are throttled per claimed user name and per address: a login
/// from the same address (here an attacker's own account, between guesses)
/// does not reset the name being guessed at, and moving to another address
/// does not either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_does_not_reset_another_names_throttle() -> Result<()> {
    let w = World::start().await?;
    let addr = w.proxy.local_addr();
    let from = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);

    // Three guesses at analytics from .2: 100, 200, 400 ms.
    for _ in 0..3 {
        fail_once(
            &mut RawClient::connect_from(addr, from(2)).await?,
            "analytics",
        )
        .await?;
    }
    // The attacker logs in as itself from the same address...
    let mut own = RawClient::connect_from(addr, from(2)).await?;
    let a = sasl_once(&mut own, "PLAIN", plain("research", "research-pw")).await?;
    ensure!(a.error_code == 0, "{a:?}");
    // ...and the next guess at analytics is still answered slowly (800 ms).
    let after_login = fail_once(
        &mut RawClient::connect_from(addr, from(2)).await?,
        "analytics",
    )
    .await?;
    ensure!(
        after_login >= Duration::from_millis(780),
        "a login reset analytics' throttle: the next guess took {after_login:?}"
    );
    // From a fresh address, the name's count still holds (capped at the
    // world's 1 s).
    let elsewhere = fail_once(
        &mut RawClient::connect_from(addr, from(3)).await?,
        "analytics",
    )
    .await?;
    ensure!(
        elsewhere >= Duration::from_millis(980),
        "a new address reset analytics' throttle: the guess took {elsewhere:?}"
    );
    // Another name from another fresh address starts from the bottom.
    let fresh = fail_once(
        &mut RawClient::connect_from(addr, from(4)).await?,
        "support",
    )
    .await?;
    ensure!(fresh < elsewhere, "{fresh:?} vs {elsewhere:?}");
    // And analytics itself logging in clears its own count.
    let mut real = RawClient::connect_from(addr, from(5)).await?;
    let a = sasl_once(&mut real, "PLAIN", plain("analytics", "analytics-pw")).await?;
    ensure!(a.error_code == 0, "{a:?}");
    let cleared = fail_once(
        &mut RawClient::connect_from(addr, from(6)).await?,
        "analytics",
    )
    .await?;
    ensure!(
        cleared < Duration::from_millis(780),
        "analytics' own login did not clear its count: {cleared:?}"
    );
    w.proxy.shutdown().await;
    Ok(())
}

/// After a failed attempt the connection is closed: a second attempt the
/// client pipelined behind the first (only an attacker does that) is not
/// answered, let alone with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_after_a_failed_attempt() -> Result<()> {
    let w = World::start().await?;
    let mut c = RawClient::connect(w.proxy.local_addr()).await?;
    let mut burst = Vec::new();
    for password in ["a-wrong-guess", "analytics-pw"] {
        burst.extend_from_slice(&c.frame(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(str("PLAIN")),
        )?);
        burst.extend_from_slice(
            &c.frame(
                ApiKey::SaslAuthenticate,
                2,
                &SaslAuthenticateRequest::default()
                    .with_auth_bytes(plain("analytics", password).into()),
            )?,
        );
    }
    burst.extend_from_slice(&c.frame(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    )?);
    c.send_raw(&burst).await?;
    let h: SaslHandshakeResponse =
        RawClient::decode_response(ApiKey::SaslHandshake, 1, c.read_frame().await?)?;
    ensure!(h.error_code == 0, "{h:?}");
    let a: SaslAuthenticateResponse =
        RawClient::decode_response(ApiKey::SaslAuthenticate, 2, c.read_frame().await?)?;
    ensure!(a.error_code == 58, "{a:?}");
    c.expect_closed(Duration::from_secs(5)).await?;
    // On record: the refusal, and no session of analytics.
    let events = trail(&w, of("analytics"))?;
    ensure!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::AuthRefused { .. }))
            && !events
                .iter()
                .any(|e| matches!(e.kind, EventKind::AuthOk { .. })),
        "{events:?}"
    );
    w.proxy.shutdown().await;
    Ok(())
}

/// KIP-368 re-authentication keeps the session's principal *and* its
/// attributes: the same token claims again are accepted; another
/// principal, or the same name with other attributes (which every
/// decision of the session was made with), is refused, recorded and hung
/// up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_keeps_the_principal_and_its_attributes() -> Result<()> {
    let aw = AuthWorld::start().await?;
    let w = &aw.w;
    let addr = w.proxy.local_addr();
    let analytics = aw.token("analytics", "analytics", &["analytics"], None)?;

    // The same claims again (a refreshed token): accepted.
    let mut c = RawClient::connect(addr).await?;
    let a = sasl_once(&mut c, "OAUTHBEARER", bearer(&analytics)).await?;
    ensure!(a.error_code == 0, "{a:?}");
    let again = aw.token("analytics", "analytics", &["analytics"], None)?;
    let a = sasl_once(&mut c, "OAUTHBEARER", bearer(&again)).await?;
    ensure!(a.error_code == 0, "the same claims were refused: {a:?}");
    ensure!(metadata(&mut c).await?.brokers.len() == 1);

    // The same name, now with trust-safety's team and purposes.
    let promoted = aw.token("analytics", "trust_safety", &["moderation"], None)?;
    let a = sasl_once(&mut c, "OAUTHBEARER", bearer(&promoted)).await?;
    ensure!(
        a.error_code == 58,
        "re-authentication changed the session's attributes: {a:?}"
    );
    c.expect_closed(Duration::from_secs(5)).await?;
    let events = trail(w, of("analytics"))?;
    ensure!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::AuthRefused { mechanism, reason, .. }
                if mechanism == "OAUTHBEARER" && reason.contains("attributes")
                    && reason.contains("team") && reason.contains("purposes"))),
        "the refused re-authentication is not on record: {events:?}"
    );

    // Another principal (PLAIN on a PLAIN session): refused and recorded
    // with the name the credentials proved and the session's.
    let mut c = w.raw_as("analytics").await?;
    let a = sasl_once(&mut c, "PLAIN", plain("ingest", "ingest-pw")).await?;
    ensure!(
        a.error_code == 58,
        "re-authentication switched principals: {a:?}"
    );
    c.expect_closed(Duration::from_secs(5)).await?;
    let events = trail(w, of("ingest"))?;
    ensure!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::AuthRefused { mechanism, reason, .. }
                if mechanism == "PLAIN" && reason.contains("session of analytics"))),
        "the switch of principals is not on record: {events:?}"
    );
    ensure!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::AuthOk { .. })),
        "{events:?}"
    );
    aw.w.proxy.shutdown().await;
    Ok(())
}

/// A transactional producer's InitProducerId is refused and recorded: an
/// id the policies do not grant as a denial by the policies (default deny
/// here), one they grant (ingest's own) with the reason the proxy refuses
/// it anyway. Raw frames: real clients look the transaction coordinator up
/// first, which the cluster does not offer, so only a hand-made request
/// gets this far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transactional_producers_are_recorded() -> Result<()> {
    use kafka_protocol::messages::{
        InitProducerIdRequest, InitProducerIdResponse, TransactionalId,
    };
    let w = World::start().await?;
    let init = |id: &str| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(str(id))))
            .with_transaction_timeout_ms(60_000)
    };
    let mut c = w.raw_as("analytics").await?;
    let r: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 1, &init("analytics-tx"))
        .await?;
    ensure!(r.error_code == 53, "analytics-tx answered {r:?}");
    let mut c = w.raw_as("ingest").await?;
    let r: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 1, &init("ingest-tx"))
        .await?;
    ensure!(r.error_code == 31, "ingest-tx answered {r:?}");
    // Idempotent producers (no transactional id) still get their id.
    let r: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            1,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
        .await?;
    ensure!(
        r.error_code == 0,
        "an idempotent producer was refused: {r:?}"
    );

    let denied = |who: &str| {
        trail(
            &w,
            Query {
                decision: Some(Decision::Deny),
                ..of(who)
            },
        )
    };
    let events = denied("analytics")?;
    ensure!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Decision { api, resource_type, resource, policies, reason, .. }
                if api == "InitProducerId" && resource_type == "transactional_id"
                    && resource == "analytics-tx" && policies.is_empty() && reason.is_none())),
        "the refused transactional id of analytics is not on record: {events:?}"
    );
    let events = denied("ingest")?;
    ensure!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Decision { api, resource_type, resource, reason: Some(reason), .. }
                if api == "InitProducerId" && resource_type == "transactional_id"
                    && resource == "ingest-tx" && reason.contains("not supported"))),
        "the refused transactional producer of ingest is not on record: {events:?}"
    );
    w.proxy.shutdown().await;
    ensure!(gatehouse_audit::verify(&[w.dir.path().join("audit-a")])?.is_clean());
    Ok(())
}

/// The credentials file is reloaded without a restart: a user added to it
/// logs in, one removed from it no longer does, and a connection opened
/// before the change is closed when it starts SASL (its client reconnects
/// against the users now in force).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_file_is_reloaded_without_a_restart() -> Result<()> {
    let broker = TestBroker::start().await?;
    let sasl = Sasl::new()?;
    let proxy = sasl_proxy(&broker, &sasl, None, Arc::new(Witness::default())).await?;
    let addr = proxy.local_addr();
    let mut c = RawClient::connect(addr).await?;
    ensure!(
        sasl_once(&mut c, "PLAIN", plain("ingest", "ingest-pass"))
            .await?
            .error_code
            == 0
    );
    let opened_before = RawClient::connect(addr).await?;

    // ingest leaves, newcomer joins.
    let file = sasl.dir.path().join("users.toml");
    let mut store = CredentialStore::load(&file)?;
    store.remove("ingest");
    store.insert(User::new_with_password(
        "newcomer",
        "newcomer-pass",
        4096,
        Default::default(),
    )?)?;
    std::fs::write(&file, store.to_toml()?)?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = RawClient::connect(addr).await?;
        let a = sasl_once(&mut c, "PLAIN", plain("newcomer", "newcomer-pass")).await?;
        if a.error_code == 0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the new user never got in"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = RawClient::connect(addr).await?;
    let a = sasl_once(&mut c, "PLAIN", plain("ingest", "ingest-pass")).await?;
    ensure!(a.error_code == 58, "a removed user logged in: {a:?}");

    let mut old = opened_before;
    let frame = old.frame(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(str("PLAIN")),
    )?;
    old.send_raw(&frame).await?;
    old.expect_closed(Duration::from_secs(5)).await?;
    proxy.shutdown().await;
    Ok(())
}

/// The proxy's TLS listener speaks TLS 1.2 and 1.3 only, with forward
/// secret AEAD suites: OpenSSL's client, allowed everything on its side
/// (`@SECLEVEL=0`), gets no handshake for TLS 1.0 / 1.1 or for CBC, RC4,
/// 3DES and static-RSA suites, and one for TLS 1.2 and 1.3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_1_2_or_1_3_with_strong_suites_only() -> Result<()> {
    let broker = TestBroker::start().await?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path())?;
    let proxy = tls_proxy(&broker, &pki, false, Arc::new(Witness::default())).await?;
    let addr = proxy.local_addr().to_string();
    let handshake = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new("openssl");
        cmd.args(["s_client", "-connect", &addr, "-CAfile"])
            .arg(&pki.ca)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        async move {
            let out = tokio::time::timeout(Duration::from_secs(20), cmd.output()).await??;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // A handshake that completed names its protocol and suite.
            let done = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
            anyhow::Ok((done, text))
        }
    };
    for (args, want) in [
        (&["-tls1_3"][..], true),
        (&["-tls1_2"][..], true),
        (&["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"][..], false),
        (&["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"][..], false),
        (
            &[
                "-tls1_2",
                "-cipher",
                "AES128-SHA:AES256-SHA:DES-CBC3-SHA:RC4-SHA:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256:@SECLEVEL=0",
            ][..],
            false,
        ),
    ] {
        let (done, text) = handshake(args).await?;
        ensure!(
            done == want,
            "openssl s_client {args:?}: handshake {} (wanted {})\n{text}",
            if done { "completed" } else { "refused" },
            if want { "completed" } else { "refused" }
        );
    }
    proxy.shutdown().await;
    Ok(())
}
