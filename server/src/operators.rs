//! Broadcast operators: choose sockets by room, then emit to them, acknowledge, fetch, move
//! or disconnect them.

use crate::ack::{AckResponse, PartialAcks};
use crate::extensions::Extensions;
use crate::handshake::Handshake;
use crate::node::Ctl;
use crate::node::Node;
use crate::payload::{EncodeError, Payload};
use crate::registry::NsHandlers;
use crate::socket::{EmitError, Socket};
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use volley_core::cluster::{ClusterMessage, SocketInfo};
use volley_core::socketio::{BroadcastOptions, Room};
use volley_core::{NodeId, SocketId};

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
/// What a broadcast did on this node (see [`BroadcastOperator::emit_checked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broadcasted {
    /// Sockets of this node the packet was queued for.
    pub queued: usize,
    /// Sockets of this node that refused it, their session's outgoing queue being full, in
    /// the order they were tried.
    pub refused: Vec<SocketId>,
    /// Local delivery waits for the adapter (shared recovery) or behind a broadcast that
    /// does: nothing is counted here.
    pub deferred: bool,
}

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
    /// Whether poll answers carrying these packets may be compressed (`compress`).
    compress: bool,
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
            compress: true,
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

    /// Whether the packets may be compressed (default: yes, as the reference). With
    /// `false`, a long-polling answer that carries only such packets is sent uncompressed
    /// even over the HTTP compression threshold (the reference compresses an answer when any
    /// of its packets allows it). WebSocket messages are never compressed. On a cluster, the
    /// hint travels with the broadcast; other nodes apply HTTP compression as their own
    /// settings say.
    pub fn compress(mut self, compress: bool) -> Self {
        self.opts.compress = compress;
        self.compress = compress;
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

    /// Sends `event` with a whole argument list, to the selected sockets of this node and,
    /// unless [`local`](BroadcastOperator::local), of every other node of the cluster.
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        let (target, opts, event) = (self.target.clone(), self.opts.clone(), event.to_owned());
        let compress = self.compress;
        let _ = self.ctl.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.broadcast(&nsps, &opts, &event, payload, compress, None, now);
        });
    }

    /// Like [`emit`](BroadcastOperator::emit), and resolves with what became of the packet
    /// on this node once it is queued: for how many sockets, and which sockets refused it
    /// because their session's outgoing queue was full (`max_buffered_packets` /
    /// `max_buffered_bytes`; under `OverflowPolicy::Reject` they stay connected, under
    /// `OverflowPolicy::Close` they are being closed). Refusals reach the
    /// [`Io::on_error`](crate::Io::on_error) hooks as well. The other nodes of a cluster
    /// report nothing back: their sockets are not counted. With an adapter that keeps
    /// sessions for recovery (the Redis Streams adapter), local delivery waits for the
    /// adapter's offset, and the report says [`deferred`](Broadcasted::deferred) with
    /// nothing counted. The future does not borrow the operator.
    pub fn emit_checked<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> impl Future<Output = Result<Broadcasted, EmitError>> + Send + use<T> {
        let payload = Payload::of(data);
        let (tx, rx) = futures::channel::oneshot::channel();
        if let Ok(payload) = &payload {
            let (target, opts) = (self.target.clone(), self.opts.clone());
            let (event, payload, compress) = (event.to_owned(), payload.clone(), self.compress);
            let _ = self.ctl.cast(move |node, now| {
                let nsps = target.resolve(node);
                node.broadcast(&nsps, &opts, &event, payload, compress, Some(tx), now);
            });
        }
        async move {
            payload.map_err(EmitError::Encode)?;
            rx.await.map_err(|_| EmitError::Disconnected)
        }
    }

    /// Sends `event` (now, not when the future is first polled) asking every selected
    /// socket for an acknowledgement; resolves with all answers, or with those that came
    /// when some did not (within the timeout, if set). The future does not borrow the
    /// operator.
    ///
    /// On a cluster (unless [`local`](BroadcastOperator::local)), the sockets of the other
    /// nodes are asked too: the result is complete once this node's sockets answered or
    /// failed and every other node reported how many sockets it asked and relayed that many
    /// answers. The other nodes are waited for until the timeout (the builder's
    /// `request_timeout` when none is set); then [`PartialAcks::missing`] counts the
    /// sockets that did not answer plus one for each node that never reported its count.
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
        let queued = self.ctl.cast(move |node, now| {
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

    /// The selected sockets, with their rooms at the time of the call: this node's and,
    /// unless [`local`](BroadcastOperator::local), every other node's. The other nodes are
    /// waited for until the timeout (the builder's `request_timeout` when none is set); a
    /// node that has not answered by then is left out.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        let (target, opts, timeout) = (self.target.clone(), self.opts.clone(), self.timeout);
        let Ok((mut sockets, remote)) = self
            .ctl
            .handle
            .call(move |node, now| {
                let nsps = target.resolve(node);
                node.fetch_sockets(&nsps, &opts, timeout, now)
            })
            .await
        else {
            return Vec::new();
        };
        for rx in remote {
            sockets.extend(rx.await.unwrap_or_default());
        }
        sockets
    }

    /// Puts the selected sockets in `rooms` (on every node, unless
    /// [`local`](BroadcastOperator::local)).
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.sockets_rooms(rooms, true);
    }

    /// Takes the selected sockets out of `rooms` (on every node, unless
    /// [`local`](BroadcastOperator::local)).
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        self.sockets_rooms(rooms, false);
    }

    fn sockets_rooms(&self, rooms: impl IntoIterator<Item = impl Into<Room>>, join: bool) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let (target, opts) = (self.target.clone(), self.opts.clone());
        let _ = self.ctl.cast(move |node, _| {
            let nsps = target.resolve(node);
            node.sockets_rooms(&nsps, &opts, &rooms, join);
        });
    }

    /// Disconnects the selected sockets (closing their connections with `close`), on every
    /// node unless [`local`](BroadcastOperator::local).
    pub fn disconnect_sockets(&self, close: bool) {
        let (target, opts) = (self.target.clone(), self.opts.clone());
        let _ = self.ctl.cast(move |node, now| {
            let nsps = target.resolve(node);
            node.disconnect_sockets(&nsps, &opts, close, now);
        });
    }
}

