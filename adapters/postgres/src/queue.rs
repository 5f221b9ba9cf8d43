//! `QueueRepository`: the waiting line in PostgreSQL.
//!
//! - A join draws its number in one statement, only after the user's place (`queue_members`) was
//!   moved from the version the decision read: a user's duplicate request loses that
//!   compare-and-set and draws nothing, so positions have no gaps.
//! - That statement holds the queue lock in SHARED mode from before it draws the number until it
//!   commits; the admission step takes it EXCLUSIVE. So admission never runs while a drawn but
//!   uncommitted number exists, and cannot admit ticket n+1 while ticket n is still invisible to
//!   it (which would break first come, first served).
//! - The admission step reads under that exclusive lock, lets the domain decide (through the
//!   use case's `AdmissionRules`), and writes in the same transaction; its writes still compare
//!   each ticket with the state read, since payments and activity do not take the queue lock.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{
    ActivityWrite, AdmissionReport, AdmissionRules, EndedTicket, EndedWaiting, JoinWrite,
    LiveTicket, OpeningRules, PreQueueEnd, PreQueueEntry, PreQueueJoin, PreQueueJoined,
    PreQueueOutcome, QueueRepository, QueueSnapshot, RepositoryError, TicketEnd, Version,
    WaitingPoll, Written,
};
use concert_domain::queue::ServingCounter;
use concert_domain::{
    Admission, EndReason, LineNo, Pace, QueueTicket, TicketNo, TicketStatus, UserId,
};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cached::CachedExt;
use crate::columns::{parse_end_reason, parse_ticket_status, ticket_status, version};
use crate::committed::committed_row;
use crate::error::{corrupt, from_diesel};
use crate::locks;
use crate::pool::PgPool;
use crate::schema::queue_state;

const WAITING: &str = ticket_status(TicketStatus::Waiting);
const ACTIVE: &str = ticket_status(TicketStatus::Active);
const EXPIRED: &str = ticket_status(TicketStatus::Expired);

#[derive(Debug, Clone)]
pub struct PgQueueRepository {
    pool: PgPool,
}

impl PgQueueRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A `queue_tickets` row, as selected by [`TICKET_COLUMNS`] (absent: `None` columns).
#[derive(Debug, QueryableByName)]
struct TicketRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    ticket: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    user_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    status: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    issued_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    active_until: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen: Option<OffsetDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    end_reason: Option<String>,
}

const TICKET_COLUMNS: &str =
    "t.ticket, t.user_id, t.status, t.issued_at, t.active_until, t.last_seen, t.end_reason";

impl TicketRow {
    fn into_domain(self) -> Result<Option<QueueTicket>, RepositoryError> {
        let (Some(ticket), Some(user), Some(status), Some(issued_at)) =
            (self.ticket, self.user_id, self.status, self.issued_at)
        else {
            return Ok(None);
        };
        Ok(Some(
            QueueTicket::restore(
                TicketNo::new(ticket).map_err(corrupt)?,
                UserId::from_uuid(user),
                parse_ticket_status(&status)?,
                issued_at,
                self.active_until,
                self.last_seen,
            )
            .with_end_reason(parse_end_reason(self.end_reason.as_deref())?),
        ))
    }
}

fn tickets(rows: Vec<TicketRow>) -> Result<Vec<QueueTicket>, RepositoryError> {
    rows.into_iter()
        .filter_map(|row| row.into_domain().transpose())
        .collect()
}

/// The user's live ticket in one line; the statuses are the statement's constants and the line
/// is `ticket >> 40`, so the plan uses the partial index of live tickets per user and line.
static LOAD_LIVE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TICKET_COLUMNS}, \
                COALESCE((SELECT m.version FROM queue_members m \
                          WHERE m.user_id = $1 AND m.line = $2), 0) AS member_version \
         FROM (SELECT 1) AS one \
         LEFT JOIN queue_tickets t ON t.user_id = $1 AND (t.ticket >> 40) = $2 \
                                  AND t.status IN ('{WAITING}', '{ACTIVE}')"
    )
});

/// The sequence a line draws its numbers from (created with the room's line).
pub(crate) fn line_sequence(line: LineNo) -> String {
    format!("queue_line_{line}_seq")
}

/// A line's ticket numbers: above its start, below its end.
fn line_range(line: LineNo) -> (i64, i64) {
    (line.start().get(), line.end())
}

