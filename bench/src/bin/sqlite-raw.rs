//! The raw limit of the embedded store, pgbench's analogue for `DATABASE_URL=sqlite://`: the
//! statements the SQLite adapter (`adapters/sqlite`) runs for one request, on one diesel
//! `SqliteConnection` in a loop, with the store's pragmas and transaction shape (reads outside
//! any transaction, each write one `BEGIN IMMEDIATE`). One connection and one loop because the
//! store itself has one connection: its requests never run two statements at once.
//!
//! It works on a copy of the service's store file (`VACUUM INTO`, a consistent snapshot that a
//! second connection can take beside the running service), so the service's data is never
//! touched. Prints, on stdout, `ok failed elapsed_us`, the first failure (or an empty line), then
//! one latency in microseconds per line (what `concert-load` reads); on stderr a summary.
//!
//! ```text
//! sqlite-raw --from bench.db --copy raw.db --seconds 5 seats --concert 1 --date 2030-01-01
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date as SqlDate, Integer, Nullable, Text};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "sqlite-raw",
    about = "Raw limit of the embedded store's statements"
)]
struct Args {
    /// The service's store file (read only, for the copy).
    #[arg(long)]
    from: PathBuf,
    /// Where the copy goes (replaced when present, removed at the end).
    #[arg(long)]
    copy: PathBuf,
    /// Seconds of the measured loop.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// GET .../seats: the available-seats query (`catalog.rs`, `available_seats`).
    Seats {
        #[arg(long)]
        concert: i64,
        /// YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
    /// POST /v1/reservations on distinct seats: `load_hold` then `save_hold`
    /// (`reservation.rs`), each a `BEGIN IMMEDIATE` transaction; a new user per hold, seats in
    /// turn over the concert's `dates` x 1000 seats. As `bench/sql/hold_cas.sql`, the hold lapses
    /// at once, so a seat drawn again (past the last one) is claimed again and its previous
    /// reservation written EXPIRED.
    Hold {
        #[arg(long)]
        concert: i64,
        #[arg(long)]
        dates: u64,
    },
    /// POST .../points/charge with an Idempotency-Key: the key lookup (`idempotency.rs`), the
    /// wallet's load, then `save_charge` (`wallet.rs`) over `users` wallets.
    Charge {
        #[arg(long, default_value_t = 1000)]
        users: u64,
    },
    /// POST /v1/payments with an Idempotency-Key: the key lookup, the token's ticket read
    /// (`queue/mod.rs`, `find`), the payment's load and `save` (`payment.rs`), each payment on
    /// one of `count` held reservations (with a funded wallet and an ACTIVE ticket) that this
    /// tool prepares in the copy, on the concert's `dates` x 1000 seats, before the loop.
    Pay {
        #[arg(long)]
        concert: i64,
        #[arg(long)]
        dates: u64,
        #[arg(long, default_value_t = 5000)]
        count: u64,
    },
}

/// As the store opens its file (`adapters/sqlite/src/store.rs`).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 2000;";

const SEAT_COLUMNS: &str = "s.seat_no, d.price AS seat_price, s.held_by_reservation, \
     s.held_by_user, s.held_until, s.sold_to_user, s.sold_reservation, s.version AS seat_version";
const RESERVATION_COLUMNS: &str = "r.id, r.user_id, r.concert_id, r.date, r.seat_no, \
     r.price, r.status, r.expires_at, r.version AS reservation_version";
const WALLET_COLUMNS: &str =
    "w.balance, w.updated_at AS last_change_at, w.version AS wallet_version";
const BOOKING_FROM: &str = "reservations r \
     JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no \
     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date";
const TICKET_COLUMNS: &str =
    "ticket, user_id, status, issued_at, active_until, last_seen, end_reason";

/// Rows decoded whole, as the adapter decodes them; the loop reads only some of the columns.
#[allow(dead_code)]
#[derive(QueryableByName)]
struct FreeRow {
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Integer)]
    seat_count: i32,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct SeatRow {
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    seat_price: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    held_by_reservation: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    held_by_user: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    held_until: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    sold_to_user: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    sold_reservation: Option<i64>,
    #[diesel(sql_type = BigInt)]
    seat_version: i64,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct ReservationRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    concert_id: i64,
    #[diesel(sql_type = SqlDate)]
    date: Date,
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    expires_at: i64,
    #[diesel(sql_type = BigInt)]
    reservation_version: i64,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct WalletRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    balance: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_change_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    wallet_version: Option<i64>,
}

