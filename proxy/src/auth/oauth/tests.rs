//! Tests of OAUTHBEARER: token validation, JWKS, claims and attributes.

use super::*;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const ISSUER: &str = "https://idp.test/realms/data";
const AUDIENCE: &str = "gatehouse";
/// The validation time used throughout: 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;
const HMAC_SECRET: &[u8] = b"test-only hmac secret, 32+ bytes long!";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A test key pair: a signing key and the public PEM a proxy would hold.
struct TestKey {
    encoding: EncodingKey,
    public_pem: String,
}

/// A 2048-bit RSA key, generated once per test run (aws-lc-rs).
fn rsa_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use aws_lc_rs::encoding::{Pkcs8V1Der, PublicKeyX509Der};
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8: Pkcs8V1Der<'_> = pair.as_der().expect("PKCS#8");
        let spki: PublicKeyX509Der<'_> = pair.public_key().as_der().expect("SPKI");
        TestKey {
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .expect("RSA encoding key"),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
        }
    })
}

/// A fresh P-256 key (rcgen).
fn ec_key() -> TestKey {
    let pair = rcgen::KeyPair::generate().expect("P-256 key generation");
    TestKey {
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())
            .expect("EC encoding key"),
        public_pem: pair.public_key_pem(),
    }
}

fn base_config() -> OAuthConfig {
    OAuthConfig {
        jwks_file: None,
        keys: Vec::new(),
        issuer: ISSUER.into(),
        audience: vec![AUDIENCE.into(), "other-service".into()],
        leeway_secs: 30,
        required_claims: Vec::new(),
        principal_claim: "sub".into(),
        attribute_claims: [
            ("team", "team"),
            ("region", "region"),
            ("purposes", "purposes"),
        ]
        .into_iter()
        .map(|(a, c)| (a.to_owned(), c.to_owned()))
        .collect(),
        max_lifetime_secs: None,
    }
}

/// Files for a configuration; the directory lives as long as the value.
struct Files(tempfile::TempDir);

impl Files {
    fn new() -> Self {
        Self(tempfile::tempdir().expect("temp dir"))
    }
    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

fn pem_key(files: &Files, kid: Option<&str>, algorithm: SigningAlgorithm, pem: &str) -> KeyConfig {
    let name = format!("{}-{}.pem", algorithm, kid.unwrap_or("nokid"));
    KeyConfig {
        kid: kid.map(str::to_owned),
        algorithm,
        pem_file: Some(files.write(&name, pem.as_bytes())),
        secret_file: None,
    }
}

fn hmac_key(files: &Files, kid: Option<&str>, secret: &[u8]) -> KeyConfig {
    let name = format!("hs-{}.secret", kid.unwrap_or("nokid"));
    KeyConfig {
        kid: kid.map(str::to_owned),
        algorithm: SigningAlgorithm::HS256,
        pem_file: None,
        secret_file: Some(files.write(&name, secret)),
    }
}

fn build_validator(config: &OAuthConfig) -> OAuthValidator {
    OAuthValidator::from_config(config).expect("valid configuration")
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-payments",
        "iat": NOW - 60,
        "exp": NOW + 600,
        "team": "payments",
        "region": "eu-west-1",
        "purposes": ["fraud-detection", "billing"],
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .expect("object")
        .insert(key.into(), value);
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign test token")
}

/// Hand-made token (for headers jsonwebtoken would not produce).
fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Validates, expecting failure, and checks the token is not echoed.
fn refuse(validator: &OAuthValidator, token: &str) -> OAuthError {
    refuse_at(validator, token, now())
}

fn refuse_at(validator: &OAuthValidator, token: &str, at: SystemTime) -> OAuthError {
    match validator.validate(token, at) {
        Ok(ok) => panic!("token unexpectedly accepted: {ok:?}"),
        Err(err) => {
            let shown = format!("{err} / {err:?}");
            for part in token.split('.').filter(|p| p.len() > 8) {
                assert!(!shown.contains(part), "error echoes the token: {shown}");
            }
            err
        }
    }
}

fn es256_setup() -> (Files, TestKey, OAuthValidator) {
    let files = Files::new();
    let key = ec_key();
    let mut config = base_config();
    config.keys = vec![pem_key(
        &files,
        Some("ec-1"),
        SigningAlgorithm::ES256,
        &key.public_pem,
    )];
    let validator = build_validator(&config);
    (files, key, validator)
}

fn assert_payments_principal(token: &ValidatedToken) {
    assert_eq!(token.principal, "svc-payments");
    assert_eq!(
        token.attributes.get("team"),
        Some(&AttributeValue::String("payments".into()))
    );
    assert_eq!(
        token.attributes.get("region"),
        Some(&AttributeValue::String("eu-west-1".into()))
    );
    assert_eq!(
        token.attributes.get("purposes"),
        Some(&AttributeValue::List(vec![
            "fraud-detection".into(),
            "billing".into()
        ]))
    );
    assert_eq!(
        token.expires_at,
        UNIX_EPOCH + Duration::from_secs(NOW + 600)
    );
    assert_eq!(token.claims.get("team"), Some(&json!("payments")));
}

// ----- valid tokens -------------------------------------------------

#[test]
fn es256_token_maps_principal_and_attributes() {
    let (_files, key, validator) = es256_setup();
    let token = sign(Algorithm::ES256, Some("ec-1"), &claims(), &key.encoding);
    let validated = validator
        .validate(&token, now())
        .expect("valid ES256 token");
    assert_payments_principal(&validated);
    // Without kid, the only ES256 key is used.
    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    assert_payments_principal(
        &validator
            .validate(&token, now())
            .expect("valid without kid"),
    );
}

#[test]
fn rs256_token_maps_principal_and_attributes() {
    let files = Files::new();
    let mut config = base_config();
    config.keys = vec![pem_key(
        &files,
        Some("rsa-1"),
        SigningAlgorithm::RS256,
        &rsa_key().public_pem,
    )];
    let validator = build_validator(&config);
    let token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(),
        &rsa_key().encoding,
    );
    assert_payments_principal(
        &validator
            .validate(&token, now())
            .expect("valid RS256 token"),
    );
}

