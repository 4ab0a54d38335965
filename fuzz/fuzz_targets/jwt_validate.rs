//! OAUTHBEARER tokens past their header: `OAuthValidator::validate` with
//! one HS256 key. The input is either a token as it is, or (first byte
//! odd) a header and a claims document split at the first 0xff byte,
//! base64url-encoded and signed with the configured secret, so that the
//! signature verifies and the claims checks (issuer, audience, times,
//! principal and attribute claims, lifetime) run on arbitrary JSON.
#![no_main]

use base64::Engine as _;
use gatehouse_proxy::auth::oauth::{OAuthConfig, OAuthValidator};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-fuzzing-secret";

fn validator() -> &'static OAuthValidator {
    static V: OnceLock<OAuthValidator> = OnceLock::new();
    V.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gatehouse-fuzz-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("hmac.secret");
        std::fs::write(&secret, SECRET).unwrap();
        let config: OAuthConfig = toml::from_str(&format!(
            "issuer = \"https://idp.example\"\naudience = [\"gatehouse\"]\n\
             required_claims = [\"team\"]\nmax_lifetime_secs = 3600\n\
             [attribute_claims]\nteam = \"team\"\npurposes = \"purposes\"\n\
             [[keys]]\nkid = \"k1\"\nalgorithm = \"HS256\"\nsecret_file = {:?}\n",
            secret.display().to_string()
        ))
        .unwrap();
        OAuthValidator::from_config(&config).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    // A fixed clock: runs are reproducible.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    if sel & 1 == 0 {
        if let Ok(token) = std::str::from_utf8(data) {
            let _ = validator().validate(token, now);
        }
        return;
    }
    let (header, claims) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#[..], data),
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    let Ok(signature) =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
    else {
        return;
    };
    let _ = validator().validate(&format!("{message}.{signature}"), now);
});
