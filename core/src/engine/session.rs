//! One Engine.IO session as a machine of its own: its transports (polls, POST bodies, a
//! WebSocket, an upgrade probe), its bounded queue, its heartbeat and its close, with one
//! deadline and its own output and event queues. [`super::Endpoint`] creates it at the
//! handshake; [`super::Engine`] keeps many of them, or a runtime keeps each on its own task.

use super::config::{Config, OverflowPolicy, QueueBounds};
use super::endpoint::{RequestKind, SessionRequest};
use super::error::{ApiMisuse, CloseReason, ErrorCode, SendError};
use super::frames::FrameCache;
use super::jsonp;
use super::machine::{Body, Event, Output};
use super::packet::{Message, Packet, Protocol, WsMessage};
use super::payload::{Framing, decode_payload, encode_payload_of};
use crate::http::{BodyKind, Method, RequestHead, Response, websocket_handshake};
use crate::ids::{ConnId, Sid};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket (from the handshake, or after an upgrade).
    WebSocket,
}

/// What a connection is to the session that holds it (see [`Session::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnRole {
    /// A parked long-polling GET, answered when there is something to send.
    Poll,
    /// A POST whose body the session asked for with [`Output::ReadBody`].
    Body,
    /// The session's WebSocket.
    WebSocket,
    /// A WebSocket probing an upgrade (`2probe`, then `5`).
    Probe,
}

#[derive(Debug)]
pub(super) enum Transport {
    Polling {
        /// The parked GET, if any.
        get: Option<ConnId>,
    },
    WebSocket {
        conn: ConnId,
        /// False from when frames are handed to the runtime until it reports them written.
        writable: bool,
    },
}

#[derive(Debug)]
pub(super) struct Probe {
    pub conn: ConnId,
    /// `2probe` was answered: polls now get `6` until the upgrade completes or fails.
    pub probed: bool,
    pub deadline: Instant,
}

/// The options a session needs, taken from the [`Config`] (already clamped by the endpoint)
/// once per endpoint and shared by its sessions, so that a session needs no reference back
/// to its endpoint and does not carry its own copy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    pub close_timeout: Duration,
    pub max_payload: usize,
    pub queue: QueueBounds,
    pub overflow: OverflowPolicy,
    pub max_packets_per_poll: usize,
    pub allow_upgrades: bool,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        Limits {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            upgrade_timeout: config.upgrade_timeout,
            close_timeout: config.close_timeout,
            max_payload: config.max_payload,
            queue: config.queue_bounds(),
            overflow: config.overflow,
            max_packets_per_poll: config.max_packets_per_poll,
            allow_upgrades: config.allow_upgrades,
        }
    }
}

/// An output not yet handed out. WebSocket packets stay packets until then: framing at the
/// drain lets a composition of many sessions share the frame of a broadcast text through one
/// [`FrameCache`] (as [`super::Engine`] does) without the session knowing of the others.
#[derive(Debug)]
pub(super) enum Pending {
    Ready(Output),
    Frame(ConnId, Packet),
}

impl Pending {
    /// The output, framed alone or through `frames`.
    pub(super) fn into_output(self, protocol: Protocol, frames: Option<&mut FrameCache>) -> Output {
        match self {
            Pending::Ready(output) => output,
            Pending::Frame(conn, packet) => Output::Send {
                conn,
                message: match frames {
                    Some(frames) => frames.frame(&packet, protocol),
                    None => packet.to_ws(protocol),
                },
            },
        }
    }
}

/// How a session ends, which decides what its open transports are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client sent `1`: a parked poll gets `6`.
    ByClient,
    /// An error or timeout: a parked poll gets `1`.
    Abrupt,
}

