//! The connection pool: deadpool over diesel-async's `AsyncPgConnection`.
//!
//! - New connections are opened with a connect timeout (TCP, authentication and setup together)
//!   and run `SET statement_timeout`; `application_name` is a startup parameter.
//! - Waiting for a free connection is bounded (`acquire_timeout`), so a down database fails fast.
//! - A connection is checked before reuse: it is dropped when its socket is closed or a
//!   transaction was left open, and one that sat unused for [`VERIFY_AFTER_IDLE`] or longer must
//!   also answer `SELECT 1` (`RecyclingMethod::Verified`); a fresh one is opened in its place, so
//!   the pool recovers by itself when the database comes back. A connection in steady use skips
//!   the `SELECT 1`: under load it would be one extra round trip per repository call.
//! - Every repository operation also runs under a client-side deadline, so even a database that
//!   stops answering without closing the socket cannot hang a request.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use concert_application::ports::RepositoryError;
use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use diesel::ConnectionResult;
use diesel::result::ConnectionError;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::config::PgConfig;
use crate::error::{self, ConnectFailure, StartupError};

/// A connection borrowed from the pool; it goes back when dropped.
pub type PooledConnection = Object<PgManager>;

/// A pooled connection last handed out this long ago or longer is verified with `SELECT 1` before
/// it is handed out again. One handed out more recently was in use a moment ago: if the database
/// closed it since, its socket says so (`is_broken`), which is checked every time.
pub const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(1);

/// diesel-async's manager (which opens connections and verifies them), with the verification
/// skipped for connections in steady use.
pub struct PgManager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
}

impl fmt::Debug for PgManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgManager").finish_non_exhaustive()
    }
}

impl Manager for PgManager {
    type Type = AsyncPgConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, PoolError> {
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        if metrics.last_used() >= VERIFY_AFTER_IDLE {
            return self.inner.recycle(conn, metrics).await;
        }
        if std::thread::panicking() || conn.is_broken() {
            return Err(RecycleError::Message("Broken connection".into()));
        }
        Ok(())
    }
}

/// The pool every repository shares. Cheap to clone.
#[derive(Clone)]
pub struct PgPool {
    inner: Pool<PgManager>,
    /// Client-side bound of one repository operation (acquire + statements + commit).
    operation_deadline: Duration,
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.status();
        f.debug_struct("PgPool")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .field("operation_deadline", &self.operation_deadline)
            .finish()
    }
}

/// Builds the pool. Opens no connection yet: the first request does, so this succeeds while the
/// database is down and the service reports itself not ready until it is back.
pub fn build_pool(config: &PgConfig) -> Result<PgPool, StartupError> {
    let connect = ConnectSettings::from_config(config)?;
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    manager_config.recycling_method = RecyclingMethod::Verified;
    manager_config.custom_setup = Box::new(move |_url| {
        let connect = connect.clone();
        Box::pin(async move { connect.open().await })
    });
    let manager = PgManager {
        inner: AsyncDieselConnectionManager::new_with_config(config.url.clone(), manager_config),
    };
    let inner = Pool::builder(manager)
        .max_size(config.max_connections.max(1))
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(config.acquire_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| StartupError::Pool(Box::new(e)))?;
    // Acquire (or connect), then a statement or two.
    let operation_deadline =
        config.acquire_timeout + config.connect_timeout + config.statement_timeout * 2;
    Ok(PgPool {
        inner,
        operation_deadline,
    })
}

impl PgPool {
    /// Borrows a connection: `Unavailable` when none is free within the acquire timeout or a new
    /// one cannot be opened.
    pub async fn get(&self) -> Result<PooledConnection, RepositoryError> {
        self.inner.get().await.map_err(error::from_pool)
    }

    /// Size, idle connections and waiters, for metrics and tests.
    pub fn status(&self) -> deadpool::Status {
        self.inner.status()
    }

    /// Closes the pool: idle connections are dropped and every later `get` fails.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Runs one repository operation under the client-side deadline. A future dropped half-way
    /// leaves its connection in a transaction; the pool's recycle check then discards it.
    pub(crate) async fn run<T>(
        &self,
        operation: impl Future<Output = Result<T, RepositoryError>>,
    ) -> Result<T, RepositoryError> {
        match tokio::time::timeout(self.operation_deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(RepositoryError::Unavailable(
                format!(
                    "no answer from the database within {:?}",
                    self.operation_deadline
                )
                .into(),
            )),
        }
    }
}

/// What opening one connection needs, prepared once from the config.
#[derive(Clone)]
pub(crate) struct ConnectSettings {
    postgres: tokio_postgres::Config,
    connect_timeout: Duration,
    statement_timeout: Duration,
}

impl fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("database", &self.database())
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectSettings {
    pub(crate) fn from_config(config: &PgConfig) -> Result<Self, StartupError> {
        let mut postgres = parse_url(&config.url)?;
        postgres.connect_timeout(config.connect_timeout);
        postgres.application_name(&config.application_name);
        Ok(Self {
            postgres,
            connect_timeout: config.connect_timeout,
            statement_timeout: config.statement_timeout,
        })
    }

    /// The same settings with another statement timeout (zero: none).
    pub(crate) fn with_statement_timeout(&self, timeout: Duration) -> Self {
        let mut other = self.clone();
        other.statement_timeout = timeout;
        other
    }

    /// The same server and settings, another database.
    pub(crate) fn for_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.postgres.dbname(database);
        other
    }

    /// The database the settings name; like libpq, the user name when none is given.
    pub(crate) fn database(&self) -> String {
        self.postgres
            .get_dbname()
            .or(self.postgres.get_user())
            .unwrap_or("postgres")
            .to_owned()
    }

    /// Opens one connection: TCP and authentication, then the session settings, all within the
    /// connect timeout.
    pub(crate) async fn open(&self) -> ConnectionResult<AsyncPgConnection> {
        let attempt = async {
            let (client, connection) =
                self.postgres
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| {
                        ConnectionError::CouldntSetupConfiguration(ConnectFailure::from_postgres(
                            &e,
                        ))
                    })?;
            let mut conn =
                AsyncPgConnection::try_from_client_and_connection(client, connection).await?;
            // The migration connection sets a long one: it waits for its lock.
            let millis = self.statement_timeout.as_millis();
            conn.batch_execute(&format!("SET statement_timeout = {millis}"))
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ConnectionError::CouldntSetupConfiguration(
                ConnectFailure::timed_out(self.connect_timeout),
            )),
        }
    }
}

pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, StartupError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| StartupError::InvalidUrl(format!("{}: {e}", crate::config::redact_url(url))))
}
