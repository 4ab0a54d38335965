//! `gatehouse audit`: The audit trail: query it, follow one data subject, verify the chains,
//! export them for a SIEM.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The proxy configuration (its `[audit]` and `[keys]` sections).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The demo's data directory (`gatehouse demo --data`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Another replica's audit directory (repeatable): queries and
    /// verification read every chain given.
    #[arg(long = "dir")]
    dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Args)]
pub(crate) struct AuditFilter {
    /// Only events of this principal.
    #[arg(long)]
    principal: Option<String>,
    /// Only events about this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Only events about this data subject (its id; hashed as the proxies do).
    #[arg(long)]
    subject: Option<String>,
    /// From this time (epoch ms or RFC 3339, e.g. 2026-11-26T08:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Up to this time.
    #[arg(long)]
    until: Option<String>,
    /// Only `allow` or `deny` decisions.
    #[arg(long)]
    decision: Option<String>,
    /// At most this many events.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AuditFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Events matching the filters, oldest first.
    Query {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long, value_enum, default_value = "table")]
        format: AuditFormat,
    },
    /// The full access trail of one data subject: who produced and who
    /// received its records, when, at which offsets, seeing what.
    Subject {
        /// The data subject id, e.g. u-000042.
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        format: AuditFormat,
    },
    /// Recompute every chain and check every signed checkpoint; report the
    /// first broken event of each replica.
    Verify,
    /// CloudEvents 1.0, one JSON object per line, for a SIEM.
    Export {
        #[command(flatten)]
        filter: AuditFilter,
    },
}

pub(crate) fn run_audit(args: AuditArgs) -> Result<()> {
    use gatehouse::audit as a;
    let (mut dirs, key_file) = match (&args.config, &args.data) {
        (Some(config), _) => {
            let config = gatehouse_proxy::ProxyConfig::load(config)?;
            let audit = config
                .audit
                .context("the configuration has no [audit] section")?;
            let keys = config
                .keys
                .context("the configuration has no [keys] section")?;
            (vec![audit.dir], Some(keys.key_file))
        }
        (None, Some(data)) => {
            let (dir, key_file) = a::demo_audit_paths(data);
            (vec![dir], Some(key_file))
        }
        (None, None) => (Vec::new(), None),
    };
    dirs.extend(args.dirs.iter().cloned());
    let query = |f: &AuditFilter| -> Result<gatehouse_audit::Query> {
        let subject_hash = match &f.subject {
            Some(id) => {
                let key_file = key_file
                    .as_ref()
                    .context("--subject needs the key file: give --config or --data")?;
                Some(a::subject_hash(key_file, id)?)
            }
            None => None,
        };
        Ok(gatehouse_audit::Query {
            principal: f.principal.clone(),
            topic: f.topic.clone(),
            subject_hash,
            from_ms: f.since.as_deref().map(a::parse_time).transpose()?,
            to_ms: f.until.as_deref().map(a::parse_time).transpose()?,
            decision: f.decision.as_deref().map(a::parse_decision).transpose()?,
            limit: f.limit,
        })
    };
    let format = |f: AuditFormat| match f {
        AuditFormat::Table => a::Format::Table,
        AuditFormat::Json => a::Format::Json,
        AuditFormat::Csv => a::Format::Csv,
    };
    match args.command {
        AuditCommand::Query { filter, format: f } => {
            let events = a::run_query(&dirs, &query(&filter)?)?;
            print!("{}", a::render(&events, format(f))?);
        }
        AuditCommand::Subject { id, format: f } => {
            let key_file =
                key_file.context("a subject trail needs the key file: give --config or --data")?;
            let q = gatehouse_audit::Query {
                subject_hash: Some(a::subject_hash(&key_file, &id)?),
                ..Default::default()
            };
            let events = a::run_query(&dirs, &q)?;
            print!("{}", a::render(&events, format(f))?);
            if events.is_empty() {
                println!("no events about {id}");
            }
        }
        AuditCommand::Verify => {
            anyhow::ensure!(!dirs.is_empty(), "no audit directory given");
            let report = gatehouse_audit::verify(&dirs)?;
            for r in &report.replicas {
                match &r.first_problem {
                    None => println!(
                        "{}: ok, {} events, {} signed checkpoints",
                        r.replica, r.events, r.checkpoints
                    ),
                    Some(p) => println!(
                        "{}: BROKEN at {} line {}{}: {}",
                        r.replica,
                        p.segment,
                        p.line,
                        p.seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
                        p.reason
                    ),
                }
            }
            anyhow::ensure!(report.is_clean(), "the audit trail does not verify");
        }
        AuditCommand::Export { filter } => {
            anyhow::ensure!(!dirs.is_empty(), "no audit directory given");
            let mut out = std::io::stdout().lock();
            gatehouse_audit::export_cloudevents(&dirs, &query(&filter)?, &mut out)?;
        }
    }
    Ok(())
}
