//! The `gatehouse` command.
//!
//! - `gatehouse serve --config FILE`: run the proxy in front of a cluster.
//! - `gatehouse broker`: run the Kafka-compatible broker on object storage.
//! - `gatehouse demo`: the embedded default: the broker on a local data
//!   directory with the demo world's topics, and the proxy in front of it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gatehouse_broker::{Broker, BrokerConfig};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A governance-aware Kafka proxy and the broker it ships with"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GATEHOUSE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy in front of a Kafka-compatible cluster.
    Serve(ServeArgs),
    /// Run a broker whose data lives in object storage.
    Broker(BrokerArgs),
    /// Run the embedded default: the broker with the demo topics on a local
    /// data directory, and the proxy in front of it.
    Demo(DemoArgs),
    /// Check Cedar policies: `validate` a directory against the schema, or
    /// run its request fixtures (`test`).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage a SASL credentials file (PLAIN / SCRAM users and their
    /// attributes); passwords are stored only as salted SCRAM verifiers.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Field protection keys: list them, show a data subject's, rotate the
    /// key-encryption key. Works on a stopped proxy's key store.
    Keys(KeysArgs),
    /// The audit trail: query it, follow one data subject, verify the
    /// chains, export them for a SIEM.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
struct AuditArgs {
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
struct AuditFilter {
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
enum AuditFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
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

#[derive(Debug, Args)]
struct KeysArgs {
    /// The proxy configuration (its `[keys]` section).
    #[arg(long, conflicts_with = "data")]
    config: Option<PathBuf>,
    /// The demo's data directory (`gatehouse demo --data`).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Every data key: id, subject tag, wrapping KEK, created, destroyed.
    List,
    /// The keys of one data subject (by id; the store only holds its tag).
    ShowSubject {
        /// The data subject id, e.g. u-000042.
        id: String,
    },
    /// Start a new key-encryption key and re-wrap every data key under it.
    /// Data is not touched; the re-wrapped keys reach the other replicas
    /// through the key topic when the proxy next starts.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate every `*.cedar` file of DIR against the schema (and its
    /// `catalog.toml`, if present).
    Validate {
        /// The policy directory.
        dir: PathBuf,
    },
    /// Run the request fixtures under DIR/fixtures/ALLOW and DIR/fixtures/DENY
    /// (or FIXTURES) against the policies of DIR.
    Test {
        /// The policy directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user (or replace its password and attributes).
    Add {
        /// The credentials file (created if missing).
        #[arg(long)]
        file: PathBuf,
        /// User name.
        #[arg(long)]
        name: String,
        /// Read the password from this environment variable instead of
        /// the first line of standard input.
        #[arg(long)]
        password_env: Option<String>,
        /// A string attribute, `key=value` (repeatable), e.g. `team=platform`.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// A list attribute, `key=a,b` (repeatable), e.g. `purposes=analytics`.
        #[arg(long = "list-attr", value_name = "KEY=A,B")]
        list_attrs: Vec<String>,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Remove a user.
    Remove {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
        /// User name.
        #[arg(long)]
        name: String,
    },
    /// List users and their attributes (never secrets).
    List {
        /// The credentials file.
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The proxy's TOML configuration.
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct BrokerArgs {
    /// Address to listen on.
    #[arg(
        long,
        default_value = "127.0.0.1:9092",
        env = "GATEHOUSE_BROKER_LISTEN"
    )]
    listen: SocketAddr,
    /// Host name advertised to clients (default: the listen address).
    #[arg(long, env = "GATEHOUSE_BROKER_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Where data lives: a directory, file:///path, or s3://bucket/prefix
    /// (credentials and endpoint from AWS_* variables).
    #[arg(
        long,
        default_value = "gatehouse-data/broker",
        env = "GATEHOUSE_BROKER_DATA"
    )]
    data: String,
    /// This broker's node id.
    #[arg(long, default_value_t = 0, env = "GATEHOUSE_BROKER_NODE_ID")]
    node_id: i32,
    /// Create topics on first use (metadata requests for unknown topics).
    #[arg(long, env = "GATEHOUSE_BROKER_AUTO_CREATE_TOPICS")]
    auto_create_topics: bool,
    /// Partitions of auto-created topics.
    #[arg(long, default_value_t = 1, env = "GATEHOUSE_BROKER_DEFAULT_PARTITIONS")]
    default_partitions: i32,
    /// How long produce requests are gathered into one commit object (ms).
    #[arg(long, default_value_t = 2, env = "GATEHOUSE_BROKER_COMMIT_INTERVAL_MS")]
    commit_interval_ms: u64,
    /// Skip fsync of local data files (faster, loses data on power failure).
    #[arg(long, env = "GATEHOUSE_BROKER_NO_FSYNC")]
    no_fsync: bool,
    /// Largest request accepted, in bytes.
    #[arg(long, default_value_t = 100 << 20, env = "GATEHOUSE_BROKER_MAX_FRAME_BYTES")]
    max_frame_bytes: usize,
    /// Memory for recently written data, in MiB.
    #[arg(long, default_value_t = 256, env = "GATEHOUSE_BROKER_CACHE_MB")]
    cache_mb: usize,
    /// Require SASL (PLAIN, SCRAM-SHA-256/512) with the users of this
    /// credentials file (see `gatehouse users`).
    #[arg(long, env = "GATEHOUSE_BROKER_SASL_CREDENTIALS")]
    sasl_credentials: Option<PathBuf>,
}

impl BrokerArgs {
    fn config(&self) -> BrokerConfig {
        BrokerConfig {
            node_id: self.node_id,
            listen: self.listen,
            advertised_host: self.advertised_host.clone(),
            data: self.data.clone(),
            fsync: !self.no_fsync,
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            max_frame_bytes: self.max_frame_bytes,
            cache_bytes: self.cache_mb << 20,
            sasl_credentials: self.sasl_credentials.clone(),
            ..BrokerConfig::default()
        }
    }
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory for the demo's data.
    #[arg(long, default_value = "gatehouse-data", env = "GATEHOUSE_DEMO_DATA")]
    data: PathBuf,
    /// The proxy's bootstrap port (what clients use); broker node N is
    /// served on the following ports (port + 1 + N).
    #[arg(long, default_value_t = 9092, env = "GATEHOUSE_DEMO_PORT")]
    port: u16,
    /// The broker's own port, for looking behind the proxy.
    #[arg(long, default_value_t = 19092, env = "GATEHOUSE_DEMO_BROKER_PORT")]
    broker_port: u16,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

async fn run_broker(args: BrokerArgs) -> Result<()> {
    let broker = Broker::start(args.config())
        .await
        .context("broker failed to start")?;
    println!("gatehouse broker listening on {}", broker.local_addr());
    wait_for_signal().await?;
    tracing::info!("shutting down");
    broker.shutdown().await.context("broker shutdown")?;
    Ok(())
}

async fn run_serve(args: ServeArgs) -> Result<()> {
    let config = gatehouse_proxy::ProxyConfig::load(&args.config)?;
    let proxy = gatehouse_proxy::Proxy::start(config)
        .await
        .context("proxy failed to start")?;
    println!("gatehouse proxy listening on {}", proxy.local_addr());
    wait_for_signal().await?;
    tracing::info!("shutting down: draining in-flight requests");
    proxy.shutdown().await;
    Ok(())
}

async fn run_demo(args: DemoArgs) -> Result<()> {
    let addrs = gatehouse::demo::DemoAddrs::local(args.port, args.broker_port);
    let demo = gatehouse::demo::start(&args.data, addrs)
        .await
        .context("demo failed to start")?;
    let addr = demo.bootstrap();
    let clients = args.data.join("clients");
    let ingest = clients.join("ingest.properties");
    let analytics = clients.join("analytics.properties");
    println!();
    println!(
        "Gatehouse demo is running (data in {}).",
        args.data.display()
    );
    println!();
    println!("  bootstrap.servers = {addr}            (through Gatehouse; SASL required)");
    println!(
        "  broker            = {}   (behind it, for comparison)",
        demo.broker_addr()
    );
    println!();
    println!(
        "Client settings for each demo principal are in {}:",
        clients.display()
    );
    println!("  ingest     (SCRAM-SHA-512)  {}", ingest.display());
    println!("  analytics  (SCRAM-SHA-512)  {}", analytics.display());
    println!(
        "  analytics  (OAUTHBEARER)    a signed JWT in {}",
        clients.join("analytics.jwt").display()
    );
    println!();
    println!("Try it:");
    println!("  kcat -b {addr} -F {} -L", ingest.display());
    println!(
        "  echo 'u-000042:{{\"id\":\"p-1\",\"text\":\"hello\"}}' | kcat -b {addr} -F {} -t social.posts -P -K:",
        ingest.display()
    );
    println!(
        "  kcat -b {addr} -F {} -t social.posts -C -e",
        analytics.display()
    );
    println!();
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    demo.shutdown().await.context("demo shutdown")?;
    Ok(())
}

fn split_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("'{s}' is not key=value"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn run_users(cmd: UsersCommand) -> Result<()> {
    use gatehouse_sasl::{AttributeValue, CredentialStore, User};
    let load = |file: &PathBuf| -> Result<CredentialStore> {
        if file.exists() {
            Ok(CredentialStore::load(file)?)
        } else {
            Ok(CredentialStore::new())
        }
    };
    let save = |file: &PathBuf, store: &CredentialStore| -> Result<()> {
        let text = store.to_toml()?;
        std::fs::write(file, text).with_context(|| format!("cannot write {}", file.display()))?;
        restrict(file)
    };
    match cmd {
        UsersCommand::Add {
            file,
            name,
            password_env,
            attrs,
            list_attrs,
            iterations,
        } => {
            let password = match password_env {
                Some(var) => std::env::var(&var).with_context(|| format!("${var} is not set"))?,
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_string()
                }
            };
            anyhow::ensure!(!password.is_empty(), "empty password");
            let mut attributes = std::collections::BTreeMap::new();
            for a in attrs {
                let (k, v) = split_kv(&a)?;
                attributes.insert(k, AttributeValue::String(v));
            }
            for a in list_attrs {
                let (k, v) = split_kv(&a)?;
                let items = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                attributes.insert(k, AttributeValue::List(items));
            }
            let mut store = load(&file)?;
            store.remove(&name);
            store.insert(User::new_with_password(
                &name, &password, iterations, attributes,
            )?)?;
            save(&file, &store)?;
            println!("user {name} saved in {}", file.display());
        }
        UsersCommand::Remove { file, name } => {
            let mut store = load(&file)?;
            anyhow::ensure!(
                store.remove(&name).is_some(),
                "no user {name} in {}",
                file.display()
            );
            save(&file, &store)?;
            println!("user {name} removed");
        }
        UsersCommand::List { file } => {
            let store = load(&file)?;
            for u in store.users() {
                let attrs: Vec<String> = u
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.values().collect::<Vec<_>>().join(",")))
                    .collect();
                let mechs: Vec<&str> = [
                    u.scram_sha_256.as_ref().map(|_| "SCRAM-SHA-256"),
                    u.scram_sha_512.as_ref().map(|_| "SCRAM-SHA-512"),
                ]
                .into_iter()
                .flatten()
                .collect();
                println!("{}\t{}\t{}", u.name, mechs.join(","), attrs.join(" "));
            }
        }
    }
    Ok(())
}

fn run_policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { dir } => {
            let report = gatehouse_policy::validate(&dir)
                .with_context(|| format!("policies in {} are not valid", dir.display()))?;
            println!("{report}");
        }
        PolicyCommand::Test { dir } => {
            let report = gatehouse_policy::test_fixtures(&dir)
                .with_context(|| format!("cannot run the fixtures of {}", dir.display()))?;
            println!("{report}");
            anyhow::ensure!(report.all_passed(), "some fixtures failed");
        }
    }
    Ok(())
}

