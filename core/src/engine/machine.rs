//! The Engine.IO server machine: every transition rule of the protocol, in one place.

use super::config::Config;
use super::error::{ApiMisuse, CloseReason, ErrorCode, SendError};
use super::jsonp;
use super::packet::{Message, Packet, Protocol, WsMessage};
use super::payload::{Framing, decode_payload, encode_payload};
use super::session::{Probe, Session, Transport, TransportKind};
use crate::http::{BodyKind, Method, RequestHead, Response, websocket_handshake};
use crate::ids::{ConnId, IdMap, Sid};
use crate::rng::{IdGenerator, RandomIds};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Something the runtime must do on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write this HTTP response on `conn`. A `101` turns the connection into a WebSocket:
    /// from then on its messages go to [`Engine::handle_ws_message`]. When
    /// `response.close` is set, close the connection after writing.
    Response {
        /// The connection.
        conn: ConnId,
        /// The response.
        response: Response,
    },
    /// Read the request body of `conn` (at most `limit` bytes) and hand it to
    /// [`Engine::handle_body`].
    ReadBody {
        /// The connection.
        conn: ConnId,
        /// The most bytes to accept; more is [`Body::TooLarge`].
        limit: usize,
    },
    /// Send a WebSocket message on `conn`; when every `Send` handed out so far for `conn` is
    /// written, call [`Engine::handle_ws_drained`].
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: WsMessage,
    },
    /// Close the WebSocket `conn` (a close frame, then the TCP connection).
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Something the application must see.
#[derive(Debug, Clone)]
pub enum Event {
    /// A session opened.
    Open {
        /// The new session.
        sid: Sid,
        /// Its protocol version.
        protocol: Protocol,
        /// The transport of the handshake.
        transport: TransportKind,
        /// The handshake request (headers, query, path).
        request: Box<RequestHead>,
    },
    /// A message arrived.
    Message {
        /// The session.
        sid: Sid,
        /// The message.
        message: Message,
    },
    /// The session moved from polling to WebSocket.
    Upgrade {
        /// The session.
        sid: Sid,
    },
    /// The session closed; its id is no longer valid.
    Close {
        /// The session.
        sid: Sid,
        /// Why.
        reason: CloseReason,
    },
}

/// A request body, as the runtime read it after [`Output::ReadBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole body.
    Complete(Bytes),
    /// The body exceeded the limit; the runtime stopped reading it.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A parked long-polling GET.
    Poll(Sid),
    /// A POST whose body is being read; `true` when it came as `application/octet-stream`
    /// (the v3 XHR2 binary framing).
    Body(Sid, bool),
    /// The session's WebSocket.
    Socket(Sid),
    /// A WebSocket probing an upgrade.
    Probe(Sid),
}

/// How a session ends, which decides what its open transports are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client sent `1`: a parked poll gets `6`.
    ByClient,
    /// An error or timeout: a parked poll gets `1`.
    Abrupt,
}

/// The Engine.IO server: sessions, their transports and timers. See the crate documentation
/// for the order in which to call it.
pub struct Engine {
    config: Config,
    ids: Box<dyn IdGenerator>,
    // Keys the engine generates (session ids) or the runtime numbers: see `IdHasher`.
    sessions: IdMap<Sid, Session>,
    conns: IdMap<ConnId, Role>,
    timers: BTreeSet<(Instant, Sid)>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    frames: FrameCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.sessions.len())
            .field("connections", &self.conns.len())
            .field("timers", &self.timers.len())
            .finish_non_exhaustive()
    }
}

/// The query parameters the engine reads.
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    b64: Option<String>,
    j: Option<String>,
}

impl Query {
    fn of(head: &RequestHead) -> Self {
        let get = |k| head.query_param(k).map(|v| v.into_owned());
        Query {
            eio: get("EIO"),
            transport: get("transport"),
            sid: get("sid"),
            b64: get("b64"),
            j: get("j"),
        }
    }
}

