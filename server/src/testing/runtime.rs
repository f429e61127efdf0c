//! A deterministic runtime: one thread, a simulated clock, tasks run until idle.

use crate::runtime::Runtime;
use futures::task::{ArcWake, waker};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A runtime for tests: tasks run on the calling thread when [`TestRuntime::block_on`] or
/// [`TestRuntime::run_until_idle`] drive them, and time only moves when the test says so or
/// when nothing else can happen (then it jumps to the next timer). Runs are repeatable.
#[derive(Clone)]
pub struct TestRuntime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TestRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("TestRuntime")
            .field("elapsed", &(s.now - s.start))
            .field("ready", &s.ready.len())
            .field("timers", &s.timers.len())
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Every task spawned, to count the ones still alive.
    tasks: Mutex<Vec<Weak<TaskCell>>>,
    next_timer: AtomicU64,
    /// Most simulated time one `block_on` may skip on its own (nanoseconds).
    idle_limit: AtomicU64,
}

/// The default of [`TestRuntime::set_idle_limit`].
const IDLE_LIMIT: Duration = Duration::from_secs(3600);

struct State {
    start: Instant,
    now: Instant,
    ready: VecDeque<Arc<TaskCell>>,
    timers: Vec<(Instant, u64, Waker)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct TaskCell {
    future: Mutex<Option<Task>>,
    queued: AtomicBool,
    shared: Weak<Shared>,
}

impl ArcWake for TaskCell {
    fn wake_by_ref(arc: &Arc<Self>) {
        if !arc.queued.swap(true, Ordering::SeqCst) {
            if let Some(shared) = arc.shared.upgrade() {
                shared.lock().ready.push_back(arc.clone());
            }
        }
    }
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc: &Arc<Self>) {
        arc.0.store(true, Ordering::SeqCst);
    }
}

/// Most task polls in one [`TestRuntime::run_until_idle`]: beyond it, something spins.
const POLL_BUDGET: usize = 10_000_000;

