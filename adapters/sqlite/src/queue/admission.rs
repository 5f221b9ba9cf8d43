//! One admission step (docs/DATABASE.md §5.8), in the write transaction of
//! [`QueueRepository::admit`](concert_application::ports::QueueRepository::admit).
//!
//! PostgreSQL takes the line's queue lock exclusively first, to keep other steps and joins in
//! flight out. Here the step's `BEGIN IMMEDIATE` transaction already holds the store's one
//! writer lock from its first read to its commit, so no lock of its own is taken: every read
//! below sees all committed tickets and nothing changes before the writes.

use concert_application::ports::{AdmissionReport, AdmissionRules};
use concert_domain::queue::ServingCounter;
use concert_domain::{Admission, EndReason, LineNo, Overdue, Pace, QueueTicket};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};
use time::OffsetDateTime;

use super::{
    ACTIVE, EXPIRED, StepAbort, TICKET_COLUMNS, TicketRow, WAITING, line_key, line_range, tickets,
};
use crate::columns::{instant_opt, micros};

/// The line's counters as a step reads them.
struct Counters {
    serving: i64,
    issued_hwm: i64,
    issued_total: i64,
    pace: Pace,
}

fn read_counters(conn: &mut SqliteConnection, line: LineNo) -> Result<Counters, StepAbort> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        serving: i64,
        #[diesel(sql_type = BigInt)]
        issued_hwm: i64,
        #[diesel(sql_type = BigInt)]
        issued_total: i64,
        #[diesel(sql_type = BigInt)]
        pace_credit_millis: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        pace_at: Option<i64>,
    }
    let row: Row = diesel::sql_query(
        "SELECT serving, issued_hwm, issued_total, pace_credit_millis, pace_at \
         FROM queue_state WHERE line = ?",
    )
    .bind::<BigInt, _>(line_key(line))
    .get_result(conn)?;
    Ok(Counters {
        serving: row.serving,
        issued_hwm: row.issued_hwm,
        issued_total: row.issued_total,
        pace: Pace {
            credit_millis: row.pace_credit_millis,
            at: instant_opt(row.pace_at)?,
        },
    })
}

/// The admissions of the line in the 60 seconds before `now`.
fn count_last_minute(
    conn: &mut SqliteConnection,
    line: LineNo,
    now: OffsetDateTime,
) -> QueryResult<u32> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let (start, end) = line_range(line);
    let counted: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM queue_tickets \
         WHERE admitted_at IS NOT NULL AND admitted_at > ? AND ticket > ? AND ticket < ?",
    )
    .bind::<BigInt, _>(micros(now) - 60_000_000)
    .bind::<BigInt, _>(start)
    .bind::<BigInt, _>(end)
    .get_result(conn)?;
    Ok(u32::try_from(counted.count).unwrap_or(u32::MAX))
}

/// Ends `ended` (each with the reason the domain gave it) if each is still in status `read_as`
/// with the `last_seen` read; `Stale` when any is not.
fn write_ends(
    conn: &mut SqliteConnection,
    ended: &[QueueTicket],
    read_as: &str,
    now: OffsetDateTime,
) -> Result<(), StepAbort> {
    for ticket in ended {
        let written = diesel::sql_query(format!(
            "UPDATE queue_tickets SET status = '{EXPIRED}', ended_at = ?, end_reason = ? \
             WHERE ticket = ? AND status = ? AND last_seen IS ?"
        ))
        .bind::<BigInt, _>(micros(now))
        .bind::<Nullable<Text>, _>(ticket.end_reason().map(EndReason::as_str))
        .bind::<BigInt, _>(ticket.ticket().get())
        .bind::<Text, _>(read_as)
        .bind::<Nullable<BigInt>, _>(ticket.last_seen().map(micros))
        .execute(conn)?;
        if written != 1 {
            return Err(StepAbort::Stale);
        }
    }
    Ok(())
}

