//! The socket handle handlers work with.

use crate::ack::AckError;
use crate::connection::Connection;
use crate::extensions::Extensions;
use crate::handler::{Handler, erase};
use crate::handshake::Handshake;
use crate::listeners::{ListenerId, OwnListener, SocketListeners};
use crate::middleware::{IncomingEvent, PacketFlow, PacketMw};
use crate::node::{Command, Ctl, Route};
use crate::operators::BroadcastOperator;
use crate::payload::{EncodeError, Payload};
use crate::registry::NsHandlers;
use crate::registry::{AnyHook, OutgoingHook};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use volley_core::SocketId;
use volley_core::socketio::{AckToken, Room};

/// A connected socket: one client in one namespace. Cheap to clone; every method is safe to
/// call after the socket left (it then does nothing, or reports that it is gone).
#[derive(Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

struct Inner {
    id: SocketId,
    /// Also holds the namespace (`handshake.nsp`).
    handshake: Handshake,
    data: Extensions,
    ctl: Arc<Ctl>,
    /// The mailbox of the task that runs the socket's session, when that is not the
    /// machine's: set when the socket is made, or once when its session moves to its
    /// WebSocket's task (an upgrade).
    route: std::sync::OnceLock<Arc<crate::node::Mailbox>>,
    ns: Arc<NsHandlers>,
    connected: AtomicBool,
    recovered: bool,
    listeners: Mutex<OwnListeners>,
}

/// What the socket registered on itself, allocated at the first registration: most sockets
/// register nothing, and the lists would be a third of an idle socket's handle.
#[derive(Default)]
struct OwnListeners {
    /// The socket disconnected: its listeners are dropped and nothing more is registered.
    closed: bool,
    list: Option<Box<SocketListeners>>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("nsp", &self.inner.handshake.nsp)
            .field("connected", &self.connected())
            .finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Socket {
    pub(crate) fn new(
        id: SocketId,
        handshake: Handshake,
        data: Extensions,
        ctl: Arc<Ctl>,
        ns: Arc<NsHandlers>,
        recovered: bool,
        route: Route,
    ) -> Self {
        let cell = std::sync::OnceLock::new();
        if let Route::Owned(mailbox) = route {
            let _ = cell.set(mailbox);
        }
        Socket {
            inner: Arc::new(Inner {
                id,
                handshake,
                data,
                ctl,
                route: cell,
                ns,
                connected: AtomicBool::new(true),
                recovered,
                listeners: Mutex::new(OwnListeners::default()),
            }),
        }
    }

    /// Whether this socket was recovered (connection state recovery): the client came back
    /// within the window and got its id, rooms and `data()` back, with the packets it
    /// missed.
    pub fn recovered(&self) -> bool {
        self.inner.recovered
    }

    pub(crate) fn ns_handlers(&self) -> &Arc<NsHandlers> {
        &self.inner.ns
    }

    pub(crate) fn mark_disconnected(&self) {
        self.inner.connected.store(false, Ordering::SeqCst);
    }

    /// The socket's id (not the Engine.IO session id).
    pub fn id(&self) -> SocketId {
        self.inner.id
    }

    /// The namespace.
    pub fn ns(&self) -> &str {
        &self.inner.handshake.nsp
    }

    /// The handshake: headers, query, auth, address, time.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// Data attached to the socket (Node's `socket.data`), typed.
    ///
    /// On a cluster, what the other nodes see of it (in their `fetch_sockets`) is the
    /// `serde_json::Value` stored here, if any (`null` travels when there is none): store
    /// one (`socket.data().insert(json!({...}))`) for data other nodes need; values of other
    /// types stay on this node.
    pub fn data(&self) -> &Extensions {
        &self.inner.data
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// Sends `event` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.emit_payload(event, Payload::of(data)?);
        Ok(())
    }

    /// Sends `event` with a whole argument list (several arguments, binary).
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        self.send(event, payload, false, true);
    }

