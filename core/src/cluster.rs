//! What nodes of a cluster say to each other, and the bookkeeping of requests that expect
//! answers from the other nodes: ids, how many answers to wait for, deadlines and partial
//! results. No IO: an adapter moves the messages (Redis pub/sub, an in-process bus).

use crate::ids::RequestId;
use crate::ids::SocketId;
use crate::socketio::BroadcastOptions;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A socket as another node describes it (`fetchSockets`).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// Its id.
    pub id: String,
    /// Its rooms.
    pub rooms: Vec<String>,
    /// Its application data (JSON text; `null` when none).
    pub data: String,
    /// Its handshake.
    pub handshake: HandshakeInfo,
}

/// A handshake as it travels between nodes (the fields of the reference server's
/// `socket.handshake`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HandshakeInfo {
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// When it happened, as milliseconds since the Unix epoch.
    pub issued: u64,
    /// The client's address.
    pub address: String,
    /// Whether the connection was cross-origin.
    pub xdomain: bool,
    /// Whether the connection was over TLS.
    pub secure: bool,
    /// The request URL.
    pub url: String,
    /// The query parameters.
    pub query: Vec<(String, String)>,
    /// The auth object (JSON text).
    pub auth: String,
}

/// One message between nodes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClusterMessage {
    /// Deliver an event to the selected local sockets. With `ack`, each receiving node first
    /// answers [`ClusterMessage::BroadcastClientCount`], then one
    /// [`ClusterMessage::BroadcastAck`] per socket that acknowledges.
    Broadcast {
        /// The namespace.
        nsp: String,
        /// Which sockets (`local` is always false on the wire).
        opts: BroadcastOptions,
        /// The event name.
        event: String,
        /// The arguments, a JSON array text with placeholders.
        args: String,
        /// Binary attachments.
        attachments: Vec<Bytes>,
        /// Set for a broadcast with acknowledgements.
        ack: Option<RequestId>,
        /// With `ack`: how long the receiving node waits for its sockets' acknowledgements
        /// (the sender's time limit, so both give up together).
        timeout: Option<Duration>,
    },
    /// How many sockets a node sent an acknowledged broadcast to.
    BroadcastClientCount {
        /// The broadcast's request.
        request: RequestId,
        /// The number of sockets.
        count: usize,
    },
    /// One socket's acknowledgement of a broadcast.
    BroadcastAck {
        /// The broadcast's request.
        request: RequestId,
        /// The socket that acknowledged.
        socket: SocketId,
        /// The acknowledgement's arguments (JSON array text with placeholders).
        args: String,
        /// Binary attachments of the acknowledgement.
        attachments: Vec<Bytes>,
    },
    /// Put the selected sockets in rooms.
    SocketsJoin {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        opts: BroadcastOptions,
        /// The rooms.
        rooms: Vec<String>,
    },
    /// Take the selected sockets out of rooms.
    SocketsLeave {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        opts: BroadcastOptions,
        /// The rooms.
        rooms: Vec<String>,
    },
    /// Disconnect the selected sockets.
    DisconnectSockets {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        opts: BroadcastOptions,
        /// Whether to close their connections.
        close: bool,
    },
    /// Describe the selected sockets.
    FetchSockets {
        /// The request.
        request: RequestId,
        /// The namespace.
        nsp: String,
        /// Which sockets.
        opts: BroadcastOptions,
    },
    /// The answer to [`ClusterMessage::FetchSockets`].
    FetchSocketsResponse {
        /// The request.
        request: RequestId,
        /// The sockets.
        sockets: Vec<SocketInfo>,
    },
    /// An event for the other servers' own handlers (`serverSideEmit`).
    ServerSideEmit {
        /// The namespace.
        nsp: String,
        /// The event name.
        event: String,
        /// The arguments (JSON array text with placeholders).
        args: String,
        /// Binary attachments.
        attachments: Vec<Bytes>,
        /// Set when the sender waits for answers: each receiving node answers once.
        request: Option<RequestId>,
    },
    /// One server's answer to [`ClusterMessage::ServerSideEmit`].
    ServerSideEmitResponse {
        /// The request.
        request: RequestId,
        /// The answer's arguments (JSON array text with placeholders).
        args: String,
        /// Binary attachments.
        attachments: Vec<Bytes>,
    },
    /// List the rooms of a namespace.
    AllRooms {
        /// The request.
        request: RequestId,
        /// The namespace.
        nsp: String,
    },
    /// The answer to [`ClusterMessage::AllRooms`].
    AllRoomsResponse {
        /// The request.
        request: RequestId,
        /// The rooms.
        rooms: Vec<String>,
    },
}

impl ClusterMessage {
    /// The request this message answers, if it is an answer.
    pub fn answers(&self) -> Option<RequestId> {
        match self {
            ClusterMessage::BroadcastClientCount { request, .. }
            | ClusterMessage::BroadcastAck { request, .. }
            | ClusterMessage::FetchSocketsResponse { request, .. }
            | ClusterMessage::ServerSideEmitResponse { request, .. }
            | ClusterMessage::AllRoomsResponse { request, .. } => Some(*request),
            _ => None,
        }
    }
}

