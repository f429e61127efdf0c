//! What handles ask of one session: the commands that reach a session wherever it runs.
//!
//! A [`Socket`], its [`Connection`](crate::Connection), the connection middleware and the
//! handler futures address one session's sockets with a [`Command`]; the unit that runs the
//! session applies it ([`Unit::apply`]). What spans sessions (broadcasts, rooms of many
//! sockets, cluster requests) stays a call on the node.

use super::*;
use crate::socket::EmitError;
use volley_core::Bytes;
use volley_core::socketio::{AckToken, SharedAccess};

/// One operation on one session's sockets.
pub(crate) enum Command {
    /// One event to one socket; `reply` learns whether it was queued.
    Emit {
        socket: SocketId,
        nsp: Arc<str>,
        event: String,
        payload: Payload,
        volatile: bool,
        compress: bool,
        reply: Option<oneshot::Sender<Result<(), EmitError>>>,
    },
    /// One event to one socket, asking for an acknowledgement.
    EmitWithAck {
        socket: SocketId,
        event: String,
        payload: Payload,
        timeout: Option<Duration>,
        tx: oneshot::Sender<Result<Payload, AckError>>,
    },
    /// The answer to a client's acknowledgement request.
    Ack { token: AckToken, payload: Payload },
    /// The socket leaves its namespace; with `close`, the whole connection closes.
    Disconnect { socket: SocketId, close: bool },
    /// The socket's connection closes, with no Socket.IO packet.
    CloseConnection { socket: SocketId },
    /// `tx` learns when the socket's connection runs over WebSocket, or is gone.
    WaitUpgrade {
        socket: SocketId,
        tx: oneshot::Sender<bool>,
    },
    /// `tx` learns the socket's session and its transport now (none once gone).
    Transport {
        socket: SocketId,
        tx: oneshot::Sender<(Option<Sid>, Option<TransportKind>)>,
    },
    /// The connection middleware let a connect request through.
    Accept {
        request: ConnectId,
        handshake: Handshake,
        data: Extensions,
        ns: Arc<NsHandlers>,
        life: oneshot::Sender<DisconnectReason>,
        tx: oneshot::Sender<Result<Socket, SioError>>,
    },
    /// The connection middleware refused a connect request.
    Reject {
        request: ConnectId,
        message: String,
        data: Option<String>,
    },
    /// Application code panicked; `refuse`, a connect request its middleware had not let
    /// through yet.
    Panic {
        report: Box<HandlerPanic>,
        refuse: Option<ConnectId>,
    },
    /// The adapter's answer to a recovering connect.
    Restored(Box<Restored>),
    /// A broadcast's copy for one socket of this session (`ask`: who waits for its
    /// acknowledgement; `hooks`: the event and payload the socket's outgoing hooks see, when
    /// some may be registered).
    Deliver {
        handoff: Arc<volley_core::socketio::Handoff>,
        socket: SocketId,
        ask: Option<super::owned::Ask>,
        hooks: Option<Arc<(String, Payload)>>,
        /// Where a checked broadcast learns what became of these copies.
        receipt: Option<Arc<super::owned::Receipt>>,
        /// Sent with `compress(false)`: a poll answer carrying only such packets stays
        /// uncompressed.
        plain: bool,
    },
    /// A packet for the session was refused by its full mailbox: the overflow policy
    /// applies to the session as for its own full queue (under `Close` it closes).
    Overflowed,
    /// The server stops: every socket of the session leaves with "server shutting down".
    Shutdown,
    /// Writes the live sessions of these sockets (all of the unit's: `None`) to the
    /// adapter's store.
    PersistLive { sockets: Option<Vec<SocketId>> },
}

/// The adapter's answer to a recovering connect, boxed in its command (the two are large,
/// and rare next to emits).
pub(crate) struct Restored {
    pub(crate) req: ConnectRequest,
    pub(crate) found: Option<(SessionState, Vec<StoredMessage>)>,
}

