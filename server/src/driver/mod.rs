//! The IO driver: serves byte streams for a sans-IO [`Machine`], on any [`Runtime`].
//!
//! # Shape
//!
//! ```text
//!  connection tasks ──Input──▶ ┌──────────────┐ ──outputs──▶ that connection's outbox
//!  (one per stream)            │ machine task │
//!  Handle::call/cast ─command─▶└──────────────┘ ──events──▶ on_event(&mut machine, event, now)
//! ```
//!
//! - **One task owns the machine** ([`Driver::start`] spawns it). It applies inputs in arrival
//!   order, then drains in the core's order: every event (handed to the application callback,
//!   whose reactions are commands on the same machine), then every output, each routed to its
//!   connection's own bounded outbox, then it sleeps until the next input or the machine's
//!   next deadline. Each drain loop has a budget, so a burst yields to other tasks. No lock
//!   is taken on the message path, and the machine need not be `Sync`.
//! - **One task per connection** ([`Driver::serve_connection`]), generic over any
//!   `futures::io` stream: it parses HTTP/1.1 with `volley_core::http`, answers requests the
//!   machine does not own with the fallback, and otherwise performs what the machine says for
//!   it: write a response, read a body (at most the machine's limit), or, after a `101`,
//!   carry WebSocket frames (async-tungstenite) both ways.
//! - **Hosts that speak HTTP themselves** (hyper, axum) hand over one parsed request at a
//!   time instead ([`Driver::serve_request`]): the same screening and exchange with the
//!   machine, the answer returned as a value, and after a `101` the same WebSocket half run
//!   on the stream the host upgraded ([`Upgrade::run`]).
//! - **[`Handle`]** runs commands on the machine from any other task.
//!
//! # Guarantees
//!
//! - Every connection that ever reached the machine reports its end
//!   (`handle_conn_closed`), so a parked poll whose client vanished closes its session.
//! - A connection that stops taking its outputs (its outbox fills) is dropped and reported as
//!   failed: one stuck peer never holds the machine's task.
//! - Head, idle, body and write timeouts bound what a peer can hold by going quiet
//!   ([`ServerConfig`]); malformed heads get the codec's error response and a close.
//! - Silent sockets cannot lock clients out: at the connection cap, the oldest connection
//!   that has not completed a request head is closed to make room for a new one (only when
//!   every connection has sent one is a new one refused `503`), and an optional per-address
//!   limit (the TCP peer, or the `X-Forwarded-For` of a trusted proxy) refuses `503` beyond
//!   it.
//! - IO errors never panic; they end the connection and are logged with `tracing` at debug
//!   level, inside a `conn` span per connection.
//!
//! # Graceful shutdown
//!
//! [`Driver::shutdown`] stops admitting connections, closes idle keep-alive ones (and each
//! busy HTTP one after its current response), and completes when every connection has
//! ended. It does not close WebSockets or sessions: that is the protocol layer's decision (a
//! Socket.IO "server shutting down" disconnect), taken through the [`Handle`] before or while
//! awaiting shutdown. Accept loops stop on [`Driver::stopping`].

mod actor;
mod compress;
mod config;
mod conn;
mod cors;
mod forward;
mod inbox;
mod io;
mod machine;
pub(crate) mod metrics;
pub(crate) mod outbox;
mod request;
mod shutdown;
mod slot;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod test_support;
mod websocket;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;
use volley_core::ConnId;

pub use actor::{Handle, Stopped};
pub use compress::DEFAULT_COMPRESSION_THRESHOLD;
pub(crate) use compress::UNCOMPRESSED;
pub use config::{
    AllowRequest, ConnectionError, ConnectionErrorHook, Fallback, HeadersHook, ServerConfig,
};
pub use cors::{Cors, OriginFn, Origins};
pub use machine::{ConnOutbox, Machine, OwnedSession, Router};
pub use request::{Served, Upgrade};

use actor::Actor;
pub(crate) use actor::Halt;
use inbox::InputSender;
use shutdown::{Refused, Tracker};

use crate::runtime::Runtime;

/// What every connection task shares.
pub(crate) struct Env<R> {
    runtime: R,
    config: ServerConfig,
    router: Router,
    ws_config: WebSocketConfig,
    /// Unwritten WebSocket output above which a connection stops being read.
    output_budget: usize,
    inputs: InputSender,
    next_conn: AtomicU64,
    tracker: Tracker,
    halt: Halt,
    /// The largest request body the machine takes (its largest message).
    max_body: usize,
    /// Requests for sessions of other nodes go to their owner through it, once set
    /// ([`Driver::forward_through`]).
    forward: std::sync::OnceLock<Arc<forward::Forwarder>>,
    /// The long-polling sessions run outside the machine's task, by id.
    slots: Arc<slot::Slots>,
}