/// Credentials files hold password verifiers: readable by the owner only.
fn restrict(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

/// Opens the key store a proxy (or the demo) uses.
fn open_key_store(args: &KeysArgs) -> Result<gatehouse_keys::KeyStore> {
    let (key_file, state_dir) = match (&args.config, &args.data) {
        (Some(config), _) => {
            let config = gatehouse_proxy::ProxyConfig::load(config)?;
            let keys = config
                .keys
                .context("the configuration has no [keys] section")?;
            (keys.key_file, keys.state_dir)
        }
        (None, Some(data)) => gatehouse::keys::demo_key_paths(data),
        (None, None) => anyhow::bail!("say which key store: --config FILE or --data DIR"),
    };
    Ok(gatehouse::keys::open_key_store(&key_file, &state_dir)?)
}

fn run_keys(args: KeysArgs) -> Result<()> {
    let store = open_key_store(&args)?;
    match args.command {
        KeysCommand::List => {
            let keys = store.list()?;
            print!("{}", gatehouse::keys::render(&keys));
            println!("{} keys", keys.len());
        }
        KeysCommand::ShowSubject { id } => {
            let keys = store.subject_keys(&id)?;
            println!("subject tag {}", store.subject_tag(&id));
            print!("{}", gatehouse::keys::render(&keys));
            if keys.is_empty() {
                println!("no keys: nothing of this subject has been encrypted here");
            }
        }
        KeysCommand::Rotate => {
            let (kek, n) = store.rotate_kek()?;
            println!("rotated to {kek}: {n} data keys re-wrapped; no data was touched");
        }
    }
    Ok(())
}

fn run_audit(args: AuditArgs) -> Result<()> {
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let command = match cli.command {
        Command::Users(cmd) => return run_users(cmd),
        Command::Policy(cmd) => return run_policy(cmd),
        Command::Keys(args) => return run_keys(args),
        Command::Audit(args) => return run_audit(args),
        other => other,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        match command {
            Command::Serve(args) => run_serve(args).await,
            Command::Broker(args) => run_broker(args).await,
            Command::Demo(args) => run_demo(args).await,
            Command::Users(_) | Command::Policy(_) | Command::Keys(_) | Command::Audit(_) => Ok(()),
        }
    })
}
