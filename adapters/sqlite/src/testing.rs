//! Test fixtures (feature `test-support`): raw rows and raw reads through the store, for what
//! the ports neither write nor show. Each section belongs to the repository whose tests use it.

use concert_application::ports::RepositoryError;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use time::OffsetDateTime;

use crate::columns::micros;
use crate::error::from_diesel;
use crate::store::SqliteStore;

// ---- Queue and pre-queue (`SqliteQueueRepository`'s tests). ----

/// A room on `line` (`OPEN`, `max_active` places), with `opens_at` when it gathers a pre-queue
/// first, and its line's `queue_state` row (`serving = issued_hwm = line << 40`), as the room
/// repository's creation writes them. Panics if the rows cannot be written.
pub async fn insert_room(
    store: &SqliteStore,
    room_id: &str,
    line: u32,
    max_active: u32,
    opens_at: Option<OffsetDateTime>,
) {
    let room_id = room_id.to_owned();
    let start = i64::from(line) << 40;
    store
        .write(move |conn| {
            diesel::sql_query(
                "INSERT INTO rooms (room_id, line, max_active, state, updated_at, opens_at) \
                 VALUES (?, ?, ?, 'OPEN', 0, ?)",
            )
            .bind::<Text, _>(&room_id)
            .bind::<BigInt, _>(i64::from(line))
            .bind::<BigInt, _>(i64::from(max_active))
            .bind::<Nullable<BigInt>, _>(opens_at.map(micros))
            .execute(conn)
            .map_err(from_diesel)?;
            diesel::sql_query(
                "INSERT INTO queue_state (line, serving, issued_hwm) VALUES (?1, ?2, ?2) \
                 ON CONFLICT (line) DO NOTHING",
            )
            .bind::<BigInt, _>(i64::from(line))
            .bind::<BigInt, _>(start)
            .execute(conn)
            .map_err(from_diesel)?;
            Ok(())
        })
        .await
        .expect("the room's rows");
}

/// The one integer a raw query selects `AS count`. Panics if it fails.
pub async fn count(store: &SqliteStore, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let sql = sql.to_owned();
    store
        .read(move |conn| {
            diesel::sql_query(sql)
                .get_result::<Count>(conn)
                .map_err(from_diesel)
        })
        .await
        .expect("a count")
        .count
}

/// Every row the lines are made of (tickets, places, line states, counters, pre-queue entries,
/// rooms) as text: two equal dumps mean that nothing was written in between.
pub async fn queue_rows(store: &SqliteStore) -> String {
    #[derive(QueryableByName)]
    struct Dump {
        #[diesel(sql_type = Text)]
        dump: String,
    }
    store
        .read(|conn| {
            diesel::sql_query(
                "SELECT \
                   (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT json_array(\
                      ticket, user_id, status, issued_at, admitted_at, active_until, last_seen, \
                      ended_at, end_reason) AS r FROM queue_tickets ORDER BY ticket)) \
                   || '|' || (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT \
                      json_array(user_id, line, version) AS r FROM queue_members \
                      ORDER BY user_id, line)) \
                   || '|' || (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT \
                      json_array(line, serving, admitted_total, issued_total, issued_hwm, \
                      ended_waiting_total, pace_credit_millis, pace_at) AS r FROM queue_state \
                      ORDER BY line)) \
                   || '|' || (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT \
                      json_array(name, value) AS r FROM counters ORDER BY name)) \
                   || '|' || (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT \
                      json_array(entry, line, user_id, issued_at, ticket, ended_at, \
                      end_reason) AS r FROM pre_queue ORDER BY entry)) \
                   || '|' || (SELECT coalesce(group_concat(r, ';'), '') FROM (SELECT \
                      json_array(room_id, line, version, updated_at, opens_at, opened) AS r \
                      FROM rooms ORDER BY room_id)) AS dump",
            )
            .get_result::<Dump>(conn)
            .map_err(from_diesel)
        })
        .await
        .map(|dump| dump.dump)
        .unwrap_or_else(|error: RepositoryError| panic!("dump: {error:?}"))
}