/// A running machine and what its connections need: cheap to clone, one per accept loop.
///
/// Dropping every `Driver` and [`Handle`] (and letting every connection end) stops the
/// machine's task.
pub struct Driver<M, R> {
    env: Arc<Env<R>>,
    handle: Handle<M>,
}

impl<M, R> Clone for Driver<M, R> {
    fn clone(&self) -> Self {
        Driver {
            env: self.env.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<M, R> fmt::Debug for Driver<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("connections", &self.env.tracker.active())
            .field("config", &self.env.config)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, R: Runtime> Driver<M, R> {
    /// Spawns the machine's task on `runtime` and returns the driver.
    ///
    /// `on_event` sees every event of the machine, on the machine's task, with the machine
    /// itself so it can react with commands at once (an echo is `engine.send` in it). It must
    /// not block; work that waits belongs in a task of its own, which talks back through the
    /// [`Handle`].
    pub fn start<F>(machine: M, runtime: R, config: ServerConfig, on_event: F) -> Self
    where
        F: FnMut(&mut M, M::Event, Instant) + Send + 'static,
    {
        let router = machine.router();
        let ws_config = websocket::config(machine.max_message_size());
        let output_budget = machine.max_buffered_bytes();
        let max_body = machine.max_message_size();
        let halt = Halt::new();
        let clock = runtime.clone();
        let slots = Arc::new(slot::Slots::new(machine.slot_config(), move || clock.now()));
        let (actor, inputs, handle) =
            Actor::new(machine, runtime.clone(), on_event, &halt, slots.clone());
        runtime.spawn(
            actor
                .run()
                .instrument(tracing::debug_span!("volley::driver")),
        );
        let tracker = Tracker::new(config.max_connections, config.max_connections_per_address);
        let env = Env {
            runtime,
            config,
            router,
            ws_config,
            output_budget,
            inputs,
            next_conn: AtomicU64::new(1),
            tracker,
            halt,
            max_body,
            forward: std::sync::OnceLock::new(),
            slots,
        };
        Driver {
            env: Arc::new(env),
            handle,
        }
    }

    /// Serves one connection until it ends. Spawn one task per accepted stream running this;
    /// `peer` labels the connection's log span, is recorded on its requests, and is the
    /// address the per-address limit counts it against (see [`ServerConfig`]).
    ///
    /// At the connection cap, the oldest connection that has not completed a request head is
    /// closed to make room; with none, or beyond the per-address limit, the stream is
    /// answered `503` and closed. After [`shutdown`](Driver::shutdown) began it is closed at
    /// once.
    pub async fn serve_connection<S>(&self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admitted = self.env.tracker.admit_fresh(self.env.config.peer_key(peer));
        self.serve_admitted(stream, peer, admitted, false).await;
    }

    /// Serves an admitted connection; `detach`: see [`conn::run`].
    async fn serve_admitted<S>(
        &self,
        stream: S,
        peer: Option<SocketAddr>,
        admitted: Result<(shutdown::Admission, shutdown::Evicted), Refused>,
        detach: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let env = &*self.env;
        let (admission, evicted) = match admitted {
            Ok(admitted) => admitted,
            Err(Refused::Stopping) => return,
            Err(refused) => {
                crate::metrics::refused(match refused {
                    Refused::PerAddress => "per_address",
                    _ => "connection_cap",
                });
                match refused {
                    Refused::PerAddress => {
                        tracing::debug!(?peer, "connection refused: per-address limit")
                    }
                    _ => tracing::debug!(?peer, "connection refused: at the connection cap"),
                }
                // Boxed: the connection's task is not sized for this path.
                let mut stream = stream;
                Box::pin(async move {
                    let mut out = bytes::BytesMut::new();
                    request::unavailable().write_to(&mut out);
                    let timeout = env.config.write_timeout;
                    let written = io::write_all(&env.runtime, &mut stream, &out, timeout).await;
                    if written.is_ok() {
                        io::linger_close(&env.runtime, &mut stream).await;
                    }
                })
                .await;
                return;
            }
        };
        let conn = ConnId(env.next_conn.fetch_add(1, Ordering::Relaxed));
        let span = tracing::debug_span!("conn", id = conn.0, peer = ?peer, transport = tracing::field::Empty);
        conn::run(&self.env, conn, stream, peer, admission, evicted, detach)
            .instrument(span)
            .await;
    }

    /// A handle for running commands on the machine.
    pub fn handle(&self) -> Handle<M> {
        self.handle.clone()
    }

    /// The runtime the driver runs on.
    pub fn runtime(&self) -> &R {
        &self.env.runtime
    }

    /// Connections being served now.
    pub fn connection_count(&self) -> usize {
        self.env.tracker.active()
    }

    /// Begins a graceful shutdown (see the [module docs](self)); the future completes when
    /// every connection has ended. Calling it again just waits again.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.env.tracker.shutdown()
    }

    /// Completes once shutdown has begun: accept loops select on it to stop accepting.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        self.env.tracker.stopping()
    }

    /// Stops the machine's task for good, whatever handles remain (their commands fail with
    /// [`Stopped`] from then on), and every task spawned through
    /// [`spawn_until_halted`](Driver::spawn_until_halted). Call it after
    /// [`shutdown`](Driver::shutdown) completed: connections still served lose their machine.
    pub fn halt(&self) {
        self.env.halt.fire();
    }

    /// Spawns `fut` on the driver's runtime, ended (dropped) by [`halt`](Driver::halt) if it
    /// has not completed by then.
    pub fn spawn_until_halted(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let halted = self.env.halt.wait();
        self.env.runtime.spawn(async move {
            futures::future::select(std::pin::pin!(fut), std::pin::pin!(halted)).await;
        });
    }

    /// Forwards requests for sessions owned by other nodes through `relay`, and serves the
    /// requests they forward here. `node` is this node's id, which every session id of the
    /// machine must start with (`<node>.`, see [`tagged_ids`]); `answer_timeout` is how long
    /// a forwarded request waits for its owner before it is answered as for an unknown
    /// session (the longest a poll may be parked, plus a margin). Has effect once; call it
    /// before serving connections.
    pub fn forward_through(
        &self,
        relay: Arc<dyn crate::adapter::Relay>,
        node: volley_core::NodeId,
        answer_timeout: std::time::Duration,
    ) {
        let window = self.env.output_budget.max(FORWARD_WINDOW_MIN);
        let fwd = Arc::new(forward::Forwarder::new(
            node,
            relay.clone(),
            window,
            answer_timeout,
        ));
        if self.env.forward.set(fwd.clone()).is_err() {
            return;
        }
        let (inbox, frames) = crate::adapter::RelayInbox::new();
        self.spawn_until_halted(forward::run_inbox(fwd.clone(), self.clone(), frames));
        let runtime = self.env.runtime.clone();
        self.spawn_until_halted(async move {
            loop {
                runtime.sleep(forward::PROBE_INTERVAL).await;
                fwd.probe().await;
            }
        });
        relay.start(node, inbox);
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.env.tracker.is_stopping()
    }

    /// Serves every stream `accept` yields, one task each on the driver's runtime, until
    /// shutdown begins. The accept loop of every runtime crate: an error that concerns one
    /// connection is skipped; any other (out of descriptors or memory) backs off 100 ms
    /// instead of spinning, since it clears as connections end.
    pub async fn serve_accepted<S, A, Fut>(&self, mut accept: A) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        A: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<(S, SocketAddr)>>,
    {
        use futures::future::{Either, select};
        use std::pin::pin;
        let mut stopping = pin!(self.stopping());
        loop {
            let accepted = match select(pin!(accept()), stopping.as_mut()).await {
                Either::Left((accepted, _)) => accepted,
                Either::Right(_) => return Ok(()),
            };
            match accepted {
                Ok((stream, peer)) => {
                    // Admitted here, in accept order, so that "oldest first" at the cap
                    // means the order clients connected in.
                    let peer = Some(peer);
                    let admitted = self.env.tracker.admit_fresh(self.env.config.peer_key(peer));
                    let connection = self.clone();
                    // Its WebSocket half, if it becomes one, goes on in a task of its own,
                    // sized for that half only (an idle WebSocket's memory is mostly its
                    // task).
                    self.env.runtime.spawn(async move {
                        connection
                            .serve_admitted(stream, peer, admitted, true)
                            .await;
                    });
                }
                Err(e) if is_transient(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    self.env
                        .runtime
                        .sleep(std::time::Duration::from_millis(100))
                        .await;
                }
            }
        }
    }
}

/// Session ids that start with `node` and a `.`, drawn from `inner`: what
/// [`Driver::forward_through`] needs of the machine's id generator. An id longer than what is
/// left after the prefix is cut to the longest session id.
pub fn tagged_ids(
    node: volley_core::NodeId,
    inner: Box<dyn volley_core::rng::IdGenerator>,
) -> Box<dyn volley_core::rng::IdGenerator> {
    Box::new(forward::Tagged { node, inner })
}

/// The least a relayed stream may hold unread on a node before it is dropped (the
/// machine's WebSocket output budget, when larger): 1 MiB.
const FORWARD_WINDOW_MIN: usize = 1024 * 1024;

/// Accept errors that concern one connection only (it was reset before it was accepted).
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}
