//! The README and the guides under `docs/` stay true to the code: every
//! proxy configuration example in them parses with the proxy's own
//! configuration reader, and every link between them leads somewhere.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use gatehouse_proxy::ProxyConfig;

/// The README, the deployment folder's and every guide under `docs/`,
/// with their text.
fn documents() -> Result<Vec<(PathBuf, String)>> {
    let root = gatehouse_tests::repo_root();
    let mut paths = vec![root.join("README.md"), root.join("deploy/README.md")];
    for e in std::fs::read_dir(root.join("docs"))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "md") {
            paths.push(path);
        }
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).with_context(|| p.display().to_string())?;
            Ok((p, text))
        })
        .collect()
}

#[test]
fn readme_proxy_configurations_parse() -> Result<()> {
    let mut checked = 0;
    for (path, text) in documents()? {
        for block in text.split("```toml").skip(1) {
            let Some((toml, _)) = block.split_once("```") else {
                continue;
            };
            if toml.contains("[listener]") {
                ProxyConfig::from_toml(toml).map_err(|e| {
                    anyhow::anyhow!("{}: example does not parse: {e}\n{toml}", path.display())
                })?;
                checked += 1;
            }
        }
    }
    ensure!(
        checked >= 2,
        "expected the guides' proxy examples, found {checked}"
    );
    Ok(())
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown document's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every relative link of the README and the guides names a file that
/// exists, and an anchor that one of its headings makes.
#[test]
fn links_between_the_guides_resolve() -> Result<()> {
    let mut checked = 0;
    for (path, text) in documents()? {
        let dir = path.parent().unwrap_or(Path::new("."));
        for (_, rest) in text.match_indices("](").map(|(i, _)| ((), &text[i + 2..])) {
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            ensure!(
                file.exists(),
                "{}: link to {target}: no such file",
                path.display()
            );
            if !anchor.is_empty() {
                let linked = std::fs::read_to_string(&file)?;
                ensure!(
                    anchors(&linked).iter().any(|a| a == anchor),
                    "{}: link to {target}: no such heading",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    ensure!(checked >= 20, "only {checked} links found");
    Ok(())
}

/// The imports run one way, as the README's Layout says: the proxy never
/// depends on our broker (it stays transparent to any Kafka cluster), the
/// broker on nothing of governance, keys and audit never on policies.
#[test]
fn crate_imports_run_one_way() -> Result<()> {
    let root = gatehouse_tests::repo_root();
    let forbidden: &[(&str, &[&str])] = &[
        ("proxy", &["gatehouse-broker"]),
        (
            "broker",
            &[
                "gatehouse-policy",
                "gatehouse-keys",
                "gatehouse-audit",
                "gatehouse-proxy",
            ],
        ),
        ("keys", &["gatehouse-policy", "gatehouse-audit"]),
        ("audit", &["gatehouse-policy", "gatehouse-keys"]),
        ("wire", &["gatehouse-proxy", "gatehouse-broker"]),
    ];
    for (krate, banned) in forbidden {
        let manifest: toml::Table =
            std::fs::read_to_string(root.join(krate).join("Cargo.toml"))?.parse()?;
        for section in ["dependencies", "build-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for b in *banned {
                ensure!(
                    !deps.contains_key(*b),
                    "{krate}/Cargo.toml [{section}] depends on {b}"
                );
            }
        }
    }
    Ok(())
}

/// The worked example of `docs/adding-a-filter.md` is the file the proxy's
/// unit tests compile and run (`docs/examples/stamp.rs`), verbatim.
#[test]
fn the_filter_guide_shows_the_example_that_is_tested() -> Result<()> {
    let root = gatehouse_tests::repo_root();
    let guide = std::fs::read_to_string(root.join("docs/adding-a-filter.md"))?;
    let example = std::fs::read_to_string(root.join("docs/examples/stamp.rs"))?;
    let after = guide
        .split_once("## A worked example")
        .context("the guide has its worked example")?
        .1;
    let block = after
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .context("the worked example has a rust block")?
        .0;
    ensure!(
        block == example,
        "docs/adding-a-filter.md's example differs from docs/examples/stamp.rs"
    );
    // And the file is what the proxy compiles as its test module.
    let module = std::fs::read_to_string(root.join("proxy/src/filter/mod.rs"))?;
    ensure!(
        module.contains("#[path = \"../../../docs/examples/stamp.rs\"]"),
        "proxy/src/filter/mod.rs no longer compiles the guide's example"
    );
    Ok(())
}

/// The long flags `gatehouse SUBCOMMAND` accepts, read from its source
/// (`#[arg(long …)]` fields, and `long = "…"` names), plus the global ones.
fn cli_flags(subcommand: &str) -> Result<Vec<String>> {
    let root = gatehouse_tests::repo_root();
    let path = root.join(format!("cli/src/commands/{subcommand}.rs"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut flags = vec!["--log-format".to_string(), "--help".to_string()];
    // An attribute may span lines: gather it whole, then the field after it.
    let mut attribute: Option<String> = None;
    let mut pending: Option<Option<String>> = None;
    for line in text.lines().map(str::trim) {
        if let Some(open) = attribute.as_mut() {
            open.push(' ');
            open.push_str(line);
        } else if line.starts_with("#[arg(") {
            attribute = Some(line.to_string());
        } else if let Some(named) = pending.take() {
            match named {
                Some(named) => flags.push(format!("--{named}")),
                None => {
                    if let Some(field) = line.split(':').next() {
                        let field = field
                            .trim()
                            .trim_start_matches("pub(crate) ")
                            .trim_start_matches("pub ");
                        flags.push(format!("--{}", field.replace('_', "-")));
                    }
                }
            }
            continue;
        }
        if attribute.as_ref().is_some_and(|a| a.ends_with(")]")) {
            let whole = attribute.take().unwrap_or_default();
            let args = whole.trim_start_matches("#[arg(");
            if args
                .split(',')
                .any(|a| a.trim() == "long" || a.trim().starts_with("long ="))
            {
                let named = whole
                    .split("long = \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(str::to_string);
                pending = Some(named);
            }
        }
    }
    Ok(flags)
}

/// Every `gatehouse broker|serve|demo` command in `deploy/` and the
/// deployment guide uses flags the command has, and the scripts there are
/// valid shell: the files users run as they are stay runnable.
#[test]
fn deploy_files_use_real_flags() -> Result<()> {
    let root = gatehouse_tests::repo_root();
    let mut files = vec![root.join("docs/deployment.md"), root.join("README.md")];
    let mut stack = vec![root.join("deploy")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|x| x != "py") {
                files.push(path);
            }
        }
    }
    ensure!(files.len() > 4, "deploy/ is missing files: {files:?}");
    // The proxy configurations shipped there are read by the proxy's own
    // reader (the Compose file's, and the one inside the Kubernetes
    // ConfigMap).
    let compose = std::fs::read_to_string(root.join("deploy/proxy/proxy.toml"))?;
    ProxyConfig::from_toml(&compose)
        .map_err(|e| anyhow::anyhow!("deploy/proxy/proxy.toml: {e}"))?;
    let k8s = std::fs::read_to_string(root.join("deploy/k8s/proxy.yaml"))?;
    let embedded = k8s
        .split("proxy.toml: |")
        .nth(1)
        .context("deploy/k8s/proxy.yaml has no proxy.toml")?;
    let indent = embedded
        .lines()
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| l.len() - l.trim_start().len());
    let toml: String = embedded
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    ProxyConfig::from_toml(&toml)
        .map_err(|e| anyhow::anyhow!("deploy/k8s/proxy.yaml's proxy.toml: {e}\n{toml}"))?;
    let known: Vec<(&str, Vec<String>)> = ["broker", "serve", "demo"]
        .into_iter()
        .map(|s| Ok((s, cli_flags(s)?)))
        .collect::<Result<_>>()?;
    for path in &files {
        let text = std::fs::read_to_string(path)?;
        // Commands run over continuation lines (`\` in shell, YAML lists).
        let joined = text.replace("\\\n", " ");
        for (i, line) in joined.lines().enumerate() {
            for (sub, flags) in &known {
                let Some(at) = line.find(&format!("gatehouse {sub}")) else {
                    continue;
                };
                for token in line[at..]
                    .split(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == ',')
                {
                    let flag = token.split('=').next().unwrap_or("");
                    if flag.starts_with("--") && flag.len() > 2 {
                        ensure!(
                            flags.iter().any(|f| f == flag),
                            "{}:{}: `gatehouse {sub}` has no {flag}",
                            path.display(),
                            i + 1
                        );
                    }
                }
            }
        }
        if path.extension().is_some_and(|x| x == "sh") {
            let status = std::process::Command::new("bash")
                .arg("-n")
                .arg(path)
                .status()?;
            ensure!(status.success(), "{} is not valid shell", path.display());
        }
    }
    Ok(())
}

/// `gatehouse config check`: a configuration with the shipped policies
/// passes and says what it checked; a TOML error names the file and line, a
/// broken policy file names that file, a missing credentials file says so.
#[test]
fn config_check_names_the_file_and_line_of_each_error() -> Result<()> {
    let root = gatehouse_tests::repo_root();
    let dir = tempfile::tempdir()?;
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies)?;
    for e in std::fs::read_dir(root.join("policies/default"))? {
        let path = e?.path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().context("name")?))?;
        }
    }
    let users = dir.path().join("users.toml");
    std::fs::write(&users, "")?;
    let config = |extra: &str| {
        format!(
            "[listener]\nbind = \"127.0.0.1:0\"\n[upstream]\nbootstrap_servers = [\"127.0.0.1:9092\"]\n{extra}\
             [policy]\ndir = {:?}\nstate_dir = {:?}\n\
             [auth]\nmechanisms = [\"PLAIN\"]\ncredentials_file = {:?}\n",
            policies.to_string_lossy(),
            dir.path().join("state").to_string_lossy(),
            users.to_string_lossy(),
        )
    };
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, config(""))?;
    let ok = gatehouse::config_check::check(&file).map_err(anyhow::Error::msg)?;
    ensure!(
        ok.iter().any(|l| l.contains("valid against the schema")),
        "{ok:?}"
    );
    ensure!(ok.iter().any(|l| l.contains("0 users")), "{ok:?}");

    // A TOML mistake: the file and the line.
    std::fs::write(&file, config("[limits]\nmax_connections = \"many\"\n"))?;
    let e = gatehouse::config_check::check(&file)
        .err()
        .context("a bad value passed")?;
    ensure!(e.contains("proxy.toml") && e.contains("line 6"), "{e}");

    // A broken policy: that file.
    std::fs::write(&file, config(""))?;
    std::fs::write(
        policies.join("broken.cedar"),
        "permit (principal, action, resource) when {",
    )?;
    let e = gatehouse::config_check::check(&file)
        .err()
        .context("a broken policy passed")?;
    ensure!(e.contains("broken.cedar"), "{e}");
    std::fs::remove_file(policies.join("broken.cedar"))?;

    // A credentials file that is not there.
    std::fs::remove_file(&users)?;
    let e = gatehouse::config_check::check(&file)
        .err()
        .context("a missing credentials file passed")?;
    ensure!(
        e.contains("users.toml") && e.contains("credentials_file"),
        "{e}"
    );
    Ok(())
}
