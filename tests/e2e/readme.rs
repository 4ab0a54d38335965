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
