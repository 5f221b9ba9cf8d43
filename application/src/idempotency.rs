//! The rules of `Idempotency-Key` shared by charges and payments: the same key for the same user
//! and operation returns the first successful answer; with another request body it is refused.

use concert_domain::{IdempotencyKey, IdempotencyScope, UserId};

use crate::ports::{IdempotencyRecord, IdempotencyStore, IdempotentAnswer, RepositoryError};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The key was first used with another request body (`409 IDEMPOTENCY_KEY_REUSED`).
    #[error("the idempotency key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The first answer stored for `record`'s key in `scope`, if any, as the operation's own answer
/// (`pick`). Keys are scoped per operation, so an answer of another kind means the key was used
/// for something else.
pub(crate) async fn stored_answer<T>(
    store: &dyn IdempotencyStore,
    user: UserId,
    scope: IdempotencyScope,
    record: &IdempotencyRecord,
    pick: fn(IdempotentAnswer) -> Option<T>,
) -> Result<Option<T>, ReplayError> {
    match store.find(user, scope, &record.key).await? {
        None => Ok(None),
        Some(stored) if stored.request_hash == record.request_hash => {
            pick(stored.answer).map(Some).ok_or(ReplayError::KeyReused)
        }
        Some(_) => Err(ReplayError::KeyReused),
    }
}

/// Pairs a key with the fingerprint of the request it came with.
pub(crate) fn record(
    key: Option<IdempotencyKey>,
    fingerprint: impl FnOnce() -> String,
) -> Option<IdempotencyRecord> {
    key.map(|key| IdempotencyRecord {
        key,
        request_hash: fingerprint(),
    })
}
