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
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use volley_core::cluster::{ClusterMessage, Progress, RequestKind, Requests, SocketInfo};
use volley_core::engine::{ApiMisuse, Body, Output, TransportKind, WsMessage};
use volley_core::http::{Method, RequestHead, query_pairs};
use volley_core::socketio::{
    AckFailure, AckId, BroadcastOptions, ConnectId, ConnectRequest, DisconnectReason, Event,
    MembershipChange, RestoreOutcome, Room, Server as SioServer, SessionState, SioError,
    StoredMessage, recovery_auth,
};
use volley_core::{ConnId, IdMap, NodeId, RequestId, Sid, SocketId, Utf8Bytes};

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
fn report_panic(ctl: &Ctl, report: HandlerPanic) {
    let cast = ctl
        .handle
        .cast(move |node: &mut Node, now| node.on_panic(report, now));
    if let Err(stopped) = cast {
        tracing::error!(error = %stopped, "a handler panicked while the server stopped");
    }
}

/// Runs `fut`, application code run for `socket`: a panic in it is caught and reported
/// instead of unwinding into the task that polls it (the machine's, or the socket's). `None`
/// when it panicked.
pub(crate) async fn contained<T>(
    fut: impl Future<Output = T>,
    ctl: &Ctl,
    socket: &Socket,
    place: PanicPlace,
    event: &str,
) -> Option<T> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(value) => Some(value),
        Err(payload) => {
            let report = HandlerPanic {
                socket: Some(socket.id()),
                namespace: socket.ns().to_owned(),
                event: event.to_owned(),
                place,
                message: panic_message(&*payload),
            };
            report_panic(ctl, report);
            None
        }
    }
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
            report_panic(ctl, report);
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
                report_panic(ctl, report);
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
    /// Handler futures of this socket, started in arrival order, by the socket's task. The
    /// task is started by the first job that has to wait (handlers that complete inline
    /// never need it), so an idle socket costs no task.
    queue: Option<mpsc::UnboundedSender<Job>>,
    /// The socket's task ended or may take no more work.
    closed: bool,
    /// A handler of the socket panicked: it is being disconnected, and no event of it
    /// starts a handler any more.
    failed: bool,
    /// Starts the socket's task.
    spawn: Spawner,
    /// Jobs sent to `queue` that have not completed yet.
    jobs: Arc<AtomicUsize>,
    /// The span the socket's handlers run in.
    span: tracing::Span,
    /// Resolves the connection middleware's innermost `next` at disconnect.
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
}

/// The Socket.IO machine with Volley's application state. Only the driver touches it, on
/// its own task.
pub struct Node {
    pub(crate) sio: SioServer,
    registry: Arc<Registry>,
    state: Extensions,
    spawn: Spawner,
    pub(crate) ctl: Option<Arc<Ctl>>,
    sockets: IdMap<SocketId, Entry>,
    acks: IdMap<(SocketId, u64), Waiter>,
    aggregates: HashMap<u64, Aggregate>,
    next_aggregate: u64,
    cluster: Cluster,
    requests: Requests,
    collectors: HashMap<RequestId, Collector>,
    next_request: u64,
    /// Broadcasts waiting for their offsets (shared recovery), in call order.
    queued: VecDeque<Queued>,
    next_queued: u64,
    /// Whether an event handler starts on this task when its socket has nothing else to run.
    inline_handlers: bool,
    /// `Connection::upgraded` futures waiting for their session to run over WebSocket.
    upgrades: Vec<(Sid, oneshot::Sender<bool>)>,
    /// The polling GETs the machine holds, by connection, with their session.
    polls: HashMap<ConnId, Sid>,
    /// Polling sessions sent a packet with `compress(false)` since their last poll answer;
    /// `true` once a packet that allows compression was sent to them too.
    plain: HashMap<Sid, bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sio", &self.sio)
            .field("sockets", &self.sockets.len())
            .field("acks", &self.acks.len())
            .field("node_id", &self.cluster.node_id)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

/// One piece of work for a socket's task.
enum Job {
    /// An event handler: it starts after everything queued before it has started, then runs
    /// beside the others.
    Handler(BoxFuture<()>),
    /// A system handler (`connection`, `disconnecting`, `disconnect`): it starts likewise,
    /// and nothing queued after it starts before it has completed, so a `connection` handler
    /// that awaits its set-up still runs before the socket's first event.
    Barrier(BoxFuture<()>),
}

impl Entry {
    /// Hands `job` to the socket's task, starting it if it is not running yet.
    fn push(&mut self, job: Job) {
        if self.closed {
            return;
        }
        let queue = self.queue.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded();
            (self.spawn)(Box::pin(tracing::Instrument::instrument(
                socket_task(rx, self.jobs.clone()),
                self.span.clone(),
            )));
            tx
        });
        self.jobs.fetch_add(1, Ordering::AcqRel);
        if queue.unbounded_send(job).is_err() {
            self.jobs.fetch_sub(1, Ordering::AcqRel);
            self.closed = true;
        }
    }

    /// Whether the socket's handlers no longer run (its task ended after a panic).
    fn is_closed(&self) -> bool {
        self.closed || self.queue.as_ref().is_some_and(|q| q.is_closed())
    }

    /// Takes no more work: what is queued finishes, nothing new starts.
    fn close(&mut self) {
        self.closed = true;
        if let Some(q) = &self.queue {
            q.close_channel();
        }
    }
}

