//! The auditors' HTTP listener end to end: the demo world's clients produce
//! and consume through the proxy, then the audit API is asked over real
//! HTTP (Basic and Bearer), and the auditor page runs in headless Chromium.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use gatehouse_audit::{EventKind, Query};
use gatehouse_proxy::auth::oauth::OAuthConfig;
use gatehouse_proxy::config::AdminSection;
use gatehouse_proxy::ProxyConfig;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::policy::{read_records, World};

const LIMIT: Duration = Duration::from_secs(30);
const ISSUER: &str = "https://idp.test.invalid";
const AUDIENCE: &str = "gatehouse";

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// `GET path` over a fresh HTTP/1.1 connection.
pub(crate) async fn get(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> Result<Answer> {
    request(addr, "GET", path, authorization, None).await
}

/// `method path` (with a JSON `body`) over a fresh HTTP/1.1 connection.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> Result<Answer> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or_default());
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut raw))
        .await
        .context("HTTP answer timed out")??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

pub(crate) fn basic(user: &str) -> String {
    let pair = format!("{user}:{user}-pw");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// The principals of the `delivery` (or `produce`) events of an answer.
fn principals_of(body: &Value, kind: &str) -> BTreeSet<String> {
    body["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["kind"]["type"] == kind)
                .filter_map(|e| e["kind"]["principal"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A world whose proxy has the admin listener on a free port, and accepts
/// OAUTHBEARER tokens signed with `secret` (HS256) besides PLAIN.
async fn world_with_admin(secret: Option<&Path>) -> Result<World> {
    let oauth = match secret {
        Some(path) => {
            let text = format!(
                "issuer = \"{ISSUER}\"\naudience = [\"{AUDIENCE}\"]\n[attribute_claims]\nteam = \"team\"\nregion = \"region\"\npurposes = \"purposes\"\n[[keys]]\nalgorithm = \"HS256\"\nsecret_file = \"{}\"\n",
                path.display()
            );
            Some(toml::from_str::<OAuthConfig>(&text)?)
        }
        None => None,
    };
    World::start_with(move |c: &mut ProxyConfig| {
        c.admin = Some(AdminSection {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            replica_dirs: Vec::new(),
        });
        if let (Some(auth), Some(o)) = (c.auth.as_mut(), oauth) {
            auth.mechanisms.push("OAUTHBEARER".into());
            auth.oauthbearer = Some(o);
        }
    })
    .await
}

/// ingest produces consent and three posts; trust-safety and analytics
/// read them (analytics only u-000042's, who consented); marketing-us is
/// refused by residency.
async fn traffic(w: &World) -> Result<()> {
    crate::policy::consent_and_three_posts(w).await?;
    let addr = w.proxy.local_addr();
    let ts = read_records(addr, "trust-safety", "social.posts", 3).await?;
    ensure!(ts.len() == 3, "trust-safety read {ts:?}");
    let an = read_records(addr, "analytics", "social.posts", 3).await?;
    ensure!(
        an.len() == 2 && an.iter().all(|r| r.key == "u-000042"),
        "analytics read {an:?}"
    );
    let mut mkt = w.raw_as("marketing-us").await?;
    let _ = crate::policy::fetch_error(&mut mkt, "social.posts").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_api_answers_auditors_only() -> Result<()> {
    let keys = tempfile::tempdir()?;
    let secret = keys.path().join("hmac.secret");
    let secret_bytes = b"an HS256 secret for the admin listener test, 48B";
    std::fs::write(&secret, secret_bytes)?;
    let w = world_with_admin(Some(&secret)).await?;
    let admin = w.proxy.admin_addr().context("no admin listener")?;
    traffic(&w).await?;

    // No credentials, wrong password, unknown scheme: 401 with the challenge.
    for auth in [
        None,
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("auditor:wrong")
        )),
        Some("Bearer not.a.jwt".to_string()),
    ] {
        let a = get(admin, "/api/events", auth.as_deref()).await?;
        ensure!(a.status == 401, "{auth:?}: {a:?}");
        ensure!(
            a.header("www-authenticate") == Some("Basic realm=\"gatehouse-audit\""),
            "{a:?}"
        );
    }
    // trust-safety authenticates, but Cedar refuses read_audit.
    let a = get(admin, "/api/subject/u-000042", Some(&basic("trust-safety"))).await?;
    ensure!(a.status == 403, "{a:?}");
    ensure!(a.json()?["error"].is_string(), "{a:?}");

    // The auditor: who received u-000042's records, exactly.
    let a = get(admin, "/api/subject/u-000042", Some(&basic("auditor"))).await?;
    ensure!(a.status == 200, "{a:?}");
    ensure!(
        a.header("content-type") == Some("application/json; charset=utf-8"),
        "{a:?}"
    );
    let body = a.json()?;
    ensure!(body["viewer"] == "auditor", "{body}");
    let delivered = principals_of(&body, "delivery");
    ensure!(
        delivered == BTreeSet::from(["analytics".to_string(), "trust-safety".to_string()]),
        "u-000042 delivered to {delivered:?}"
    );
    ensure!(
        principals_of(&body, "produce") == BTreeSet::from(["ingest".to_string()]),
        "{body}"
    );
    ensure!(
        !a.body.contains("u-000042"),
        "clear subject id in {}",
        a.body
    );
    let times: Vec<u64> = body["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["time_ms"].as_u64())
        .collect();
    ensure!(times.windows(2).all(|w| w[0] >= w[1]), "not newest first");
    let a = get(admin, "/api/subject/u-000007", Some(&basic("auditor"))).await?;
    let delivered = principals_of(&a.json()?, "delivery");
    ensure!(
        delivered == BTreeSet::from(["trust-safety".to_string()]),
        "u-000007 delivered to {delivered:?}"
    );

    // The same question through /api/events, with filters and a limit.
    let a = get(
        admin,
        "/api/events?subject=u-000042&principal=analytics&decision=allow&from=2000-01-01T00:00:00Z&limit=1",
        Some(&basic("auditor")),
    )
    .await?;
    let body = a.json()?;
    ensure!(a.status == 200 && body["count"] == 1, "{body}");
    ensure!(
        body["events"][0]["kind"]["principal"] == "analytics",
        "{body}"
    );
    // marketing-us's refusal, with the policy that decided.
    let a = get(
        admin,
        "/api/events?principal=marketing-us&decision=deny&topic=social.posts",
        Some(&basic("auditor")),
    )
    .await?;
    ensure!(
        a.json()?["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"]["policies"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "residency-topic")))),
        "{}",
        a.body
    );
    // Bad parameters, unknown paths.
    for (path, status) in [
        ("/api/events?from=yesterday", 400),
        ("/api/events?decision=maybe", 400),
        ("/api/events?colour=red", 400),
        ("/api/nothing", 404),
    ] {
        let a = get(admin, path, Some(&basic("auditor"))).await?;
        ensure!(a.status == status, "{path}: {a:?}");
        ensure!(a.json()?["error"].is_string(), "{path}: {a:?}");
    }

    // A bearer token for the auditor (validated like OAUTHBEARER), and one
    // for trust-safety.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = |sub: &str, team: &str| -> Result<String> {
        let claims = serde_json::json!({
            "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "team": team, "region": "eu", "purposes": ["audit"],
        });
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret_bytes),
        )?)
    };
    let a = get(
        admin,
        "/api/verify",
        Some(&format!("Bearer {}", token("auditor", "compliance")?)),
    )
    .await?;
    ensure!(a.status == 200, "{a:?}");
    let report = a.json()?;
    ensure!(report["clean"] == true, "{report}");
    ensure!(report["replicas"][0]["replica"] == "a", "{report}");
    ensure!(
        report["replicas"][0]["events"].as_u64() > Some(5),
        "{report}"
    );
    let a = get(
        admin,
        "/api/verify",
        Some(&format!(
            "Bearer {}",
            token("trust-safety", "trust_safety")?
        )),
    )
    .await?;
    ensure!(a.status == 403, "{a:?}");

    // The page.
    let a = get(admin, "/", Some(&basic("auditor"))).await?;
    ensure!(a.status == 200, "{a:?}");
    ensure!(
        a.header("content-type") == Some("text/html; charset=utf-8"),
        "{a:?}"
    );
    ensure!(
        a.header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'sha256-")),
        "{a:?}"
    );
    ensure!(a.body.contains("Gatehouse audit trail"));

    // Every answered request is on record; the subject appears only hashed.
    let dirs = vec![w.dir.path().join("audit-a")];
    let admin_events: Vec<(String, String, String)> =
        gatehouse_audit::query(&dirs, &Query::default())?
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Decision {
                    principal,
                    api,
                    resource,
                    decision,
                    ..
                } if api == "AdminHttp" => Some((principal, resource, format!("{decision:?}"))),
                _ => None,
            })
            .collect();
    let count = |who: &str, decision: &str| {
        admin_events
            .iter()
            .filter(|(p, _, d)| p == who && d == decision)
            .count()
    };
    ensure!(count("trust-safety", "Deny") == 2, "{admin_events:?}");
    ensure!(count("auditor", "Allow") >= 10, "{admin_events:?}");
    ensure!(
        admin_events
            .iter()
            .any(|(_, r, _)| r == "/api/verify" || r == "/"),
        "{admin_events:?}"
    );
    ensure!(
        admin_events
            .iter()
            .all(|(_, r, _)| !r.contains("u-000042") && !r.contains("u-000007")),
        "clear subject ids recorded: {admin_events:?}"
    );
    let refused = gatehouse_audit::query(
        &dirs,
        &Query {
            principal: Some("auditor".into()),
            ..Query::default()
        },
    )?;
    ensure!(
        refused.iter().any(|e| matches!(&e.kind,
            EventKind::AuthRefused { mechanism, reason, .. }
                if mechanism == "http-basic" && !reason.contains("wrong"))),
        "no refused login recorded"
    );

    // Shutdown stops the listener, and the chain verifies.
    w.proxy.shutdown().await;
    ensure!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "admin listener still accepting after shutdown"
    );
    let report = gatehouse_audit::verify(&dirs)?;
    ensure!(report.is_clean(), "{report:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_needs_audit_and_a_credentials_file() -> Result<()> {
    let mut c = World::proxy_config(
        Path::new("/nonexistent"),
        Path::new("/nonexistent"),
        "127.0.0.1:1",
        "a",
    );
    c.admin = Some(AdminSection {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        replica_dirs: Vec::new(),
    });
    let mut no_audit = c.clone();
    no_audit.audit = None;
    let e = gatehouse_proxy::Proxy::start(no_audit)
        .await
        .err()
        .context("started without [audit]")?;
    ensure!(e.to_string().contains("[admin] needs [audit]"), "{e}");
    let mut no_creds = c;
    if let Some(a) = no_creds.auth.as_mut() {
        a.credentials_file = None;
    }
    let e = gatehouse_proxy::Proxy::start(no_creds)
        .await
        .err()
        .context("started without a credentials file")?;
    ensure!(e.to_string().contains("credentials_file"), "{e}");
    Ok(())
}