#[test]
fn hs256_token_maps_principal_and_attributes() {
    let files = Files::new();
    let mut config = base_config();
    config.keys = vec![hmac_key(&files, None, HMAC_SECRET)];
    let validator = build_validator(&config);
    let token = sign(
        Algorithm::HS256,
        None,
        &claims(),
        &EncodingKey::from_secret(HMAC_SECRET),
    );
    assert_payments_principal(
        &validator
            .validate(&token, now())
            .expect("valid HS256 token"),
    );
}

#[test]
fn principal_claim_and_partial_attributes() {
    let files = Files::new();
    let mut config = base_config();
    config.keys = vec![hmac_key(&files, None, HMAC_SECRET)];
    config.principal_claim = "preferred_username".into();
    let validator = build_validator(&config);
    let key = EncodingKey::from_secret(HMAC_SECRET);

    let token = sign(
        Algorithm::HS256,
        None,
        &without(
            with(claims(), "preferred_username", json!("alice")),
            "region",
        ),
        &key,
    );
    let validated = validator.validate(&token, now()).expect("valid");
    assert_eq!(validated.principal, "alice");
    assert!(!validated.attributes.contains_key("region"));
    assert_eq!(validated.attributes.len(), 2);

    let token = sign(Algorithm::HS256, None, &claims(), &key);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::MissingClaim { claim } if claim == "preferred_username"
    ));
    let token = sign(
        Algorithm::HS256,
        None,
        &with(claims(), "preferred_username", json!(42)),
        &key,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::InvalidClaim { .. }
    ));
}

#[test]
fn attribute_of_wrong_type_is_refused() {
    let (_files, key, validator) = es256_setup();
    for bad in [json!(7), json!({"a": "b"}), json!(["ok", 3]), json!(true)] {
        let token = sign(
            Algorithm::ES256,
            None,
            &with(claims(), "purposes", bad),
            &key.encoding,
        );
        assert!(matches!(
            refuse(&validator, &token),
            OAuthError::InvalidClaim { claim, .. } if claim == "purposes"
        ));
    }
}

