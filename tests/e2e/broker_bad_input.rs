//! Bad input: the broker answers with an error or hangs up, never panics,
//! never allocates what a peer merely claims, and other clients are not
//! affected.

use std::time::Duration;

use anyhow::{ensure, Result};
use gatehouse_tests::Via;
use gatehouse_tests::{record_batch, RawClient, TestBroker};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::records::Compression;

use crate::broker_protocol::{create, produce_one};

const CLOSE_WITHIN: Duration = Duration::from_secs(5);

async fn still_serves(broker: &TestBroker) -> Result<()> {
    let mut c = RawClient::connect(broker.addr()).await?;
    let m: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .await?;
    ensure!(m.brokers.len() == 1, "metadata after bad input: {m:?}");
    Ok(())
}

async fn oversized_length_prefix_is_refused_without_allocating(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    // 2 GiB claimed, four bytes sent.
    c.send_raw(&0x7fff_fff0i32.to_be_bytes()).await?;
    c.expect_closed(CLOSE_WITHIN).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    c.send_raw(&(-7i32).to_be_bytes()).await?;
    c.expect_closed(CLOSE_WITHIN).await?;
    still_serves(&broker).await
}

async fn garbage_and_unknown_api_keys_close_the_connection(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    // Unknown API key 999.
    let mut c = RawClient::connect(broker.addr()).await?;
    let mut frame = Vec::new();
    frame.extend_from_slice(&10i32.to_be_bytes());
    frame.extend_from_slice(&999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff]);
    c.send_raw(&frame).await?;
    c.expect_closed(CLOSE_WITHIN).await?;

    // A frame too short for a header.
    let mut c = RawClient::connect(broker.addr()).await?;
    c.send_raw(&[0, 0, 0, 3, 1, 2, 3]).await?;
    c.expect_closed(CLOSE_WITHIN).await?;

    // A Metadata request whose body is garbage.
    let mut c = RawClient::connect(broker.addr()).await?;
    let mut frame = Vec::new();
    let body: Vec<u8> = [3i16.to_be_bytes(), 12i16.to_be_bytes()].concat();
    frame.extend_from_slice(&((body.len() + 4 + 6) as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&5i32.to_be_bytes());
    frame.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80]);
    c.send_raw(&frame).await?;
    c.expect_closed(CLOSE_WITHIN).await?;

    // A request claiming two billion topics in a few bytes.
    let mut c = RawClient::connect(broker.addr()).await?;
    let mut frame = Vec::new();
    let mut body = Vec::new();
    body.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(&9i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    c.send_raw(&frame).await?;
    c.expect_closed(CLOSE_WITHIN).await?;

    // A truncated frame followed by the client going away.
    let mut c = RawClient::connect(broker.addr()).await?;
    c.send_raw(&[0, 0, 0, 100, 0, 3]).await?;
    drop(c);
    still_serves(&broker).await
}

async fn unsupported_api_versions_version_gets_the_supported_list(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    let frame = c.frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
    let mut patched = frame.to_vec();
    // Version lives at bytes 6..8 (after the length and API key).
    patched[6..8].copy_from_slice(&77i16.to_be_bytes());
    c.send_raw(&patched).await?;
    let mut body = c.read_frame().await?;
    let _header =
        <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut body, 0,
        )?;
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut body, 0)?;
    ensure!(
        resp.error_code == 35,
        "UNSUPPORTED_VERSION expected, got {}",
        resp.error_code
    );
    ensure!(!resp.api_keys.is_empty());
    Ok(())
}

async fn corrupt_and_misaddressed_batches_are_refused_and_not_stored(via: Via) -> Result<()> {
    let broker = TestBroker::start_via(via).await?;
    let mut c = RawClient::connect(broker.addr()).await?;
    create(&mut c, "strict", 1, &[("max.message.bytes", "2000")]).await?;
    let good = record_batch(-1, -1, -1, 3, 1, Compression::Snappy)?;
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let got = produce_one(&mut c, "strict", 0, bad.into()).await?;
    ensure!(got.0 == 2, "CORRUPT_MESSAGE expected: {got:?}");
    let truncated = good.slice(..good.len() - 4);
    ensure!(
        produce_one(&mut c, "strict", 0, truncated).await?.0 == 87,
        "INVALID_RECORD expected"
    );
    ensure!(
        produce_one(&mut c, "nope", 0, good.clone()).await?.0 == 3,
        "UNKNOWN_TOPIC expected"
    );
    ensure!(
        produce_one(&mut c, "strict", 5, good.clone()).await?.0 == 3,
        "unknown partition"
    );
    let big = record_batch(-1, -1, -1, 400, 1, Compression::None)?;
    ensure!(
        produce_one(&mut c, "strict", 0, big).await?.0 == 10,
        "MESSAGE_TOO_LARGE expected"
    );
    // A batch whose CRC is right but whose record count is absurd for its
    // size is refused before anything would size a buffer from it.
    let mut liar = good.to_vec();
    liar[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    liar[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let crc = crc32c::crc32c(&liar[21..]);
    liar[17..21].copy_from_slice(&crc.to_be_bytes());
    let got = produce_one(&mut c, "strict", 0, liar.into()).await?;
    ensure!(
        got.0 == 87,
        "INVALID_RECORD expected for a lying record count: {got:?}"
    );
    // Only the good batch lands, at offset 0.
    ensure!(produce_one(&mut c, "strict", 0, good).await? == (0, 0));
    Ok(())
}

direct_and_proxied!(
    oversized_length_prefix_is_refused_without_allocating,
    garbage_and_unknown_api_keys_close_the_connection,
    unsupported_api_versions_version_gets_the_supported_list,
    corrupt_and_misaddressed_batches_are_refused_and_not_stored
);
