//! One Socket.IO client machine per Engine.IO session.
//!
//! A [`Client`] holds what belongs to one connection and to nobody else: the decoder (with
//! any binary attachments still to come), the sockets this connection joined in each
//! namespace, their pending acknowledgements and private recovery ids, the connect requests
//! it has open, the connect timeout, and whether this layer is closing it. It decides what a
//! received packet means for this connection ([`Client::receive`]) and what its deadlines
//! mean ([`Client::handle_timeout`]); what needs state shared with other connections
//! (namespaces, rooms, the recovery store, connect request numbers) is done by the caller,
//! which for a whole server is [`Server`](super::Server).
//!
//! It has one deadline at a time ([`Client::poll_timeout`]), so a caller driving many
//! clients files each under one entry.

use super::event::{ConnectId, DisconnectReason, Handshake};
use super::msgpack::{self, Parser};
use super::packet::{Decoder, Packet, PacketType, SioDecodeError, SioProtocol};
use crate::engine::Message;
use crate::ids::{IdMap, Sid, SocketId};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// A deadline of a [`Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientTimer {
    /// The connection must have joined a namespace by then.
    Connect,
    /// Socket `.0` must have answered ack `.1` by then.
    Ack(SocketId, u64),
}

/// What a received message meant for this connection.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// Nothing to do: part of a packet (attachments still to come), an ack nobody waits
    /// for, or anything while this layer closes the connection.
    Nothing,
    /// The message does not decode: the connection must close with "parse error".
    ParseError,
    /// A packet the protocol forbids here (a CONNECT for a namespace joined or asked for
    /// already, a CONNECT_ERROR, anything for a namespace not joined): the connection must
    /// close, as the reference closes it.
    Violation,
    /// A CONNECT for a namespace this connection has neither joined nor asked for.
    Connect {
        /// The namespace.
        nsp: Arc<str>,
        /// The auth payload (`{}` when absent, and always for protocol 4).
        auth: Utf8Bytes,
        /// The query string of a protocol 4 namespace (`/admin?token=1`).
        query: Option<Utf8Bytes>,
    },
    /// An EVENT for a joined socket.
    Event {
        /// The socket.
        socket: SocketId,
        /// Its namespace.
        nsp: Arc<str>,
        /// The packet (name, arguments, attachments, ack id).
        packet: Packet,
    },
    /// The answer to an acknowledgement this connection was asked for.
    Ack {
        /// The socket.
        socket: SocketId,
        /// The ack id.
        id: u64,
        /// The answer's arguments (a JSON array text).
        args: Utf8Bytes,
        /// Its binary attachments.
        attachments: Vec<Bytes>,
    },
    /// The client left namespace socket `.0`.
    Disconnect(SocketId),
}

/// What a due deadline of a [`Client`] meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Nothing (it had been settled meanwhile).
    Nothing,
    /// The connection joined no namespace in time: close it.
    ConnectTimeout,
    /// Socket `.0` did not answer ack `.1` in time.
    AckTimedOut(SocketId, u64),
}

struct ClientSocket {
    nsp: Arc<str>,
    id: SocketId,
    /// Pending server-to-client acks and their deadlines. Keyed by the numbers the server
    /// hands out in sequence (a client only looks them up), so the unkeyed id hasher serves,
    /// and the map is 16 bytes smaller than with a `RandomState`.
    acks: IdMap<u64, Option<Instant>>,
    /// The private id of connection state recovery (when it is on and the client speaks v5).
    pid: Option<Arc<str>>,
}