/// A join: the user's place moves from the version read (an upsert: a first join inserts it),
/// then the queue lock is taken in shared mode, then the number is drawn: only if the place
/// moved, and only under the lock.
const SAVE_JOIN: &str = "WITH member AS ( \
         INSERT INTO queue_members AS m (user_id, line, version) VALUES ($1, $6, $2 + 1) \
         ON CONFLICT (user_id, line) DO UPDATE SET version = m.version + 1 \
         WHERE m.version = $2 \
         RETURNING 1 \
     ), gate AS ( \
         SELECT pg_advisory_xact_lock_shared($3, $6) FROM member \
     ), drawn AS ( \
         INSERT INTO queue_tickets (ticket, user_id, status, issued_at) \
         SELECT nextval($7::text::regclass), $1, $4, $5 FROM gate \
         RETURNING ticket, user_id, status, issued_at, active_until, last_seen, end_reason \
     ) \
     SELECT drawn.ticket, drawn.user_id, drawn.status, drawn.issued_at, drawn.active_until, \
            drawn.last_seen, drawn.end_reason \
     FROM drawn";

/// Ends a ticket if it is still in the status read; a ticket that ended while waiting is also
/// tallied out of the line (the waiting count), in the same statement.
const END_TICKET: &str = "WITH ended AS ( \
         UPDATE queue_tickets SET status = $3, ended_at = $4, end_reason = $5 \
         WHERE ticket = $1 AND status = $2 \
         RETURNING admitted_at \
     ), tallied AS ( \
         UPDATE queue_state SET ended_waiting_total = ended_waiting_total + 1 \
         WHERE line = ($1 >> 40) AND EXISTS (SELECT 1 FROM ended WHERE admitted_at IS NULL) \
     ) \
     SELECT 1 FROM ended";

/// The answer of a compare-and-set `UPDATE` of one row: written, or the row was not as read.
fn one_row(affected: usize) -> Written<()> {
    if affected == 1 {
        Written::Done(())
    } else {
        Written::Stale
    }
}

/// Why an admission transaction rolled back.
enum StepAbort {
    /// A ticket changed between the step's reads and its writes.
    Stale,
    Db(DieselError),
}

impl From<DieselError> for StepAbort {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

/// The answer of a transaction that a stale read rolled back or that wrote.
fn written<T>(result: Result<T, StepAbort>) -> Result<Written<T>, RepositoryError> {
    match result {
        Ok(done) => Ok(Written::Done(done)),
        Err(StepAbort::Stale) => Ok(Written::Stale),
        Err(StepAbort::Db(error)) => Err(from_diesel(error)),
    }
}

/// Takes the line's queue lock exclusively for the transaction: waits for every join to the
/// line in flight and keeps the line's other steps and openings out.
async fn lock_line(conn: &mut AsyncPgConnection, line: LineNo) -> Result<(), DieselError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind::<Integer, _>(locks::QUEUE)
        .bind::<Integer, _>(line_key(line))
        .cached()
        .execute(conn)
        .await?;
    Ok(())
}

/// The statement of [`QueueRepository::find`].
static FIND: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TICKET_COLUMNS} FROM queue_tickets t WHERE t.ticket = $1"));

