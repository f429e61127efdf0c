//! Namespaces: where handlers and middleware are registered, and broadcasts start.

use crate::handler::{ErasedHandler, Handler, IntoReply, erase};
use crate::listeners::ListenerId;
use crate::middleware::{ConnectCtx, ConnectError, IncomingEvent, Next, PacketFlow};
use crate::node::Ctl;
use crate::operators::{BroadcastOperator, RemoteSocket, Target};
use crate::payload::{EncodeError, Payload};
use crate::registry::{NsHandlers, ResultTo, Route};
use crate::socket::Socket;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use volley_core::socketio::{DisconnectReason, Room};

/// Why [`Namespace::server_side_emit_with_ack`] has no answer from every other node.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerSideEmitError {
    /// The request timeout passed first: `responses` holds the answers that came, and
    /// `missing` counts the nodes that did not answer (a node without a handler for the
    /// event, or whose handler failed, never answers).
    Timeout {
        /// The answers that came, in arrival order.
        responses: Vec<Payload>,
        /// Nodes that did not answer.
        missing: usize,
    },
    /// The data could not be encoded.
    Encode(String),
    /// The server stopped.
    Stopped,
}

impl fmt::Display for ServerSideEmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerSideEmitError::Timeout { responses, missing } => write!(
                f,
                "timeout reached: {} responses received, {missing} missing",
                responses.len()
            ),
            ServerSideEmitError::Encode(e) => write!(f, "cannot encode: {e}"),
            ServerSideEmitError::Stopped => f.write_str("the server has stopped"),
        }
    }
}

impl std::error::Error for ServerSideEmitError {}

/// A namespace (or a family of dynamic namespaces) to register handlers on.
#[derive(Clone)]
pub struct Namespace {
    pub(crate) ctl: Arc<Ctl>,
    /// `None` for a dynamic family: it has handlers but no single name to broadcast to.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) handlers: Arc<NsHandlers>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish()
    }
}

