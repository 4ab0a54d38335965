//! Record sets through the proxy's codec (`gatehouse_proxy::codec::records`),
//! for every compression codec: decode (produce and fetch rules), encode
//! the decoded set, and decode that again to the same records; re-encode
//! every batch under each codec and check the same; run `rewrite_records`
//! with a closure that changes values and (on fetch) drops records.
#![no_main]

use bytes::{Bytes, BytesMut};
use gatehouse_proxy::codec::records::{
    decode_record_set, rewrite_records, Codec, RecordSet, RecordsError, RecordsOptions, Verdict,
};
use libfuzzer_sys::fuzz_target;

const CODEC_MASK: i16 = 0x7;

fn roundtrip(set: &RecordSet, opts: &RecordsOptions) {
    let mut out = BytesMut::new();
    if set.encode(&mut out).is_err() {
        return;
    }
    let again = decode_record_set(&out.freeze(), opts).expect("encoded set does not decode");
    assert_eq!(again.batches.len(), set.batches.len());
    for (a, b) in again.batches.iter().zip(&set.batches) {
        assert_eq!(a.records, b.records, "records changed in a round trip");
        // An empty batch is written uncompressed (codec bits cleared).
        let mut expected = b.header;
        if b.records.is_empty() {
            expected.attributes &= !CODEC_MASK;
        }
        assert_eq!(a.header, expected, "header changed in a round trip");
    }
    assert_eq!(again.partial_tail, set.partial_tail);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let input = Bytes::copy_from_slice(rest);
    let opts = if sel & 1 == 0 {
        RecordsOptions::produce()
    } else {
        RecordsOptions::fetch()
    };
    if let Ok(set) = decode_record_set(&input, &opts) {
        roundtrip(&set, &opts);
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut other = set.clone();
            for b in &mut other.batches {
                if !b.header.is_control() {
                    b.header.attributes = (b.header.attributes & !CODEC_MASK) | codec.bits();
                }
            }
            roundtrip(&other, &opts);
        }
    }
    let drop = sel & 2 != 0 && opts.origin == gatehouse_proxy::codec::records::Origin::Fetch;
    let _ = rewrite_records::<_, RecordsError>(&input, &opts, |_, r| {
        if let Some(v) = &r.value {
            if v.len() % 2 == 0 {
                r.value = Some(Bytes::from_static(b"\"***\""));
            }
        }
        Ok(if drop && r.key.is_none() {
            Verdict::Drop
        } else {
            Verdict::Keep
        })
    });
});
