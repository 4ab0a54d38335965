//! Who is asking ([`PrincipalInfo`]) and what a data subject granted
//! ([`ConsentSet`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::error::PolicyError;

/// An authenticated principal, as the policies see it.
///
/// Built by the authentication layer from the identity's attributes
/// ([`PrincipalInfo::from_attributes`]). The whole value, attributes
/// included, is part of the plan-cache key: two connections of one user
/// whose attributes differ (say a token with other claims) get separate
/// plans.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrincipalInfo {
    /// The principal's name; the Cedar entity id (`Gatehouse::Principal::"name"`).
    pub name: String,
    /// The team (`principal.team`). Empty when the identity has none: no
    /// team policy matches it.
    pub team: String,
    /// The region (`principal.region`). Empty when the identity has none:
    /// outside every region, so only `global` topics are reachable.
    pub region: String,
    /// The purposes the principal processes data for (`principal.purposes`).
    pub purposes: Vec<String>,
    /// Every other attribute of the identity, as Cedar tags
    /// (`principal.getTag("clearance")`, a `Set<String>`).
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl PrincipalInfo {
    /// A principal with no extra attributes.
    pub fn new(
        name: impl Into<String>,
        team: impl Into<String>,
        region: impl Into<String>,
        purposes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        PrincipalInfo {
            name: name.into(),
            team: team.into(),
            region: region.into(),
            purposes: purposes.into_iter().map(Into::into).collect(),
            attributes: BTreeMap::new(),
        }
    }

    /// Builds a principal from identity attributes: each attribute is a
    /// sequence of strings (one for a string attribute, any number for a
    /// list). `team` and `region` must have at most one value (missing:
    /// empty); `purposes` may have any number; every other attribute becomes
    /// a tag.
    ///
    /// With `gatehouse_sasl::User`:
    /// `PrincipalInfo::from_attributes(&user.name, user.attributes.iter().map(|(k, v)| (k, v.values())))`.
    pub fn from_attributes<I, K, V, S>(name: &str, attributes: I) -> Result<Self, PolicyError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut principal = PrincipalInfo::new(name, "", "", Vec::<String>::new());
        for (key, values) in attributes {
            let key = key.as_ref();
            let values: Vec<String> = values.into_iter().map(|v| v.as_ref().to_owned()).collect();
            match key {
                "team" | "region" => {
                    let slot = if key == "team" {
                        &mut principal.team
                    } else {
                        &mut principal.region
                    };
                    match <[String; 1]>::try_from(values) {
                        Ok([value]) => *slot = value,
                        Err(values) if values.is_empty() => {}
                        Err(values) => {
                            return Err(PolicyError::Principal {
                                name: name.to_owned(),
                                reason: format!(
                                    "attribute {key} must have one value, not {}",
                                    values.len()
                                ),
                            })
                        }
                    }
                }
                "purposes" => principal.purposes = values,
                _ => {
                    principal.attributes.insert(key.to_owned(), values);
                }
            }
        }
        Ok(principal)
    }
}

/// The purposes a data subject granted: an immutable, shared set with a
/// precomputed hash.
///
/// Consent sets are few distinct values (subsets of a handful of purposes),
/// and plans memoize record decisions by them, so the set is built to be a
/// cheap map key: hashing writes one `u64`, cloning bumps a reference count,
/// and equality is a pointer comparison when the consent store hands out
/// shared values (falling back to comparing the purposes otherwise).
#[derive(Clone)]
pub struct ConsentSet {
    inner: Arc<ConsentInner>,
}

struct ConsentInner {
    hash: u64,
    purposes: BTreeSet<String>,
}

impl ConsentSet {
    /// A set of purposes (duplicates collapse, order does not matter).
    pub fn new(purposes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let purposes: BTreeSet<String> = purposes.into_iter().map(Into::into).collect();
        let mut hasher = DefaultHasher::new();
        purposes.hash(&mut hasher);
        ConsentSet {
            inner: Arc::new(ConsentInner {
                hash: hasher.finish(),
                purposes,
            }),
        }
    }

    /// No purpose granted (a known subject who consented to nothing).
    pub fn empty() -> Self {
        Self::new(Vec::<String>::new())
    }

    /// Whether `purpose` was granted.
    pub fn contains(&self, purpose: &str) -> bool {
        self.inner.purposes.contains(purpose)
    }

    /// The purposes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.purposes.iter().map(String::as_str)
    }

    /// The number of purposes.
    pub fn len(&self) -> usize {
        self.inner.purposes.len()
    }

    /// Whether no purpose was granted.
    pub fn is_empty(&self) -> bool {
        self.inner.purposes.is_empty()
    }
}

impl PartialEq for ConsentSet {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.hash == other.inner.hash && self.inner.purposes == other.inner.purposes)
    }
}

impl Eq for ConsentSet {}

impl Hash for ConsentSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.inner.hash);
    }
}

impl fmt::Debug for ConsentSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<S: Into<String>> FromIterator<S> for ConsentSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_attributes() {
        let attrs: Vec<(&str, Vec<&str>)> = vec![
            ("team", vec!["analytics"]),
            ("region", vec!["eu"]),
            ("purposes", vec!["analytics"]),
            ("clearance", vec!["pii", "finance"]),
        ];
        let p = PrincipalInfo::from_attributes("analytics", attrs).expect("principal");
        assert_eq!(p.team, "analytics");
        assert_eq!(p.region, "eu");
        assert_eq!(p.purposes, ["analytics"]);
        assert_eq!(p.attributes["clearance"], ["pii", "finance"]);

        let missing = PrincipalInfo::from_attributes("x", Vec::<(&str, Vec<&str>)>::new())
            .expect("principal");
        assert_eq!(missing.team, "");
        let two = PrincipalInfo::from_attributes("x", [("team", ["a", "b"])]);
        assert!(matches!(two, Err(PolicyError::Principal { .. })));
    }

    #[test]
    fn consent_set_equality() {
        let a = ConsentSet::new(["marketing", "analytics"]);
        let b = ConsentSet::new(["analytics", "marketing", "analytics"]);
        assert_eq!(a, b);
        assert_ne!(a, ConsentSet::new(["analytics"]));
        assert_eq!(b.len(), 2);
        assert!(a.contains("analytics"));
        assert_eq!(format!("{a:?}"), r#"{"analytics", "marketing"}"#);
    }
}
