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
use gatehouse_sasl::{CredentialStore, Mechanism, ScramServer, Step};
use gatehouse_wire::{decode_request, encode_response, peek_header, FrameSplitter, HeaderError};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::KafkaCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::broker::{Outcome, Shared};
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
            _ = stopped(&mut shutdown) => return,
        }
    }
}

enum Next {
    Respond(Pending),
    /// Send this, then hang up (failed authentication).
    RespondThenClose(Pending),
    /// Nothing to send (acks=0 produce answered nothing).
    Skip,
    Close,
}

/// Where a connection is in SASL, when the broker requires it.
struct Auth<'s> {
    store: Option<&'s CredentialStore>,
    authenticated: bool,
    mechanism: Option<Mechanism>,
    scram: Option<ScramServer<'s>>,
}

async fn connection(shared: Arc<Shared>, sock: TcpStream, peer: SocketAddr) {
    let keep = shared.clone();
    let mut auth = Auth {
        store: keep.sasl.as_ref(),
        authenticated: keep.sasl.is_none(),
        mechanism: None,
        scram: None,
    };
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
                Ok(Some(frame)) => match dispatch(&shared, frame, peer, &mut auth) {
                    Next::Respond(p) => in_flight.push_back(p),
                    Next::RespondThenClose(p) => {
                        in_flight.push_back(p);
                        closing = true;
                    }
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
            _ = stopped(&mut shutdown) => break,
        }
    }
    tracing::debug!(%peer, "connection closed");
}

/// Handles one frame, counting the request in the broker's metrics once
/// its API is known (its outcome and, unless it closes the connection, its
/// time from here to its response being encoded).
fn dispatch<'s>(shared: &Arc<Shared>, frame: Bytes, peer: SocketAddr, auth: &mut Auth<'s>) -> Next {
    let arrived = std::time::Instant::now();
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
    let metrics = &shared.metrics;
    let closed = || {
        metrics.request(api, Outcome::Closed, arrived);
        Next::Close
    };
    if !handlers::supports(api, version) {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer at v0 with the versions we do support, so the
            // client can pick one.
            let resp = handlers::api_versions_response(true, auth.store.is_some());
            metrics.request(api, Outcome::Error, arrived);
            return Next::Respond(Box::pin(async move {
                encode(
                    ApiKey::ApiVersions,
                    0,
                    correlation_id,
                    &ResponseKind::ApiVersions(resp),
                )
            }));
        }
        tracing::warn!(%peer, ?api, version, "closing connection: unsupported API version");
        return closed();
    }
    // Every count in the body must be backed by bytes before the codec sees
    // it: the codec sizes its vectors from the counts it reads.
    if let Err(e) = gatehouse_wire::check_request(api, version, &body) {
        tracing::warn!(%peer, ?api, version, error = %e, "closing connection: malformed request");
        return closed();
    }
    let request = match RequestKind::decode(api, &mut body, version) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%peer, ?api, version, error = %e, "closing connection: malformed request");
            return closed();
        }
    };
    let request = match request {
        RequestKind::SaslHandshake(h) => {
            let next = sasl_handshake(auth, h.mechanism.as_str(), version, correlation_id, peer);
            return counted(shared, api, arrived, next);
        }
        RequestKind::SaslAuthenticate(a) => {
            let next = sasl_authenticate(auth, &a.auth_bytes, version, correlation_id, peer);
            return counted(shared, api, arrived, next);
        }
        RequestKind::ApiVersions(_) => {
            let resp = handlers::api_versions_response(false, auth.store.is_some());
            metrics.request(api, Outcome::Ok, arrived);
            return Next::Respond(Box::pin(async move {
                encode(
                    api,
                    version,
                    correlation_id,
                    &ResponseKind::ApiVersions(resp),
                )
            }));
        }
        other if !auth.authenticated => {
            tracing::warn!(%peer, ?api, "closing connection: request before authentication");
            drop(other);
            return closed();
        }
        other => other,
    };
    let ctx = RequestContext {
        version,
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        peer,
    };
    match handlers::handle(shared.clone(), ctx, request) {
        Some(fut) => {
            let metrics = shared.metrics.clone();
            Next::Respond(Box::pin(async move {
                let resp = fut.await;
                metrics.request(api, Outcome::of(&resp), arrived);
                encode(api, version, correlation_id, &resp)
            }))
        }
        None => {
            // acks=0: handed to the committer, nothing to answer.
            metrics.request(api, Outcome::Ok, arrived);
            Next::Skip
        }
    }
}

