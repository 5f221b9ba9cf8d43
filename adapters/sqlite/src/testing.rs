//! Test support (feature `test-support`): raw rows behind the ports' back, for the hooks of the
//! port contract (`concert-contract`'s `Store`) and this crate's own tests: statements of the
//! test's own, and raw-row reads for assertions (counts, single values, dumps of the tables a
//! write touches).
//!
//! The SQL given to [`count`] and [`execute`] is the test's own: nothing here is for production.

use concert_application::ports::RepositoryError;
use concert_domain::TicketNo;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};

use crate::error::{corrupt, from_diesel};
use crate::store::SqliteStore;

/// The tables a booking or money write touches, as [`rows`] dumps them.
pub const WRITTEN_TABLES: [&str; 8] = [
    "seats",
    "reservations",
    "user_holds",
    "wallets",
    "ledger_entries",
    "payments",
    "idempotency_keys",
    "queue_tickets",
];

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Dump {
    #[diesel(sql_type = Text)]
    dump: String,
}

/// One number from a SQL query returning a `count` column. Panics if the query fails.
pub async fn count(store: &SqliteStore, sql: &str) -> i64 {
    let query = sql.to_owned();
    store
        .read(move |conn| {
            let row: Count = diesel::sql_query(query)
                .get_result(conn)
                .map_err(from_diesel)?;
            Ok(row.count)
        })
        .await
        .unwrap_or_else(|e: RepositoryError| panic!("{sql}: {e:?}"))
}

/// The text of the one `dump` column `sql` selects. Panics if the query fails.
pub async fn dump(store: &SqliteStore, sql: &str) -> String {
    let query = sql.to_owned();
    store
        .read(move |conn| {
            let row: Dump = diesel::sql_query(query)
                .get_result(conn)
                .map_err(from_diesel)?;
            Ok(row.dump)
        })
        .await
        .unwrap_or_else(|e: RepositoryError| panic!("{sql}: {e:?}"))
}

/// The `value` column of the first row of a SQL query (`None` without a row, or for `NULL`).
/// Panics if the query fails.
pub async fn number(store: &SqliteStore, sql: &str) -> Option<i64> {
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = Nullable<BigInt>)]
        value: Option<i64>,
    }
    let query = sql.to_owned();
    store
        .read(move |conn| {
            let rows: Vec<Value> = diesel::sql_query(query).load(conn).map_err(from_diesel)?;
            Ok(rows.into_iter().next().and_then(|row| row.value))
        })
        .await
        .unwrap_or_else(|e: RepositoryError| panic!("{sql}: {e:?}"))
}

/// The `value` text column of the first row of a SQL query (`None` without a row, or for
/// `NULL`). Panics if the query fails.
pub async fn text(store: &SqliteStore, sql: &str) -> Option<String> {
    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = Nullable<Text>)]
        value: Option<String>,
    }
    let query = sql.to_owned();
    store
        .read(move |conn| {
            let rows: Vec<Value> = diesel::sql_query(query).load(conn).map_err(from_diesel)?;
            Ok(rows.into_iter().next().and_then(|row| row.value))
        })
        .await
        .unwrap_or_else(|e: RepositoryError| panic!("{sql}: {e:?}"))
}

/// Runs one SQL statement in a write transaction (a fixture, or another write of a row).
pub async fn execute(store: &SqliteStore, sql: &str) -> Result<usize, RepositoryError> {
    let sql = sql.to_owned();
    store
        .write(move |conn| diesel::sql_query(sql).execute(conn).map_err(from_diesel))
        .await
}

