//! A simulated Engine.IO session, driven through the core with a simulated clock: a polling
//! handshake, messages both ways, a WebSocket upgrade, a heartbeat and a close. Prints the
//! wire exchange.

use std::time::{Duration, Instant};
use volley_core::ConnId;
use volley_core::engine::{Body, Config, Engine, Event, Message, Output, WsMessage};
use volley_core::http::{Limits, parse_head};
use volley_core::{Bytes, Sid};

struct Sim {
    engine: Engine,
    now: Instant,
    next_conn: u64,
}

impl Sim {
    fn drain(&mut self) -> Vec<Event> {
        let mut events = vec![];
        loop {
            while let Some(ev) = self.engine.poll_event() {
                println!("  event    {}", describe(&ev));
                events.push(ev);
            }
            let Some(out) = self.engine.poll_output() else {
                return events;
            };
            match out {
                Output::Response { conn, response } => println!(
                    "  {conn} <- HTTP {} {:?}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
                Output::ReadBody { conn, limit } => {
                    println!("  {conn}: read body (<= {limit} bytes)")
                }
                Output::Send { conn, message } => {
                    match message {
                        WsMessage::Text(t) => println!("  {conn} <- ws {t:?}"),
                        WsMessage::Binary(b) => println!("  {conn} <- ws binary {:?}", &b[..]),
                    }
                    self.engine.handle_ws_drained(conn, self.now);
                }
                Output::Close { conn } => println!("  {conn} closed"),
            }
        }
    }

    fn request(&mut self, method: &str, query: &str, body: &[u8], ws: bool) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let upgrade = if ws {
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let raw = format!(
            "{method} /engine.io/?{query} HTTP/1.1\r\nHost: localhost\r\n{upgrade}Content-Length: {}\r\n\r\n",
            body.len()
        );
        println!(
            "{conn} -> {method} ?{query} {:?}",
            String::from_utf8_lossy(body)
        );
        let Ok(Some((head, _))) = parse_head(raw.as_bytes(), &Limits::default()) else {
            panic!("the example's own request is valid");
        };
        self.engine
            .handle_request(conn, head, self.now)
            .expect("fresh connection");
        if method == "POST" {
            self.drain();
            self.engine
                .handle_body(conn, Body::Complete(Bytes::copy_from_slice(body)), self.now)
                .expect("the engine asked for this body");
        }
        conn
    }

    fn ws(&mut self, conn: ConnId, text: &str) {
        println!("{conn} -> ws {text:?}");
        self.engine
            .handle_ws_message(conn, WsMessage::Text(text.into()), self.now)
            .expect("an accepted WebSocket");
    }
}

fn describe(ev: &Event) -> String {
    match ev {
        Event::Open {
            sid,
            protocol,
            transport,
            ..
        } => {
            format!("open {sid} ({protocol:?}, {transport:?})")
        }
        Event::Message { sid, message } => format!("message {sid} {message:?}"),
        Event::Upgrade { sid } => format!("upgrade {sid}"),
        Event::Close { sid, reason } => format!("close {sid} ({reason})"),
    }
}

fn main() {
    let mut sim = Sim {
        engine: Engine::new(Config::default(), [1; 32]),
        now: Instant::now(),
        next_conn: 0,
    };
    sim.request("GET", "EIO=4&transport=polling", b"", false);
    let sid: Sid = sim
        .drain()
        .iter()
        .find_map(|e| match e {
            Event::Open { sid, .. } => Some(*sid),
            _ => None,
        })
        .expect("a session opened");
    let q = format!("EIO=4&transport=polling&sid={sid}");
    sim.request("POST", &q, b"4hello\x1e4world", false);
    sim.drain();
    sim.request("GET", &q, b"", false);
    sim.drain();
    println!("(server sends \"welcome\")");
    sim.engine
        .send(sid, Message::Text("welcome".into()), sim.now)
        .expect("open session");
    sim.drain();
    let ws = sim.request(
        "GET",
        &format!("EIO=4&transport=websocket&sid={sid}"),
        b"",
        true,
    );
    sim.drain();
    sim.ws(ws, "2probe");
    sim.ws(ws, "5");
    sim.drain();
    sim.now += Duration::from_secs(25);
    println!("(25 s later)");
    sim.engine.handle_timeout(sim.now);
    sim.drain();
    sim.ws(ws, "3");
    sim.ws(ws, "1");
    sim.drain();
    println!(
        "sessions left: {}, timers left: {}",
        sim.engine.session_count(),
        sim.engine.timer_count()
    );
}
