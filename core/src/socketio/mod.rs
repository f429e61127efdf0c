//! Socket.IO: packets, namespaces, rooms and the server machine.

pub mod decoder;
pub mod event;
pub mod packet;
mod recovery;
pub mod rooms;
mod server;

pub use event::{
    AckFailure, AckId, AckToken, ConnectId, ConnectRequest, DisconnectReason, Event, Handshake,
};
pub use packet::{Packet, PacketType, SioProtocol};
pub use recovery::Recovery;
pub use rooms::{Room, RoomIndex};
pub use server::{BroadcastOptions, Config, Server, SioError};