#[async_trait]
impl QueueRepository for PgQueueRepository {
    async fn load_live(&self, user: UserId, line: LineNo) -> Result<LiveTicket, RepositoryError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            ticket: TicketRow,
            #[diesel(sql_type = BigInt)]
            member_version: i64,
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Row = diesel::sql_query(LOAD_LIVE.as_str())
                    .bind::<SqlUuid, _>(user.get())
                    .bind::<Integer, _>(line_key(line))
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                let version = if row.member_version == 0 {
                    Version::ABSENT
                } else {
                    version(row.member_version)?
                };
                Ok(LiveTicket {
                    ticket: row.ticket.into_domain()?,
                    version,
                })
            })
            .await
    }

    async fn save_join(&self, write: &JoinWrite) -> Result<Written<QueueTicket>, RepositoryError> {
        let write = *write;
        let pool = self.pool.clone();
        // On its own task: a request dropped mid-statement (client gone) must not leave its
        // connection half-read; the number it drew is committed and the user's retry gets it back.
        let joining = tokio::spawn(async move {
            pool.run(async {
                let mut conn = pool.get().await?;
                let row: Option<TicketRow> = diesel::sql_query(SAVE_JOIN)
                    .bind::<SqlUuid, _>(write.user.get())
                    .bind::<BigInt, _>(write.version.get())
                    .bind::<Integer, _>(locks::QUEUE)
                    .bind::<Text, _>(WAITING)
                    .bind::<Timestamptz, _>(write.now)
                    .bind::<Integer, _>(line_key(write.line))
                    .bind::<Text, _>(line_sequence(write.line))
                    .cached()
                    .load(&mut conn)
                    .await
                    .map(committed_row)
                    .map_err(from_diesel)?;
                match row.map(TicketRow::into_domain).transpose()?.flatten() {
                    Some(ticket) => Ok(Written::Done(ticket)),
                    None => Ok(Written::Stale),
                }
            })
            .await
        });
        joining
            .await
            .map_err(|error| RepositoryError::Unexpected(Box::new(error)))?
    }

    async fn end(
        &self,
        end: &TicketEnd,
        now: OffsetDateTime,
    ) -> Result<Written<()>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let ended = diesel::sql_query(END_TICKET)
                    .bind::<BigInt, _>(end.ticket.get())
                    .bind::<Text, _>(ticket_status(end.read_as))
                    .bind::<Text, _>(EXPIRED)
                    .bind::<Timestamptz, _>(now)
                    .bind::<Text, _>(end.reason.as_str())
                    .cached()
                    .execute(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                Ok(one_row(ended))
            })
            .await
    }

    async fn find(&self, ticket: TicketNo) -> Result<Option<QueueTicket>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<TicketRow> = diesel::sql_query(FIND.as_str())
                    .bind::<BigInt, _>(ticket.get())
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                Ok(row.map(TicketRow::into_domain).transpose()?.flatten())
            })
            .await
    }

    async fn record_activity(&self, write: &ActivityWrite) -> Result<Written<()>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let recorded = diesel::sql_query(
                    "UPDATE queue_tickets SET last_seen = $3 \
                     WHERE ticket = $1 AND status = $4 AND last_seen IS NOT DISTINCT FROM $2",
                )
                .bind::<BigInt, _>(write.ticket.get())
                .bind::<Nullable<Timestamptz>, _>(write.read_last_seen)
                .bind::<Timestamptz, _>(write.last_seen)
                .bind::<Text, _>(ACTIVE)
                .cached()
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(one_row(recorded))
            })
            .await
    }

    async fn record_waiting_polls(&self, polls: &[WaitingPoll]) -> Result<u64, RepositoryError> {
        let numbers: Vec<i64> = polls.iter().map(|poll| poll.ticket.get()).collect();
        let seen: Vec<OffsetDateTime> = polls.iter().map(|poll| poll.at).collect();
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // Only forward and only while waiting: a later poll written by another instance
                // stays, and an admitted ticket's activity is not touched. Rows another
                // transaction holds (an admission step deciding on them, another instance's
                // batch) are skipped, not waited for: a batch never deadlocks with a step.
                let written = diesel::sql_query(
                    "WITH target AS ( \
                         SELECT ticket FROM queue_tickets \
                         WHERE ticket = ANY($1) AND status = $3 \
                         ORDER BY ticket FOR UPDATE SKIP LOCKED \
                     ) \
                     UPDATE queue_tickets q SET last_seen = p.seen \
                     FROM unnest($1::bigint[], $2::timestamptz[]) AS p(ticket, seen), target \
                     WHERE q.ticket = p.ticket AND q.ticket = target.ticket AND q.status = $3 \
                       AND (q.last_seen IS NULL OR q.last_seen < p.seen)",
                )
                .bind::<Array<BigInt>, _>(&numbers)
                .bind::<Array<Timestamptz>, _>(&seen)
                .bind::<Text, _>(WAITING)
                .cached()
                .execute(&mut conn)
                .await
                .map_err(from_diesel)?;
                Ok(u64::try_from(written).unwrap_or(u64::MAX))
            })
            .await
    }

    async fn admit(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn AdmissionRules + 'static),
    ) -> Result<Written<AdmissionReport>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, StepAbort, _>(async |conn| {
                        admit_in_transaction(conn, line, now, rules).await
                    })
                    .await;
                written(result)
            })
            .await
    }

    async fn snapshot(&self, line: LineNo) -> Result<QueueSnapshot, RepositoryError> {
        #[derive(QueryableByName)]
        struct Snapshot {
            #[diesel(sql_type = BigInt)]
            serving: i64,
            #[diesel(sql_type = BigInt)]
            admitted_total: i64,
            #[diesel(sql_type = BigInt)]
            waiting: i64,
            #[diesel(sql_type = BigInt)]
            active: i64,
            #[diesel(sql_type = BigInt)]
            issued: i64,
            #[diesel(sql_type = BigInt)]
            pre_queued: i64,
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let (start, end) = line_range(line);
                let row: Snapshot = diesel::sql_query(SNAPSHOT.as_str())
                    .bind::<Integer, _>(line_key(line))
                    .bind::<BigInt, _>(start)
                    .bind::<BigInt, _>(end)
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                Ok(QueueSnapshot {
                    serving: ServingCounter::new(row.serving),
                    admitted_total: u64::try_from(row.admitted_total).map_err(corrupt)?,
                    waiting: u64::try_from(row.waiting).map_err(corrupt)?,
                    active: u64::try_from(row.active).map_err(corrupt)?,
                    issued: u64::try_from(row.issued).map_err(corrupt)?,
                    pre_queued: u64::try_from(row.pre_queued).map_err(corrupt)?,
                })
            })
            .await
    }

    async fn ended_since(
        &self,
        line: LineNo,
        since: OffsetDateTime,
    ) -> Result<Vec<EndedTicket>, RepositoryError> {
        let (start, end) = line_range(line);
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<EndedRow> = diesel::sql_query(ENDED_SINCE.as_str())
                    .bind::<Timestamptz, _>(since)
                    .bind::<BigInt, _>(start)
                    .bind::<BigInt, _>(end)
                    .cached()
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter().map(EndedRow::into_ended).collect()
            })
            .await
    }

    async fn load_pre_queue(
        &self,
        user: UserId,
        line: LineNo,
    ) -> Result<Option<PreQueueEntry>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<EntryRow> = diesel::sql_query(
                    "SELECT entry, user_id, issued_at FROM pre_queue \
                     WHERE line = $1 AND user_id = $2 AND ticket IS NULL AND ended_at IS NULL",
                )
                .bind::<Integer, _>(line_key(line))
                .bind::<SqlUuid, _>(user.get())
                .cached()
                .get_result(&mut conn)
                .await
                .optional()
                .map_err(from_diesel)?;
                row.map(EntryRow::into_entry).transpose()
            })
            .await
    }

    async fn save_pre_queue_join(
        &self,
        write: &PreQueueJoin,
    ) -> Result<PreQueueJoined, RepositoryError> {
        #[derive(QueryableByName)]
        struct Joined {
            #[diesel(sql_type = Bool)]
            gathering: bool,
            #[diesel(sql_type = Nullable<BigInt>)]
            entry: Option<i64>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            issued_at: Option<OffsetDateTime>,
        }
        let write = *write;
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // FOR SHARE waits for an opening in flight, then reads the room as it left it:
                // a join never adds an entry the opening did not see.
                let joined: Joined = diesel::sql_query(
                    "WITH room AS ( \
                         SELECT line FROM rooms WHERE line = $2 AND NOT opened FOR SHARE \
                     ), joined AS ( \
                         INSERT INTO pre_queue (entry, line, user_id, issued_at) \
                         SELECT $4 + nextval('pre_queue_entries_seq'), $2, $1, $3 FROM room \
                         ON CONFLICT (line, user_id) WHERE ended_at IS NULL DO NOTHING \
                         RETURNING entry, issued_at \
                     ) \
                     SELECT EXISTS (SELECT 1 FROM room) AS gathering, joined.entry, \
                            joined.issued_at \
                     FROM (SELECT 1) AS one LEFT JOIN joined ON true",
                )
                .bind::<SqlUuid, _>(write.user.get())
                .bind::<Integer, _>(line_key(write.line))
                .bind::<Timestamptz, _>(write.now)
                .bind::<BigInt, _>(write.line.pre_queue_start())
                .cached()
                .load(&mut conn)
                .await
                .map(committed_row)
                .map_err(from_diesel)?
                .ok_or_else(|| corrupt("the pre-queue join returned no row"))?;
                Ok(match (joined.gathering, joined.entry, joined.issued_at) {
                    (false, ..) => PreQueueJoined::Opened,
                    (true, Some(entry), Some(issued_at)) => PreQueueJoined::Done(PreQueueEntry {
                        entry: TicketNo::new(entry).map_err(corrupt)?,
                        user: write.user,
                        issued_at,
                    }),
                    (true, ..) => PreQueueJoined::Stale,
                })
            })
            .await
    }

    async fn end_pre_queue(
        &self,
        entry: TicketNo,
        user: UserId,
        reason: EndReason,
        now: OffsetDateTime,
    ) -> Result<PreQueueEnd, RepositoryError> {
        #[derive(QueryableByName)]
        struct EndRow {
            #[diesel(sql_type = Bool)]
            ended: bool,
            #[diesel(sql_type = Nullable<BigInt>)]
            ticket: Option<i64>,
            #[diesel(sql_type = Nullable<Text>)]
            end_reason: Option<String>,
            #[diesel(sql_type = Bool)]
            was_ended: bool,
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // The outer read sees the entry as it was before the statement: placed or ended
                // before, or neither (then an opening placed it while the update waited).
                let row: Option<EndRow> = diesel::sql_query(
                    "WITH ended AS ( \
                         UPDATE pre_queue SET ended_at = $3, end_reason = $4 \
                         WHERE entry = $1 AND user_id = $2 AND ticket IS NULL \
                           AND ended_at IS NULL \
                         RETURNING 1 \
                     ) \
                     SELECT EXISTS (SELECT 1 FROM ended) AS ended, p.ticket, p.end_reason, \
                            p.ended_at IS NOT NULL AS was_ended \
                     FROM pre_queue p WHERE p.entry = $1 AND p.user_id = $2",
                )
                .bind::<BigInt, _>(entry.get())
                .bind::<SqlUuid, _>(user.get())
                .bind::<Timestamptz, _>(now)
                .bind::<Text, _>(reason.as_str())
                .cached()
                .load(&mut conn)
                .await
                .map(committed_row)
                .map_err(from_diesel)?;
                let Some(row) = row else {
                    return Ok(PreQueueEnd::Missing);
                };
                Ok(if row.ended {
                    PreQueueEnd::Ended
                } else if let Some(ticket) = row.ticket {
                    PreQueueEnd::Placed(TicketNo::new(ticket).map_err(corrupt)?)
                } else if row.was_ended {
                    PreQueueEnd::AlreadyEnded(parse_end_reason(row.end_reason.as_deref())?)
                } else {
                    PreQueueEnd::Stale
                })
            })
            .await
    }

    async fn open_line(
        &self,
        line: LineNo,
        now: OffsetDateTime,
        rules: &(dyn OpeningRules + 'static),
    ) -> Result<Written<u64>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, StepAbort, _>(async |conn| {
                        open_in_transaction(conn, line, now, rules).await
                    })
                    .await;
                written(result)
            })
            .await
    }

    async fn pre_queue_outcomes(
        &self,
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
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // The line's entries are a range of the primary key.
                let rows: Vec<OutcomeRow> = diesel::sql_query(
                    "SELECT entry, ticket, end_reason FROM pre_queue \
                     WHERE entry > $1 AND entry < $2 \
                       AND (ticket IS NOT NULL OR ended_at IS NOT NULL)",
                )
                .bind::<BigInt, _>(line.pre_queue_start())
                .bind::<BigInt, _>(line.end())
                .cached()
                .load(&mut conn)
                .await
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
            })
            .await
    }

    async fn ended_waiting(
        &self,
        serving: ServingCounter,
    ) -> Result<Vec<EndedWaiting>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<EndedRow> = diesel::sql_query(ENDED_WAITING.as_str())
                    .bind::<BigInt, _>(serving.get())
                    .bind::<BigInt, _>(serving.line().end())
                    .cached()
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|row| {
                        let ended = row.into_ended()?;
                        Ok(EndedWaiting {
                            ticket: ended.ticket,
                            reason: ended.reason,
                        })
                    })
                    .collect()
            })
            .await
    }
}

