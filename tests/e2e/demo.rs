//! `gatehouse demo`, as a newcomer runs it from the README: the demo
//! world's principals with their settings files, the shipped policies,
//! kcat, a Python client and rdkafka against the embedded default.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use gatehouse::demo::DemoAddrs;
use gatehouse_tests::clients::{kcat, run_ok, Client};

const LIMIT: Duration = Duration::from_secs(120);

/// kcat as `who`, with the settings file the demo wrote.
async fn kcat_as(
    dir: &std::path::Path,
    b: &str,
    who: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Result<String> {
    let settings = dir
        .join(format!("clients/{who}.properties"))
        .to_string_lossy()
        .into_owned();
    let mut all = vec!["-b", b, "-F", &settings];
    all.extend_from_slice(args);
    kcat(&all, stdin, LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_tour() -> Result<()> {
    gatehouse_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let b = demo.bootstrap().to_string();

    // Without credentials the proxy refuses everything but ApiVersions/SASL.
    ensure!(
        kcat(&["-b", &b, "-L", "-m", "3"], None, LIMIT)
            .await
            .is_err(),
        "the demo served an anonymous client"
    );

    // ingest sees the topics it may write to, at the proxy's address.
    let listing = kcat_as(d, &b, "ingest", &["-L"], None).await?;
    ensure!(
        listing.contains("topic \"social.posts\" with 3 partitions"),
        "{listing}"
    );
    ensure!(
        !listing.contains("enrich.sentiment"),
        "ingest sees a topic it has no right to: {listing}"
    );
    ensure!(
        !listing.contains(&demo.broker_addr().port().to_string()),
        "broker port leaked: {listing}"
    );

    // ingest produces a post; trust-safety (legitimate interest) reads it.
    let post = r#"u-000042:{"id":"p-81724","author":{"id":"u-000042","email":"jane.doe@example.com","handle":"@janedoe"},"text":"The new campaign is great"}"#;
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:", "-z", "gzip"],
        Some(format!("{post}\n").as_bytes()),
    )
    .await?;
    let read = |who: &'static str| {
        let b = b.clone();
        async move {
            kcat_as(
                d,
                &b,
                who,
                &["-t", "social.posts", "-C", "-e", "-q", "-f", "%k %s\n"],
                None,
            )
            .await
        }
    };
    ensure!(read("trust-safety").await?.trim() == post.replacen(':', " ", 1));
    // The broker itself holds the protected fields encrypted.
    let stored = kcat(
        &[
            "-b",
            &demo.broker_addr().to_string(),
            "-t",
            "social.posts",
            "-C",
            "-e",
            "-q",
            "-f",
            "%s\n",
        ],
        None,
        LIMIT,
    )
    .await?;
    ensure!(
        stored.contains("\"email\":\"gh1.") && !stored.contains("jane.doe@example.com"),
        "stored: {stored}"
    );
    // analytics sees nothing until the subject consents to analytics.
    ensure!(
        read("analytics").await?.trim().is_empty(),
        "analytics read a subject without consent"
    );
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "consent.events", "-P", "-K|"],
        Some(b"u-000042|{\"purposes\":[\"analytics\"]}\n"),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let seen = read("analytics").await?;
        if !seen.trim().is_empty() {
            break seen;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "consent never reached the proxy"
        );
    };
    // A post hiding its author's fields in an array is refused.
    let hidden = kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:"],
        Some(b"u-000042:{\"id\":\"p-81726\",\"author\":[{\"id\":\"u-000042\",\"email\":\"jane.doe@example.com\"}]}\n"),
    )
    .await;
    ensure!(
        hidden
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("failed to validate record")),
        "an array-shaped post: {hidden:?}"
    );
    // support: the post without any of its author's personal fields.
    let support = read("support").await?;
    ensure!(
        support.contains("p-81724") && !support.contains("email") && !support.contains("handle"),
        "support sees {support}"
    );
    // analytics: email masked, handle pseudonymized.
    ensure!(
        seen.contains("\"email\":\"j***@example.com\"") && seen.contains("\"handle\":\"ps_"),
        "analytics sees {seen}"
    );

    // analytics with its JWT, from Python.
    let token = d
        .join("clients/analytics.jwt")
        .to_string_lossy()
        .into_owned();
    let meta = run_ok(
        Client::Confluent,
        &["metadata", "--bootstrap", &b, "--oauth-token-file", &token],
        LIMIT,
    )
    .await?;
    ensure!(meta["topics"].get("social.posts").is_some(), "{meta}");

    // Stop and start again on the same data: nothing is lost, and a
    // trust-safety consumer group (rdkafka) reads the post.
    demo.shutdown().await?;
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let after = kcat_as(
        d,
        &b,
        "trust-safety",
        &["-t", "social.posts", "-C", "-e", "-q", "-f", "%k\n"],
        None,
    )
    .await?;
    ensure!(after.trim() == "u-000042", "after restart: {after}");
    demo.shutdown().await?;

    // `gatehouse keys` on the stopped demo: one key, for u-000042; a KEK
    // rotation re-wraps it, and the data reads as before.
    let (key_file, state_dir) = gatehouse::keys::demo_key_paths(d);
    {
        let store = gatehouse::keys::open_key_store(&key_file, &state_dir)?;
        let keys = store.list()?;
        ensure!(keys.len() == 1 && !keys[0].destroyed, "{keys:?}");
        ensure!(store.subject_keys("u-000042")?.len() == 1);
        let listing = gatehouse::keys::render(&keys);
        ensure!(!listing.contains("u-000042"), "subject id in the listing");
        let (kek, n) = store.rotate_kek()?;
        ensure!(n == 1 && kek != keys[0].kek_id, "rotation: {kek}, {n}");
    }
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let after = kcat_as(
        d,
        &b,
        "trust-safety",
        &["-t", "social.posts", "-C", "-e", "-q", "-f", "%s\n"],
        None,
    )
    .await?;
    ensure!(
        after.contains("jane.doe@example.com"),
        "after rotation: {after}"
    );
    demo.shutdown().await?;
    Ok(())
}

