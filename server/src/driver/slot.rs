//! Long-polling sessions run outside the machine's task, each in a slot of its own.
//!
//! A protocol 5 session opened over long-polling leaves the machine with its handshake
//! ([`Machine::take_slot`](super::Machine::take_slot)): the machine's task puts it in a
//! [`Slot`], and its id in the [`Slots`] table the connection tasks share, before the
//! handshake's answer is handed to the connection, so no request naming it can reach the
//! machine first. From then on:
//!
//! - a connection task that reads a request naming the session applies it to the session
//!   under the slot's lock, and every input of that exchange after it (its body, the end of
//!   the connection, an upgrade's WebSocket frames) likewise ([`Way`]). What the session
//!   outputs goes into the outbox of the connection each output names: a POST's step may
//!   answer the parked GET;
//! - a small task per slot runs the session's deadlines and the commands other tasks send it
//!   ([`tick`]), and ends when the session ends or moves;
//! - once the session has upgraded and its WebSocket alone holds it, that connection's task
//!   is offered it and asks for it, as after an upgrade on the machine's task; the slot
//!   hands it over with everything it output before, and the table forgets it.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures::future::{Either, select};
use volley_core::engine::{Body, Config, ErrorCode, Output, RequestKind, Route};
use volley_core::http::{RequestHead, query_pairs};
use volley_core::{ConnId, IdMap, Sid};

use super::actor::{Input, output_conn};
use super::inbox::{Gone, InputSender};
use super::machine::OwnedSession;
use super::metrics::DriverMetrics;
use super::outbox::{Outbox, Pushed, Refused};
use crate::runtime::Runtime;

/// The sessions run in slots, by id: shared by the connection tasks, which look up the
/// session a request names here before they would send it to the machine's task.
pub(crate) struct Slots {
    table: RwLock<IdMap<Sid, Arc<Slot>>>,
    /// How many slots the table holds, read without its lock: while there are none, no
    /// request is looked up.
    len: AtomicUsize,
    /// The engine's configuration, which routes a request as the machine's endpoint would;
    /// `None` when the machine runs no session in a slot.
    config: Option<Config>,
    /// The driver's clock.
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
    /// WebSocket connections a slot answered a `101` on and that have not ended, for the
    /// connection gauges.
    websockets: AtomicUsize,
}

impl Slots {
    /// A table for a machine whose engine routes requests with `config` (`None`: a machine
    /// that puts no session in a slot), reading the time with `clock`.
    pub(crate) fn new(
        config: Option<Config>,
        clock: impl Fn() -> Instant + Send + Sync + 'static,
    ) -> Self {
        Slots {
            table: RwLock::default(),
            len: AtomicUsize::new(0),
            config,
            clock: Box::new(clock),
            websockets: AtomicUsize::new(0),
        }
    }

    /// The slot of the session `head` names, if one runs it.
    pub(crate) fn find(&self, head: &RequestHead) -> Option<Arc<Slot>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (_, sid) = query_pairs(head.query()).find(|(k, _)| k == "sid")?;
        let sid = Sid::new(&sid).ok()?;
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sid)
            .cloned()
    }

    /// Runs `session` in a slot of its own (its handshake's answer is on its way, from the
    /// machine's task); the slot, for its [`tick`] task.
    pub(crate) fn insert(self: &Arc<Self>, sid: Sid, session: Box<dyn OwnedSession>) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            sid,
            slots: Arc::downgrade(self),
            state: Mutex::new(State {
                session: Some(session),
                left: Left::Ended,
                conns: Vec::new(),
                offered: None,
                ticker: None,
            }),
        });
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.insert(sid, slot.clone());
        self.len.store(table.len(), Ordering::Release);
        slot
    }

    fn remove(&self, sid: Sid) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.remove(&sid);
        self.len.store(table.len(), Ordering::Release);
    }

    /// WebSocket connections opened by slots and not yet ended.
    pub(crate) fn websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }
}

/// One session, and the connections whose exchanges it holds.
pub(crate) struct Slot {
    sid: Sid,
    slots: Weak<Slots>,
    state: Mutex<State>,
}