/// One Engine.IO session: every rule after the handshake (polls, POSTs, upgrade, heartbeat,
/// the bounded queue, close), for one client.
///
/// Made by [`Endpoint::handshake`](super::Endpoint::handshake), already holding the
/// handshake's outputs and its [`Event::Open`]. Its methods sort as [`super::Engine`]'s:
///
/// - **getters**: [`sid`](Self::sid), [`protocol`](Self::protocol),
///   [`transport`](Self::transport), [`is_writable`](Self::is_writable),
///   [`queued`](Self::queued), [`queued_bytes`](Self::queued_bytes),
///   [`is_closing`](Self::is_closing),
///   [`is_ended`](Self::is_ended), [`connections`](Self::connections);
/// - **inputs**: [`handle_request`](Self::handle_request) (after the endpoint routed it here),
///   [`handle_body`](Self::handle_body), [`handle_ws_message`](Self::handle_ws_message),
///   [`handle_ws_drained`](Self::handle_ws_drained),
///   [`handle_conn_closed`](Self::handle_conn_closed), [`handle_timeout`](Self::handle_timeout);
/// - **commands**: [`send`](Self::send), [`send_all`](Self::send_all), [`close`](Self::close);
/// - **outputs**: [`poll_event`](Self::poll_event), [`poll_output`](Self::poll_output),
///   [`poll_timeout`](Self::poll_timeout), drained in that order after every call.
///
/// A session ends with [`Event::Close`]. An ended session refuses requests as an unknown
/// session would be refused; it still answers the body of a POST that was being read when it
/// ended, so keep it until [`connections`](Self::connections) is empty as well.
#[derive(Debug)]
pub struct Session {
    sid: Sid,
    pub(super) protocol: Protocol,
    pub(super) limits: Arc<Limits>,
    pub(super) transport: Transport,
    /// The POST whose body is being read, and whether it came as `application/octet-stream`
    /// (the v3 XHR2 framing). It outlives an upgrade and the session's end: the body is
    /// answered when it arrives.
    post: Option<(ConnId, bool)>,
    /// Boxed: a probe lives only during an upgrade.
    probe: Option<Box<Probe>>,
    pub(super) queue: VecDeque<Packet>,
    /// The message bytes in `queue` (see [`Config::max_buffered_bytes`]).
    queued_bytes: usize,
    /// v3 polling without `b64`: binary may travel in the XHR2 framing.
    pub(super) xhr2: bool,
    /// JSONP polling index (digits only).
    pub(super) jsonp: Option<String>,
    /// A server-initiated close waits for a poll to carry the close packet until then.
    closing_until: Option<Instant>,
    /// v4: when the next ping is due.
    pub(super) ping_at: Option<Instant>,
    /// v4: the pong deadline; v3: the deadline for the client's next ping.
    pub(super) dead_at: Option<Instant>,
    /// v4: a packet other than pong already pushed `dead_at` back in this ping cycle.
    refreshed: bool,
    ended: bool,
    pub(super) outputs: VecDeque<Pending>,
    pub(super) events: VecDeque<Event>,
    /// The deadline under which [`super::Engine`] filed the session in its timer index.
    pub(super) timer: Option<Instant>,
}

/// A session's output and event queues, lent to it for a step by a caller that runs many
/// sessions one step at a time ([`Session::lend_queues`]), so that an idle session holds no
/// allocated queue.
#[derive(Default)]
pub struct SessionQueues {
    outputs: VecDeque<Pending>,
    events: VecDeque<Event>,
}

impl fmt::Debug for SessionQueues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionQueues")
    }
}

impl Session {
    /// Swaps the session's queues with `queues` when both the session's are empty: lend an
    /// empty pair before a step, and take it back after the step's outputs and events were
    /// drained. `false` (nothing swapped) while the session still holds something.
    pub fn lend_queues(&mut self, queues: &mut SessionQueues) -> bool {
        if !self.outputs.is_empty() || !self.events.is_empty() {
            return false;
        }
        if !queues.outputs.is_empty() || !queues.events.is_empty() {
            return false;
        }
        std::mem::swap(&mut self.outputs, &mut queues.outputs);
        std::mem::swap(&mut self.events, &mut queues.events);
        true
    }

