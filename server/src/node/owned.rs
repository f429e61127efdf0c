//! A WebSocket session run by its connection's task: its Engine.IO session, its Socket.IO
//! client and the application state of its sockets, stepped there through a [`Peer`] over
//! the shared state, with the handlers started inline. Nothing on the path of its messages
//! is shared with another connection; handles reach it through its [`Mailbox`].

use super::*;
use crate::driver::{ConnOutbox, OwnedSession};
use volley_core::engine::{
    Event as EioEvent, OverflowPolicy, Session, SessionQueues, SessionRequest,
};
use volley_core::socketio::{
    AckToken, Client, Config as SioConfig, Delivery, Handoff, Link, Peer, Recovery, SharedAccess,
};

/// Who waits for the acknowledgements of a broadcast's copy.
#[derive(Clone)]
pub(crate) enum Ask {
    /// A broadcast of this node: its aggregate.
    Member(u64),
    /// Another node's broadcast: the answers go back to it.
    Relay { to: NodeId, request: RequestId },
}

impl Ask {
    fn waiter(&self) -> Waiter {
        match self {
            Ask::Member(key) => Waiter::Member(*key),
            Ask::Relay { to, request } => Waiter::Relay {
                to: *to,
                request: *request,
            },
        }
    }
}

/// What a checked broadcast (`BroadcastOperator::emit_checked`) did on this node, gathered
/// from the sessions that hold its copies: the caller is told once the node and every owner
/// it handed copies to have reported.
pub(crate) struct Receipt(std::sync::Mutex<ReceiptState>);

struct ReceiptState {
    report: crate::operators::Broadcasted,
    /// Reports still to come (the node's own is the first).
    waiting: usize,
    tx: Option<oneshot::Sender<crate::operators::Broadcasted>>,
}

impl Receipt {
    pub(crate) fn new(tx: oneshot::Sender<crate::operators::Broadcasted>) -> Self {
        Receipt(std::sync::Mutex::new(ReceiptState {
            report: crate::operators::Broadcasted::default(),
            waiting: 1,
            tx: Some(tx),
        }))
    }

    /// One more report to wait for.
    pub(crate) fn expect(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting += 1;
    }

    /// One report: adds `part` to what is known, and tells the caller once all came.
    pub(crate) fn settle(&self, part: crate::operators::Broadcasted) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.report.queued += part.queued;
        state.report.refused.extend(part.refused);
        state.report.deferred |= part.deferred;
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            if let Some(tx) = state.tx.take() {
                let _ = tx.send(std::mem::take(&mut state.report));
            }
        }
    }
}

/// A WebSocket session on its connection's task.
pub(crate) struct Owned {
    conn: ConnId,
    /// The session's machine.
    peer: PeerOps,
    hub: Arc<Hub>,
    local: Local,
    mailbox: Arc<Mailbox>,
    route: Route,
    finished: bool,
    /// The latest time a step ran at, for an end that comes with no clock (a drop).
    last_step: Instant,
    /// The deadline the connection's task last learned of ([`OwnedSession::flushed`]).
    due: Option<Instant>,
    /// The acknowledgements awaited that the hub counts for this session.
    acks_counted: usize,
    /// The session runs in a slot, over long-polling: the hub counts it as a polling client.
    slotted: bool,
    /// The connection of the poll the session holds or last held, whose answer may have to
    /// stay uncompressed.
    poll: Option<ConnId>,
    /// Packets sent with `compress(false)` since the last poll answer (`true` once a packet
    /// that allows compression was sent too).
    plain: Option<bool>,
}

/// An owned session's machine: its Engine.IO session, its Socket.IO client and the shared
/// state, with the machine operations of a step (a [`Peer`] built per call).
struct PeerOps {
    session: Box<Session>,
    client: Box<Client>,
    shared: SharedLock,
    config: Arc<SioConfig>,
    /// Lent by the thread for each input ([`Owned::lent`]): an idle session holds no queue.
    events: VecDeque<Event>,
    refused: Vec<SocketId>,
    /// A socket connected (and joined its rooms) in this step: the adapter may have rooms
    /// to hear of before the step's outputs leave.
    joined: bool,
}

impl PeerOps {
    fn peer(&mut self) -> Peer<'_, &mut SharedLock, &mut Session> {
        Peer {
            config: &self.config,
            shared: &mut self.shared,
            client: &mut self.client,
            link: &mut self.session,
            events: &mut self.events,
        }
    }

    fn refused<R>(&mut self, socket: SocketId, r: Result<R, SioError>) -> Result<R, SioError> {
        if let Err(SioError::BufferFull(_)) = &r {
            self.refused.push(socket);
        }
        r
    }
}

