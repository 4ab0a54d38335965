//! SASL mechanism names, as Kafka spells them.

use std::fmt;
use std::str::FromStr;

use crate::crypto::Hash;
use crate::error::{truncated, SaslError};

/// A SASL mechanism supported by Gatehouse.
///
/// The names are the ones Kafka clients send in `SaslHandshake` and configure
/// with `sasl.mechanism`; they are case-sensitive, as in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `PLAIN` (RFC 4616): user name and password in the clear; only safe over TLS.
    Plain,
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512` (RFC 5802 with SHA-512, as Kafka defines it in KIP-84).
    ScramSha512,
}

impl Mechanism {
    /// Every supported mechanism, in the order a server would advertise them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::Plain,
    ];

    /// The Kafka / IANA name: `"PLAIN"`, `"SCRAM-SHA-256"` or `"SCRAM-SHA-512"`.
    pub const fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Looks a mechanism up by its exact (case-sensitive) name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this is one of the SCRAM mechanisms.
    pub const fn is_scram(self) -> bool {
        matches!(self, Mechanism::ScramSha256 | Mechanism::ScramSha512)
    }

    /// The hash function behind a SCRAM mechanism; an error for PLAIN.
    pub(crate) fn scram_hash(self) -> Result<Hash, SaslError> {
        match self {
            Mechanism::ScramSha256 => Ok(Hash::Sha256),
            Mechanism::ScramSha512 => Ok(Hash::Sha512),
            Mechanism::Plain => Err(SaslError::UnsupportedMechanism {
                name: self.name().to_owned(),
            }),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = SaslError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::from_name(s)
            .ok_or_else(|| SaslError::UnsupportedMechanism { name: truncated(s) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may panic on unexpected results
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.to_string().parse::<Mechanism>().ok(), Some(m));
        }
        assert_eq!(Mechanism::from_name("scram-sha-256"), None);
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        assert!(matches!(
            "OAUTHBEARER".parse::<Mechanism>(),
            Err(SaslError::UnsupportedMechanism { name }) if name == "OAUTHBEARER"
        ));
        assert!(!Mechanism::Plain.is_scram());
        assert!(Mechanism::ScramSha256.is_scram() && Mechanism::ScramSha512.is_scram());
    }
}
