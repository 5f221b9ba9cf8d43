//! Turning database failures into the ports' [`RepositoryError`]: transient ones (unreachable,
//! pool exhausted, timed out, shutting down) are `Unavailable`, everything else `Unexpected`.

use std::fmt;

use concert_application::ports::{BoxError, RepositoryError};
use diesel::result::{
    ConnectionError, DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError,
};

/// Why the database could not be prepared or the pool built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("could not connect to database {database:?}")]
    Connect {
        database: String,
        #[source]
        source: BoxError,
    },
    #[error("could not create database {database:?}")]
    CreateDatabase {
        database: String,
        #[source]
        source: BoxError,
    },
    #[error("could not run the database migrations")]
    Migrate(#[source] BoxError),
    #[error("could not build the connection pool")]
    Pool(#[source] BoxError),
}

/// Messages of PostgreSQL errors that mean "try again later" (the SQLSTATE itself does not survive
/// diesel-async's error conversion, so the server's text is all there is; PostgreSQL's own
/// messages are English unless `lc_messages` says otherwise):
/// 57014 `query_canceled` (statement timeout, cancel request), 55P03 `lock_not_available`,
/// 57P01..57P03 (admin/crash shutdown, cannot connect now), 53300 `too_many_connections`.
const TRANSIENT_MESSAGES: &[&str] = &[
    "canceling statement due to statement timeout",
    "canceling statement due to lock timeout",
    "canceling statement due to user request",
    "terminating connection due to administrator command",
    "terminating connection because of crash of another server process",
    "terminating connection due to conflict with recovery",
    "the database system is",
    "sorry, too many clients already",
    "remaining connection slots are reserved",
    "connection closed",
    "connection reset",
    "broken pipe",
];

fn is_transient_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    TRANSIENT_MESSAGES.iter().any(|m| message.contains(m))
}

/// Whether a diesel error means the database is (for now) out of reach.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _,
        ) => true,
        DieselError::DatabaseError(_, info) => is_transient_message(info.message()),
        // A commit or rollback that failed half-way, most often because the link broke.
        DieselError::BrokenTransactionManager => true,
        _ => false,
    }
}

/// Whether a compare-and-set write failed only because another write got there first: a unique
/// key taken meanwhile (an idempotency key stored by a twin), a serialization failure or a
/// deadlock (the statement was rolled back whole). The caller loads again and decides again.
pub(crate) fn lost_race(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure,
            _,
        ) => true,
        DieselError::DatabaseError(_, info) => info.message().contains("deadlock detected"),
        _ => false,
    }
}

pub(crate) fn from_diesel(error: DieselError) -> RepositoryError {
    if is_transient(&error) {
        RepositoryError::Unavailable(Box::new(error))
    } else {
        RepositoryError::Unexpected(Box::new(error))
    }
}

pub(crate) fn from_connection(error: ConnectionError) -> RepositoryError {
    let transient = match &error {
        ConnectionError::CouldntSetupConfiguration(inner) => is_transient(inner),
        ConnectionError::BadConnection(_) => true,
        _ => false,
    };
    if transient {
        RepositoryError::Unavailable(Box::new(error))
    } else {
        RepositoryError::Unexpected(Box::new(error))
    }
}

pub(crate) fn from_pool(
    error: diesel_async::pooled_connection::deadpool::PoolError,
) -> RepositoryError {
    use deadpool::managed::PoolError;
    use diesel_async::pooled_connection::PoolError as Backend;
    match error {
        PoolError::Timeout(_) | PoolError::Closed => RepositoryError::Unavailable(Box::new(error)),
        PoolError::Backend(Backend::ConnectionError(inner)) => from_connection(inner),
        PoolError::Backend(Backend::QueryError(inner)) => from_diesel(inner),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            RepositoryError::Unexpected(Box::new(error))
        }
    }
}

/// A stored value that breaks an invariant the schema should have kept (a bug or a broken schema).
pub(crate) fn corrupt(what: impl fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(format!("corrupt row: {what}").into())
}

/// A failure to open a connection, as a diesel error whose kind says whether it is transient:
/// `UnableToSendCommand` for network failures, timeouts and "server not accepting connections now",
/// `Unknown` for the rest (bad password, missing database...).
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    message: String,
}

impl ConnectFailure {
    pub(crate) fn timed_out(after: std::time::Duration) -> DieselError {
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new(Self {
                message: format!("connecting timed out after {after:?}"),
            }),
        )
    }

    pub(crate) fn from_postgres(error: &tokio_postgres::Error) -> DieselError {
        use tokio_postgres::error::SqlState;
        let transient = match error.code() {
            None => true,
            Some(code) => {
                code.code().starts_with("08")
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::TOO_MANY_CONNECTIONS,
                    ]
                    .contains(code)
            }
        };
        let message = match error.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => error.to_string(),
        };
        let kind = if transient {
            DatabaseErrorKind::UnableToSendCommand
        } else {
            DatabaseErrorKind::Unknown
        };
        DieselError::DatabaseError(kind, Box::new(Self { message }))
    }
}

impl DatabaseErrorInformation for ConnectFailure {
    fn message(&self) -> &str {
        &self.message
    }
    fn details(&self) -> Option<&str> {
        None
    }
    fn hint(&self) -> Option<&str> {
        None
    }
    fn table_name(&self) -> Option<&str> {
        None
    }
    fn column_name(&self) -> Option<&str> {
        None
    }
    fn constraint_name(&self) -> Option<&str> {
        None
    }
    fn statement_position(&self) -> Option<i32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn timeouts_and_shutdowns_are_unavailable() {
        for message in [
            "canceling statement due to statement timeout",
            "terminating connection due to administrator command",
            "the database system is shutting down",
        ] {
            assert!(
                is_transient(&db_error(DatabaseErrorKind::Unknown, message)),
                "{message}"
            );
        }
        assert!(is_transient(&db_error(
            DatabaseErrorKind::UnableToSendCommand,
            "io error"
        )));
        assert!(matches!(
            from_diesel(db_error(DatabaseErrorKind::ClosedConnection, "closed")),
            RepositoryError::Unavailable(_)
        ));
    }

    #[test]
    fn constraint_violations_and_bugs_are_unexpected() {
        assert!(!is_transient(&db_error(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key"
        )));
        assert!(!is_transient(&db_error(
            DatabaseErrorKind::Unknown,
            "syntax error at or near"
        )));
        assert!(matches!(
            from_diesel(DieselError::NotFound),
            RepositoryError::Unexpected(_)
        ));
    }
}