/// The README's "Right to erasure": on the demo, the privacy team erases a
/// subject with what `gatehouse erase` runs; kcat consumers see nothing of
/// it from then on, and `gatehouse erase status` shows every step done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_erases_a_subject_on_request() -> Result<()> {
    use gatehouse::admin_client::{AdminClient, AdminError};
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let posts = "u-000042:{\"id\":\"p-1\",\"author\":{\"id\":\"u-000042\",\"email\":\"jane.doe@example.com\"},\"text\":\"hello\"}\n\
                 u-000007:{\"id\":\"p-2\",\"author\":{\"id\":\"u-000007\",\"email\":\"sam@example.com\"},\"text\":\"hi\"}\n";
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:"],
        Some(posts.as_bytes()),
    )
    .await?;
    let authors = || async {
        let out = kcat_as(
            d,
            &b,
            "trust-safety",
            &["-t", "social.posts", "-C", "-e", "-q", "-f", "%k\n"],
            None,
        )
        .await?;
        let mut keys: Vec<String> = out.lines().map(str::to_string).collect();
        keys.sort();
        anyhow::Ok(keys)
    };
    ensure!(authors().await? == ["u-000007", "u-000042"]);

    let admin = demo
        .admin_addr()
        .context("the demo serves the admin listener")?;
    let url = format!("http://{admin}");
    let auditor = AdminClient::with_properties(&url, &d.join("clients/auditor.properties"))?;
    ensure!(
        matches!(
            auditor.erase("u-000042", "not mine to ask").await,
            Err(AdminError::Refused { status: 403, .. })
        ),
        "the auditor started an erasure"
    );
    let privacy = AdminClient::with_properties(&url, &d.join("clients/privacy.properties"))?;
    let w = privacy.erase("u-000042", "customer request 4711").await?;
    ensure!(w["steps"][0]["step"] == "requested", "{w}");
    ensure!(authors().await? == ["u-000007"], "u-000042 still readable");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let all = privacy.status(Some("u-000042")).await?;
        if all.first().is_some_and(|w| w["done"] == true) {
            let text = gatehouse::admin_client::render_workflow(&all[0]);
            ensure!(
                text.contains("keys_destroyed") && !text.contains("u-000042"),
                "{text}"
            );
            // Step 5 read the demo's governed topics back as the
            // password-less verifier: the post is held, not readable.
            ensure!(
                text.contains("verified") && text.contains("read back as erasure-verifier: passed"),
                "{text}"
            );
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "erasure not done: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The signed report verifies against the demo's audit key, and not
    // once changed.
    let report = privacy.report("u-000042").await?;
    let key = std::fs::read_to_string(d.join("audit").join(gatehouse_audit::VERIFYING_KEY_FILE))?;
    gatehouse::admin_client::verify_report(&report, &key)?;
    let text = gatehouse::admin_client::render_report(&report);
    ensure!(
        text.contains("(done)") && text.contains("tombstoned") && text.contains("demo:"),
        "{text}"
    );
    // The README's sample report is this report's shape: its read-back
    // table header and every step, in order.
    let readme = std::fs::read_to_string(gatehouse_tests::repo_root().join("README.md"))?;
    let sample = readme
        .split("Erasure report (done)")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("the README's sample report")?;
    let header = text
        .lines()
        .find(|l| l.trim_start().starts_with("topic "))
        .context("the read-back table")?;
    ensure!(sample.contains(header), "README sample vs {header:?}");
    let steps: Vec<&str> = sample
        .lines()
        .filter(|l| !l.contains("requested by"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| {
            gatehouse_proxy::cluster::erasure::Step::ALL
                .iter()
                .any(|s| s.name() == *w)
        })
        .collect();
    ensure!(
        steps
            == gatehouse_proxy::cluster::erasure::Step::ALL
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>(),
        "README sample steps {steps:?}"
    );
    let changed = report.replacen("customer request 4711", "nobody asked", 1);
    ensure!(changed != report, "the reason is in the report");
    ensure!(
        gatehouse::admin_client::verify_report(&changed, &key).is_err(),
        "a changed report verified"
    );
    // Nobody can log in as the verifier: it has no password.
    let guess = d.join("clients/verifier-guess.properties");
    std::fs::write(
        &guess,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-512\n\
         sasl.username=erasure-verifier\nsasl.password=guess\n",
    )?;
    let settings = guess.to_string_lossy().into_owned();
    let refused = kcat(&["-b", &b, "-F", &settings, "-L", "-m", "3"], None, LIMIT).await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("uthentication")),
        "the verifier: {refused:?}"
    );
    demo.shutdown().await?;
    // With the demo stopped, its state still answers `erase status`.
    let (key_file, state_dir) = gatehouse::keys::demo_key_paths(d);
    let offline = gatehouse::keys::offline_erasures(
        &key_file,
        &state_dir,
        "_gatehouse.erasure",
        Some("u-000042"),
    )?;
    ensure!(
        offline.len() == 1 && offline[0].done(),
        "offline: {offline:?}"
    );
    Ok(())
}

