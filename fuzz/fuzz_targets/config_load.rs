//! The proxy's configuration file (`ProxyConfig` from TOML, then
//! `validate`) and the topic catalog (`Catalog::from_toml_str`), from
//! arbitrary text.
#![no_main]

use gatehouse_policy::Catalog;
use gatehouse_proxy::ProxyConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if sel & 1 == 0 {
        if let Ok(c) = toml::from_str::<ProxyConfig>(text) {
            let _ = c.validate();
        }
    } else {
        let _ = Catalog::from_toml_str(text, "fuzz.toml");
    }
});
