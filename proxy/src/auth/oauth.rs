//! SASL/OAUTHBEARER ([RFC 7628], Kafka [KIP-255]) with JWT bearer tokens.
//!
//! # The flow
//!
//! ```text
//!  client initial response ──▶ ClientInitialResponse::parse ──▶ token, authzid, extensions
//!                                                                 │
//!  OAuthValidator::validate ◀─────────────────────────────────────┘
//!    1. shape: three base64url parts (JWS compact serialization)
//!    2. header: `alg` must be RS256 / ES256 / HS256 and used by a configured key;
//!       `crit` is refused
//!    3. key: `kid` selects the key; without `kid`, the only key for `alg`
//!    4. header `alg` must equal the selected key's algorithm
//!    5. signature (jsonwebtoken, pinned to that one algorithm)
//!    6. claims: iss, aud, sub, exp required; nbf / iat / lifetime checked
//!       against the caller's clock; configured required claims present
//!    7. principal and attributes taken from the configured claims
//!  authzid (if the client sent one) must equal the principal
//! ```
//!
//! [`OAuthValidator::authenticate`] runs the whole flow on the raw SASL bytes;
//! [`ClientInitialResponse::parse`] and [`OAuthValidator::validate`] are the
//! two halves on their own.
//!
//! # Message format
//!
//! ```text
//! n,[a=<authzid>],\x01auth=Bearer <token>\x01[key=value\x01]...\x01
//! ```
//!
//! The parser follows the RFC 7628 grammar strictly: only the `n` GS2 flag
//! (OAUTHBEARER has no channel binding), an optional `a=` authzid with the
//! `=2C` / `=3D` escapes, keys of ASCII letters, values of printable ASCII,
//! space, tab, CR and LF, exactly one `auth` pair, no duplicate keys, and the
//! two closing `0x01` bytes. The `auth` scheme is matched case-insensitively
//! and the token must be an RFC 6750 `b64token`. Messages longer than
//! [`MAX_MESSAGE_LEN`] are refused before anything else is looked at.
//!
//! # Security choices
//!
//! - **Keys come only from configuration.** Header parameters that point at
//!   keys (`jku`, `jwk`, `x5u`, `x5c`) are ignored; nothing is fetched.
//! - **One algorithm per key.** Every key carries exactly one algorithm. The
//!   token's `alg` is compared with the selected key's algorithm *before*
//!   any cryptography, and the verifier is pinned to it, so `alg: none`, an
//!   HMAC signature "keyed" with an RSA public key (algorithm confusion) or
//!   any other algorithm switch is refused. HMAC is only ever used with a
//!   secret configured as an `HS256` key (at least 32 bytes).
//! - **Unambiguous key choice.** A token `kid` must name a configured key;
//!   there is no fallback to "try every key". Without `kid`, exactly one key
//!   may accept the algorithm.
//! - **Keys are checked at start-up:** public keys only (a private key or a
//!   certificate PEM is refused with a hint), RSA 2048–8192 bits, EC on
//!   P-256, duplicate `kid`s refused.
//! - **Claims.** `iss` must be a string equal to the configured issuer, at
//!   least one `aud` must be configured, `sub` and `exp` must be present.
//!   Time checks use the `now` passed in (testable, one clock for the whole
//!   connection) with a leeway of at most [`MAX_LEEWAY_SECS`]; `iat` in the
//!   future is refused like `nbf` in the future; `max_lifetime_secs` bounds
//!   `exp - iat` (and then requires `iat`). A configured attribute claim of
//!   the wrong type is an error rather than silently dropped, because
//!   authorization decisions hang on it.
//! - **Errors never contain the token.** Strings taken from an unverified
//!   token (`alg`, `kid`) are truncated and escaped before they are put in
//!   an error. The token is held in [`zeroize::Zeroizing`] memory and the
//!   `Debug` output of [`ClientInitialResponse`] redacts it.
//! - **JWE is not supported**: a five-part token is malformed. Header
//!   parameters other than the registered ones must be strings (a
//!   jsonwebtoken limitation); other tokens are refused as malformed.
//!
//! [RFC 7628]: https://www.rfc-editor.org/rfc/rfc7628
//! [KIP-255]: https://cwiki.apache.org/confluence/display/KAFKA/KIP-255%3A+OAuth+Authentication+via+SASL%2FOAUTHBEARER

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The largest client initial response accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// The largest clock-skew leeway the configuration may ask for, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 600;

