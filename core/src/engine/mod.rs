//! Engine.IO: packets, payloads and the server machine, in three parts.
//!
//! - [`Endpoint`] owns no session: it sorts requests out ([`Route`]), refuses what no session
//!   can take, and opens sessions at the handshake.
//! - [`Session`] is one session's machine: polls, bodies, the upgrade, the heartbeat, the
//!   bounded queue and the close, with its own deadline and its own output and event queues.
//! - [`Engine`] composes them for a single-threaded runtime: an endpoint, a table of sessions,
//!   the connection table and one timer index, behind one set of inputs and outputs.
//!
//! A runtime that runs each session on its own task uses the first two directly: see the
//! crate documentation for both ways.

mod config;
mod endpoint;
mod error;
mod frames;
pub mod jsonp;
mod machine;
pub mod packet;
pub mod payload;
mod session;

pub use config::{Config, Cookie, OverflowPolicy, QueueBounds, Transports};
pub use endpoint::{Endpoint, Handshake, RequestKind, Route, SessionRequest};
pub use error::{ApiMisuse, CloseReason, ErrorCode, SendError};
pub use machine::{Body, Engine, Event, Output};
pub use packet::{DecodeError, Message, Packet, Protocol, WsMessage};
pub use session::{ConnRole, Session, SessionQueues, TransportKind};
