//! `gatehouse erase`: the right to erasure, asked of a running proxy's
//! admin API (`POST /api/erase`, `GET /api/erasures[/ID]`), authenticated
//! like the auditor API (HTTP Basic with a user of the proxy's credentials
//! file).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct EraseArgs {
    #[command(subcommand)]
    command: Option<EraseCommand>,
    /// The data subject to erase (its id as the catalog locates it).
    #[arg(long)]
    subject: Option<String>,
    /// Why (recorded in the audit trail and the workflow).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
enum EraseCommand {
    /// How erasures stand: every workflow, or the one of subject ID.
    Status {
        /// A subject id (hashed by the proxy; never sent anywhere else).
        id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is, and who asks.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// The proxy's admin listener.
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:9180"
    )]
    url: String,
    /// A client properties file with `sasl.username` and `sasl.password`
    /// (as the demo writes for each principal).
    #[arg(long, env = "GATEHOUSE_ADMIN_PROPERTIES", conflicts_with = "user")]
    properties: Option<PathBuf>,
    /// The user, with its password in `GATEHOUSE_ADMIN_PASSWORD`.
    #[arg(long, env = "GATEHOUSE_ADMIN_USER")]
    user: Option<String>,
}

impl AdminArgs {
    fn authorization(&self) -> Result<String> {
        let (user, password) = match (&self.properties, &self.user) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let get = |k: &str| {
                    text.lines()
                        .filter_map(|l| l.split_once('='))
                        .find(|(key, _)| key.trim() == k)
                        .map(|(_, v)| v.trim().to_string())
                };
                (
                    get("sasl.username")
                        .with_context(|| format!("no sasl.username in {}", path.display()))?,
                    get("sasl.password")
                        .with_context(|| format!("no sasl.password in {}", path.display()))?,
                )
            }
            (None, Some(user)) => (
                user.clone(),
                std::env::var("GATEHOUSE_ADMIN_PASSWORD")
                    .context("--user needs the password in GATEHOUSE_ADMIN_PASSWORD")?,
            ),
            (None, None) => bail!(
                "who asks? give --properties FILE, or --user NAME with GATEHOUSE_ADMIN_PASSWORD"
            ),
        };
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Ok(format!("Basic {token}"))
    }
}

/// One request to the admin API; the JSON answer, or its error.
async fn call(admin: &AdminArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let rest = admin
        .url
        .strip_prefix("http://")
        .context("the admin URL must start with http:// (put TLS in front of the listener, and this command behind it)")?;
    let (authority, base) = match rest.split_once('/') {
        Some((a, b)) => (a, format!("/{}", b.trim_end_matches('/'))),
        None => (rest, String::new()),
    };
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot reach the admin API at {}", admin.url))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("admin API handshake")?;
    tokio::spawn(conn);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::AUTHORIZATION, admin.authorization()?)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(payload)))
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .context("admin API request")?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("reading the admin API's answer")?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(
        |_| serde_json::json!({"error": String::from_utf8_lossy(&bytes).into_owned()}),
    );
    if !status.is_success() {
        let why = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        bail!("the proxy answered {status}: {why}");
    }
    Ok(value)
}

fn print_workflow(w: &Value) {
    let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    println!(
        "subject {}  step {}{}",
        s("subject_hash"),
        s("step"),
        if w.get("done").and_then(Value::as_bool) == Some(true) {
            " (done)"
        } else {
            ""
        }
    );
    println!(
        "  requested by {} at {}: {}",
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
        println!(
            "  {:<15} {}  {}  {}",
            g("step"),
            g("at"),
            g("replica"),
            g("detail")
        );
    }
}

pub(crate) async fn run_erase(args: EraseArgs) -> Result<()> {
    match args.command {
        Some(EraseCommand::Status { id, admin }) => {
            let path = match &id {
                Some(id) => format!("/api/erasures/{}", percent_encode(id)),
                None => "/api/erasures".to_string(),
            };
            let answer = call(&admin, "GET", &path, None).await?;
            if let Some(w) = answer.get("workflow") {
                print_workflow(w);
            } else {
                let all = answer
                    .get("workflows")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if all.is_empty() {
                    println!("no erasure so far");
                }
                for w in &all {
                    print_workflow(w);
                }
            }
        }
        None => {
            let subject = args
                .subject
                .context("--subject ID is required (or: gatehouse erase status)")?;
            let reason = args
                .reason
                .context("--reason TEXT is required: it is recorded")?;
            let answer = call(
                &args.admin,
                "POST",
                "/api/erase",
                Some(serde_json::json!({"subject": subject, "reason": reason})),
            )
            .await?;
            println!("erasure requested; every replica withholds the subject from now on");
            if let Some(w) = answer.get("workflow") {
                print_workflow(w);
            }
            println!("follow it with: gatehouse erase status {subject}");
        }
    }
    Ok(())
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
