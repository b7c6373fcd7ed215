//! Locks that keep working after a thread panicked while holding them: every
//! lock in Vane guards data that stays consistent between statements, so a
//! poisoned lock is taken as it is rather than spreading the panic.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `Mutex::lock`, never failing on poison.
pub trait Locked<T: ?Sized> {
    /// The guard, whether or not the lock is poisoned.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `RwLock::read` and `RwLock::write`, never failing on poison.
pub trait RwLocked<T: ?Sized> {
    /// A read guard, whether or not the lock is poisoned.
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    /// A write guard, whether or not the lock is poisoned.
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLocked<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}
