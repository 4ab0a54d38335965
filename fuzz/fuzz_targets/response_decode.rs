//! Response bodies from the cluster as the proxy decodes them
//! (`proxy/src/net/session.rs`, `decode_response`): the response header,
//! the pre-decode guard, then the codec, for an arbitrary api and version
//! taken from the first three bytes.
#![no_main]

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Decodable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let key = i16::from_be_bytes([data[0], data[1]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return;
    };
    let body = Bytes::copy_from_slice(&data[3..]);
    let range = api.valid_versions();
    let span = (range.max - range.min + 1).max(1) as u8;
    let version = range.min + i16::from(data[2] % span);
    let mut b = body.clone();
    if ResponseHeader::decode(&mut b, api.response_header_version(version)).is_err() {
        return;
    }
    if gatehouse_wire::check_response(api, version, &b).is_ok() {
        let _ = ResponseKind::decode(api, &mut b, version);
    }
});
