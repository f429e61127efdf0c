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

/// Room membership of one namespace, indexed both ways. Ordered maps keep every walk (a
/// broadcast's targets, a leaving socket's rooms) deterministic.
#[derive(Debug, Default)]
pub struct RoomIndex {
    members: BTreeMap<Room, BTreeSet<SocketId>>,
    rooms_of: BTreeMap<SocketId, BTreeSet<Room>>,
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
        self.rooms_of.get(&socket).into_iter().flatten()
    }

    /// Whether `socket` is in `room`.
    pub fn contains(&self, socket: SocketId, room: &Room) -> bool {
        self.members.get(room).is_some_and(|s| s.contains(&socket))
    }

    /// The members of `room`.
    pub fn members(&self, room: &Room) -> impl Iterator<Item = SocketId> + '_ {
        self.members.get(room).into_iter().flatten().copied()
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
