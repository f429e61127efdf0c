//! One session's Socket.IO side at work: its [`Client`] machine, the way to its Engine.IO
//! session ([`Link`]), the state it shares with the other sessions ([`SharedAccess`]) and the
//! queue its events go to.
//!
//! Every Socket.IO rule that concerns one session is decided here, once, for both ways of
//! running the core: the single-threaded [`Server`](super::Server) builds a [`Peer`] over its
//! engine for each input or command that reaches a session, and a runtime that gives each
//! session a task of its own builds one over the session's [`engine::Session`] and its lock on
//! the shared state. An event or an acknowledgement from the client touches nothing shared;
//! a connect, a socket leaving and a packet kept for recovery do, each in one
//! [`SharedAccess::with`].
//!
//! A [`Peer`] only acts: it files no deadline. After each call, the caller re-files the
//! client under [`Client::poll_timeout`] and runs due deadlines through
//! [`Peer::handle_timer`].

use super::client::{Client, ClientTimer, Incoming, TimerOutcome};
use super::event::{
    AckFailure, AckId, AckToken, ConnectId, ConnectRequest, DisconnectReason, Event, Handshake,
};
use super::msgpack::{self, Parser};
use super::packet::{Decoder, Packet, SioProtocol};
use super::recovery::{Restored, SessionState, StoredMessage, replay};
use super::server::{Config, RestoreOutcome, SioError, json_string};
use super::shared::{Pending, SharedAccess, own_room};
use crate::engine::{self, CloseReason, Engine, Message, Protocol, SendError};
use crate::http::RequestHead;
use crate::ids::{Sid, SocketId};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The way from a session's Socket.IO machine to its Engine.IO session.
pub trait Link {
    /// Queues `messages` as one unit ([`engine::Session::send_all`]).
    fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
        now: Instant,
    ) -> Result<(), SendError>;

    /// Whether a packet queued now would leave at once ([`engine::Session::is_writable`]).
    fn is_writable(&self) -> bool;

    /// Closes the session from the server's side ([`engine::Session::close`]).
    fn close(&mut self, now: Instant);

    /// Queues one target's copy of a broadcast: `first` (the packet, encoded once for every
    /// target) and its `attachments`.
    fn deliver(
        &mut self,
        first: &Message,
        attachments: &[Bytes],
        volatile: bool,
        now: Instant,
    ) -> Delivery {
        if volatile && !self.is_writable() {
            return Delivery::Skipped;
        }
        let messages =
            std::iter::once(first.clone()).chain(attachments.iter().cloned().map(Message::Binary));
        match self.send_all(messages, now) {
            Ok(()) => Delivery::Queued,
            Err(SendError::BufferFull(_)) => Delivery::Refused,
            Err(_) => Delivery::Gone,
        }
    }
}

impl<L: Link + ?Sized> Link for &mut L {
    fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
        now: Instant,
    ) -> Result<(), SendError> {
        (**self).send_all(messages, now)
    }

    fn is_writable(&self) -> bool {
        (**self).is_writable()
    }

    fn close(&mut self, now: Instant) {
        (**self).close(now);
    }
}

impl Link for engine::Session {
    fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
        now: Instant,
    ) -> Result<(), SendError> {
        engine::Session::send_all(self, messages, now)
    }

    fn is_writable(&self) -> bool {
        engine::Session::is_writable(self)
    }

    fn close(&mut self, now: Instant) {
        engine::Session::close(self, now);
    }
}

/// Session `sid` of an [`Engine`], as a [`Link`].
#[derive(Debug)]
pub struct EngineLink<'a> {
    /// The engine.
    pub engine: &'a mut Engine,
    /// The session.
    pub sid: Sid,
}

impl Link for EngineLink<'_> {
    fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
        now: Instant,
    ) -> Result<(), SendError> {
        self.engine.send_all(self.sid, messages, now)
    }

    fn is_writable(&self) -> bool {
        self.engine.is_writable(self.sid)
    }

    fn close(&mut self, now: Instant) {
        self.engine.close(self.sid, now);
    }
}

/// One session's Socket.IO machine at work (see the [module docs](self)).
pub struct Peer<'a, S: SharedAccess, L: Link> {
    /// The server's options.
    pub config: &'a Config,
    /// The state shared with the other sessions.
    pub shared: S,
    /// The session's Socket.IO machine.
    pub client: &'a mut Client,
    /// The session's Engine.IO side.
    pub link: L,
    /// Where the Socket.IO events go, in order.
    pub events: &'a mut VecDeque<Event>,
}