/// The Socket.IO state of one Engine.IO session (see the [module docs](self)).
pub struct Client {
    protocol: SioProtocol,
    parser: Parser,
    max_attachments: usize,
    decoder: Decoder,
    /// Joined namespaces in join order, which is the order the sockets leave in when the
    /// connection closes (as the reference iterates its map).
    sockets: Vec<ClientSocket>,
    /// Connect requests waiting for an answer, by namespace (a few at most: a list).
    pending: Vec<(Arc<str>, ConnectId)>,
    connect_deadline: Option<Instant>,
    handshake: Arc<Handshake>,
    /// Set when this layer closes the connection: its sockets are gone already and whatever
    /// the client still sends is ignored until the engine reports the session closed.
    closing: Option<DisconnectReason>,
    timers: BTreeSet<(Instant, ClientTimer)>,
    /// The deadline under which a composing caller filed this client.
    pub(crate) filed: Option<Instant>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("sid", &self.handshake.sid)
            .field("protocol", &self.protocol)
            .field("sockets", &self.sockets.len())
            .field("pending", &self.pending.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The Socket.IO side of the new session `handshake.sid`, which must join a namespace by
    /// `connect_deadline`.
    pub fn new(
        handshake: Arc<Handshake>,
        parser: Parser,
        max_attachments: usize,
        connect_deadline: Instant,
    ) -> Self {
        let protocol = handshake.protocol;
        let mut timers = BTreeSet::new();
        timers.insert((connect_deadline, ClientTimer::Connect));
        Client {
            protocol,
            parser,
            max_attachments,
            decoder: Decoder::new(protocol, max_attachments),
            sockets: Vec::new(),
            pending: Vec::new(),
            connect_deadline: Some(connect_deadline),
            handshake,
            closing: None,
            timers,
            filed: None,
        }
    }

    // ---- getters ----

    /// The Engine.IO session (kept in the handshake only: it is read when a socket connects,
    /// not per message).
    pub fn sid(&self) -> Sid {
        self.handshake.sid
    }

    /// The Socket.IO protocol the client speaks.
    pub fn protocol(&self) -> SioProtocol {
        self.protocol
    }

    /// The handshake of the session.
    pub fn handshake(&self) -> &Arc<Handshake> {
        &self.handshake
    }

    /// Why this layer is closing the connection, once it is.
    pub fn closing(&self) -> Option<DisconnectReason> {
        self.closing
    }

    /// The socket joined in `nsp`.
    pub fn socket(&self, nsp: &str) -> Option<SocketId> {
        self.sockets.iter().find(|s| &*s.nsp == nsp).map(|s| s.id)
    }

    /// Whether `socket` belongs to this connection.
    pub fn has_socket(&self, socket: SocketId) -> bool {
        self.sockets.iter().any(|s| s.id == socket)
    }

    /// The joined sockets with their namespaces, in join order.
    pub fn sockets(&self) -> impl Iterator<Item = (&Arc<str>, SocketId)> {
        self.sockets.iter().map(|s| (&s.nsp, s.id))
    }

    /// Joined namespaces.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// The private recovery id of `socket`.
    pub fn pid(&self, socket: SocketId) -> Option<&Arc<str>> {
        self.sockets
            .iter()
            .find(|s| s.id == socket)
            .and_then(|s| s.pid.as_ref())
    }

    /// The connect request open for `nsp`.
    pub fn pending(&self, nsp: &str) -> Option<ConnectId> {
        self.pending
            .iter()
            .find(|(n, _)| **n == *nsp)
            .map(|(_, id)| *id)
    }

    /// Open connect requests.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Server-to-client acks waiting for an answer, all sockets.
    pub fn ack_count(&self) -> usize {
        self.sockets.iter().map(|s| s.acks.len()).sum()
    }

    /// Scheduled deadlines (the connect timeout and ack deadlines).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// The earliest deadline and what it is for.
    pub fn first_timer(&self) -> Option<(Instant, ClientTimer)> {
        self.timers.first().copied()
    }

    /// When [`Client::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    // ---- inputs ----

    /// An Engine.IO message of this session arrived: what it means here. Acks answered are
    /// settled on the way.
    pub fn receive(&mut self, message: Message) -> Incoming {
        if self.closing.is_some() {
            return Incoming::Nothing;
        }
        let decoded = match (self.parser, message) {
            (Parser::Default, Message::Text(text)) => self.decoder.decode_text(text),
            (Parser::Default, Message::Binary(data)) => self.decoder.decode_binary(data),
            (Parser::MsgPack, Message::Binary(data)) => {
                msgpack::decode(&data, self.max_attachments).map(Some)
            }
            (Parser::MsgPack, Message::Text(_)) => Err(SioDecodeError::UnexpectedText),
        };
        match decoded {
            Ok(Some(packet)) => self.classify(packet),
            Ok(None) => Incoming::Nothing,
            Err(_) => Incoming::ParseError,
        }
    }

    fn classify(&mut self, packet: Packet) -> Incoming {
        let nsp = packet.nsp.as_str();
        let joined = self.sockets.iter().position(|s| &*s.nsp == nsp);
        let asked = self.pending.iter().any(|(n, _)| **n == *nsp);
        match (packet.kind, joined) {
            (PacketType::Connect, None) if !asked => {
                let auth = match self.protocol {
                    SioProtocol::V5 => packet.data.clone(),
                    SioProtocol::V4 => None,
                }
                .unwrap_or(Utf8Bytes::from_static("{}"));
                Incoming::Connect {
                    nsp: Arc::from(nsp),
                    auth,
                    query: packet.query.clone(),
                }
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(i)) => Incoming::Event {
                socket: self.sockets[i].id,
                nsp: self.sockets[i].nsp.clone(),
                packet,
            },
            (PacketType::Ack | PacketType::BinaryAck, Some(i)) => {
                let Some(id) = packet.id else {
                    return Incoming::Nothing;
                };
                let socket = self.sockets[i].id;
                // An ack nobody waits for (answered, timed out, or never asked) is ignored.
                let Some(deadline) = self.sockets[i].acks.remove(&id) else {
                    return Incoming::Nothing;
                };
                if let Some(t) = deadline {
                    self.unfile((t, ClientTimer::Ack(socket, id)));
                }
                Incoming::Ack {
                    socket,
                    id,
                    args: packet.data.unwrap_or(Utf8Bytes::from_static("[]")),
                    attachments: packet.attachments,
                }
            }
            (PacketType::Disconnect, Some(i)) => Incoming::Disconnect(self.sockets[i].id),
            _ => Incoming::Violation,
        }
    }

    /// Runs the deadline due first, if it is due at `now`; `None` when nothing is due.
    /// Call until it returns `None` (each call settles one deadline).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerOutcome> {
        let &(t, timer) = self.timers.first()?;
        if t > now {
            return None;
        }
        self.unfile((t, timer));
        Some(self.on_timer(t, timer))
    }

