//! Property tests of field ciphertexts, masking and their failure modes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_keys::{
    ciphertext_key_id, decrypt_field_into, encrypt_field_into, mask_into, DataKey, FieldBinding,
    KeyError, KeyId, CIPHERTEXT_PREFIX,
};
use proptest::prelude::*;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Raw bytes inside a token.
fn raw_of(token: &[u8]) -> Vec<u8> {
    let body = &token[1 + CIPHERTEXT_PREFIX.len()..token.len() - 1];
    URL_SAFE_NO_PAD.decode(body).unwrap_or_default()
}

fn token_of(raw: &[u8]) -> Vec<u8> {
    format!("\"{CIPHERTEXT_PREFIX}{}\"", URL_SAFE_NO_PAD.encode(raw)).into_bytes()
}

/// Subject of every ciphertext these tests make, unless a test says otherwise.
const SUBJECT: &str = "u-000042";

fn bound<'a>(topic: &'a str, path: &'a str) -> FieldBinding<'a> {
    FieldBinding {
        topic,
        path,
        subject: SUBJECT,
    }
}

fn encrypt(key: &DataKey, topic: &str, path: &str, pt: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = b"prefix:".to_vec();
    encrypt_field_into(key, &bound(topic, path), pt, &mut out)?;
    Ok(out.split_off(7))
}

