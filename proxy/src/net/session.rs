//! One client connection: its upstream connection, the filter chain, and
//! in-order delivery of responses.
//!
//! Requests are forwarded as they arrive (clients pipeline); the proxy keeps
//! a queue of what it owes the client in request order: responses still to
//! come from the cluster, and responses a filter produced itself. Responses
//! are decoded only if a filter asked for that API, at the version of the
//! request they answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt as _;
use gatehouse_wire::{encode_response, produce_acks, FrameSplitter};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument as _;

use crate::auth::principal::{AuthMethod, Principal};
use crate::auth::{Exchange, Outcome};
use kafka_protocol::protocol::StrBytes;
use std::time::SystemTime;
use tokio::time::Instant;

use crate::cluster::dial::BoxStream;
use crate::error::ProxyError;
use crate::filter::{
    Direction, Request, RequestAction, Response, ResponseAction, SessionContext, Target,
};
use crate::net::Front;

/// What the proxy owes the client, in request order.
#[derive(Debug)]
struct Owed {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    decode: bool,
    /// A response made by a filter, sent once everything before it is.
    local: Option<Bytes>,
    /// Filters' notes from the request.
    notes: crate::filter::Notes,
    /// When the request arrived, and when it went to the cluster.
    arrived: std::time::Instant,
    sent: std::time::Instant,
    /// The request's trace span (disabled unless traces are exported),
    /// and its child for the round trip to the cluster.
    span: tracing::Span,
    upstream: tracing::Span,
}

impl Owed {
    /// A response the proxy made itself.
    fn local(
        raw: &gatehouse_wire::RawHeader,
        api: ApiKey,
        bytes: Bytes,
        arrived: std::time::Instant,
        span: tracing::Span,
    ) -> Self {
        Owed {
            correlation_id: raw.correlation_id,
            api,
            version: raw.api_version,
            decode: false,
            local: Some(bytes),
            notes: Default::default(),
            arrived,
            sent: arrived,
            span,
            upstream: tracing::Span::none(),
        }
    }
}

pub(crate) async fn run(
    front: Arc<Front>,
    client: BoxStream,
    peer: SocketAddr,
    target: Target,
    principal: Option<Principal>,
) {
    match serve(&front, client, peer, target, principal).await {
        Ok(()) => tracing::debug!(%peer, ?target, "connection closed"),
        Err(e @ ProxyError::Downstream(_)) => {
            tracing::warn!(%peer, ?target, error = %e, "closing client connection")
        }
        Err(e) => tracing::warn!(%peer, ?target, error = %e, "connection ended"),
    }
}

/// The cluster connection for a client of `target`: any bootstrap server,
/// or the node the client meant.
async fn connect_upstream(
    front: &Front,
    target: Target,
) -> Result<(BoxStream, String), ProxyError> {
    match target {
        Target::Bootstrap => {
            let dialed = front.dialer.bootstrap().await;
            if dialed.is_err() {
                front.metrics.upstream_error("bootstrap");
            }
            dialed
        }
        Target::Node(n) => {
            let addr = front
                .routes
                .upstream_of(n)
                .ok_or_else(|| ProxyError::Internal(format!("no route for node {n}")))?;
            let dialed = front.dialer.dial(&addr).await;
            if dialed.is_err() {
                front.metrics.upstream_error(&addr);
            }
            dialed
        }
    }
}

/// The connection to the cluster that a client connection's requests go
/// over.
struct Upstream {
    rd: tokio::io::ReadHalf<BoxStream>,
    wr: tokio::io::WriteHalf<BoxStream>,
    addr: String,
}

impl Upstream {
    async fn dial(front: &Front, peer: SocketAddr, target: Target) -> Result<Self, ProxyError> {
        let (stream, addr) = connect_upstream(front, target).await?;
        tracing::debug!(%peer, ?target, upstream = %addr, "cluster connection opened");
        let (rd, wr) = tokio::io::split(stream);
        Ok(Upstream { rd, wr, addr })
    }

    /// Reads from the cluster connection; never ready when there is none.
    async fn read(up: &mut Option<Upstream>, buf: &mut BytesMut) -> std::io::Result<usize> {
        match up {
            Some(u) => u.rd.read_buf(buf).await,
            None => std::future::pending().await,
        }
    }
}

struct Session<'a> {
    front: &'a Front,
    ctx: SessionContext,
    owed: VecDeque<Owed>,
    to_client: Outbox,
    to_upstream: Outbox,
    sasl: Sasl<'a>,
    /// The credentials file's users as they were when the connection
    /// opened: its SASL exchanges run against them.
    creds: Option<&'a Arc<gatehouse_sasl::CredentialStore>>,
    /// When the authenticated session ends unless renewed (KIP-368).
    expires: Option<SystemTime>,
    /// Hang up once what is owed has been written (failed authentication).
    closing: Option<String>,
    /// Bytes still to come of a response that is forwarded as it arrives.
    streaming: usize,
}

/// Responses at least this long that no filter looks at are forwarded as
/// their bytes arrive, instead of once complete: the client starts reading
/// a large fetch while the rest is still on its way from the cluster, and
/// the proxy never holds a whole large response in memory.
const STREAM_FROM_BYTES: usize = 64 * 1024;

/// Client requests at least this long count against `max_buffered_bytes`
/// from when their length is read until they are forwarded.
const BUDGETED_FROM: usize = 1 << 20;

/// A wait for a share of the proxy's buffer budget.
type Acquiring = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>,
            > + Send,
    >,
>;

