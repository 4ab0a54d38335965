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
mod tests;