/// A pre-queue entry as selected.
#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    entry: i64,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    issued_at: OffsetDateTime,
}

impl EntryRow {
    fn into_entry(self) -> Result<PreQueueEntry, RepositoryError> {
        Ok(PreQueueEntry {
            entry: TicketNo::new(self.entry).map_err(corrupt)?,
            user: UserId::from_uuid(self.user_id),
            issued_at: self.issued_at,
        })
    }
}

/// A room's opening under the exclusive lock of its line (see [`QueueRepository::open_line`]).
/// Marking the room opened first waits for every pre-queue join in flight (they hold the room's
/// row FOR SHARE) and turns away the later ones, so the entries read next are all there will be.
async fn open_in_transaction(
    conn: &mut AsyncPgConnection,
    line: LineNo,
    now: OffsetDateTime,
    rules: &dyn OpeningRules,
) -> Result<u64, StepAbort> {
    #[derive(QueryableByName)]
    struct Sequence {
        #[diesel(sql_type = BigInt)]
        last_value: i64,
        #[diesel(sql_type = Bool)]
        is_called: bool,
    }
    let corrupt_row =
        |error: RepositoryError| StepAbort::Db(DieselError::DeserializationError(Box::new(error)));
    lock_line(conn, line).await?;
    let marked = diesel::sql_query(
        "UPDATE rooms SET opened = true, version = version + 1, updated_at = now() \
         WHERE line = $1 AND NOT opened",
    )
    .bind::<Integer, _>(line_key(line))
    .cached()
    .execute(conn)
    .await?;
    if marked != 1 {
        return Err(StepAbort::Stale);
    }
    // Locked, in entry order: a leave or revocation racing the opening waits for it and then
    // finds the entry placed (and ends the place), instead of making the opening start over.
    let arrivals: Vec<EntryRow> = diesel::sql_query(
        "SELECT entry, user_id, issued_at FROM pre_queue \
         WHERE line = $1 AND ticket IS NULL AND ended_at IS NULL ORDER BY entry FOR UPDATE",
    )
    .bind::<Integer, _>(line_key(line))
    .cached()
    .load(conn)
    .await?;
    let arrivals = arrivals
        .into_iter()
        .map(EntryRow::into_entry)
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt_row)?;
    let order: Vec<i64> = rules
        .order(arrivals)
        .iter()
        .map(|entry| entry.entry.get())
        .collect();
    if order.is_empty() {
        return Ok(0);
    }
    // Nothing else draws from the line's sequence before it opened: its next number is the
    // line's first place.
    let sequence: Sequence = diesel::sql_query(format!(
        "SELECT last_value, is_called FROM {}",
        line_sequence(line)
    ))
    .get_result(conn)
    .await?;
    let first = sequence.last_value + i64::from(sequence.is_called);
    let placed = diesel::sql_query(format!(
        "WITH placed AS ( \
             SELECT p.entry, p.user_id, p.issued_at, $2 + o.n - 1 AS ticket \
             FROM unnest($1::bigint[]) WITH ORDINALITY AS o(entry, n) \
             JOIN pre_queue p ON p.entry = o.entry \
         ), tickets AS ( \
             INSERT INTO queue_tickets (ticket, user_id, status, issued_at, last_seen) \
             SELECT ticket, user_id, '{WAITING}', issued_at, $3 FROM placed \
         ), members AS ( \
             INSERT INTO queue_members AS m (user_id, line, version) \
             SELECT user_id, $4, 1 FROM placed \
             ON CONFLICT (user_id, line) DO UPDATE SET version = m.version + 1 \
         ) \
         UPDATE pre_queue q SET ticket = placed.ticket FROM placed \
         WHERE q.entry = placed.entry AND q.ticket IS NULL AND q.ended_at IS NULL"
    ))
    .bind::<Array<BigInt>, _>(&order)
    .bind::<BigInt, _>(first)
    .bind::<Timestamptz, _>(now)
    .bind::<Integer, _>(line_key(line))
    .execute(conn)
    .await?;
    if placed != order.len() {
        // An entry ended meanwhile: decide again at the next step.
        return Err(StepAbort::Stale);
    }
    let count = i64::try_from(order.len()).unwrap_or(i64::MAX);
    diesel::sql_query(format!("SELECT setval('{}', $1)", line_sequence(line)))
        .bind::<BigInt, _>(first + count - 1)
        .execute(conn)
        .await?;
    Ok(u64::try_from(count).unwrap_or(u64::MAX))
}

