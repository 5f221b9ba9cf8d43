//! A signing key the deployment keeps in its own database, for deployments that configure none:
//! the first instance stores the candidate it generated, every instance (itself included) then
//! reads the one stored, so all of them sign and verify with the same key, and no two
//! deployments share one.

use diesel::sql_types::{Bytea, Text};
use diesel_async::RunQueryDsl;

use crate::config::PgConfig;
use crate::error::StartupError;
use crate::pool::ConnectSettings;

/// The name of the queue tokens' key.
pub const QUEUE_TOKEN_KEY: &str = "queue-token";

/// The deployment's key `name`: `candidate` if none was stored yet, else the stored one.
pub async fn deployment_key(
    url: &str,
    name: &str,
    candidate: &[u8],
) -> Result<Vec<u8>, StartupError> {
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Bytea)]
        secret: Vec<u8>,
    }
    let settings = ConnectSettings::from_config(&PgConfig::new(url))?;
    let database = settings.database();
    let mut conn = settings.open().await.map_err(|e| StartupError::Connect {
        database: database.clone(),
        source: Box::new(e),
    })?;
    let failed = |e: diesel::result::Error| StartupError::Connect {
        database: database.clone(),
        source: Box::new(e),
    };
    diesel::sql_query(
        "INSERT INTO deployment_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind::<Text, _>(name)
    .bind::<Bytea, _>(candidate)
    .execute(&mut conn)
    .await
    .map_err(failed)?;
    let stored: Stored = diesel::sql_query("SELECT secret FROM deployment_keys WHERE name = $1")
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await
        .map_err(failed)?;
    Ok(stored.secret)
}
