//! Policy end to end: the shipped Cedar policies and catalog, principals
//! authenticated by SASL, real clients, and consent arriving on the consent
//! topic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::config::{AuditSection, KeysConfig, PolicyConfig};
use gatehouse_proxy::{Proxy, ProxyConfig};
use gatehouse_sasl::{AttributeValue, CredentialStore, User};
use gatehouse_tests::{RawClient, TestBroker};
use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::identity::{plain, sasl_once};

const LIMIT: Duration = Duration::from_secs(30);

/// The demo world's principals: (name, team, region, purposes).
const PEOPLE: &[(&str, &str, &str, &[&str])] = &[
    ("ingest", "platform", "eu", &[]),
    ("trust-safety", "trust_safety", "eu", &["moderation"]),
    ("analytics", "analytics", "eu", &["analytics"]),
    ("marketing-us", "marketing", "us", &["marketing"]),
    ("support", "support", "eu", &["support"]),
    ("auditor", "compliance", "eu", &["audit"]),
    ("privacy", "privacy", "eu", &["erasure"]),
    // Not in the shipped policies: tests grant it what they need.
    ("research", "research", "eu", &["research"]),
];

pub(crate) struct World {
    pub(crate) broker: TestBroker,
    pub(crate) proxy: Proxy,
    pub(crate) policy_dir: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

impl World {
    pub(crate) async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`World::start`], with `edit` applied to the proxy's
    /// configuration first.
    pub(crate) async fn start_with(edit: impl FnOnce(&mut ProxyConfig)) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let broker = TestBroker::start().await?;
        let direct = broker.broker_addr().to_string();
        for (topic, partitions, policy) in [
            ("social.posts", 3, "delete"),
            ("enrich.sentiment", 1, "delete"),
            ("consent.events", 2, "compact"),
        ] {
            crate::support::create_topic(&direct, topic, partitions, &[("cleanup.policy", policy)])
                .await?;
        }
        let mut users = CredentialStore::new();
        for (name, team, region, purposes) in PEOPLE {
            let attrs = BTreeMap::from([
                ("team".to_string(), AttributeValue::String(team.to_string())),
                (
                    "region".to_string(),
                    AttributeValue::String(region.to_string()),
                ),
                (
                    "purposes".to_string(),
                    AttributeValue::List(purposes.iter().map(|p| p.to_string()).collect()),
                ),
            ]);
            users.insert(User::new_with_password(
                *name,
                &format!("{name}-pw"),
                4096,
                attrs,
            )?)?;
        }
        // The erasure verifier, as the demo has it: no password.
        users.insert(User {
            name: "erasure-verifier".into(),
            attributes: BTreeMap::from([
                ("team".to_string(), AttributeValue::from("privacy")),
                ("region".to_string(), AttributeValue::from("eu")),
                (
                    "purposes".to_string(),
                    AttributeValue::List(vec!["erasure_verification".into()]),
                ),
            ]),
            scram_sha_256: None,
            scram_sha_512: None,
        })?;
        std::fs::write(dir.path().join("users.toml"), users.to_toml()?)?;
        let policy_dir = dir.path().join("policies");
        copy_dir(
            &gatehouse_tests::repo_root().join("policies/default"),
            &policy_dir,
        )?;
        let mut config = Self::proxy_config(dir.path(), &policy_dir, &direct, "a");
        edit(&mut config);
        let proxy = Proxy::start(config).await?;
        Ok(Self {
            broker,
            proxy,
            policy_dir,
            dir,
        })
    }

    /// A proxy configuration for this world: SASL PLAIN, the policies of
    /// `policy_dir`, field protection keys from the shared key file, and
    /// state of its own (`replica` names it).
    pub(crate) fn proxy_config(
        dir: &Path,
        policy_dir: &Path,
        cluster: &str,
        replica: &str,
    ) -> ProxyConfig {
        let mut config = ProxyConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster.to_string(),
        );
        config.auth = Some(gatehouse_proxy::auth::AuthConfig {
            mechanisms: vec!["PLAIN".into()],
            credentials_file: Some(dir.join("users.toml")),
            oauthbearer: None,
            session_lifetime_secs: None,
            max_failure_delay_ms: 1_000,
            accept_client_certificates: false,
        });
        config.policy = Some(PolicyConfig {
            dir: policy_dir.to_path_buf(),
            catalog_file: None,
            reload_interval_secs: 1,
            consent_topic: "consent.events".into(),
            state_dir: dir.join(format!("state-{replica}")),
        });
        config.keys = Some(KeysConfig {
            key_file: dir.join("kek.toml"),
            state_dir: dir.join(format!("keys-{replica}")),
            topic: "_gatehouse.keys".into(),
            erasure_topic: "_gatehouse.erasure".into(),
            erasure_verify_as: Some("erasure-verifier".into()),
            cache_capacity: 1_000,
        });
        config.audit = Some(AuditSection {
            dir: dir.join(format!("audit-{replica}")),
            replica_id: replica.to_string(),
            signing_key_file: None,
            checkpoint_every: 100,
            flush_interval_ms: 2,
            // Small blocks: the tests' queries read written blocks and
            // pending events both.
            index_block_events: 16,
        });
        config
    }

    /// Another proxy replica in front of the same cluster, sharing the key
    /// file and the policies, with state of its own.
    pub(crate) async fn replica(&self, name: &str) -> Result<Proxy> {
        let config = Self::proxy_config(
            self.dir.path(),
            &self.policy_dir,
            &self.broker.broker_addr().to_string(),
            name,
        );
        Ok(Proxy::start(config).await?)
    }

    pub(crate) fn creds(who: &str) -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "SASL_PLAINTEXT".into()),
            ("sasl.mechanisms".into(), "PLAIN".into()),
            ("sasl.username".into(), who.into()),
            ("sasl.password".into(), format!("{who}-pw")),
        ]
    }

    pub(crate) fn producer(&self, who: &str) -> Result<FutureProducer> {
        let c = Self::creds(who);
        let c: Vec<(&str, &str)> = c.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        crate::support::producer(&self.proxy.local_addr().to_string(), &c)
    }

    /// Every record of `topic` as `who` sees it now: (key, value).
    pub(crate) async fn read_all(
        &self,
        who: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<Vec<(String, String)>> {
        Ok(
            read_records(self.proxy.local_addr(), who, topic, partitions)
                .await?
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect(),
        )
    }

    pub(crate) async fn raw_as(&self, who: &str) -> Result<RawClient> {
        let mut c = RawClient::connect(self.proxy.local_addr()).await?;
        let a = sasl_once(&mut c, "PLAIN", plain(who, &format!("{who}-pw"))).await?;
        ensure!(a.error_code == 0, "{who} could not log in");
        Ok(c)
    }
}

