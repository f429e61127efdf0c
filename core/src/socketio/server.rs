//! The Socket.IO server machine: the Engine.IO engine below, namespaces, sockets, rooms and
//! acknowledgements above, composed for one thread. The rules of one session live in
//! [`Peer`]; this composition routes each input and command to its session's peer, and
//! encodes and delivers broadcasts.

use super::client::{Client, ClientTimer};
#[cfg(doc)]
use super::event::ConnectRequest;
use super::event::{AckId, AckToken, ConnectId, DisconnectReason, Event, Handshake};
use super::msgpack::Parser;
pub use super::namespaces::BroadcastOptions;
use super::namespaces::Namespaces;
use super::packet::{Packet, SioProtocol};
use super::peer::{Delivery, EngineLink, Link, Peer, messages, send_event};
use super::recovery::{Recovery, SessionState, Store, StoredMessage, append_offset};
use super::rooms::{MembershipChange, Room, RoomChange};
use super::shared::{Shared, SharedAccess, own_room};
use super::traffic::Traffic;
use crate::engine::{self, ApiMisuse, Body, Engine, Message, Output, WsMessage};
use crate::http::RequestHead;
use crate::ids::{ConnId, IdMap, Sid, SocketId};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket.IO options, with the Engine.IO options beneath them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Engine.IO options; `path` defaults to `/socket.io/` here.
    pub engine: engine::Config,
    /// How long a new connection may take to join its first namespace.
    pub connect_timeout: Duration,
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// How packets are written and read: text (the default) or MessagePack.
    pub parser: Parser,
    /// Most namespaces one connection may have joined or be asking to join at once (each
    /// costs the server a socket). A CONNECT beyond it is refused with CONNECT_ERROR
    /// `"Too many namespaces"` and the connection goes on. Default 64.
    pub max_namespaces: usize,
}

/// The default of [`Config::max_namespaces`].
pub const DEFAULT_MAX_NAMESPACES: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: engine::Config {
                path: "/socket.io/".to_owned(),
                ..engine::Config::default()
            },
            connect_timeout: Duration::from_secs(45),
            max_attachments: 10,
            parser: Parser::Default,
            max_namespaces: DEFAULT_MAX_NAMESPACES,
        }
    }
}

/// The caller named something that does not exist (any more). Never caused by a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SioError {
    /// No connected socket has this id.
    UnknownSocket(SocketId),
    /// No pending connect request has this number (settled already, or its client left).
    UnknownConnect(ConnectId),
    /// No namespace of that name.
    UnknownNamespace(String),
    /// The socket's outgoing queue is full.
    BufferFull(SocketId),
}

impl fmt::Display for SioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SioError::UnknownSocket(s) => write!(f, "no connected socket {s}"),
            SioError::UnknownConnect(c) => write!(f, "no pending connect request {}", c.0),
            SioError::UnknownNamespace(n) => write!(f, "no namespace {n}"),
            SioError::BufferFull(s) => write!(f, "outgoing buffer of socket {s} is full"),
        }
    }
}

impl std::error::Error for SioError {}

/// What [`Server::restore_connect`] did with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The session does not fit the request: it goes on as a new connection.
    Refused,
    /// The request recovers the session once accepted (the middleware runs first).
    Restored,
    /// The machine accepted the request itself (middleware skipped): the socket exists.
    Accepted(SocketId),
}

/// A session taken out of a composition, whole and open ([`Server::detach`]), to be run
/// elsewhere through a [`Peer`] or taken in by another composition ([`Server::adopt`]).
#[derive(Debug)]
pub struct Detached {
    /// Its Engine.IO session.
    pub session: Box<engine::Session>,
    /// Its Socket.IO client.
    pub client: Box<Client>,
}

/// The copies of one broadcast for sockets whose sessions this composition does not run
/// (they were [detached](Server::detach) to run elsewhere): the caller hands each its copy,
/// which the session's peer queues with [`Link::deliver`] (and, for a broadcast with
/// acknowledgements, files with [`Client::expect_ack`]).
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The packet, encoded once for every target.
    pub first: Message,
    /// Its binary attachments.
    pub attachments: Vec<Bytes>,
    /// Sent only to sessions that can take it at once.
    pub volatile: bool,
    /// The acknowledgement id asked for, and its deadline.
    pub ack: Option<(AckId, Option<Instant>)>,
    /// Each target and its session.
    pub targets: Vec<(SocketId, Sid)>,
    /// [`Namespaces::departures`](super::Namespaces::departures) when the targets were
    /// looked up: while it reads the same, each target is still in its session.
    pub departures: u64,
}

/// A deadline the server files, in the order deadlines due at the same moment run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Connect(Sid),
    Ack(SocketId, u64),
    /// The next expiry of a recovery session or kept packet.
    Recovery,
}

