//! Request handlers, one module per family of APIs.
//!
//! [`handle`] runs synchronously up to the point where a request has been
//! handed to the committer (so a connection's produce requests are appended
//! in the order they arrived), then returns the rest as a future.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::messages::{
    api_versions_response::ApiVersion, ApiKey, ApiVersionsResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Shared;
use crate::error::KafkaCode;

mod admin;
mod data;
mod group;

/// What a handler knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// API version of the request.
    pub version: i16,
    /// Client id from the header.
    pub client_id: String,
    /// The client's address.
    pub peer: SocketAddr,
}

/// A response in preparation.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ResponseKind> + Send>>;

/// The APIs and versions this broker serves (intersected with what the
/// codec knows). Versions that need topic ids on the wire (Fetch 13+,
/// Produce 13+) or the new consumer protocol are left out.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    // Served by the connection itself, and advertised only when the broker
    // requires SASL. librdkafka enables SASL only if SaslHandshake v0 is
    // listed; v1 is what it then uses, and the only version answered.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The supported (min, max) versions of `api`, if any.
pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    let (_, min, max) = SUPPORTED.iter().find(|(k, ..)| *k == api)?;
    let codec = api.valid_versions();
    let (min, max) = ((*min).max(codec.min), (*max).min(codec.max));
    (min <= max).then_some((min, max))
}

/// Whether `api` at `version` is served.
pub fn supports(api: ApiKey, version: i16) -> bool {
    supported_range(api).is_some_and(|(min, max)| (min..=max).contains(&version))
}

/// The ApiVersions answer; SASL APIs only when `sasl` is required.
pub fn api_versions_response(unsupported: bool, sasl: bool) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .filter(|(api, ..)| {
            sasl || !matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        })
        .filter_map(|(api, ..)| {
            let (min, max) = supported_range(*api)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*api as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect();
    let code = if unsupported {
        KafkaCode::UnsupportedVersion
    } else {
        KafkaCode::None
    };
    ApiVersionsResponse::default()
        .with_error_code(code.code())
        .with_api_keys(api_keys)
}

pub(crate) fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn ready(resp: ResponseKind) -> Option<HandlerFuture> {
    Some(Box::pin(async move { resp }))
}

/// Handles one decoded request; `None` means no response is sent.
pub(crate) fn handle(
    shared: Arc<Shared>,
    ctx: RequestContext,
    request: RequestKind,
) -> Option<HandlerFuture> {
    let v = ctx.version;
    match request {
        RequestKind::ApiVersions(_) => ready(ResponseKind::ApiVersions(api_versions_response(
            false,
            shared.sasl.is_some(),
        ))),
        RequestKind::Produce(r) => data::produce(shared, r, v),
        RequestKind::Fetch(r) => Some(Box::pin(async move {
            ResponseKind::Fetch(data::fetch(shared, r, v).await)
        })),
        RequestKind::ListOffsets(r) => Some(Box::pin(async move {
            ResponseKind::ListOffsets(data::list_offsets(shared, r, v).await)
        })),
        RequestKind::Metadata(r) => Some(Box::pin(async move {
            ResponseKind::Metadata(admin::metadata(shared, r, v).await)
        })),
        RequestKind::DescribeCluster(_) => ready(ResponseKind::DescribeCluster(
            admin::describe_cluster(&shared),
        )),
        RequestKind::CreateTopics(r) => Some(Box::pin(async move {
            ResponseKind::CreateTopics(admin::create_topics(shared, r, v).await)
        })),
        RequestKind::DeleteTopics(r) => Some(Box::pin(async move {
            ResponseKind::DeleteTopics(admin::delete_topics(shared, r).await)
        })),
        RequestKind::CreatePartitions(r) => Some(Box::pin(async move {
            ResponseKind::CreatePartitions(admin::create_partitions(shared, r).await)
        })),
        RequestKind::DeleteRecords(r) => Some(Box::pin(async move {
            ResponseKind::DeleteRecords(admin::delete_records(shared, r).await)
        })),
        RequestKind::DescribeConfigs(r) => ready(ResponseKind::DescribeConfigs(
            admin::describe_configs(&shared, r, v),
        )),
        RequestKind::AlterConfigs(r) => Some(Box::pin(async move {
            ResponseKind::AlterConfigs(admin::alter_configs(shared, r).await)
        })),
        RequestKind::IncrementalAlterConfigs(r) => Some(Box::pin(async move {
            ResponseKind::IncrementalAlterConfigs(admin::incremental_alter_configs(shared, r).await)
        })),
        RequestKind::InitProducerId(r) => Some(Box::pin(async move {
            ResponseKind::InitProducerId(admin::init_producer_id(shared, r).await)
        })),
        RequestKind::FindCoordinator(r) => ready(ResponseKind::FindCoordinator(
            group::find_coordinator(&shared, r, v),
        )),
        RequestKind::JoinGroup(r) => Some(Box::pin(async move {
            ResponseKind::JoinGroup(group::join(shared, r, &ctx).await)
        })),
        RequestKind::SyncGroup(r) => Some(Box::pin(async move {
            ResponseKind::SyncGroup(group::sync(shared, r).await)
        })),
        RequestKind::Heartbeat(r) => ready(ResponseKind::Heartbeat(group::heartbeat(&shared, r))),
        RequestKind::LeaveGroup(r) => ready(ResponseKind::LeaveGroup(group::leave(&shared, r, v))),
        RequestKind::OffsetCommit(r) => Some(Box::pin(async move {
            ResponseKind::OffsetCommit(group::offset_commit(shared, r).await)
        })),
        RequestKind::OffsetFetch(r) => ready(ResponseKind::OffsetFetch(group::offset_fetch(
            &shared, r, v,
        ))),
        RequestKind::ListGroups(r) => {
            ready(ResponseKind::ListGroups(group::list_groups(&shared, r)))
        }
        RequestKind::DescribeGroups(r) => ready(ResponseKind::DescribeGroups(
            group::describe_groups(&shared, r),
        )),
        RequestKind::DeleteGroups(r) => Some(Box::pin(async move {
            ResponseKind::DeleteGroups(group::delete_groups(shared, r).await)
        })),
        other => {
            // `supports` keeps unsupported APIs from being decoded at all.
            tracing::error!(request = ?std::mem::discriminant(&other), "request reached no handler");
            None
        }
    }
}