/// Runs `tests/clients/auditor-page.mjs` (playwright-core driving
/// `/usr/bin/chromium`); returns whether it succeeded, and its JSON.
async fn auditor_page(args: &[&str]) -> Result<(bool, Value)> {
    let script = gatehouse_tests::repo_root().join("tests/clients/auditor-page.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .context("cannot start node: run scripts/install-test-deps")?;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("auditor page script did not finish within 90 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    if !out.status.success() && json.is_null() {
        bail!(
            "auditor page script failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((out.status.success(), json))
}

/// The auditor page in headless Chromium: Basic sign-in, a subject search,
/// the timeline naming exactly who received the subject's records, and a
/// clean verify report. With `GATEHOUSE_AUDITOR_SCREENSHOT=FILE` the page
/// is also saved there (how `docs/auditor-page.png` is made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditor_page_in_chromium() -> Result<()> {
    ensure!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: run scripts/install-test-deps"
    );
    let w = world_with_admin(None).await?;
    let admin = w.proxy.admin_addr().context("no admin listener")?;
    traffic(&w).await?;
    let shots = tempfile::tempdir()?;
    let screenshot: PathBuf = match std::env::var_os("GATEHOUSE_AUDITOR_SCREENSHOT") {
        Some(p) => PathBuf::from(p),
        None => shots.path().join("auditor-page.png"),
    };
    let url = format!("http://{admin}/");
    let shot = screenshot.to_string_lossy().into_owned();
    let (ok, out) = auditor_page(&[
        "--url",
        &url,
        "--user",
        "auditor",
        "--password",
        "auditor-pw",
        "--subject",
        "u-000042",
        "--expect",
        "analytics,trust-safety",
        "--screenshot",
        &shot,
    ])
    .await?;
    ensure!(ok && out["ok"] == true, "{out}");
    ensure!(out["who"] == "signed in as auditor", "{out}");
    ensure!(out["produced"][0] == "ingest", "{out}");
    let png = std::fs::read(&screenshot)?;
    ensure!(png.starts_with(b"\x89PNG"), "no screenshot");

    // trust-safety's browser gets the page refused.
    let (ok, refused) = auditor_page(&[
        "--url",
        &url,
        "--user",
        "trust-safety",
        "--password",
        "trust-safety-pw",
        "--subject",
        "u-000042",
        "--expect",
        "analytics,trust-safety",
    ])
    .await?;
    ensure!(
        !ok && refused["status"] == 403,
        "trust-safety saw the page: {refused}"
    );
    w.proxy.shutdown().await;
    Ok(())
}
