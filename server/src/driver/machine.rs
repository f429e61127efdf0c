//! The shape of a sans-IO machine the driver can serve.
//!
//! [`Machine`] is `volley_core::engine::Engine`'s input/output contract written as a trait, so
//! the same driver serves the bare Engine.IO machine and the Socket.IO layer built on it (which
//! keeps the same inputs and outputs and adds its own events). Outputs are the engine's
//! [`Output`] type because they are what a connection must do, whichever layer asked.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use volley_core::engine::{ApiMisuse, Body, Engine, Output, SessionRequest, WsMessage};
use volley_core::http::RequestHead;
use volley_core::{ConnId, Sid};

/// A sans-IO machine: inputs (`handle_*`), outputs (`poll_*`) and the routing question.
///
/// The driver calls it from one task only (see the [driver](super) docs), in the core's drain
/// order: after each batch of inputs, every [`poll_event`](Machine::poll_event), then every
/// [`poll_output`](Machine::poll_output), then [`poll_timeout`](Machine::poll_timeout).
pub trait Machine: Send + 'static {
    /// What the application sees (`volley_core::engine::Event` for the engine).
    type Event: Send + 'static;
    /// A contract violation by the caller. The driver never commits one knowingly; races it
    /// cannot see (a message read from a WebSocket the machine has just closed) surface here
    /// and are logged at debug level.
    type Misuse: fmt::Display + Send + 'static;

    /// Whether `head` is addressed to the machine. Requests it does not own go to the
    /// driver's fallback handler. Authoritative: asked on the machine's task.
    fn owns(&self, head: &RequestHead) -> bool;

    /// A cheap, thread-safe copy of the routing rule, so connection tasks can send requests
    /// that are not the machine's to the fallback without a round trip to the machine's task.
    /// It may over-approximate ([`Router::all`]); [`owns`](Machine::owns) has the last word.
    fn router(&self) -> Router {
        Router::all()
    }

    /// The largest WebSocket message the machine accepts; the driver's WebSocket codec stops
    /// reading a larger one before buffering it.
    fn max_message_size(&self) -> usize;

    /// The most bytes of unwritten output a WebSocket connection may hold before the driver
    /// stops reading from its peer (so TCP pushes back on a client that sends without
    /// reading). The engine's [`max_buffered_bytes`](volley_core::engine::Config) by default.
    fn max_buffered_bytes(&self) -> usize {
        volley_core::engine::Config::default().max_buffered_bytes
    }

    /// An HTTP request head arrived on `conn`.
    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), Self::Misuse>;

    /// The body asked for by [`Output::ReadBody`].
    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), Self::Misuse>;

    /// A WebSocket message arrived on `conn`.
    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), Self::Misuse>;

    /// Every [`Output::Send`] handed out for `conn` so far has been written.
    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant);

    /// `conn` ended (`error`: it failed rather than closed). Safe for unknown connections.
    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant);

    /// Runs what is due at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// The next thing to do on a connection.
    fn poll_output(&mut self) -> Option<Output>;

    /// The next thing the application must see.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When [`handle_timeout`](Machine::handle_timeout) is due next.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Open sessions, for the connection gauges (`None`: the machine does not count them).
    fn session_count(&self) -> Option<usize> {
        None
    }

    /// A session the machine hands to `conn`'s own task with the `101` it answered there:
    /// from then on that task runs it, and sends the machine nothing but the end of the
    /// connection. Asked before the `101` is handed to the connection.
    fn take_owned(&mut self, conn: ConnId) -> Option<Box<dyn OwnedSession>> {
        let _ = conn;
        None
    }

    /// Appends to `into` the WebSocket connections whose session may now move to the
    /// connection's own task (it upgraded there from long-polling): the driver offers it
    /// to each, which asks for it ([`handle_adopt`](Machine::handle_adopt)) once nothing it
    /// read before is on its way. Asked once after every drain.
    fn take_offers(&mut self, into: &mut Vec<ConnId>) {
        let _ = into;
    }

    /// `conn`, offered its session, asks for it: everything it sent before has arrived.
    fn handle_adopt(&mut self, conn: ConnId, now: Instant) {
        let _ = (conn, now);
    }

    /// The answer to one ask: the session, from now on run by the connection's task, or
    /// `None` when it stays here. Asked only after a drain that left no event and no output
    /// waiting, so that everything the machine had for the session went first.
    fn take_adopted(&mut self, now: Instant) -> Option<(ConnId, Option<Box<dyn OwnedSession>>)> {
        let _ = now;
        None
    }

    /// A long-polling session the handshake on `conn` just opened, taken out to run in a
    /// slot of its own ([`slot`](super::slot)): from then on the requests naming it are
    /// applied to it by the tasks that read them. Asked before the handshake's answer is
    /// handed to the connection.
    fn take_slot(&mut self, conn: ConnId) -> Option<(Sid, Box<dyn OwnedSession>)> {
        let _ = conn;
        None
    }

    /// The engine configuration the requests of sessions run in slots are routed with, as
    /// the machine's endpoint routes them; `None` (the default) for a machine that puts no
    /// session in a slot ([`take_slot`](Machine::take_slot)).
    fn slot_config(&self) -> Option<volley_core::engine::Config> {
        None
    }
}

