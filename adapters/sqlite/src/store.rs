//! The database file, its one connection and the two ways to use it.
//!
//! - **One connection, one writer.** SQLite lets one transaction write at a time, so the store
//!   keeps a single connection behind a mutex and runs each repository operation on it, on
//!   tokio's blocking pool (SQLite calls block). A write runs in `BEGIN IMMEDIATE`, which takes
//!   the write lock at its start: its reads and its compare-and-set see one state that nothing
//!   else changes before the commit.
//! - **One process per file.** The store takes an exclusive lock on the database file at open
//!   (`flock`, which SQLite itself never uses) and keeps it while it lives: a second instance on
//!   the same file refuses to start with a message that says so. Several instances need
//!   PostgreSQL.
//! - **Durable commits.** Write-ahead logging with `synchronous = FULL`: a commit that was
//!   answered survives a crash of the process or of the machine.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use concert_application::ports::RepositoryError;
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{OpenError, from_diesel};

/// The schema, compiled into the binary and applied at open.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a statement waits for a lock held by another connection (only an operator's
/// `sqlite3` shell can hold one: the service has one connection) before `Unavailable`.
const BUSY_TIMEOUT_MS: u32 = 2_000;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A database file, created when missing.
    File(PathBuf),
    /// A private in-memory database, gone with the store: for tests.
    Memory,
}

impl Location {
    /// Parses `sqlite://PATH` (relative to the working directory, or absolute as
    /// `sqlite:///abs/path`), `sqlite:PATH`, or `sqlite::memory:`.
    pub fn parse(url: &str) -> Result<Self, OpenError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| OpenError::InvalidUrl(format!("{url:?} is not a sqlite: URL")))?;
        if rest == ":memory:" {
            return Ok(Self::Memory);
        }
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(OpenError::InvalidUrl(format!("{url:?} names no file")));
        }
        Ok(Self::File(PathBuf::from(path)))
    }

    /// Whether `url` names the embedded store.
    pub fn is_sqlite_url(url: &str) -> bool {
        url.starts_with("sqlite:")
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Memory => f.write_str(":memory:"),
        }
    }
}

/// The open store. Cheap to clone: every repository holds one.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Mutex<SqliteConnection>,
    location: Location,
    /// Held for the store's life: the lock that keeps a second process off the file.
    _instance_lock: Option<File>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the store a `sqlite:` URL names.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let location = Location::parse(url)?;
        tokio::task::spawn_blocking(move || Self::open_blocking(location))
            .await
            .map_err(|e| OpenError::Open(Box::new(e)))?
    }

    /// A fresh in-memory store, migrated: for tests.
    pub fn in_memory() -> Result<Self, OpenError> {
        Self::open_blocking(Location::Memory)
    }

    fn open_blocking(location: Location) -> Result<Self, OpenError> {
        let (instance_lock, url) = match &location {
            Location::File(path) => (Some(lock_instance(path)?), path.display().to_string()),
            Location::Memory => (None, ":memory:".to_owned()),
        };
        let mut connection =
            SqliteConnection::establish(&url).map_err(|e| OpenError::Open(Box::new(e)))?;
        connection
            .batch_execute(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
            ))
            .map_err(|e| OpenError::Open(Box::new(e)))?;
        connection
            .run_pending_migrations(MIGRATIONS)
            .map_err(OpenError::Migrate)?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection: Mutex::new(connection),
                location,
                _instance_lock: instance_lock,
            }),
        })
    }

    /// Where the data lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// Runs `read` on the connection, outside any explicit transaction (one statement is one
    /// snapshot; several that must agree go through [`SqliteStore::write`] or a transaction).
    pub(crate) async fn read<T, F>(&self, read: F) -> Result<T, RepositoryError>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<T, RepositoryError> + Send + 'static,
        T: Send + 'static,
    {
        self.blocking(move |conn| read(conn)).await
    }

    /// Runs `write` in one `BEGIN IMMEDIATE` transaction: committed when it returns `Ok`, rolled
    /// back whole when it returns `Err`.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, RepositoryError>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<T, RepositoryError> + Send + 'static,
        T: Send + 'static,
    {
        self.blocking(move |conn| immediate(conn, write)).await
    }

    /// [`SqliteStore::write`] for a write that consults state it borrows (the caller's rules):
    /// it runs on the calling thread. On a multi-threaded runtime `block_in_place` first hands
    /// this worker's other tasks to another thread; on a current-thread runtime (tests) it simply
    /// blocks, which the short transactions of the store allow.
    pub(crate) fn write_here<T>(
        &self,
        write: impl FnOnce(&mut SqliteConnection) -> Result<T, RepositoryError>,
    ) -> Result<T, RepositoryError> {
        let run = || immediate(&mut self.inner.lock(), write);
        match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, RepositoryError>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<T, RepositoryError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&mut inner.lock()))
            .await
            .map_err(|e| RepositoryError::Unexpected(Box::new(e)))?
    }
}

impl Inner {
    /// The connection. A panic while it was held leaves no transaction open (diesel rolls back
    /// on unwind), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, SqliteConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs `write` in one `BEGIN IMMEDIATE` transaction on `conn`.
fn immediate<T>(
    conn: &mut SqliteConnection,
    write: impl FnOnce(&mut SqliteConnection) -> Result<T, RepositoryError>,
) -> Result<T, RepositoryError> {
    conn.immediate_transaction::<T, TransactionError, _>(|conn| {
        write(conn).map_err(TransactionError::Repository)
    })
    .map_err(|error| match error {
        TransactionError::Repository(error) => error,
        TransactionError::Diesel(error) => from_diesel(error),
    })
}

/// What ends a write transaction early.
#[derive(Debug)]
enum TransactionError {
    Repository(RepositoryError),
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for TransactionError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Diesel(error)
    }
}

/// Creates the file when missing and locks it for this process.
fn lock_instance(path: &Path) -> Result<File, OpenError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| OpenError::Open(Box::new(e)))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| OpenError::Open(Box::new(e)))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(OpenError::Open(Box::new(e))),
    }
}