    /// Settles deadline `timer` filed for `t`, already taken out of the timer set.
    fn on_timer(&mut self, t: Instant, timer: ClientTimer) -> TimerOutcome {
        match timer {
            ClientTimer::Connect => {
                if self.connect_deadline != Some(t) {
                    return TimerOutcome::Nothing;
                }
                self.connect_deadline = None;
                if self.sockets.is_empty() {
                    TimerOutcome::ConnectTimeout
                } else {
                    TimerOutcome::Nothing
                }
            }
            ClientTimer::Ack(socket, id) => {
                let Some(s) = self.sockets.iter_mut().find(|s| s.id == socket) else {
                    return TimerOutcome::Nothing;
                };
                if s.acks.get(&id) != Some(&Some(t)) {
                    return TimerOutcome::Nothing;
                }
                s.acks.remove(&id);
                TimerOutcome::AckTimedOut(socket, id)
            }
        }
    }

    /// Runs deadline `timer` of `t` when it is this client's first (a caller merging the
    /// deadlines of several clients picks which runs next). `None` when it is not.
    pub fn handle_timer(&mut self, t: Instant, timer: ClientTimer) -> Option<TimerOutcome> {
        if self.timers.first() != Some(&(t, timer)) {
            return None;
        }
        self.unfile((t, timer));
        Some(self.on_timer(t, timer))
    }

