//! Testing without sockets: a deterministic runtime with a simulated clock, an in-memory
//! stream pair, and a Socket.IO client that drives a server through them.
//!
//! ```
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::Data;
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.ns("/").on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b });
//! rt.block_on(async {
//!     let mut client = TestClient::connect(&io, "/", None).await.unwrap();
//!     let sum: i64 = client.emit_with_ack("sum", &(1, 2)).await.unwrap();
//!     assert_eq!(sum, 3);
//! });
//! ```
//!
//! One client can join several namespaces over one connection ([`TestClient::join`]), and it
//! speaks the server's parser (text or MessagePack) by itself. It uses a WebSocket, or HTTP
//! long-polling with [`ConnectOptions::transport`]. [`TestClient::connect_over`] drives a
//! server that listens for real, through a [`Connector`] (`volley_tokio::testing::TcpConnector`,
//! `volley_smol::testing::TcpConnector`), as Midway's `createSocketIOClient` does.
//!
//! [`ConnectOptions`] adds query parameters and headers to the handshake, or stops the
//! client's pongs. To check that something does *not* happen (an acknowledgement that must
//! not come), bound the wait with [`TestRuntime::timeout`]: the server's heartbeat always
//! has a next timer, so `block_on` would otherwise skip through pings until its idle limit.

mod client;
mod pipe;
mod runtime;
mod transport;

pub use client::{ConnectOptions, Received, RecoveryState, TestClient};
pub use pipe::{PipeEnd, pipe};
pub use runtime::{TestRuntime, TestSleep};
pub use transport::{Connector, TransportKind};
