//! Namespace and room membership, and broadcast selection, as plain data.
//!
//! [`Namespaces`] knows which namespaces exist (declared, or created by a dynamic matcher),
//! which sockets each holds and in which rooms, and which session each socket belongs to. It
//! decides nothing about the protocol and sends nothing: the per-session
//! [`Client`](super::client::Client) machines and the composing [`Server`](super::Server)
//! consult and update it. It is `Send + Sync` and has no reference to any session, so a
//! runtime that runs sessions on several tasks can share one behind a lock, held only for a
//! selection or a membership change.

use super::rooms::{MembershipChange, Room, RoomChange, RoomIndex};
use crate::ids::{IdMap, IdSet, Sid, SocketId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Which sockets a broadcast reaches, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Only sockets in at least one of these rooms; every socket when empty.
    pub rooms: Vec<Room>,
    /// Never sockets in any of these rooms.
    pub except: Vec<Room>,
    /// Skip sockets whose transport cannot take the packet right now.
    pub volatile: bool,
    /// Do not forward to other nodes (meaningful with a cluster adapter).
    pub local: bool,
    /// Compression hint; WebSocket frames are not compressed, so it has no effect here.
    pub compress: bool,
}

type Matcher = Box<dyn Fn(&str) -> bool + Send + Sync>;

struct Namespace {
    /// The sockets and their rooms. Ordered, so that every walk over them (broadcasts,
    /// `disconnect_sockets`) is deterministic for a given seed.
    rooms: RoomIndex,
    /// Server-to-client ack ids are numbered per namespace, as the reference does.
    next_ack: u64,
    /// Connect requests for this namespace not settled yet; an ephemeral namespace stays
    /// while any is.
    pending: usize,
    /// Created by a dynamic matcher, and removed again when it empties.
    ephemeral: bool,
}

impl Namespace {
    fn new(ephemeral: bool, track_rooms: bool) -> Self {
        let mut rooms = RoomIndex::default();
        rooms.track_changes(track_rooms);
        Namespace {
            rooms,
            next_ack: 0,
            pending: 0,
            ephemeral,
        }
    }
}

/// Where a connected socket lives.
#[derive(Debug, Clone)]
struct Member {
    sid: Sid,
    nsp: Arc<str>,
}

/// Every namespace of a server with its sockets and rooms (see the [module docs](self)).
pub struct Namespaces {
    table: BTreeMap<Arc<str>, Namespace>,
    dynamic: Vec<(Matcher, bool)>,
    members: IdMap<SocketId, Member>,
    /// Sockets that left, or moved to another session, so far (see
    /// [`departures`](Namespaces::departures)).
    departures: u64,
    /// Whether room creations and deletions are recorded (for adapters that subscribe per
    /// room).
    track_rooms: bool,
    /// Room changes of namespaces removed before they were taken.
    orphan_room_changes: Vec<(Arc<str>, RoomChange)>,
    /// Joins and leaves since the last take, when membership tracking is on.
    memberships: Option<Vec<(Arc<str>, MembershipChange)>>,
}

/// Records a join or leave in `log` when tracking is on.
fn record(
    log: &mut Option<Vec<(Arc<str>, MembershipChange)>>,
    nsp: &Arc<str>,
    socket: SocketId,
    room: &Room,
    joined: bool,
) {
    if let Some(log) = log {
        log.push((
            nsp.clone(),
            MembershipChange {
                socket,
                room: room.clone(),
                joined,
            },
        ));
    }
}