/// An ended ticket as [`ENDED_SINCE`] and [`ENDED_WAITING`] select it.
#[derive(QueryableByName)]
struct EndedRow {
    #[diesel(sql_type = BigInt)]
    ticket: i64,
    #[diesel(sql_type = Nullable<Text>)]
    end_reason: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    ended_at: OffsetDateTime,
}

impl EndedRow {
    fn into_ended(self) -> Result<EndedTicket, RepositoryError> {
        Ok(EndedTicket {
            ticket: TicketNo::new(self.ticket).map_err(corrupt)?,
            reason: parse_end_reason(self.end_reason.as_deref())?,
            ended_at: self.ended_at,
        })
    }
}

/// The tickets above the serving counter that ended while waiting; the status is the
/// statement's constant, so the plan uses the partial index of them.
static ENDED_WAITING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT ticket, end_reason, ended_at FROM queue_tickets \
         WHERE status = '{EXPIRED}' AND admitted_at IS NULL AND ticket > $1 AND ticket < $2 \
         ORDER BY ticket"
    )
});

/// The tickets ended since `$1`, on the retention job's partial index of ended tickets.
static ENDED_SINCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT ticket, end_reason, ended_at FROM queue_tickets \
         WHERE status = '{EXPIRED}' AND ended_at >= $1 AND ticket > $2 AND ticket < $3"
    )
});