/// `gatehouse demo --brokers 3`: the demo world on three brokers sharing
/// one store. Clients see the three brokers behind the proxy's listeners
/// (never their own addresses), the partitions spread over them, and the
/// governed flow (a protected post written by ingest, read in clear by
/// trust-safety) works across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_on_three_brokers() -> Result<()> {
    gatehouse_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let cluster = gatehouse::demo::DemoCluster {
        brokers: 3,
        ..Default::default()
    };
    let demo = gatehouse::demo::start_cluster(d, DemoAddrs::local(0, 0, 0), &cluster).await?;
    let b = demo.bootstrap().to_string();
    let listing = kcat_as(d, &b, "ingest", &["-L"], None).await?;
    ensure!(listing.contains(" 3 brokers:"), "{listing}");
    for node in 0..3 {
        ensure!(
            listing.contains(&format!("leader {node},")),
            "no partition led by broker {node}: {listing}"
        );
    }
    for addr in demo.broker_addrs() {
        ensure!(
            !listing.contains(&addr.port().to_string()),
            "a broker's own port leaked: {listing}"
        );
    }
    let posts: String = (0..12)
        .map(|i| format!("u-0000{i:02}:{{\"id\":\"p-{i}\",\"author\":{{\"id\":\"u-0000{i:02}\",\"email\":\"u{i}@example.com\"}},\"text\":\"hello\"}}\n"))
        .collect();
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:"],
        Some(posts.as_bytes()),
    )
    .await?;
    let read = kcat_as(
        d,
        &b,
        "trust-safety",
        &["-t", "social.posts", "-C", "-e", "-q", "-f", "%s\n"],
        None,
    )
    .await?;
    ensure!(read.lines().count() == 12, "{read}");
    ensure!(read.contains("u7@example.com"), "{read}");
    demo.shutdown().await?;
    Ok(())
}

