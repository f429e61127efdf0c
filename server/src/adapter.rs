//! Clustering: the adapter a node uses to reach the other nodes, the default for a single
//! node, and an in-process cluster for tests and for several servers in one process.

use futures::channel::mpsc;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::{RoomChange, SessionState, StoredMessage};

/// What the other nodes sent: the sender, the message, and the offset it was kept under
/// (adapters with a shared recovery store).
pub(crate) type Delivery = (NodeId, ClusterMessage, Option<String>);

/// Where an adapter delivers what other nodes sent to this one.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::UnboundedSender<Delivery>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inbox")
    }
}

impl Inbox {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Delivery>) {
        let (tx, rx) = mpsc::unbounded();
        (Inbox { tx }, rx)
    }

    /// Hands a message from node `from` to this node. False once the node has stopped.
    pub fn deliver(&self, from: NodeId, message: ClusterMessage) -> bool {
        self.tx.unbounded_send((from, message, None)).is_ok()
    }

    /// Like [`Inbox::deliver`], for a message kept under `offset` in the adapter's shared
    /// store ([`Adapter::keeps_sessions`]): a broadcast then carries it to the clients.
    pub fn deliver_at(&self, from: NodeId, message: ClusterMessage, offset: String) -> bool {
        self.tx
            .unbounded_send((from, message, Some(offset)))
            .is_ok()
    }
}

/// How a node talks to the other nodes of its cluster. Implementations move messages; what
/// they mean is decided by the server (`volley_core::cluster`).
///
/// The server publishes from its machine's task (and from server-side handler tasks), so
/// `publish` must not block. Messages from one node to another should arrive in the order
/// they were published (a room join before the broadcast to that room); messages of
/// different nodes may interleave.
pub trait Adapter: Send + Sync + 'static {
    /// Called once when the server starts, with this node's id: what the other nodes send it
    /// must be delivered to `inbox`.
    fn start(&self, node: NodeId, inbox: Inbox);

    /// Sends `message` to every other node, or only to `to` (answers to a request).
    fn publish(&self, to: Option<NodeId>, message: ClusterMessage);

    /// How many nodes the cluster has now, this one included. Requests wait for an answer
    /// from each of the others (until their timeout).
    fn server_count(&self) -> usize;

    /// Whether this adapter keeps what connection state recovery needs where every node
    /// sees it (a Redis stream and session keys), so that a client may recover on any
    /// node. When it does and recovery is on, the server publishes broadcasts with
    /// [`Adapter::publish_broadcast`] and uses the offsets it returns, hands sessions to
    /// [`Adapter::persist_session`] and asks [`Adapter::restore_session`] for them. The
    /// default (`false`) keeps recovery in each node's memory.
    fn keeps_sessions(&self) -> bool {
        false
    }

    /// Publishes a broadcast (without acknowledgement) to every other node and resolves to
    /// the offset it is kept under, or `None` when it could not be kept. Replies must come
    /// in call order for the server to keep broadcast order at no cost; it delivers locally
    /// in call order regardless. The default publishes and keeps nothing.
    fn publish_broadcast(&self, message: ClusterMessage) -> BoxFuture<'static, Option<String>> {
        self.publish(None, message);
        Box::pin(futures::future::ready(None))
    }

    /// Keeps the session a socket left behind for `ttl` (the recovery window).
    fn persist_session(&self, session: SessionState, ttl: Duration) {
        let _ = (session, ttl);
    }

    /// Takes the session of private id `pid` (it cannot be taken twice) and the messages
    /// kept after `offset`, in order, when both the session and `offset` are still kept;
    /// `None` otherwise (or when the store cannot be reached: the client then gets a new
    /// session). Messages of namespaces other than `nsp` may be left out; the server
    /// decides which of the rest the socket missed.
    fn restore_session(
        &self,
        pid: &str,
        offset: &str,
        nsp: &str,
    ) -> BoxFuture<'static, Option<(SessionState, Vec<StoredMessage>)>> {
        let _ = (pid, offset, nsp);
        Box::pin(futures::future::ready(None))
    }

    /// Whether this adapter follows the rooms of this node as they are created and deleted
    /// (to subscribe per room, as the sharded Redis adapter's dynamic modes do). When it
    /// does, [`Adapter::room_changed`] is called for every change, in order within a
    /// namespace, starting with the rooms that exist when the server starts.
    fn tracks_rooms(&self) -> bool {
        false
    }

    /// The server is closing ([`Io::close`](crate::Io::close)): stop every task the adapter
    /// runs. Nothing is published after this.
    fn close(&self) {}

    /// The way this adapter carries the requests of sessions owned by other nodes, when it
    /// offers one and the application turned it on (see [`Relay`]): the server then names
    /// its node in every session id and forwards a request naming another node's session to
    /// that node, so that a cluster needs no sticky sessions. `None` (the default): every
    /// request must reach the node that owns its session.
    fn relay(&self) -> Option<Arc<dyn Relay>> {
        None
    }

    /// Room `change.room` of namespace `nsp` was created (its first member joined) or deleted
    /// (its last member left) on this node. Called from the task whose step made the change
    /// (the machine's, or a connection's for the session it runs), before that step's
    /// packets leave, and never by two tasks at once: it must not block.
    fn room_changed(&self, nsp: &str, change: &RoomChange) {
        let _ = (nsp, change);
    }
}