/// A line's counters, its waiting count (O(1) in the length of the line: the tickets up to
/// `issued_hwm` were counted by the last admission step; only the few issued since are counted
/// here; waiting tickets leave by admission or by ending while waiting, so waiting = issued −
/// admitted − ended while waiting) and its active count. `$2`, `$3`: the line's range.
static SNAPSHOT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT s.serving, s.admitted_total, \
                s.issued_total - s.admitted_total - s.ended_waiting_total + fresh.count AS waiting, \
                (SELECT count(*) FROM queue_tickets t \
                 WHERE t.status = '{ACTIVE}' AND t.ticket > $2 AND t.ticket < $3) AS active, \
                s.issued_total + fresh.count AS issued, \
                (SELECT count(*) FROM pre_queue q \
                 WHERE q.line = $1 AND q.ticket IS NULL AND q.ended_at IS NULL) AS pre_queued \
         FROM queue_state s, LATERAL ( \
             SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm AND t.ticket < $3 \
         ) AS fresh \
         WHERE s.line = $1"
    )
});

/// The tickets of a line in one status, in ticket order (the admission step's active tickets).
static ACTIVE_TICKETS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TICKET_COLUMNS} FROM queue_tickets t \
         WHERE t.status = $1 AND t.ticket > $2 AND t.ticket < $3 ORDER BY t.ticket"
    )
});

