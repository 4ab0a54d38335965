//! A client of the proxy's admin API (plain HTTP/1.1 with Basic
//! authentication, like the listener): what `gatehouse erase` runs, and
//! what the tests drive.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why a call to the admin API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The settings are unusable (URL, credentials).
    #[error("{0}")]
    Settings(String),
    /// The listener could not be reached or answered nothing usable.
    #[error("{0}")]
    Transport(String),
    /// The proxy answered with an error status.
    #[error("the proxy answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The proxy's `error` text.
        message: String,
    },
}

/// Where the admin API is and who asks.
#[derive(Debug, Clone)]
pub struct AdminClient {
    authority: String,
    base: String,
    authorization: String,
}

impl AdminClient {
    /// A client of `url` (`http://host:port[/prefix]`) as `user`.
    pub fn new(url: &str, user: &str, password: &str) -> Result<Self, AdminError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            AdminError::Settings(
                "the admin URL must start with http:// (put TLS in front of the listener, and this command behind it)".into(),
            )
        })?;
        let (authority, base) = match rest.split_once('/') {
            Some((a, b)) => (a, format!("/{}", b.trim_end_matches('/'))),
            None => (rest, String::new()),
        };
        if authority.is_empty() {
            return Err(AdminError::Settings(format!("no host in {url}")));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(Self {
            authority: authority.trim_end_matches('/').to_string(),
            base: base.trim_end_matches('/').to_string(),
            authorization: format!("Basic {token}"),
        })
    }

    /// A client of the listener at `addr`.
    pub fn at(addr: SocketAddr, user: &str, password: &str) -> Result<Self, AdminError> {
        Self::new(&format!("http://{addr}"), user, password)
    }

    /// A client of `url` as the user of a client properties file
    /// (`sasl.username`, `sasl.password`), as the demo writes for each
    /// principal.
    pub fn with_properties(url: &str, path: &Path) -> Result<Self, AdminError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AdminError::Settings(format!("cannot read {}: {e}", path.display())))?;
        let get = |k: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .map(|(_, v)| v.trim().to_string())
                .ok_or_else(|| AdminError::Settings(format!("no {k} in {}", path.display())))
        };
        Self::new(url, &get("sasl.username")?, &get("sasl.password")?)
    }

    /// Starts erasing `subject`; the workflow as it stands.
    pub async fn erase(&self, subject: &str, reason: &str) -> Result<Value, AdminError> {
        let body = serde_json::json!({"subject": subject, "reason": reason});
        let answer = self.call("POST", "/api/erase", Some(body)).await?;
        Ok(answer.get("workflow").cloned().unwrap_or(Value::Null))
    }

    /// The workflow of `subject`, or every workflow.
    pub async fn status(&self, subject: Option<&str>) -> Result<Vec<Value>, AdminError> {
        match subject {
            Some(id) => {
                let answer = self
                    .call(
                        "GET",
                        &format!("/api/erasures/{}", percent_encode(id)),
                        None,
                    )
                    .await?;
                Ok(answer.get("workflow").cloned().into_iter().collect())
            }
            None => {
                let answer = self.call("GET", "/api/erasures", None).await?;
                Ok(answer
                    .get("workflows")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default())
            }
        }
    }

    /// The signed report of `subject`'s erasure, as the proxy sent it: the
    /// JSON text `{"report":{...},"signature":"..."}` (keep it byte for
    /// byte: the signature covers the report's text as it stands).
    pub async fn report(&self, subject: &str) -> Result<String, AdminError> {
        let path = format!("/api/erasures/{}/report", percent_encode(subject));
        let bytes = self.call_raw("GET", &path, None).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| AdminError::Transport("the report is not UTF-8".into()))
    }

    /// Reads the governed topics back again now, as the workflow's
    /// verification step did: the verification as found.
    pub async fn verify(&self, subject: &str) -> Result<Value, AdminError> {
        let path = format!("/api/erasures/{}/verify", percent_encode(subject));
        let answer = self.call("POST", &path, None).await?;
        Ok(answer.get("verification").cloned().unwrap_or(Value::Null))
    }

    /// One request; a busy listener's `503` is retried (up to five times,
    /// after the `Retry-After` it asks for).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let mut attempt = 0;
        loop {
            match self.call_once(method, path, body.clone()).await {
                Err(AdminError::Refused {
                    status: 503,
                    ref message,
                }) if attempt < 5 && message.contains("busy") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let bytes = self.call_raw(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AdminError::Transport(format!("the admin API's answer is not JSON: {e}")))
    }

    /// One request; the body of a successful answer.
    async fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Bytes, AdminError> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| {
                AdminError::Transport(format!(
                    "cannot reach the admin API at {}: {e}",
                    self.authority
                ))
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AdminError::Transport(format!("admin API handshake: {e}")))?;
        tokio::spawn(conn);
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| AdminError::Settings(format!("building the request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| AdminError::Transport(format!("admin API request: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AdminError::Transport(format!("reading the admin API's answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
                |_| serde_json::json!({"error": String::from_utf8_lossy(&bytes).into_owned()}),
            );
            return Err(AdminError::Refused {
                status: status.as_u16(),
                message: value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string(),
            });
        }
        Ok(bytes)
    }
}

/// Why a signed erasure report does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Not a report document.
    #[error("not an erasure report: {0}")]
    Malformed(String),
    /// The report names another key than the one given.
    #[error("the report was signed by the audit key {named}, not by the one given ({given})")]
    OtherKey {
        /// The key the report names.
        named: String,
        /// The key given to check it with.
        given: String,
    },
    /// The signature does not verify.
    #[error("{0}")]
    Signature(String),
}

