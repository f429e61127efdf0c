//! Engine.IO: packets, payloads and the session state machine.

mod config;
mod error;
pub mod jsonp;
mod machine;
pub mod packet;
pub mod payload;
mod session;

pub use config::{Config, Cookie, OverflowPolicy, Transports};
pub use error::{ApiMisuse, CloseReason, ErrorCode, SendError};
pub use machine::{Body, Engine, Event, Output};
pub use packet::{DecodeError, Message, Packet, Protocol, WsMessage};
pub use session::TransportKind;
