//! The Socket.IO state the sessions share, behind a lock, so that a session can run on a
//! task of its own and still reach it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use volley_core::socketio::{Shared, SharedAccess};

/// The namespace index, the connect requests waiting for the application, the socket ids
/// and the recovery store ([`Shared`]), lent to one step of one session at a time.
///
/// Cloning it shares the same state. The lock is held only inside [`SharedAccess::with`]
/// and [`SharedAccess::read`]; how recovery keeps packets (here, or in the adapter's store)
/// is cached beside it, so that an emit does not take it to ask.
#[derive(Clone)]
pub struct SharedLock(Arc<Inner>);

struct Inner {
    shared: Mutex<Shared>,
    keeps: AtomicBool,
    /// [`Shared::is_recovery_shared`].
    recovery_shared: AtomicBool,
}

impl SharedLock {
    /// Shares `shared`.
    pub fn new(shared: Shared) -> Self {
        let keeps = AtomicBool::new(shared.keeps_packets());
        let recovery_shared = AtomicBool::new(shared.is_recovery_shared());
        SharedLock(Arc::new(Inner {
            shared: Mutex::new(shared),
            keeps,
            recovery_shared,
        }))
    }

    /// Whether recovery is on and kept by the adapter's store, without the lock.
    pub fn is_recovery_shared(&self) -> bool {
        self.0.recovery_shared.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedLock").field(&*self.lock()).finish()
    }
}

impl SharedAccess for SharedLock {
    fn with<R>(&mut self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut shared = self.lock();
        let r = f(&mut shared);
        // Recovery is switched through here too.
        self.0
            .keeps
            .store(shared.keeps_packets(), Ordering::Relaxed);
        let recovery_shared = shared.is_recovery_shared();
        self.0
            .recovery_shared
            .store(recovery_shared, Ordering::Relaxed);
        r
    }

    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        f(&self.lock())
    }

    fn keeps_packets(&mut self) -> bool {
        self.0.keeps.load(Ordering::Relaxed)
    }
}