/// A socket returned by `fetch_sockets`: its id, handshake, rooms and data at the time, and
/// the usual actions. It may live on this node or on another node of the cluster; the
/// actions of a socket of another node are sent to that node.
#[derive(Clone)]
pub struct RemoteSocket {
    id: SocketId,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    place: Place,
}

#[derive(Clone)]
enum Place {
    /// A socket of this node: its live handle.
    Local(Socket),
    /// A socket of another node.
    Remote(Arc<Remote>),
}

struct Remote {
    node: NodeId,
    handshake: Handshake,
    data: Extensions,
    ctl: Arc<Ctl>,
}

impl fmt::Debug for RemoteSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSocket")
            .field("id", &self.id)
            .field("nsp", &self.nsp)
            .field("node", &self.node())
            .field("rooms", &self.rooms)
            .finish()
    }
}

impl RemoteSocket {
    pub(crate) fn local(socket: Socket, rooms: Vec<Room>) -> Self {
        RemoteSocket {
            id: socket.id(),
            nsp: Arc::from(socket.ns()),
            rooms,
            place: Place::Local(socket),
        }
    }

    /// A socket of node `node`, as it described it (`None` when the description is not
    /// usable: an invalid id).
    pub(crate) fn remote(
        ctl: &Arc<Ctl>,
        node: NodeId,
        nsp: &Arc<str>,
        info: &SocketInfo,
        now: Instant,
    ) -> Option<Self> {
        let id = SocketId::new(&info.id).ok()?;
        let data = Extensions::new();
        match serde_json::from_str::<serde_json::Value>(&info.data) {
            Ok(serde_json::Value::Null) | Err(_) => {}
            Ok(value) => {
                data.insert(value);
            }
        }
        Some(RemoteSocket {
            id,
            nsp: nsp.clone(),
            rooms: info.rooms.iter().map(|r| Room::from(r.as_str())).collect(),
            place: Place::Remote(Arc::new(Remote {
                node,
                handshake: Handshake::from_info(&info.handshake, nsp.clone(), now),
                data,
                ctl: ctl.clone(),
            })),
        })
    }

