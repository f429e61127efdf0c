//! The Engine.IO server as one machine: an [`Endpoint`] and a table of [`Session`]s, with
//! one timer index and one output and event queue for all of them.

use super::config::Config;
use super::endpoint::{Endpoint, RequestKind, Route, SessionRequest};
use super::error::{ApiMisuse, CloseReason, ErrorCode, SendError};
use super::frames::FrameCache;
use super::packet::{Message, Protocol, WsMessage};
use super::session::{ConnRole, Pending, Session, TransportKind};
use crate::http::{RequestHead, Response, websocket_handshake};
use crate::ids::{ConnId, IdMap, Sid};
use crate::rng::IdGenerator;
use bytes::Bytes;
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

/// Something the runtime must do on a connection. The [`Engine`] and a [`Session`] hand out
/// the same outputs; the inputs named here are the engine's, and a session has each of them
/// too.
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

/// What a connection is to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A role in a live session.
    Held(Sid, ConnRole),
    /// The POST of a session that ended while its body was being read: the body gets the
    /// unknown-session answer. Kept apart from the id so that a later session given the same
    /// id (only a custom generator repeats ids) never receives it.
    Orphan,
}

/// The connections a session held before an input, to find what the input changed.
type Held = [Option<(ConnId, ConnRole)>; 3];

/// The Engine.IO server: an [`Endpoint`] and every [`Session`] it opened, their connections
/// and timers, behind one set of inputs and outputs. See the crate documentation for the
/// order in which to call it.
pub struct Engine {
    endpoint: Endpoint,
    // Keys the engine generates (session ids) or the runtime numbers: see `IdHasher`.
    /// Boxed, so that the table stays dense (an id and a pointer per slot) and a lookup
    /// probes few cache lines, with thousands of sessions as with a few.
    sessions: IdMap<Sid, Box<Session>>,
    conns: IdMap<ConnId, Role>,
    /// At most one entry per session: its [`Session::poll_timeout`], as filed.
    timers: BTreeSet<(Instant, Sid)>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    frames: FrameCache,
    /// Queues lent to the session an input goes to, and taken back once drained: a session
    /// keeps no allocated queue between inputs, so an idle one costs no more than its state.
    spare: Queues,
    /// Sessions [detached](Engine::detach) over WebSocket to run elsewhere, until
    /// [forgotten](Engine::forget_detached): a request naming one is answered as the session
    /// would answer a request it cannot serve, and no handshake reuses its id.
    elsewhere: IdMap<Sid, Protocol>,
    /// The session the latest request opened, with the connection it came on
    /// ([`Engine::opened_on`]).
    opened: Option<(ConnId, Sid)>,
}

/// A session's output and event queues.
#[derive(Default)]
struct Queues {
    outputs: VecDeque<Pending>,
    events: VecDeque<Event>,
}