/// Runs a socket's handler futures: each starts in the order its event arrived, and they
/// then proceed concurrently (as Node's listeners do once they await), except that a
/// [`Job::Barrier`] holds back what follows it until it completes.
///
/// `jobs` counts the jobs received and not completed (the sender counts them in).
async fn socket_task(mut queue: mpsc::UnboundedReceiver<Job>, jobs: Arc<AtomicUsize>) {
    let drive = |running: &mut FuturesUnordered<BoxFuture<()>>, cx: &mut Context<'_>| {
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
            jobs.fetch_sub(1, Ordering::AcqRel);
        }
    };
    let mut running = FuturesUnordered::new();
    let mut barrier: Option<BoxFuture<()>> = None;
    let mut open = true;
    futures::future::poll_fn(|cx| {
        loop {
            if let Some(b) = barrier.as_mut() {
                if b.as_mut().poll(cx).is_pending() {
                    break;
                }
                barrier = None;
                jobs.fetch_sub(1, Ordering::AcqRel);
            }
            if !open {
                break;
            }
            match queue.poll_next_unpin(cx) {
                Poll::Ready(Some(Job::Handler(f))) => running.push(f),
                Poll::Ready(Some(Job::Barrier(f))) => {
                    // What came before starts first.
                    drive(&mut running, cx);
                    barrier = Some(f);
                }
                Poll::Ready(None) => open = false,
                Poll::Pending => break,
            }
        }
        drive(&mut running, cx);
        if !open && barrier.is_none() && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

impl Node {
    pub(crate) fn new(
        sio: SioServer,
        registry: Arc<Registry>,
        state: Extensions,
        spawn: Spawner,
        cluster: Cluster,
    ) -> Self {
        Node {
            sio,
            registry,
            state,
            spawn,
            ctl: None,
            sockets: IdMap::default(),
            acks: IdMap::default(),
            aggregates: HashMap::new(),
            next_aggregate: 0,
            cluster,
            requests: Requests::new(),
            collectors: HashMap::new(),
            next_request: 0,
            queued: VecDeque::new(),
            next_queued: 0,
            inline_handlers: true,
            upgrades: Vec::new(),
            polls: HashMap::new(),
            plain: HashMap::new(),
        }
    }

    /// Whether event handlers start on the machine's task (see
    /// [`Builder::inline_handlers`](crate::Builder::inline_handlers)).
    pub(crate) fn set_inline_handlers(&mut self, inline: bool) {
        self.inline_handlers = inline;
    }

    /// This node's id in its cluster.
    pub fn node_id(&self) -> NodeId {
        self.cluster.node_id
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

    /// Acknowledgements still awaited: the futures waiting here (one per socket asked, plus
    /// one per broadcast) and the core's pending entries. Zero once every client has gone.
    pub fn pending_ack_count(&self) -> usize {
        self.acks.len() + self.aggregates.len() + self.sio.pending_ack_count()
    }

    /// Sockets this layer holds a handle and a handler queue for (the core's
    /// [`socket_count`](SioServer::socket_count) once their disconnects are handled).
    pub fn tracked_socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Accepts a pending connection: the socket, its handler queue, its `connection`
    /// handlers queued first.
    pub(crate) fn accept(
        &mut self,
        request: ConnectId,
        handshake: Handshake,
        data: Extensions,
        ns: Arc<NsHandlers>,
        life: oneshot::Sender<DisconnectReason>,
        now: Instant,
    ) -> Result<Socket, SioError> {
        let Some(ctl) = self.ctl.clone() else {
            return Err(SioError::UnknownConnect(request));
        };
        let recovered = self.sio.is_recovering(request);
        let id = self.sio.accept(request, now)?;
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
        life: oneshot::Sender<DisconnectReason>,
        ctl: Arc<Ctl>,
        recovered: bool,
    ) -> Socket {
        let socket = Socket::new(id, handshake, data, ctl.clone(), ns.clone(), recovered);
        // Every handler of the socket runs inside its span (sid, namespace, transport).
        let span = tracing::debug_span!(
            "socket",
            id = %id,
            nsp = %socket.ns(),
            sid = tracing::field::Empty,
            transport = tracing::field::Empty,
        );
        if let Some(sid) = self.sio.session_of(id) {
            span.record("sid", tracing::field::display(sid));
            if let Some(t) = self.sio.engine().transport(sid) {
                span.record("transport", tracing::field::debug(t));
            }
        }
        let jobs = Arc::new(AtomicUsize::new(0));
        let mut entry = Entry {
            socket: socket.clone(),
            queue: None,
            closed: false,
            failed: false,
            spawn: self.spawn.clone(),
            jobs,
            span,
            life: Some(life),
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
            entry.push(Job::Barrier(job));
        }
        self.sockets.insert(id, entry);
        crate::metrics::socket_connected(
            id,
            socket.ns(),
            self.sio.namespace_socket_count(socket.ns()),
        );
        socket
    }

    /// Sends `event` to `socket` asking for an acknowledgement; `tx` gets the answer, or why
    /// none will come.
    pub(crate) fn emit_with_ack(
        &mut self,
        socket: SocketId,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
        tx: oneshot::Sender<Result<Payload, AckError>>,
        now: Instant,
    ) {
        self.note_send(socket, true);
        let (json, attachments) = payload.into_wire();
        match self
            .sio
            .emit_with_ack(socket, event, &json, attachments, timeout, now)
        {
            Ok(id) => {
                crate::metrics::acks_sent(1);
                self.acks.insert((socket, id.0), Waiter::Single(tx));
            }
            Err(e) => {
                if matches!(e, volley_core::socketio::SioError::BufferFull(_)) {
                    crate::metrics::overflow(self.sio.engine().config().overflow);
                }
                let _ = tx.send(Err(AckError::NotSent(e.to_string())));
            }
        }
    }

    /// Sends `event` to the sockets `opts` selects in each of `nsps`, asking each for an
    /// acknowledgement, on this node and (unless `opts.local`) on the others; `tx` gets every
    /// answer once all came or failed: the local sockets answered or failed, and every other
    /// node reported how many sockets it asked and relayed that many answers. The other nodes
    /// are waited for until `timeout` (the request timeout when `None`); then the result is
    /// partial, `missing` counting the sockets that did not answer plus one for each node
    /// that never reported its count. A namespace that does not exist (any more) has no
    /// sockets to ask.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn broadcast_with_ack(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
        tx: oneshot::Sender<Result<Vec<AckResponse>, PartialAcks>>,
        now: Instant,
    ) {
        let (json, attachments) = payload.into_json();
        let key = self.next_aggregate;
        self.next_aggregate += 1;
        let mut asked = 0;
        for nsp in nsps {
            self.notify_outgoing(nsp, opts, event, &json, &attachments);
            let Ok((id, sent)) = self.sio.broadcast_with_ack(
                nsp,
                opts,
                event,
                &json,
                attachments.clone(),
                timeout,
                now,
            ) else {
                continue;
            };
            crate::metrics::broadcast::<()>(&Ok(sent.len()));
            crate::metrics::acks_sent(sent.len());
            for s in &sent {
                self.acks.insert((*s, id.0), Waiter::Member(key));
            }
            asked += sent.len();
        }
        let mut remote = None;
        let expected = self.other_nodes() * nsps.len();
        if !opts.local && expected > 0 {
            let request = self.next_request_id();
            let limit = timeout.unwrap_or(self.cluster.request_timeout);
            self.requests
                .start(request, RequestKind::BroadcastAck, expected, now + limit);
            self.collectors.insert(request, Collector::Acks(key));
            for nsp in nsps {
                self.publish(
                    None,
                    ClusterMessage::Broadcast {
                        nsp: nsp.to_string(),
                        opts: opts.clone(),
                        event: event.to_owned(),
                        args: json.clone(),
                        attachments: attachments.clone(),
                        ack: Some(request),
                        timeout: Some(limit),
                    },
                );
            }
            remote = Some(request);
        }
        self.aggregates.insert(
            key,
            Aggregate {
                remaining: asked,
                responses: Vec::new(),
                missing: 0,
                remote,
                tx,
            },
        );
        self.settle_aggregate(key);
    }

    /// Completes broadcast `key` once its local sockets and the other nodes are done.
    fn settle_aggregate(&mut self, key: u64) {
        let done = self
            .aggregates
            .get(&key)
            .is_some_and(|a| a.remaining == 0 && a.remote.is_none());
        if !done {
            return;
        }
        if let Some(agg) = self.aggregates.remove(&key) {
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

    // ---- the cluster: outgoing ----

    /// How many other nodes the adapter counts now.
    fn other_nodes(&self) -> usize {
        self.cluster.adapter.server_count().saturating_sub(1)
    }

    /// A request id no other request of this cluster uses: this node's id and a counter.
    fn next_request_id(&mut self) -> RequestId {
        let n = self.next_request;
        self.next_request += 1;
        RequestId::new(&format!("{}-{n:x}", self.cluster.node_id))
            .or_else(|_| RequestId::new(&format!("{n:x}")))
            .expect("a hexadecimal counter is a valid request id")
    }

    /// Hands `message` to the adapter: for node `to`, or for every other node.
    pub(crate) fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        crate::metrics::cluster_published(&message);
        self.cluster.adapter.publish(to, message);
    }

    /// Sends `event` to the sockets `opts` selects in each of `nsps`, here and (unless
    /// `opts.local`) on the other nodes.
    pub(crate) fn broadcast(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        event: &str,
        payload: Payload,
        compress: bool,
        now: Instant,
    ) {
        for nsp in nsps {
            self.note_sends(nsp, opts, compress);
        }
        let (json, attachments) = payload.into_json();
        let shared = self.sio.is_recovery_shared();
        for nsp in nsps {
            let message = || ClusterMessage::Broadcast {
                nsp: nsp.to_string(),
                opts: opts.clone(),
                event: event.to_owned(),
                args: json.clone(),
                attachments: attachments.clone(),
                ack: None,
                timeout: None,
            };
            if let (true, false, Some(ctl)) = (shared, opts.local, self.ctl.clone()) {
                // The packet carries the offset the adapter keeps it under: deliver it here
                // once that is known, after the broadcasts made before it.
                let offset = self.cluster.adapter.publish_broadcast(message());
                let seq = self.enqueue(nsp, opts, event, &json, &attachments, None);
                (self.spawn)(Box::pin(async move {
                    let offset = offset.await;
                    let _ = ctl
                        .handle
                        .cast(move |node: &mut Node, now| node.on_offset(seq, offset, now));
                }));
                continue;
            }
            if !opts.local {
                self.publish(None, message());
            }
            if self.queued.is_empty() {
                self.notify_outgoing(nsp, opts, event, &json, &attachments);
                // A namespace that went away meanwhile has nobody to send to.
                let sent = self
                    .sio
                    .broadcast(nsp, opts, event, &json, attachments.clone(), now);
                crate::metrics::broadcast(&sent);
            } else {
                self.enqueue(nsp, opts, event, &json, &attachments, Some(None));
            }
        }
    }

    /// Queues a broadcast for local delivery in call order.
    fn enqueue(
        &mut self,
        nsp: &Arc<str>,
        opts: &BroadcastOptions,
        event: &str,
        args: &str,
        attachments: &[bytes::Bytes],
        offset: Option<Option<String>>,
    ) -> u64 {
        let seq = self.next_queued;
        self.next_queued += 1;
        self.queued.push_back(Queued {
            seq,
            offset,
            nsp: nsp.clone(),
            opts: opts.clone(),
            event: event.to_owned(),
            args: args.to_owned(),
            attachments: attachments.to_vec(),
        });
        seq
    }

    /// Runs the outgoing hooks of `nsp` (`on_any_outgoing`) for every socket of this node a
    /// broadcast selects, as the reference tells each recipient's `onAnyOutgoing` listeners.
    fn notify_outgoing(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
        event: &str,
        args: &str,
        attachments: &[bytes::Bytes],
    ) {
        let Some(ns) = self.registry.lookup(nsp) else {
            return;
        };
        let own = self
            .ctl
            .as_ref()
            .is_some_and(|c| c.own_outgoing.load(Ordering::Acquire) > 0);
        if !own && ns.any_outgoing().is_empty() {
            return;
        }
        let payload = Payload::from_wire(args, attachments.to_vec());
        for id in self.sio.select(nsp, opts) {
            if let Some(entry) = self.sockets.get(&id) {
                for hook in &entry.socket.outgoing_hooks() {
                    self.outgoing_hook(hook, &entry.socket, event, &payload);
                }
            }
        }
    }

    /// Runs one `on_any_outgoing` hook, on the machine's task: a panic is contained.
    fn outgoing_hook(&self, hook: &OutgoingHook, socket: &Socket, event: &str, payload: &Payload) {
        let run = || hook(socket, event, payload);
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(run)) {
            if let Some(ctl) = &self.ctl {
                let report = HandlerPanic {
                    socket: Some(socket.id()),
                    namespace: socket.ns().to_owned(),
                    event: event.to_owned(),
                    place: PanicPlace::Outgoing,
                    message: panic_message(&*payload),
                };
                report_panic(ctl, report);
            }
        }
    }

    /// The adapter kept broadcast `seq` under `offset` (or could not): deliver what is ready,
    /// in order.
    fn on_offset(&mut self, seq: u64, offset: Option<String>, now: Instant) {
        if let Some(q) = self.queued.iter_mut().find(|q| q.seq == seq) {
            q.offset = Some(offset);
        }
        while self.queued.front().is_some_and(|q| q.offset.is_some()) {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            let offset = q.offset.flatten();
            self.notify_outgoing(&q.nsp, &q.opts, &q.event, &q.args, &q.attachments);
            let sent = self.sio.broadcast_at(
                &q.nsp,
                &q.opts,
                &q.event,
                &q.args,
                q.attachments,
                offset.as_deref(),
                now,
            );
            crate::metrics::broadcast(&sent);
        }
    }

    /// Sends `event` to one socket of namespace `nsp`. With shared recovery and not volatile,
    /// it goes as a broadcast to the socket's room, as the reference does, so that it is kept
    /// where any node can replay it (also while the socket is away).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn emit_to(
        &mut self,
        socket: SocketId,
        nsp: &Arc<str>,
        event: &str,
        payload: Payload,
        volatile: bool,
        compress: bool,
        now: Instant,
    ) {
        if !volatile && self.sio.is_recovery_shared() {
            let opts = BroadcastOptions {
                rooms: vec![Room::from(socket)],
                ..BroadcastOptions::default()
            };
            // The broadcast runs the outgoing hooks, as for any recipient.
            self.broadcast(
                std::slice::from_ref(nsp),
                &opts,
                event,
                payload,
                compress,
                now,
            );
            return;
        }
        self.note_send(socket, compress);
        if let Some(entry) = self.sockets.get(&socket) {
            for hook in entry.socket.outgoing_hooks() {
                self.outgoing_hook(&hook, &entry.socket, event, &payload);
            }
        }
        let (json, attachments) = payload.into_wire();
        // A socket that left meanwhile needs no answer here; a full queue is reported with
        // the other refusals of the turn (`report_refused`).
        let _ = self
            .sio
            .emit(socket, event, &json, attachments, volatile, now);
    }

    /// Puts the selected sockets in `rooms` (`join`) or takes them out, here and (unless
    /// `opts.local`) on the other nodes.
    pub(crate) fn sockets_rooms(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        rooms: &[Room],
        join: bool,
    ) {
        for nsp in nsps {
            if !opts.local {
                let (nsp, opts) = (nsp.to_string(), opts.clone());
                let rooms = rooms.iter().map(|r| r.to_string()).collect();
                self.publish(
                    None,
                    if join {
                        ClusterMessage::SocketsJoin { nsp, opts, rooms }
                    } else {
                        ClusterMessage::SocketsLeave { nsp, opts, rooms }
                    },
                );
            }
            if join {
                self.sio.sockets_join(nsp, opts, rooms);
            } else {
                self.sio.sockets_leave(nsp, opts, rooms);
            }
        }
    }

    /// Disconnects the selected sockets, here and (unless `opts.local`) on the other nodes.
    pub(crate) fn disconnect_sockets(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        close: bool,
        now: Instant,
    ) {
        for nsp in nsps {
            if !opts.local {
                self.publish(
                    None,
                    ClusterMessage::DisconnectSockets {
                        nsp: nsp.to_string(),
                        opts: opts.clone(),
                        close,
                    },
                );
            }
            self.sio.disconnect_sockets(nsp, opts, close, now);
        }
    }

    /// The selected sockets of this node now, and (unless `opts.local`) one receiver per
    /// namespace for the other nodes' sockets: complete when every other node answered, or
    /// what came by `timeout` (the request timeout when `None`).
    pub(crate) fn fetch_sockets(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        timeout: Option<Duration>,
        now: Instant,
    ) -> (Vec<RemoteSocket>, Vec<oneshot::Receiver<Vec<RemoteSocket>>>) {
        let local = nsps
            .iter()
            .flat_map(|nsp| self.fetch(nsp, opts))
            .map(|(socket, rooms)| RemoteSocket::local(socket, rooms))
            .collect();
        let others = self.other_nodes();
        if opts.local || others == 0 {
            return (local, Vec::new());
        }
        let deadline = now + timeout.unwrap_or(self.cluster.request_timeout);
        let mut remote = Vec::new();
        for nsp in nsps {
            let request = self.next_request_id();
            self.requests
                .start(request, RequestKind::FetchSockets, others, deadline);
            let (tx, rx) = oneshot::channel();
            self.collectors.insert(
                request,
                Collector::Fetch {
                    nsp: nsp.clone(),
                    sockets: Vec::new(),
                    tx,
                },
            );
            self.publish(
                None,
                ClusterMessage::FetchSockets {
                    request,
                    nsp: nsp.to_string(),
                    opts: opts.clone(),
                },
            );
            remote.push(rx);
        }
        (local, remote)
    }

    /// The rooms of `nsps` on every node: `tx` gets them once every other node answered, or
    /// those known at the request timeout.
    pub(crate) fn all_rooms(
        &mut self,
        nsps: &[Arc<str>],
        tx: oneshot::Sender<Vec<Room>>,
        now: Instant,
    ) {
        let rooms: BTreeSet<Room> = nsps.iter().flat_map(|nsp| self.sio.rooms(nsp)).collect();
        let expected = self.other_nodes() * nsps.len();
        if expected == 0 {
            let _ = tx.send(rooms.into_iter().collect());
            return;
        }
        let request = self.next_request_id();
        let deadline = now + self.cluster.request_timeout;
        self.requests
            .start(request, RequestKind::AllRooms, expected, deadline);
        self.collectors
            .insert(request, Collector::Rooms { rooms, tx });
        for nsp in nsps {
            self.publish(
                None,
                ClusterMessage::AllRooms {
                    request,
                    nsp: nsp.to_string(),
                },
            );
        }
    }

    /// Emits `event` to the server-side handlers of the other nodes (never this one's). With
    /// `tx`, each other node answers once (per namespace): `tx` gets the answers once all
    /// came, or a timeout error with those that did at the request timeout.
    pub(crate) fn server_side_emit(
        &mut self,
        nsps: &[Arc<str>],
        event: &str,
        payload: Payload,
        tx: Option<oneshot::Sender<Result<Vec<Payload>, ServerSideEmitError>>>,
        now: Instant,
    ) {
        let (json, attachments) = payload.into_json();
        let request = match tx {
            None => None,
            Some(tx) => {
                let expected = self.other_nodes() * nsps.len();
                if expected == 0 {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
                let request = self.next_request_id();
                let deadline = now + self.cluster.request_timeout;
                self.requests
                    .start(request, RequestKind::ServerSideEmit, expected, deadline);
                self.collectors.insert(
                    request,
                    Collector::Emit {
                        responses: Vec::new(),
                        tx,
                    },
                );
                Some(request)
            }
        };
        for nsp in nsps {
            self.publish(
                None,
                ClusterMessage::ServerSideEmit {
                    nsp: nsp.to_string(),
                    event: event.to_owned(),
                    args: json.clone(),
                    attachments: attachments.clone(),
                    request,
                },
            );
        }
    }

    // ---- the cluster: incoming ----

    /// Handles a message another node (`from`) sent this one (kept under `offset` by an
    /// adapter with a shared recovery store).
    pub(crate) fn on_cluster(
        &mut self,
        from: NodeId,
        message: ClusterMessage,
        offset: Option<String>,
        now: Instant,
    ) {
        if from == self.cluster.node_id {
            return;
        }
        match message {
            ClusterMessage::Broadcast {
                nsp,
                mut opts,
                event,
                args,
                attachments,
                ack,
                timeout,
            } => {
                // Whatever arrives is for this node's sockets only.
                opts.local = true;
                self.notify_outgoing(&nsp, &opts, &event, &args, &attachments);
                let Some(request) = ack else {
                    let _ = self.sio.broadcast_at(
                        &nsp,
                        &opts,
                        &event,
                        &args,
                        attachments,
                        offset.as_deref(),
                        now,
                    );
                    return;
                };
                let count = match self.sio.broadcast_with_ack(
                    &nsp,
                    &opts,
                    &event,
                    &args,
                    attachments,
                    timeout,
                    now,
                ) {
                    Ok((id, sent)) => {
                        for s in &sent {
                            self.acks
                                .insert((*s, id.0), Waiter::Relay { to: from, request });
                        }
                        sent.len()
                    }
                    Err(_) => 0,
                };
                // Before any acknowledgement: the sender learns how many to wait for.
                self.publish(
                    Some(from),
                    ClusterMessage::BroadcastClientCount { request, count },
                );
            }
            ClusterMessage::SocketsJoin { nsp, opts, rooms } => {
                let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
                self.sio.sockets_join(&nsp, &opts, &rooms);
            }
            ClusterMessage::SocketsLeave { nsp, opts, rooms } => {
                let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
                self.sio.sockets_leave(&nsp, &opts, &rooms);
            }
            ClusterMessage::DisconnectSockets { nsp, opts, close } => {
                self.sio.disconnect_sockets(&nsp, &opts, close, now);
            }
            ClusterMessage::FetchSockets { request, nsp, opts } => {
                let sockets = self
                    .fetch(&nsp, &opts)
                    .into_iter()
                    .map(|(socket, rooms)| socket_info(&socket, &rooms))
                    .collect();
                self.publish(
                    Some(from),
                    ClusterMessage::FetchSocketsResponse { request, sockets },
                );
            }
            ClusterMessage::ServerSideEmit {
                nsp,
                event,
                args,
                attachments,
                request,
            } => self.on_server_side_emit(from, &nsp, &event, &args, attachments, request),
            ClusterMessage::AllRooms { request, nsp } => {
                let rooms = self.sio.rooms(&nsp).iter().map(|r| r.to_string()).collect();
                self.publish(
                    Some(from),
                    ClusterMessage::AllRoomsResponse { request, rooms },
                );
            }
            answer => self.on_answer(from, answer, now),
        }
    }

    /// Runs the namespace's handler of a server-side event; with a request, its reply goes
    /// back to the sender (nothing when the handler fails or there is none, as the
    /// reference server, so the sender's request times out).
    fn on_server_side_emit(
        &mut self,
        from: NodeId,
        nsp: &str,
        event: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        request: Option<RequestId>,
    ) {
        let Some(handler) = self
            .registry
            .lookup(nsp)
            .and_then(|h| h.server_event(event))
        else {
            tracing::debug!(nsp, event, "no handler for a server-side event");
            return;
        };
        let payload = Payload::from_wire(args, attachments);
        let adapter = self.cluster.adapter.clone();
        let event = event.to_owned();
        let ctl = self.ctl.clone();
        let namespace = nsp.to_owned();
        (self.spawn)(Box::pin(async move {
            let run = AssertUnwindSafe(async { handler(payload).await });
            let reply = match run.catch_unwind().await {
                Ok(reply) => reply,
                Err(payload) => {
                    if let Some(ctl) = ctl {
                        let report = HandlerPanic {
                            socket: None,
                            namespace,
                            event,
                            place: PanicPlace::ServerEvent,
                            message: panic_message(&*payload),
                        };
                        report_panic(&ctl, report);
                    }
                    return;
                }
            };
            let answer = match reply {
                Reply::Payload(p) => p,
                Reply::None => Payload::new(),
                Reply::Error(error) => {
                    tracing::debug!(event, error, "server-side event handler failed");
                    return;
                }
            };
            if let Some(request) = request {
                let (args, attachments) = answer.into_json();
                adapter.publish(
                    Some(from),
                    ClusterMessage::ServerSideEmitResponse {
                        request,
                        args,
                        attachments,
                    },
                );
            }
        }));
    }

    /// An answer to one of this node's requests.
    fn on_answer(&mut self, from: NodeId, message: ClusterMessage, now: Instant) {
        let progress = self.requests.on_answer(&message);
        let Some(request) = message.answers() else {
            tracing::debug!(%from, ?message, "unknown cluster message");
            return;
        };
        if progress == Progress::Unknown {
            // Late (after the deadline), or for a request this node never made.
            return;
        }
        crate::metrics::cluster_answer(&message);
        let ctl = self.ctl.clone();
        match (self.collectors.get_mut(&request), message) {
            (
                Some(Collector::Fetch { nsp, sockets, .. }),
                ClusterMessage::FetchSocketsResponse { sockets: infos, .. },
            ) => {
                if let Some(ctl) = ctl {
                    sockets.extend(
                        infos
                            .iter()
                            .filter_map(|i| RemoteSocket::remote(&ctl, from, nsp, i, now)),
                    );
                }
            }
            (
                Some(Collector::Rooms { rooms, .. }),
                ClusterMessage::AllRoomsResponse { rooms: r, .. },
            ) => {
                rooms.extend(r.into_iter().map(Room::from));
            }
            (
                Some(Collector::Emit { responses, .. }),
                ClusterMessage::ServerSideEmitResponse {
                    args, attachments, ..
                },
            ) => responses.push(Payload::from_wire(&args, attachments)),
            (
                Some(Collector::Acks(key)),
                ClusterMessage::BroadcastAck {
                    socket,
                    args,
                    attachments,
                    ..
                },
            ) => {
                if let Some(agg) = self.aggregates.get_mut(key) {
                    agg.responses.push(AckResponse {
                        socket,
                        payload: Payload::from_wire(&args, attachments),
                    });
                }
            }
            _ => {}
        }
        if progress == Progress::Complete {
            self.finish_request(request, 0, 0);
        }
    }

    /// Hands a request's result over: complete, or partial with `nodes_left` nodes that
    /// never answered and `acks_left` acknowledgements announced and never relayed.
    fn finish_request(&mut self, request: RequestId, nodes_left: usize, acks_left: usize) {
        let Some(collector) = self.collectors.remove(&request) else {
            return;
        };
        if nodes_left > 0 {
            tracing::debug!(%request, nodes_left, acks_left, "cluster request timed out");
        }
        match collector {
            Collector::Fetch { sockets, tx, .. } => {
                let _ = tx.send(sockets);
            }
            Collector::Rooms { rooms, tx } => {
                let _ = tx.send(rooms.into_iter().collect());
            }
            Collector::Emit { responses, tx } => {
                let _ = tx.send(if nodes_left == 0 {
                    Ok(responses)
                } else {
                    Err(ServerSideEmitError::Timeout {
                        responses,
                        missing: nodes_left,
                    })
                });
            }
            Collector::Acks(key) => {
                if let Some(agg) = self.aggregates.get_mut(&key) {
                    agg.missing += nodes_left + acks_left;
                    agg.remote = None;
                }
                self.settle_aggregate(key);
            }
        }
    }

    /// The namespaces that exist now and are served by `family`'s handlers (the children of
    /// a dynamic namespace).
    pub(crate) fn family_members(&self, family: &Arc<NsHandlers>) -> Vec<Arc<str>> {
        self.sio
            .namespaces()
            .filter(|name| {
                self.registry
                    .lookup(name)
                    .is_some_and(|h| Arc::ptr_eq(&h, family))
            })
            .map(Arc::from)
            .collect()
    }

    /// The sockets `opts` selects in `nsp`, with their rooms.
    pub(crate) fn fetch(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
    ) -> Vec<(Socket, Vec<volley_core::socketio::Room>)> {
        self.sio
            .select(nsp, opts)
            .into_iter()
            .filter_map(|id| {
                let entry = self.sockets.get(&id)?;
                Some((entry.socket.clone(), self.sio.rooms_of(id)))
            })
            .collect()
    }

    /// Handles one event of the core machine (the driver's event callback).
    pub(crate) fn dispatch(&mut self, event: Event, now: Instant) {
        crate::metrics::socket_event(&event, |nsp| self.sio.namespace_socket_count(nsp));
        match event {
            Event::Connect(req) => self.on_connect(req, now),
            Event::Event {
                socket,
                name,
                args,
                attachments,
                ack,
                ..
            } => {
                let payload = Payload::from_decoded(args, attachments);
                self.on_event(socket, name, payload, Arc::new(Mutex::new(ack)));
            }
            Event::Ack {
                socket,
                id,
                args,
                attachments,
            } => {
                let payload = Payload::from_decoded(args, attachments);
                self.resolve(socket, id, Ok(payload));
            }
            Event::AckFailed { socket, id, reason } => {
                let err = match reason {
                    AckFailure::Timeout => AckError::Timeout,
                    AckFailure::Disconnected => AckError::Disconnected,
                };
                self.resolve(socket, id, Err(err));
            }
            Event::Disconnecting {
                socket,
                reason,
                rooms,
                ..
            } => {
                let Some(entry) = self.sockets.get_mut(&socket) else {
                    return;
                };
                // Connection state recovery: the session the socket left keeps its data.
                if let Some(data) = entry.socket.data().get::<serde_json::Value>() {
                    self.sio
                        .set_session_data(socket, Utf8Bytes::from(data.to_string()));
                }
                // Kept where every node can find it, with an adapter that shares recovery.
                if let (true, Some(r)) = (
                    self.sio.is_recovery_shared(),
                    self.sio.connection_state_recovery(),
                ) {
                    if let Some(session) = self.sio.take_session(socket) {
                        self.cluster
                            .adapter
                            .persist_session(session, r.max_disconnection_duration);
                    }
                }
                for hook in entry.socket.ns_handlers().disconnecting() {
                    let (s, rooms) = (entry.socket.clone(), rooms.clone());
                    let job = guarded(
                        self.ctl.as_ref(),
                        &entry.socket,
                        PanicPlace::Disconnecting,
                        "disconnecting",
                        move || hook(s, reason, rooms),
                    );
                    entry.push(Job::Barrier(job));
                }
                for job in Self::own_reserved(
                    self.ctl.as_ref(),
                    &self.state,
                    &entry.socket,
                    "disconnecting",
                    reason,
                ) {
                    entry.push(Job::Barrier(job));
                }
            }
            Event::Disconnect {
                socket,
                reason,
                nsp,
            } => {
                if !self.sio.namespaces().any(|n| *n == *nsp) {
                    // A dynamic child removed once empty: created again, it is new again.
                    self.registry.forget(&nsp);
                }
                let Some(mut entry) = self.sockets.remove(&socket) else {
                    return;
                };
                entry.socket.mark_disconnected();
                for hook in entry.socket.ns_handlers().disconnect() {
                    let s = entry.socket.clone();
                    let job = guarded(
                        self.ctl.as_ref(),
                        &entry.socket,
                        PanicPlace::Disconnect,
                        "disconnect",
                        move || hook(s, reason),
                    );
                    entry.push(Job::Barrier(job));
                }
                for job in Self::own_reserved(
                    self.ctl.as_ref(),
                    &self.state,
                    &entry.socket,
                    "disconnect",
                    reason,
                ) {
                    entry.push(Job::Barrier(job));
                }
                // The socket's own listeners hold clones of it: dropped with it.
                entry.socket.close_listeners();
                if let Some(life) = entry.life.take() {
                    let _ = life.send(reason);
                }
                // Dropping the queue lets the socket's task finish what it has, then end.
            }
        }
    }

    /// The jobs running the listeners `socket` registered on itself for a reserved event
    /// (`disconnecting`, `disconnect`): each gets the reason as its one argument.
    fn own_reserved(
        ctl: Option<&Arc<Ctl>>,
        state: &Extensions,
        socket: &Socket,
        event: &'static str,
        reason: DisconnectReason,
    ) -> Vec<BoxFuture<()>> {
        let place = if event == "disconnect" {
            PanicPlace::Disconnect
        } else {
            PanicPlace::Disconnecting
        };
        socket
            .take_listeners(event)
            .into_iter()
            .map(|l| {
                let (s, state) = (socket.clone(), state.clone());
                guarded(ctl, socket, place, event, move || {
                    let ctx = EventCtx {
                        socket: s,
                        name: event.to_owned(),
                        payload: Payload::of(reason.as_str()).unwrap_or_default(),
                        ack: Arc::new(Mutex::new(None)),
                        state,
                    };
                    let reply = (l.handler)(ctx);
                    Box::pin(async move {
                        let _ = reply.await;
                    })
                })
            })
            .collect()
    }

    fn resolve(&mut self, socket: SocketId, id: AckId, result: Result<Payload, AckError>) {
        match self.acks.remove(&(socket, id.0)) {
            Some(Waiter::Single(tx)) => {
                let _ = tx.send(result);
            }
            Some(Waiter::Member(key)) => {
                let Some(agg) = self.aggregates.get_mut(&key) else {
                    return;
                };
                match result {
                    Ok(payload) => agg.responses.push(AckResponse { socket, payload }),
                    Err(_) => agg.missing += 1,
                }
                agg.remaining = agg.remaining.saturating_sub(1);
                self.settle_aggregate(key);
            }
            Some(Waiter::Relay { to, request }) => {
                // A failure is not relayed: the sender counts it missing at its deadline.
                if let Ok(payload) = result {
                    let (args, attachments) = payload.into_json();
                    self.publish(
                        Some(to),
                        ClusterMessage::BroadcastAck {
                            request,
                            socket,
                            args,
                            attachments,
                        },
                    );
                }
            }
            None => {}
        }
    }

    fn on_connect(&mut self, req: ConnectRequest, now: Instant) {
        // Shared recovery: the session and what it missed are fetched from the adapter
        // first; the request goes on when they came (or did not).
        if self.sio.is_recovery_shared() && !req.recovered && req.accepted.is_none() {
            if let (Some((pid, offset)), Some(ctl)) = (recovery_auth(&req.auth), self.ctl.clone()) {
                let restore = self
                    .cluster
                    .adapter
                    .restore_session(&pid, &offset, &req.nsp);
                (self.spawn)(Box::pin(async move {
                    let found = restore.await;
                    let _ = ctl
                        .handle
                        .cast(move |node: &mut Node, now| node.on_restored(req, found, now));
                }));
                return;
            }
        }
        self.connect(req, now);
    }

    /// The adapter's answer to a recovering connect.
    fn on_restored(
        &mut self,
        mut req: ConnectRequest,
        found: Option<(SessionState, Vec<StoredMessage>)>,
        now: Instant,
    ) {
        if let Some((session, stored)) = found {
            let data = session.data.clone();
            match self.sio.restore_connect(req.id, session, stored, now) {
                // The client left meanwhile.
                Err(_) => return,
                Ok(RestoreOutcome::Refused) => {}
                Ok(RestoreOutcome::Restored) => {
                    req.recovered = true;
                    req.session_data = data;
                }
                Ok(RestoreOutcome::Accepted(id)) => {
                    req.recovered = true;
                    req.session_data = data;
                    req.accepted = Some(id);
                }
            }
        }
        self.connect(req, now);
    }

    /// Runs the connection middleware of a request (or attaches a socket the core accepted).
    fn connect(&mut self, req: ConnectRequest, now: Instant) {
        crate::metrics::connect_requested(req.auth.as_str(), req.recovered);
        let Some(ctl) = self.ctl.clone() else {
            let _ = self.sio.reject(req.id, "server not ready", None, now);
            return;
        };
        let ns = self.registry.lookup(&req.nsp).unwrap_or_default();
        if self.registry.first_seen(&req.nsp) {
            // A dynamic namespace's child, created by this connect.
            let namespace = crate::namespace::Namespace {
                ctl: ctl.clone(),
                name: Some(req.nsp.clone()),
                handlers: ns.clone(),
            };
            announce_namespace(&ctl, namespace);
        }
        let data = Extensions::new();
        if let Some(v) = req
            .session_data
            .as_ref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d.as_str()).ok())
        {
            data.insert(v);
        }
        if let Some(id) = req.accepted {
            // A recovered connect the core accepted itself: the middleware is skipped.
            let (life, _) = oneshot::channel();
            self.attach(id, Handshake::from_request(&req), data, ns, life, ctl, true);
            return;
        }
        let chain: Vec<_> = self
            .registry
            .global_connect()
            .into_iter()
            .chain(ns.connect())
            .collect();
        let ctx = ConnectCtx {
            handshake: Handshake::from_request(&req),
            data,
            request: req.id,
            socket: Arc::new(std::sync::OnceLock::new()),
            state: self.state.clone(),
        };
        let accepted = Arc::new(AtomicBool::new(false));
        let next = Next {
            chain: chain.into(),
            index: 0,
            ns,
            ctl: ctl.clone(),
            accepted: accepted.clone(),
        };
        let id = req.id;
        let namespace = req.nsp.to_string();
        (self.spawn)(Box::pin(async move {
            let socket = ctx.socket.clone();
            let result = match AssertUnwindSafe(next.run(ctx)).catch_unwind().await {
                Ok(result) => result,
                Err(payload) => {
                    // Accepted: the socket is disconnected. Not yet: the client is refused.
                    let report = HandlerPanic {
                        socket: socket.get().map(Socket::id),
                        namespace,
                        event: "connection".to_owned(),
                        place: PanicPlace::ConnectMiddleware,
                        message: panic_message(&*payload),
                    };
                    let refuse = !accepted.load(Ordering::SeqCst);
                    let _ = ctl.handle.cast(move |node: &mut Node, now| {
                        node.on_panic(report, now);
                        if refuse {
                            let _ = node.sio.reject(id, "server error", None, now);
                        }
                    });
                    return;
                }
            };
            if accepted.load(Ordering::SeqCst) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection middleware failed after disconnect");
                }
                return;
            }
            let (message, data) = match result {
                Err(e) => (e.message, e.data.map(|d| d.to_string())),
                Ok(()) => ("connection refused".to_owned(), None),
            };
            let _ = ctl.handle.cast(move |node, now| {
                crate::metrics::refused("connect_error");
                let _ = node.sio.reject(id, &message, data.as_deref(), now);
            });
        }));
    }

    fn on_event(&mut self, socket: SocketId, name: String, payload: Payload, ack: AckSlot) {
        let Some(entry) = self.sockets.get_mut(&socket) else {
            return;
        };
        if entry.is_closed() || entry.failed {
            // A handler of the socket panicked: it is on its way out.
            return;
        }
        let Some(ctl) = self.ctl.clone() else {
            return;
        };
        let sock = entry.socket.clone();
        let ns = sock.ns_handlers().clone();
        let mut chain = self.registry.global_packet();
        chain.extend(ns.packet());
        chain.extend(sock.own_middleware());
        let state = self.state.clone();
        let received = crate::metrics::Received::now();
        // Every piece of application code runs contained: a panic is reported with the
        // event's name and disconnects the socket, and what follows it does not run.
        let fut = async move {
            received.handling_starts();
            let mut ev = IncomingEvent { name, payload };
            if !chain.is_empty() {
                let event = ev.name.clone();
                let run = run_packet_middleware(chain, &sock, ev);
                match contained(run, &ctl, &sock, PanicPlace::PacketMiddleware, &event).await {
                    Some(Some(next)) => ev = next,
                    _ => return,
                }
            }
            for hook in sock.any_hooks() {
                let run = async { hook(sock.clone(), ev.name.clone(), ev.payload.clone()).await };
                if contained(run, &ctl, &sock, PanicPlace::Any, &ev.name)
                    .await
                    .is_none()
                {
                    return;
                }
            }
            // The listeners of the event as the middleware left it (it may have renamed it):
            // the namespace's, then the socket's own.
            let mut listeners: Vec<Listener> = ns
                .routes(&ev.name)
                .into_iter()
                .map(|r| Listener {
                    handler: r.handler,
                    middleware: r.middleware,
                    result: r.result,
                })
                .collect();
            listeners.extend(sock.take_listeners(&ev.name).into_iter().map(|l| Listener {
                handler: l.handler,
                middleware: Vec::new(),
                result: ResultTo::Ack,
            }));
            if listeners.len() <= 1 {
                if let Some(one) = listeners.pop() {
                    run_listener(one, ctl, sock, ev, ack, state).await;
                }
                return;
            }
            // Each starts in registration order, then they proceed concurrently.
            let runs = listeners.into_iter().map(|l| {
                run_listener(
                    l,
                    ctl.clone(),
                    sock.clone(),
                    ev.clone(),
                    ack.clone(),
                    state.clone(),
                )
            });
            futures::future::join_all(runs).await;
        };
        let mut fut: BoxFuture<()> = Box::pin(fut);
        if !self.inline_handlers || entry.jobs.load(Ordering::Acquire) != 0 {
            entry.push(Job::Handler(fut));
            return;
        }
        // Nothing of this socket waits or runs: the handler starts here, and only if it has
        // to wait does it move to the socket's task (which polls it again at once, so that
        // it registers that task's waker). What it casts meanwhile runs right after this
        // event (see `Handle::cast`).
        let mut cx = Context::from_waker(Waker::noop());
        let polled = entry.span.in_scope(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
        });
        match polled {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending) => entry.push(Job::Handler(fut)),
            Err(payload) => {
                // Application code is contained inside the future; this is a last resort.
                entry.close();
                let report = HandlerPanic {
                    socket: Some(socket),
                    namespace: entry.socket.ns().to_owned(),
                    event: String::new(),
                    place: PanicPlace::Handler,
                    message: panic_message(&*payload),
                };
                if let Some(ctl) = &self.ctl {
                    report_panic(ctl, report);
                }
            }
        }
    }

    /// Records a packet sent to the sockets `opts` selects in `nsp`, for the compression of
    /// poll answers (see [`Node::note_send`]).
    fn note_sends(&mut self, nsp: &str, opts: &BroadcastOptions, compress: bool) {
        if compress && self.plain.is_empty() {
            return;
        }
        for id in self.sio.select(nsp, opts) {
            self.note_send(id, compress);
        }
    }

    /// Records a packet sent to `socket`: with `compress(false)`, its polling session's next
    /// answer stays uncompressed unless a packet that allows compression joins it (the
    /// reference compresses a payload when any of its packets allows it). Nothing is kept
    /// while no packet was sent with `compress(false)`.
    fn note_send(&mut self, socket: SocketId, compress: bool) {
        if compress && self.plain.is_empty() {
            return;
        }
        let Some(sid) = self.sio.session_of(socket) else {
            return;
        };
        if compress {
            if let Some(mixed) = self.plain.get_mut(&sid) {
                *mixed = true;
            }
        } else if self.sio.engine().transport(sid) == Some(TransportKind::Polling) {
            self.plain.entry(sid).or_insert(false);
        }
    }

    /// Answers `tx` once the connection of `socket` runs over WebSocket (`true`), or is
    /// gone (`false`).
    pub(crate) fn wait_upgrade(&mut self, socket: SocketId, tx: oneshot::Sender<bool>) {
        let Some(sid) = self.sio.session_of(socket) else {
            let _ = tx.send(false);
            return;
        };
        self.upgrades.push((sid, tx));
        self.check_upgrades();
    }

    /// Settles the upgrade waiters whose session upgraded or closed. The core reports an
    /// upgrade only inside its own pump, so the state is looked at after every input, as
    /// long as someone waits.
    fn check_upgrades(&mut self) {
        if self.upgrades.is_empty() {
            return;
        }
        let engine = self.sio.engine();
        let mut kept = Vec::new();
        for (sid, tx) in std::mem::take(&mut self.upgrades) {
            if tx.is_canceled() {
                continue;
            }
            if !engine.contains(sid) {
                let _ = tx.send(false);
            } else if engine.transport(sid) == Some(TransportKind::WebSocket) {
                let _ = tx.send(true);
            } else {
                kept.push((sid, tx));
            }
        }
        self.upgrades = kept;
    }

    /// A caught panic: logged at error level, handed to the `on_error` hooks, and its socket
    /// disconnected from the namespace (the client gets `41`, the `disconnect` handlers run
    /// with "server namespace disconnect"; the socket leaves its rooms, so no broadcast
    /// reaches it any more).
    /// Hands `error` to the `on_error` hooks, each contained.
    fn run_error_hooks(&self, error: &ServerError) {
        let Some(ctl) = &self.ctl else {
            return;
        };
        let hooks = ctl
            .errors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hook in hooks {
            if std::panic::catch_unwind(AssertUnwindSafe(|| hook(error))).is_err() {
                tracing::error!("an on_error hook panicked");
            }
        }
    }

    /// Reports the packets the core could not queue (full queues) since the last call: a
    /// warning, and the `on_error` hooks.
    fn report_refused(&mut self) {
        for socket in self.sio.take_refused() {
            let namespace = self
                .sio
                .namespace_of(socket)
                .map(|n| n.to_string())
                .unwrap_or_default();
            crate::metrics::overflow(self.sio.engine().config().overflow);
            tracing::warn!(%socket, %namespace, "outgoing queue full: packet refused");
            let error = ServerError::Overflow(crate::io::Overflow { socket, namespace });
            self.run_error_hooks(&error);
        }
    }

    pub(crate) fn on_panic(&mut self, report: HandlerPanic, now: Instant) {
        tracing::error!(
            socket = ?report.socket,
            namespace = %report.namespace,
            event = %report.event,
            place = report.place.as_str(),
            panic = %report.message,
            "application code panicked; its socket is disconnected"
        );
        let socket = report.socket;
        self.run_error_hooks(&ServerError::Panic(report));
        if let Some(id) = socket {
            if let Some(entry) = self.sockets.get_mut(&id) {
                entry.failed = true;
            }
            let _ = self.sio.disconnect(id, false, now);
        }
    }
}