/// The Socket.IO server: an Engine.IO [`Engine`] plus everything Socket.IO adds. Its inputs
/// and outputs are the engine's (same `handle_*`, same [`Output`]); its events are Socket.IO
/// [`Event`]s. Drain in the same order: events, then outputs, then the timeout.
///
/// It is the single-threaded composition of the parts: one [`Client`] machine per session
/// (decoder, sockets, acks, connect timeout), driven through a [`Peer`] for each input or
/// command that reaches it, and the [`Shared`] state (the [`Namespaces`] index, the connect
/// requests waiting for the application, the recovery store).
pub struct Server<S: SharedAccess = Shared> {
    engine: Engine,
    config: Config,
    /// Boxed, as the engine's sessions are: a slot is the id and a pointer, so the table's
    /// spare capacity (up to half of it after a growth) costs a pointer a slot rather than
    /// a whole `Client`.
    clients: IdMap<Sid, Box<Client>>,
    shared: S,
    /// Each client filed under its earliest deadline.
    timers: BTreeSet<(Instant, Sid)>,
    events: VecDeque<Event>,
    /// When the recovery store's next expiry is due.
    recovery_timer: Option<Instant>,
    /// Sockets a packet was refused for (their session's queue full) since the last
    /// [`take_refused`](Server::take_refused).
    refused: Vec<SocketId>,
    /// Broadcast copies for sessions run elsewhere, for the caller to hand on.
    handoffs: Vec<Handoff>,
    traffic: Traffic,
}

impl<S: SharedAccess> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("engine", &self.engine)
            .field("clients", &self.clients.len())
            .field("sockets", &self.socket_count())
            .field(
                "namespaces",
                &self.shared.read(|s| s.namespaces.names().count()),
            )
            .finish_non_exhaustive()
    }
}

/// A second seed for socket ids, derived from the engine's so one seed drives both.
fn derive_seed(seed: [u8; 32]) -> [u8; 32] {
    let mut rng = crate::rng::ChaCha20Rng::from_seed(seed);
    let mut skip = [0u8; 64];
    rng.fill(&mut skip);
    let mut out = [0u8; 32];
    rng.fill(&mut out);
    out
}

impl Server {
    /// A server with `config`; session and socket ids are drawn from `seed`.
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        let engine = Engine::new(config.engine.clone(), seed);
        Self::with_engine(config, engine, derive_seed(seed))
    }

    /// A server over an engine built by the caller (a custom session id generator, say);
    /// socket ids are drawn from `seed`.
    pub fn with_engine(config: Config, engine: Engine, seed: [u8; 32]) -> Self {
        Self::with_shared(config, engine, Shared::new(seed))
    }

    /// The namespaces, their sockets and rooms.
    pub fn namespace_index(&self) -> &Namespaces {
        &self.shared.namespaces
    }

    /// The state the sessions share (namespaces, connect requests, recovery).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The namespace of a connected socket.
    pub fn namespace_of(&self, socket: SocketId) -> Option<&Arc<str>> {
        self.shared.namespaces.namespace_of(socket)
    }

    /// Names of the namespaces that exist now.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.shared.namespaces.names()
    }
}

impl<S: SharedAccess> Server<S> {
    /// A server over an engine and shared state built by the caller: the shared state may
    /// also be lent to sessions the caller runs elsewhere (see [`Server::detach`]).
    pub fn with_shared(config: Config, engine: Engine, shared: S) -> Self {
        Server {
            engine,
            config,
            clients: IdMap::default(),
            shared,
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            recovery_timer: None,
            refused: Vec::new(),
            handoffs: Vec::new(),
            traffic: Traffic::default(),
        }
    }

    /// How this composition reaches the shared state (lent to sessions run elsewhere too).
    pub fn shared_access(&self) -> &S {
        &self.shared
    }

    /// Turns connection state recovery on (or off with `None`, dropping what was kept).
    /// Set it before serving: sockets connected earlier have no private id to recover with.
    ///
    /// With it on, a v5 socket's CONNECT reply is `{"sid","pid"}`; every EVENT sent without
    /// ack and not volatile, broadcast or single, carries an offset as its last argument and
    /// is kept for the window; a socket leaving for a
    /// [recoverable](DisconnectReason::is_recoverable) reason leaves a session for as long;
    /// a CONNECT whose auth names such a session (`{"pid","offset"}`) gets the socket back
    /// ([`ConnectRequest::recovered`]), the packets after `offset` replayed.
    pub fn set_connection_state_recovery(&mut self, recovery: Option<Recovery>) {
        self.recovery_timer = None;
        self.shared.with(|s| s.set_recovery(recovery));
    }

    /// The connection state recovery options, when it is on.
    pub fn connection_state_recovery(&self) -> Option<Recovery> {
        self.shared.read(Shared::recovery)
    }

    /// With connection state recovery on, hands its keeping to the caller (a cluster
    /// adapter with a shared store, such as a Redis stream): the machine then keeps no
    /// packets and assigns no offsets; a broadcast carries the offset given to
    /// [`Server::broadcast_at`]; a session left behind waits for [`Server::take_session`]
    /// (and expires after the window if nobody takes it); a recovering CONNECT is not
    /// recovered by the machine but completed with [`Server::restore_connect`] once the
    /// caller has fetched the session.
    pub fn set_shared_recovery(&mut self, shared: bool) {
        self.shared.with(|s| {
            if let Some(r) = s.recovery.as_mut() {
                r.shared = shared;
            }
        });
    }

