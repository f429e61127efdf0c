//! The machine's task: the one place the machine lives, fed by its inbox and a channel of
//! commands.
//!
//! Why an actor and not a mutex: every input ends in a drain (events, then outputs), and the
//! drain must not interleave with another input's, so a lock would be held across the whole
//! step anyway, and every connection task would contend for it. One task that owns the
//! machine applies inputs in arrival order, drains, and routes each output to its
//! connection's own outbox; the queues' locks are held only to push or pop, never while the
//! machine works, and the machine needs no `Sync`.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::Shared;
use futures::{FutureExt, StreamExt};
use volley_core::engine::{Body, Output, WsMessage};
use volley_core::http::RequestHead;
use volley_core::{ConnId, IdMap};

use super::inbox::{InputReceiver, InputSender, inbox};
use super::machine::Machine;
use super::outbox::{Outbox, Pushed, Refused};
use super::slot::Slots;
use crate::runtime::Runtime;
use tracing::Instrument;

/// Inputs applied per turn before draining: a flood of inputs still yields to the drain.
const INPUT_BUDGET: usize = 128;
/// Events handed to the application per turn.
const EVENT_BUDGET: usize = 256;
/// Outputs routed per turn. A session flushing a long queue spreads over several turns, and
/// other tasks on the executor thread run in between.
const OUTPUT_BUDGET: usize = 1024;

/// A connection task's message to the machine.
pub(crate) enum Input {
    /// The connection wants outputs: from now on, what the machine says for `conn` goes to
    /// `outbox`. Sent before the connection's first request to the machine.
    Open {
        conn: ConnId,
        outbox: Arc<Outbox>,
    },
    Request {
        conn: ConnId,
        head: RequestHead,
        /// The whole body, when it came with the head (a `Content-Length` body already in
        /// the connection's buffer, within the machine's limit): it is handed to the machine
        /// when it asks for it, so the connection is not asked in a round trip of its own.
        body: Option<Bytes>,
    },
    Body {
        conn: ConnId,
        body: Body,
    },
    WsMessage {
        conn: ConnId,
        message: WsMessage,
    },
    /// Messages the connection had read at once, in order: one crossing for all of them.
    WsMessages {
        conn: ConnId,
        messages: Vec<WsMessage>,
    },
    WsDrained {
        conn: ConnId,
    },
    /// The connection, offered its session, asks for it (see [`Machine::take_offers`]).
    Adopt {
        conn: ConnId,
    },
    /// The connection ended; it receives nothing more.
    Closed {
        conn: ConnId,
        error: bool,
    },
}

type Command<M> = Box<dyn FnOnce(&mut M, Instant) + Send>;

/// Numbers actors, so that a handle knows whether the event callback running on its thread
/// is its own actor's.
static NEXT_ACTOR: AtomicU64 = AtomicU64::new(1);

/// Commands held back while an actor's event callback runs.
struct Local<M> {
    commands: Vec<Command<M>>,
    /// The way into the actor's channel, taken from the first handle that cast: the commands
    /// go there instead if the channel is too busy to be emptied first.
    sender: Option<mpsc::UnboundedSender<Command<M>>>,
}

thread_local! {
    /// The actor whose event callback runs on this thread, with its [`Local`] (type-erased:
    /// a thread may run actors of several machine types).
    static LOCAL: RefCell<Lent> = const { RefCell::new(None) };
}

type Lent = Option<(u64, Box<dyn Any + Send>)>;

/// Puts back what [`LOCAL`] held before an event callback, also when the callback panics
/// (the actor then stops, and later casts on this thread must not be held for it).
struct Restore(Option<Lent>);

impl Restore {
    /// Puts the outer value back and returns what the callback left.
    fn finish(mut self) -> Lent {
        let outer = self.0.take().flatten();
        LOCAL.with(|local| local.replace(outer))
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(outer) = self.0.take() {
            LOCAL.with(|local| {
                if let Ok(mut local) = local.try_borrow_mut() {
                    *local = outer;
                }
            });
        }
    }
}

/// Commands of the channel run before the held-back ones: at most this many, then the
/// held-back commands take the channel too.
const CATCH_UP_BUDGET: usize = 1024;

/// The driver has stopped: its task ended (every handle and connection was dropped, or the
/// event callback panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the driver has stopped")
    }
}

impl std::error::Error for Stopped {}

