//! Who is on the other end of a connection.

use std::collections::BTreeMap;

use gatehouse_policy::PrincipalInfo;

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
    /// The proxy itself, reading as a user of the credentials file (the
    /// erasure workflow's read-back); no client connection.
    Internal,
}

impl AuthMethod {
    /// The name the audit trail records: the SASL mechanism as Kafka
    /// spells it (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`),
    /// `mtls` for a client certificate, `internal` for the proxy's own reads.
    pub fn mechanism(self) -> &'static str {
        match self {
            AuthMethod::Plain => "PLAIN",
            AuthMethod::ScramSha256 => "SCRAM-SHA-256",
            AuthMethod::ScramSha512 => "SCRAM-SHA-512",
            AuthMethod::OAuthBearer => "OAUTHBEARER",
            AuthMethod::Certificate => "mtls",
            AuthMethod::Internal => "internal",
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

/// The policy side of a principal: its name, team, region, purposes and
/// other attributes as the Cedar schema knows them.
pub fn principal_info(p: Option<&Principal>) -> PrincipalInfo {
    let Some(p) = p else {
        return PrincipalInfo::new("anonymous", "", "", Vec::<String>::new());
    };
    let get = |k: &str| p.attribute(k).unwrap_or_default().to_string();
    let mut info = PrincipalInfo::new(
        p.name.clone(),
        get("team"),
        get("region"),
        p.attribute_list("purposes"),
    );
    for (k, v) in &p.attributes {
        if matches!(k.as_str(), "team" | "region" | "purposes") {
            continue;
        }
        let values = match v {
            AttributeValue::String(s) => vec![s.clone()],
            AttributeValue::List(l) => l.clone(),
        };
        info.attributes.insert(k.clone(), values);
    }
    info
}
