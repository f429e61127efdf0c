//! The Socket.IO server machine: the Engine.IO engine below, namespaces, sockets, rooms and
//! acknowledgements above. Every Socket.IO rule is decided here.

use super::event::{
    AckFailure, AckId, AckToken, ConnectId, ConnectRequest, DisconnectReason, Event, Handshake,
};
use super::msgpack::{self, Parser};
use super::packet::{Decoder, Packet, PacketType, SioDecodeError, SioProtocol};
use super::recovery::{
    Recovery, Restored, SessionState, Store, StoredMessage, append_offset, replay,
};
use super::rooms::{Room, RoomChange, RoomIndex};
use crate::engine::{
    self, ApiMisuse, Body, CloseReason, Engine, Message, Output, Protocol, SendError, WsMessage,
};
use crate::http::RequestHead;
use crate::ids::{ConnId, IdMap, IdSet, Sid, SocketId};
use crate::rng::RandomIds;
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
}

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
        }
    }
}

/// Which sockets a broadcast reaches, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Only sockets in at least one of these rooms; every socket when empty.
    pub rooms: Vec<Room>,
    /// Never sockets in any of these rooms.
    pub except: Vec<Room>,
    /// Skip sockets whose transport cannot take the packet right now.
    pub volatile: bool,
    /// Do not forward to other nodes (meaningful with a cluster adapter).
    pub local: bool,
    /// Compression hint; WebSocket frames are not compressed, so it has no effect here.
    pub compress: bool,
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

struct Client {
    protocol: SioProtocol,
    decoder: Decoder,
    /// Joined namespaces in join order, which is the order the sockets leave in when the
    /// connection closes (as the reference iterates its map).
    sockets: Vec<(Arc<str>, SocketId)>,
    pending: HashMap<Arc<str>, ConnectId>,
    connect_deadline: Option<Instant>,
    handshake: Arc<Handshake>,
    /// Set when this layer closes the connection: its sockets are gone already and whatever
    /// the client still sends is ignored until the engine reports the session closed.
    closing: Option<DisconnectReason>,
}

impl Client {
    fn socket(&self, nsp: &str) -> Option<SocketId> {
        self.sockets
            .iter()
            .find(|(n, _)| &**n == nsp)
            .map(|(_, s)| *s)
    }
}

struct Namespace {
    /// Ordered, so that every walk over them (broadcasts, `disconnect_sockets`) is
    /// deterministic for a given seed.
    sockets: BTreeSet<SocketId>,
    rooms: RoomIndex,
    /// Server-to-client ack ids are numbered per namespace, as the reference does.
    next_ack: u64,
    /// Connect requests for this namespace not settled yet; an ephemeral namespace stays
    /// while any is.
    pending: usize,
    /// Created by a dynamic matcher, and removed again when it empties.
    ephemeral: bool,
}

impl Namespace {
    fn new(ephemeral: bool, track_rooms: bool) -> Self {
        let mut rooms = RoomIndex::default();
        rooms.track_changes(track_rooms);
        Namespace {
            sockets: BTreeSet::new(),
            rooms,
            next_ack: 0,
            pending: 0,
            ephemeral,
        }
    }
}

struct SocketState {
    sid: Sid,
    nsp: Arc<str>,
    /// Pending server-to-client acks and their deadlines.
    acks: HashMap<u64, Option<Instant>>,
    /// The private id of connection state recovery (when it is on and the client speaks v5).
    pid: Option<Arc<str>>,
}

struct Pending {
    sid: Sid,
    nsp: Arc<str>,
    /// A session taken back for this request (connection state recovery).
    restored: Option<Restored>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Connect(Sid),
    Ack(SocketId, u64),
    /// The next expiry of a recovery session or kept packet.
    Recovery,
}

type Matcher = Box<dyn Fn(&str) -> bool + Send>;

