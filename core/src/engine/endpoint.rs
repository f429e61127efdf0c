//! The part of the Engine.IO server that owns no session: the configuration, the session id
//! generator, the sorting of requests and the handshake.

use super::config::Config;
use super::error::ErrorCode;
use super::machine::Event;
use super::packet::{Packet, Protocol};
use super::session::{Limits, Session, Transport, TransportKind};
use crate::http::{Method, RequestHead, Response, query_pairs, websocket_handshake};
use crate::ids::{ConnId, Sid};
use crate::rng::{IdGenerator, RandomIds};
use crate::utf8::Utf8Bytes;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a request is, by [`Endpoint::route`].
#[derive(Debug)]
#[must_use]
pub enum Route {
    /// Answered by the endpoint: write this response on the connection. A 404 for a path
    /// the engine does not own, or the Engine.IO refusal of a request no session can take
    /// (unknown transport, transport and upgrade header disagreeing, a handshake that is not
    /// a GET or names no supported `EIO`, a `sid` that is no id).
    Respond(Response),
    /// A handshake: hand it to [`Endpoint::handshake`] with the request head.
    Handshake(Handshake),
    /// A request for the session [`SessionRequest::sid`]: look it up and hand it to
    /// [`Session::handle_request`], or answer [`SessionRequest::unknown_sid`] when there is
    /// no such session.
    Session(SessionRequest),
}

/// A handshake request, sorted out by [`Endpoint::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    kind: TransportKind,
    protocol: Protocol,
    /// `b64` was given and not empty (v3: no XHR2 binary).
    b64: bool,
    /// The JSONP index (`j`), digits only.
    jsonp: Option<String>,
}

impl Handshake {
    /// The transport the session starts on.
    pub fn transport(&self) -> TransportKind {
        self.kind
    }

    /// The protocol version asked for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
}

/// What a request to an existing session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A polling GET.
    Poll,
    /// A polling POST.
    Post,
    /// A polling request with another method (refused by the session).
    Other,
    /// A WebSocket upgrade request: a probe for an upgrade.
    Probe,
}

/// A request for an existing session, sorted out by [`Endpoint::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRequest {
    sid: Sid,
    protocol: Option<Protocol>,
    kind: RequestKind,
}

impl SessionRequest {
    /// The session the request names.
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The protocol its `EIO` parameter names, if any the endpoint accepts; the session
    /// refuses the request when it is not its own.
    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    /// What the request asks for.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The answer when no session has this id (Engine.IO code 1, in the HTTP form the
    /// request expects).
    pub fn unknown_sid(&self) -> Response {
        refusal(ErrorCode::UnknownSid, self.kind == RequestKind::Probe)
    }
}

fn refusal(code: ErrorCode, websocket: bool) -> Response {
    if websocket {
        code.ws_response()
    } else {
        code.response()
    }
}

/// The query parameters the engine reads.
/// The query parameters the endpoint reads, borrowed from the request (decoded copies only
/// for percent-encoded values), found in one pass; the first of each name counts.
#[derive(Default)]
struct Query<'a> {
    eio: Option<Cow<'a, str>>,
    transport: Option<Cow<'a, str>>,
    sid: Option<Cow<'a, str>>,
    b64: Option<Cow<'a, str>>,
    j: Option<Cow<'a, str>>,
}

