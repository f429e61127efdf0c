//! Volley on tokio: the [`Runtime`] implementation and an accept loop.
//!
//! Everything else (HTTP, WebSocket, the machine's task) lives in `volley`'s runtime-neutral
//! [`driver`](volley::driver); this crate only spawns, sleeps, reads tokio's clock and accepts
//! TCP connections, adapting tokio's IO traits to `futures::io` with `tokio_util::compat`.
//!
//! ```no_run
//! use volley_core::engine::{Config, Engine, Event};
//! use volley::driver::ServerConfig;
//!
//! # async fn run() -> std::io::Result<()> {
//! let engine = Engine::new(Config::default(), [7; 32]); // seed from the OS in production
//! let driver = volley_tokio::start(engine, ServerConfig::default(), |engine, event, now| {
//!     if let Event::Message { sid, message } = event {
//!         let _ = engine.send(sid, message, now); // echo
//!     }
//! });
//! let server = tokio::spawn(volley_tokio::listen("127.0.0.1:3000", driver.clone()));
//! // … later: stop accepting, close idle connections, wait for the rest.
//! driver.shutdown().await;
//! server.await.expect("accept loop")?;
//! # Ok(()) }
//! ```
//!
//! To mount Volley on the port of an existing hyper or axum application instead of
//! listening on a port of its own, enable the `tower` feature: `volley_tokio::tower`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "tower")]
pub mod tower;

use std::future::Future;
use std::io;
use std::time::Instant;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio_util::compat::TokioAsyncReadCompatExt;
use volley::driver::{Driver, Machine, ServerConfig};
use volley::runtime::Runtime;

/// tokio as a [`Runtime`]: a handle to the runtime it was created on, so the driver can
/// spawn and arm timers from any thread.
#[derive(Debug, Clone)]
pub struct TokioRuntime {
    handle: tokio::runtime::Handle,
}

impl TokioRuntime {
    /// The runtime the caller runs on. Panics outside a tokio runtime, like `tokio::spawn`.
    pub fn current() -> Self {
        Self::from(tokio::runtime::Handle::current())
    }
}

impl From<tokio::runtime::Handle> for TokioRuntime {
    fn from(handle: tokio::runtime::Handle) -> Self {
        TokioRuntime { handle }
    }
}

impl Runtime for TokioRuntime {
    type Sleep = tokio::time::Sleep;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        let _context = self.handle.enter();
        tokio::time::sleep_until(deadline.into())
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that a paused test clock drives the machine too.
        tokio::time::Instant::now().into_std()
    }
}

/// Starts `machine` on the current tokio runtime; see [`Driver::start`].
pub fn start<M, F>(machine: M, config: ServerConfig, on_event: F) -> Driver<M, TokioRuntime>
where
    M: Machine,
    F: FnMut(&mut M, M::Event, Instant) + Send + 'static,
{
    Driver::start(machine, TokioRuntime::current(), config, on_event)
}

/// Binds `addr` and [`serve`]s it.
pub async fn listen<M: Machine>(
    addr: impl ToSocketAddrs,
    driver: Driver<M, TokioRuntime>,
) -> io::Result<()> {
    serve(TcpListener::bind(addr).await?, driver).await
}

/// Accepts connections on `listener`, one task each (on the driver's runtime), until the driver's
/// [`shutdown`](Driver::shutdown) begins (the connections already accepted are finished by
/// the driver; `shutdown` completes when they are).
pub async fn serve<M: Machine>(
    listener: TcpListener,
    driver: Driver<M, TokioRuntime>,
) -> io::Result<()> {
    let listener = &listener;
    driver
        .serve_accepted(|| async move {
            let (stream, peer) = listener.accept().await?;
            // Engine.IO packets are small and latency-bound: no Nagle delay.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            Ok((stream.compat(), peer))
        })
        .await
}

/// The test client over real TCP connections: `volley::testing::TestClient` against a server
/// that listens (Midway's `createSocketIOClient({ port, path, namespace })`).
///
/// ```no_run
/// use volley::testing::{ConnectOptions, TestClient, TransportKind};
/// use volley_tokio::{TokioRuntime, testing::TcpConnector};
///
/// # async fn run() -> Result<(), volley::ConnectError> {
/// let options = ConnectOptions::new().transport(TransportKind::Polling);
/// let mut client = TestClient::connect_over(
///     TcpConnector::new("127.0.0.1:3000".parse().unwrap()),
///     &TokioRuntime::current(),
///     "/chat",
///     options,
/// )
/// .await?;
/// let sum: i64 = client.send_with_ack("sum", &(1, 2)).await.unwrap();
/// # Ok(()) }
/// ```
pub mod testing {
    use std::net::SocketAddr;
    use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
    use volley::handler::BoxFuture;
    use volley::testing::Connector;

    /// Opens TCP connections to `addr`.
    #[derive(Debug, Clone, Copy)]
    pub struct TcpConnector {
        addr: SocketAddr,
    }

    impl TcpConnector {
        /// Connections to `addr`.
        pub fn new(addr: SocketAddr) -> Self {
            TcpConnector { addr }
        }
    }

    impl Connector for TcpConnector {
        type Stream = Compat<tokio::net::TcpStream>;
        fn connect(&self) -> BoxFuture<std::io::Result<Self::Stream>> {
            let addr = self.addr;
            Box::pin(async move {
                let stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(stream.compat())
            })
        }
    }
}
