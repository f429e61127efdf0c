//! The machine the driver runs: the core's Socket.IO server plus the application state that
//! lives beside it on the machine's task (sockets' handler queues, pending acknowledgements,
//! requests to the other nodes of a cluster).

use crate::ack::{AckError, AckResponse, PartialAcks};
use crate::adapter::Adapter;
use crate::driver::{Handle, Machine, Router};
use crate::extensions::Extensions;
use crate::extract::{AckSlot, EventCtx, take_ack};
use crate::handler::{BoxFuture, Reply};
use crate::handshake::Handshake;
use crate::io::{HandlerPanic, PanicPlace, ServerError};
use crate::middleware::{ConnectCtx, IncomingEvent, Next, PacketFlow, PacketMw};
use crate::namespace::ServerSideEmitError;
use crate::operators::RemoteSocket;
use crate::payload::Payload;
use crate::registry::{NsHandlers, OutgoingHook, Registry, ResultTo};
use crate::socket::Socket;
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use volley_core::cluster::{ClusterMessage, Progress, RequestKind, Requests, SocketInfo};
use volley_core::engine::{ApiMisuse, Body, Output, TransportKind, WsMessage};
use volley_core::http::{Method, RequestHead, query_pairs};
use volley_core::socketio::{
    AckFailure, AckId, BroadcastOptions, ConnectId, ConnectRequest, DisconnectReason, Event,
    MembershipChange, RestoreOutcome, Room, RoomChange, SessionState, SioError, StoredMessage,
    recovery_auth,
};
use volley_core::{ConnId, IdMap, NodeId, RequestId, Sid, SocketId, Utf8Bytes};

mod cluster;
mod command;
mod events;
mod ops;
mod owned;
mod route;
mod sending;
mod shared;
mod tasks;

pub use shared::SharedLock;

/// The Socket.IO machine the driver runs: the composition of the sessions the machine's task
/// runs, over the state every session shares.
pub type SioServer = volley_core::socketio::Server<SharedLock>;

pub(crate) use command::Command;
use ops::Ops;
pub(crate) use route::{Mailbox, Route};

use tasks::Job;

/// What handles share: the way to the machine, the handlers, the server state, the cluster.
pub(crate) struct Ctl {
    pub handle: Handle<Node>,
    pub registry: Arc<Registry>,
    pub state: Extensions,
    pub adapter: Arc<dyn Adapter>,
    pub node_id: NodeId,
    /// The `on_error` hooks.
    pub errors: RwLock<Vec<ErrorHook>>,
    /// Outgoing hooks registered on single sockets (`Socket::on_any_outgoing`), so that a
    /// broadcast looks for them only when there are some.
    pub own_outgoing: AtomicUsize,
}

/// An `Io::on_error` hook.
pub(crate) type ErrorHook = Arc<dyn Fn(&ServerError) + Send + Sync>;

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Hands a caught panic to the machine, which logs it, runs the `on_error` hooks and
/// disconnects the socket.
fn report_panic(ctl: &Ctl, route: &Route, report: HandlerPanic) {
    let cast = ctl.send(
        route,
        Command::Panic {
            report: Box::new(report),
            refuse: None,
        },
    );
    if let Err(stopped) = cast {
        tracing::error!(error = %stopped, "a handler panicked while the server stopped");
    }
}

/// Runs `fut`, application code run for `socket`: a panic in it is caught and reported
/// instead of unwinding into the task that polls it (the machine's, or the socket's). `None`
/// when it panicked.
pub(crate) fn contained<'a, T>(
    fut: impl Future<Output = T> + 'a,
    ctl: &'a Ctl,
    socket: &'a Socket,
    place: PanicPlace,
    event: &'a str,
) -> impl Future<Output = Option<T>> + 'a {
    // A plain future rather than an `async fn`, which would hold `fut` twice.
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(move |caught| match caught {
            Ok(value) => Some(value),
            Err(payload) => {
                let report = HandlerPanic {
                    socket: Some(socket.id()),
                    namespace: socket.ns().to_owned(),
                    event: event.to_owned(),
                    place,
                    message: panic_message(&*payload),
                };
                report_panic(ctl, &socket.route(), report);
                None
            }
        })
}

/// Runs the `new_namespace` hooks for `namespace`, each contained: a panic is logged and
/// handed to the `on_error` hooks.
pub(crate) fn announce_namespace(ctl: &Arc<Ctl>, namespace: crate::namespace::Namespace) {
    for hook in ctl.registry.new_namespace_hooks() {
        let run = || hook(namespace.clone());
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(run)) {
            let report = HandlerPanic {
                socket: None,
                namespace: namespace.name().unwrap_or_default().to_owned(),
                event: "new_namespace".to_owned(),
                place: PanicPlace::NewNamespace,
                message: panic_message(&*payload),
            };
            report_panic(ctl, &Route::Machine, report);
        }
    }
}

/// Tells the `on_room_membership` listeners of the joins and leaves of one step, in order,
/// each call contained: a panic is logged and handed to the `on_error` hooks.
fn announce_memberships(ctl: &Ctl, changes: &[(Arc<str>, MembershipChange)]) {
    let hooks = ctl.registry.membership_hooks();
    for (nsp, change) in changes {
        for hook in &hooks {
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(nsp, change))) {
                // An observer's fault: the socket stays connected.
                let report = HandlerPanic {
                    socket: None,
                    namespace: nsp.to_string(),
                    event: if change.joined {
                        "join-room"
                    } else {
                        "leave-room"
                    }
                    .to_owned(),
                    place: PanicPlace::RoomMembership,
                    message: panic_message(&*payload),
                };
                report_panic(ctl, &Route::Machine, report);
            }
        }
    }
}

/// A system handler's job for `socket` (`connection`, `disconnecting`, `disconnect`): `make`
/// calls the handler inside the job, so that even its synchronous part is contained.
fn guarded(
    ctl: Option<&Arc<Ctl>>,
    socket: &Socket,
    place: PanicPlace,
    event: &'static str,
    make: impl FnOnce() -> BoxFuture<()> + Send + 'static,
) -> BoxFuture<()> {
    let Some(ctl) = ctl.cloned() else {
        return make();
    };
    let socket = socket.clone();
    Box::pin(async move {
        let _ = contained(async move { make().await }, &ctl, &socket, place, event).await;
    })
}

