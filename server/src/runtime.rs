//! The runtime abstraction: what the driver needs from an async runtime, and nothing more.
//!
//! Three capabilities: spawn a task, sleep until a deadline, read the clock. Sockets are not
//! part of it: the driver takes any `futures::io` stream, so a runtime crate only accepts
//! connections and hands them over (quinn's shape, where the `Runtime` trait is equally
//! small and each runtime's impl is a few dozen lines).
//!
//! [`Runtime::now`] is the only place the clock is read, for the machine's `now` arguments and
//! for every connection deadline. Routing it through the runtime keeps one time source: under
//! tokio's paused test clock the machine and the timers agree.

use std::future::Future;
use std::time::{Duration, Instant};

/// An async runtime, as the driver uses it.
///
/// `Clone` because every connection task holds one; implementations are handles (a unit
/// struct, or an `Arc` to an executor).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future [`sleep_until`](Runtime::sleep_until) returns. An associated type rather
    /// than `impl Future` so the driver can keep an armed timer in a struct field and replace
    /// it only when the deadline moves.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// Runs `fut` to completion in the background. Panics inside it must not take the
    /// process down with them more than the runtime itself decides.
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Completes after `duration`. A duration too long to add to the clock sleeps "forever"
    /// (a century), so `Duration::MAX` can mean "no timeout".
    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.sleep_until(deadline_after(self.now(), duration))
    }

    /// The current time.
    fn now(&self) -> Instant;
}

/// `now + duration`, saturated at a century from `now` so an unbounded timeout never
/// overflows `Instant` arithmetic.
pub fn deadline_after(now: Instant, duration: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now + duration.min(CENTURY)
}
