//! Frames and request headers as the broker and the proxy read them: split
//! frames off a byte stream, read headers, run the pre-decode guard, and
//! decode whatever the guard lets through. Nothing may panic or abort.
#![no_main]

use bytes::BytesMut;
use gatehouse_wire::{
    check_request, decode_request, peek_header, produce_acks, request_header_len, FrameSplitter,
};
use kafka_protocol::messages::RequestKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let splitter = FrameSplitter::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = splitter.split(&mut buf) {
        let _ = request_header_len(&frame);
        let _ = produce_acks(&frame);
        let Ok(raw) = peek_header(&frame) else {
            continue;
        };
        if let Ok((_header, api, mut body)) = decode_request(frame) {
            let version = raw.api_version;
            if check_request(api, version, &body).is_ok() {
                let _ = RequestKind::decode(api, &mut body, version);
            }
        }
    }
});