#[test]
fn audience_array_with_one_match_is_accepted() {
    let (_files, key, validator) = es256_setup();
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "aud", json!(["someone-else", AUDIENCE])),
        &key.encoding,
    );
    validator
        .validate(&token, now())
        .expect("one audience matches");
}

// ----- time --------------------------------------------------------

#[test]
fn expiry_and_leeway() {
    let (_files, key, validator) = es256_setup();
    let at = |exp: u64| {
        let claims = with(with(claims(), "exp", json!(exp)), "iat", json!(exp - 300));
        sign(Algorithm::ES256, None, &claims, &key.encoding)
    };
    // Expired 10 s ago: inside the 30 s leeway.
    validator
        .validate(&at(NOW - 10), now())
        .expect("within leeway");
    validator
        .validate(&at(NOW - 29), now())
        .expect("within leeway");
    // Exactly at exp + leeway, and beyond: refused.
    assert!(matches!(
        refuse(&validator, &at(NOW - 30)),
        OAuthError::Expired { exp, now } if exp == NOW - 30 && now == NOW
    ));
    assert!(matches!(
        refuse(&validator, &at(NOW - 3600)),
        OAuthError::Expired { .. }
    ));
    // The caller's clock is what counts.
    let later = now() + Duration::from_secs(3600);
    let fresh = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    assert!(matches!(
        refuse_at(&validator, &fresh, later),
        OAuthError::Expired { .. }
    ));
    assert!(matches!(
        refuse_at(&validator, &fresh, UNIX_EPOCH - Duration::from_secs(1)),
        OAuthError::InvalidClock
    ));
}

#[test]
fn not_before_and_issued_at_in_the_future() {
    let (_files, key, validator) = es256_setup();
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "nbf", json!(NOW + 120)),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::NotYetValid { claim: "nbf", .. }
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "nbf", json!(NOW + 20)),
        &key.encoding,
    );
    validator
        .validate(&token, now())
        .expect("nbf within leeway");
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "iat", json!(NOW + 120)),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::NotYetValid { claim: "iat", .. }
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "nbf", json!("soon")),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::InvalidClaim { .. }
    ));
}

#[test]
fn lifetime_too_long() {
    let files = Files::new();
    let key = ec_key();
    let mut config = base_config();
    config.keys = vec![pem_key(
        &files,
        None,
        SigningAlgorithm::ES256,
        &key.public_pem,
    )];
    config.max_lifetime_secs = Some(3600);
    let validator = build_validator(&config);

    let long = with(
        with(claims(), "iat", json!(NOW - 60)),
        "exp",
        json!(NOW + 7200),
    );
    let token = sign(Algorithm::ES256, None, &long, &key.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::LifetimeTooLong {
            lifetime_secs: 7260,
            max_secs: 3600
        }
    ));
    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    validator
        .validate(&token, now())
        .expect("660 s lifetime is fine");
    let token = sign(
        Algorithm::ES256,
        None,
        &without(claims(), "iat"),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::MissingClaim { claim } if claim == "iat"
    ));
}

// ----- issuer / audience / claims ---------------------------------

#[test]
fn wrong_issuer_and_audience() {
    let (_files, key, validator) = es256_setup();
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "iss", json!("https://evil.test")),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::WrongIssuer
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "iss", json!(["https://evil.test", ISSUER])),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::InvalidClaim { .. }
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "aud", json!("someone-else")),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::WrongAudience
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "aud", json!([])),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::WrongAudience
    ));
}

#[test]
fn missing_claims() {
    let files = Files::new();
    let key = ec_key();
    let mut config = base_config();
    config.keys = vec![pem_key(
        &files,
        None,
        SigningAlgorithm::ES256,
        &key.public_pem,
    )];
    config.required_claims = vec!["team".into(), "tenant".into()];
    let validator = build_validator(&config);

    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "tenant", json!("acme")),
        &key.encoding,
    );
    validator
        .validate(&token, now())
        .expect("all required claims present");

    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::MissingClaim { claim } if claim == "tenant"
    ));
    let token = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "tenant", Value::Null),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::MissingClaim { .. }
    ));
    for spec in ["exp", "iss", "aud", "sub"] {
        let token = sign(
            Algorithm::ES256,
            None,
            &without(with(claims(), "tenant", json!("acme")), spec),
            &key.encoding,
        );
        assert!(
            matches!(refuse(&validator, &token), OAuthError::MissingClaim { ref claim } if claim == spec),
            "{spec}"
        );
    }
}

