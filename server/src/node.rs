//! The machine the driver runs: the core's Socket.IO server plus the application state that
//! lives beside it on the machine's task (sockets' handler queues, pending acknowledgements).

use crate::ack::{AckError, AckResponse, PartialAcks};
use crate::driver::{Handle, Machine, Router};
use crate::extensions::Extensions;
use crate::extract::{AckSlot, EventCtx, take_ack};
use crate::handler::{BoxFuture, Reply};
use crate::handshake::Handshake;
use crate::middleware::{ConnectCtx, IncomingEvent, Next, PacketFlow, PacketMw};
use crate::payload::Payload;
use crate::registry::{NsHandlers, Registry};
use crate::socket::Socket;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesUnordered;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volley_core::engine::{ApiMisuse, Body, Output, WsMessage};
use volley_core::http::RequestHead;
use volley_core::socketio::{
    AckFailure, AckId, BroadcastOptions, ConnectId, ConnectRequest, DisconnectReason, Event,
    Server as SioServer, SioError,
};
use volley_core::{ConnId, SocketId};

/// What handles share: the way to the machine, the handlers, the server state.
pub(crate) struct Ctl {
    pub handle: Handle<Node>,
    pub registry: Arc<Registry>,
    pub state: Extensions,
}

pub(crate) type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

struct Entry {
    socket: Socket,
    /// Handler futures of this socket, started in arrival order.
    queue: mpsc::UnboundedSender<Job>,
    /// Resolves the connection middleware's innermost `next` at disconnect.
    life: Option<oneshot::Sender<DisconnectReason>>,
}

enum Waiter {
    Single(oneshot::Sender<Result<Payload, AckError>>),
    Member(u64),
}

struct Aggregate {
    remaining: usize,
    responses: Vec<AckResponse>,
    missing: usize,
    tx: oneshot::Sender<Result<Vec<AckResponse>, PartialAcks>>,
}

/// The Socket.IO machine with Volley's application state. Only the driver touches it, on
/// its own task.
pub struct Node {
    pub(crate) sio: SioServer,
    registry: Arc<Registry>,
    state: Extensions,
    spawn: Spawner,
    pub(crate) ctl: Option<Arc<Ctl>>,
    sockets: HashMap<SocketId, Entry>,
    acks: HashMap<(SocketId, u64), Waiter>,
    aggregates: HashMap<u64, Aggregate>,
    next_aggregate: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("sio", &self.sio)
            .field("sockets", &self.sockets.len())
            .field("acks", &self.acks.len())
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

/// Runs a socket's handler futures: each starts in the order its event arrived, and they
/// then proceed concurrently (as Node's listeners do once they await), except that a
/// [`Job::Barrier`] holds back what follows it until it completes.
async fn socket_task(mut queue: mpsc::UnboundedReceiver<Job>) {
    use std::task::{Context, Poll};
    fn drive(running: &mut FuturesUnordered<BoxFuture<()>>, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
    }
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
    ) -> Self {
        Node {
            sio,
            registry,
            state,
            spawn,
            ctl: None,
            sockets: HashMap::new(),
            acks: HashMap::new(),
            aggregates: HashMap::new(),
            next_aggregate: 0,
        }
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
        let id = self.sio.accept(request, now)?;
        let socket = Socket::new(id, handshake, data, ctl, ns.clone());
        let (tx, rx) = mpsc::unbounded();
        (self.spawn)(Box::pin(socket_task(rx)));
        for hook in ns.connection() {
            let _ = tx.unbounded_send(Job::Barrier(hook(socket.clone())));
        }
        self.sockets.insert(
            id,
            Entry {
                socket: socket.clone(),
                queue: tx,
                life: Some(life),
            },
        );
        Ok(socket)
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
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        match self
            .sio
            .emit_with_ack(socket, event, &json, attachments, timeout, now)
        {
            Ok(id) => {
                self.acks.insert((socket, id.0), Waiter::Single(tx));
            }
            Err(e) => {
                let _ = tx.send(Err(AckError::NotSent(e.to_string())));
            }
        }
    }