/// The smallest HS256 secret accepted, in bytes (RFC 7518 §3.2).
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// How much of an attacker-controlled string (`alg`, `kid`) goes into an error.
const MAX_ECHO_CHARS: usize = 64;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why configuration, an OAUTHBEARER message or a token was refused.
///
/// No variant ever carries the bearer token. Values read from an unverified
/// token header are truncated to 64 characters and shown escaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The OAuth configuration is inconsistent (start-up error).
    #[error("invalid OAuth configuration: {0}")]
    Config(String),
    /// A key or JWKS file could not be read (start-up error).
    #[error("cannot read {}: {source}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A configured key is unusable (start-up error).
    #[error("invalid key {key}: {reason}")]
    InvalidKey {
        /// Which key: `keys[i]` or `jwks_file key #i`, plus its `kid`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The client initial response is longer than [`MAX_MESSAGE_LEN`].
    #[error("OAUTHBEARER message of {size} bytes exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// The message length.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The client initial response does not follow the RFC 7628 grammar.
    #[error("malformed OAUTHBEARER message: {0}")]
    MalformedMessage(&'static str),
    /// The client initial response has no `auth` key/value pair.
    #[error("OAUTHBEARER message has no auth key/value pair")]
    MissingAuth,
    /// The `auth` value does not use the `Bearer` scheme.
    #[error("OAUTHBEARER auth scheme is not Bearer")]
    UnsupportedScheme,
    /// The client asked to act as an authorization id other than the
    /// token's principal.
    #[error("the authorization id does not match the token's principal")]
    AuthzidMismatch,

    /// The token is not a well-formed JWS / JWT.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// The token names a key id that is not configured.
    #[error("no configured key has the token's key id {kid:?}")]
    UnknownKey {
        /// The token's `kid` (truncated, unverified).
        kid: String,
    },
    /// The token has no key id and several configured keys accept its
    /// algorithm.
    #[error("the token has no key id and {candidates} configured keys accept {alg}")]
    AmbiguousKey {
        /// The token's algorithm.
        alg: &'static str,
        /// How many keys accept it.
        candidates: usize,
    },
    /// The token's algorithm is not accepted (not configured at all, or not
    /// the algorithm of the key its `kid` selects). Covers `alg: none`.
    #[error("token algorithm {alg:?} is not allowed here")]
    AlgorithmNotAllowed {
        /// The token's `alg` (truncated, unverified).
        alg: String,
    },
    /// The signature does not verify with the selected key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` (plus leeway) has passed.
    #[error("token expired (exp {exp}, now {now})")]
    Expired {
        /// The token's `exp`, seconds since the epoch.
        exp: u64,
        /// The validation time, seconds since the epoch.
        now: u64,
    },
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("token not valid yet ({claim} {at}, now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value, seconds since the epoch.
        at: u64,
        /// The validation time, seconds since the epoch.
        now: u64,
    },
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// No `aud` value is a configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim is absent (or null).
    #[error("token lacks the required claim {claim:?}")]
    MissingClaim {
        /// The claim name.
        claim: String,
    },
    /// A claim has the wrong type or an impossible value.
    #[error("token claim {claim:?} {reason}")]
    InvalidClaim {
        /// The claim name.
        claim: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `exp - iat` exceeds `max_lifetime_secs`.
    #[error("token lifetime of {lifetime_secs}s exceeds the {max_secs}s maximum")]
    LifetimeTooLong {
        /// `exp - iat`.
        lifetime_secs: u64,
        /// The configured maximum.
        max_secs: u64,
    },
    /// The validation time lies before 1970; no token can be judged.
    #[error("the validation clock is before the Unix epoch")]
    InvalidClock,
}

impl OAuthError {
    /// The RFC 7628 §3.2.2 / RFC 6750 `status` for the server's error
    /// challenge: `invalid_request` for a malformed message, `invalid_token`
    /// otherwise.
    pub fn status(&self) -> &'static str {
        match self {
            Self::MessageTooLarge { .. }
            | Self::MalformedMessage(_)
            | Self::MissingAuth
            | Self::UnsupportedScheme
            | Self::AuthzidMismatch => "invalid_request",
            _ => "invalid_token",
        }
    }

    /// The JSON error challenge sent to the client (RFC 7628 §3.2.2), e.g.
    /// `{"status":"invalid_token"}`. The client answers it with a single
    /// `0x01` (see [`is_error_acknowledgement`]) and the exchange fails.
    pub fn error_response(&self) -> String {
        format!(r#"{{"status":"{}"}}"#, self.status())
    }
}

/// Whether a client message is the `0x01` a client sends to acknowledge a
/// server error challenge (RFC 7628 §3.2.3).
pub fn is_error_acknowledgement(message: &[u8]) -> bool {
    message == [0x01]
}

/// A truncated copy of an untrusted string for an error (the error's
/// `Display` shows it with `{:?}`, escaping control characters).
fn echo(untrusted: &str) -> String {
    untrusted.chars().take(MAX_ECHO_CHARS).collect()
}

// ---------------------------------------------------------------------------
// The client initial response
// ---------------------------------------------------------------------------

/// A parsed OAUTHBEARER client initial response.
///
/// `Debug` shows the authzid and extensions but never the token.
pub struct ClientInitialResponse {
    authzid: Option<String>,
    token: Zeroizing<String>,
    extensions: BTreeMap<String, String>,
}

impl fmt::Debug for ClientInitialResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientInitialResponse")
            .field("authzid", &self.authzid)
            .field("token", &"[redacted]")
            .field("extensions", &self.extensions)
            .finish()
    }
}

