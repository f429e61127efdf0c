//! The Engine.IO machine, driven by a runtime stand-in.
//!
//! # `engine`
//! The input (read with `arbitrary`) is an engine configuration, a seed, a choice of session
//! id generator (random, or one that repeats a few ids so that handshakes collide), then a
//! sequence of operations: HTTP requests built from structured parts (method, path, a query
//! of `EIO`, `transport`, `sid` (one handed out before, or garbage), `b64`, `j`, upgrade and
//! framing headers), request bodies (raw, too large, or payloads of client packets in any
//! framing), WebSocket messages on fitting or unfitting connections, drained and closed
//! connections, clock jumps (with or without `handle_timeout`), and the `send` and `close`
//! commands. After every step all events and outputs are drained (events first).
//!
//! Invariants, beyond the runtime model's (see `driver`):
//! - no panic, and no livelock while draining;
//! - sessions are exactly those opened and not closed by the events: `session_count` equals
//!   that number, `timer_count` equals `session_count` (no session without a deadline), and
//!   `Message` / `Upgrade` / `Close` events only name open sessions;
//! - `send` fails with `UnknownSession` exactly for sessions not open (or closing), with
//!   `BufferFull` exactly when the queue is at `max_buffered_packets`;
//! - every message the server delivers (in a poll response or a WebSocket frame) was sent
//!   with `send`, reaches the session it was sent to unchanged, at most once, in the order
//!   sent;
//! - `poll_timeout` is never at or before `now` once `handle_timeout(now)` ran, in particular
//!   after jumping to the deadline it announced;
//! - once every connection is closed and the clock has run out, everything is back to zero:
//!   no session, connection, timer or deadline.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use volley_core::engine::{Engine, Event, Message, SendError, TransportKind};
use volley_core::rng::{IdGenerator, RandomIds};
use volley_core::{Sid, Utf8Bytes, http::RequestHead};

use crate::driver::{self, AppMessage, CommonOp, ConfigSpec, Harness, SidSel};

#[derive(Arbitrary, Debug)]
pub(crate) struct Setup {
    pub(crate) config: ConfigSpec,
    seed: [u8; 32],
    /// `Some(n)`: session ids come from a cycle of `n % 4 + 1` fixed ids.
    repeat_ids: Option<u8>,
}

impl Setup {
    /// The session id generator the setup asks for; two calls give two generators that hand
    /// out the same ids in the same order.
    pub(crate) fn ids(&self) -> Box<dyn IdGenerator> {
        match self.repeat_ids {
            None => Box::new(RandomIds::from_seed(self.seed)),
            Some(n) => {
                let ids: Vec<Sid> = (0..=n % 4)
                    .map(|i| Sid::new(&format!("repeated-id-{i}")).expect("a valid id"))
                    .collect();
                let mut next = 0usize;
                Box::new(move |_: &RequestHead| {
                    next += 1;
                    ids[next % ids.len()]
                })
            }
        }
    }
}

/// One step of the engine targets: a runtime's step, or one of the application's commands.
#[derive(Debug)]
pub(crate) enum Op {
    Common(CommonOp<AppMessage>),
    Send(SidSel, AppMessage),
    Close(SidSel),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=7u8)? {
            0 | 1 => Op::Send(u.arbitrary()?, u.arbitrary()?),
            2 => Op::Close(u.arbitrary()?),
            _ => Op::Common(u.arbitrary()?),
        })
    }
}

struct Run {
    h: Harness<Engine>,
    live: HashSet<Sid>,
    /// The session and message of every `send`, by its tag.
    sent: Vec<(Sid, Message)>,
    /// The last tag delivered, by session.
    last: HashMap<Sid, usize>,
}

/// Marks the `n`th message sent, so that the client side can tell which it got.
fn tag(n: usize, message: Message) -> Message {
    match message {
        Message::Text(t) => Message::Text(Utf8Bytes::from(format!("~{n}~{t}"))),
        Message::Binary(b) => {
            let mut tagged = b"~~".to_vec();
            tagged.extend_from_slice(&(n as u64).to_be_bytes());
            tagged.extend_from_slice(&b);
            Message::Binary(Bytes::from(tagged))
        }
    }
}

/// The tag of a delivered message; every message the server delivers was sent with one.
fn tag_of(message: &Message) -> usize {
    let n = match message {
        Message::Text(t) => t
            .strip_prefix('~')
            .and_then(|t| t.split_once('~'))
            .and_then(|(n, _)| n.parse().ok()),
        Message::Binary(b) => b
            .strip_prefix(b"~~")
            .and_then(|b| b.get(..8))
            .and_then(|n| n.try_into().ok())
            .map(|n| u64::from_be_bytes(n) as usize),
    };
    n.unwrap_or_else(|| panic!("the server delivered {message:?}, which nobody sent"))
}

