//! Protocol-level behaviour checked with exact requests.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use gatehouse_tests::Via;
use gatehouse_tests::{record_batch, RawClient, TestBroker};
use kafka_protocol::messages::{
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub async fn create(
    client: &mut RawClient,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )]);
    let resp: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &req).await?;
    let code = resp.topics.first().map(|t| t.error_code).unwrap_or(-1);
    ensure!(code == 0, "create {topic}: error {code}");
    Ok(())
}

/// Produces one batch; returns (error code, base offset).
pub async fn produce_one(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = client.call(ApiKey::Produce, 9, &req).await?;
    let p = resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .context("empty produce response")?;
    Ok((p.error_code, p.base_offset))
}

async fn list_offset(client: &mut RawClient, topic: &str, ts: i64) -> Result<(i16, i64, i64)> {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(ts)])]);
    let resp: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 7, &req).await?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("empty list offsets response")?;
    Ok((p.error_code, p.offset, p.timestamp))
}

async fn idempotent_sequences_drop_duplicates_and_refuse_gaps(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "seq", 1, &[]).await?;
    let pid: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        )
        .await?;
    ensure!(pid.error_code == 0, "init producer id: {}", pid.error_code);
    let id = pid.producer_id.0;
    let epoch = pid.producer_epoch;

    let first = record_batch(id, epoch, 0, 5, 1_000, Compression::None)?;
    ensure!(produce_one(&mut c, "seq", 0, first.clone()).await? == (0, 0));
    // The same batch again (a retry): acknowledged with its original offset,
    // not stored twice.
    ensure!(produce_one(&mut c, "seq", 0, first).await? == (0, 0));
    let next = record_batch(id, epoch, 5, 3, 2_000, Compression::Gzip)?;
    ensure!(produce_one(&mut c, "seq", 0, next).await? == (0, 5));
    // A gap in sequence numbers is refused: OUT_OF_ORDER_SEQUENCE_NUMBER.
    let gap = record_batch(id, epoch, 20, 2, 3_000, Compression::None)?;
    let (code, _) = produce_one(&mut c, "seq", 0, gap).await?;
    ensure!(code == 45, "gap answered with {code}");
    // An older epoch is fenced.
    if epoch > 0 {
        let old = record_batch(id, epoch - 1, 8, 1, 3_000, Compression::None)?;
        ensure!(produce_one(&mut c, "seq", 0, old).await?.0 == 47);
    }
    ensure!(
        list_offset(&mut c, "seq", -1).await? == (0, 8, -1),
        "high watermark"
    );

    // A producer id survives restarts: the next one is different.
    let again: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        )
        .await?;
    ensure!(again.producer_id.0 != id);
    Ok(())
}

async fn list_offsets_by_time_and_delete_records(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "times", 1, &[]).await?;
    // Three batches of 10 records: timestamps 1000.., 2000.., 3000..
    for (n, ts) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let b = record_batch(-1, -1, -1, 10, ts, Compression::Lz4)?;
        let got = produce_one(&mut c, "times", 0, b).await?;
        ensure!(got == (0, n as i64 * 10), "produce {n}: {got:?}");
    }
    ensure!(
        list_offset(&mut c, "times", -2).await? == (0, 0, -1),
        "earliest"
    );
    ensure!(
        list_offset(&mut c, "times", -1).await? == (0, 30, -1),
        "latest"
    );
    ensure!(
        list_offset(&mut c, "times", 2_005).await? == (0, 15, 2_005),
        "by time"
    );
    ensure!(
        list_offset(&mut c, "times", 1_500).await? == (0, 10, 2_000),
        "between batches"
    );
    ensure!(
        list_offset(&mut c, "times", 9_999).await? == (0, -1, -1),
        "after the end"
    );
    ensure!(
        list_offset(&mut c, "times", -3).await? == (0, 29, 3_009),
        "max timestamp"
    );

    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("times"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(15)])]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await?;
    let p = &resp.topics[0].partitions[0];
    ensure!(
        (p.error_code, p.low_watermark) == (0, 15),
        "delete records: {p:?}"
    );
    ensure!(
        list_offset(&mut c, "times", -2).await? == (0, 15, -1),
        "earliest after delete"
    );
    // Deleting past the end is refused.
    let req = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(name("times"))
        .with_partitions(vec![DeleteRecordsPartition::default()
            .with_partition_index(0)
            .with_offset(99)])]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await?;
    ensure!(
        resp.topics[0].partitions[0].error_code == 1,
        "OFFSET_OUT_OF_RANGE expected"
    );
    Ok(())
}

async fn metadata_api_versions_and_auto_create(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await?;
    ensure!(v.error_code == 0);
    let produce = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .context("produce advertised")?;
    ensure!(produce.min_version == 3 && produce.max_version >= 9);
    ensure!(
        !v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::AddPartitionsToTxn as i16),
        "transactions are not advertised"
    );

    // Unknown topic, auto-creation off (the default): an error, nothing made.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(name("nope"))),
        ]))
        .with_allow_auto_topic_creation(true);
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await?;
    ensure!(
        m.topics[0].error_code == 3,
        "UNKNOWN_TOPIC_OR_PARTITION expected"
    );
    ensure!(m.brokers.len() == 1, "brokers: {:?}", m.brokers);
    match broker.proxy() {
        // Through the proxy, the broker is announced at the proxy's own
        // listener for its node, never at its real address.
        Some(proxy) => {
            let routes = proxy.node_routes();
            ensure!(
                routes.len() == 1 && m.brokers[0].port == i32::from(routes[0].1),
                "{routes:?}"
            );
            ensure!(m.brokers[0].port != i32::from(broker.broker_addr().port()));
        }
        None => ensure!(m.brokers[0].port == i32::from(broker.broker_addr().port())),
    }

    let auto = TestBroker::start_via_with(via, |c| {
        c.auto_create_topics = true;
        c.default_partitions = 2;
    })
    .await?;
    let mut c = RawClient::connect(auto.addr()).await?;
    let m: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await?;
    ensure!(
        m.topics[0].error_code == 0 && m.topics[0].partitions.len() == 2,
        "auto-created: {:?}",
        m.topics[0]
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

direct_and_proxied!(
    idempotent_sequences_drop_duplicates_and_refuse_gaps,
    list_offsets_by_time_and_delete_records,
    metadata_api_versions_and_auto_create
);
