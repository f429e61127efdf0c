//! A socket's Engine.IO connection (Node's `socket.conn`): the transport, its upgrade, the
//! remote address, and closing the whole connection.

use crate::node::Command;
use crate::socket::Socket;
use std::future::Future;
use std::net::IpAddr;
use volley_core::Sid;
use volley_core::engine::TransportKind;

/// The Engine.IO connection a socket rides on, shared by every namespace the client joined
/// over it. From [`Socket::conn`].
///
/// The transport and the upgrade are asked of the machine when called (the answer is the
/// state at that moment); the address comes from the handshake.
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) socket: Socket,
}

/// The name Engine.IO gives a transport.
fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Polling => "polling",
        TransportKind::WebSocket => "websocket",
    }
}

impl Connection {
    /// The Engine.IO session id (`sid` of the handshake); `None` once the connection is gone.
    pub async fn id(&self) -> Option<String> {
        self.state().await.0.map(|sid| sid.to_string())
    }

    /// The socket's session and its transport now, asked of the session.
    async fn state(&self) -> (Option<Sid>, Option<TransportKind>) {
        let (tx, rx) = futures::channel::oneshot::channel();
        let socket = self.socket.id();
        let _ = self.socket.command(Command::Transport { socket, tx });
        rx.await.unwrap_or_default()
    }

    /// The transport in use now: `"polling"` or `"websocket"` (Node's
    /// `socket.conn.transport.name`); `None` once the connection is gone. While an upgrade is
    /// being probed the transport is still `"polling"`.
    pub async fn transport(&self) -> Option<&'static str> {
        self.state().await.1.map(transport_name)
    }

    /// Resolves once the connection runs over WebSocket (Node's `socket.conn.on("upgrade")`):
    /// `true` at once for a connection that is already there (it opened over WebSocket or
    /// upgraded before), `true` when an upgrade completes, `false` when the connection
    /// closes (or the server stops) first. The request is made when this is called, not
    /// when the future is first polled.
    pub fn upgraded(&self) -> impl Future<Output = bool> + Send + use<> {
        let id = self.socket.id();
        let (tx, rx) = futures::channel::oneshot::channel();
        let queued = self.socket.command(Command::WaitUpgrade { socket: id, tx });
        async move { queued.is_ok() && rx.await.unwrap_or(false) }
    }

    /// Closes the whole connection, as the reference's `socket.conn.close()`: no Socket.IO
    /// packet is sent, what is queued is still written, then the transport closes; every
    /// socket of the client, in every namespace, leaves with `"forced close"`, and the
    /// client, seeing its transport close, reconnects by itself.
    pub fn close(&self) {
        let id = self.socket.id();
        let _ = self.socket.command(Command::CloseConnection { socket: id });
    }

    /// The client's IP address: the TCP peer of the handshake request (Node's
    /// `socket.conn.remoteAddress`), when the runtime recorded it.
    pub fn remote_address(&self) -> Option<IpAddr> {
        self.socket.handshake().peer_addr().map(|a| a.ip())
    }

    /// The client's address as [`Handshake::address`](crate::Handshake::address) gives it:
    /// with `trust_proxy`, the first `X-Forwarded-For` entry when there is one.
    pub fn address(&self, trust_proxy: bool) -> Option<String> {
        self.socket.handshake().address(trust_proxy)
    }
}
