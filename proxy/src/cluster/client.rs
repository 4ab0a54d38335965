//! The proxy's own small Kafka client: one connection to a broker with the
//! versions agreed on it, and the few calls the followers and the key topic make.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::dial::BoxStream;

pub(crate) type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<(BoxStream, String), String>> + Send + 'a>>;

/// How the follower reaches the cluster.
pub(crate) trait Upstream: Send + Sync {
    /// A connection to the bootstrap servers (`None`) or to node
    /// `(id, host, port)`, authenticated, with its address.
    fn connect(&self, node: Option<(i32, &str, i32)>) -> Connecting<'_>;
}

/// Versions the follower speaks: (lowest, highest).
const METADATA_VERSIONS: (i16, i16) = (1, 12);
pub(crate) const FETCH_VERSIONS: (i16, i16) = (4, 12);
const LIST_OFFSETS_VERSIONS: (i16, i16) = (1, 7);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const EARLIEST: i64 = -2;
/// Why a round ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RoundEnd {
    /// Metadata changed under us (leadership): refresh at once.
    #[error("{0}")]
    Refresh(String),
    /// Anything else: retry after a backoff.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for RoundEnd {
    fn from(s: String) -> Self {
        RoundEnd::Failed(s)
    }
}

/// Whether a partition error asks for fresh metadata rather than a backoff.
pub(crate) fn needs_refresh(code: i16) -> bool {
    matches!(
        ResponseError::try_from_code(code),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::LeaderNotAvailable
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::FencedLeaderEpoch
                | ResponseError::UnknownLeaderEpoch
                | ResponseError::ReplicaNotAvailable
                | ResponseError::KafkaStorageError
                | ResponseError::OffsetNotAvailable
                | ResponseError::UnknownTopicId
                | ResponseError::InconsistentTopicId
        )
    )
}

pub(crate) fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    }
}

/// The highest version both sides speak.
fn pick_version(
    offered: &HashMap<i16, (i16, i16)>,
    api: ApiKey,
    ours: (i16, i16),
) -> Result<i16, String> {
    let (min, max) = offered
        .get(&(api as i16))
        .copied()
        .ok_or_else(|| format!("the cluster does not offer {api:?}"))?;
    let v = max.min(ours.1);
    if v < min.max(ours.0) {
        return Err(format!(
            "the cluster offers {api:?} v{min}-{max}; the proxy speaks v{}-{}",
            ours.0, ours.1
        ));
    }
    Ok(v)
}

/// One connection to a broker, with the versions agreed on it.
pub(crate) struct Conn {
    stream: BoxStream,
    pub(crate) addr: String,
    next_id: i32,
    pub(crate) max_frame_bytes: usize,
    offered: HashMap<i16, (i16, i16)>,
    metadata: i16,
    pub(crate) fetch: i16,
    list_offsets: i16,
}

impl Conn {
    /// The highest version of `api` in `ours` (lowest, highest) that the
    /// broker offers.
    pub(crate) fn version(&self, api: ApiKey, ours: (i16, i16)) -> Result<i16, String> {
        pick_version(&self.offered, api, ours)
    }

    pub(crate) async fn open(
        upstream: &dyn Upstream,
        node: Option<(i32, &str, i32)>,
        max_frame_bytes: usize,
    ) -> Result<Self, RoundEnd> {
        let (stream, addr) = upstream.connect(node).await?;
        let mut conn = Conn {
            stream,
            addr,
            next_id: 1,
            max_frame_bytes,
            offered: HashMap::new(),
            metadata: 0,
            fetch: 0,
            list_offsets: 0,
        };
        let versions: ApiVersionsResponse = conn
            .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
            .await?;
        if versions.error_code != 0 {
            return Err(RoundEnd::Failed(format!(
                "{}: ApiVersions: {}",
                conn.addr,
                error_name(versions.error_code)
            )));
        }
        let offered: HashMap<i16, (i16, i16)> = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        conn.metadata = pick_version(&offered, ApiKey::Metadata, METADATA_VERSIONS)?;
        conn.fetch = pick_version(&offered, ApiKey::Fetch, FETCH_VERSIONS)?;
        conn.list_offsets = pick_version(&offered, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS)?;
        conn.offered = offered;
        Ok(conn)
    }

    /// Sends one request and reads its response.
    pub(crate) async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let addr = self.addr.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| format!("{addr}: {api:?} {what}: {e}");
        let mut out = BytesMut::new();
        out.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("gatehouse-proxy")))
            .encode(&mut out, api.request_header_version(version))
            .map_err(|e| fail("encode", &e))?;
        req.encode(&mut out, version)
            .map_err(|e| fail("encode", &e))?;
        let len = i32::try_from(out.len() - 4).map_err(|e| fail("encode", &e))?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        let max = self.max_frame_bytes;
        let stream = &mut self.stream;
        let exchange = async {
            stream.write_all(&out).await?;
            stream.flush().await?;
            let len = stream.read_i32().await?;
            let len = usize::try_from(len)
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response of {len} bytes"),
                    )
                })?;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        let mut body = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| fail("response", &"timed out"))?
            .map_err(|e| fail("exchange", &e))?;
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| fail("response header", &e))?;
        if header.correlation_id != id {
            return Err(fail(
                "response",
                &format!(
                    "correlation id {} where {id} was due",
                    header.correlation_id
                ),
            ));
        }
        gatehouse_wire::check_response(api, version, &body).map_err(|e| fail("response", &e))?;
        Resp::decode(&mut body, version).map_err(|e| fail("response", &e))
    }
}

