//! The `stamp` filter: every record produced through the proxy carries the
//! name of the principal that produced it, in a `produced-by` header.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};

use crate::codec::records::{rewrite_records, RecordsError, RecordsOptions, Verdict};
use crate::filter::{Direction, Filter, FilterFuture, Request, RequestAction, SessionContext};

/// Stamps produced records with their producer.
#[derive(Debug, Default)]
pub struct Stamp;

impl Filter for Stamp {
    fn name(&self) -> &'static str {
        "stamp"
    }

    // Only Produce requests are decoded for this filter; everything else
    // crosses the proxy as raw bytes.
    fn wants(&self, api: ApiKey, direction: Direction) -> bool {
        api == ApiKey::Produce && direction == Direction::Request
    }

    fn on_request<'a>(
        &'a self,
        session: &'a SessionContext,
        request: &'a mut Request,
    ) -> FilterFuture<'a, RequestAction> {
        Box::pin(async move {
            let RequestKind::Produce(produce) = &mut request.body else {
                return RequestAction::Continue;
            };
            let who = Bytes::from(
                session
                    .principal
                    .as_ref()
                    .map_or("anonymous", |p| p.name.as_str())
                    .to_string(),
            );
            for topic in &mut produce.topic_data {
                for partition in &mut topic.partition_data {
                    let Some(records) = &partition.records else {
                        continue;
                    };
                    // Decodes (and decompresses, within bounds) each batch,
                    // shows every record to the closure, and re-encodes the
                    // batches that changed with their own codec.
                    let stamped = rewrite_records(records, &RecordsOptions::produce(), |_, r| {
                        r.headers.push("produced-by", Some(who.clone()));
                        Ok::<_, RecordsError>(Verdict::Keep)
                    });
                    match stamped {
                        Ok(r) => partition.records = Some(r.records),
                        // The wire guard has checked the framing already;
                        // what is left is a corrupt or oversized batch.
                        Err(e) => return RequestAction::Close(format!("produce not stamped: {e}")),
                    }
                }
            }
            RequestAction::Continue
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::records::decode_record_set;
    use crate::filter::{Notes, Target};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    #[tokio::test]
    async fn every_produced_record_names_its_producer() {
        let record = |offset: i64| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"{}")),
            headers: Default::default(),
        };
        let mut encoded = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::Lz4,
        };
        RecordBatchEncoder::encode(&mut encoded, &[record(0), record(1)], &options)
            .expect("encodes");
        let partition = PartitionProduceData::default().with_records(Some(encoded.freeze()));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("social.posts")))
            .with_partition_data(vec![partition]);
        let mut request = Request {
            api: ApiKey::Produce,
            version: 9,
            header: RequestHeader::default(),
            body: RequestKind::Produce(ProduceRequest::default().with_topic_data(vec![topic])),
            notes: Notes::default(),
        };
        let session = SessionContext {
            peer: ([127, 0, 0, 1], 5000).into(),
            target: Target::Bootstrap,
            client_id: None,
            principal: None,
        };
        let action = Stamp.on_request(&session, &mut request).await;
        assert!(matches!(action, RequestAction::Continue));
        let RequestKind::Produce(produce) = &request.body else {
            panic!("still a produce");
        };
        let records = produce.topic_data[0].partition_data[0].records.clone();
        let set = decode_record_set(&records.expect("records"), &RecordsOptions::produce())
            .expect("decodes");
        let stamped: Vec<_> = set
            .batches
            .iter()
            .flat_map(|b| &b.records)
            .map(|r| r.headers.last(b"produced-by").and_then(|h| h.value))
            .collect();
        assert_eq!(stamped, [Some(&b"anonymous"[..]); 2]);
    }
}
