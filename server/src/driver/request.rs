//! Request-level serving, for hosts that speak HTTP themselves (hyper, axum, any framework
//! with its own parser): [`Driver::serve_request`] takes one parsed request and gives back
//! its [`Served`] answer, and for a `101` the WebSocket half to run on the upgraded stream.
//!
//! Each request is a connection of its own to the machine (its own `ConnId`), registered
//! for the exchange and reported closed when it ends: after the answer, when the request
//! future is dropped (the host saw its client go: a parked poll then closes its session), or
//! when the WebSocket ends. The screening the stream path does (CORS preflights, CORS headers,
//! `allow_request`, the fallback) is the same code.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{Stream, StreamExt};
use tracing::Instrument;
use volley_core::ConnId;
use volley_core::engine::{Body, ErrorCode, Output};
use volley_core::http::{RequestHead, Response};

use super::actor::Input;
use super::config::{ConnectionError, ServerConfig};
use super::conn::{Link, has_body};
use super::cors::Cors;
use super::forward;
use super::io::or_timeout;
use super::machine::Machine;
use super::outbox::{self, Outbox};
use super::shutdown::{Admission, Refused};
use super::slot::Way;
use super::{Driver, Env, websocket};
use crate::runtime::Runtime;

/// The answer to a request the driver screens before the machine sees it: a CORS preflight,
/// a WebSocket upgrade from an origin CORS does not allow, or a refusal by `allow_request`
/// (refusals are reported to `on_connection_error`). `None`: the request goes on to the
/// machine.
pub(crate) fn screen(config: &ServerConfig, head: &RequestHead) -> Option<Response> {
    if let Some(cors) = &config.cors {
        if Cors::is_preflight(head) {
            return Some(cors.preflight(head));
        }
        if head.is_websocket_upgrade() && !cors.allows_upgrade(head) {
            tracing::debug!(origin = ?head.header("origin"), "upgrade refused: origin not allowed");
            report_refusal(config, head, ErrorCode::Forbidden);
            return Some(ErrorCode::Forbidden.ws_response());
        }
    }
    if let Some(allow) = &config.allow_request {
        if !allow(head) {
            report_refusal(config, head, ErrorCode::Forbidden);
            return Some(if head.is_websocket_upgrade() {
                ErrorCode::Forbidden.ws_response()
            } else {
                ErrorCode::Forbidden.response()
            });
        }
    }
    None
}

fn report_refusal(config: &ServerConfig, head: &RequestHead, code: ErrorCode) {
    if let Some(hook) = &config.on_connection_error {
        hook(&ConnectionError {
            code,
            message: code.message(),
            request: head,
        });
    }
}

/// A response of the machine as sent: compressed when HTTP compression applies, with the
/// CORS headers when CORS is on, then [`hooks`].
pub(crate) fn decorate(config: &ServerConfig, head: &RequestHead, response: Response) -> Response {
    let response = super::compress::compress(config.http_compression, head, response);
    let response = match &config.cors {
        Some(cors) => cors.decorate(head, response),
        None => response,
    };
    hooks(config, head, response)
}

/// The application's hooks on a response of the machine (a `101` included): a refusal is
/// reported to `on_connection_error`; `headers`, then for a handshake `initial_headers`, add
/// their headers.
pub(crate) fn hooks(config: &ServerConfig, head: &RequestHead, mut response: Response) -> Response {
    if config.on_connection_error.is_some() {
        if let Some(code) = ErrorCode::of_response(&response) {
            report_refusal(config, head, code);
        }
    }
    if let Some(hook) = &config.headers {
        hook(head, &mut response.headers);
    }
    if let Some(hook) = &config.initial_headers {
        let handshake = matches!(response.status, 200 | 101) && head.query_param("sid").is_none();
        if handshake {
            hook(head, &mut response.headers);
        }
    }
    response
}

