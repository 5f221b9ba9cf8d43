//! A room's pre-queue and its opening (docs/DATABASE.md §5.12).
//!
//! On PostgreSQL a pre-queue join holds the room's row `FOR SHARE` and the opening marks it
//! opened under the line's exclusive lock, so a join either lands before the opening reads the
//! entries or sees the room opened. Here both are `BEGIN IMMEDIATE` transactions, which run one
//! at a time: a join reads `opened` and inserts in one transaction, and the opening marks the
//! room, reads the entries and places them in one, so the same holds with no lock of their own.

use concert_application::ports::{
    OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined, PreQueueOutcome,
    RepositoryError,
};
use concert_domain::{EndReason, LineNo, TicketNo, UserId};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, QueryableByName, RunQueryDsl, SqliteConnection};
use time::OffsetDateTime;

use super::{
    PRE_QUEUE_COUNTER, StepAbort, WAITING, line_counter, line_key, parse_end_reason, place_number,
};
use crate::columns::{instant, micros, user_id, user_text};
use crate::counters;
use crate::error::{corrupt, from_diesel};

/// A pre-queue entry as selected.
#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    entry: i64,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    issued_at: i64,
}

impl EntryRow {
    fn into_entry(self) -> Result<PreQueueEntry, RepositoryError> {
        Ok(PreQueueEntry {
            entry: TicketNo::new(self.entry).map_err(corrupt)?,
            user: user_id(&self.user_id)?,
            issued_at: instant(self.issued_at)?,
        })
    }
}

/// The user's live entry in the line's pre-queue.
pub(super) fn load(
    conn: &mut SqliteConnection,
    user: UserId,
    line: LineNo,
) -> Result<Option<PreQueueEntry>, RepositoryError> {
    let row: Option<EntryRow> = diesel::sql_query(
        "SELECT entry, user_id, issued_at FROM pre_queue \
         WHERE line = ? AND user_id = ? AND ticket IS NULL AND ended_at IS NULL",
    )
    .bind::<BigInt, _>(line_key(line))
    .bind::<Text, _>(user_text(user))
    .get_result(conn)
    .optional()
    .map_err(from_diesel)?;
    row.map(EntryRow::into_entry).transpose()
}

/// A pre-queue join, in its write transaction: `Opened` when the room has opened (or there is
/// no room on the line), `Stale` when the user holds a live entry, else a new entry numbered
/// from the line's pre-queue start.
pub(super) fn join(
    conn: &mut SqliteConnection,
    write: &PreQueueJoin,
) -> Result<PreQueueJoined, RepositoryError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = BigInt)]
        found: i64,
    }
    let gathering: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM rooms WHERE line = ? AND NOT opened) AS found",
    )
    .bind::<BigInt, _>(line_key(write.line))
    .get_result(conn)
    .map_err(from_diesel)?;
    if gathering.found == 0 {
        return Ok(PreQueueJoined::Opened);
    }
    let user = user_text(write.user);
    // PostgreSQL's `ON CONFLICT (line, user_id) WHERE ended_at IS NULL DO NOTHING`: a live
    // entry (placed or not) keeps the user out. Checked first, so no number is drawn for it.
    let live: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pre_queue \
                        WHERE line = ? AND user_id = ? AND ended_at IS NULL) AS found",
    )
    .bind::<BigInt, _>(line_key(write.line))
    .bind::<Text, _>(&user)
    .get_result(conn)
    .map_err(from_diesel)?;
    if live.found != 0 {
        return Ok(PreQueueJoined::Stale);
    }
    let drawn = counters::draw(conn, PRE_QUEUE_COUNTER).map_err(from_diesel)?;
    let row: EntryRow = diesel::sql_query(
        "INSERT INTO pre_queue (entry, line, user_id, issued_at) VALUES (?, ?, ?, ?) \
         RETURNING entry, user_id, issued_at",
    )
    .bind::<BigInt, _>(write.line.pre_queue_start() + drawn)
    .bind::<BigInt, _>(line_key(write.line))
    .bind::<Text, _>(&user)
    .bind::<BigInt, _>(micros(write.now))
    .get_result(conn)
    .map_err(from_diesel)?;
    Ok(PreQueueJoined::Done(row.into_entry()?))
}

/// Ends the user's entry if it has no place and has not ended; otherwise says what it was.
pub(super) fn end(
    conn: &mut SqliteConnection,
    entry: TicketNo,
    user: UserId,
    reason: EndReason,
    now: OffsetDateTime,
) -> Result<PreQueueEnd, RepositoryError> {
    #[derive(QueryableByName)]
    struct Was {
        #[diesel(sql_type = Nullable<BigInt>)]
        ticket: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        end_reason: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        ended_at: Option<i64>,
    }
    let user = user_text(user);
    let was: Option<Was> = diesel::sql_query(
        "SELECT ticket, end_reason, ended_at FROM pre_queue WHERE entry = ? AND user_id = ?",
    )
    .bind::<BigInt, _>(entry.get())
    .bind::<Text, _>(&user)
    .get_result(conn)
    .optional()
    .map_err(from_diesel)?;
    let Some(was) = was else {
        return Ok(PreQueueEnd::Missing);
    };
    let ended = diesel::sql_query(
        "UPDATE pre_queue SET ended_at = ?, end_reason = ? \
         WHERE entry = ? AND user_id = ? AND ticket IS NULL AND ended_at IS NULL",
    )
    .bind::<BigInt, _>(micros(now))
    .bind::<Text, _>(reason.as_str())
    .bind::<BigInt, _>(entry.get())
    .bind::<Text, _>(&user)
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(if ended == 1 {
        PreQueueEnd::Ended
    } else if let Some(ticket) = was.ticket {
        PreQueueEnd::Placed(TicketNo::new(ticket).map_err(corrupt)?)
    } else if was.ended_at.is_some() {
        PreQueueEnd::AlreadyEnded(parse_end_reason(was.end_reason.as_deref())?)
    } else {
        // PostgreSQL's answer when an opening placed the entry while the update waited; with
        // one writer the read above and the update agree, so this is not reached.
        PreQueueEnd::Stale
    })
}

