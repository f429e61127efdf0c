//! Socket.IO: packets, namespaces, rooms and the server machine.

pub mod client;
pub mod decoder;
pub mod event;
pub mod msgpack;
pub mod namespaces;
pub mod packet;
pub mod peer;
mod recovery;
pub mod rooms;
mod server;
pub mod shared;
mod traffic;

pub use client::{Client, ClientTimer, Incoming, TimerOutcome};
pub use event::{
    AckFailure, AckId, AckToken, ConnectId, ConnectRequest, DisconnectReason, Event, Handshake,
};
pub use msgpack::Parser;
pub use namespaces::{BroadcastOptions, Namespaces};
pub use packet::{Packet, PacketType, SioProtocol};
pub use peer::{Delivery, EngineLink, Link, Peer};
pub use recovery::{Recovery, SessionState, StoredMessage, recovery_auth};
pub use rooms::{MembershipChange, Room, RoomChange, RoomIndex};
pub use server::{
    Config, DEFAULT_MAX_NAMESPACES, Detached, Handoff, RestoreOutcome, Server, SioError,
};
pub use shared::{Shared, SharedAccess};
pub use traffic::Traffic;