async fn wait_budget(
    acquiring: &mut Option<Acquiring>,
) -> Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError> {
    match acquiring {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The length (with its prefix) of the large request `buf` begins with,
/// when it is not all there yet.
fn large_partial_frame(buf: &[u8], max_frame_bytes: usize) -> Option<u32> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    let total = len.min(max_frame_bytes) + 4;
    if total < BUDGETED_FROM || buf.len() >= total {
        return None;
    }
    u32::try_from(total).ok()
}

/// Where the connection is in a SASL exchange.
enum Sasl<'a> {
    Idle,
    Handshaken(String),
    Exchanging(Exchange<'a>),
}

/// Frames waiting to be written. Forwarded frames are kept as the `Bytes`
/// they arrived in (no copy) and written with vectored writes; frames the
/// proxy encodes itself go into a scratch buffer first. A frame held by a
/// gate ([`ResponseAction::Hold`]) waits in `held` with everything queued
/// after it, until its gate resolves. Every frame waiting there counts as
/// in flight, and their bytes are counted so that the connection stops
/// reading the cluster while they pass [`HELD_BYTES`].
#[derive(Default)]
struct Outbox {
    /// Ready to write.
    frames: VecDeque<Bytes>,
    scratch: BytesMut,
    held: VecDeque<Held>,
    /// Frames in `held`, and their bytes.
    held_frames: usize,
    held_bytes: usize,
}

/// A held frame and the frames queued after it (before the next held one).
struct Held {
    gate: crate::filter::Gate,
    frames: Vec<Bytes>,
    bytes: usize,
    /// What to record of the held response once it is released or refused.
    done: Option<Done>,
}

/// The request of a held response, recorded when its gate resolves: its
/// outcome is known then, and its latency includes the wait.
struct Done {
    metrics: Arc<crate::metrics::ProxyMetrics>,
    api: ApiKey,
    arrived: std::time::Instant,
    span: tracing::Span,
}

impl Done {
    fn finish(self, released: bool) {
        if released {
            self.metrics
                .request(self.api, crate::metrics::Outcome::Forwarded, self.arrived);
            self.span.record("outcome", "forwarded");
        } else {
            self.metrics.closed(self.api);
            self.span.record("outcome", "closed");
        }
    }
}

/// Bytes of responses waiting behind a gate above which a connection stops
/// reading the cluster until some are released (the gates are the audit
/// log's durability, milliseconds away; the cap bounds what a stalled log
/// disk leaves in memory per connection).
const HELD_BYTES: usize = 16 << 20;

impl Outbox {
    fn push(&mut self, frame: Bytes) {
        self.seal();
        self.queue(frame);
    }

    /// After everything queued: ready, or behind the last held frame.
    fn queue(&mut self, frame: Bytes) {
        match self.held.back_mut() {
            Some(h) => {
                self.held_frames += 1;
                self.held_bytes += frame.len();
                h.bytes += frame.len();
                h.frames.push(frame);
            }
            None => self.frames.push_back(frame),
        }
    }

    /// Moves what was encoded into the scratch buffer into the queue.
    fn seal(&mut self) {
        if !self.scratch.is_empty() {
            let frame = self.scratch.split().freeze();
            self.queue(frame);
        }
    }

    /// Queues what was encoded into the scratch buffer (since the last seal)
    /// as a frame held by `gate`; `done` is recorded when the gate resolves.
    fn seal_held(&mut self, gate: crate::filter::Gate, done: Option<Done>) {
        let frame = self.scratch.split().freeze();
        self.held_frames += 1;
        self.held_bytes += frame.len();
        self.held.push_back(Held {
            gate,
            bytes: frame.len(),
            frames: vec![frame],
            done,
        });
    }

    /// Frames ready to write.
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.scratch.is_empty()
    }

    /// Frames waiting behind a gate: each held response and everything
    /// queued after it.
    fn holding(&self) -> usize {
        self.held_frames
    }

    /// Whether the frames waiting behind gates are too many bytes to read
    /// more from the cluster.
    fn held_full(&self) -> bool {
        self.held_bytes >= HELD_BYTES
    }

    /// Readies the held frames whose gates resolved, in order, without
    /// waiting; `Err` with a gate's reason if one failed.
    fn release_ready(&mut self) -> Result<(), String> {
        while let Some(h) = self.held.front_mut() {
            match (&mut h.gate).now_or_never() {
                Some(r) => self.release_front(r)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Waits for the first held frame's gate and readies it (cancel-safe:
    /// the gate stays queued until it resolves).
    async fn release_next(&mut self) -> Result<(), String> {
        let Some(h) = self.held.front_mut() else {
            return std::future::pending().await;
        };
        let r = (&mut h.gate).await;
        self.release_front(r)
    }

    fn release_front(&mut self, gate: Result<(), String>) -> Result<(), String> {
        let Some(mut h) = self.held.pop_front() else {
            return gate;
        };
        if let Some(done) = h.done.take() {
            done.finish(gate.is_ok());
        }
        if let Err(reason) = gate {
            // The connection closes: nothing held is written, and every
            // response still waiting is refused with it.
            for later in self.held.drain(..) {
                if let Some(done) = later.done {
                    done.finish(false);
                }
            }
            self.held_frames = 0;
            self.held_bytes = 0;
            return Err(reason);
        }
        self.held_frames -= h.frames.len();
        self.held_bytes -= h.bytes;
        self.frames.extend(h.frames);
        Ok(())
    }

    /// Writes everything queued; the number of bytes written.
    async fn flush<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> std::io::Result<usize> {
        use bytes::Buf;
        self.seal();
        let mut written = 0;
        while !self.frames.is_empty() {
            let slices: Vec<std::io::IoSlice<'_>> = self
                .frames
                .iter()
                .take(64)
                .map(|f| std::io::IoSlice::new(f))
                .collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            written += n;
            while n > 0 {
                let Some(front) = self.frames.front_mut() else {
                    break;
                };
                if n >= front.len() {
                    n -= front.len();
                    self.frames.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        Ok(written)
    }
}

/// How long the responses released before a failed gate may take to reach
/// the client before the connection is closed anyway.
const REFUSAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// A held response was refused (its gate failed): what was released before
/// it is written (best effort, bounded in time), and the connection closes.
async fn refuse_held<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut Outbox,
    w: &mut W,
    reason: String,
) -> ProxyError {
    // A response encoded after the refused one and not yet queued is not
    // the client's either.
    out.scratch.clear();
    if let Ok(Err(e)) = tokio::time::timeout(REFUSAL_FLUSH, out.flush(w)).await {
        tracing::debug!(error = %e, "responses released before a refused one were not written");
    }
    ProxyError::Downstream(format!("audit filter: {reason}"))
}

async fn serve(
    front: &Front,
    client: BoxStream,
    peer: SocketAddr,
    target: Target,
    principal: Option<Principal>,
) -> Result<(), ProxyError> {
    tracing::debug!(%peer, ?target, "connection opened");
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    // The cluster is dialled when the first request is to be forwarded:
    // connections that never send one (idle, or refused before that) cost
    // the cluster nothing and the proxy no second socket.
    let mut up: Option<Upstream> = None;
    let limits = &front.limits;
    let splitter = FrameSplitter::new(limits.max_frame_bytes);
    let mut from_client = BytesMut::with_capacity(16 * 1024);
    let mut from_upstream = BytesMut::new();
    let mut shutdown = front.tasks.stopping();
    let mut draining = *shutdown.borrow();
    let idle = front.idle_timeout();
    let mut last_activity = Instant::now();
    let auth_deadline =
        Instant::now() + std::time::Duration::from_secs(limits.auth_timeout_secs.max(1));
    let creds = front.authenticator.as_ref().and_then(|a| a.credentials());
    let mut s = Session {
        creds: creds.as_ref(),
        front,
        ctx: SessionContext {
            peer,
            target,
            client_id: None,
            principal,
        },
        owed: VecDeque::new(),
        to_client: Outbox::default(),
        to_upstream: Outbox::default(),
        sasl: Sasl::Idle,
        expires: None,
        closing: None,
        streaming: 0,
    };
    // The share of `max_buffered_bytes` held for the large request being
    // read (or waiting to be forwarded), and the wait for one.
    let mut budget: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let mut budget_spent = false;
    let mut acquiring: Option<Acquiring> = None;
    loop {
        while !draining && s.in_flight() < limits.max_in_flight {
            match splitter.split_with_prefix(&mut from_client) {
                Ok(Some(frame)) => {
                    last_activity = Instant::now();
                    budget_spent |= frame.len() >= BUDGETED_FROM;
                    s.request(frame).await?;
                }
                Ok(None) => break,
                Err(e) => return Err(ProxyError::Downstream(e.to_string())),
            }
        }
        // The rest of a response being streamed through.
        if s.streaming > 0 && !from_upstream.is_empty() {
            let n = s.streaming.min(from_upstream.len());
            s.to_client.push(from_upstream.split_to(n).freeze());
            s.streaming -= n;
            if s.streaming == 0 {
                s.flush_local();
            }
        }
        while s.streaming == 0 {
            match splitter.split_with_prefix(&mut from_upstream) {
                Ok(Some(frame)) => s.response(frame).await?,
                Ok(None) => {
                    s.start_streaming(&mut from_upstream)?;
                    break;
                }
                Err(e) => return Err(ProxyError::Upstream(e.to_string())),
            }
        }
        if !s.to_upstream.is_empty() {
            let u = match &mut up {
                Some(u) => u,
                None => up.insert(Upstream::dial(front, peer, target).await?),
            };
            s.to_upstream.flush(&mut u.wr).await.map_err(|e| {
                front.metrics.upstream_error(&u.addr);
                ProxyError::Upstream(format!("write to {}: {e}", u.addr))
            })?;
        }
        // The large request is on its way to the cluster (or answered):
        // its bytes go back to the budget.
        if budget_spent {
            budget = None;
            budget_spent = false;
        }
        if let Err(reason) = s.to_client.release_ready() {
            return Err(refuse_held(&mut s.to_client, &mut client_wr, reason).await);
        }
        if !s.to_client.is_empty() {
            let n = s
                .to_client
                .flush(&mut client_wr)
                .await
                .map_err(|e| ProxyError::Downstream(format!("write: {e}")))?;
            front.metrics.client_bytes("out", n);
        }
        let settled = s.owed.is_empty() && s.streaming == 0 && s.to_client.holding() == 0;
        if let Some(reason) = &s.closing {
            if settled {
                return Err(ProxyError::Downstream(reason.clone()));
            }
        }
        if draining && settled {
            return Ok(());
        }
        from_client.reserve(splitter.wanted(&from_client).clamp(8 * 1024, 1 << 20));
        let wanted = match s.streaming {
            0 => splitter.wanted(&from_upstream),
            n => n,
        };
        if up.is_some() {
            from_upstream.reserve(wanted.clamp(8 * 1024, 1 << 20));
        }
        let mut reading = !draining && s.in_flight() < limits.max_in_flight;
        // Reading more of a large request needs its bytes from the budget.
        if reading && budget.is_none() {
            if let Some(len) = large_partial_frame(&from_client, splitter.max_frame_bytes()) {
                let wait = acquiring.get_or_insert_with(|| {
                    Box::pin(front.buffered.clone().acquire_many_owned(len))
                });
                match wait.as_mut().now_or_never() {
                    Some(permit) => {
                        acquiring = None;
                        budget = permit.ok();
                    }
                    None => reading = false,
                }
            }
        }
        tokio::select! {
            p = wait_budget(&mut acquiring), if acquiring.is_some() => {
                acquiring = None;
                budget = p.ok();
            }
            r = client_rd.read_buf(&mut from_client), if reading => match r {
                Ok(0) => return Ok(()),
                Ok(n) => front.metrics.client_bytes("in", n),
                Err(e) => return Err(ProxyError::Downstream(format!("read: {e}"))),
            },
            // Not while too much waits behind a gate: the cluster's
            // responses wait in its socket instead.
            r = Upstream::read(&mut up, &mut from_upstream), if up.is_some() && !s.to_client.held_full() => {
                let addr = up.as_ref().map(|u| u.addr.as_str()).unwrap_or("the cluster");
                match r {
                    Ok(0) => {
                        front.metrics.upstream_error(addr);
                        return Err(ProxyError::Upstream(format!("{addr} closed the connection")));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        front.metrics.upstream_error(addr);
                        return Err(ProxyError::Upstream(format!("read from {addr}: {e}")));
                    }
                }
            }
            r = s.to_client.release_next(), if s.to_client.holding() > 0 => {
                if let Err(reason) = r {
                    return Err(refuse_held(&mut s.to_client, &mut client_wr, reason).await);
                }
            }
            _ = tokio::time::sleep_until(last_activity + idle), if settled => {
                tracing::info!(%peer, idle_secs = idle.as_secs(), "closing idle connection");
                return Ok(());
            }
            _ = tokio::time::sleep_until(auth_deadline), if s.unauthenticated() => {
                tracing::info!(%peer, auth_timeout_secs = limits.auth_timeout_secs, "closing connection: not authenticated in time");
                front.metrics.connection_refused("auth_timeout");
                return Ok(());
            }
            _ = crate::tasks::stopped(&mut shutdown), if !draining => draining = true,
        }
    }
}

impl Session<'_> {
    fn wants(&self, api: ApiKey, dir: Direction) -> bool {
        self.front.chain.iter().any(|f| f.wants(api, dir))
    }

    async fn request(&mut self, frame: Bytes) -> Result<(), ProxyError> {
        let arrived = std::time::Instant::now();
        let body = frame.slice(4..);
        let raw = gatehouse_wire::peek_header(&body)
            .map_err(|e| ProxyError::Downstream(e.to_string()))?;
        let api = ApiKey::try_from(raw.api_key)
            .map_err(|()| ProxyError::Downstream(format!("unknown API key {}", raw.api_key)))?;
        let valid = api.valid_versions();
        if api != ApiKey::ApiVersions && !(valid.min..=valid.max).contains(&raw.api_version) {
            return Err(ProxyError::Downstream(format!(
                "{api:?} v{} is not a version the proxy can forward",
                raw.api_version
            )));
        }
        // Hanging up (a failed authentication): nothing more is answered,
        // least of all a pipelined second attempt.
        if self.closing.is_some() {
            return Ok(());
        }
        // === session: authentication ===
        if matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
            return self.sasl(api, raw, body, arrived).await;
        }
        if api != ApiKey::ApiVersions {
            if let Err(e) = self.check_authenticated(api) {
                self.front.metrics.closed(api);
                return Err(e);
            }
        }
        let span = tracing::info_span!(
            target: "gatehouse::trace",
            "kafka.request",
            otel.name = api_name(api),
            kafka.api = api_name(api),
            kafka.api_version = raw.api_version,
            kafka.client_id = tracing::field::Empty,
            principal = tracing::field::Empty,
            topics = tracing::field::Empty,
            decision = tracing::field::Empty,
            policy_ids = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        if !span.is_disabled() {
            if let Some(p) = &self.ctx.principal {
                span.record("principal", p.name.as_str());
            }
        }
        let expects_response = api != ApiKey::Produce
            || produce_acks(&body).map_err(|e| ProxyError::Downstream(e.to_string()))? != 0;
        let decode_response = self.wants(api, Direction::Response);
        let mut notes = crate::filter::Notes::default();
        if self.wants(api, Direction::Request) && (valid.min..=valid.max).contains(&raw.api_version)
        {
            let mut request = decode_request(api, raw.api_version, body)?;
            self.ctx.client_id = request.header.client_id.as_ref().map(|c| c.to_string());
            if !span.is_disabled() {
                crate::net::trace::describe(&span, &request);
            }
            for f in &self.front.chain {
                if !f.wants(api, Direction::Request) {
                    continue;
                }
                let filter_span = tracing::info_span!(target: "gatehouse::trace", parent: &span, "filter", otel.name = f.name(), direction = "request");
                let action = filter_span
                    .in_scope(|| f.on_request(&self.ctx, &mut request))
                    .instrument(filter_span.clone())
                    .await;
                match action {
                    RequestAction::Continue => {}
                    RequestAction::Respond(resp) => {
                        let mut out = BytesMut::new();
                        encode_response(&mut out, api, raw.api_version, raw.correlation_id, |b| {
                            resp.encode(b, raw.api_version)
                        })
                        .map_err(|e| ProxyError::Internal(e.to_string()))?;
                        self.front.metrics.filters(api, "request", arrived);
                        self.trace_decision(api, &span, &mut request.notes);
                        span.record("outcome", "answered");
                        self.owe(Owed::local(&raw, api, out.freeze(), arrived, span));
                        return Ok(());
                    }
                    RequestAction::Close(reason) => {
                        self.front.metrics.closed(api);
                        span.record("outcome", "closed");
                        return Err(ProxyError::Downstream(format!(
                            "{} filter: {reason}",
                            f.name()
                        )));
                    }
                    RequestAction::Drop => return Ok(()),
                }
            }
            self.trace_decision(api, &span, &mut request.notes);
            encode_request(&request, &mut self.to_upstream.scratch)?;
            notes = std::mem::take(&mut request.notes);
            self.front.metrics.filters(api, "request", arrived);
        } else {
            self.to_upstream.push(frame);
        }
        if expects_response {
            self.owe(Owed {
                correlation_id: raw.correlation_id,
                api,
                version: raw.api_version,
                decode: decode_response || !notes.is_empty(),
                local: None,
                notes,
                arrived,
                sent: std::time::Instant::now(),
                upstream: tracing::info_span!(target: "gatehouse::trace", parent: &span, "upstream", otel.name = "upstream", peer.service = "kafka"),
                span,
            });
        } else {
            self.front
                .metrics
                .request(api, crate::metrics::Outcome::Forwarded, arrived);
        }
        Ok(())
    }

    /// Puts the policy decision on the request's span: the refusal a
    /// filter noted, else `allow` when the policies decided on it.
    fn trace_decision(&self, api: ApiKey, span: &tracing::Span, notes: &mut crate::filter::Notes) {
        if span.is_disabled() {
            return;
        }
        match notes.take::<crate::filter::Traced>(crate::filter::TRACE_NOTE) {
            Some(t) => {
                span.record("decision", t.decision);
                span.record("policy_ids", t.policy_ids.as_str());
            }
            None if self
                .front
                .chain
                .iter()
                .any(|f| f.name() == "authz" && f.wants(api, Direction::Request)) =>
            {
                span.record("decision", "allow");
            }
            None => {}
        }
    }

    /// Whether the proxy requires authentication and this connection has
    /// not authenticated (a client certificate counts only where it is
    /// accepted on its own).
    fn unauthenticated(&self) -> bool {
        match (&self.front.authenticator, &self.ctx.principal) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(a), Some(p)) => p.method == AuthMethod::Certificate && !a.accepts_certificates(),
        }
    }

    /// Refuses requests of connections that have not authenticated, or
    /// whose session expired without re-authentication.
    fn check_authenticated(&self, api: ApiKey) -> Result<(), ProxyError> {
        let Some(auth) = &self.front.authenticator else {
            return Ok(());
        };
        let ok = match &self.ctx.principal {
            None => false,
            Some(p) if p.method == AuthMethod::Certificate => auth.accepts_certificates(),
            Some(_) => true,
        };
        if !ok {
            return Err(ProxyError::Downstream(format!(
                "{api:?} before authentication"
            )));
        }
        if self.expires.is_some_and(|e| SystemTime::now() > e) {
            return Err(ProxyError::Downstream(
                "session expired without re-authentication".into(),
            ));
        }
        Ok(())
    }

    fn respond_local(
        &mut self,
        api: ApiKey,
        raw: &gatehouse_wire::RawHeader,
        resp: ResponseKind,
        arrived: std::time::Instant,
    ) -> Result<(), ProxyError> {
        let mut out = BytesMut::new();
        encode_response(&mut out, api, raw.api_version, raw.correlation_id, |b| {
            resp.encode(b, raw.api_version)
        })
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
        self.owe(Owed::local(
            raw,
            api,
            out.freeze(),
            arrived,
            tracing::Span::none(),
        ));
        Ok(())
    }

    /// Why re-authenticating (KIP-368) as `next` must be refused on this
    /// session, if it must: another principal, or the same name with other
    /// attributes (every decision of the session was made with the old
    /// ones). A session that has not authenticated by SASL yet (none, or a
    /// client certificate) may.
    fn reauthentication_refusal(&self, next: &Principal) -> Option<String> {
        let old = self.ctx.principal.as_ref()?;
        if old.method == AuthMethod::Certificate {
            return None;
        }
        if old.name != next.name {
            return Some(format!(
                "re-authentication as {} on a session of {}",
                next.name, old.name
            ));
        }
        let changed: Vec<&str> = old
            .attributes
            .keys()
            .chain(next.attributes.keys())
            .filter(|k| old.attributes.get(*k) != next.attributes.get(*k))
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if changed.is_empty() {
            return None;
        }
        Some(format!(
            "re-authentication of {} with other attributes ({}); attributes may not change within a session",
            next.name,
            changed.join(", ")
        ))
    }

    /// Records a refused authentication: the principal the attempt claimed
    /// (unverified), the SASL mechanism, the peer and why. If the log cannot
    /// be written the refusal still stands (the connection is being closed).
    async fn record_refusal(&self, claimed: Option<String>, mechanism: &str, reason: String) {
        let Some(log) = &self.front.audit else {
            return;
        };
        let event = gatehouse_audit::EventKind::AuthRefused {
            principal: claimed,
            mechanism: mechanism.to_string(),
            peer: self.ctx.peer.to_string(),
            reason,
        };
        if let Err(e) = log.append(event).await {
            tracing::error!(error = %e, "audit log unavailable: refusal not recorded");
        }
    }

    /// SaslHandshake and SaslAuthenticate are answered by the proxy itself:
    /// a client's credentials never travel to the cluster.
    async fn sasl(
        &mut self,
        api: ApiKey,
        raw: gatehouse_wire::RawHeader,
        body: Bytes,
        arrived: std::time::Instant,
    ) -> Result<(), ProxyError> {
        use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
        let request = decode_request(api, raw.api_version, body)?;
        let names = self
            .front
            .authenticator
            .as_ref()
            .map(|a| a.mechanism_names())
            .unwrap_or_default();
        match request.body {
            RequestKind::SaslHandshake(h) => {
                // The credentials file changed since this connection
                // opened: the client reconnects and authenticates against
                // the users now in force (a removed user cannot log in, or
                // re-authenticate, on an old connection).
                if let Some(auth) = &self.front.authenticator {
                    if !auth.is_current(self.creds) {
                        return Err(ProxyError::Downstream(
                            "the credentials file changed since this connection opened; the client must reconnect".into(),
                        ));
                    }
                }
                let mechanism = h.mechanism.to_string();
                let enabled = names.contains(&mechanism);
                let code = if raw.api_version < 1 {
                    // v0 sends raw SASL tokens outside Kafka framing.
                    35
                } else if enabled {
                    0
                } else {
                    33 // UNSUPPORTED_SASL_MECHANISM
                };
                if code == 0 {
                    self.sasl = Sasl::Handshaken(mechanism);
                } else {
                    self.closing = Some(format!("SASL handshake for {mechanism} refused"));
                }
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(
                        names
                            .iter()
                            .map(|n| StrBytes::from_string(n.clone()))
                            .collect(),
                    );
                self.respond_local(api, &raw, ResponseKind::SaslHandshake(resp), arrived)
            }
            RequestKind::SaslAuthenticate(a) => {
                let Some(auth) = self.front.authenticator.as_ref() else {
                    self.closing = Some("SASL is not enabled".into());
                    let resp = SaslAuthenticateResponse::default().with_error_code(34);
                    return self.respond_local(
                        api,
                        &raw,
                        ResponseKind::SaslAuthenticate(resp),
                        arrived,
                    );
                };
                let mut exchange = match std::mem::replace(&mut self.sasl, Sasl::Idle) {
                    Sasl::Exchanging(e) => e,
                    Sasl::Handshaken(m) => match auth.begin(&m, self.creds.map(|c| &**c)) {
                        Some(e) => e,
                        None => {
                            self.closing = Some(format!("{m} is not enabled"));
                            let resp = SaslAuthenticateResponse::default().with_error_code(33);
                            return self.respond_local(
                                api,
                                &raw,
                                ResponseKind::SaslAuthenticate(resp),
                                arrived,
                            );
                        }
                    },
                    Sasl::Idle => {
                        self.closing = Some("SaslAuthenticate without SaslHandshake".into());
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(34)
                            .with_error_message(Some(StrBytes::from_static_str(
                                "SaslHandshake first",
                            )));
                        return self.respond_local(
                            api,
                            &raw,
                            ResponseKind::SaslAuthenticate(resp),
                            arrived,
                        );
                    }
                };
                let peer = self.ctx.peer;
                let mechanism = exchange.mechanism();
                let resp = match auth.step(&mut exchange, self.creds.map(|c| &**c), &a.auth_bytes) {
                    Outcome::Challenge(bytes) => {
                        self.sasl = Sasl::Exchanging(exchange);
                        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes))
                    }
                    Outcome::Authenticated {
                        principal,
                        reply,
                        expires,
                    } => {
                        if let Some(refusal) = self.reauthentication_refusal(&principal) {
                            // KIP-368: re-authentication keeps the principal
                            // and what it was authorised as. The credentials
                            // were good: no throttle, but a record, and the
                            // connection is closed.
                            tracing::warn!(%peer, principal = %principal.name, reason = %refusal, "re-authentication refused");
                            self.record_refusal(Some(principal.name.clone()), mechanism, refusal)
                                .await;
                            self.closing = Some("re-authentication refused".into());
                            self.front.metrics.authentication(mechanism, false);
                            return self.respond_local(
                                api,
                                &raw,
                                ResponseKind::SaslAuthenticate(
                                    SaslAuthenticateResponse::default()
                                        .with_error_code(58)
                                        .with_error_message(Some(StrBytes::from_static_str(
                                            "Re-authentication refused: the principal and its attributes may not change within a session",
                                        ))),
                                ),
                                arrived,
                            );
                        }
                        auth.succeeded(&principal.name);
                        self.front.metrics.authentication(mechanism, true);
                        tracing::info!(%peer, principal = %principal.name, method = ?principal.method, "authenticated");
                        if let Some(log) = &self.front.audit {
                            let event = gatehouse_audit::EventKind::AuthOk {
                                principal: principal.name.clone(),
                                mechanism: principal.method.mechanism().to_string(),
                                peer: peer.to_string(),
                            };
                            if let Err(e) = log.append(event).await {
                                // No session without its record.
                                self.closing = Some(format!("audit log unavailable: {e}"));
                                let resp = SaslAuthenticateResponse::default().with_error_code(58);
                                return self.respond_local(
                                    api,
                                    &raw,
                                    ResponseKind::SaslAuthenticate(resp),
                                    arrived,
                                );
                            }
                        }
                        self.ctx.principal = Some(principal);
                        self.expires = expires;
                        let lifetime_ms = expires
                            .and_then(|e| e.duration_since(SystemTime::now()).ok())
                            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                            .unwrap_or(0);
                        let resp =
                            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(reply));
                        if raw.api_version >= 1 {
                            resp.with_session_lifetime_ms(lifetime_ms)
                        } else {
                            resp
                        }
                    }
                    Outcome::Failed { reason, claimed } => {
                        let delay = auth.failure_delay(peer.ip(), claimed.as_deref());
                        tracing::warn!(%peer, mechanism, claimed = claimed.as_deref().unwrap_or("-"), reason, delay_ms = delay.as_millis() as u64, "authentication failed");
                        self.front.metrics.authentication(mechanism, false);
                        self.record_refusal(claimed, mechanism, reason).await;
                        tokio::time::sleep(delay).await;
                        self.closing = Some("authentication failed".into());
                        auth_failed()
                    }
                };
                self.respond_local(api, &raw, ResponseKind::SaslAuthenticate(resp), arrived)
            }
            _ => Err(ProxyError::Internal("SASL request of another kind".into())),
        }
    }

    /// Requests forwarded and not yet answered, and responses held.
    fn in_flight(&self) -> usize {
        self.owed.len() + self.to_client.holding()
    }

    fn owe(&mut self, owed: Owed) {
        self.owed.push_back(owed);
        self.flush_local();
    }

    /// Sends filter-made responses that have reached the front.
    fn flush_local(&mut self) {
        if self.streaming > 0 {
            // They go out after the response being streamed.
            return;
        }
        while let Some(Owed { local: Some(_), .. }) = self.owed.front() {
            if let Some(Owed {
                local: Some(bytes),
                api,
                arrived,
                ..
            }) = self.owed.pop_front()
            {
                self.to_client.push(bytes);
                self.front
                    .metrics
                    .request(api, crate::metrics::Outcome::Answered, arrived);
            }
        }
    }

    /// Starts forwarding an incomplete response as it arrives, when it is
    /// large and no filter wants to see it. `buf` holds the start of the
    /// frame (its length was checked against the frame limit already).
    fn start_streaming(&mut self, buf: &mut BytesMut) -> Result<(), ProxyError> {
        let Some(head) = buf.get(..8) else {
            return Ok(());
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len < STREAM_FROM_BYTES {
            return Ok(());
        }
        match self.owed.front() {
            Some(o) if !o.decode && o.local.is_none() => {
                if o.correlation_id != correlation_id {
                    return Err(ProxyError::Upstream(format!(
                        "response {correlation_id} arrived where {} was due",
                        o.correlation_id
                    )));
                }
            }
            _ => return Ok(()),
        }
        if let Some(o) = self.owed.pop_front() {
            self.front.metrics.upstream(o.api, o.sent);
            self.front
                .metrics
                .request(o.api, crate::metrics::Outcome::Forwarded, o.arrived);
            o.span.record("outcome", "forwarded");
        }
        self.streaming = len + 4 - buf.len();
        self.to_client.push(buf.split().freeze());
        Ok(())
    }

    async fn response(&mut self, frame: Bytes) -> Result<(), ProxyError> {
        let body = frame.slice(4..);
        let Some(id) = body.get(..4) else {
            return Err(ProxyError::Upstream(
                "response shorter than its header".into(),
            ));
        };
        let correlation_id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let owed = self
            .owed
            .pop_front()
            .ok_or_else(|| ProxyError::Upstream(format!("unexpected response {correlation_id}")))?;
        if owed.correlation_id != correlation_id {
            return Err(ProxyError::Upstream(format!(
                "response {correlation_id} arrived where {} was due",
                owed.correlation_id
            )));
        }
        self.front.metrics.upstream(owed.api, owed.sent);
        let span = owed.span;
        drop(owed.upstream);
        if owed.decode {
            let filtering = std::time::Instant::now();
            let mut response = decode_response(owed.api, owed.version, correlation_id, body)?;
            response.notes = owed.notes;
            let mut gates: Vec<crate::filter::Gate> = Vec::new();
            for f in self.front.chain.iter().rev() {
                if !f.wants(owed.api, Direction::Response) && !response.notes.has(f.name()) {
                    continue;
                }
                let filter_span = tracing::info_span!(target: "gatehouse::trace", parent: &span, "filter", otel.name = f.name(), direction = "response");
                let action = filter_span
                    .in_scope(|| f.on_response(&self.ctx, &mut response))
                    .instrument(filter_span.clone())
                    .await;
                match action {
                    ResponseAction::Continue => {}
                    ResponseAction::Hold(gate) => gates.push(gate),
                    ResponseAction::Close(reason) => {
                        self.front.metrics.closed(owed.api);
                        span.record("outcome", "closed");
                        return Err(ProxyError::Downstream(format!(
                            "{} filter: {reason}",
                            f.name()
                        )));
                    }
                }
            }
            self.front.metrics.filters(owed.api, "response", filtering);
            let v = response.version;
            self.to_client.seal();
            encode_response(
                &mut self.to_client.scratch,
                response.api,
                v,
                correlation_id,
                |b| response.body.encode(b, v),
            )
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
            if !gates.is_empty() {
                // Recorded when the gates resolve.
                let done = Done {
                    metrics: self.front.metrics.clone(),
                    api: owed.api,
                    arrived: owed.arrived,
                    span,
                };
                self.to_client.seal_held(
                    Box::pin(async move {
                        for g in gates {
                            g.await?;
                        }
                        Ok(())
                    }),
                    Some(done),
                );
                self.flush_local();
                return Ok(());
            }
        } else {
            self.to_client.push(frame);
        }
        self.front
            .metrics
            .request(owed.api, crate::metrics::Outcome::Forwarded, owed.arrived);
        span.record("outcome", "forwarded");
        self.flush_local();
        Ok(())
    }
}

