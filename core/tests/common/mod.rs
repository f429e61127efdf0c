//! The in-memory harness: the engine, a simulated clock, and a fake client that speaks HTTP
//! and WebSocket to it through the core's own codecs.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use volley_core::engine::{Body, Config, Engine, Event, Output, WsMessage};
use volley_core::http::{Limits, RequestHead, Response, parse_head};
use volley_core::{Bytes, ConnId, Sid, Utf8Bytes};

/// The engine plus everything it said, sorted by connection.
pub struct Pair {
    pub engine: Engine,
    pub now: Instant,
    pub start: Instant,
    next_conn: u64,
    pub responses: HashMap<ConnId, Vec<Response>>,
    pub ws_in: HashMap<ConnId, Vec<WsMessage>>,
    pub closed: HashSet<ConnId>,
    pub events: Vec<Event>,
    /// Bodies the engine asked for that the test has not delivered yet.
    pub pending_bodies: HashMap<ConnId, usize>,
    /// Whether Sends are acknowledged as written at once (a fast client).
    pub auto_drain: bool,
}

pub fn config() -> Config {
    Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        allow_eio3: true,
        ..Config::default()
    }
}

impl Pair {
    pub fn new(config: Config) -> Self {
        let now = Instant::now();
        Pair {
            engine: Engine::new(config, [7; 32]),
            now,
            start: now,
            next_conn: 1,
            responses: HashMap::new(),
            ws_in: HashMap::new(),
            closed: HashSet::new(),
            events: Vec::new(),
            pending_bodies: HashMap::new(),
            auto_drain: true,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Drains outputs and events until the engine is idle.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut drained = Vec::new();
            let mut any = false;
            while let Some(out) = self.engine.poll_output() {
                any = true;
                match out {
                    Output::Response { conn, response } => {
                        if response.close {
                            self.closed.insert(conn);
                        }
                        self.responses.entry(conn).or_default().push(response)
                    }
                    Output::ReadBody { conn, limit } => {
                        self.pending_bodies.insert(conn, limit);
                    }
                    Output::Send { conn, message } => {
                        self.ws_in.entry(conn).or_default().push(message);
                        if !drained.contains(&conn) {
                            drained.push(conn);
                        }
                    }
                    Output::Close { conn } => {
                        self.closed.insert(conn);
                    }
                }
            }
            while let Some(ev) = self.engine.poll_event() {
                any = true;
                self.events.push(ev);
            }
            if self.auto_drain {
                for conn in drained {
                    self.engine.handle_ws_drained(conn, self.now);
                }
            }
            if !any {
                return;
            }
        }
        panic!("engine never went idle");
    }

