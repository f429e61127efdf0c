//! The server handle users build and register on.

use crate::adapter::{Adapter, Inbox, LocalAdapter};
use crate::driver::{Driver, ServerConfig};
use crate::extensions::Extensions;
use crate::handler::BoxFuture;
use crate::middleware::{ConnectCtx, ConnectError, IncomingEvent, Next, PacketFlow};
use crate::namespace::{Namespace, ServerSideEmitError};
use crate::node::{Cluster, Ctl, Node, SioServer, Spawner};
use crate::operators::{BroadcastOperator, RemoteSocket};
use crate::payload::{EncodeError, Payload};
use crate::registry::{NsHandlers, Registry};
use crate::runtime::Runtime;
use crate::socket::Socket;
use futures::StreamExt;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use volley_core::NodeId;
use volley_core::engine::{Engine, OverflowPolicy, Transports};
use volley_core::rng::{ChaCha20Rng, IdGenerator, RandomIds};
use volley_core::socketio::{
    Config as SioConfig, MembershipChange, Parser, Recovery, Room, Traffic,
};

/// Something the server contained rather than let it take the process or a socket down
/// silently; [`Io::on_error`] hooks see each one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerError {
    /// Application code panicked. The panic was caught, logged at error level, and the
    /// socket it ran for (if it had one yet) disconnected from its namespace.
    Panic(HandlerPanic),
    /// A packet (an emit, a broadcast's copy, or an acknowledgement) could not be queued for
    /// a socket: its session's outgoing queue held `max_buffered_packets` packets or
    /// `max_buffered_bytes` bytes. Under `OverflowPolicy::Reject` the socket stays and the
    /// packet is not sent; under `OverflowPolicy::Close` its session is closed as well (its
    /// `disconnect` follows). An `emit_with_ack` that is refused fails its own future
    /// instead (`AckError::NotSent`).
    Overflow(Overflow),
}

/// A packet refused for a socket whose outgoing queue was full.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overflow {
    /// The socket.
    pub socket: crate::SocketId,
    /// Its namespace.
    pub namespace: String,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a packet for socket {} in namespace {} was refused: its outgoing queue is full",
            self.socket, self.namespace
        )
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Panic(p) => std::fmt::Display::fmt(p, f),
            ServerError::Overflow(o) => std::fmt::Display::fmt(o, f),
        }
    }
}

impl std::error::Error for ServerError {}

/// Where a panic was caught, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerPanic {
    /// The socket the code ran for; `None` for connection middleware that panicked before
    /// the socket was accepted (the client then gets a CONNECT_ERROR instead), for
    /// handlers of server-side events, and for room membership listeners.
    pub socket: Option<crate::SocketId>,
    /// The namespace.
    pub namespace: String,
    /// The event being handled: its name as received, or `connection`, `disconnecting`,
    /// `disconnect` for those handlers (and connection middleware), `join-room` or
    /// `leave-room` for a room membership listener.
    pub event: String,
    /// What kind of code panicked.
    pub place: PanicPlace,
    /// The panic's message (its `&str` or `String` payload; `Box<dyn Any>` otherwise).
    pub message: String,
}

impl std::fmt::Display for HandlerPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} panicked on event {:?} in namespace {}",
            self.place.as_str(),
            self.event,
            self.namespace
        )?;
        if let Some(socket) = self.socket {
            write!(f, " (socket {socket})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The kinds of application code a panic is caught in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PanicPlace {
    /// Connection middleware (`use_connect`).
    ConnectMiddleware,
    /// A `connection` handler.
    Connection,
    /// Packet middleware (`use_packet`, a route's own), or an `error` handler it triggered.
    PacketMiddleware,
    /// An `on_any` handler.
    Any,
    /// An event handler (and the acknowledgement it sends, or awaits).
    Handler,
    /// An `error` handler.
    Error,
    /// An `on_any_outgoing` hook.
    Outgoing,
    /// A `disconnecting` handler.
    Disconnecting,
    /// A `disconnect` handler.
    Disconnect,
    /// A handler of events other nodes emit (`on_server_event`); it has no socket.
    ServerEvent,
    /// An `on_new_namespace` hook; it has no socket.
    NewNamespace,
    /// An `on_room_membership` listener.
    RoomMembership,
}

impl PanicPlace {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PanicPlace::ConnectMiddleware => "connection middleware",
            PanicPlace::Connection => "connection handler",
            PanicPlace::PacketMiddleware => "packet middleware",
            PanicPlace::Any => "on_any handler",
            PanicPlace::Handler => "event handler",
            PanicPlace::Error => "error handler",
            PanicPlace::Outgoing => "on_any_outgoing hook",
            PanicPlace::Disconnecting => "disconnecting handler",
            PanicPlace::Disconnect => "disconnect handler",
            PanicPlace::ServerEvent => "server-side event handler",
            PanicPlace::NewNamespace => "new_namespace hook",
            PanicPlace::RoomMembership => "room membership listener",
        }
    }
}