#[derive(QueryableByName)]
struct BookingRow {
    #[diesel(embed)]
    reservation: ReservationRow,
    #[diesel(embed)]
    seat: SeatRow,
}

#[derive(QueryableByName)]
struct PaymentRow {
    #[diesel(embed)]
    booking: BookingRow,
    #[diesel(embed)]
    wallet: WalletRow,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct TicketRow {
    #[diesel(sql_type = BigInt)]
    ticket: i64,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    issued_at: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    active_until: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    last_seen: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    end_reason: Option<String>,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct StoredKeyRow {
    #[diesel(sql_type = Text)]
    request_hash: String,
    #[diesel(sql_type = BigInt)]
    balance_after: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    payment_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    reservation_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    paid_at: Option<i64>,
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

#[allow(dead_code)]
#[derive(QueryableByName)]
struct ExpiresRow {
    #[diesel(sql_type = BigInt)]
    expires_at: i64,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn now() -> i64 {
    micros(OffsetDateTime::now_utc())
}

fn parse_date(text: &str) -> anyhow::Result<Date> {
    let mut parts = text.splitn(3, '-').map(str::parse::<i32>);
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) =
        (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("{text:?} is not YYYY-MM-DD");
    };
    let month = time::Month::try_from(u8::try_from(month)?)?;
    Ok(Date::from_calendar_date(year, month, u8::try_from(day)?)?)
}

/// Date and seat of the `n`-th seat of a concert whose dates start on 2030-01-01 (the bench's
/// `FIRST_DATE`), 1000 seats each, filled one date after the other.
fn seat_of(n: u64, dates: u64) -> (Date, i32) {
    let n = n % (dates * 1000);
    let first = time::macros::date!(2030 - 01 - 01);
    let date = first + time::Duration::days(i64::try_from(n / 1000).unwrap_or(0));
    (date, i32::try_from(n % 1000 + 1).unwrap_or(1))
}

/// `counters.rs`, `next_id`: the next id of `table`, the same two statements.
fn next_id(conn: &mut SqliteConnection, table: &str) -> QueryResult<i64> {
    diesel::sql_query(format!(
        "INSERT INTO counters (name, value) SELECT ?1, coalesce(max(id), 0) FROM {table} \
         WHERE true ON CONFLICT (name) DO NOTHING"
    ))
    .bind::<Text, _>(table)
    .execute(conn)?;
    diesel::sql_query(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
    )
    .bind::<Text, _>(table)
    .get_result::<Value>(conn)
    .map(|drawn| drawn.value)
}

/// `idempotency.rs`, `find`.
fn find_key(
    conn: &mut SqliteConnection,
    user: &str,
    scope: &str,
    key: &str,
) -> QueryResult<Option<StoredKeyRow>> {
    diesel::sql_query(
        "SELECT k.request_hash, e.balance_after, p.id AS payment_id, \
                p.reservation_id, p.amount, p.paid_at \
         FROM idempotency_keys k \
         JOIN ledger_entries e ON e.id = k.ledger_entry_id \
         LEFT JOIN payments p ON p.id = k.payment_id \
         WHERE k.user_id = ?1 AND k.scope = ?2 AND k.key = ?3",
    )
    .bind::<Text, _>(user)
    .bind::<Text, _>(scope)
    .bind::<Text, _>(key)
    .get_result(conn)
    .optional()
}

/// `wallet.rs`, `wallet_cas`: insert a wallet never seen, else update it at the version read.
fn wallet_cas(
    conn: &mut SqliteConnection,
    user: &str,
    read: i64,
    balance: i64,
    at: i64,
) -> QueryResult<bool> {
    let inserted = diesel::sql_query(
        "INSERT INTO wallets (user_id, balance, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind::<Text, _>(user)
    .bind::<BigInt, _>(balance)
    .bind::<BigInt, _>(at)
    .execute(conn)?;
    if inserted == 1 {
        return Ok(true);
    }
    let updated = diesel::sql_query(
        "UPDATE wallets SET balance = ?2, updated_at = ?3, version = version + 1 \
         WHERE user_id = ?1 AND version = ?4",
    )
    .bind::<Text, _>(user)
    .bind::<BigInt, _>(balance)
    .bind::<BigInt, _>(at)
    .bind::<BigInt, _>(read)
    .execute(conn)?;
    Ok(updated == 1)
}

/// `wallet.rs`, `append_entry`.
fn append_entry(
    conn: &mut SqliteConnection,
    user: &str,
    kind: &str,
    amount: i64,
    balance: i64,
    at: i64,
) -> QueryResult<i64> {
    let id = next_id(conn, "ledger_entries")?;
    diesel::sql_query(
        "INSERT INTO ledger_entries (id, user_id, kind, amount, balance_after, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(user)
    .bind::<Text, _>(kind)
    .bind::<BigInt, _>(amount)
    .bind::<BigInt, _>(balance)
    .bind::<BigInt, _>(at)
    .execute(conn)?;
    Ok(id)
}

/// `wallet.rs`, `store_key`.
#[allow(clippy::too_many_arguments)]
fn store_key(
    conn: &mut SqliteConnection,
    user: &str,
    scope: &str,
    key: &str,
    hash: &str,
    entry: i64,
    payment: Option<i64>,
    at: i64,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, ledger_entry_id, \
                                       payment_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind::<Text, _>(user)
    .bind::<Text, _>(scope)
    .bind::<Text, _>(key)
    .bind::<Text, _>(hash)
    .bind::<BigInt, _>(entry)
    .bind::<Nullable<BigInt>, _>(payment)
    .bind::<BigInt, _>(at)
    .execute(conn)
    .map(drop)
}

/// `reservation.rs`, `write_claim`: a seat's new claim over the version read.
#[allow(clippy::too_many_arguments)]
fn write_claim(
    conn: &mut SqliteConnection,
    concert: i64,
    date: Date,
    seat: i32,
    read: i64,
    held: Option<(i64, &str, i64)>,
    sold: Option<(&str, i64)>,
) -> QueryResult<bool> {
    let written = diesel::sql_query(
        "UPDATE seats SET held_by_reservation = ?1, held_by_user = ?2, held_until = ?3, \
                          sold_to_user = ?4, sold_reservation = ?5, version = version + 1 \
         WHERE concert_id = ?6 AND date = ?7 AND seat_no = ?8 AND version = ?9",
    )
    .bind::<Nullable<BigInt>, _>(held.map(|h| h.0))
    .bind::<Nullable<Text>, _>(held.map(|h| h.1))
    .bind::<Nullable<BigInt>, _>(held.map(|h| h.2))
    .bind::<Nullable<Text>, _>(sold.map(|s| s.0))
    .bind::<Nullable<BigInt>, _>(sold.map(|s| s.1))
    .bind::<BigInt, _>(concert)
    .bind::<SqlDate, _>(date)
    .bind::<Integer, _>(seat)
    .bind::<BigInt, _>(read)
    .execute(conn)?;
    Ok(written == 1)
}

fn holds_version(conn: &mut SqliteConnection, user: &str) -> QueryResult<Option<i64>> {
    diesel::sql_query("SELECT version FROM user_holds WHERE user_id = ?1")
        .bind::<Text, _>(user)
        .get_result::<VersionRow>(conn)
        .optional()
        .map(|row| row.map(|r| r.version))
}

/// What one unit of work ended in: an error here is a failed unit, not the end of the run.
type Unit = anyhow::Result<()>;

fn seats(conn: &mut SqliteConnection, concert: i64, date: Date) -> Unit {
    let rows: Vec<FreeRow> = diesel::sql_query(
        "SELECT s.seat_no, d.price, d.seat_count FROM seats s \
         JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
         WHERE s.concert_id = ?1 AND s.date = ?2 \
           AND s.sold_to_user IS NULL AND (s.held_until IS NULL OR s.held_until <= ?3) \
         ORDER BY s.seat_no",
    )
    .bind::<BigInt, _>(concert)
    .bind::<SqlDate, _>(date)
    .bind::<BigInt, _>(now())
    .load(conn)?;
    anyhow::ensure!(!rows.is_empty(), "no free seat on {date}");
    Ok(())
}

fn hold(conn: &mut SqliteConnection, concert: i64, dates: u64, n: u64) -> Unit {
    let (date, seat) = seat_of(n, dates);
    let user = Uuid::new_v4().to_string();
    // load_hold: the seat, the user's hold version and deadlines, a new id.
    let (row, read_holds, rid) = conn.immediate_transaction::<_, anyhow::Error, _>(|conn| {
        let row: SeatRow = diesel::sql_query(format!(
            "SELECT {SEAT_COLUMNS} FROM seats s \
             JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
             WHERE s.concert_id = ?1 AND s.date = ?2 AND s.seat_no = ?3"
        ))
        .bind::<BigInt, _>(concert)
        .bind::<SqlDate, _>(date)
        .bind::<Integer, _>(seat)
        .get_result(conn)?;
        let read_holds = holds_version(conn, &user)?.unwrap_or(0);
        let _deadlines: Vec<ExpiresRow> = diesel::sql_query(
            "SELECT expires_at FROM reservations WHERE user_id = ?1 AND status = ?2",
        )
        .bind::<Text, _>(&user)
        .bind::<Text, _>("HELD")
        .load(conn)?;
        let rid = next_id(conn, "reservations")?;
        Ok((row, read_holds, rid))
    })?;
    // save_hold: the versions read, then the claim, the reservation and the replaced one.
    conn.immediate_transaction::<_, anyhow::Error, _>(|conn| {
        let current: VersionRow = diesel::sql_query(
            "SELECT version FROM seats WHERE concert_id = ?1 AND date = ?2 AND seat_no = ?3",
        )
        .bind::<BigInt, _>(concert)
        .bind::<SqlDate, _>(date)
        .bind::<Integer, _>(seat)
        .get_result(conn)?;
        anyhow::ensure!(current.version == row.seat_version, "seat moved");
        match holds_version(conn, &user)? {
            None => {
                diesel::sql_query("INSERT INTO user_holds (user_id, version) VALUES (?1, ?2)")
                    .bind::<Text, _>(&user)
                    .bind::<BigInt, _>(read_holds + 1)
                    .execute(conn)?;
            }
            Some(stored) if stored == read_holds => {
                diesel::sql_query("UPDATE user_holds SET version = version + 1 WHERE user_id = ?1")
                    .bind::<Text, _>(&user)
                    .execute(conn)?;
            }
            Some(_) => anyhow::bail!("holds moved"),
        }
        let at = now();
        anyhow::ensure!(
            write_claim(
                conn,
                concert,
                date,
                seat,
                row.seat_version,
                Some((rid, &user, at)),
                None
            )?,
            "claim not written"
        );
        diesel::sql_query(
            "INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, \
                                       status, expires_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind::<BigInt, _>(rid)
        .bind::<Text, _>(&user)
        .bind::<BigInt, _>(concert)
        .bind::<SqlDate, _>(date)
        .bind::<Integer, _>(seat)
        .bind::<BigInt, _>(row.seat_price)
        .bind::<Text, _>("HELD")
        .bind::<BigInt, _>(at)
        .bind::<BigInt, _>(at)
        .execute(conn)?;
        if let Some(replaced) = row.held_by_reservation {
            diesel::sql_query(
                "UPDATE reservations SET status = ?1, updated_at = ?2, version = version + 1 \
                 WHERE id = ?3",
            )
            .bind::<Text, _>("EXPIRED")
            .bind::<BigInt, _>(at)
            .bind::<BigInt, _>(replaced)
            .execute(conn)?;
        }
        Ok(())
    })
}

/// The `u`-th of the raw wallets (apart from any user the service made: a fixed high prefix).
fn raw_user(prefix: u128, u: u64) -> String {
    Uuid::from_u128(prefix << 64 | u128::from(u)).to_string()
}

fn charge(conn: &mut SqliteConnection, users: u64, n: u64) -> Unit {
    let user = raw_user(0xc4a2_0e00, n % users.max(1));
    let key = format!("raw-{n}");
    anyhow::ensure!(
        find_key(conn, &user, "charge", &key)?.is_none(),
        "key {key} already stored"
    );
    let wallet: WalletRow = diesel::sql_query(format!(
        "SELECT {WALLET_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN wallets w ON w.user_id = ?1"
    ))
    .bind::<Text, _>(&user)
    .get_result(conn)?;
    let balance = wallet.balance.unwrap_or(0) + 1000;
    let read = wallet.wallet_version.unwrap_or(0);
    conn.immediate_transaction::<_, anyhow::Error, _>(|conn| {
        let at = now();
        anyhow::ensure!(wallet_cas(conn, &user, read, balance, at)?, "wallet moved");
        let entry = append_entry(conn, &user, "CHARGE", 1000, balance, at)?;
        store_key(conn, &user, "charge", &key, "amount=1000", entry, None, at)?;
        Ok(())
    })
}

/// A prepared payment: its reservation, the payer and the payer's ACTIVE ticket.
struct Payer {
    reservation: i64,
    user: String,
    ticket: i64,
}

/// Held reservations on the concert's seats in turn, funded wallets and ACTIVE tickets, as the
/// service would have written them (one transaction, not measured).
fn prepare_payers(
    conn: &mut SqliteConnection,
    concert: i64,
    dates: u64,
    count: u64,
) -> anyhow::Result<Vec<Payer>> {
    conn.immediate_transaction::<_, anyhow::Error, _>(|conn| {
        let at = now();
        let until = at + 3_600_000_000;
        // Line 0's tickets are the numbers below 2^40; the copy's service is not running.
        let first: Value = diesel::sql_query(
            "SELECT coalesce(max(ticket), 0) AS value FROM queue_tickets WHERE ticket < ?1",
        )
        .bind::<BigInt, _>(1_i64 << 40)
        .get_result(conn)?;
        let mut payers = Vec::new();
        for n in 0..count {
            let (date, seat) = seat_of(n, dates);
            let user = raw_user(0x9a7e_0e00, n);
            let reservation = next_id(conn, "reservations")?;
            let ticket = first.value + i64::try_from(n)? + 1;
            diesel::sql_query(
                "INSERT INTO wallets (user_id, balance, updated_at) VALUES (?1, 100000, ?2)",
            )
            .bind::<Text, _>(&user)
            .bind::<BigInt, _>(at)
            .execute(conn)?;
            diesel::sql_query(
                "INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, \
                                           status, expires_at, created_at, updated_at) \
                 SELECT ?1, ?2, ?3, ?4, ?5, d.price, 'HELD', ?6, ?7, ?7 FROM concert_dates d \
                 WHERE d.concert_id = ?3 AND d.date = ?4",
            )
            .bind::<BigInt, _>(reservation)
            .bind::<Text, _>(&user)
            .bind::<BigInt, _>(concert)
            .bind::<SqlDate, _>(date)
            .bind::<Integer, _>(seat)
            .bind::<BigInt, _>(until)
            .bind::<BigInt, _>(at)
            .execute(conn)?;
            diesel::sql_query(
                "UPDATE seats SET held_by_reservation = ?1, held_by_user = ?2, held_until = ?3, \
                                  version = version + 1 \
                 WHERE concert_id = ?4 AND date = ?5 AND seat_no = ?6 AND sold_to_user IS NULL",
            )
            .bind::<BigInt, _>(reservation)
            .bind::<Text, _>(&user)
            .bind::<BigInt, _>(until)
            .bind::<BigInt, _>(concert)
            .bind::<SqlDate, _>(date)
            .bind::<Integer, _>(seat)
            .execute(conn)?;
            diesel::sql_query(
                "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, admitted_at, \
                                            active_until, last_seen) \
                 VALUES (?1, ?2, 'ACTIVE', ?3, ?3, ?4, ?3)",
            )
            .bind::<BigInt, _>(ticket)
            .bind::<Text, _>(&user)
            .bind::<BigInt, _>(at)
            .bind::<BigInt, _>(until)
            .execute(conn)?;
            payers.push(Payer {
                reservation,
                user,
                ticket,
            });
        }
        Ok(payers)
    })
}

fn pay(conn: &mut SqliteConnection, payer: &Payer) -> Unit {
    let key = format!("raw-pay-{}", payer.reservation);
    anyhow::ensure!(
        find_key(conn, &payer.user, "payment", &key)?.is_none(),
        "key {key} already stored"
    );
    let ticket: TicketRow = diesel::sql_query(format!(
        "SELECT {TICKET_COLUMNS} FROM queue_tickets WHERE ticket = ?"
    ))
    .bind::<BigInt, _>(payer.ticket)
    .get_result(conn)?;
    let loaded: PaymentRow = diesel::sql_query(format!(
        "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS}, {WALLET_COLUMNS} \
         FROM {BOOKING_FROM} LEFT JOIN wallets w ON w.user_id = ?2 \
         WHERE r.id = ?1"
    ))
    .bind::<BigInt, _>(payer.reservation)
    .bind::<Text, _>(&payer.user)
    .get_result(conn)?;
    let booking = &loaded.booking;
    let price = booking.reservation.price;
    let balance = loaded.wallet.balance.unwrap_or(0) - price;
    anyhow::ensure!(
        booking.reservation.status == "HELD" && balance >= 0,
        "not payable"
    );
    conn.immediate_transaction::<_, anyhow::Error, _>(|conn| {
        let current: BookingRow = diesel::sql_query(format!(
            "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS} FROM {BOOKING_FROM} WHERE r.id = ?1"
        ))
        .bind::<BigInt, _>(payer.reservation)
        .get_result(conn)?;
        anyhow::ensure!(
            current.reservation.reservation_version == booking.reservation.reservation_version
                && current.seat.seat_version == booking.seat.seat_version,
            "booking moved"
        );
        let at = now();
        anyhow::ensure!(
            wallet_cas(
                conn,
                &payer.user,
                loaded.wallet.wallet_version.unwrap_or(0),
                balance,
                at
            )?,
            "wallet moved"
        );
        let entry = append_entry(conn, &payer.user, "PAYMENT", -price, balance, at)?;
        let confirmed = diesel::sql_query(
            "UPDATE reservations SET status = ?1, updated_at = ?2, version = version + 1 \
             WHERE id = ?3 AND version = ?4",
        )
        .bind::<Text, _>("CONFIRMED")
        .bind::<BigInt, _>(at)
        .bind::<BigInt, _>(payer.reservation)
        .bind::<BigInt, _>(booking.reservation.reservation_version)
        .execute(conn)?;
        let r = &booking.reservation;
        let sold = write_claim(
            conn,
            r.concert_id,
            r.date,
            r.seat_no,
            booking.seat.seat_version,
            None,
            Some((&payer.user, payer.reservation)),
        )?;
        anyhow::ensure!(confirmed == 1 && sold, "booking moved inside its write");
        let payment = next_id(conn, "payments")?;
        diesel::sql_query(
            "INSERT INTO payments (id, reservation_id, user_id, amount, ledger_entry_id, \
                                   paid_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind::<BigInt, _>(payment)
        .bind::<BigInt, _>(payer.reservation)
        .bind::<Text, _>(&payer.user)
        .bind::<BigInt, _>(price)
        .bind::<BigInt, _>(entry)
        .bind::<BigInt, _>(at)
        .execute(conn)?;
        diesel::sql_query(
            "UPDATE queue_tickets SET status = ?1, ended_at = ?2, end_reason = ?3 \
             WHERE ticket = ?4 AND user_id = ?5 AND status = ?6",
        )
        .bind::<Text, _>("EXPIRED")
        .bind::<BigInt, _>(at)
        .bind::<Text, _>("PAID")
        .bind::<BigInt, _>(ticket.ticket)
        .bind::<Text, _>(&payer.user)
        .bind::<Text, _>(&ticket.status)
        .execute(conn)?;
        let hash = format!("reservationId={}", payer.reservation);
        store_key(
            conn,
            &payer.user,
            "payment",
            &key,
            &hash,
            entry,
            Some(payment),
            at,
        )?;
        Ok(())
    })
}

/// A consistent copy of the service's file, then opened as the store opens its own.
fn open_copy(from: &Path, copy: &Path) -> anyhow::Result<SqliteConnection> {
    for stale in [
        copy.to_path_buf(),
        wal_of(copy, "-wal"),
        wal_of(copy, "-shm"),
    ] {
        let _ = std::fs::remove_file(stale);
    }
    let mut source = SqliteConnection::establish(&from.display().to_string())
        .with_context(|| format!("opening {}", from.display()))?;
    source.batch_execute("PRAGMA busy_timeout = 2000;")?;
    diesel::sql_query("VACUUM INTO ?1")
        .bind::<Text, _>(copy.display().to_string())
        .execute(&mut source)
        .with_context(|| format!("copying {} to {}", from.display(), copy.display()))?;
    drop(source);
    let mut conn = SqliteConnection::establish(&copy.display().to_string())?;
    conn.batch_execute(PRAGMAS)?;
    Ok(conn)
}

fn wal_of(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut conn = open_copy(&args.from, &args.copy)?;
    let payers = match &args.scenario {
        Scenario::Pay {
            concert,
            dates,
            count,
        } => prepare_payers(&mut conn, *concert, *dates, *count)?,
        _ => Vec::new(),
    };
    let date = match &args.scenario {
        Scenario::Seats { date, .. } => Some(parse_date(date)?),
        _ => None,
    };
    let budget = match &args.scenario {
        Scenario::Pay { .. } => payers.len() as u64,
        _ => u64::MAX,
    };
    let mut latencies = Vec::new();
    let (mut ok, mut failed, mut first_failure) = (0_u64, 0_u64, None);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let mut n = 0;
    while n < budget && Instant::now() < deadline {
        let began = Instant::now();
        let unit = match &args.scenario {
            Scenario::Seats { concert, .. } => {
                seats(&mut conn, *concert, date.unwrap_or(time::Date::MIN))
            }
            Scenario::Hold { concert, dates } => hold(&mut conn, *concert, *dates, n),
            Scenario::Charge { users } => charge(&mut conn, *users, n),
            Scenario::Pay { .. } => pay(&mut conn, &payers[usize::try_from(n)?]),
        };
        latencies.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        match unit {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        n += 1;
    }
    let elapsed = start.elapsed();
    drop(conn);
    for path in [
        args.copy.clone(),
        wal_of(&args.copy, "-wal"),
        wal_of(&args.copy, "-shm"),
    ] {
        let _ = std::fs::remove_file(path);
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = ok as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "[sqlite-raw] {rate:.0} ops/s, {ok} ok, {failed} failed in {:.2} s",
        elapsed.as_secs_f64()
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "{ok} {failed} {}", elapsed.as_micros())?;
    writeln!(
        out,
        "{}",
        first_failure.unwrap_or_default().replace('\n', " ")
    )?;
    for micros in latencies {
        writeln!(out, "{micros}")?;
    }
    out.flush()?;
    Ok(())
}