/// One admission step: reads, asks the rules, writes (see the module docs).
pub(super) fn admit_in_transaction(
    conn: &mut SqliteConnection,
    line: LineNo,
    now: OffsetDateTime,
    rules: &dyn AdmissionRules,
) -> Result<AdmissionReport, StepAbort> {
    #[derive(QueryableByName)]
    struct Issued {
        #[diesel(sql_type = BigInt)]
        count: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        max: Option<i64>,
    }
    let (start, end) = line_range(line);
    // 1. The active tickets; the domain ends the overdue ones and counts the free places.
    let active: Vec<TicketRow> = diesel::sql_query(format!(
        "SELECT {TICKET_COLUMNS} FROM queue_tickets \
         WHERE status = '{ACTIVE}' AND ticket > ? AND ticket < ? ORDER BY ticket"
    ))
    .bind::<BigInt, _>(start)
    .bind::<BigInt, _>(end)
    .load(conn)?;
    let active = tickets(active)?;
    let (overdue, is_paced): (Overdue, bool) = (rules.end_overdue(&active), rules.is_paced());
    let counters = read_counters(conn, line)?;
    // 2. A paced room: the domain says how many of the free places may be filled now, from the
    //    admissions of the last minute and the stored pace.
    let (free, pace) = if overdue.free > 0 && is_paced {
        let last_minute = count_last_minute(conn, line, now)?;
        let (free, stored) = (overdue.free, counters.pace);
        let (allowed, refilled) = rules.paced(free, last_minute, stored);
        (allowed, Some(refilled))
    } else {
        (overdue.free, None)
    };
    // 3. The oldest waiting tickets for the places (more under a waiting rule: some may be
    //    passed over); the domain admits them or passes them over.
    let Admission {
        admitted,
        passed_over,
    } = if free == 0 {
        Admission::default()
    } else {
        let candidates = rules.waiting_candidates(free);
        let waiting: Vec<TicketRow> = diesel::sql_query(format!(
            "SELECT {TICKET_COLUMNS} FROM queue_tickets \
             WHERE status = '{WAITING}' AND ticket > ? AND ticket < ? ORDER BY ticket LIMIT ?"
        ))
        .bind::<BigInt, _>(start)
        .bind::<BigInt, _>(end)
        .bind::<BigInt, _>(i64::from(candidates))
        .load(conn)?;
        let waiting = tickets(waiting)?;
        rules.admit_oldest(&waiting, free)
    };
    // 4. The ends, over the activity read; 5. the passed over, over the poll read. With one
    //    writer nothing can have changed since the reads; the comparisons still refuse a
    //    decision on a ticket not as read, as PostgreSQL's do.
    write_ends(conn, &overdue.ended, ACTIVE, now)?;
    write_ends(conn, &passed_over, WAITING, now)?;
    // 6. The admissions, over WAITING.
    for ticket in &admitted {
        let written = diesel::sql_query(format!(
            "UPDATE queue_tickets \
             SET status = '{ACTIVE}', admitted_at = ?, active_until = ?, last_seen = ? \
             WHERE ticket = ? AND status = '{WAITING}'"
        ))
        .bind::<BigInt, _>(micros(now))
        .bind::<Nullable<BigInt>, _>(ticket.active_until().map(micros))
        .bind::<Nullable<BigInt>, _>(ticket.last_seen().map(micros))
        .bind::<BigInt, _>(ticket.ticket().get())
        .execute(conn)?;
        if written != 1 {
            return Err(StepAbort::Stale);
        }
    }
    // 7. The counters, in one write: the serving counter as the domain moves it, the tallies
    //    that make the waiting count O(1), and a paced room's credit, spent.
    let hwm = counters.issued_hwm;
    let issued: Issued = diesel::sql_query(
        "SELECT count(*) AS count, max(ticket) AS max FROM queue_tickets \
         WHERE ticket > ? AND ticket < ?",
    )
    .bind::<BigInt, _>(hwm)
    .bind::<BigInt, _>(end)
    .get_result(conn)?;
    let serving = ServingCounter::new(counters.serving).after_admitting(&admitted);
    let admitted_count = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
    let passed_over_count = i64::try_from(passed_over.len()).unwrap_or(i64::MAX);
    let pace = pace.map_or(counters.pace, |pace| {
        pace.spent(u32::try_from(admitted.len()).unwrap_or(u32::MAX))
    });
    let issued_hwm = issued.max.unwrap_or(hwm).max(hwm);
    // A step that changes nothing writes nothing: an idle line's steps (several a second) then
    // cost no commit to disk.
    let unchanged = serving.get() == counters.serving
        && admitted_count == 0
        && passed_over_count == 0
        && issued.count == 0
        && issued_hwm == hwm
        && pace == counters.pace;
    if unchanged {
        return Ok(AdmissionReport::of(
            &overdue,
            &admitted,
            &passed_over,
            serving,
        ));
    }
    diesel::sql_query(
        "UPDATE queue_state \
         SET serving = ?, admitted_total = admitted_total + ?, issued_total = ?, \
             pace_credit_millis = ?, pace_at = ?, \
             ended_waiting_total = ended_waiting_total + ?, issued_hwm = ? \
         WHERE line = ?",
    )
    .bind::<BigInt, _>(serving.get())
    .bind::<BigInt, _>(admitted_count)
    .bind::<BigInt, _>(counters.issued_total + issued.count)
    .bind::<BigInt, _>(pace.credit_millis)
    .bind::<Nullable<BigInt>, _>(pace.at.map(micros))
    .bind::<BigInt, _>(passed_over_count)
    .bind::<BigInt, _>(issued_hwm)
    .bind::<BigInt, _>(line_key(line))
    .execute(conn)?;
    Ok(AdmissionReport::of(
        &overdue,
        &admitted,
        &passed_over,
        serving,
    ))
}