    /// Sends `event` with one argument (now, in order with the socket's other emits, not
    /// when the future is first polled) and tells whether it was queued for the client.
    ///
    /// [`emit`](Socket::emit) returns before the server has queued the packet, so a refusal
    /// (its session's queue is full: `max_buffered_packets` / `max_buffered_bytes` under
    /// [`OverflowPolicy::Reject`](volley_core::engine::OverflowPolicy)) only reaches the
    /// [`Io::on_error`](crate::Io::on_error) hooks; this one resolves to
    /// [`EmitError::Full`] as well, so the caller can retry, drop or slow down. Under
    /// `OverflowPolicy::Close` the session is closed instead, and this resolves to `Full`
    /// too. With an adapter that keeps sessions for recovery (the Redis Streams adapter), a
    /// single emit travels as a broadcast to the socket's own room (as in the reference) and
    /// resolves `Ok` once it is handed on; a refusal then reaches `on_error` only.
    pub fn emit_checked<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<(), EmitError>> + Send + use<T> {
        let payload = Payload::of(data);
        let (tx, rx) = futures::channel::oneshot::channel();
        if let Ok(payload) = &payload {
            let (id, nsp, event) = (
                self.inner.id,
                self.inner.handshake.nsp.clone(),
                event.to_owned(),
            );
            let _ = self.command(Command::Emit {
                socket: id,
                nsp,
                event,
                payload: payload.clone(),
                volatile: false,
                compress: true,
                reply: Some(tx),
            });
        }
        async move {
            payload.map_err(EmitError::Encode)?;
            rx.await.unwrap_or(Err(EmitError::Disconnected))
        }
    }

    /// An emitter whose packets may be compressed or not (Node's `socket.compress(bool)`;
    /// by default they may): with `false`, a long-polling answer that carries only such
    /// packets is sent uncompressed even over the HTTP compression threshold. WebSocket
    /// messages are never compressed.
    pub fn compress(&self, compress: bool) -> SocketEmitter {
        SocketEmitter {
            socket: self.clone(),
            compress,
        }
    }

    /// Sends `event`, but only if the transport can take it right now.
    pub fn emit_volatile<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EncodeError> {
        self.send(event, Payload::of(data)?, true, true);
        Ok(())
    }

    /// Hands the emit to the machine, which runs the outgoing hooks (once, also when recovery
    /// makes it a broadcast to the socket's room).
    fn send(&self, event: &str, payload: Payload, volatile: bool, compress: bool) {
        let id = self.inner.id;
        let nsp = self.inner.handshake.nsp.clone();
        let event = event.to_owned();
        // A refusal reaches the `on_error` hooks; `emit_checked` hands it over too.
        let _ = self.command(Command::Emit {
            socket: id,
            nsp,
            event,
            payload,
            volatile,
            compress,
            reply: None,
        });
    }

    /// Sends `event` (now, not when the future is first polled) and waits for the client's
    /// acknowledgement, with no time limit (see [`Socket::timeout`]). The future does not
    /// borrow the socket.
    pub fn emit_with_ack<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<R, AckError>> + Send + use<T, R> {
        self.ack_request(event, data, None)
    }

    /// An emitter whose acknowledgements fail with [`AckError::Timeout`] after `timeout`.
    pub fn timeout(&self, timeout: Duration) -> TimedSocket {
        TimedSocket {
            socket: self.clone(),
            timeout,
        }
    }

    fn ack_request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        event: &str,
        data: &T,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<R, AckError>> + Send + use<T, R> {
        let answer = match Payload::of(data) {
            Ok(payload) => Ok(self.ack_payload(event, payload, timeout)),
            Err(e) => Err(AckError::Encode(e.to_string())),
        };
        async move {
            answer?
                .await?
                .deserialize()
                .map_err(|e| AckError::Decode(e.to_string()))
        }
    }

    /// Sends `event` with `payload` (now) and waits for the acknowledgement's arguments.
    pub fn ack_payload(
        &self,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<Payload, AckError>> + Send + use<> {
        for hook in self.outgoing_hooks() {
            hook(self, event, &payload);
        }
        let id = self.inner.id;
        let event = event.to_owned();
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.command(Command::EmitWithAck {
            socket: id,
            event,
            payload,
            timeout,
            tx,
        });
        async move {
            queued.map_err(|_| AckError::Stopped)?;
            rx.await.unwrap_or(Err(AckError::Stopped))
        }
    }

    pub(crate) fn send_ack(&self, token: AckToken, payload: Payload) {
        let _ = self.command(Command::Ack { token, payload });
    }

    /// Joins `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let id = self.inner.id;
        let room = room.into();
        let _ = self.inner.ctl.cast(move |node, _| {
            let _ = node.sio.join(id, room);
        });
    }