impl Ops for PeerOps {
    fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        self.joined = true;
        self.peer().accept(id, now)
    }

    fn is_recovering(&self, id: ConnectId) -> bool {
        self.shared.read(|s| s.is_recovering(id))
    }

    fn reject(
        &mut self,
        id: ConnectId,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) -> Result<(), SioError> {
        self.peer().reject(id, message, data, now)
    }

    fn restore_connect(
        &mut self,
        id: ConnectId,
        session: SessionState,
        stored: Vec<StoredMessage>,
        now: Instant,
    ) -> Result<RestoreOutcome, SioError> {
        self.joined = true;
        self.peer().restore_connect(id, session, stored, now)
    }

    fn disconnect(&mut self, socket: SocketId, close: bool, now: Instant) -> Result<(), SioError> {
        self.peer().disconnect(socket, close, now)
    }

    fn emit(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        volatile: bool,
        now: Instant,
    ) -> Result<bool, SioError> {
        let r = self
            .peer()
            .emit(socket, name, args, attachments, volatile, now);
        self.refused(socket, r)
    }

    fn emit_with_ack(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<AckId, SioError> {
        self.peer()
            .emit_with_ack(socket, name, args, attachments, timeout, now)
    }

    fn ack(
        &mut self,
        token: AckToken,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        now: Instant,
    ) -> Result<(), SioError> {
        let socket = token.socket();
        let r = self.peer().ack(token, args, attachments, now);
        self.refused(socket, r)
    }

    fn session_of(&self, socket: SocketId) -> Option<Sid> {
        if self.client.has_socket(socket) {
            return Some(self.client.sid());
        }
        self.shared.read(|s| s.namespaces().session_of(socket))
    }

    fn transport(&self, sid: Sid) -> Option<TransportKind> {
        (sid == self.session.sid() && !self.session.is_closing()).then(|| self.session.transport())
    }

    fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes) {
        self.shared.with(|s| s.set_session_data(socket, data));
    }

    fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        self.shared.with(|s| s.take_session(socket))
    }

    fn live_session(&self, socket: SocketId) -> Option<SessionState> {
        let pid = self.client.pid(socket)?.to_string();
        let (nsp, rooms) = self.shared.read(|s| {
            let (_, nsp) = s.namespaces().member(socket)?;
            Some((nsp.to_string(), s.namespaces().rooms_of(socket)))
        })?;
        Some(SessionState {
            socket,
            pid,
            nsp: Some(nsp),
            rooms,
            data: None,
        })
    }

    fn is_recovery_shared(&self) -> bool {
        self.shared.is_recovery_shared()
    }

    fn connection_state_recovery(&self) -> Option<Recovery> {
        self.shared.read(|s| s.recovery())
    }

    fn namespace_socket_count(&self, nsp: &str) -> usize {
        self.shared
            .read(|s| s.namespaces().namespace_socket_count(nsp))
    }

    fn has_namespace(&self, nsp: &str) -> bool {
        self.shared.read(|s| s.namespaces().exists(nsp))
    }

    fn take_refused(&mut self) -> Vec<SocketId> {
        std::mem::take(&mut self.refused)
    }

    fn namespace_of(&self, socket: SocketId) -> Option<Arc<str>> {
        self.shared
            .read(|s| s.namespaces().namespace_of(socket).cloned())
    }

    fn overflow(&self) -> OverflowPolicy {
        self.config.engine.overflow
    }

    fn close_session(&mut self, sid: Sid, now: Instant) {
        if sid == self.session.sid() {
            self.session.close(now);
        }
    }
}

impl Owned {
    /// Session `detached` of connection `conn`, to run on that connection's task.
    pub(crate) fn new(
        conn: ConnId,
        detached: volley_core::socketio::Detached,
        shared: SharedLock,
        config: Arc<SioConfig>,
        hub: Arc<Hub>,
        now: Instant,
    ) -> Self {
        let mailbox = Arc::new(Mailbox::bounded(config.engine.queue_bounds()));
        Owned {
            conn,
            peer: PeerOps {
                session: detached.session,
                client: detached.client,
                shared,
                config,
                events: VecDeque::new(),
                refused: Vec::new(),
                joined: false,
            },
            hub,
            local: Local::default(),
            route: Route::Owned(mailbox.clone()),
            mailbox,
            finished: false,
            last_step: now,
            due: None,
            acks_counted: 0,
            slotted: false,
            poll: None,
            plain: None,
        }
    }