impl Command {
    /// The bytes of the packet the command sends its client (its arguments and attachments,
    /// or a broadcast's copy as encoded); `None` for a command that sends no packet.
    pub(crate) fn packet_len(&self) -> Option<usize> {
        match self {
            Command::Emit { payload, .. }
            | Command::EmitWithAck { payload, .. }
            | Command::Ack { payload, .. } => Some(payload.wire_len()),
            Command::Deliver { handoff, .. } => Some(
                handoff.first.len() + handoff.attachments.iter().map(Bytes::len).sum::<usize>(),
            ),
            _ => None,
        }
    }

    /// The session the command addresses, when it addresses one: its socket's, or its
    /// connect request's.
    fn session(&self, sio: &SioServer) -> Option<Sid> {
        let socket = match self {
            Command::Emit { socket, .. }
            | Command::EmitWithAck { socket, .. }
            | Command::Disconnect { socket, .. }
            | Command::CloseConnection { socket }
            | Command::WaitUpgrade { socket, .. }
            | Command::Transport { socket, .. } => *socket,
            Command::Ack { token, .. } => token.socket(),
            Command::Panic {
                refuse: Some(request),
                ..
            }
            | Command::Accept { request, .. }
            | Command::Reject { request, .. } => {
                let request = *request;
                return sio.shared_access().read(|s| s.session_of_connect(request));
            }
            Command::Panic { report, .. } => report.socket?,
            Command::Restored(restored) => return Some(restored.req.handshake.sid),
            Command::Deliver { .. }
            | Command::Overflowed
            | Command::Shutdown
            | Command::PersistLive { .. } => {
                return None;
            }
        };
        sio.session_of(socket)
    }
}

impl Ctl {
    /// Sends `command` to the session it addresses.
    pub(crate) fn command(&self, command: Command) -> Result<(), crate::driver::Stopped> {
        self.cast(move |node: &mut Node, now| node.apply(command, now))
    }
}

impl Node {
    /// Applies a command to one of the sessions this machine runs. An emit with recovery
    /// kept by the adapter goes as a broadcast to the socket's room, as the reference does,
    /// so that it is kept where any node can replay it; a poll answer carrying only packets
    /// sent with `compress(false)` stays uncompressed.
    pub(crate) fn apply(&mut self, command: Command, now: Instant) {
        let shared_emit = matches!(
            command,
            Command::Emit {
                volatile: false,
                ..
            }
        ) && self.sio.shared_access().is_recovery_shared();
        // A handle whose socket came back in a session run elsewhere (recovered on another
        // connection) still names the old way: the command follows the socket (an emit kept
        // by the adapter is a broadcast, made here).
        let owner = (!shared_emit)
            .then(|| command.session(&self.sio))
            .flatten()
            .filter(|&sid| self.sio.engine().transport(sid).is_none())
            .and_then(|sid| self.hub.owned(sid));
        let command = match owner {
            Some(mailbox) => {
                // What the handles changed before this command reaches the adapter first.
                match self.hand_to_owner(&mailbox, command, now) {
                    Ok(()) => return,
                    Err(command) => command,
                }
            }
            None => command,
        };
        match &command {
            Command::Emit {
                socket, compress, ..
            } => {
                if shared_emit {
                    let Command::Emit {
                        socket,
                        nsp,
                        event,
                        payload,
                        compress,
                        reply,
                        ..
                    } = command
                    else {
                        return;
                    };
                    let opts = BroadcastOptions {
                        rooms: vec![Room::from(socket)],
                        ..BroadcastOptions::default()
                    };
                    // The broadcast runs the outgoing hooks, as for any recipient.
                    let nsps = std::slice::from_ref(&nsp);
                    self.broadcast(nsps, &opts, &event, payload, compress, None, now);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    return;
                }
                self.note_send(*socket, *compress);
            }
            Command::EmitWithAck { socket, .. } => self.note_send(*socket, true),
            _ => {}
        }
        self.unit().apply(command, now);
    }
}

