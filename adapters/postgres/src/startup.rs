//! Start-up: create the database when it is missing, then run the embedded migrations under an
//! advisory lock so that several instances may start at once.

use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::PgConfig;
use crate::error::StartupError;
use crate::locks;
use crate::pool::ConnectSettings;

/// The schema, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The database every PostgreSQL server has, used to create the others.
const MAINTENANCE_DATABASES: [&str; 2] = ["postgres", "template1"];

/// How long the migration connection may wait for another instance's migrations.
const MIGRATION_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Makes the database of `url` ready: created if missing (tolerating another instance creating it
/// at the same moment), then migrated to the embedded schema on a one-off connection holding
/// `pg_advisory_lock`, so concurrent starts run the migrations once.
pub async fn prepare_database(url: &str) -> Result<(), StartupError> {
    let settings = ConnectSettings::from_config(&PgConfig::new(url))?;
    let database = settings.database();
    if settings.open().await.is_err() {
        create_database_if_missing(&settings, &database).await?;
    }
    run_migrations(&settings).await
}

/// Runs the pending embedded migrations on the database of `url`.
pub async fn migrate(url: &str) -> Result<(), StartupError> {
    let settings = ConnectSettings::from_config(&PgConfig::new(url))?;
    run_migrations(&settings).await
}

pub(crate) async fn run_migrations(settings: &ConnectSettings) -> Result<(), StartupError> {
    let database = settings.database();
    let connect_error = |source: diesel::ConnectionError| StartupError::Connect {
        database: database.clone(),
        source: Box::new(source),
    };
    let mut conn = settings
        .with_statement_timeout(MIGRATION_STATEMENT_TIMEOUT)
        .open()
        .await
        .map_err(connect_error)?;
    warn_if_messages_translated(&mut conn).await;
    // Session-level: held until this connection closes, which is right after the migrations.
    diesel::sql_query("SELECT pg_advisory_lock($1, 0)")
        .bind::<Integer, _>(locks::MIGRATIONS)
        .execute(&mut conn)
        .await
        .map_err(|e| StartupError::Migrate(Box::new(e)))?;
    // diesel's migration harness is synchronous: run it through the async connection's blocking
    // wrapper on a blocking thread (the wrapper drives its futures on this runtime's handle).
    // Not diesel-async's `AsyncMigrationHarness`: it wraps the same blocking wrapper in
    // `block_in_place`, which stalls a runtime worker meanwhile and panics on a current-thread
    // runtime; `spawn_blocking` works on either.
    let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(conn);
    let applied = tokio::task::spawn_blocking(move || {
        let applied = wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>());
        drop(wrapper); // closes the connection, releasing the advisory lock
        applied
    })
    .await
    .map_err(|e| StartupError::Migrate(Box::new(e)))?
    .map_err(StartupError::Migrate)?;
    if applied.is_empty() {
        tracing::debug!(%database, "database schema is up to date");
    } else {
        tracing::info!(%database, migrations = ?applied, "database migrated");
    }
    Ok(())
}

/// Warns when the server sends its messages translated. A few transient failures (deadlock,
/// statement or lock timeout, server shutting down) are recognised by their English message,
/// because diesel-async drops their SQLSTATE (`crate::error`); translated, they would be answered
/// as unexpected (500) instead of "try again" (503).
async fn warn_if_messages_translated(conn: &mut AsyncPgConnection) {
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let setting = diesel::sql_query("SELECT current_setting('lc_messages') AS value")
        .get_result::<Setting>(conn)
        .await;
    match setting {
        Ok(Setting { value }) if !messages_are_english(&value) => tracing::warn!(
            lc_messages = %value,
            "PostgreSQL sends translated messages: deadlocks, timeouts and shutdowns would be \
             answered 500 instead of 503; set lc_messages = 'C' for this role \
             (ALTER ROLE ... SET lc_messages = 'C')"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not read lc_messages"),
    }
}

/// Whether an `lc_messages` locale leaves PostgreSQL's messages in English.
pub(crate) fn messages_are_english(locale: &str) -> bool {
    let language = locale.split(['.', '@']).next().unwrap_or_default().trim();
    language.is_empty()
        || ["C", "POSIX", "en", "English"].contains(&language)
        || language.starts_with("en_")
        || language.starts_with("English_")
}

/// Creates `database` unless it exists, from a maintenance database of the same server.
pub(crate) async fn create_database_if_missing(
    settings: &ConnectSettings,
    database: &str,
) -> Result<(), StartupError> {
    let mut last_error = None;
    let mut maintenance = None;
    for name in MAINTENANCE_DATABASES {
        match settings.for_database(name).open().await {
            Ok(conn) => {
                maintenance = Some(conn);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(mut conn) = maintenance else {
        return Err(StartupError::Connect {
            database: MAINTENANCE_DATABASES[0].to_owned(),
            source: last_error
                .map_or_else(|| "no maintenance database".into(), |e| Box::new(e) as _),
        });
    };
    if database_exists(&mut conn, database).await? {
        return Ok(());
    }
    let create = format!("CREATE DATABASE {}", quote_identifier(database));
    match diesel::sql_query(create).execute(&mut conn).await {
        Ok(_) => {
            tracing::info!(%database, "database created");
            Ok(())
        }
        // Another instance created it between our check and our CREATE (42P04
        // duplicate_database, or a unique violation on pg_database when both ran at once).
        Err(_) if database_exists(&mut conn, database).await? => Ok(()),
        Err(e) => Err(StartupError::CreateDatabase {
            database: database.to_owned(),
            source: Box::new(e),
        }),
    }
}

pub(crate) async fn database_exists(
    conn: &mut AsyncPgConnection,
    database: &str,
) -> Result<bool, StartupError> {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(database)
        .get_result::<Exists>(conn)
        .await
        .map(|row| row.exists)
        .map_err(|e| StartupError::CreateDatabase {
            database: database.to_owned(),
            source: Box::new(e),
        })
}

/// `"name"` with inner quotes doubled: safe to splice into DDL, which takes no bind parameters.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_english_and_untranslated_locales_count_as_english() {
        for english in [
            "",
            "C",
            "C.UTF-8",
            "POSIX",
            "en",
            "en_US.UTF-8",
            "en_GB",
            "en_US.utf8@euro",
            "English_United States.1252",
        ] {
            assert!(messages_are_english(english), "{english:?}");
        }
        for translated in [
            "de_DE.UTF-8",
            "fr_FR",
            "ja_JP.eucJP",
            "Enx",
            "German_Germany.1252",
        ] {
            assert!(!messages_are_english(translated), "{translated:?}");
        }
    }

    #[test]
    fn identifiers_are_quoted_for_ddl() {
        assert_eq!(quote_identifier("concert"), "\"concert\"");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
    }
}