impl<'a> Query<'a> {
    fn of(head: &'a RequestHead) -> Self {
        let mut q = Query::default();
        for (key, value) in query_pairs(head.query()) {
            let slot = match &*key {
                "EIO" => &mut q.eio,
                "transport" => &mut q.transport,
                "sid" => &mut q.sid,
                "b64" => &mut q.b64,
                "j" => &mut q.j,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        q
    }
}

fn at_least_a_millisecond(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

/// The Engine.IO endpoint: sorts requests out ([`route`](Self::route)) and opens sessions
/// ([`handshake`](Self::handshake)). It holds the configuration and the session id
/// generator, and no session: sessions are [`Session`] machines the caller keeps, in a table
/// ([`super::Engine`] does that) or each on its own task.
pub struct Endpoint {
    config: Config,
    /// What each session takes of `config`, shared by all of them.
    limits: Arc<Limits>,
    ids: Box<dyn IdGenerator>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with `config`, drawing session ids from a [`RandomIds`] seeded by `seed`
    /// (take it from the operating system's entropy in production).
    pub fn new(config: Config, seed: [u8; 32]) -> Self {
        Self::with_id_generator(config, Box::new(RandomIds::from_seed(seed)))
    }

    /// An endpoint whose session ids come from `ids`.
    pub fn with_id_generator(mut config: Config, ids: Box<dyn IdGenerator>) -> Self {
        // A zero duration would make a deadline due again at once: clamp so that every timer
        // moves time forward.
        config.ping_interval = at_least_a_millisecond(config.ping_interval);
        config.ping_timeout = at_least_a_millisecond(config.ping_timeout);
        config.upgrade_timeout = at_least_a_millisecond(config.upgrade_timeout);
        config.close_timeout = at_least_a_millisecond(config.close_timeout);
        config.max_packets_per_poll = config.max_packets_per_poll.max(1);
        let limits = Arc::new(Limits::of(&config));
        Endpoint {
            config,
            limits,
            ids,
        }
    }

    /// The configuration in force (durations clamped to at least 1 ms, at least one packet
    /// per poll).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether `head` is addressed to the engine (its path is under [`Config::path`]).
    pub fn owns(&self, head: &RequestHead) -> bool {
        self.config.matches_path(head.path())
    }

    /// Sorts a request out by its path, query, method and upgrade headers
    /// ([`Config::route`]).
    pub fn route(&self, head: &RequestHead) -> Route {
        self.config.route(head)
    }
    /// Opens a session for the handshake `handshake` (from [`route`](Self::route)) that
    /// arrived on `conn` with `head`. `in_use` says whether an id is taken by a session the
    /// caller keeps; only a custom generator repeats ids, and such a handshake is refused
    /// rather than allowed to take another client's session.
    ///
    /// The new session holds the handshake's outputs (the polling response carrying the open
    /// packet, or the `101` and then the open packet as a WebSocket message) and its
    /// [`Event::Open`]; drain it as after any input. A refusal (a repeated id, a WebSocket
    /// handshake without a valid key) comes back as the response to write.
    pub fn handshake(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        handshake: Handshake,
        now: Instant,
        in_use: impl FnOnce(Sid) -> bool,
    ) -> Result<Session, Response> {
        let Handshake {
            kind,
            protocol,
            b64,
            jsonp,
        } = handshake;
        let refused = || refusal(ErrorCode::BadRequest, kind == TransportKind::WebSocket);
        let sid = self.ids.generate(&head);
        if in_use(sid) {
            return Err(refused());
        }
        let limits = self.limits.clone();
        let mut session = match kind {
            TransportKind::Polling => {
                Session::new(sid, protocol, limits, Transport::Polling { get: None })
            }
            TransportKind::WebSocket => {
                let Some(accept) = websocket_handshake(&head) else {
                    return Err(refused());
                };
                let transport = Transport::WebSocket {
                    conn,
                    writable: true,
                };
                let mut session = Session::new(sid, protocol, limits, transport);
                session.respond(conn, self.with_cookie(accept, sid));
                session
            }
        };
        session.xhr2 = protocol == Protocol::V3 && !b64;
        session.jsonp = jsonp;
        match protocol {
            Protocol::V4 => session.ping_at = Some(now + self.config.ping_interval),
            Protocol::V3 => {
                session.dead_at = Some(now + self.config.ping_interval + self.config.ping_timeout)
            }
        }
        let upgrades = kind == TransportKind::Polling
            && self.config.allow_upgrades
            && self.config.transports.websocket;
        let open = Utf8Bytes::format(format_args!(
            "{{\"sid\":\"{sid}\",\"upgrades\":[{}],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            if upgrades { "\"websocket\"" } else { "" },
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        ));
        // Room for one packet, not the four a first push reserves: a WebSocket session's
        // queue is empty between frames, and most of its life carries one ping at a time.
        session.queue.reserve_exact(1);
        session.queue.push_back(Packet::Open(open));
        if kind == TransportKind::Polling {
            let response = session.poll_response();
            let response = self.with_cookie(response, sid);
            session.respond(conn, response);
        }
        session.events.push_back(Event::Open {
            sid,
            protocol,
            transport: kind,
            request: Box::new(head),
        });
        session.flush();
        Ok(session)
    }

    /// The handshake response with the session cookie, when configured.
    fn with_cookie(&self, response: Response, sid: Sid) -> Response {
        match &self.config.cookie {
            Some(cookie) => response.header("Set-Cookie", cookie.header_value(sid.as_str())),
            None => response,
        }
    }
}

impl Config {
    /// Sorts a request out by its path, query, method and upgrade headers, as the
    /// [`Endpoint`] with this configuration does: a caller that keeps sessions elsewhere
    /// (each on a task of its own) routes their requests with a copy of the configuration.
    pub fn route(&self, head: &RequestHead) -> Route {
        if !self.matches_path(head.path()) {
            return Route::Respond(
                Response::new(404)
                    .header("Content-Type", "text/plain; charset=UTF-8")
                    .body("Not Found"),
            );
        }
        let upgrade = head.is_websocket_upgrade();
        match self.sort(head, upgrade) {
            Ok(route) => route,
            Err(code) => Route::Respond(refusal(code, upgrade)),
        }
    }

    fn sort(&self, head: &RequestHead, upgrade: bool) -> Result<Route, ErrorCode> {
        let q = Query::of(head);
        let kind = match q.transport.as_deref() {
            Some("polling") if self.transports.polling => TransportKind::Polling,
            Some("websocket") if self.transports.websocket => TransportKind::WebSocket,
            _ => return Err(ErrorCode::TransportUnknown),
        };
        if (kind == TransportKind::WebSocket) != upgrade {
            return Err(ErrorCode::BadRequest);
        }
        let protocol = match q.eio.as_deref() {
            Some("4") => Some(Protocol::V4),
            Some("3") if self.allow_eio3 => Some(Protocol::V3),
            _ => None,
        };
        let Some(sid_text) = q.sid.as_deref() else {
            if head.method() != Method::Get {
                return Err(ErrorCode::BadHandshakeMethod);
            }
            let protocol = protocol.ok_or(ErrorCode::UnsupportedProtocolVersion)?;
            return Ok(Route::Handshake(Handshake {
                kind,
                protocol,
                b64: !q.b64.as_deref().is_none_or(str::is_empty),
                jsonp: match kind {
                    TransportKind::Polling => {
                        q.j.map(|j| j.chars().filter(char::is_ascii_digit).collect())
                    }
                    TransportKind::WebSocket => None,
                },
            }));
        };
        let sid = Sid::new(sid_text).map_err(|_| ErrorCode::UnknownSid)?;
        let kind = match (kind, head.method()) {
            (TransportKind::WebSocket, _) => RequestKind::Probe,
            (TransportKind::Polling, Method::Get) => RequestKind::Poll,
            (TransportKind::Polling, Method::Post) => RequestKind::Post,
            (TransportKind::Polling, _) => RequestKind::Other,
        };
        Ok(Route::Session(SessionRequest {
            sid,
            protocol,
            kind,
        }))
    }
}