/// Drives one engine through the operations the input describes (see the module
/// documentation for the invariants).
pub fn engine(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let ops: Vec<Op> = driver::ops(&mut u);
    if std::env::var_os("VOLLEY_FUZZ_DEBUG").is_some() {
        eprintln!("{setup:#?}\n{ops:#?}");
    }
    let config = setup.config.build("/engine.io/");
    let max_buffered = config.max_buffered_packets;
    let max_bytes = config.max_buffered_bytes;
    let engine = Engine::with_id_generator(config, setup.ids());
    let mut run = Run {
        h: Harness::new(engine, "/engine.io/", Instant::now(), true),
        live: HashSet::new(),
        sent: Vec::new(),
        last: HashMap::new(),
    };
    for op in &ops {
        match op {
            Op::Common(op) => run.h.run(op),
            Op::Send(sel, message) => {
                let sid = run.h.sid(sel);
                let open = run.h.m.contains(sid);
                let now = run.h.now;
                let tagged = tag(run.sent.len(), driver::app_message(message));
                let size = match &tagged {
                    Message::Text(t) => t.len(),
                    Message::Binary(b) => b.len(),
                };
                // The byte budget: refused once reached; the message crossing it is taken.
                let bytes = run.h.m.queued_bytes(sid);
                let full = run.h.m.queued(sid) >= max_buffered || bytes >= max_bytes.max(1);
                run.sent.push((sid, tagged.clone()));
                let result = run.h.m.send(sid, tagged, now);
                match result {
                    Ok(()) => {
                        assert!(open && !full, "sent to {sid} (open {open}, full {full})");
                        let bytes = run.h.m.queued_bytes(sid);
                        assert!(bytes < max_bytes.max(1) + size, "{bytes} bytes queued");
                    }
                    Err(SendError::UnknownSession(s)) => assert!(!open && s == sid),
                    Err(SendError::BufferFull(s)) => assert!(open && full && s == sid),
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Op::Close(sel) => {
                let sid = run.h.sid(sel);
                let now = run.h.now;
                run.h.m.close(sid, now);
            }
        }
        run.settle();
        while run.h.next_deferred() {
            run.settle();
        }
    }
    let (live, sent, last) = (&mut run.live, &run.sent, &mut run.last);
    let mut finish = |h: &mut Harness<Engine>| {
        settle(h, live);
        check_delivered(h, sent, last);
    };
    run.h.close_all(&mut finish);
    run.h.run_out_the_clock(&mut finish);
    assert!(
        run.live.is_empty(),
        "sessions never reported closed: {:?}",
        run.live
    );
}

impl Run {
    fn settle(&mut self) {
        settle(&mut self.h, &mut self.live);
        check_delivered(&mut self.h, &self.sent, &mut self.last);
    }
}

/// Each message reaches the session it was sent to, unchanged, once, in the order sent.
fn check_delivered(
    h: &mut Harness<Engine>,
    sent: &[(Sid, Message)],
    last: &mut HashMap<Sid, usize>,
) {
    for (conn_sid, message) in h.delivered.drain(..) {
        let n = tag_of(&message);
        let (sid, original) = sent.get(n).expect("a tag never handed out");
        let sid = *sid;
        assert_eq!(&message, original, "message {n} changed on the way");
        if let Some(conn_sid) = conn_sid {
            assert_eq!(conn_sid, sid, "message {n} for {sid} went to {conn_sid}");
        }
        if let Some(&before) = last.get(&sid) {
            assert!(n > before, "message {n} for {sid} delivered after {before}");
        }
        last.insert(sid, n);
    }
}

/// Drains events then outputs until both are empty, checking the invariants.
fn settle(h: &mut Harness<Engine>, live: &mut HashSet<Sid>) {
    let mut budget = driver::DRAIN_BUDGET;
    loop {
        let mut n = 0;
        while let Some(event) = h.m.poll_event() {
            n += 1;
            on_event(h, live, event);
        }
        n += h.drain_outputs();
        if n == 0 {
            break;
        }
        budget = budget.checked_sub(n).expect("the engine never goes idle");
    }
    assert_eq!(
        h.m.session_count(),
        live.len(),
        "sessions differ from the events"
    );
    h.check();
}

fn on_event(h: &mut Harness<Engine>, live: &mut HashSet<Sid>, event: Event) {
    match event {
        Event::Open { sid, request, .. } => {
            assert!(live.insert(sid), "{sid} opened twice");
            assert!(h.m.owns(&request));
            h.saw_sid(sid);
        }
        Event::Message { sid, .. } => assert!(live.contains(&sid), "a message for closed {sid}"),
        Event::Upgrade { sid } => {
            assert!(live.contains(&sid), "an upgrade for closed {sid}");
            assert_ne!(h.m.transport(sid), Some(TransportKind::Polling));
        }
        Event::Close { sid, reason } => {
            assert!(live.remove(&sid), "{sid} closed twice ({reason})");
        }
    }
}
