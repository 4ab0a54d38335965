//! The four SCRAM messages (RFC 5802 §7): parsing and the small pieces of
//! grammar they share.
//!
//! ```text
//! client-first-message = gs2-header client-first-message-bare
//! gs2-header           = ("n" / "y" / "p=" cb-name) "," ["a=" saslname] ","
//! client-first-bare    = ["m=" ext ","] "n=" saslname "," "r=" c-nonce ["," extensions]
//! server-first-message = ["m=" ext ","] "r=" nonce "," "s=" salt "," "i=" count ["," extensions]
//! client-final-message = "c=" base64(gs2-header) "," "r=" nonce ["," extensions] "," "p=" proof
//! server-final-message = ("e=" error / "v=" base64(ServerSignature)) ["," extensions]
//! ```
//!
//! Kafka (KIP-84, KIP-48) adds extensions after the client nonce, e.g.
//! `tokenauth=true` for delegation tokens.

use std::borrow::Cow;

use crate::crypto::b64_decode;
use crate::error::{truncated, SaslError};

/// The longest SCRAM message accepted. Real messages are a few hundred bytes.
pub(crate) const MAX_MESSAGE_LEN: usize = 4096;

fn malformed(reason: &'static str) -> SaslError {
    SaslError::Malformed { reason }
}

/// Checks the length and decodes UTF-8.
pub(crate) fn as_text(message: &[u8]) -> Result<&str, SaslError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(malformed("SCRAM message too long"));
    }
    std::str::from_utf8(message).map_err(|_| malformed("SCRAM message is not valid UTF-8"))
}

/// Escapes a user name for `n=` / `a=`: `,` becomes `=2C` and `=` becomes `=3D`.
pub(crate) fn escape_saslname(name: &str) -> Cow<'_, str> {
    if name.contains([',', '=']) {
        Cow::Owned(name.replace('=', "=3D").replace(',', "=2C"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Reverses [`escape_saslname`]; any other use of `=` is an error.
pub(crate) fn unescape_saslname(escaped: &str) -> Result<String, SaslError> {
    if escaped.is_empty() {
        return Err(malformed("empty SCRAM user name"));
    }
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(malformed("invalid '=' escape in SCRAM user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `printable = %x21-2B / %x2D-7E` (no comma), at least one character.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `k=value`; `k` is one or more ASCII letters (RFC 5802 uses single
/// letters, Kafka's extensions use words).
fn attribute(part: &str) -> Result<(&str, &str), SaslError> {
    match part.split_once('=') {
        Some((key, value)) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok((key, value))
        }
        _ => Err(malformed("SCRAM attribute is not of the form name=value")),
    }
}

/// The value of attribute `key` in `part`, or `reason` as a malformed error.
fn expect<'a>(
    part: Option<&'a str>,
    key: &str,
    reason: &'static str,
) -> Result<&'a str, SaslError> {
    let (k, value) = attribute(part.ok_or_else(|| malformed(reason))?)?;
    if k == key {
        Ok(value)
    } else {
        Err(malformed(reason))
    }
}

/// Refuses a mandatory extension (`m=`) at the start of a message.
fn refuse_mandatory_extension(first: Option<&str>) -> Result<(), SaslError> {
    match first {
        Some(part) if part.starts_with("m=") => Err(SaslError::UnsupportedExtension {
            name: "m".to_owned(),
        }),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------

/// A parsed client-first-message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    /// The gs2 header exactly as received, e.g. `n,,` (the client echoes it
    /// base64-encoded in `c=`).
    pub(crate) gs2_header: &'a str,
    /// client-first-message-bare, part of the AuthMessage.
    pub(crate) bare: &'a str,
    /// The unescaped user name.
    pub(crate) username: String,
    /// The client nonce.
    pub(crate) nonce: &'a str,
}

pub(crate) fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, SaslError> {
    // gs2-header: flag "," [authzid] ","
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("missing gs2 header"))?;
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(SaslError::ChannelBindingNotSupported),
        _ => return Err(malformed("invalid gs2 channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("missing gs2 header"))?;
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(unescape_saslname(name)?),
            None => return Err(malformed("invalid gs2 authzid")),
        },
    };
    let gs2_header = &text[..text.len() - bare.len()];

    // client-first-message-bare
    let mut parts = bare.split(',');
    let first = parts.next();
    refuse_mandatory_extension(first)?;
    let username = unescape_saslname(expect(
        first,
        "n",
        "client-first-message must start with n=",
    )?)?;
    let nonce = expect(parts.next(), "r", "client-first-message lacks r= after n=")?;
    if !is_valid_nonce(nonce) {
        return Err(malformed("invalid client nonce"));
    }
    for part in parts {
        let (name, value) = attribute(part)?;
        // Kafka's delegation-token authentication (KIP-48). Gatehouse has no
        // delegation tokens; accepting the flag would authenticate a token
        // id as if it were a user name.
        if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err(SaslError::UnsupportedExtension {
                name: name.to_owned(),
            });
        }
        // Other extensions are ignored, as RFC 5802 §5.1 requires.
    }

    if authzid
        .as_deref()
        .is_some_and(|authzid| authzid != username)
    {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// A parsed server-first-message.
#[derive(Debug)]
pub(crate) struct ServerFirst<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u64,
}

pub(crate) fn parse_server_first(text: &str) -> Result<ServerFirst<'_>, SaslError> {
    let mut parts = text.split(',');
    let first = parts.next();
    refuse_mandatory_extension(first)?;
    let nonce = expect(first, "r", "server-first-message must start with r=")?;
    if !is_valid_nonce(nonce) {
        return Err(malformed("invalid server nonce"));
    }
    let salt = expect(parts.next(), "s", "server-first-message lacks s=")?;
    let salt = b64_decode(salt).map_err(|_| malformed("server salt is not valid base64"))?;
    if salt.is_empty() {
        return Err(malformed("server salt is empty"));
    }
    let iterations = expect(parts.next(), "i", "server-first-message lacks i=")?;
    if iterations.is_empty()
        || iterations.len() > 10
        || !iterations.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed("server iteration count is not a number"));
    }
    let iterations = iterations
        .parse()
        .map_err(|_| malformed("server iteration count is not a number"))?;
    for part in parts {
        attribute(part)?;
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// A parsed client-final-message.
pub(crate) struct ClientFinal<'a> {
    /// client-final-message-without-proof, part of the AuthMessage.
    pub(crate) without_proof: &'a str,
    /// The decoded `c=` value: gs2 header plus channel binding data.
    pub(crate) channel_binding: Vec<u8>,
    pub(crate) nonce: &'a str,
    pub(crate) proof: Vec<u8>,
}

pub(crate) fn parse_client_final(text: &str) -> Result<ClientFinal<'_>, SaslError> {
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or_else(|| malformed("client-final-message must end with p="))?;
    let proof = b64_decode(proof).map_err(|_| malformed("client proof is not valid base64"))?;
    if proof.is_empty() {
        return Err(malformed("client proof is empty"));
    }
    let mut parts = without_proof.split(',');
    let channel_binding = expect(parts.next(), "c", "client-final-message must start with c=")?;
    let channel_binding = b64_decode(channel_binding)
        .map_err(|_| malformed("channel binding is not valid base64"))?;
    let nonce = expect(parts.next(), "r", "client-final-message lacks r= after c=")?;
    for part in parts {
        attribute(part)?;
    }
    Ok(ClientFinal {
        without_proof,
        channel_binding,
        nonce,
        proof,
    })
}