    /// Sends `event` to the sockets `opts` selects in each of `nsps`, asking each for an
    /// acknowledgement; `tx` gets every answer once all came or failed. A namespace that does
    /// not exist (any more) has no sockets to ask.
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
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        let key = self.next_aggregate;
        let mut asked = 0;
        for nsp in nsps {
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
            for s in &sent {
                self.acks.insert((*s, id.0), Waiter::Member(key));
            }
            asked += sent.len();
        }
        if asked == 0 {
            let _ = tx.send(Ok(Vec::new()));
            return;
        }
        self.next_aggregate += 1;
        self.aggregates.insert(
            key,
            Aggregate {
                remaining: asked,
                responses: Vec::new(),
                missing: 0,
                tx,
            },
        );
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
                let payload = Payload::from_wire(args.as_str(), attachments);
                self.on_event(socket, name, payload, Arc::new(Mutex::new(ack)));
            }
            Event::Ack {
                socket,
                id,
                args,
                attachments,
            } => {
                let payload = Payload::from_wire(args.as_str(), attachments);
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
                let Some(entry) = self.sockets.get(&socket) else {
                    return;
                };
                for hook in entry.socket.ns_handlers().disconnecting() {
                    let _ = entry.queue.unbounded_send(Job::Barrier(hook(
                        entry.socket.clone(),
                        reason,
                        rooms.clone(),
                    )));
                }
            }
            Event::Disconnect { socket, reason, .. } => {
                let Some(mut entry) = self.sockets.remove(&socket) else {
                    return;
                };
                entry.socket.mark_disconnected();
                for hook in entry.socket.ns_handlers().disconnect() {
                    let _ = entry
                        .queue
                        .unbounded_send(Job::Barrier(hook(entry.socket.clone(), reason)));
                }
                if let Some(life) = entry.life.take() {
                    let _ = life.send(reason);
                }
                // Dropping the queue lets the socket's task finish what it has, then end.
            }
        }
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
                if agg.remaining == 0 {
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
            }
            None => {}
        }
    }

    fn on_connect(&mut self, req: ConnectRequest, now: Instant) {
        let Some(ctl) = self.ctl.clone() else {
            let _ = self.sio.reject(req.id, "server not ready", None, now);
            return;
        };
        let ns = self.registry.lookup(&req.nsp).unwrap_or_default();
        let chain: Vec<_> = self
            .registry
            .global_connect()
            .into_iter()
            .chain(ns.connect())
            .collect();
        let ctx = ConnectCtx {
            handshake: Handshake::from_request(&req),
            data: Extensions::new(),
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
        (self.spawn)(Box::pin(async move {
            let result = next.run(ctx).await;
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
                let _ = node.sio.reject(id, &message, data.as_deref(), now);
            });
        }));
    }

    fn on_event(&mut self, socket: SocketId, name: String, payload: Payload, ack: AckSlot) {
        let Some(entry) = self.sockets.get(&socket) else {
            return;
        };
        let sock = entry.socket.clone();
        let ns = sock.ns_handlers().clone();
        let mut chain = self.registry.global_packet();
        chain.extend(ns.packet());
        let state = self.state.clone();
        let fut = async move {
            let ev = IncomingEvent { name, payload };
            let Some(ev) = run_packet_middleware(chain, &sock, ev).await else {
                return;
            };
            // The route of the event as the middleware left it (it may have renamed it).
            let route = ns.route(&ev.name);
            let ev = match &route {
                Some(r) => match run_packet_middleware(r.middleware.clone(), &sock, ev).await {
                    Some(ev) => ev,
                    None => return,
                },
                None => ev,
            };
            for hook in ns.any() {
                hook(sock.clone(), ev.name.clone(), ev.payload.clone()).await;
            }
            let Some(route) = route else {
                return;
            };
            let ctx = EventCtx {
                socket: sock.clone(),
                name: ev.name,
                payload: ev.payload,
                ack: ack.clone(),
                state,
            };
            match (route.handler)(ctx).await {
                Reply::None => {}
                Reply::Payload(p) => match &route.emit_result {
                    Some(event) => sock.emit_payload(event, p),
                    None => {
                        if let Some(token) = take_ack(&ack) {
                            sock.send_ack(token, p);
                        }
                    }
                },
                Reply::Error(message) => sock.report_error(message).await,
            }
        };
        let _ = entry.queue.unbounded_send(Job::Handler(Box::pin(fut)));
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

    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        self.sio.handle_request(conn, head, now)
    }

    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        self.sio.handle_body(conn, body, now)
    }

    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        self.sio.handle_ws_message(conn, message, now)
    }

    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        self.sio.handle_ws_drained(conn, now)
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.sio.handle_conn_closed(conn, error, now)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sio.handle_timeout(now)
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.sio.poll_output()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.sio.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.sio.poll_timeout()
    }
}