    // ---- commands ----

    /// Records connect request `id` for `nsp`.
    pub fn add_pending(&mut self, nsp: Arc<str>, id: ConnectId) {
        match self.pending.iter_mut().find(|(n, _)| *n == nsp) {
            Some((_, old)) => *old = id,
            None => self.pending.push((nsp, id)),
        }
    }

    /// Forgets connect request `id` for `nsp` (accepted or refused).
    pub fn settle(&mut self, nsp: &str, id: ConnectId) {
        if let Some(i) = self
            .pending
            .iter()
            .position(|(n, pending)| **n == *nsp && *pending == id)
        {
            self.pending.swap_remove(i);
            if self.pending.is_empty() {
                // Not kept at the capacity of the connect: most clients connect once.
                self.pending = Vec::new();
            }
        }
    }

    /// Adds the socket accepted into `nsp`; the connect timeout no longer applies.
    pub fn add_socket(&mut self, nsp: Arc<str>, socket: SocketId, pid: Option<Arc<str>>) {
        // Most clients join one namespace: room for one, not the four a first push reserves.
        self.sockets.reserve_exact(1);
        self.sockets.push(ClientSocket {
            nsp,
            id: socket,
            acks: IdMap::default(),
            pid,
        });
        if let Some(t) = self.connect_deadline.take() {
            self.unfile((t, ClientTimer::Connect));
        }
    }

    /// Removes `socket`; returns its recovery id and the ids of the acks it still owed, in
    /// ascending order (their deadlines are dropped).
    pub fn remove_socket(&mut self, socket: SocketId) -> Option<(Option<Arc<str>>, Vec<u64>)> {
        let i = self.sockets.iter().position(|s| s.id == socket)?;
        let s = self.sockets.remove(i);
        let mut acks: Vec<(u64, Option<Instant>)> = s.acks.into_iter().collect();
        acks.sort_unstable_by_key(|(id, _)| *id);
        for (id, deadline) in &acks {
            if let Some(t) = deadline {
                self.unfile((*t, ClientTimer::Ack(socket, *id)));
            }
        }
        Some((s.pid, acks.into_iter().map(|(id, _)| id).collect()))
    }

    /// Takes `timer` out of the index. An index left empty is replaced, not kept: an empty
    /// B-tree still holds the node it grew (about 1 KB), and most clients spend their life
    /// with no deadline at all.
    fn unfile(&mut self, timer: (Instant, ClientTimer)) {
        self.timers.remove(&timer);
        if self.timers.is_empty() {
            self.timers = BTreeSet::new();
        }
    }

    /// Waits for the answer to ack `id` sent to `socket`, until `deadline` if any.
    pub fn expect_ack(&mut self, socket: SocketId, id: u64, deadline: Option<Instant>) {
        let Some(s) = self.sockets.iter_mut().find(|s| s.id == socket) else {
            return;
        };
        if let Some(Some(old)) = s.acks.insert(id, deadline) {
            self.unfile((old, ClientTimer::Ack(socket, id)));
        }
        if let Some(t) = deadline {
            self.timers.insert((t, ClientTimer::Ack(socket, id)));
        }
    }

    /// Marks the connection as closing on this layer's initiative; false when it was already.
    pub fn set_closing(&mut self, reason: DisconnectReason) -> bool {
        if self.closing.is_some() {
            return false;
        }
        self.closing = Some(reason);
        true
    }

    /// Drops the connect timeout and hands back the open connect requests, in the order
    /// they were made; the sockets stay (see [`Client::remove_socket`]).
    pub fn release(&mut self) -> Vec<ConnectId> {
        if let Some(t) = self.connect_deadline.take() {
            self.unfile((t, ClientTimer::Connect));
        }
        let mut pending: Vec<ConnectId> = self.pending.drain(..).map(|(_, id)| id).collect();
        pending.sort_unstable();
        pending
    }
}
