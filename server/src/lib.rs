//! Volley's async layer: the code written once for every runtime.
//!
//! The protocol lives in `volley-core`, a sans-IO machine. This crate moves bytes for it:
//! [`driver`] serves TCP-like streams for any machine with the core's input/output shape, and
//! [`runtime`] is the one small trait (spawn, sleep, clock) a runtime crate implements
//! (`volley-tokio`, `volley-smol`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ack;
pub mod adapter;
pub mod driver;
pub mod extensions;
pub mod extract;
pub mod handler;
pub mod handshake;
pub mod io;
pub mod middleware;
pub mod namespace;
mod node;
pub mod operators;
pub mod payload;
mod registry;
pub mod runtime;
pub mod socket;
pub mod testing;

pub use ack::{AckError, AckResponse, AckSender, PartialAcks};
pub use extensions::Extensions;
pub use extract::{Bin, Data, EventCtx, EventName, Extension, FromEvent, State, TryData};
pub use handler::{Handler, IntoReply, Json, Reply};
pub use handshake::Handshake;
pub use io::{Builder, Io};
pub use middleware::{ConnectCtx, ConnectError, IncomingEvent, Next, PacketFlow};
pub use namespace::{EventRoute, Namespace};
pub use node::Node;
pub use operators::{BroadcastAckError, BroadcastOperator, RemoteSocket};
pub use payload::{EncodeError, Payload};
pub use socket::{Socket, TimedSocket};
pub use volley_core::SocketId;
pub use volley_core::socketio::{DisconnectReason, Room};

/// A builder with the reference server's defaults.
pub fn builder() -> Builder {
    Builder::new()
}