impl Namespace {
    /// The name (`None` for a dynamic family).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Adds connection middleware. It runs for every connect to this namespace, after the
    /// global middleware; code after `next.run(ctx).await` runs when the socket disconnects,
    /// and an `Err` before it refuses the connection with CONNECT_ERROR.
    pub fn use_connect<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(ConnectCtx, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.connect,
            Arc::new(move |ctx, next| Box::pin(mw(ctx, next))),
        );
        self
    }

    /// Adds packet middleware for every event of this namespace: it may pass the event on
    /// (rewritten or not), drop it, or reject it (the socket's `error` handlers are told).
    pub fn use_packet<F, Fut>(&self, mw: F) -> &Self
    where
        F: Fn(Socket, IncomingEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PacketFlow> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.packet,
            Arc::new(move |s, e| Box::pin(mw(s, e))),
        );
        self
    }

    /// Adds `handler` as a listener of `event`, after those it has: every listener of an
    /// event runs, in registration order (as listeners of Node's `socket.on`), each starting
    /// before the next and then proceeding concurrently. A handler's return value
    /// acknowledges the event when the client asked for it (see [`EventRoute::emit_result`]
    /// to emit it instead); with several listeners, the first to return a value acknowledges
    /// and the values returned later are dropped, as only the first call of a Node ack
    /// callback counts. Listeners added to one socket ([`Socket::on`]) run after these.
    pub fn on<H, T>(&self, event: &str, handler: H) -> EventRoute
    where
        H: Handler<T>,
        T: 'static,
    {
        self.on_erased(event, erase(handler))
    }

    /// Adds a listener of `event` already erased (a controller's method bound to its
    /// instance).
    pub(crate) fn on_erased(&self, event: &str, handler: ErasedHandler) -> EventRoute {
        let id = ListenerId::next();
        self.handlers.add_route(
            event.to_owned(),
            Route {
                id,
                handler,
                middleware: Vec::new(),
                result: ResultTo::Ack,
            },
        );
        EventRoute {
            ns: self.clone(),
            event: event.to_owned(),
            id,
        }
    }

    /// Runs for every socket that joins the namespace, before any of its events: the
    /// socket's event handlers (and its `disconnecting`/`disconnect` handlers) start only once
    /// every `connection` handler has returned, in registration order. Work that lasts the
    /// socket's life (a subscription loop) belongs in a task of its own.
    pub fn on_connection<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::push(&self.handlers.connection, Arc::new(move |s| Box::pin(f(s))));
        self
    }

    /// Runs when a socket is leaving, with the rooms it was in (its own id included);
    /// `disconnect` handlers start once these have returned.
    pub fn on_disconnecting<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, DisconnectReason, Vec<Room>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.disconnecting,
            Arc::new(move |s, r, rooms| Box::pin(f(s, r, rooms))),
        );
        self
    }

    /// Runs when a socket has left, with Socket.IO's reason.
    pub fn on_disconnect<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.disconnect,
            Arc::new(move |s, r| Box::pin(f(s, r))),
        );
        self
    }

    /// Runs when a handler fails, its data does not extract, or packet middleware rejects.
    pub fn on_error<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.error,
            Arc::new(move |s, e| Box::pin(f(s, e))),
        );
        self
    }

    /// Runs for every incoming event (after packet middleware), handled or not, before the
    /// event's listeners (Node's `socket.onAny`, for every socket of the namespace).
    /// Catch-all listeners run one after the other, each awaited, in this order: a socket's
    /// own prepended ones ([`Socket::prepend_any`]), the namespace's, the socket's own added
    /// with [`Socket::on_any`].
    pub fn on_any<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::push(
            &self.handlers.any,
            Arc::new(move |s, n, p| Box::pin(f(s, n, p))),
        );
        self
    }

    /// [`Namespace::on_any`], but before the namespace's other catch-all listeners (Node's
    /// `prependAny`).
    pub fn prepend_any<F, Fut>(&self, f: F) -> &Self
    where
        F: Fn(Socket, String, Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        NsHandlers::prepend(
            &self.handlers.any,
            Arc::new(move |s, n, p| Box::pin(f(s, n, p))),
        );
        self
    }

    /// Removes every catch-all listener of the namespace (Node's `offAny()` without an
    /// argument); sockets' own stay (see [`Socket::off_any`]).
    pub fn off_any(&self) -> &Self {
        NsHandlers::clear(&self.handlers.any);
        self
    }

    /// Sees every event sent to a socket of this namespace on this node (synchronously, before
    /// it leaves): its own emits, and each broadcast once per socket it reaches (from this
    /// node or another), as the reference's `onAnyOutgoing`.
    pub fn on_any_outgoing<F>(&self, f: F) -> &Self
    where
        F: Fn(&Socket, &str, &Payload) + Send + Sync + 'static,
    {
        NsHandlers::push(&self.handlers.any_outgoing, Arc::new(f));
        self
    }

    /// [`Namespace::on_any_outgoing`], but before the namespace's other outgoing hooks
    /// (Node's `prependAnyOutgoing`).
    pub fn prepend_any_outgoing<F>(&self, f: F) -> &Self
    where
        F: Fn(&Socket, &str, &Payload) + Send + Sync + 'static,
    {
        NsHandlers::prepend(&self.handlers.any_outgoing, Arc::new(f));
        self
    }

    /// Removes every outgoing hook of the namespace (Node's `offAnyOutgoing()` without an
    /// argument); sockets' own stay (see [`Socket::off_any_outgoing`]).
    pub fn off_any_outgoing(&self) -> &Self {
        NsHandlers::clear(&self.handlers.any_outgoing);
        self
    }

    fn operator(&self) -> BroadcastOperator {
        let target = match &self.name {
            Some(name) => Target::Named(name.clone()),
            None => Target::Family(self.handlers.clone()),
        };
        BroadcastOperator::with_target(self.ctl.clone(), target)
    }

    /// Sockets in `room`.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.operator().to(room)
    }

    /// Same as [`Namespace::to`].
    pub fn in_(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.to(room)
    }

    /// Every socket but those in `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.operator().except(room)
    }

    /// Only this node's sockets.
    pub fn local(&self) -> BroadcastOperator {
        self.operator().local()
    }

    /// Skip sockets that cannot take the packet right now.
    pub fn volatile(&self) -> BroadcastOperator {
        self.operator().volatile()
    }

    /// The compression hint.
    pub fn compress(&self, compress: bool) -> BroadcastOperator {
        self.operator().compress(compress)
    }

    /// A time limit for acknowledgements.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.operator().timeout(timeout)
    }

    /// Sends `event` to every socket of the namespace.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.operator().emit(event, data)
    }

    /// Every socket of the namespace.
    pub fn all(&self) -> BroadcastOperator {
        self.operator()
    }

    /// The sockets of the namespace, with their rooms at the time of the call.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        self.operator().fetch_sockets().await
    }

    /// Puts every socket of the namespace in `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.operator().sockets_join(rooms)
    }

    /// Takes every socket of the namespace out of `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.operator().sockets_leave(rooms)
    }

    /// Disconnects every socket of the namespace (closing their connections with `close`).
    pub fn disconnect_sockets(&self, close: bool) {
        self.operator().disconnect_sockets(close)
    }

    /// Sockets connected to the namespace now (to all its children, for a dynamic family).
    pub async fn socket_count(&self) -> usize {
        let target = self.operator().target().clone();
        self.ctl
            .handle
            .call(move |node, _| {
                target
                    .resolve(node)
                    .iter()
                    .map(|name| node.sio.namespace_socket_count(name))
                    .sum()
            })
            .await
            .unwrap_or(0)
    }

    /// The rooms of the namespace that have members, on every node of the cluster (each
    /// socket's own room included), sorted. A node that does not answer within the request
    /// timeout is left out.
    pub async fn all_rooms(&self) -> Vec<Room> {
        let target = self.operator().target().clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.ctl.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.all_rooms(&nsps, tx, now);
        });
        if queued.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Handles `event` when another node of the cluster emits it with
    /// [`server_side_emit`](Namespace::server_side_emit) (replacing an earlier handler of
    /// the same event). The handler gets the arguments; when the sender waits for answers
    /// ([`server_side_emit_with_ack`](Namespace::server_side_emit_with_ack)), its return
    /// value is this node's answer (`()` answers with no arguments; an `Err` is logged and
    /// not answered).
    pub fn on_server_event<F, Fut, R>(&self, event: &str, handler: F) -> &Self
    where
        F: Fn(Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoReply + 'static,
    {
        let handler = Arc::new(handler);
        self.handlers.set_server_event(
            event.to_owned(),
            Arc::new(move |payload| {
                let fut = handler(payload);
                Box::pin(async move { fut.await.into_reply() })
            }),
        );
        self
    }

    /// Emits `event` to the [server-side handlers](Namespace::on_server_event) of the
    /// other nodes of the cluster (never to this node's, as the reference server). Without
    /// a cluster adapter there is no other node, so nothing is sent.
    pub fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EncodeError> {
        self.server_side_emit_payload(event, Payload::of(data)?);
        Ok(())
    }

    /// [`Namespace::server_side_emit`] with a whole argument list.
    pub fn server_side_emit_payload(&self, event: &str, payload: Payload) {
        let target = self.operator().target().clone();
        let event = event.to_owned();
        let _ = self.ctl.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.server_side_emit(&nsps, &event, payload, None, now);
        });
    }

    /// Emits `event` (now) to the server-side handlers of the other nodes and waits for
    /// each node's answer (its handler's return value): one per other node, in arrival
    /// order; empty without other nodes. When some node has not answered within the
    /// builder's `request_timeout`, the error holds the answers that came.
    pub fn server_side_emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<Vec<Payload>, ServerSideEmitError>> + Send + use<T> {
        let answers = match Payload::of(data) {
            Ok(payload) => Ok(self.server_side_emit_with_ack_payload(event, payload)),
            Err(e) => Err(ServerSideEmitError::Encode(e.to_string())),
        };
        async move { answers?.await }
    }

    /// [`Namespace::server_side_emit_with_ack`] with a whole argument list.
    pub fn server_side_emit_with_ack_payload(
        &self,
        event: &str,
        payload: Payload,
    ) -> impl Future<Output = Result<Vec<Payload>, ServerSideEmitError>> + Send + use<> {
        let target = self.operator().target().clone();
        let event = event.to_owned();
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.ctl.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.server_side_emit(&nsps, &event, payload, Some(tx), now);
        });
        async move {
            queued.map_err(|_| ServerSideEmitError::Stopped)?;
            rx.await.unwrap_or(Err(ServerSideEmitError::Stopped))
        }
    }
}

