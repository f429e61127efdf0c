//! Broadcast operators: choose sockets by room, then emit to them, acknowledge, fetch, move
//! or disconnect them.

use crate::ack::{AckResponse, PartialAcks};
use crate::extensions::Extensions;
use crate::handshake::Handshake;
use crate::node::Ctl;
use crate::node::Node;
use crate::payload::{EncodeError, Payload};
use crate::registry::NsHandlers;
use crate::socket::Socket;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use volley_core::SocketId;
use volley_core::socketio::{BroadcastOptions, Room};

/// Why a broadcast with acknowledgements did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum BroadcastAckError {
    /// Some sockets did not answer in time (or left); the others' answers are kept.
    Partial(PartialAcks),
    /// The data could not be encoded.
    Encode(String),
    /// The server stopped.
    Stopped,
}

impl fmt::Display for BroadcastAckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BroadcastAckError::Partial(p) => p.fmt(f),
            BroadcastAckError::Encode(e) => write!(f, "cannot encode: {e}"),
            BroadcastAckError::Stopped => f.write_str("the server has stopped"),
        }
    }
}

impl std::error::Error for BroadcastAckError {}

/// The namespaces an operator acts on.
#[derive(Clone)]
pub(crate) enum Target {
    /// One namespace.
    Named(Arc<str>),
    /// Every namespace that exists now and is served by this dynamic family's handlers (as
    /// Node's parent namespace broadcasts to all its children).
    Family(Arc<NsHandlers>),
}

impl Target {
    /// The namespaces meant, now.
    pub(crate) fn resolve(&self, node: &Node) -> Vec<Arc<str>> {
        match self {
            Target::Named(name) => vec![name.clone()],
            Target::Family(handlers) => node.family_members(handlers),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Named(name) => fmt::Debug::fmt(name, f),
            Target::Family(_) => f.write_str("<dynamic namespaces>"),
        }
    }
}

/// A selection of sockets in one namespace (or in every child of a dynamic namespace), with
/// flags; build it with `to`, `except`, … and finish with an action.
#[derive(Clone)]
pub struct BroadcastOperator {
    ctl: Arc<Ctl>,
    target: Target,
    opts: BroadcastOptions,
    timeout: Option<Duration>,
}