    pub(super) fn new(
        sid: Sid,
        protocol: Protocol,
        limits: Arc<Limits>,
        transport: Transport,
    ) -> Self {
        Session {
            sid,
            protocol,
            limits,
            transport,
            post: None,
            probe: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            xhr2: false,
            jsonp: None,
            closing_until: None,
            ping_at: None,
            dead_at: None,
            refreshed: false,
            ended: false,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            timer: None,
        }
    }

    // ---- getters ----

    /// The session id.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The protocol version of the handshake.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The transport the session uses now.
    pub fn transport(&self) -> TransportKind {
        match self.transport {
            Transport::Polling { .. } => TransportKind::Polling,
            Transport::WebSocket { .. } => TransportKind::WebSocket,
        }
    }

    /// Whether a message sent now would leave at once rather than wait in the queue (what
    /// `volatile` needs): a poll is parked, or the last WebSocket batch is written.
    pub fn is_writable(&self) -> bool {
        if self.ended || self.is_closing() {
            return false;
        }
        match self.transport {
            Transport::Polling { get } => get.is_some() && !self.is_upgrading(),
            Transport::WebSocket { writable, .. } => writable,
        }
    }

    /// Packets waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Message bytes waiting in the queue, as [`Config::max_buffered_bytes`] counts them.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether the server closed the session and it waits to deliver the close packet.
    /// [`send`](Self::send) refuses from then on.
    pub fn is_closing(&self) -> bool {
        self.closing_until.is_some()
    }

