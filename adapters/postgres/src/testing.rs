//! Test support (feature `test-support`): a fresh, migrated database per test.
//!
//! The first [`TestDatabase::create`] of a process makes sure a template database holding the
//! migrated schema exists: `concert_tpl_<hash of the migrations>`, created under an advisory lock
//! because several test binaries may start at once, and reused by every later run while the
//! migrations stay the same. Each test then gets `CREATE DATABASE test_<random> TEMPLATE ...
//! STRATEGY = FILE_COPY` (a file copy, far faster than migrating) and drops it `WITH (FORCE)`.
//!
//! The server comes from `DATABASE_URL` when set (its database name is replaced), else
//! `postgres://postgres@127.0.0.1:5432`.

use std::time::Duration;

use diesel::sql_types::{Bool, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

use crate::config::PgConfig;
use crate::error::StartupError;
use crate::locks;
use crate::pool::{ConnectSettings, PgPool, build_pool};
use crate::startup::{quote_identifier, run_migrations};

/// How the repositories classify a diesel error (`Unavailable` when transient, else
/// `Unexpected`), for tests that provoke errors from a live server on a connection of their own.
pub fn repository_error(
    error: diesel::result::Error,
) -> concert_application::ports::RepositoryError {
    crate::error::from_diesel(error)
}

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// Names the template after the migrations it holds.
const TEMPLATE_NAME: &str = concat!("concert_tpl_", env!("CONCERT_MIGRATIONS_HASH"));

/// Set once the template exists in this process; a failed attempt is retried by the next test.
static TEMPLATE: OnceCell<()> = OnceCell::const_new();

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A database of its own for one test, dropped at the end: explicitly with
/// [`TestDatabase::drop_database`], else by `Drop` on a helper thread.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: ConnectSettings,
    dropped: bool,
}

impl TestDatabase {
    /// Creates a fresh database holding the migrated schema.
    pub async fn create() -> Result<Self, StartupError> {
        let server =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let admin = admin_settings(&server)?;
        TEMPLATE
            .get_or_try_init(|| ensure_template(&server, &admin))
            .await?;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = open(&admin).await?;
        let create = format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY = FILE_COPY",
            quote_identifier(&name),
            quote_identifier(TEMPLATE_NAME)
        );
        let mut attempt = 0;
        loop {
            match diesel::sql_query(&create).execute(&mut conn).await {
                Ok(_) => break,
                // "source database is being accessed by other users": a stray connection to the
                // template (a crashed run, autovacuum); it goes away.
                Err(e) if attempt < 20 => {
                    tracing::debug!(error = %e, "retrying CREATE DATABASE");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(StartupError::CreateDatabase {
                        database: name,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(Self {
            url: url_with_database(&server, &name),
            name,
            admin,
            dropped: false,
        })
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool configuration for this database (production timeouts, a small pool).
    pub fn config(&self) -> PgConfig {
        let mut config = PgConfig::new(self.url.clone());
        config.max_connections = 8;
        config.application_name = format!("concert-test-{}", &self.name[5..13]);
        config
    }

    /// A pool of at most `max_connections` connections to this database.
    pub fn pool(&self, max_connections: usize) -> PgPool {
        let mut config = self.config();
        config.max_connections = max_connections;
        build_pool(&config).expect("a valid test pool configuration")
    }

    /// One connection outside any pool, for assertions on raw rows.
    pub async fn connect(&self) -> Result<AsyncPgConnection, StartupError> {
        open(&self.admin.for_database(&self.name)).await
    }

    /// Drops the database now, terminating its connections.
    pub async fn drop_database(mut self) -> Result<(), StartupError> {
        self.dropped = true;
        drop_database(&self.admin, &self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop cannot await; a helper thread with a runtime of its own can.
        let helper = std::thread::spawn(move || {
            let dropped = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StartupError::Connect {
                    database: name.clone(),
                    source: Box::new(e),
                })
                .and_then(|runtime| runtime.block_on(drop_database(&admin, &name)));
            if let Err(e) = dropped {
                tracing::warn!(error = %e, database = %name, "cannot drop test database");
            }
        });
        let _ = helper.join();
    }
}

fn admin_settings(server: &str) -> Result<ConnectSettings, StartupError> {
    let mut config = PgConfig::new(server);
    config.connect_timeout = Duration::from_secs(10);
    config.application_name = "concert-test-admin".to_owned();
    Ok(ConnectSettings::from_config(&config)?
        .for_database("postgres")
        .with_statement_timeout(Duration::ZERO))
}

async fn open(settings: &ConnectSettings) -> Result<AsyncPgConnection, StartupError> {
    settings.open().await.map_err(|e| StartupError::Connect {
        database: settings.database(),
        source: Box::new(e),
    })
}

async fn ensure_template(server: &str, admin: &ConnectSettings) -> Result<(), StartupError> {
    let mut conn = open(admin).await?;
    create_template(server, &mut conn)
        .await
        .map_err(|source| StartupError::CreateDatabase {
            database: TEMPLATE_NAME.to_owned(),
            source,
        })
}

async fn create_template(server: &str, conn: &mut AsyncPgConnection) -> Result<(), BoxError> {
    #[derive(diesel::QueryableByName)]
    struct Template {
        #[diesel(sql_type = Bool)]
        datistemplate: bool,
    }
    // Session-level, released when `conn` closes: other binaries wait here while one creates.
    diesel::sql_query("SELECT pg_advisory_lock($1, 0)")
        .bind::<Integer, _>(locks::TEST_TEMPLATE)
        .execute(conn)
        .await?;
    let existing: Vec<Template> =
        diesel::sql_query("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(TEMPLATE_NAME)
            .load(conn)
            .await?;
    let quoted = quote_identifier(TEMPLATE_NAME);
    match <[Template]>::first(&existing) {
        Some(Template {
            datistemplate: true,
        }) => return Ok(()),
        // Left half-made by a run that died: start again.
        Some(Template {
            datistemplate: false,
        }) => {
            diesel::sql_query(format!("DROP DATABASE {quoted} WITH (FORCE)"))
                .execute(conn)
                .await?;
        }
        None => {}
    }
    diesel::sql_query(format!("CREATE DATABASE {quoted}"))
        .execute(conn)
        .await?;
    let template =
        ConnectSettings::from_config(&PgConfig::new(url_with_database(server, TEMPLATE_NAME)))?;
    run_migrations(&template).await?;
    // Marked a template only once complete; no connections, so cloning never finds one.
    diesel::sql_query(format!(
        "ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
    ))
    .execute(conn)
    .await?;
    Ok(())
}

async fn drop_database(admin: &ConnectSettings, name: &str) -> Result<(), StartupError> {
    let mut conn = open(admin).await?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(name)
    ))
    .execute(&mut conn)
    .await
    .map(|_| ())
    .map_err(|e| StartupError::CreateDatabase {
        database: name.to_owned(),
        source: Box::new(e),
    })
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match tail.split_once('?') {
        Some((_, query)) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_and_parameters_kept() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/concert?sslmode=disable", "t2"),
            "postgres://u:p@h:5432/t2?sslmode=disable"
        );
        assert_eq!(
            url_with_database("postgresql://h/", "t3"),
            "postgresql://h/t3"
        );
    }
}
