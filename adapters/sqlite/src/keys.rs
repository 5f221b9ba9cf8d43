//! A signing key the deployment keeps in its own database, for deployments that configure none:
//! the first start stores the candidate it generated, every start then reads the one stored, so
//! tokens signed before a restart still verify after it, and no two deployments share one.

use diesel::sql_types::{BigInt, Binary, Text};
use diesel::{QueryableByName, RunQueryDsl};
use time::OffsetDateTime;

use concert_application::ports::RepositoryError;

use crate::columns::micros;
use crate::error::from_diesel;
use crate::store::SqliteStore;

/// The name of the queue tokens' key (the same as PostgreSQL's).
pub const QUEUE_TOKEN_KEY: &str = "queue-token";

/// The deployment's key `name`: `candidate` if none was stored yet, else the stored one.
pub async fn deployment_key(
    store: &SqliteStore,
    name: &str,
    candidate: &[u8],
) -> Result<Vec<u8>, RepositoryError> {
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Binary)]
        secret: Vec<u8>,
    }
    let name = name.to_owned();
    let candidate = candidate.to_vec();
    let created_at = micros(OffsetDateTime::now_utc());
    store
        .write(move |conn| {
            diesel::sql_query(
                "INSERT INTO deployment_keys (name, secret, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind::<Text, _>(&name)
            .bind::<Binary, _>(&candidate)
            .bind::<BigInt, _>(created_at)
            .execute(conn)
            .map_err(from_diesel)?;
            diesel::sql_query("SELECT secret FROM deployment_keys WHERE name = ?1")
                .bind::<Text, _>(&name)
                .get_result::<Stored>(conn)
                .map(|stored| stored.secret)
                .map_err(from_diesel)
        })
        .await
}