/// What kind of answers a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// One [`ClusterMessage::FetchSocketsResponse`] per other node.
    FetchSockets,
    /// One [`ClusterMessage::ServerSideEmitResponse`] per other node.
    ServerSideEmit,
    /// One [`ClusterMessage::AllRoomsResponse`] per other node.
    AllRooms,
    /// A client count per other node, then as many acknowledgements as they counted.
    BroadcastAck,
}

/// Where a request stands after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No such request (answered already, expired, or never made here): ignore the answer.
    Unknown,
    /// Keep the answer; more are due.
    More,
    /// Keep the answer; the request is complete.
    Complete,
}

#[derive(Debug)]
struct Pending {
    kind: RequestKind,
    /// Nodes that have not answered (for broadcasts: not reported their count).
    nodes_left: usize,
    /// Broadcasts: acknowledgements still due from the counts reported so far (negative
    /// while acknowledgements have overtaken the count that announces them).
    acks_left: isize,
    deadline: Instant,
}

impl Pending {
    fn done(&self) -> bool {
        self.nodes_left == 0 && self.acks_left <= 0
    }
}

/// A request that reached its deadline before every answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// The request.
    pub id: RequestId,
    /// What it waited for.
    pub kind: RequestKind,
    /// Answers that never came (for broadcasts: client counts).
    pub nodes_left: usize,
    /// Broadcasts: acknowledgements announced by the counts that came, and never relayed.
    pub acks_left: usize,
}

/// Requests this node made to the others and is waiting on.
#[derive(Debug, Default)]
pub struct Requests {
    pending: HashMap<RequestId, Pending>,
    timers: BTreeSet<(Instant, RequestId)>,
}

impl Requests {
    /// No requests.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts waiting for `nodes` answers to request `id` (one per other node, or one per
    /// other node and namespace asked) until `deadline`. Returns `true` when there is nothing
    /// to wait for (no other node). Starting an id that is still pending replaces it.
    pub fn start(
        &mut self,
        id: RequestId,
        kind: RequestKind,
        nodes: usize,
        deadline: Instant,
    ) -> bool {
        if nodes == 0 {
            return true;
        }
        let previous = self.pending.insert(
            id,
            Pending {
                kind,
                nodes_left: nodes,
                acks_left: 0,
                deadline,
            },
        );
        if let Some(old) = previous {
            self.timers.remove(&(old.deadline, id));
        }
        self.timers.insert((deadline, id));
        false
    }

    /// Counts an answer to request `id` (`from` the message carrying it).
    pub fn on_answer(&mut self, message: &ClusterMessage) -> Progress {
        let Some(id) = message.answers() else {
            return Progress::Unknown;
        };
        let Some(p) = self.pending.get_mut(&id) else {
            return Progress::Unknown;
        };
        match (p.kind, message) {
            (RequestKind::BroadcastAck, ClusterMessage::BroadcastClientCount { count, .. }) => {
                p.nodes_left = p.nodes_left.saturating_sub(1);
                p.acks_left = p
                    .acks_left
                    .saturating_add(isize::try_from(*count).unwrap_or(isize::MAX));
            }
            (RequestKind::BroadcastAck, ClusterMessage::BroadcastAck { .. }) => {
                p.acks_left = p.acks_left.saturating_sub(1);
            }
            (RequestKind::FetchSockets, ClusterMessage::FetchSocketsResponse { .. })
            | (RequestKind::ServerSideEmit, ClusterMessage::ServerSideEmitResponse { .. })
            | (RequestKind::AllRooms, ClusterMessage::AllRoomsResponse { .. }) => {
                p.nodes_left = p.nodes_left.saturating_sub(1);
            }
            _ => return Progress::Unknown,
        }
        if p.done() {
            let deadline = p.deadline;
            self.pending.remove(&id);
            self.timers.remove(&(deadline, id));
            Progress::Complete
        } else {
            Progress::More
        }
    }

    /// Requests whose deadline passed: each completes with what it has (a partial result).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(RequestId, RequestKind)> {
        self.expire(now)
            .into_iter()
            .map(|e| (e.id, e.kind))
            .collect()
    }

    /// Like [`Requests::handle_timeout`], telling for each expired request what was still
    /// missing.
    pub fn expire(&mut self, now: Instant) -> Vec<Expired> {
        let due: Vec<(Instant, RequestId)> = self
            .timers
            .iter()
            .take_while(|(t, _)| *t <= now)
            .copied()
            .collect();
        due.into_iter()
            .filter_map(|key| {
                self.timers.remove(&key);
                self.pending.remove(&key.1).map(|p| Expired {
                    id: key.1,
                    kind: p.kind,
                    nodes_left: p.nodes_left,
                    acks_left: usize::try_from(p.acks_left).unwrap_or(0),
                })
            })
            .collect()
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Requests still waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Forgets request `id` (its caller went away).
    pub fn cancel(&mut self, id: RequestId) {
        if let Some(p) = self.pending.remove(&id) {
            self.timers.remove(&(p.deadline, id));
        }
    }
}