/// The answer beyond the connection cap.
pub(crate) fn unavailable() -> Response {
    Response::new(503)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Retry-After", "1")
        .body("Service Unavailable")
        .closing()
}

/// A short plain-text answer after which the connection should close.
fn closing(status: u16, text: &'static str) -> Response {
    Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(text)
        .closing()
}

/// What [`Driver::serve_request`] answers.
#[must_use = "the response must be sent, and an upgrade run or dropped"]
pub struct Served<R: Runtime> {
    /// The response to send. Its `close` flag asks the host to close the connection after it
    /// (`Connection: close`): the body was left unread, or the driver is shutting down.
    pub response: Response,
    /// Set exactly when the response is `101 Switching Protocols`: the WebSocket half, to
    /// [`run`](Upgrade::run) on the upgraded stream once the response is written. Dropping it
    /// instead tells the machine the connection failed.
    pub upgrade: Option<Upgrade<R>>,
}

impl<R: Runtime> Served<R> {
    fn answer(response: Response) -> Self {
        Served {
            response,
            upgrade: None,
        }
    }
}

impl<R: Runtime> fmt::Debug for Served<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("response", &self.response)
            .field("upgrade", &self.upgrade.is_some())
            .finish()
    }
}

/// The WebSocket half of a request answered `101`: the connection's place at the machine,
/// kept until the host hands over the upgraded stream.
///
/// It counts as one of the driver's connections (the cap, and what graceful shutdown waits
/// for) until it ends or is dropped.
pub struct Upgrade<R: Runtime>(Half<R>);

/// Where the WebSocket half runs.
enum Half<R: Runtime> {
    /// Here, with this node's machine.
    Local(Local<R>),
    /// On the node that owns the session: the stream's bytes are carried there.
    Relayed {
        stream: forward::RelayStream,
        admission: Admission,
    },
}

struct Local<R: Runtime> {
    env: Arc<Env<R>>,
    conn: ConnId,
    link: Link,
    /// Outputs that came in the 101's batch (the open packet of a WebSocket-only session).
    pending: VecDeque<Output>,
    guard: CloseGuard,
    admission: Admission,
}

impl<R: Runtime> fmt::Debug for Upgrade<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Half::Local(local) => f
                .debug_struct("Upgrade")
                .field("conn", &local.conn)
                .finish_non_exhaustive(),
            Half::Relayed { stream, .. } => {
                f.debug_struct("Upgrade").field("relayed", stream).finish()
            }
        }
    }
}

impl<R: Runtime> Upgrade<R> {
    /// Carries WebSocket frames on `stream` (the connection after the `101`, with any bytes
    /// the host read past the request head put back in front) until either side ends it,
    /// exactly as a connection served by [`Driver::serve_connection`] does after its upgrade:
    /// the same flow control, close handshake and lingering, and the end reported to the
    /// machine.
    pub async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let local = match self.0 {
            Half::Local(local) => local,
            Half::Relayed {
                stream: relay,
                admission,
            } => {
                forward::pipe(stream, Bytes::new(), relay).await;
                drop(admission);
                return;
            }
        };
        let Local {
            env,
            conn,
            link,
            pending,
            mut guard,
            admission,
        } = local;
        let span = tracing::debug_span!("conn", id = conn.0);
        let websocket = async {
            let halves = websocket::open(&env, stream, BytesMut::new()).await;
            websocket::run(&*env, conn, halves, pending, link, None).await;
        };
        websocket.instrument(span).await;
        // The WebSocket half reported the end itself. Dropped before here, the guard does
        // (a second report, if the drop came while lingering after the first, is ignored:
        // the machine and its task forget a closed connection).
        guard.disarm();
        drop(admission);
    }
}

/// Reports the end of a connection when dropped, without waiting: a host may drop a request
/// future at any await.
struct CloseGuard {
    /// Used once, in the drop, with `send_now`: the report does not wait for room.
    inputs: Way,
    conn: ConnId,
    /// The end is a failure (the default until the exchange completes).
    error: bool,
    armed: bool,
}