/// How this node reaches the others: the adapter, its own id, how long requests wait.
pub(crate) struct Cluster {
    pub adapter: Arc<dyn Adapter>,
    pub node_id: NodeId,
    pub request_timeout: Duration,
}

pub(crate) type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

struct Entry {
    socket: Socket,
    /// The socket's task, once started: the queue of its handler futures, started in
    /// arrival order, and the number of jobs sent to it that have not completed yet. The
    /// task is started by the first job that has to wait (handlers that complete inline
    /// never need it), so an idle socket costs no task and no counter.
    task: Option<(mpsc::UnboundedSender<Job>, Arc<AtomicUsize>)>,
    /// The socket's task ended or may take no more work.
    closed: bool,
    /// A handler of the socket panicked: it is being disconnected, and no event of it
    /// starts a handler any more.
    failed: bool,
    /// The span the socket's handlers run in.
    span: tracing::Span,
    /// Resolves the connection middleware's innermost `next` at disconnect (none without
    /// connection middleware: nothing waits for it).
    life: Option<oneshot::Sender<DisconnectReason>>,
}

enum Waiter {
    Single(oneshot::Sender<Result<Payload, AckError>>),
    Member(u64),
    /// A socket asked by another node's broadcast: its answer goes back to that node.
    Relay {
        to: NodeId,
        request: RequestId,
    },
}

/// A broadcast with acknowledgements: this node's sockets, and the other nodes' answers.
struct Aggregate {
    /// Local sockets still to answer or fail.
    remaining: usize,
    responses: Vec<AckResponse>,
    missing: usize,
    /// The request to the other nodes, while it runs.
    remote: Option<RequestId>,
    tx: oneshot::Sender<Result<Vec<AckResponse>, PartialAcks>>,
}

/// What a request to the other nodes gathers, and where it goes once complete.
enum Collector {
    /// `fetch_sockets` in one namespace.
    Fetch {
        nsp: Arc<str>,
        sockets: Vec<RemoteSocket>,
        tx: oneshot::Sender<Vec<RemoteSocket>>,
    },
    /// `all_rooms`.
    Rooms {
        rooms: BTreeSet<Room>,
        tx: oneshot::Sender<Vec<Room>>,
    },
    /// `server_side_emit_with_ack`.
    Emit {
        responses: Vec<Payload>,
        tx: oneshot::Sender<Result<Vec<Payload>, ServerSideEmitError>>,
    },
    /// A broadcast with acknowledgements: the aggregate's key.
    Acks(u64),
}

/// A broadcast of this node waiting for the offset the adapter keeps it under, or behind one
/// that is: local delivery follows call order.
struct Queued {
    seq: u64,
    /// `None` while the adapter has not answered; then the offset, if it kept the packet.
    offset: Option<Option<String>>,
    nsp: Arc<str>,
    opts: BroadcastOptions,
    event: String,
    args: String,
    attachments: Vec<bytes::Bytes>,
    /// The broadcast's `compress` flag.
    compress: bool,
}

/// What the application state of every session shares: the handlers, the server's state,
/// the cluster, the broadcasts waiting for acknowledgements. Behind an `Arc`, so that a
/// session's application state can run wherever its session runs.
pub(crate) struct Hub {
    registry: Arc<Registry>,
    state: Extensions,
    spawn: Spawner,
    cluster: Cluster,
    /// Set once the server is started.
    ctl: std::sync::OnceLock<Arc<Ctl>>,
    /// Whether an event handler starts on the task that received its event when its socket
    /// has nothing else to run.
    inline_handlers: AtomicBool,
    /// When set, the adapter keeps the session of every connected socket for this long
    /// (written at connect and at each room change, refreshed by [`Node::refresh_live_sessions`]),
    /// so that a client whose node dies can recover on another one.
    live_sessions: std::sync::OnceLock<Duration>,
    /// Broadcasts with acknowledgements: a member's answer arrives wherever its session runs.
    aggregates: std::sync::Mutex<Aggregates>,
    /// The sessions run by their connections' tasks, by id: how broadcasts and the node's
    /// commands reach them.
    owned: RwLock<IdMap<Sid, Arc<Mailbox>>>,
    /// The sockets of those sessions, for `fetch_sockets` and the live sessions.
    owned_sockets: std::sync::Mutex<IdMap<SocketId, Socket>>,
    /// The traffic of those sessions once they ended.
    retired: std::sync::Mutex<volley_core::socketio::Traffic>,
    /// The acknowledgements those sessions await, as of their last steps.
    owned_acks: AtomicUsize,
    /// Those sessions that run in slots, over long-polling.
    slotted: AtomicUsize,
    /// Whether the adapter follows the rooms as they are created and deleted
    /// ([`Adapter::tracks_rooms`], asked once at the start).
    tracks_rooms: bool,
    /// Held while room changes are taken and handed to the adapter, by whichever task made
    /// them: the adapter hears of them one batch at a time, in the order they were made.
    room_reports: std::sync::Mutex<()>,
}

#[derive(Default)]
struct Aggregates {
    open: HashMap<u64, Aggregate>,
    next: u64,
}

impl Hub {
    fn ctl(&self) -> Option<&Arc<Ctl>> {
        self.ctl.get()
    }

    fn aggregates(&self) -> std::sync::MutexGuard<'_, Aggregates> {
        self.aggregates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a broadcast with acknowledgements; its key.
    fn open_aggregate(&self, aggregate: Aggregate) -> u64 {
        let mut all = self.aggregates();
        let key = all.next;
        all.next += 1;
        all.open.insert(key, aggregate);
        key
    }

    /// Changes broadcast `key` with `f`, then completes it if its local sockets and the
    /// other nodes are done.
    fn update_aggregate(&self, key: u64, f: impl FnOnce(&mut Aggregate)) {
        let done = {
            let mut all = self.aggregates();
            let Some(agg) = all.open.get_mut(&key) else {
                return;
            };
            f(agg);
            if agg.remaining == 0 && agg.remote.is_none() {
                all.open.remove(&key)
            } else {
                None
            }
        };
        if let Some(agg) = done {
            let result = if agg.missing == 0 {
                Ok(agg.responses)
            } else {
                Err(PartialAcks {
                    responses: agg.responses,
                    missing: agg.missing,
                })
            };
            let _ = agg.tx.send(result);
        }
    }

    fn aggregate_count(&self) -> usize {
        self.aggregates().open.len()
    }