/// One listener of an event, as it runs for one socket.
struct Listener {
    handler: crate::handler::ErasedHandler,
    middleware: Vec<PacketMw>,
    result: ResultTo,
}

/// Runs one listener of an event: its own middleware, then the handler, then what its result
/// says (the acknowledgement goes to the first listener that takes it).
async fn run_listener(
    listener: Listener,
    ctl: Arc<Ctl>,
    sock: Socket,
    mut ev: IncomingEvent,
    ack: AckSlot,
    state: Extensions,
) {
    if !listener.middleware.is_empty() {
        let event = ev.name.clone();
        let run = run_packet_middleware(listener.middleware, &sock, ev);
        match contained(run, &ctl, &sock, PanicPlace::PacketMiddleware, &event).await {
            Some(Some(next)) => ev = next,
            _ => return,
        }
    }
    let event = ev.name.clone();
    let ctx = EventCtx {
        socket: sock.clone(),
        name: ev.name,
        payload: ev.payload,
        ack: ack.clone(),
        state,
    };
    let run = async { (listener.handler)(ctx).await };
    let Some(reply) = contained(run, &ctl, &sock, PanicPlace::Handler, &event).await else {
        return;
    };
    match reply {
        Reply::None => {}
        Reply::Payload(p) => match &listener.result {
            ResultTo::Ack => {
                if let Some(token) = take_ack(&ack) {
                    sock.send_ack(token, p);
                }
            }
            ResultTo::Emit { event, always } => match take_ack(&ack) {
                Some(token) if !always => sock.send_ack(token, p),
                _ => sock.emit_payload(event, p),
            },
            ResultTo::Broadcast { event, rooms } => {
                let mut op = sock.broadcast();
                for room in rooms {
                    op = op.to(room.clone());
                }
                op.emit_payload(event, p);
            }
        },
        Reply::Error(message) => {
            let run = sock.report_error(message);
            let _ = contained(run, &ctl, &sock, PanicPlace::Error, &event).await;
        }
    }
}

