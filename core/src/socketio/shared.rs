//! What the sessions of one server share: the namespace index, the connect requests
//! waiting for the application, the socket id generator and the recovery store.
//!
//! [`Shared`] is plain data (`Send + Sync`, no reference to any session). The single-threaded
//! [`Server`](super::Server) owns one; a runtime that gives each session a task of its own
//! keeps it behind a lock and lends it through [`SharedAccess`] only for the steps that need
//! it (a connect, a socket leaving, a packet kept for recovery), never for an event or an
//! acknowledgement.

use super::event::ConnectId;
use super::namespaces::{BroadcastOptions, Namespaces};
use super::packet::{Packet, SioProtocol};
use super::recovery::{Recovery, Restored, SessionState, Store, append_offset};
use super::rooms::Room;
use crate::ids::{Sid, SocketId};
use crate::rng::RandomIds;
use crate::utf8::Utf8Bytes;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// A connect request waiting for the application.
pub(crate) struct Pending {
    pub(crate) sid: Sid,
    pub(crate) nsp: Arc<str>,
    /// A session taken back for this request (connection state recovery).
    pub(crate) restored: Option<Restored>,
}

/// The state every session's Socket.IO machine shares (see the [module docs](self)).
pub struct Shared {
    pub(crate) namespaces: Namespaces,
    pub(crate) pending: HashMap<ConnectId, Pending>,
    next_connect: u64,
    pub(crate) ids: RandomIds,
    pub(crate) recovery: Option<Store>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("sockets", &self.namespaces.socket_count())
            .field("pending", &self.pending.len())
            .field("recovery", &self.recovery.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Empty shared state; socket ids and recovery ids are drawn from `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Shared {
            namespaces: Namespaces::new(),
            pending: HashMap::new(),
            next_connect: 0,
            ids: RandomIds::from_seed(seed),
            recovery: None,
        }
    }

    /// The namespaces, their sockets and rooms.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// The namespace index, to declare namespaces, move sockets between rooms or track
    /// changes.
    pub fn namespaces_mut(&mut self) -> &mut Namespaces {
        &mut self.namespaces
    }

    /// Connect requests waiting for the application.
    pub fn pending_connect_count(&self) -> usize {
        self.pending.len()
    }

    /// The session connect request `id` was made on.
    pub fn session_of_connect(&self, id: ConnectId) -> Option<Sid> {
        self.pending.get(&id).map(|p| p.sid)
    }

    /// Whether pending connect request `id` recovers a session.
    pub fn is_recovering(&self, id: ConnectId) -> bool {
        self.pending.get(&id).is_some_and(|p| p.restored.is_some())
    }

    /// Turns connection state recovery on (or off with `None`, dropping what was kept).
    pub fn set_recovery(&mut self, recovery: Option<Recovery>) {
        self.recovery = recovery.map(|config| {
            let prefix: String = self.ids.next_sid().as_str().chars().take(8).collect();
            Store::new(config, prefix)
        });
    }

    /// Whether the packets sent are kept here for recovery (recovery on and not kept by
    /// the caller's store).
    pub fn keeps_packets(&self) -> bool {
        self.recovery.as_ref().is_some_and(|r| !r.shared)
    }

    /// The connection state recovery options, when it is on.
    pub fn recovery(&self) -> Option<Recovery> {
        self.recovery.as_ref().map(|r| r.config)
    }

    /// Whether recovery is on and kept by the caller's store
    /// ([`Server::set_shared_recovery`](super::Server::set_shared_recovery)).
    pub fn is_recovery_shared(&self) -> bool {
        self.recovery.as_ref().is_some_and(|r| r.shared)
    }

    /// Takes the session `socket` left behind out of the store (see
    /// [`Server::take_session`](super::Server::take_session)).
    pub fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        self.recovery.as_mut()?.take_session(socket)
    }

    /// Attaches `data` to the session `socket` left behind (see
    /// [`Server::set_session_data`](super::Server::set_session_data)).
    pub fn set_session_data(&mut self, socket: SocketId, data: Utf8Bytes) -> bool {
        self.recovery
            .as_mut()
            .is_some_and(|r| r.set_data(socket, data))
    }

    /// Numbers a new connect request.
    pub(crate) fn next_connect(&mut self) -> ConnectId {
        let id = ConnectId(self.next_connect);
        self.next_connect += 1;
        id
    }

    /// A new socket id for a socket of session `sid` in `nsp`: protocol 4 clients keep the
    /// reference's `<sid>` in `/` and `<nsp>#<sid>` elsewhere when that id is free.
    pub(crate) fn new_socket_id(&mut self, sid: Sid, nsp: &str, protocol: SioProtocol) -> SocketId {
        if protocol == SioProtocol::V4 {
            let wanted = if nsp == "/" {
                sid.as_str().to_owned()
            } else {
                format!("{nsp}#{sid}")
            };
            if let Ok(id) = SocketId::new(&wanted) {
                if !self.namespaces.contains(id) {
                    return id;
                }
            }
        }
        loop {
            let id = SocketId::from_ascii_trusted(self.ids.next_sid().as_str().as_bytes());
            if !self.namespaces.contains(id) {
                return id;
            }
        }
    }

    /// With packets kept here: appends the next offset to `packet`'s arguments and keeps it
    /// with the selection `opts` made.
    pub(crate) fn keep_with_offset(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        packet: &mut Packet,
        now: Instant,
    ) {
        let Some(store) = self.recovery.as_mut().filter(|r| !r.shared) else {
            return;
        };
        let Some(data) = packet.data.as_deref() else {
            return;
        };
        let (counter, offset) = store.next_offset();
        packet.data = Some(append_offset(data, &offset));
        let (text, attachments) = packet.encode(SioProtocol::V5);
        store.keep(
            counter,
            Arc::from(nsp),
            opts.rooms.clone(),
            opts.except.clone(),
            text,
            attachments,
            now,
        );
    }
}

/// How a session's machine reaches the [`Shared`] state: lent for one step at a time.
///
/// The single-threaded composition owns a [`Shared`]; a runtime whose sessions run on tasks of
/// their own implements this over a lock, taken only inside [`SharedAccess::with`] and
/// [`SharedAccess::read`]. A step that needs several changes to happen together makes them in
/// one call.
pub trait SharedAccess {
    /// Runs `f` with the shared state, to change it.
    fn with<R>(&mut self, f: impl FnOnce(&mut Shared) -> R) -> R;

    /// Runs `f` with the shared state, to read it.
    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R;

    /// [`Shared::keeps_packets`], asked at every emit: a runtime reads it once, without the
    /// lock, since recovery is configured before serving.
    fn keeps_packets(&mut self) -> bool;
}

impl SharedAccess for Shared {
    fn with<R>(&mut self, f: impl FnOnce(&mut Shared) -> R) -> R {
        f(self)
    }

    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        f(self)
    }

    fn keeps_packets(&mut self) -> bool {
        Shared::keeps_packets(self)
    }
}

impl<T: SharedAccess + ?Sized> SharedAccess for &mut T {
    fn with<R>(&mut self, f: impl FnOnce(&mut Shared) -> R) -> R {
        (**self).with(f)
    }

    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        (**self).read(f)
    }

    fn keeps_packets(&mut self) -> bool {
        (**self).keeps_packets()
    }
}

/// The selection of a single emit kept for recovery: the room of the socket's own id, as the
/// reference keeps it.
pub(crate) fn own_room(socket: SocketId) -> BroadcastOptions {
    BroadcastOptions {
        rooms: vec![Room::from(socket)],
        ..BroadcastOptions::default()
    }
}