/// Runs commands on the machine from any task.
///
/// Commands go through an unbounded queue so [`cast`](Handle::cast) can be called from
/// synchronous code (an `emit` in a handler); [`call`](Handle::call) waits for its result and
/// so paces its caller. Whatever a command makes the machine emit is drained and delivered
/// exactly like the outputs of a connection's input.
///
/// The closure runs on the machine's task: keep it short and never block in it.
///
/// A command cast from the machine's own task while it hands an event to the application
/// (an event handler the machine polls there, see the event callback) does not go through
/// the queue: it runs right after the callback returns, behind every command already
/// queued, so its effects leave in the same turn and in the same order.
pub struct Handle<M> {
    commands: mpsc::UnboundedSender<Command<M>>,
    actor: u64,
    /// Commands cast and not yet run with the rest of their turn (see
    /// [`is_idle`](Handle::is_idle)).
    pending: Arc<AtomicUsize>,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            commands: self.commands.clone(),
            actor: self.actor,
            pending: self.pending.clone(),
        }
    }
}

impl<M> fmt::Debug for Handle<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("running", &self.is_running())
            .finish()
    }
}

impl<M: Machine + 'static> Handle<M> {
    /// Runs `f` on the machine and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut M, Instant) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.cast(move |machine, now| {
            // The caller may have gone; the command still ran.
            let _ = tx.send(f(machine, now));
        })?;
        rx.await.map_err(|_| Stopped)
    }

    /// Queues `f` to run on the machine, without waiting for it.
    pub fn cast(&self, f: impl FnOnce(&mut M, Instant) + Send + 'static) -> Result<(), Stopped> {
        let command: Command<M> = Box::new(f);
        self.pending.fetch_add(1, Ordering::SeqCst);
        let sent = match self.hold_back(command) {
            None => Ok(()),
            Some(command) => self.commands.unbounded_send(command).map_err(|_| Stopped),
        };
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Whether nothing cast to the machine waits or runs: every command cast so far, from any
    /// thread, has run, and the turn that ran it has handed out its outputs. What a caller
    /// sends elsewhere now cannot overtake anything it cast before.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.load(Ordering::SeqCst) == 0
    }

    /// Keeps `command` for the actor if its event callback runs on this thread; gives it
    /// back otherwise.
    fn hold_back(&self, command: Command<M>) -> Option<Command<M>> {
        LOCAL.with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return Some(command);
            };
            match local.as_mut() {
                Some((actor, held)) if *actor == self.actor => {
                    match held.downcast_mut::<Local<M>>() {
                        Some(held) => {
                            if held.sender.is_none() {
                                held.sender = Some(self.commands.clone());
                            }
                            held.commands.push(command);
                            None
                        }
                        None => Some(command),
                    }
                }
                _ => Some(command),
            }
        })
    }
}

impl<M> Handle<M> {
    /// Whether the machine's task still runs.
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }
}

/// What woke the task.
enum Wake<M> {
    Input(Input),
    Command(Command<M>),
    Timer,
    Stop,
}

/// Where a connection's outputs go: its outbox, where HTTP outputs are counted against
/// the backlog until the `101`, and frames against the byte budget after it.
struct Route {
    outbox: Arc<Outbox>,
    websocket: bool,
    /// The body sent with the connection's last request, until the machine asks for it.
    early: Option<Bytes>,
}

impl Drop for Route {
    /// A connection forgotten, or the machine's task ended: its WebSocket writer, which
    /// waits on the outbox alone, stops once it has written what is held.
    fn drop(&mut self) {
        self.outbox.close();
    }
}

pub(crate) struct Actor<M, R: Runtime, F> {
    machine: M,
    runtime: R,
    on_event: F,
    inputs: InputReceiver,
    commands: mpsc::UnboundedReceiver<Command<M>>,
    inputs_open: bool,
    commands_open: bool,
    /// Where each registered connection's outputs go.
    conns: IdMap<ConnId, Route>,
    /// WebSocket connections whose session may send again, found by the current drain.
    drained: Vec<ConnId>,
    /// The connections offered their session in a drain (a buffer kept between drains).
    offers: Vec<ConnId>,
    /// Outputs of the current drain with their connection, sorted by connection (stably, so
    /// each connection's stay in order) before delivery; the allocation is kept across turns.
    staged: Vec<(ConnId, Output)>,
    timer: Option<(Instant, Pin<Box<R::Sleep>>)>,
    /// This actor's number (see [`Handle::cast`]).
    id: u64,
    /// The [`Local`] lent to [`LOCAL`] while the event callback runs (kept across events).
    local: Option<Box<dyn Any + Send>>,
    /// The handles' count of commands cast and not yet done with ([`Handle::is_idle`]), and
    /// how many of them this turn ran: counted off once the turn's outputs are handed out.
    pending: Arc<AtomicUsize>,
    ran: usize,
    metrics: super::metrics::DriverMetrics,
    /// Fired to stop the task whatever handles remain.
    halted: Option<Shared<oneshot::Receiver<()>>>,
    /// The same signal, for the tasks of the slots this task fills.
    halt: Shared<oneshot::Receiver<()>>,
    /// The long-polling sessions run outside the machine, by id.
    slots: Arc<Slots>,
}