    /// The mailbox of session `sid`, when its connection's task runs it.
    fn owned(&self, sid: Sid) -> Option<Arc<Mailbox>> {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sid)
            .cloned()
    }

    /// Every session run by a connection's task.
    fn owned_all(&self) -> Vec<Arc<Mailbox>> {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn owned_count(&self) -> usize {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn own(&self, sid: Sid, mailbox: Arc<Mailbox>) {
        self.owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid, mailbox);
    }

    /// Session `sid` no longer runs on a connection's task.
    fn forget_owned(&self, sid: Sid) {
        self.owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sid);
    }

    fn owned_sockets(&self) -> std::sync::MutexGuard<'_, IdMap<SocketId, Socket>> {
        self.owned_sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Has the machine's task look at the shared state's room and membership changes and
    /// its deadlines (changed by a session run elsewhere), when an adapter, the live
    /// sessions, membership listeners or recovery (`recovery`) follow them.
    fn nudge(&self, recovery: bool) {
        let tracks = recovery
            || self.cluster.adapter.tracks_rooms()
            || self.live_sessions.get().is_some()
            || self.registry.has_membership_hooks();
        if let (true, Some(ctl)) = (tracks, self.ctl()) {
            let _ = ctl
                .handle
                .cast(|node: &mut Node, _| node.sio.refresh_deadlines());
        }
    }

    /// Hands the rooms created and deleted so far (taken by `take`) to the adapter when it
    /// follows them. Called before the outputs of the step that made them leave, by the
    /// machine's task and by a connection's task for the session it runs, so that a client
    /// hears of its connect or join only once the adapter knows of its rooms.
    fn report_rooms(&self, take: impl FnOnce() -> Vec<(Arc<str>, RoomChange)>) {
        if !self.tracks_rooms {
            return;
        }
        let _one_at_a_time = self
            .room_reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (nsp, change) in take() {
            self.cluster.adapter.room_changed(&nsp, &change);
        }
    }

    /// Long-polling clients whose sessions run in slots.
    pub(crate) fn slotted_count(&self) -> usize {
        self.slotted.load(Ordering::Relaxed)
    }

    /// A session run by a connection's task awaits `now` acknowledgements, was `before`.
    fn count_owned_acks(&self, before: usize, now: usize) {
        if now > before {
            self.owned_acks.fetch_add(now - before, Ordering::Relaxed);
        } else {
            self.owned_acks.fetch_sub(before - now, Ordering::Relaxed);
        }
    }

    /// What the sessions run by connections' tasks that have ended exchanged.
    fn retired(&self) -> volley_core::socketio::Traffic {
        *self.retired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Session `sid`, run by its connection's task, ended having exchanged `traffic`.
    fn retire(&self, sid: Sid, traffic: &volley_core::socketio::Traffic) {
        self.forget_owned(sid);
        if let Some(ctl) = self.ctl() {
            let _ = ctl
                .handle
                .cast(move |node: &mut Node, _| node.sio.forget_detached(sid));
        }
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        add_traffic(&mut retired, traffic);
        retired.sessions_closed = retired.sessions_closed.wrapping_add(1);
    }

    /// A socket of a session run by a connection's task.
    fn owned_socket(&self, socket: SocketId) -> Option<Socket> {
        self.owned_sockets().get(&socket).cloned()
    }

    /// Publishes `message` to every other node (`to: None`) or to one.
    pub(crate) fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        crate::metrics::cluster_published(&message);
        self.cluster.adapter.publish(to, message);
    }
}

/// The application state of the sockets of some sessions (all those the machine's task
/// runs, or one session's): their handles and handler queues, the acknowledgements they
/// wait for, the `upgraded()` futures of their connections.
#[derive(Default)]
pub(crate) struct Local {
    sockets: SocketTable,
    acks: IdMap<(SocketId, u64), Waiter>,
    /// `Connection::upgraded` futures waiting for their session to run over WebSocket.
    upgrades: Vec<(Sid, oneshot::Sender<bool>)>,
}

impl Local {
    /// The state of session `sid`, whose sockets are `sockets`, taken out of these: their
    /// entries, the acknowledgements they wait for, the session's `upgraded()` waiters.
    fn take_session(&mut self, sid: Sid, sockets: &[SocketId]) -> Local {
        let mut taken = Local::default();
        for socket in sockets {
            if let Some(entry) = self.sockets.remove(socket) {
                taken.sockets.insert(*socket, entry);
            }
        }
        if !self.acks.is_empty() {
            let keys: Vec<(SocketId, u64)> = self
                .acks
                .keys()
                .filter(|(socket, _)| sockets.contains(socket))
                .copied()
                .collect();
            for key in keys {
                if let Some(waiter) = self.acks.remove(&key) {
                    taken.acks.insert(key, waiter);
                }
            }
        }
        let (theirs, ours) = std::mem::take(&mut self.upgrades)
            .into_iter()
            .partition(|(s, _)| *s == sid);
        self.upgrades = ours;
        taken.upgrades = theirs;
        taken
    }
}

/// The socket entries of a [`Local`]: a few in a vector sized to them (one session's, whose
/// client joins a namespace or two), many in a map (the machine's task's).
enum SocketTable {
    Few(Vec<(SocketId, Entry)>),
    Many(IdMap<SocketId, Entry>),
}

impl Default for SocketTable {
    fn default() -> Self {
        SocketTable::Few(Vec::new())
    }
}

impl SocketTable {
    /// Entries kept in the vector before the table becomes a map.
    const FEW: usize = 8;

    fn get(&self, id: &SocketId) -> Option<&Entry> {
        match self {
            SocketTable::Few(v) => v.iter().find(|(k, _)| k == id).map(|(_, e)| e),
            SocketTable::Many(m) => m.get(id),
        }
    }

    fn get_mut(&mut self, id: &SocketId) -> Option<&mut Entry> {
        match self {
            SocketTable::Few(v) => v.iter_mut().find(|(k, _)| k == id).map(|(_, e)| e),
            SocketTable::Many(m) => m.get_mut(id),
        }
    }

