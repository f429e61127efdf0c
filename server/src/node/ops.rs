//! What the application layer asks of the Socket.IO machine that runs its sessions.
//!
//! The machine's task answers with the whole composition (`socketio::Server`); a task that
//! owns one session answers with that session's peer over the shared state. The application
//! layer ([`Unit`](super::Unit)) is written once against this trait.

use super::*;
use volley_core::engine::OverflowPolicy;
use volley_core::socketio::{AckToken, Recovery, SharedAccess};

/// The machine operations of one step of the application layer, by socket.
pub(crate) trait Ops {
    /// Accepts a connect request the application let through.
    fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError>;
    /// Whether a connect request restores a session (connection state recovery).
    fn is_recovering(&self, id: ConnectId) -> bool;
    /// Refuses a connect request with `CONNECT_ERROR`.
    fn reject(
        &mut self,
        id: ConnectId,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) -> Result<(), SioError>;
    /// Restores a session the adapter kept, for a connect request.
    fn restore_connect(
        &mut self,
        id: ConnectId,
        session: SessionState,
        stored: Vec<StoredMessage>,
        now: Instant,
    ) -> Result<RestoreOutcome, SioError>;
    /// Disconnects a socket from its namespace (with `close`, its whole connection).
    fn disconnect(&mut self, socket: SocketId, close: bool, now: Instant) -> Result<(), SioError>;
    /// Sends an event to one socket; whether it was queued (a volatile one may be dropped).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        volatile: bool,
        now: Instant,
    ) -> Result<bool, SioError>;
    /// Sends an event asking for an acknowledgement.
    #[allow(clippy::too_many_arguments)]
    fn emit_with_ack(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<AckId, SioError>;
    /// Answers a client's acknowledgement request.
    fn ack(
        &mut self,
        token: AckToken,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        now: Instant,
    ) -> Result<(), SioError>;
    /// The session a socket belongs to.
    fn session_of(&self, socket: SocketId) -> Option<Sid>;
    /// The transport of an open session (`None`: gone or closing).
    fn transport(&self, sid: Sid) -> Option<TransportKind>;
    /// Keeps `data` with the session a disconnecting socket leaves (recovery).
    fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes);
    /// Takes the session a disconnecting socket left, to keep it elsewhere.
    fn take_session(&mut self, socket: SocketId) -> Option<SessionState>;
    /// A connected socket's session as it would be restored now.
    fn live_session(&self, socket: SocketId) -> Option<SessionState>;
    /// Whether recovered sessions are kept by the adapter rather than in memory.
    fn is_recovery_shared(&self) -> bool;
    /// The connection state recovery settings, when it is on.
    fn connection_state_recovery(&self) -> Option<Recovery>;
    /// Sockets connected to `nsp`.
    fn namespace_socket_count(&self, nsp: &str) -> usize;
    /// Whether namespace `nsp` exists (a dynamic child is removed once empty).
    fn has_namespace(&self, nsp: &str) -> bool;
    /// The sockets whose packets could not be queued since the last call.
    fn take_refused(&mut self) -> Vec<SocketId>;
    /// The namespace of a connected socket.
    fn namespace_of(&self, socket: SocketId) -> Option<Arc<str>>;
    /// What a full queue does.
    fn overflow(&self) -> OverflowPolicy;
    /// Closes a session's connection, with no Socket.IO packet.
    fn close_session(&mut self, sid: Sid, now: Instant);
}

impl Ops for SioServer {
    fn accept(&mut self, id: ConnectId, now: Instant) -> Result<SocketId, SioError> {
        SioServer::accept(self, id, now)
    }

    fn is_recovering(&self, id: ConnectId) -> bool {
        SioServer::is_recovering(self, id)
    }

    fn reject(
        &mut self,
        id: ConnectId,
        message: &str,
        data: Option<&str>,
        now: Instant,
    ) -> Result<(), SioError> {
        SioServer::reject(self, id, message, data, now)
    }

    fn restore_connect(
        &mut self,
        id: ConnectId,
        session: SessionState,
        stored: Vec<StoredMessage>,
        now: Instant,
    ) -> Result<RestoreOutcome, SioError> {
        SioServer::restore_connect(self, id, session, stored, now)
    }

    fn disconnect(&mut self, socket: SocketId, close: bool, now: Instant) -> Result<(), SioError> {
        SioServer::disconnect(self, socket, close, now)
    }

    fn emit(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        volatile: bool,
        now: Instant,
    ) -> Result<bool, SioError> {
        SioServer::emit(self, socket, name, args, attachments, volatile, now)
    }

    fn emit_with_ack(
        &mut self,
        socket: SocketId,
        name: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<AckId, SioError> {
        SioServer::emit_with_ack(self, socket, name, args, attachments, timeout, now)
    }

    fn ack(
        &mut self,
        token: AckToken,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        now: Instant,
    ) -> Result<(), SioError> {
        SioServer::ack(self, token, args, attachments, now)
    }

    fn session_of(&self, socket: SocketId) -> Option<Sid> {
        SioServer::session_of(self, socket)
    }

    fn transport(&self, sid: Sid) -> Option<TransportKind> {
        let engine = self.engine();
        engine
            .contains(sid)
            .then(|| engine.transport(sid))
            .flatten()
    }

    fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes) {
        SioServer::set_session_data(self, socket, data);
    }

    fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        SioServer::take_session(self, socket)
    }

    fn live_session(&self, socket: SocketId) -> Option<SessionState> {
        SioServer::live_session(self, socket)
    }

    fn is_recovery_shared(&self) -> bool {
        self.shared_access().is_recovery_shared()
    }

    fn connection_state_recovery(&self) -> Option<Recovery> {
        SioServer::connection_state_recovery(self)
    }

    fn namespace_socket_count(&self, nsp: &str) -> usize {
        SioServer::namespace_socket_count(self, nsp)
    }

    fn has_namespace(&self, nsp: &str) -> bool {
        self.shared_access().read(|s| s.namespaces().exists(nsp))
    }

    fn take_refused(&mut self) -> Vec<SocketId> {
        SioServer::take_refused(self)
    }

    fn namespace_of(&self, socket: SocketId) -> Option<Arc<str>> {
        self.shared_access()
            .read(|s| s.namespaces().namespace_of(socket).cloned())
    }

    fn overflow(&self) -> OverflowPolicy {
        self.engine().config().overflow
    }

    fn close_session(&mut self, sid: Sid, now: Instant) {
        self.close_connection(sid, now);
    }
}