/// `/healthz` and `/readyz` on the admin listener, without credentials and
/// without audit events: ready once the upstream answers, the consent, key
/// and erasure topics are read to their end and the state directories take
/// a write; not ready (503, saying which check fails) once the cluster is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_answers_health_and_readiness_probes() -> Result<()> {
    use crate::admin::get;
    gatehouse_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let admin = demo
        .admin_addr()
        .context("the demo serves the admin listener")?;
    let live = get(admin, "/healthz", None).await?;
    ensure!(
        live.status == 200 && live.json()?["live"] == true,
        "{}",
        live.body
    );
    let ready = ready_within(admin, Duration::from_secs(30)).await?;
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .filter_map(|c| c["check"].as_str())
        .collect();
    for want in [
        "upstream",
        "follower:consent",
        "follower:keys",
        "follower:erasure",
        "writable:audit",
        "writable:keys",
        "writable:consent",
    ] {
        ensure!(names.contains(&want), "{want} not checked: {ready}");
    }
    // Probes leave no trace in the audit trail.
    let audited = gatehouse_audit::query(&[d.join("audit")], &gatehouse_audit::Query::default())?;
    ensure!(
        !audited
            .iter()
            .any(|e| format!("{:?}", e.kind).contains("readyz")),
        "a probe was audited"
    );
    // The cluster goes away: not ready, and it says why.
    let gatehouse::demo::Demo { broker, proxy, .. } = demo;
    let broker_addr = broker.local_addr();
    broker.shutdown().await?;
    let r = get(admin, "/readyz", None).await?;
    ensure!(r.status == 503, "{} {}", r.status, r.body);
    let failing: Vec<String> = r.json()?["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .filter(|c| c["ok"] == false)
        .filter_map(|c| c["check"].as_str().map(str::to_string))
        .collect();
    ensure!(failing.contains(&"upstream".to_string()), "{}", r.body);
    // It comes back (same address, same data): ready again.
    let broker = gatehouse_broker::Broker::start(gatehouse_broker::BrokerConfig {
        listen: broker_addr,
        data: d.join("broker").to_string_lossy().into_owned(),
        auto_create_topics: true,
        default_partitions: 3,
        ..Default::default()
    })
    .await?;
    ready_within(admin, Duration::from_secs(30))
        .await
        .context("after the broker returned")?;
    proxy.shutdown().await;
    broker.shutdown().await?;
    Ok(())
}