impl fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("nsp", &self.target)
            .field("opts", &self.opts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(ctl: Arc<Ctl>, nsp: Arc<str>) -> Self {
        Self::with_target(ctl, Target::Named(nsp))
    }

    pub(crate) fn with_target(ctl: Arc<Ctl>, target: Target) -> Self {
        BroadcastOperator {
            ctl,
            target,
            opts: BroadcastOptions::default(),
            timeout: None,
        }
    }

    /// Adds `room` to the target rooms (a union).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn in_(self, room: impl Into<Room>) -> Self {
        self.to(room)
    }

    /// Leaves out the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    /// Only this node's sockets (no cluster forwarding).
    pub fn local(mut self) -> Self {
        self.opts.local = true;
        self
    }

    /// Skips sockets whose transport cannot take the packet right now.
    pub fn volatile(mut self) -> Self {
        self.opts.volatile = true;
        self
    }

    /// The compression hint.
    pub fn compress(mut self, compress: bool) -> Self {
        self.opts.compress = compress;
        self
    }

    /// The time limit of [`BroadcastOperator::emit_with_ack`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The options this operator stands for.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Sends `event` with one argument to every selected socket (encoded once).
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.emit_payload(event, Payload::of(data)?);
        Ok(())
    }

    /// Sends `event` with a whole argument list.
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        let (target, opts, event) = (self.target.clone(), self.opts.clone(), event.to_owned());
        let _ = self.ctl.handle.cast(move |node, now| {
            let json = payload.json();
            let (_, attachments) = payload.into_parts();
            for nsp in target.resolve(node) {
                // A namespace that went away meanwhile has nobody to send to.
                let _ = node
                    .sio
                    .broadcast(&nsp, &opts, &event, &json, attachments.clone(), now);
            }
        });
    }

    /// Sends `event` (now, not when the future is first polled) asking every selected
    /// socket for an acknowledgement; resolves with all answers, or with those that came
    /// when some did not (within the timeout, if set). The future does not borrow the
    /// operator.
    pub fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<Vec<AckResponse>, BroadcastAckError>> + Send + use<T> {
        let answers = match Payload::of(data) {
            Ok(payload) => Ok(self.ack_payload(event, payload)),
            Err(e) => Err(BroadcastAckError::Encode(e.to_string())),
        };
        async move { answers?.await }
    }

    /// [`BroadcastOperator::emit_with_ack`] with a whole argument list.
    pub fn ack_payload(
        &self,
        event: &str,
        payload: Payload,
    ) -> impl Future<Output = Result<Vec<AckResponse>, BroadcastAckError>> + Send + use<> {
        let (target, opts, event) = (self.target.clone(), self.opts.clone(), event.to_owned());
        let timeout = self.timeout;
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.ctl.handle.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.broadcast_with_ack(&nsps, &opts, &event, payload, timeout, tx, now);
        });
        async move {
            queued.map_err(|_| BroadcastAckError::Stopped)?;
            match rx.await {
                Ok(Ok(all)) => Ok(all),
                Ok(Err(partial)) => Err(BroadcastAckError::Partial(partial)),
                Err(_) => Err(BroadcastAckError::Stopped),
            }
        }
    }

    /// The selected sockets, with their rooms at the time of the call.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        let (target, opts) = (self.target.clone(), self.opts.clone());
        self.ctl
            .handle
            .call(move |node, _| {
                target
                    .resolve(node)
                    .iter()
                    .flat_map(|nsp| node.fetch(nsp, &opts))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(socket, rooms)| RemoteSocket { socket, rooms })
            .collect()
    }

    /// Puts the selected sockets in `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let (target, opts) = (self.target.clone(), self.opts.clone());
        let _ = self.ctl.handle.cast(move |node, _| {
            for nsp in target.resolve(node) {
                node.sio.sockets_join(&nsp, &opts, &rooms);
            }
        });
    }

    /// Takes the selected sockets out of `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let (target, opts) = (self.target.clone(), self.opts.clone());
        let _ = self.ctl.handle.cast(move |node, _| {
            for nsp in target.resolve(node) {
                node.sio.sockets_leave(&nsp, &opts, &rooms);
            }
        });
    }

    /// Disconnects the selected sockets (closing their connections with `close`).
    pub fn disconnect_sockets(&self, close: bool) {
        let (target, opts) = (self.target.clone(), self.opts.clone());
        let _ = self.ctl.handle.cast(move |node, now| {
            for nsp in target.resolve(node) {
                node.sio.disconnect_sockets(&nsp, &opts, close, now);
            }
        });
    }
}

/// A socket returned by `fetch_sockets`: its id, handshake, rooms and data at the time, and
/// the usual actions.
#[derive(Debug, Clone)]
pub struct RemoteSocket {
    socket: Socket,
    rooms: Vec<Room>,
}

impl RemoteSocket {
    /// The socket id.
    pub fn id(&self) -> SocketId {
        self.socket.id()
    }

    /// Its handshake.
    pub fn handshake(&self) -> &Handshake {
        self.socket.handshake()
    }

    /// Its rooms when fetched.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// Its data.
    pub fn data(&self) -> &Extensions {
        self.socket.data()
    }

    /// Sends it `event`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.socket.emit(event, data)
    }

    /// Puts it in `room`.
    pub fn join(&self, room: impl Into<Room>) {
        self.socket.join(room)
    }

    /// Takes it out of `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        self.socket.leave(room)
    }

    /// Disconnects it.
    pub fn disconnect(&self, close: bool) {
        self.socket.disconnect(close)
    }

    /// The live socket handle.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}