/// The oldest tickets of a line in one status, at most `$2` (the admission step's head of the
/// line).
static OLDEST_WAITING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TICKET_COLUMNS} FROM queue_tickets t \
         WHERE t.status = $1 AND t.ticket > $3 AND t.ticket < $4 ORDER BY t.ticket LIMIT $2"
    )
});

/// A line's key in the tables that have one row per line (and in its advisory lock).
pub(crate) fn line_key(line: LineNo) -> i32 {
    i32::try_from(line.get()).unwrap_or(i32::MAX)
}

/// The line's counters as an admission step reads them. Only steps write these columns, and
/// they run one at a time under the exclusive queue lock, so no row lock is needed to read them.
struct Counters {
    serving: i64,
    issued_hwm: i64,
    issued_total: i64,
    pace: Pace,
}

async fn read_counters(
    conn: &mut AsyncPgConnection,
    line: LineNo,
) -> Result<Counters, DieselError> {
    let (serving, issued_hwm, issued_total, credit_millis, at): (
        i64,
        i64,
        i64,
        i64,
        Option<OffsetDateTime>,
    ) = queue_state::table
        .find(line_key(line))
        .select((
            queue_state::serving,
            queue_state::issued_hwm,
            queue_state::issued_total,
            queue_state::pace_credit_millis,
            queue_state::pace_at,
        ))
        .first(conn)
        .await?;
    Ok(Counters {
        serving,
        issued_hwm,
        issued_total,
        pace: Pace { credit_millis, at },
    })
}

/// The admissions of the 60 seconds before `now` (the partial index on `admitted_at`).
async fn count_last_minute(
    conn: &mut AsyncPgConnection,
    line: LineNo,
    now: OffsetDateTime,
) -> Result<u32, DieselError> {
    let (start, end) = line_range(line);
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let counted: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM queue_tickets \
         WHERE admitted_at IS NOT NULL AND admitted_at > $1 - interval '60 seconds' \
           AND ticket > $2 AND ticket < $3",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(start)
    .bind::<BigInt, _>(end)
    .cached()
    .get_result(conn)
    .await?;
    Ok(u32::try_from(counted.count).unwrap_or(u32::MAX))
}

/// Ends `ended` (each with the reason the domain gave it) if each is still in status `read_as`
/// with the `last_seen` read; `Stale` when any is not.
async fn write_ends(
    conn: &mut AsyncPgConnection,
    ended: &[QueueTicket],
    read_as: &str,
    now: OffsetDateTime,
) -> Result<(), StepAbort> {
    if ended.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i64> = ended.iter().map(|t| t.ticket().get()).collect();
    let seen: Vec<Option<OffsetDateTime>> = ended.iter().map(QueueTicket::last_seen).collect();
    let reasons: Vec<Option<&str>> = ended
        .iter()
        .map(|ticket| ticket.end_reason().map(EndReason::as_str))
        .collect();
    let written = diesel::sql_query(
        "UPDATE queue_tickets q SET status = $3, ended_at = $4, end_reason = e.reason \
         FROM unnest($1::bigint[], $2::timestamptz[], $6::text[]) \
              AS e(ticket, last_seen, reason) \
         WHERE q.ticket = e.ticket AND q.status = $5 \
           AND q.last_seen IS NOT DISTINCT FROM e.last_seen",
    )
    .bind::<Array<BigInt>, _>(&numbers)
    .bind::<Array<Nullable<Timestamptz>>, _>(&seen)
    .bind::<Text, _>(EXPIRED)
    .bind::<Timestamptz, _>(now)
    .bind::<Text, _>(read_as)
    .bind::<Array<Nullable<Text>>, _>(&reasons)
    .cached()
    .execute(conn)
    .await?;
    if written == numbers.len() {
        Ok(())
    } else {
        Err(StepAbort::Stale)
    }
}

