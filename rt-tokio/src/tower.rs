//! Volley as a [`tower_service::Service`], to mount on the port of an existing hyper or axum
//! application (feature `tower`).
//!
//! [`VolleyService`] takes `http::Request`s, hands each to the driver with
//! [`Driver::serve_request`] (the body is read only if the machine asks for it, up to its
//! limit) and answers with an `http::Response`. For a WebSocket upgrade it answers `101` and
//! spawns a task that waits for hyper's upgraded connection and runs the WebSocket on it, so
//! the server must serve connections with upgrades enabled: `axum::serve` does, and so do
//! hyper's `serve_connection(..).with_upgrades()` and hyper-util's
//! `serve_connection_with_upgrades`. Only HTTP/1.1 can upgrade; polling works over any
//! version the host speaks.
//!
//! # Several endpoints on one port
//!
//! As Node attaches several servers to one `http.Server`, one router can hold several
//! Volley servers (each built with its own `path`) and bare Engine.IO endpoints: mount each
//! service on its path and the wildcard below it. Each request goes to the endpoint of its
//! path, whatever connection it arrives on (the rt-tokio tower tests serve two Socket.IO
//! servers and an Engine.IO endpoint on one port, over polling and WebSocket).
//!
//! # With axum
//!
//! The Engine.IO path is matched by the service itself, as the reference server matches it:
//! mount it on `/socket.io/` (what clients request: `/socket.io/?EIO=4&transport=polling`;
//! axum routes on the path, the query does not matter) and on the wildcard below it. Use
//! `route_service`, not `nest_service`, which strips the prefix the machine routes on.
//!
//! ```no_run
//! use axum::Router;
//! use axum::routing::get;
//! use volley::{Data, Json, Socket};
//! use volley_tokio::TokioRuntime;
//! use volley_tokio::tower::VolleyService;
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = volley::builder().build(TokioRuntime::current());
//! io.ns("/")
//!     .on_connection(|socket: Socket| async move {
//!         let _ = socket.emit("welcome", "hello");
//!     })
//!     // The return value acknowledges the event.
//!     .on("echo", |Data(value): Data<serde_json::Value>| async move { Json(value) });
//!
//! let volley = VolleyService::from(&io);
//! let app = Router::new()
//!     .route("/", get(|| async { "an ordinary route" }))
//!     .route_service("/socket.io/", volley.clone())
//!     .route_service("/socket.io/{*rest}", volley);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!     .await?;
//! io.close().await; // disconnect the sockets, wait for the WebSockets to end
//! # Ok(()) }
//! ```
//!
//! `Router::fallback_service(volley)` works too: everything the router does not match goes
//! to Volley, which answers what is not under its path with the driver's fallback (404).
//!
//! To record the client's address in the handshake, tell the service where the host keeps
//! it: with axum's `into_make_service_with_connect_info::<SocketAddr>()`,
//! `.peer_addr(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0))`.
//!
//! The [`ServerConfig`](volley::driver::ServerConfig) applies as to connections Volley
//! accepts itself: CORS, `allow_request`, the fallback, the connection cap (each request
//! and each WebSocket counts while it lasts), the body timeout and the WebSocket write
//! timeout; head and idle timeouts are the host's.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::{Future, ready};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::TryStreamExt;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::compat::TokioAsyncReadCompatExt;
use volley::driver::{Driver, Machine, Served};
use volley::runtime::Runtime;
use volley_core::engine::ErrorCode;
use volley_core::http::{RequestHead, Response};

use crate::TokioRuntime;

/// Where a host keeps the client's address among a request's extensions.
type PeerAddr = Arc<dyn Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync>;

/// The future of `VolleyService::call` (the `tower_service::Service` method).
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, Infallible>> + Send>>;

/// A running Volley machine as a `tower` service over `http` requests; see the
/// [module docs](self). Cheap to clone: clones serve the same machine.
pub struct VolleyService<M> {
    driver: Driver<M, TokioRuntime>,
    peer_addr: Option<PeerAddr>,
}