impl<O: Ops> Unit<'_, O> {
    /// Applies a command to the sessions of this unit.
    pub(crate) fn apply(&mut self, command: Command, now: Instant) {
        match command {
            Command::Emit {
                socket,
                event,
                payload,
                volatile,
                reply,
                ..
            } => {
                // A refusal is also reported with the other refusals of the turn.
                let queued = self.emit_one(socket, &event, payload, volatile, now);
                if let Some(reply) = reply {
                    let _ = reply.send(queued);
                }
            }
            Command::EmitWithAck {
                socket,
                event,
                payload,
                timeout,
                tx,
            } => self.emit_with_ack(socket, &event, payload, timeout, tx, now),
            Command::Ack { token, payload } => self.ack(token, payload, now),
            Command::Disconnect { socket, close } => {
                let _ = self.ops.disconnect(socket, close, now);
            }
            Command::CloseConnection { socket } => {
                if let Some(sid) = self.ops.session_of(socket) {
                    self.ops.close_session(sid, now);
                }
            }
            Command::WaitUpgrade { socket, tx } => self.wait_upgrade(socket, tx),
            Command::Transport { socket, tx } => {
                let sid = self.ops.session_of(socket);
                let _ = tx.send((sid, sid.and_then(|sid| self.ops.transport(sid))));
            }
            Command::Accept {
                request,
                handshake,
                data,
                ns,
                life,
                tx,
            } => {
                let _ = tx.send(self.accept(request, handshake, data, ns, Some(life), now));
            }
            Command::Reject {
                request,
                message,
                data,
            } => {
                crate::metrics::refused("connect_error");
                let _ = self.ops.reject(request, &message, data.as_deref(), now);
            }
            Command::Panic { report, refuse } => {
                self.on_panic(*report, now);
                if let Some(request) = refuse {
                    let _ = self.ops.reject(request, "server error", None, now);
                }
            }
            Command::Restored(restored) => {
                let Restored { req, found } = *restored;
                self.on_restored(req, found, now);
            }
            Command::Deliver { ask, receipt, .. } => {
                // Reaches a unit only once its session has gone: nobody answers.
                if let Some(receipt) = receipt {
                    receipt.settle(crate::operators::Broadcasted::default());
                }
                if let Some(super::owned::Ask::Member(key)) = ask {
                    self.hub.update_aggregate(key, |agg| {
                        agg.missing += 1;
                        agg.remaining = agg.remaining.saturating_sub(1);
                    });
                }
            }
            Command::Overflowed | Command::Shutdown => {}
            Command::PersistLive { sockets } => match sockets {
                Some(sockets) => self.persist_live(sockets),
                None => {
                    let all: Vec<SocketId> = self.local.sockets.keys().copied().collect();
                    self.persist_live(all);
                }
            },
        }
    }

    /// Answers a command whose packet a full mailbox refused, as a full queue answers: the
    /// `on_error` hooks hear of it, then the caller learns it (`emit_checked`, an
    /// acknowledgement's error, a checked broadcast's report, the aggregate of
    /// acknowledgements).
    pub(crate) fn refuse(&mut self, command: Command, now: Instant) {
        let socket = match &command {
            Command::Emit { socket, .. }
            | Command::EmitWithAck { socket, .. }
            | Command::Deliver { socket, .. } => *socket,
            Command::Ack { token, .. } => token.socket(),
            // Only commands that carry a packet are refused.
            _ => return self.apply(command, now),
        };
        self.report_overflow(socket);
        match command {
            Command::Emit {
                reply: Some(reply), ..
            } => {
                let _ = reply.send(Err(EmitError::Full));
            }
            Command::EmitWithAck { tx, .. } => {
                let error = SioError::BufferFull(socket).to_string();
                let _ = tx.send(Err(AckError::NotSent(error)));
            }
            Command::Deliver { ask, receipt, .. } => {
                if let Some(receipt) = receipt {
                    receipt.settle(crate::operators::Broadcasted {
                        refused: vec![socket],
                        ..Default::default()
                    });
                }
                if let Some(super::owned::Ask::Member(key)) = ask {
                    self.hub.update_aggregate(key, |agg| {
                        agg.missing += 1;
                        agg.remaining = agg.remaining.saturating_sub(1);
                    });
                }
            }
            _ => {}
        }
    }
}