/// Every row of every table in [`WRITTEN_TABLES`], as text: two equal dumps mean that nothing
/// was written in between.
pub async fn rows(store: &SqliteStore) -> Result<String, RepositoryError> {
    store
        .read(move |conn| {
            let mut dumps = Vec::with_capacity(WRITTEN_TABLES.len());
            for table in WRITTEN_TABLES {
                // Each row as the `quote()`d values of its columns, in column order.
                let columns: Dump = diesel::sql_query(
                    "SELECT group_concat('quote(' || name || ')', ' || '','' || ') AS dump \
                     FROM (SELECT name FROM pragma_table_info(?1) ORDER BY cid)",
                )
                .bind::<Text, _>(table)
                .get_result(conn)
                .map_err(from_diesel)?;
                let dump: Dump = diesel::sql_query(format!(
                    "SELECT coalesce(group_concat(x, ';'), '') AS dump \
                     FROM (SELECT {} AS x FROM {table} ORDER BY x)",
                    columns.dump
                ))
                .get_result(conn)
                .map_err(from_diesel)?;
                dumps.push(format!("{table}:{}", dump.dump));
            }
            Ok(dumps.join("|"))
        })
        .await
}

// ---- Waiting line (the port contract's `queue`, `queue_races` and `pre_queue` hooks). ----

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

/// The number of every stored ticket, of every line, ascending.
pub async fn ticket_numbers(store: &SqliteStore) -> Result<Vec<TicketNo>, RepositoryError> {
    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = BigInt)]
        ticket: i64,
    }
    store
        .read(|conn| {
            diesel::sql_query("SELECT ticket FROM queue_tickets ORDER BY ticket")
                .load::<Number>(conn)
                .map_err(from_diesel)?
                .into_iter()
                .map(|row| TicketNo::new(row.ticket).map_err(corrupt))
                .collect()
        })
        .await
}

/// The default line's figures in one statement (one snapshot): tickets `ACTIVE`, waiting tickets
/// passed by an admitted one, tickets ever admitted, the highest admitted, tickets `WAITING`, and
/// the stored serving counter, admissions tally and waiting count as the snapshot computes it.
pub async fn line_figures(store: &SqliteStore) -> Result<[i64; 8], RepositoryError> {
    #[derive(QueryableByName)]
    struct Figures {
        #[diesel(sql_type = BigInt)]
        active: i64,
        #[diesel(sql_type = BigInt)]
        passed: i64,
        #[diesel(sql_type = BigInt)]
        admitted: i64,
        #[diesel(sql_type = BigInt)]
        highest_admitted: i64,
        #[diesel(sql_type = BigInt)]
        waiting: i64,
        #[diesel(sql_type = BigInt)]
        serving: i64,
        #[diesel(sql_type = BigInt)]
        admitted_total: i64,
        #[diesel(sql_type = BigInt)]
        counted_waiting: i64,
    }
    store
        .read(|conn| {
            let row: Figures = diesel::sql_query(
                "SELECT (SELECT count(*) FROM queue_tickets WHERE status = 'ACTIVE') AS active, \
                        (SELECT count(*) FROM queue_tickets w JOIN queue_tickets a \
                           ON w.status = 'WAITING' AND a.admitted_at IS NOT NULL \
                          AND w.ticket < a.ticket) AS passed, \
                        (SELECT count(*) FROM queue_tickets WHERE admitted_at IS NOT NULL) \
                          AS admitted, \
                        (SELECT coalesce(max(ticket), 0) FROM queue_tickets \
                          WHERE admitted_at IS NOT NULL) AS highest_admitted, \
                        (SELECT count(*) FROM queue_tickets WHERE status = 'WAITING') \
                          AS waiting, \
                        s.serving AS serving, s.admitted_total AS admitted_total, \
                        s.issued_total - s.admitted_total - s.ended_waiting_total \
                          + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) \
                          AS counted_waiting \
                 FROM queue_state s WHERE s.line = 0",
            )
            .get_result(conn)
            .map_err(from_diesel)?;
            Ok([
                row.active,
                row.passed,
                row.admitted,
                row.highest_admitted,
                row.waiting,
                row.serving,
                row.admitted_total,
                row.counted_waiting,
            ])
        })
        .await
}