    /// Leaves `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        let id = self.inner.id;
        let room = room.into();
        let _ = self.inner.ctl.cast(move |node, _| {
            let _ = node.sio.leave(id, &room);
        });
    }

    /// The rooms the socket is in (its own id included).
    pub async fn rooms(&self) -> Vec<Room> {
        let id = self.inner.id;
        self.inner
            .ctl
            .handle
            .call(move |node, _| node.sio.rooms_of(id))
            .await
            .unwrap_or_default()
    }

    fn operator(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.ctl.clone(), self.inner.handshake.nsp.clone())
            .except(self.id())
    }

    /// Everyone in `room` but this socket.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.operator().to(room)
    }

    /// Same as [`Socket::to`].
    pub fn in_(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.to(room)
    }

    /// Everyone in the namespace but this socket and those in `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.operator().except(room)
    }

    /// Everyone in the namespace but this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        self.operator()
    }

    /// Leaves the namespace; with `close`, closes the whole connection.
    pub fn disconnect(&self, close: bool) {
        let id = self.inner.id;
        let _ = self.command(Command::Disconnect { socket: id, close });
    }

    /// The Engine.IO connection under this socket (Node's `socket.conn`): its transport, its
    /// upgrade, its address, and closing it whole.
    pub fn conn(&self) -> Connection {
        Connection {
            socket: self.clone(),
        }
    }

    /// Sends `command` to the socket's session, wherever it runs.
    pub(crate) fn command(&self, command: Command) -> Result<(), crate::driver::Stopped> {
        match self.inner.route.get() {
            Some(mailbox) => self.inner.ctl.send_owned(mailbox, command),
            None => self.inner.ctl.command(command),
        }
    }

    /// How commands reach the socket's session.
    pub(crate) fn route(&self) -> Route {
        match self.inner.route.get() {
            Some(mailbox) => Route::Owned(mailbox.clone()),
            None => Route::Machine,
        }
    }

    /// The socket's session now runs on the task of `mailbox` (it moved there whole, with
    /// its sockets). A socket made there already knows it.
    pub(crate) fn moved_to(&self, mailbox: &Arc<crate::node::Mailbox>) {
        let _ = self.inner.route.set(mailbox.clone());
    }

    // ---- listeners of this socket ----

    fn own(&self) -> std::sync::MutexGuard<'_, OwnListeners> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` on this socket's listeners, or `none` when it registered none (nothing is
    /// allocated to find out).
    fn listeners<T>(&self, none: T, f: impl FnOnce(&mut SocketListeners) -> T) -> T {
        match self.own().list.as_deref_mut() {
            Some(list) => f(list),
            None => none,
        }
    }

    /// Registers with `f` unless the socket has disconnected; the new listener's id.
    fn register(&self, f: impl FnOnce(&mut SocketListeners, ListenerId)) -> ListenerId {
        let id = ListenerId::next();
        let mut own = self.own();
        if !own.closed {
            f(own.list.get_or_insert_with(Box::default), id);
        }
        id
    }

    /// Adds `handler` as a listener of `event` for this socket only (Node's `socket.on`),
    /// for instance from a `connection` handler. It runs after the namespace's listeners of
    /// the event and this socket's earlier ones; its return value acknowledges the event
    /// when no listener before it did. The reserved events `disconnecting` and `disconnect`
    /// are listened to the same way: their listeners get the reason (`Data<String>`) and run
    /// after the namespace's `on_disconnecting` / `on_disconnect` handlers. Listeners are
    /// dropped when the socket disconnects; once it has, this does nothing.
    pub fn on<H, T>(&self, event: &str, handler: H) -> ListenerId
    where
        H: Handler<T>,
        T: 'static,
    {
        self.add_listener(event, handler, false)
    }

    /// [`Socket::on`] for the next occurrence of `event` only (Node's `socket.once`).
    pub fn once<H, T>(&self, event: &str, handler: H) -> ListenerId
    where
        H: Handler<T>,
        T: 'static,
    {
        self.add_listener(event, handler, true)
    }

    fn add_listener<H, T>(&self, event: &str, handler: H, once: bool) -> ListenerId
    where
        H: Handler<T>,
        T: 'static,
    {
        let handler = erase(handler);
        self.register(|l, id| {
            l.events
                .entry(event.to_owned())
                .or_default()
                .push(OwnListener { id, handler, once })
        })
    }

    /// Removes every listener of `event` this socket registered on itself (Node's
    /// `socket.off(event)` / `removeAllListeners(event)`); the namespace's stay.
    pub fn off(&self, event: &str) {
        self.listeners((), |l| {
            l.events.remove(event);
        });
    }

    /// Removes one listener of this socket, of whatever kind (an event listener, packet
    /// middleware excepted, a catch-all or outgoing one): whether it was there.
    pub fn off_listener(&self, id: ListenerId) -> bool {
        let (found, removed) = self.listeners((false, 0), |l| {
            let before = l.outgoing_count();
            let found = l.remove(id);
            (found, before - l.outgoing_count())
        });
        self.inner
            .ctl
            .own_outgoing
            .fetch_sub(removed, Ordering::AcqRel);
        found
    }

    /// Removes every event listener this socket registered on itself (Node's
    /// `removeAllListeners()`); catch-all listeners and middleware stay.
    pub fn off_all(&self) {
        self.listeners((), |l| l.events.clear());
    }

    /// How many listeners of `event` this socket registered on itself.
    pub fn listener_count(&self, event: &str) -> usize {
        self.listeners(0, |l| l.events.get(event).map_or(0, Vec::len))
    }

    /// Adds packet middleware for this socket's events (Node's `socket.use`): it runs after
    /// the global and the namespace's packet middleware, in registration order, with the
    /// same choices (pass on, rewritten or not; drop; reject).
    pub fn use_packet<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(Socket, IncomingEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PacketFlow> + Send + 'static,
    {
        let mw: PacketMw = Arc::new(move |s, e| Box::pin(mw(s, e)));
        self.register(|l, _| l.middleware.push(mw));
        self
    }

    /// Adds a catch-all listener for this socket's incoming events (Node's `socket.onAny`):
    /// after the namespace's (see [`Namespace::on_any`](crate::Namespace::on_any) for the
    /// order).
    pub fn on_any<F, Fut>(&self, f: F) -> ListenerId
    where
        F: Fn(Socket, String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: AnyHook = Arc::new(move |s, n, p| Box::pin(f(s, n, p)));
        self.register(|l, id| l.any_back.push((id, hook)))
    }

    /// [`Socket::on_any`], but before every other catch-all listener of the socket, the
    /// namespace's included (Node's `socket.prependAny`).
    pub fn prepend_any<F, Fut>(&self, f: F) -> ListenerId
    where
        F: Fn(Socket, String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook: AnyHook = Arc::new(move |s, n, p| Box::pin(f(s, n, p)));
        self.register(|l, id| l.any_front.insert(0, (id, hook)))
    }

    /// Removes catch-all listener `id` of this socket, or, with `None`, every one this socket
    /// registered (Node's `socket.offAny(listener)` / `offAny()`).
    pub fn off_any(&self, id: Option<ListenerId>) {
        self.listeners((), |l| match id {
            Some(id) => {
                l.any_front.retain(|(i, _)| *i != id);
                l.any_back.retain(|(i, _)| *i != id);
            }
            None => {
                l.any_front.clear();
                l.any_back.clear();
            }
        });
    }

    /// Sees every event sent to this socket, before it leaves (Node's
    /// `socket.onAnyOutgoing`): after the namespace's outgoing hooks.
    pub fn on_any_outgoing<F>(&self, f: F) -> ListenerId
    where
        F: Fn(&Socket, &str, &Payload) + Send + Sync + 'static,
    {
        let hook: OutgoingHook = Arc::new(f);
        let ctl = &self.inner.ctl;
        self.register(|l, id| {
            l.out_back.push((id, hook));
            ctl.own_outgoing.fetch_add(1, Ordering::AcqRel);
        })
    }

    /// [`Socket::on_any_outgoing`], but before every other outgoing hook of the socket, the
    /// namespace's included (Node's `socket.prependAnyOutgoing`).
    pub fn prepend_any_outgoing<F>(&self, f: F) -> ListenerId
    where
        F: Fn(&Socket, &str, &Payload) + Send + Sync + 'static,
    {
        let hook: OutgoingHook = Arc::new(f);
        let ctl = &self.inner.ctl;
        self.register(|l, id| {
            l.out_front.insert(0, (id, hook));
            ctl.own_outgoing.fetch_add(1, Ordering::AcqRel);
        })
    }

    /// Removes outgoing hook `id` of this socket, or, with `None`, every one this socket
    /// registered (Node's `socket.offAnyOutgoing(listener)` / `offAnyOutgoing()`).
    pub fn off_any_outgoing(&self, id: Option<ListenerId>) {
        let removed = self.listeners(0, |l| {
            let before = l.outgoing_count();
            match id {
                Some(id) => {
                    l.out_front.retain(|(i, _)| *i != id);
                    l.out_back.retain(|(i, _)| *i != id);
                }
                None => {
                    l.out_front.clear();
                    l.out_back.clear();
                }
            }
            before - l.outgoing_count()
        });
        self.inner
            .ctl
            .own_outgoing
            .fetch_sub(removed, Ordering::AcqRel);
    }

    /// This socket's listeners of `event` (the `once` ones taken out).
    pub(crate) fn take_listeners(&self, event: &str) -> Vec<OwnListener> {
        self.listeners(Vec::new(), |l| l.take_event(event))
    }

    /// This socket's packet middleware.
    pub(crate) fn own_middleware(&self) -> Vec<PacketMw> {
        self.listeners(Vec::new(), |l| l.middleware.clone())
    }

    /// The catch-all listeners of this socket's incoming events, in the order they run.
    pub(crate) fn any_hooks(&self) -> Vec<AnyHook> {
        let own = self.own();
        let Some(l) = own.list.as_deref() else {
            return self.inner.ns.any();
        };
        let mut hooks: Vec<AnyHook> = l.any_front.iter().map(|(_, h)| h.clone()).collect();
        hooks.extend(self.inner.ns.any());
        hooks.extend(l.any_back.iter().map(|(_, h)| h.clone()));
        hooks
    }

    /// The outgoing hooks of this socket, in the order they run.
    pub(crate) fn outgoing_hooks(&self) -> Vec<OutgoingHook> {
        let ns = self.inner.ns.any_outgoing();
        if self.inner.ctl.own_outgoing.load(Ordering::Acquire) == 0 {
            return ns;
        }
        let own = self.own();
        let Some(l) = own.list.as_deref() else {
            return ns;
        };
        let mut hooks: Vec<OutgoingHook> = l.out_front.iter().map(|(_, h)| h.clone()).collect();
        hooks.extend(ns);
        hooks.extend(l.out_back.iter().map(|(_, h)| h.clone()));
        hooks
    }

    /// Drops every listener of the socket (at its disconnect): they hold clones of the
    /// socket, and register nothing more.
    pub(crate) fn close_listeners(&self) {
        let outgoing = {
            let mut own = self.own();
            own.closed = true;
            own.list.take().map_or(0, |l| l.outgoing_count())
        };
        self.inner
            .ctl
            .own_outgoing
            .fetch_sub(outgoing, Ordering::AcqRel);
    }

    /// Runs the namespace's `error` handlers for this socket.
    pub(crate) async fn report_error(&self, message: String) {
        let hooks = self.inner.ns.error();
        if hooks.is_empty() {
            tracing::debug!(socket = %self.id(), error = %message, "unhandled socket error");
        }
        for hook in hooks {
            hook(self.clone(), message.clone()).await;
        }
    }
}

/// A socket whose emits carry a compression flag (from [`Socket::compress`]).
#[derive(Debug, Clone)]
pub struct SocketEmitter {
    socket: Socket,
    compress: bool,
}

impl SocketEmitter {
    /// Sends `event` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.emit_payload(event, Payload::of(data)?);
        Ok(())
    }

    /// Sends `event` with a whole argument list.
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        self.socket.send(event, payload, false, self.compress);
    }

    /// Sends `event`, but only if the transport can take it right now.
    pub fn emit_volatile<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EncodeError> {
        self.socket
            .send(event, Payload::of(data)?, true, self.compress);
        Ok(())
    }
}

