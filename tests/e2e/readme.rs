//! The README stays true to the code: every proxy configuration example in
//! it parses with the proxy's own configuration reader.

use anyhow::{ensure, Result};
use gatehouse_proxy::ProxyConfig;

#[test]
fn readme_proxy_configurations_parse() -> Result<()> {
    let readme = std::fs::read_to_string(gatehouse_tests::repo_root().join("README.md"))?;
    let mut checked = 0;
    for block in readme.split("```toml").skip(1) {
        let Some((toml, _)) = block.split_once("```") else {
            continue;
        };
        if toml.contains("[listener]") {
            ProxyConfig::from_toml(toml)
                .map_err(|e| anyhow::anyhow!("README example does not parse: {e}\n{toml}"))?;
            checked += 1;
        }
    }
    ensure!(
        checked >= 2,
        "expected the README's proxy examples, found {checked}"
    );
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