    /// Whether connection state recovery is on and kept by the caller
    /// ([`Server::set_shared_recovery`]).
    pub fn is_recovery_shared(&self) -> bool {
        self.shared.read(Shared::is_recovery_shared)
    }

    /// Takes the session `socket` left behind (when it left for a recoverable reason with
    /// recovery on) out of the machine, with the data attached to it, for a store of the
    /// caller's.
    pub fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        self.shared.with(|s| s.take_session(socket))
    }

    /// Completes the recovery of pending connect request `id` with `session` (fetched by
    /// the caller for the `{"pid","offset"}` of its auth, see
    /// [`recovery_auth`](super::recovery_auth)) and the messages kept after that offset, in
    /// order: the ones the socket missed ([`StoredMessage`]) are replayed after its CONNECT
    /// reply. With [`Recovery::skip_middlewares`] the machine accepts the request at once.
    /// Nothing changes ([`RestoreOutcome::Refused`]) when the session is of another
    /// namespace, its socket is still connected, or the request recovers already.
    pub fn restore_connect(
        &mut self,
        id: ConnectId,
        session: SessionState,
        stored: Vec<StoredMessage>,
        now: Instant,
    ) -> Result<RestoreOutcome, SioError> {
        self.on_connect(id, now, |peer| {
            peer.restore_connect(id, session, stored, now)
        })
    }

    /// Sessions kept for recovery (sockets that left and may come back).
    pub fn recovery_session_count(&self) -> usize {
        self.shared
            .read(|s| s.recovery.as_ref().map_or(0, Store::session_count))
    }

    /// Packets kept for recovery.
    pub fn recovery_packet_count(&self) -> usize {
        self.shared
            .read(|s| s.recovery.as_ref().map_or(0, Store::packet_count))
    }

    /// Attaches `data` (opaque to the machine; the API layer keeps JSON text there) to the
    /// session `socket` left behind; it comes back in [`ConnectRequest::session_data`] when
    /// the session is recovered. `false` when `socket` left no session.
    pub fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes) -> bool {
        self.shared.with(|s| s.set_session_data(socket, data))
    }

    /// Declares a namespace (`/` always exists). A namespace a dynamic matcher created is
    /// kept from then on.
    pub fn add_namespace(&mut self, name: &str) {
        self.shared.with(|s| s.namespaces.add(name));
    }

    /// Starts (or stops) recording the rooms created and deleted in every namespace, for
    /// [`take_room_changes`](Server::take_room_changes). Rooms that exist already are
    /// reported as created.
    pub fn track_room_changes(&mut self, on: bool) {
        self.shared.with(|s| s.namespaces.track_room_changes(on));
    }

    /// The rooms created and deleted since the last call, with their namespace, in order
    /// within each namespace. Always empty unless [tracking](Server::track_room_changes).
    pub fn take_room_changes(&mut self) -> Vec<(Arc<str>, RoomChange)> {
        self.shared.with(|s| s.namespaces.take_room_changes())
    }

    /// Starts (or stops) recording every join and leave of a room, in every namespace, for
    /// [`take_membership_changes`](Server::take_membership_changes). Memberships that exist
    /// when tracking starts are not reported.
    pub fn track_memberships(&mut self, on: bool) {
        self.shared.with(|s| s.namespaces.track_memberships(on));
    }

    /// The joins and leaves since the last call, with their namespace, in the order they
    /// happened. Always empty unless [tracking](Server::track_memberships).
    pub fn take_membership_changes(&mut self) -> Vec<(Arc<str>, MembershipChange)> {
        self.shared.with(|s| s.namespaces.take_membership_changes())
    }

    /// Declares a family of namespaces created on their first connect: every name `matcher`
    /// accepts. With `cleanup`, such a namespace is removed again when its last socket leaves.
    pub fn add_dynamic_namespace(
        &mut self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
        cleanup: bool,
    ) {
        self.shared
            .with(|s| s.namespaces.add_dynamic(matcher, cleanup));
    }

    // ---- getters ----

    /// The engine beneath (counts, transports, writability).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `head` is addressed to the server (its path is under the engine's path).
    pub fn owns(&self, head: &RequestHead) -> bool {
        self.engine.owns(head)
    }

    /// The Socket.IO machine of session `sid`.
    pub fn client(&self, sid: Sid) -> Option<&Client> {
        self.clients.get(&sid).map(|c| &**c)
    }

    /// Engine.IO connections with Socket.IO state.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Of those, the ones on long-polling now (an upgrade still being probed counts as
    /// polling). Walks every client: for occasional reports, not for every packet.
    pub fn polling_client_count(&self) -> usize {
        self.clients
            .keys()
            .filter(|sid| self.engine.transport(**sid) == Some(engine::TransportKind::Polling))
            .count()
    }

    /// Connected sockets, all namespaces.
    pub fn socket_count(&self) -> usize {
        self.shared.read(|s| s.namespaces.socket_count())
    }

    /// Connected sockets of namespace `nsp`.
    pub fn namespace_socket_count(&self, nsp: &str) -> usize {
        self.shared
            .read(|s| s.namespaces.namespace_socket_count(nsp))
    }

    /// Names of the namespaces that exist now ([`Server::namespaces`] without the borrow).
    pub fn namespace_names(&self) -> Vec<String> {
        self.shared
            .read(|s| s.namespaces.names().map(str::to_owned).collect())
    }

    /// Pending server-to-client acks, all sockets.
    pub fn pending_ack_count(&self) -> usize {
        self.clients.values().map(|c| c.ack_count()).sum()
    }

    /// Pending connect requests.
    pub fn pending_connect_count(&self) -> usize {
        self.shared.read(Shared::pending_connect_count)
    }

    /// Whether pending connect request `id` recovers a session (its
    /// [`ConnectRequest::recovered`]).
    pub fn is_recovering(&self, id: ConnectId) -> bool {
        self.shared.read(|s| s.is_recovering(id))
    }

    /// Scheduled Socket.IO deadlines (connect timeouts, ack deadlines and the recovery
    /// store's next expiry).
    pub fn timer_count(&self) -> usize {
        self.clients
            .values()
            .map(|c| c.timer_count())
            .sum::<usize>()
            + usize::from(self.recovery_timer.is_some())
    }

    /// Rooms with at least one member in `nsp`.
    pub fn room_count(&self, nsp: &str) -> usize {
        self.shared.read(|s| s.namespaces.room_count(nsp))
    }

    /// Whether `socket` is connected.
    pub fn contains(&self, socket: SocketId) -> bool {
        self.shared.read(|s| s.namespaces.contains(socket))
    }

    /// The Engine.IO session of a connected socket.
    pub fn session_of(&self, socket: SocketId) -> Option<Sid> {
        self.shared.read(|s| s.namespaces.session_of(socket))
    }

    /// The handshake of a connected socket.
    pub fn handshake(&self, socket: SocketId) -> Option<&Arc<Handshake>> {
        let sid = self.session_of(socket)?;
        self.clients.get(&sid).map(|c| c.handshake())
    }

    /// What a connected socket would leave behind if it left now, for a store that keeps
    /// live sessions so that they survive their node ([`SessionState`] without the
    /// application's data). `None` for a socket without a private id (recovery off, or a v4
    /// client) or that is not connected.
    pub fn live_session(&self, socket: SocketId) -> Option<SessionState> {
        let (sid, nsp, rooms) = self.shared.read(|s| {
            let (sid, nsp) = s.namespaces.member(socket)?;
            Some((sid, nsp.to_string(), s.namespaces.rooms_of(socket)))
        })?;
        let pid = self.clients.get(&sid)?.pid(socket)?;
        Some(SessionState {
            socket,
            pid: pid.to_string(),
            nsp: Some(nsp),
            rooms,
            data: None,
        })
    }

    /// The rooms of a connected socket (its own id included).
    pub fn rooms_of(&self, socket: SocketId) -> Vec<Room> {
        self.shared.read(|s| s.namespaces.rooms_of(socket))
    }

    /// The rooms of `nsp` that have members.
    pub fn rooms(&self, nsp: &str) -> Vec<Room> {
        self.shared.read(|s| s.namespaces.rooms(nsp))
    }

    /// Whether a packet sent to `socket` now would leave at once.
    pub fn is_writable(&self, socket: SocketId) -> bool {
        self.session_of(socket)
            .is_some_and(|sid| self.engine.is_writable(sid))
    }

    /// The sockets of `nsp` that `opts` selects (rooms, except), in no particular order.
    pub fn select(&self, nsp: &str, opts: &BroadcastOptions) -> Vec<SocketId> {
        self.shared.read(|s| s.namespaces.select(nsp, opts))
    }

    // ---- outputs ----

    /// The next thing to do on a connection.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.engine.poll_output()?;
        self.traffic.output(&output);
        Some(output)
    }

    /// Sessions opened and closed, packets and bytes in and out, since the server was
    /// created.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The next thing the application must see.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = [self.timers.first().map(|(t, _)| *t), self.recovery_timer]
            .into_iter()
            .flatten()
            .min();
        match (own, self.engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- inputs ----

    /// See [`Engine::handle_request`].
    pub fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let r = self.engine.handle_request(conn, head, now);
        self.pump(now);
        r
    }

    /// See [`Engine::handle_body`].
    pub fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        self.traffic.body_received(&body);
        let r = self.engine.handle_body(conn, body, now);
        self.pump(now);
        r
    }

    /// See [`Engine::handle_ws_message`].
    pub fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        self.traffic.ws_received(&message);
        let r = self.engine.handle_ws_message(conn, message, now);
        self.pump(now);
        r
    }

    /// See [`Engine::handle_ws_drained`].
    pub fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        self.engine.handle_ws_drained(conn, now);
        self.pump(now);
    }

    /// See [`Engine::handle_conn_closed`].
    pub fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.engine.handle_conn_closed(conn, error, now);
        self.pump(now);
    }

    /// Runs whatever is due at `now`, in the engine and here. Safe to call early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.pump(now);
        // Each turn settles the earliest deadline and adds none that is due, so this ends.
        while let Some((t, due)) = self.next_due() {
            if t > now {
                break;
            }
            match due {
                Due::Recovery => {
                    self.recovery_timer = None;
                    self.shared.with(|s| {
                        if let Some(r) = s.recovery.as_mut() {
                            r.purge(now);
                        }
                    });
                    self.rearm_recovery();
                    continue;
                }
                Due::Connect(sid) => self.run_client_timer(sid, t, ClientTimer::Connect, now),
                Due::Ack(socket, id) => {
                    if let Some(sid) = self.session_of(socket) {
                        self.run_client_timer(sid, t, ClientTimer::Ack(socket, id), now);
                    }
                }
            }
            self.pump(now);
        }
    }

    /// The earliest deadline of all; among several due at the same moment, connect timeouts
    /// first (by session), then ack deadlines (by socket and id), then the recovery store.
    fn next_due(&self) -> Option<(Instant, Due)> {
        let clients = self.timers.first().map(|&(t, _)| t).and_then(|first| {
            self.timers
                .iter()
                .take_while(|(t, _)| *t == first)
                .filter_map(|(_, sid)| {
                    let (t, timer) = self.clients.get(sid)?.first_timer()?;
                    Some((
                        t,
                        match timer {
                            ClientTimer::Connect => Due::Connect(*sid),
                            ClientTimer::Ack(socket, id) => Due::Ack(socket, id),
                        },
                    ))
                })
                .min()
        });
        let recovery = self.recovery_timer.map(|t| (t, Due::Recovery));
        [clients, recovery].into_iter().flatten().min()
    }

    /// Runs the due deadline `timer` of client `sid`.
    /// Runs the due deadline `timer` of client `sid`.
    fn run_client_timer(&mut self, sid: Sid, t: Instant, timer: ClientTimer, now: Instant) {
        self.with_peer(sid, |peer| peer.handle_timer(t, timer, now));
    }

    /// Files client `sid` under its earliest deadline, if that moved.
    fn refile(&mut self, sid: Sid) {
        let Some(client) = self.clients.get_mut(&sid) else {
            return;
        };
        let next = client.poll_timeout();
        if next == client.filed {
            return;
        }
        if let Some(t) = client.filed {
            self.timers.remove(&(t, sid));
        }
        if let Some(t) = next {
            self.timers.insert((t, sid));
        }
        client.filed = next;
    }

    /// Runs `f` on session `sid`'s [`Peer`], then re-files the client. `None` when the
    /// session has no client.
    fn with_peer<R>(
        &mut self,
        sid: Sid,
        f: impl FnOnce(&mut Peer<'_, &mut S, EngineLink<'_>>) -> R,
    ) -> Option<R> {
        let r = self.peer_of(sid, f)?;
        self.refile(sid);
        Some(r)
    }

    /// [`Server::with_peer`] for a step that sets no deadline of the client (an emit without
    /// acknowledgement, an answer to the client's acknowledgement): nothing to re-file.
    fn peer_of<R>(
        &mut self,
        sid: Sid,
        f: impl FnOnce(&mut Peer<'_, &mut S, EngineLink<'_>>) -> R,
    ) -> Option<R> {
        let client = &mut **self.clients.get_mut(&sid)?;
        let mut peer = Peer {
            config: &self.config,
            shared: &mut self.shared,
            client,
            link: EngineLink {
                engine: &mut self.engine,
                sid,
            },
            events: &mut self.events,
        };
        Some(f(&mut peer))
    }

    /// Runs `f` on the peer of session `sid`, then drains the engine; `missing` when there is
    /// no such session (the connect request or the socket that named it is gone).
    fn on_peer<R>(
        &mut self,
        sid: Option<Sid>,
        missing: SioError,
        now: Instant,
        f: impl FnOnce(&mut Peer<'_, &mut S, EngineLink<'_>>) -> Result<R, SioError>,
    ) -> Result<R, SioError> {
        let Some(sid) = sid else {
            return Err(missing);
        };
        let r = self.with_peer(sid, f).unwrap_or(Err(missing));
        self.pump(now);
        r
    }

    /// [`Server::on_peer`] for the session connect request `id` came from.
    fn on_connect<R>(
        &mut self,
        id: ConnectId,
        now: Instant,
        f: impl FnOnce(&mut Peer<'_, &mut S, EngineLink<'_>>) -> Result<R, SioError>,
    ) -> Result<R, SioError> {
        let sid = self.shared.read(|s| s.session_of_connect(id));
        self.on_peer(sid, SioError::UnknownConnect(id), now, f)
    }

    /// [`Server::on_peer`] for the session `socket` belongs to.
    fn on_socket<R>(
        &mut self,
        socket: SocketId,
        now: Instant,
        f: impl FnOnce(&mut Peer<'_, &mut S, EngineLink<'_>>) -> Result<R, SioError>,
    ) -> Result<R, SioError> {
        let sid = self.session_of(socket);
        self.on_peer(sid, SioError::UnknownSocket(socket), now, f)
    }

    /// Notes `socket` as refused when `r` says its queue was full.
    fn note_refused<R>(&mut self, socket: SocketId, r: &Result<R, SioError>) {
        if let Err(SioError::BufferFull(_)) = r {
            self.refused.push(socket);
        }
    }

    // ---- commands: connections ----

    /// Lets the client of request `id` into its namespace: a new socket, in the room of its
    /// own id, told `{"sid": …}`.
    pub fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        self.on_connect(id, now, |peer| peer.accept(id, now))
    }

    /// Refuses request `id` with CONNECT_ERROR `{"message": message, "data": data}` (`data`
    /// is JSON text; v4 clients get the message alone).
    pub fn reject(
        &mut self,
        id: ConnectId,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) -> Result<(), SioError> {
        self.on_connect(id, now, |peer| peer.reject(id, message, data, now))
    }

    /// Removes `socket` from its namespace: the client is told `41[/nsp,]` and the socket
    /// leaves with "server namespace disconnect". With `close`, every socket of the connection
    /// is removed that way, then the connection is closed, as the reference's
    /// `socket.disconnect(true)` does (so clients see a server disconnect, not a transport
    /// failure to recover from).
    pub fn disconnect(
        &mut self,
        socket: SocketId,
        close: bool,
        now: Instant,
    ) -> Result<(), SioError> {
        self.on_socket(socket, now, |peer| peer.disconnect(socket, close, now))
    }

    /// Closes the Engine.IO session `sid` as the reference's `socket.conn.close()` does: no
    /// Socket.IO packet, what is queued is still delivered, then the close; every socket of
    /// the connection leaves with "forced close" (and the client, seeing its transport close,
    /// reconnects). `false` when there is no such open session.
    pub fn close_connection(&mut self, sid: Sid, now: Instant) -> bool {
        if !self.engine.contains(sid) {
            return false;
        }
        self.engine.close(sid, now);
        self.pump(now);
        true
    }

    /// Closes every connection: every socket leaves with "server shutting down".
    pub fn close_all(&mut self, now: Instant) {
        let mut sids: Vec<Sid> = self.clients.keys().copied().collect();
        sids.sort_unstable();
        for sid in sids {
            self.with_peer(sid, |peer| {
                peer.close(DisconnectReason::ServerShuttingDown, now);
            });
        }
        self.pump(now);
    }

    /// Takes session `sid` out of this composition, open, with its Socket.IO client, for a
    /// runtime that runs it on a task of its own through a [`Peer`] over the same shared
    /// state ([`Server::with_shared`]): its sockets stay in the shared index and its connect
    /// requests stay pending, to be settled by that peer; this composition forgets its
    /// deadlines and no longer delivers to it (a broadcast selecting one of its sockets skips
    /// it: the caller delivers that copy). What the engine had already queued for it stays
    /// in the queues, in order: drain them first. `None` for an unknown or closing session.
    pub fn detach(&mut self, sid: Sid) -> Option<Detached> {
        if !self.engine.contains(sid) || !self.clients.contains_key(&sid) {
            return None;
        }
        let session = self.engine.detach(sid)?;
        let mut client = self.clients.remove(&sid)?;
        if let Some(t) = client.filed.take() {
            self.timers.remove(&(t, sid));
        }
        Some(Detached { session, client })
    }

    /// Takes in an open session and its client, detached from another composition over the
    /// same shared state ([`Server::detach`]): from now on this composition runs it (its
    /// deadlines filed here, its sockets reached by this composition's commands and
    /// broadcasts). Refused, both handed back, when the engine refuses the session
    /// ([`Engine::adopt`]) or a client of that id is here already.
    pub fn adopt(&mut self, detached: Detached, now: Instant) -> Result<(), Detached> {
        let Detached { session, client } = detached;
        let sid = session.sid();
        if self.clients.contains_key(&sid) || client.sid() != sid {
            return Err(Detached { session, client });
        }
        if let Err(session) = self.engine.adopt(session) {
            return Err(Detached { session, client });
        }
        let mut client = client;
        client.filed = None;
        self.clients.insert(sid, client);
        self.refile(sid);
        self.pump(now);
        Ok(())
    }

    // ---- commands: rooms ----

    /// Puts `socket` in `room`.
    pub fn join(&mut self, socket: SocketId, room: Room) -> Result<(), SioError> {
        if self.shared.with(|s| s.namespaces.join(socket, room)) {
            Ok(())
        } else {
            Err(SioError::UnknownSocket(socket))
        }
    }

    /// Takes `socket` out of `room`.
    pub fn leave(&mut self, socket: SocketId, room: &Room) -> Result<(), SioError> {
        if self.shared.with(|s| s.namespaces.leave(socket, room)) {
            Ok(())
        } else {
            Err(SioError::UnknownSocket(socket))
        }
    }

    // ---- commands: emitting ----

    /// Sends event `name` with `args` (a JSON array text, placeholders for `attachments`) to
    /// `socket`. With `volatile`, it is dropped when the transport cannot take it now
    /// (`Ok(false)`). To a socket that is gone but left a recovery session, a non-volatile
    /// event is kept for its return (as the reference's broadcast to the socket's room),
    /// though the result is still [`SioError::UnknownSocket`].
    pub fn emit(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        volatile: bool,
        now: Instant,
    ) -> Result<bool, SioError> {
        // Found once: the emit is on the message path.
        let member = self.shared.read(|s| {
            let (sid, nsp) = s.namespaces.member(socket)?;
            Some((sid, nsp.clone()))
        });
        let Some((sid, nsp)) = member else {
            if !volatile {
                self.shared.with(|s| {
                    let nsp = s.recovery.as_ref().and_then(|r| r.session_nsp(socket))?;
                    let mut packet = Packet::event(&nsp, name, args, None, attachments);
                    s.keep_with_offset(&nsp, &own_room(socket), &mut packet, now);
                    Some(())
                });
                self.rearm_recovery();
            }
            return Err(SioError::UnknownSocket(socket));
        };
        let simple = self.config.parser == Parser::Default && !self.shared.keeps_packets();
        let r = if simple {
            // The common emit, as `Peer::emit` sends it, without looking the client up.
            let mut link = EngineLink {
                engine: &mut self.engine,
                sid,
            };
            send_event(&mut link, &nsp, name, args, attachments, volatile, now)
                .map_err(|_| SioError::BufferFull(socket))
        } else {
            self.peer_of(sid, |peer| {
                peer.emit(socket, name, args, attachments, volatile, now)
            })
            .unwrap_or(Err(SioError::UnknownSocket(socket)))
        };
        self.pump(now);
        self.note_refused(socket, &r);
        r
    }

    /// Sends event `name` to `socket` asking for an acknowledgement: [`Event::Ack`] or
    /// [`Event::AckFailed`] follows with the returned id.
    pub fn emit_with_ack(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<AckId, SioError> {
        self.on_socket(socket, now, |peer| {
            peer.emit_with_ack(socket, name, args, attachments, timeout, now)
        })
    }

    /// Answers a client's acknowledgement request.
    pub fn ack(
        &mut self,
        token: AckToken,
        args: &str,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SioError> {
        let socket = token.socket;
        let sid = self
            .session_of(socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        // On the message path: the answer sets no deadline, so nothing to re-file.
        let r = self
            .peer_of(sid, |peer| peer.ack(token, args, attachments, now))
            .unwrap_or(Err(SioError::UnknownSocket(socket)));
        self.pump(now);
        self.note_refused(socket, &r);
        r
    }

    /// Sends event `name` to the sockets of `nsp` that `opts` selects, encoded once. Returns
    /// how many sockets it was queued for.
    pub fn broadcast(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<usize, SioError> {
        self.broadcast_at(nsp, opts, name, args, attachments, None, now)
    }

    /// Like [`Server::broadcast`]; with [shared](Server::set_shared_recovery) recovery, the
    /// packet carries `offset` (where the caller's store keeps it) as its last argument
    /// unless it is volatile or `offset` is `None` (the store failed to keep it). Without,
    /// `offset` is ignored and the machine assigns its own.
    #[allow(clippy::too_many_arguments)]
    pub fn broadcast_at(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        offset: Option<&str>,
        now: Instant,
    ) -> Result<usize, SioError> {
        let mut packet = Packet::event(nsp, name, args, None, attachments);
        // Selected and kept in one step: a socket joining meanwhile either gets the packet
        // or finds it kept.
        let targets = self.shared.with(|s| {
            if !s.namespaces.exists(nsp) {
                return None;
            }
            if !opts.volatile {
                let shared = s.recovery.as_ref().is_some_and(|r| r.shared);
                if let (Some(offset), true) = (offset, shared) {
                    if let Some(data) = packet.data.as_deref() {
                        packet.data = Some(append_offset(data, offset));
                    }
                }
                s.keep_with_offset(nsp, opts, &mut packet, now);
            }
            Some(s.namespaces.select(nsp, opts))
        });
        let targets = targets.ok_or_else(|| SioError::UnknownNamespace(nsp.to_owned()))?;
        let sent = self.send_to_all(targets, &packet, opts.volatile, now).len();
        self.pump(now);
        Ok(sent)
    }

    /// Like [`Server::broadcast`], asking each socket for an acknowledgement under one id.
    /// Returns the id and the sockets it was sent to; each answers with [`Event::Ack`] or
    /// [`Event::AckFailed`].
    #[allow(clippy::too_many_arguments)]
    pub fn broadcast_with_ack(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<(AckId, Vec<SocketId>), SioError> {
        let (id, targets) = self
            .shared
            .with(|s| {
                if !s.namespaces.exists(nsp) {
                    return None;
                }
                Some((
                    s.namespaces.next_ack_id(nsp),
                    s.namespaces.select(nsp, opts),
                ))
            })
            .ok_or_else(|| SioError::UnknownNamespace(nsp.to_owned()))?;
        let packet = Packet::event(nsp, name, args, Some(id), attachments);
        let handed = self.handoffs.len();
        let sent = self.send_to_all(targets, &packet, opts.volatile, now);
        let deadline = timeout.map(|t| now + t);
        if let Some(handoff) = self.handoffs.get_mut(handed) {
            handoff.ack = Some((AckId(id), deadline));
        }
        for &(socket, sid) in &sent {
            if let Some(client) = self.clients.get_mut(&sid) {
                client.expect_ack(socket, id, deadline);
            }
            self.refile(sid);
        }
        self.pump(now);
        Ok((
            AckId(id),
            sent.into_iter().map(|(socket, _)| socket).collect(),
        ))
    }

    /// Puts every socket that `opts` selects in `rooms`.
    pub fn sockets_join(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        self.shared
            .with(|s| s.namespaces.sockets_join(nsp, opts, rooms));
    }

    /// Takes every socket that `opts` selects out of `rooms`.
    pub fn sockets_leave(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        self.shared
            .with(|s| s.namespaces.sockets_leave(nsp, opts, rooms));
    }

    /// Disconnects every socket that `opts` selects (closing their connections with `close`).
    pub fn disconnect_sockets(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        close: bool,
        now: Instant,
    ) {
        for s in self.select(nsp, opts) {
            let _ = self.disconnect(s, close, now);
        }
    }

    /// Session `sid`, [detached](Server::detach) to run elsewhere, has ended (see
    /// [`Engine::forget_detached`]).
    pub fn forget_detached(&mut self, sid: Sid) {
        self.engine.forget_detached(sid);
    }

    /// Looks again at the shared state's deadlines (the recovery store's next expiry), after
    /// sessions run elsewhere changed it.
    pub fn refresh_deadlines(&mut self) {
        self.rearm_recovery();
    }

    // ---- internals ----

    /// Notes the recovery store's next expiry.
    fn rearm_recovery(&mut self) {
        self.recovery_timer = self
            .shared
            .read(|s| s.recovery.as_ref().and_then(Store::next_purge));
    }

    /// Queues one encoding of `packet` for every target (a socket and its session); returns
    /// those it was queued for.
    fn send_to_all(
        &mut self,
        targets: Vec<SocketId>,
        packet: &Packet,
        volatile: bool,
        now: Instant,
    ) -> Vec<(SocketId, Sid)> {
        // EVENT and ACK packets are the same in v4 and v5: one encoding serves every client.
        let (first, attachments) = messages(self.config.parser, packet, SioProtocol::V5);
        let mut sent = Vec::with_capacity(targets.len());
        let mut elsewhere = Vec::new();
        let (engine, refused) = (&mut self.engine, &mut self.refused);
        // Each target's session looked up as it is delivered to, under one loan of the index.
        let departures = self.shared.read(|s| {
            for socket in targets {
                let Some(sid) = s.namespaces.session_of(socket) else {
                    continue;
                };
                if engine.transport(sid).is_none() {
                    // A session run elsewhere: its copy is handed on.
                    elsewhere.push((socket, sid));
                    continue;
                }
                let mut link = EngineLink {
                    engine: &mut *engine,
                    sid,
                };
                match link.deliver(&first, &attachments, volatile, now) {
                    Delivery::Queued => sent.push((socket, sid)),
                    Delivery::Refused => refused.push(socket),
                    Delivery::Skipped | Delivery::Gone => {}
                }
            }
            s.namespaces.departures()
        });
        if !elsewhere.is_empty() {
            self.handoffs.push(Handoff {
                first,
                attachments,
                volatile,
                ack: None,
                targets: elsewhere,
                departures,
            });
        }
        sent
    }

    /// The sockets an emit, an acknowledgement or a broadcast could not be queued for since
    /// the last call, because their session's queue was full (under
    /// [`OverflowPolicy::Close`](crate::engine::OverflowPolicy) their session is closing as
    /// well). [`emit_with_ack`](Server::emit_with_ack) reports its own refusal instead.
    pub fn take_refused(&mut self) -> Vec<SocketId> {
        std::mem::take(&mut self.refused)
    }

    /// The broadcast copies for sessions run elsewhere since the last call, in order (see
    /// [`Handoff`]).
    pub fn take_handoffs(&mut self) -> Vec<Handoff> {
        std::mem::take(&mut self.handoffs)
    }

    /// The refusals noted since the last [`take_refused`](Server::take_refused), in order,
    /// without taking them.
    pub fn refused(&self) -> &[SocketId] {
        &self.refused
    }

    /// Processes what the engine reported.
    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                engine::Event::Open {
                    sid,
                    protocol,
                    request,
                    ..
                } => {
                    self.traffic.sessions_opened = self.traffic.sessions_opened.wrapping_add(1);
                    let client = Client::for_session(&self.config, sid, protocol, *request, now);
                    self.clients.insert(sid, Box::new(client));
                    self.with_peer(sid, |peer| peer.opened(now));
                }
                engine::Event::Message { sid, message } => {
                    self.with_peer(sid, |peer| peer.receive(message, now));
                }
                engine::Event::Upgrade { .. } => {}
                engine::Event::Close { sid, reason } => {
                    self.traffic.sessions_closed = self.traffic.sessions_closed.wrapping_add(1);
                    self.with_peer(sid, |peer| peer.closed(reason, now));
                    if let Some(client) = self.clients.remove(&sid) {
                        if let Some(t) = client.filed {
                            self.timers.remove(&(t, sid));
                        }
                    }
                }
            }
        }
        self.rearm_recovery();
    }
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
