//! The Socket.IO in-memory harness: the [`Server`] machine, a simulated clock, and fake
//! clients that speak Engine.IO (v3 or v4) over long-polling or WebSocket to it through the
//! core's own codecs, with Socket.IO packets inside.
//!
//! A client can answer heartbeats and keep a GET parked by itself (`auto_pong`,
//! `auto_poll`), so that only what a test is about happens on the wire. Connect requests are
//! accepted as they come in `auto_accept` mode; otherwise they wait in `events`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use volley_core::engine::payload::{Framing, decode_payload, encode_payload};
use volley_core::engine::{self, Body, Message, Output, Packet as EioPacket, Protocol, WsMessage};
use volley_core::http::{Limits, Response, parse_head};
use volley_core::ids::SocketId;
use volley_core::socketio::{Config, ConnectRequest, Event, Server};
use volley_core::{Bytes, ConnId, Sid, Utf8Bytes};

/// The configuration of the official test suite: 300/200 ms heartbeat, 1 s connect timeout,
/// Engine.IO v3 allowed.
pub fn config() -> Config {
    Config {
        engine: engine::Config {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            allow_eio3: true,
            path: "/socket.io/".to_owned(),
            ..engine::Config::default()
        },
        connect_timeout: Duration::from_secs(1),
        ..Config::default()
    }
}

/// One Engine.IO packet as a client received it: a text packet in its text form (`40{…}`,
/// `2`, `6`, `1`), or the data of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

impl Frame {
    fn from_packet(packet: &EioPacket, protocol: Protocol) -> Frame {
        match packet {
            EioPacket::Message(Message::Binary(b)) => Frame::Binary(b.to_vec()),
            other => {
                let mut out = Vec::new();
                other.encode_text(protocol, &mut out);
                Frame::Text(String::from_utf8(out).expect("text packet"))
            }
        }
    }