/// How long a request to the other nodes of a cluster waits by default (the reference
/// adapters' `requestsTimeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for a server; finish with [`Builder::build`] on a runtime.
pub struct Builder {
    sio: SioConfig,
    server: ServerConfig,
    seed: Option<[u8; 32]>,
    ids: Option<Box<dyn IdGenerator>>,
    state: Extensions,
    adapter: Arc<dyn Adapter>,
    request_timeout: Duration,
    recovery: Option<Recovery>,
    inline_handlers: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("sio", &self.sio)
            .field("server", &self.server)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            sio: SioConfig::default(),
            server: ServerConfig::new(),
            seed: None,
            ids: None,
            state: Extensions::new(),
            adapter: Arc::new(LocalAdapter),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            recovery: None,
            inline_handlers: true,
        }
    }
}

impl Builder {
    /// The reference server's defaults (`/socket.io/`, 25 s ping interval, 20 s timeout,
    /// 1 MB payloads, 45 s connect timeout).
    pub fn new() -> Self {
        Self::default()
    }

    /// Time between server pings.
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.sio.engine.ping_interval = d;
        self
    }

    /// How long a pong may take.
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.sio.engine.ping_timeout = d;
        self
    }

    /// How long an upgrade may take.
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.sio.engine.upgrade_timeout = d;
        self
    }

    /// How long a server-initiated close of a polling session waits for a poll to carry the
    /// close packet (the engine's `closeTimeout`).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.sio.engine.close_timeout = d;
        self
    }

    /// Most packets in one long-polling response; the rest wait for the next poll.
    pub fn max_packets_per_poll(mut self, n: usize) -> Self {
        self.sio.engine.max_packets_per_poll = n;
        self
    }

    /// The largest message or polling body (`maxHttpBufferSize`).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.sio.engine.max_payload = bytes;
        self
    }

    /// Which transports are accepted.
    pub fn transports(mut self, polling: bool, websocket: bool) -> Self {
        self.sio.engine.transports = Transports { polling, websocket };
        self
    }

    /// Whether polling clients may upgrade to WebSocket.
    pub fn allow_upgrades(mut self, allow: bool) -> Self {
        self.sio.engine.allow_upgrades = allow;
        self
    }

    /// Whether Socket.IO v2 clients (Engine.IO v3) are accepted.
    pub fn allow_eio3(mut self, allow: bool) -> Self {
        self.sio.engine.allow_eio3 = allow;
        self
    }

    /// The request path (default `/socket.io/`).
    pub fn path(mut self, path: &str) -> Self {
        let mut p = path.trim_end_matches('/').to_owned();
        p.push('/');
        self.sio.engine.path = p;
        self
    }

    /// How long a connection may take to join a namespace.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.sio.connect_timeout = d;
        self
    }

    /// Most packets queued for a client that does not read (default 4096), and what
    /// happens beyond (default `OverflowPolicy::Close`). The same bound (and
    /// [`max_buffered_bytes`](Self::max_buffered_bytes)) applies to the packets waiting in
    /// the mailbox of a session run on its WebSocket's task while that task is busy.
    pub fn max_buffered_packets(mut self, n: usize, policy: OverflowPolicy) -> Self {
        self.sio.engine.max_buffered_packets = n;
        self.sio.engine.overflow = policy;
        self
    }

    /// Most message bytes queued for a client that does not read (default 1 MiB); the
    /// policy given to [`max_buffered_packets`](Self::max_buffered_packets) applies to this
    /// bound too. Sends are refused once the queue holds the budget; the message that crosses
    /// it is accepted whatever its size. A WebSocket whose unwritten output is backed up stops being read, so TCP
    /// pushes back on a client that keeps sending.
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.sio.engine.max_buffered_bytes = bytes;
        self
    }

    /// Sets a cookie carrying the session id on the handshake (the reference's `cookie`
    /// option), for load balancers that pin clients by cookie.
    pub fn cookie(mut self, cookie: volley_core::engine::Cookie) -> Self {
        self.sio.engine.cookie = Some(cookie);
        self
    }

    /// Most binary attachments in one packet.
    pub fn max_attachments(mut self, n: usize) -> Self {
        self.sio.max_attachments = n;
        self
    }

    /// Most namespaces one connection may join (default 64): a CONNECT beyond it is refused
    /// with CONNECT_ERROR `"Too many namespaces"`, and the connection goes on.
    pub fn max_namespaces(mut self, n: usize) -> Self {
        self.sio.max_namespaces = n;
        self
    }

    /// How packets are encoded: [`Parser::Default`] (text) or [`Parser::MsgPack`], for clients
    /// built with `socket.io-msgpack-parser`. Every client of the server must use the same one,
    /// as with the reference server's `parser` option.
    pub fn parser(mut self, parser: Parser) -> Self {
        self.sio.parser = parser;
        self
    }

    /// A custom session id generator. With an adapter that forwards requests to the owner
    /// of their session ([`Adapter::relay`]), each id is prefixed with the node's id and a
    /// `.`, and cut to 40 characters in all.
    pub fn id_generator(mut self, ids: impl IdGenerator + 'static) -> Self {
        self.ids = Some(Box::new(ids));
        self
    }

    /// A fixed seed for ids (tests); by default the operating system's entropy. The node's
    /// id in a cluster derives from it too, so the servers of one cluster need different
    /// seeds.
    pub fn seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Server-wide state for the [`State`](crate::extract::State) extractor.
    pub fn state<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Transport-level options (timeouts, connection cap, fallback handler).
    pub fn server_config(mut self, config: ServerConfig) -> Self {
        self.server = config;
        self
    }

    /// HTTP compression of long-polling answers of at least `threshold` bytes (gzip or
    /// deflate by `Accept-Encoding`), `None` to turn it off; the same as
    /// [`ServerConfig::http_compression`]. Default: on, 1024 bytes, as the reference's
    /// `httpCompression`. WebSocket messages are never compressed (no permessage-deflate).
    pub fn http_compression(mut self, threshold: Option<usize>) -> Self {
        self.server = self.server.http_compression(threshold);
        self
    }

    /// How this server reaches the other nodes of a cluster (default: [`LocalAdapter`], a
    /// single node). Broadcasts, room changes, disconnects, `fetch_sockets`, acknowledged
    /// broadcasts, server-side emits and `all_rooms` then act on every node unless
    /// restricted with `local()`.
    pub fn adapter(mut self, adapter: impl Adapter) -> Self {
        self.adapter = Arc::new(adapter);
        self
    }

    /// How long a request to the other nodes (`fetch_sockets`, `all_rooms`, server-side
    /// emits with acknowledgement, and acknowledged broadcasts without a timeout of their
    /// own) waits for their answers before completing with those that came. Default 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Turns on connection state recovery (Socket.IO 4.6): a client that lost its
    /// connection and comes back within `max_disconnection_duration` gets its socket back
    /// (same id, rooms and `data()` as a `serde_json::Value`) and the events it missed;
    /// [`Socket::recovered`] tells. With `skip_middlewares`, such a connect bypasses the
    /// connection middleware. Every event sent without ack and not volatile then carries an
    /// offset as its last argument (the reference client remembers the latest and hands it to
    /// event handlers as their last argument, it does not strip it) and is kept in memory for
    /// the window, unless the [adapter](Builder::adapter) keeps offsets and sessions for the
    /// whole cluster ([`Adapter::keeps_sessions`], such as the Redis Streams adapter): then a
    /// client may recover on any node.
    pub fn connection_state_recovery(
        mut self,
        max_disconnection_duration: Duration,
        skip_middlewares: bool,
    ) -> Self {
        self.recovery = Some(Recovery {
            max_disconnection_duration,
            skip_middlewares,
        });
        self
    }

    /// Whether an event handler may start on the task that received its event (default:
    /// `true`): the connection's task for a session opened over WebSocket, the machine's task
    /// for the others.
    ///
    /// When an event arrives for a socket that has no handler running or waiting, that task
    /// polls the event's handler future once itself (packet middleware, `on_any` hooks,
    /// extractors and the handler, in the usual order), and applies what it emitted or
    /// returned as the acknowledgement in the same step; only a future that has to wait
    /// moves to the socket's task, where it carries on as before. An echo or an ack then
    /// costs no task switch. The price: until its first pending `.await`, a handler runs on
    /// a task other sockets go through too (every socket on the machine's task; the
    /// connection's own sockets on its task), so a handler that blocks (a synchronous lock,
    /// file or network call, `block_on`) or computes for long delays them, not just its
    /// socket. Move such work to `spawn_blocking` or a task of its
    /// own, or turn this off: every handler then starts on its socket's task. The order of
    /// a socket's handlers is the same either way. A handler that panics while the machine
    /// polls it is caught there: its socket's handlers stop, as when a socket's task panics
    /// on tokio, and the server carries on.
    pub fn inline_handlers(mut self, inline: bool) -> Self {
        self.inline_handlers = inline;
        self
    }

    /// The Socket.IO options.
    pub fn sio_config(&self) -> &SioConfig {
        &self.sio
    }

    /// Starts the machine on `runtime`. Serve connections with the runtime crate's `listen`
    /// or [`Io::driver`].
    pub fn build<R: Runtime>(self, runtime: R) -> Io<R> {
        crate::metrics::server_built();
        let seed = self.seed.unwrap_or_else(os_seed);
        let node_id = node_id(seed);
        // With a relay, every session id names this node, so that any node can send a
        // request for it here.
        let relay = self.adapter.relay();
        let ids = match (self.ids, &relay) {
            (Some(ids), None) => Some(ids),
            (ids, Some(_)) => {
                let inner = ids.unwrap_or_else(|| Box::new(RandomIds::from_seed(seed)));
                Some(crate::driver::tagged_ids(node_id, inner))
            }
            (None, None) => None,
        };
        let engine = match ids {
            Some(ids) => Engine::with_id_generator(self.sio.engine.clone(), ids),
            None => Engine::new(self.sio.engine.clone(), seed),
        };
        // A forwarded poll is parked at most a ping interval on its owner.
        let answer_timeout = self.sio.engine.ping_interval + self.sio.engine.ping_timeout;
        let mut socket_seed = seed;
        socket_seed.reverse();
        socket_seed[0] ^= 0x5a;
        let path: Arc<str> = Arc::from(self.sio.engine.path.as_str());
        let shared = crate::node::SharedLock::new(volley_core::socketio::Shared::new(socket_seed));
        let mut sio = SioServer::with_shared(self.sio, engine, shared);
        sio.set_connection_state_recovery(self.recovery);
        // An adapter with a shared store keeps offsets and sessions for the whole cluster.
        sio.set_shared_recovery(self.adapter.keeps_sessions());
        // An adapter that subscribes per room follows this node's rooms.
        sio.track_room_changes(self.adapter.tracks_rooms());
        let registry = Arc::new(Registry::default());
        // The main namespace exists before any `new_namespace` hook can be registered.
        registry.first_seen("/");
        let spawner_rt = runtime.clone();
        // Sockets' handler tasks end with the server: `Io::close` drops what they still run.
        let tasks = Arc::new(crate::driver::Halt::new());
        let halted = tasks.clone();
        let spawn: Spawner = Arc::new(move |f: BoxFuture<()>| {
            let halted = halted.wait();
            spawner_rt.spawn(async move {
                futures::future::select(f, std::pin::pin!(halted)).await;
            })
        });
        let cluster = Cluster {
            adapter: self.adapter.clone(),
            node_id,
            request_timeout: self.request_timeout,
        };
        let mut node = Node::new(sio, registry.clone(), self.state.clone(), spawn, cluster);
        node.set_inline_handlers(self.inline_handlers);
        let driver = Driver::start(
            node,
            runtime.clone(),
            self.server,
            |node: &mut Node, ev, now| node.dispatch(ev, now),
        );
        if let Some(relay) = relay {
            driver.forward_through(relay, node_id, answer_timeout);
            // Any node may be asked to restore a session: with a shared store, the sessions
            // of live sockets are kept there too, so that they survive this node.
            if let (true, Some(recovery)) = (self.adapter.keeps_sessions(), self.recovery) {
                let ttl = recovery.max_disconnection_duration;
                let _ = driver
                    .handle()
                    .cast(move |node: &mut Node, _| node.keep_live_sessions(ttl));
                let handle = driver.handle();
                let every = ttl / 2;
                let timer = runtime.clone();
                driver.spawn_until_halted(async move {
                    loop {
                        timer.sleep(every).await;
                        let refreshed =
                            handle.cast(|node: &mut Node, _| node.refresh_live_sessions());
                        if refreshed.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        let ctl = Arc::new(Ctl {
            handle: driver.handle(),
            registry,
            state: self.state,
            adapter: self.adapter.clone(),
            node_id,
            errors: Default::default(),
            own_outgoing: Default::default(),
        });
        let for_node = ctl.clone();
        // The first command the machine runs: no connection can be served before `build`
        // returns, so every event sees it.
        let _ = driver
            .handle()
            .cast(move |node: &mut Node, _| node.set_ctl(for_node));
        // What the other nodes send reaches the machine as commands, in arrival order.
        let (inbox, mut messages) = Inbox::new();
        let handle = driver.handle();
        // Ended by `Io::close` even while the adapter keeps its inbox (an in-memory cluster
        // outlives its servers).
        driver.spawn_until_halted(async move {
            while let Some((from, message, offset)) = messages.next().await {
                let delivered = handle
                    .cast(move |node: &mut Node, now| node.on_cluster(from, message, offset, now));
                if delivered.is_err() {
                    break;
                }
            }
        });
        self.adapter.start(node_id, inbox);
        Io {
            driver,
            ctl,
            path,
            tasks,
        }
    }
}

/// A node id drawn from `seed` (apart from the other ids drawn from it): 16 URL-safe
/// characters.
fn node_id(seed: [u8; 32]) -> NodeId {
    let mut node_seed = seed;
    for b in &mut node_seed {
        *b ^= 0xc3;
    }
    node_seed[31] = node_seed[31].wrapping_add(1);
    let mut bytes = [0u8; 12];
    ChaCha20Rng::from_seed(node_seed).fill(&mut bytes);
    NodeId::new(&volley_core::base64::encode_url(&bytes))
        .expect("16 URL-safe base64 characters are a node id")
}

/// 32 bytes from the operating system's entropy source.
fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        // No entropy source at all: fall back to the hasher's per-process random keys and the
        // clock, which still differ between processes.
        use std::hash::{BuildHasher, Hasher};
        for (i, chunk) in seed.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    seed
}

/// A running server: register namespaces and handlers, broadcast, shut down. Cheap to clone.
pub struct Io<R: Runtime> {
    driver: Driver<Node, R>,
    ctl: Arc<Ctl>,
    path: Arc<str>,
    /// Stops the sockets' handler tasks at close.
    tasks: Arc<crate::driver::Halt>,
}

impl<R: Runtime> Clone for Io<R> {
    fn clone(&self) -> Self {
        Io {
            driver: self.driver.clone(),
            ctl: self.ctl.clone(),
            path: self.path.clone(),
            tasks: self.tasks.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Io<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("driver", &self.driver).finish()
    }
}

impl<R: Runtime> Io<R> {
    /// The driver, to serve connections on.
    pub fn driver(&self) -> &Driver<Node, R> {
        &self.driver
    }

    /// The request path the server answers (`/socket.io/` by default).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The namespace `name` (declared on first use; `/` always exists).
    ///
    /// A name that a [dynamic namespace](Io::dynamic_ns) takes, and that was not declared
    /// before it, is that family's child: what is registered on it is registered on the
    /// whole family, and it exists while the family's matcher creates it.
    pub fn ns(&self, name: &str) -> Namespace {
        if let Some(handlers) = self.ctl.registry.dynamic_child(name) {
            return Namespace {
                ctl: self.ctl.clone(),
                name: Some(Arc::from(name)),
                handlers,
            };
        }
        let handlers = self.ctl.registry.namespace(name);
        let owned = name.to_owned();
        let _ = self
            .ctl
            .cast(move |node: &mut Node, _| node.sio.add_namespace(&owned));
        let namespace = Namespace {
            ctl: self.ctl.clone(),
            name: Some(Arc::from(name)),
            handlers,
        };
        if self.ctl.registry.first_seen(name) {
            crate::node::announce_namespace(&self.ctl, namespace.clone());
        }
        namespace
    }

    /// Runs `hook` for every namespace created from now on (the reference's
    /// `io.on("new_namespace")`): one declared with [`Io::ns`], or a dynamic namespace's
    /// child created by its first connect (before that connect's middleware runs, so the
    /// hook can add middleware and handlers to it; what it registers on a child is
    /// registered on the whole family, so once per child created). `/` exists from the start and is not announced. A
    /// dynamic child removed once empty is announced again when created again. The hook
    /// runs synchronously, where the namespace is created (the caller of `ns`, or the
    /// machine's task); a panic in it is contained and reported to the `on_error` hooks.
    pub fn on_new_namespace<F>(&self, hook: F) -> &Self
    where
        F: Fn(Namespace) + Send + Sync + 'static,
    {
        NsHandlers::push(&self.ctl.registry.new_namespace, Arc::new(hook));
        self
    }

    /// Calls `listener` with the namespace and the change every time a socket of this node
    /// joins or leaves a room, in the order they happen: what the reference's in-memory
    /// adapter announces as `join-room` and `leave-room` (the Admin UI's `room_joined` and
    /// `room_left` come from here). A socket joins its own room (named by its id) first, when
    /// it connects, and leaves every room when it disconnects, its own room last; those are
    /// reported too; joins
    /// and leaves that change nothing (a room joined twice) are not. Only changes after the
    /// first listener is registered are reported.
    ///
    /// Listeners run on the machine's task, right after the step that made the change: they
    /// must be quick and must not block (emit, cast, or hand the change to a channel). A
    /// panic in one is contained and reported to the `on_error` hooks.
    pub fn on_room_membership<F>(&self, listener: F) -> &Self
    where
        F: Fn(&str, &MembershipChange) + Send + Sync + 'static,
    {
        NsHandlers::push(&self.ctl.registry.membership, Arc::new(listener));
        let _ = self
            .ctl
            .cast(|node: &mut Node, _| node.sio.track_memberships(true));
        self
    }

    /// Same as [`Io::ns`].
    pub fn of(&self, name: &str) -> Namespace {
        self.ns(name)
    }

    /// A family of namespaces created on their first connect: every name `matcher` takes
    /// (a pattern, a prefix, a lookup). With `cleanup`, an emptied child is removed again.
    pub fn dynamic_ns<F>(&self, matcher: F, cleanup: bool) -> Namespace
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        let matcher = Arc::new(matcher);
        let handlers = self.ctl.registry.dynamic(matcher.clone());
        let _ = self.ctl.cast(move |node: &mut Node, _| {
            node.sio
                .add_dynamic_namespace(move |name| matcher(name), cleanup)
        });
        Namespace {
            ctl: self.ctl.clone(),
            name: None,
            handlers,
        }
    }

    /// Connection middleware for every namespace (runs before the namespace's own).
    pub fn use_connect<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(ConnectCtx, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        NsHandlers::push(
            &self.ctl.registry.connect,
            Arc::new(move |ctx, next| Box::pin(mw(ctx, next))),
        );
        self
    }

    /// Runs for every error the server contains (today: a panic in a handler, middleware or
    /// hook), on the machine's task, after it was logged at error level with `tracing` and
    /// before the socket concerned is disconnected (the client sees a server-side namespace
    /// disconnect, `disconnect` handlers run with `server namespace disconnect`). It must not
    /// block: send the report elsewhere (a channel, a task) for anything slow. A panic in the
    /// hook itself is caught and logged.
    pub fn on_error<F>(&self, hook: F) -> &Self
    where
        F: Fn(&ServerError) + Send + Sync + 'static,
    {
        self.ctl
            .errors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(hook));
        self
    }

    /// Packet middleware for every namespace (runs before the namespace's own).
    pub fn use_packet<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(Socket, IncomingEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PacketFlow> + Send + 'static,
    {
        NsHandlers::push(
            &self.ctl.registry.packet,
            Arc::new(move |s, e| Box::pin(mw(s, e))),
        );
        self
    }

    fn main(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ctl.clone(), Arc::from("/"))
    }

    /// Sockets of `/` in `room`.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.main().to(room)
    }

    /// Same as [`Io::to`].
    pub fn in_(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.to(room)
    }

    /// Sockets of `/` but those in `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.main().except(room)
    }

    /// Only this node's sockets of `/`.
    pub fn local(&self) -> BroadcastOperator {
        self.main().local()
    }

    /// Skip sockets of `/` that cannot take the packet now.
    pub fn volatile(&self) -> BroadcastOperator {
        self.main().volatile()
    }

    /// The compression hint.
    pub fn compress(&self, compress: bool) -> BroadcastOperator {
        self.main().compress(compress)
    }

    /// A time limit for acknowledgements, on `/`.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.main().timeout(timeout)
    }

    /// Every socket of `/`.
    pub fn all(&self) -> BroadcastOperator {
        self.main()
    }

    /// Sends `event` to every socket of `/`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.main().emit(event, data)
    }

    /// The sockets of `/`, with their rooms at the time of the call.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        self.main().fetch_sockets().await
    }

    /// Puts every socket of `/` in `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.main().sockets_join(rooms)
    }

    /// Takes every socket of `/` out of `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.main().sockets_leave(rooms)
    }

    /// Disconnects every socket of `/` (closing their connections with `close`).
    pub fn disconnect_sockets(&self, close: bool) {
        self.main().disconnect_sockets(close)
    }

    /// Emits `event` to the server-side handlers of the other nodes of the cluster, on `/`
    /// (see [`Namespace::server_side_emit`]).
    pub fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EncodeError> {
        self.ns_main().server_side_emit(event, data)
    }

    /// Emits `event` to the server-side handlers of the other nodes and waits for their
    /// answers, on `/` (see [`Namespace::server_side_emit_with_ack`]).
    pub fn server_side_emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<Vec<Payload>, ServerSideEmitError>> + Send + use<T, R> {
        self.ns_main().server_side_emit_with_ack(event, data)
    }

    /// The rooms of `/` on every node of the cluster (see [`Namespace::all_rooms`]).
    pub async fn all_rooms(&self) -> Vec<Room> {
        self.ns_main().all_rooms().await
    }

    /// How many nodes the cluster has now, this one included (the adapter's count; 1
    /// without a cluster adapter).
    pub fn server_count(&self) -> usize {
        self.ctl.adapter.server_count()
    }

    /// This server's id in its cluster.
    pub fn node_id(&self) -> NodeId {
        self.ctl.node_id
    }

    /// Requests to the other nodes still waiting for answers (see
    /// [`Node::pending_request_count`]): zero once each has completed or timed out.
    pub async fn pending_request_count(&self) -> usize {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.pending_request_count())
            .await
            .unwrap_or(0)
    }

    fn ns_main(&self) -> Namespace {
        self.ns("/")
    }

    /// Connected sockets, all namespaces.
    pub async fn socket_count(&self) -> usize {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.sio.socket_count())
            .await
            .unwrap_or(0)
    }

    /// Open Engine.IO connections.
    pub async fn client_count(&self) -> usize {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.client_count())
            .await
            .unwrap_or(0)
    }

    /// Of the open Engine.IO connections, those on long-polling now (an upgrade still being
    /// probed counts as polling). Walks every connection: for occasional reports.
    pub async fn polling_client_count(&self) -> usize {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.polling_client_count())
            .await
            .unwrap_or(0)
    }

    /// Engine.IO sessions opened and closed, packets and bytes in and out on this node since
    /// it started (see [`Traffic`]): running totals, whose differences over time give rates
    /// (the Admin UI's charts). Counted by the machine whether or not anyone asks, with a
    /// few integer additions per message; zero once the server has stopped.
    pub async fn traffic(&self) -> Traffic {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.traffic())
            .await
            .unwrap_or_default()
    }

    /// Acknowledgements still awaited, server to client (see [`Node::pending_ack_count`]):
    /// zero once every client has gone.
    pub async fn pending_ack_count(&self) -> usize {
        self.ctl
            .handle
            .call(|node: &mut Node, _| node.pending_ack_count())
            .await
            .unwrap_or(0)
    }

    /// Server-wide state.
    pub fn state(&self) -> &Extensions {
        &self.ctl.state
    }

    /// Graceful shutdown: every socket leaves with "server shutting down", then the driver
    /// stops taking connections and finishes the open ones; then the adapter's tasks, the
    /// sockets' handler tasks (dropping handlers still running) and the machine's task end.
    /// No task the server started is left, and the `Io` (and its clones) can do nothing
    /// more.
    pub async fn close(&self) {
        let _ = self
            .ctl
            .handle
            .call(|node: &mut Node, now| node.close_all(now))
            .await;
        self.driver.shutdown().await;
        // Nothing is left to serve: the adapter's tasks, the sockets' handler tasks (with
        // any handler still running) and the machine's task end.
        self.ctl.adapter.close();
        self.tasks.fire();
        self.driver.halt();
    }
}
