//! The frame codec the proxy runs on every request and response, on real
//! frames built with `kafka-protocol`:
//!
//! - `split`: [`FrameSplitter::split_with_prefix`] over a receive buffer of
//!   64 pipelined Metadata v12 requests, and over one 1 MiB Fetch v12
//!   response (throughput in frames: splitting is O(1) per frame, it never
//!   touches the body; refilling the buffer is setup, not measured);
//! - `header`: [`peek_header`] on a Produce request, and [`produce_acks`]
//!   on the same request (what the proxy reads of every request it does
//!   not decode);
//! - `produce v9 request` (~512 KiB record batch) and `fetch v12 response`
//!   (3 partitions of ~1 MiB of records each): the guard alone
//!   ([`check_request`] / [`check_response`]), header + guard +
//!   `kafka-protocol` decode, and the full round trip the proxy makes when a
//!   filter wants the message (decode, then encode with a length prefix
//!   into a reused buffer, via [`encode_response`] for the response).
//!   The records stay opaque `Bytes` in the decoded message, so the guard
//!   and decode cost the same whatever their size; only the encode copies
//!   them, and only the round trip reports throughput (the frame size).
//!
//! `cargo bench -p gatehouse-wire --bench codec`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatehouse_wire::frame::write_frame;
use gatehouse_wire::{
    check_request, check_response, encode_response, peek_header, produce_acks, FrameSplitter,
};
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    metadata_request::MetadataRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
    ApiKey, FetchResponse, MetadataRequest, ProduceRequest, RequestHeader, RequestKind,
    ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The proxy's default `limits.max_frame_bytes`.
const MAX_FRAME_BYTES: usize = 100 << 20;
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const METADATA_VERSION: i16 = 12;

/// A ~1 KB JSON post, as the social topics carry.
fn post(i: usize) -> String {
    let mut v = format!(
        r#"{{"id":"p-{i}","ts":"2026-11-26T08:00:00Z","lang":"en","author":{{"id":"u-{:06}","email":"jane.doe.{i}@example.com","name":"Jane Doe","handle":"@janedoe{i}","ip":"203.0.113.42"}},"geo":{{"lat":48.8566,"lon":2.3522}},"campaign":"cmp-2026-11","sentiment":null,"text":""#,
        i % 20
    );
    while v.len() < 1000 {
        v.push_str("support answered in minutes, the campaign is great #brand ");
    }
    v.push_str("\"}");
    v
}

/// One uncompressed magic-v2 batch of 1 KB posts, at least `bytes` long.
fn record_batch(base_offset: i64, bytes: usize) -> Bytes {
    let mut records = Vec::new();
    let mut size = 0;
    while size < bytes {
        let i = records.len();
        let value = post(i);
        size += value.len() + 20;
        records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: -1 + i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("u-{:06}", i % 20))),
            value: Some(Bytes::from(value)),
            headers: Default::default(),
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("fixed records encode");
    buf.freeze()
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A request frame without its length prefix (what `peek_header`,
/// `produce_acks` and the decoder see).
fn request_body(api: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("rdkafka-producer-1")))
        .encode(&mut buf, api.request_header_version(version))
        .expect("fixed header encodes");
    body.encode(&mut buf, version).expect("fixed body encodes");
    buf.freeze()
}

/// A response frame without its length prefix.
fn response_body(api: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .expect("fixed header encodes");
    body.encode(&mut buf, version).expect("fixed body encodes");
    buf.freeze()
}

fn metadata_request(correlation_id: i32) -> Bytes {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("social.posts"))),
            MetadataRequestTopic::default().with_name(Some(topic("social.likes"))),
        ]))
        .with_allow_auto_topic_creation(false);
    request_body(ApiKey::Metadata, METADATA_VERSION, correlation_id, &request)
}

fn produce_request(records: Bytes) -> Bytes {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("social.posts"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(3)
                .with_records(Some(records))])]);
    request_body(ApiKey::Produce, PRODUCE_VERSION, 41, &request)
}

fn fetch_response(partitions: &[Bytes]) -> Bytes {
    let response = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(topic("social.posts"))
        .with_partitions(
            partitions
                .iter()
                .enumerate()
                .map(|(i, records)| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_high_watermark(1_000_000)
                        .with_last_stable_offset(1_000_000)
                        .with_log_start_offset(0)
                        .with_records(Some(records.clone()))
                })
                .collect(),
        )]);
    response_body(ApiKey::Fetch, FETCH_VERSION, 42, &response)
}

