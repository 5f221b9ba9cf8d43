//! Turning database failures into the ports' [`RepositoryError`]: transient ones are
//! `Unavailable`, everything else `Unexpected`. Transient means a SQLSTATE of class 08 or one of
//! [`TRANSIENT_SQLSTATES`] (serialization failure, deadlock, statement cancelled or timed out,
//! lock not available, server shutting down or full), or no SQLSTATE at all because the server
//! was out of reach (closed connection, unable to send, broken transaction, pool timeouts).

use std::fmt;

use concert_application::ports::{BoxError, RepositoryError, Written};
use diesel::result::{
    ConnectionError, DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError,
};
use tokio_postgres::error::SqlState;

/// Why the database could not be prepared or the pool built at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// SQLSTATEs that mean "try again later", besides the whole class 08 (connection exception):
/// the transaction lost a race it may win next time, the statement or lock wait ran out of time,
/// or the server is shutting down, restarting or full.
const TRANSIENT_SQLSTATES: [SqlState; 8] = [
    SqlState::T_R_SERIALIZATION_FAILURE, // 40001
    SqlState::T_R_DEADLOCK_DETECTED,     // 40P01
    SqlState::QUERY_CANCELED,            // 57014 (statement timeout, cancel request)
    SqlState::LOCK_NOT_AVAILABLE,        // 55P03 (lock timeout, NOWAIT)
    SqlState::ADMIN_SHUTDOWN,            // 57P01
    SqlState::CRASH_SHUTDOWN,            // 57P02
    SqlState::CANNOT_CONNECT_NOW,        // 57P03
    SqlState::TOO_MANY_CONNECTIONS,      // 53300
];

/// Whether a PostgreSQL error code means the database is (for now) out of reach.
pub(crate) fn is_transient_sqlstate(code: &SqlState) -> bool {
    code.code().starts_with("08") || TRANSIENT_SQLSTATES.contains(code)
}

/// The SQLSTATE of a diesel error, as far as it can be had.
///
/// diesel-async (0.9) keeps the server's `tokio_postgres::error::DbError` of a failed statement
/// in a private wrapper behind `dyn DatabaseErrorInformation`, a trait with neither a code
/// accessor nor a downcast. What survives of the code is the [`DatabaseErrorKind`] diesel-async
/// derives from it (40001 and the integrity violations); any other code arrives as
/// `DatabaseErrorKind::Unknown` with the server's message only, and [`sqlstate_from_message`] is
/// the fallback for that one path. Errors without any SQLSTATE (I/O, closed connection) come as
/// `UnableToSendCommand` instead, and a failure to connect is classified by [`ConnectFailure`],
/// which still holds the `tokio_postgres::Error` and reads its code.
fn sqlstate(
    kind: &DatabaseErrorKind,
    info: &(dyn DatabaseErrorInformation + Send + Sync),
) -> Option<SqlState> {
    match kind {
        DatabaseErrorKind::SerializationFailure => Some(SqlState::T_R_SERIALIZATION_FAILURE),
        DatabaseErrorKind::UniqueViolation => Some(SqlState::UNIQUE_VIOLATION),
        DatabaseErrorKind::ForeignKeyViolation => Some(SqlState::FOREIGN_KEY_VIOLATION),
        DatabaseErrorKind::RestrictViolation => Some(SqlState::RESTRICT_VIOLATION),
        DatabaseErrorKind::ExclusionViolation => Some(SqlState::EXCLUSION_VIOLATION),
        DatabaseErrorKind::NotNullViolation => Some(SqlState::NOT_NULL_VIOLATION),
        DatabaseErrorKind::CheckViolation => Some(SqlState::CHECK_VIOLATION),
        DatabaseErrorKind::ReadOnlyTransaction => Some(SqlState::READ_ONLY_SQL_TRANSACTION),
        _ => sqlstate_from_message(info.message()),
    }
}

/// The start of the primary message PostgreSQL sends with each transient SQLSTATE whose code
/// diesel-async drops (see [`sqlstate`]). The server's own wording, English unless
/// `lc_messages` says otherwise; a translated message is not recognised and counts as
/// `Unexpected`.
#[rustfmt::skip]
const TRANSIENT_MESSAGES: &[(&str, SqlState)] = &[
    ("canceling statement due to statement timeout", SqlState::QUERY_CANCELED),
    ("canceling statement due to user request", SqlState::QUERY_CANCELED),
    ("canceling statement due to lock timeout", SqlState::LOCK_NOT_AVAILABLE),
    ("could not obtain lock on ", SqlState::LOCK_NOT_AVAILABLE), // ... row/relation (NOWAIT)
    ("deadlock detected", SqlState::T_R_DEADLOCK_DETECTED),
    ("canceling statement due to conflict with recovery", SqlState::T_R_SERIALIZATION_FAILURE),
    ("terminating connection due to conflict with recovery", SqlState::T_R_SERIALIZATION_FAILURE),
    ("terminating connection due to administrator command", SqlState::ADMIN_SHUTDOWN),
    ("terminating connection because of crash of another server process", SqlState::CRASH_SHUTDOWN),
    ("the database system is ", SqlState::CANNOT_CONNECT_NOW), // starting up, shutting down...
    ("sorry, too many clients already", SqlState::TOO_MANY_CONNECTIONS),
    ("remaining connection slots are reserved", SqlState::TOO_MANY_CONNECTIONS),
    ("too many connections for ", SqlState::TOO_MANY_CONNECTIONS), // ... role/database
];