    fn insert(&mut self, id: SocketId, entry: Entry) {
        match self {
            SocketTable::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == id) {
                    slot.1 = entry;
                } else if v.len() < Self::FEW {
                    // Grown one at a time: a session's sockets are few.
                    v.reserve_exact(1);
                    v.push((id, entry));
                } else {
                    let mut m: IdMap<SocketId, Entry> = v.drain(..).collect();
                    m.insert(id, entry);
                    *self = SocketTable::Many(m);
                }
            }
            SocketTable::Many(m) => {
                m.insert(id, entry);
            }
        }
    }

    fn remove(&mut self, id: &SocketId) -> Option<Entry> {
        match self {
            SocketTable::Few(v) => {
                let i = v.iter().position(|(k, _)| k == id)?;
                let (_, entry) = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(entry)
            }
            SocketTable::Many(m) => m.remove(id),
        }
    }

    fn keys(&self) -> Box<dyn Iterator<Item = &SocketId> + '_> {
        match self {
            SocketTable::Few(v) => Box::new(v.iter().map(|(k, _)| k)),
            SocketTable::Many(m) => Box::new(m.keys()),
        }
    }

    fn len(&self) -> usize {
        match self {
            SocketTable::Few(v) => v.len(),
            SocketTable::Many(m) => m.len(),
        }
    }
}

/// One step of the application layer for the sessions of a [`Local`]: their state, what is
/// shared, and the machine that runs their sessions.
pub(crate) struct Unit<'a, O> {
    ops: &'a mut O,
    hub: &'a Hub,
    local: &'a mut Local,
    /// How commands reach these sessions.
    route: &'a Route,
}

/// The Socket.IO machine with Volley's application state. Only the driver touches it, on
/// its own task.
pub struct Node {
    pub(crate) sio: SioServer,
    hub: Arc<Hub>,
    local: Local,
    requests: Requests,
    collectors: HashMap<RequestId, Collector>,
    next_request: u64,
    /// Broadcasts waiting for their offsets (shared recovery), in call order.
    queued: VecDeque<Queued>,
    next_queued: u64,
    /// The polling GETs the machine holds, by connection, with their session.
    polls: HashMap<ConnId, Sid>,
    /// Polling sessions sent a packet with `compress(false)` since their last poll answer;
    /// `true` once a packet that allows compression was sent to them too.
    plain: HashMap<Sid, bool>,
    /// Sessions opened over WebSocket, detached for their connection's task, waiting to be
    /// handed over with the `101`.
    handover: Vec<(ConnId, Box<owned::Owned>)>,
    /// Long-polling sessions just opened, each with the connection of its handshake, to be
    /// put in a slot of their own before the handshake's answer leaves
    /// ([`Machine::take_slot`]).
    slotted: Vec<(ConnId, Box<owned::Owned>)>,
    /// WebSocket connections whose session just upgraded and may move to their task, to be
    /// offered it ([`Machine::take_offers`]).
    offers: Vec<ConnId>,
    /// Connections that asked for their session, to be answered once the machine's queues
    /// hold nothing more ([`Machine::take_adopted`]).
    adopting: Vec<ConnId>,
    /// WebSocket connections whose session upgraded but could not move yet (a connect
    /// request was pending, or a request of its long-polling days unanswered): offered it
    /// once it may.
    unsettled: Vec<ConnId>,
    /// The Socket.IO options, shared with the sessions run elsewhere.
    sio_config: Arc<volley_core::socketio::Config>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sio", &self.sio)
            .field("sockets", &self.local.sockets.len())
            .field("acks", &self.local.acks.len())
            .field("node_id", &self.hub.cluster.node_id)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    pub(crate) fn new(
        sio: SioServer,
        registry: Arc<Registry>,
        state: Extensions,
        spawn: Spawner,
        cluster: Cluster,
    ) -> Self {
        let tracks_rooms = cluster.adapter.tracks_rooms();
        let hub = Hub {
            registry,
            state,
            spawn,
            cluster,
            ctl: std::sync::OnceLock::new(),
            inline_handlers: AtomicBool::new(true),
            live_sessions: std::sync::OnceLock::new(),
            aggregates: std::sync::Mutex::default(),
            owned: RwLock::default(),
            owned_sockets: std::sync::Mutex::default(),
            retired: std::sync::Mutex::default(),
            owned_acks: AtomicUsize::new(0),
            slotted: AtomicUsize::new(0),
            tracks_rooms,
            room_reports: std::sync::Mutex::default(),
        };
        let sio_config = Arc::new(sio.config().clone());
        Node {
            sio,
            hub: Arc::new(hub),
            local: Local::default(),
            requests: Requests::new(),
            collectors: HashMap::new(),
            next_request: 0,
            queued: VecDeque::new(),
            next_queued: 0,
            polls: HashMap::new(),
            plain: HashMap::new(),
            handover: Vec::new(),
            slotted: Vec::new(),
            offers: Vec::new(),
            adopting: Vec::new(),
            unsettled: Vec::new(),
            sio_config,
        }
    }

    /// Takes a session just opened over WebSocket on `conn` out of the composition, for its
    /// connection's task. Only a protocol 5 client with nothing pending qualifies at once; a
    /// protocol 4 client's implicit connect to `/` is already under way here, and its
    /// session is offered to the connection once that is settled ([`Node::unsettled`]).
    fn detach_websocket(&mut self, conn: ConnId, now: Instant) {
        let Some(sid) = self.sio.engine().session_on(conn) else {
            return;
        };
        let fresh = self.sio.client(sid).is_some_and(|c| {
            c.protocol() == volley_core::socketio::SioProtocol::V5
                && c.pending_count() == 0
                && c.socket_count() == 0
        });
        if !fresh {
            // A protocol 4 client's implicit connect to `/` is under way here: the session
            // is offered to its connection once that is settled.
            self.unsettled.push(conn);
            return;
        }
        let Some(detached) = self.sio.detach(sid) else {
            return;
        };
        let owned = self.owned(conn, detached, now);
        self.hub.own(sid, owned.mailbox().clone());
        self.handover.push((conn, Box::new(owned)));
    }

    /// Takes a session just opened over long-polling by the handshake on `conn` out of the
    /// composition, to run in a slot of its own ([`Machine::take_slot`]). Only a protocol 5
    /// client of Engine.IO 4 qualifies: an Engine.IO 3 session (a 2.x client's implicit
    /// connect to `/`) and a JSONP one stay here.
    fn detach_polling(&mut self, conn: ConnId, now: Instant) {
        let Some(sid) = self.sio.engine().opened_on(conn) else {
            return;
        };
        let fresh = self.sio.engine().protocol(sid) == Some(volley_core::engine::Protocol::V4)
            && self.sio.client(sid).is_some_and(|c| {
                c.protocol() == volley_core::socketio::SioProtocol::V5
                    && c.pending_count() == 0
                    && c.socket_count() == 0
            });
        if !fresh {
            return;
        }
        let Some(detached) = self.sio.detach(sid) else {
            return;
        };
        let owned = self.owned(conn, detached, now).in_slot();
        self.hub.own(sid, owned.mailbox().clone());
        self.slotted.push((conn, Box::new(owned)));
    }