fn split(c: &mut Criterion) {
    let splitter = FrameSplitter::new(MAX_FRAME_BYTES);
    let mut small = BytesMut::new();
    for i in 0..64 {
        write_frame(&mut small, &metadata_request(i));
    }
    let mut large = BytesMut::new();
    write_frame(&mut large, &fetch_response(&[record_batch(0, 1 << 20)]));

    let mut g = c.benchmark_group("split");
    for (name, stream, frames) in [
        ("64 Metadata requests", small.freeze(), 64u64),
        ("one 1 MiB Fetch response", large.freeze(), 1),
    ] {
        g.throughput(Throughput::Elements(frames));
        g.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut n = 0;
                    while let Some(frame) = splitter
                        .split_with_prefix(&mut buf)
                        .expect("fixed frames are under the limit")
                    {
                        black_box(frame);
                        n += 1;
                    }
                    assert_eq!(n, frames);
                    buf
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn header(c: &mut Criterion) {
    let produce = produce_request(record_batch(0, 4 << 10));
    assert_eq!(produce_acks(&produce).expect("fixed request"), -1);
    let mut g = c.benchmark_group("header");
    g.bench_function("peek_header", |b| {
        b.iter(|| peek_header(black_box(&produce)).expect("fixed request"))
    });
    g.bench_function("produce_acks", |b| {
        b.iter(|| produce_acks(black_box(&produce)).expect("fixed request"))
    });
    g.finish();
}

fn produce(c: &mut Criterion) {
    let api = ApiKey::Produce;
    let version = PRODUCE_VERSION;
    let frame = produce_request(record_batch(0, 512 << 10));
    let header_len =
        gatehouse_wire::request_header_len(&frame).expect("fixed request has a header");

    let decode = |frame: &Bytes| {
        let mut body = frame.clone();
        let header = RequestHeader::decode(&mut body, api.request_header_version(version))
            .expect("fixed header decodes");
        check_request(api, version, &body).expect("fixed body passes the guard");
        let request = RequestKind::decode(api, &mut body, version).expect("fixed body decodes");
        (header, request)
    };
    // The round trip must give back the same bytes.
    let mut out = BytesMut::new();
    let (h, r) = decode(&frame);
    encode_request(&h, &r, version, &mut out);
    assert_eq!(&out[4..], &frame[..], "produce request does not round-trip");

    let mut g = c.benchmark_group(format!("produce v{version} request"));
    g.bench_function("check_request", |b| {
        b.iter(|| check_request(api, version, &frame[header_len..]).expect("fixed body"))
    });
    g.bench_function("decode", |b| b.iter(|| decode(&frame)));
    // Only encoding copies the records; the guard and the decoder take
    // the same time whatever their size, so bytes per second would be
    // meaningless for them.
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode + encode", |b| {
        b.iter(|| {
            let (header, request) = decode(&frame);
            out.clear();
            encode_request(&header, &request, version, &mut out);
            out.len()
        })
    });
    g.finish();
}

/// What the proxy sends upstream for a decoded request: length prefix,
/// header, body.
fn encode_request(header: &RequestHeader, request: &RequestKind, version: i16, out: &mut BytesMut) {
    let api = ApiKey::Produce;
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    header
        .encode(out, api.request_header_version(version))
        .expect("decoded header encodes");
    request.encode(out, version).expect("decoded body encodes");
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn fetch(c: &mut Criterion) {
    let api = ApiKey::Fetch;
    let version = FETCH_VERSION;
    let partitions: Vec<Bytes> = (0..3).map(|p| record_batch(p * 10_000, 1 << 20)).collect();
    let frame = fetch_response(&partitions);
    let header_len = {
        let mut b = frame.clone();
        ResponseHeader::decode(&mut b, api.response_header_version(version))
            .expect("fixed header decodes");
        frame.len() - b.len()
    };

    let decode = |frame: &Bytes| {
        let mut body = frame.clone();
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .expect("fixed header decodes");
        check_response(api, version, &body).expect("fixed body passes the guard");
        let response = ResponseKind::decode(api, &mut body, version).expect("fixed body decodes");
        (header.correlation_id, response)
    };
    let mut out = BytesMut::new();
    let (id, r) = decode(&frame);
    encode_response(&mut out, api, version, id, |b| r.encode(b, version)).expect("encodes");
    assert_eq!(&out[4..], &frame[..], "fetch response does not round-trip");

    let mut g = c.benchmark_group(format!("fetch v{version} response"));
    g.bench_function("check_response", |b| {
        b.iter(|| check_response(api, version, &frame[header_len..]).expect("fixed body"))
    });
    g.bench_function("decode", |b| b.iter(|| decode(&frame)));
    // As for produce: only encoding copies the records.
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode + encode", |b| {
        b.iter(|| {
            let (id, response) = decode(&frame);
            out.clear();
            encode_response(&mut out, api, version, id, |b| response.encode(b, version))
                .expect("decoded response encodes");
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, split, header, produce, fetch);
criterion_main!(benches);