/// Runs packet middleware in order: the event as the last one passed it on, or `None` when
/// one dropped or rejected it (a rejection is reported to the socket's `error` handlers).
async fn run_packet_middleware(
    chain: Vec<PacketMw>,
    sock: &Socket,
    mut ev: IncomingEvent,
) -> Option<IncomingEvent> {
    for mw in chain {
        match mw(sock.clone(), ev).await {
            PacketFlow::Continue(next) => ev = next,
            PacketFlow::Drop => return None,
            PacketFlow::Reject(message) => {
                sock.report_error(message).await;
                return None;
            }
        }
    }
    Some(ev)
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
        if head.method() == Method::Get {
            // A poll: its answer may have to stay uncompressed (`compress(false)`).
            let mut transport = None;
            let mut sid = None;
            for (k, v) in query_pairs(head.query()) {
                match &*k {
                    "transport" => transport = Some(v),
                    "sid" => sid = Sid::new(&v).ok(),
                    _ => {}
                }
            }
            if let (Some("polling"), Some(sid)) = (transport.as_deref(), sid) {
                self.polls.insert(conn, sid);
            }
        }
        let result = self.sio.handle_request(conn, head, now);
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
        let result = self.sio.handle_ws_message(conn, message, now);
        self.check_upgrades();
        result
    }

    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        self.sio.handle_ws_drained(conn, now)
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.sio.handle_conn_closed(conn, error, now);
        self.polls.remove(&conn);
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
        for (nsp, change) in self.sio.take_room_changes() {
            self.cluster.adapter.room_changed(&nsp, &change);
        }
        let memberships = self.sio.take_membership_changes();
        if let (false, Some(ctl)) = (memberships.is_empty(), &self.ctl) {
            announce_memberships(ctl, &memberships);
        }
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
        self.report_refused();
        self.sio.poll_event()
    }

    fn session_count(&self) -> Option<usize> {
        Some(self.sio.engine().session_count())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.sio.poll_timeout(), self.requests.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
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