    /// Session `detached` of connection `conn`, to run on that connection's task over this
    /// composition's shared state.
    fn owned(
        &self,
        conn: ConnId,
        detached: volley_core::socketio::Detached,
        now: Instant,
    ) -> owned::Owned {
        let shared = self.sio.shared_access().clone();
        owned::Owned::new(
            conn,
            detached,
            shared,
            self.sio_config.clone(),
            self.hub.clone(),
            now,
        )
    }

    /// The session on WebSocket connection `conn` when it may move to that connection's
    /// task: open, held by that WebSocket alone (no request of its long-polling days
    /// unanswered), with no connect request pending (a protocol 4 client's implicit connect
    /// to `/` included).
    fn movable(&self, conn: ConnId) -> Option<Sid> {
        let engine = self.sio.engine();
        let sid = engine.session_on(conn)?;
        let session = engine.session(sid)?;
        let alone = session.transport() == TransportKind::WebSocket
            && !session.is_closing()
            && session
                .connections()
                .all(|(c, role)| c == conn && role == volley_core::engine::ConnRole::WebSocket);
        let settled = self.sio.client(sid)?.pending_count() == 0;
        (alone && settled).then_some(sid)
    }

    /// Offers `conn` its session if it may move now; if the session runs over `conn` but
    /// may not move yet, keeps `conn` to offer it later.
    fn offer_or_wait(&mut self, conn: ConnId) {
        if self.movable(conn).is_some() {
            self.offers.push(conn);
        } else if self.carries(conn) {
            self.unsettled.push(conn);
        }
    }

    /// Whether `conn` is the WebSocket of an open session here.
    fn carries(&self, conn: ConnId) -> bool {
        let engine = self.sio.engine();
        engine
            .session_on(conn)
            .is_some_and(|sid| engine.transport(sid) == Some(TransportKind::WebSocket))
    }

    /// Moves the session on `conn` to that connection's task, when it still may
    /// ([`movable`](Self::movable)): its Engine.IO session and Socket.IO client, and the
    /// application state of its sockets (their handles, handler queues, the
    /// acknowledgements they wait for, `upgraded()` waiters). Their handles send their
    /// commands through its mailbox from now on; what they sent here before was applied
    /// here, and what reaches this task later is handed on after it.
    fn adopt(&mut self, conn: ConnId, now: Instant) -> Option<Box<owned::Owned>> {
        let sid = self.movable(conn)?;
        let detached = self.sio.detach(sid)?;
        let sockets: Vec<SocketId> = detached.client.sockets().map(|(_, s)| s).collect();
        let local = self.local.take_session(sid, &sockets);
        self.plain.remove(&sid);
        let owned = self.owned(conn, detached, now);
        let mailbox = owned.mailbox().clone();
        {
            let mut table = self.hub.owned_sockets();
            for socket in &sockets {
                if let Some(entry) = local.sockets.get(socket) {
                    entry.socket.moved_to(&mailbox);
                    table.insert(*socket, entry.socket.clone());
                }
            }
        }
        self.hub.own(sid, mailbox);
        Some(Box::new(owned.with_local(local)))
    }

    /// The mailbox of the task that runs the session of `socket`, when it is not this
    /// machine.
    fn owner_of(&self, socket: SocketId) -> Option<Arc<Mailbox>> {
        let sid = self.sio.session_of(socket)?;
        if self.sio.engine().transport(sid).is_some() {
            return None;
        }
        self.hub.owned(sid)
    }

    /// Hands the broadcast copies for sessions run elsewhere to their tasks; `ask`, who
    /// waits for their acknowledgements. Returns how many sockets they were handed for.
    ///
    /// A copy for one socket of an idle session, with no acknowledgement asked and no
    /// outgoing hook to run, goes straight into its connection's outbox
    /// ([`Mailbox::express`]); the others go to the owners' mailboxes. The shared state is
    /// held meanwhile, so a socket that left since the broadcast selected it (its session
    /// ran a step) gets no copy this way. `compress`: the broadcast's `compress` flag, which
    /// a long-polling session's poll answer follows.
    fn hand_off(
        &mut self,
        ask: Option<owned::Ask>,
        hooks: Option<Arc<(String, Payload)>>,
        receipt: Option<&Arc<owned::Receipt>>,
        compress: bool,
        now: Instant,
    ) -> usize {
        let handoffs = self.sio.take_handoffs();
        if handoffs.is_empty() {
            return 0;
        }
        // A copy may reach its client at once: what was changed before goes first, reported
        // once for every copy below.
        self.report_room_changes();
        let mut handed = 0;
        let mut expressed = 0;
        let mut gone = Vec::new();
        let mut full = Vec::new();
        let mut counts = crate::driver::metrics::WsCounts::default();
        let hub = self.hub.clone();
        let shared = self.sio.shared_access().clone();
        volley_core::socketio::SharedAccess::read(&shared, |s| {
            // One loan of the table for the whole broadcast.
            let table = hub.owned.read().unwrap_or_else(PoisonError::into_inner);
            for mut handoff in handoffs {
                let targets = std::mem::take(&mut handoff.targets);
                let handoff = Arc::new(handoff);
                let plain = ask.is_none() && hooks.is_none() && !handoff.volatile;
                // The frames of an express copy, encoded once for all of them (only an
                // Engine.IO 4 session opens an express lane).
                let mut frames = Vec::new();
                for (socket, sid) in targets {
                    handed += 1;
                    let mailbox = table.get(&sid);
                    if let (true, Some(mailbox)) = (plain, mailbox) {
                        if frames.is_empty() {
                            frames = express_frames(&handoff);
                        }
                        // Looked up again only if a socket left since the selection.
                        let still = s.namespaces().departures() == handoff.departures
                            || s.namespaces().session_of(socket) == Some(sid);
                        if still && mailbox.express(&frames, &mut counts) {
                            expressed += 1;
                            continue;
                        }
                    }
                    if let Some(receipt) = receipt {
                        receipt.expect();
                    }
                    let command = Command::Deliver {
                        handoff: handoff.clone(),
                        socket,
                        ask: ask.clone(),
                        hooks: hooks.clone(),
                        receipt: receipt.cloned(),
                        plain: !compress,
                    };
                    let Some(mailbox) = mailbox else {
                        gone.push(command);
                        continue;
                    };
                    match mailbox.push(command) {
                        Ok(()) => {}
                        Err(route::Refused::Gone(command)) => gone.push(command),
                        Err(route::Refused::Full(command)) => {
                            full.push((mailbox.clone(), command));
                        }
                    }
                }
            }
        });
        counts.report();
        if let (Some(receipt), true) = (receipt, expressed > 0) {
            receipt.expect();
            receipt.settle(crate::operators::Broadcasted {
                queued: expressed,
                ..Default::default()
            });
        }
        // Gone meanwhile: the unit counts their copies missing.
        for command in gone {
            self.unit().apply(command, now);
        }
        for (mailbox, command) in full {
            self.refuse_full(&mailbox, command, now);
        }
        handed
    }

