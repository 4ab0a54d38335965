//! Record batches as they arrive in Produce requests: the guard, then the
//! codec's decoder for whatever the guard accepts.
#![no_main]

use bytes::Bytes;
use gatehouse_wire::check_record_batches;
use kafka_protocol::records::RecordBatchDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if check_record_batches(data).is_ok() {
        let mut b = Bytes::copy_from_slice(data);
        let _ = RecordBatchDecoder::decode_all(&mut b);
    }
});