// ----- keys and algorithms -----------------------------------------

#[test]
fn token_signed_by_another_key_is_refused() {
    let (_files, _key, validator) = es256_setup();
    let other = ec_key();
    let token = sign(Algorithm::ES256, Some("ec-1"), &claims(), &other.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::BadSignature
    ));
    // Tampered claims under a genuine signature.
    let (_files, key, validator) = es256_setup();
    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("admin")).to_string());
    assert!(matches!(
        refuse(&validator, &parts.join(".")),
        OAuthError::BadSignature
    ));
}

#[test]
fn alg_none_is_refused() {
    let (_files, _key, validator) = es256_setup();
    for alg in ["none", "None", "NONE"] {
        for kid in [None, Some("ec-1")] {
            let mut header = json!({"alg": alg, "typ": "JWT"});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let token = raw_token(&header, &claims(), b"");
            assert!(matches!(
                refuse(&validator, &token),
                OAuthError::AlgorithmNotAllowed { alg: ref a } if a == alg
            ));
        }
    }
}

#[test]
fn hmac_keyed_with_rsa_public_key_is_refused() {
    // Algorithm confusion: an attacker signs HS256 with the RSA public
    // key PEM as the "secret", hoping the verifier uses it as an HMAC key.
    let files = Files::new();
    let rsa = rsa_key();
    let mut config = base_config();
    config.keys = vec![pem_key(
        &files,
        Some("rsa-1"),
        SigningAlgorithm::RS256,
        &rsa.public_pem,
    )];
    let validator = build_validator(&config);
    let forged_key = EncodingKey::from_secret(rsa.public_pem.as_bytes());
    for kid in [Some("rsa-1"), None] {
        let token = sign(Algorithm::HS256, kid, &claims(), &forged_key);
        assert!(matches!(
            refuse(&validator, &token),
            OAuthError::AlgorithmNotAllowed { alg } if alg == "HS256"
        ));
    }

    // Even with an HS256 key configured too, the RSA kid pins RS256.
    let mut config = base_config();
    config.keys = vec![
        pem_key(
            &files,
            Some("rsa-1"),
            SigningAlgorithm::RS256,
            &rsa.public_pem,
        ),
        hmac_key(&files, Some("hs-1"), HMAC_SECRET),
    ];
    let validator = build_validator(&config);
    let token = sign(Algorithm::HS256, Some("rsa-1"), &claims(), &forged_key);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::AlgorithmNotAllowed { .. }
    ));
    // Without kid the HS256 key is chosen, and the forged MAC fails.
    let token = sign(Algorithm::HS256, None, &claims(), &forged_key);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::BadSignature
    ));
}

#[test]
fn unsupported_algorithms_are_refused() {
    let (_files, key, validator) = es256_setup();
    // RS256 with no RS256 key configured; ES384; HS512.
    for alg in ["RS256", "ES384", "HS512", "PS256", "EdDSA"] {
        let token = raw_token(&json!({"alg": alg}), &claims(), b"sig");
        assert!(matches!(
            refuse(&validator, &token),
            OAuthError::AlgorithmNotAllowed { .. }
        ));
    }
    // ES256 token whose kid names the ES256 key but with alg RS256.
    let token = raw_token(&json!({"alg": "RS256", "kid": "ec-1"}), &claims(), b"sig");
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::AlgorithmNotAllowed { .. }
    ));
    // crit header.
    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    let header = json!({"alg": "ES256", "crit": ["exp"], "exp": 1});
    let forged = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        token
            .split_once('.')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
    );
    assert!(matches!(
        refuse(&validator, &forged),
        OAuthError::MalformedToken(_)
    ));
}