    /// Hands the room changes of what was applied so far to the adapter, and the joins and
    /// leaves to the membership listeners and the live sessions: before the step's outputs,
    /// and before a command goes on to a session run elsewhere (an acknowledgement after a
    /// join then reaches its client once the adapter knows of the room).
    pub(super) fn report_room_changes(&mut self) {
        self.hub.report_rooms(|| self.sio.take_room_changes());
        let memberships = self.sio.take_membership_changes();
        if let (false, Some(ctl)) = (memberships.is_empty(), self.hub.ctl()) {
            announce_memberships(ctl, &memberships);
        }
        if self.hub.live_sessions.get().is_some() && !memberships.is_empty() {
            let mut changed: Vec<SocketId> = memberships.iter().map(|(_, c)| c.socket).collect();
            changed.sort_unstable();
            changed.dedup();
            // The sockets of sessions run elsewhere are written by their own tasks, which
            // hold their data.
            changed.retain(|&socket| match self.owner_of(socket) {
                Some(mailbox) => {
                    let sockets = Some(vec![socket]);
                    let _ = mailbox.push(Command::PersistLive { sockets });
                    false
                }
                None => true,
            });
            self.unit().persist_live(changed);
        }
    }

    /// Takes the session to hand to `conn`'s task with its `101`, if there is one.
    fn take_handover(&mut self, conn: ConnId) -> Option<Box<owned::Owned>> {
        let i = self.handover.iter().position(|(c, _)| *c == conn)?;
        Some(self.handover.swap_remove(i).1)
    }

    /// Hands `command` to the session run elsewhere behind `mailbox`, after the room changes
    /// made so far ([`report_room_changes`](Self::report_room_changes)): nothing the session
    /// sends after it can reach its client before the adapter knows of them. Handed back
    /// when that session's task has ended. Every command for such a session goes this way,
    /// but those handed on in a batch after one report for them all (a broadcast's copies in
    /// [`hand_off`](Self::hand_off), a command to every session in
    /// [`command_owned`](Self::command_owned)) and the live sessions to persist that the
    /// report itself sends.
    // The command is handed back whole, on the rare path, for the machine to answer.
    #[allow(clippy::result_large_err)]
    pub(super) fn hand_to_owner(
        &mut self,
        mailbox: &Mailbox,
        command: Command,
        now: Instant,
    ) -> Result<(), Command> {
        self.report_room_changes();
        match mailbox.push(command) {
            Ok(()) => Ok(()),
            Err(route::Refused::Gone(command)) => Err(command),
            Err(route::Refused::Full(command)) => {
                self.refuse_full(mailbox, command, now);
                Ok(())
            }
        }
    }

    /// Applies the overflow policy to `command`, whose packet the full `mailbox` refused:
    /// it is answered as a full queue answers, and under `OverflowPolicy::Close` the
    /// session's task closes the session as a slow client.
    fn refuse_full(&mut self, mailbox: &Mailbox, command: Command, now: Instant) {
        if self.sio.engine().config().overflow == volley_core::engine::OverflowPolicy::Close {
            let _ = mailbox.push(Command::Overflowed);
        }
        self.unit().refuse(command, now);
    }

    /// Sends `command` to every session run by a connection's task.
    pub(crate) fn command_owned(&mut self, mut command: impl FnMut() -> Command) {
        self.report_room_changes();
        for mailbox in self.hub.owned_all() {
            let _ = mailbox.push(command());
        }
    }

    /// Every connection closes: every socket leaves with "server shutting down".
    pub(crate) fn close_all(&mut self, now: Instant) {
        self.sio.close_all(now);
        self.command_owned(|| Command::Shutdown);
    }

    /// Clients connected over long-polling, here and in slots.
    pub(crate) fn polling_client_count(&self) -> usize {
        self.sio.polling_client_count() + self.hub.slotted_count()
    }

    /// Open Engine.IO sessions, here and on the connections' tasks.
    pub fn session_count(&self) -> usize {
        self.sio.engine().session_count() + self.hub.owned_count()
    }

    /// Socket.IO clients (sessions), here and on the connections' tasks.
    pub fn client_count(&self) -> usize {
        self.sio.client_count() + self.hub.owned_count()
    }