/// One admission step under the exclusive queue lock (see the module docs).
async fn admit_in_transaction(
    conn: &mut AsyncPgConnection,
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
    let corrupt_row =
        |error: RepositoryError| StepAbort::Db(DieselError::DeserializationError(Box::new(error)));
    let (start, end) = line_range(line);
    lock_line(conn, line).await?;
    // 1. The active tickets; the domain ends the overdue ones and counts the free places.
    let active: Vec<TicketRow> = diesel::sql_query(ACTIVE_TICKETS.as_str())
        .bind::<Text, _>(ACTIVE)
        .bind::<BigInt, _>(start)
        .bind::<BigInt, _>(end)
        .cached()
        .load(conn)
        .await?;
    let active = tickets(active).map_err(corrupt_row)?;
    let overdue = rules.end_overdue(&active);
    let counters = read_counters(conn, line).await?;
    // 2. A paced room: the domain says how many of the free places may be filled now, from the
    //    admissions of the last minute and the stored pace.
    let (free, pace) = if overdue.free > 0 && rules.is_paced() {
        let (allowed, refilled) = rules.paced(
            overdue.free,
            count_last_minute(conn, line, now).await?,
            counters.pace,
        );
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
        let waiting: Vec<TicketRow> = diesel::sql_query(OLDEST_WAITING.as_str())
            .bind::<Text, _>(WAITING)
            .bind::<BigInt, _>(i64::from(rules.waiting_candidates(free)))
            .bind::<BigInt, _>(start)
            .bind::<BigInt, _>(end)
            .cached()
            .load(conn)
            .await?;
        rules.admit_oldest(&tickets(waiting).map_err(corrupt_row)?, free)
    };
    // 4. Write the ends, over the activity read (a request recorded meanwhile keeps it alive,
    //    and a payment that ended it meanwhile changes the count: decide again next step).
    write_ends(conn, &overdue.ended, ACTIVE, now).await?;
    // 5. Write the passed over, over the poll read (a poll recorded meanwhile keeps the place:
    //    decide again next step).
    write_ends(conn, &passed_over, WAITING, now).await?;
    // 6. Write the admissions (waiting tickets change only here, under this lock).
    if !admitted.is_empty() {
        let numbers: Vec<i64> = admitted.iter().map(|t| t.ticket().get()).collect();
        let until: Vec<Option<OffsetDateTime>> =
            admitted.iter().map(QueueTicket::active_until).collect();
        let seen: Vec<Option<OffsetDateTime>> =
            admitted.iter().map(QueueTicket::last_seen).collect();
        let written = diesel::sql_query(
            "UPDATE queue_tickets q \
             SET status = $4, admitted_at = $5, active_until = a.active_until, \
                 last_seen = a.last_seen \
             FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) \
                  AS a(ticket, active_until, last_seen) \
             WHERE q.ticket = a.ticket AND q.status = $6",
        )
        .bind::<Array<BigInt>, _>(&numbers)
        .bind::<Array<Nullable<Timestamptz>>, _>(&until)
        .bind::<Array<Nullable<Timestamptz>>, _>(&seen)
        .bind::<Text, _>(ACTIVE)
        .bind::<Timestamptz, _>(now)
        .bind::<Text, _>(WAITING)
        .cached()
        .execute(conn)
        .await?;
        if written != numbers.len() {
            return Err(StepAbort::Stale);
        }
    }
    // 7. The counters, in one write: the serving counter as the domain moves it, the tallies
    //    that make the waiting count O(1) (all issued tickets are committed: no join is in
    //    flight), and a paced room's credit, spent.
    let hwm = counters.issued_hwm;
    let issued: Issued = diesel::sql_query(
        "SELECT count(*) AS count, max(ticket) AS max FROM queue_tickets \
         WHERE ticket > $1 AND ticket < $2",
    )
    .bind::<BigInt, _>(hwm)
    .bind::<BigInt, _>(end)
    .cached()
    .get_result(conn)
    .await?;
    let serving = ServingCounter::new(counters.serving).after_admitting(&admitted);
    let admitted_count = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
    let passed_over_count = i64::try_from(passed_over.len()).unwrap_or(i64::MAX);
    let pace = pace.map_or(counters.pace, |pace| {
        pace.spent(u32::try_from(admitted.len()).unwrap_or(u32::MAX))
    });
    diesel::update(queue_state::table.find(line_key(line)))
        .set((
            queue_state::serving.eq(serving.get()),
            queue_state::admitted_total.eq(queue_state::admitted_total + admitted_count),
            queue_state::issued_total.eq(counters.issued_total + issued.count),
            queue_state::pace_credit_millis.eq(pace.credit_millis),
            queue_state::pace_at.eq(pace.at),
            queue_state::ended_waiting_total
                .eq(queue_state::ended_waiting_total + passed_over_count),
            queue_state::issued_hwm.eq(issued.max.unwrap_or(hwm).max(hwm)),
        ))
        .cached()
        .execute(conn)
        .await?;
    Ok(AdmissionReport::of(
        &overdue,
        &admitted,
        &passed_over,
        serving,
    ))
}