impl ClientInitialResponse {
    /// Parses a client initial response (see the [module docs](self) for
    /// the grammar).
    pub fn parse(message: &[u8]) -> Result<Self, OAuthError> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(OAuthError::MessageTooLarge {
                size: message.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let text = std::str::from_utf8(message)
            .map_err(|_| OAuthError::MalformedMessage("not valid UTF-8"))?;

        // GS2 header: "n," [ "a=" saslname ] ","
        let after_flag = match text.strip_prefix("n,") {
            Some(rest) => rest,
            None if text.starts_with("y,") || text.starts_with("p=") => {
                return Err(OAuthError::MalformedMessage(
                    "channel binding is not supported by OAUTHBEARER",
                ))
            }
            None => {
                return Err(OAuthError::MalformedMessage(
                    "missing GS2 header (expected \"n,\")",
                ))
            }
        };
        let (authzid_part, after_gs2) = after_flag
            .split_once(',')
            .ok_or(OAuthError::MalformedMessage("unterminated GS2 header"))?;
        let authzid = if authzid_part.is_empty() {
            None
        } else {
            let name = authzid_part
                .strip_prefix("a=")
                .ok_or(OAuthError::MalformedMessage(
                    "GS2 header authzid must start with \"a=\"",
                ))?;
            Some(decode_saslname(name)?)
        };

        // kvsep *kvpair kvsep, every kvpair ending in kvsep.
        let body = after_gs2
            .strip_prefix('\x01')
            .ok_or(OAuthError::MalformedMessage(
                "expected 0x01 after the GS2 header",
            ))?;
        let pairs = body
            .strip_suffix('\x01')
            .ok_or(OAuthError::MalformedMessage(
                "message must end with 0x01 0x01",
            ))?;

        let mut token = None;
        let mut extensions = BTreeMap::new();
        if !pairs.is_empty() {
            let pairs = pairs
                .strip_suffix('\x01')
                .ok_or(OAuthError::MalformedMessage(
                    "message must end with 0x01 0x01",
                ))?;
            for pair in pairs.split('\x01') {
                if pair.is_empty() {
                    return Err(OAuthError::MalformedMessage(
                        "empty key/value pair (unexpected 0x01)",
                    ));
                }
                let (key, value) = pair
                    .split_once('=')
                    .ok_or(OAuthError::MalformedMessage("key/value pair without '='"))?;
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(OAuthError::MalformedMessage(
                        "key must be one or more ASCII letters",
                    ));
                }
                if !value.bytes().all(is_value_byte) {
                    return Err(OAuthError::MalformedMessage(
                        "value contains a character outside VCHAR / SP / HTAB / CR / LF",
                    ));
                }
                if key == "auth" {
                    if token.is_some() {
                        return Err(OAuthError::MalformedMessage(
                            "more than one auth key/value pair",
                        ));
                    }
                    token = Some(parse_auth_value(value)?);
                } else if extensions
                    .insert(key.to_owned(), value.to_owned())
                    .is_some()
                {
                    return Err(OAuthError::MalformedMessage("duplicate extension key"));
                }
            }
        }

        let token = token.ok_or(OAuthError::MissingAuth)?;
        Ok(Self {
            authzid,
            token,
            extensions,
        })
    }

    /// The authorization id from the GS2 header, unescaped.
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }

    /// The bearer token. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The SASL extensions (every key/value pair except `auth`).
    pub fn extensions(&self) -> &BTreeMap<String, String> {
        &self.extensions
    }
}

/// RFC 7628 `value = *(VCHAR / SP / HTAB / CR / LF)`.
fn is_value_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n')
}

/// `Bearer 1*SP b64token`, the scheme case-insensitive.
fn parse_auth_value(value: &str) -> Result<Zeroizing<String>, OAuthError> {
    let (scheme, rest) = value.split_once(' ').ok_or(OAuthError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(OAuthError::UnsupportedScheme);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(OAuthError::MalformedMessage("empty bearer token"));
    }
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let body_ok = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !body_ok {
        return Err(OAuthError::MalformedMessage(
            "bearer token is not an RFC 6750 b64token",
        ));
    }
    Ok(Zeroizing::new(token.to_owned()))
}