/// The room's opening, in its write transaction (the line is still: see the module docs).
/// Marking the room opened first turns every later pre-queue join to the line; the live
/// entries, in arrival order, are ordered by the rules and get the line's first places.
pub(super) fn open_in_transaction(
    conn: &mut SqliteConnection,
    line: LineNo,
    now: OffsetDateTime,
    rules: &dyn OpeningRules,
) -> Result<u64, StepAbort> {
    // `updated_at`: the opening's instant (PostgreSQL writes its transaction's `now()`).
    let marked = diesel::sql_query(
        "UPDATE rooms SET opened = 1, version = version + 1, updated_at = ? \
         WHERE line = ? AND NOT opened",
    )
    .bind::<BigInt, _>(micros(now))
    .bind::<BigInt, _>(line_key(line))
    .execute(conn)?;
    if marked != 1 {
        return Err(StepAbort::Stale);
    }
    let arrivals: Vec<EntryRow> = diesel::sql_query(
        "SELECT entry, user_id, issued_at FROM pre_queue \
         WHERE line = ? AND ticket IS NULL AND ended_at IS NULL ORDER BY entry",
    )
    .bind::<BigInt, _>(line_key(line))
    .load(conn)?;
    let arrivals = arrivals
        .into_iter()
        .map(EntryRow::into_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let order: Vec<PreQueueEntry> = rules.order(arrivals);
    if order.is_empty() {
        return Ok(0);
    }
    // Nothing else draws from the line's counter before it opened: its next value is the
    // line's first place.
    let counter = line_counter(line);
    let drawn = counters::value(conn, &counter)?;
    let mut placed = 0_i64;
    for (n, chosen) in (1_i64..).zip(&order) {
        let ticket = place_number(line, drawn + n)?;
        // The entry as stored (the rules' copy decides only the order).
        let stored: Option<EntryRow> =
            diesel::sql_query("SELECT entry, user_id, issued_at FROM pre_queue WHERE entry = ?")
                .bind::<BigInt, _>(chosen.entry.get())
                .get_result(conn)
                .optional()?;
        let Some(stored) = stored else {
            continue;
        };
        diesel::sql_query(format!(
            "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, last_seen) \
             VALUES (?, ?, '{WAITING}', ?, ?)"
        ))
        .bind::<BigInt, _>(ticket)
        .bind::<Text, _>(&stored.user_id)
        .bind::<BigInt, _>(stored.issued_at)
        .bind::<BigInt, _>(micros(now))
        .execute(conn)?;
        diesel::sql_query(
            "INSERT INTO queue_members (user_id, line, version) VALUES (?, ?, 1) \
             ON CONFLICT (user_id, line) DO UPDATE SET version = version + 1",
        )
        .bind::<Text, _>(&stored.user_id)
        .bind::<BigInt, _>(line_key(line))
        .execute(conn)?;
        let updated = diesel::sql_query(
            "UPDATE pre_queue SET ticket = ? \
             WHERE entry = ? AND ticket IS NULL AND ended_at IS NULL",
        )
        .bind::<BigInt, _>(ticket)
        .bind::<BigInt, _>(stored.entry)
        .execute(conn)?;
        placed += i64::try_from(updated).unwrap_or(i64::MAX);
    }
    let count = i64::try_from(order.len()).unwrap_or(i64::MAX);
    if placed != count {
        // An entry not live as read: decide again at the next step (rolled back whole).
        return Err(StepAbort::Stale);
    }
    counters::set(conn, &counter, drawn + count)?;
    Ok(u64::try_from(count).unwrap_or(u64::MAX))
}

/// The line's entries that were placed or ended.
pub(super) fn outcomes(
    conn: &mut SqliteConnection,
    line: LineNo,
) -> Result<Vec<PreQueueOutcome>, RepositoryError> {
    #[derive(QueryableByName)]
    struct OutcomeRow {
        #[diesel(sql_type = BigInt)]
        entry: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        ticket: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        end_reason: Option<String>,
    }
    // The line's entries are a range of the primary key.
    let rows: Vec<OutcomeRow> = diesel::sql_query(
        "SELECT entry, ticket, end_reason FROM pre_queue \
         WHERE entry > ? AND entry < ? AND (ticket IS NOT NULL OR ended_at IS NOT NULL)",
    )
    .bind::<BigInt, _>(line.pre_queue_start())
    .bind::<BigInt, _>(line.end())
    .load(conn)
    .map_err(from_diesel)?;
    rows.into_iter()
        .map(|row| {
            Ok(PreQueueOutcome {
                entry: TicketNo::new(row.entry).map_err(corrupt)?,
                place: row.ticket.map(TicketNo::new).transpose().map_err(corrupt)?,
                ended: parse_end_reason(row.end_reason.as_deref())?,
            })
        })
        .collect()
}
