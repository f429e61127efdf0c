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

    /// Whether this is the way to `slot`.
    pub(crate) fn is_slot(&self, slot: &Arc<Slot>) -> bool {
        matches!(self, Way::Slot(s) if Arc::ptr_eq(s, slot))
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