    /// The socket id.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// Its namespace.
    pub fn ns(&self) -> &str {
        &self.nsp
    }

    /// The node it lives on: `None` for this node.
    pub fn node(&self) -> Option<NodeId> {
        match &self.place {
            Place::Local(_) => None,
            Place::Remote(r) => Some(r.node),
        }
    }

    /// Whether it lives on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local(_))
    }

    /// Its handshake (for a socket of another node, rebuilt from what that node sent; see
    /// [`Handshake`]).
    pub fn handshake(&self) -> &Handshake {
        match &self.place {
            Place::Local(s) => s.handshake(),
            Place::Remote(r) => &r.handshake,
        }
    }

    /// Its rooms when fetched.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// Its data: for a socket of this node, the live [`Socket::data`]; for a socket of
    /// another node, a copy holding the `serde_json::Value` that node stores in the socket's
    /// data (nothing when it stores none).
    pub fn data(&self) -> &Extensions {
        match &self.place {
            Place::Local(s) => s.data(),
            Place::Remote(r) => &r.data,
        }
    }

    /// Sends it `event`.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EncodeError> {
        self.emit_payload(event, Payload::of(data)?);
        Ok(())
    }

    /// Sends it `event` with a whole argument list.
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        match &self.place {
            Place::Local(s) => s.emit_payload(event, payload),
            Place::Remote(r) => {
                let (args, attachments) = payload.into_json();
                self.send_remote(
                    r,
                    ClusterMessage::Broadcast {
                        nsp: self.nsp.to_string(),
                        opts: self.only(),
                        event: event.to_owned(),
                        args,
                        attachments,
                        ack: None,
                        timeout: None,
                    },
                );
            }
        }
    }

    /// Puts it in `room`.
    pub fn join(&self, room: impl Into<Room>) {
        match &self.place {
            Place::Local(s) => s.join(room),
            Place::Remote(r) => self.send_remote(
                r,
                ClusterMessage::SocketsJoin {
                    nsp: self.nsp.to_string(),
                    opts: self.only(),
                    rooms: vec![room.into().to_string()],
                },
            ),
        }
    }

    /// Takes it out of `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        match &self.place {
            Place::Local(s) => s.leave(room),
            Place::Remote(r) => self.send_remote(
                r,
                ClusterMessage::SocketsLeave {
                    nsp: self.nsp.to_string(),
                    opts: self.only(),
                    rooms: vec![room.into().to_string()],
                },
            ),
        }
    }

    /// Disconnects it (closing its connection with `close`).
    pub fn disconnect(&self, close: bool) {
        match &self.place {
            Place::Local(s) => s.disconnect(close),
            Place::Remote(r) => self.send_remote(
                r,
                ClusterMessage::DisconnectSockets {
                    nsp: self.nsp.to_string(),
                    opts: self.only(),
                    close,
                },
            ),
        }
    }

    /// The live socket handle, for a socket of this node.
    pub fn socket(&self) -> Option<&Socket> {
        match &self.place {
            Place::Local(s) => Some(s),
            Place::Remote(_) => None,
        }
    }

    /// A selection of this socket alone (the room of its own id).
    fn only(&self) -> BroadcastOptions {
        BroadcastOptions {
            rooms: vec![Room::from(self.id)],
            ..BroadcastOptions::default()
        }
    }

    /// Sends `message` to the socket's node, in order with this node's other commands.
    fn send_remote(&self, remote: &Remote, message: ClusterMessage) {
        let to = remote.node;
        let _ = remote
            .ctl
            .cast(move |node, _| node.publish(Some(to), message));
    }
}
