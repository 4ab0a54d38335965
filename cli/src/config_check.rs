//! `gatehouse config check FILE`: a proxy configuration checked the way the
//! proxy reads it at start, with its policies, catalog and credentials
//! file, before it is deployed.

use std::path::Path;

use gatehouse_proxy::ProxyConfig;

/// Checks the proxy configuration at `path`: what was checked, one line
/// each, or the first error, naming the file (and the line, where the
/// TOML or Cedar parser gives one).
pub fn check(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let config = ProxyConfig::from_toml(&text).map_err(|e| format!("{shown}: {e}"))?;
    let mut checked = vec![format!(
        "{shown}: the configuration reads (upstream {})",
        config.upstream.bootstrap_servers.join(",")
    )];
    if let Some(p) = &config.policy {
        let report = gatehouse_policy::validate(&p.dir)
            .map_err(|e| format!("{} ([policy] dir of {shown}): {e}", p.dir.display()))?;
        checked.push(format!(
            "{}: {} policies in {} files, valid against the schema{}",
            p.dir.display(),
            report.policies.len(),
            report.files.len(),
            report
                .catalog_entries
                .map_or_else(String::new, |n| format!("; catalog of {n} topics")),
        ));
        for w in &report.warnings {
            checked.push(format!("{}: warning: {w}", p.dir.display()));
        }
    }
    if let Some(file) = config
        .auth
        .as_ref()
        .and_then(|a| a.credentials_file.as_ref())
    {
        let users = gatehouse_sasl::CredentialStore::load(file).map_err(|e| {
            format!(
                "{} ([auth] credentials_file of {shown}): {e}",
                file.display()
            )
        })?;
        let n = users.len();
        checked.push(format!(
            "{}: {n} user{}",
            file.display(),
            if n == 1 { "" } else { "s" }
        ));
    }
    Ok(checked)
}
