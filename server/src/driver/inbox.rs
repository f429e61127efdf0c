//! The machine's inbox: what connection tasks send the machine's task.
//!
//! A bounded queue behind one lock, with the machine task's waker. Unlike a channel that
//! links a node per message, a send moves the input into a ring buffer that keeps its
//! capacity, and a sender is a shared pointer: opening a connection, cloning its sender and
//! sending its requests, bodies and messages allocate nothing in steady state.
//!
//! Bounds: at most [`INPUT_CAPACITY`] inputs wait; a sender that finds the inbox full waits
//! for room, which stops its connection reading its socket. When room frees, every waiting
//! sender is woken to try again (a full inbox is rare, and this way a sender that gave up
//! waiting cannot swallow the wake-up another needs). An input that must not wait (the
//! report that a connection is gone, sent from a destructor) is queued beyond the bound
//! ([`InputSender::send_now`]): there is at most one per connection.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;

use super::actor::Input;

/// Inputs the inbox holds before senders wait. The machine's task empties it in turns of
/// at most `INPUT_BUDGET` inputs, so a full inbox means the machine is behind.
pub(crate) const INPUT_CAPACITY: usize = 256;

struct State {
    queue: VecDeque<Input>,
    /// Senders waiting for room.
    waiting: Vec<Waker>,
    senders: usize,
    /// The receiver was dropped: sends fail.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The machine's task, waiting for an input.
    receiver: AtomicWaker,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The machine's task is gone: the input was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

/// A connection task's way into the inbox. Cloning it allocates nothing.
pub(crate) struct InputSender {
    shared: Arc<Shared>,
}

/// The machine task's end of the inbox.
pub(crate) struct InputReceiver {
    shared: Arc<Shared>,
}

/// A new inbox.
pub(crate) fn inbox() -> (InputSender, InputReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            waiting: Vec::new(),
            senders: 1,
            closed: false,
        }),
        receiver: AtomicWaker::new(),
    });
    (
        InputSender {
            shared: shared.clone(),
        },
        InputReceiver { shared },
    )
}

impl InputSender {
    /// Queues `input`, waiting while the inbox is full.
    pub(crate) fn send(&self, input: Input) -> impl Future<Output = Result<(), Gone>> + '_ {
        // A plain future holding the input once (an `async fn` would hold it twice).
        let mut input = Some(input);
        poll_fn(move |cx| self.poll_send(cx, &mut input))
    }

    /// Queues `input` (taken from the option) unless the inbox is full, in which case the
    /// task is woken when room frees.
    pub(crate) fn poll_send(
        &self,
        cx: &mut Context<'_>,
        input: &mut Option<Input>,
    ) -> Poll<Result<(), Gone>> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Poll::Ready(Err(Gone));
            }
            if state.queue.len() >= INPUT_CAPACITY {
                if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiting.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            if let Some(input) = input.take() {
                state.queue.push_back(input);
            }
        }
        self.shared.receiver.wake();
        Poll::Ready(Ok(()))
    }

    /// Queues `input` at once, beyond the bound if need be: for the one report a connection
    /// makes that it is gone, from places that cannot wait.
    pub(crate) fn send_now(&self, input: Input) -> Result<(), Gone> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(Gone);
            }
            state.queue.push_back(input);
        }
        self.shared.receiver.wake();
        Ok(())
    }
}

impl Clone for InputSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        InputSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for InputSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            // The machine's task learns that no input will come.
            self.shared.receiver.wake();
        }
    }
}

impl InputReceiver {
    /// The next input: `Ready(None)` once every sender is gone and the inbox is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Input>> {
        if let Some(found) = self.next() {
            return Poll::Ready(found);
        }
        self.shared.receiver.register(cx.waker());
        match self.next() {
            Some(found) => Poll::Ready(found),
            None => Poll::Pending,
        }
    }

    /// The next input, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Input> {
        self.next().flatten()
    }

    /// `Some(Some(input))`, `Some(None)` when no input can come any more, `None` for now.
    fn next(&mut self) -> Option<Option<Input>> {
        let (input, waiting) = {
            let mut state = self.shared.lock();
            match state.queue.pop_front() {
                Some(input) => {
                    let waiting = match state.waiting.is_empty() {
                        true => Vec::new(),
                        false => std::mem::take(&mut state.waiting),
                    };
                    (Some(input), waiting)
                }
                None if state.senders == 0 => return Some(None),
                None => return None,
            }
        };
        for waker in waiting {
            waker.wake();
        }
        Some(input)
    }
}

impl Drop for InputReceiver {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.queue.clear();
            std::mem::take(&mut state.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;
    use volley_core::ConnId;

    fn drained(n: u64) -> Input {
        Input::WsDrained { conn: ConnId(n) }
    }

    fn number(input: Option<Input>) -> u64 {
        match input {
            Some(Input::WsDrained { conn }) => conn.0,
            _ => panic!("not a numbered input"),
        }
    }

    #[test]
    fn inputs_arrive_in_order_and_a_full_inbox_makes_senders_wait() {
        let (tx, mut rx) = inbox();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        for n in 0..INPUT_CAPACITY as u64 {
            let mut input = Some(drained(n));
            assert_eq!(tx.poll_send(&mut cx, &mut input), Poll::Ready(Ok(())));
        }
        let mut late = Some(drained(999));
        assert!(tx.poll_send(&mut cx, &mut late).is_pending());
        assert!(late.is_some(), "kept by the waiting sender");
        // A report that cannot wait goes in anyway.
        assert_eq!(tx.send_now(drained(1000)), Ok(()));
        // It counts: one input taken leaves the inbox still full, two make room.
        assert_eq!(number(rx.try_recv()), 0);
        assert!(tx.poll_send(&mut cx, &mut late).is_pending());
        assert_eq!(number(rx.try_recv()), 1);
        assert_eq!(tx.poll_send(&mut cx, &mut late), Poll::Ready(Ok(())));
        for n in 2..INPUT_CAPACITY as u64 {
            assert_eq!(number(rx.try_recv()), n);
        }
        assert_eq!(number(rx.try_recv()), 1000);
        assert_eq!(number(rx.try_recv()), 999);
        assert!(rx.try_recv().is_none());
        assert!(rx.poll_recv(&mut cx).is_pending());
    }

    #[test]
    fn the_receiver_ends_when_every_sender_is_gone_and_senders_fail_without_it() {
        let (tx, mut rx) = inbox();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let other = tx.clone();
        assert_eq!(other.send_now(drained(1)), Ok(()));
        drop(tx);
        drop(other);
        // What was sent is still received, then the end.
        assert_eq!(number(rx.try_recv()), 1);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));

        let (tx, rx) = inbox();
        drop(rx);
        assert_eq!(tx.send_now(drained(1)), Err(Gone));
        let mut input = Some(drained(2));
        assert_eq!(tx.poll_send(&mut cx, &mut input), Poll::Ready(Err(Gone)));
    }
}