/// Lends `spare` (empty) to `session` for an input; what it holds now, for [`Engine::collect`].
fn lend(session: &mut Session, spare: &mut Queues) -> Held {
    std::mem::swap(&mut session.outputs, &mut spare.outputs);
    std::mem::swap(&mut session.events, &mut spare.events);
    session.held()
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

impl Engine {
    /// An engine with `config`, drawing session ids from a [`RandomIds`](crate::rng::RandomIds)
    /// seeded by `seed` (take it from the operating system's entropy in production).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        Self::from_endpoint(Endpoint::new(config, seed))
    }

    /// An engine whose session ids come from `ids`.
    pub fn with_id_generator(config: Config, ids: Box<dyn IdGenerator>) -> Self {
        Self::from_endpoint(Endpoint::with_id_generator(config, ids))
    }

    /// An engine around `endpoint`, with no session yet.
    pub fn from_endpoint(endpoint: Endpoint) -> Self {
        Engine {
            endpoint,
            sessions: IdMap::default(),
            conns: IdMap::default(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            frames: FrameCache::default(),
            spare: Queues::default(),
            elsewhere: IdMap::default(),
            opened: None,
        }
    }

    // ---- getters ----

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.endpoint.config()
    }

    /// The endpoint that sorts requests and opens sessions.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The session `sid` (open or closing), to read its state.
    pub fn session(&self, sid: Sid) -> Option<&Session> {
        self.sessions.get(&sid).map(|s| &**s)
    }

    /// Whether `head` is addressed to the engine (its path is under [`Config::path`]).
    /// Requests that are not belong to the host application.
    pub fn owns(&self, head: &RequestHead) -> bool {
        self.endpoint.owns(head)
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

    /// The session the latest request opened, when that request was a handshake on `conn`
    /// that succeeded: a caller that runs sessions elsewhere finds the new one here, to
    /// [detach](Engine::detach) it before its handshake's answer leaves.
    pub fn opened_on(&self, conn: ConnId) -> Option<Sid> {
        self.opened
            .filter(|(c, sid)| *c == conn && self.sessions.contains_key(sid))
            .map(|(_, sid)| sid)
    }

    /// The session connection `conn` serves, while it serves one.
    pub fn session_on(&self, conn: ConnId) -> Option<Sid> {
        match self.conns.get(&conn)? {
            Role::Held(sid, _) => Some(*sid),
            _ => None,
        }
    }

    /// The protocol of an open session.
    pub fn protocol(&self, sid: Sid) -> Option<Protocol> {
        self.sessions.get(&sid).map(|s| s.protocol())
    }

    /// The transport an open session uses now.
    pub fn transport(&self, sid: Sid) -> Option<TransportKind> {
        self.sessions.get(&sid).map(|s| s.transport())
    }

    /// Whether a message sent to `sid` now would leave at once rather than wait in its queue.
    /// Volatile messages are sent only when this holds.
    pub fn is_writable(&self, sid: Sid) -> bool {
        self.sessions.get(&sid).is_some_and(|s| s.is_writable())
    }

    /// Packets waiting in the queue of `sid`.
    pub fn queued(&self, sid: Sid) -> usize {
        self.sessions.get(&sid).map_or(0, |s| s.queued())
    }

    /// Message bytes waiting in the queue of `sid` (see
    /// [`Config::max_buffered_bytes`](super::Config::max_buffered_bytes)).
    pub fn queued_bytes(&self, sid: Sid) -> usize {
        self.sessions.get(&sid).map_or(0, |s| s.queued_bytes())
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
        self.opened = None;
        match self.endpoint.route(&head) {
            Route::Respond(response) => self.respond(conn, response),
            Route::Handshake(handshake) => {
                let (sessions, elsewhere) = (&self.sessions, &self.elsewhere);
                let in_use = |sid| sessions.contains_key(&sid) || elsewhere.contains_key(&sid);
                match self.endpoint.handshake(conn, head, handshake, now, in_use) {
                    Ok(session) => {
                        let sid = session.sid();
                        self.opened = Some((conn, sid));
                        self.sessions.insert(sid, Box::new(session));
                        self.collect(sid, [None; 3]);
                    }
                    Err(response) => self.respond(conn, response),
                }
            }
            Route::Session(request) if self.elsewhere.contains_key(&request.sid()) => {
                let protocol = self.elsewhere[&request.sid()];
                self.answer_elsewhere(conn, &request, &head, protocol);
            }
            Route::Session(request) => {
                // The engine holds every connection a session does, so the session's own
                // busy check cannot fail here.
                let served = self.with_session(request.sid(), false, |session| {
                    let _ = session.handle_request(conn, &request, &head, now);
                });
                if served.is_none() {
                    self.respond(conn, request.unknown_sid());
                }
            }
        }
        Ok(())
    }

    /// The body asked for by [`Output::ReadBody`] arrived (or overflowed).
    pub fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        let sid = match self.conns.get(&conn) {
            Some(Role::Held(sid, ConnRole::Body)) => *sid,
            Some(Role::Orphan) => {
                self.conns.remove(&conn);
                self.respond(conn, ErrorCode::UnknownSid.response());
                return Ok(());
            }
            _ => return Err(ApiMisuse::UnexpectedBody(conn)),
        };
        match self.with_session(sid, false, |session| session.handle_body(conn, body, now)) {
            Some(result) => result,
            None => {
                self.conns.remove(&conn);
                self.respond(conn, ErrorCode::UnknownSid.response());
                Ok(())
            }
        }
    }

    /// A WebSocket message arrived on `conn`.
    pub fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let sid = match self.conns.get(&conn) {
            Some(Role::Held(sid, ConnRole::WebSocket | ConnRole::Probe)) => *sid,
            _ => return Err(ApiMisuse::NotWebSocket(conn)),
        };
        let handled = self.with_session(sid, false, |session| {
            session.handle_ws_message(conn, message, now)
        });
        match handled {
            Some(result) => result,
            None => {
                self.conns.remove(&conn);
                self.outputs.push_back(Output::Close { conn });
                Ok(())
            }
        }
    }

    /// Every [`Output::Send`] handed out for the WebSocket `conn` has been written: the
    /// session may send again.
    pub fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        let Some(Role::Held(sid, ConnRole::WebSocket)) = self.conns.get(&conn).copied() else {
            return;
        };
        if let Some(session) = self.sessions.get_mut(&sid) {
            if session.queued() == 0 {
                // Nothing waits: the session only becomes writable again, with no output, no
                // event and no change to its connections or deadline (the common case of a
                // broadcast's copy written at once), so there is nothing to settle.
                session.handle_ws_drained(conn, now);
                return;
            }
        }
        self.with_session(sid, false, |session| session.handle_ws_drained(conn, now));
    }

    /// The connection `conn` is gone (the peer closed it, or it failed: `error`). Safe to call
    /// for any connection, known or not.
    pub fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        let Some(Role::Held(sid, _)) = self.conns.remove(&conn) else {
            return;
        };
        self.with_session(sid, false, |session| {
            session.handle_conn_closed(conn, error, now);
        });
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
            self.with_session(sid, false, |session| session.handle_timeout(now));
        }
    }

    // ---- commands ----

    /// Queues a message for `sid`; it leaves as soon as the transport can take it.
    pub fn send(&mut self, sid: Sid, message: Message, now: Instant) -> Result<(), SendError> {
        self.with_session(sid, true, |session| session.send(message, now))
            .unwrap_or(Err(SendError::UnknownSession(sid)))
    }

    /// Queues `messages` for `sid` as one unit, all or none ([`Session::send_all`]): a
    /// Socket.IO packet and its attachments.
    pub fn send_all(
        &mut self,
        sid: Sid,
        messages: impl IntoIterator<Item = Message>,
        now: Instant,
    ) -> Result<(), SendError> {
        self.with_session(sid, true, |session| session.send_all(messages, now))
            .unwrap_or(Err(SendError::UnknownSession(sid)))
    }

    /// Closes `sid` from the server side: what is queued is still delivered, then the close
    /// packet. [`Event::Close`] follows with
    /// [`CloseReason::ForcedClose`].
    pub fn close(&mut self, sid: Sid, now: Instant) {
        self.with_session(sid, true, |session| session.close(now));
    }

    /// Takes session `sid` out of the engine, open, for a runtime that runs it on its own (a
    /// WebSocket's task): the engine forgets its connections and its deadline without
    /// closing it, and the session goes on wherever its [`Session`] goes. What the engine had
    /// already queued for it stays in the engine's queues, in order: drain them first. `None`
    /// for an unknown or closing session.
    pub fn detach(&mut self, sid: Sid) -> Option<Box<Session>> {
        if !self.contains(sid) {
            return None;
        }
        let mut session = self.sessions.remove(&sid)?;
        for (conn, role) in session.held().into_iter().flatten() {
            if self.conns.get(&conn) == Some(&Role::Held(sid, role)) {
                self.conns.remove(&conn);
            }
        }
        if let Some(t) = session.timer.take() {
            self.timers.remove(&(t, sid));
        }
        if session.transport() == TransportKind::WebSocket {
            self.elsewhere.insert(sid, session.protocol());
        }
        Some(session)
    }

    /// Takes in an open session detached from another engine ([`Engine::detach`]), or opened
    /// by an [`Endpoint`] the caller keeps: from now on its inputs go through this engine,
    /// its outputs and events come out of this one's queues (what it had queued first), and
    /// its deadline is filed here. Refused, the session handed back, when this engine has a
    /// session of that id or gives one of its connections another role.
    pub fn adopt(&mut self, session: Box<Session>) -> Result<(), Box<Session>> {
        let sid = session.sid();
        let taken = session
            .held()
            .into_iter()
            .flatten()
            .any(|(conn, _)| self.conns.contains_key(&conn));
        if taken || self.sessions.contains_key(&sid) {
            return Err(session);
        }
        self.elsewhere.remove(&sid);
        self.sessions.insert(sid, session);
        // Settled as after an input that gave it everything it holds.
        self.collect(sid, [None; 3]);
        Ok(())
    }

    // ---- the composition ----

    /// After an input to session `sid`: [`Desk::settle`]s it, and forgets it once ended.
    fn collect(&mut self, sid: Sid, before: Held) {
        let (sessions, desk) = self.split();
        let Some(session) = sessions.get_mut(&sid) else {
            return;
        };
        if desk.settle(session, sid, before) {
            sessions.remove(&sid);
        }
    }

    /// Runs `f` on session `sid` (only if it is not closing, with `open`) with the spare
    /// queues lent to it, then [`collect`](Self::collect)s it, with one lookup. `None` when
    /// there is no such session.
    fn with_session<T>(
        &mut self,
        sid: Sid,
        open: bool,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Option<T> {
        let (sessions, desk) = self.split();
        let session = sessions
            .get_mut(&sid)
            .filter(|s| !(open && s.is_closing()))?;
        let before = lend(session, desk.spare);
        let result = f(session);
        if desk.settle(session, sid, before) {
            sessions.remove(&sid);
        }
        Some(result)
    }

    /// The session table, and the rest of the engine's state to settle one of them with.
    fn split(&mut self) -> (&mut IdMap<Sid, Box<Session>>, Desk<'_>) {
        let Engine {
            sessions,
            conns,
            timers,
            outputs,
            events,
            frames,
            spare,
            ..
        } = self;
        let desk = Desk {
            conns,
            timers,
            outputs,
            events,
            frames,
            spare,
        };
        (sessions, desk)
    }

    fn respond(&mut self, conn: ConnId, response: Response) {
        self.outputs.push_back(Output::Response { conn, response });
    }

    /// Answers a request for a session run elsewhere over WebSocket as the session would:
    /// a second WebSocket completes its handshake and is closed, as the reference does; a
    /// polling request, or one of another protocol, is refused with 400.
    fn answer_elsewhere(
        &mut self,
        conn: ConnId,
        request: &SessionRequest,
        head: &RequestHead,
        protocol: Protocol,
    ) {
        let probe = request.kind() == RequestKind::Probe;
        let accept = websocket_handshake(head).filter(|_| self.config().allow_upgrades);
        match (request.protocol() == Some(protocol), probe, accept) {
            (true, true, Some(accept)) => {
                self.respond(conn, accept);
                self.outputs.push_back(Output::Close { conn });
            }
            (_, true, _) => self.respond(conn, ErrorCode::BadRequest.ws_response()),
            (_, false, _) => self.respond(conn, ErrorCode::BadRequest.response()),
        }
    }

    /// Session `sid`, [detached](Engine::detach) to run elsewhere, has ended: requests naming
    /// it are answered as for an unknown session from now on.
    pub fn forget_detached(&mut self, sid: Sid) {
        self.elsewhere.remove(&sid);
    }
}