/// RFC 5801 `saslname`: UTF-8 without NUL, ',' or '=' except as `=2C` /
/// `=3D`. Control characters are refused as well.
fn decode_saslname(name: &str) -> Result<String, OAuthError> {
    if name.is_empty() {
        return Err(OAuthError::MalformedMessage("empty authzid"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if c == '=' {
            if let Some(tail) = rest.strip_prefix("=2C") {
                out.push(',');
                rest = tail;
            } else if let Some(tail) = rest.strip_prefix("=3D") {
                out.push('=');
                rest = tail;
            } else {
                return Err(OAuthError::MalformedMessage(
                    "authzid has '=' not followed by 2C or 3D",
                ));
            }
            continue;
        }
        if c.is_control() {
            return Err(OAuthError::MalformedMessage(
                "authzid contains a control character",
            ));
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// The signature algorithms Gatehouse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA public key, 2048–8192 bits).
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// HMAC with SHA-256 (shared secret of at least 32 bytes).
    HS256,
}

impl SigningAlgorithm {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::HS256 => "HS256",
        }
    }

    fn from_jws(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            "HS256" => Some(Self::HS256),
            _ => None,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::RS256 => Algorithm::RS256,
            Self::ES256 => Algorithm::ES256,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One verification key given directly in the configuration.
///
/// ```toml
/// [[oauth.keys]]
/// kid = "2024-rsa"
/// algorithm = "RS256"
/// pem_file = "/etc/gatehouse/idp-rsa.pub.pem"
///
/// [[oauth.keys]]
/// algorithm = "HS256"
/// secret_file = "/etc/gatehouse/hmac.secret"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their `kid` header.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub algorithm: SigningAlgorithm,
    /// RS256 / ES256: a PEM public key (`PUBLIC KEY`, or `RSA PUBLIC KEY`
    /// for RS256).
    #[serde(default)]
    pub pem_file: Option<PathBuf>,
    /// HS256: the raw secret, used byte for byte (a trailing newline is
    /// part of the secret). At least [`MIN_HMAC_SECRET_LEN`] bytes.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// OAUTHBEARER token validation settings.
///
/// ```toml
/// [oauth]
/// jwks_file = "/etc/gatehouse/jwks.json"
/// issuer = "https://idp.example.com/realms/data"
/// audience = ["gatehouse"]
/// leeway_secs = 30
/// required_claims = ["team"]
/// principal_claim = "sub"
/// max_lifetime_secs = 3600
///
/// [oauth.attribute_claims]
/// team = "team"
/// region = "region"
/// purposes = "purposes"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// A JWKS (RFC 7517 key set) file. Keys with `use: "enc"` or an
    /// algorithm other than RS256 / ES256 / HS256 are skipped (logged);
    /// RSA and P-256 EC keys without `alg` default to RS256 / ES256;
    /// symmetric (`oct`) keys must say `alg: "HS256"`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Keys given one by one.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The only accepted `iss`.
    pub issuer: String,
    /// Accepted audiences; at least one token `aud` value must be listed.
    pub audience: Vec<String>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, at most
    /// [`MAX_LEEWAY_SECS`].
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Claims that must be present (non-null), beyond `exp`, `iss`, `aud`
    /// and `sub`, which always are.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The claim holding the principal name (a non-empty string).
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Principal attribute name → top-level claim name. The claim may be a
    /// string or an array of strings; an absent claim gives no attribute,
    /// any other type refuses the token.
    #[serde(default)]
    pub attribute_claims: BTreeMap<String, String>,
    /// Refuse tokens whose `exp - iat` is longer (and then require `iat`).
    #[serde(default)]
    pub max_lifetime_secs: Option<u64>,
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_principal_claim() -> String {
    "sub".to_owned()
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// A principal attribute value taken from a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// A string claim.
    String(String),
    /// An array-of-strings claim.
    List(Vec<String>),
}

/// A token that passed every check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidatedToken {
    /// The value of the principal claim.
    pub principal: String,
    /// The configured attributes present in the token.
    pub attributes: BTreeMap<String, AttributeValue>,
    /// The token's `exp` (without leeway): the session must re-authenticate
    /// or end by then.
    pub expires_at: SystemTime,
    /// All claims, verified.
    pub claims: Map<String, Value>,
}

/// The result of a complete OAUTHBEARER authentication.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Authenticated {
    /// The validated token.
    pub token: ValidatedToken,
    /// The authzid the client sent (equal to the principal), if any.
    pub authzid: Option<String>,
    /// The SASL extensions the client sent (not validated here).
    pub extensions: BTreeMap<String, String>,
}

#[derive(Debug)]
struct VerificationKey {
    /// `keys[i]` / `jwks_file key #i`, for messages.
    label: String,
    kid: Option<String>,
    algorithm: SigningAlgorithm,
    key: DecodingKey,
    /// jsonwebtoken settings pinned to `algorithm`.
    validation: Validation,
}

/// Validates OAUTHBEARER messages and their JWTs against configured keys.
///
/// Build it once with [`OAuthValidator::from_config`]; it is immutable and
/// can be shared between connections.
#[derive(Debug)]
pub struct OAuthValidator {
    keys: Vec<VerificationKey>,
    issuer: String,
    leeway_secs: u64,
    required_claims: Vec<String>,
    principal_claim: String,
    attribute_claims: BTreeMap<String, String>,
    max_lifetime_secs: Option<u64>,
}

impl OAuthValidator {
    /// Checks the configuration and loads every key (reading the files).
    pub fn from_config(config: &OAuthConfig) -> Result<Self, OAuthError> {
        if config.issuer.is_empty() {
            return Err(OAuthError::Config("issuer must not be empty".into()));
        }
        if config.audience.is_empty() || config.audience.iter().any(String::is_empty) {
            return Err(OAuthError::Config(
                "audience must list at least one non-empty value".into(),
            ));
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(OAuthError::Config(format!(
                "leeway_secs is {}, at most {MAX_LEEWAY_SECS} is allowed",
                config.leeway_secs
            )));
        }
        if config.principal_claim.is_empty() {
            return Err(OAuthError::Config(
                "principal_claim must not be empty".into(),
            ));
        }
        if config.required_claims.iter().any(String::is_empty) {
            return Err(OAuthError::Config(
                "required_claims has an empty name".into(),
            ));
        }
        if let Some((attr, _)) = config
            .attribute_claims
            .iter()
            .find(|(attr, claim)| attr.is_empty() || claim.is_empty())
        {
            return Err(OAuthError::Config(format!(
                "attribute_claims entry {attr:?} has an empty name"
            )));
        }
        if config.max_lifetime_secs == Some(0) {
            return Err(OAuthError::Config(
                "max_lifetime_secs must be positive".into(),
            ));
        }

        let mut keys = Vec::new();
        if let Some(path) = &config.jwks_file {
            load_jwks(path, config, &mut keys)?;
        }
        for (i, key) in config.keys.iter().enumerate() {
            keys.push(load_key_config(i, key, config)?);
        }
        if keys.is_empty() {
            return Err(OAuthError::Config(
                "no usable verification key (set jwks_file or keys)".into(),
            ));
        }
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                if let Some(other) = keys[..i].iter().find(|k| k.kid.as_ref() == Some(kid)) {
                    return Err(OAuthError::Config(format!(
                        "kid {kid:?} is used by both {} and {}",
                        other.label, key.label
                    )));
                }
            }
        }

        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            leeway_secs: config.leeway_secs,
            required_claims: config.required_claims.clone(),
            principal_claim: config.principal_claim.clone(),
            attribute_claims: config.attribute_claims.clone(),
            max_lifetime_secs: config.max_lifetime_secs,
        })
    }

    /// Parses a client initial response, validates its token and checks
    /// that an authzid, if sent, equals the token's principal.
    pub fn authenticate(
        &self,
        message: &[u8],
        now: SystemTime,
    ) -> Result<Authenticated, OAuthError> {
        let response = ClientInitialResponse::parse(message)?;
        let token = self.validate(response.token(), now)?;
        if let Some(authzid) = response.authzid() {
            if authzid != token.principal {
                return Err(OAuthError::AuthzidMismatch);
            }
        }
        let ClientInitialResponse {
            authzid,
            extensions,
            ..
        } = response;
        Ok(Authenticated {
            token,
            authzid,
            extensions,
        })
    }

    /// The principal a client initial response *claims*, read from its
    /// token's payload without verifying anything: for the record of a
    /// refused attempt only, never for a decision. `None` if the message or
    /// the token does not parse or carries no string principal claim. The
    /// token itself is never returned or kept.
    pub fn claimed_principal(&self, message: &[u8]) -> Option<String> {
        let response = ClientInitialResponse::parse(message).ok()?;
        let mut parts = response.token().split('.');
        let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(payload), Some(_), None) => payload,
            _ => return None,
        };
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(payload).ok()?);
        let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
        match claims.get(&self.principal_claim) {
            Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
            _ => None,
        }
    }

    /// Validates a JWT as of `now` (see the [module docs](self) for the
    /// checks and their order).
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<ValidatedToken, OAuthError> {
        if token.len() > MAX_MESSAGE_LEN {
            return Err(OAuthError::MalformedToken("token is too long"));
        }
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| OAuthError::InvalidClock)?
            .as_secs();

        let mut parts = token.split('.');
        let header_b64 = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(header), Some(_), Some(_), None) => header,
            _ => {
                return Err(OAuthError::MalformedToken(
                    "expected three dot-separated parts (JWS compact serialization)",
                ))
            }
        };
        let (algorithm, kid) = read_header(header_b64)?;
        let key = self.select_key(&algorithm, kid.as_deref())?;

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
            .map_err(|e| map_jwt_error(e.into_kind(), key.algorithm))?;
        self.check_claims(data.claims, now_secs)
    }

    /// Chooses the key for a token header, refusing any algorithm mismatch.
    fn select_key(&self, alg: &str, kid: Option<&str>) -> Result<&VerificationKey, OAuthError> {
        let not_allowed = || OAuthError::AlgorithmNotAllowed { alg: echo(alg) };
        let algorithm = SigningAlgorithm::from_jws(alg).ok_or_else(not_allowed)?;
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid))
                    .ok_or_else(|| OAuthError::UnknownKey { kid: echo(kid) })?;
                if key.algorithm != algorithm {
                    return Err(not_allowed());
                }
                Ok(key)
            }
            None => {
                let mut candidates = self.keys.iter().filter(|k| k.algorithm == algorithm);
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => Ok(key),
                    (None, _) => Err(not_allowed()),
                    (Some(_), Some(_)) => Err(OAuthError::AmbiguousKey {
                        alg: algorithm.as_str(),
                        candidates: 2 + candidates.count(),
                    }),
                }
            }
        }
    }

    /// The checks after the signature (and iss / aud / sub / exp presence)
    /// were verified by jsonwebtoken.
    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: u64,
    ) -> Result<ValidatedToken, OAuthError> {
        // jsonwebtoken accepts an array `iss`; RFC 7519 says StringOrURI.
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(_)) => return Err(OAuthError::WrongIssuer),
            Some(_) => {
                return Err(OAuthError::InvalidClaim {
                    claim: "iss".into(),
                    reason: "must be a string",
                })
            }
            None => {
                return Err(OAuthError::MissingClaim {
                    claim: "iss".into(),
                })
            }
        }

        let leeway = self.leeway_secs;
        let exp = numeric_date(&claims, "exp")?.ok_or_else(|| OAuthError::MissingClaim {
            claim: "exp".into(),
        })?;
        if now >= exp.saturating_add(leeway) {
            return Err(OAuthError::Expired { exp, now });
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")? {
            if nbf > now.saturating_add(leeway) {
                return Err(OAuthError::NotYetValid {
                    claim: "nbf",
                    at: nbf,
                    now,
                });
            }
        }
        let iat = numeric_date(&claims, "iat")?;
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(OAuthError::NotYetValid {
                    claim: "iat",
                    at: iat,
                    now,
                });
            }
        }
        if let Some(max_secs) = self.max_lifetime_secs {
            let iat = iat.ok_or_else(|| OAuthError::MissingClaim {
                claim: "iat".into(),
            })?;
            let lifetime_secs = exp.saturating_sub(iat);
            if lifetime_secs > max_secs {
                return Err(OAuthError::LifetimeTooLong {
                    lifetime_secs,
                    max_secs,
                });
            }
        }
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or_else(|| OAuthError::InvalidClaim {
                claim: "exp".into(),
                reason: "is out of range",
            })?;

        for claim in &self.required_claims {
            if claims.get(claim).is_none_or(Value::is_null) {
                return Err(OAuthError::MissingClaim {
                    claim: claim.clone(),
                });
            }
        }

        let principal = match claims.get(&self.principal_claim) {
            Some(Value::String(p)) if !p.is_empty() => p.clone(),
            None | Some(Value::Null) => {
                return Err(OAuthError::MissingClaim {
                    claim: self.principal_claim.clone(),
                })
            }
            Some(_) => {
                return Err(OAuthError::InvalidClaim {
                    claim: self.principal_claim.clone(),
                    reason: "must be a non-empty string (it names the principal)",
                })
            }
        };

        let mut attributes = BTreeMap::new();
        for (attribute, claim) in &self.attribute_claims {
            let invalid = || OAuthError::InvalidClaim {
                claim: claim.clone(),
                reason: "must be a string or an array of strings",
            };
            let value = match claims.get(claim) {
                None => continue,
                Some(Value::String(s)) => AttributeValue::String(s.clone()),
                Some(Value::Array(items)) => AttributeValue::List(
                    items
                        .iter()
                        .map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid))
                        .collect::<Result<_, _>>()?,
                ),
                Some(_) => return Err(invalid()),
            };
            attributes.insert(attribute.clone(), value);
        }

        Ok(ValidatedToken {
            principal,
            attributes,
            expires_at,
            claims,
        })
    }
}

