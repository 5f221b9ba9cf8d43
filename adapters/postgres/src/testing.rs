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
use crate::locks;
use crate::pool::{ConnectSettings, PgPool, build_pool};
use crate::startup::{quote_identifier, run_migrations};

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// Names the template after the migrations it holds.
const TEMPLATE_NAME: &str = concat!("concert_tpl_", env!("CONCERT_MIGRATIONS_HASH"));

static TEMPLATE: OnceCell<()> = OnceCell::const_new();

/// A database of its own for one test, dropped at the end (explicitly with
/// [`TestDatabase::drop`], or by `Drop` on a helper thread).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: ConnectSettings,
    dropped: bool,
}

impl std::fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("database", &self.database())
            .finish_non_exhaustive()
    }
}

impl TestDatabase {
    /// Creates a fresh database holding the migrated schema. Panics when the server cannot be
    /// reached: a test without a database has nothing to say.
    pub async fn create() -> Self {
        let server =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let admin = admin_settings(&server);
        TEMPLATE
            .get_or_init(|| async {
                if let Err(e) = ensure_template(&server, &admin).await {
                    panic!("cannot create the template database {TEMPLATE_NAME}: {e}");
                }
            })
            .await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = open(&admin).await;
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
                // template (autovacuum, a crashed run); it goes away.
                Err(e) if attempt < 20 => {
                    tracing::debug!(error = %e, "retrying CREATE DATABASE");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
        Self {
            url: url_with_database(&server, &name),
            name,
            admin,
            dropped: false,
        }
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool configuration for this database with small timeouts suited to tests.
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
    pub async fn connect(&self) -> AsyncPgConnection {
        open(&self.admin.for_database(&self.name)).await
    }

    /// Drops the database now (terminating its connections).
    pub async fn drop(mut self) {
        self.dropped = true;
        drop_database(&self.admin, &self.name).await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop cannot await; a helper thread with its own runtime can.
        let helper =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(drop_database(&admin, &name)),
                    Err(e) => {
                        tracing::warn!(error = %e, database = %name, "cannot drop test database")
                    }
                }
            });
        let _ = helper.join();
    }
}

fn admin_settings(server: &str) -> ConnectSettings {
    let mut config = PgConfig::new(server);
    config.connect_timeout = Duration::from_secs(10);
    config.application_name = "concert-test-admin".to_owned();
    ConnectSettings::from_config(&config)
        .unwrap_or_else(|e| panic!("DATABASE_URL: {e}"))
        .for_database("postgres")
        .with_statement_timeout(Duration::ZERO)
}

async fn open(settings: &ConnectSettings) -> AsyncPgConnection {
    settings.open().await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test server ({}): {e}",
            settings.database()
        )
    })
}

async fn ensure_template(
    server: &str,
    admin: &ConnectSettings,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    #[derive(diesel::QueryableByName)]
    struct Template {
        #[diesel(sql_type = Bool)]
        datistemplate: bool,
    }
    let mut conn = open(admin).await;
    // Session-level, released when `conn` closes: other binaries wait here while one creates.
    diesel::sql_query("SELECT pg_advisory_lock($1, 0)")
        .bind::<Integer, _>(locks::TEST_TEMPLATE)
        .execute(&mut conn)
        .await?;
    let existing: Option<Template> =
        diesel::sql_query("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(TEMPLATE_NAME)
            .get_result(&mut conn)
            .await
            .map(Some)
            .or_else(|e| {
                if e == diesel::result::Error::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?;
    let quoted = quote_identifier(TEMPLATE_NAME);
    match existing {
        Some(Template {
            datistemplate: true,
        }) => return Ok(()),
        // Left half-made by a run that died: start again.
        Some(Template {
            datistemplate: false,
        }) => {
            diesel::sql_query(format!("DROP DATABASE {quoted} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
        }
        None => {}
    }
    diesel::sql_query(format!("CREATE DATABASE {quoted}"))
        .execute(&mut conn)
        .await?;
    let template =
        ConnectSettings::from_config(&PgConfig::new(url_with_database(server, TEMPLATE_NAME)))?;
    run_migrations(&template).await?;
    // Marked a template only once complete; no connections, so cloning never finds one.
    diesel::sql_query(format!(
        "ALTER DATABASE {quoted} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

async fn drop_database(admin: &ConnectSettings, name: &str) {
    let result = async {
        let mut conn = admin.open().await?;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_identifier(name)
        ))
        .execute(&mut conn)
        .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, database = %name, "cannot drop test database");
    }
}

/// `url` with its database name replaced by `database` (query parameters kept).
pub fn url_with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.split_once('?').map(|(_, q)| q);
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
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
