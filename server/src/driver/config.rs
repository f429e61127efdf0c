//! Connection-level options: timeouts, limits, the connection cap and the fallback handler.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use volley_core::engine::ErrorCode;
use volley_core::http::{Limits, RequestHead, Response};

/// Answers requests the machine does not own (anything outside `/engine.io/` for the engine).
pub type Fallback = Arc<dyn Fn(&RequestHead) -> Response + Send + Sync>;

/// Decides whether a request may reach the machine (the reference server's `allowRequest`);
/// a refused one gets `403` with `{"code":4,"message":"Forbidden"}`.
pub type AllowRequest = Arc<dyn Fn(&RequestHead) -> bool + Send + Sync>;

/// A refusal of a request by the server (the reference's `connection_error` event): the
/// Engine.IO error code, its message and the refused request (method, path, query, headers).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionError<'a> {
    /// The Engine.IO error code of the refusal.
    pub code: ErrorCode,
    /// Its message (`"Session ID unknown"`, ...).
    pub message: &'static str,
    /// The refused request.
    pub request: &'a RequestHead,
}

/// Sees every refusal (see [`ServerConfig::on_connection_error`]).
pub type ConnectionErrorHook = Arc<dyn Fn(&ConnectionError<'_>) + Send + Sync>;

/// Adds response headers (see [`ServerConfig::initial_headers`] and [`ServerConfig::headers`]):
/// given the request, pushes `(name, value)` pairs.
pub type HeadersHook = Arc<dyn Fn(&RequestHead, &mut Vec<(&'static str, String)>) + Send + Sync>;

/// How the driver treats connections. `Default` gives the values documented on each setter.
///
/// Every timeout bounds what a peer can hold without doing its part, so that no client can
/// pin a connection (and its memory) by going quiet at the wrong moment.
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) head_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_address: Option<usize>,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) limits: Limits,
    pub(crate) fallback: Fallback,
    pub(crate) cors: Option<super::cors::Cors>,
    pub(crate) allow_request: Option<AllowRequest>,
    /// The threshold of HTTP compression, `None` when off.
    pub(crate) http_compression: Option<usize>,
    pub(crate) on_connection_error: Option<ConnectionErrorHook>,
    pub(crate) initial_headers: Option<HeadersHook>,
    pub(crate) headers: Option<HeadersHook>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_address: None,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            fallback: Arc::new(|_| not_found()),
            cors: None,
            allow_request: None,
            http_compression: Some(super::compress::DEFAULT_COMPRESSION_THRESHOLD),
            on_connection_error: None,
            initial_headers: None,
            headers: None,
        }
    }
}