/// Polls `/readyz` until it is 200 (503 meanwhile); its JSON body.
async fn ready_within(admin: std::net::SocketAddr, limit: Duration) -> Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let r = crate::admin::get(admin, "/readyz", None).await?;
        if r.status == 200 {
            return r.json();
        }
        ensure!(
            std::time::Instant::now() < deadline && r.status == 503,
            "never ready: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the Prometheus sample `name` with every label of
/// `labels` (summed over the other labels); 0 when there is none.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// The password of a demo principal, from its client settings file.
fn password_of(dir: &std::path::Path, who: &str) -> Result<String> {
    let text = std::fs::read_to_string(dir.join(format!("clients/{who}.properties")))?;
    text.lines()
        .find_map(|l| l.strip_prefix("sasl.password="))
        .map(str::to_string)
        .context("no sasl.password")
}

/// A Fetch of social.posts as marketing-us (region us): refused by the
/// `residency-topic` forbid. Returns the partition's error code.
async fn refused_fetch(demo: &gatehouse::demo::Demo, d: &std::path::Path) -> Result<i16> {
    let mut c = gatehouse_tests::RawClient::connect(demo.bootstrap()).await?;
    let password = password_of(d, "marketing-us")?;
    let auth = crate::identity::sasl_once(
        &mut c,
        "PLAIN",
        crate::identity::plain("marketing-us", &password),
    )
    .await?;
    ensure!(auth.error_code == 0, "login: {}", auth.error_code);
    crate::policy::fetch_error(&mut c, "social.posts").await
}

/// `/metrics` after a known workload through the governed demo world:
/// the counters say what was done (requests, field effects per topic,
/// withheld records, refusals, authentications), and nothing personal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_counts_what_it_serves_in_metrics() -> Result<()> {
    use crate::admin::get;
    gatehouse_tests::init_logging();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let demo = gatehouse::demo::start(d, DemoAddrs::local(0, 0, 0)).await?;
    let b = demo.bootstrap().to_string();
    let admin = demo.admin_addr().context("admin listener")?;
    // Three posts of three subjects, each with an email and a handle; the
    // first subject consents to analytics.
    let posts: String = (1..=3)
        .map(|i| {
            format!(
                "u-00000{i}:{{\"id\":\"p-{i}\",\"author\":{{\"id\":\"u-00000{i}\",\"email\":\"a{i}@example.com\",\"handle\":\"@a{i}\"}},\"text\":\"hi\"}}\n"
            )
        })
        .collect();
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:"],
        Some(posts.as_bytes()),
    )
    .await?;
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "consent.events", "-P", "-K|"],
        Some(b"u-000001|{\"purposes\":[\"analytics\"]}\n"),
    )
    .await?;
    ensure!(
        demo.proxy.consent_caught_up(Duration::from_secs(30)).await,
        "consent never read"
    );
    let read = |who: &'static str| {
        kcat_as(
            d,
            &b,
            who,
            &["-t", "social.posts", "-C", "-e", "-q", "-f", "%s\n"],
            None,
        )
    };
    ensure!(read("trust-safety").await?.lines().count() == 3);
    ensure!(read("analytics").await?.lines().count() == 1);
    ensure!(
        refused_fetch(&demo, d).await? == 29,
        "not TOPIC_AUTHORIZATION_FAILED"
    );

    let m = get(admin, "/metrics", None).await?;
    ensure!(m.status == 200, "{}", m.status);
    let t = m.body.as_str();
    let posts_field = |effect: &str| {
        sample(
            t,
            "gatehouse_proxy_fields_total",
            &[("topic", "social.posts"), ("effect", effect)],
        )
    };
    // trust-safety: both fields of 3 posts in clear; analytics: the one
    // consenting subject's email masked and handle pseudonymized.
    ensure!(posts_field("clear") == 6.0, "clear: {t}");
    ensure!(posts_field("masked") == 1.0, "masked: {t}");
    ensure!(posts_field("pseudonym") == 1.0, "pseudonym: {t}");
    ensure!(
        sample(
            t,
            "gatehouse_proxy_records_withheld_total",
            &[("topic", "social.posts")]
        ) == 2.0,
        "withheld: {t}"
    );
    ensure!(
        sample(t, "gatehouse_proxy_refusals_total", &[("api", "Fetch")]) == 1.0,
        "refusals: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_policy_decisions_total",
            &[("action", "consume"), ("effect", "deny")]
        ) >= 1.0,
        "decisions: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_requests_total",
            &[("api", "Produce"), ("outcome", "forwarded")]
        ) >= 2.0,
        "produce requests: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_requests_total",
            &[("api", "Fetch"), ("outcome", "answered")]
        ) == 1.0,
        "the refused fetch: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_authentications_total",
            &[("mechanism", "PLAIN"), ("outcome", "ok")]
        ) == 1.0,
        "PLAIN logins: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_authentications_total",
            &[("mechanism", "SCRAM-SHA-512"), ("outcome", "ok")]
        ) >= 4.0,
        "SCRAM logins: {t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_client_bytes_total",
            &[("direction", "in")]
        ) > 0.0,
        "{t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_audit_append_duration_seconds_count",
            &[]
        ) > 0.0,
        "{t}"
    );
    ensure!(
        sample(
            t,
            "gatehouse_proxy_follower_caught_up",
            &[("follower", "consent")]
        ) == 1.0,
        "{t}"
    );
    for name in [
        "gatehouse_proxy_request_duration_seconds_bucket",
        "gatehouse_proxy_upstream_duration_seconds_bucket",
        "gatehouse_proxy_filter_duration_seconds_bucket",
        "gatehouse_proxy_connections",
        "gatehouse_proxy_policy_plans_total",
        "gatehouse_proxy_audit_batch_size_bucket",
        "gatehouse_proxy_audit_backlog",
        "gatehouse_proxy_follower_lag",
    ] {
        ensure!(t.contains(name), "{name} missing: {t}");
    }
    // Every metric the shipped Grafana dashboard queries is served: the
    // proxy's by the admin listener, the broker's by the broker's own.
    let broker_admin = demo
        .broker_admin_addr()
        .context("the demo broker serves /metrics")?;
    let bm = get(broker_admin, "/metrics", None).await?;
    ensure!(bm.status == 200, "broker /metrics: {}", bm.status);
    let root = gatehouse_tests::repo_root();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/gatehouse.json"))?;
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard)?;
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().context("targets")? {
            let expr = target["expr"].as_str().context("expr")?;
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("gatehouse_"))
            {
                queried += 1;
                let served = if name.starts_with("gatehouse_broker_") {
                    bm.body.as_str()
                } else {
                    t
                };
                ensure!(
                    served.lines().any(|l| l.starts_with(&format!("{name}{{"))
                        || l.starts_with(&format!("{name} "))),
                    "the dashboard's panel {:?} queries {name}, which /metrics does not serve",
                    panel["title"]
                );
            }
        }
    }
    ensure!(
        queried >= 20,
        "only {queried} metric references in the dashboard"
    );
    let scrape = std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))?;
    ensure!(
        scrape.contains("metrics_path: /metrics")
            && scrape.contains("job_name: gatehouse-proxy")
            && scrape.contains("job_name: gatehouse-broker")
            && scrape.contains("127.0.0.1:9180"),
        "the scrape configuration does not name the proxy and broker jobs: {scrape}"
    );
    // Nothing personal: no subject id, no email, no principal.
    for personal in ["u-000001", "example.com", "marketing-us", "trust-safety"] {
        ensure!(!t.contains(personal), "{personal} in /metrics");
    }
    demo.shutdown().await?;
    Ok(())
}

