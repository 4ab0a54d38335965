//! Security checks that need the whole system running: no personal value
//! and no key reaches the logs of the proxy or the broker, at any level;
//! the proxy's TLS listener speaks TLS 1.2 and 1.3 only, with strong
//! suites.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Result};

use crate::policy::{read_records, send, World};

/// Every log line, kept in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// The personal values of the records this test sends.
const NAME: &str = "Jane Doe";
const EMAIL: &str = "jane.doe@example.com";
const HANDLE: &str = "@janedoe1984";
const IP: &str = "203.0.113.42";
const PHONE: &str = "+33 6 12 34 56 78";

/// With every Gatehouse crate logging at `trace`: governed produce and
/// consume (fields encrypted, decrypted, masked, removed), consent
/// records, and refused records that carry personal values (not JSON, no
/// subject, an oversized field) leave none of those values in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_personal_value_is_logged_at_trace() -> Result<()> {
    let capture = Capture::default();
    let filter = "warn,gatehouse_proxy=trace,gatehouse_broker=trace,gatehouse_audit=trace,\
                  gatehouse_keys=trace,gatehouse_policy=trace,gatehouse_sasl=trace";
    if tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(capture.clone())
        .with_ansi(false)
        .try_init()
        .is_err()
    {
        bail!("this test needs a process of its own (cargo nextest runs one per test)");
    }
    let w = World::start().await?;
    let ingest = w.producer("ingest")?;
    let post = serde_json::json!({
        "id": "p-1", "ts": "2026-11-26T08:00:00Z",
        "author": {"id": "u-000042", "email": EMAIL, "name": NAME, "handle": HANDLE, "ip": IP},
        "text": "hello", "campaign": "cmp-2026-11"
    })
    .to_string();
    send(
        &ingest,
        "consent.events",
        "u-000042",
        Some(r#"{"purposes":["analytics"]}"#),
        None,
    )
    .await?;
    send(&ingest, "social.posts", "u-000042", Some(&post), None).await?;
    // Refused records holding personal values (not JSON; no subject).
    let refused = [
        format!("{{not json {EMAIL} {NAME} {PHONE}"),
        serde_json::json!({"id": "p-2", "author": {"email": EMAIL, "name": NAME}}).to_string(),
    ];
    for value in &refused {
        ensure!(
            send(&ingest, "social.posts", "u-000042", Some(value), None)
                .await
                .is_err(),
            "accepted: {value}"
        );
    }
    // A protected field holding an array: taken, encrypted whole.
    let array = serde_json::json!({
        "id": "p-3", "author": {"id": "u-000042", "email": [EMAIL, PHONE]}
    })
    .to_string();
    send(&ingest, "social.posts", "u-000042", Some(&array), None).await?;
    // What the cluster holds has no personal value in clear.
    let stored = crate::policy::read_from(
        &w.broker.broker_addr().to_string(),
        "raw-check",
        &[],
        "social.posts",
        3,
    )
    .await?;
    ensure!(stored.len() == 2, "{stored:?}");
    for r in &stored {
        for value in [NAME, EMAIL, HANDLE, IP, PHONE] {
            ensure!(!r.value.contains(value), "stored in clear: {}", r.value);
        }
    }
    for who in ["trust-safety", "analytics", "support"] {
        let seen = read_records(w.proxy.local_addr(), who, "social.posts", 3).await?;
        ensure!(!seen.is_empty(), "{who} read nothing");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = capture.text();
    // Captured: both sides logged, refusals included (the lines most
    // tempted to quote a record).
    ensure!(
        logs.contains("gatehouse_broker") && logs.matches("produce refused").count() >= 2,
        "the logs were not captured ({} bytes)",
        logs.len()
    );
    for value in [NAME, EMAIL, HANDLE, IP, PHONE] {
        if let Some(at) = logs.find(value) {
            let line = logs[..at].rfind('\n').map_or(0, |n| n + 1);
            let end = logs[at..].find('\n').map_or(logs.len(), |n| at + n);
            bail!("{value:?} is in the logs: {}", &logs[line..end]);
        }
    }
    // Nor any key: the key-encryption keys and the MAC secret of the key
    // file, in base64 or in hex.
    let kek: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.dir.path().join("kek.toml"))?)?;
    let mut secrets: Vec<String> = kek["keks"]
        .as_array()
        .map(|ks| {
            ks.iter()
                .filter_map(|k| k["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    secrets.extend(kek["mac_secret"].as_str().map(str::to_string));
    ensure!(secrets.len() >= 2, "no key found in the key file: {kek}");
    for b64 in secrets {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(&b64)?;
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        ensure!(
            !logs.contains(&b64) && !logs.contains(&hex),
            "key material is in the logs"
        );
    }
    println!(
        "{} bytes of trace logs, no personal value, no key",
        logs.len()
    );
    Ok(())
}