impl CloseGuard {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if self.armed {
            let closed = Input::Closed {
                conn: self.conn,
                error: self.error,
            };
            let _ = self.inputs.send_now(closed);
        }
    }
}

/// Where a request's body comes from.
enum Source<B> {
    /// Read from the host's stream when the machine asks.
    Stream(std::pin::Pin<Box<B>>),
    /// Already read (a forwarded request).
    Read(Body),
}

/// What reading a request body came to.
enum BodyRead {
    Read(Body),
    Failed(io::Error),
    TimedOut,
}

impl BodyRead {
    /// The body, or the answer to a body that failed or came too slowly.
    fn into_body(self) -> Result<Body, Response> {
        match self {
            BodyRead::Read(body) => Ok(body),
            BodyRead::Failed(e) => {
                tracing::debug!(error = %e, "request body failed");
                Err(closing(400, "request body failed"))
            }
            BodyRead::TimedOut => {
                tracing::debug!("request body too slow");
                Err(closing(408, "request body timeout"))
            }
        }
    }
}

impl<M: Machine, R: Runtime> Driver<M, R> {
    /// Serves one request whose head the host has parsed (see [`RequestHead::from_parts`]),
    /// and returns the answer to send. For hosts that speak HTTP themselves (hyper, a web
    /// framework); [`serve_connection`](Driver::serve_connection) serves raw streams.
    ///
    /// - `body` is the request body as the host decoded it (no chunked framing); it is read
    ///   only if the machine asks for it, up to the machine's limit (beyond it the machine
    ///   answers `413` and the response asks to close), within the body timeout. Pass an
    ///   empty stream for a request without one.
    /// - `peer` is recorded in the head for the handshake (when given).
    /// - The future resolves when the machine answers, which for a long-polling `GET` is when
    ///   there is something to send. Drop it when the client goes away: the machine is told
    ///   the connection failed, and closes the session of a parked poll. (Like any future it
    ///   does nothing until first polled: one dropped before that never reached the machine.)
    /// - The [`ServerConfig`] applies as to streams: CORS, `allow_request` and the fallback
    ///   (for requests the machine does not own) answer here; the connection cap and graceful
    ///   shutdown answer `503`; the body timeout bounds the body, the write timeout each
    ///   WebSocket batch. The head and idle timeouts, and writing the response, are the
    ///   host's.
    /// - A `101` comes with an [`Upgrade`] to run once the host has the upgraded stream.
    pub async fn serve_request<B>(
        &self,
        head: RequestHead,
        body: B,
        peer: Option<SocketAddr>,
    ) -> Served<R>
    where
        B: Stream<Item = io::Result<Bytes>> + Send,
    {
        let env = &self.env;
        let address = env.config.client_key(peer, &head);
        let admission = match env.tracker.admit(address) {
            Ok(admission) => admission,
            Err(refused) => {
                match refused {
                    Refused::Full => {
                        tracing::debug!(?peer, "request refused: at the connection cap")
                    }
                    Refused::PerAddress => {
                        tracing::debug!(?peer, ?address, "request refused: per-address limit")
                    }
                    Refused::Stopping => {}
                }
                return Served::answer(unavailable());
            }
        };
        let conn = ConnId(env.next_conn.fetch_add(1, Ordering::Relaxed));
        let head = match peer {
            Some(peer) => head.with_peer_addr(peer),
            None => head,
        };
        let span = tracing::debug_span!("request", id = conn.0, peer = ?peer);
        let body = Source::Stream(Box::pin(body));
        let mut served = self
            .exchange(conn, head, body, admission)
            .instrument(span)
            .await;
        if env.tracker.is_stopping() && served.upgrade.is_none() {
            served.response.close = true;
        }
        served
    }