/// Decryption must fail and leave `out` untouched.
fn fails_closed(key: &DataKey, topic: &str, path: &str, token: &[u8]) -> bool {
    let mut out = b"keep".to_vec();
    let failed = decrypt_field_into(key, &bound(topic, path), token, &mut out).is_err();
    failed && out == b"keep"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip(v in json_value(), topic in ".{0,20}", path in ".{0,20}") {
        let key = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = encrypt(&key, &topic, &path, &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // The token is a JSON string holding gh1.<base64url>.
        let s: String = serde_json::from_slice(&token).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(s.starts_with(CIPHERTEXT_PREFIX));
        prop_assert_eq!(ciphertext_key_id(&token).ok(), Some(key.id()));
        let mut out = b"x".to_vec();
        decrypt_field_into(&key, &bound(&topic, &path), &token, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&out[1..], &pt[..]);
    }

    #[test]
    fn any_flipped_byte_fails(v in json_value(), idx in any::<prop::sample::Index>(), bit in 0u8..8) {
        let key = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = encrypt(&key, "t", "$.f", &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut raw = raw_of(&token);
        let i = idx.index(raw.len());
        raw[i] ^= 1 << bit;
        prop_assert!(fails_closed(&key, "t", "$.f", &token_of(&raw)));
    }

    #[test]
    fn any_flipped_char_fails(v in json_value(), idx in any::<prop::sample::Index>(), c in any::<u8>()) {
        let key = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut token = encrypt(&key, "t", "$.f", &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let i = idx.index(token.len());
        prop_assume!(token[i] != c);
        token[i] = c;
        prop_assert!(fails_closed(&key, "t", "$.f", &token));
    }

    #[test]
    fn truncated_fails(v in json_value(), idx in any::<prop::sample::Index>()) {
        let key = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = encrypt(&key, "t", "$.f", &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let raw = raw_of(&token);
        let cut = idx.index(raw.len());
        prop_assert!(fails_closed(&key, "t", "$.f", &token_of(&raw[..cut])));
    }

    #[test]
    fn wrong_key_topic_path_or_id_fails(v in json_value(), topic in "[a-z]{1,8}", path in "[a-z.$]{1,8}") {
        let key = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let other = DataKey::generate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = encrypt(&key, &topic, &path, &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(fails_closed(&other, &topic, &path, &token));
        let other_topic = format!("{topic}x");
        let other_path = format!("{path}x");
        prop_assert!(fails_closed(&key, &other_topic, &path, &token));
        prop_assert!(fails_closed(&key, &topic, &other_path, &token));
        // Moving one character from topic to path keeps the concatenation: must still fail.
        let moved_topic = &topic[..topic.len() - 1];
        let moved_path = format!("{}{path}", &topic[topic.len() - 1..]);
        prop_assert!(fails_closed(&key, moved_topic, &moved_path, &token));
        // The same topic and path in another subject's record.
        let mut out = Vec::new();
        let elsewhere = FieldBinding { topic: &topic, path: &path, subject: "u-000007" };
        prop_assert!(decrypt_field_into(&key, &elsewhere, &token, &mut out).is_err());
        prop_assert!(out.is_empty());
    }

    #[test]
    fn changed_key_id_fails(v in json_value(), new_id in any::<[u8; 16]>()) {
        // Same key bytes under another id: the id is bound by the associated data.
        let material = [7u8; 32];
        let key = DataKey::from_bytes(KeyId([1; 16]), &material).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assume!(new_id != [1; 16]);
        let renamed = DataKey::from_bytes(KeyId(new_id), &material).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let pt = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let token = encrypt(&key, "t", "p", &pt).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut raw = raw_of(&token);
        raw[1..17].copy_from_slice(&new_id);
        let forged = token_of(&raw);
        prop_assert_eq!(ciphertext_key_id(&forged).ok(), Some(KeyId(new_id)));
        prop_assert!(fails_closed(&renamed, "t", "p", &forged));
        prop_assert!(fails_closed(&key, "t", "p", &forged));
    }

    #[test]
    fn arbitrary_tokens_never_panic(token in prop::collection::vec(any::<u8>(), 0..200)) {
        let key = DataKey::from_bytes(KeyId([0; 16]), &[0u8; 32]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = ciphertext_key_id(&token);
        prop_assert!(fails_closed(&key, "t", "p", &token));
    }

    #[test]
    fn mask_never_panics_and_writes_json(
        category in prop_oneof![
            Just("email".to_owned()), Just("phone".to_owned()), Just("name".to_owned()),
            Just("handle".to_owned()), Just("ip".to_owned()), Just("location".to_owned()),
            Just("date".to_owned()), Just("address".to_owned()), Just("free_text".to_owned()),
            ".{0,10}",
        ],
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            ".*".prop_map(|s| serde_json::to_vec(&s).unwrap_or_default()),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        ],
    ) {
        let mut out = b"[".to_vec();
        mask_into(&category, &input, &mut out);
        out.push(b']');
        let parsed: Result<Value, _> = serde_json::from_slice(&out);
        prop_assert!(parsed.is_ok(), "invalid JSON {:?}", String::from_utf8_lossy(&out));
    }
}

fn masked(category: &str, input: &str) -> String {
    let mut out = Vec::new();
    mask_into(category, input.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn mask_examples() {
    assert_eq!(
        masked("email", r#""jane.doe@example.com""#),
        r#""j***@example.com""#
    );
    assert_eq!(
        masked("phone", r#""+33 6 12 34 56 78""#),
        r#""+** * ** ** ** 78""#
    );
    assert_eq!(masked("name", r#""Jane Doe""#), r#""J. D.""#);
    assert_eq!(masked("handle", r#""@janedoe""#), r#""@j***""#);
    assert_eq!(masked("ip", r#""203.0.113.42""#), r#""203.0.113.0""#);
    assert_eq!(
        masked("ip", r#""2001:db8:85a3:8d3:1319:8a2e:370:7348""#),
        r#""2001:db8:85a3::""#
    );
    assert_eq!(
        masked("location", r#"{"lat":48.8566,"lon":2.3522}"#),
        r#"{"lat":48.9,"lon":2.4}"#
    );
    assert_eq!(masked("location", r#""Paris""#), r#""***""#);
    assert_eq!(masked("date", r#""1990-04-12""#), r#""1990-**-**""#);
    assert_eq!(masked("address", r#""1 rue de Rivoli""#), r#""[redacted]""#);
    assert_eq!(masked("free_text", r#""hello""#), r#""[redacted]""#);
    assert_eq!(masked("unknown", r#""hello""#), r#""[redacted]""#);
    assert_eq!(masked("email", "42"), r#""[redacted]""#);
    assert_eq!(masked("name", r#"{"a":1}"#), r#""[redacted]""#);
    // Non-ASCII.
    assert_eq!(masked("name", r#""Élodie Ødegård""#), r#""É. Ø.""#);
    assert_eq!(
        masked("email", r#""ñandú@correo.es""#),
        r#""ñ***@correo.es""#
    );
    assert_eq!(masked("handle", r#""@ßeta""#), r#""@ß***""#);
}

#[test]
fn not_ciphertext_and_malformed() -> TestResult {
    assert!(matches!(
        ciphertext_key_id(br#""hello""#),
        Err(KeyError::NotCiphertext)
    ));
    assert!(matches!(
        ciphertext_key_id(b"42"),
        Err(KeyError::NotCiphertext)
    ));
    assert!(matches!(
        ciphertext_key_id(br#""gh1.abc""#),
        Err(KeyError::Malformed(_))
    ));
    let key = DataKey::generate()?;
    let token = encrypt(&key, "t", "p", br#""v""#)?;
    let mut raw = raw_of(&token);
    // Version 1 (not bound to a subject) and unknown versions are refused.
    for version in [1, 3, 0xff] {
        raw[0] = version;
        assert!(matches!(
            ciphertext_key_id(&token_of(&raw)),
            Err(KeyError::Malformed(_))
        ));
        let mut out = Vec::new();
        assert!(decrypt_field_into(&key, &bound("t", "p"), &token_of(&raw), &mut out).is_err());
    }
    // Whitespace around the token is tolerated.
    let mut spaced = b"  ".to_vec();
    spaced.extend_from_slice(&token);
    assert_eq!(ciphertext_key_id(&spaced)?, key.id());
    Ok(())
}

#[test]
fn errors_and_debug_do_not_leak() -> TestResult {
    let key = DataKey::from_bytes(KeyId([9; 16]), &[0xAB; 32])?;
    let dbg = format!("{key:?}");
    assert!(
        !dbg.contains("171") && !dbg.to_lowercase().contains("abab"),
        "{dbg}"
    );
    assert!(dbg.contains("redacted"));
    let token = encrypt(&key, "t", "p", br#""secret-plaintext""#)?;
    let other = DataKey::generate()?;
    let mut out = Vec::new();
    let err = decrypt_field_into(&other, &bound("t", "p"), &token, &mut out)
        .err()
        .ok_or("decrypt should fail")?;
    assert!(!err.to_string().contains("secret-plaintext"));
    Ok(())
}

#[test]
fn key_id_text() -> TestResult {
    let id = KeyId([0x0f; 16]);
    assert_eq!(id.to_string(), "0f".repeat(16));
    assert_eq!("0f".repeat(16).parse::<KeyId>()?, id);
    assert!("0F".repeat(16).parse::<KeyId>().is_err());
    assert!("0f".repeat(15).parse::<KeyId>().is_err());
    Ok(())
}
