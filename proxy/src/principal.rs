//! Who is on the other end of a connection.

use std::collections::BTreeMap;

/// A principal attribute: a string or a list of strings (e.g. `region =
/// "eu"`, `purposes = ["analytics"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// One value.
    String(String),
    /// Several values.
    List(Vec<String>),
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL PLAIN against the credentials file.
    Plain,
    /// SASL SCRAM-SHA-256.
    ScramSha256,
    /// SASL SCRAM-SHA-512.
    ScramSha512,
    /// SASL OAUTHBEARER with a verified JWT.
    OAuthBearer,
    /// A client certificate (mutual TLS).
    Certificate,
}

impl AuthMethod {
    /// The name the audit trail records: the SASL mechanism as Kafka
    /// spells it (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`),
    /// or `mtls` for a client certificate.
    pub fn mechanism(self) -> &'static str {
        match self {
            AuthMethod::Plain => "PLAIN",
            AuthMethod::ScramSha256 => "SCRAM-SHA-256",
            AuthMethod::ScramSha512 => "SCRAM-SHA-512",
            AuthMethod::OAuthBearer => "OAUTHBEARER",
            AuthMethod::Certificate => "mtls",
        }
    }
}

/// An authenticated principal, as every filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name (user, token subject, certificate name).
    pub name: String,
    /// How it authenticated.
    pub method: AuthMethod,
    /// Attributes policies use (team, region, purposes, …).
    pub attributes: BTreeMap<String, AttributeValue>,
}

impl Principal {
    /// A string attribute.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key)? {
            AttributeValue::String(s) => Some(s),
            AttributeValue::List(_) => None,
        }
    }

    /// A list attribute (a single string counts as a one-element list).
    pub fn attribute_list(&self, key: &str) -> Vec<String> {
        match self.attributes.get(key) {
            Some(AttributeValue::List(v)) => v.clone(),
            Some(AttributeValue::String(s)) => vec![s.clone()],
            None => Vec::new(),
        }
    }
}
