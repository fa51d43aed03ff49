//! Locking shared by every module that guards state with a
//! `std::sync::Mutex` (rooms, rings, limits, the layers).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, recovering from poisoning: the guarded data stays
/// consistent because no code panics while holding these locks, and one
/// panicking session must not take every other session down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