/// Reads `alg` and `kid` from the (unverified) protected header and refuses
/// `crit`.
fn read_header(header_b64: &str) -> Result<(String, Option<String>), OAuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| OAuthError::MalformedToken("header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| OAuthError::MalformedToken("header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(OAuthError::MalformedToken(
            "header has critical extensions (crit), none are supported",
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        Some(_) => return Err(OAuthError::MalformedToken("header alg is not a string")),
        None => return Err(OAuthError::MalformedToken("header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(OAuthError::MalformedToken("header kid is not a string")),
    };
    Ok((alg, kid))
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, fractions
/// truncated.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, OAuthError> {
    let invalid = || OAuthError::InvalidClaim {
        claim: name.into(),
        reason: "must be a non-negative NumericDate (seconds since the epoch)",
    };
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            // Bounded well inside u64 so the cast is exact enough and safe.
            (None, Some(f)) if f.is_finite() && (0.0..1e18).contains(&f) => Ok(Some(f as u64)),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

fn map_jwt_error(kind: JwtErrorKind, algorithm: SigningAlgorithm) -> OAuthError {
    match kind {
        JwtErrorKind::InvalidSignature => OAuthError::BadSignature,
        JwtErrorKind::InvalidIssuer => OAuthError::WrongIssuer,
        JwtErrorKind::InvalidAudience => OAuthError::WrongAudience,
        JwtErrorKind::MissingRequiredClaim(claim) => OAuthError::MissingClaim { claim },
        JwtErrorKind::InvalidClaimFormat(claim) => OAuthError::InvalidClaim {
            claim,
            reason: "has the wrong type",
        },
        JwtErrorKind::InvalidAlgorithm | JwtErrorKind::MissingAlgorithm => {
            OAuthError::AlgorithmNotAllowed {
                alg: algorithm.as_str().to_owned(),
            }
        }
        JwtErrorKind::InvalidKeyFormat
        | JwtErrorKind::InvalidRsaKey(_)
        | JwtErrorKind::InvalidEcdsaKey => {
            tracing::warn!(%algorithm, "configured key rejected during verification");
            OAuthError::BadSignature
        }
        JwtErrorKind::Base64(_) => OAuthError::MalformedToken("a part is not base64url"),
        JwtErrorKind::Json(_) | JwtErrorKind::Utf8(_) => {
            OAuthError::MalformedToken("header or claims are not the expected JSON")
        }
        _ => OAuthError::MalformedToken("token could not be decoded"),
    }
}

// ---------------------------------------------------------------------------
// Key loading
// ---------------------------------------------------------------------------

fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, OAuthError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| OAuthError::KeyFile {
            path: path.to_owned(),
            source,
        })
}

/// jsonwebtoken validation pinned to one algorithm. Time checks are done by
/// [`OAuthValidator::check_claims`] against the caller's clock, so they are
/// off here; presence of exp / iss / aud / sub and the iss / aud values are
/// checked by jsonwebtoken.
fn pinned_validation(algorithm: SigningAlgorithm, config: &OAuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm.jwt());
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    validation.validate_aud = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&config.audience);
    validation
}