impl ServerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a request head may take: a new connection's first byte must come within it,
    /// and every head must be complete within it of its first byte. One deadline for the
    /// whole head, not per read, so a client trickling a byte at a time (slow loris) is cut
    /// off all the same (with `408`). Default 10 s.
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// How long a kept-alive connection may wait, between requests, for the next one's first
    /// byte. Default 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a whole request body the machine asked for may take. Default 30 s.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How long one response, or one batch of WebSocket messages, may take to be written: a
    /// peer that stops reading is dropped after it. Default 30 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Most connections served at once. At the cap, a new connection makes room by closing
    /// the oldest connection that has not completed a request head yet (a silent or
    /// trickling socket: it costs a real client nothing to retry); when every connection has
    /// sent one, the new connection is answered `503` and closed. A polling client holds up
    /// to two (a parked GET and a POST). Default 10 000.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Most connections one client address may hold at once; beyond it a connection (or a
    /// request mounted in a host, [`Driver::serve_request`](super::Driver::serve_request)) is
    /// answered `503` and closed. The address is the TCP peer's, or for a peer listed in
    /// [`trusted_proxies`](Self::trusted_proxies) the one its `X-Forwarded-For` names. Off
    /// by default: many clients may share one address (a NAT, an office).
    pub fn max_connections_per_address(mut self, max: usize) -> Self {
        self.max_connections_per_address = Some(max);
        self
    }

    /// Proxies whose `X-Forwarded-For` is believed, for the per-address limit: a connection
    /// from one of these addresses counts against the **last** entry of the header of each
    /// request (the address the proxy itself saw; entries before it are whatever the client
    /// sent), from its first request head on, and against nothing before that or without
    /// the header. Other peers count against their own address and their header is
    /// ignored. Default: none.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().map(|ip| ip.to_canonical()).collect();
        self
    }

    /// Limits on request heads. Default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Answers cross-origin requests to the machine: preflights directly, and every other
    /// answer with the allow-origin headers. With a list of origins, a WebSocket upgrade whose
    /// `Origin` names another one is refused with `403` (no browser rule guards WebSockets).
    ///
    /// Off by default: no allow-origin headers, so browsers keep pages of other origins from
    /// reading polling answers, but **no origin is checked**: a WebSocket upgrade from any
    /// page is served. For same-origin only, refuse foreign origins with
    /// [`allow_request`](Self::allow_request) (docs/deployment.md has the example).
    pub fn cors(mut self, cors: super::cors::Cors) -> Self {
        self.cors = Some(cors);
        self
    }

    /// Checks every request for the machine before it gets there (origin checks, IP
    /// blocking); refused ones get `403` with Engine.IO's error code 4.
    pub fn allow_request(
        mut self,
        allow: impl Fn(&RequestHead) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.allow_request = Some(Arc::new(allow));
        self
    }

    /// HTTP compression of long-polling answers (the reference's `httpCompression`): a poll
    /// answer of at least `threshold` bytes is compressed with gzip or deflate, whichever
    /// the request's `Accept-Encoding` prefers (gzip on a tie), and gets `Content-Encoding`;
    /// an answer carrying only packets sent with `compress(false)` stays as it is. `None`
    /// turns compression off. Default: on, threshold 1024 bytes
    /// ([`DEFAULT_COMPRESSION_THRESHOLD`](super::DEFAULT_COMPRESSION_THRESHOLD)).
    ///
    /// WebSocket messages are not compressed: permessage-deflate is out of scope while
    /// async-tungstenite does not support it.
    pub fn http_compression(mut self, threshold: Option<usize>) -> Self {
        self.http_compression = threshold;
        self
    }

    /// Called for every request the server refuses with an Engine.IO error code (the
    /// reference's `connection_error` event): refusals by the machine (unknown transport or
    /// session, bad handshake method, bad request, unsupported protocol version) and by the
    /// driver (`allow_request`, a WebSocket `Origin` that CORS does not allow). It runs on the
    /// connection's task and must not block. None by default.
    pub fn on_connection_error(
        mut self,
        hook: impl Fn(&ConnectionError<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.on_connection_error = Some(Arc::new(hook));
        self
    }

    /// Adds headers to the handshake response (the reference's `initial_headers` event): the
    /// first response of a session, polling `200` or WebSocket `101`. Header names are
    /// `'static` (literals). Applied after [`headers`](Self::headers). None by default.
    pub fn initial_headers(
        mut self,
        hook: impl Fn(&RequestHead, &mut Vec<(&'static str, String)>) + Send + Sync + 'static,
    ) -> Self {
        self.initial_headers = Some(Arc::new(hook));
        self
    }

    /// Adds headers to every response of the machine, the handshake included (the
    /// reference's `headers` event): polls, POSTs, refusals and WebSocket `101`s, not the
    /// fallback's answers. None by default.
    pub fn headers(
        mut self,
        hook: impl Fn(&RequestHead, &mut Vec<(&'static str, String)>) + Send + Sync + 'static,
    ) -> Self {
        self.headers = Some(Arc::new(hook));
        self
    }

    /// The handler for requests the machine does not own. Default: `404 Not Found`. It runs on
    /// the connection's task and sees the head only: a request with a body is answered and
    /// the connection closed, since the body is not read.
    pub fn fallback(
        mut self,
        fallback: impl Fn(&RequestHead) -> Response + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Arc::new(fallback);
        self
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("head_timeout", &self.head_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limits", &self.limits)
            .field("http_compression", &self.http_compression)
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// Whether a connection from `peer` is keyed by the client address its requests name.
    pub(crate) fn is_trusted_proxy(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.trusted_proxies.contains(&p.ip().to_canonical()))
    }

    /// The address a connection from `peer` counts against before any request: the peer's,
    /// unless it is a trusted proxy (then none yet).
    pub(crate) fn peer_key(&self, peer: Option<SocketAddr>) -> Option<IpAddr> {
        match self.is_trusted_proxy(peer) {
            true => None,
            false => peer.map(|p| p.ip().to_canonical()),
        }
    }

    /// The address a request from `peer` counts against: the peer's, or behind a trusted
    /// proxy the last `X-Forwarded-For` entry (none when it has no usable one).
    pub(crate) fn client_key(
        &self,
        peer: Option<SocketAddr>,
        head: &RequestHead,
    ) -> Option<IpAddr> {
        if !self.is_trusted_proxy(peer) {
            return self.peer_key(peer);
        }
        let last = head.header("x-forwarded-for")?.rsplit(',').next()?.trim();
        let ip = last
            .parse::<IpAddr>()
            .or_else(|_| last.parse::<SocketAddr>().map(|a| a.ip()))
            .ok()?;
        Some(ip.to_canonical())
    }
}

fn not_found() -> Response {
    Response::new(404)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body("Not Found")
}