    /// Whether the session ended ([`Event::Close`] is queued or was handed out).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The connections the session holds a role for, at most three (a parked poll or the
    /// WebSocket, a body being read, a probe). Each must be reported to the session when it
    /// closes; an ended session holds at most a body being read.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, ConnRole)> + use<> {
        self.held().into_iter().flatten()
    }

    /// [`connections`](Self::connections) as an array: the transport's connection, the body
    /// being read, the probe.
    pub(super) fn held(&self) -> [Option<(ConnId, ConnRole)>; 3] {
        let mut held = [None; 3];
        if !self.ended {
            held[0] = match self.transport {
                Transport::Polling { get } => get.map(|c| (c, ConnRole::Poll)),
                Transport::WebSocket { conn, .. } => Some((conn, ConnRole::WebSocket)),
            };
            held[2] = self.probe.as_ref().map(|p| (p.conn, ConnRole::Probe));
        }
        held[1] = self.post.map(|(c, _)| (c, ConnRole::Body));
        held
    }

    /// The role `conn` has in this session, if any.
    pub fn role_of(&self, conn: ConnId) -> Option<ConnRole> {
        self.connections().find(|(c, _)| *c == conn).map(|(_, r)| r)
    }

    pub(super) fn is_upgrading(&self) -> bool {
        self.probe.as_ref().is_some_and(|p| p.probed)
    }

    // ---- outputs ----

    /// The next thing to do on a connection.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let pending = self.outputs.pop_front()?;
        Some(pending.into_output(self.protocol, None))
    }

    /// The next thing the application must see.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the earliest of
    /// the ping, pong or client-ping deadline, the upgrade timeout and the close timeout.
    /// Each is at least a millisecond after the input that set it, so it moves forward.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [
            self.ping_at,
            self.dead_at,
            self.closing_until,
            self.probe.as_ref().map(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- inputs ----

    /// A request the endpoint routed to this session ([`Route::Session`](super::Route)),
    /// with its head. Polls, POSTs and upgrade probes are answered or held; a request that
    /// does not fit (another protocol version, polling on an upgraded session, another
    /// method) is refused with 400, and any request to an ended session as an unknown one.
    pub fn handle_request(
        &mut self,
        conn: ConnId,
        request: &SessionRequest,
        head: &RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        if self.role_of(conn).is_some() {
            return Err(ApiMisuse::ConnectionBusy(conn));
        }
        let probe = request.kind() == RequestKind::Probe;
        let refuse = |session: &mut Self, code: ErrorCode| {
            let response = if probe {
                code.ws_response()
            } else {
                code.response()
            };
            session.respond(conn, response);
        };
        if self.ended {
            refuse(self, ErrorCode::UnknownSid);
            return Ok(());
        }
        if request.protocol() != Some(self.protocol) {
            refuse(self, ErrorCode::BadRequest);
            return Ok(());
        }
        if probe {
            self.probe_request(conn, head, now);
            return Ok(());
        }
        if self.transport() == TransportKind::WebSocket {
            refuse(self, ErrorCode::BadRequest);
            return Ok(());
        }
        match head.method() {
            Method::Get => self.poll(conn),
            Method::Post => self.post(conn, head, now),
            _ => refuse(self, ErrorCode::BadRequest),
        }
        Ok(())
    }

    /// The body asked for by [`Output::ReadBody`] arrived on `conn` (or overflowed).
    pub fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        let Some((_, binary)) = self.post.filter(|(c, _)| *c == conn) else {
            return Err(ApiMisuse::UnexpectedBody(conn));
        };
        self.post = None;
        if self.ended {
            self.respond(conn, ErrorCode::UnknownSid.response());
            return Ok(());
        }
        let bytes = match body {
            Body::Complete(bytes) if bytes.len() <= self.limits.max_payload => bytes,
            Body::TooLarge | Body::Complete(_) => {
                self.too_large(conn);
                return Ok(());
            }
        };
        let protocol = self.protocol;
        let decoded = match (&self.jsonp, protocol) {
            (Some(_), _) => jsonp::unwrap_post(&bytes).and_then(|text| {
                let framing = match protocol {
                    Protocol::V4 => Framing::V4,
                    Protocol::V3 => Framing::V3String,
                };
                decode_payload(Bytes::from(text), framing)
            }),
            (None, Protocol::V4) => decode_payload(bytes, Framing::V4),
            (None, Protocol::V3) if binary => decode_payload(bytes, Framing::V3Binary),
            (None, Protocol::V3) => decode_payload(bytes, Framing::V3String),
        };
        match decoded {
            Ok(packets) => {
                for packet in packets {
                    if self.ended || self.is_closing() {
                        break;
                    }
                    self.on_packet(packet, now);
                }
                self.respond(
                    conn,
                    Response::new(200)
                        .header("Content-Type", "text/html")
                        .body("ok"),
                );
            }
            Err(_) => {
                self.respond(conn, ErrorCode::BadRequest.response());
                self.close_session(CloseReason::ParseError, Ending::Abrupt, None);
            }
        }
        Ok(())
    }

    /// A WebSocket message arrived on `conn` (the session's WebSocket or its probe).
    pub fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let probing = match self.role_of(conn) {
            Some(ConnRole::WebSocket) => false,
            Some(ConnRole::Probe) => true,
            _ => return Err(ApiMisuse::NotWebSocket(conn)),
        };
        let size = message.len();
        let decoded = if size > self.limits.max_payload {
            None
        } else {
            Packet::from_ws(message, self.protocol).ok()
        };
        if probing {
            self.on_probe_packet(conn, decoded);
        } else {
            match decoded {
                Some(packet) => self.on_packet(packet, now),
                None => {
                    let reason = if size > self.limits.max_payload {
                        CloseReason::TransportError
                    } else {
                        CloseReason::ParseError
                    };
                    self.close_session(reason, Ending::Abrupt, None);
                }
            }
        }
        Ok(())
    }

    /// Every [`Output::Send`] handed out for the WebSocket `conn` has been written: the
    /// session may send again.
    pub fn handle_ws_drained(&mut self, conn: ConnId, _now: Instant) {
        if self.ended {
            return;
        }
        if let Transport::WebSocket { conn: c, writable } = &mut self.transport {
            if *c != conn {
                return;
            }
            *writable = true;
        } else {
            return;
        }
        self.flush();
    }

    /// The connection `conn` is gone (the peer closed it, or it failed: `error`). Safe to
    /// call for any connection; only those the session holds matter.
    pub fn handle_conn_closed(&mut self, conn: ConnId, error: bool, _now: Instant) {
        match self.role_of(conn) {
            None => {}
            Some(ConnRole::Body) => {
                self.post = None;
                // The reference treats a request that ends before its answer as a failed
                // transport.
                self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
            }
            Some(ConnRole::Poll) => {
                self.transport = Transport::Polling { get: None };
                self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
            }
            Some(ConnRole::WebSocket) => {
                let reason = if error {
                    CloseReason::TransportError
                } else {
                    CloseReason::TransportClose
                };
                self.close_session(reason, Ending::Abrupt, Some(conn));
            }
            Some(ConnRole::Probe) => self.probe = None,
        }
    }

    /// Runs whatever is due at `now`. Safe to call early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.closing_until.is_some_and(|t| t <= now) {
            // No poll came to collect the close packet.
            self.finish(CloseReason::ForcedClose);
            return;
        }
        if self.dead_at.is_some_and(|t| t <= now) {
            self.close_session(CloseReason::PingTimeout, Ending::Abrupt, None);
            return;
        }
        if let Some(probe) = self.probe.take_if(|p| p.deadline <= now) {
            self.push(Output::Close { conn: probe.conn });
        }
        if self.ping_at.is_some_and(|t| t <= now) {
            self.ping_at = None;
            self.dead_at = Some(now + self.limits.ping_timeout);
            self.refreshed = false;
            self.queue.push_back(Packet::Ping(Utf8Bytes::new()));
            self.flush();
        }
    }

    // ---- commands ----

    /// Queues a message; it leaves as soon as the transport can take it. Refused once the
    /// session is closing or ended, and when the queue already holds `max_buffered_packets`
    /// packets or `max_buffered_bytes` message bytes (which closes the session under
    /// [`OverflowPolicy::Close`]). The message that crosses the byte budget is accepted,
    /// whatever its size.
    pub fn send(&mut self, message: Message, now: Instant) -> Result<(), SendError> {
        self.send_all([message], now)
    }

    /// Queues `messages` as one unit, all or none, under the bounds of [`send`](Self::send)
    /// checked once before the first: a Socket.IO packet and its binary attachments, so that
    /// a client never gets a packet without its attachments. The unit may take the queue past
    /// either bound.
    pub fn send_all(
        &mut self,
        messages: impl IntoIterator<Item = Message>,
        _now: Instant,
    ) -> Result<(), SendError> {
        if self.ended || self.is_closing() {
            return Err(SendError::UnknownSession(self.sid));
        }
        if self
            .limits
            .queue
            .refuses(self.queue.len(), self.queued_bytes)
        {
            if self.limits.overflow == OverflowPolicy::Close {
                self.close_session(CloseReason::SlowClient, Ending::Abrupt, None);
            }
            return Err(SendError::BufferFull(self.sid));
        }
        for message in messages {
            self.queued_bytes += message.len();
            self.queue.push_back(Packet::Message(message));
            // Each leaves as soon as it can, as if sent alone (a parked poll takes the first).
            self.flush();
        }
        Ok(())
    }

    /// A message for this session was refused before it reached its queue, by a bounded
    /// queue in front of it (a driver's mailbox for the session): the overflow policy
    /// applies as if this queue had been full. Under [`OverflowPolicy::Close`] the session
    /// closes as [`send`](Self::send) closes it ([`CloseReason::SlowClient`]); under
    /// `Reject` nothing changes.
    pub fn overflowed(&mut self, _now: Instant) {
        if self.limits.overflow == OverflowPolicy::Close && !self.ended && !self.is_closing() {
            self.close_session(CloseReason::SlowClient, Ending::Abrupt, None);
        }
    }

    /// The runtime can no longer run the session (the task that ran it ended without its
    /// connections telling): it ends at once, as after a transport error. What is queued is
    /// not delivered; a parked poll is answered with the close packet, a WebSocket closed.
    pub fn abandon(&mut self, _now: Instant) {
        if !self.ended {
            self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
        }
    }

    /// Closes the session from the server side: what is queued is still delivered, then the
    /// close packet. [`Event::Close`] follows with [`CloseReason::ForcedClose`].
    pub fn close(&mut self, now: Instant) {
        if self.ended || self.is_closing() {
            return;
        }
        let upgrading = self.is_upgrading();
        if !upgrading {
            if let Some(probe) = self.probe.take() {
                self.push(Output::Close { conn: probe.conn });
            }
        }
        match self.transport {
            Transport::WebSocket { conn, .. } => {
                self.queue.push_back(Packet::Close);
                self.send_queue(conn);
                self.push(Output::Close { conn });
                self.finish(CloseReason::ForcedClose);
            }
            // An answered probe is about to become the transport (the client has paused
            // polling): the close waits for `5`, then leaves over the WebSocket with the
            // queue, as the reference lets the upgrade finish.
            Transport::Polling { .. } if upgrading => {
                self.closing_until = Some(now + self.limits.close_timeout);
            }
            Transport::Polling { get: Some(get) } if self.queue.is_empty() => {
                let response = self.payload_response(&[Packet::Close]);
                self.transport = Transport::Polling { get: None };
                self.respond(get, response);
                self.finish(CloseReason::ForcedClose);
            }
            Transport::Polling { get } => {
                // Clients act on a close packet before the packets batched with it, so what
                // is queued leaves first and the close follows in a poll of its own.
                self.closing_until = Some(now + self.limits.close_timeout);
                if let Some(get) = get {
                    let response = self.poll_response();
                    self.transport = Transport::Polling { get: None };
                    self.respond(get, response);
                }
            }
        }
    }

    // ---- transitions ----

    fn poll(&mut self, conn: ConnId) {
        let Transport::Polling { get: parked } = self.transport else {
            return;
        };
        if parked.is_some() {
            // Two polls at once: the reference refuses the second and closes the session,
            // which answers the first with a close packet.
            self.respond(conn, ErrorCode::BadRequest.response());
            self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
            return;
        }
        if self.is_upgrading() {
            let response = self.payload_response(&[Packet::Noop]);
            self.respond(conn, response);
            return;
        }
        if self.is_closing() {
            if !self.queue.is_empty() {
                // What was queued before the close leaves first, on its own.
                let response = self.poll_response();
                self.respond(conn, response);
                return;
            }
            let response = self.payload_response(&[Packet::Noop, Packet::Close]);
            self.respond(conn, response);
            self.finish(CloseReason::ForcedClose);
            return;
        }
        self.transport = Transport::Polling { get: Some(conn) };
        self.flush();
    }

    fn post(&mut self, conn: ConnId, head: &RequestHead, now: Instant) {
        let octet_stream = head
            .content_type()
            .is_some_and(|t| t.trim_start().starts_with("application/octet-stream"));
        if self.post.is_some() || (self.protocol == Protocol::V4 && octet_stream) {
            // v4 payloads are always text; a second POST at once breaks ordering. Either way
            // the reference refuses and closes the session.
            self.respond(conn, ErrorCode::BadRequest.response());
            self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
            return;
        }
        match head.body_kind() {
            BodyKind::Length(n) if n > self.limits.max_payload as u64 => {
                // Refused before a byte of it is read.
                self.too_large(conn);
            }
            BodyKind::None => {
                self.post = Some((conn, octet_stream));
                // An empty body needs no read.
                let _ = self.handle_body(conn, Body::Complete(Bytes::new()), now);
            }
            BodyKind::Length(_) | BodyKind::Chunked => {
                self.post = Some((conn, octet_stream));
                let limit = self.limits.max_payload;
                self.push(Output::ReadBody { conn, limit });
            }
        }
    }

    /// A POST body over `max_payload`: 413, and the session is closed, as engine.io 6.6 does
    /// (`onError("payload too large")`, a transport error; older versions kept the session).
    fn too_large(&mut self, conn: ConnId) {
        self.respond(conn, payload_too_large());
        self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
    }

    fn probe_request(&mut self, conn: ConnId, head: &RequestHead, now: Instant) {
        let Some(accept) =
            websocket_handshake(head).filter(|_| self.limits.allow_upgrades && !self.is_closing())
        else {
            self.respond(conn, ErrorCode::BadRequest.ws_response());
            return;
        };
        // One WebSocket per session: after an upgrade or beside another probe, the reference
        // completes the handshake and then closes the new socket (a client sees a close, not
        // an HTTP error).
        if self.transport() == TransportKind::WebSocket || self.probe.is_some() {
            self.respond(conn, accept);
            self.push(Output::Close { conn });
            return;
        }
        self.probe = Some(Box::new(Probe {
            conn,
            probed: false,
            deadline: now + self.limits.upgrade_timeout,
        }));
        self.respond(conn, accept);
    }

    fn on_probe_packet(&mut self, conn: ConnId, packet: Option<Packet>) {
        let upgrade = match packet {
            Some(Packet::Ping(data)) if data.as_str() == "probe" => {
                self.outputs
                    .push_back(Pending::Frame(conn, Packet::Pong(data)));
                if let Some(probe) = &mut self.probe {
                    probe.probed = true;
                }
                false
            }
            Some(Packet::Upgrade) => true,
            _ => {
                // Anything else on a probe aborts the upgrade; polling goes on.
                self.probe = None;
                self.push(Output::Close { conn });
                return;
            }
        };
        // Either way the client has paused polling: release its parked poll with a noop.
        let released = match &mut self.transport {
            Transport::Polling { get } => get.take(),
            Transport::WebSocket { .. } => None,
        };
        let noop = released.map(|_| self.payload_response(&[Packet::Noop]));
        if upgrade {
            // A POST body still being read belongs to the old transport; it is answered when
            // it arrives.
            self.probe = None;
            self.transport = Transport::WebSocket {
                conn,
                writable: true,
            };
            self.events.push_back(Event::Upgrade { sid: self.sid });
        }
        let closing = upgrade && self.is_closing();
        if let (Some(get), Some(response)) = (released, noop) {
            self.respond(get, response);
        }
        if closing {
            // The server closed the session during the upgrade: it ends on the new
            // transport, after what was queued.
            self.queue.push_back(Packet::Close);
            self.send_queue(conn);
            self.push(Output::Close { conn });
            self.finish(CloseReason::ForcedClose);
            return;
        }
        self.flush();
    }

    fn on_packet(&mut self, packet: Packet, now: Instant) {
        if self.ended || self.is_closing() {
            return;
        }
        match (packet, self.protocol) {
            (Packet::Message(message), _) => {
                if self.protocol == Protocol::V4 && self.dead_at.is_some() && !self.refreshed {
                    self.dead_at = Some(now + self.limits.ping_timeout);
                    self.refreshed = true;
                }
                self.events.push_back(Event::Message {
                    sid: self.sid,
                    message,
                });
            }
            (Packet::Pong(_), Protocol::V4) => {
                self.dead_at = None;
                self.refreshed = false;
                self.ping_at = Some(now + self.limits.ping_interval);
            }
            (Packet::Ping(data), Protocol::V3) => {
                self.dead_at = Some(now + self.limits.ping_interval + self.limits.ping_timeout);
                // Heartbeats bypass the queue bound: they are what keeps a session alive.
                self.queue.push_back(Packet::Pong(data));
                self.flush();
            }
            (Packet::Ping(_), Protocol::V4) | (Packet::Pong(_), Protocol::V3) => {
                // "invalid heartbeat direction"
                self.close_session(CloseReason::TransportError, Ending::Abrupt, None);
            }
            (Packet::Close, _) => {
                self.close_session(CloseReason::TransportClose, Ending::ByClient, None);
            }
            (Packet::Open(_) | Packet::Upgrade | Packet::Noop, _) => {}
        }
    }

    /// Ends a live session: tells its open transports (except `gone`, a WebSocket the peer
    /// already closed), then ends it.
    fn close_session(&mut self, reason: CloseReason, ending: Ending, gone: Option<ConnId>) {
        if self.ended {
            return;
        }
        if let Some(probe) = self.probe.take() {
            self.push(Output::Close { conn: probe.conn });
        }
        match self.transport {
            Transport::Polling { get } => {
                if let Some(get) = get {
                    let last = match ending {
                        Ending::ByClient => Packet::Noop,
                        Ending::Abrupt => Packet::Close,
                    };
                    let response = self.payload_response(&[last]);
                    self.respond(get, response);
                }
                // A body still being read is answered when it arrives (unknown session).
            }
            Transport::WebSocket { conn, .. } => {
                if gone != Some(conn) {
                    self.push(Output::Close { conn });
                }
            }
        }
        self.finish(reason);
    }

    /// Ends a session whose transports have been dealt with.
    fn finish(&mut self, reason: CloseReason) {
        self.ended = true;
        self.probe = None;
        if let Transport::Polling { get } = &mut self.transport {
            *get = None;
        }
        self.events.push_back(Event::Close {
            sid: self.sid,
            reason,
        });
    }

    /// Sends what the transport can take now.
    pub(super) fn flush(&mut self) {
        if self.queue.is_empty() || self.is_upgrading() {
            return;
        }
        match self.transport {
            Transport::Polling { get: Some(get) } => {
                let response = self.poll_response();
                self.transport = Transport::Polling { get: None };
                self.respond(get, response);
            }
            Transport::Polling { get: None } => {}
            Transport::WebSocket {
                conn,
                ref mut writable,
            } => {
                if !*writable {
                    return;
                }
                *writable = false;
                self.send_queue(conn);
            }
        }
    }

    /// Moves the whole queue to `conn` as WebSocket frames.
    fn send_queue(&mut self, conn: ConnId) {
        self.queued_bytes = 0;
        self.outputs.extend(
            self.queue
                .drain(..)
                .map(|packet| Pending::Frame(conn, packet)),
        );
    }

    pub(super) fn respond(&mut self, conn: ConnId, response: Response) {
        self.push(Output::Response { conn, response });
    }

    fn push(&mut self, output: Output) {
        self.outputs.push_back(Pending::Ready(output));
    }

    /// A polling response carrying up to `max_packets_per_poll` queued packets.
    pub(super) fn poll_response(&mut self) -> Response {
        let n = self.queue.len().min(self.limits.max_packets_per_poll);
        // Encoded where they wait, then dropped: no vector gathers them.
        let response = self.payload_response(self.queue.range(..n));
        let sent: usize = self.queue.drain(..n).map(|p| packet_message_len(&p)).sum();
        self.queued_bytes -= sent;
        response
    }

    /// Frames `packets` for this session's polling flavour (XHR2, base64 or JSONP).
    fn payload_response<'a, P>(&self, packets: P) -> Response
    where
        P: IntoIterator<Item = &'a Packet>,
        P::IntoIter: ExactSizeIterator + Clone,
    {
        let packets = packets.into_iter();
        if let Some(index) = &self.jsonp {
            let encoded = encode_payload_of(packets, self.protocol, false);
            let text = std::str::from_utf8(&encoded.body).unwrap_or_default();
            return Response::new(200)
                .header("Content-Type", "text/javascript; charset=UTF-8")
                .body(jsonp::wrap(index, text));
        }
        let encoded = encode_payload_of(packets, self.protocol, self.xhr2);
        let content_type = if encoded.binary {
            "application/octet-stream"
        } else {
            "text/plain; charset=UTF-8"
        };
        Response::new(200)
            .header("Content-Type", content_type)
            .body(encoded.body)
    }
}

/// The bytes a queued packet counts against [`Config::max_buffered_bytes`] (a message's
/// data; heartbeats nothing).
fn packet_message_len(packet: &Packet) -> usize {
    match packet {
        Packet::Message(message) => message.len(),
        _ => 0,
    }
}

fn payload_too_large() -> Response {
    Response::new(413)
        .header("Content-Type", "text/plain; charset=UTF-8")
        .body("Payload Too Large")
        .closing()
}