/// Where a followed topic's partitions are.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) topic_id: Option<String>,
    /// Partition → leader node.
    pub(crate) leaders: BTreeMap<i32, i32>,
    /// Partitions without a leader right now.
    pub(crate) leaderless: Vec<i32>,
    /// Node → (host, port).
    pub(crate) brokers: HashMap<i32, (String, i32)>,
}

pub(crate) async fn metadata(conn: &mut Conn, topic: &str) -> Result<Layout, RoundEnd> {
    let v = conn.metadata;
    let mut req =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
    if v >= 4 {
        req.allow_auto_topic_creation = false;
    }
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, v, &req).await?;
    let t = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| format!("Metadata does not mention the topic {topic}"))?;
    if t.error_code != 0 {
        let e = format!("topic {topic}: {}", error_name(t.error_code));
        return Err(RoundEnd::Failed(e));
    }
    let mut layout = Layout {
        topic_id: (!t.topic_id.is_nil()).then(|| t.topic_id.to_string()),
        brokers: resp
            .brokers
            .iter()
            .map(|b| (b.node_id.0, (b.host.to_string(), b.port)))
            .collect(),
        ..Layout::default()
    };
    for p in &t.partitions {
        if p.error_code == 0 && p.leader_id.0 >= 0 && layout.brokers.contains_key(&p.leader_id.0) {
            layout.leaders.insert(p.partition_index, p.leader_id.0);
        } else {
            layout.leaderless.push(p.partition_index);
        }
    }
    if layout.leaders.is_empty() && layout.leaderless.is_empty() {
        return Err(RoundEnd::Failed(format!("topic {topic} has no partitions")));
    }
    Ok(layout)
}

/// The names of every topic the cluster has.
/// Every topic the cluster lists, with the error code it lists it with
/// (0: none; e.g. `LEADER_NOT_AVAILABLE` during an election).
pub(crate) async fn topic_listing(conn: &mut Conn) -> Result<Vec<(String, i16)>, String> {
    let v = conn.metadata;
    let mut req = MetadataRequest::default().with_topics(None);
    if v >= 4 {
        req.allow_auto_topic_creation = false;
    }
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, v, &req).await?;
    Ok(resp
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| (n.0.to_string(), t.error_code)))
        .collect())
}

pub(crate) async fn earliest_offset(
    conn: &mut Conn,
    topic: &str,
    partition: i32,
) -> Result<i64, RoundEnd> {
    let v = conn.list_offsets;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(EARLIEST)])]);
    let resp: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, v, &req).await?;
    let p = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| format!("ListOffsets did not answer for partition {partition}"))?;
    if p.error_code != 0 {
        let e = format!(
            "ListOffsets for partition {partition}: {}",
            error_name(p.error_code)
        );
        return Err(if needs_refresh(p.error_code) {
            RoundEnd::Refresh(e)
        } else {
            RoundEnd::Failed(e)
        });
    }
    Ok(p.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated() {
        let offered = HashMap::from([
            (ApiKey::Fetch as i16, (4, 17)),
            (ApiKey::Metadata as i16, (0, 8)),
            (ApiKey::ListOffsets as i16, (8, 10)),
        ]);
        assert_eq!(
            pick_version(&offered, ApiKey::Fetch, FETCH_VERSIONS),
            Ok(12)
        );
        assert_eq!(
            pick_version(&offered, ApiKey::Metadata, METADATA_VERSIONS),
            Ok(8)
        );
        assert!(pick_version(&offered, ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS).is_err());
        assert!(pick_version(&offered, ApiKey::Produce, (0, 9)).is_err());
        // Every version the follower speaks is one the wire guard checks.
        for (api, (lo, hi)) in [
            (ApiKey::Metadata, METADATA_VERSIONS),
            (ApiKey::Fetch, FETCH_VERSIONS),
            (ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS),
            (ApiKey::ApiVersions, (0, 0)),
        ] {
            for v in lo..=hi {
                assert!(
                    !matches!(
                        gatehouse_wire::check_response(api, v, &[]),
                        Err(gatehouse_wire::GuardError::UnknownApi { .. }
                            | gatehouse_wire::GuardError::UnsupportedVersion { .. })
                    ),
                    "{api:?} v{v}"
                );
            }
        }
        assert!(needs_refresh(6) && needs_refresh(3) && !needs_refresh(29));
    }
}
