//! Volley's protocol core: Engine.IO (v4, with v3) as a pure state machine.
//!
//! Nothing here performs IO, spawns, awaits, reads a clock or draws entropy: time comes in as
//! an [`Instant`](std::time::Instant) argument, randomness from a seed the caller provides,
//! and bytes in and out as [`Bytes`]. Every rule of the protocol is therefore decided here,
//! deterministically, and tested in memory with a simulated clock.
//!
//! # Three parts
//!
//! The Engine.IO server comes in three parts:
//!
//! - [`engine::Endpoint`] owns no session. It holds the configuration and the session id
//!   generator, sorts a request head out ([`route`](engine::Endpoint::route): a 404, an
//!   Engine.IO refusal, a handshake, or a request for a session id) and performs handshakes
//!   ([`handshake`](engine::Endpoint::handshake)), which return a new session.
//! - [`engine::Session`] is one session's machine: polls, bodies, the upgrade, the heartbeat,
//!   the bounded queue and the close, with its own deadline and its own output and event
//!   queues. A runtime that gives each connection its own task keeps one per task.
//! - [`engine::Engine`] composes them for a runtime with one machine task: an endpoint, a
//!   table of sessions, the table of connections and one timer index, behind one set of
//!   inputs and outputs. The Socket.IO machine is built on it.
//!
//! Each of them takes time as an argument and is drained the same way.
//!
//! # The engine's methods, by kind
//!
//! [`engine::Engine`] has four kinds of methods:
//!
//! - **getters**: [`config`](engine::Engine::config), [`owns`](engine::Engine::owns),
//!   [`contains`](engine::Engine::contains), [`is_writable`](engine::Engine::is_writable),
//!   [`session_count`](engine::Engine::session_count), …
//! - **inputs** (`handle_*`): [`handle_request`](engine::Engine::handle_request) (an HTTP
//!   request head), [`handle_body`](engine::Engine::handle_body) (its body, when asked),
//!   [`handle_ws_message`](engine::Engine::handle_ws_message),
//!   [`handle_ws_drained`](engine::Engine::handle_ws_drained),
//!   [`handle_conn_closed`](engine::Engine::handle_conn_closed) and
//!   [`handle_timeout`](engine::Engine::handle_timeout) (always safe to call early).
//! - **commands**: [`send`](engine::Engine::send) and [`close`](engine::Engine::close).
//! - **outputs** (`poll_*`): [`poll_event`](engine::Engine::poll_event) (what the
//!   application must see), [`poll_output`](engine::Engine::poll_output) (what must be done on
//!   a connection) and [`poll_timeout`](engine::Engine::poll_timeout) (when to call
//!   `handle_timeout` next).
//!
//! # Drain order
//!
//! After every input or command: drain `poll_event` first (the application's reactions are
//! commands, which queue more output), then `poll_output` until it returns `None`, then read
//! `poll_timeout` and arm a timer for it. Outputs for one connection are in the order they
//! must be performed.
//!
//! # A run loop
//!
//! ```
//! use std::time::Instant;
//! use volley_core::engine::{Config, Engine, Event, Output};
//! use volley_core::http::{parse_head, Limits};
//! use volley_core::ConnId;
//!
//! let mut engine = Engine::new(Config::default(), [42; 32]); // seed from the OS in production
//! let raw = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\n\r\n";
//! let (head, _used) = parse_head(raw, &Limits::default()).unwrap().unwrap();
//! let now = Instant::now(); // the runtime reads the clock, never the core
//! engine.handle_request(ConnId(1), head, now).unwrap();
//! loop {
//!     while let Some(event) = engine.poll_event() {
//!         if let Event::Open { sid, .. } = event {
//!             let hello = volley_core::engine::Message::Text("hello".into());
//!             engine.send(sid, hello, now).unwrap();
//!         }
//!     }
//!     let Some(output) = engine.poll_output() else { break };
//!     match output {
//!         Output::Response { conn, response } => { /* write the response on conn */ }
//!         Output::ReadBody { conn, limit } => { /* read the body, then handle_body */ }
//!         Output::Send { conn, message } => { /* write, then handle_ws_drained */ }
//!         Output::Close { conn } => { /* close the WebSocket */ }
//!     }
//! }
//! let next_deadline = engine.poll_timeout(); // sleep until then, then handle_timeout
//! assert!(next_deadline.is_some());
//! ```
//!
//! # The parts by hand
//!
//! A runtime that runs each session on its own task asks the endpoint where a request goes,
//! keeps the sessions it opens, and drains each session after each of its inputs, in the same
//! order (events, outputs, then the deadline):
//!
//! ```
//! use std::time::{Duration, Instant};
//! use volley_core::engine::{Config, Endpoint, Message, Output, Route, Session, WsMessage};
//! use volley_core::http::{parse_head, Limits};
//! use volley_core::ConnId;
//!
//! fn drain(session: &mut Session) -> Vec<Output> {
//!     while let Some(_event) = session.poll_event() { /* to the application */ }
//!     std::iter::from_fn(|| session.poll_output()).collect()
//! }
//!
//! let mut endpoint = Endpoint::new(Config::default(), [42; 32]);
//! let raw = b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a\r\n\
//!     Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
//! let (head, _) = parse_head(raw, &Limits::default()).unwrap().unwrap();
//! let now = Instant::now();
//! let conn = ConnId(1);
//! let mut session = match endpoint.route(&head) {
//!     // `in_use` asks the runtime's table of sessions whether an id is taken.
//!     Route::Handshake(h) => endpoint.handshake(conn, head, h, now, |_| false).unwrap(),
//!     Route::Session(request) => unreachable!("look up {} in the table", request.sid()),
//!     Route::Respond(_refusal) => unreachable!("write it on the connection"),
//! };
//! // The 101, then the open packet.
//! assert_eq!(drain(&mut session).len(), 2);
//! session.handle_ws_drained(conn, now);
//! session.handle_ws_message(conn, WsMessage::Text("4hi".into()), now).unwrap();
//! session.send(Message::Text("hello".into()), now).unwrap();
//! assert!(matches!(&drain(&mut session)[..], [Output::Send { .. }]));
//! // The session's own timer: the first ping is due after `ping_interval`.
//! assert_eq!(session.poll_timeout(), Some(now + Duration::from_secs(25)));
//! ```
//!
//! Errors say whose fault they are: a peer's mistake never surfaces as an `Err` but as
//! protocol output (an HTTP status with the Engine.IO error JSON, a close) plus an
//! [`Event::Close`](engine::Event::Close) with its reason; a caller's mistake is an
//! [`ApiMisuse`](engine::ApiMisuse).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod base64;
pub mod cluster;
pub mod engine;
pub mod http;
pub mod ids;
pub mod rng;
pub mod sha1;
pub mod socketio;
pub mod utf8;

pub use bytes::Bytes;
pub use ids::{ConnId, IdMap, IdSet, NodeId, RequestId, Sid, SocketId};
pub use utf8::Utf8Bytes;