/// The API's name, for labels and spans.
fn api_name(api: ApiKey) -> &'static str {
    crate::net::trace::api_name(api)
}

fn decode_request(api: ApiKey, version: i16, mut body: Bytes) -> Result<Request, ProxyError> {
    let header_version = api.request_header_version(version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| ProxyError::Downstream(format!("malformed request header: {e}")))?;
    // Every count must be backed by bytes before the codec sizes a vector.
    gatehouse_wire::check_request(api, version, &body).map_err(|e| {
        ProxyError::Downstream(format!("malformed {api:?} v{version} request: {e}"))
    })?;
    let body = RequestKind::decode(api, &mut body, version).map_err(|e| {
        ProxyError::Downstream(format!("malformed {api:?} v{version} request: {e}"))
    })?;
    Ok(Request {
        api,
        version,
        header,
        body,
        notes: Default::default(),
    })
}

fn encode_request(request: &Request, out: &mut BytesMut) -> Result<(), ProxyError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let fail = |e: &dyn std::fmt::Display| {
        ProxyError::Internal(format!(
            "cannot encode {:?} v{}: {e}",
            request.api, request.version
        ))
    };
    request
        .header
        .encode(out, request.api.request_header_version(request.version))
        .map_err(|e| fail(&e))?;
    request
        .body
        .encode(out, request.version)
        .map_err(|e| fail(&e))?;
    let len = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn decode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let attempt = |v: i16| -> Result<ResponseKind, String> {
        let mut b = body.clone();
        ResponseHeader::decode(&mut b, api.response_header_version(v))
            .map_err(|e| e.to_string())?;
        // The cluster's counts must be backed by bytes too before the codec
        // sizes a vector from them.
        gatehouse_wire::check_response(api, v, &b).map_err(|e| e.to_string())?;
        ResponseKind::decode(api, &mut b, v).map_err(|e| e.to_string())
    };
    match attempt(version) {
        Ok(body) => Ok(Response {
            api,
            version,
            correlation_id,
            body,
            notes: Default::default(),
        }),
        // KIP-511: a broker answers an ApiVersions request it cannot parse
        // at v0, with the versions it supports.
        Err(_) if api == ApiKey::ApiVersions && version > 0 => attempt(0)
            .map(|body| Response {
                api,
                version: 0,
                correlation_id,
                body,
                notes: Default::default(),
            })
            .map_err(|e| ProxyError::Upstream(format!("malformed ApiVersions response: {e}"))),
        Err(e) => Err(ProxyError::Upstream(format!(
            "malformed {api:?} v{version} response: {e}"
        ))),
    }
}