    /// To run in a slot, over long-polling (counted as a polling client until it moves or
    /// ends).
    pub(crate) fn in_slot(mut self) -> Self {
        self.slotted = true;
        self.hub.slotted.fetch_add(1, Ordering::Relaxed);
        self
    }

    /// No longer in a slot.
    fn out_of_slot(&mut self) {
        if std::mem::take(&mut self.slotted) {
            self.hub.slotted.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// With `local`: the application state of the sockets the session had before it moved
    /// here (an upgrade).
    pub(crate) fn with_local(mut self, local: Local) -> Self {
        self.local = local;
        self
    }

    /// The session's mailbox.
    pub(crate) fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// The session's id.
    pub(crate) fn sid(&self) -> Sid {
        self.peer.session.sid()
    }

    /// Runs `f` on the application layer of this session.
    fn with_unit<R>(&mut self, f: impl FnOnce(&mut Unit<'_, PeerOps>) -> R) -> R {
        let mut unit = Unit {
            ops: &mut self.peer,
            hub: &self.hub,
            local: &mut self.local,
            route: &self.route,
        };
        f(&mut unit)
    }

    /// Hands the session's Engine.IO events to its peer, then its Socket.IO events to the
    /// application, then the commands that arrived, until nothing is left.
    fn settle(&mut self, now: Instant) {
        let step = super::route::Step::begin(&self.mailbox);
        self.last_step = now;
        loop {
            self.mailbox.running(true);
            loop {
                if self.pump(now) {
                    continue;
                }
                if let Some(event) = self.peer.events.pop_front() {
                    self.with_unit(|unit| unit.dispatch(event, now));
                    continue;
                }
                if let Some(command) = super::route::pop_own().or_else(|| self.mailbox.pop()) {
                    self.apply(command, now);
                    continue;
                }
                break;
            }
            self.mailbox.running(false);
            // A command queued while this step ran woke nobody.
            match self.mailbox.pop() {
                Some(command) => self.apply(command, now),
                None => break,
            }
        }
        if std::mem::take(&mut self.peer.joined) {
            let shared = &mut self.peer.shared;
            self.hub
                .report_rooms(|| shared.with(|s| s.namespaces_mut().take_room_changes()));
        }
        self.with_unit(|unit| {
            unit.report_refused();
            unit.check_upgrades();
        });
        drop(step);
        if self.peer.session.is_ended() && !self.finished {
            self.finish();
        }
        let acks = match self.finished {
            true => 0,
            false => self.local.acks.len() + self.peer.client.ack_count(),
        };
        if acks != self.acks_counted {
            self.hub.count_owned_acks(self.acks_counted, acks);
            self.acks_counted = acks;
        }
    }

    /// Hands the Engine.IO session's events to the peer; whether there were any.
    fn pump(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(event) = self.peer.session.poll_event() {
            any = true;
            let ops = &mut self.peer;
            match event {
                EioEvent::Message { message, .. } => ops.peer().receive(message, now),
                EioEvent::Close { reason, .. } => ops.peer().closed(reason, now),
                EioEvent::Open { .. } | EioEvent::Upgrade { .. } => {}
            }
        }
        any
    }

    fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Emit {
                volatile: false, ..
            } if self.peer.shared.is_recovery_shared() => {
                // Kept where every node can replay it: a broadcast to the socket's room, made
                // by the node.
                if let Some(ctl) = self.hub.ctl() {
                    let _ = ctl.command(command);
                }
            }
            Command::Deliver {
                handoff,
                socket,
                ask,
                hooks,
                receipt,
                plain,
            } => {
                self.note_send(!plain);
                let report = self.deliver(&handoff, socket, ask, hooks, now);
                if let Some(receipt) = receipt {
                    receipt.settle(report);
                }
            }
            Command::Overflowed => self.peer.session.overflowed(now),
            Command::Emit { compress, .. } => {
                self.note_send(compress);
                self.with_unit(|unit| unit.apply(command, now));
            }
            Command::EmitWithAck { .. } => {
                self.note_send(true);
                self.with_unit(|unit| unit.apply(command, now));
            }
            Command::Shutdown => {
                self.peer
                    .peer()
                    .close(DisconnectReason::ServerShuttingDown, now);
            }
            command => self.with_unit(|unit| unit.apply(command, now)),
        }
    }

    /// Records a packet sent over long-polling: with `compress(false)`, the next poll
    /// answer stays uncompressed unless a packet that allows compression joins it.
    fn note_send(&mut self, compress: bool) {
        if compress {
            if let Some(mixed) = self.plain.as_mut() {
                *mixed = true;
            }
        } else if self.peer.session.transport() == TransportKind::Polling {
            self.plain.get_or_insert(false);
        }
    }

    /// Queues a broadcast's copy for `socket`.
    fn deliver(
        &mut self,
        handoff: &Handoff,
        socket: SocketId,
        ask: Option<Ask>,
        hooks: Option<Arc<(String, Payload)>>,
        now: Instant,
    ) -> crate::operators::Broadcasted {
        let mut report = crate::operators::Broadcasted::default();
        if let (Some((event, payload)), Some(entry)) =
            (hooks.as_deref(), self.local.sockets.get(&socket))
        {
            for hook in entry.socket.outgoing_hooks() {
                self.hub.outgoing_hook(&hook, &entry.socket, event, payload);
            }
        }
        let delivery = if self.peer.client.has_socket(socket) {
            let link: &mut Session = &mut self.peer.session;
            link.deliver(&handoff.first, &handoff.attachments, handoff.volatile, now)
        } else {
            Delivery::Gone
        };
        match (delivery, &ask, handoff.ack) {
            (Delivery::Queued, Some(ask), Some((id, deadline))) => {
                report.queued += 1;
                self.peer.client.expect_ack(socket, id.0, deadline);
                self.local.acks.insert((socket, id.0), ask.waiter());
            }
            (Delivery::Queued, ..) => report.queued += 1,
            (delivery, ask, _) => {
                if delivery == Delivery::Refused {
                    report.refused.push(socket);
                    self.peer.refused.push(socket);
                }
                if let Some(Ask::Member(key)) = ask {
                    self.hub.update_aggregate(*key, |agg| {
                        agg.missing += 1;
                        agg.remaining = agg.remaining.saturating_sub(1);
                    });
                }
            }
        }
        report
    }

    /// The session ended: the node forgets it, and what handles still send goes to the
    /// machine, which answers as for any unknown socket.
    fn finish(&mut self) {
        self.finished = true;
        self.out_of_slot();
        self.hub
            .retire(self.peer.session.sid(), &self.mailbox.traffic());
        let left = self.mailbox.close();
        if let Some(ctl) = self.hub.ctl() {
            for command in left {
                let _ = ctl.command(command);
            }
        }
    }
}

thread_local! {
    /// The event queue a session's step borrows, kept by the thread between steps.
    static EVENTS: std::cell::RefCell<VecDeque<Event>> =
        const { std::cell::RefCell::new(VecDeque::new()) };
    /// The Engine.IO session's queues, lent likewise until its outputs are taken.
    static QUEUES: std::cell::RefCell<SessionQueues> =
        std::cell::RefCell::new(SessionQueues::default());
}

impl Owned {
    /// Runs `f` with the thread's event queue lent to this session, and takes the (emptied)
    /// queue back after.
    fn lent<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        // A step starts: copies of broadcasts wait in the mailbox until its outputs are out.
        self.mailbox.set_lane(false);
        QUEUES.with(|q| self.peer.session.lend_queues(&mut q.borrow_mut()));
        EVENTS.with(|q| std::mem::swap(&mut self.peer.events, &mut q.borrow_mut()));
        let r = f(self);
        if self.peer.events.is_empty() {
            EVENTS.with(|q| std::mem::swap(&mut self.peer.events, &mut q.borrow_mut()));
        }
        r
    }
}