fn load_key_config(
    index: usize,
    key: &KeyConfig,
    config: &OAuthConfig,
) -> Result<VerificationKey, OAuthError> {
    let label = match &key.kid {
        Some(kid) => format!("keys[{index}] (kid {kid:?})"),
        None => format!("keys[{index}]"),
    };
    let invalid = |reason: String| OAuthError::InvalidKey {
        key: label.clone(),
        reason,
    };
    let decoding = match key.algorithm {
        SigningAlgorithm::RS256 | SigningAlgorithm::ES256 => {
            if key.secret_file.is_some() {
                return Err(invalid(format!(
                    "{} takes pem_file, not secret_file",
                    key.algorithm
                )));
            }
            let path = key
                .pem_file
                .as_ref()
                .ok_or_else(|| invalid(format!("{} needs pem_file", key.algorithm)))?;
            let pem = read_file(path)?;
            decode_public_pem(key.algorithm, &pem).map_err(invalid)?
        }
        SigningAlgorithm::HS256 => {
            if key.pem_file.is_some() {
                return Err(invalid("HS256 takes secret_file, not pem_file".into()));
            }
            let path = key
                .secret_file
                .as_ref()
                .ok_or_else(|| invalid("HS256 needs secret_file".into()))?;
            let secret = read_file(path)?;
            DecodingKey::from_secret(&secret)
        }
    };
    check_key(key.algorithm, &decoding).map_err(invalid)?;
    Ok(VerificationKey {
        label,
        kid: key.kid.clone(),
        algorithm: key.algorithm,
        key: decoding,
        validation: pinned_validation(key.algorithm, config),
    })
}

