//! Engine.IO: packets, payloads and the session state machine.

pub mod packet;
pub mod payload;