/// The engine's state beside its sessions, borrowed while one of them is settled.
struct Desk<'a> {
    conns: &'a mut IdMap<ConnId, Role>,
    timers: &'a mut BTreeSet<(Instant, Sid)>,
    outputs: &'a mut VecDeque<Output>,
    events: &'a mut VecDeque<Event>,
    frames: &'a mut FrameCache,
    spare: &'a mut Queues,
}

impl Desk<'_> {
    /// After an input to `session` (`sid`): moves its outputs (framed through the shared
    /// cache) and events to the engine's queues, in order, takes the lent queues back, brings
    /// the connection table up to date from what it held `before`, and files it under its
    /// deadline. Returns whether it ended, for the caller to forget it.
    fn settle(self, session: &mut Session, sid: Sid, before: Held) -> bool {
        let mut outputs = std::mem::take(&mut session.outputs);
        let mut events = std::mem::take(&mut session.events);
        let protocol = session.protocol();
        for pending in outputs.drain(..) {
            let output = pending.into_output(protocol, Some(&mut *self.frames));
            self.outputs.push_back(output);
        }
        self.events.append(&mut events);
        *self.spare = Queues { outputs, events };
        let after = session.held();
        let holds = |conn: ConnId| after.iter().flatten().any(|(c, _)| *c == conn);
        for (conn, role) in before.into_iter().flatten() {
            if !holds(conn) && self.conns.get(&conn) == Some(&Role::Held(sid, role)) {
                self.conns.remove(&conn);
            }
        }
        if session.is_ended() {
            // What an ended session still holds is a body being read; it is answered when it
            // arrives.
            for (conn, _) in after.into_iter().flatten() {
                self.conns.insert(conn, Role::Orphan);
            }
            if let Some(t) = session.timer {
                self.timers.remove(&(t, sid));
            }
            return true;
        }
        for (conn, role) in after.into_iter().flatten() {
            if !before.contains(&Some((conn, role))) {
                self.conns.insert(conn, Role::Held(sid, role));
            }
        }
        let next = session.poll_timeout();
        if next != session.timer {
            if let Some(t) = session.timer {
                self.timers.remove(&(t, sid));
            }
            if let Some(t) = next {
                self.timers.insert((t, sid));
            }
            session.timer = next;
        }
        false
    }
}