#[test]
fn unknown_kid_is_refused() {
    let (_files, key, validator) = es256_setup();
    let token = sign(
        Algorithm::ES256,
        Some("retired-key"),
        &claims(),
        &key.encoding,
    );
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::UnknownKey { kid } if kid == "retired-key"
    ));
    // A huge, hostile kid is truncated in the error.
    let long_kid = "k\n".repeat(500);
    let token = sign(Algorithm::ES256, Some(&long_kid), &claims(), &key.encoding);
    match refuse(&validator, &token) {
        OAuthError::UnknownKey { kid } => assert_eq!(kid.chars().count(), MAX_ECHO_CHARS),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn jwks_file_with_two_keys_selects_by_kid() {
    let files = Files::new();
    let rsa = rsa_key();
    let ec = ec_key();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa.encoding, Algorithm::RS256).expect("RSA JWK");
    rsa_jwk.common.key_id = Some("rsa-2024".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec.encoding, Algorithm::ES256).expect("EC JWK");
    ec_jwk.common.key_id = Some("ec-2024".into());
    // An encryption key and an unsupported algorithm are skipped.
    let mut enc_jwk = rsa_jwk.clone();
    enc_jwk.common.key_id = Some("enc".into());
    enc_jwk.common.public_key_use = Some(PublicKeyUse::Encryption);
    let mut ps_jwk = rsa_jwk.clone();
    ps_jwk.common.key_id = Some("ps".into());
    ps_jwk.common.key_algorithm = Some(KeyAlgorithm::PS256);
    let set = JwkSet {
        keys: vec![rsa_jwk, ec_jwk, enc_jwk, ps_jwk],
    };
    let mut config = base_config();
    config.jwks_file = Some(files.write("jwks.json", &serde_json::to_vec(&set).expect("JSON")));
    let validator = build_validator(&config);
    assert_eq!(validator.keys.len(), 2);

    let token = sign(Algorithm::RS256, Some("rsa-2024"), &claims(), &rsa.encoding);
    assert_payments_principal(&validator.validate(&token, now()).expect("RSA via kid"));
    let token = sign(Algorithm::ES256, Some("ec-2024"), &claims(), &ec.encoding);
    assert_payments_principal(&validator.validate(&token, now()).expect("EC via kid"));
    // Without kid: one key per algorithm, still unambiguous.
    let token = sign(Algorithm::ES256, None, &claims(), &ec.encoding);
    validator.validate(&token, now()).expect("EC without kid");
    // kid of the EC key on an RS256 token: refused before verifying.
    let token = sign(Algorithm::RS256, Some("ec-2024"), &claims(), &rsa.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::AlgorithmNotAllowed { .. }
    ));
    // Skipped keys are unknown.
    let token = sign(Algorithm::RS256, Some("enc"), &claims(), &rsa.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::UnknownKey { .. }
    ));
}

#[test]
fn two_keys_of_one_algorithm_need_a_kid() {
    let files = Files::new();
    let (first, second) = (ec_key(), ec_key());
    let mut config = base_config();
    config.keys = vec![
        pem_key(
            &files,
            Some("k1"),
            SigningAlgorithm::ES256,
            &first.public_pem,
        ),
        pem_key(
            &files,
            Some("k2"),
            SigningAlgorithm::ES256,
            &second.public_pem,
        ),
    ];
    let validator = build_validator(&config);
    let token = sign(Algorithm::ES256, Some("k2"), &claims(), &second.encoding);
    validator.validate(&token, now()).expect("k2 selected");
    let token = sign(Algorithm::ES256, Some("k1"), &claims(), &second.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::BadSignature
    ));
    let token = sign(Algorithm::ES256, None, &claims(), &second.encoding);
    assert!(matches!(
        refuse(&validator, &token),
        OAuthError::AmbiguousKey {
            alg: "ES256",
            candidates: 2
        }
    ));
}

#[test]
fn malformed_tokens() {
    let (_files, key, validator) = es256_setup();
    let good = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    let (header, rest) = good.split_once('.').expect("three parts");
    let cases = [
        String::new(),
        "abc".to_owned(),
        format!("{good}.extra.parts"),
        format!("!!!.{rest}"),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1,2]")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":7}"#)),
        format!("{header}.e30.!!!"),
        "x".repeat(MAX_MESSAGE_LEN + 1),
    ];
    for token in cases {
        assert!(
            matches!(refuse(&validator, &token), OAuthError::MalformedToken(_)),
            "{token:.40}"
        );
    }
}