/// Carries opaque frames between the nodes of a cluster, for requests forwarded to the node
/// that owns their session ([`Adapter::relay`]). The server decides what the frames mean; an
/// implementation only moves them.
///
/// Contract:
/// - Frames sent to one node by one caller arrive in the order of the `send` calls, and a
///   frame is sent even if the future `send` returned is dropped.
/// - `send` resolves to `false` when no node by that id received the frame (it left, or never
///   was), so that a request for a dead node's session is answered at once.
/// - Frames to this node are handed to the inbox given to [`Relay::start`], in arrival order.
pub trait Relay: Send + Sync + 'static {
    /// Called once when the server starts, with this node's id: frames sent to it must be
    /// delivered to `inbox`.
    fn start(&self, node: NodeId, inbox: RelayInbox);

    /// Sends `frame` to node `to`; resolves to whether a node received it.
    fn send(&self, to: NodeId, frame: bytes::Bytes) -> BoxFuture<'static, bool>;
}

/// Where a [`Relay`] delivers the frames other nodes sent to this one.
#[derive(Clone)]
pub struct RelayInbox {
    tx: mpsc::UnboundedSender<bytes::Bytes>,
}

impl fmt::Debug for RelayInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RelayInbox")
    }
}

impl RelayInbox {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<bytes::Bytes>) {
        let (tx, rx) = mpsc::unbounded();
        (RelayInbox { tx }, rx)
    }

    /// Hands a frame to this node. False once the node has stopped.
    pub fn deliver(&self, frame: bytes::Bytes) -> bool {
        self.tx.unbounded_send(frame).is_ok()
    }
}

/// A single node: nothing to publish, no one to ask. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn start(&self, _node: NodeId, _inbox: Inbox) {}

    fn publish(&self, _to: Option<NodeId>, _message: ClusterMessage) {}

    fn server_count(&self) -> usize {
        1
    }
}

/// Several nodes in one process, joined by memory: each server built with
/// [`MemoryCluster::adapter`] sees the others as a Redis cluster would show them.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    nodes: Arc<Mutex<Vec<(NodeId, Inbox)>>>,
    /// The nodes' relay inboxes, when forwarding is on ([`MemoryCluster::with_relay`]).
    relays: Option<Relays>,
}

impl fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemoryCluster").field("nodes", &n).finish()
    }
}

impl MemoryCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cluster whose adapters offer a [`Relay`]: requests may reach any of its
    /// servers, whichever owns their session.
    pub fn with_relay() -> Self {
        MemoryCluster {
            nodes: Arc::default(),
            relays: Some(Arc::default()),
        }
    }

    /// An adapter joining this cluster.
    pub fn adapter(&self) -> MemoryAdapter {
        MemoryAdapter {
            cluster: self.clone(),
            me: Arc::new(Mutex::new(None)),
        }
    }
}

/// A node's membership of a [`MemoryCluster`].
#[derive(Clone, Debug)]
pub struct MemoryAdapter {
    cluster: MemoryCluster,
    me: Arc<Mutex<Option<NodeId>>>,
}

impl MemoryAdapter {
    /// Leaves the cluster, as a node whose connection to Redis dropped.
    pub fn leave(&self) {
        let me = *self.me.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(me) = me {
            self.cluster
                .nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(n, _)| *n != me);
            if let Some(relays) = &self.cluster.relays {
                relays
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|(n, _)| *n != me);
            }
        }
    }
}

impl Adapter for MemoryAdapter {
    fn start(&self, node: NodeId, inbox: Inbox) {
        *self.me.lock().unwrap_or_else(PoisonError::into_inner) = Some(node);
        let mut nodes = self
            .cluster
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if nodes.iter().any(|(n, _)| *n == node) {
            tracing::warn!(%node, "two servers of one MemoryCluster share a node id (same seed?)");
        }
        nodes.push((node, inbox));
    }

    fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        let me = *self.me.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(me) = me else {
            return;
        };
        let nodes = self
            .cluster
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut stopped = Vec::new();
        for (node, inbox) in nodes {
            if node != me && to.is_none_or(|t| t == node) && !inbox.deliver(me, message.clone()) {
                stopped.push(node);
            }
        }
        if !stopped.is_empty() {
            // A server that stopped has left.
            self.cluster
                .nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(n, _)| !stopped.contains(n));
        }
    }

    fn relay(&self) -> Option<Arc<dyn Relay>> {
        let relays = self.cluster.relays.clone()?;
        Some(Arc::new(MemoryRelay { relays }))
    }

    fn server_count(&self) -> usize {
        self.cluster
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            .max(1)
    }
}

/// The relay inboxes of a [`MemoryCluster`]'s nodes.
type Relays = Arc<Mutex<Vec<(NodeId, RelayInbox)>>>;

/// The [`Relay`] of a [`MemoryCluster`]: frames go straight into the receiving node's inbox.
struct MemoryRelay {
    relays: Relays,
}

impl Relay for MemoryRelay {
    fn start(&self, node: NodeId, inbox: RelayInbox) {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        relays.retain(|(n, _)| *n != node);
        relays.push((node, inbox));
    }

    fn send(&self, to: NodeId, frame: bytes::Bytes) -> BoxFuture<'static, bool> {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        let delivered = match relays.iter().position(|(n, _)| *n == to) {
            Some(i) if relays[i].1.deliver(frame) => true,
            Some(i) => {
                // A server that stopped has left.
                relays.remove(i);
                false
            }
            None => false,
        };
        Box::pin(std::future::ready(delivered))
    }
}
