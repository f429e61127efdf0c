//! Volley's protocol core: Engine.IO and Socket.IO as pure state machines.
//!
//! (The full contract is documented once the engine lands.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod base64;
pub mod engine;
pub mod http;
pub mod ids;
pub mod utf8;

pub use bytes::Bytes;
pub use ids::{ConnId, Sid};
pub use utf8::Utf8Bytes;