fn at_least_a_millisecond(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

impl Engine {
    /// An engine with `config`, drawing session ids from a [`RandomIds`] seeded by `seed`
    /// (take it from the operating system's entropy in production).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        Self::with_id_generator(config, Box::new(RandomIds::from_seed(seed)))
    }

    /// An engine whose session ids come from `ids`.
    pub fn with_id_generator(mut config: Config, ids: Box<dyn IdGenerator>) -> Self {
        // A zero duration would make a deadline due again at once: clamp so that every timer
        // moves time forward.
        config.ping_interval = at_least_a_millisecond(config.ping_interval);
        config.ping_timeout = at_least_a_millisecond(config.ping_timeout);
        config.upgrade_timeout = at_least_a_millisecond(config.upgrade_timeout);
        config.close_timeout = at_least_a_millisecond(config.close_timeout);
        config.max_packets_per_poll = config.max_packets_per_poll.max(1);
        Engine {
            config,
            ids,
            sessions: IdMap::default(),
            conns: IdMap::default(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            frames: FrameCache::default(),
        }
    }

    // ---- getters ----

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `head` is addressed to the engine (its path is under [`Config::path`]).
    /// Requests that are not belong to the host application.
    pub fn owns(&self, head: &RequestHead) -> bool {
        self.config.matches_path(head.path())
    }

    /// Open sessions (including those closing).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Connections the engine holds a role for (parked polls, bodies awaited, WebSockets).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Scheduled deadlines (at most one per session).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Whether `sid` is an open session.
    pub fn contains(&self, sid: Sid) -> bool {
        self.sessions.get(&sid).is_some_and(|s| !s.is_closing())
    }

    /// The protocol of an open session.
    pub fn protocol(&self, sid: Sid) -> Option<Protocol> {
        self.sessions.get(&sid).map(|s| s.protocol)
    }

    /// The transport an open session uses now.
    pub fn transport(&self, sid: Sid) -> Option<TransportKind> {
        self.sessions.get(&sid).map(Session::kind)
    }

    /// Whether a message sent to `sid` now would leave at once rather than wait in its queue.
    /// Volatile messages are sent only when this holds.
    pub fn is_writable(&self, sid: Sid) -> bool {
        self.sessions.get(&sid).is_some_and(Session::is_writable)
    }

    /// Packets waiting in the queue of `sid`.
    pub fn queued(&self, sid: Sid) -> usize {
        self.sessions.get(&sid).map_or(0, |s| s.queue.len())
    }

    // ---- outputs ----

    /// The next thing to do on a connection.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next thing the application must see.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    // ---- inputs ----

    /// An HTTP request head arrived on `conn`. Call only for requests the engine
    /// [`owns`](Engine::owns) (others get a 404). Bodies are asked for with
    /// [`Output::ReadBody`].
    pub fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        if self.conns.contains_key(&conn) {
            return Err(ApiMisuse::ConnectionBusy(conn));
        }
        if !self.owns(&head) {
            self.respond(
                conn,
                Response::new(404)
                    .header("Content-Type", "text/plain; charset=UTF-8")
                    .body("Not Found"),
            );
            return Ok(());
        }
        let upgrade = head.is_websocket_upgrade();
        if let Err(code) = self.route(conn, head, upgrade, now) {
            let response = if upgrade {
                code.ws_response()
            } else {
                code.response()
            };
            self.respond(conn, response);
        }
        Ok(())
    }

    /// Sorts a request out by its query; a refusal comes back as the code to answer with.
    fn route(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        upgrade: bool,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        let q = Query::of(&head);
        let kind = match q.transport.as_deref() {
            Some("polling") if self.config.transports.polling => TransportKind::Polling,
            Some("websocket") if self.config.transports.websocket => TransportKind::WebSocket,
            _ => return Err(ErrorCode::TransportUnknown),
        };
        if (kind == TransportKind::WebSocket) != upgrade {
            return Err(ErrorCode::BadRequest);
        }
        let protocol = match q.eio.as_deref() {
            Some("4") => Some(Protocol::V4),
            Some("3") if self.config.allow_eio3 => Some(Protocol::V3),
            _ => None,
        };
        let Some(sid_text) = q.sid.as_deref() else {
            if head.method() != Method::Get {
                return Err(ErrorCode::BadHandshakeMethod);
            }
            let protocol = protocol.ok_or(ErrorCode::UnsupportedProtocolVersion)?;
            self.handshake(conn, head, kind, protocol, &q, now);
            return Ok(());
        };
        let sid = Sid::new(sid_text).map_err(|_| ErrorCode::UnknownSid)?;
        let session = self.sessions.get(&sid).ok_or(ErrorCode::UnknownSid)?;
        if protocol != Some(session.protocol) {
            return Err(ErrorCode::BadRequest);
        }
        if kind == TransportKind::WebSocket {
            self.probe_request(conn, sid, &head, now);
            return Ok(());
        }
        if session.kind() == TransportKind::WebSocket {
            return Err(ErrorCode::BadRequest);
        }
        match head.method() {
            Method::Get => self.poll(conn, sid, now),
            Method::Post => self.post(conn, sid, &head, now),
            _ => return Err(ErrorCode::BadRequest),
        }
        Ok(())
    }

    /// The body asked for by [`Output::ReadBody`] arrived (or overflowed).
    pub fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        let Some(Role::Body(sid, binary)) = self.conns.get(&conn).copied() else {
            return Err(ApiMisuse::UnexpectedBody(conn));
        };
        self.conns.remove(&conn);
        let Some(session) = self.sessions.get_mut(&sid) else {
            self.respond(conn, ErrorCode::UnknownSid.response());
            return Ok(());
        };
        if let Transport::Polling { post, .. } = &mut session.transport {
            *post = None;
        }
        let bytes = match body {
            Body::TooLarge => {
                // The reference answers 413 and keeps the session.
                self.respond(conn, payload_too_large());
                return Ok(());
            }
            Body::Complete(bytes) => bytes,
        };
        if bytes.len() > self.config.max_payload {
            self.respond(conn, payload_too_large());
            return Ok(());
        }
        let protocol = session.protocol;
        let decoded = match (&session.jsonp, protocol) {
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
                    if self.sessions.get(&sid).is_none_or(|s| s.is_closing()) {
                        break;
                    }
                    self.on_packet(sid, packet, now);
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
                self.close_session(sid, CloseReason::ParseError, Ending::Abrupt, now);
            }
        }
        self.reschedule(sid);
        Ok(())
    }

    /// A WebSocket message arrived on `conn`.
    pub fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let role = self.conns.get(&conn).copied();
        let (sid, probing) = match role {
            Some(Role::Socket(sid)) => (sid, false),
            Some(Role::Probe(sid)) => (sid, true),
            _ => return Err(ApiMisuse::NotWebSocket(conn)),
        };
        let Some(session) = self.sessions.get(&sid) else {
            self.conns.remove(&conn);
            self.push_output(Output::Close { conn });
            return Ok(());
        };
        let size = match &message {
            WsMessage::Text(t) => t.len(),
            WsMessage::Binary(b) => b.len(),
        };
        let decoded = if size > self.config.max_payload {
            None
        } else {
            Packet::from_ws(message, session.protocol).ok()
        };
        if probing {
            self.on_probe_packet(conn, sid, decoded);
        } else {
            match decoded {
                Some(packet) => self.on_packet(sid, packet, now),
                None => {
                    let reason = if size > self.config.max_payload {
                        CloseReason::TransportError
                    } else {
                        CloseReason::ParseError
                    };
                    self.close_session(sid, reason, Ending::Abrupt, now);
                }
            }
        }
        self.reschedule(sid);
        Ok(())
    }

    /// Every [`Output::Send`] handed out for the WebSocket `conn` has been written: the
    /// session may send again.
    pub fn handle_ws_drained(&mut self, conn: ConnId, _now: Instant) {
        let Some(Role::Socket(sid)) = self.conns.get(&conn).copied() else {
            return;
        };
        if let Some(Session {
            transport: Transport::WebSocket { writable, .. },
            ..
        }) = self.sessions.get_mut(&sid)
        {
            *writable = true;
        }
        self.flush(sid);
    }

    /// The connection `conn` is gone (the peer closed it, or it failed: `error`). Safe to call
    /// for any connection, known or not.
    pub fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        let Some(role) = self.conns.remove(&conn) else {
            return;
        };
        match role {
            Role::Poll(sid) | Role::Body(sid, _) => {
                if let Some(Session {
                    transport: Transport::Polling { get, post },
                    ..
                }) = self.sessions.get_mut(&sid)
                {
                    if *get == Some(conn) {
                        *get = None;
                    }
                    if *post == Some(conn) {
                        *post = None;
                    }
                }
                // The reference treats a request that ends before its answer as a failed
                // transport.
                self.close_session(sid, CloseReason::TransportError, Ending::Abrupt, now);
            }
            Role::Socket(sid) => {
                let reason = if error {
                    CloseReason::TransportError
                } else {
                    CloseReason::TransportClose
                };
                self.close_session(sid, reason, Ending::Abrupt, now);
            }
            Role::Probe(sid) => {
                if let Some(session) = self.sessions.get_mut(&sid) {
                    session.probe = None;
                }
                self.reschedule(sid);
            }
        }
    }

    /// Runs whatever is due at `now`. Safe to call early or often.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<Sid> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, sid)| *sid)
            .collect();
        for sid in due {
            self.on_deadline(sid, now);
        }
    }

    // ---- commands ----

    /// Queues a message for `sid`; it leaves as soon as the transport can take it.
    pub fn send(&mut self, sid: Sid, message: Message, now: Instant) -> Result<(), SendError> {
        let Some(session) = self.sessions.get_mut(&sid).filter(|s| !s.is_closing()) else {
            return Err(SendError::UnknownSession(sid));
        };
        if session.queue.len() >= self.config.max_buffered_packets {
            if self.config.overflow == super::config::OverflowPolicy::Close {
                self.close_session(sid, CloseReason::SlowClient, Ending::Abrupt, now);
            }
            return Err(SendError::BufferFull(sid));
        }
        session.queue.push_back(Packet::Message(message));
        self.flush(sid);
        Ok(())
    }

    /// Closes `sid` from the server side: what is queued is still delivered, then the close
    /// packet. [`Event::Close`] follows with [`CloseReason::ForcedClose`].
    pub fn close(&mut self, sid: Sid, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid).filter(|s| !s.is_closing()) else {
            return;
        };
        let upgrading = session.is_upgrading();
        if !upgrading {
            if let Some(probe) = session.probe.take() {
                self.conns.remove(&probe.conn);
                self.outputs.push_back(Output::Close { conn: probe.conn });
            }
        }
        match session.transport {
            Transport::WebSocket { conn, .. } => {
                session.queue.push_back(Packet::Close);
                let protocol = session.protocol;
                for packet in session.queue.drain(..) {
                    self.outputs.push_back(Output::Send {
                        conn,
                        message: packet.to_ws(protocol),
                    });
                }
                self.outputs.push_back(Output::Close { conn });
                self.finish(sid, CloseReason::ForcedClose);
            }
            // An answered probe is about to become the transport (the client has paused
            // polling): the close waits for `5`, then leaves over the WebSocket with the
            // queue, as the reference lets the upgrade finish.
            Transport::Polling { .. } if upgrading => {
                session.closing_until = Some(now + self.config.close_timeout);
                self.reschedule(sid);
            }
            Transport::Polling { get: Some(get), .. } if session.queue.is_empty() => {
                let response = payload_response(session, &[Packet::Close]);
                self.conns.remove(&get);
                self.respond(get, response);
                self.finish(sid, CloseReason::ForcedClose);
            }
            Transport::Polling { get, .. } => {
                // Clients act on a close packet before the packets batched with it, so what
                // is queued leaves first and the close follows in a poll of its own.
                session.closing_until = Some(now + self.config.close_timeout);
                if let Some(get) = get {
                    let response = poll_response(session, self.config.max_packets_per_poll);
                    if let Transport::Polling { get, .. } = &mut session.transport {
                        *get = None;
                    }
                    self.conns.remove(&get);
                    self.respond(get, response);
                }
                self.reschedule(sid);
            }
        }
    }

    // ---- transitions ----

    fn handshake(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        kind: TransportKind,
        protocol: Protocol,
        q: &Query,
        now: Instant,
    ) {
        let refuse = |engine: &mut Self| {
            let response = match kind {
                TransportKind::Polling => ErrorCode::BadRequest.response(),
                TransportKind::WebSocket => ErrorCode::BadRequest.ws_response(),
            };
            engine.respond(conn, response);
        };
        let sid = self.ids.generate(&head);
        if self.sessions.contains_key(&sid) {
            // Only a custom generator can repeat an id; refuse rather than hijack.
            return refuse(self);
        }
        let transport = match kind {
            TransportKind::Polling => Transport::Polling {
                get: None,
                post: None,
            },
            TransportKind::WebSocket => {
                let Some(accept) = websocket_handshake(&head) else {
                    return refuse(self);
                };
                let accept = self.with_cookie(accept, sid);
                self.respond(conn, accept);
                self.conns.insert(conn, Role::Socket(sid));
                Transport::WebSocket {
                    conn,
                    writable: true,
                }
            }
        };
        let mut session = Session::new(protocol, transport);
        session.xhr2 = protocol == Protocol::V3 && q.b64.as_deref().is_none_or(str::is_empty);
        if kind == TransportKind::Polling {
            session.jsonp =
                q.j.as_deref()
                    .map(|j| j.chars().filter(char::is_ascii_digit).collect());
        }
        match protocol {
            Protocol::V4 => session.ping_at = Some(now + self.config.ping_interval),
            Protocol::V3 => {
                session.dead_at = Some(now + self.config.ping_interval + self.config.ping_timeout)
            }
        }
        let upgrades = kind == TransportKind::Polling
            && self.config.allow_upgrades
            && self.config.transports.websocket;
        let open = format!(
            "{{\"sid\":\"{sid}\",\"upgrades\":[{}],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            if upgrades { "\"websocket\"" } else { "" },
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        );
        session.queue.push_back(Packet::Open(Utf8Bytes::from(open)));
        if kind == TransportKind::Polling {
            let response = poll_response(&mut session, self.config.max_packets_per_poll);
            let response = self.with_cookie(response, sid);
            self.respond(conn, response);
        }
        self.sessions.insert(sid, session);
        self.events.push_back(Event::Open {
            sid,
            protocol,
            transport: kind,
            request: Box::new(head),
        });
        self.flush(sid);
        self.reschedule(sid);
    }

    fn poll(&mut self, conn: ConnId, sid: Sid, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let Transport::Polling { get: parked, .. } = session.transport else {
            return;
        };
        if parked.is_some() {
            // Two polls at once: the reference refuses the second and closes the session,
            // which answers the first with a close packet.
            self.respond(conn, ErrorCode::BadRequest.response());
            self.close_session(sid, CloseReason::TransportError, Ending::Abrupt, now);
            return;
        }
        if session.is_upgrading() {
            let response = noop_response(session);
            self.respond(conn, response);
            return;
        }
        if session.is_closing() {
            if !session.queue.is_empty() {
                // What was queued before the close leaves first, on its own.
                let response = poll_response(session, self.config.max_packets_per_poll);
                self.respond(conn, response);
                return;
            }
            let response = payload_response(session, &[Packet::Noop, Packet::Close]);
            self.respond(conn, response);
            self.finish(sid, CloseReason::ForcedClose);
            return;
        }
        if let Transport::Polling { get, .. } = &mut session.transport {
            *get = Some(conn);
        }
        self.conns.insert(conn, Role::Poll(sid));
        self.flush(sid);
    }

    fn post(&mut self, conn: ConnId, sid: Sid, head: &RequestHead, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let protocol = session.protocol;
        let Transport::Polling { post, .. } = &mut session.transport else {
            return;
        };
        let octet_stream = head
            .content_type()
            .is_some_and(|t| t.trim_start().starts_with("application/octet-stream"));
        if post.is_some() || (protocol == Protocol::V4 && octet_stream) {
            // v4 payloads are always text; a second POST at once breaks ordering. Either way
            // the reference refuses and closes the session.
            self.respond(conn, ErrorCode::BadRequest.response());
            self.close_session(sid, CloseReason::TransportError, Ending::Abrupt, now);
            return;
        }
        match head.body_kind() {
            BodyKind::Length(n) if n > self.config.max_payload as u64 => {
                // Refused before a byte of it is read; the session stays.
                self.respond(conn, payload_too_large());
            }
            BodyKind::None => {
                *post = Some(conn);
                self.conns.insert(conn, Role::Body(sid, octet_stream));
                // An empty body needs no read; handle_body sees it as empty.
                let _ = self.handle_body(conn, Body::Complete(Bytes::new()), now);
            }
            BodyKind::Length(_) | BodyKind::Chunked => {
                *post = Some(conn);
                self.conns.insert(conn, Role::Body(sid, octet_stream));
                let limit = self.config.max_payload;
                self.push_output(Output::ReadBody { conn, limit });
            }
        }
    }

    fn probe_request(&mut self, conn: ConnId, sid: Sid, head: &RequestHead, now: Instant) {
        let allowed = self.config.allow_upgrades;
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        // One WebSocket per session: not after an upgrade, not beside another probe.
        let acceptable = allowed
            && session.kind() == TransportKind::Polling
            && session.probe.is_none()
            && !session.is_closing();
        let accept = websocket_handshake(head).filter(|_| acceptable);
        let Some(accept) = accept else {
            self.respond(conn, ErrorCode::BadRequest.ws_response());
            return;
        };
        session.probe = Some(Probe {
            conn,
            probed: false,
            deadline: now + self.config.upgrade_timeout,
        });
        self.conns.insert(conn, Role::Probe(sid));
        self.respond(conn, accept);
        self.reschedule(sid);
    }

    fn on_probe_packet(&mut self, conn: ConnId, sid: Sid, packet: Option<Packet>) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let upgrade = match packet {
            Some(Packet::Ping(data)) if data.as_str() == "probe" => {
                self.outputs.push_back(Output::Send {
                    conn,
                    message: Packet::Pong(data).to_ws(session.protocol),
                });
                if let Some(probe) = &mut session.probe {
                    probe.probed = true;
                }
                false
            }
            Some(Packet::Upgrade) => true,
            _ => {
                // Anything else on a probe aborts the upgrade; polling goes on.
                session.probe = None;
                self.conns.remove(&conn);
                self.outputs.push_back(Output::Close { conn });
                return;
            }
        };
        // Either way the client has paused polling: release its parked poll with a noop.
        let released = match &mut session.transport {
            Transport::Polling { get, .. } => get.take(),
            Transport::WebSocket { .. } => None,
        };
        let noop = released.map(|_| noop_response(session));
        if upgrade {
            // A POST body still being read belongs to the old transport; it is answered when
            // it arrives.
            session.probe = None;
            session.transport = Transport::WebSocket {
                conn,
                writable: true,
            };
            self.conns.insert(conn, Role::Socket(sid));
            self.events.push_back(Event::Upgrade { sid });
        }
        let closing = upgrade && session.is_closing();
        if let (Some(get), Some(response)) = (released, noop) {
            self.conns.remove(&get);
            self.respond(get, response);
        }
        if closing {
            // The server closed the session during the upgrade: it ends on the new
            // transport, after what was queued.
            if let Some(session) = self.sessions.get_mut(&sid) {
                session.queue.push_back(Packet::Close);
                let protocol = session.protocol;
                for packet in session.queue.drain(..) {
                    self.outputs.push_back(Output::Send {
                        conn,
                        message: packet.to_ws(protocol),
                    });
                }
            }
            self.outputs.push_back(Output::Close { conn });
            self.finish(sid, CloseReason::ForcedClose);
            return;
        }
        self.flush(sid);
    }

    fn on_packet(&mut self, sid: Sid, packet: Packet, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.is_closing() {
            return;
        }
        match (packet, session.protocol) {
            (Packet::Message(message), _) => {
                if session.protocol == Protocol::V4
                    && session.dead_at.is_some()
                    && !session.refreshed
                {
                    session.dead_at = Some(now + self.config.ping_timeout);
                    session.refreshed = true;
                }
                self.events.push_back(Event::Message { sid, message });
            }
            (Packet::Pong(_), Protocol::V4) => {
                session.dead_at = None;
                session.refreshed = false;
                session.ping_at = Some(now + self.config.ping_interval);
            }
            (Packet::Ping(data), Protocol::V3) => {
                session.dead_at = Some(now + self.config.ping_interval + self.config.ping_timeout);
                // Heartbeats bypass the queue bound: they are what keeps a session alive.
                session.queue.push_back(Packet::Pong(data));
                self.flush(sid);
            }
            (Packet::Ping(_), Protocol::V4) | (Packet::Pong(_), Protocol::V3) => {
                // "invalid heartbeat direction"
                self.close_session(sid, CloseReason::TransportError, Ending::Abrupt, now);
            }
            (Packet::Close, _) => {
                self.close_session(sid, CloseReason::TransportClose, Ending::ByClient, now);
            }
            (Packet::Open(_) | Packet::Upgrade | Packet::Noop, _) => {}
        }
    }

    fn on_deadline(&mut self, sid: Sid, now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.closing_until.is_some_and(|t| t <= now) {
            // No poll came to collect the close packet.
            self.finish(sid, CloseReason::ForcedClose);
            return;
        }
        if session.dead_at.is_some_and(|t| t <= now) {
            self.close_session(sid, CloseReason::PingTimeout, Ending::Abrupt, now);
            return;
        }
        if let Some(probe) = session.probe.take_if(|p| p.deadline <= now) {
            self.conns.remove(&probe.conn);
            self.outputs.push_back(Output::Close { conn: probe.conn });
        }
        if session.ping_at.is_some_and(|t| t <= now) {
            session.ping_at = None;
            session.dead_at = Some(now + self.config.ping_timeout);
            session.refreshed = false;
            session.queue.push_back(Packet::Ping(Utf8Bytes::new()));
            self.flush(sid);
        }
        self.reschedule(sid);
    }

    /// Ends a live session: tells its open transports, then forgets it.
    fn close_session(&mut self, sid: Sid, reason: CloseReason, ending: Ending, _now: Instant) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if let Some(probe) = session.probe.take() {
            if self.conns.remove(&probe.conn).is_some() {
                self.outputs.push_back(Output::Close { conn: probe.conn });
            }
        }
        match session.transport {
            Transport::Polling { get, post } => {
                if let Some(get) = get.filter(|g| self.conns.remove(g).is_some()) {
                    let last = match ending {
                        Ending::ByClient => Packet::Noop,
                        Ending::Abrupt => Packet::Close,
                    };
                    let response = payload_response(session, &[last]);
                    self.respond(get, response);
                }
                // A body still being read is answered when it arrives (unknown session).
                let _ = post;
            }
            Transport::WebSocket { conn, .. } => {
                if self.conns.remove(&conn).is_some() {
                    self.outputs.push_back(Output::Close { conn });
                }
            }
        }
        self.finish(sid, reason);
    }

    /// Forgets a session whose transports have been dealt with.
    fn finish(&mut self, sid: Sid, reason: CloseReason) {
        let Some(session) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(t) = session.timer {
            self.timers.remove(&(t, sid));
        }
        let mut owned = vec![];
        if let Some(probe) = &session.probe {
            owned.push(probe.conn);
        }
        match session.transport {
            Transport::Polling { get, .. } => owned.extend(get),
            Transport::WebSocket { conn, .. } => owned.push(conn),
        }
        for conn in owned {
            if self.conns.get(&conn).is_some_and(|r| role_sid(*r) == sid) {
                self.conns.remove(&conn);
            }
        }
        self.events.push_back(Event::Close { sid, reason });
    }

    /// Sends what the transport can take now.
    fn flush(&mut self, sid: Sid) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        if session.queue.is_empty() || session.is_upgrading() {
            return;
        }
        match session.transport {
            Transport::Polling { get: Some(get), .. } => {
                let response = poll_response(session, self.config.max_packets_per_poll);
                if let Transport::Polling { get, .. } = &mut session.transport {
                    *get = None;
                }
                self.conns.remove(&get);
                self.respond(get, response);
            }
            Transport::Polling { get: None, .. } => {}
            Transport::WebSocket {
                conn,
                ref mut writable,
            } => {
                if !*writable {
                    return;
                }
                *writable = false;
                let protocol = session.protocol;
                for packet in session.queue.drain(..) {
                    self.outputs.push_back(Output::Send {
                        conn,
                        message: self.frames.frame(&packet, protocol),
                    });
                }
            }
        }
    }

    /// Files the session under its next deadline.
    fn reschedule(&mut self, sid: Sid) {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return;
        };
        let next = session.next_deadline();
        if next == session.timer {
            return;
        }
        if let Some(t) = session.timer {
            self.timers.remove(&(t, sid));
        }
        if let Some(t) = next {
            self.timers.insert((t, sid));
        }
        session.timer = next;
    }

    /// The handshake response with the session cookie, when configured.
    fn with_cookie(&self, response: Response, sid: Sid) -> Response {
        match &self.config.cookie {
            Some(cookie) => response.header("Set-Cookie", cookie.header_value(sid.as_str())),
            None => response,
        }
    }

    fn respond(&mut self, conn: ConnId, response: Response) {
        self.outputs.push_back(Output::Response { conn, response });
    }

    fn push_output(&mut self, output: Output) {
        self.outputs.push_back(output);
    }
}

