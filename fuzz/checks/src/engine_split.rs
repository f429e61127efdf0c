//! The engine's parts against the engine.
//!
//! # `engine_split`
//! The input is read as for [`engine`](crate::engine) (configuration, seed, id generator,
//! operations). Every operation goes to two servers built from the same setup:
//! - an `engine::Engine`;
//! - an `engine::Endpoint` with a table of `engine::Session`s kept here by hand, as a runtime
//!   that runs each session on its own task would keep them: a slab of sessions (an ended one
//!   stays while it still holds a connection, a body being read), an index by id of the live
//!   ones and an index by connection; each session drained after each of its inputs, and
//!   `handle_timeout` given to the due sessions in order of deadline, then id.
//!
//! Invariant: the same structured input through both gives identical results of every call
//! (`ApiMisuse` and `SendError` included), identical outputs in the same order, identical
//! events, the same next deadline and the same session, connection and timer counts, after
//! every step; and neither panics. The runtime model of [`driver`](crate::driver) checks the
//! engine's outputs as in the `engine` target.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use volley_core::engine::{
    ApiMisuse, Body, Endpoint, Engine, Event, Message, Output, Route, SendError, Session, WsMessage,
};
use volley_core::http::RequestHead;
use volley_core::{ConnId, Sid};

use crate::driver::{self, Harness, Machine};
use crate::engine::{Op, Setup};

/// An endpoint and its sessions, kept by hand.
struct Parts {
    endpoint: Endpoint,
    slab: Vec<Option<Session>>,
    by_sid: HashMap<Sid, usize>,
    by_conn: HashMap<ConnId, usize>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
}

impl Parts {
    /// Calls `f` on session `k`, drains it and brings the indexes up to date.
    fn with<R>(&mut self, k: usize, f: impl FnOnce(&mut Session) -> R) -> R {
        let s = self.slab[k].as_mut().expect("a kept session");
        let r = f(s);
        while let Some(e) = s.poll_event() {
            self.events.push_back(e);
        }
        while let Some(o) = s.poll_output() {
            self.outputs.push_back(o);
        }
        assert!(
            s.connections().count() <= 3,
            "a session holds at most three"
        );
        self.by_conn
            .retain(|c, i| *i != k || s.role_of(*c).is_some());
        for (c, _) in s.connections() {
            let before = self.by_conn.insert(c, k);
            assert!(before.is_none_or(|b| b == k), "{c} held by two sessions");
        }
        if s.is_ended() {
            assert_eq!(s.poll_timeout(), None, "an ended session with a deadline");
            if self.by_sid.get(&s.sid()) == Some(&k) {
                self.by_sid.remove(&s.sid());
            }
            if s.connections().count() == 0 {
                self.slab[k] = None;
            }
        } else {
            assert!(
                s.poll_timeout().is_some(),
                "a live session without a deadline"
            );
        }
        r
    }

    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        if self.by_conn.contains_key(&conn) {
            return Err(ApiMisuse::ConnectionBusy(conn));
        }
        match self.endpoint.route(&head) {
            Route::Respond(response) => self.outputs.push_back(Output::Response { conn, response }),
            Route::Handshake(handshake) => {
                let by_sid = &self.by_sid;
                let in_use = |sid| by_sid.contains_key(&sid);
                match self.endpoint.handshake(conn, head, handshake, now, in_use) {
                    Ok(session) => {
                        let k = self.slab.len();
                        self.by_sid.insert(session.sid(), k);
                        self.slab.push(Some(session));
                        self.with(k, |_| ());
                    }
                    Err(response) => self.outputs.push_back(Output::Response { conn, response }),
                }
            }
            Route::Session(request) => match self.by_sid.get(&request.sid()) {
                Some(&k) => self.with(k, |s| s.handle_request(conn, &request, &head, now))?,
                None => self.outputs.push_back(Output::Response {
                    conn,
                    response: request.unknown_sid(),
                }),
            },
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, Sid, usize)> = self
            .by_sid
            .iter()
            .filter_map(|(sid, &k)| {
                let t = self.slab[k].as_ref()?.poll_timeout()?;
                (t <= now).then_some((t, *sid, k))
            })
            .collect();
        due.sort();
        for (_, _, k) in due {
            self.with(k, |s| s.handle_timeout(now));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.live().filter_map(Session::poll_timeout).min()
    }

    fn live(&self) -> impl Iterator<Item = &Session> {
        self.by_sid.values().filter_map(|&k| self.slab[k].as_ref())
    }

    fn send(&mut self, sid: Sid, message: Message, now: Instant) -> Result<(), SendError> {
        match self.by_sid.get(&sid) {
            Some(&k) => self.with(k, |s| s.send(message, now)),
            None => Err(SendError::UnknownSession(sid)),
        }
    }

    fn close(&mut self, sid: Sid, now: Instant) {
        if let Some(&k) = self.by_sid.get(&sid) {
            self.with(k, |s| s.close(now));
        }
    }
}

/// Both servers behind the runtime stand-in: every input goes to both, every output is
/// taken from both and compared.
struct Twin {
    engine: Engine,
    parts: Parts,
}