/// A parsed server-final-message.
pub(crate) enum ServerFinal {
    /// `v=`: the decoded server signature.
    Verifier(Vec<u8>),
    /// `e=`: the server's error value.
    Error(String),
}

pub(crate) fn parse_server_final(text: &str) -> Result<ServerFinal, SaslError> {
    let mut parts = text.split(',');
    let (key, value) = attribute(parts.next().unwrap_or_default())?;
    match key {
        "e" => {
            let printable: String = value
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect();
            Ok(ServerFinal::Error(truncated(&printable)))
        }
        "v" => {
            for part in parts {
                attribute(part)?;
            }
            b64_decode(value)
                .map(ServerFinal::Verifier)
                .map_err(|_| malformed("server signature is not valid base64"))
        }
        _ => Err(malformed("server-final-message must start with v= or e=")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use super::*;

    #[test]
    fn saslname_escaping_round_trips() {
        for name in ["user", "a,b", "a=b", "=2C", ",=,=", "jürgen", "=", ","] {
            let escaped = escape_saslname(name);
            assert!(!escaped.contains(','), "{escaped}");
            assert_eq!(unescape_saslname(&escaped).unwrap(), name);
        }
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("=3D2C").unwrap(), "=2C");
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "=", "a==3D"] {
            assert!(unescape_saslname(bad).is_err(), "{bad}");
        }
    }

    fn client_first_error(text: &str) -> SaslError {
        match parse_client_first(text) {
            Ok(parsed) => panic!("{text:?} parsed as {parsed:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn client_first_variants() {
        let m = parse_client_first("n,,n=user,r=abc").unwrap();
        assert_eq!(
            (m.gs2_header, m.bare, m.username.as_str(), m.nonce),
            ("n,,", "n=user,r=abc", "user", "abc")
        );
        let m = parse_client_first("y,,n=user,r=abc").unwrap();
        assert_eq!(m.gs2_header, "y,,");
        let m = parse_client_first("n,a=a=2Cb,n=a=2Cb,r=abc,tokenauth=false,x=1").unwrap();
        assert_eq!((m.gs2_header, m.username.as_str()), ("n,a=a=2Cb,", "a,b"));

        assert!(matches!(
            client_first_error("p=tls-unique,,n=user,r=abc"),
            SaslError::ChannelBindingNotSupported
        ));
        assert!(matches!(
            client_first_error("n,a=admin,n=user,r=abc"),
            SaslError::AuthzidMismatch
        ));
        assert!(matches!(
            client_first_error("n,,n=user,r=abc,tokenauth=true"),
            SaslError::UnsupportedExtension { name } if name == "tokenauth"
        ));
        assert!(matches!(
            client_first_error("n,,n=user,r=abc,tokenauth=TRUE"),
            SaslError::UnsupportedExtension { .. }
        ));
        assert!(matches!(
            client_first_error("n,,m=ext,n=user,r=abc"),
            SaslError::UnsupportedExtension { name } if name == "m"
        ));
        for bad in [
            "",
            "n",
            "n,",
            "x,,n=user,r=abc",
            "n,b=user,n=user,r=abc",
            "n,a=,n=user,r=abc",
            "n,,n=,r=abc",
            "n,,n=us=er,r=abc",
            "n,,r=abc,n=user",
            "n,,n=user",
            "n,,n=user,r=",
            "n,,n=user,r=a\u{7f}",
            "n,,n=user,r=ab c",
            "n,,n=user,r=abc,",
            "n,,n=user,r=abc,=x",
            "n,,n=user,r=abc,1=x",
            "n,,n=user,r=abc,noequals",
        ] {
            assert!(
                matches!(client_first_error(bad), SaslError::Malformed { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_first_variants() {
        let m = parse_server_first("r=abcdef,s=c2FsdA==,i=4096").unwrap();
        assert_eq!(
            (m.nonce, m.salt.as_slice(), m.iterations),
            ("abcdef", &b"salt"[..], 4096)
        );
        assert!(parse_server_first("r=abcdef,s=c2FsdA==,i=4096,x=y").is_ok());
        assert!(matches!(
            parse_server_first("m=x,r=abcdef,s=c2FsdA==,i=4096"),
            Err(SaslError::UnsupportedExtension { .. })
        ));
        for bad in [
            "",
            "r=abc",
            "r=abc,s=c2FsdA==",
            "r=abc,s=,i=4096",
            "r=abc,s=!!,i=4096",
            "r=abc,s=c2FsdA==,i=",
            "r=abc,s=c2FsdA==,i=-1",
            "r=abc,s=c2FsdA==,i=+4096",
            "r=abc,s=c2FsdA==,i=99999999999",
            "s=c2FsdA==,r=abc,i=4096",
        ] {
            assert!(
                matches!(parse_server_first(bad), Err(SaslError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_final_variants() {
        let m = parse_client_final("c=biws,r=abc,p=cHJvb2Y=").unwrap();
        assert_eq!(
            (m.without_proof, m.channel_binding.as_slice()),
            ("c=biws,r=abc", &b"n,,"[..])
        );
        assert_eq!((m.nonce, m.proof.as_slice()), ("abc", &b"proof"[..]));
        assert!(parse_client_final("c=biws,r=abc,x=1,p=cHJvb2Y=").is_ok());
        for bad in [
            "",
            "c=biws,r=abc",
            "c=biws,r=abc,p=",
            "c=biws,r=abc,p=!!",
            "c=biws,r=abc,p=cHJvb2Y=,x=1",
            "r=abc,c=biws,p=cHJvb2Y=",
            "c=b!ws,r=abc,p=cHJvb2Y=",
            "c=biws,p=cHJvb2Y=",
        ] {
            assert!(
                matches!(parse_client_final(bad), Err(SaslError::Malformed { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_final_variants() {
        assert!(
            matches!(parse_server_final("v=c2ln"), Ok(ServerFinal::Verifier(v)) if v == b"sig")
        );
        assert!(matches!(
            parse_server_final("e=invalid-proof"),
            Ok(ServerFinal::Error(e)) if e == "invalid-proof"
        ));
        assert!(parse_server_final("").is_err());
        assert!(parse_server_final("x=1").is_err());
        assert!(parse_server_final("v=!!").is_err());
    }
}