fn role_sid(role: Role) -> Sid {
    match role {
        Role::Poll(s) | Role::Body(s, _) | Role::Socket(s) | Role::Probe(s) => s,
    }
}

fn payload_too_large() -> Response {
    Response::new(413)
        .header("Content-Type", "text/plain; charset=UTF-8")
        .body("Payload Too Large")
        .closing()
}

/// A polling response carrying up to `max` queued packets.
/// How many shared text frames [`FrameCache`] remembers: a few broadcasts in flight at once.
const FRAME_CACHE: usize = 8;

/// WebSocket frames of text messages that several sessions queued (a broadcast, whose text the
/// Socket.IO layer encodes once and clones for every target), remembered by the identity of
/// that text so the `4…` frame is built once and shared instead of copied per recipient.
///
/// An entry keeps a clone of its text alive, so the same address and length mean the same
/// (immutable) bytes. At most [`FRAME_CACHE`] frames are held; a text nobody else holds is
/// framed directly, without an entry.
#[derive(Default)]
struct FrameCache {
    entries: [Option<(Bytes, Utf8Bytes)>; FRAME_CACHE],
    next: usize,
}

impl FrameCache {
    /// `packet` as a WebSocket message, the frame shared with earlier recipients if any.
    fn frame(&mut self, packet: &Packet, protocol: Protocol) -> WsMessage {
        let Packet::Message(Message::Text(text)) = packet else {
            return packet.to_ws(protocol);
        };
        let source = text.as_bytes();
        if source.is_unique() {
            // One recipient only (an emit to one socket): nothing to share.
            return packet.to_ws(protocol);
        }
        let same =
            |(s, _): &&(Bytes, Utf8Bytes)| s.as_ptr() == source.as_ptr() && s.len() == source.len();
        if let Some((_, frame)) = self.entries.iter().flatten().find(same) {
            return WsMessage::Text(frame.clone());
        }
        let message = packet.to_ws(protocol);
        if let WsMessage::Text(frame) = &message {
            self.entries[self.next] = Some((source.clone(), frame.clone()));
            self.next = (self.next + 1) % FRAME_CACHE;
        }
        message
    }
}