impl<M> Clone for VolleyService<M> {
    fn clone(&self) -> Self {
        VolleyService {
            driver: self.driver.clone(),
            peer_addr: self.peer_addr.clone(),
        }
    }
}

impl<M> fmt::Debug for VolleyService<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolleyService")
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

impl<M: Machine> VolleyService<M> {
    /// Serves requests with `driver` (for Socket.IO, [`volley::Io::driver`], or use
    /// `VolleyService::from(&io)`).
    pub fn new(driver: Driver<M, TokioRuntime>) -> Self {
        VolleyService {
            driver,
            peer_addr: None,
        }
    }

    /// Reads the client's address from each request's extensions, for the handshake (the
    /// host puts it there: axum's `ConnectInfo`, a hyper service wrapper of your own).
    pub fn peer_addr(
        mut self,
        peer_addr: impl Fn(&http::Extensions) -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        self.peer_addr = Some(Arc::new(peer_addr));
        self
    }

    /// The driver the service feeds.
    pub fn driver(&self) -> &Driver<M, TokioRuntime> {
        &self.driver
    }
}

impl<M: Machine> From<Driver<M, TokioRuntime>> for VolleyService<M> {
    fn from(driver: Driver<M, TokioRuntime>) -> Self {
        VolleyService::new(driver)
    }
}

impl From<&volley::Io<TokioRuntime>> for VolleyService<volley::Node> {
    fn from(io: &volley::Io<TokioRuntime>) -> Self {
        VolleyService::new(io.driver().clone())
    }
}

impl<M, B> tower_service::Service<http::Request<B>> for VolleyService<M>
where
    M: Machine,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The driver paces requests itself (the machine's input channel, the connection cap).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<B>) -> ResponseFuture {
        let head = match to_head(&request) {
            Ok(head) => head,
            Err(e) => {
                tracing::debug!(error = %e, "request refused: not a valid HTTP/1.1 head");
                return Box::pin(ready(Ok(to_http(e.response()))));
            }
        };
        let peer = self
            .peer_addr
            .as_ref()
            .and_then(|peer_addr| peer_addr(request.extensions()));
        let on_upgrade = match head.is_websocket_upgrade() {
            true => match request.extensions_mut().remove::<OnUpgrade>() {
                Some(on_upgrade) => Some(on_upgrade),
                // The host cannot hand the connection over: refuse before the machine
                // commits to a WebSocket.
                None => return Box::pin(ready(Ok(to_http(ErrorCode::BadRequest.ws_response())))),
            },
            false => None,
        };
        let driver = self.driver.clone();
        Box::pin(async move {
            let body = request
                .into_body()
                .into_data_stream()
                .map_err(io::Error::other);
            let Served { response, upgrade } = driver.serve_request(head, body, peer).await;
            if let (Some(upgrade), Some(on_upgrade)) = (upgrade, on_upgrade) {
                // Hyper hands the connection over once it has written the 101.
                driver.runtime().spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => upgrade.run(TokioIo::new(upgraded).compat()).await,
                        // Dropping `upgrade` reports the failed connection to the machine.
                        Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
                    }
                });
            }
            Ok(to_http(response))
        })
    }
}

/// The request's head as the driver's, counted as HTTP/1.1 (hyper has validated the framing).
fn to_head<B>(request: &http::Request<B>) -> Result<RequestHead, volley_core::http::HttpError> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    RequestHead::from_parts(request.method().as_str(), target, headers)
}

/// The driver's response as an `http` one. Fields the host frames itself (`Content-Length`,
/// `Transfer-Encoding`) are left to it; `close` becomes `Connection: close`.
fn to_http(response: Response) -> http::Response<Full<Bytes>> {
    let Response {
        status,
        headers,
        body,
        close,
    } = response;
    let mut out = http::Response::new(Full::new(body));
    *out.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let fields = out.headers_mut();
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || (close && name == CONNECTION)
        {
            continue;
        }
        // A value that cannot be sent is dropped, as the driver's own serializer drops it.
        if let Ok(value) = HeaderValue::from_str(&value) {
            fields.append(name, value);
        }
    }
    if close {
        fields.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    out
}