struct State {
    /// `None` once the session ended or moved to its WebSocket's task.
    session: Option<Box<dyn OwnedSession>>,
    /// Where the session went, once it is not here.
    left: Left,
    /// The connections that reached the session, until their exchange with it ended.
    conns: Vec<Conn>,
    /// The WebSocket that was offered the session, until it asks.
    offered: Option<ConnId>,
    /// The slot's [`tick`] task, woken when the session leaves.
    ticker: Option<Waker>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Left {
    Ended,
    Moved,
}

struct Conn {
    id: ConnId,
    outbox: Arc<Outbox>,
    /// A body that came with the request, handed to the session when it asks for it.
    early: Option<Bytes>,
    /// The connection became a WebSocket (a `101` went out).
    websocket: bool,
}

impl Conn {
    fn new(id: ConnId, outbox: Arc<Outbox>) -> Self {
        Conn {
            id,
            outbox,
            early: None,
            websocket: false,
        }
    }
}

/// Where a connection's inputs go: the machine's task, or the slot of the session its
/// exchange names.
#[derive(Clone)]
pub(crate) enum Way {
    Machine(InputSender),
    Slot(Arc<Slot>),
}

impl Way {
    /// Hands `input` on: queued for the machine's task (waiting while its inbox is full), or
    /// applied to the slot's session now. A plain future holding the input once, as
    /// [`InputSender::send`]'s: a connection's future has room for it at every await.
    pub(crate) fn send(&self, input: Input) -> impl Future<Output = Result<(), Gone>> + '_ {
        let mut input = Some(input);
        poll_fn(move |cx| match self {
            Way::Machine(inputs) => inputs.poll_send(cx, &mut input),
            Way::Slot(slot) => {
                if let Some(input) = input.take() {
                    slot.apply(input);
                }
                Poll::Ready(Ok(()))
            }
        })
    }