    /// Serves a request another node forwarded here (see `forward`): screened there, with
    /// its body already read (`None`: it has none).
    pub(crate) async fn serve_forwarded(
        &self,
        head: RequestHead,
        body: Option<Body>,
        peer: Option<SocketAddr>,
    ) -> Served<R> {
        let env = &self.env;
        // Counted against the cap, not against an address: the requester's node counted
        // the client's connection.
        let Ok(admission) = env.tracker.admit(None) else {
            return Served::answer(unavailable());
        };
        let conn = ConnId(env.next_conn.fetch_add(1, Ordering::Relaxed));
        let head = match peer {
            Some(peer) => head.with_peer_addr(peer),
            None => head,
        };
        let span = tracing::debug_span!("forwarded", id = conn.0, peer = ?peer);
        let body: Source<futures::stream::Empty<io::Result<Bytes>>> =
            Source::Read(body.unwrap_or(Body::Complete(Bytes::new())));
        self.exchange(conn, head, body, admission)
            .instrument(span)
            .await
    }

    async fn exchange<B>(
        &self,
        conn: ConnId,
        head: RequestHead,
        body: Source<B>,
        admission: Admission,
    ) -> Served<R>
    where
        B: Stream<Item = io::Result<Bytes>> + Send,
    {
        let env = &self.env;
        tracing::debug!(
            method = head.method_str(),
            target = head.target(),
            "request"
        );
        let mut body = match body {
            Source::Stream(body) => {
                if !env.router.may_own(&head) {
                    return Served::answer((env.config.fallback)(&head));
                }
                if let Some(response) = screen(&env.config, &head) {
                    return Served::answer(response);
                }
                let mut body = body;
                if let Some(fwd) = env.forward.get() {
                    if let Some(owner) = fwd.owner(&head) {
                        return self.forward(fwd, owner, head, &mut body, admission).await;
                    }
                }
                Source::Stream(body)
            }
            read => read,
        };
        // From here on the machine may hold a role for the connection: whatever ends the
        // exchange (this function returning, or its future being dropped) reports it.
        // A request for a session run in a slot goes there; any other to the machine's task.
        let way = match env.slots.find(&head) {
            Some(slot) => Way::Slot(slot),
            None => Way::Machine(env.inputs.clone()),
        };
        let mut guard = CloseGuard {
            inputs: way.clone(),
            conn,
            error: true,
            armed: true,
        };
        let outbox = std::sync::Arc::new(Outbox::default());
        let link = Link::new(way, outbox.clone());
        let request = Input::Request {
            conn,
            head: head.clone(),
            body: None,
        };
        let open = Input::Open { conn, outbox };
        if link.inputs.send(open).await.is_err() || link.inputs.send(request).await.is_err() {
            return Served::answer(closing(503, "Service Unavailable"));
        }
        let mut pending = VecDeque::new();
        let mut body_unread = has_body(&head);
        loop {
            let output = match pending.pop_front() {
                Some(output) => output,
                None => match poll_fn(|cx| link.outbox.poll_take_http(cx, &mut pending)).await {
                    outbox::Http::Outputs => continue,
                    outbox::Http::NotOwned => {
                        guard.error = false;
                        return Served::answer((env.config.fallback)(&head));
                    }
                    outbox::Http::Closed => {
                        // The machine's task dropped the connection (it has been told).
                        tracing::debug!("dropped by the machine's task");
                        return Served::answer(closing(503, "Service Unavailable"));
                    }
                },
            };
            match output {
                Output::Response { mut response, .. } => {
                    if response.status == 101 {
                        let response = hooks(&env.config, &head, response);
                        let upgrade = Upgrade(Half::Local(Local {
                            env: env.clone(),
                            conn,
                            link,
                            pending,
                            guard,
                            admission,
                        }));
                        return Served {
                            response,
                            upgrade: Some(upgrade),
                        };
                    }
                    guard.error = false;
                    response.close |= body_unread;
                    return Served::answer(decorate(&env.config, &head, response));
                }
                Output::ReadBody { limit, .. } => {
                    let read = match &mut body {
                        Source::Stream(stream) => {
                            read_body(&env.runtime, &env.config, stream, limit).await
                        }
                        Source::Read(Body::Complete(bytes)) if bytes.len() > limit => {
                            BodyRead::Read(Body::TooLarge)
                        }
                        Source::Read(read) => BodyRead::Read(read.clone()),
                    };
                    let body = match read.into_body() {
                        Ok(body) => body,
                        Err(answer) => return Served::answer(answer),
                    };
                    body_unread = body == Body::TooLarge;
                    if link.inputs.send(Input::Body { conn, body }).await.is_err() {
                        return Served::answer(closing(503, "Service Unavailable"));
                    }
                }
                Output::Close { .. } => {
                    tracing::debug!("the machine closed the request's connection");
                    guard.error = false;
                    return Served::answer(closing(500, "connection closed"));
                }
                Output::Send { .. } => {
                    tracing::debug!("WebSocket message for an HTTP request dropped");
                }
            }
        }
    }
}

