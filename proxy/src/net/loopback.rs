//! An in-process client of the proxy: a Fetch runs through the filter
//! chain as a named principal, exactly as a client session's would, with
//! the cluster's answer kept beside what the chain delivers. The erasure
//! workflow's verification reads the governed topics back this way.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, RequestKind, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::auth::principal::Principal;
use crate::cluster::client::Conn;
use crate::cluster::erasure::{ReadBack, ReadPage};
use crate::filter::{
    Direction, Filter, Notes, Request, RequestAction, Response, ResponseAction, SessionContext,
    Target,
};

/// Reads as `principal` through `chain`.
#[derive(Debug)]
pub(crate) struct Loopback {
    chain: Vec<Arc<dyn Filter>>,
    session: SessionContext,
}

/// `isolation_level` of a consumer that reads every record, those of open
/// and aborted transactions included: what any client of the proxy may
/// read, and all the way to the high watermark.
const READ_UNCOMMITTED: i8 = 0;

/// The newest Fetch version that names topics (v13 names them by id).
const FETCH_BY_NAME: i16 = 12;

impl Loopback {
    pub(crate) fn new(chain: Vec<Arc<dyn Filter>>, principal: Principal) -> Self {
        Self {
            chain,
            session: SessionContext {
                peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                target: Target::Bootstrap,
                client_id: Some("gatehouse-erasure-verify".to_string()),
                principal: Some(principal),
            },
        }
    }

    async fn fetch_through(
        &self,
        conn: &mut Conn,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<ReadPage, String> {
        let cap = self
            .chain
            .iter()
            .filter_map(|f| f.max_version(ApiKey::Fetch))
            .min();
        let version = cap
            .map_or(conn.fetch, |c| c.min(conn.fetch))
            .min(FETCH_BY_NAME);
        let body = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(READ_UNCOMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let mut request = Request {
            api: ApiKey::Fetch,
            version,
            header: RequestHeader::default()
                .with_request_api_key(ApiKey::Fetch as i16)
                .with_request_api_version(version)
                .with_client_id(self.session.client_id.clone().map(StrBytes::from_string)),
            body: RequestKind::Fetch(body),
            notes: Notes::default(),
        };
        let mut answered = None;
        for f in &self.chain {
            if !f.wants(ApiKey::Fetch, Direction::Request) {
                continue;
            }
            match f.on_request(&self.session, &mut request).await {
                RequestAction::Continue => {}
                RequestAction::Respond(resp) => {
                    answered = Some(*resp);
                    break;
                }
                RequestAction::Close(reason) => {
                    return Err(format!(
                        "{} filter refused the read-back: {reason}",
                        f.name()
                    ))
                }
                RequestAction::Drop => {
                    return Err(format!("{} filter dropped the read-back", f.name()))
                }
            }
        }
        let (held, high_watermark, body) = match answered {
            Some(local) => (Bytes::new(), -1, local),
            None => {
                let RequestKind::Fetch(req) = &request.body else {
                    return Err("a filter changed the read-back's request kind".into());
                };
                let resp: FetchResponse = conn.call(ApiKey::Fetch, version, req).await?;
                if resp.error_code != 0 {
                    return Err(format!(
                        "{topic}/{partition}: Fetch: {}",
                        crate::cluster::client::error_name(resp.error_code)
                    ));
                }
                let p = partition_of(&resp, partition)
                    .ok_or_else(|| format!("{topic}/{partition}: Fetch did not answer"))?;
                if p.error_code != 0 {
                    return Ok(ReadPage {
                        cluster_error: p.error_code,
                        high_watermark: p.high_watermark,
                        ..ReadPage::default()
                    });
                }
                let held = p.records.clone().unwrap_or_default();
                let hw = p.high_watermark;
                (held, hw, ResponseKind::Fetch(resp))
            }
        };
        let mut response = Response {
            api: ApiKey::Fetch,
            version,
            correlation_id: 0,
            body,
            notes: std::mem::take(&mut request.notes),
        };
        for f in self.chain.iter().rev() {
            if !f.wants(ApiKey::Fetch, Direction::Response) && !response.notes.has(f.name()) {
                continue;
            }
            let refused = match f.on_response(&self.session, &mut response).await {
                ResponseAction::Continue => None,
                ResponseAction::Hold(gate) => gate.await.err(),
                ResponseAction::Close(reason) => Some(reason),
            };
            if let Some(reason) = refused {
                return Err(format!(
                    "{} filter refused the read-back: {reason}",
                    f.name()
                ));
            }
        }
        let ResponseKind::Fetch(delivered) = &response.body else {
            return Err("a filter changed the read-back's response kind".into());
        };
        let error = if delivered.error_code != 0 {
            delivered.error_code
        } else {
            partition_of(delivered, partition).map_or(0, |p| p.error_code)
        };
        Ok(ReadPage {
            held,
            delivered: partition_of(delivered, partition)
                .and_then(|p| p.records.clone())
                .unwrap_or_default(),
            error,
            cluster_error: 0,
            high_watermark,
        })
    }
}

fn partition_of(
    resp: &FetchResponse,
    partition: i32,
) -> Option<&kafka_protocol::messages::fetch_response::PartitionData> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
}

impl ReadBack for Loopback {
    fn principal(&self) -> &str {
        self.session
            .principal
            .as_ref()
            .map_or("", |p| p.name.as_str())
    }

    fn fetch<'a>(
        &'a self,
        conn: &'a mut Conn,
        topic: &'a str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Pin<Box<dyn Future<Output = Result<ReadPage, String>> + Send + 'a>> {
        Box::pin(self.fetch_through(conn, topic, partition, offset, max_bytes))
    }
}