    /// [`send`](Self::send) for a small input made again at each try: the future holds no
    /// input.
    pub(crate) fn send_made<'a>(
        &'a self,
        make: impl Fn() -> Input + 'a,
    ) -> impl Future<Output = Result<(), Gone>> + 'a {
        poll_fn(move |cx| match self {
            Way::Machine(inputs) => inputs.poll_send(cx, &mut Some(make())),
            Way::Slot(slot) => {
                slot.apply(make());
                Poll::Ready(Ok(()))
            }
        })
    }

    /// Hands `input` on at once, beyond the inbox's bound if need be.
    pub(crate) fn send_now(&self, input: Input) -> Result<(), Gone> {
        match self {
            Way::Machine(inputs) => inputs.send_now(input),
            Way::Slot(slot) => {
                slot.apply(input);
                Ok(())
            }
        }
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one input of a connection to the session, then hands out what it output.
    pub(crate) fn apply(&self, input: Input) {
        let Some(slots) = self.slots.upgrade() else {
            return;
        };
        let now = (slots.clock)();
        let mut metrics = DriverMetrics::default();
        metrics.input(&input);
        let mut state = self.lock();
        let mut adopt = None;
        match input {
            Input::Open { conn, outbox } => {
                state.conns.retain(|c| c.id != conn);
                state.conns.push(Conn::new(conn, outbox));
            }
            Input::Request { conn, head, body } => {
                if let Some(c) = state.conn(conn) {
                    c.early = body;
                }
                self.request(&mut state, &slots, conn, &head, now, &mut metrics);
            }
            Input::Body { conn, body } => match state.session.as_mut() {
                Some(session) => session.handle_conn_body(conn, body, now),
                None => state.answer(conn, ErrorCode::UnknownSid.response(), &mut metrics),
            },
            Input::WsMessage { conn, message } => {
                if let Some(session) = state.session.as_mut() {
                    session.handle_conn_message(conn, message, now);
                }
            }
            Input::WsMessages { conn, messages } => {
                if let Some(session) = state.session.as_mut() {
                    for message in messages {
                        session.handle_conn_message(conn, message, now);
                    }
                }
            }
            Input::WsDrained { conn } => {
                if let Some(session) = state.session.as_mut() {
                    session.handle_conn_drained(conn, now);
                }
            }
            Input::Adopt { conn } => adopt = Some(conn),
            Input::Closed { conn, error } => {
                if let Some(i) = state.conns.iter().position(|c| c.id == conn) {
                    if state.conns.swap_remove(i).websocket {
                        slots.websockets.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                if let Some(session) = state.session.as_mut() {
                    session.handle_conn_closed(conn, error, now);
                }
            }
        }
        state.flush(now, &slots, &mut metrics);
        if let Some(conn) = adopt {
            state.adopt(conn, self.sid, &slots);
        }
        state.settle(self.sid, &slots);
        metrics.flush();
    }

    /// A request for this slot's session arrived on `conn`.
    fn request(
        &self,
        state: &mut State,
        slots: &Slots,
        conn: ConnId,
        head: &RequestHead,
        now: Instant,
        metrics: &mut DriverMetrics,
    ) {
        let route = match &slots.config {
            Some(config) => config.route(head),
            None => Route::Respond(ErrorCode::BadRequest.response()),
        };
        let request = match route {
            Route::Session(request) if request.sid() == self.sid => request,
            Route::Respond(response) => return state.answer(conn, response, metrics),
            _ => return state.answer(conn, ErrorCode::BadRequest.response(), metrics),
        };
        if let Some(session) = state.session.as_mut() {
            return session.handle_conn_request(conn, &request, head, now);
        }
        let code = match state.left {
            // The session ended: as for any unknown one.
            Left::Ended => ErrorCode::UnknownSid,
            // It runs on its WebSocket's task now: as the session answers a request it
            // cannot serve.
            Left::Moved => ErrorCode::BadRequest,
        };
        let response = match request.kind() == RequestKind::Probe {
            true => code.ws_response(),
            false => code.response(),
        };
        state.answer(conn, response, metrics);
    }

    /// Runs the session's deadlines and the commands that arrived; `false` once the session
    /// is no longer here.
    fn tick_once(&self) -> bool {
        let Some(slots) = self.slots.upgrade() else {
            return false;
        };
        let now = (slots.clock)();
        let mut metrics = DriverMetrics::default();
        let mut state = self.lock();
        let Some(session) = state.session.as_mut() else {
            return false;
        };
        session.handle_timeout(now);
        state.flush(now, &slots, &mut metrics);
        state.settle(self.sid, &slots);
        metrics.flush();
        state.session.is_some()
    }
}

impl State {
    fn conn(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == conn)
    }

    /// Answers the request on `conn` without the session (counted as the machine's task
    /// counts a refusal).
    fn answer(
        &mut self,
        conn: ConnId,
        response: volley_core::http::Response,
        metrics: &mut DriverMetrics,
    ) {
        if let Some(i) = self.conns.iter().position(|c| c.id == conn) {
            let c = self.conns.swap_remove(i);
            let output = Output::Response { conn, response };
            metrics.output(&output);
            let _ = c.outbox.push_http([output]);
        }
    }

    /// Hands what the session output to the connections each output names: HTTP outputs
    /// up to a response (which ends that connection's exchange here, a `101` making it a
    /// WebSocket), frames to a WebSocket. A body the session asks for that came with its
    /// request is handed to it at once, and a WebSocket whose outbox took its frames under
    /// the budget lets the session send again at once.
    fn flush(&mut self, now: Instant, slots: &Slots, metrics: &mut DriverMetrics) {
        let State { session, conns, .. } = self;
        let Some(session) = session.as_mut() else {
            return;
        };
        loop {
            let mut drained = None;
            while let Some(output) = session.poll_output() {
                let conn = output_conn(&output);
                let Some(i) = conns.iter().position(|c| c.id == conn) else {
                    tracing::debug!(%conn, "outputs for a connection that has ended dropped");
                    continue;
                };
                metrics.output(&output);
                let c = &mut conns[i];
                if c.websocket {
                    let sends = matches!(output, Output::Send { .. });
                    match c.outbox.push([output]) {
                        Pushed::Open if sends => drained = Some(conn),
                        Pushed::Open | Pushed::Full => {}
                        Pushed::Closed => {}
                    }
                    continue;
                }
                let early = match &output {
                    Output::ReadBody { limit, .. } => {
                        c.early.take().map(|body| match body.len() <= *limit {
                            true => Body::Complete(body),
                            false => Body::TooLarge,
                        })
                    }
                    _ => None,
                };
                let answered = match &output {
                    Output::Response { response, .. } => Some(response.status == 101),
                    _ => None,
                };
                match c.outbox.push_http([output]) {
                    Ok(()) => match answered {
                        Some(true) => {
                            c.websocket = true;
                            slots.websockets.fetch_add(1, Ordering::Relaxed);
                        }
                        // The exchange is over: a next request on the connection opens
                        // another.
                        Some(false) => {
                            conns.swap_remove(i);
                        }
                        None => {}
                    },
                    Err(refused) => {
                        if refused == Refused::Backlog {
                            tracing::debug!(%conn, "connection does not take its outputs: dropped");
                            metrics.slow_connection();
                        }
                        conns.swap_remove(i);
                        session.handle_conn_closed(conn, true, now);
                        continue;
                    }
                }
                if let Some(body) = early {
                    metrics.body(&body);
                    session.handle_conn_body(conn, body, now);
                }
            }
            match drained {
                Some(conn) => session.handle_conn_drained(conn, now),
                None => break,
            }
        }
        session.flushed();
    }

    /// The WebSocket `conn` asks for the session it was offered: it goes, if it still may,
    /// after everything output before; otherwise it stays here and may be offered again.
    fn adopt(&mut self, conn: ConnId, sid: Sid, slots: &Slots) {
        self.offered = None;
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let outbox = self.conns[i].outbox.clone();
        let movable = self.session.as_ref().is_some_and(|s| s.movable_to(conn));
        if !movable {
            outbox.answer(None);
            return;
        }
        let Some(mut session) = self.session.take() else {
            return;
        };
        session.move_to(conn);
        self.leave(Left::Moved, sid, slots);
        outbox.answer(Some(session));
    }

    /// After a step: a session that ended leaves, and one that may move to its WebSocket's
    /// task is offered to it.
    fn settle(&mut self, sid: Sid, slots: &Slots) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if session.is_ended() {
            self.session = None;
            self.leave(Left::Ended, sid, slots);
            return;
        }
        if self.offered.is_some() {
            return;
        }
        let websocket = self
            .conns
            .iter()
            .find(|c| c.websocket && session.movable_to(c.id));
        if let Some(c) = websocket {
            self.offered = Some(c.id);
            c.outbox.offer();
        }
    }

    fn leave(&mut self, left: Left, sid: Sid, slots: &Slots) {
        self.left = left;
        slots.remove(sid);
        if let Some(ticker) = self.ticker.take() {
            ticker.wake();
        }
    }
}

