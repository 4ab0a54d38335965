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

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
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
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&bytes).into_owned()}),
        );
        if !status.is_success() {
            return Err(AdminError::Refused {
                status: status.as_u16(),
                message: value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_string(),
            });
        }
        Ok(value)
    }
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
