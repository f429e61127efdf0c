//! What the Socket.IO machine tells the application, and the values it hands out.

use super::packet::SioProtocol;
use super::rooms::Room;
use crate::http::RequestHead;
use crate::ids::{Sid, SocketId};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Why a socket left its namespace. [`DisconnectReason::as_str`] is Socket.IO's own wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The connection failed (dropped request, heartbeat misuse, slow client).
    TransportError,
    /// The client closed the connection.
    TransportClose,
    /// The Engine.IO session was closed by the server without a Socket.IO reason.
    ForcedClose,
    /// The client stopped answering heartbeats.
    PingTimeout,
    /// The client sent bytes that do not decode, at the Engine.IO or the Socket.IO level.
    /// (For a Socket.IO packet the reference closes the session and reports the engine's
    /// "forced close"; this names the cause, as the reference's documentation describes it.)
    ParseError,
    /// The server is shutting down ([`Server::close_all`](super::Server::close_all)).
    ServerShuttingDown,
    /// The server closed the whole connection for breaking a Socket.IO rule: a packet for a
    /// namespace not joined, a second CONNECT for one, a CONNECT_ERROR from the client.
    ForcedServerClose,
    /// The client left the namespace (`41[/nsp,]`).
    ClientNamespaceDisconnect,
    /// The server removed the socket ([`Server::disconnect`](super::Server::disconnect), with
    /// or without closing the connection, as in the reference).
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// Socket.IO's reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }

    /// Whether connection state recovery may restore the socket after this reason.
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportError
                | DisconnectReason::TransportClose
                | DisconnectReason::ForcedClose
                | DisconnectReason::PingTimeout
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::ForcedServerClose
        )
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The number of a pending connect request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectId(pub u64);

/// The id of a server-to-client acknowledgement, unique within its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AckId(pub u64);

/// What a connection carried at its handshake; shared by all its sockets.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The Engine.IO session.
    pub sid: Sid,
    /// The Socket.IO protocol of the client.
    pub protocol: SioProtocol,
    /// The handshake request: path, query, headers.
    pub request: RequestHead,
    /// When the handshake arrived.
    pub issued: Instant,
}

/// A client asks to join a namespace. Settle it with
/// [`Server::accept`](super::Server::accept) or [`Server::reject`](super::Server::reject);
/// this is where connection middleware runs.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The request's number.
    pub id: ConnectId,
    /// The namespace asked for.
    pub nsp: Arc<str>,
    /// The auth object (JSON text; `{}` when the client sent none).
    pub auth: Utf8Bytes,
    /// v4 clients: the query string sent with the namespace (`/admin?token=1`).
    pub query: Option<Utf8Bytes>,
    /// The connection's handshake.
    pub handshake: Arc<Handshake>,
    /// Whether the client got a disconnected socket back (connection state recovery): same
    /// id, same rooms, the packets it missed replayed after the CONNECT reply.
    pub recovered: bool,
    /// For a recovered connect: the data the application attached to the session when the
    /// socket left ([`Server::set_session_data`](super::Server::set_session_data)).
    pub session_data: Option<Utf8Bytes>,
    /// `Some` when the machine accepted the request itself (a recovered connect with
    /// [`Recovery::skip_middlewares`](super::Recovery::skip_middlewares)): the socket exists
    /// already and the request must not be settled.
    pub accepted: Option<SocketId>,
}

/// The right to answer one client-to-server acknowledgement request. It is consumed by
/// [`Server::ack`](super::Server::ack), so an ack is answered at most once.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub(crate) socket: SocketId,
    pub(crate) id: u64,
}

impl AckToken {
    /// The socket that asked.
    pub fn socket(&self) -> SocketId {
        self.socket
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Why an acknowledgement will never come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckFailure {
    /// The deadline passed.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
}

/// Something the application must see.
#[derive(Debug)]
pub enum Event {
    /// A client asks to join a namespace.
    Connect(ConnectRequest),
    /// An event from a socket.
    Event {
        /// The socket.
        socket: SocketId,
        /// Its namespace.
        nsp: Arc<str>,
        /// The event name.
        name: String,
        /// The arguments after the name, as a JSON array text.
        args: Utf8Bytes,
        /// Binary attachments, referenced by placeholders in `args`.
        attachments: Vec<Bytes>,
        /// Present when the client expects an acknowledgement.
        ack: Option<AckToken>,
    },
    /// A socket acknowledged something the server sent with an ack id.
    Ack {
        /// The socket.
        socket: SocketId,
        /// The id the server allocated.
        id: AckId,
        /// The acknowledgement's arguments, as a JSON array text.
        args: Utf8Bytes,
        /// Binary attachments.
        attachments: Vec<Bytes>,
    },
    /// An acknowledgement will not come.
    AckFailed {
        /// The socket.
        socket: SocketId,
        /// The id the server allocated.
        id: AckId,
        /// Why.
        reason: AckFailure,
    },
    /// A socket is leaving; `rooms` are the rooms it was in.
    Disconnecting {
        /// The socket.
        socket: SocketId,
        /// Its namespace.
        nsp: Arc<str>,
        /// Why.
        reason: DisconnectReason,
        /// The rooms it was in (its own id included).
        rooms: Vec<Room>,
    },
    /// A socket has left; its id is no longer valid.
    Disconnect {
        /// The socket.
        socket: SocketId,
        /// Its namespace.
        nsp: Arc<str>,
        /// Why.
        reason: DisconnectReason,
    },
}