/// The Socket.IO server: an Engine.IO [`Engine`] plus everything Socket.IO adds. Its inputs
/// and outputs are the engine's (same `handle_*`, same [`Output`]); its events are Socket.IO
/// [`Event`]s. Drain in the same order: events, then outputs, then the timeout.
pub struct Server {
    engine: Engine,
    config: Config,
    clients: IdMap<Sid, Client>,
    namespaces: BTreeMap<Arc<str>, Namespace>,
    dynamic: Vec<(Matcher, bool)>,
    sockets: IdMap<SocketId, SocketState>,
    pending: HashMap<ConnectId, Pending>,
    next_connect: u64,
    timers: BTreeSet<(Instant, Timer)>,
    events: VecDeque<Event>,
    ids: RandomIds,
    recovery: Option<Store>,
    /// When `Timer::Recovery` is armed for.
    recovery_timer: Option<Instant>,
    /// Whether room creations and deletions are recorded (for adapters that subscribe per
    /// room).
    track_rooms: bool,
    /// Room changes of namespaces removed before they were taken.
    orphan_room_changes: Vec<(Arc<str>, RoomChange)>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("engine", &self.engine)
            .field("clients", &self.clients.len())
            .field("sockets", &self.sockets.len())
            .field("namespaces", &self.namespaces.len())
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
        let mut namespaces = BTreeMap::new();
        namespaces.insert(Arc::from("/"), Namespace::new(false, false));
        Server {
            engine,
            config,
            clients: IdMap::default(),
            namespaces,
            dynamic: Vec::new(),
            sockets: IdMap::default(),
            pending: HashMap::new(),
            next_connect: 0,
            timers: BTreeSet::new(),
            events: VecDeque::new(),
            ids: RandomIds::from_seed(seed),
            recovery: None,
            recovery_timer: None,
            track_rooms: false,
            orphan_room_changes: Vec::new(),
        }
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
        if let Some(t) = self.recovery_timer.take() {
            self.timers.remove(&(t, Timer::Recovery));
        }
        self.recovery = recovery.map(|config| {
            let prefix: String = self.ids.next_sid().as_str().chars().take(8).collect();
            Store::new(config, prefix)
        });
    }

    /// The connection state recovery options, when it is on.
    pub fn connection_state_recovery(&self) -> Option<Recovery> {
        self.recovery.as_ref().map(|r| r.config)
    }

    /// With connection state recovery on, hands its keeping to the caller (a cluster
    /// adapter with a shared store, such as a Redis stream): the machine then keeps no
    /// packets and assigns no offsets; a broadcast carries the offset given to
    /// [`Server::broadcast_at`]; a session left behind waits for [`Server::take_session`]
    /// (and expires after the window if nobody takes it); a recovering CONNECT is not
    /// recovered by the machine but completed with [`Server::restore_connect`] once the
    /// caller has fetched the session.
    pub fn set_shared_recovery(&mut self, shared: bool) {
        if let Some(r) = self.recovery.as_mut() {
            r.shared = shared;
        }
    }

    /// Whether connection state recovery is on and kept by the caller
    /// ([`Server::set_shared_recovery`]).
    pub fn is_recovery_shared(&self) -> bool {
        self.recovery.as_ref().is_some_and(|r| r.shared)
    }

    /// Takes the session `socket` left behind (when it left for a recoverable reason with
    /// recovery on) out of the machine, with the data attached to it, for a store of the
    /// caller's.
    pub fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        self.recovery.as_mut()?.take_session(socket)
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
        let pending = self.pending.get(&id).ok_or(SioError::UnknownConnect(id))?;
        let skip = match &self.recovery {
            Some(r) => r.config.skip_middlewares,
            None => return Ok(RestoreOutcome::Refused),
        };
        let v5 = self.clients.get(&pending.sid).map(|c| c.protocol) == Some(SioProtocol::V5);
        if !v5
            || pending.restored.is_some()
            || session.nsp.as_deref().is_some_and(|n| n != &*pending.nsp)
            || self.sockets.contains_key(&session.socket)
        {
            return Ok(RestoreOutcome::Refused);
        }
        let missed = replay(&pending.nsp, &session, stored);
        let restored = Restored {
            socket: session.socket,
            pid: Arc::from(session.pid.as_str()),
            rooms: session.rooms,
            data: session.data,
            missed,
            next: None,
        };
        if let Some(p) = self.pending.get_mut(&id) {
            p.restored = Some(restored);
        }
        if !skip {
            return Ok(RestoreOutcome::Restored);
        }
        let socket = self.open_socket(id, now)?;
        self.pump(now);
        Ok(RestoreOutcome::Accepted(socket))
    }

    /// Sessions kept for recovery (sockets that left and may come back).
    pub fn recovery_session_count(&self) -> usize {
        self.recovery.as_ref().map_or(0, Store::session_count)
    }

    /// Packets kept for recovery.
    pub fn recovery_packet_count(&self) -> usize {
        self.recovery.as_ref().map_or(0, Store::packet_count)
    }

    /// Attaches `data` (opaque to the machine; the API layer keeps JSON text there) to the
    /// session `socket` left behind; it comes back in [`ConnectRequest::session_data`] when
    /// the session is recovered. `false` when `socket` left no session.
    pub fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes) -> bool {
        self.recovery
            .as_mut()
            .is_some_and(|r| r.set_data(socket, data))
    }

    /// Declares a namespace (`/` always exists). A namespace a dynamic matcher created is
    /// kept from then on.
    pub fn add_namespace(&mut self, name: &str) {
        self.namespaces
            .entry(Arc::from(name))
            .or_insert_with(|| Namespace::new(false, self.track_rooms))
            .ephemeral = false;
    }

    /// Starts (or stops) recording the rooms created and deleted in every namespace, for
    /// [`take_room_changes`](Server::take_room_changes). Rooms that exist already are
    /// reported as created.
    pub fn track_room_changes(&mut self, on: bool) {
        self.track_rooms = on;
        for ns in self.namespaces.values_mut() {
            ns.rooms.track_changes(on);
        }
    }

    /// The rooms created and deleted since the last call, with their namespace, in order
    /// within each namespace. Always empty unless [tracking](Server::track_room_changes).
    pub fn take_room_changes(&mut self) -> Vec<(Arc<str>, RoomChange)> {
        if !self.track_rooms {
            return Vec::new();
        }
        let mut out = std::mem::take(&mut self.orphan_room_changes);
        for (name, ns) in &mut self.namespaces {
            out.extend(
                ns.rooms
                    .take_changes()
                    .into_iter()
                    .map(|c| (name.clone(), c)),
            );
        }
        out
    }

    /// Declares a family of namespaces created on their first connect: every name `matcher`
    /// accepts. With `cleanup`, such a namespace is removed again when its last socket leaves.
    pub fn add_dynamic_namespace(
        &mut self,
        matcher: impl Fn(&str) -> bool + Send + 'static,
        cleanup: bool,
    ) {
        self.dynamic.push((Box::new(matcher), cleanup));
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

    /// Engine.IO connections with Socket.IO state.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Connected sockets, all namespaces.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Connected sockets of namespace `nsp`.
    pub fn namespace_socket_count(&self, nsp: &str) -> usize {
        self.namespaces.get(nsp).map_or(0, |n| n.sockets.len())
    }

    /// Names of the namespaces that exist now.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.keys().map(|k| &**k)
    }

    /// Pending server-to-client acks, all sockets.
    pub fn pending_ack_count(&self) -> usize {
        self.sockets.values().map(|s| s.acks.len()).sum()
    }

    /// Pending connect requests.
    pub fn pending_connect_count(&self) -> usize {
        self.pending.len()
    }

    /// Whether pending connect request `id` recovers a session (its
    /// [`ConnectRequest::recovered`]).
    pub fn is_recovering(&self, id: ConnectId) -> bool {
        self.pending.get(&id).is_some_and(|p| p.restored.is_some())
    }

    /// Scheduled Socket.IO deadlines (connect timeouts and ack deadlines).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Rooms with at least one member in `nsp`.
    pub fn room_count(&self, nsp: &str) -> usize {
        self.namespaces.get(nsp).map_or(0, |n| n.rooms.room_count())
    }

    /// Whether `socket` is connected.
    pub fn contains(&self, socket: SocketId) -> bool {
        self.sockets.contains_key(&socket)
    }

    /// The namespace of a connected socket.
    pub fn namespace_of(&self, socket: SocketId) -> Option<&Arc<str>> {
        self.sockets.get(&socket).map(|s| &s.nsp)
    }

    /// The Engine.IO session of a connected socket.
    pub fn session_of(&self, socket: SocketId) -> Option<Sid> {
        self.sockets.get(&socket).map(|s| s.sid)
    }

    /// The handshake of a connected socket.
    pub fn handshake(&self, socket: SocketId) -> Option<&Arc<Handshake>> {
        let sid = self.sockets.get(&socket)?.sid;
        self.clients.get(&sid).map(|c| &c.handshake)
    }

    /// The rooms of a connected socket (its own id included).
    pub fn rooms_of(&self, socket: SocketId) -> Vec<Room> {
        let Some(state) = self.sockets.get(&socket) else {
            return Vec::new();
        };
        self.namespaces
            .get(&state.nsp)
            .map(|n| n.rooms.rooms_of(socket).cloned().collect())
            .unwrap_or_default()
    }

    /// The rooms of `nsp` that have members.
    pub fn rooms(&self, nsp: &str) -> Vec<Room> {
        self.namespaces
            .get(nsp)
            .map(|n| n.rooms.rooms().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a packet sent to `socket` now would leave at once.
    pub fn is_writable(&self, socket: SocketId) -> bool {
        self.sockets
            .get(&socket)
            .is_some_and(|s| self.engine.is_writable(s.sid))
    }

    /// The sockets of `nsp` that `opts` selects (rooms, except), in no particular order.
    pub fn select(&self, nsp: &str, opts: &BroadcastOptions) -> Vec<SocketId> {
        let Some(ns) = self.namespaces.get(nsp) else {
            return Vec::new();
        };
        let excluded = |s: &SocketId| ns.rooms.in_any(*s, &opts.except);
        if opts.rooms.is_empty() {
            return ns
                .sockets
                .iter()
                .copied()
                .filter(|s| !excluded(s))
                .collect();
        }
        let mut seen = IdSet::default();
        let mut out = Vec::new();
        for room in &opts.rooms {
            for s in ns.rooms.members(room) {
                if !excluded(&s) && seen.insert(s) {
                    out.push(s);
                }
            }
        }
        out
    }

    // ---- outputs ----

    /// The next thing to do on a connection.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.engine.poll_output()
    }

    /// The next thing the application must see.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Server::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first().map(|(t, _)| *t);
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
        // Each turn removes the earliest timer and adds none that is due, so this ends.
        while let Some(&(t, timer)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, timer));
            match timer {
                Timer::Connect(sid) => {
                    let Some(client) = self.clients.get_mut(&sid) else {
                        continue;
                    };
                    if client.connect_deadline != Some(t) {
                        continue;
                    }
                    client.connect_deadline = None;
                    if client.sockets.is_empty() {
                        self.close_client(sid, DisconnectReason::ForcedServerClose, now);
                    }
                }
                Timer::Recovery => {
                    self.recovery_timer = None;
                    if let Some(r) = self.recovery.as_mut() {
                        r.purge(now);
                    }
                    self.rearm_recovery();
                    continue;
                }
                Timer::Ack(socket, id) => {
                    let Some(state) = self.sockets.get_mut(&socket) else {
                        continue;
                    };
                    if state.acks.get(&id) != Some(&Some(t)) {
                        continue;
                    }
                    state.acks.remove(&id);
                    self.events.push_back(Event::AckFailed {
                        socket,
                        id: AckId(id),
                        reason: AckFailure::Timeout,
                    });
                }
            }
            self.pump(now);
        }
    }

    // ---- commands: connections ----

    /// Lets the client of request `id` into its namespace: a new socket, in the room of its
    /// own id, told `{"sid": …}`.
    pub fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        let socket = self.open_socket(id, now)?;
        self.pump(now);
        Ok(socket)
    }

    /// [`Server::accept`] without draining the engine.
    fn open_socket(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        let mut pending = self
            .pending
            .remove(&id)
            .ok_or(SioError::UnknownConnect(id))?;
        self.settle(id, &pending);
        let mut restored = pending.restored.take();
        if let (Some(r), Some(store)) = (restored.as_mut(), self.recovery.as_ref()) {
            // What was kept while the request waited for the application is missed too.
            if let Some(from) = r.next {
                let later = store.kept_since(from, &pending.nsp, &r.rooms);
                r.missed.extend(later);
            }
        }
        let socket = match &restored {
            Some(r) => r.socket,
            None => self.new_socket_id(pending.sid, &pending.nsp),
        };
        let pid = match (&restored, &self.recovery) {
            (Some(r), _) => Some(r.pid.clone()),
            (None, Some(_))
                if self.clients.get(&pending.sid).map(|c| c.protocol) == Some(SioProtocol::V5) =>
            {
                Some(Arc::from(self.ids.next_sid().as_str()))
            }
            _ => None,
        };
        let Some(client) = self.clients.get_mut(&pending.sid) else {
            return Err(SioError::UnknownConnect(id));
        };
        client.sockets.push((pending.nsp.clone(), socket));
        if let Some(t) = client.connect_deadline.take() {
            self.timers.remove(&(t, Timer::Connect(pending.sid)));
        }
        let protocol = client.protocol;
        let ns = self
            .namespaces
            .entry(pending.nsp.clone())
            .or_insert_with(|| Namespace::new(false, self.track_rooms));
        ns.sockets.insert(socket);
        ns.rooms.join(socket, Room::from(socket));
        if let Some(r) = &restored {
            for room in &r.rooms {
                ns.rooms.join(socket, room.clone());
            }
        }
        self.sockets.insert(
            socket,
            SocketState {
                sid: pending.sid,
                nsp: pending.nsp.clone(),
                acks: HashMap::new(),
                pid: pid.clone(),
            },
        );
        let data = match (protocol, &pid) {
            (SioProtocol::V5, None) => Some(Utf8Bytes::from(format!(
                "{{\"sid\":{}}}",
                json_string(socket.as_str())
            ))),
            (SioProtocol::V5, Some(pid)) => Some(Utf8Bytes::from(format!(
                "{{\"sid\":{},\"pid\":{}}}",
                json_string(socket.as_str()),
                json_string(pid)
            ))),
            (SioProtocol::V4, _) => None,
        };
        let packet = Packet::connect(&pending.nsp, data);
        // A full queue this early closes the session by policy; the socket then leaves with
        // the close event, so the error needs no further handling here.
        let _ = self.send_packet(pending.sid, &packet, now);
        // The packets the socket missed follow its CONNECT reply, in the order they were sent.
        for (text, attachments) in restored.map(|r| r.missed).unwrap_or_default() {
            let _ = self.send_encoded(pending.sid, text, attachments, now);
        }
        Ok(socket)
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
        let pending = self
            .pending
            .remove(&id)
            .ok_or(SioError::UnknownConnect(id))?;
        self.settle(id, &pending);
        // The connect timeout stays armed: a client refused everywhere is closed by it, as in
        // the reference.
        self.connect_error(pending.sid, &pending.nsp, message, data, now);
        self.drop_if_empty(&pending.nsp);
        self.pump(now);
        Ok(())
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
        let state = self
            .sockets
            .get(&socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        let sid = state.sid;
        let targets = match (close, self.clients.get(&sid)) {
            (true, Some(client)) => client.sockets.clone(),
            _ => vec![(state.nsp.clone(), socket)],
        };
        for (nsp, target) in targets {
            let _ = self.send_packet(sid, &Packet::disconnect(&nsp), now);
            self.remove_socket(target, DisconnectReason::ServerNamespaceDisconnect, now);
        }
        if close {
            self.close_client(sid, DisconnectReason::ForcedServerClose, now);
        }
        self.pump(now);
        Ok(())
    }

    /// Closes every connection: every socket leaves with "server shutting down".
    pub fn close_all(&mut self, now: Instant) {
        let mut sids: Vec<Sid> = self.clients.keys().copied().collect();
        sids.sort_unstable();
        for sid in sids {
            self.close_client(sid, DisconnectReason::ServerShuttingDown, now);
        }
        self.pump(now);
    }

    // ---- commands: rooms ----

    /// Puts `socket` in `room`.
    pub fn join(&mut self, socket: SocketId, room: Room) -> Result<(), SioError> {
        let nsp = &self
            .sockets
            .get(&socket)
            .ok_or(SioError::UnknownSocket(socket))?
            .nsp;
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            ns.rooms.join(socket, room);
        }
        Ok(())
    }

    /// Takes `socket` out of `room`.
    pub fn leave(&mut self, socket: SocketId, room: &Room) -> Result<(), SioError> {
        let nsp = &self
            .sockets
            .get(&socket)
            .ok_or(SioError::UnknownSocket(socket))?
            .nsp;
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            ns.rooms.leave(socket, room);
        }
        Ok(())
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
        let Some(state) = self.sockets.get(&socket) else {
            let nsp = self.recovery.as_ref().and_then(|r| r.session_nsp(socket));
            if let (Some(nsp), false) = (nsp, volatile) {
                let mut packet = Packet::event(&nsp, name, args, None, attachments);
                let opts = BroadcastOptions {
                    rooms: vec![Room::from(socket)],
                    ..BroadcastOptions::default()
                };
                self.keep_with_offset(&nsp, &opts, &mut packet, now);
                self.rearm_recovery();
            }
            return Err(SioError::UnknownSocket(socket));
        };
        let sid = state.sid;
        if volatile && !self.engine.is_writable(sid) {
            return Ok(false);
        }
        let nsp = state.nsp.clone();
        let keep = !volatile && self.recovery.as_ref().is_some_and(|r| !r.shared);
        let r = if keep || self.config.parser == Parser::MsgPack {
            let mut packet = Packet::event(&nsp, name, args, None, attachments);
            if keep {
                // As the reference, a single emit is kept as a broadcast to the socket's room.
                let opts = BroadcastOptions {
                    rooms: vec![Room::from(socket)],
                    ..BroadcastOptions::default()
                };
                self.keep_with_offset(&nsp, &opts, &mut packet, now);
            }
            self.send_packet(sid, &packet, now)
        } else {
            // The text written once, as `send_packet` would encode the packet.
            let text = Packet::event_text(&nsp, name, args, None, attachments.len());
            self.send_text(sid, text, attachments, now)
        };
        self.pump(now);
        r.map(|_| true).map_err(|_| SioError::BufferFull(socket))
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
        let state = self
            .sockets
            .get(&socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        let (sid, nsp) = (state.sid, state.nsp.clone());
        let id = self.next_ack_id(&nsp);
        let packet = Packet::event(&nsp, name, args, Some(id), attachments);
        let r = self.send_packet(sid, &packet, now);
        if r.is_err() {
            self.pump(now);
            return Err(SioError::BufferFull(socket));
        }
        self.expect_ack(socket, id, timeout.map(|t| now + t));
        self.pump(now);
        Ok(AckId(id))
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
        let state = self
            .sockets
            .get(&socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        let packet = Packet::ack(&state.nsp, token.id, Utf8Bytes::from(args), attachments);
        let r = self.send_packet(state.sid, &packet, now);
        self.pump(now);
        r.map_err(|_| SioError::BufferFull(socket))
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
        if !self.namespaces.contains_key(nsp) {
            return Err(SioError::UnknownNamespace(nsp.to_owned()));
        }
        let targets = self.select(nsp, opts);
        let mut packet = Packet::event(nsp, name, args, None, attachments);
        if !opts.volatile {
            if let (Some(offset), true) = (offset, self.is_recovery_shared()) {
                if let Some(data) = packet.data.as_deref() {
                    packet.data = Some(append_offset(data, offset));
                }
            }
            self.keep_with_offset(nsp, opts, &mut packet, now);
        }
        let sent = self
            .send_to_all(&targets, &packet, opts.volatile, now)
            .len();
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
        if !self.namespaces.contains_key(nsp) {
            return Err(SioError::UnknownNamespace(nsp.to_owned()));
        }
        let id = self.next_ack_id(nsp);
        let targets = self.select(nsp, opts);
        let packet = Packet::event(nsp, name, args, Some(id), attachments);
        let sent = self.send_to_all(&targets, &packet, opts.volatile, now);
        let deadline = timeout.map(|t| now + t);
        for socket in &sent {
            self.expect_ack(*socket, id, deadline);
        }
        self.pump(now);
        Ok((AckId(id), sent))
    }

    /// Puts every socket that `opts` selects in `rooms`.
    pub fn sockets_join(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        let targets = self.select(nsp, opts);
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            for s in targets {
                for room in rooms {
                    ns.rooms.join(s, room.clone());
                }
            }
        }
    }

    /// Takes every socket that `opts` selects out of `rooms`.
    pub fn sockets_leave(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        let targets = self.select(nsp, opts);
        if let Some(ns) = self.namespaces.get_mut(nsp) {
            for s in targets {
                for room in rooms {
                    ns.rooms.leave(s, room);
                }
            }
        }
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

    // ---- internals ----

    /// With recovery on: appends the next offset to `packet`'s arguments and keeps it with
    /// the selection `opts` made.
    fn keep_with_offset(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        packet: &mut Packet,
        now: Instant,
    ) {
        let Some(store) = self.recovery.as_mut().filter(|r| !r.shared) else {
            return;
        };
        let Some(data) = packet.data.as_deref() else {
            return;
        };
        let (counter, offset) = store.next_offset();
        packet.data = Some(append_offset(data, &offset));
        let (text, attachments) = packet.encode(SioProtocol::V5);
        store.keep(
            counter,
            Arc::from(nsp),
            opts.rooms.clone(),
            opts.except.clone(),
            text,
            attachments,
            now,
        );
    }

    /// Arms `Timer::Recovery` at the next expiry, if it moved.
    fn rearm_recovery(&mut self) {
        let next = self.recovery.as_ref().and_then(Store::next_purge);
        if next == self.recovery_timer {
            return;
        }
        if let Some(t) = self.recovery_timer.take() {
            self.timers.remove(&(t, Timer::Recovery));
        }
        if let Some(t) = next {
            self.timers.insert((t, Timer::Recovery));
            self.recovery_timer = Some(t);
        }
    }

    fn next_ack_id(&mut self, nsp: &str) -> u64 {
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return 0;
        };
        let id = ns.next_ack;
        ns.next_ack = ns.next_ack.wrapping_add(1) % (1 << 53);
        id
    }

    fn expect_ack(&mut self, socket: SocketId, id: u64, deadline: Option<Instant>) {
        let Some(state) = self.sockets.get_mut(&socket) else {
            return;
        };
        if let Some(Some(old)) = state.acks.insert(id, deadline) {
            self.timers.remove(&(old, Timer::Ack(socket, id)));
        }
        if let Some(t) = deadline {
            self.timers.insert((t, Timer::Ack(socket, id)));
        }
    }

    fn new_socket_id(&mut self, sid: Sid, nsp: &str) -> SocketId {
        let protocol = self.clients.get(&sid).map(|c| c.protocol);
        if protocol == Some(SioProtocol::V4) {
            let wanted = if nsp == "/" {
                sid.as_str().to_owned()
            } else {
                format!("{nsp}#{sid}")
            };
            if let Ok(id) = SocketId::new(&wanted) {
                if !self.sockets.contains_key(&id) {
                    return id;
                }
            }
        }
        loop {
            let id = SocketId::from_ascii_trusted(self.ids.next_sid().as_str().as_bytes());
            if !self.sockets.contains_key(&id) {
                return id;
            }
        }
    }

    /// Encodes and queues one packet for a session; attachments follow as binary messages.
    fn send_packet(&mut self, sid: Sid, packet: &Packet, now: Instant) -> Result<(), SendError> {
        let protocol = self
            .clients
            .get(&sid)
            .map_or(SioProtocol::V5, |c| c.protocol);
        let (first, attachments) = self.messages(packet, protocol);
        self.engine.send(sid, first, now)?;
        for a in attachments {
            self.engine.send(sid, Message::Binary(a), now)?;
        }
        Ok(())
    }

    /// `packet` as the Engine.IO messages the server's parser writes: the first, then the
    /// attachments (always none with MessagePack, which carries them inline).
    fn messages(&self, packet: &Packet, protocol: SioProtocol) -> (Message, Vec<Bytes>) {
        match self.config.parser {
            Parser::Default => {
                let (text, attachments) = packet.encode(protocol);
                (Message::Text(text), attachments)
            }
            Parser::MsgPack => (Message::Binary(msgpack::encode(packet)), Vec::new()),
        }
    }

    /// Queues an encoded packet's text and then its attachments.
    fn send_text(
        &mut self,
        sid: Sid,
        text: Utf8Bytes,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SendError> {
        self.engine.send(sid, Message::Text(text), now)?;
        for a in attachments {
            self.engine.send(sid, Message::Binary(a), now)?;
        }
        Ok(())
    }

    /// Queues a packet kept in its protocol 5 text form (a packet a recovered socket missed),
    /// written with the server's parser.
    fn send_encoded(
        &mut self,
        sid: Sid,
        text: Utf8Bytes,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SendError> {
        if self.config.parser == Parser::MsgPack {
            let mut decoder = Decoder::new(SioProtocol::V5, usize::MAX);
            let mut decoded = decoder.decode_text(text);
            for a in attachments {
                decoded = decoder.decode_binary(a);
            }
            return match decoded {
                Ok(Some(packet)) => self.send_packet(sid, &packet, now),
                // Only packets this server encoded are kept, so they decode.
                _ => Ok(()),
            };
        }
        self.send_text(sid, text, attachments, now)
    }

    /// Queues one encoding of `packet` for every target; returns those it was queued for.
    fn send_to_all(
        &mut self,
        targets: &[SocketId],
        packet: &Packet,
        volatile: bool,
        now: Instant,
    ) -> Vec<SocketId> {
        // EVENT and ACK packets are the same in v4 and v5: one encoding serves every client.
        let (first, attachments) = self.messages(packet, SioProtocol::V5);
        let mut sent = Vec::with_capacity(targets.len());
        for socket in targets {
            let Some(state) = self.sockets.get(socket) else {
                continue;
            };
            let sid = state.sid;
            if volatile && !self.engine.is_writable(sid) {
                continue;
            }
            let mut ok = self.engine.send(sid, first.clone(), now).is_ok();
            for a in &attachments {
                ok = ok
                    && self
                        .engine
                        .send(sid, Message::Binary(a.clone()), now)
                        .is_ok();
            }
            if ok {
                sent.push(*socket);
            }
        }
        sent
    }

    fn connect_error(
        &mut self,
        sid: Sid,
        nsp: &str,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) {
        let protocol = self
            .clients
            .get(&sid)
            .map_or(SioProtocol::V5, |c| c.protocol);
        let payload = match (protocol, data) {
            // The reference sends `err.data || err.message` to protocol 4 clients.
            (SioProtocol::V4, Some(d)) if !is_falsy_json(d) => d.trim().to_owned(),
            (SioProtocol::V4, _) => json_string(message),
            (SioProtocol::V5, None) => format!("{{\"message\":{}}}", json_string(message)),
            (SioProtocol::V5, Some(d)) => {
                format!("{{\"message\":{},\"data\":{d}}}", json_string(message))
            }
        };
        let packet = Packet::connect_error(nsp, Utf8Bytes::from(payload));
        let _ = self.send_packet(sid, &packet, now);
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
                } => self.on_open(sid, protocol, *request, now),
                engine::Event::Message { sid, message } => self.on_message(sid, message, now),
                engine::Event::Upgrade { .. } => {}
                engine::Event::Close { sid, reason } => self.on_close(sid, reason, now),
            }
        }
        self.rearm_recovery();
    }

    fn on_open(&mut self, sid: Sid, protocol: Protocol, request: RequestHead, now: Instant) {
        let protocol = match protocol {
            Protocol::V3 => SioProtocol::V4,
            Protocol::V4 => SioProtocol::V5,
        };
        let handshake = Arc::new(Handshake {
            sid,
            protocol,
            request,
            issued: now,
        });
        let mut client = Client {
            protocol,
            decoder: Decoder::new(protocol, self.config.max_attachments),
            sockets: Vec::new(),
            pending: HashMap::new(),
            connect_deadline: None,
            handshake,
            closing: None,
        };
        // Armed for protocol 4 too: its implicit join of `/` is still a connect request the
        // application may leave unsettled or refuse.
        let t = now + self.config.connect_timeout;
        client.connect_deadline = Some(t);
        self.timers.insert((t, Timer::Connect(sid)));
        self.clients.insert(sid, client);
        if protocol == SioProtocol::V4 {
            // v4 clients are connected to `/` without asking.
            self.request_connect(sid, Arc::from("/"), Utf8Bytes::from_static("{}"), None, now);
        }
    }

    fn on_message(&mut self, sid: Sid, message: Message, now: Instant) {
        let Some(client) = self.clients.get_mut(&sid) else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        let decoded = match (self.config.parser, message) {
            (Parser::Default, Message::Text(text)) => client.decoder.decode_text(text),
            (Parser::Default, Message::Binary(data)) => client.decoder.decode_binary(data),
            (Parser::MsgPack, Message::Binary(data)) => {
                msgpack::decode(&data, self.config.max_attachments).map(Some)
            }
            (Parser::MsgPack, Message::Text(_)) => Err(SioDecodeError::UnexpectedText),
        };
        match decoded {
            Ok(Some(packet)) => self.on_packet(sid, packet, now),
            Ok(None) => {}
            Err(_) => self.close_client(sid, DisconnectReason::ParseError, now),
        }
    }

    fn on_packet(&mut self, sid: Sid, packet: Packet, now: Instant) {
        let Some(client) = self.clients.get(&sid) else {
            return;
        };
        let joined = client.socket(packet.nsp.as_str());
        let asked = client.pending.contains_key(packet.nsp.as_str());
        match (packet.kind, joined) {
            (PacketType::Connect, None) if !asked => {
                let auth = match client.protocol {
                    SioProtocol::V5 => packet.data.clone(),
                    SioProtocol::V4 => None,
                }
                .unwrap_or(Utf8Bytes::from_static("{}"));
                let nsp: Arc<str> = Arc::from(packet.nsp.as_str());
                if self.ensure_namespace(&nsp) {
                    self.request_connect(sid, nsp, auth, packet.query.clone(), now);
                } else {
                    self.connect_error(sid, &nsp, "Invalid namespace", None, now);
                }
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(socket)) => {
                let Some(state) = self.sockets.get(&socket) else {
                    return;
                };
                let name = packet
                    .event_name()
                    .map(|n| n.into_owned())
                    .unwrap_or_default();
                let args = packet.args().unwrap_or(Utf8Bytes::from_static("[]"));
                self.events.push_back(Event::Event {
                    socket,
                    nsp: state.nsp.clone(),
                    name,
                    args,
                    attachments: packet.attachments,
                    ack: packet.id.map(|id| AckToken { socket, id }),
                });
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(socket)) => {
                let Some(id) = packet.id else {
                    return;
                };
                let Some(state) = self.sockets.get_mut(&socket) else {
                    return;
                };
                // An ack nobody waits for (answered, timed out, or never asked) is ignored.
                let Some(deadline) = state.acks.remove(&id) else {
                    return;
                };
                if let Some(t) = deadline {
                    self.timers.remove(&(t, Timer::Ack(socket, id)));
                }
                self.events.push_back(Event::Ack {
                    socket,
                    id: AckId(id),
                    args: packet.data.unwrap_or(Utf8Bytes::from_static("[]")),
                    attachments: packet.attachments,
                });
            }
            (PacketType::Disconnect, Some(socket)) => {
                self.remove_socket(socket, DisconnectReason::ClientNamespaceDisconnect, now);
            }
            _ => {
                // A CONNECT for a namespace already joined or asked for, a CONNECT_ERROR (only
                // servers send those), or anything for a namespace not joined: the reference
                // closes the whole connection.
                self.close_client(sid, DisconnectReason::ForcedServerClose, now);
            }
        }
    }

    /// Whether `nsp` exists, creating it when a dynamic matcher takes it.
    fn ensure_namespace(&mut self, nsp: &Arc<str>) -> bool {
        if self.namespaces.contains_key(nsp) {
            return true;
        }
        let Some((_, cleanup)) = self.dynamic.iter().find(|(m, _)| m(nsp)) else {
            return false;
        };
        let cleanup = *cleanup;
        let ns = Namespace::new(cleanup, self.track_rooms);
        self.namespaces.insert(nsp.clone(), ns);
        true
    }

    fn request_connect(
        &mut self,
        sid: Sid,
        nsp: Arc<str>,
        auth: Utf8Bytes,
        query: Option<Utf8Bytes>,
        now: Instant,
    ) {
        let restored = match self.recovery.as_mut() {
            Some(r)
                if !r.shared
                    && self.clients.get(&sid).map(|c| c.protocol) == Some(SioProtocol::V5) =>
            {
                r.restore(&nsp, &auth, now)
            }
            _ => None,
        }
        // A socket of that id still connected (the old connection not closed yet) cannot be
        // restored twice.
        .filter(|r| !self.sockets.contains_key(&r.socket));
        let skip = self
            .recovery
            .as_ref()
            .is_some_and(|r| r.config.skip_middlewares);
        let Some(client) = self.clients.get_mut(&sid) else {
            return;
        };
        let id = ConnectId(self.next_connect);
        self.next_connect += 1;
        client.pending.insert(nsp.clone(), id);
        if let Some(ns) = self.namespaces.get_mut(&nsp) {
            ns.pending += 1;
        }
        self.pending.insert(
            id,
            Pending {
                sid,
                nsp: nsp.clone(),
                restored: None,
            },
        );
        let mut request = ConnectRequest {
            id,
            nsp,
            auth,
            query,
            handshake: client.handshake.clone(),
            recovered: restored.is_some(),
            session_data: restored.as_ref().and_then(|r| r.data.clone()),
            accepted: None,
        };
        let recovered = restored.is_some();
        if let Some(p) = self.pending.get_mut(&id) {
            p.restored = restored;
        }
        if recovered && skip {
            request.accepted = self.open_socket(id, now).ok();
        }
        self.events.push_back(Event::Connect(request));
    }

    /// Takes a socket out of everything, telling the application.
    fn remove_socket(&mut self, socket: SocketId, reason: DisconnectReason, now: Instant) {
        let Some(state) = self.sockets.remove(&socket) else {
            return;
        };
        let rooms = match self.namespaces.get_mut(&state.nsp) {
            Some(ns) => {
                ns.sockets.remove(&socket);
                ns.rooms.leave_all(socket)
            }
            None => Vec::new(),
        };
        if let (Some(store), Some(pid)) = (self.recovery.as_mut(), state.pid.clone()) {
            if reason.is_recoverable() {
                store.persist(socket, pid, state.nsp.clone(), rooms.clone(), now);
            }
        }
        if let Some(client) = self.clients.get_mut(&state.sid) {
            client.sockets.retain(|(_, s)| *s != socket);
        }
        self.events.push_back(Event::Disconnecting {
            socket,
            nsp: state.nsp.clone(),
            reason,
            rooms,
        });
        let mut acks: Vec<(u64, Option<Instant>)> = state.acks.into_iter().collect();
        acks.sort_unstable_by_key(|(id, _)| *id);
        for (id, deadline) in acks {
            if let Some(t) = deadline {
                self.timers.remove(&(t, Timer::Ack(socket, id)));
            }
            self.events.push_back(Event::AckFailed {
                socket,
                id: AckId(id),
                reason: AckFailure::Disconnected,
            });
        }
        self.events.push_back(Event::Disconnect {
            socket,
            nsp: state.nsp.clone(),
            reason,
        });
        self.drop_if_empty(&state.nsp);
    }

    fn drop_if_empty(&mut self, nsp: &str) {
        let empty_dynamic = self
            .namespaces
            .get(nsp)
            .is_some_and(|ns| ns.ephemeral && ns.sockets.is_empty() && ns.pending == 0);
        if empty_dynamic {
            if let Some((name, mut ns)) = self.namespaces.remove_entry(nsp) {
                // Its last rooms' deletions are still to be reported.
                let changes = ns.rooms.take_changes();
                self.orphan_room_changes
                    .extend(changes.into_iter().map(|c| (name.clone(), c)));
            }
        }
    }

    /// Forgets connect request `id` (accepted, refused, or its client gone).
    fn settle(&mut self, id: ConnectId, pending: &Pending) {
        if let Some(client) = self.clients.get_mut(&pending.sid) {
            if client.pending.get(&pending.nsp) == Some(&id) {
                client.pending.remove(&pending.nsp);
            }
        }
        if let Some(ns) = self.namespaces.get_mut(&pending.nsp) {
            ns.pending = ns.pending.saturating_sub(1);
        }
    }

    /// Closes a client's Engine.IO session on this layer's initiative. Its sockets leave at
    /// once with `reason` (the engine may need a poll, or its close timeout, to finish the
    /// session) and its pending connect requests are dropped.
    fn close_client(&mut self, sid: Sid, reason: DisconnectReason, now: Instant) {
        let Some(client) = self.clients.get_mut(&sid) else {
            return;
        };
        if client.closing.is_some() {
            return;
        }
        client.closing = Some(reason);
        self.release(sid, reason, now);
        self.engine.close(sid, now);
    }

    /// Drops everything a client holds here but the client itself: its connect timer, its
    /// pending requests, its sockets (which leave with `reason`, in join order).
    fn release(&mut self, sid: Sid, reason: DisconnectReason, now: Instant) {
        let Some(client) = self.clients.get_mut(&sid) else {
            return;
        };
        if let Some(t) = client.connect_deadline.take() {
            self.timers.remove(&(t, Timer::Connect(sid)));
        }
        let mut pending: Vec<ConnectId> = client.pending.drain().map(|(_, id)| id).collect();
        pending.sort_unstable();
        let sockets: Vec<SocketId> = client.sockets.iter().map(|(_, s)| *s).collect();
        for id in pending {
            if let Some(p) = self.pending.remove(&id) {
                if let Some(ns) = self.namespaces.get_mut(&p.nsp) {
                    ns.pending = ns.pending.saturating_sub(1);
                }
                self.drop_if_empty(&p.nsp);
            }
        }
        for socket in sockets {
            self.remove_socket(socket, reason, now);
        }
    }

    /// The engine closed a session: all its sockets leave (unless this layer closed it, in
    /// which case they left already).
    fn on_close(&mut self, sid: Sid, reason: CloseReason, now: Instant) {
        let Some(client) = self.clients.get(&sid) else {
            return;
        };
        let reason = client.closing.unwrap_or(match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            _ => DisconnectReason::TransportError,
        });
        self.release(sid, reason, now);
        self.clients.remove(&sid);
    }
}

/// Whether JSON text is a JavaScript falsy value (`err.data || err.message` picks the
/// message then).
fn is_falsy_json(json: &str) -> bool {
    matches!(json.trim(), "" | "null" | "false" | "0" | "\"\"" | "-0")
}

/// `s` as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
