//! The `api_versions` filter: tells clients only versions that the proxy
//! can carry: the intersection of the cluster's versions with the codec's, narrower
//! where a filter decodes the API, and without versions whose responses
//! carry broker addresses the proxy does not rewrite.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::filter::{Direction, Filter, FilterFuture, Response, ResponseAction, SessionContext};

/// The APIs some filter of `chain` decodes (ApiVersions aside).
pub(crate) fn decoded_apis(chain: &[Arc<dyn Filter>]) -> Vec<ApiKey> {
    let mut set = BTreeSet::new();
    for f in chain {
        if f.name() == "api_versions" {
            continue;
        }
        for api in ApiKey::iter() {
            if f.wants(api, Direction::Request) || f.wants(api, Direction::Response) {
                set.insert(api as i16);
            }
        }
    }
    set.into_iter()
        .filter_map(|k| ApiKey::try_from(k).ok())
        .collect()
}

/// Highest versions whose responses carry no broker addresses the proxy
/// would have to rewrite (KIP-951 node endpoints in Produce v10+ and Fetch
/// v16+), and APIs left out entirely for the same reason.
fn address_cap(api: ApiKey) -> Option<i16> {
    match api {
        ApiKey::Produce => Some(9),
        ApiKey::Fetch => Some(15),
        ApiKey::ShareFetch | ApiKey::ShareAcknowledge | ApiKey::DescribeQuorum => Some(-1),
        _ => None,
    }
}

/// Intersects the cluster's ApiVersions with what the proxy can carry.
#[derive(Debug)]
pub struct ApiVersions {
    decoded: Vec<ApiKey>,
    sasl: bool,
    caps: Vec<(ApiKey, i16)>,
}

impl ApiVersions {
    /// `decoded`: APIs that filters decode (their versions are limited to
    /// what the pre-decode guard understands). `sasl`: the proxy
    /// authenticates clients, so it offers SaslHandshake and
    /// SaslAuthenticate v0–2 whatever the cluster offers; without it the
    /// cluster's own SASL APIs are hidden (clients never authenticate to
    /// the cluster through the proxy).
    pub fn new(decoded: Vec<ApiKey>, sasl: bool) -> Self {
        Self {
            decoded,
            sasl,
            caps: Vec::new(),
        }
    }

    /// Also applies the version caps the filters of `chain` declare.
    pub fn with_caps(mut self, chain: &[Arc<dyn Filter>]) -> Self {
        for api in ApiKey::iter() {
            if let Some(cap) = chain.iter().filter_map(|f| f.max_version(api)).min() {
                self.caps.push((api, cap));
            }
        }
        self
    }

    fn cap(&self, api: ApiKey, min: i16, max: i16) -> Option<(i16, i16)> {
        let codec = api.valid_versions();
        let mut max = max.min(codec.max);
        let min = min.max(codec.min);
        if let Some(cap) = address_cap(api) {
            max = max.min(cap);
        }
        if let Some((_, cap)) = self.caps.iter().find(|(a, _)| *a == api) {
            max = max.min(*cap);
        }
        if self.decoded.contains(&api) {
            while max >= min && !guard_knows(api, max) {
                max -= 1;
            }
        }
        (min <= max).then_some((min, max))
    }
}

fn guard_knows(api: ApiKey, version: i16) -> bool {
    !matches!(
        gatehouse_wire::check_request(api, version, &[]),
        Err(gatehouse_wire::GuardError::UnknownApi { .. }
            | gatehouse_wire::GuardError::UnsupportedVersion { .. })
    )
}

impl Filter for ApiVersions {
    fn name(&self) -> &'static str {
        "api_versions"
    }

    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        api == ApiKey::ApiVersions && direction == Direction::Response
    }

    fn on_response<'a>(
        &'a self,
        _s: &'a SessionContext,
        r: &'a mut Response,
    ) -> FilterFuture<'a, ResponseAction> {
        if let ResponseKind::ApiVersions(v) = &mut r.body {
            let before = v.api_keys.len();
            v.api_keys.retain_mut(|k| {
                let Ok(api) = ApiKey::try_from(k.api_key) else {
                    return false;
                };
                if matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
                    return false;
                }
                match self.cap(api, k.min_version, k.max_version) {
                    Some((min, max)) => {
                        k.min_version = min;
                        k.max_version = max;
                        true
                    }
                    None => false,
                }
            });
            if self.sasl && v.error_code == 0 {
                use kafka_protocol::messages::api_versions_response::ApiVersion;
                // librdkafka enables SASL only when v0 of SaslHandshake is listed; it
                // then uses v1 (Kafka-framed tokens), the only one answered.
                for (api, min, max) in [
                    (ApiKey::SaslHandshake, 0, 1),
                    (ApiKey::SaslAuthenticate, 0, 2),
                ] {
                    v.api_keys.push(
                        ApiVersion::default()
                            .with_api_key(api as i16)
                            .with_min_version(min)
                            .with_max_version(max),
                    );
                }
            }
            tracing::debug!(
                advertised = before,
                kept = v.api_keys.len(),
                "api versions intersected"
            );
        }
        Box::pin(async { ResponseAction::Continue })
    }
}