fn poll_response(session: &mut Session, max: usize) -> Response {
    let n = session.queue.len().min(max);
    let packets: Vec<Packet> = session.queue.drain(..n).collect();
    payload_response(session, &packets)
}

fn noop_response(session: &Session) -> Response {
    payload_response(session, &[Packet::Noop])
}

/// Frames `packets` for this session's polling flavour (XHR2, base64 or JSONP).
fn payload_response(session: &Session, packets: &[Packet]) -> Response {
    if let Some(index) = &session.jsonp {
        let encoded = encode_payload(packets, session.protocol, false);
        let text = std::str::from_utf8(&encoded.body).unwrap_or_default();
        return Response::new(200)
            .header("Content-Type", "text/javascript; charset=UTF-8")
            .body(jsonp::wrap(index, text));
    }
    let encoded = encode_payload(packets, session.protocol, session.xhr2);
    let content_type = if encoded.binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=UTF-8"
    };
    Response::new(200)
        .header("Content-Type", content_type)
        .body(encoded.body)
}

#[cfg(test)]
mod frame_cache_tests {
    use super::*;

    fn frame(m: &WsMessage) -> &Utf8Bytes {
        match m {
            WsMessage::Text(t) => t,
            WsMessage::Binary(_) => panic!("binary frame"),
        }
    }

