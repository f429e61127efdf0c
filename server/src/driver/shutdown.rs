//! Connection accounting: the connection cap (and who makes room at it), the per-address
//! limit, and graceful shutdown.
//!
//! Built from `futures` primitives only (a oneshot whose sender every connection shares
//! through an `Arc`, so the receiver completes when the last connection ends), to stay
//! runtime-neutral. The mutexes are touched when a connection starts, completes its first
//! request head, or ends, never on the message path.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};

/// Completes (with any value) once its event happened.
pub(crate) type Signal = Shared<BoxFuture<'static, ()>>;

fn signal(rx: oneshot::Receiver<()>) -> Signal {
    // A dropped sender means the same as a sent one: the event can no longer not happen.
    rx.map(|_| ()).boxed().shared()
}

pub(crate) struct Tracker {
    max: usize,
    per_address: Option<usize>,
    active: Arc<AtomicUsize>,
    /// Connections that have not completed a request head yet, oldest first: at the cap,
    /// the oldest is told to close to make room.
    fresh: Arc<Mutex<Fresh>>,
    /// Connections per client address, when the per-address limit is on.
    addresses: Arc<Counts>,
    stopping_flag: AtomicBool,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    stopping: Signal,
    /// Cloned into every admitted connection; dropped here on shutdown.
    alive: Mutex<Option<Arc<oneshot::Sender<()>>>>,
    done: Signal,
}

#[derive(Default)]
struct Fresh {
    next: u64,
    /// By admission order: the sender that tells the connection to close.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// Connections per client address.
type Counts = Mutex<HashMap<IpAddr, usize>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection was not admitted.
pub(crate) enum Refused {
    /// At the connection cap with no connection to make room: answer 503.
    Full,
    /// Its client address holds the most connections it may: answer 503.
    PerAddress,
    /// Shutting down: close at once.
    Stopping,
}

/// Held by a connection for its lifetime.
pub(crate) struct Admission {
    active: Arc<AtomicUsize>,
    /// Its place among the connections without a complete request head yet.
    fresh: Option<(u64, Arc<Mutex<Fresh>>)>,
    /// The client address it counts against.
    address: Option<IpAddr>,
    /// The per-address limit and the counts, when it is on.
    limit: Option<(usize, Arc<Counts>)>,
    _alive: Arc<oneshot::Sender<()>>,
}

impl Admission {
    /// The connection completed a request head: it is no longer the first to be closed at
    /// the cap.
    pub(crate) fn settle(&mut self) {
        if let Some((id, fresh)) = self.fresh.take() {
            lock(&fresh).waiting.remove(&id);
        }
    }

