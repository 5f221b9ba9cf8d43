//! Errors of the embedded store, in the ports' terms.

use std::path::PathBuf;

use concert_application::ports::RepositoryError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error(
        "the database file {0:?} is in use by another process: the embedded store serves one \
         instance; run several instances on PostgreSQL (DATABASE_URL=postgres://…)"
    )]
    InUse(PathBuf),
    #[error("could not open the database file")]
    Open(#[source] BoxError),
    #[error("could not run the database migrations")]
    Migrate(#[source] BoxError),
}

/// A diesel error as a port error: a lock that stayed busy, a full disk or an I/O failure is
/// transient (`Unavailable`, answered 503); anything else is `Unexpected`.
pub(crate) fn from_diesel(error: DieselError) -> RepositoryError {
    if is_transient(&error) {
        RepositoryError::Unavailable(Box::new(error))
    } else {
        RepositoryError::Unexpected(Box::new(error))
    }
}

fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR: diesel keeps only the text.
            [
                "database is locked",
                "database table is locked",
                "database or disk is full",
            ]
            .iter()
            .any(|transient| message.contains(transient))
                || message.starts_with("disk I/O error")
        }
        _ => false,
    }
}

/// A stored value the domain refuses: the data breaks an invariant.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(format!("corrupt row: {what}").into())
}

/// A unique-key violation: in a compare-and-set, another write took the key first.
pub(crate) fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// The answer of a compare-and-set write whose transaction failed on a unique key: another
/// write took the key first (an idempotency key stored by a twin), the transaction was rolled
/// back whole, and the write is `Stale`, as on PostgreSQL (docs/DATABASE.md §5.0).
pub(crate) fn stale_on_unique_violation<T>(
    written: Result<concert_application::ports::Written<T>, RepositoryError>,
) -> Result<concert_application::ports::Written<T>, RepositoryError> {
    match written {
        Err(RepositoryError::Unexpected(error))
            if error
                .downcast_ref::<DieselError>()
                .is_some_and(is_unique_violation) =>
        {
            Ok(concert_application::ports::Written::Stale)
        }
        other => other,
    }
}
