//! One value per actix System, kept until the System ends: the agents'
//! registry, the bus and the broker each keep theirs in one of these.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// Values by System id, behind one lock. Made in a `static`.
pub(crate) struct PerSystem<T>(OnceLock<Mutex<HashMap<usize, T>>>);

impl<T: Clone> PerSystem<T> {
    pub(crate) const fn new() -> Self {
        PerSystem(OnceLock::new())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<usize, T>> {
        // Plain data behind the lock: a panic elsewhere cannot leave it torn.
        self.0
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of System `system`, if it has one.
    pub(crate) fn get(&self, system: usize) -> Option<T> {
        self.lock().get(&system).cloned()
    }

    /// Whether System `system` has a value.
    pub(crate) fn contains(&self, system: usize) -> bool {
        self.lock().contains_key(&system)
    }

    /// The value of System `system`, made by `make` if it has none.
    pub(crate) fn get_or_insert_with(&self, system: usize, make: impl FnOnce() -> T) -> T {
        self.lock().entry(system).or_insert_with(make).clone()
    }

    /// Gives System `system` its value, in place of any it had.
    pub(crate) fn insert(&self, system: usize, value: T) {
        self.lock().insert(system, value);
    }

    /// Gives System `system` its value, unless it has one already (then
    /// `false`, and `value` is dropped).
    pub(crate) fn insert_new(&self, system: usize, value: T) -> bool {
        let mut all = self.lock();
        if all.contains_key(&system) {
            return false;
        }
        all.insert(system, value);
        true
    }

    /// Forgets the value of a System that has ended.
    pub(crate) fn remove(&self, system: usize) {
        self.lock().remove(&system);
    }
}