    /// Counts the connection against `address` instead of what it counted against (a
    /// forwarded address, known once a request head came through a trusted proxy). Refused
    /// when `address` is at its limit; the connection then counts against nothing.
    pub(crate) fn rekey(&mut self, address: IpAddr) -> Result<(), Refused> {
        let Some((limit, map)) = &self.limit else {
            return Ok(());
        };
        if self.address == Some(address) {
            return Ok(());
        }
        if let Some(old) = self.address.take() {
            release(map, old);
        }
        count_in(map, *limit, address)?;
        self.address = Some(address);
        Ok(())
    }
}

/// Counts one more connection against `address`, unless it is at `limit`.
fn count_in(map: &Counts, limit: usize, address: IpAddr) -> Result<(), Refused> {
    let mut counts = lock(map);
    let count = counts.entry(address).or_default();
    if *count >= limit {
        if *count == 0 {
            counts.remove(&address);
        }
        return Err(Refused::PerAddress);
    }
    *count += 1;
    Ok(())
}

fn release(map: &Counts, address: IpAddr) {
    let mut counts = lock(map);
    if let Some(count) = counts.get_mut(&address) {
        *count -= 1;
        if *count == 0 {
            counts.remove(&address);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle();
        if let (Some(address), Some((_, map))) = (self.address.take(), &self.limit) {
            release(map, address);
        }
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the tracker makes room at the cap by closing this connection (which has
/// not completed a request head); never otherwise.
pub(crate) struct Evicted(Option<oneshot::Receiver<()>>);

impl Evicted {
    /// Never resolves.
    pub(crate) fn never() -> Self {
        Evicted(None)
    }
}

impl Future for Evicted {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        match self.0.as_mut().map(|rx| rx.poll_unpin(cx)) {
            Some(std::task::Poll::Ready(Ok(()))) => std::task::Poll::Ready(()),
            Some(std::task::Poll::Ready(Err(_))) => {
                // Settled (or the tracker is gone): no eviction can come any more.
                self.0 = None;
                std::task::Poll::Pending
            }
            _ => std::task::Poll::Pending,
        }
    }
}

impl Tracker {
    pub(crate) fn new(max: usize, per_address: Option<usize>) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let (alive, done_rx) = oneshot::channel();
        Tracker {
            max,
            per_address,
            active: Arc::new(AtomicUsize::new(0)),
            fresh: Arc::default(),
            addresses: Arc::default(),
            stopping_flag: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
            stopping: signal(stop_rx),
            alive: Mutex::new(Some(Arc::new(alive))),
            done: signal(done_rx),
        }
    }

    /// Admits a request whose head is already parsed, counted against `address` (the
    /// client's, when known).
    pub(crate) fn admit(&self, address: Option<IpAddr>) -> Result<Admission, Refused> {
        let alive = lock(&self.alive).clone().ok_or(Refused::Stopping)?;
        let mut admission = Admission {
            active: self.active.clone(),
            fresh: None,
            address: None,
            limit: self
                .per_address
                .map(|limit| (limit, self.addresses.clone())),
            _alive: alive,
        };
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        if let Some(address) = address {
            // Without an address (a trusted proxy's connection) it counts once its first
            // request names the client.
            admission.rekey(address)?;
        }
        if before >= self.max && !self.evict_oldest() {
            return Err(Refused::Full);
        }
        Ok(admission)
    }

    /// Admits a new connection that has sent nothing yet, counted against `address` (its
    /// TCP peer, unless that is a trusted proxy): until it completes a request head
    /// ([`Admission::settle`]), it is among the first closed at the cap, as [`Evicted`] tells
    /// it.
    pub(crate) fn admit_fresh(
        &self,
        address: Option<IpAddr>,
    ) -> Result<(Admission, Evicted), Refused> {
        let mut admission = self.admit(address)?;
        let (tx, rx) = oneshot::channel();
        let mut fresh = lock(&self.fresh);
        let id = fresh.next;
        fresh.next += 1;
        fresh.waiting.insert(id, tx);
        drop(fresh);
        admission.fresh = Some((id, self.fresh.clone()));
        Ok((admission, Evicted(Some(rx))))
    }

    /// Tells the oldest connection without a complete request head to close, making room
    /// for another; `false` when there is none.
    fn evict_oldest(&self) -> bool {
        let mut fresh = lock(&self.fresh);
        while let Some((_, tx)) = fresh.waiting.pop_first() {
            if tx.send(()).is_ok() {
                return true;
            }
        }
        false
    }

    /// Whether the per-address limit is on.
    pub(crate) fn limits_addresses(&self) -> bool {
        self.per_address.is_some()
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping_flag.load(Ordering::Acquire)
    }

    /// Completes when shutdown begins.
    pub(crate) fn stopping(&self) -> Signal {
        self.stopping.clone()
    }

    /// Stops admitting connections and tells idle ones to close; the result completes when
    /// every admitted connection has ended.
    pub(crate) fn shutdown(&self) -> Signal {
        self.stopping_flag.store(true, Ordering::Release);
        if let Some(stop) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = stop.send(());
        }
        drop(
            self.alive
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.done.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn at_the_cap_the_oldest_fresh_connection_makes_room() {
        let tracker = Tracker::new(2, None);
        let (_a, mut evicted_a) = tracker.admit_fresh(None).ok().unwrap();
        let (mut b, mut evicted_b) = tracker.admit_fresh(None).ok().unwrap();
        let (mut c, _evicted_c) = tracker.admit_fresh(None).ok().unwrap();
        assert!((&mut evicted_a).now_or_never().is_some());
        assert!((&mut evicted_b).now_or_never().is_none());
        // Settled: no longer in line; nothing else to close, so the next is refused.
        b.settle();
        c.settle();
        assert!(matches!(tracker.admit(None), Err(Refused::Full)));
        assert!(evicted_b.now_or_never().is_none());
    }

    #[test]
    fn the_per_address_limit_counts_and_releases() {
        let tracker = Tracker::new(100, Some(1));
        let first = tracker.admit(ip(1)).ok().unwrap();
        assert!(matches!(tracker.admit(ip(1)), Err(Refused::PerAddress)));
        let _other = tracker.admit(ip(2)).ok().unwrap();
        drop(first);
        let mut again = tracker.admit(ip(1)).ok().unwrap();
        // Moving to a forwarded address frees the old one; a full one refuses.
        again.rekey(ip(3).unwrap()).ok().unwrap();
        let _back = tracker.admit(ip(1)).ok().unwrap();
        assert!(matches!(
            again.rekey(ip(2).unwrap()),
            Err(Refused::PerAddress)
        ));
        let _three = tracker.admit(ip(3)).ok().unwrap();
        // Unkeyed until it names a client.
        let mut proxied = tracker.admit(None).ok().unwrap();
        assert!(matches!(
            proxied.rekey(ip(3).unwrap()),
            Err(Refused::PerAddress)
        ));
        proxied.rekey(ip(4).unwrap()).ok().unwrap();
        assert_eq!(tracker.active(), 5);
        assert_eq!(lock(&tracker.addresses).len(), 4);
    }
}