/// The SQLSTATE a server message is sent with, for the transient ones only: the fallback of
/// the path where diesel-async drops the code.
fn sqlstate_from_message(message: &str) -> Option<SqlState> {
    TRANSIENT_MESSAGES
        .iter()
        .find(|(start, _)| message.starts_with(start))
        .map(|(_, code)| code.clone())
}

/// Whether a diesel error means the database is (for now) out of reach.
pub(crate) fn is_transient(error: &DieselError) -> bool {
    match error {
        // No SQLSTATE: tokio-postgres failed without an answer from the server (I/O error,
        // closed socket, dead connection task), or a `ConnectFailure` already classified by code.
        DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _,
        ) => true,
        DieselError::DatabaseError(kind, info) => {
            sqlstate(kind, info.as_ref()).is_some_and(|code| is_transient_sqlstate(&code))
        }
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
        DieselError::DatabaseError(kind, info) => {
            sqlstate(kind, info.as_ref()).is_some_and(|code| {
                [
                    SqlState::UNIQUE_VIOLATION,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(&code)
            })
        }
        _ => false,
    }
}

/// The answer of a compare-and-set statement: `Done` with its row when it wrote, `Stale` when it
/// matched nothing or lost a race that rolled it back whole ([`lost_race`]).
pub(crate) fn compare_and_set<T>(
    result: Result<Option<T>, DieselError>,
) -> Result<Written<T>, RepositoryError> {
    match result {
        Ok(Some(row)) => Ok(Written::Done(row)),
        Ok(None) => Ok(Written::Stale),
        Err(error) if lost_race(&error) => Ok(Written::Stale),
        Err(error) => Err(from_diesel(error)),
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

/// A failure to open a connection, as a diesel error whose kind says whether it is transient
/// (the SQLSTATE is read here, from tokio-postgres, because the boxed error information cannot
/// carry it further): `UnableToSendCommand` for network failures, timeouts and transient
/// SQLSTATEs (57P03 "cannot connect now", 53300 "too many connections", class 08...), `Unknown`
/// for the rest (bad password, missing database...).
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
        // No code: the server was never reached or did not answer (refused, reset, timed out).
        let transient = error.code().is_none_or(is_transient_sqlstate);
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

    #[test]
    fn a_write_that_lost_a_race_is_told_by_its_sqlstate() {
        let error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        assert!(lost_race(&error(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key"
        )));
        assert!(lost_race(&error(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize access"
        )));
        assert!(lost_race(&error(
            DatabaseErrorKind::Unknown,
            "deadlock detected"
        )));
        assert!(!lost_race(&error(
            DatabaseErrorKind::CheckViolation,
            "violates check"
        )));
        assert!(!lost_race(&error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to statement timeout"
        )));
        assert!(!lost_race(&DieselError::NotFound));
    }

    /// Codes this module names, each with the message PostgreSQL sends with it (the path where
    /// diesel-async drops the code) when there is one.
    const TRANSIENT: &[(&str, &str)] = &[
        ("08000", ""),
        ("08003", ""),
        ("08006", ""),
        ("08001", ""),
        ("08004", ""),
        (
            "40001",
            "could not serialize access due to concurrent update",
        ),
        (
            "40001",
            "terminating connection due to conflict with recovery",
        ),
        ("40P01", "deadlock detected"),
        ("57014", "canceling statement due to statement timeout"),
        ("57014", "canceling statement due to user request"),
        ("55P03", "canceling statement due to lock timeout"),
        (
            "55P03",
            "could not obtain lock on row in relation \"wallets\"",
        ),
        (
            "57P01",
            "terminating connection due to administrator command",
        ),
        (
            "57P02",
            "terminating connection because of crash of another server process",
        ),
        ("57P03", "the database system is shutting down"),
        ("57P03", "the database system is starting up"),
        ("53300", "sorry, too many clients already"),
        ("53300", "too many connections for role \"concert\""),
    ];

    const NOT_TRANSIENT: &[(&str, &str)] = &[
        (
            "23505",
            "duplicate key value violates unique constraint \"tickets_pkey\"",
        ),
        (
            "23514",
            "new row for relation \"wallets\" violates check constraint",
        ),
        ("42601", "syntax error at or near \"SELEC\""),
        ("42P01", "relation \"nowhere\" does not exist"),
        ("22012", "division by zero"),
        (
            "28P01",
            "password authentication failed for user \"concert\"",
        ),
        ("3D000", "database \"missing\" does not exist"),
        ("XX000", "internal error"),
    ];

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// The kind diesel-async gives a server error with this code (its own mapping).
    fn kind_of(code: &SqlState) -> DatabaseErrorKind {
        match code.code() {
            "23505" => DatabaseErrorKind::UniqueViolation,
            "23514" => DatabaseErrorKind::CheckViolation,
            "40001" => DatabaseErrorKind::SerializationFailure,
            _ => DatabaseErrorKind::Unknown,
        }
    }

    #[test]
    fn transient_sqlstates_are_the_listed_ones_and_class_08() {
        for (code, _) in TRANSIENT {
            assert!(is_transient_sqlstate(&SqlState::from_code(code)), "{code}");
        }
        for (code, _) in NOT_TRANSIENT {
            assert!(!is_transient_sqlstate(&SqlState::from_code(code)), "{code}");
        }
        // Any code of class 08, even one PostgreSQL does not define today.
        assert!(is_transient_sqlstate(&SqlState::from_code("08P99")));
    }

    #[test]
    fn statement_errors_with_a_transient_code_are_unavailable() {
        for (code, message) in TRANSIENT.iter().filter(|(_, m)| !m.is_empty()) {
            let code = SqlState::from_code(code);
            let error = db_error(kind_of(&code), message);
            let DieselError::DatabaseError(kind, info) = &error else {
                unreachable!()
            };
            assert_eq!(
                sqlstate(kind, info.as_ref()),
                Some(code.clone()),
                "{message}"
            );
            assert!(
                matches!(from_diesel(error), RepositoryError::Unavailable(_)),
                "{code:?} {message}"
            );
        }
    }

    #[test]
    fn statement_errors_with_any_other_code_are_unexpected() {
        for (code, message) in NOT_TRANSIENT {
            let code = SqlState::from_code(code);
            let error = db_error(kind_of(&code), message);
            assert!(
                matches!(from_diesel(error), RepositoryError::Unexpected(_)),
                "{code:?} {message}"
            );
        }
        // The code comes from the kind where diesel-async kept it, not from the text.
        let error = db_error(DatabaseErrorKind::UniqueViolation, "deadlock detected");
        assert!(matches!(from_diesel(error), RepositoryError::Unexpected(_)));
        // A message that merely mentions a transient condition is not one.
        let error = db_error(
            DatabaseErrorKind::Unknown,
            "invalid input: canceling statement due to statement timeout",
        );
        assert!(matches!(from_diesel(error), RepositoryError::Unexpected(_)));
    }

    #[test]
    fn failures_without_a_sqlstate() {
        for kind in [
            DatabaseErrorKind::UnableToSendCommand,
            DatabaseErrorKind::ClosedConnection,
        ] {
            assert!(matches!(
                from_diesel(db_error(kind, "connection closed")),
                RepositoryError::Unavailable(_)
            ));
        }
        assert!(matches!(
            from_diesel(DieselError::BrokenTransactionManager),
            RepositoryError::Unavailable(_)
        ));
        for error in [DieselError::NotFound, DieselError::RollbackTransaction] {
            assert!(matches!(from_diesel(error), RepositoryError::Unexpected(_)));
        }
    }

    #[test]
    fn connection_failures() {
        let timed_out = ConnectFailure::timed_out(std::time::Duration::from_secs(2));
        assert!(matches!(
            from_connection(ConnectionError::CouldntSetupConfiguration(timed_out)),
            RepositoryError::Unavailable(_)
        ));
        // A session setting refused with a transient code (e.g. the server going down).
        let shutting_down = db_error(
            DatabaseErrorKind::Unknown,
            "terminating connection due to administrator command",
        );
        assert!(matches!(
            from_connection(ConnectionError::CouldntSetupConfiguration(shutting_down)),
            RepositoryError::Unavailable(_)
        ));
        assert!(matches!(
            from_connection(ConnectionError::BadConnection("reset".into())),
            RepositoryError::Unavailable(_)
        ));
        assert!(matches!(
            from_connection(ConnectionError::InvalidConnectionUrl("nope".into())),
            RepositoryError::Unexpected(_)
        ));
    }

    #[test]
    fn pool_timeouts_and_closing_are_unavailable() {
        use deadpool::managed::{PoolError, TimeoutType};
        for timeout in [TimeoutType::Wait, TimeoutType::Create, TimeoutType::Recycle] {
            assert!(matches!(
                from_pool(PoolError::Timeout(timeout)),
                RepositoryError::Unavailable(_)
            ));
        }
        assert!(matches!(
            from_pool(PoolError::Closed),
            RepositoryError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::NoRuntimeSpecified),
            RepositoryError::Unexpected(_)
        ));
    }
}