impl Default for TestRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRuntime {
    /// A runtime whose clock starts now and stands still.
    pub fn new() -> Self {
        let now = Instant::now();
        TestRuntime {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    start: now,
                    now,
                    ready: VecDeque::new(),
                    timers: Vec::new(),
                }),
                tasks: Mutex::new(Vec::new()),
                next_timer: AtomicU64::new(0),
                idle_limit: AtomicU64::new(IDLE_LIMIT.as_nanos() as u64),
            }),
        }
    }

    /// Simulated time since the runtime was made.
    pub fn elapsed(&self) -> Duration {
        let s = self.shared.lock();
        s.now - s.start
    }

    /// Tasks spawned that have neither completed nor been dropped (a task nothing can wake
    /// any more is dropped with its last waker): after a server is closed, anything counted
    /// here is a task it left running.
    pub fn live_tasks(&self) -> usize {
        let mut tasks = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| {
            t.upgrade().is_some_and(|t| {
                t.future
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some()
            })
        });
        tasks.len()
    }

    /// Polls ready tasks until none is left.
    pub fn run_until_idle(&self) {
        for _ in 0..POLL_BUDGET {
            let next = self.shared.lock().ready.pop_front();
            let Some(task) = next else {
                return;
            };
            task.queued.store(false, Ordering::SeqCst);
            let w = waker(task.clone());
            let mut cx = Context::from_waker(&w);
            let mut slot = task.future.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(fut) = slot.as_mut() {
                if fut.as_mut().poll(&mut cx).is_ready() {
                    *slot = None;
                }
            }
        }
        panic!("tasks never went idle: a task keeps waking itself");
    }

    /// Moves the clock forward by `d`, firing timers on the way and running what they wake.
    pub fn advance(&self, d: Duration) {
        let until = self.shared.lock().now + d;
        self.run_until_idle();
        while self.fire_next_timer(Some(until)) {
            self.run_until_idle();
        }
        self.shared.lock().now = until;
        self.run_until_idle();
    }

    /// Sets the clock to the earliest timer (not past `limit`) and wakes every timer due then.
    fn fire_next_timer(&self, limit: Option<Instant>) -> bool {
        let mut s = self.shared.lock();
        let Some(t) = s.timers.iter().map(|(t, _, _)| *t).min() else {
            return false;
        };
        if limit.is_some_and(|l| t > l) {
            return false;
        }
        s.now = s.now.max(t);
        let now = s.now;
        let due: Vec<Waker> = s
            .timers
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .map(|(_, _, w)| w.clone())
            .collect();
        s.timers.retain(|(t, _, _)| *t > now);
        drop(s);
        for w in due {
            w.wake();
        }
        true
    }

    /// `fut`'s output, or `None` when `d` of simulated time passes first (to check that
    /// something does *not* happen, without spinning through timers forever).
    pub async fn timeout<F: Future>(&self, d: Duration, fut: F) -> Option<F::Output> {
        use futures::future::{Either, select};
        let sleep = self.sleep(d);
        match select(pin!(fut), pin!(sleep)).await {
            Either::Left((v, _)) => Some(v),
            Either::Right(_) => None,
        }
    }

    /// Most simulated time one [`TestRuntime::block_on`] may skip by itself (default: a
    /// simulated hour). A server's heartbeat always has a next timer, so a future that never completes
    /// would otherwise spin through pings forever; past the limit `block_on` panics instead.
    pub fn set_idle_limit(&self, limit: Duration) {
        let nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        self.shared.idle_limit.store(nanos, Ordering::SeqCst);
    }

    /// Runs `fut` to completion, driving every task; when all are idle and `fut` still waits,
    /// time jumps to the next timer. Panics when nothing at all can happen any more, or when
    /// the jumps add up to more than the idle limit ([`TestRuntime::set_idle_limit`]).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let w = waker(flag.clone());
        let mut cx = Context::from_waker(&w);
        let mut skipped = Duration::ZERO;
        let limit = Duration::from_nanos(self.shared.idle_limit.load(Ordering::SeqCst));
        loop {
            if flag.0.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
            }
            self.run_until_idle();
            if flag.0.load(Ordering::SeqCst) {
                continue;
            }
            let before = self.shared.lock().now;
            assert!(
                self.fire_next_timer(None),
                "deadlock: the future waits and nothing is scheduled"
            );
            skipped += self.shared.lock().now - before;
            assert!(
                skipped <= limit,
                "the future still waits after {skipped:?} of simulated time (idle limit)"
            );
        }
    }
}

/// A timer of the [`TestRuntime`].
pub struct TestSleep {
    deadline: Instant,
    id: u64,
    shared: Arc<Shared>,
    registered: bool,
}

impl Future for TestSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut s = this.shared.lock();
        if s.now >= this.deadline {
            s.timers.retain(|(_, id, _)| *id != this.id);
            return Poll::Ready(());
        }
        s.timers.retain(|(_, id, _)| *id != this.id);
        s.timers.push((this.deadline, this.id, cx.waker().clone()));
        this.registered = true;
        Poll::Pending
    }
}

impl Drop for TestSleep {
    fn drop(&mut self) {
        if self.registered {
            let id = self.id;
            self.shared.lock().timers.retain(|(_, i, _)| *i != id);
        }
    }
}

impl Runtime for TestRuntime {
    type Sleep = TestSleep;

    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = Arc::new(TaskCell {
            future: Mutex::new(Some(Box::pin(fut))),
            queued: AtomicBool::new(true),
            shared: Arc::downgrade(&self.shared),
        });
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&task));
        self.shared.lock().ready.push_back(task);
    }

    fn sleep_until(&self, deadline: Instant) -> TestSleep {
        TestSleep {
            deadline,
            id: self.shared.next_timer.fetch_add(1, Ordering::SeqCst),
            shared: self.shared.clone(),
            registered: false,
        }
    }

    fn now(&self) -> Instant {
        self.shared.lock().now
    }
}
