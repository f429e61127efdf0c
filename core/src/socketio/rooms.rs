//! Rooms: named sets of sockets within a namespace, and the index that answers "who is in
//! these rooms" for broadcasts.

use crate::ids::{SOCKET_ID_MAX_LEN, SocketId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A room name. Cheap to clone; every socket is in the room named by its own id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Room(Arc<str>);

impl Room {
    /// A room named `name`.
    pub fn new(name: &str) -> Self {
        Room(Arc::from(name))
    }

    /// The room's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Room {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Room {
    fn from(s: &str) -> Self {
        Room::new(s)
    }
}

impl From<String> for Room {
    fn from(s: String) -> Self {
        Room(Arc::from(s))
    }
}

impl From<SocketId> for Room {
    fn from(id: SocketId) -> Self {
        Room::new(id.as_str())
    }
}

impl fmt::Debug for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ordered set that holds a single element inline. Every socket is alone in its own
/// room, and most sockets are in that room only: a one-element `BTreeSet` would allocate a
/// whole B-tree node for each (eleven slots: about 730 bytes for socket ids, 190 for rooms).
#[derive(Debug, Clone)]
enum Few<T> {
    One(T),
    /// Zero, or two and more.
    Many(BTreeSet<T>),
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Few::Many(BTreeSet::new())
    }
}

impl<T: Ord + Clone> Few<T> {
    /// Adds `value`; false if it was there already.
    fn insert(&mut self, value: T) -> bool {
        match self {
            Few::One(one) if *one == value => false,
            Few::One(one) => {
                *self = Few::Many(BTreeSet::from([one.clone(), value]));
                true
            }
            Few::Many(set) if set.is_empty() => {
                *self = Few::One(value);
                true
            }
            Few::Many(set) => set.insert(value),
        }
    }

    /// Removes `value`; false if it was not there. A set left with one element holds it
    /// inline again.
    fn remove(&mut self, value: &T) -> bool {
        match self {
            Few::One(one) if one == value => {
                *self = Few::default();
                true
            }
            Few::One(_) => false,
            Few::Many(set) => {
                let removed = set.remove(value);
                if set.len() == 1 {
                    if let Some(last) = set.pop_first() {
                        *self = Few::One(last);
                    }
                }
                removed
            }
        }
    }

    fn contains(&self, value: &T) -> bool {
        match self {
            Few::One(one) => one == value,
            Few::Many(set) => set.contains(value),
        }
    }

    fn len(&self) -> usize {
        match self {
            Few::One(_) => 1,
            Few::Many(set) => set.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in ascending order.
    fn iter(&self) -> FewIter<'_, T> {
        match self {
            Few::One(one) => FewIter::One(Some(one)),
            Few::Many(set) => FewIter::Many(set.iter()),
        }
    }
}

impl<T: Ord> IntoIterator for Few<T> {
    type Item = T;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<T>, std::collections::btree_set::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            Few::One(one) => Some(one).into_iter().chain(BTreeSet::new()),
            Few::Many(set) => None.into_iter().chain(set),
        }
    }
}

/// [`Few::iter`].
enum FewIter<'a, T> {
    One(Option<&'a T>),
    Many(std::collections::btree_set::Iter<'a, T>),
}

impl<'a, T> Iterator for FewIter<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        match self {
            FewIter::One(one) => one.take(),
            FewIter::Many(iter) => iter.next(),
        }
    }
}

/// The sockets of one namespace and their rooms, indexed both ways. Ordered maps keep every
/// walk (a broadcast's targets, a leaving socket's rooms) deterministic.
///
/// Every socket is in the room named by its own id until it leaves it, and most sockets are
/// in no other room: that membership is a flag in the socket's entry, not an entry of the
/// room table (which would cost each socket a room name, a table slot and a second slot in
/// the reverse index). The room of a socket's id lists that socket from its flag and any
/// other socket that joined a room of that name from the room table; `rooms_of`, `members`,
/// `rooms` and the change record answer as if the own room were an ordinary one.
#[derive(Debug, Default)]
pub struct RoomIndex {
    /// Members of each room, except a socket's membership of its own room.
    members: BTreeMap<Room, Few<SocketId>>,
    /// Every socket of the namespace.
    sockets: BTreeMap<SocketId, Joined>,
    /// Rooms with at least one member, an own room counted once.
    room_count: usize,
    /// Rooms created and deleted since the last [`take_changes`](RoomIndex::take_changes),
    /// recorded only when tracking is on.
    changes: Option<Vec<RoomChange>>,
}