/// Checks a signed erasure report (its JSON text, as the proxy sent it)
/// against `verifying_key` (the base64 text of the signing replica's
/// `verifying_key.pub`, which the auditor holds; the key the report names
/// is not trusted on its own). The signature covers the report's text
/// exactly as it stands in the document, so no re-encoding is involved.
pub fn verify_report(text: &str, verifying_key: &str) -> Result<(), ReportError> {
    let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(text).map_err(|e| ReportError::Malformed(e.to_string()))?;
    let raw_report = fields
        .get("report")
        .ok_or_else(|| ReportError::Malformed("no \"report\"".into()))?;
    let signature: String = fields
        .get("signature")
        .map(|s| serde_json::from_str(s.get()))
        .transpose()
        .map_err(|e| ReportError::Malformed(e.to_string()))?
        .ok_or_else(|| ReportError::Malformed("no \"signature\"".into()))?;
    let report: Value = serde_json::from_str(raw_report.get())
        .map_err(|e| ReportError::Malformed(e.to_string()))?;
    if report.get("kind").and_then(Value::as_str) != Some("erasure-report") {
        return Err(ReportError::Malformed(
            "its kind is not erasure-report".into(),
        ));
    }
    let named = report["audit"]["verifying_key"]
        .as_str()
        .unwrap_or_default();
    if named != verifying_key.trim() {
        return Err(ReportError::OtherKey {
            named: named.to_string(),
            given: verifying_key.trim().to_string(),
        });
    }
    gatehouse_audit::verify_document(
        verifying_key,
        "erasure-report",
        raw_report.get().as_bytes(),
        &signature,
    )
    .map_err(|e| ReportError::Signature(e.to_string()))
}

/// A signed report (its JSON text) as text for people.
pub fn render_report(text: &str) -> String {
    let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let r = &doc["report"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "Erasure report ({})\n  subject (keyed hash) {}\n  requested by {} at {}: {}\n",
        if r["done"] == true {
            "done"
        } else {
            "in progress"
        },
        s(&r["subject_hash"]),
        s(&r["requested_by"]),
        s(&r["requested_at"]),
        s(&r["reason"]),
    );
    for d in r["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<15} {}  {:<24} {}\n",
            s(&d["step"]),
            s(&d["at"]),
            s(&d["audit_event"]),
            s(&d["detail"])
        ));
    }
    for n in r["not_yet"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {:<15} not yet\n", s(n)));
    }
    out.push_str(&render_verification(&r["verification"]));
    out.push_str(&format!(
        "  issued by {} at {}, signed with audit key {}\n",
        s(&r["issued_by"]),
        s(&r["issued_at"]),
        s(&r["audit"]["verifying_key"])
    ));
    out
}

/// A workflow as `gatehouse erase` prints it.
pub fn render_workflow(w: &Value) -> String {
    let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let done = w.get("done").and_then(Value::as_bool) == Some(true);
    let mut out = format!(
        "subject {}  step {}{}\n  requested by {} at {}: {}\n",
        s("subject_hash"),
        s("step"),
        if done { " (done)" } else { "" },
        s("requested_by"),
        s("requested_at"),
        s("reason")
    );
    for d in w
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-");
        out.push_str(&format!(
            "  {:<15} {}  {}  {}\n",
            g("step"),
            g("at"),
            g("replica"),
            g("detail")
        ));
    }
    out.push_str(&render_verification(&w["verification"]));
    out
}

/// Percent-encodes a path segment.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A verification (the workflow's step 5, or `erase verify`) as text: a
/// table with one line per topic read back. Empty when there is none.
pub fn render_verification(v: &Value) -> String {
    let Some(topics) = v["topics"].as_array().filter(|t| !t.is_empty()) else {
        return match v["outcome"].as_str() {
            Some("skipped") => {
                "  skipped: no verifying principal ([keys] erasure_verify_as)\n".to_string()
            }
            Some(outcome) => format!("  {outcome}: no governed topic to read back\n"),
            None => String::new(),
        };
    };
    let mut out = format!(
        "  read back as {}: {}\n    {:<20} {:>8} {:>13} {:>9} {:>16}\n",
        v["principal"].as_str().unwrap_or("-"),
        v["outcome"].as_str().unwrap_or("-"),
        "topic",
        "records",
        "subject held",
        "readable",
        "others readable"
    );
    for t in topics {
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let mut line = format!(
            "    {:<20} {:>8} {:>13} {:>9} {:>16}",
            t["topic"].as_str().unwrap_or("-"),
            n("scanned"),
            n("held"),
            n("readable"),
            n("others_readable"),
        );
        if t["tombstone"] == true && n("held") > 0 {
            line.push_str("  tombstoned: compaction removes what is held");
        }
        if let Some(why) = t["refused"].as_str() {
            line.push_str(&format!("  refused to the verifier: {why}"));
        } else if let Some(why) = t["error"].as_str() {
            line.push_str(&format!("  not read to its end: {why}"));
        } else if t["complete"] == false {
            line.push_str("  not read to its end");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