/// A record as a consumer received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: String,
    pub(crate) value: String,
}

/// Every record of `topic` as `who` sees it through the proxy at `addr`,
/// from the beginning to the end of each partition.
pub(crate) async fn read_records(
    addr: std::net::SocketAddr,
    who: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Received>> {
    let creds = World::creds(who);
    let options: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    read_from(&addr.to_string(), who, &options, topic, partitions).await
}

/// Every record of `topic` at `bootstrap` (a proxy or the broker itself),
/// read by a consumer with `options`, from the beginning to the end of
/// each partition.
pub(crate) async fn read_from(
    bootstrap: &str,
    reader: &str,
    options: &[(&str, &str)],
    topic: &str,
    partitions: i32,
) -> Result<Vec<Received>> {
    let mut options = options.to_vec();
    options.push(("enable.partition.eof", "true"));
    let group = format!("{reader}-reader-{}", rand_suffix());
    let consumer: StreamConsumer = crate::support::consumer(bootstrap, &group, &options)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let mut eof = 0;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while eof < partitions {
        match tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .with_context(|| format!("read timed out after {} records, {eof} EOFs", out.len()))?
        {
            Ok(m) => out.push(Received {
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            }),
            Err(rdkafka::error::KafkaError::PartitionEOF(_)) => eof += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

pub(crate) fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The small world the audit and admin tests share: u-000042 consents to
/// analytics, then ingest posts p-0 (u-000042), p-1 (u-000007) and p-2
/// (u-000042), and the proxy has seen the consent.
pub(crate) async fn consent_and_three_posts(w: &World) -> Result<()> {
    let ingest = w.producer("ingest")?;
    send(
        &ingest,
        "consent.events",
        "u-000042",
        Some(r#"{"purposes":["analytics"]}"#),
        None,
    )
    .await?;
    for (i, subject) in ["u-000042", "u-000007", "u-000042"].iter().enumerate() {
        send(
            &ingest,
            "social.posts",
            subject,
            Some(&post(&format!("p-{i}"), subject)),
            None,
        )
        .await?;
    }
    ensure!(w.proxy.consent_caught_up(LIMIT).await, "consent lagging");
    Ok(())
}

pub(crate) fn post(id: &str, subject: &str) -> String {
    format!(
        r#"{{"id":"{id}","author":{{"id":"{subject}","email":"{subject}@example.com","handle":"@{subject}"}},"text":"post {id}"}}"#
    )
}

pub(crate) async fn send(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    value: Option<&str>,
    region: Option<&str>,
) -> Result<()> {
    let mut r = FutureRecord::to(topic).key(key);
    if let Some(v) = value {
        r = r.payload(v);
    }
    if let Some(region) = region {
        r = r.headers(OwnedHeaders::new().insert(Header {
            key: "region",
            value: Some(region),
        }));
    }
    p.send(r, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

pub(crate) async fn fetch_error(c: &mut RawClient, topic: &str) -> Result<i16> {
    let req = FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await?;
    Ok(resp
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_regions_consent_and_reload() -> Result<()> {
    let w = World::start().await?;
    let ingest = w.producer("ingest")?;
    // u-000042 consents to analytics, u-000007 only to marketing.
    send(
        &ingest,
        "consent.events",
        "u-000042",
        Some(r#"{"purposes":["analytics"]}"#),
        None,
    )
    .await?;
    send(
        &ingest,
        "consent.events",
        "u-000007",
        Some(r#"{"purposes":["marketing"]}"#),
        None,
    )
    .await?;
    for (i, subject) in ["u-000042", "u-000007", "u-000042", "u-000007"]
        .iter()
        .enumerate()
    {
        send(
            &ingest,
            "social.posts",
            subject,
            Some(&post(&format!("p-{i}"), subject)),
            None,
        )
        .await?;
    }
    ensure!(
        w.proxy.consent_caught_up(LIMIT).await,
        "consent follower did not catch up"
    );

    // Two principals of different teams read the same topic differently.
    let moderation = w.read_all("trust-safety", "social.posts", 3).await?;
    ensure!(
        moderation.len() == 4,
        "trust-safety sees everything (legitimate interest): {moderation:?}"
    );
    let analytics = w.read_all("analytics", "social.posts", 3).await?;
    ensure!(
        analytics.len() == 2 && analytics.iter().all(|(k, _)| k == "u-000042"),
        "analytics sees only consenting subjects: {analytics:?}"
    );

    // Residency: marketing-us (region us) may not read eu topics…
    let mut mkt = w.raw_as("marketing-us").await?;
    ensure!(
        fetch_error(&mut mkt, "social.posts").await? == 29,
        "marketing-us read an eu topic"
    );
    // …but may read the global enrichment labels.
    send(
        &ingest,
        "social.posts",
        "u-000042",
        Some(&post("p-x", "u-000042")),
        None,
    )
    .await
    .ok();
    ensure!(fetch_error(&mut mkt, "enrich.sentiment").await? == 0);

    // A multi-topic produce: the allowed topic is written, the denied one
    // gets TOPIC_AUTHORIZATION_FAILED; and a record whose region header
    // disagrees with the topic's residency is refused.
    let mut raw = w.raw_as("ingest").await?;
    let batch = gatehouse_tests::record_batch_of(&[
        ("u-000042", &post("p-m1", "u-000042")),
        ("u-000042", &post("p-m2", "u-000042")),
    ])?;
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("social.posts")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.clone()))]),
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("enrich.sentiment")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))]),
        ]);
    let resp: ProduceResponse = raw.call(ApiKey::Produce, 9, &req).await?;
    let code = |topic: &str| {
        resp.responses
            .iter()
            .find(|t| t.name.0.as_str() == topic)
            .and_then(|t| t.partition_responses.first())
            .map(|p| p.error_code)
    };
    ensure!(
        code("social.posts") == Some(0),
        "social.posts: {:?}",
        code("social.posts")
    );
    ensure!(
        code("enrich.sentiment") == Some(29),
        "enrich.sentiment: {:?}",
        code("enrich.sentiment")
    );
    let refused = send(
        &ingest,
        "social.posts",
        "u-000042",
        Some(&post("p-us", "u-000042")),
        Some("us"),
    )
    .await;
    ensure!(refused.is_err(), "a us record was accepted on an eu topic");

    // Consent revoked: within seconds analytics stops receiving u-000042.
    send(
        &ingest,
        "consent.events",
        "u-000042",
        Some(r#"{"purposes":[]}"#),
        None,
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = w.read_all("analytics", "social.posts", 3).await?;
        if seen.iter().all(|(k, _)| k != "u-000042") {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "analytics still sees u-000042 after revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // An invalid policy file is refused; the set in force stays, and so
    // does the traffic it allows.
    let policies = w.proxy.policies().context("policies")?;
    let version = policies.version();
    std::fs::write(
        w.policy_dir.join("broken.cedar"),
        "permit (principal, action, resource) when { oops };",
    )?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    ensure!(
        policies.version() == version,
        "an invalid policy set was swapped in"
    );
    let moderation = w.read_all("trust-safety", "social.posts", 3).await?;
    ensure!(
        moderation.len() >= 5,
        "traffic stopped after an invalid policy: {}",
        moderation.len()
    );
    // The policy directory removed altogether: the reload is refused (and
    // recorded as refused), the set in force stays, and so does traffic.
    std::fs::remove_file(w.policy_dir.join("broken.cedar"))?;
    let moved = w.dir.path().join("policies-moved-away");
    std::fs::rename(&w.policy_dir, &moved)?;
    let chain = [w.dir.path().join("audit-a")];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let refused = gatehouse_audit::query(&chain, &gatehouse_audit::Query::default())?
            .into_iter()
            .any(|e| {
                matches!(
                    e.kind,
                    gatehouse_audit::EventKind::PolicyReload { accepted: false, ref message, .. }
                        if message.as_deref().is_some_and(|m| m.contains("policies-moved-away") || m.contains(&w.policy_dir.display().to_string()))
                )
            });
        if refused {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no refused reload recorded after the policy directory was removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        policies.version() == version,
        "the set in force changed when its directory went away"
    );
    let moderation = w.read_all("trust-safety", "social.posts", 3).await?;
    ensure!(
        moderation.len() >= 5,
        "traffic stopped when the policy directory went away: {}",
        moderation.len()
    );
    std::fs::rename(&moved, &w.policy_dir)?;
    // A valid change takes effect: trust-safety loses social.* when its
    // policy file is removed.
    let team = std::fs::read_to_string(w.policy_dir.join("team-access.cedar"))?;
    std::fs::write(
        w.policy_dir.join("team-access.cedar"),
        team.replace(
            "principal.team == \"trust_safety\"",
            "principal.team == \"nobody\"",
        ),
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut ts = w.raw_as("trust-safety").await?;
    while fetch_error(&mut ts, "social.posts").await? != 29 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the new policy set never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(w.broker);
    Ok(())
}

/// Decision cost under a consume load: every record of a governed topic is
/// decided by `consume_record`, yet Cedar is asked only once per plan and
/// per distinct (consent set, region); everything else is served from the
/// plan cache and the record memo. Prints the figures the closing notes
/// quote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_load_is_decided_from_plans() -> Result<()> {
    const RECORDS: usize = 20_000;
    const SUBJECTS: usize = 200;
    let w = World::start().await?;
    let ingest = w.producer("ingest")?;
    // Half the subjects consent to analytics, a quarter to marketing only,
    // the rest never said anything.
    for s in 0..SUBJECTS {
        let purposes = match s % 4 {
            0 | 1 => Some(r#"{"purposes":["analytics"]}"#),
            2 => Some(r#"{"purposes":["marketing"]}"#),
            _ => None,
        };
        if let Some(p) = purposes {
            send(
                &ingest,
                "consent.events",
                &format!("u-{s:06}"),
                Some(p),
                None,
            )
            .await?;
        }
    }
    let mut pending = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("u-{:06}", i % SUBJECTS);
        let value = post(&format!("p-{i}"), &key);
        let sent = ingest
            .send_result(FutureRecord::to("social.posts").key(&key).payload(&value))
            .map_err(|(e, _)| e)?;
        pending.push(sent);
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    ensure!(
        w.proxy.consent_caught_up(LIMIT).await,
        "consent follower did not catch up"
    );
    let policies = w.proxy.policies().context("policies")?;
    let before = policies.counters();
    let seen = w.read_all("analytics", "social.posts", 3).await?;
    let c = policies.counters().since(&before);
    // Exactly the consenting half arrives.
    ensure!(
        seen.len() == RECORDS / 2,
        "analytics saw {} records",
        seen.len()
    );
    ensure!(c.records_decided >= RECORDS as u64, "{c:?}");
    // Cedar: at most one evaluation per plan computed plus one per distinct
    // (consent set, region) seen, never one per record.
    ensure!(
        c.evaluations <= 40,
        "{} Cedar evaluations for {} records",
        c.evaluations,
        c.records_decided
    );
    println!(
        "consume load: {} records decided with {} Cedar evaluations ({:.4} of record decisions from the memo); plan cache {} hits / {} misses = {:.3} hit rate",
        c.records_decided,
        c.evaluations,
        1.0 - c.evaluations as f64 / c.records_decided.max(1) as f64,
        c.plan_hits,
        c.plan_misses,
        c.plan_hit_rate()
    );
    // One plan for (analytics, social.posts), computed once, then served
    // from the cache for every fetch response.
    ensure!(c.plan_misses <= 1 && c.plan_hits >= 1, "{c:?}");
    drop(w.broker);
    Ok(())
}

/// Admin requests are decided per resource like data requests: in one
/// CreateTopics, the topic the policies allow is created and the other gets
/// TOPIC_AUTHORIZATION_FAILED; the same for configs and deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_are_decided_per_topic() -> Result<()> {
    use rdkafka::admin::{
        AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication,
    };
    use rdkafka::client::DefaultClientContext;
    let w = World::start().await?;
    let policies = w.proxy.policies().context("policies")?;
    let version = policies.version();
    // Written aside, then renamed into place: the reloader never sees a
    // half-written file (whose own, smaller set would already change the
    // version this test waits for).
    std::fs::write(
        w.dir.path().join("scratch.cedar.part"),
        r#"@id("platform-scratch-admin")
permit (
  principal,
  action in [Gatehouse::Action::"create_topic", Gatehouse::Action::"delete_topic",
             Gatehouse::Action::"describe_configs", Gatehouse::Action::"describe"],
  resource is Gatehouse::Topic
)
when { principal.team == "platform" && resource.name like "scratch.*" };
"#,
    )?;
    std::fs::rename(
        w.dir.path().join("scratch.cedar.part"),
        w.policy_dir.join("scratch.cedar"),
    )?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while policies.version() == version {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "policy not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let creds = World::creds("ingest");
    let creds: Vec<(&str, &str)> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let admin: AdminClient<DefaultClientContext> =
        crate::support::config(&w.proxy.local_addr().to_string(), &creds).create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = admin
        .create_topics(
            &[
                NewTopic::new("scratch.ok", 1, TopicReplication::Fixed(1)),
                NewTopic::new("social.sneaky", 1, TopicReplication::Fixed(1)),
            ],
            &opts,
        )
        .await?;
    let outcome = |r: &Result<String, (String, rdkafka::types::RDKafkaErrorCode)>| match r {
        Ok(t) => (t.clone(), None),
        Err((t, e)) => (t.clone(), Some(*e)),
    };
    let created: BTreeMap<_, _> = created.iter().map(outcome).collect();
    ensure!(created.get("scratch.ok") == Some(&None), "{created:?}");
    ensure!(
        created.get("social.sneaky")
            == Some(&Some(
                rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
            )),
        "{created:?}"
    );
    let configs = admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic("scratch.ok"),
                ResourceSpecifier::Topic("social.posts"),
            ],
            &opts,
        )
        .await?;
    ensure!(configs.len() == 2, "{} config results", configs.len());
    // The allowed topic's configs arrive; the refused one carries the
    // authorization error, which the rdkafka crate reports as an empty
    // result rather than an error (it drops per-resource error codes).
    let entries = |i: usize| configs[i].as_ref().map(|c| c.entries.len()).unwrap_or(0);
    ensure!(entries(0) > 0, "scratch.ok has no configs");
    ensure!(entries(1) == 0, "social.posts configs were described");
    let deleted = admin
        .delete_topics(&["scratch.ok", "social.posts"], &opts)
        .await?;
    let deleted: BTreeMap<_, _> = deleted.iter().map(outcome).collect();
    ensure!(deleted.get("scratch.ok") == Some(&None), "{deleted:?}");
    ensure!(
        deleted.get("social.posts")
            == Some(&Some(
                rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
            )),
        "{deleted:?}"
    );
    // The refused topic is still there.
    let direct = w.broker.broker_addr().to_string();
    let metadata = crate::support::config(&direct, &[])
        .create::<rdkafka::consumer::BaseConsumer>()?
        .fetch_metadata(None, Duration::from_secs(10))?;
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    ensure!(
        names.contains(&"social.posts") && !names.contains(&"social.sneaky"),
        "{names:?}"
    );
    // Administration is on the record: the creation allowed, with the
    // policy that allowed it, and the refusal.
    let decisions = gatehouse_audit::query(
        &[w.dir.path().join("audit-a")],
        &gatehouse_audit::Query {
            principal: Some("ingest".into()),
            ..Default::default()
        },
    )?;
    let recorded = |res: &str, allowed: bool| {
        decisions.iter().any(|e| {
            matches!(&e.kind, gatehouse_audit::EventKind::Decision { api, resource, decision, policies, .. }
                if api == "CreateTopics" && resource == res
                    && (*decision == gatehouse_audit::Decision::Allow) == allowed
                    && (!allowed || policies.iter().any(|p| p == "platform-scratch-admin")))
        })
    };
    ensure!(
        recorded("scratch.ok", true) && recorded("social.sneaky", false),
        "{decisions:?}"
    );
    drop(w.broker);
    Ok(())
}

/// A consent record the store cannot read withdraws every purpose of its
/// subject (a withdrawal that one reader cannot parse must not leave the
/// grant standing); the proxy refuses to write one in the first place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_consent_withdraws_and_is_refused_on_produce() -> Result<()> {
    let w = World::start().await?;
    let ingest = w.producer("ingest")?;
    let grant = r#"{"purposes":["analytics"]}"#;
    send(&ingest, "consent.events", "u-000042", Some(grant), None).await?;
    send(
        &ingest,
        "social.posts",
        "u-000042",
        Some(&post("p-1", "u-000042")),
        None,
    )
    .await?;
    ensure!(w.proxy.consent_caught_up(LIMIT).await, "consent lagging");
    let sees_it = || async {
        let seen = w.read_all("analytics", "social.posts", 3).await?;
        Ok::<_, anyhow::Error>(seen.iter().any(|(k, _)| k == "u-000042"))
    };
    ensure!(
        sees_it().await?,
        "analytics does not see the consenting subject"
    );

    // A withdrawal to JavaScript and Python (the last member wins), and a
    // value that is not a list: refused through the proxy, and audited.
    let unreadable = [
        r#"{"purposes":["analytics"],"purposes":[]}"#,
        r#"{"purposes":"none"}"#,
    ];
    for value in unreadable {
        let refused = send(&ingest, "consent.events", "u-000042", Some(value), None).await;
        ensure!(
            refused
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains("InvalidRecord")),
            "{value}: {refused:?}"
        );
    }
    crate::fields::audited(&w, "the consent record refused", |k| match k {
        gatehouse_audit::EventKind::Decision {
            principal,
            resource,
            reason: Some(reason),
            ..
        } if principal == "ingest"
            && resource == "consent.events"
            && reason.contains("not a consent record") =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    ensure!(sees_it().await?, "a refused record changed the consent");

    // Written straight to the cluster, each one withdraws the grant.
    for value in unreadable {
        send(&ingest, "consent.events", "u-000042", Some(grant), None).await?;
        ensure!(w.proxy.consent_caught_up(LIMIT).await, "consent lagging");
        ensure!(sees_it().await?, "the grant did not take effect");
        crate::fields::write_direct(&w, "consent.events", "u-000042", value).await?;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while sees_it().await? {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "analytics still sees u-000042 after {value}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(w.broker);
    Ok(())
}

/// A record refused for its region header is on the audit record with the
/// reason; a region header that is not UTF-8 is no region any policy
/// allows (it used to count as the topic's residency).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_refusals_are_audited_and_garbled_regions_refused() -> Result<()> {
    let w = World::start().await?;
    let ingest = w.producer("ingest")?;
    let refused = send(
        &ingest,
        "social.posts",
        "u-000042",
        Some(&post("p-us", "u-000042")),
        Some("us"),
    )
    .await;
    ensure!(refused.is_err(), "a us record was accepted on an eu topic");
    let garbled = ingest
        .send(
            FutureRecord::to("social.posts")
                .key("u-000042")
                .payload(&post("p-x", "u-000042"))
                .headers(OwnedHeaders::new().insert(Header {
                    key: "region",
                    value: Some(&[0xff_u8, 0xfe][..]),
                })),
            Duration::from_secs(10),
        )
        .await;
    ensure!(
        garbled.is_err(),
        "a record with a garbled region was accepted"
    );
    for needle in [r#"region "us""#, "not UTF-8"] {
        crate::fields::audited(&w, needle, |k| match k {
            gatehouse_audit::EventKind::Decision {
                principal,
                api,
                resource,
                decision: gatehouse_audit::Decision::Deny,
                reason: Some(reason),
                ..
            } if principal == "ingest"
                && api == "Produce"
                && resource == "social.posts"
                && reason.contains(needle) =>
            {
                Some(())
            }
            _ => None,
        })
        .await?;
    }
    drop(w.broker);
    Ok(())
}

/// Refused group requests are answered per resource, in a shape the
/// client's version reads, and the connection stays open:
/// - analytics committing offsets to a group it may not use gets
///   `GROUP_AUTHORIZATION_FAILED` for its partitions, twice on one
///   connection;
/// - marketing-us asking for the committed offsets of a trust-safety group
///   (OffsetFetch v8, errors per group) gets `GROUP_AUTHORIZATION_FAILED`,
///   not a reply it cannot parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_refusals_are_answered_per_resource() -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::types::RDKafkaErrorCode;
    use rdkafka::{Offset, TopicPartitionList};
    let w = World::start().await?;
    let bootstrap = w.proxy.local_addr().to_string();
    let client = |who: &str, group: &str| -> Result<BaseConsumer> {
        let creds = World::creds(who);
        let mut c = crate::support::config(
            &bootstrap,
            &creds
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        c.set("group.id", group).set("enable.auto.commit", "false");
        Ok(c.create()?)
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("social.posts", 0, Offset::Offset(1))?;

    let analytics = client("analytics", "not-analytics-reports")?;
    analytics.assign(&tpl)?;
    for attempt in 0..2 {
        let refused = tokio::task::block_in_place(|| analytics.commit(&tpl, CommitMode::Sync));
        let code = refused.as_ref().err().and_then(|e| e.rdkafka_error_code());
        ensure!(
            code == Some(RDKafkaErrorCode::GroupAuthorizationFailed),
            "commit {attempt}: {refused:?}"
        );
    }
    // Its own group commits on the same terms.
    let own = client("analytics", "analytics-reports")?;
    own.assign(&tpl)?;
    tokio::task::block_in_place(|| own.commit(&tpl, CommitMode::Sync))?;

    let marketing = client("marketing-us", "trust-safety-moderation")?;
    let asked = tokio::task::block_in_place(|| {
        marketing.committed_offsets(tpl.clone(), Duration::from_secs(10))
    });
    let code = asked.as_ref().err().and_then(|e| e.rdkafka_error_code());
    ensure!(
        code == Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "OffsetFetch: {asked:?}"
    );
    Ok(())
}
