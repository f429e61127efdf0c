//! An in-memory `socketio::Server` with many WebSocket sockets in `/`, driven as
//! `core/tests/sio_common` drives it: handshake heads through the core's HTTP codec, `40`
//! joins accepted at once, every send reported written at once.
#![allow(dead_code)]

use std::time::Instant;

use volley_core::engine::{Output, WsMessage};
use volley_core::http::{Limits, parse_head};
use volley_core::ids::SocketId;
use volley_core::socketio::{Config, Event, Server};
use volley_core::{Bytes, ConnId, Utf8Bytes};

/// A 100-byte JSON object (an event's argument).
pub const JSON_100: &str =
    r#"{"user":"alice","room":"lobby","text":"hello there, how is everyone doing today?","n":42}"#;

/// The server and its sockets, in connection order.
pub struct Harness {
    pub server: Server,
    pub now: Instant,
    pub sockets: Vec<(ConnId, SocketId)>,
}

/// Text as the runtime hands it to the machine (one shared buffer, no copy per use).
pub fn text(s: &str) -> Utf8Bytes {
    Utf8Bytes::try_from_bytes(Bytes::copy_from_slice(s.as_bytes())).expect("UTF-8")
}

impl Harness {
    /// A server with `n` WebSocket clients joined to `/`.
    pub fn new(n: usize) -> Harness {
        let mut h = Harness {
            server: Server::new(Config::default(), [7; 32]),
            now: Instant::now(),
            sockets: Vec::with_capacity(n),
        };
        for i in 0..n {
            let conn = ConnId(i as u64 + 1);
            let head = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            let (head, _) = parse_head(head.as_bytes(), &Limits::default())
                .expect("valid head")
                .expect("complete head");
            h.server
                .handle_request(conn, head, h.now)
                .expect("handshake");
            h.drain();
            h.server
                .handle_ws_message(conn, WsMessage::Text(text("40")), h.now)
                .expect("connect");
            let Some(Event::Connect(request)) = h.server.poll_event() else {
                panic!("no connect request");
            };
            let socket = h.server.accept(request.id, h.now).expect("accept");
            h.drain();
            h.sockets.push((conn, socket));
        }
        h
    }

    /// Takes every output, reporting each WebSocket send written; returns how many sends.
    pub fn drain(&mut self) -> usize {
        let mut sends = 0;
        let mut written = Vec::new();
        while let Some(output) = self.server.poll_output() {
            if let Output::Send { conn, .. } = output {
                sends += 1;
                written.push(conn);
            }
        }
        written.sort_unstable();
        written.dedup();
        for conn in written {
            self.server.handle_ws_drained(conn, self.now);
        }
        sends
    }

    /// One echo through the machine, as the benchmark server does it: the frame in, the
    /// event out, `emit` of the same arguments back, the frame out, reported written.
    pub fn echo(&mut self, conn: ConnId, frame: &Utf8Bytes) {
        self.server
            .handle_ws_message(conn, WsMessage::Text(frame.clone()), self.now)
            .expect("message");
        while let Some(event) = self.server.poll_event() {
            if let Event::Event {
                socket, name, args, ..
            } = event
            {
                self.server
                    .emit(socket, &name, &args, Vec::new(), false, self.now)
                    .expect("emit");
            }
        }
        self.drain_one(conn);
    }

    /// One `echo_ack` through the machine: the frame in, the event out, `ack` of the same
    /// arguments, the frame out.
    pub fn ack(&mut self, conn: ConnId, frame: &Utf8Bytes) {
        self.server
            .handle_ws_message(conn, WsMessage::Text(frame.clone()), self.now)
            .expect("message");
        while let Some(event) = self.server.poll_event() {
            if let Event::Event {
                args,
                ack: Some(token),
                ..
            } = event
            {
                self.server
                    .ack(token, &args, Vec::new(), self.now)
                    .expect("ack");
            }
        }
        self.drain_one(conn);
    }

    fn drain_one(&mut self, conn: ConnId) {
        let mut sent = false;
        while let Some(output) = self.server.poll_output() {
            sent |= matches!(output, Output::Send { .. });
        }
        if sent {
            self.server.handle_ws_drained(conn, self.now);
        }
    }
}