// ----- configuration ------------------------------------------------

#[test]
fn config_from_toml_with_defaults() {
    let config: OAuthConfig = toml::from_str(
        r#"
        issuer = "https://idp.test"
        audience = ["gatehouse"]
        [[keys]]
        kid = "a"
        algorithm = "ES256"
        pem_file = "/etc/a.pem"
        [attribute_claims]
        team = "team"
        "#,
    )
    .expect("parses");
    assert_eq!(config.leeway_secs, 30);
    assert_eq!(config.principal_claim, "sub");
    assert_eq!(config.keys[0].algorithm, SigningAlgorithm::ES256);
    assert!(config.max_lifetime_secs.is_none());

    assert!(
        toml::from_str::<OAuthConfig>("issuer = \"i\"\naudience = [\"a\"]\nsurprise = 1\n")
            .is_err()
    );
    assert!(toml::from_str::<OAuthConfig>(
        "issuer = \"i\"\naudience = [\"a\"]\n[[keys]]\nalgorithm = \"none\"\n"
    )
    .is_err());
}

#[test]
fn bad_configurations_are_refused() {
    let files = Files::new();
    let ec = ec_key();
    let check = |mutate: &dyn Fn(&mut OAuthConfig)| {
        let mut config = base_config();
        config.keys = vec![pem_key(
            &files,
            None,
            SigningAlgorithm::ES256,
            &ec.public_pem,
        )];
        mutate(&mut config);
        OAuthValidator::from_config(&config).expect_err("configuration must be refused")
    };
    assert!(matches!(check(&|c| c.keys.clear()), OAuthError::Config(_)));
    assert!(matches!(
        check(&|c| c.audience.clear()),
        OAuthError::Config(_)
    ));
    assert!(matches!(
        check(&|c| c.issuer.clear()),
        OAuthError::Config(_)
    ));
    assert!(matches!(
        check(&|c| c.leeway_secs = 86_400),
        OAuthError::Config(_)
    ));
    // Short HMAC secret.
    let short = hmac_key(&files, Some("short"), b"too short");
    assert!(matches!(
        check(&|c| c.keys.push(short.clone())),
        OAuthError::InvalidKey { .. }
    ));
    // Wrong file kind for the algorithm.
    let mut mixed = hmac_key(&files, Some("mixed"), HMAC_SECRET);
    mixed.algorithm = SigningAlgorithm::RS256;
    assert!(matches!(
        check(&|c| c.keys.push(mixed.clone())),
        OAuthError::InvalidKey { .. }
    ));
    // EC public key configured as RS256.
    let ec_as_rsa = pem_key(
        &files,
        Some("ec-as-rsa"),
        SigningAlgorithm::RS256,
        &ec.public_pem,
    );
    assert!(matches!(
        check(&|c| c.keys.push(ec_as_rsa.clone())),
        OAuthError::InvalidKey { .. }
    ));
    // A private key instead of the public one.
    let private_pem = rcgen::KeyPair::generate().expect("key").serialize_pem();
    let private = pem_key(
        &files,
        Some("private"),
        SigningAlgorithm::ES256,
        &private_pem,
    );
    match check(&|c| c.keys.push(private.clone())) {
        OAuthError::InvalidKey { reason, .. } => assert!(reason.contains("private key")),
        other => panic!("unexpected {other:?}"),
    }
    // Duplicate kid.
    let dup = pem_key(&files, None, SigningAlgorithm::ES256, &ec.public_pem);
    assert!(matches!(
        check(&|c| {
            c.keys = vec![dup.clone(), dup.clone()];
            for k in &mut c.keys {
                k.kid = Some("same".into());
            }
        }),
        OAuthError::Config(_)
    ));
    // Missing file.
    let mut missing = dup.clone();
    missing.pem_file = Some(files.0.path().join("absent.pem"));
    assert!(matches!(
        check(&|c| c.keys.push(missing.clone())),
        OAuthError::KeyFile { .. }
    ));
}

// ----- the OAUTHBEARER message -------------------------------------