/// A WebSocket session run by its connection's task ([`Machine::take_owned`]). The task
/// feeds it what it reads, writes what it outputs, and wakes it for its deadline and for
/// the commands other tasks send it.
pub trait OwnedSession: Send + 'static {
    /// A message arrived.
    fn handle_ws_message(&mut self, message: WsMessage, now: Instant);

    /// Every [`Output::Send`] handed out so far has been taken by the writer.
    fn handle_ws_drained(&mut self, now: Instant);

    /// The connection ended (`error`: it failed rather than closed).
    fn handle_closed(&mut self, error: bool, now: Instant);

    /// Runs what is due at `now`, and the commands that arrived.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](OwnedSession::handle_timeout) is due next.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether commands wait; otherwise `cx` is woken by the next one.
    fn poll_commands(&mut self, cx: &mut std::task::Context<'_>) -> bool;

    /// The next thing to do on the connection (frames, then the close).
    fn poll_output(&mut self) -> Option<Output>;

    /// The connection's task runs the session from now on; `outbox` is where its frames go.
    fn attach(&mut self, outbox: ConnOutbox) {
        let _ = outbox;
    }

    /// Everything the session output so far is in the connection's outbox. A session whose
    /// [`poll_timeout`](OwnedSession::poll_timeout) moved since it was last asked wakes the
    /// waker [`poll_commands`](OwnedSession::poll_commands) registered: the task asks for
    /// the deadline only when that waker or its timer fired.
    fn flushed(&mut self) {}

    // A session run in a slot ([`Machine::take_slot`]) is reached by several connections:
    // each input names its own.

    /// A request the endpoint routed to this session arrived on `conn`.
    fn handle_conn_request(
        &mut self,
        conn: ConnId,
        request: &SessionRequest,
        head: &RequestHead,
        now: Instant,
    ) {
        let _ = (conn, request, head, now);
    }

    /// The body asked for on `conn` by [`Output::ReadBody`].
    fn handle_conn_body(&mut self, conn: ConnId, body: Body, now: Instant) {
        let _ = (conn, body, now);
    }

    /// A message arrived on WebSocket `conn` (an upgrade's probe).
    fn handle_conn_message(&mut self, conn: ConnId, message: WsMessage, now: Instant) {
        let _ = (conn, message, now);
    }

    /// Every [`Output::Send`] for `conn` so far has been taken by its writer.
    fn handle_conn_drained(&mut self, conn: ConnId, now: Instant) {
        let _ = (conn, now);
    }

    /// `conn` ended (`error`: it failed rather than closed).
    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        let _ = (conn, error, now);
    }

    /// Whether the session may now go to the task of WebSocket `conn`: upgraded there,
    /// held by it alone, with no connect request pending.
    fn movable_to(&self, conn: ConnId) -> bool {
        let _ = conn;
        false
    }

    /// The session goes to the task of WebSocket `conn` ([`movable_to`](Self::movable_to)).
    fn move_to(&mut self, conn: ConnId) {
        let _ = conn;
    }

    /// Whether the session has ended: nothing more comes of it.
    fn is_ended(&self) -> bool {
        false
    }
}

/// The outbox of a connection whose task runs a session ([`OwnedSession::attach`]): other
/// tasks may push a broadcast's copies straight into it while the session is idle.
#[derive(Clone)]
pub struct ConnOutbox(pub(crate) std::sync::Arc<super::outbox::Outbox>);

impl fmt::Debug for ConnOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnOutbox")
    }
}

/// A thread-safe request filter: "might this request belong to the machine?".
///
/// Built from the machine's configuration once, when the driver starts, and shared by every
/// connection task.
#[derive(Clone)]
pub struct Router(Option<Filter>);

type Filter = Arc<dyn Fn(&RequestHead) -> bool + Send + Sync>;

impl Router {
    /// Sends every request to the machine, which decides with [`Machine::owns`].
    pub fn all() -> Self {
        Router(None)
    }

    /// A filter; `false` sends the request to the fallback without asking the machine.
    pub fn new(f: impl Fn(&RequestHead) -> bool + Send + Sync + 'static) -> Self {
        Router(Some(Arc::new(f)))
    }

    /// Whether the request may be the machine's.
    pub fn may_own(&self, head: &RequestHead) -> bool {
        self.0.as_ref().is_none_or(|f| f(head))
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Router(filter)"
        } else {
            "Router(all)"
        })
    }
}

impl Machine for Engine {
    type Event = volley_core::engine::Event;
    type Misuse = ApiMisuse;

    fn owns(&self, head: &RequestHead) -> bool {
        Engine::owns(self, head)
    }

    fn router(&self) -> Router {
        // The engine routes by path alone, and its configuration is fixed once built.
        let config = self.config().clone();
        Router::new(move |head| config.matches_path(head.path()))
    }

    fn max_message_size(&self) -> usize {
        self.config().max_payload
    }

    fn max_buffered_bytes(&self) -> usize {
        self.config().max_buffered_bytes
    }

    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        Engine::handle_request(self, conn, head, now)
    }

    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse> {
        Engine::handle_body(self, conn, body, now)
    }

    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse> {
        Engine::handle_ws_message(self, conn, message, now)
    }

    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
        Engine::handle_ws_drained(self, conn, now);
    }

    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
        Engine::handle_conn_closed(self, conn, error, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Engine::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        Engine::poll_output(self)
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        Engine::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Engine::poll_timeout(self)
    }

    fn session_count(&self) -> Option<usize> {
        Some(Engine::session_count(self))
    }
}
