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
    // How it authenticated, as the proxy knows it: policies may require
    // `principal.getTag("auth").contains("internal")` for what only the
    // proxy's own reads may do. Never taken from the identity's attributes
    // (a token's claims, a credentials file entry).
    info.attributes
        .insert(AUTH_TAG.to_string(), vec![p.method.mechanism().to_string()]);
    info
}

/// The principal tag that says how it authenticated ([`AuthMethod::mechanism`]).
pub const AUTH_TAG: &str = "auth";

#[cfg(test)]
mod tests {
    use super::*;

    /// The `auth` tag says how the principal authenticated, whatever the
    /// identity claims: a token cannot pass for the proxy's own reads.
    #[test]
    fn the_auth_tag_comes_from_the_method_not_the_identity() {
        let claims = |method| Principal {
            name: "erasure-verifier".into(),
            method,
            attributes: BTreeMap::from([
                ("team".into(), AttributeValue::String("privacy".into())),
                (AUTH_TAG.into(), AttributeValue::String("internal".into())),
            ]),
        };
        let token = principal_info(Some(&claims(AuthMethod::OAuthBearer)));
        assert_eq!(token.attributes[AUTH_TAG], vec!["OAUTHBEARER".to_string()]);
        assert_eq!(token.team, "privacy");
        let own = principal_info(Some(&claims(AuthMethod::Internal)));
        assert_eq!(own.attributes[AUTH_TAG], vec!["internal".to_string()]);
    }
}