/// One listener of an event, to refine: returned by [`Namespace::on`], and usable as the
/// namespace itself for chaining. Each refinement applies to this listener only, not to the
/// event's other listeners.
pub struct EventRoute {
    ns: Namespace,
    event: String,
    id: ListenerId,
}

impl EventRoute {
    /// The listener's id.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// Midway's `@WSEmit(event)`: the handler's result acknowledges the event when the
    /// client asked for an acknowledgement (`sendWithAck`), and is otherwise emitted to the
    /// socket as `event`.
    pub fn emit_result(self, event: &str) -> Self {
        self.result_to(ResultTo::Emit {
            event: event.to_owned(),
            always: false,
        })
    }

    /// The handler's result is always emitted to the socket as `event`, never used as an
    /// acknowledgement (a client that asked for one gets none).
    pub fn emit_result_always(self, event: &str) -> Self {
        self.result_to(ResultTo::Emit {
            event: event.to_owned(),
            always: true,
        })
    }

    /// Midway's `@WSBroadCast(event)`: the handler's result is emitted as `event` to every
    /// other socket of the namespace (of `rooms` when some are given), as
    /// `socket.broadcast.emit` does; the client that sent the event gets nothing back.
    pub fn broadcast_result(
        self,
        event: &str,
        rooms: impl IntoIterator<Item = impl Into<Room>>,
    ) -> Self {
        self.result_to(ResultTo::Broadcast {
            event: event.to_owned(),
            rooms: rooms.into_iter().map(Into::into).collect(),
        })
    }

    fn result_to(self, result: ResultTo) -> Self {
        self.ns
            .handlers
            .edit_route(&self.event, self.id, |r| r.result = result);
        self
    }

    /// Adds packet middleware for this listener only (after the namespace's, the socket's
    /// and the catch-all listeners; dropping or rejecting the event skips this listener
    /// alone).
    pub fn with<F, Fut>(self, mw: F) -> Self
    where
        F: Fn(Socket, IncomingEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PacketFlow> + Send + 'static,
    {
        let mw: crate::middleware::PacketMw = Arc::new(move |s, e| Box::pin(mw(s, e)));
        self.ns
            .handlers
            .edit_route(&self.event, self.id, |r| r.middleware.push(mw));
        self
    }
}

impl Deref for EventRoute {
    type Target = Namespace;
    fn deref(&self) -> &Namespace {
        &self.ns
    }
}
