//! Numbers drawn from `counters` rows, PostgreSQL's sequences in the embedded store. A row is
//! advanced inside the writing transaction, so a number is drawn only by a transaction that
//! commits: ids and places have no gaps, and a rolled-back write draws nothing.

use diesel::sql_types::{BigInt, Text};
use diesel::{OptionalExtension, QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// The counter's value: 0 before its first draw (no row yet).
pub(crate) fn value(conn: &mut SqliteConnection, name: &str) -> QueryResult<i64> {
    let value: Option<Value> = diesel::sql_query("SELECT value FROM counters WHERE name = ?1")
        .bind::<Text, _>(name)
        .get_result(conn)
        .optional()?;
    Ok(value.map_or(0, |v| v.value))
}

/// Draws the counter's next value (1 first).
pub(crate) fn draw(conn: &mut SqliteConnection, name: &str) -> QueryResult<i64> {
    diesel::sql_query(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
    )
    .bind::<Text, _>(name)
    .get_result::<Value>(conn)
    .map(|drawn| drawn.value)
}

/// Sets the counter to `value` (creating its row when missing), after drawing several numbers
/// at once.
pub(crate) fn set(conn: &mut SqliteConnection, name: &str, value: i64) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO counters (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind::<Text, _>(name)
    .bind::<BigInt, _>(value)
    .execute(conn)
    .map(drop)
}

/// The next id of `table` (its `INTEGER PRIMARY KEY id`), from the counter named after it. A
/// missing counter starts at the highest id stored, so a drawn id never collides with a row
/// already there.
pub(crate) fn next_id(conn: &mut SqliteConnection, table: IdTable) -> QueryResult<i64> {
    let table = table.name();
    // `WHERE true`: SQLite's grammar needs it between `INSERT ... SELECT` and `ON CONFLICT`.
    diesel::sql_query(format!(
        "INSERT INTO counters (name, value) SELECT ?1, coalesce(max(id), 0) FROM {table} \
         WHERE true ON CONFLICT (name) DO NOTHING"
    ))
    .bind::<Text, _>(table)
    .execute(conn)?;
    draw(conn, table)
}

/// The tables whose ids are drawn: a closed set, so no other text reaches the SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdTable {
    Concerts,
    Reservations,
    LedgerEntries,
    Payments,
}

impl IdTable {
    fn name(self) -> &'static str {
        match self {
            Self::Concerts => "concerts",
            Self::Reservations => "reservations",
            Self::LedgerEntries => "ledger_entries",
            Self::Payments => "payments",
        }
    }
}
