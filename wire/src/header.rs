//! Request and response headers.
//!
//! A response header can only be written (and read) knowing the request's
//! API key and version, so both sides keep the request's [`RawHeader`] until
//! the response goes out.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// The fixed first eight bytes of every request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// The API key as sent (may be unknown to us).
    pub api_key: i16,
    /// The API version as sent.
    pub api_version: i16,
    /// The client's correlation id, echoed in the response.
    pub correlation_id: i32,
}

/// Why a request header could not be read, or a response not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The frame is shorter than the fixed part of a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    Truncated(usize),
    /// The API key is not one Kafka defines.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The header (client id, tagged fields) did not decode.
    #[error("malformed request header: {0}")]
    Malformed(String),
    /// A response could not be encoded at the request's version.
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        /// The API of the response.
        api: ApiKey,
        /// The version it was asked for.
        version: i16,
        /// What the encoder said.
        reason: String,
    },
}

/// Reads the fixed part of a request header without trusting the frame.
pub fn peek_header(frame: &[u8]) -> Result<RawHeader, HeaderError> {
    match frame.get(..8) {
        Some(h) => Ok(RawHeader {
            api_key: i16::from_be_bytes([h[0], h[1]]),
            api_version: i16::from_be_bytes([h[2], h[3]]),
            correlation_id: i32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        }),
        None => Err(HeaderError::Truncated(frame.len())),
    }
}

/// Decodes a request header; returns it, the API key and the remaining body.
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, ApiKey, Bytes), HeaderError> {
    let raw = peek_header(&frame)?;
    let api =
        ApiKey::try_from(raw.api_key).map_err(|()| HeaderError::UnknownApiKey(raw.api_key))?;
    let header_version = api.request_header_version(raw.api_version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok((header, api, frame))
}

/// Encodes a full response frame (length prefix, header, body) into `out`.
///
/// `body` writes the message at `version`; the length prefix is patched in
/// afterwards, so the body is encoded once.
pub fn encode_response<E: std::fmt::Display>(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), HeaderError> {
    let err = |e: &dyn std::fmt::Display| HeaderError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out, api.response_header_version(version))
        .map_err(|e| err(&e))?;
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(err(&e));
    }
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataResponse};
    use kafka_protocol::protocol::StrBytes;

    fn request_frame(api: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .expect("encode header");
        body.encode(&mut buf, version).expect("encode body");
        buf.freeze()
    }

    #[test]
    fn request_header_round_trips() {
        let frame = request_frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let (h, api, _body) = decode_request(frame).expect("decode");
        assert_eq!(api, ApiKey::ApiVersions);
        assert_eq!(h.correlation_id, 77);
        assert_eq!(h.client_id.as_deref(), Some("t"));
    }

    #[test]
    fn short_and_unknown_headers_are_errors() {
        assert!(matches!(
            peek_header(&[0, 1, 2]),
            Err(HeaderError::Truncated(3))
        ));
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 1, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(frame),
            Err(HeaderError::UnknownApiKey(0x7f00))
        ));
    }

    #[test]
    fn response_has_length_prefix_and_correlation_id() {
        let mut out = BytesMut::new();
        encode_response(&mut out, ApiKey::Metadata, 12, 9, |b| {
            MetadataResponse::default().encode(b, 12)
        })
        .expect("encode");
        let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len + 4, out.len());
        assert_eq!(&out[4..8], &9i32.to_be_bytes());
    }
}

// === Reading just enough of a frame to forward it ===

fn read_uvarint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Length of the request header at the front of `frame`, without decoding
/// it: the fixed part, the client id, and (for flexible versions) the tagged
/// fields. Lets a proxy forward a request it does not decode.
pub fn request_header_len(frame: &[u8]) -> Result<usize, HeaderError> {
    let raw = peek_header(frame)?;
    let api =
        ApiKey::try_from(raw.api_key).map_err(|()| HeaderError::UnknownApiKey(raw.api_key))?;
    let truncated = || HeaderError::Truncated(frame.len());
    let mut at = 8usize;
    let id_len = frame.get(8..10).ok_or_else(truncated)?;
    let id_len = i16::from_be_bytes([id_len[0], id_len[1]]);
    at += 2 + usize::try_from(id_len).unwrap_or(0);
    if api.request_header_version(raw.api_version) >= 2 {
        let count = read_uvarint(frame, &mut at).ok_or_else(truncated)?;
        for _ in 0..count {
            read_uvarint(frame, &mut at).ok_or_else(truncated)?;
            let size = read_uvarint(frame, &mut at).ok_or_else(truncated)?;
            at = at.checked_add(size as usize).ok_or_else(truncated)?;
        }
    }
    if at > frame.len() {
        return Err(truncated());
    }
    Ok(at)
}

/// The `acks` of a Produce request frame (header included), read without
/// decoding the request: `acks = 0` requests get no response, so a proxy
/// must not wait for one.
pub fn produce_acks(frame: &[u8]) -> Result<i16, HeaderError> {
    let raw = peek_header(frame)?;
    let mut at = request_header_len(frame)?;
    let truncated = || HeaderError::Truncated(frame.len());
    // transactional_id: nullable string, compact from v9.
    if raw.api_version >= 9 {
        let len = read_uvarint(frame, &mut at).ok_or_else(truncated)?;
        at += len.saturating_sub(1) as usize;
    } else {
        let len = frame.get(at..at + 2).ok_or_else(truncated)?;
        at += 2 + usize::try_from(i16::from_be_bytes([len[0], len[1]])).unwrap_or(0);
    }
    let acks = frame.get(at..at + 2).ok_or_else(truncated)?;
    Ok(i16::from_be_bytes([acks[0], acks[1]]))
}

#[cfg(test)]
mod forward_tests {
    use super::*;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn frame(version: i16, acks: i16, txn: Option<&str>, client: Option<&str>) -> Bytes {
        let api = ApiKey::Produce;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(5)
            .with_client_id(client.map(|c| StrBytes::from_string(c.to_string())))
            .encode(&mut buf, api.request_header_version(version))
            .expect("header");
        let header_len = buf.len();
        ProduceRequest::default()
            .with_acks(acks)
            .with_transactional_id(
                txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
            )
            .encode(&mut buf, version)
            .expect("body");
        assert_eq!(request_header_len(&buf).expect("len"), header_len);
        buf.freeze()
    }

    #[test]
    fn acks_are_read_at_every_version() {
        for version in 3..=13 {
            for acks in [-1, 0, 1] {
                for txn in [None, Some("txn-1")] {
                    for client in [None, Some("c"), Some("a-longer-client-id")] {
                        let f = frame(version, acks, txn, client);
                        assert_eq!(produce_acks(&f).expect("acks"), acks, "v{version}");
                    }
                }
            }
        }
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        let f = frame(9, 0, Some("t"), Some("client"));
        for cut in 0..f.len() {
            let _ = produce_acks(&f[..cut]);
            let _ = request_header_len(&f[..cut]);
        }
    }
}
