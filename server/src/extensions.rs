//! A map from type to value: per-socket data and shared server state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A [`Extensions::watch`] callback.
type Watcher = Arc<dyn Fn(&Extensions, TypeId) + Send + Sync>;

/// Values keyed by their type, shared by every clone of the handle. Used for a socket's
/// `data()` (Node's `socket.data`) and for server-wide state.
#[derive(Clone, Default)]
pub struct Extensions(Arc<Inner>);

/// The values and their watchers, in one allocation (a socket's `data()` costs one).
#[derive(Default)]
struct Inner {
    map: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    watchers: RwLock<Vec<Watcher>>,
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self
            .0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Extensions").field("values", &n).finish()
    }
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, returning the one of the same type it replaces.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        let old = self
            .0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b));
        self.changed(TypeId::of::<T>());
        old
    }

    /// Calls `watcher` with this map and the type of the value after every change: an
    /// [`insert`](Extensions::insert), a [`with`](Extensions::with) that found a value, a
    /// [`remove`](Extensions::remove) that took one (Node's Admin UI watches `socket.data`
    /// so). It runs on the thread that made the change, after the map is unlocked; it lives as
    /// long as the map, so it must not hold a clone of it (it is handed the map instead).
    pub fn watch(&self, watcher: impl Fn(&Extensions, TypeId) + Send + Sync + 'static) {
        self.0
            .watchers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(watcher));
    }

    fn changed(&self, type_id: TypeId) {
        let watchers: Vec<Watcher> = {
            let list = self
                .0
                .watchers
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if list.is_empty() {
                return;
            }
            list.clone()
        };
        // Unlocked: a watcher may add another.
        for w in watchers {
            w(self, type_id);
        }
    }

    /// A clone of the value of type `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Runs `f` on the value of type `T`, if any, and returns its result.
    pub fn with<T: Any + Send + Sync, U>(&self, f: impl FnOnce(&mut T) -> U) -> Option<U> {
        let out = self
            .0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&TypeId::of::<T>())
            .and_then(|v| v.downcast_mut::<T>())
            .map(f);
        if out.is_some() {
            self.changed(TypeId::of::<T>());
        }
        out
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<T> {
        let old = self
            .0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&TypeId::of::<T>())
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b));
        if old.is_some() {
            self.changed(TypeId::of::<T>());
        }
        old
    }

    /// Whether a value of type `T` is stored.
    pub fn contains<T: Any + Send + Sync>(&self) -> bool {
        self.0
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&TypeId::of::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn watchers_see_every_change_with_the_map_unlocked() {
        let ext = Extensions::new();
        ext.insert(1u8);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        ext.watch(move |map, type_id| {
            // The map can be read from the watcher.
            s.lock().unwrap().push((type_id, map.get::<u32>()));
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        ext.clone().watch(move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        ext.insert(7u32);
        ext.with(|v: &mut u32| *v += 1);
        // Nothing there: no change, no call.
        assert_eq!(ext.with(|_: &mut u16| ()), None);
        assert_eq!(ext.remove::<u16>(), None);
        ext.remove::<u32>();
        let u = TypeId::of::<u32>();
        assert_eq!(
            *seen.lock().unwrap(),
            [(u, Some(7)), (u, Some(8)), (u, None)]
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Reads are not changes.
        let _ = ext.get::<u8>();
        assert!(ext.contains::<u8>());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
