//! Volley on smol: the [`Runtime`] implementation and an accept loop.
//!
//! Everything else (HTTP, WebSocket, the machine's task) lives in `volley`'s runtime-neutral
//! [`driver`](volley::driver); smol's sockets implement `futures::io` already, so this crate
//! only spawns, sleeps and accepts.
//!
//! ```no_run
//! use volley_core::engine::{Config, Engine, Event};
//! use volley::driver::ServerConfig;
//!
//! smol::block_on(async {
//!     let engine = Engine::new(Config::default(), [7; 32]); // seed from the OS in production
//!     let driver = volley_smol::start(engine, ServerConfig::default(), |engine, event, now| {
//!         if let Event::Message { sid, message } = event {
//!             let _ = engine.send(sid, message, now); // echo
//!         }
//!     });
//!     let server = smol::spawn(volley_smol::listen("127.0.0.1:3000", driver.clone()));
//!     // … later: stop accepting, close idle connections, wait for the rest.
//!     driver.shutdown().await;
//!     server.await
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use smol::net::{AsyncToSocketAddrs, TcpListener};
use smol::{Executor, Timer};
use volley::driver::{Driver, Machine, ServerConfig};
use volley::runtime::Runtime;

/// smol as a [`Runtime`]: tasks go to smol's global executor, or to an executor of yours.
#[derive(Clone, Default)]
pub struct SmolRuntime {
    executor: Option<Arc<Executor<'static>>>,
}

impl SmolRuntime {
    /// Spawns on smol's global executor (`smol::spawn`). That executor runs its tasks on one
    /// thread unless the `SMOL_THREADS` environment variable asks for more: for a server on
    /// several cores, set it, or run an executor of your own on a thread per core
    /// ([`with_executor`](Self::with_executor), as `examples/bench-server.rs` does).
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns on `executor`; something must run it (`executor.run(…)` on some threads).
    pub fn with_executor(executor: Arc<Executor<'static>>) -> Self {
        SmolRuntime {
            executor: Some(executor),
        }
    }
}

impl fmt::Debug for SmolRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolRuntime")
            .field("global", &self.executor.is_none())
            .finish()
    }
}

/// smol's timer as the driver's sleep (smol's resolves to the time it fired).
#[derive(Debug)]
pub struct Sleep(Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for SmolRuntime {
    type Sleep = Sleep;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.executor {
            Some(executor) => executor.spawn(fut).detach(),
            None => smol::spawn(fut).detach(),
        }
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep(Timer::at(deadline))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Starts `machine` on smol's global executor; see [`Driver::start`].
pub fn start<M, F>(machine: M, config: ServerConfig, on_event: F) -> Driver<M, SmolRuntime>
where
    M: Machine,
    F: FnMut(&mut M, M::Event, Instant) + Send + 'static,
{
    Driver::start(machine, SmolRuntime::new(), config, on_event)
}

/// Binds `addr` and [`serve`]s it.
pub async fn listen<M: Machine>(
    addr: impl AsyncToSocketAddrs,
    driver: Driver<M, SmolRuntime>,
) -> io::Result<()> {
    serve(TcpListener::bind(addr).await?, driver).await
}

/// Accepts connections on `listener`, one task each (on the driver's runtime), until the
/// driver's [`shutdown`](Driver::shutdown) begins (the connections already accepted are
/// finished by the driver; `shutdown` completes when they are).
pub async fn serve<M: Machine>(
    listener: TcpListener,
    driver: Driver<M, SmolRuntime>,
) -> io::Result<()> {
    let listener = &listener;
    driver
        .serve_accepted(|| async move {
            let (stream, peer) = listener.accept().await?;
            // Engine.IO packets are small and latency-bound: no Nagle delay.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY not set");
            }
            Ok((stream, peer))
        })
        .await
}

/// The test client over real TCP connections: `volley::testing::TestClient` against a server
/// that listens (Midway's `createSocketIOClient({ port, path, namespace })`).
pub mod testing {
    use std::net::SocketAddr;
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
        type Stream = smol::net::TcpStream;
        fn connect(&self) -> BoxFuture<std::io::Result<Self::Stream>> {
            let addr = self.addr;
            Box::pin(async move {
                let stream = smol::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(stream)
            })
        }
    }
}