/// The rooms of one socket.
#[derive(Debug, Default)]
struct Joined {
    /// In the room named by its own id.
    own: bool,
    /// Every other room it is in, when there is one: boxed, as most sockets are in none and
    /// every socket of the namespace has an entry.
    rooms: Option<Box<Few<Room>>>,
}

/// An ascending iterator with one more value slotted in at its place (which the iterator
/// does not hold).
struct MergeOne<I: Iterator> {
    iter: std::iter::Peekable<I>,
    one: Option<I::Item>,
}

impl<I: Iterator> MergeOne<I> {
    fn new(iter: I, one: Option<I::Item>) -> Self {
        MergeOne {
            iter: iter.peekable(),
            one,
        }
    }
}

impl<I: Iterator> Iterator for MergeOne<I>
where
    I::Item: Ord,
{
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        match (&self.one, self.iter.peek()) {
            (Some(one), Some(next)) if next < one => self.iter.next(),
            (Some(_), _) => self.one.take(),
            (None, _) => self.iter.next(),
        }
    }
}

/// A room that came into being (its first member joined) or went away (its last left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomChange {
    /// The room.
    pub room: Room,
    /// Created (true) or deleted (false).
    pub created: bool,
    /// Whether it is a socket's own room (named by its id), which only that socket is in.
    pub private: bool,
}

/// A socket that joined or left a room: what the reference's in-memory adapter announces as
/// `join-room` and `leave-room`. Recorded only when membership tracking is on (see
/// [`Namespaces::track_memberships`](super::Namespaces::track_memberships)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// The socket.
    pub socket: SocketId,
    /// The room; the socket's own room (named by its id) is joined on connect and left on
    /// disconnect, as the others.
    pub room: Room,
    /// Joined (true) or left (false).
    pub joined: bool,
}

impl RoomIndex {
    /// Adds `socket` to the namespace, in the room of its own id; false if it was in that
    /// room already.
    pub fn insert(&mut self, socket: SocketId) -> bool {
        self.sockets.entry(socket).or_default();
        self.set_own(socket, true)
    }

    /// Takes `socket` out of the namespace and every room, returning the rooms it was in (in
    /// ascending order).
    pub fn remove(&mut self, socket: SocketId) -> Vec<Room> {
        let Some(joined) = self.sockets.remove(&socket) else {
            return Vec::new();
        };
        let own = joined.own.then(|| Room::from(socket));
        let others = joined.rooms.into_iter().flat_map(|r| *r);
        let rooms: Vec<Room> = MergeOne::new(others, own).collect();
        for room in &rooms {
            if room.as_str() == socket.as_str() {
                // Its entry is gone already: the room lives on only if others joined it.
                if !self.members.contains_key(room) {
                    self.room_deleted(room, true);
                }
            } else if let Some(set) = self.members.get_mut(room) {
                set.remove(&socket);
                if set.is_empty() {
                    self.members.remove(room);
                    if !self.holds_own(room) {
                        self.room_deleted(room, false);
                    }
                }
            }
        }
        rooms
    }

    /// Adds `socket` to `room`; false if it was there already or is not in the namespace.
    pub fn join(&mut self, socket: SocketId, room: Room) -> bool {
        if room.as_str() == socket.as_str() {
            return self.set_own(socket, true);
        }
        let Some(joined) = self.sockets.get_mut(&socket) else {
            return false;
        };
        if !joined.rooms.get_or_insert_default().insert(room.clone()) {
            return false;
        }
        let set = self.members.entry(room.clone()).or_default();
        let first = set.is_empty();
        set.insert(socket);
        if first && !self.holds_own(&room) {
            self.room_created(room, false);
        }
        true
    }

    /// Removes `socket` from `room`; false if it was not there. Empty rooms disappear.
    pub fn leave(&mut self, socket: SocketId, room: &Room) -> bool {
        if room.as_str() == socket.as_str() {
            return self.set_own(socket, false);
        }
        let Some(joined) = self.sockets.get_mut(&socket) else {
            return false;
        };
        let Some(rooms) = joined.rooms.as_mut() else {
            return false;
        };
        if !rooms.remove(room) {
            return false;
        }
        if rooms.is_empty() {
            joined.rooms = None;
        }
        if let Some(set) = self.members.get_mut(room) {
            set.remove(&socket);
            if set.is_empty() {
                self.members.remove(room);
                if !self.holds_own(room) {
                    self.room_deleted(room, false);
                }
            }
        }
        true
    }