    /// The application layer of the sessions this machine runs, for one step.
    pub(crate) fn unit(&mut self) -> Unit<'_, SioServer> {
        Unit {
            ops: &mut self.sio,
            hub: &self.hub,
            local: &mut self.local,
            route: &Route::Machine,
        }
    }

    /// The handles' way to the server, once it is started.
    pub(crate) fn set_ctl(&mut self, ctl: Arc<Ctl>) {
        let _ = self.hub.ctl.set(ctl);
    }

    fn ctl(&self) -> Option<&Arc<Ctl>> {
        self.hub.ctl()
    }

    /// Has the adapter keep the session of every connected socket for `ttl` (see
    /// `live_sessions`).
    pub(crate) fn keep_live_sessions(&mut self, ttl: Duration) {
        let _ = self.hub.live_sessions.set(ttl);
        self.sio.track_memberships(true);
    }

    /// Writes every connected socket's live session again, before the last write expires.
    pub(crate) fn refresh_live_sessions(&mut self) {
        let all: Vec<SocketId> = self.local.sockets.keys().copied().collect();
        self.unit().persist_live(all);
        self.command_owned(|| Command::PersistLive { sockets: None });
    }

    /// Whether event handlers start on the machine's task (see
    /// [`Builder::inline_handlers`](crate::Builder::inline_handlers)).
    pub(crate) fn set_inline_handlers(&mut self, inline: bool) {
        self.hub.inline_handlers.store(inline, Ordering::Relaxed);
    }

    /// This node's id in its cluster.
    pub fn node_id(&self) -> NodeId {
        self.hub.cluster.node_id
    }

    /// Requests to the other nodes of the cluster still waiting for answers, plus what
    /// gathers their answers. Zero once every request has completed or timed out.
    pub fn pending_request_count(&self) -> usize {
        self.requests.len() + self.collectors.len()
    }

    /// The core machine (counts, rooms).
    pub fn sio(&self) -> &SioServer {
        &self.sio
    }

    /// Acknowledgements still awaited: the futures waiting (one per socket asked, plus one
    /// per broadcast) and the core's pending entries, here and in the sessions run by their
    /// connections' tasks (as of their last steps). Zero once every client has gone.
    pub fn pending_ack_count(&self) -> usize {
        self.local.acks.len()
            + self.hub.aggregate_count()
            + self.sio.pending_ack_count()
            + self.hub.owned_acks.load(Ordering::Relaxed)
    }

    /// Sockets this layer holds a handle and a handler queue for (the core's
    /// [`socket_count`](SioServer::socket_count) once their disconnects are handled).
    pub fn tracked_socket_count(&self) -> usize {
        self.local.sockets.len() + self.hub.owned_sockets().len()
    }

    /// The traffic of the sessions here, and of those run by their connections' tasks.
    pub(crate) fn traffic(&self) -> volley_core::socketio::Traffic {
        let mut total = self.sio.traffic();
        add_traffic(&mut total, &self.hub.retired());
        for mailbox in self.hub.owned_all() {
            add_traffic(&mut total, &mailbox.traffic());
        }
        total
    }

    /// Handles one event of the core machine (the driver's event callback).
    pub(crate) fn dispatch(&mut self, event: Event, now: Instant) {
        self.unit().dispatch(event, now);
    }

    fn check_upgrades(&mut self) {
        self.unit().check_upgrades();
    }
}

impl<O: Ops> Unit<'_, O> {
    /// Writes the live session of each of `sockets` still connected to the adapter's store.
    pub(super) fn persist_live(&self, sockets: impl IntoIterator<Item = SocketId>) {
        let Some(&ttl) = self.hub.live_sessions.get() else {
            return;
        };
        for socket in sockets {
            let Some(mut session) = self.ops.live_session(socket) else {
                continue;
            };
            if let Some(entry) = self.local.sockets.get(&socket) {
                if let Some(data) = entry.socket.data().get::<serde_json::Value>() {
                    session.data = Some(Utf8Bytes::from(data.to_string()));
                }
            }
            self.hub.cluster.adapter.persist_session(session, ttl);
        }
    }

    /// Accepts a pending connection: the socket, its handler queue, its `connection`
    /// handlers queued first. `life`, when connection middleware waits for the socket's
    /// disconnect, resolves then.
    pub(crate) fn accept(
        &mut self,
        request: ConnectId,
        handshake: Handshake,
        data: Extensions,
        ns: Arc<NsHandlers>,
        life: Option<oneshot::Sender<DisconnectReason>>,
        now: Instant,
    ) -> Result<Socket, SioError> {
        let Some(ctl) = self.hub.ctl().cloned() else {
            return Err(SioError::UnknownConnect(request));
        };
        let recovered = self.ops.is_recovering(request);
        let id = self.ops.accept(request, now)?;
        Ok(self.attach(id, handshake, data, ns, life, ctl, recovered))
    }

    /// Gives socket `id`, accepted by the core, its handle and handler queue, its
    /// `connection` handlers queued first.
    #[allow(clippy::too_many_arguments)]
    fn attach(
        &mut self,
        id: SocketId,
        handshake: Handshake,
        data: Extensions,
        ns: Arc<NsHandlers>,
        life: Option<oneshot::Sender<DisconnectReason>>,
        ctl: Arc<Ctl>,
        recovered: bool,
    ) -> Socket {
        let route = self.route.clone();
        let socket = Socket::new(
            id,
            handshake,
            data,
            ctl.clone(),
            ns.clone(),
            recovered,
            route,
        );
        // Every handler of the socket runs inside its span (sid, namespace, transport).
        let span = tracing::debug_span!(
            "socket",
            id = %id,
            nsp = %socket.ns(),
            sid = tracing::field::Empty,
            transport = tracing::field::Empty,
        );
        if let Some(sid) = self.ops.session_of(id) {
            span.record("sid", tracing::field::display(sid));
            if let Some(t) = self.ops.transport(sid) {
                span.record("transport", tracing::field::debug(t));
            }
        }
        let mut entry = Entry {
            socket: socket.clone(),
            task: None,
            closed: false,
            failed: false,
            span,
            life,
        };
        for hook in ns.connection() {
            let s = socket.clone();
            let job = guarded(
                Some(&ctl),
                &socket,
                PanicPlace::Connection,
                "connection",
                move || hook(s),
            );
            entry.push(Job::Barrier(job), &self.hub.spawn);
        }
        if let Route::Owned(_) = self.route {
            self.hub.owned_sockets().insert(id, socket.clone());
            self.hub.nudge(false);
        }
        self.local.sockets.insert(id, entry);
        crate::metrics::socket_connected(
            id,
            socket.ns(),
            self.ops.namespace_socket_count(socket.ns()),
        );
        socket
    }
}

impl Machine for Node {
    type Event = Event;
    type Misuse = ApiMisuse;

    fn owns(&self, head: &RequestHead) -> bool {
        self.sio.owns(head)
    }

    fn router(&self) -> Router {
        let config = self.sio.config().engine.clone();
        Router::new(move |head: &RequestHead| config.matches_path(head.path()))
    }

    fn max_message_size(&self) -> usize {
        self.sio.config().engine.max_payload
    }

