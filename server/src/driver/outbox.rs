//! A connection's outbox: what the machine's task has for the connection's task.
//!
//! Every output for a connection goes through its outbox: before the `101`, the HTTP
//! outputs of its requests (responses, body reads), which the HTTP half takes as they come;
//! after it, the WebSocket frames (and the close), which the writer takes in one batch per
//! wake and writes with one flush. Only these two tasks ever touch an outbox, so its lock is
//! never contended by another connection, and a response costs no allocation on its way.
//!
//! HTTP outputs are bounded by count ([`HTTP_BACKLOG`]): a connection that lets that many
//! wait has stopped taking them, and is dropped. The rest of this applies to frames.
//!
//! The outbox counts the bytes it holds until they are written. A push into an idle outbox
//! (empty, its writer not writing) that stays under [`BUDGET`] lets the machine's task tell
//! the session at once that it may send again: a broadcast costs one push per recipient and
//! no report back. A push while the writer still has work, or over the budget, leaves the
//! session waiting (its packets queue under its own bounds and overflow policy) until the
//! writer has finished and is under the budget, and says so: a busy connection then gets
//! what queued meanwhile in one batch and one write, rather than one write per message. A
//! client that does not read therefore holds at most the budget (plus one batch) here and
//! the session's own bound there.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;
use volley_core::engine::Output;

use super::machine::OwnedSession;

/// Bytes an outbox holds before the session waits for the writer: enough for many
/// broadcasts in flight to one socket, small next to the session's own bound.
pub(crate) const BUDGET: usize = 64 * 1024;

/// HTTP outputs a connection may have waiting. The machine's flow control keeps a
/// well-behaved connection at one or two (one response per request, a body read before it),
/// so reaching this means the connection stopped taking its outputs: it is dropped as a slow
/// client.
pub(crate) const HTTP_BACKLOG: usize = 16;

#[derive(Default)]
struct State {
    /// HTTP outputs (before the `101`) and frames, in order.
    items: VecDeque<Output>,
    /// Bytes pushed and not yet written.
    bytes: usize,
    /// The writer owes the machine's task a drained report once under the budget again.
    owed: bool,
    /// The writer has taken a batch and not finished writing it.
    busy: bool,
    /// No more pushes: the connection was dropped.
    closed: bool,
    /// The machine does not own the request the router let through.
    not_owned: bool,
    /// A session the machine hands to the connection's task: with its `101`, or as the
    /// answer to an ask ([`Move`]).
    owned: Option<Box<dyn OwnedSession>>,
    /// Where a session opened over long-polling stands in its move to this WebSocket's
    /// task, after its upgrade.
    moving: Move,
    /// The reader, waiting for an offer or for the answer to its ask.
    reader: Option<Waker>,
    /// The ticker, waiting for a session to run.
    ticker: Option<Waker>,
}

/// The steps of a session's move to the task of the WebSocket it upgraded to. The machine
/// offers; the reader asks once nothing it read before is still on its way to the
/// machine's task (it reads nothing more meanwhile); the machine answers with the session
/// once it has handed on everything it had for it, or with nothing when the session stays.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    #[default]
    None,
    Offered,
    Asked,
    Answered,
}

/// See the [module](self).
#[derive(Default)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    writer: AtomicWaker,
}

/// What the HTTP half of a connection found in its outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Http {
    /// Outputs, appended to the caller's queue.
    Outputs,
    /// The machine does not own the request: answer it with the fallback.
    NotOwned,
    /// The connection was dropped (or the machine's task ended), and nothing is left.
    Closed,
}

