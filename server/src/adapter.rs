//! Clustering: the adapter a node uses to reach the other nodes, the default for a single
//! node, and an in-process cluster for tests and for several servers in one process.

use futures::channel::mpsc;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;

/// Where an adapter delivers what other nodes sent to this one.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::UnboundedSender<(NodeId, ClusterMessage)>,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inbox")
    }
}

impl Inbox {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<(NodeId, ClusterMessage)>) {
        let (tx, rx) = mpsc::unbounded();
        (Inbox { tx }, rx)
    }

    /// Hands a message from node `from` to this node. False once the node has stopped.
    pub fn deliver(&self, from: NodeId, message: ClusterMessage) -> bool {
        self.tx.unbounded_send((from, message)).is_ok()
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

    fn server_count(&self) -> usize {
        self.cluster
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            .max(1)
    }
}