impl fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespaces")
            .field("namespaces", &self.table.len())
            .field("sockets", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl Default for Namespaces {
    fn default() -> Self {
        Self::new()
    }
}

impl Namespaces {
    /// The namespace `/` and nothing else.
    pub fn new() -> Self {
        let mut table = BTreeMap::new();
        table.insert(Arc::from("/"), Namespace::new(false, false));
        Namespaces {
            table,
            dynamic: Vec::new(),
            members: IdMap::default(),
            departures: 0,
            track_rooms: false,
            orphan_room_changes: Vec::new(),
            memberships: None,
        }
    }

    // ---- namespaces ----

    /// Declares a namespace (`/` always exists). A namespace a dynamic matcher created is
    /// kept from then on.
    pub fn add(&mut self, name: &str) {
        let track = self.track_rooms;
        self.table
            .entry(Arc::from(name))
            .or_insert_with(|| Namespace::new(false, track))
            .ephemeral = false;
    }

    /// Declares a family of namespaces created on their first connect: every name `matcher`
    /// accepts. With `cleanup`, such a namespace is removed again when its last socket and
    /// its last pending connect request are gone.
    pub fn add_dynamic(
        &mut self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
        cleanup: bool,
    ) {
        self.dynamic.push((Box::new(matcher), cleanup));
    }

    /// Whether `nsp` exists, creating it when a dynamic matcher takes it.
    pub fn ensure(&mut self, nsp: &Arc<str>) -> bool {
        if self.table.contains_key(nsp) {
            return true;
        }
        let Some((_, cleanup)) = self.dynamic.iter().find(|(m, _)| m(nsp)) else {
            return false;
        };
        let ns = Namespace::new(*cleanup, self.track_rooms);
        self.table.insert(nsp.clone(), ns);
        true
    }

    /// Whether namespace `nsp` exists now.
    pub fn exists(&self, nsp: &str) -> bool {
        self.table.contains_key(nsp)
    }

    /// Names of the namespaces that exist now.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.table.keys().map(|k| &**k)
    }

    /// Counts a connect request for `nsp` that is not settled yet (it keeps an ephemeral
    /// namespace alive).
    pub fn add_pending(&mut self, nsp: &str) {
        if let Some(ns) = self.table.get_mut(nsp) {
            ns.pending += 1;
        }
    }

    /// A connect request for `nsp` was settled (accepted, refused or dropped).
    pub fn settle_pending(&mut self, nsp: &str) {
        if let Some(ns) = self.table.get_mut(nsp) {
            ns.pending = ns.pending.saturating_sub(1);
        }
    }

    /// Removes `nsp` when it is ephemeral and holds no socket and no pending request.
    pub fn drop_if_empty(&mut self, nsp: &str) {
        let empty_dynamic = self
            .table
            .get(nsp)
            .is_some_and(|ns| ns.ephemeral && ns.rooms.socket_count() == 0 && ns.pending == 0);
        if empty_dynamic {
            if let Some((name, mut ns)) = self.table.remove_entry(nsp) {
                // Its last rooms' deletions are still to be reported.
                let changes = ns.rooms.take_changes();
                self.orphan_room_changes
                    .extend(changes.into_iter().map(|c| (name.clone(), c)));
            }
        }
    }

    /// The next server-to-client ack id of `nsp` (ids wrap below 2^53, JavaScript's safe
    /// integers).
    pub fn next_ack_id(&mut self, nsp: &str) -> u64 {
        let Some(ns) = self.table.get_mut(nsp) else {
            return 0;
        };
        let id = ns.next_ack;
        ns.next_ack = ns.next_ack.wrapping_add(1) % (1 << 53);
        id
    }

    // ---- sockets ----

    /// Adds a connected `socket` of session `sid` to `nsp` (creating the namespace if it went
    /// away meanwhile), in the room of its own id and in `rooms`.
    pub fn insert(&mut self, socket: SocketId, sid: Sid, nsp: &Arc<str>, rooms: &[Room]) {
        let track = self.track_rooms;
        let ns = self
            .table
            .entry(nsp.clone())
            .or_insert_with(|| Namespace::new(false, track));
        if ns.rooms.insert(socket) && self.memberships.is_some() {
            record(
                &mut self.memberships,
                nsp,
                socket,
                &Room::from(socket),
                true,
            );
        }
        for room in rooms {
            if ns.rooms.join(socket, room.clone()) {
                record(&mut self.memberships, nsp, socket, room, true);
            }
        }
        let before = self.members.insert(
            socket,
            Member {
                sid,
                nsp: nsp.clone(),
            },
        );
        if before.is_some_and(|m| m.sid != sid) {
            self.departures += 1;
        }
    }

    /// Takes `socket` out of its namespace and every room; returns its session, namespace
    /// and the rooms it was in. The namespace itself stays (see
    /// [`drop_if_empty`](Namespaces::drop_if_empty)).
    pub fn remove(&mut self, socket: SocketId) -> Option<(Sid, Arc<str>, Vec<Room>)> {
        let member = self.members.remove(&socket)?;
        self.departures += 1;
        let rooms = match self.table.get_mut(&member.nsp) {
            Some(ns) => ns.rooms.remove(socket),
            None => Vec::new(),
        };
        // Its own room last: the last change of a socket is the leave of its own room.
        let own = Room::from(socket);
        let others = rooms.iter().filter(|r| **r != own);
        for room in others.chain(rooms.iter().filter(|r| **r == own)) {
            record(&mut self.memberships, &member.nsp, socket, room, false);
        }
        Some((member.sid, member.nsp, rooms))
    }

    /// Whether `socket` is connected.
    pub fn contains(&self, socket: SocketId) -> bool {
        self.members.contains_key(&socket)
    }

    /// The namespace of a connected socket.
    pub fn namespace_of(&self, socket: SocketId) -> Option<&Arc<str>> {
        self.members.get(&socket).map(|m| &m.nsp)
    }

    /// The session and namespace of a connected socket, in one lookup.
    pub fn member(&self, socket: SocketId) -> Option<(Sid, &Arc<str>)> {
        self.members.get(&socket).map(|m| (m.sid, &m.nsp))
    }

    /// How many times a socket has left its namespace or moved to another session so far.
    /// While it reads the same, every socket found in a session earlier is still there:
    /// whoever selected sockets can hand them packets later without looking each up again.
    pub fn departures(&self) -> u64 {
        self.departures
    }

    /// The Engine.IO session of a connected socket.
    pub fn session_of(&self, socket: SocketId) -> Option<Sid> {
        self.members.get(&socket).map(|m| m.sid)
    }

    /// Connected sockets, all namespaces.
    pub fn socket_count(&self) -> usize {
        self.members.len()
    }

    /// Connected sockets of namespace `nsp`.
    pub fn namespace_socket_count(&self, nsp: &str) -> usize {
        self.table.get(nsp).map_or(0, |n| n.rooms.socket_count())
    }

    // ---- rooms ----

    /// Puts connected `socket` in `room`; false when the socket is not connected.
    pub fn join(&mut self, socket: SocketId, room: Room) -> bool {
        let Some(member) = self.members.get(&socket) else {
            return false;
        };
        if let Some(ns) = self.table.get_mut(&member.nsp) {
            if ns.rooms.join(socket, room.clone()) {
                record(&mut self.memberships, &member.nsp, socket, &room, true);
            }
        }
        true
    }

    /// Takes connected `socket` out of `room`; false when the socket is not connected.
    pub fn leave(&mut self, socket: SocketId, room: &Room) -> bool {
        let Some(member) = self.members.get(&socket) else {
            return false;
        };
        if let Some(ns) = self.table.get_mut(&member.nsp) {
            if ns.rooms.leave(socket, room) {
                record(&mut self.memberships, &member.nsp, socket, room, false);
            }
        }
        true
    }

    /// Puts every socket of `nsp` that `opts` selects in `rooms`.
    pub fn sockets_join(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        let targets = self.select(nsp, opts);
        let Some(name) = self.table.get_key_value(nsp).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(ns) = self.table.get_mut(nsp) {
            for s in targets {
                for room in rooms {
                    if ns.rooms.join(s, room.clone()) {
                        record(&mut self.memberships, &name, s, room, true);
                    }
                }
            }
        }
    }

    /// Takes every socket of `nsp` that `opts` selects out of `rooms`.
    pub fn sockets_leave(&mut self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room]) {
        let targets = self.select(nsp, opts);
        let Some(name) = self.table.get_key_value(nsp).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(ns) = self.table.get_mut(nsp) {
            for s in targets {
                for room in rooms {
                    if ns.rooms.leave(s, room) {
                        record(&mut self.memberships, &name, s, room, false);
                    }
                }
            }
        }
    }

    /// The rooms of a connected socket (its own id included).
    pub fn rooms_of(&self, socket: SocketId) -> Vec<Room> {
        let Some(member) = self.members.get(&socket) else {
            return Vec::new();
        };
        self.table
            .get(&member.nsp)
            .map(|n| n.rooms.rooms_of(socket).collect())
            .unwrap_or_default()
    }

    /// The rooms of `nsp` that have members.
    pub fn rooms(&self, nsp: &str) -> Vec<Room> {
        self.table
            .get(nsp)
            .map(|n| n.rooms.rooms())
            .unwrap_or_default()
    }

    /// Rooms with at least one member in `nsp`.
    pub fn room_count(&self, nsp: &str) -> usize {
        self.table.get(nsp).map_or(0, |n| n.rooms.room_count())
    }

    /// The sockets of `nsp` that `opts` selects (rooms, except): every socket once, in a
    /// deterministic order.
    pub fn select(&self, nsp: &str, opts: &BroadcastOptions) -> Vec<SocketId> {
        let Some(ns) = self.table.get(nsp) else {
            return Vec::new();
        };
        let excluded = |s: &SocketId| ns.rooms.in_any(*s, &opts.except);
        if opts.rooms.is_empty() {
            return ns.rooms.sockets().filter(|s| !excluded(s)).collect();
        }
        let mut seen = IdSet::default();
        let mut out = Vec::new();
        for room in &opts.rooms {
            for s in ns.rooms.members(room) {
                if !excluded(&s) && seen.insert(s) {
                    out.push(s);
                }
            }
        }
        out
    }

    // ---- room changes ----

    /// Starts (or stops) recording the rooms created and deleted in every namespace, for
    /// [`take_room_changes`](Namespaces::take_room_changes). Rooms that exist already are
    /// reported as created.
    pub fn track_room_changes(&mut self, on: bool) {
        self.track_rooms = on;
        for ns in self.table.values_mut() {
            ns.rooms.track_changes(on);
        }
    }

    /// The rooms created and deleted since the last call, with their namespace, in order
    /// within each namespace. Always empty unless [tracking](Namespaces::track_room_changes).
    pub fn take_room_changes(&mut self) -> Vec<(Arc<str>, RoomChange)> {
        if !self.track_rooms {
            return Vec::new();
        }
        let mut out = std::mem::take(&mut self.orphan_room_changes);
        for (name, ns) in &mut self.table {
            out.extend(
                ns.rooms
                    .take_changes()
                    .into_iter()
                    .map(|c| (name.clone(), c)),
            );
        }
        out
    }

    /// Starts (or stops) recording every join and leave of every namespace, for
    /// [`take_membership_changes`](Namespaces::take_membership_changes). Memberships that
    /// exist when tracking starts are not reported. A socket's own room is the first it joins
    /// and the last it leaves.
    pub fn track_memberships(&mut self, on: bool) {
        match (on, self.memberships.is_some()) {
            (true, false) => self.memberships = Some(Vec::new()),
            (false, _) => self.memberships = None,
            (true, true) => {}
        }
    }

    /// The joins and leaves since the last call, with their namespace, in the order they
    /// happened. Always empty unless [tracking](Namespaces::track_memberships).
    pub fn take_membership_changes(&mut self) -> Vec<(Arc<str>, MembershipChange)> {
        self.memberships
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> Sid {
        Sid::new(&format!("sess{n:016}")).unwrap()
    }

    fn sock(n: u8) -> SocketId {
        SocketId::new(&format!("sock{n:016}")).unwrap()
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Namespaces>();
    }

    #[test]
    fn departures_count_sockets_that_leave_or_change_session() {
        let mut ns = Namespaces::new();
        let nsp: Arc<str> = Arc::from("/");
        ns.insert(sock(0), sid(0), &nsp, &[]);
        ns.insert(sock(1), sid(1), &nsp, &[]);
        ns.join(sock(0), Room::new("a"));
        ns.leave(sock(0), &Room::new("a"));
        assert_eq!(ns.departures(), 0, "arrivals and room changes keep it");
        ns.insert(sock(1), sid(1), &nsp, &[]);
        assert_eq!(ns.departures(), 0, "the same session again");
        ns.insert(sock(1), sid(2), &nsp, &[]);
        assert_eq!(ns.departures(), 1, "moved to another session");
        assert_eq!(ns.session_of(sock(1)), Some(sid(2)));
        assert!(ns.remove(sock(0)).is_some());
        assert_eq!(ns.departures(), 2);
        assert!(ns.remove(sock(0)).is_none());
        assert_eq!(ns.departures(), 2, "an unknown socket leaves nothing");
    }

    #[test]
    fn memberships_are_recorded_only_while_tracked_and_only_when_they_change() {
        let mut ns = Namespaces::new();
        let nsp: Arc<str> = Arc::from("/");
        let a = Room::new("a");
        ns.insert(sock(0), sid(0), &nsp, &[]);
        ns.join(sock(0), a.clone());
        assert!(ns.take_membership_changes().is_empty());

        ns.track_memberships(true);
        let change = |s: u8, room: &Room, joined: bool| {
            (
                nsp.clone(),
                MembershipChange {
                    socket: sock(s),
                    room: room.clone(),
                    joined,
                },
            )
        };
        let own1 = Room::from(sock(1));
        ns.insert(sock(1), sid(1), &nsp, std::slice::from_ref(&a));
        // Already a member: nothing changes, nothing is recorded.
        ns.join(sock(1), a.clone());
        ns.leave(sock(0), &Room::new("never-joined"));
        // Sorts after the socket ids: the own room still goes last on disconnect.
        let b = Room::new("x");
        ns.sockets_join("/", &BroadcastOptions::default(), std::slice::from_ref(&b));
        ns.leave(sock(0), &b);
        assert_eq!(
            ns.take_membership_changes(),
            vec![
                change(1, &own1, true),
                change(1, &a, true),
                change(0, &b, true),
                change(1, &b, true),
                change(0, &b, false),
            ]
        );
        assert!(ns.take_membership_changes().is_empty());

        ns.sockets_leave("/", &BroadcastOptions::default(), std::slice::from_ref(&a));
        ns.remove(sock(1));
        assert_eq!(
            ns.take_membership_changes(),
            vec![
                change(0, &a, false),
                change(1, &a, false),
                change(1, &b, false),
                change(1, &own1, false),
            ]
        );
        ns.track_memberships(false);
        ns.remove(sock(0));
        assert!(ns.take_membership_changes().is_empty());
    }

    #[test]
    fn selection_takes_rooms_and_except_and_names_each_socket_once() {
        let mut ns = Namespaces::new();
        let nsp: Arc<str> = Arc::from("/");
        for n in 0..4 {
            ns.insert(sock(n), sid(n), &nsp, &[]);
        }
        let (a, b) = (Room::new("a"), Room::new("b"));
        ns.join(sock(0), a.clone());
        ns.join(sock(1), a.clone());
        ns.join(sock(1), b.clone());
        ns.join(sock(2), b.clone());
        let opts = BroadcastOptions {
            rooms: vec![a.clone(), b.clone()],
            except: vec![Room::from(sock(2))],
            ..BroadcastOptions::default()
        };
        let mut picked = ns.select("/", &opts);
        picked.sort();
        assert_eq!(picked, vec![sock(0), sock(1)]);
        assert_eq!(ns.select("/", &BroadcastOptions::default()).len(), 4);
        assert!(ns.select("/nope", &BroadcastOptions::default()).is_empty());
    }

    #[test]
    fn an_ephemeral_namespace_goes_with_its_last_socket_and_request() {
        let mut ns = Namespaces::new();
        ns.add_dynamic(|n| n.starts_with("/dyn-"), true);
        let nsp: Arc<str> = Arc::from("/dyn-1");
        assert!(ns.ensure(&nsp));
        assert!(!ns.ensure(&Arc::from("/other")));
        ns.add_pending(&nsp);
        ns.insert(sock(1), sid(1), &nsp, &[Room::new("r")]);
        assert_eq!(ns.rooms_of(sock(1)).len(), 2);
        ns.settle_pending(&nsp);
        let (s, n, rooms) = ns.remove(sock(1)).unwrap();
        assert_eq!((s, &*n, rooms.len()), (sid(1), "/dyn-1", 2));
        assert!(ns.exists("/dyn-1"));
        ns.drop_if_empty(&nsp);
        assert!(!ns.exists("/dyn-1"));
        assert!(!ns.contains(sock(1)));
    }
}
