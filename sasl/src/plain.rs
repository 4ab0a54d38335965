//! SASL PLAIN (RFC 4616), checked against the salted SCRAM credentials.
//!
//! The client's single message is `[authzid] NUL authcid NUL passwd`, all
//! UTF-8. Gatehouse stores no passwords, so [`verify_plain`] salts and hashes
//! the received password with the user's stored SCRAM-SHA-256 salt and
//! iteration count (or the SCRAM-SHA-512 ones if the user only has that) and
//! compares the resulting `StoredKey` in constant time.
//!
//! An unknown user costs the same PBKDF2 work as a known one (the password is
//! derived against a decoy credential) and yields the same
//! [`SaslError::AuthenticationFailed`], so neither the answer nor its timing
//! reveals which user names exist.
//!
//! PLAIN sends the password in the clear: only offer it over TLS.

use std::fmt;

use zeroize::Zeroizing;

use crate::credentials::{CredentialStore, ScramCredential, User, MAX_USERNAME_LEN};
use crate::error::SaslError;
use crate::mechanism::Mechanism;

/// The longest accepted field (authzid, authcid or password), in bytes.
pub const MAX_FIELD_LEN: usize = 255;

/// A parsed PLAIN message. Borrowed from the received bytes; `Debug` does not
/// print the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    authzid: Option<&'a str>,
    authcid: &'a str,
    password: &'a str,
}

impl<'a> PlainMessage<'a> {
    /// The authorization identity, if the client sent one (it equals
    /// [`authcid`](Self::authcid): anything else is refused while parsing).
    pub fn authzid(&self) -> Option<&'a str> {
        self.authzid
    }

    /// The authentication identity: the user name.
    pub fn authcid(&self) -> &'a str {
        self.authcid
    }

    /// The password.
    pub fn password(&self) -> &'a str {
        self.password
    }
}

impl fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a PLAIN initial response.
///
/// Refused: anything but exactly two NUL separators, invalid UTF-8, an empty
/// user name or password, a field longer than [`MAX_FIELD_LEN`] bytes
/// ([`SaslError::Malformed`]); an authzid that is neither empty nor equal to
/// the user name ([`SaslError::AuthzidMismatch`]).
///
/// # Errors
/// As listed above. Error messages never contain any part of the input.
pub fn parse_plain(message: &[u8]) -> Result<PlainMessage<'_>, SaslError> {
    let malformed = |reason| SaslError::Malformed { reason };
    let mut fields = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(
            "PLAIN message must be [authzid] NUL authcid NUL passwd",
        ));
    };
    if [authzid, authcid, password]
        .iter()
        .any(|f| f.len() > MAX_FIELD_LEN)
    {
        return Err(malformed("PLAIN field longer than 255 bytes"));
    }
    if authcid.is_empty() {
        return Err(malformed("PLAIN user name is empty"));
    }
    if password.is_empty() {
        return Err(malformed("PLAIN password is empty"));
    }
    let utf8 =
        |field| std::str::from_utf8(field).map_err(|_| malformed("PLAIN field is not valid UTF-8"));
    let (authzid, authcid, password) = (utf8(authzid)?, utf8(authcid)?, utf8(password)?);
    let authzid = match authzid {
        "" => None,
        same if same == authcid => Some(same),
        _ => return Err(SaslError::AuthzidMismatch),
    };
    Ok(PlainMessage {
        authzid,
        authcid,
        password,
    })
}

/// Authenticates a PLAIN initial response against the store.
///
/// Returns the user on success. Unknown user, user without SCRAM credentials
/// and wrong password all return [`SaslError::AuthenticationFailed`] after the
/// same amount of PBKDF2 work.
///
/// # Errors
/// [`SaslError::AuthenticationFailed`], or a parse error from [`parse_plain`].
pub fn verify_plain<'s>(store: &'s CredentialStore, message: &[u8]) -> Result<&'s User, SaslError> {
    let message = parse_plain(message)?;
    let password = message.password().as_bytes();
    let found = store
        .user(message.authcid())
        .and_then(|user| Some((user, user.plain_credential()?)));
    match found {
        Some((user, credential)) => {
            if credential.matches_password(password)? {
                Ok(user)
            } else {
                Err(SaslError::AuthenticationFailed)
            }
        }
        None => {
            // Spend the same work as for a real user, then fail.
            let (salt_len, iterations) = store.decoy_profile(Mechanism::ScramSha256);
            let hash_len = crate::crypto::Hash::Sha256.len();
            let decoy = ScramCredential::from_parts(
                Mechanism::ScramSha256,
                vec![0; salt_len],
                iterations.get(),
                vec![0; hash_len],
                vec![0; hash_len],
            )?;
            let _ = decoy.matches_password(password)?;
            Err(SaslError::AuthenticationFailed)
        }
    }
}

