//! The two protocols every write follows.
//!
//! **Load, decide, write, retry.** A use case loads the state a rule needs (with versions), asks
//! the domain, and hands the decision to a port that writes it only if the state is unchanged. A
//! stale write means another request changed the state in between: the use case loads again and
//! decides again, at most [`MAX_ATTEMPTS`] times ([`until_written`]).
//!
//! **Idempotent commands** (charges and payments with an `Idempotency-Key`): look the key up and
//! replay the stored answer; otherwise run the command, whose write stores the key with the
//! effect in the same atomic step; when a write is stale or the domain refuses, look the key up
//! again first, since a twin request may have committed in between and what this request saw
//! was that twin's own effect ([`Idempotent::run`]). The same key with another request body is
//! refused.

use std::future::Future;

use concert_domain::{IdempotencyKey, IdempotencyScope, UserId};

use crate::ports::{
    IdempotencyRecord, IdempotencyStore, IdempotentAnswer, RepositoryError, Written,
};

/// How many times a use case loads and decides again after stale writes before it gives up and
/// answers "unavailable, retry". Each attempt is two round trips, and every stale write means
/// another request's write went through, so this bound is met only under extreme contention.
pub(crate) const MAX_ATTEMPTS: u32 = 64;

/// What one attempt of a command came to.
pub(crate) enum Step<T> {
    Done(T),
    Stale,
}

impl<T> Step<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Step<U> {
        match self {
            Self::Done(value) => Step::Done(f(value)),
            Self::Stale => Step::Stale,
        }
    }
}

impl<T> From<Written<T>> for Step<T> {
    fn from(written: Written<T>) -> Self {
        match written {
            Written::Done(value) => Self::Done(value),
            Written::Stale => Self::Stale,
        }
    }
}

/// The error of a command that lost [`MAX_ATTEMPTS`] races in a row: transient, like a busy
/// database.
fn contended() -> RepositoryError {
    RepositoryError::Unavailable(
        format!("state changed under {MAX_ATTEMPTS} attempts in a row; try again").into(),
    )
}

/// Runs `attempt` until its write goes through (or it fails or is refused).
pub(crate) async fn until_written<T, E, F>(mut attempt: impl FnMut() -> F) -> Result<T, E>
where
    E: From<RepositoryError>,
    F: Future<Output = Result<Step<T>, E>>,
{
    for _ in 0..MAX_ATTEMPTS {
        if let Step::Done(value) = attempt().await? {
            return Ok(value);
        }
    }
    Err(contended().into())
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The key was first used with another request body (`409 IDEMPOTENCY_KEY_REUSED`).
    #[error("the idempotency key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// An idempotent command's key, or none: the protocol of the module docs.
pub(crate) struct Idempotent<'a, T> {
    pub store: &'a dyn IdempotencyStore,
    pub user: UserId,
    pub scope: IdempotencyScope,
    pub record: Option<&'a IdempotencyRecord>,
    /// The command's own kind of stored answer; another kind means the key was used elsewhere.
    pub pick: fn(IdempotentAnswer) -> Option<T>,
}

impl<T> Idempotent<'_, T> {
    /// Replays a stored answer or runs `attempt` until written. `is_refusal` tells a business
    /// refusal (which a twin's effect may explain) from other errors.
    pub(crate) async fn run<E, F>(
        &self,
        is_refusal: fn(&E) -> bool,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, E>
    where
        E: From<ReplayError> + From<RepositoryError>,
        F: Future<Output = Result<Step<T>, E>>,
    {
        if let Some(answer) = self.replay().await? {
            return Ok(answer);
        }
        for _ in 0..MAX_ATTEMPTS {
            match attempt().await {
                Ok(Step::Done(value)) => return Ok(value),
                Ok(Step::Stale) => {
                    if let Some(answer) = self.replay().await? {
                        return Ok(answer);
                    }
                }
                Err(refused) if is_refusal(&refused) => {
                    return match self.replay().await? {
                        Some(answer) => Ok(answer),
                        None => Err(refused),
                    };
                }
                Err(error) => return Err(error),
            }
        }
        Err(contended().into())
    }

    /// The answer stored under the key, if there is a key and an answer.
    async fn replay(&self) -> Result<Option<T>, ReplayError> {
        let Some(record) = self.record else {
            return Ok(None);
        };
        match self.store.find(self.user, self.scope, &record.key).await? {
            None => Ok(None),
            Some(stored) if stored.request_hash == record.request_hash => {
                (self.pick)(stored.answer)
                    .map(Some)
                    .ok_or(ReplayError::KeyReused)
            }
            Some(_) => Err(ReplayError::KeyReused),
        }
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