/// The signal that stops the machine's task, and the tasks started for it, for good.
pub(crate) struct Halt {
    tx: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    rx: Shared<oneshot::Receiver<()>>,
}

impl Halt {
    pub(crate) fn new() -> Self {
        let (tx, rx) = oneshot::channel();
        Halt {
            tx: std::sync::Mutex::new(Some(tx)),
            rx: rx.shared(),
        }
    }

    /// Fires the signal (again: nothing more).
    pub(crate) fn fire(&self) {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    }

    /// Completes once the signal fired (never, if the `Halt` is dropped unfired).
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let rx = self.rx.clone();
        async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl<M, R, F> Actor<M, R, F>
where
    M: Machine + Send + 'static,
    R: Runtime,
    F: FnMut(&mut M, M::Event, Instant) + Send + 'static,
{
    pub(crate) fn new(
        machine: M,
        runtime: R,
        on_event: F,
        halt: &Halt,
        slots: Arc<Slots>,
    ) -> (Self, InputSender, Handle<M>) {
        let (input_tx, inputs) = inbox();
        let (commands_tx, commands) = mpsc::unbounded();
        let id = NEXT_ACTOR.fetch_add(1, Ordering::Relaxed);
        let actor = Actor {
            machine,
            runtime,
            on_event,
            inputs,
            commands,
            inputs_open: true,
            commands_open: true,
            halted: Some(halt.rx.clone()),
            halt: halt.rx.clone(),
            slots,
            conns: IdMap::default(),
            drained: Vec::new(),
            offers: Vec::new(),
            staged: Vec::new(),
            timer: None,
            id,
            local: Some(Box::new(Local::<M> {
                commands: Vec::new(),
                sender: None,
            })),
            metrics: Default::default(),
            pending: Arc::new(AtomicUsize::new(0)),
            ran: 0,
        };
        let handle = Handle {
            commands: commands_tx,
            actor: id,
            pending: actor.pending.clone(),
        };
        (actor, input_tx, handle)
    }

    /// Runs until every input sender and every handle is gone.
    pub(crate) async fn run(mut self) {
        let mut more = false;
        loop {
            let woke = if more {
                // A budget ran out: let other tasks run, then carry on without waiting.
                yield_now().await;
                None
            } else {
                self.arm_timer();
                match poll_fn(|cx| self.poll_wake(cx)).await {
                    Wake::Stop => break,
                    Wake::Timer => None,
                    wake => Some(wake),
                }
            };
            let now = self.runtime.now();
            let mut budget = INPUT_BUDGET;
            match woke {
                Some(Wake::Input(input)) => {
                    self.apply(input, now);
                    budget -= 1;
                }
                Some(Wake::Command(command)) => {
                    command(&mut self.machine, now);
                    self.ran += 1;
                    budget -= 1;
                }
                _ => {}
            }
            while budget > 0 {
                let mut progressed = false;
                if let Some(input) = self.inputs.try_recv() {
                    self.apply(input, now);
                    budget -= 1;
                    progressed = true;
                }
                if let Ok(command) = self.commands.try_recv() {
                    command(&mut self.machine, now);
                    self.ran += 1;
                    budget = budget.saturating_sub(1);
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                self.machine.handle_timeout(now);
            }
            more = budget == 0;
            more |= self.drain(now);
            if self.ran > 0 {
                self.pending
                    .fetch_sub(std::mem::take(&mut self.ran), Ordering::SeqCst);
            }
        }
        tracing::debug!(connections = self.conns.len(), "driver stopped");
    }

    /// Re-arms the timer when the machine's deadline moved.
    fn arm_timer(&mut self) {
        let next = self.machine.poll_timeout();
        if self.timer.as_ref().map(|(t, _)| *t) != next {
            self.timer = next.map(|t| (t, Box::pin(self.runtime.sleep_until(t))));
        }
    }

    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Wake<M>> {
        if let Some(halted) = self.halted.as_mut() {
            match halted.poll_unpin(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Wake::Stop),
                // A `Halt` dropped unfired stops nothing.
                Poll::Ready(Err(_)) => self.halted = None,
                Poll::Pending => {}
            }
        }
        if self.inputs_open {
            match self.inputs.poll_recv(cx) {
                Poll::Ready(Some(input)) => return Poll::Ready(Wake::Input(input)),
                Poll::Ready(None) => self.inputs_open = false,
                Poll::Pending => {}
            }
        }
        if self.commands_open {
            match self.commands.poll_next_unpin(cx) {
                Poll::Ready(Some(command)) => return Poll::Ready(Wake::Command(command)),
                Poll::Ready(None) => self.commands_open = false,
                Poll::Pending => {}
            }
        }
        if !self.inputs_open && !self.commands_open {
            return Poll::Ready(Wake::Stop);
        }
        if let Some((_, sleep)) = &mut self.timer {
            if sleep.as_mut().poll(cx).is_ready() {
                self.timer = None;
                return Poll::Ready(Wake::Timer);
            }
        }
        Poll::Pending
    }

    fn apply(&mut self, input: Input, now: Instant) {
        self.metrics.input(&input);
        match input {
            Input::Open { conn, outbox } => {
                let route = Route {
                    outbox,
                    websocket: false,
                    early: None,
                };
                self.conns.insert(conn, route);
            }
            Input::Request { conn, head, body } => {
                // A body the machine did not ask for before is dropped here.
                if let Some(route) = self.conns.get_mut(&conn) {
                    route.early = body;
                }
                if !self.machine.owns(&head) {
                    let sent = self
                        .conns
                        .get(&conn)
                        .is_some_and(|route| route.outbox.not_owned());
                    if !sent {
                        self.evict(conn, now);
                    }
                } else if let Err(misuse) = self.machine.handle_request(conn, head, now) {
                    tracing::debug!(%conn, %misuse, "request refused by the machine");
                    self.evict(conn, now);
                }
            }
            Input::Body { conn, body } => {
                if let Err(misuse) = self.machine.handle_body(conn, body, now) {
                    tracing::debug!(%conn, %misuse, "body refused by the machine");
                    self.evict(conn, now);
                }
            }
            Input::WsMessage { conn, message } => self.ws_message(conn, message, now),
            Input::WsMessages { conn, messages } => {
                for message in messages {
                    self.ws_message(conn, message, now);
                }
            }
            Input::WsDrained { conn } => self.machine.handle_ws_drained(conn, now),
            Input::Adopt { conn } => self.machine.handle_adopt(conn, now),
            Input::Closed { conn, error } => {
                // Dropping the route closes its outbox.
                self.conns.remove(&conn);
                self.machine.handle_conn_closed(conn, error, now);
            }
        }
    }

    fn ws_message(&mut self, conn: ConnId, message: WsMessage, now: Instant) {
        // A message read just after the machine closed the socket: already handled.
        if let Err(misuse) = self.machine.handle_ws_message(conn, message, now) {
            tracing::debug!(%conn, %misuse, "WebSocket message dropped");
        }
    }

    /// Forgets a connection (dropping its queue ends its task) and tells the machine.
    fn evict(&mut self, conn: ConnId, now: Instant) {
        self.metrics.closed(conn);
        // Dropping the route closes its outbox.
        self.conns.remove(&conn);
        self.machine.handle_conn_closed(conn, true, now);
    }

    /// Events, then outputs, then delivery. Returns whether a budget ran out (or delivery
    /// made more work), so the caller comes back before waiting.
    fn drain(&mut self, now: Instant) -> bool {
        let mut more = false;
        // A budget cut the drain short: events or outputs still wait.
        let mut cut = false;
        let mut events = 0;
        while let Some(event) = self.machine.poll_event() {
            self.hand_over(event, now);
            events += 1;
            if events == EVENT_BUDGET {
                more = true;
                cut = true;
                break;
            }
        }
        let mut outputs = 0;
        let mut evicted = Vec::new();
        let mut fed = false;
        loop {
            while let Some(output) = self.machine.poll_output() {
                if let Output::ReadBody { conn, limit } = output {
                    // The body came with the request: the machine gets it now, and the
                    // connection only learns that it was taken.
                    if let Some(body) = self.conns.get_mut(&conn).and_then(|r| r.early.take()) {
                        let body = match body.len() <= limit {
                            true => Body::Complete(body),
                            false => Body::TooLarge,
                        };
                        self.metrics.body(&body);
                        if let Err(misuse) = self.machine.handle_body(conn, body, now) {
                            tracing::debug!(%conn, %misuse, "body refused by the machine");
                            evicted.push(conn);
                        }
                        // The events it raised are handed over in the next turn.
                        fed = true;
                    }
                }
                self.metrics.output(&output);
                self.staged.push((output_conn(&output), output));
                outputs += 1;
                if outputs == OUTPUT_BUDGET {
                    more = true;
                    cut = true;
                    break;
                }
            }
            if self.staged.is_empty() {
                break;
            }
            let mut staged = std::mem::take(&mut self.staged);
            staged.sort_by_key(|(conn, _)| *conn);
            let mut rest = staged.drain(..).peekable();
            while let Some((conn, first)) = rest.next() {
                // This connection's outputs, in order: one push into its outbox.
                let more = std::iter::from_fn(|| rest.next_if(|(c, _)| *c == conn));
                let batch = std::iter::once(first).chain(more.map(|(_, output)| output));
                self.route(conn, batch, &mut evicted);
            }
            drop(rest);
            self.staged = staged;
            // Sessions whose frames went to an outbox under its budget may send again at
            // once: what they queued meanwhile leaves in this same drain.
            let mut drained = std::mem::take(&mut self.drained);
            for conn in drained.drain(..) {
                self.machine.handle_ws_drained(conn, now);
            }
            // The allocation is kept for the next drain.
            self.drained = drained;
            if more {
                break;
            }
        }
        for conn in evicted {
            self.evict(conn, now);
            more = true;
        }
        more |= fed;
        let mut offers = std::mem::take(&mut self.offers);
        self.machine.take_offers(&mut offers);
        for conn in offers.drain(..) {
            if let Some(route) = self.conns.get(&conn) {
                route.outbox.offer();
            }
        }
        // The allocation is kept for the next drain.
        self.offers = offers;
        if !cut {
            // Everything the machine had is out: the sessions asked for may go, each after
            // what was said on its connection.
            while let Some((conn, owned)) = self.machine.take_adopted(now) {
                match self.conns.get(&conn) {
                    Some(route) => route.outbox.answer(owned),
                    None => drop(owned),
                }
            }
        }
        self.metrics.flush();
        self.metrics
            .gauges(self.machine.session_count(), self.slots.websockets());
        more
    }

    /// Delivers one drain's outputs for `conn` to its outbox: HTTP outputs up to and
    /// including a `101`, then frames and the close.
    fn route(
        &mut self,
        conn: ConnId,
        batch: impl Iterator<Item = Output>,
        evicted: &mut Vec<ConnId>,
    ) {
        let Some(route) = self.conns.get_mut(&conn) else {
            tracing::debug!(%conn, "outputs for a connection that has ended dropped");
            return;
        };
        if route.websocket {
            // The common case: the batch goes to the outbox as it is, with no other copy.
            self.push_frames(conn, batch);
            return;
        }
        if let Some(owned) = self.machine.take_owned(conn) {
            // Ahead of its `101`: the connection's task runs the session from then on.
            route.outbox.hand(owned);
        }
        if let Some((sid, session)) = self.machine.take_slot(conn) {
            // Ahead of its handshake's answer: the requests naming it find it in its slot.
            let slot = self.slots.insert(sid, session);
            let halt = self.halt.clone();
            let halt = async move {
                if halt.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let tick = super::slot::tick(slot, self.runtime.clone(), halt);
            self.runtime
                .spawn(tick.instrument(tracing::debug_span!("slot", sid = %sid)));
        }
        let mut batch = batch.peekable();
        let mut upgraded = false;
        // Up to and including a `101`: HTTP outputs; after it, frames.
        let http = std::iter::from_fn(|| {
            if upgraded {
                return None;
            }
            let output = batch.next()?;
            upgraded =
                matches!(&output, Output::Response { response, .. } if response.status == 101);
            Some(output)
        });
        let pushed = route.outbox.push_http(http);
        route.websocket = upgraded;
        match pushed {
            Ok(()) => {}
            Err(Refused::Backlog) => {
                tracing::debug!(%conn, "connection does not take its outputs: dropped");
                self.metrics.slow_connection();
                evicted.push(conn);
                return;
            }
            Err(Refused::Closed) => {
                self.conns.remove(&conn);
                return;
            }
        }
        if batch.peek().is_some() {
            self.push_frames(conn, batch);
        }
    }

    /// Pushes a WebSocket connection's frames (and close) into its outbox; notes the
    /// connection in `drained` when its session may send again at once.
    fn push_frames(&mut self, conn: ConnId, frames: impl Iterator<Item = Output>) {
        let Some(route) = self.conns.get(&conn) else {
            return;
        };
        let mut sends = false;
        let frames = frames.filter(|o| match o {
            Output::Send { .. } => {
                sends = true;
                true
            }
            Output::Close { .. } => true,
            Output::Response { .. } | Output::ReadBody { .. } => {
                tracing::debug!(%conn, "HTTP output for a WebSocket dropped");
                false
            }
        });
        let pushed = route.outbox.push(frames);
        match pushed {
            Pushed::Open if sends => self.drained.push(conn),
            Pushed::Open | Pushed::Full => {}
            Pushed::Closed => {
                self.conns.remove(&conn);
            }
        }
    }
}

impl<M, R, F> Actor<M, R, F>
where
    M: Machine + Send + 'static,
    R: Runtime,
    F: FnMut(&mut M, M::Event, Instant) + Send + 'static,
{
    /// Runs the event callback, then the commands cast to this actor from inside it.
    fn hand_over(&mut self, event: M::Event, now: Instant) {
        let lent = self.local.take().map(|l| (self.id, l));
        let restore = Restore(Some(LOCAL.with(|local| local.replace(lent))));
        (self.on_event)(&mut self.machine, event, now);
        let Some((_, mut held)) = restore.finish() else {
            return;
        };
        if let Some(local) = held.downcast_mut::<Local<M>>() {
            if !local.commands.is_empty() {
                self.run_held(local, now);
            }
            local.sender = None;
        }
        self.local = Some(held);
    }

    /// Runs held-back commands after those already in the channel, which were cast first
    /// (by other tasks, or by a handler that has since completed on its socket's task).
    fn run_held(&mut self, local: &mut Local<M>, now: Instant) {
        let mut caught_up = false;
        for _ in 0..CATCH_UP_BUDGET {
            match self.commands.try_recv() {
                Ok(command) => {
                    command(&mut self.machine, now);
                    self.ran += 1;
                }
                Err(_) => {
                    caught_up = true;
                    break;
                }
            }
        }
        if caught_up {
            for command in local.commands.drain(..) {
                command(&mut self.machine, now);
                self.ran += 1;
            }
        } else if let Some(sender) = &local.sender {
            // A flood of commands: these queue behind it.
            for command in local.commands.drain(..) {
                let _ = sender.unbounded_send(command);
            }
        }
    }
}

/// The connection an output is for.
pub(super) fn output_conn(output: &Output) -> ConnId {
    match output {
        Output::Response { conn, .. }
        | Output::ReadBody { conn, .. }
        | Output::Send { conn, .. }
        | Output::Close { conn } => *conn,
    }
}

/// Returns `Pending` once, waking itself: a runtime-neutral `yield_now`.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

#[cfg(test)]
mod tests {

    fn no_slots() -> Arc<Slots> {
        Arc::new(Slots::new(None, Instant::now))
    }
    use std::collections::VecDeque;
    use std::pin::pin;
    use std::sync::{Arc, Mutex};

    use futures::executor::block_on;
    use futures::future::{self, Either, select};
    use volley_core::http::{Limits, parse_head};

    use super::super::outbox::{HTTP_BACKLOG, Http};
    use super::*;

    /// A runtime whose timers never fire (the fake machine has no deadlines).
    #[derive(Clone)]
    struct NoTimers;

    impl Runtime for NoTimers {
        type Sleep = future::Pending<()>;

        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
            unreachable!("the tests run the actor themselves")
        }

        fn sleep_until(&self, _: Instant) -> Self::Sleep {
            future::pending()
        }

        fn now(&self) -> Instant {
            Instant::now()
        }
    }

    /// Each request raises event `1`; commands push outputs; closes are recorded.
    #[derive(Default)]
    struct Fake {
        outputs: VecDeque<Output>,
        events: VecDeque<usize>,
        closed: Vec<(ConnId, bool)>,
        drained: usize,
        bodies: Vec<Body>,
    }

    impl Machine for Fake {
        type Event = usize;
        type Misuse = Stopped;

        fn owns(&self, _: &RequestHead) -> bool {
            true
        }
        fn max_message_size(&self) -> usize {
            1024
        }
        fn handle_request(&mut self, _: ConnId, _: RequestHead, _: Instant) -> Result<(), Stopped> {
            self.events.push_back(1);
            Ok(())
        }
        fn handle_body(&mut self, _: ConnId, body: Body, _: Instant) -> Result<(), Stopped> {
            self.bodies.push(body);
            Ok(())
        }
        fn handle_ws_message(
            &mut self,
            _: ConnId,
            _: WsMessage,
            _: Instant,
        ) -> Result<(), Stopped> {
            Ok(())
        }
        fn handle_ws_drained(&mut self, _: ConnId, _: Instant) {
            self.drained += 1;
        }
        fn handle_conn_closed(&mut self, conn: ConnId, error: bool, _: Instant) {
            self.closed.push((conn, error));
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_output(&mut self) -> Option<Output> {
            self.outputs.pop_front()
        }
        fn poll_event(&mut self) -> Option<usize> {
            self.events.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    const CONN: ConnId = ConnId(1);

    /// An output numbered `n`.
    fn numbered(n: usize) -> Output {
        Output::ReadBody {
            conn: CONN,
            limit: n,
        }
    }

    fn number(output: &Output) -> usize {
        match output {
            Output::ReadBody { limit, .. } => *limit,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Runs `test` against a started actor whose events become outputs numbered by the event.
    fn with_actor<T: Future<Output = ()>>(test: impl FnOnce(InputSender, Handle<Fake>) -> T) {
        let on_event = |machine: &mut Fake, event: usize, _: Instant| {
            machine.outputs.push_back(numbered(event));
        };
        let (actor, inputs, handle) = Actor::new(
            Fake::default(),
            NoTimers,
            on_event,
            &Halt::new(),
            no_slots(),
        );
        block_on(async {
            match select(pin!(actor.run()), pin!(test(inputs, handle))).await {
                Either::Right(((), _)) => {}
                Either::Left(((), _)) => panic!("the actor stopped first"),
            }
        });
    }

    async fn open(inputs: &mut InputSender) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::default());
        inputs
            .send(Input::Open {
                conn: CONN,
                outbox: outbox.clone(),
            })
            .await
            .unwrap();
        outbox
    }

    /// What the connection's HTTP half takes at its next wake.
    async fn take(outbox: &Outbox) -> Result<Vec<Output>, Http> {
        let mut taken = VecDeque::new();
        match poll_fn(|cx| outbox.poll_take_http(cx, &mut taken)).await {
            Http::Outputs => Ok(taken.into()),
            other => Err(other),
        }
    }

    async fn batch(outbox: &Outbox) -> Vec<Output> {
        match take(outbox).await {
            Ok(outputs) => outputs,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_are_drained_before_outputs_and_their_commands_reach_the_connection() {
        with_actor(|mut inputs, _handle| async move {
            let rx = open(&mut inputs).await;
            let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
            let (head, _) = parse_head(raw, &Limits::default()).unwrap().unwrap();
            inputs
                .send(Input::Request {
                    conn: CONN,
                    head,
                    body: None,
                })
                .await
                .unwrap();
            let outputs = batch(&rx).await;
            assert_eq!(outputs.iter().map(number).collect::<Vec<_>>(), [1]);
        });
    }

    #[test]
    fn a_body_sent_with_its_request_is_handed_over_when_the_machine_asks() {
        with_actor(|mut inputs, handle| async move {
            let rx = open(&mut inputs).await;
            let raw = b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n";
            let (head, _) = parse_head(raw, &Limits::default()).unwrap().unwrap();
            // Each request asks for a body of at most 1 byte (the fake's event 1).
            for body in [Some("x"), Some("xy"), None] {
                inputs
                    .send(Input::Request {
                        conn: CONN,
                        head: head.clone(),
                        body: body.map(bytes::Bytes::from),
                    })
                    .await
                    .unwrap();
                // The connection still sees the request for the body, in every case.
                assert_eq!(batch(&rx).await.iter().map(number).collect::<Vec<_>>(), [1]);
            }
            let bodies = handle.call(|m, _| m.bodies.clone()).await.unwrap();
            assert_eq!(
                bodies,
                [
                    Body::Complete(bytes::Bytes::from_static(b"x")),
                    Body::TooLarge
                ]
            );
        });
    }

    #[test]
    fn a_cast_from_the_event_callback_runs_in_the_same_turn() {
        let slot: Arc<Mutex<Option<Handle<Fake>>>> = Arc::default();
        let inner = slot.clone();
        let on_event = move |machine: &mut Fake, event: usize, _: Instant| {
            machine.outputs.push_back(numbered(event));
            if let Some(handle) = inner.lock().unwrap().as_ref() {
                handle
                    .cast(move |m: &mut Fake, _| m.outputs.push_back(numbered(event + 100)))
                    .unwrap();
            }
        };
        let (actor, mut inputs, handle) = Actor::new(
            Fake::default(),
            NoTimers,
            on_event,
            &Halt::new(),
            no_slots(),
        );
        *slot.lock().unwrap() = Some(handle.clone());
        let test = async move {
            let rx = open(&mut inputs).await;
            // The command raises event 7, whose callback casts the output 107.
            handle
                .cast(|m: &mut Fake, _| m.events.push_back(7))
                .unwrap();
            assert_eq!(
                batch(&rx).await.iter().map(number).collect::<Vec<_>>(),
                [7, 107]
            );
        };
        block_on(async {
            match select(pin!(actor.run()), pin!(test)).await {
                Either::Right(((), _)) => {}
                Either::Left(((), _)) => panic!("the actor stopped first"),
            }
        });
    }

    #[test]
    fn a_long_drain_is_split_by_the_budget_and_stays_in_order() {
        with_actor(|mut inputs, handle| async move {
            let rx = open(&mut inputs).await;
            let total = 2 * OUTPUT_BUDGET + 100;
            handle
                .cast(move |machine, _| machine.outputs.extend((0..total).map(numbered)))
                .unwrap();
            let mut seen = Vec::new();
            let mut batches = 0;
            while seen.len() < total {
                seen.extend(batch(&rx).await.iter().map(number));
                batches += 1;
            }
            assert_eq!(seen, (0..total).collect::<Vec<_>>());
            assert_eq!(batches, 3);
        });
    }

    #[test]
    fn a_connection_that_does_not_take_its_outputs_is_dropped_and_reported() {
        with_actor(|mut inputs, handle| async move {
            let rx = open(&mut inputs).await;
            // One command per turn, so one push each; nobody takes them.
            for n in 0..HTTP_BACKLOG + 5 {
                handle
                    .call(move |machine, _| machine.outputs.push_back(numbered(n)))
                    .await
                    .unwrap();
            }
            let closed = handle.call(|machine, _| machine.closed.clone()).await;
            assert_eq!(closed.unwrap(), [(CONN, true)]);
            // What was queued before the eviction is still delivered, then the outbox ends.
            assert_eq!(
                batch(&rx).await.iter().map(number).collect::<Vec<_>>(),
                (0..HTTP_BACKLOG).collect::<Vec<_>>()
            );
            assert_eq!(take(&rx).await, Err(Http::Closed));
        });
    }

    /// A WebSocket frame of `n` bytes for [`CONN`].
    fn frame(n: usize) -> Output {
        Output::Send {
            conn: CONN,
            message: WsMessage::Binary(bytes::Bytes::from(vec![0; n])),
        }
    }

    #[test]
    fn frames_after_the_101_go_to_the_outbox_and_the_session_waits_only_while_it_is_over_budget() {
        use super::super::outbox::BUDGET;
        with_actor(|mut inputs, handle| async move {
            let outbox = open(&mut inputs).await;
            let half = BUDGET / 2 + 1;
            handle
                .call(move |m, _| {
                    m.outputs.push_back(Output::Response {
                        conn: CONN,
                        response: volley_core::http::Response::new(101),
                    });
                    m.outputs.push_back(frame(half));
                })
                .await
                .unwrap();
            // The 101 and the frame behind it went to the outbox, and the session was let send
            // again at once: a 101 the HTTP half has not taken does not count as a batch.
            assert_eq!(handle.call(|m, _| m.drained).await.unwrap(), 1);
            assert_eq!(outbox.bytes(), half);
            // A second frame takes the outbox over its budget: the session waits.
            handle
                .call(move |m, _| m.outputs.push_back(frame(half)))
                .await
                .unwrap();
            assert_eq!(handle.call(|m, _| m.drained).await.unwrap(), 1);
            assert_eq!(outbox.bytes(), 2 * half);
            // The HTTP half takes the 101 with both frames behind it, the writer's first
            // batch; once they are written, the report is owed, once.
            let taken = batch(&outbox).await;
            assert!(
                matches!(
                    &taken[..],
                    [
                        Output::Response { .. },
                        Output::Send { .. },
                        Output::Send { .. }
                    ]
                ),
                "{taken:?}"
            );
            let mut more = VecDeque::new();
            assert_eq!(outbox.try_take(&mut more), None, "all taken");
            assert!(outbox.written(2 * half));
            assert!(!outbox.written(0), "reported once");
            inputs.send(Input::WsDrained { conn: CONN }).await.unwrap();
            assert_eq!(handle.call(|m, _| m.drained).await.unwrap(), 2);
        });
    }

    #[test]
    fn the_actor_stops_when_every_sender_is_gone() {
        let (actor, inputs, handle) = Actor::new(
            Fake::default(),
            NoTimers,
            |_, _, _| {},
            &Halt::new(),
            no_slots(),
        );
        let probe = handle.clone();
        drop((inputs, handle));
        assert!(probe.is_running());
        drop(probe);
        block_on(actor.run());
    }

    #[test]
    fn a_handle_reports_a_stopped_driver() {
        let (actor, inputs, handle) = Actor::new(
            Fake::default(),
            NoTimers,
            |_, _, _| {},
            &Halt::new(),
            no_slots(),
        );
        drop((actor, inputs));
        assert!(!handle.is_running());
        assert_eq!(handle.cast(|_, _| {}), Err(Stopped));
        assert_eq!(block_on(handle.call(|_, _| 1)), Err(Stopped));
    }
}