    fn max_buffered_bytes(&self) -> usize {
        self.sio.config().engine.max_buffered_bytes
    }

    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        // A GET's query, read once: a poll (its answer may have to stay uncompressed, see
        // `compress(false)`), or a handshake whose session leaves the composition, over
        // WebSocket for its connection's task, over long-polling (not JSONP) for a slot.
        let (mut handshake, mut polling) = (false, false);
        if head.method() == Method::Get {
            let (mut transport, mut named, mut sid, mut jsonp) = (None, false, None, false);
            for (k, v) in query_pairs(head.query()) {
                match &*k {
                    "transport" => transport = Some(v),
                    "sid" => (named, sid) = (true, Sid::new(&v).ok()),
                    "j" => jsonp = true,
                    _ => {}
                }
            }
            match (transport.as_deref(), sid) {
                (Some("polling"), Some(sid)) => {
                    self.polls.insert(conn, sid);
                }
                (Some("websocket"), _) => handshake = !named,
                (Some("polling"), None) => polling = !named && !jsonp,
                _ => {}
            }
        }
        let result = self.sio.handle_request(conn, head, now);
        if handshake {
            self.detach_websocket(conn, now);
        } else if polling {
            self.detach_polling(conn, now);
        }
        self.check_upgrades();
        result
    }

    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        let result = self.sio.handle_body(conn, body, now);
        self.check_upgrades();
        result
    }

    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        // The upgrade packet: the session may now move to the WebSocket's task.
        let upgrade = matches!(&message, WsMessage::Text(text) if text.is("5"));
        let result = self.sio.handle_ws_message(conn, message, now);
        self.check_upgrades();
        if upgrade {
            self.offer_or_wait(conn);
        }
        result
    }

    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        self.sio.handle_ws_drained(conn, now)
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.sio.handle_conn_closed(conn, error, now);
        self.polls.remove(&conn);
        // A session whose handshake's answer can no longer leave ends here (its drop).
        self.slotted.retain(|(c, _)| *c != conn);
        self.check_upgrades();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sio.handle_timeout(now);
        self.check_upgrades();
        if !self.plain.is_empty() {
            let engine = self.sio.engine();
            self.plain.retain(|sid, _| {
                engine.transport(*sid) == Some(TransportKind::Polling) && engine.contains(*sid)
            });
        }
        for expired in self.requests.expire(now) {
            crate::metrics::cluster_timeout(expired.kind);
            self.finish_request(expired.id, expired.nodes_left, expired.acks_left);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        // Room changes go to the adapter before the outputs of the same step, so that a room
        // is subscribed to before anything can be published to it.
        self.report_room_changes();
        let mut output = self.sio.poll_output()?;
        if let Output::Response { conn, response } = &mut output {
            if let Some(sid) = self.polls.remove(conn) {
                if self.plain.remove(&sid) == Some(false) {
                    // Only packets sent with `compress(false)`: the driver leaves it as it is.
                    response
                        .headers
                        .push((crate::driver::UNCOMPRESSED, String::new()));
                }
            }
        }
        Some(output)
    }

    fn poll_event(&mut self) -> Option<Event> {
        // Called at least once per drain, after the commands of the turn.
        self.unit().report_refused();
        self.sio.poll_event()
    }

    fn session_count(&self) -> Option<usize> {
        Some(Node::session_count(self))
    }

    fn take_owned(&mut self, conn: ConnId) -> Option<Box<dyn crate::driver::OwnedSession>> {
        if self.handover.is_empty() {
            return None;
        }
        self.take_handover(conn)
            .map(|o| o as Box<dyn crate::driver::OwnedSession>)
    }

    fn take_slot(&mut self, conn: ConnId) -> Option<(Sid, Box<dyn crate::driver::OwnedSession>)> {
        let i = self.slotted.iter().position(|(c, _)| *c == conn)?;
        let owned = self.slotted.swap_remove(i).1;
        Some((owned.sid(), owned as Box<dyn crate::driver::OwnedSession>))
    }

    fn slot_config(&self) -> Option<volley_core::engine::Config> {
        Some(self.sio.engine().config().clone())
    }

    fn take_offers(&mut self, into: &mut Vec<ConnId>) {
        for conn in std::mem::take(&mut self.unsettled) {
            self.offer_or_wait(conn);
        }
        into.append(&mut self.offers);
    }

    fn handle_adopt(&mut self, conn: ConnId, _now: Instant) {
        self.adopting.push(conn);
    }

    fn take_adopted(
        &mut self,
        now: Instant,
    ) -> Option<(ConnId, Option<Box<dyn crate::driver::OwnedSession>>)> {
        let conn = self.adopting.pop()?;
        let owned = self.adopt(conn, now);
        if owned.is_none() && self.carries(conn) {
            // Asked for too early: offered again once it may move.
            self.unsettled.push(conn);
        }
        Some((
            conn,
            owned.map(|o| o as Box<dyn crate::driver::OwnedSession>),
        ))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.sio.poll_timeout(), self.requests.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Adds `more` to `total`.
fn add_traffic(total: &mut volley_core::socketio::Traffic, more: &volley_core::socketio::Traffic) {
    total.sessions_opened = total.sessions_opened.wrapping_add(more.sessions_opened);
    total.sessions_closed = total.sessions_closed.wrapping_add(more.sessions_closed);
    total.packets_received = total.packets_received.wrapping_add(more.packets_received);
    total.packets_sent = total.packets_sent.wrapping_add(more.packets_sent);
    total.bytes_received = total.bytes_received.wrapping_add(more.bytes_received);
    total.bytes_sent = total.bytes_sent.wrapping_add(more.bytes_sent);
}

/// How a socket of this node is described to the others: its data is the
/// `serde_json::Value` stored in its [`data`](Socket::data), `null` when none.
fn socket_info(socket: &Socket, rooms: &[Room]) -> SocketInfo {
    let data = socket
        .data()
        .get::<serde_json::Value>()
        .unwrap_or(serde_json::Value::Null);
    SocketInfo {
        id: socket.id().to_string(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        data: data.to_string(),
        handshake: socket.handshake().to_info(),
    }
}

/// The WebSocket frames of a broadcast's copy for an Engine.IO 4 session: its packet, then
/// its attachments.
fn express_frames(handoff: &volley_core::socketio::Handoff) -> Vec<WsMessage> {
    let packet = volley_core::engine::Packet::Message(handoff.first.clone());
    std::iter::once(packet.to_ws(volley_core::engine::Protocol::V4))
        .chain(handoff.attachments.iter().cloned().map(WsMessage::Binary))
        .collect()
}