/// The PLAIN initial response a client sends: `NUL username NUL password`
/// (no authzid). The buffer is wiped when dropped.
///
/// # Errors
/// [`SaslError::InvalidUsername`] or [`SaslError::Malformed`] when the user
/// name or password is empty, longer than 255 bytes, or contains NUL.
pub fn client_initial_response(
    username: &str,
    password: &str,
) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    crate::credentials::validate_username(username)?;
    debug_assert_eq!(MAX_USERNAME_LEN, MAX_FIELD_LEN);
    if password.is_empty() || password.len() > MAX_FIELD_LEN || password.contains('\0') {
        return Err(SaslError::Malformed {
            reason: "PLAIN password must be 1 to 255 bytes without NUL",
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::*;

    fn store() -> CredentialStore {
        let mut store = CredentialStore::new();
        store
            .insert(User::new_with_password("ingest", "s3cret", 4096, BTreeMap::new()).unwrap())
            .unwrap();
        let mut only_512 =
            User::new_with_password("analytics", "pw-512", 4096, BTreeMap::new()).unwrap();
        only_512.scram_sha_256 = None;
        store.insert(only_512).unwrap();
        store
            .insert(User {
                name: "bare".to_owned(),
                attributes: BTreeMap::new(),
                scram_sha_256: None,
                scram_sha_512: None,
            })
            .unwrap();
        store
    }

    fn malformed(bytes: &[u8]) -> bool {
        matches!(parse_plain(bytes), Err(SaslError::Malformed { .. }))
    }

    #[test]
    fn parses_valid_messages() {
        let m = parse_plain(b"\0ingest\0s3cret").unwrap();
        assert_eq!(
            (m.authzid(), m.authcid(), m.password()),
            (None, "ingest", "s3cret")
        );
        let m = parse_plain(b"ingest\0ingest\0s3cret").unwrap();
        assert_eq!(m.authzid(), Some("ingest"));
        let m = parse_plain("\0jürgen\0pässwörd with spaces".as_bytes()).unwrap();
        assert_eq!(
            (m.authcid(), m.password()),
            ("jürgen", "pässwörd with spaces")
        );
        let long = [&[0][..], &[b'u'; 255], &[0], &[b'p'; 255]].concat();
        assert!(parse_plain(&long).is_ok());
    }

    #[test]
    fn refuses_bad_messages() {
        assert!(malformed(b""));
        assert!(malformed(b"ingest"));
        assert!(malformed(b"\0ingest"));
        assert!(malformed(b"\0ingest\0pw\0"), "extra NUL");
        assert!(malformed(b"\0\0pw"), "empty user");
        assert!(malformed(b"\0ingest\0"), "empty password");
        assert!(malformed(b"\0\0"));
        assert!(malformed(b"\0ingest\0\xff\xfe"), "invalid UTF-8");
        assert!(malformed(b"\0in\xc3\0pw"), "truncated UTF-8");
        assert!(malformed(&[&[0][..], &[b'u'; 256], &[0], b"pw"].concat()));
        assert!(malformed(&[&[0][..], b"u", &[0], &[b'p'; 256]].concat()));
        assert!(malformed(
            &[&[b'a'; 256][..], &[0], b"u", &[0], b"pw"].concat()
        ));
        assert!(matches!(
            parse_plain(b"admin\0ingest\0s3cret"),
            Err(SaslError::AuthzidMismatch)
        ));
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let m = parse_plain(b"\0ingest\0hunter2").unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
        for bad in [
            &b"admin\0ingest\0hunter2"[..],
            b"\0ingest\0hunter2\0",
            b"\0\0hunter2",
        ] {
            let err = parse_plain(bad).unwrap_err();
            assert!(
                !err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2")
            );
        }
        let err = verify_plain(&store(), b"\0ingest\0hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2") && !format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn verifies_passwords() {
        let store = store();
        assert_eq!(
            verify_plain(&store, b"\0ingest\0s3cret").unwrap().name,
            "ingest"
        );
        assert_eq!(
            verify_plain(&store, b"ingest\0ingest\0s3cret")
                .unwrap()
                .name,
            "ingest"
        );
        assert_eq!(
            verify_plain(&store, b"\0analytics\0pw-512").unwrap().name,
            "analytics"
        );
        assert!(matches!(
            verify_plain(&store, b"\0ingest\0S3cret"),
            Err(SaslError::AuthenticationFailed)
        ));
        assert!(matches!(
            verify_plain(&store, b"\0ingest\0s3cret "),
            Err(SaslError::AuthenticationFailed)
        ));
        assert!(matches!(
            verify_plain(&store, b"\0analytics\0s3cret"),
            Err(SaslError::AuthenticationFailed)
        ));
    }

    #[test]
    fn unknown_user_looks_like_a_wrong_password() {
        let store = store();
        let wrong = verify_plain(&store, b"\0ingest\0nope").unwrap_err();
        let unknown = verify_plain(&store, b"\0nobody\0nope").unwrap_err();
        let no_credentials = verify_plain(&store, b"\0bare\0nope").unwrap_err();
        assert!(matches!(unknown, SaslError::AuthenticationFailed));
        assert!(matches!(no_credentials, SaslError::AuthenticationFailed));
        assert_eq!(wrong.to_string(), unknown.to_string());

        // Both paths run PBKDF2 with 4096 iterations. Compare the fastest of
        // several interleaved runs (robust against scheduling noise) with
        // generous bounds.
        let time = |msg: &[u8]| {
            let start = Instant::now();
            let _ = verify_plain(&store, msg);
            start.elapsed()
        };
        let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
        for _ in 0..7 {
            known = known.min(time(b"\0ingest\0nope"));
            unknown = unknown.min(time(b"\0nobody\0nope"));
        }
        let ratio = known.as_secs_f64() / unknown.as_secs_f64().max(1e-6);
        assert!(
            (0.33..3.0).contains(&ratio),
            "known {known:?} vs unknown {unknown:?}"
        );
    }

    #[test]
    fn client_initial_response_round_trips() {
        let bytes = client_initial_response("ingest", "s3cret").unwrap();
        assert_eq!(&bytes[..], b"\0ingest\0s3cret");
        assert_eq!(verify_plain(&store(), &bytes).unwrap().name, "ingest");
        assert!(client_initial_response("", "pw").is_err());
        assert!(client_initial_response("u", "").is_err());
        assert!(client_initial_response("u", "p\0w").is_err());
    }
}