impl<M: Machine, R: Runtime> Driver<M, R> {
    /// Sends a request for a session of node `owner` there, and returns its answer.
    async fn forward<B>(
        &self,
        fwd: &Arc<forward::Forwarder>,
        owner: volley_core::NodeId,
        head: RequestHead,
        body: &mut std::pin::Pin<Box<B>>,
        admission: Admission,
    ) -> Served<R>
    where
        B: Stream<Item = io::Result<Bytes>> + Send,
    {
        let env = &self.env;
        let body = match super::conn::has_body(&head) {
            false => None,
            true => {
                let read = read_body(&env.runtime, &env.config, body, env.max_body).await;
                match read.into_body() {
                    Ok(body) => Some(body),
                    Err(answer) => return Served::answer(answer),
                }
            }
        };
        let body_unread = body == Some(Body::TooLarge);
        let upgrade = head.is_websocket_upgrade();
        let request = forward::Request {
            head: head.clone(),
            peer: head.peer_addr(),
            body,
        };
        match fwd.clone().forward(&env.runtime, owner, request).await {
            forward::Forwarded::Answer(mut response) => {
                response.close |= body_unread;
                Served::answer(response)
            }
            forward::Forwarded::Upgraded { response, stream } => Served {
                response,
                upgrade: Some(Upgrade(Half::Relayed { stream, admission })),
            },
            forward::Forwarded::Unreachable => {
                let response = match upgrade {
                    true => ErrorCode::UnknownSid.ws_response(),
                    false => ErrorCode::UnknownSid.response(),
                };
                let mut response = decorate(&env.config, &head, response);
                response.close |= body_unread;
                Served::answer(response)
            }
        }
    }
}

/// Reads `body` whole, at most `limit` bytes, within the body timeout.
async fn read_body<R: Runtime, B>(
    runtime: &R,
    config: &ServerConfig,
    body: &mut std::pin::Pin<Box<B>>,
    limit: usize,
) -> BodyRead
where
    B: Stream<Item = io::Result<Bytes>>,
{
    let deadline = pin!(runtime.sleep(config.body_timeout));
    let collect = async {
        // One chunk is kept as it came; only a second one costs a copy.
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut total = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return BodyRead::Failed(e),
            };
            total = total.saturating_add(chunk.len());
            if total > limit {
                return BodyRead::Read(Body::TooLarge);
            }
            if chunk.is_empty() {
                continue;
            }
            match first.take() {
                None if joined.is_empty() => first = Some(chunk),
                None => joined.extend_from_slice(&chunk),
                Some(earlier) => {
                    joined.reserve(earlier.len() + chunk.len());
                    joined.extend_from_slice(&earlier);
                    joined.extend_from_slice(&chunk);
                }
            }
        }
        let bytes = first.unwrap_or_else(|| joined.freeze());
        BodyRead::Read(Body::Complete(bytes))
    };
    or_timeout(collect, deadline)
        .await
        .unwrap_or(BodyRead::TimedOut)
}