    /// Text as is, binary as `<bin 1,2,3>`.
    pub fn show(&self) -> String {
        match self {
            Frame::Text(t) => t.clone(),
            Frame::Binary(b) => format!(
                "<bin {}>",
                b.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// A client handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct C(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Polling,
    Ws,
}

#[derive(Debug)]
pub struct FakeClient {
    /// The Engine.IO session id, once the open packet arrived.
    pub sid: Option<Sid>,
    pub eio: u8,
    pub kind: Kind,
    /// The WebSocket (handshake or after an upgrade).
    pub ws: Option<ConnId>,
    /// The parked GET (polling).
    pub parked: Option<ConnId>,
    /// What arrived and was not taken yet (heartbeats left out when `auto_pong`).
    pub inbox: Vec<Frame>,
    /// Raw bodies of the answered GETs, in order: (status, body).
    pub polls: Vec<(u16, Vec<u8>)>,
    pub auto_poll: bool,
    pub auto_pong: bool,
    /// v3: when this client sends its next ping.
    pub next_ping: Option<Instant>,
    pongs_due: usize,
    /// The session is over for this client (close packet, WebSocket closed, or a 400).
    pub closed: bool,
    /// The open packet's JSON.
    pub open: Option<serde_json::Value>,
}

impl FakeClient {
    pub fn sid(&self) -> Sid {
        self.sid.expect("handshake done")
    }

    fn protocol(&self) -> Protocol {
        if self.eio == 3 {
            Protocol::V3
        } else {
            Protocol::V4
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Poll(C),
    Post(C),
    Ws(C),
}

/// The server plus its clients and everything it said.
pub struct SioPair {
    pub server: Server,
    pub now: Instant,
    pub start: Instant,
    next_conn: u64,
    pub clients: Vec<FakeClient>,
    roles: HashMap<ConnId, Role>,
    bodies: HashMap<ConnId, Bytes>,
    /// Statuses of POSTs, by connection.
    pub post_status: HashMap<ConnId, u16>,
    /// Events not consumed by auto-accept.
    pub events: VecDeque<Event>,
    /// Every connect request seen (accepted automatically or not).
    pub requests: Vec<ConnectRequest>,
    /// Requests accepted by auto-accept, with the socket each got.
    pub accepted: Vec<(ConnectRequest, SocketId)>,
    pub auto_accept: bool,
    /// Whether WebSocket sends are reported written at once.
    pub auto_drain: bool,
    pub undrained: Vec<ConnId>,
}

impl SioPair {
    pub fn new() -> Self {
        Self::with_server(Server::new(config(), [7; 32]))
    }

    pub fn with_server(server: Server) -> Self {
        let now = Instant::now();
        SioPair {
            server,
            now,
            start: now,
            next_conn: 100,
            clients: Vec::new(),
            roles: HashMap::new(),
            bodies: HashMap::new(),
            post_status: HashMap::new(),
            events: VecDeque::new(),
            requests: Vec::new(),
            accepted: Vec::new(),
            auto_accept: true,
            auto_drain: true,
            undrained: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn client(&self, c: C) -> &FakeClient {
        &self.clients[c.0]
    }

    pub fn client_mut(&mut self, c: C) -> &mut FakeClient {
        &mut self.clients[c.0]
    }

    pub fn sid(&self, c: C) -> Sid {
        self.clients[c.0].sid()
    }

    fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    // ---- the run loop ----

    /// Drains events (auto-accepting), outputs, bodies, drains and client reactions until
    /// nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let mut any = false;
            while let Some(ev) = self.server.poll_event() {
                any = true;
                match ev {
                    Event::Connect(req) => {
                        self.requests.push(req.clone());
                        if let Some(socket) = req.accepted {
                            // Accepted by the machine itself (a recovered connect).
                            self.accepted.push((req.clone(), socket));
                            self.events.push_back(Event::Connect(req));
                        } else if self.auto_accept {
                            let socket = self.server.accept(req.id, self.now).expect("accept");
                            self.accepted.push((req, socket));
                        } else {
                            self.events.push_back(Event::Connect(req));
                        }
                    }
                    other => self.events.push_back(other),
                }
            }
            let mut reads = Vec::new();
            let mut written = Vec::new();
            while let Some(out) = self.server.poll_output() {
                any = true;
                match out {
                    Output::Response { conn, response } => self.on_response(conn, response),
                    Output::ReadBody { conn, limit } => reads.push((conn, limit)),
                    Output::Send { conn, message } => {
                        self.on_ws(conn, message);
                        if !written.contains(&conn) {
                            written.push(conn);
                        }
                    }
                    Output::Close { conn } => {
                        if let Some(Role::Ws(c)) = self.roles.remove(&conn) {
                            let client = &mut self.clients[c.0];
                            if client.ws == Some(conn) {
                                client.closed = true;
                                client.ws = None;
                            }
                        }
                    }
                }
            }
            for (conn, limit) in reads {
                any = true;
                let body = self.bodies.remove(&conn).expect("a body for the POST");
                let body = if body.len() > limit {
                    Body::TooLarge
                } else {
                    Body::Complete(body)
                };
                self.server
                    .handle_body(conn, body, self.now)
                    .expect("server accepts the body");
            }
            if self.auto_drain {
                for conn in written {
                    self.server.handle_ws_drained(conn, self.now);
                }
            } else {
                self.undrained.extend(written);
            }
            any |= self.react();
            if !any {
                return;
            }
        }
        panic!("the pair never went idle");
    }

    /// What clients do by themselves: answer pings, keep a GET parked.
    fn react(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.clients.len() {
            let c = C(i);
            if self.clients[i].closed || self.clients[i].sid.is_none() {
                continue;
            }
            while self.clients[i].pongs_due > 0 && !self.clients[i].closed {
                self.clients[i].pongs_due -= 1;
                any = true;
                self.send_eio(c, &[EioPacket::Pong(Utf8Bytes::new())]);
            }
            let client = &self.clients[i];
            if client.kind == Kind::Polling
                && client.ws.is_none()
                && client.auto_poll
                && client.parked.is_none()
                && !client.closed
            {
                any = true;
                self.poll(c);
            }
        }
        any
    }

    fn push_frames(&mut self, c: C, packets: Vec<EioPacket>) {
        let client = &mut self.clients[c.0];
        let protocol = client.protocol();
        for packet in packets {
            match &packet {
                EioPacket::Open(json) => {
                    let v: serde_json::Value = serde_json::from_str(json).expect("open JSON");
                    client.sid = Some(v["sid"].as_str().unwrap().parse().unwrap());
                    client.open = Some(v);
                    if client.eio == 3 && client.auto_pong {
                        client.next_ping = Some(self.now + config().engine.ping_interval);
                    }
                    continue;
                }
                EioPacket::Ping(d) if client.auto_pong && client.eio == 4 && d.is_empty() => {
                    client.pongs_due += 1;
                    continue;
                }
                EioPacket::Pong(d) if client.auto_pong && client.eio == 3 && d.is_empty() => {
                    continue;
                }
                EioPacket::Close => client.closed = true,
                _ => {}
            }
            client.inbox.push(Frame::from_packet(&packet, protocol));
        }
    }

    fn on_response(&mut self, conn: ConnId, response: Response) {
        match self.roles.remove(&conn) {
            Some(Role::Poll(c)) => {
                let client = &mut self.clients[c.0];
                if client.parked == Some(conn) {
                    client.parked = None;
                }
                client.polls.push((response.status, response.body.to_vec()));
                if response.status != 200 {
                    client.closed = true;
                    return;
                }
                let framing =
                    if response.get_header("content-type") == Some("application/octet-stream") {
                        Framing::V3Binary
                    } else if client.eio == 3 {
                        Framing::V3String
                    } else {
                        Framing::V4
                    };
                let packets = decode_payload(response.body.clone(), framing).expect("a payload");
                self.push_frames(c, packets);
            }
            Some(Role::Post(_)) => {
                self.post_status.insert(conn, response.status);
            }
            Some(Role::Ws(c)) => {
                if response.status == 101 {
                    self.roles.insert(conn, Role::Ws(c));
                } else {
                    let client = &mut self.clients[c.0];
                    client.closed = client.ws == Some(conn) || client.closed;
                }
            }
            None => {}
        }
    }

    fn on_ws(&mut self, conn: ConnId, message: WsMessage) {
        let Some(Role::Ws(c)) = self.roles.get(&conn).copied() else {
            panic!("a WebSocket message on {conn}, which is no WebSocket");
        };
        let protocol = self.clients[c.0].protocol();
        let packet = EioPacket::from_ws(message, protocol).expect("a valid frame");
        self.push_frames(c, vec![packet]);
    }

    // ---- clock ----

    fn next_deadline(&self) -> Option<Instant> {
        let clients = self
            .clients
            .iter()
            .filter(|c| !c.closed)
            .filter_map(|c| c.next_ping)
            .min();
        match (self.server.poll_timeout(), clients) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn run_until(&mut self, t: Instant) {
        self.now = self.now.max(t);
        for i in 0..self.clients.len() {
            let client = &self.clients[i];
            if client.closed {
                continue;
            }
            if let Some(at) = client.next_ping.filter(|at| *at <= self.now) {
                self.clients[i].next_ping = Some(at + config().engine.ping_interval);
                self.send_eio(C(i), &[EioPacket::Ping(Utf8Bytes::new())]);
            }
        }
        self.server.handle_timeout(self.now);
        self.drive();
    }

    /// Jumps to the next deadline (server or client) and runs it; false when none.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_deadline() else {
            return false;
        };
        self.run_until(t);
        true
    }

    /// Moves the clock forward by `d`, running every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let until = self.now + d;
        let mut guard = 0;
        while let Some(t) = self.next_deadline() {
            if t > until {
                break;
            }
            guard += 1;
            assert!(guard < 100_000, "deadlines never advance");
            self.run_until(t);
        }
        self.run_until(until);
    }

    // ---- HTTP ----

    fn request(&mut self, conn: ConnId, text: &str) {
        let (head, used) = parse_head(text.as_bytes(), &Limits::default())
            .expect("valid head")
            .expect("complete head");
        assert_eq!(used, text.len());
        self.server
            .handle_request(conn, head, self.now)
            .expect("server accepts the request");
        self.drive();
    }

    fn query(&self, c: C, transport: &str) -> String {
        let client = &self.clients[c.0];
        format!(
            "EIO={}&transport={transport}&sid={}",
            client.eio,
            client.sid()
        )
    }

    fn add_client(&mut self, eio: u8, kind: Kind) -> C {
        self.clients.push(FakeClient {
            sid: None,
            eio,
            kind,
            ws: None,
            parked: None,
            inbox: Vec::new(),
            polls: Vec::new(),
            auto_poll: true,
            auto_pong: true,
            next_ping: None,
            pongs_due: 0,
            closed: false,
            open: None,
        });
        C(self.clients.len() - 1)
    }

    /// A new Engine.IO session (`eio` 3 or 4) over `kind`, polling clients with a GET parked.
    pub fn open(&mut self, eio: u8, kind: Kind) -> C {
        self.open_with(eio, kind, "")
    }

    /// Like [`open`](Self::open), with more query parameters (`&k=v`).
    pub fn open_with(&mut self, eio: u8, kind: Kind, extra_query: &str) -> C {
        let c = self.add_client(eio, kind);
        let conn = self.new_conn();
        match kind {
            Kind::Polling => {
                self.roles.insert(conn, Role::Poll(c));
                self.clients[c.0].parked = Some(conn);
                self.request(
                    conn,
                    &format!(
                        "GET /socket.io/?EIO={eio}&transport=polling{extra_query} HTTP/1.1\r\nHost: x\r\n\r\n"
                    ),
                );
            }
            Kind::Ws => {
                self.roles.insert(conn, Role::Ws(c));
                self.clients[c.0].ws = Some(conn);
                self.request(
                    conn,
                    &ws_head(&format!("EIO={eio}&transport=websocket{extra_query}")),
                );
            }
        }
        assert!(self.clients[c.0].sid.is_some(), "no open packet");
        c
    }

    /// Parks a GET for a polling client.
    pub fn poll(&mut self, c: C) -> ConnId {
        assert!(
            self.clients[c.0].parked.is_none(),
            "a GET is parked already"
        );
        let conn = self.new_conn();
        self.roles.insert(conn, Role::Poll(c));
        self.clients[c.0].parked = Some(conn);
        let q = self.query(c, "polling");
        self.request(
            conn,
            &format!("GET /socket.io/?{q} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        conn
    }

    /// The raw body of the last answered GET.
    pub fn last_poll(&self, c: C) -> (u16, String) {
        let (status, body) = self.clients[c.0].polls.last().expect("a GET was answered");
        (*status, String::from_utf8_lossy(body).into_owned())
    }

    /// POSTs a raw body (polling client); returns the status.
    pub fn post_raw(&mut self, c: C, body: Bytes) -> u16 {
        let conn = self.new_conn();
        self.roles.insert(conn, Role::Post(c));
        let q = self.query(c, "polling");
        self.bodies.insert(conn, body.clone());
        self.request(
            conn,
            &format!(
                "POST /socket.io/?{q} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
        );
        self.bodies.remove(&conn);
        self.post_status.remove(&conn).unwrap_or(0)
    }

    /// Sends Engine.IO packets: one POST, or one WebSocket message each.
    pub fn send_eio(&mut self, c: C, packets: &[EioPacket]) {
        let client = &self.clients[c.0];
        let protocol = client.protocol();
        match client.ws {
            Some(ws) if client.kind == Kind::Ws => {
                for packet in packets {
                    self.server
                        .handle_ws_message(ws, packet.to_ws(protocol), self.now)
                        .expect("a WebSocket of the server");
                    self.drive();
                }
            }
            _ => {
                let body = encode_payload(packets, protocol, false).body;
                self.post_raw(c, body);
            }
        }
    }

    /// Sends one Socket.IO packet (`42["a"]` goes out as Engine.IO message `442["a"]`).
    pub fn send(&mut self, c: C, sio: &str) {
        self.send_eio(c, &[text(sio)]);
    }

    /// Sends a binary Socket.IO packet's header and attachments together (one POST, or
    /// consecutive WebSocket messages).
    pub fn send_bin(&mut self, c: C, sio: &str, attachments: &[&[u8]]) {
        let mut packets = vec![text(sio)];
        packets.extend(
            attachments
                .iter()
                .map(|a| EioPacket::Message(Message::Binary(Bytes::copy_from_slice(a)))),
        );
        self.send_eio(c, &packets);
    }

    /// Sends a raw Engine.IO text packet (`1`, `2`, `4abc`).
    pub fn send_raw(&mut self, c: C, eio_text: &str) {
        let protocol = self.clients[c.0].protocol();
        let packet =
            EioPacket::decode_text(Utf8Bytes::from(eio_text), protocol).expect("an EIO packet");
        self.send_eio(c, &[packet]);
    }

    /// The client's transport goes away: its WebSocket, or its parked GET.
    pub fn drop_transport(&mut self, c: C, error: bool) {
        let client = &mut self.clients[c.0];
        let conn = client
            .ws
            .take()
            .or(client.parked.take())
            .expect("a transport");
        client.closed = true;
        self.roles.remove(&conn);
        self.server.handle_conn_closed(conn, error, self.now);
        self.drive();
    }

    /// Upgrades a polling client to WebSocket (probe, then upgrade).
    pub fn upgrade(&mut self, c: C) {
        let conn = self.new_conn();
        self.roles.insert(conn, Role::Ws(c));
        let q = self.query(c, "websocket");
        self.request(conn, &ws_head(&q));
        self.clients[c.0].ws = Some(conn);
        let protocol = self.clients[c.0].protocol();
        let probe = EioPacket::Ping(Utf8Bytes::from("probe"));
        self.server
            .handle_ws_message(conn, probe.to_ws(protocol), self.now)
            .unwrap();
        self.drive();
        self.server
            .handle_ws_message(conn, EioPacket::Upgrade.to_ws(protocol), self.now)
            .unwrap();
        self.drive();
        let client = &mut self.clients[c.0];
        client.kind = Kind::Ws;
        client
            .inbox
            .retain(|f| *f != Frame::Text("3probe".into()) && *f != Frame::Text("6".into()));
    }

    // ---- receiving ----

    /// Takes what the client received.
    pub fn recv(&mut self, c: C) -> Vec<Frame> {
        std::mem::take(&mut self.clients[c.0].inbox)
    }

    /// Takes what the client received, shown as text (`<bin 1,2,3>` for binary).
    pub fn recv_text(&mut self, c: C) -> Vec<String> {
        self.recv(c).iter().map(Frame::show).collect()
    }

    // ---- Socket.IO helpers ----

    /// Joins `nsp` (auto-accept), asserts the CONNECT reply and takes it from the inbox;
    /// returns the new socket.
    pub fn join(&mut self, c: C, nsp: &str, auth: Option<&str>) -> SocketId {
        assert!(self.auto_accept, "join needs auto-accept");
        let prefix = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        self.send(c, &format!("0{prefix}{}", auth.unwrap_or("")));
        let socket = self.socket_of(c, nsp).expect("accepted");
        let expected = if self.clients[c.0].eio == 3 {
            format!("40{prefix}")
        } else {
            format!("40{prefix}{{\"sid\":\"{socket}\"}}")
        };
        let inbox = &mut self.clients[c.0].inbox;
        let at = inbox
            .iter()
            .position(|f| *f == Frame::Text(expected.clone()))
            .unwrap_or_else(|| panic!("no {expected} in {inbox:?}"));
        inbox.remove(at);
        socket
    }

    /// The socket auto-accept made for the client in `nsp` (the latest).
    pub fn socket_of(&self, c: C, nsp: &str) -> Option<SocketId> {
        let sid = self.clients[c.0].sid?;
        self.accepted
            .iter()
            .rev()
            .find(|(r, _)| r.handshake.sid == sid && &*r.nsp == nsp)
            .map(|(_, s)| *s)
    }

    /// Takes the events seen so far.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// Asserts nothing is left anywhere, in the Socket.IO layer and the engine.
    pub fn assert_empty(&self) {
        let s = &self.server;
        assert_eq!(s.socket_count(), 0, "sockets leaked");
        assert_eq!(s.client_count(), 0, "clients leaked");
        assert_eq!(s.pending_ack_count(), 0, "acks leaked");
        assert_eq!(s.pending_connect_count(), 0, "connect requests leaked");
        assert_eq!(s.timer_count(), 0, "timers leaked");
        for nsp in s.namespaces() {
            assert_eq!(s.room_count(nsp), 0, "rooms of {nsp} leaked");
            assert_eq!(s.namespace_socket_count(nsp), 0, "sockets of {nsp} leaked");
        }
        let e = s.engine();
        assert_eq!(e.session_count(), 0, "sessions leaked");
        assert_eq!(e.connection_count(), 0, "connections leaked");
        assert_eq!(e.timer_count(), 0, "engine timers leaked");
        assert_eq!(s.poll_timeout(), None);
    }
}

impl Default for SioPair {
    fn default() -> Self {
        Self::new()
    }
}

pub fn text(sio: &str) -> EioPacket {
    EioPacket::Message(Message::Text(Utf8Bytes::from(sio)))
}

pub fn ws_head(query: &str) -> String {
    format!(
        "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Short names for events, for assertions: `connect /nsp`, `event <socket> name args`,
/// `ack <socket> id args`, `ack-failed <socket> id reason`, `disconnecting <socket> reason
/// [rooms]`, `disconnect <socket> reason`.
pub fn show(e: &Event) -> String {
    match e {
        Event::Connect(r) => format!("connect {}", r.nsp),
        Event::Event {
            socket,
            name,
            args,
            attachments,
            ack,
            ..
        } => {
            let mut s = format!("event {socket} {name} {args}");
            if let Some(t) = ack {
                s.push_str(&format!(" ack={}", t.id()));
            }
            if !attachments.is_empty() {
                s.push_str(&format!(" +{}", attachments.len()));
            }
            s
        }
        Event::Ack {
            socket,
            id,
            args,
            attachments,
        } => {
            let mut s = format!("ack {socket} {} {args}", id.0);
            if !attachments.is_empty() {
                s.push_str(&format!(" +{}", attachments.len()));
            }
            s
        }
        Event::AckFailed { socket, id, reason } => {
            format!("ack-failed {socket} {} {reason:?}", id.0)
        }
        Event::Disconnecting {
            socket,
            reason,
            rooms,
            ..
        } => {
            let rooms: Vec<&str> = rooms.iter().map(|r| r.as_str()).collect();
            format!("disconnecting {socket} {reason} {rooms:?}")
        }
        Event::Disconnect { socket, reason, .. } => format!("disconnect {socket} {reason}"),
    }
}