/// Counts a request the connection answered itself (SASL): answered, or
/// answered and closed.
fn counted(shared: &Shared, api: ApiKey, arrived: std::time::Instant, next: Next) -> Next {
    let outcome = match &next {
        Next::Respond(_) | Next::Skip => Outcome::Ok,
        Next::RespondThenClose(_) | Next::Close => Outcome::Closed,
    };
    shared.metrics.request(api, outcome, arrived);
    next
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

fn respond(api: ApiKey, version: i16, correlation_id: i32, resp: ResponseKind) -> Pending {
    Box::pin(async move { encode(api, version, correlation_id, &resp) })
}

fn sasl_handshake(
    auth: &mut Auth<'_>,
    mechanism: &str,
    version: i16,
    correlation_id: i32,
    peer: SocketAddr,
) -> Next {
    let enabled: Vec<Mechanism> = if auth.store.is_some() {
        Mechanism::ALL.to_vec()
    } else {
        Vec::new()
    };
    let chosen = Mechanism::from_name(mechanism).filter(|m| enabled.contains(m));
    let code = match (version, chosen) {
        (0, _) => KafkaCode::UnsupportedVersion,
        (_, Some(_)) => KafkaCode::None,
        (_, None) => KafkaCode::UnsupportedSaslMechanism,
    };
    auth.mechanism = if code == KafkaCode::None {
        chosen
    } else {
        None
    };
    auth.scram = None;
    let resp = SaslHandshakeResponse::default()
        .with_error_code(code.code())
        .with_mechanisms(
            enabled
                .iter()
                .map(|m| StrBytes::from_string(m.to_string()))
                .collect(),
        );
    let p = respond(
        ApiKey::SaslHandshake,
        version,
        correlation_id,
        ResponseKind::SaslHandshake(resp),
    );
    if code == KafkaCode::None {
        Next::Respond(p)
    } else {
        tracing::warn!(%peer, mechanism, "SASL handshake refused");
        Next::RespondThenClose(p)
    }
}

fn sasl_authenticate(
    auth: &mut Auth<'_>,
    bytes: &[u8],
    version: i16,
    correlation_id: i32,
    peer: SocketAddr,
) -> Next {
    let fail = |message: &'static str| {
        let resp = SaslAuthenticateResponse::default()
            .with_error_code(KafkaCode::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_static_str(message)));
        Next::RespondThenClose(respond(
            ApiKey::SaslAuthenticate,
            version,
            correlation_id,
            ResponseKind::SaslAuthenticate(resp),
        ))
    };
    let (Some(store), Some(mechanism)) = (auth.store, auth.mechanism) else {
        return fail("SaslHandshake first");
    };
    let outcome: Result<(Option<String>, Vec<u8>), String> = match mechanism {
        Mechanism::Plain => gatehouse_sasl::verify_plain(store, bytes)
            .map(|u| (Some(u.name.clone()), Vec::new()))
            .map_err(|e| e.to_string()),
        _ => {
            if auth.scram.is_none() {
                match ScramServer::new(mechanism, store) {
                    Ok(s) => auth.scram = Some(s),
                    Err(e) => return fail_log(peer, &e.to_string(), fail),
                }
            }
            match auth.scram.as_mut().map(|s| s.step(bytes)) {
                Some(Ok(Step::Continue { response })) => Ok((None, response)),
                Some(Ok(Step::Done { user, response })) => Ok((Some(user.name.clone()), response)),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("no exchange".to_string()),
            }
        }
    };
    match outcome {
        Ok((user, reply)) => {
            if let Some(user) = user {
                tracing::info!(%peer, user, %mechanism, "authenticated");
                auth.authenticated = true;
                auth.mechanism = None;
                auth.scram = None;
            }
            let resp = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
            Next::Respond(respond(
                ApiKey::SaslAuthenticate,
                version,
                correlation_id,
                ResponseKind::SaslAuthenticate(resp),
            ))
        }
        Err(reason) => fail_log(peer, &reason, fail),
    }
}

fn fail_log(peer: SocketAddr, reason: &str, fail: impl FnOnce(&'static str) -> Next) -> Next {
    tracing::warn!(%peer, reason, "authentication failed");
    fail("Authentication failed: invalid credentials")
}

/// Resolves once `shutdown` says `true`, including when it already did
/// before this receiver was made (a connection accepted just as the broker
/// stops would otherwise serve on, with its committer gone).
async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