/// A socket with an acknowledgement timeout (from [`Socket::timeout`]).
#[derive(Debug, Clone)]
pub struct TimedSocket {
    socket: Socket,
    timeout: Duration,
}

impl TimedSocket {
    /// Sends `event` (now) and waits for the acknowledgement, at most the timeout.
    pub fn emit_with_ack<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<R, AckError>> + Send + use<T, R> {
        self.socket.ack_request(event, data, Some(self.timeout))
    }

    /// Sends `event` with `payload` (now) and waits for the acknowledgement's arguments, at
    /// most the timeout.
    pub fn ack_payload(
        &self,
        event: &str,
        payload: Payload,
    ) -> impl Future<Output = Result<Payload, AckError>> + Send + use<> {
        self.socket.ack_payload(event, payload, Some(self.timeout))
    }
}

/// Why [`Socket::emit_checked`] did not queue its packet.
#[derive(Debug)]
pub enum EmitError {
    /// The argument could not be encoded.
    Encode(EncodeError),
    /// The session's outgoing queue is full.
    Full,
    /// The socket is no longer connected (or the server stopped).
    Disconnected,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Encode(e) => e.fmt(f),
            EmitError::Full => f.write_str("the socket's outgoing queue is full"),
            EmitError::Disconnected => f.write_str("the socket is not connected"),
        }
    }
}

impl std::error::Error for EmitError {}
