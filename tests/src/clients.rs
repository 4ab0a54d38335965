//! The external Kafka clients, run as subprocesses: confluent-kafka,
//! kafka-python and aiokafka (Python), kafkajs (Node) and kcat. Each script prints one
//! JSON object; see `tests/clients/README.md`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::repo_root;

/// A scripted client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// confluent-kafka (librdkafka underneath).
    Confluent,
    /// kafka-python (pure Python).
    KafkaPython,
    /// kafkajs (pure JavaScript).
    KafkaJs,
    /// aiokafka (asyncio, pure Python).
    AioKafka,
}

impl Client {
    fn command(self) -> Command {
        let dir = repo_root().join("tests/clients");
        let (prog, script) = match self {
            Client::Confluent => ("python3", "confluent_client.py"),
            Client::KafkaPython => ("python3", "kafka_python_client.py"),
            Client::KafkaJs => ("node", "kafkajs_client.mjs"),
            Client::AioKafka => ("python3", "aiokafka_client.py"),
        };
        let mut c = Command::new(prog);
        c.arg(dir.join(script));
        isolate(&mut c);
        c
    }
}

/// What a client run returned.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub code: i32,
    /// The JSON object it printed (Null if none).
    pub json: Value,
    /// Its stderr, for failure messages.
    pub stderr: String,
}

/// Runs a client subcommand with a time limit.
pub async fn run(client: Client, args: &[&str], limit: Duration) -> Result<Outcome> {
    let mut cmd = client.command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {client:?}: run scripts/install-test-deps"))?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("{client:?} {args:?} did not finish within {limit:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    Ok(Outcome {
        code: out.status.code().unwrap_or(-1),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a client subcommand that must succeed; returns its JSON.
pub async fn run_ok(client: Client, args: &[&str], limit: Duration) -> Result<Value> {
    let o = run(client, args, limit).await?;
    if o.code != 0 {
        bail!(
            "{client:?} {args:?} exited with {}: {}\nstderr:\n{}",
            o.code,
            o.json,
            o.stderr
        );
    }
    Ok(o.json)
}

/// Runs kcat with `args`, feeding `stdin`; returns stdout.
pub async fn kcat(args: &[&str], stdin: Option<&[u8]>, limit: Duration) -> Result<String> {
    let mut cmd = Command::new("kcat");
    isolate(&mut cmd);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .context("cannot start kcat: run scripts/install-test-deps")?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await?;
        drop(pipe);
    }
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("kcat {args:?} did not finish within {limit:?}"))??;
    if !out.status.success() {
        bail!(
            "kcat {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Cargo points `LD_LIBRARY_PATH` at build outputs, where the librdkafka
/// the `rdkafka` crate builds (without TLS) lives; external clients must
/// load their own.
fn isolate(cmd: &mut Command) {
    cmd.env_remove("LD_LIBRARY_PATH");
}