/// What [`Link::deliver`] did for one target of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued.
    Queued,
    /// A volatile packet not queued: the transport could not take it now.
    Skipped,
    /// The session's queue is full.
    Refused,
    /// The session is gone.
    Gone,
}

impl Client {
    /// The Socket.IO machine of a session the engine just opened with `request`: it must
    /// join a namespace within [`Config::connect_timeout`]. Follow with [`Peer::opened`].
    pub fn for_session(
        config: &Config,
        sid: Sid,
        protocol: Protocol,
        request: RequestHead,
        now: Instant,
    ) -> Client {
        let protocol = match protocol {
            Protocol::V3 => SioProtocol::V4,
            Protocol::V4 => SioProtocol::V5,
        };
        let handshake = Arc::new(Handshake {
            sid,
            protocol,
            request,
            issued: now,
        });
        // Armed for protocol 4 too: its implicit join of `/` is still a connect request the
        // application may leave unsettled or refuse.
        Client::new(
            handshake,
            config.parser,
            config.max_attachments,
            now + config.connect_timeout,
        )
    }
}

impl<S: SharedAccess, L: Link> Peer<'_, S, L> {
    /// What follows the creation of the client: protocol 4 clients are connected to `/`
    /// without asking.
    pub fn opened(&mut self, now: Instant) {
        if self.client.protocol() == SioProtocol::V4 {
            self.request_connect(Arc::from("/"), Utf8Bytes::from_static("{}"), None, now);
        }
    }

    // ---- inputs ----

    /// A message of the session arrived.
    pub fn receive(&mut self, message: Message, now: Instant) {
        let incoming = self.client.receive(message);
        match incoming {
            Incoming::Nothing => {}
            Incoming::ParseError => self.close(DisconnectReason::ParseError, now),
            Incoming::Violation => {
                // A CONNECT for a namespace already joined or asked for, a CONNECT_ERROR
                // (only servers send those), or anything for a namespace not joined: the
                // reference closes the whole connection.
                self.close(DisconnectReason::ForcedServerClose, now);
            }
            Incoming::Connect { nsp, auth, query } => {
                let held = self.client.socket_count() + self.client.pending_count();
                if held >= self.config.max_namespaces {
                    self.connect_error(&nsp, "Too many namespaces", None, now);
                } else if self.shared.with(|s| s.namespaces.ensure(&nsp)) {
                    self.request_connect(nsp, auth, query, now);
                } else {
                    self.connect_error(&nsp, "Invalid namespace", None, now);
                }
            }
            Incoming::Event {
                socket,
                nsp,
                packet,
            } => {
                let name = packet
                    .event_name()
                    .map(|n| n.into_owned())
                    .unwrap_or_default();
                let args = packet.args().unwrap_or(Utf8Bytes::from_static("[]"));
                self.events.push_back(Event::Event {
                    socket,
                    nsp,
                    name,
                    args,
                    attachments: packet.attachments,
                    ack: packet.id.map(|id| AckToken { socket, id }),
                });
            }
            Incoming::Ack {
                socket,
                id,
                args,
                attachments,
            } => {
                self.events.push_back(Event::Ack {
                    socket,
                    id: AckId(id),
                    args,
                    attachments,
                });
            }
            Incoming::Disconnect(socket) => {
                self.remove_socket(socket, DisconnectReason::ClientNamespaceDisconnect, now);
            }
        }
    }

    /// The client's deadline `timer`, due at `t`, came.
    pub fn handle_timer(&mut self, t: Instant, timer: ClientTimer, now: Instant) {
        match self.client.handle_timer(t, timer) {
            Some(TimerOutcome::ConnectTimeout) => {
                self.close(DisconnectReason::ForcedServerClose, now);
            }
            Some(TimerOutcome::AckTimedOut(socket, id)) => {
                self.events.push_back(Event::AckFailed {
                    socket,
                    id: AckId(id),
                    reason: AckFailure::Timeout,
                });
            }
            Some(TimerOutcome::Nothing) | None => {}
        }
    }

    /// Runs every deadline of the client due at `now`, earliest first.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((t, timer)) = self.client.first_timer() {
            if t > now {
                break;
            }
            self.handle_timer(t, timer, now);
        }
    }

    /// The engine closed the session for `reason`: every socket leaves (unless this layer
    /// closed it, in which case they left already). The client may be dropped afterwards.
    pub fn closed(&mut self, reason: CloseReason, now: Instant) {
        let reason = self.client.closing().unwrap_or(match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            _ => DisconnectReason::TransportError,
        });
        self.release(reason, now);
    }

    // ---- commands: connections ----

    /// Lets the client of request `id` (one of this session's) into its namespace: a new
    /// socket, in the room of its own id, told `{"sid": …}`.
    pub fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        let sid = self.client.sid();
        let protocol = self.client.protocol();
        let taken = self.shared.with(|s| {
            let pending = match s.pending.remove(&id) {
                Some(p) if p.sid == sid => p,
                Some(p) => {
                    s.pending.insert(id, p);
                    return None;
                }
                None => return None,
            };
            s.namespaces.settle_pending(&pending.nsp);
            let mut restored = pending.restored;
            if let (Some(r), Some(store)) = (restored.as_mut(), s.recovery.as_ref()) {
                // What was kept while the request waited for the application is missed too.
                if let Some(from) = r.next {
                    let later = store.kept_since(from, &pending.nsp, &r.rooms);
                    r.missed.extend(later);
                }
            }
            let socket = match &restored {
                Some(r) => r.socket,
                None => s.new_socket_id(sid, &pending.nsp, protocol),
            };
            let pid = match &restored {
                Some(r) => Some(r.pid.clone()),
                None if s.recovery.is_some() && protocol == SioProtocol::V5 => {
                    Some(Arc::from(s.ids.next_sid().as_str()))
                }
                None => None,
            };
            let rooms = restored.as_ref().map_or(&[][..], |r| &r.rooms[..]);
            s.namespaces.insert(socket, sid, &pending.nsp, rooms);
            Some((pending.nsp, socket, pid, restored.map(|r| r.missed)))
        });
        let (nsp, socket, pid, missed) = taken.ok_or(SioError::UnknownConnect(id))?;
        self.client.settle(&nsp, id);
        self.client.add_socket(nsp.clone(), socket, pid.clone());
        let data = match (protocol, &pid) {
            (SioProtocol::V5, None) => Some(Utf8Bytes::from(format!(
                "{{\"sid\":{}}}",
                json_string(socket.as_str())
            ))),
            (SioProtocol::V5, Some(pid)) => Some(Utf8Bytes::from(format!(
                "{{\"sid\":{},\"pid\":{}}}",
                json_string(socket.as_str()),
                json_string(pid)
            ))),
            (SioProtocol::V4, _) => None,
        };
        let packet = Packet::connect(&nsp, data);
        // A full queue this early closes the session by policy; the socket then leaves with
        // the close event, so the error needs no further handling here.
        let _ = self.send_packet(&packet, now);
        // The packets the socket missed follow its CONNECT reply, in the order they were sent.
        for (text, attachments) in missed.unwrap_or_default() {
            let _ = self.send_encoded(text, attachments, now);
        }
        Ok(socket)
    }

    /// Refuses request `id` (one of this session's) with CONNECT_ERROR
    /// `{"message": message, "data": data}` (`data` is JSON text; v4 clients get the message
    /// alone).
    pub fn reject(
        &mut self,
        id: ConnectId,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) -> Result<(), SioError> {
        let sid = self.client.sid();
        let nsp = self
            .shared
            .with(|s| {
                let pending = s.pending.remove(&id)?;
                if pending.sid != sid {
                    s.pending.insert(id, pending);
                    return None;
                }
                s.namespaces.settle_pending(&pending.nsp);
                s.namespaces.drop_if_empty(&pending.nsp);
                Some(pending.nsp)
            })
            .ok_or(SioError::UnknownConnect(id))?;
        self.client.settle(&nsp, id);
        // The connect timeout stays armed: a client refused everywhere is closed by it, as in
        // the reference.
        self.connect_error(&nsp, message, data, now);
        Ok(())
    }

    /// Completes the recovery of this session's pending connect request `id` with `session`
    /// and the messages the caller's store kept after its offset (see
    /// [`Server::restore_connect`](super::Server::restore_connect)).
    pub fn restore_connect(
        &mut self,
        id: ConnectId,
        session: SessionState,
        stored: Vec<StoredMessage>,
        now: Instant,
    ) -> Result<RestoreOutcome, SioError> {
        let sid = self.client.sid();
        let v5 = self.client.protocol() == SioProtocol::V5;
        let skip = self.shared.with(|s| {
            let pending = s
                .pending
                .get(&id)
                .filter(|p| p.sid == sid)
                .ok_or(SioError::UnknownConnect(id))?;
            let skip = match &s.recovery {
                Some(r) => r.config.skip_middlewares,
                None => return Ok(None),
            };
            if !v5
                || pending.restored.is_some()
                || session.nsp.as_deref().is_some_and(|n| n != &*pending.nsp)
                || s.namespaces.contains(session.socket)
            {
                return Ok(None);
            }
            let missed = replay(&pending.nsp, &session, stored);
            let restored = Restored {
                socket: session.socket,
                pid: Arc::from(session.pid.as_str()),
                rooms: session.rooms,
                data: session.data,
                missed,
                next: None,
            };
            if let Some(p) = s.pending.get_mut(&id) {
                p.restored = Some(restored);
            }
            Ok(Some(skip))
        })?;
        match skip {
            None => Ok(RestoreOutcome::Refused),
            Some(false) => Ok(RestoreOutcome::Restored),
            Some(true) => Ok(RestoreOutcome::Accepted(self.accept(id, now)?)),
        }
    }

    /// Removes `socket` (one of this session's) from its namespace: the client is told
    /// `41[/nsp,]` and the socket leaves with "server namespace disconnect". With `close`,
    /// every socket of the connection is removed that way, then the connection is closed.
    pub fn disconnect(
        &mut self,
        socket: SocketId,
        close: bool,
        now: Instant,
    ) -> Result<(), SioError> {
        let nsp = self
            .namespace_of(socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        let targets: Vec<(Arc<str>, SocketId)> = if close {
            self.client.sockets().map(|(n, s)| (n.clone(), s)).collect()
        } else {
            vec![(nsp, socket)]
        };
        for (nsp, target) in targets {
            let _ = self.send_packet(&Packet::disconnect(&nsp), now);
            self.remove_socket(target, DisconnectReason::ServerNamespaceDisconnect, now);
        }
        if close {
            self.close(DisconnectReason::ForcedServerClose, now);
        }
        Ok(())
    }

    /// Closes the session on this layer's initiative. Its sockets leave at once with
    /// `reason` (the engine may need a poll, or its close timeout, to finish the session) and
    /// its pending connect requests are dropped.
    pub fn close(&mut self, reason: DisconnectReason, now: Instant) {
        if !self.client.set_closing(reason) {
            return;
        }
        self.release(reason, now);
        self.link.close(now);
    }

    // ---- commands: emitting ----

    /// Sends event `name` with `args` (a JSON array text, placeholders for `attachments`) to
    /// `socket`, one of this session's. With `volatile`, it is dropped when the transport
    /// cannot take it now (`Ok(false)`).
    pub fn emit(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        volatile: bool,
        now: Instant,
    ) -> Result<bool, SioError> {
        let keep = !volatile && self.shared.keeps_packets();
        if !keep && self.config.parser == Parser::Default {
            // The common case, on the message path: the text written once, as `send_packet`
            // would encode the packet, with the namespace borrowed from the client.
            let nsp = socket_nsp(self.client, socket).ok_or(SioError::UnknownSocket(socket))?;
            return send_event(&mut self.link, nsp, name, args, attachments, volatile, now)
                .map_err(|_| SioError::BufferFull(socket));
        }
        let nsp = self
            .namespace_of(socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        if volatile && !self.link.is_writable() {
            return Ok(false);
        }
        let r = {
            let mut packet = Packet::event(&nsp, name, args, None, attachments);
            if keep {
                // As the reference, a single emit is kept as a broadcast to the socket's room.
                let opts = own_room(socket);
                self.shared
                    .with(|s| s.keep_with_offset(&nsp, &opts, &mut packet, now));
            }
            self.send_packet(&packet, now)
        };
        r.map(|_| true).map_err(|_| SioError::BufferFull(socket))
    }

    /// Sends event `name` to `socket` (one of this session's) asking for an
    /// acknowledgement: [`Event::Ack`] or [`Event::AckFailed`] follows with the returned id.
    pub fn emit_with_ack(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<AckId, SioError> {
        let nsp = self
            .namespace_of(socket)
            .ok_or(SioError::UnknownSocket(socket))?;
        let id = self.shared.with(|s| s.namespaces.next_ack_id(&nsp));
        let packet = Packet::event(&nsp, name, args, Some(id), attachments);
        if self.send_packet(&packet, now).is_err() {
            return Err(SioError::BufferFull(socket));
        }
        self.client.expect_ack(socket, id, timeout.map(|t| now + t));
        Ok(AckId(id))
    }

    /// Answers a client's acknowledgement request.
    pub fn ack(
        &mut self,
        token: AckToken,
        args: &str,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SioError> {
        let socket = token.socket;
        let nsp = socket_nsp(self.client, socket).ok_or(SioError::UnknownSocket(socket))?;
        let packet = Packet::ack(nsp, token.id, Utf8Bytes::from(args), attachments);
        self.send_packet(&packet, now)
            .map_err(|_| SioError::BufferFull(socket))
    }

    /// Waits for the answer to ack `id` sent to `socket` (one of this session's), until
    /// `deadline` if any.
    pub fn expect_ack(&mut self, socket: SocketId, id: u64, deadline: Option<Instant>) {
        self.client.expect_ack(socket, id, deadline);
    }

    // ---- internals ----

    /// The namespace of `socket`, when it is one of this session's.
    fn namespace_of(&self, socket: SocketId) -> Option<Arc<str>> {
        socket_nsp(self.client, socket).cloned()
    }

    fn request_connect(
        &mut self,
        nsp: Arc<str>,
        auth: Utf8Bytes,
        query: Option<Utf8Bytes>,
        now: Instant,
    ) {
        let sid = self.client.sid();
        let v5 = self.client.protocol() == SioProtocol::V5;
        let (id, recovered, session_data, skip) = self.shared.with(|s| {
            let restored = match s.recovery.as_mut() {
                Some(r) if !r.shared && v5 => r.restore(&nsp, &auth, now),
                _ => None,
            }
            // A socket of that id still connected (the old connection not closed yet)
            // cannot be restored twice.
            .filter(|r| !s.namespaces.contains(r.socket));
            let skip = s
                .recovery
                .as_ref()
                .is_some_and(|r| r.config.skip_middlewares);
            let id = s.next_connect();
            s.namespaces.add_pending(&nsp);
            let recovered = restored.is_some();
            let session_data = restored.as_ref().and_then(|r| r.data.clone());
            s.pending.insert(
                id,
                Pending {
                    sid,
                    nsp: nsp.clone(),
                    restored,
                },
            );
            (id, recovered, session_data, skip)
        });
        self.client.add_pending(nsp.clone(), id);
        let mut request = ConnectRequest {
            id,
            nsp,
            auth,
            query,
            handshake: self.client.handshake().clone(),
            recovered,
            session_data,
            accepted: None,
        };
        if recovered && skip {
            request.accepted = self.accept(id, now).ok();
        }
        self.events.push_back(Event::Connect(request));
    }

    /// Takes a socket out of everything, telling the application.
    fn remove_socket(&mut self, socket: SocketId, reason: DisconnectReason, now: Instant) {
        let Some((pid, acks)) = self.client.remove_socket(socket) else {
            return;
        };
        let removed = self.shared.with(|s| {
            let (_, nsp, rooms) = s.namespaces.remove(socket)?;
            if let (Some(store), Some(pid)) = (s.recovery.as_mut(), pid) {
                if reason.is_recoverable() {
                    store.persist(socket, pid, nsp.clone(), rooms.clone(), now);
                }
            }
            s.namespaces.drop_if_empty(&nsp);
            Some((nsp, rooms))
        });
        let Some((nsp, rooms)) = removed else {
            return;
        };
        self.events.push_back(Event::Disconnecting {
            socket,
            nsp: nsp.clone(),
            reason,
            rooms,
        });
        for id in acks {
            self.events.push_back(Event::AckFailed {
                socket,
                id: AckId(id),
                reason: AckFailure::Disconnected,
            });
        }
        self.events.push_back(Event::Disconnect {
            socket,
            nsp,
            reason,
        });
    }

    /// Drops everything the client holds but the client itself: its connect timer, its
    /// pending requests, its sockets (which leave with `reason`, in join order).
    fn release(&mut self, reason: DisconnectReason, now: Instant) {
        let pending = self.client.release();
        let sockets: Vec<SocketId> = self.client.sockets().map(|(_, s)| s).collect();
        if !pending.is_empty() {
            self.shared.with(|s| {
                for id in pending {
                    if let Some(p) = s.pending.remove(&id) {
                        s.namespaces.settle_pending(&p.nsp);
                        s.namespaces.drop_if_empty(&p.nsp);
                    }
                }
            });
        }
        for socket in sockets {
            self.remove_socket(socket, reason, now);
        }
    }

    fn connect_error(&mut self, nsp: &str, message: &str, data: Option<&str>, now: Instant) {
        let payload = match (self.client.protocol(), data) {
            // The reference sends `err.data || err.message` to protocol 4 clients.
            (SioProtocol::V4, Some(d)) if !is_falsy_json(d) => d.trim().to_owned(),
            (SioProtocol::V4, _) => json_string(message),
            (SioProtocol::V5, None) => format!("{{\"message\":{}}}", json_string(message)),
            (SioProtocol::V5, Some(d)) => {
                format!("{{\"message\":{},\"data\":{d}}}", json_string(message))
            }
        };
        let packet = Packet::connect_error(nsp, Utf8Bytes::from(payload));
        let _ = self.send_packet(&packet, now);
    }

    /// Encodes and queues one packet; attachments follow as binary messages.
    fn send_packet(&mut self, packet: &Packet, now: Instant) -> Result<(), SendError> {
        let (first, attachments) = messages(self.config.parser, packet, self.client.protocol());
        // One unit: the byte budget never splits a packet from its attachments.
        let attachments = attachments.into_iter().map(Message::Binary);
        self.link
            .send_all(std::iter::once(first).chain(attachments), now)
    }

    /// Queues an encoded packet's text and then its attachments.
    fn send_text(
        &mut self,
        text: Utf8Bytes,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SendError> {
        let attachments = attachments.into_iter().map(Message::Binary);
        self.link
            .send_all(std::iter::once(Message::Text(text)).chain(attachments), now)
    }

    /// Queues a packet kept in its protocol 5 text form (a packet a recovered socket missed),
    /// written with the server's parser.
    fn send_encoded(
        &mut self,
        text: Utf8Bytes,
        attachments: Vec<Bytes>,
        now: Instant,
    ) -> Result<(), SendError> {
        if self.config.parser == Parser::MsgPack {
            let mut decoder = Decoder::new(SioProtocol::V5, usize::MAX);
            let mut decoded = decoder.decode_text(text);
            for a in attachments {
                decoded = decoder.decode_binary(a);
            }
            return match decoded {
                Ok(Some(packet)) => self.send_packet(&packet, now),
                // Only packets this server encoded are kept, so they decode.
                _ => Ok(()),
            };
        }
        self.send_text(text, attachments, now)
    }
}

/// Queues event `name` with `args` for a socket of namespace `nsp` over `link`, its text
/// written once as the default parser encodes it, with no recovery offset: the common emit.
/// `Ok(false)` when `volatile` and the transport cannot take it now.
pub(crate) fn send_event(
    link: &mut impl Link,
    nsp: &str,
    name: &str,
    args: &str,
    attachments: Vec<Bytes>,
    volatile: bool,
    now: Instant,
) -> Result<bool, SendError> {
    if volatile && !link.is_writable() {
        return Ok(false);
    }
    let text = Packet::event_text(nsp, name, args, None, attachments.len());
    let attachments = attachments.into_iter().map(Message::Binary);
    link.send_all(std::iter::once(Message::Text(text)).chain(attachments), now)
        .map(|()| true)
}

/// The namespace of `socket`, when it is one of `client`'s.
fn socket_nsp(client: &Client, socket: SocketId) -> Option<&Arc<str>> {
    client
        .sockets()
        .find_map(|(nsp, s)| (s == socket).then_some(nsp))
}

/// `packet` as the Engine.IO messages `parser` writes for a client speaking `protocol`: the
/// first, then the attachments (always none with MessagePack, which carries them inline).
pub(crate) fn messages(
    parser: Parser,
    packet: &Packet,
    protocol: SioProtocol,
) -> (Message, Vec<Bytes>) {
    match parser {
        Parser::Default => {
            let (text, attachments) = packet.encode(protocol);
            (Message::Text(text), attachments)
        }
        Parser::MsgPack => (Message::Binary(msgpack::encode(packet)), Vec::new()),
    }
}

/// Whether JSON text is a JavaScript falsy value (`err.data || err.message` picks the
/// message then).
fn is_falsy_json(json: &str) -> bool {
    matches!(json.trim(), "" | "null" | "false" | "0" | "\"\"" | "-0")
}
