//! Rooms: named sets of sockets within a namespace, and the index that answers "who is in
//! these rooms" for broadcasts.

use crate::ids::SocketId;
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

/// Room membership of one namespace, indexed both ways. Ordered maps keep every walk (a
/// broadcast's targets, a leaving socket's rooms) deterministic.
#[derive(Debug, Default)]
pub struct RoomIndex {
    members: BTreeMap<Room, Few<SocketId>>,
    rooms_of: BTreeMap<SocketId, Few<Room>>,
    /// Rooms created and deleted since the last [`take_changes`](RoomIndex::take_changes),
    /// recorded only when tracking is on.
    changes: Option<Vec<RoomChange>>,
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
    /// Adds `socket` to `room`; false if it was there already.
    pub fn join(&mut self, socket: SocketId, room: Room) -> bool {
        if let Some(changes) = self.changes.as_mut() {
            if !self.members.contains_key(&room) {
                changes.push(RoomChange {
                    private: room.as_str() == socket.as_str(),
                    room: room.clone(),
                    created: true,
                });
            }
        }
        let added = self.members.entry(room.clone()).or_default().insert(socket);
        self.rooms_of.entry(socket).or_default().insert(room);
        added
    }

    /// Removes `socket` from `room`; false if it was not there. Empty rooms disappear.
    pub fn leave(&mut self, socket: SocketId, room: &Room) -> bool {
        let Some(set) = self.members.get_mut(room) else {
            return false;
        };
        let removed = set.remove(&socket);
        if set.is_empty() {
            self.members.remove(room);
            self.deleted(socket, room);
        }
        if let Some(rooms) = self.rooms_of.get_mut(&socket) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.rooms_of.remove(&socket);
            }
        }
        removed
    }

    /// Removes `socket` from every room, returning the rooms it was in.
    pub fn leave_all(&mut self, socket: SocketId) -> Vec<Room> {
        let rooms: Vec<Room> = self
            .rooms_of
            .remove(&socket)
            .map(|r| r.into_iter().collect())
            .unwrap_or_default();
        for room in &rooms {
            if let Some(set) = self.members.get_mut(room) {
                set.remove(&socket);
                if set.is_empty() {
                    self.members.remove(room);
                    self.deleted(socket, room);
                }
            }
        }
        rooms
    }

    fn deleted(&mut self, socket: SocketId, room: &Room) {
        if let Some(changes) = self.changes.as_mut() {
            changes.push(RoomChange {
                private: room.as_str() == socket.as_str(),
                room: room.clone(),
                created: false,
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
            .members
            .iter()
            .map(|(room, members)| RoomChange {
                room: room.clone(),
                created: true,
                private: members.len() == 1
                    && members
                        .iter()
                        .next()
                        .is_some_and(|s| s.as_str() == room.as_str()),
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

    /// The rooms `socket` is in.
    pub fn rooms_of(&self, socket: SocketId) -> impl Iterator<Item = &Room> {
        self.rooms_of.get(&socket).into_iter().flat_map(Few::iter)
    }

    /// Whether `socket` is in `room`.
    pub fn contains(&self, socket: SocketId, room: &Room) -> bool {
        self.members.get(room).is_some_and(|s| s.contains(&socket))
    }

    /// The members of `room`.
    pub fn members(&self, room: &Room) -> impl Iterator<Item = SocketId> + '_ {
        self.members
            .get(room)
            .into_iter()
            .flat_map(Few::iter)
            .copied()
    }

    /// Every room with at least one member.
    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.members.keys()
    }

    /// Number of non-empty rooms.
    pub fn room_count(&self) -> usize {
        self.members.len()
    }

    /// Whether any socket of `rooms` is `socket` (used for `except`).
    pub fn in_any(&self, socket: SocketId, rooms: &[Room]) -> bool {
        rooms.iter().any(|r| self.contains(socket, r))
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

    #[test]
    fn own_room_and_shared_rooms_both_ways() {
        let (a, b) = (sid("a"), sid("b"));
        let mut index = RoomIndex::default();
        assert!(index.join(a, Room::from(a)));
        assert!(!index.join(a, Room::from(a)));
        assert!(index.join(b, Room::from(b)));
        let lobby = Room::new("lobby");
        assert!(index.join(b, lobby.clone()));
        assert!(index.join(a, lobby.clone()));
        assert_eq!(index.members(&lobby).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(index.members(&Room::from(a)).collect::<Vec<_>>(), vec![a]);
        let rooms_of_a: Vec<_> = index.rooms_of(a).cloned().collect();
        assert_eq!(rooms_of_a, vec![Room::from(a), lobby.clone()]);
        assert!(index.in_any(b, std::slice::from_ref(&lobby)));
        assert!(index.leave(b, &lobby));
        assert!(!index.leave(b, &lobby));
        assert_eq!(index.members(&lobby).collect::<Vec<_>>(), vec![a]);
        assert_eq!(index.leave_all(a), vec![Room::from(a), lobby.clone()]);
        assert_eq!(index.room_count(), 1);
        assert!(!index.contains(a, &lobby));
        assert_eq!(index.rooms_of(a).count(), 0);
    }
}