#[test]
fn parses_message_with_authzid_and_extensions() {
    let message = b"n,a=svc=2Cpayments=3D1,\x01auth=Bearer abc.def-_~+/.ghi==\x01logicalCluster=lkc-1\x01traceId=a b\tc\x01\x01";
    let response = ClientInitialResponse::parse(message).expect("valid message");
    assert_eq!(response.authzid(), Some("svc,payments=1"));
    assert_eq!(response.token(), "abc.def-_~+/.ghi==");
    assert_eq!(response.extensions().len(), 2);
    assert_eq!(response.extensions()["logicalCluster"], "lkc-1");
    assert_eq!(response.extensions()["traceId"], "a b\tc");
    assert!(!format!("{response:?}").contains("abc.def"));

    let response = ClientInitialResponse::parse(b"n,,\x01auth=bEaReR  tok\x01\x01")
        .expect("scheme is case-insensitive");
    assert_eq!(response.authzid(), None);
    assert_eq!(response.token(), "tok");
    assert!(response.extensions().is_empty());

    // auth need not come first; empty values are allowed by RFC 7628.
    let response =
        ClientInitialResponse::parse(b"n,,\x01x=\x01auth=Bearer t\x01\x01").expect("valid");
    assert_eq!(response.extensions()["x"], "");
}

#[test]
fn message_without_auth_or_with_wrong_scheme() {
    assert!(matches!(
        ClientInitialResponse::parse(b"n,,\x01\x01"),
        Err(OAuthError::MissingAuth)
    ));
    assert!(matches!(
        ClientInitialResponse::parse(b"n,,\x01ext=1\x01\x01"),
        Err(OAuthError::MissingAuth)
    ));
    for auth in [
        &b"Basic dXNlcjpwYXNz"[..],
        b"Bearertoken",
        b"eyJhbGciOi.x.y",
        b"Bearer",
    ] {
        let mut message = b"n,,\x01auth=".to_vec();
        message.extend_from_slice(auth);
        message.extend_from_slice(b"\x01\x01");
        assert!(
            matches!(
                ClientInitialResponse::parse(&message),
                Err(OAuthError::UnsupportedScheme)
            ),
            "{}",
            String::from_utf8_lossy(auth)
        );
    }
    assert!(matches!(
        ClientInitialResponse::parse(b"n,,\x01auth=Bearer \x01\x01"),
        Err(OAuthError::MalformedMessage(_))
    ));
    assert!(matches!(
        ClientInitialResponse::parse(b"n,,\x01auth=Bearer a b\x01\x01"),
        Err(OAuthError::MalformedMessage(_))
    ));
}

#[test]
fn message_with_bad_separators_or_grammar() {
    let cases: &[&[u8]] = &[
        b"",
        b"\x01",
        b",,\x01auth=Bearer t\x01\x01",                // no gs2 flag
        b"y,,\x01auth=Bearer t\x01\x01",               // channel binding flag
        b"p=tls-unique,,\x01auth=Bearer t\x01\x01",    // channel binding
        b"n,\x01auth=Bearer t\x01\x01",                // gs2 header not closed
        b"n,,auth=Bearer t\x01\x01",                   // no kvsep after gs2
        b"n,,\x01auth=Bearer t\x01",                   // one closing 0x01
        b"n,,\x01auth=Bearer t",                       // none
        b"n,,\x01auth=Bearer t\x01\x01\x01",           // three
        b"n,,\x01auth=Bearer t\x01\x01x=1\x01\x01",    // empty pair mid-message
        b"n,,\x01\x01auth=Bearer t\x01\x01",           // empty first pair
        b"n,,\x01auth=Bearer t\x01novalue\x01\x01",    // pair without '='
        b"n,,\x01=v\x01auth=Bearer t\x01\x01",         // empty key
        b"n,,\x01k1=v\x01auth=Bearer t\x01\x01",       // non-alpha key
        b"n,,\x01k=v\x00\x01auth=Bearer t\x01\x01",    // NUL in value
        b"n,,\x01k=\xc3\xa9\x01auth=Bearer t\x01\x01", // non-ASCII value
        b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01", // two auth
        b"n,,\x01k=1\x01k=2\x01auth=Bearer t\x01\x01", // duplicate key
        b"n,x=1,\x01auth=Bearer t\x01\x01",            // not "a="
        b"n,a=,\x01auth=Bearer t\x01\x01",             // empty authzid
        b"n,a=x=41,\x01auth=Bearer t\x01\x01",         // bad escape
        b"n,a=x\ty,\x01auth=Bearer t\x01\x01",         // control char
        b"n,,\x01auth=Bearer \xff\x01\x01",            // not UTF-8
    ];
    for message in cases {
        let result = ClientInitialResponse::parse(message);
        assert!(
            matches!(result, Err(OAuthError::MalformedMessage(_))),
            "{:?} gave {result:?}",
            String::from_utf8_lossy(message)
        );
    }
    assert!(is_error_acknowledgement(b"\x01"));
}