    /// Jumps the clock to the next deadline and runs it; false when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.engine.poll_timeout() else {
            return false;
        };
        assert!(t >= self.now || self.now - t < Duration::from_secs(1));
        self.now = self.now.max(t);
        self.engine.handle_timeout(self.now);
        self.drive();
        true
    }

    /// Moves the clock forward by `d`, running every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        let mut guard = 0;
        while let Some(t) = self.engine.poll_timeout() {
            if t > until {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "poll_timeout never advances");
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            self.drive();
        }
        self.now = until;
        self.engine.handle_timeout(self.now);
        self.drive();
    }

    pub fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Sends a raw request head (and body when the engine asks for one) on a new connection.
    pub fn raw(&mut self, head: &str, body: &[u8]) -> ConnId {
        let conn = self.new_conn();
        self.raw_on(conn, head, body);
        conn
    }

    pub fn raw_on(&mut self, conn: ConnId, text: &str, body: &[u8]) {
        let (head, used) = parse_head(text.as_bytes(), &Limits::default())
            .expect("valid head")
            .expect("complete head");
        assert_eq!(used, text.len());
        self.request_on(conn, head, body);
    }

    pub fn request_on(&mut self, conn: ConnId, head: RequestHead, body: &[u8]) {
        self.engine
            .handle_request(conn, head, self.now)
            .expect("engine accepts request");
        self.drive();
        if let Some(limit) = self.pending_bodies.remove(&conn) {
            let body = if body.len() > limit {
                Body::TooLarge
            } else {
                Body::Complete(Bytes::copy_from_slice(body))
            };
            self.engine
                .handle_body(conn, body, self.now)
                .expect("engine accepts body");
            self.drive();
        }
    }

    pub fn get(&mut self, query: &str) -> ConnId {
        self.raw(
            &format!("GET /engine.io/?{query} HTTP/1.1\r\nHost: x\r\n\r\n"),
            b"",
        )
    }

    pub fn post_with(&mut self, query: &str, content_type: &str, body: &[u8]) -> ConnId {
        self.raw(
            &format!(
                "POST /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            body,
        )
    }

    pub fn post(&mut self, query: &str, body: &[u8]) -> ConnId {
        self.post_with(query, "text/plain;charset=UTF-8", body)
    }

    /// Opens a WebSocket (handshake or probe) and returns its connection.
    pub fn ws(&mut self, query: &str) -> ConnId {
        self.raw(
            &format!(
                "GET /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            b"",
        )
    }

    pub fn ws_text(&mut self, conn: ConnId, text: &str) {
        self.engine
            .handle_ws_message(conn, WsMessage::Text(Utf8Bytes::from(text)), self.now)
            .expect("a WebSocket of the engine");
        self.drive();
    }

    pub fn ws_binary(&mut self, conn: ConnId, data: &[u8]) {
        self.engine
            .handle_ws_message(
                conn,
                WsMessage::Binary(Bytes::copy_from_slice(data)),
                self.now,
            )
            .expect("a WebSocket of the engine");
        self.drive();
    }

    /// Takes the WebSocket messages received so far on `conn`, text ones as strings.
    pub fn ws_recv(&mut self, conn: ConnId) -> Vec<WsMessage> {
        self.ws_in.remove(&conn).unwrap_or_default()
    }

    pub fn ws_recv_text(&mut self, conn: ConnId) -> Vec<String> {
        self.ws_recv(conn)
            .into_iter()
            .map(|m| match m {
                WsMessage::Text(t) => t.to_string(),
                WsMessage::Binary(b) => format!("<binary {:?}>", &b[..]),
            })
            .collect()
    }

    /// The single response on `conn`, if it has been answered.
    pub fn response(&mut self, conn: ConnId) -> Option<Response> {
        let list = self.responses.remove(&conn)?;
        assert_eq!(list.len(), 1, "one response per request");
        list.into_iter().next()
    }

    pub fn body(&mut self, conn: ConnId) -> (u16, String) {
        let r = self.response(conn).expect("an answer");
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    }

    /// Polling handshake; returns the session id and the open packet's JSON.
    pub fn open_polling(&mut self, eio: u8) -> (Sid, serde_json::Value) {
        let conn = self.get(&format!("EIO={eio}&transport=polling"));
        let (status, body) = self.body(conn);
        assert_eq!(status, 200, "{body}");
        if eio == 3 {
            let (len, packet) = body.split_once(':').expect("v3 length prefix");
            assert_eq!(len.parse::<usize>().unwrap(), packet.encode_utf16().count());
            open_packet(packet)
        } else {
            open_packet(&body)
        }
    }

    pub fn events_of(&mut self, sid: Sid) -> Vec<Event> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.events)
            .into_iter()
            .partition(|e| event_sid(e) == sid);
        self.events = rest;
        mine
    }

    pub fn close_reason(&self, sid: Sid) -> Option<&'static str> {
        self.events.iter().find_map(|e| match e {
            Event::Close { sid: s, reason } if *s == sid => Some(reason.as_str()),
            _ => None,
        })
    }

    /// Asserts nothing is left: no sessions, connections or timers.
    pub fn assert_empty(&self) {
        assert_eq!(self.engine.session_count(), 0, "sessions leaked");
        assert_eq!(self.engine.connection_count(), 0, "connections leaked");
        assert_eq!(self.engine.timer_count(), 0, "timers leaked");
        assert_eq!(self.engine.poll_timeout(), None);
    }
}

pub fn event_sid(e: &Event) -> Sid {
    match e {
        Event::Open { sid, .. }
        | Event::Message { sid, .. }
        | Event::Upgrade { sid }
        | Event::Close { sid, .. } => *sid,
    }
}

/// Parses `0{...}` (possibly the first of several packets) into the sid and the JSON.
pub fn open_packet(body: &str) -> (Sid, serde_json::Value) {
    let first = body.split('\x1e').next().unwrap();
    let json = first.strip_prefix('0').expect("open packet");
    let v: serde_json::Value = serde_json::from_str(json).expect("open JSON");
    let sid: Sid = v["sid"].as_str().unwrap().parse().unwrap();
    (sid, v)
}
