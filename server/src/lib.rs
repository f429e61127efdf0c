//! Volley: a Socket.IO server for Rust, written once for every runtime.
//!
//! The protocol lives in `volley-core`, a sans-IO machine. This crate is what applications
//! write against — namespaces, handlers, middleware, sockets, broadcasts — plus the IO
//! [`driver`] that serves the machine over any byte stream, and the one small [`runtime`]
//! trait (spawn, sleep, clock) that `volley-tokio` and `volley-smol` implement.
//!
//! # Handlers
//!
//! A handler is an async function whose arguments are extractors ([`Socket`], [`Data`],
//! [`TryData`], [`Bin`], [`AckSender`], [`State`], [`Extension`], [`EventName`], [`Payload`]);
//! its return value acknowledges the event when the client asked for it.
//!
//! ```
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::{Data, Socket};
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.ns("/")
//!     .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b })
//!     .on("shout", |s: Socket, Data(text): Data<String>| async move {
//!         let _ = s.emit("shouted", &text.to_uppercase());
//!     });
//! rt.block_on(async {
//!     let mut client = TestClient::connect(&io, "/", None).await.unwrap();
//!     let sum: i64 = client.emit_with_ack("sum", &(2, 3)).await.unwrap();
//!     assert_eq!(sum, 5);
//!     client.emit("shout", &"hi");
//!     let got = client.recv().await.unwrap();
//!     assert_eq!((got.event.as_str(), got.data::<String>().unwrap()), ("shouted", "HI".to_owned()));
//! });
//! ```
//!
//! # Listeners, as Node's
//!
//! [`Namespace::on`] adds a listener: every listener of an event runs, in registration order,
//! and the first to return a value acknowledges. A handler can add listeners and packet
//! middleware to its own socket ([`Socket::on`], [`Socket::once`], [`Socket::off`],
//! [`Socket::use_packet`], [`Socket::on_any`]); they run after the namespace's and are dropped
//! when the socket disconnects. [`Socket::conn`] is the Engine.IO connection (transport,
//! upgrade, address, close).
//!
//! ```
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::{Data, Socket};
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.ns("/")
//!     .on("ping", || async { "pong" })
//!     .on("ping", || async { "ignored: the first reply acknowledged" })
//!     .on_connection(|s: Socket| async move {
//!         // Only for this socket, and only once.
//!         s.once("hello", |Data(name): Data<String>| async move { format!("hi {name}") });
//!     });
//! rt.block_on(async {
//!     let mut client = TestClient::connect(&io, "/", None).await.unwrap();
//!     let r: String = client.emit_with_ack("ping", &()).await.unwrap();
//!     assert_eq!(r, "pong");
//!     let r: String = client.emit_with_ack("hello", "ann").await.unwrap();
//!     assert_eq!(r, "hi ann");
//! });
//! ```
//!
//! # Compression
//!
//! Long-polling answers of at least 1 KiB are compressed with gzip or deflate, as the
//! request's `Accept-Encoding` prefers ([`Builder::http_compression`] sets the threshold or
//! turns it off); an answer carrying only packets sent with `compress(false)`
//! ([`Socket::compress`], [`BroadcastOperator::compress`]) is not. WebSocket messages are
//! never compressed: permessage-deflate is out of scope while async-tungstenite lacks it.
//!
//! # Controllers
//!
//! A namespace can also be written as a type whose methods are its handlers, as Midway's
//! `@WSController` classes are: see [`controller`]. `emit_result` (Midway's `@WSEmit`)
//! acknowledges when the client asked for an ack and emits the result otherwise;
//! `broadcast_result` (`@WSBroadCast`) sends it to the other sockets.
//!
//! # Connection middleware
//!
//! Onion style: an `Err` before `next` refuses the connection with CONNECT_ERROR (message and
//! data reach the client); code after `next.run(ctx).await` runs when the socket disconnects.
//!
//! ```
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::{ConnectCtx, ConnectError, Extension, Next};
//!
//! #[derive(Clone)]
//! struct User(String);
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.ns("/")
//!     .use_connect(|ctx: ConnectCtx, next: Next| async move {
//!         let token = ctx.auth()["token"].as_str().unwrap_or_default().to_owned();
//!         if token != "secret" {
//!             return Err(ConnectError::new("unauthorized")
//!                 .with_data(serde_json::json!({ "retry": false })));
//!         }
//!         ctx.data().insert(User("ann".into()));
//!         next.run(ctx).await // resolves at disconnect
//!     })
//!     .on("whoami", |Extension(User(name)): Extension<User>| async move { name });
//! rt.block_on(async {
//!     let refused = TestClient::connect(&io, "/", None).await.unwrap_err();
//!     assert_eq!(refused.message, "unauthorized");
//!     let auth = serde_json::json!({ "token": "secret" });
//!     let mut client = TestClient::connect(&io, "/", Some(auth)).await.unwrap();
//!     let name: String = client.emit_with_ack("whoami", &()).await.unwrap();
//!     assert_eq!(name, "ann");
//! });
//! ```
//!
//! # Rooms and broadcasts
//!
//! ```
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::{Data, Socket};
//! use std::time::Duration;
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.ns("/").on("join", |s: Socket, Data(room): Data<String>| async move {
//!     s.join(room.as_str());
//!     true
//! });
//! rt.block_on(async {
//!     let mut a = TestClient::connect(&io, "/", None).await.unwrap();
//!     let mut b = TestClient::connect(&io, "/", None).await.unwrap();
//!     let _: bool = a.emit_with_ack("join", &"news").await.unwrap();
//!     let _: bool = b.emit_with_ack("join", &"sports").await.unwrap();
//!     io.to("news").except("sports").emit("headline", &"volley ships").unwrap();
//!     assert_eq!(a.recv().await.unwrap().data::<String>().unwrap(), "volley ships");
//!     assert!(b.try_recv().is_none());
//!     // Ask every socket, wait at most 1 s, get every answer (or the ones that came).
//!     let answers = io.timeout(Duration::from_secs(1)).emit_with_ack("ping", &1);
//!     let ping = a.recv().await.unwrap();
//!     a.ack(ping.ack.unwrap(), &"pong-a");
//!     let ping = b.recv().await.unwrap();
//!     b.ack(ping.ack.unwrap(), &"pong-b");
//!     assert_eq!(answers.await.unwrap().len(), 2);
//! });
//! ```
//!
//! Serving on real sockets: see `volley-tokio` and `volley-smol` (`listen`, `serve`), and the
//! chat example.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ack;
pub mod adapter;
pub mod connection;
pub mod controller;
pub mod driver;
pub mod extensions;
pub mod extract;
pub mod handler;
pub mod handshake;
pub mod io;
mod listeners;
pub mod metrics;
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
pub use connection::Connection;
pub use extensions::Extensions;
pub use extract::{Bin, Data, EventCtx, EventName, Extension, FromEvent, State, TryData};
pub use handler::{Handler, IntoReply, Json, Reply};
pub use handshake::Handshake;
pub use io::{Builder, HandlerPanic, Io, Overflow, PanicPlace, ServerError};
pub use listeners::ListenerId;
pub use middleware::{ConnectCtx, ConnectError, IncomingEvent, Next, PacketFlow};
pub use namespace::{EventRoute, Namespace, ServerSideEmitError};
pub use node::Node;
pub use operators::{BroadcastAckError, BroadcastOperator, Broadcasted, RemoteSocket};
pub use payload::{EncodeError, Payload};
pub use socket::{EmitError, Socket, SocketEmitter, TimedSocket};
pub use volley_core::SocketId;
pub use volley_core::socketio::{DisconnectReason, MembershipChange, Parser, Room, Traffic};

/// A builder with the reference server's defaults.
pub fn builder() -> Builder {
    Builder::new()
}