impl OwnedSession for Owned {
    fn handle_ws_message(&mut self, message: WsMessage, now: Instant) {
        self.lent(|o| o.ws_message(message, now));
    }

    fn handle_ws_drained(&mut self, now: Instant) {
        self.lent(|o| o.ws_drained(now));
    }

    fn handle_closed(&mut self, error: bool, now: Instant) {
        self.lent(|o| o.closed(error, now));
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.lent(|o| o.timeout(now));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        match (
            self.peer.session.poll_timeout(),
            self.peer.client.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn attach(&mut self, outbox: ConnOutbox) {
        // The express lane carries frames encoded for Engine.IO 4; an Engine.IO 3 session
        // (a 2.x client) has every copy queued by its own step, which frames it its way.
        if self.peer.session.protocol() == volley_core::engine::Protocol::V4 {
            self.mailbox.attach(outbox.0, self.conn);
        }
    }

    fn flushed(&mut self) {
        // The connection's task waits for the deadline it last saw, woken only by its timer
        // and this mailbox: a step that moved the deadline wakes it to look again.
        let due = self.poll_timeout();
        if due != self.due {
            self.due = due;
            self.mailbox.wake();
        }
        let session = &self.peer.session;
        let idle = !self.finished
            && !session.is_ended()
            && !session.is_closing()
            && session.queued() == 0
            && session.transport() == TransportKind::WebSocket;
        if idle {
            self.mailbox.set_lane(true);
        }
    }

    fn handle_conn_request(
        &mut self,
        conn: ConnId,
        request: &SessionRequest,
        head: &RequestHead,
        now: Instant,
    ) {
        if request.kind() == volley_core::engine::RequestKind::Poll {
            self.poll = Some(conn);
        }
        self.lent(|o| {
            if let Err(misuse) = o.peer.session.handle_request(conn, request, head, now) {
                tracing::debug!(%misuse, "request refused by the session");
            }
            o.settle(now);
        });
    }

    fn handle_conn_body(&mut self, conn: ConnId, body: Body, now: Instant) {
        self.lent(|o| {
            let mut traffic = volley_core::socketio::Traffic::default();
            traffic.body_received(&body);
            o.mailbox.count(&traffic);
            if let Err(misuse) = o.peer.session.handle_body(conn, body, now) {
                tracing::debug!(%misuse, "body refused by the session");
            }
            o.settle(now);
        });
    }

    fn handle_conn_message(&mut self, conn: ConnId, message: WsMessage, now: Instant) {
        self.lent(|o| o.message_on(conn, message, now));
    }

    fn handle_conn_drained(&mut self, conn: ConnId, now: Instant) {
        self.lent(|o| {
            o.peer.session.handle_ws_drained(conn, now);
            o.settle(now);
        });
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.lent(|o| {
            o.peer.session.handle_conn_closed(conn, error, now);
            o.settle(now);
        });
    }

    fn movable_to(&self, conn: ConnId) -> bool {
        let session = &self.peer.session;
        !self.finished
            && session.transport() == TransportKind::WebSocket
            && !session.is_closing()
            && session
                .connections()
                .all(|(c, role)| c == conn && role == volley_core::engine::ConnRole::WebSocket)
            && self.peer.client.pending_count() == 0
    }

    fn move_to(&mut self, conn: ConnId) {
        self.conn = conn;
        self.out_of_slot();
    }

    fn is_ended(&self) -> bool {
        self.finished
    }

    fn poll_commands(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        !self.finished && self.mailbox.poll_ready(cx)
    }

    fn poll_output(&mut self) -> Option<Output> {
        let Some(mut output) = self.peer.session.poll_output() else {
            // Drained: the queues go back to the thread.
            QUEUES.with(|q| self.peer.session.lend_queues(&mut q.borrow_mut()));
            return None;
        };
        match &output {
            Output::Send { message, .. } => self.mailbox.count_sent(message.len()),
            Output::Response { conn, .. } => {
                let mut traffic = volley_core::socketio::Traffic::default();
                traffic.output(&output);
                self.mailbox.count(&traffic);
                if self.poll == Some(*conn) {
                    self.poll = None;
                    if self.plain.take() == Some(false) {
                        // Only packets sent with `compress(false)`: the driver leaves it as
                        // it is.
                        if let Output::Response { response, .. } = &mut output {
                            response
                                .headers
                                .push((crate::driver::UNCOMPRESSED, String::new()));
                        }
                    }
                }
            }
            Output::ReadBody { .. } | Output::Close { .. } => {}
        }
        Some(output)
    }
}

impl Owned {
    fn ws_message(&mut self, message: WsMessage, now: Instant) {
        self.message_on(self.conn, message, now);
    }

    fn message_on(&mut self, conn: ConnId, message: WsMessage, now: Instant) {
        self.mailbox.count_received(message.len());
        if let Err(misuse) = self.peer.session.handle_ws_message(conn, message, now) {
            tracing::debug!(%misuse, "WebSocket message dropped");
        }
        self.settle(now);
    }

    fn ws_drained(&mut self, now: Instant) {
        self.peer.session.handle_ws_drained(self.conn, now);
        self.settle(now);
    }

    fn closed(&mut self, error: bool, now: Instant) {
        self.peer.session.handle_conn_closed(self.conn, error, now);
        // A session that other connections held too (one run in a slot, dropped when the
        // server stopped) ends with it all the same.
        self.peer.session.abandon(now);
        self.settle(now);
        if !self.finished {
            self.finish();
        }
    }

    fn timeout(&mut self, now: Instant) {
        if self.peer.session.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.session.handle_timeout(now);
        }
        if self.peer.client.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.peer().handle_timeout(now);
        }
        self.settle(now);
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.finished {
            // The connection's task ended without telling (the server stopped): its sockets
            // leave as when the connection fails.
            self.handle_closed(true, self.last_step);
        }
    }
}

/// What is shown of an owned session.
impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned")
            .field("sid", &self.peer.session.sid())
            .field("sockets", &self.local.sockets.len())
            .finish_non_exhaustive()
    }
}