    /// Puts `socket` in or out of the room of its own id; false if that changed nothing or
    /// the socket is not in the namespace.
    fn set_own(&mut self, socket: SocketId, on: bool) -> bool {
        let Some(joined) = self.sockets.get_mut(&socket) else {
            return false;
        };
        if joined.own == on {
            return false;
        }
        joined.own = on;
        // Other sockets that joined a room of that name keep it in being.
        if !self.members.contains_key(socket.as_str()) {
            let room = Room::from(socket);
            if on {
                self.room_created(room, true);
            } else {
                self.room_deleted(&room, true);
            }
        }
        true
    }

    /// The socket whose own room `room` is, if it is in it. A single emit is a broadcast to
    /// its socket's room, so this runs once per emit: the name is taken as an id without
    /// checking its alphabet (a name outside it matches no socket), only its length.
    fn own_holder(&self, room: &Room) -> Option<SocketId> {
        let name = room.as_str().as_bytes();
        if name.is_empty() || name.len() > SOCKET_ID_MAX_LEN {
            return None;
        }
        let id = SocketId::from_ascii_trusted(name);
        self.sockets.get(&id).filter(|j| j.own).map(|_| id)
    }

    /// Whether `room` is a socket's own room with that socket in it.
    fn holds_own(&self, room: &Room) -> bool {
        self.own_holder(room).is_some()
    }

    fn room_created(&mut self, room: Room, private: bool) {
        self.room_count += 1;
        if let Some(changes) = self.changes.as_mut() {
            changes.push(RoomChange {
                room,
                created: true,
                private,
            });
        }
    }

    fn room_deleted(&mut self, room: &Room, private: bool) {
        self.room_count = self.room_count.saturating_sub(1);
        if let Some(changes) = self.changes.as_mut() {
            changes.push(RoomChange {
                room: room.clone(),
                created: false,
                private,
            });
        }
    }

    /// Starts (or stops) recording which rooms are created and deleted. A room that exists
    /// when tracking starts is reported as created then, so that the record is complete.
    pub fn track_changes(&mut self, on: bool) {
        if !on {
            self.changes = None;
            return;
        }
        if self.changes.is_some() {
            return;
        }
        let existing = self
            .rooms()
            .into_iter()
            .map(|room| RoomChange {
                private: !self.members.contains_key(&room),
                room,
                created: true,
            })
            .collect();
        self.changes = Some(existing);
    }