/// `SASL_AUTHENTICATION_FAILED` with a message that gives nothing away
/// (librdkafka and the Java client show it and give up on the connection).
fn auth_failed() -> kafka_protocol::messages::SaslAuthenticateResponse {
    kafka_protocol::messages::SaslAuthenticateResponse::default()
        .with_error_code(58)
        .with_error_message(Some(StrBytes::from_static_str(
            "Authentication failed: invalid credentials",
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    async fn written(out: &mut Outbox) -> Vec<u8> {
        let mut w = Vec::new();
        out.flush(&mut w).await.expect("flush");
        w
    }

    /// A held response and everything queued after it wait for its gate;
    /// frames before it go out at once; released gates ready them in order.
    #[tokio::test]
    async fn held_frames_wait_for_their_gate_in_order() {
        let mut out = Outbox::default();
        out.push(frame("a"));
        let (first, first_gate) = tokio::sync::oneshot::channel::<Result<(), String>>();
        out.scratch.extend_from_slice(b"b");
        out.seal_held(
            Box::pin(async move { first_gate.await.unwrap_or(Err("gone".into())) }),
            None,
        );
        out.push(frame("c"));
        let (second, second_gate) = tokio::sync::oneshot::channel::<Result<(), String>>();
        out.scratch.extend_from_slice(b"d");
        out.seal_held(
            Box::pin(async move { second_gate.await.unwrap_or(Err("gone".into())) }),
            None,
        );
        out.scratch.extend_from_slice(b"e");
        assert_eq!(written(&mut out).await, b"a");
        // b, c, d and e wait: four frames in flight, not two.
        out.seal();
        assert_eq!(out.holding(), 4);
        assert_eq!(out.held_bytes, 4);
        out.release_ready().expect("nothing failed");
        assert_eq!(written(&mut out).await, b"");

        // The second gate resolving first releases nothing: order holds.
        second.send(Ok(())).expect("send");
        out.release_ready().expect("nothing failed");
        assert_eq!(written(&mut out).await, b"");
        first.send(Ok(())).expect("send");
        out.release_next().await.expect("released");
        out.release_ready().expect("released");
        assert_eq!(out.holding(), 0);
        assert_eq!(out.held_bytes, 0);
        assert_eq!(written(&mut out).await, b"bcde");
    }

    /// Responses waiting behind a gate stop the connection reading the
    /// cluster once they pass the cap, and count towards it until released.
    #[tokio::test]
    async fn held_bytes_are_capped() {
        let mut out = Outbox::default();
        let (open, gate) = tokio::sync::oneshot::channel::<Result<(), String>>();
        out.scratch.extend_from_slice(b"held");
        out.seal_held(
            Box::pin(async move { gate.await.unwrap_or(Err("gone".into())) }),
            None,
        );
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        while !out.held_full() {
            out.push(chunk.clone());
        }
        assert_eq!(out.holding(), 1 + HELD_BYTES / (1 << 20));
        open.send(Ok(())).expect("send");
        out.release_next().await.expect("released");
        assert!(!out.held_full());
        assert_eq!(out.holding(), 0);
        assert_eq!(written(&mut out).await.len(), 4 + HELD_BYTES);
    }

    /// A gate that fails after an earlier one was released: the released
    /// response is still written before the connection closes.
    #[tokio::test]
    async fn responses_released_before_a_refused_one_are_written() {
        let mut out = Outbox::default();
        out.scratch.extend_from_slice(b"durable");
        out.seal_held(Box::pin(async { Ok(()) }), None);
        out.scratch.extend_from_slice(b"refused");
        out.seal_held(Box::pin(async { Err("disk full".into()) }), None);
        // A response after it, encoded but not queued yet.
        out.scratch.extend_from_slice(b"later");
        let reason = out.release_ready().expect_err("the second gate failed");
        let mut w = Vec::new();
        let e = refuse_held(&mut out, &mut w, reason).await;
        assert_eq!(w, b"durable");
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(out.holding(), 0);
    }

    /// A failed gate is an error, and what it held is never readied.
    #[tokio::test]
    async fn a_failed_gate_releases_nothing() {
        let mut out = Outbox::default();
        out.scratch.extend_from_slice(b"held");
        out.seal_held(
            Box::pin(async { Err("audit log unavailable: disk full".into()) }),
            None,
        );
        out.push(frame("after"));
        assert_eq!(
            out.release_next().await,
            Err("audit log unavailable: disk full".to_string())
        );
        assert_eq!(written(&mut out).await, b"");
    }
}
