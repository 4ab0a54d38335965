//! Connections: framing, in-order pipelining, and the request dispatch.
//!
//! Each connection reads frames as they arrive and starts handling each
//! request at once (a produce is handed to the committer before the next
//! frame is looked at, so per-connection order is the append order), while
//! responses are written strictly in request order, as Kafka clients
//! require. At most [`MAX_IN_FLIGHT`] requests per connection are in
//! progress; past that the connection stops reading, which pushes back on
//! the client.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use gatehouse_wire::{decode_request, encode_response, peek_header, FrameSplitter, HeaderError};
use kafka_protocol::messages::{ApiKey, RequestKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::broker::Shared;
use crate::handlers::{self, RequestContext};

/// A response being prepared: the encoded frame, or `None` to hang up.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Bytes>> + Send>>;

/// Requests a connection may have in progress at once.
pub const MAX_IN_FLIGHT: usize = 64;

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((sock, peer)) => {
                    // Latency matters more than packet count for a broker.
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(connection(shared.clone(), sock, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

enum Next {
    Respond(Pending),
    /// Nothing to send (acks=0 produce answered nothing).
    Skip,
    Close,
}

async fn connection(shared: Arc<Shared>, sock: TcpStream, peer: SocketAddr) {
    let (mut rd, mut wr) = sock.into_split();
    let splitter = FrameSplitter::new(shared.config.max_frame_bytes);
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut closing = false;
    tracing::debug!(%peer, "connection opened");
    loop {
        while !closing && in_flight.len() < MAX_IN_FLIGHT {
            match splitter.split(&mut buf) {
                Ok(Some(frame)) => match dispatch(&shared, frame, peer) {
                    Next::Respond(p) => in_flight.push_back(p),
                    Next::Skip => {}
                    Next::Close => closing = true,
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame");
                    closing = true;
                }
            }
        }
        if closing && in_flight.is_empty() {
            break;
        }
        let want = splitter.wanted(&buf).clamp(4096, 1 << 20);
        buf.reserve(want);
        tokio::select! {
            read = rd.read_buf(&mut buf), if !closing && in_flight.len() < MAX_IN_FLIGHT => {
                match read {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "read failed");
                        break;
                    }
                }
            }
            Some(out) = in_flight.next() => {
                let Some(bytes) = out else {
                    // The response could not be encoded: the client would
                    // wait for it forever, so hang up instead.
                    break;
                };
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "write failed");
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::debug!(%peer, "connection closed");
}

fn dispatch(shared: &Arc<Shared>, frame: Bytes, peer: SocketAddr) -> Next {
    let raw = match peek_header(&frame) {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: bad request header");
            return Next::Close;
        }
    };
    let (header, api, mut body) = match decode_request(frame) {
        Ok(h) => h,
        Err(HeaderError::UnknownApiKey(k)) => {
            tracing::warn!(%peer, api_key = k, "closing connection: unknown API key");
            return Next::Close;
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: bad request header");
            return Next::Close;
        }
    };
    let version = raw.api_version;
    let correlation_id = raw.correlation_id;
    if !handlers::supports(api, version) {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer at v0 with the versions we do support, so the
            // client can pick one.
            let resp = handlers::api_versions_response(
                kafka_protocol::messages::ApiVersionsRequest::default(),
                true,
            );
            return Next::Respond(Box::pin(async move {
                encode(
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    &kafka_protocol::messages::ResponseKind::ApiVersions(resp),
                )
            }));
        }
        tracing::warn!(%peer, ?api, version, "closing connection: unsupported API version");
        return Next::Close;
    }
    // Every count in the body must be backed by bytes before the codec sees
    // it: the codec sizes its vectors from the counts it reads.
    if let Err(e) = gatehouse_wire::check_request(api, version, &body) {
        tracing::warn!(%peer, ?api, version, error = %e, "closing connection: malformed request");
        return Next::Close;
    }
    let request = match RequestKind::decode(api, &mut body, version) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, ?api, version, error = %e, "closing connection: malformed request");
            return Next::Close;
        }
    };
    let ctx = RequestContext {
        version,
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        peer,
    };
    match handlers::handle(shared.clone(), ctx, request) {
        Some(fut) => Next::Respond(Box::pin(async move {
            let resp = fut.await;
            encode(api, version, correlation_id, &resp)
        })),
        None => Next::Skip,
    }
}

fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &kafka_protocol::messages::ResponseKind,
) -> Option<Bytes> {
    let mut out = BytesMut::new();
    match encode_response(&mut out, api, version, correlation_id, |b| {
        resp.encode(b, version)
    }) {
        Ok(()) => Some(out.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode response");
            None
        }
    }
}