/// Runs `slot`'s deadlines and the commands other tasks send its session, until the session
/// ends or moves, or `halt` completes (the server stopped: the session is dropped, and its
/// sockets leave as when a connection fails).
pub(crate) async fn tick<R: Runtime>(
    slot: Arc<Slot>,
    runtime: R,
    halt: impl Future<Output = ()> + Send,
) {
    let ticking = async {
        let mut armed: Option<(Instant, Pin<Box<R::Sleep>>)> = None;
        loop {
            let go = poll_fn(|cx| {
                let mut state = slot.lock();
                if !state
                    .ticker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.ticker = Some(cx.waker().clone());
                }
                let Some(session) = state.session.as_mut() else {
                    return Poll::Ready(false);
                };
                if session.poll_commands(cx) {
                    return Poll::Ready(true);
                }
                let Some(due) = session.poll_timeout() else {
                    armed = None;
                    return Poll::Pending;
                };
                drop(state);
                if armed.as_ref().is_none_or(|(at, _)| *at != due) {
                    armed = Some((due, Box::pin(runtime.sleep_until(due))));
                }
                match armed.as_mut() {
                    Some((_, sleep)) => sleep.as_mut().poll(cx).map(|()| true),
                    None => Poll::Pending,
                }
            })
            .await;
            if !go {
                return;
            }
            armed = None;
            if !slot.tick_once() {
                return;
            }
        }
    };
    if let Either::Right(_) = select(std::pin::pin!(ticking), std::pin::pin!(halt)).await {
        let session = {
            let mut state = slot.lock();
            let session = state.session.take();
            if session.is_some() {
                if let Some(slots) = slot.slots.upgrade() {
                    state.leave(Left::Ended, slot.sid, &slots);
                }
            }
            session
        };
        drop(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicBool;
    use std::task::Context;
    use volley_core::engine::{SessionRequest, WsMessage};
    use volley_core::http::{Limits, Response, parse_head};

    /// A session that answers a poll `200 poll`, asks for a POST's body and answers it
    /// `200 <body>`, records what it was told, and ends when the test says so.
    #[derive(Default)]
    struct Recorder {
        outputs: VecDeque<Output>,
        seen: Arc<Mutex<Vec<String>>>,
        ended: Arc<AtomicBool>,
    }

    impl Recorder {
        fn saw(&self, what: String) {
            self.seen.lock().unwrap().push(what);
        }
    }

    impl OwnedSession for Recorder {
        fn handle_ws_message(&mut self, _: WsMessage, _: Instant) {}
        fn handle_ws_drained(&mut self, _: Instant) {}
        fn handle_closed(&mut self, _: bool, _: Instant) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn poll_commands(&mut self, _: &mut Context<'_>) -> bool {
            false
        }
        fn poll_output(&mut self) -> Option<Output> {
            self.outputs.pop_front()
        }

        fn handle_conn_request(
            &mut self,
            conn: ConnId,
            request: &SessionRequest,
            _: &RequestHead,
            _: Instant,
        ) {
            self.saw(format!("{} {:?}", conn.0, request.kind()));
            self.outputs.push_back(match request.kind() {
                RequestKind::Post => Output::ReadBody { conn, limit: 8 },
                _ => Output::Response {
                    conn,
                    response: Response::new(200).body("poll"),
                },
            });
        }

        fn handle_conn_body(&mut self, conn: ConnId, body: Body, _: Instant) {
            let text = match &body {
                Body::Complete(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => format!("{body:?}"),
            };
            self.saw(format!("{} body {text}", conn.0));
            self.outputs.push_back(Output::Response {
                conn,
                response: Response::new(200).body(text),
            });
        }

        fn handle_conn_closed(&mut self, conn: ConnId, error: bool, _: Instant) {
            self.saw(format!("{} closed {error}", conn.0));
        }

        fn is_ended(&self) -> bool {
            self.ended.load(Ordering::SeqCst)
        }
    }

    const SID: &str = "slotted";

    fn head(method: &str, query: &str, body: &str) -> RequestHead {
        let text = format!(
            "{method} /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let (head, _) = parse_head(text.as_bytes(), &Limits::default())
            .expect("a valid head")
            .expect("a complete head");
        head
    }

    fn poll() -> RequestHead {
        head("GET", &format!("EIO=4&transport=polling&sid={SID}"), "")
    }

    /// A table with one slot running a [`Recorder`], what the session saw, and its end
    /// switch.
    struct OneSlot {
        slots: Arc<Slots>,
        slot: Arc<Slot>,
        seen: Arc<Mutex<Vec<String>>>,
        ended: Arc<AtomicBool>,
    }

    fn one_slot() -> OneSlot {
        let slots = Arc::new(Slots::new(Some(Config::default()), Instant::now));
        let session = Recorder::default();
        let (seen, ended) = (session.seen.clone(), session.ended.clone());
        let sid = Sid::new(SID).unwrap();
        let slot = slots.insert(sid, Box::new(session));
        OneSlot {
            slots,
            slot,
            seen,
            ended,
        }
    }

    /// What the connection behind `outbox` was handed, as `status body` or the output's kind.
    fn taken(outbox: &Outbox) -> Vec<String> {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut into = VecDeque::new();
        let _ = outbox.poll_take_http(&mut cx, &mut into);
        into.into_iter()
            .map(|output| match output {
                Output::Response { response, .. } => format!(
                    "{} {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                ),
                Output::ReadBody { limit, .. } => format!("read {limit}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn exchange(slot: &Slot, conn: u64, head: RequestHead, body: Option<&str>) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::default());
        let conn = ConnId(conn);
        slot.apply(Input::Open {
            conn,
            outbox: outbox.clone(),
        });
        let body = body.map(|b| Bytes::from(b.to_owned()));
        slot.apply(Input::Request { conn, head, body });
        outbox
    }

    #[test]
    fn a_request_finds_its_slot_by_the_id_it_names() {
        let empty = Slots::new(Some(Config::default()), Instant::now);
        assert!(
            empty.find(&poll()).is_none(),
            "an empty table looks nothing up"
        );
        let OneSlot { slots, slot, .. } = one_slot();
        let found = slots.find(&poll()).expect("the slot");
        assert!(Arc::ptr_eq(&found, &slot));
        let other = head("GET", "EIO=4&transport=polling&sid=another", "");
        assert!(slots.find(&other).is_none());
        let handshake = head("GET", "EIO=4&transport=polling", "");
        assert!(slots.find(&handshake).is_none());
    }

    #[test]
    fn each_answer_goes_to_the_connection_it_names_and_an_early_body_is_handed_over() {
        let OneSlot {
            slots: _slots,
            slot,
            seen,
            ..
        } = one_slot();
        let polled = exchange(&slot, 1, poll(), None);
        assert_eq!(taken(&polled), ["200 poll"]);
        let query = format!("EIO=4&transport=polling&sid={SID}");
        // A body that came with its request: the session asks, and has it at once.
        let posted = exchange(&slot, 2, head("POST", &query, "4hi"), Some("4hi"));
        assert_eq!(taken(&posted), ["read 8", "200 4hi"]);
        // One over the session's limit comes as too large.
        let big = exchange(
            &slot,
            3,
            head("POST", &query, "4toolarge"),
            Some("4toolarge"),
        );
        assert_eq!(taken(&big), ["read 8", "200 TooLarge"]);
        // An answered exchange is over: the connection's end means nothing to the slot's
        // table of connections, but the session hears of it.
        slot.apply(Input::Closed {
            conn: ConnId(1),
            error: false,
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "1 Poll",
                "2 Post",
                "2 body 4hi",
                "3 Post",
                "3 body TooLarge",
                "1 closed false"
            ]
        );
        assert!(slot.lock().conns.is_empty(), "no exchange is open");
    }

    #[test]
    fn a_request_the_endpoint_refuses_is_answered_by_the_slot() {
        let OneSlot {
            slots: _slots,
            slot,
            seen,
            ..
        } = one_slot();
        let odd = head("GET", &format!("EIO=4&transport=pigeon&sid={SID}"), "");
        let refused = exchange(&slot, 1, odd, None);
        assert_eq!(
            taken(&refused),
            [r#"400 {"code":0,"message":"Transport unknown"}"#]
        );
        assert!(seen.lock().unwrap().is_empty(), "the session never saw it");
    }

    #[test]
    fn an_ended_session_leaves_the_table_and_is_answered_as_unknown() {
        const UNKNOWN: &str = r#"400 {"code":1,"message":"Session ID unknown"}"#;
        let OneSlot {
            slots, slot, ended, ..
        } = one_slot();
        let query = format!("EIO=4&transport=polling&sid={SID}");
        let last = exchange(&slot, 1, poll(), None);
        assert_eq!(taken(&last), ["200 poll"]);
        // A POST whose body the session asked for, not yet read.
        let reading = exchange(&slot, 2, head("POST", &query, "4x"), None);
        assert_eq!(taken(&reading), ["read 8"]);
        ended.store(true, Ordering::SeqCst);
        // The next step sees the end.
        slot.apply(Input::Closed {
            conn: ConnId(1),
            error: false,
        });
        assert!(slots.find(&poll()).is_none(), "the table forgot it");
        // The body still comes: answered as for an unknown session.
        let body = Body::Complete(Bytes::from_static(b"4x"));
        slot.apply(Input::Body {
            conn: ConnId(2),
            body,
        });
        assert_eq!(taken(&reading), [UNKNOWN]);
        // Requests that found the slot before the table forgot it: the same.
        let late = exchange(&slot, 3, poll(), None);
        assert_eq!(taken(&late), [UNKNOWN]);
        let post = exchange(&slot, 4, head("POST", &query, "4x"), Some("4x"));
        assert_eq!(taken(&post), [UNKNOWN]);
    }
}