impl Machine for Twin {
    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let a = self.engine.handle_request(conn, head.clone(), now);
        let b = self.parts.handle_request(conn, head, now);
        assert_eq!(a, b, "handle_request");
        a
    }

    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        let a = self.engine.handle_body(conn, body.clone(), now);
        let b = match self.parts.by_conn.get(&conn) {
            Some(&k) => self.parts.with(k, |s| s.handle_body(conn, body, now)),
            None => Err(ApiMisuse::UnexpectedBody(conn)),
        };
        assert_eq!(a, b, "handle_body");
        a
    }

    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        let a = self.engine.handle_ws_message(conn, message.clone(), now);
        let b = match self.parts.by_conn.get(&conn) {
            Some(&k) => self
                .parts
                .with(k, |s| s.handle_ws_message(conn, message, now)),
            None => Err(ApiMisuse::NotWebSocket(conn)),
        };
        assert_eq!(a, b, "handle_ws_message");
        a
    }

    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        self.engine.handle_ws_drained(conn, now);
        if let Some(&k) = self.parts.by_conn.get(&conn) {
            self.parts.with(k, |s| s.handle_ws_drained(conn, now));
        }
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        self.engine.handle_conn_closed(conn, error, now);
        if let Some(&k) = self.parts.by_conn.get(&conn) {
            self.parts
                .with(k, |s| s.handle_conn_closed(conn, error, now));
            assert!(!self.parts.by_conn.contains_key(&conn), "{conn} still held");
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.parts.handle_timeout(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        let a = self.engine.poll_output();
        let b = self.parts.outputs.pop_front();
        assert_eq!(a, b, "the next output");
        a
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let a = self.engine.poll_timeout();
        assert_eq!(a, self.parts.poll_timeout(), "the next deadline");
        a
    }

    fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Drives an engine and the parts through the operations the input describes (see the
/// module documentation for the invariant).
pub fn engine_split(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let ops: Vec<Op> = driver::ops(&mut u);
    if std::env::var_os("VOLLEY_FUZZ_DEBUG").is_some() {
        eprintln!("{setup:#?}\n{ops:#?}");
    }
    let config = setup.config.build("/engine.io/");
    let twin = Twin {
        engine: Engine::with_id_generator(config.clone(), setup.ids()),
        parts: Parts {
            endpoint: Endpoint::with_id_generator(config, setup.ids()),
            slab: Vec::new(),
            by_sid: HashMap::new(),
            by_conn: HashMap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        },
    };
    let mut h = Harness::new(twin, "/engine.io/", Instant::now(), true);
    for op in &ops {
        match op {
            Op::Common(op) => h.run(op),
            Op::Send(sel, message) => {
                let sid = h.sid(sel);
                let now = h.now;
                let message = driver::app_message(message);
                let a = h.m.engine.send(sid, message.clone(), now);
                let b = h.m.parts.send(sid, message, now);
                assert_eq!(a, b, "send");
            }
            Op::Close(sel) => {
                let sid = h.sid(sel);
                let now = h.now;
                h.m.engine.close(sid, now);
                h.m.parts.close(sid, now);
            }
        }
        settle(&mut h);
        while h.next_deferred() {
            settle(&mut h);
        }
    }
    h.close_all(&mut settle);
    h.run_out_the_clock(&mut settle);
    assert!(h.m.parts.slab.iter().all(Option::is_none), "sessions kept");
    assert!(h.m.parts.by_conn.is_empty(), "connections kept");
}

/// Drains events (compared) then outputs (compared by `Twin::poll_output`) until both are
/// empty, then compares the counts.
fn settle(h: &mut Harness<Twin>) {
    let mut budget = driver::DRAIN_BUDGET;
    loop {
        let mut n = 0;
        while let Some(event) = h.m.engine.poll_event() {
            n += 1;
            let other = h.m.parts.events.pop_front();
            assert_eq!(
                Some(format!("{event:?}")),
                other.map(|e| format!("{e:?}")),
                "the next event"
            );
            if let Event::Open { sid, .. } = event {
                h.saw_sid(sid);
            }
        }
        assert!(h.m.parts.events.is_empty(), "events only the parts gave");
        n += h.drain_outputs();
        if n == 0 {
            break;
        }
        budget = budget.checked_sub(n).expect("the engine never goes idle");
    }
    assert!(h.m.parts.outputs.is_empty(), "outputs only the parts gave");
    h.delivered.clear();
    let (engine, parts) = (&h.m.engine, &h.m.parts);
    assert_eq!(engine.session_count(), parts.by_sid.len(), "session count");
    assert_eq!(
        engine.connection_count(),
        parts.by_conn.len(),
        "connection count"
    );
    let timers = parts.live().filter(|s| s.poll_timeout().is_some()).count();
    assert_eq!(engine.timer_count(), timers, "timer count");
    for s in parts.live() {
        let sid = s.sid();
        assert_eq!(engine.contains(sid), !s.is_closing(), "contains {sid}");
        assert_eq!(
            engine.is_writable(sid),
            s.is_writable(),
            "is_writable {sid}"
        );
        assert_eq!(engine.queued(sid), s.queued(), "queued {sid}");
        assert_eq!(
            engine.queued_bytes(sid),
            s.queued_bytes(),
            "queued bytes {sid}"
        );
        assert_eq!(
            engine.transport(sid),
            Some(s.transport()),
            "transport {sid}"
        );
    }
    h.check();
}
