//! Connection accounting: the connection cap, and graceful shutdown.
//!
//! Built from `futures` primitives only (a oneshot whose sender every connection shares
//! through an `Arc`, so the receiver completes when the last connection ends), to stay
//! runtime-neutral. The mutexes are touched when a connection starts or ends, never on the
//! message path.

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
    active: Arc<AtomicUsize>,
    stopping_flag: AtomicBool,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    stopping: Signal,
    /// Cloned into every admitted connection; dropped here on shutdown.
    alive: Mutex<Option<Arc<oneshot::Sender<()>>>>,
    done: Signal,
}

/// Why a connection was not admitted.
pub(crate) enum Refused {
    /// At the connection cap: answer 503.
    Full,
    /// Shutting down: close at once.
    Stopping,
}

/// Held by a connection for its lifetime.
pub(crate) struct Admission {
    active: Arc<AtomicUsize>,
    _alive: Arc<oneshot::Sender<()>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tracker {
    pub(crate) fn new(max: usize) -> Self {
        let (stop, stop_rx) = oneshot::channel();
        let (alive, done_rx) = oneshot::channel();
        Tracker {
            max,
            active: Arc::new(AtomicUsize::new(0)),
            stopping_flag: AtomicBool::new(false),
            stop: Mutex::new(Some(stop)),
            stopping: signal(stop_rx),
            alive: Mutex::new(Some(Arc::new(alive))),
            done: signal(done_rx),
        }
    }

    pub(crate) fn admit(&self) -> Result<Admission, Refused> {
        let alive = self
            .alive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Refused::Stopping)?;
        let before = self.active.fetch_add(1, Ordering::AcqRel);
        let admission = Admission {
            active: self.active.clone(),
            _alive: alive,
        };
        if before >= self.max {
            return Err(Refused::Full);
        }
        Ok(admission)
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
