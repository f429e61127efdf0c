//! The socket handle handlers work with.

use crate::ack::AckError;
use crate::extensions::Extensions;
use crate::handshake::Handshake;
use crate::node::Ctl;
use crate::operators::BroadcastOperator;
use crate::payload::{EncodeError, Payload};
use crate::registry::NsHandlers;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    nsp: Arc<str>,
    handshake: Handshake,
    data: Extensions,
    ctl: Arc<Ctl>,
    ns: Arc<NsHandlers>,
    connected: AtomicBool,
    recovered: bool,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("nsp", &self.inner.nsp)
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
    ) -> Self {
        Socket {
            inner: Arc::new(Inner {
                id,
                nsp: handshake.nsp.clone(),
                handshake,
                data,
                ctl,
                ns,
                connected: AtomicBool::new(true),
                recovered,
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
        &self.inner.nsp
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
        self.send(event, payload, false);
    }

    /// Sends `event`, but only if the transport can take it right now.
    pub fn emit_volatile<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EncodeError> {
        self.send(event, Payload::of(data)?, true);
        Ok(())
    }

    /// Hands the emit to the machine, which runs the outgoing hooks (once, also when recovery
    /// makes it a broadcast to the socket's room).
    fn send(&self, event: &str, payload: Payload, volatile: bool) {
        let id = self.inner.id;
        let nsp = self.inner.nsp.clone();
        let event = event.to_owned();
        let _ = self
            .inner
            .ctl
            .handle
            .cast(move |node, now| node.emit_to(id, &nsp, &event, payload, volatile, now));
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
        for hook in self.inner.ns.any_outgoing() {
            hook(self, event, &payload);
        }
        let id = self.inner.id;
        let event = event.to_owned();
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.inner.ctl.handle.cast(move |node, now| {
            node.emit_with_ack(id, &event, payload, timeout, tx, now);
        });
        async move {
            queued.map_err(|_| AckError::Stopped)?;
            rx.await.unwrap_or(Err(AckError::Stopped))
        }
    }

    pub(crate) fn send_ack(&self, token: AckToken, payload: Payload) {
        let _ = self.inner.ctl.handle.cast(move |node, now| {
            let (json, attachments) = payload.into_wire();
            let _ = node.sio.ack(token, &json, attachments, now);
        });
    }

    /// Joins `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let id = self.inner.id;
        let room = room.into();
        let _ = self.inner.ctl.handle.cast(move |node, _| {
            let _ = node.sio.join(id, room);
        });
    }

    /// Leaves `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        let id = self.inner.id;
        let room = room.into();
        let _ = self.inner.ctl.handle.cast(move |node, _| {
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
        BroadcastOperator::new(self.inner.ctl.clone(), self.inner.nsp.clone()).except(self.id())
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
        let _ = self.inner.ctl.handle.cast(move |node, now| {
            let _ = node.sio.disconnect(id, close, now);
        });
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
