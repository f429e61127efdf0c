//! Listeners added to one socket (`socket.on`, `once`, `use_packet`, `on_any`…), as Node
//! registers them on the socket object: they run in addition to the namespace's, for that
//! socket only, and are dropped when it disconnects.

use crate::handler::ErasedHandler;
use crate::middleware::PacketMw;
use crate::registry::{AnyHook, OutgoingHook};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Names one listener, to remove it again (`off_listener`, `off_any`, `off_any_outgoing`).
/// Rust closures cannot be compared, so where Node's `off(event, fn)` passes the function,
/// Volley passes the id the registration returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(u64);

impl ListenerId {
    /// A listener id no other listener of this process has.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ListenerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An event listener of one socket.
#[derive(Clone)]
pub(crate) struct OwnListener {
    pub id: ListenerId,
    pub handler: ErasedHandler,
    /// Removed when it is first called (`once`).
    pub once: bool,
}

/// What one socket registered on itself.
#[derive(Default)]
pub(crate) struct SocketListeners {
    pub events: HashMap<String, Vec<OwnListener>>,
    pub middleware: Vec<PacketMw>,
    /// Catch-all listeners before the namespace's (`prepend_any`, newest first) and after
    /// them (`on_any`, oldest first).
    pub any_front: Vec<(ListenerId, AnyHook)>,
    pub any_back: Vec<(ListenerId, AnyHook)>,
    /// The same for outgoing events.
    pub out_front: Vec<(ListenerId, OutgoingHook)>,
    pub out_back: Vec<(ListenerId, OutgoingHook)>,
}

impl SocketListeners {
    /// The listeners of `event`, in registration order; `once` listeners are taken out.
    pub fn take_event(&mut self, event: &str) -> Vec<OwnListener> {
        let Some(list) = self.events.get_mut(event) else {
            return Vec::new();
        };
        let found = list.clone();
        list.retain(|l| !l.once);
        if list.is_empty() {
            self.events.remove(event);
        }
        found
    }

    /// Removes listener `id`, whatever its kind; whether it was there.
    pub fn remove(&mut self, id: ListenerId) -> bool {
        let mut found = false;
        self.events.retain(|_, list| {
            let before = list.len();
            list.retain(|l| l.id != id);
            found |= list.len() != before;
            !list.is_empty()
        });
        for list in [&mut self.any_front, &mut self.any_back] {
            let before = list.len();
            list.retain(|(l, _)| *l != id);
            found |= list.len() != before;
        }
        for list in [&mut self.out_front, &mut self.out_back] {
            let before = list.len();
            list.retain(|(l, _)| *l != id);
            found |= list.len() != before;
        }
        found
    }

    /// How many outgoing hooks are registered.
    pub fn outgoing_count(&self) -> usize {
        self.out_front.len() + self.out_back.len()
    }
}