#[test]
fn oversized_message_is_refused() {
    let mut message = b"n,,\x01auth=Bearer ".to_vec();
    message.resize(MAX_MESSAGE_LEN + 1 - 2, b'a');
    message.extend_from_slice(b"\x01\x01");
    assert_eq!(message.len(), MAX_MESSAGE_LEN + 1);
    let err = ClientInitialResponse::parse(&message).expect_err("too large");
    assert!(
        matches!(err, OAuthError::MessageTooLarge { size, limit } if size == MAX_MESSAGE_LEN + 1 && limit == MAX_MESSAGE_LEN)
    );
    assert_eq!(err.error_response(), r#"{"status":"invalid_request"}"#);
    // One byte less is fine.
    message.remove(20);
    ClientInitialResponse::parse(&message).expect("at the limit");
}

#[test]
fn claimed_principal_is_read_without_verification() {
    let (_files, key, validator) = es256_setup();
    let message = |token: &str| format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes();
    // A valid token, one signed by a stranger, one expired: all claim
    // their subject.
    let good = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    assert_eq!(
        validator.claimed_principal(&message(&good)).as_deref(),
        Some("svc-payments")
    );
    let stranger = ec_key();
    let forged = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "sub", json!("admin")),
        &stranger.encoding,
    );
    assert_eq!(
        validator.claimed_principal(&message(&forged)).as_deref(),
        Some("admin")
    );
    // No subject, a non-string one, a token that is not a JWT, a
    // message that is not OAUTHBEARER: nobody.
    let unnamed = sign(
        Algorithm::ES256,
        None,
        &without(claims(), "sub"),
        &key.encoding,
    );
    let numeric = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "sub", json!(7)),
        &key.encoding,
    );
    for m in [
        message(&unnamed),
        message(&numeric),
        message("not-a-jwt"),
        message("a.%%%.c"),
        b"\0user\0password".to_vec(),
    ] {
        assert_eq!(validator.claimed_principal(&m), None);
    }
}

#[test]
fn authenticate_checks_authzid_against_principal() {
    let (_files, key, validator) = es256_setup();
    let token = sign(Algorithm::ES256, None, &claims(), &key.encoding);
    let message = |authzid: &str| {
        format!("n,{authzid},\x01auth=Bearer {token}\x01cluster=c1\x01\x01").into_bytes()
    };

    let ok = validator
        .authenticate(&message(""), now())
        .expect("no authzid");
    assert_eq!(ok.token.principal, "svc-payments");
    assert_eq!(ok.authzid, None);
    assert_eq!(ok.extensions["cluster"], "c1");

    let ok = validator
        .authenticate(&message("a=svc-payments"), now())
        .expect("matching authzid");
    assert_eq!(ok.authzid.as_deref(), Some("svc-payments"));

    let err = validator
        .authenticate(&message("a=admin"), now())
        .expect_err("authzid mismatch");
    assert!(matches!(err, OAuthError::AuthzidMismatch));

    let expired = sign(
        Algorithm::ES256,
        None,
        &with(claims(), "exp", json!(NOW - 3600)),
        &key.encoding,
    );
    let err = validator
        .authenticate(
            format!("n,,\x01auth=Bearer {expired}\x01\x01").as_bytes(),
            now(),
        )
        .expect_err("expired");
    assert_eq!(err.error_response(), r#"{"status":"invalid_token"}"#);
    assert!(!err.to_string().contains(&expired));
}