/// Decodes a PEM public key, refusing private keys and certificates.
fn decode_public_pem(algorithm: SigningAlgorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "PEM file is not text".to_owned())?;
    let mut labels = text.lines().filter_map(|line| {
        line.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
    });
    let label = match (labels.next(), labels.next()) {
        (Some(label), None) => label,
        (None, _) => return Err("no PEM block found".into()),
        (Some(_), Some(_)) => return Err("more than one PEM block; give one public key".into()),
    };
    match (algorithm, label) {
        (SigningAlgorithm::RS256, "PUBLIC KEY" | "RSA PUBLIC KEY") => {
            DecodingKey::from_rsa_pem(pem).map_err(|e| format!("not an RSA public key: {e}"))
        }
        (SigningAlgorithm::ES256, "PUBLIC KEY") => {
            DecodingKey::from_ec_pem(pem).map_err(|e| format!("not an EC public key: {e}"))
        }
        (_, "CERTIFICATE") => Err(
            "a certificate; give its public key (openssl x509 -pubkey -noout -in cert.pem)".into(),
        ),
        (_, label) if label.contains("PRIVATE") => {
            Err("a private key; give only the public key (openssl pkey -pubout)".into())
        }
        (_, label) => Err(format!(
            "PEM block {label:?} is not a {algorithm} public key"
        )),
    }
}

/// Start-up sanity checks on a key for its algorithm.
fn check_key(algorithm: SigningAlgorithm, key: &DecodingKey) -> Result<(), String> {
    use aws_lc_rs::rsa::{PublicEncryptingKey, PublicKey, PublicKeyComponents};
    use aws_lc_rs::signature::{ParsedPublicKey, ECDSA_P256_SHA256_FIXED};

    match algorithm {
        SigningAlgorithm::RS256 => {
            const TOO_SMALL_OR_INVALID: &str = "not a valid RSA public key of 2048 to 8192 bits";
            // PublicEncryptingKey enforces 2048..=8192 bits.
            match key.kind() {
                DecodingKeyKind::SecretOrDer(der) => {
                    let spki = PublicKey::from_der(der)
                        .map_err(|e| format!("not a valid RSA public key: {e}"))?
                        .as_der()
                        .map_err(|_| TOO_SMALL_OR_INVALID.to_owned())?;
                    PublicEncryptingKey::from_der(spki.as_ref())
                        .map_err(|e| format!("{TOO_SMALL_OR_INVALID} ({e})"))?;
                }
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    let _: PublicEncryptingKey = PublicKeyComponents {
                        n: n.as_slice(),
                        e: e.as_slice(),
                    }
                    .try_into()
                    .map_err(|_| TOO_SMALL_OR_INVALID.to_owned())?;
                }
            }
            Ok(())
        }
        SigningAlgorithm::ES256 => match key.kind() {
            DecodingKeyKind::SecretOrDer(point) => {
                ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .map(|_| ())
                    .map_err(|e| format!("not a P-256 public key: {e}"))
            }
            DecodingKeyKind::RsaModulusExponent { .. } => Err("not an EC key".into()),
        },
        SigningAlgorithm::HS256 => {
            let secret = key
                .try_get_hmac_secret()
                .map_err(|_| "not an HMAC secret".to_owned())?;
            if secret.len() < MIN_HMAC_SECRET_LEN {
                return Err(format!(
                    "HS256 secret is {} bytes, at least {MIN_HMAC_SECRET_LEN} are required",
                    secret.len()
                ));
            }
            Ok(())
        }
    }
}

