//! What can go wrong, and whose fault it is.

use crate::http::Response;
use crate::ids::{ConnId, Sid};
use std::fmt;

/// The Engine.IO error codes a refused HTTP request carries in its JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: missing or unsupported `transport`.
    TransportUnknown = 0,
    /// 1: the `sid` names no session.
    UnknownSid = 1,
    /// 2: a handshake (no `sid`) with a method other than GET.
    BadHandshakeMethod = 2,
    /// 3: the request does not fit the session or the protocol.
    BadRequest = 3,
    /// 4: the application refused the request (HTTP 403).
    Forbidden = 4,
    /// 5: `EIO` names a protocol version this server does not speak.
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    /// The message the reference server sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::TransportUnknown => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// Every code.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::TransportUnknown,
        ErrorCode::UnknownSid,
        ErrorCode::BadHandshakeMethod,
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedProtocolVersion,
    ];

    /// The code a refusal made by [`response`](Self::response) or
    /// [`ws_response`](Self::ws_response) carries, so that a runtime can report refusals
    /// (the reference's `connection_error` event) from the responses it writes. `None` for
    /// any other response.
    pub fn of_response(response: &Response) -> Option<ErrorCode> {
        if !matches!(response.status, 400 | 403) {
            return None;
        }
        ErrorCode::ALL.into_iter().find(|code| {
            code.status() == response.status
                && (response.body == code.response().body || response.body == code.message())
        })
    }

    /// The HTTP status: 403 for [`ErrorCode::Forbidden`], 400 otherwise.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            _ => 400,
        }
    }

    /// The polling refusal: the status and `{"code":N,"message":"..."}` as JSON.
    pub fn response(self) -> Response {
        Response::new(self.status())
            .header("Content-Type", "application/json")
            .body(format!(
                "{{\"code\":{},\"message\":\"{}\"}}",
                self as u8,
                self.message()
            ))
    }

    /// The WebSocket handshake refusal: the status with the message as plain text, and the
    /// connection closed.
    pub fn ws_response(self) -> Response {
        Response::new(self.status())
            .header("Content-Type", "text/plain; charset=UTF-8")
            .body(self.message())
            .closing()
    }
}

/// Why a session closed. [`CloseReason::as_str`] gives the reference server's wording, which
/// Socket.IO reports as its disconnect reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the session (close packet) or its WebSocket.
    TransportClose,
    /// The transport failed: a connection dropped mid-request, a heartbeat in the wrong
    /// direction, two polls at once, a malformed request on a live session.
    TransportError,
    /// The server closed the session ([`Engine::close`](super::Engine::close)).
    ForcedClose,
    /// No pong (v4) or no ping (v3) in time.
    PingTimeout,
    /// The client sent bytes that do not decode.
    ParseError,
    /// The client did not drain its queue and [`OverflowPolicy::Close`](super::OverflowPolicy)
    /// applies; reported as `transport error`.
    SlowClient,
}

impl CloseReason {
    /// The reference server's reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError | CloseReason::SlowClient => "transport error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`Engine::send`](super::Engine::send) did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No open session has this id (it closed, or never existed).
    UnknownSession(Sid),
    /// The session's queue is full (see [`OverflowPolicy`](super::OverflowPolicy)).
    BufferFull(Sid),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownSession(sid) => write!(f, "no open session {sid}"),
            SendError::BufferFull(sid) => write!(f, "outgoing buffer of session {sid} is full"),
        }
    }
}

impl std::error::Error for SendError {}

/// The caller used the engine in a way its contract forbids. Never caused by a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// A request arrived on a connection that still has one outstanding (a parked poll, a
    /// body not yet delivered, or a WebSocket).
    ConnectionBusy(ConnId),
    /// A body was delivered for a connection the engine did not ask to read one from.
    UnexpectedBody(ConnId),
    /// A WebSocket message arrived on a connection the engine did not accept as WebSocket.
    NotWebSocket(ConnId),
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::ConnectionBusy(c) => write!(f, "{c} already has a request in progress"),
            ApiMisuse::UnexpectedBody(c) => write!(f, "{c} has no request awaiting a body"),
            ApiMisuse::NotWebSocket(c) => write!(f, "{c} is not a WebSocket of this engine"),
        }
    }
}

impl std::error::Error for ApiMisuse {}