    #[test]
    fn a_text_queued_for_several_sessions_is_framed_once() {
        let mut cache = FrameCache::default();
        let text = Utf8Bytes::from(String::from(r#"2["news",1]"#));
        let a = cache.frame(&Packet::Message(Message::Text(text.clone())), Protocol::V4);
        let b = cache.frame(&Packet::Message(Message::Text(text.clone())), Protocol::V3);
        assert_eq!(&**frame(&a), r#"42["news",1]"#);
        assert_eq!(a, b);
        assert_eq!(frame(&a).as_ptr(), frame(&b).as_ptr(), "shared, not copied");
        // Another text with the same content is another message.
        let other = Utf8Bytes::from(String::from(r#"2["news",1]"#));
        let keep = other.clone();
        let c = cache.frame(&Packet::Message(Message::Text(other)), Protocol::V4);
        assert_eq!(c, a);
        assert_ne!(frame(&c).as_ptr(), frame(&a).as_ptr());
        drop(keep);
        // A text held by one queue only is framed directly and not remembered.
        let single = Utf8Bytes::from(String::from("2[]"));
        let d = cache.frame(&Packet::Message(Message::Text(single)), Protocol::V4);
        assert_eq!(&**frame(&d), "42[]");
        assert_eq!(cache.entries.iter().flatten().count(), 2);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = FrameCache::default();
        let texts: Vec<Utf8Bytes> = (0..3 * FRAME_CACHE)
            .map(|i| Utf8Bytes::from(format!("2[{i}]")))
            .collect();
        for t in &texts {
            let m = cache.frame(&Packet::Message(Message::Text(t.clone())), Protocol::V4);
            assert_eq!(&**frame(&m), format!("4{t}"));
        }
        assert_eq!(cache.entries.iter().flatten().count(), FRAME_CACHE);
    }
}