    /// The rooms created and deleted since the last call, in order (none when not tracking).
    pub fn take_changes(&mut self) -> Vec<RoomChange> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The rooms `socket` is in, in ascending order.
    pub fn rooms_of(&self, socket: SocketId) -> impl Iterator<Item = Room> + '_ {
        let joined = self.sockets.get(&socket);
        let own = joined.filter(|j| j.own).map(|_| Room::from(socket));
        let others = joined
            .and_then(|j| j.rooms.as_deref())
            .into_iter()
            .flat_map(Few::iter)
            .cloned();
        MergeOne::new(others, own)
    }

    /// Whether `socket` is in `room`.
    pub fn contains(&self, socket: SocketId, room: &Room) -> bool {
        if room.as_str() == socket.as_str() {
            return self.sockets.get(&socket).is_some_and(|j| j.own);
        }
        self.members.get(room).is_some_and(|s| s.contains(&socket))
    }

    /// The members of `room`, in ascending order.
    pub fn members(&self, room: &Room) -> impl Iterator<Item = SocketId> + '_ {
        let others = self
            .members
            .get(room)
            .into_iter()
            .flat_map(Few::iter)
            .copied();
        MergeOne::new(others, self.own_holder(room))
    }

    /// Every room with at least one member, in ascending order.
    pub fn rooms(&self) -> Vec<Room> {
        let mut rooms: Vec<Room> = self.members.keys().cloned().collect();
        rooms.extend(
            self.sockets
                .iter()
                .filter(|(id, j)| j.own && !self.members.contains_key(id.as_str()))
                .map(|(id, _)| Room::from(*id)),
        );
        rooms.sort_unstable();
        rooms
    }

    /// Number of non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.room_count
    }

    /// Whether any socket of `rooms` is `socket` (used for `except`).
    pub fn in_any(&self, socket: SocketId, rooms: &[Room]) -> bool {
        rooms.iter().any(|r| self.contains(socket, r))
    }

    /// The sockets of the namespace, in ascending order.
    pub fn sockets(&self) -> impl Iterator<Item = SocketId> + '_ {
        self.sockets.keys().copied()
    }

    /// Number of sockets in the namespace.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sid(s: &str) -> SocketId {
        SocketId::new(s).unwrap()
    }

    proptest! {
        /// `Few` answers as a `BTreeSet` would, whatever the inserts and removes.
        #[test]
        fn few_is_an_ordered_set(ops in proptest::collection::vec((any::<bool>(), 0u8..6), 0..40)) {
            let mut few = Few::default();
            let mut model = BTreeSet::new();
            for (insert, v) in ops {
                if insert {
                    prop_assert_eq!(few.insert(v), model.insert(v));
                } else {
                    prop_assert_eq!(few.remove(&v), model.remove(&v));
                }
                prop_assert_eq!(few.len(), model.len());
                prop_assert_eq!(few.is_empty(), model.is_empty());
                prop_assert_eq!(matches!(few, Few::One(_)), model.len() == 1);
                for probe in 0u8..6 {
                    prop_assert_eq!(few.contains(&probe), model.contains(&probe));
                }
                prop_assert_eq!(few.iter().copied().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(few.clone().into_iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }

    /// Membership as a plain map, own rooms included as ordinary rooms: what the index must
    /// answer.
    #[derive(Default)]
    struct Model {
        sockets: BTreeSet<SocketId>,
        members: BTreeMap<Room, BTreeSet<SocketId>>,
        changes: Option<Vec<RoomChange>>,
    }

    impl Model {
        fn join(&mut self, s: SocketId, room: Room) -> bool {
            if !self.sockets.contains(&s) {
                return false;
            }
            let set = self.members.entry(room.clone()).or_default();
            if set.is_empty() {
                if let Some(c) = self.changes.as_mut() {
                    c.push(RoomChange {
                        private: room.as_str() == s.as_str(),
                        room,
                        created: true,
                    });
                }
            }
            set.insert(s)
        }

        fn leave(&mut self, s: SocketId, room: &Room) -> bool {
            let Some(set) = self.members.get_mut(room) else {
                return false;
            };
            let removed = set.remove(&s);
            if set.is_empty() {
                self.members.remove(room);
                if let Some(c) = self.changes.as_mut() {
                    c.push(RoomChange {
                        private: room.as_str() == s.as_str(),
                        room: room.clone(),
                        created: false,
                    });
                }
            }
            removed
        }

        fn rooms_of(&self, s: SocketId) -> Vec<Room> {
            self.members
                .iter()
                .filter(|(_, m)| m.contains(&s))
                .map(|(r, _)| r.clone())
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Remove(u8),
        Join(u8, u8),
        Leave(u8, u8),
        Track(bool),
    }

    const NAMES: [&str; 5] = ["a", "b", "c", "lobby", "zz"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3).prop_map(Op::Insert),
            (0u8..3).prop_map(Op::Remove),
            (0u8..3, 0u8..5).prop_map(|(s, r)| Op::Join(s, r)),
            (0u8..3, 0u8..5).prop_map(|(s, r)| Op::Leave(s, r)),
            any::<bool>().prop_map(Op::Track),
        ]
    }

    proptest! {
        /// Own rooms kept as a flag answer every query, and record every change, as rooms of
        /// their own would, also when other sockets join a room named by a socket's id and
        /// when a socket leaves its own room.
        #[test]
        fn the_index_answers_as_plain_rooms_do(ops in proptest::collection::vec(op(), 0..60)) {
            let mut index = RoomIndex::default();
            let mut model = Model::default();
            let socket = |n: u8| sid(NAMES[usize::from(n)]);
            let room = |n: u8| Room::new(NAMES[usize::from(n)]);
            for op in ops {
                match op {
                    Op::Insert(s) => {
                        model.sockets.insert(socket(s));
                        let expected = model.join(socket(s), Room::from(socket(s)));
                        prop_assert_eq!(index.insert(socket(s)), expected);
                    }
                    Op::Remove(s) => {
                        let rooms = model.rooms_of(socket(s));
                        for r in &rooms {
                            model.leave(socket(s), r);
                        }
                        model.sockets.remove(&socket(s));
                        prop_assert_eq!(index.remove(socket(s)), rooms);
                    }
                    Op::Join(s, r) => {
                        let expected = model.join(socket(s), room(r));
                        prop_assert_eq!(index.join(socket(s), room(r)), expected);
                    }
                    Op::Leave(s, r) => {
                        let expected = model.sockets.contains(&socket(s)) && model.leave(socket(s), &room(r));
                        prop_assert_eq!(index.leave(socket(s), &room(r)), expected);
                    }
                    Op::Track(on) => {
                        index.track_changes(on);
                        if !on {
                            model.changes = None;
                        } else if model.changes.is_none() {
                            model.changes = Some(
                                model
                                    .members
                                    .iter()
                                    .map(|(r, m)| RoomChange {
                                        room: r.clone(),
                                        created: true,
                                        private: m.len() == 1 && m.iter().all(|s| s.as_str() == r.as_str()),
                                    })
                                    .collect(),
                            );
                        }
                    }
                }
                prop_assert_eq!(index.take_changes(), model.changes.as_mut().map(std::mem::take).unwrap_or_default());
                prop_assert_eq!(index.rooms(), model.members.keys().cloned().collect::<Vec<_>>());
                prop_assert_eq!(index.room_count(), model.members.len());
                prop_assert_eq!(index.sockets().collect::<Vec<_>>(), model.sockets.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(index.socket_count(), model.sockets.len());
                for r in 0..5 {
                    let members: Vec<_> = model.members.get(&room(r)).into_iter().flatten().copied().collect();
                    prop_assert_eq!(index.members(&room(r)).collect::<Vec<_>>(), members);
                    for s in 0..3 {
                        let inside = model.members.get(&room(r)).is_some_and(|m| m.contains(&socket(s)));
                        prop_assert_eq!(index.contains(socket(s), &room(r)), inside);
                        prop_assert_eq!(index.in_any(socket(s), &[Room::new("nope"), room(r)]), inside);
                    }
                }
                for s in 0..3 {
                    prop_assert_eq!(index.rooms_of(socket(s)).collect::<Vec<_>>(), model.rooms_of(socket(s)));
                }
            }
        }
    }

    #[test]
    fn only_a_name_equal_to_a_socket_id_is_that_sockets_room() {
        let long = "x".repeat(SOCKET_ID_MAX_LEN);
        let s = sid(&long);
        let mut index = RoomIndex::default();
        assert!(index.insert(s));
        assert_eq!(
            index.members(&Room::new(&long)).collect::<Vec<_>>(),
            vec![s]
        );
        // Longer than any id, with the socket's id as its start: another room.
        let longer = Room::new(&format!("{long}x"));
        assert_eq!(index.members(&longer).count(), 0);
        assert!(index.join(s, longer.clone()));
        assert_eq!(index.members(&longer).collect::<Vec<_>>(), vec![s]);
        for name in ["", "x x", "xé"] {
            assert_eq!(index.members(&Room::new(name)).count(), 0, "{name:?}");
            assert!(!index.contains(s, &Room::new(name)));
        }
        assert_eq!(index.room_count(), 2);
    }

    #[test]
    fn own_room_and_shared_rooms_both_ways() {
        let (a, b) = (sid("a"), sid("b"));
        let mut index = RoomIndex::default();
        assert!(!index.join(a, Room::from(a)), "not in the namespace yet");
        assert!(index.insert(a));
        assert!(!index.insert(a));
        assert!(!index.join(a, Room::from(a)));
        assert!(index.insert(b));
        let lobby = Room::new("lobby");
        assert!(index.join(b, lobby.clone()));
        assert!(index.join(a, lobby.clone()));
        assert_eq!(index.members(&lobby).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(index.members(&Room::from(a)).collect::<Vec<_>>(), vec![a]);
        let rooms_of_a: Vec<_> = index.rooms_of(a).collect();
        assert_eq!(rooms_of_a, vec![Room::from(a), lobby.clone()]);
        assert!(index.in_any(b, std::slice::from_ref(&lobby)));
        assert!(index.leave(b, &lobby));
        assert!(!index.leave(b, &lobby));
        assert_eq!(index.members(&lobby).collect::<Vec<_>>(), vec![a]);
        // A room named by a's id that b joins as well: a's leaving keeps it for b.
        assert!(index.join(b, Room::from(a)));
        assert_eq!(
            index.members(&Room::from(a)).collect::<Vec<_>>(),
            vec![a, b]
        );
        assert_eq!(index.room_count(), 3);
        assert_eq!(index.remove(a), vec![Room::from(a), lobby.clone()]);
        assert_eq!(index.members(&Room::from(a)).collect::<Vec<_>>(), vec![b]);
        assert_eq!(index.rooms(), vec![Room::from(a), Room::from(b)]);
        assert_eq!(index.room_count(), 2);
        assert!(!index.contains(a, &lobby));
        assert_eq!(index.rooms_of(a).count(), 0);
        // b leaves its own room and stays in the namespace.
        assert!(index.leave(b, &Room::from(b)));
        assert_eq!(index.rooms_of(b).collect::<Vec<_>>(), vec![Room::from(a)]);
        assert_eq!(index.sockets().collect::<Vec<_>>(), vec![b]);
        assert_eq!(index.room_count(), 1);
    }
}
