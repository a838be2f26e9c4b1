//! Locks.

/// A poisoned lock's data: every lock in the project guards state that is consistent at
/// each point a panic could occur, so the data stays usable.
pub fn unpoisoned<T>(result: std::sync::LockResult<T>) -> T {
    result.unwrap_or_else(std::sync::PoisonError::into_inner)
}
