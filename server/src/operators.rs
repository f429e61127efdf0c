//! Broadcast operators: choose sockets by room, then emit to them, acknowledge, fetch, move
//! or disconnect them.

use crate::ack::{AckResponse, PartialAcks};
use crate::extensions::Extensions;
use crate::handshake::Handshake;
use crate::node::Ctl;
use crate::payload::{EncodeError, Payload};
use crate::socket::Socket;
use serde::Serialize;
use std::fmt;
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

/// A selection of sockets in one namespace, with flags; build it with `to`, `except`, … and
/// finish with an action.
#[derive(Clone)]
pub struct BroadcastOperator {
    ctl: Arc<Ctl>,
    nsp: Arc<str>,
    opts: BroadcastOptions,
    timeout: Option<Duration>,
}

impl fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("nsp", &self.nsp)
            .field("opts", &self.opts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(ctl: Arc<Ctl>, nsp: Arc<str>) -> Self {
        BroadcastOperator {
            ctl,
            nsp,
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
        let (nsp, opts, event) = (self.nsp.clone(), self.opts.clone(), event.to_owned());
        let _ = self.ctl.handle.cast(move |node, now| {
            let json = payload.json();
            let (_, attachments) = payload.into_parts();
            let _ = node
                .sio
                .broadcast(&nsp, &opts, &event, &json, attachments, now);
        });
    }

    /// Sends `event` asking every selected socket for an acknowledgement; resolves with all
    /// answers, or with those that came when some did not (within the timeout, if set).
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<Vec<AckResponse>, BroadcastAckError> {
        let payload = Payload::of(data).map_err(|e| BroadcastAckError::Encode(e.to_string()))?;
        self.ack_payload(event, payload).await
    }

    /// [`BroadcastOperator::emit_with_ack`] with a whole argument list.
    pub async fn ack_payload(
        &self,
        event: &str,
        payload: Payload,
    ) -> Result<Vec<AckResponse>, BroadcastAckError> {
        let (nsp, opts, event) = (self.nsp.clone(), self.opts.clone(), event.to_owned());
        let timeout = self.timeout;
        let (tx, rx) = futures::channel::oneshot::channel();
        self.ctl
            .handle
            .call(move |node, now| {
                node.broadcast_with_ack(&nsp, &opts, &event, payload, timeout, tx, now)
            })
            .await
            .map_err(|_| BroadcastAckError::Stopped)?
            .map_err(|_| BroadcastAckError::Stopped)?;
        match rx.await {
            Ok(Ok(all)) => Ok(all),
            Ok(Err(partial)) => Err(BroadcastAckError::Partial(partial)),
            Err(_) => Err(BroadcastAckError::Stopped),
        }
    }

    /// The selected sockets, with their rooms at the time of the call.
    pub async fn fetch_sockets(&self) -> Vec<RemoteSocket> {
        let (nsp, opts) = (self.nsp.clone(), self.opts.clone());
        self.ctl
            .handle
            .call(move |node, _| node.fetch(&nsp, &opts))
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(socket, rooms)| RemoteSocket { socket, rooms })
            .collect()
    }

    /// Puts the selected sockets in `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let (nsp, opts) = (self.nsp.clone(), self.opts.clone());
        let _ = self
            .ctl
            .handle
            .cast(move |node, _| node.sio.sockets_join(&nsp, &opts, &rooms));
    }

    /// Takes the selected sockets out of `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoIterator<Item = impl Into<Room>>) {
        let rooms: Vec<Room> = rooms.into_iter().map(Into::into).collect();
        let (nsp, opts) = (self.nsp.clone(), self.opts.clone());
        let _ = self
            .ctl
            .handle
            .cast(move |node, _| node.sio.sockets_leave(&nsp, &opts, &rooms));
    }

    /// Disconnects the selected sockets (closing their connections with `close`).
    pub fn disconnect_sockets(&self, close: bool) {
        let (nsp, opts) = (self.nsp.clone(), self.opts.clone());
        let _ = self
            .ctl
            .handle
            .cast(move |node, now| node.sio.disconnect_sockets(&nsp, &opts, close, now));
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