fn load_jwks(
    path: &Path,
    config: &OAuthConfig,
    keys: &mut Vec<VerificationKey>,
) -> Result<(), OAuthError> {
    let bytes = read_file(path)?;
    let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| {
        OAuthError::Config(format!("{} is not a JWKS document: {e}", path.display()))
    })?;
    for (index, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let label = match &kid {
            Some(kid) => format!("jwks_file key #{index} (kid {kid:?})"),
            None => format!("jwks_file key #{index}"),
        };
        let invalid = |reason: String| OAuthError::InvalidKey {
            key: label.clone(),
            reason,
        };

        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            tracing::info!(key = %label, "skipping JWKS encryption key");
            continue;
        }
        let algorithm = match (jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::RS256), _) => SigningAlgorithm::RS256,
            (Some(KeyAlgorithm::ES256), _) => SigningAlgorithm::ES256,
            (Some(KeyAlgorithm::HS256), _) => SigningAlgorithm::HS256,
            (None, AlgorithmParameters::RSA(_)) => SigningAlgorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
                SigningAlgorithm::ES256
            }
            (alg, _) => {
                tracing::warn!(
                    key = %label,
                    alg = ?alg,
                    "skipping JWKS key: only RS256, ES256 and HS256 are supported \
                     (symmetric keys need alg HS256)"
                );
                continue;
            }
        };
        let matches_type = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::RSA(_), SigningAlgorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(ec), SigningAlgorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::OctetKey(_), SigningAlgorithm::HS256) => true,
            _ => false,
        };
        if !matches_type {
            return Err(invalid(format!(
                "alg {algorithm} does not fit the key type / curve"
            )));
        }
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
        check_key(algorithm, &decoding).map_err(invalid)?;
        keys.push(VerificationKey {
            label,
            kid,
            algorithm,
            key: decoding,
            validation: pinned_validation(algorithm, config),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
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

    fn pem_key(
        files: &Files,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
        pem: &str,
    ) -> KeyConfig {
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

        assert!(toml::from_str::<OAuthConfig>(
            "issuer = \"i\"\naudience = [\"a\"]\nsurprise = 1\n"
        )
        .is_err());
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
            b",,\x01auth=Bearer t\x01\x01",             // no gs2 flag
            b"y,,\x01auth=Bearer t\x01\x01",            // channel binding flag
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01", // channel binding
            b"n,\x01auth=Bearer t\x01\x01",             // gs2 header not closed
            b"n,,auth=Bearer t\x01\x01",                // no kvsep after gs2
            b"n,,\x01auth=Bearer t\x01",                // one closing 0x01
            b"n,,\x01auth=Bearer t",                    // none
            b"n,,\x01auth=Bearer t\x01\x01\x01",        // three
            b"n,,\x01auth=Bearer t\x01\x01x=1\x01\x01", // empty pair mid-message
            b"n,,\x01\x01auth=Bearer t\x01\x01",        // empty first pair
            b"n,,\x01auth=Bearer t\x01novalue\x01\x01", // pair without '='
            b"n,,\x01=v\x01auth=Bearer t\x01\x01",      // empty key
            b"n,,\x01k1=v\x01auth=Bearer t\x01\x01",    // non-alpha key
            b"n,,\x01k=v\x00\x01auth=Bearer t\x01\x01", // NUL in value
            b"n,,\x01k=\xc3\xa9\x01auth=Bearer t\x01\x01", // non-ASCII value
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01", // two auth
            b"n,,\x01k=1\x01k=2\x01auth=Bearer t\x01\x01", // duplicate key
            b"n,x=1,\x01auth=Bearer t\x01\x01",         // not "a="
            b"n,a=,\x01auth=Bearer t\x01\x01",          // empty authzid
            b"n,a=x=41,\x01auth=Bearer t\x01\x01",      // bad escape
            b"n,a=x\ty,\x01auth=Bearer t\x01\x01",      // control char
            b"n,,\x01auth=Bearer \xff\x01\x01",         // not UTF-8
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
}
