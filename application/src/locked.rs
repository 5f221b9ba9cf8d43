//! The in-memory state this instance shares between requests and jobs (a line's view, the
//! rooms): its writers never leave it half-changed, so a panic elsewhere while a lock was held
//! does not make the state unusable, and a poisoned lock is taken as it is.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