/// Traces and metrics pushed over OTLP/HTTP to a real receiver (the
/// collector protocol, decoded with its own message types): a refused
/// Fetch is a span with its decision and the policy that refused it, with
/// the filters as child spans; a produced record's `traceparent` makes
/// its Produce a child of the producer's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_exports_traces_and_metrics_over_otlp() -> Result<()> {
    let receiver = gatehouse_tests::otlp::OtlpReceiver::start().await?;
    let telemetry = gatehouse_telemetry::TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        trace_sample_ratio: 1.0,
        metrics_interval_secs: 1,
        listen: None,
    };
    // What `gatehouse serve` and `gatehouse demo --otlp-endpoint` install.
    let traces = gatehouse_telemetry::Tracing::new("gatehouse-proxy", &telemetry)?
        .context("an endpoint gives an exporter")?;
    gatehouse_telemetry::init_logging(false, Some(&traces));
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let cluster = gatehouse::demo::DemoCluster {
        telemetry: Some(telemetry),
        ..Default::default()
    };
    let demo = gatehouse::demo::start_cluster(d, DemoAddrs::local(0, 0, 0), &cluster).await?;
    let b = demo.bootstrap().to_string();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traceparent = format!("traceparent=00-{trace_id}-{parent_id}-01");
    kcat_as(
        d,
        &b,
        "ingest",
        &["-t", "social.posts", "-P", "-K:", "-H", &traceparent],
        Some(b"u-000042:{\"id\":\"p-1\",\"author\":{\"id\":\"u-000042\"},\"text\":\"hi\"}\n"),
    )
    .await?;
    ensure!(refused_fetch(&demo, d).await? == 29);
    let flush = tokio::task::spawn_blocking(move || {
        traces.flush();
        traces
    });
    let traces = flush.await?;
    let wait = Duration::from_secs(30);
    let fetch = receiver
        .wait_for(wait, "refused Fetch span", |r| {
            r.spans().into_iter().find(|s| {
                s.name == "Fetch"
                    && s.attr("decision") == Some("deny")
                    && s.attr("principal") == Some("marketing-us")
            })
        })
        .await?;
    ensure!(
        fetch.attr("policy_ids") == Some("residency-topic"),
        "{fetch:?}"
    );
    ensure!(fetch.attr("topics") == Some("social.posts"), "{fetch:?}");
    ensure!(fetch.attr("kafka.api_version") == Some("12"), "{fetch:?}");
    ensure!(fetch.service == "gatehouse-proxy", "{fetch:?}");
    receiver
        .wait_for(wait, "the authz filter's span under the Fetch", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.name == "authz" && s.parent_span_id == fetch.span_id)
        })
        .await?;
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect()
    };
    let produce = receiver
        .wait_for(wait, "a Produce span in the producer's trace", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.name == "Produce" && s.trace_id == hex(trace_id))
        })
        .await?;
    ensure!(produce.parent_span_id == hex(parent_id), "{produce:?}");
    receiver
        .wait_for(wait, "the upstream round trip under the Produce", |r| {
            r.spans()
                .into_iter()
                .find(|s| s.name == "upstream" && s.parent_span_id == produce.span_id)
        })
        .await?;
    for name in ["gatehouse.proxy.requests", "gatehouse.broker.requests"] {
        receiver
            .wait_for(wait, name, |r| {
                r.metric_names().into_iter().find(|n| n == name)
            })
            .await?;
    }
    demo.shutdown().await?;
    tokio::task::spawn_blocking(move || traces.shutdown()).await?;
    Ok(())
}