/// An HTTP push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection let [`HTTP_BACKLOG`] outputs wait: it does not take them.
    Backlog,
    /// The connection is gone.
    Closed,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Into an idle outbox, under the budget: the session may send again now.
    Open,
    /// The writer is busy, or the outbox over the budget: the writer reports when it has
    /// written what it holds.
    Full,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a connection's HTTP outputs (in order) and wakes its task.
    pub(crate) fn push_http(
        &self,
        outputs: impl IntoIterator<Item = Output>,
    ) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(Refused::Closed);
            }
            if state.items.len() >= HTTP_BACKLOG {
                return Err(Refused::Backlog);
            }
            state.items.extend(outputs);
        }
        self.writer.wake();
        Ok(())
    }

    /// Hands `owned` to the connection's task, before the `101` that opened it.
    pub(crate) fn hand(&self, owned: Box<dyn OwnedSession>) {
        self.lock().owned = Some(owned);
    }

    /// The session handed to this connection's task, once.
    pub(crate) fn take_owned(&self) -> Option<Box<dyn OwnedSession>> {
        self.lock().owned.take()
    }

    /// Offers the connection's reader to take its session: it may now ask for it.
    pub(crate) fn offer(&self) {
        let reader = {
            let mut state = self.lock();
            if state.closed || state.moving != Move::None {
                return;
            }
            state.moving = Move::Offered;
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// For the reader: whether the session was offered (it is then asked for, once); the
    /// reader's waker is kept for an offer otherwise.
    pub(crate) fn poll_offer(&self, cx: &Context<'_>) -> bool {
        let mut state = self.lock();
        if state.moving == Move::Offered {
            state.moving = Move::Asked;
            return true;
        }
        keep_waker(&mut state.reader, cx);
        false
    }

    /// The machine's answer to the reader's ask: the session, or `None` when it stays.
    pub(crate) fn answer(&self, owned: Option<Box<dyn OwnedSession>>) {
        let reader = {
            let mut state = self.lock();
            if state.closed {
                // Dropped here, after the lock: the connection is gone.
                drop(state);
                drop(owned);
                return;
            }
            state.owned = owned;
            state.moving = Move::Answered;
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// For the reader, after its ask: the session once answered (`None` when it stays, or
    /// when the connection is gone).
    pub(crate) fn poll_answer(&self, cx: &mut Context<'_>) -> Poll<Option<Box<dyn OwnedSession>>> {
        let mut state = self.lock();
        if state.moving == Move::Answered {
            // A session that stays may be offered again.
            state.moving = Move::None;
            return Poll::Ready(state.owned.take());
        }
        if state.closed {
            return Poll::Ready(None);
        }
        keep_waker(&mut state.reader, cx);
        Poll::Pending
    }

    /// For the ticker: keeps its waker for [`wake_ticker`](Self::wake_ticker).
    pub(crate) fn park_ticker(&self, cx: &Context<'_>) {
        keep_waker(&mut self.lock().ticker, cx);
    }

    /// Wakes the ticker parked with [`park_ticker`](Self::park_ticker): the connection's
    /// task now runs a session.
    pub(crate) fn wake_ticker(&self) {
        let ticker = self.lock().ticker.take();
        if let Some(ticker) = ticker {
            ticker.wake();
        }
    }

    /// Tells the connection's task that the machine does not own its request. `false` when
    /// the connection is gone.
    pub(crate) fn not_owned(&self) -> bool {
        {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            state.not_owned = true;
        }
        self.writer.wake();
        true
    }

    /// For the HTTP half: takes everything held into `into` (the frames behind a `101`
    /// too, which the writer then counts as taken), or says the request is not owned or
    /// the connection gone; `Pending` (the task's waker registered) while there is nothing.
    pub(crate) fn poll_take_http(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<Output>,
    ) -> Poll<Http> {
        if let Some(found) = self.try_take_http(into) {
            return Poll::Ready(found);
        }
        self.writer.register(cx.waker());
        match self.try_take_http(into) {
            Some(found) => Poll::Ready(found),
            None => Poll::Pending,
        }
    }

    fn try_take_http(&self, into: &mut VecDeque<Output>) -> Option<Http> {
        let mut state = self.lock();
        if !state.items.is_empty() {
            // Frames taken with the `101` are the writer's first batch.
            if state.items.iter().any(|o| !is_http(o)) {
                state.busy = true;
            }
            if into.is_empty() {
                std::mem::swap(into, &mut state.items);
            } else {
                into.append(&mut state.items);
            }
            Some(Http::Outputs)
        } else if std::mem::take(&mut state.not_owned) {
            Some(Http::NotOwned)
        } else if state.closed {
            Some(Http::Closed)
        } else {
            None
        }
    }

    /// Appends `outputs` (in order) and wakes the writer.
    pub(crate) fn push(&self, outputs: impl IntoIterator<Item = Output>) -> Pushed {
        let pushed = {
            let mut state = self.lock();
            if state.closed {
                return Pushed::Closed;
            }
            // A `101` the HTTP half has not taken yet does not keep the writer busy.
            let idle = state.items.iter().all(is_http) && !state.busy;
            for output in outputs {
                state.bytes += output_len(&output);
                state.items.push_back(output);
            }
            if idle && state.bytes <= BUDGET {
                Pushed::Open
            } else {
                state.owed = true;
                Pushed::Full
            }
        };
        self.writer.wake();
        pushed
    }

    /// Appends a broadcast's copy (`outputs`, `len` bytes) pushed by another task, past the
    /// session's step: only while the outbox stays within [`BUDGET`] with it; `false`
    /// otherwise, or when the connection is gone. Leaves the session's writability (and the
    /// writer's report it may owe) as it was.
    pub(crate) fn push_express(
        &self,
        outputs: impl IntoIterator<Item = Output>,
        len: usize,
    ) -> bool {
        {
            let mut state = self.lock();
            if state.closed || state.bytes + len > BUDGET {
                return false;
            }
            state.bytes += len;
            state.items.extend(outputs);
        }
        self.writer.wake();
        true
    }

    /// Takes everything held into `into`: `Ready(true)` when something was taken,
    /// `Ready(false)` when the outbox is closed and empty, `Pending` (the writer's waker
    /// registered) otherwise.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        into: &mut VecDeque<Output>,
    ) -> Poll<bool> {
        if let Some(taken) = self.try_take(into) {
            return Poll::Ready(taken);
        }
        self.writer.register(cx.waker());
        match self.try_take(into) {
            Some(taken) => Poll::Ready(taken),
            None => Poll::Pending,
        }
    }

    /// [`poll_take`](Self::poll_take) without waiting: `None` when there is nothing yet.
    pub(crate) fn try_take(&self, into: &mut VecDeque<Output>) -> Option<bool> {
        let mut state = self.lock();
        if !state.items.is_empty() {
            if into.is_empty() {
                // The usual case: the buffers trade places, nothing is moved (see
                // `written_giving_back`).
                std::mem::swap(into, &mut state.items);
            } else {
                into.append(&mut state.items);
            }
            state.busy = true;
            Some(true)
        } else if state.closed {
            Some(false)
        } else {
            None
        }
    }

    /// The writer has written `n` of the bytes it took. Returns whether it must now report
    /// to the machine's task that the session may send again.
    #[cfg(test)]
    pub(crate) fn written(&self, n: usize) -> bool {
        self.written_giving_back(n, &mut VecDeque::new())
    }

    /// [`written`](Self::written), the writer handing back its emptied batch buffer
    /// `spare`. While nothing waits here either, both buffers are dropped: a quiet
    /// connection holds none, and the next push makes one (one small allocation per batch
    /// written after a pause). While outputs wait, the two keep trading buffers (`try_take`
    /// swaps them), so a busy connection allocates none per batch.
    pub(crate) fn written_giving_back(&self, n: usize, spare: &mut VecDeque<Output>) -> bool {
        let mut state = self.lock();
        if spare.is_empty() && state.items.is_empty() {
            drop(std::mem::take(spare));
            state.items = VecDeque::new();
        }
        state.bytes = state.bytes.saturating_sub(n);
        state.busy = false;
        if state.owed && state.bytes <= BUDGET {
            state.owed = false;
            true
        } else {
            false
        }
    }

    /// Takes no more pushes; the writer ends once it has taken what is held.
    pub(crate) fn close(&self) {
        let reader = {
            let mut state = self.lock();
            state.closed = true;
            state.reader.take()
        };
        self.writer.wake();
        // A reader waiting for an answer learns that none comes.
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Bytes held and not yet written.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Keeps `cx`'s waker in `slot`, unless the one there wakes the same task.
fn keep_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// Whether `output` belongs to the HTTP half (a response or a body read).
fn is_http(output: &Output) -> bool {
    matches!(output, Output::Response { .. } | Output::ReadBody { .. })
}

/// The bytes an output puts on the wire, near enough for the budgets.
pub(crate) fn output_len(output: &Output) -> usize {
    match output {
        Output::Send { message, .. } => message.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::task::noop_waker;
    use volley_core::ConnId;
    use volley_core::engine::WsMessage;

    fn send(n: usize) -> Output {
        Output::Send {
            conn: ConnId(1),
            message: WsMessage::Binary(Bytes::from(vec![0; n])),
        }
    }

    #[test]
    fn a_push_under_the_budget_lets_the_session_send_at_once() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push([send(10), send(20)]), Pushed::Open);
        assert_eq!(outbox.bytes(), 30);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.try_take(&mut taken), Some(true));
        assert_eq!(taken.len(), 2);
        assert!(!outbox.written(30), "nothing was owed");
        assert_eq!(outbox.bytes(), 0);
    }

    #[test]
    fn over_the_budget_the_writer_owes_one_report_once_under_it_again() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push([send(BUDGET)]), Pushed::Open);
        assert_eq!(outbox.push([send(1)]), Pushed::Full);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.try_take(&mut taken), Some(true));
        // Still over the budget after the first write: no report yet.
        assert!(!outbox.written(0));
        assert!(outbox.written(BUDGET));
        assert!(!outbox.written(1), "reported once");
    }

    #[test]
    fn a_push_while_the_writer_is_busy_waits_for_its_report() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push([send(10)]), Pushed::Open);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.try_take(&mut taken), Some(true));
        // Taken, not yet written: the writer is busy.
        assert_eq!(outbox.push([send(10)]), Pushed::Full);
        assert!(
            outbox.written(10),
            "the report is owed once the batch is out"
        );
        // Idle again (the second push still waits to be taken: not idle yet).
        assert_eq!(outbox.push([send(10)]), Pushed::Full);
        assert_eq!(outbox.try_take(&mut taken), Some(true));
        assert!(outbox.written(20));
        assert_eq!(outbox.push([send(10)]), Pushed::Open);
    }

    #[test]
    fn a_closed_outbox_refuses_pushes_and_ends_the_writer_once_empty() {
        let outbox = Outbox::default();
        outbox.push([send(1)]);
        outbox.close();
        assert_eq!(outbox.push([send(1)]), Pushed::Closed);
        let mut taken = VecDeque::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Ready(true));
        assert_eq!(outbox.poll_take(&mut cx, &mut taken), Poll::Ready(false));
        assert_eq!(taken.len(), 1);
    }

    /// Counts its wakes.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn an_offer_wakes_the_reader_which_asks_once_and_waits_for_the_answer() {
        let outbox = Outbox::default();
        let count = std::sync::Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);

        // Nothing offered: the reader's waker is kept, and the offer wakes it.
        assert!(!outbox.poll_offer(&cx));
        outbox.offer();
        assert_eq!(count.get(), 1);
        // Asked once; a second offer while the ask is under way changes nothing.
        assert!(outbox.poll_offer(&cx));
        assert!(!outbox.poll_offer(&cx));
        outbox.offer();
        assert!(!outbox.poll_offer(&cx));

        // The answer wakes the reader waiting for it; a session that stays may be offered
        // again.
        assert!(outbox.poll_answer(&mut cx).is_pending());
        let before = count.get();
        outbox.answer(None);
        assert_eq!(count.get(), before + 1);
        assert!(matches!(outbox.poll_answer(&mut cx), Poll::Ready(None)));
        outbox.offer();
        assert!(outbox.poll_offer(&cx));

        // A connection dropped while the reader waits: it is woken, and no answer comes.
        assert!(outbox.poll_answer(&mut cx).is_pending());
        let before = count.get();
        outbox.close();
        assert_eq!(count.get(), before + 1);
        assert!(matches!(outbox.poll_answer(&mut cx), Poll::Ready(None)));
        outbox.offer();
        assert!(!outbox.poll_offer(&cx));
    }

    #[test]
    fn the_ticker_is_woken_once_a_session_runs_here() {
        let outbox = Outbox::default();
        let count = std::sync::Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        outbox.wake_ticker();
        assert_eq!(count.get(), 0);
        outbox.park_ticker(&Context::from_waker(&waker));
        outbox.park_ticker(&Context::from_waker(&waker));
        outbox.wake_ticker();
        outbox.wake_ticker();
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn a_quiet_connection_keeps_no_buffer() {
        let outbox = Outbox::default();
        let mut pending = VecDeque::with_capacity(8);
        outbox.push([send(10), send(20)]);
        assert_eq!(outbox.try_take(&mut pending), Some(true));
        assert_eq!(pending.len(), 2);
        // The writer got the outbox's buffer; the outbox its (larger, empty) one.
        assert!(outbox.lock().items.capacity() >= 8);
        pending.clear();
        assert!(!outbox.written_giving_back(30, &mut pending));
        assert_eq!(pending.capacity(), 0, "dropped");
        assert_eq!(outbox.lock().items.capacity(), 0, "dropped");
        // With something still held, both keep theirs.
        outbox.push([send(1)]);
        assert_eq!(outbox.try_take(&mut pending), Some(true));
        outbox.push([send(1)]);
        pending.clear();
        let before = pending.capacity();
        assert!(
            outbox.written_giving_back(1, &mut pending),
            "pushed while busy: owed"
        );
        assert_eq!(pending.capacity(), before);
        // A writer that still has work (outputs taken during a stall) keeps its buffer.
        let mut more = VecDeque::from([send(1)]);
        assert_eq!(outbox.try_take(&mut more), Some(true), "appended behind");
        assert_eq!(more.len(), 2);
        assert!(!outbox.written_giving_back(2, &mut more));
        assert_eq!(more.len(), 2);
        assert_eq!(outbox.bytes(), 0);
    }

    fn response(status: u16) -> Output {
        Output::Response {
            conn: ConnId(1),
            response: volley_core::http::Response::new(status),
        }
    }

    #[test]
    fn http_outputs_are_taken_in_order_and_bounded_by_count() {
        let outbox = Outbox::default();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        assert!(outbox.poll_take_http(&mut cx, &mut taken).is_pending());
        assert_eq!(outbox.push_http([response(200)]), Ok(()));
        assert_eq!(
            outbox.poll_take_http(&mut cx, &mut taken),
            Poll::Ready(Http::Outputs)
        );
        assert_eq!(taken.len(), 1);
        // A request the machine does not own is said once.
        assert!(outbox.not_owned());
        assert_eq!(
            outbox.poll_take_http(&mut cx, &mut taken),
            Poll::Ready(Http::NotOwned)
        );
        assert!(outbox.poll_take_http(&mut cx, &mut taken).is_pending());
        // Outputs nobody takes: the backlog refuses the next push.
        for _ in 0..HTTP_BACKLOG {
            assert_eq!(outbox.push_http([response(200)]), Ok(()));
        }
        assert_eq!(outbox.push_http([response(200)]), Err(Refused::Backlog));
        outbox.close();
        assert_eq!(outbox.push_http([response(200)]), Err(Refused::Closed));
        assert!(!outbox.not_owned());
        // What was held is still taken, then the end.
        taken.clear();
        assert_eq!(
            outbox.poll_take_http(&mut cx, &mut taken),
            Poll::Ready(Http::Outputs)
        );
        assert_eq!(taken.len(), HTTP_BACKLOG);
        assert_eq!(
            outbox.poll_take_http(&mut cx, &mut taken),
            Poll::Ready(Http::Closed)
        );
    }

    #[test]
    fn frames_behind_a_101_not_yet_taken_find_the_outbox_idle_and_go_with_it() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push_http([response(101)]), Ok(()));
        assert_eq!(outbox.push([send(10)]), Pushed::Open);
        let mut taken = VecDeque::new();
        assert_eq!(outbox.try_take_http(&mut taken), Some(Http::Outputs));
        assert_eq!(taken.len(), 2);
        // The frame went with the 101: the writer is busy with it until it has written it.
        assert_eq!(outbox.push([send(10)]), Pushed::Full);
        assert!(outbox.written(10));
        // A 101 alone leaves the writer idle.
        let outbox = Outbox::default();
        assert_eq!(outbox.push_http([response(101)]), Ok(()));
        assert_eq!(outbox.try_take_http(&mut taken), Some(Http::Outputs));
        assert_eq!(outbox.push([send(10)]), Pushed::Open);
    }

    #[test]
    fn an_empty_outbox_waits() {
        let outbox = Outbox::default();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut taken = VecDeque::new();
        assert!(outbox.poll_take(&mut cx, &mut taken).is_pending());
    }
}
